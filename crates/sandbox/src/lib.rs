//! An embedded sandbox of the payment providers paydrop talks to, on
//! 127.0.0.1, for the tests, the benches, the demo and `paydrop sandbox`.
//!
//! It is written from the providers' public pages (see `docs/providers/`
//! in the repository), not from paydrop's code: this crate depends on no
//! paydrop crate and shares none of its constants, validators or writers,
//! so a client that passes against it agrees with the pages, not with
//! itself.
//!
//! One module per provider surface, each owning its routes, its settings
//! and its state:
//! - [`bulk`]: Paywall's file-based bulk payment (`startdirect`) and the
//!   result callback it posts;
//! - [`marketplace`]: Paywall's marketplace manual payout trigger (start and
//!   inquiry);
//! - [`export`]: the Partner-Center-style asynchronous payouts export;
//! - [`breakdown`]: Craftgate's payment transaction breakdown;
//! - [`report`]: Payzee's payment report, with its merchant login.
//!
//! Beside them: [`envelope`] (Paywall's answer envelope and API keys, shared
//! by its surfaces) and [`faults`] (failures a test switches on while the
//! sandbox runs, on connections that can be cut or refused).

#![forbid(unsafe_code)]

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub mod breakdown;
pub mod bulk;
mod conn;
pub mod countdown;
pub mod envelope;
pub mod export;
pub mod faults;
pub mod marketplace;
mod mix;
pub mod report;

/// How the sandbox behaves, per surface.
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    pub bulk: bulk::Config,
    pub marketplace: marketplace::Config,
    pub export: export::Config,
    pub breakdown: breakdown::Config,
    pub report: report::Config,
}

/// What every handler can reach: the settings and state of each surface.
#[allow(dead_code)] // the surfaces fill their modules in
pub(crate) struct Shared {
    pub(crate) base_url: String,
    pub(crate) cancel: CancellationToken,
    pub(crate) faults: Arc<faults::Faults>,
    pub(crate) bulk: bulk::State,
    pub(crate) marketplace: marketplace::State,
    pub(crate) export: export::State,
    pub(crate) breakdown: breakdown::State,
    pub(crate) report: report::State,
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    addr: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    server: Option<JoinHandle<io::Result<()>>>,
}

impl Sandbox {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the `base` of every provider URL.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The fault switches, shared with the running server.
    pub fn faults(&self) -> Arc<faults::Faults> {
        self.shared.faults.clone()
    }

    /// Stops accepting, lets requests in flight finish (for at most five
    /// seconds) and cancels pending callbacks.
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Starts a sandbox on 127.0.0.1 with a free port.
pub async fn spawn(config: SandboxConfig) -> io::Result<Sandbox> {
    start(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
}

/// Runs a sandbox on `addr` (which must be a loopback address) until Ctrl-C.
pub async fn serve(config: SandboxConfig, addr: SocketAddr) -> io::Result<()> {
    let sandbox = start(config, addr).await?;
    info!(url = %sandbox.base_url(), "sandbox listening; Ctrl-C stops it");
    tokio::signal::ctrl_c().await?;
    info!("sandbox stopping");
    sandbox.shutdown().await;
    Ok(())
}

async fn start(config: SandboxConfig, addr: SocketAddr) -> io::Result<Sandbox> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the sandbox only listens on 127.0.0.1, not {}", addr.ip()),
        ));
    }
    let faults = Arc::new(faults::Faults::default());
    let listener = conn::Listener::new(TcpListener::bind(addr).await?, faults.clone())?;
    let addr = axum::serve::Listener::local_addr(&listener)?;
    let shared = Arc::new(Shared {
        base_url: format!("http://{addr}"),
        cancel: CancellationToken::new(),
        faults,
        bulk: bulk::State::new(config.bulk)?,
        marketplace: marketplace::State::new(config.marketplace),
        export: export::State::new(config.export),
        breakdown: breakdown::State::new(config.breakdown),
        report: report::State::new(config.report),
    });
    let app = Router::new()
        .merge(bulk::routes())
        .merge(marketplace::routes())
        .merge(export::routes())
        .merge(breakdown::routes())
        .merge(report::routes())
        .with_state(shared.clone());
    let cancel = shared.cancel.clone();
    let server = tokio::spawn(async move {
        // Handlers see their connection (`ConnectInfo<conn::Cut>`) so that
        // a fault can cut it.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<conn::Cut>(),
        )
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
    });
    Ok(Sandbox {
        addr,
        shared,
        server: Some(server),
    })
}
