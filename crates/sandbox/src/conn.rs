//! The sandbox's connections, made so that faults can hit them: a handler
//! can cut its own connection (hyper then drops it without an answer), and
//! the listener can stop listening for a while (connects are refused).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

use crate::faults::Faults;

/// The listener of the sandbox: plain TCP, except while
/// [`Faults::refuse_connections_for`] holds its socket closed.
pub(crate) struct Listener {
    inner: Option<TcpListener>,
    addr: SocketAddr,
    faults: Arc<Faults>,
}

impl Listener {
    pub(crate) fn new(inner: TcpListener, faults: Arc<Faults>) -> io::Result<Self> {
        let addr = inner.local_addr()?;
        Ok(Listener {
            inner: Some(inner),
            addr,
            faults,
        })
    }
}

impl axum::serve::Listener for Listener {
    type Io = Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Stream, SocketAddr) {
        loop {
            if let Some(until) = self.faults.refusing_until() {
                if self.inner.take().is_some() {
                    warn!("sandbox fault: not listening, connections are refused");
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(until.into()) => {}
                    _ = self.faults.refusal_changed() => {}
                }
                continue;
            }
            let listener = match &mut self.inner {
                Some(listener) => listener,
                None => match TcpListener::bind(self.addr).await {
                    Ok(listener) => self.inner.insert(listener),
                    Err(e) => {
                        warn!(error = %e, "sandbox cannot listen again yet");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            tokio::select! {
                (io, peer) = axum::serve::Listener::accept(listener) => {
                    return (Stream { io, cut: Cut::default() }, peer);
                }
                _ = self.faults.refusal_changed() => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// A handle that cuts one connection: once fired, its reads and writes
/// fail, so hyper closes it without writing the answer.
#[derive(Clone, Default)]
pub(crate) struct Cut(Arc<(AtomicBool, AtomicWaker)>);

impl Cut {
    pub(crate) fn fire(&self) {
        self.0 .0.store(true, Ordering::SeqCst);
        self.0 .1.wake();
    }

    fn check(&self, cx: &mut Context<'_>) -> io::Result<()> {
        self.0 .1.register(cx.waker());
        if self.0 .0.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "sandbox fault: connection cut",
            ))
        } else {
            Ok(())
        }
    }
}

impl Connected<IncomingStream<'_, Listener>> for Cut {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        stream.io().cut.clone()
    }
}

/// One accepted connection.
pub(crate) struct Stream {
    io: TcpStream,
    cut: Cut,
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.cut.check(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.cut.check(cx)?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.cut.check(cx)?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
