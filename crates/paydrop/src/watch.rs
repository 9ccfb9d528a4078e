//! The drop-folder daemon: watches inboxes, takes each completely written
//! file, submits it, and files it under `done/` or `failed/` with a report;
//! runs the result-callback server ([`crate::callback`]) beside.
//!
//! A file's way: `inbox/x.csv` → (stable for the quiet period) → atomic rename
//! to `processing/<time>-<n>-x.csv` → submit → `done/` or `failed/` beside a
//! `.report.json`. The rename is the claim: a file in `processing/` is ours,
//! and after a crash the restart submits it again, which the ledger turns into
//! "finish the bookkeeping" (already accepted), "resume with the same codes"
//! (outcome unknown) or "start" (never sent). Nothing is moved or deleted
//! before its outcome is in the ledger.
//!
//! This module starts the daemon; `scheduler` is its loop, `inbox` finds
//! and claims files (`scan` decides which are ready), `process` takes one
//! file through submit, `outputs` files it with its report, `callback`
//! checks and binds the callback listener, `metrics` counts and serves
//! `/metrics` and `/health` on a listener of their own, `startup` checks
//! what the daemon needs before it takes a file.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::pattern::Registry;
use crate::upload::Client;

mod callback;
mod inbox;
mod metrics;
mod outputs;
mod process;
mod scan;
mod scheduler;
mod startup;

pub use inbox::{inbox_counts, Inbox, BIG_FILE};
pub(crate) use metrics::prometheus;
pub use metrics::{InboxMetrics, Metrics};
pub(crate) use outputs::{sibling, write_json};
pub use scan::{ignored, skipped};

/// Sub-folders of every inbox.
pub const PROCESSING: &str = "processing";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";

/// Settings of the daemon not in the config file (tests set them).
#[derive(Clone, Default)]
pub struct WatchHooks {
    /// Makes the next N moves to `done/`/`failed/` fail, as a full disk would.
    pub fail_moves: Arc<AtomicU32>,
}

/// Everything the workers share.
pub(crate) struct Shared {
    config: Config,
    inboxes: Vec<Arc<Inbox>>,
    client: Client,
    callback_url: String,
    metrics: Arc<Metrics>,
    hooks: WatchHooks,
    /// The result-callback server, which also writes a batch's results.
    results: Arc<crate::callback::Receiver>,
}

/// Where the daemon's listeners are, once they listen.
#[derive(Clone, Copy, Debug)]
pub struct Listening {
    /// The result-callback listener (`[watch] callback_bind`).
    pub callback: SocketAddr,
    /// `/metrics` and `/health` (`[watch] metrics_bind`).
    pub metrics: SocketAddr,
}

/// Runs the daemon until `shutdown` resolves. Returns the addresses of its
/// listeners through `ready` once they listen.
pub async fn run(
    config: Config,
    registry: Registry,
    client: Client,
    hooks: WatchHooks,
    ready: Option<tokio::sync::oneshot::Sender<Listening>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    anyhow::ensure!(
        !config.watch.inboxes.is_empty(),
        "no inbox configured: add a [[watch.inbox]] with path and pattern to paydrop.toml"
    );
    let inboxes = config
        .watch
        .inboxes
        .iter()
        .map(|i| Inbox::resolve(i, &config, &registry).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    startup::check_inboxes(&inboxes, config.watch.create_inboxes)?;
    for inbox in &inboxes {
        inbox
            .ensure_dirs()
            .with_context(|| format!("preparing {}", inbox.dir.display()))?;
    }
    startup::check_ledger(&config.ledger.path)?;
    let (listener, callback_url) = callback::bind(&config.watch).await?;
    let addr = listener.local_addr()?;
    let metrics_listener = tokio::net::TcpListener::bind(&config.watch.metrics_bind)
        .await
        .with_context(|| {
            format!(
                "binding the metrics listener to {} ([watch] metrics_bind)",
                config.watch.metrics_bind
            )
        })?;
    let metrics_addr = metrics_listener.local_addr()?;
    let metrics = Arc::new(Metrics::new(&inboxes));
    let results = crate::callback::Receiver::new(config.clone(), registry)?;
    let served = metrics::Served {
        daemon: metrics.clone(),
        results: results.clone(),
        ledger: config.ledger.path.clone(),
    };
    let shared = Arc::new(Shared {
        config,
        inboxes,
        client,
        callback_url,
        metrics,
        hooks,
        results: results.clone(),
    });
    // Aborted on every way out, also when this future is dropped: the
    // callback server must not outlive the daemon.
    let _server = AbortOnDrop(tokio::spawn(crate::callback::serve(listener, results)));
    let _metrics = AbortOnDrop(tokio::spawn(metrics::serve(metrics_listener, served)));
    let _probe = AbortOnDrop(tokio::spawn(startup::probe(shared.client.clone())));
    if let Some(ready) = ready {
        let _ = ready.send(Listening {
            callback: addr,
            metrics: metrics_addr,
        });
    }
    tracing::info!(callback = %addr, metrics = %metrics_addr, inboxes = shared.inboxes.len(), "watching");
    scheduler::watch_loop(shared.clone(), shutdown).await
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
