//! Failures a test switches on while the sandbox runs, to see what a client
//! does when the provider misbehaves. Generic: any surface can put its
//! handlers behind [`before`]; the bulk surface does for every endpoint.
//!
//! Each counter is the number of coming requests that get the fault; it
//! counts down by one per request that gets it. Per request they apply in
//! this order: the delay, then 429, 500, the dropped body (each taking the
//! request if its counter is above zero), and after the request was
//! processed, accept-then-crash. [`Faults::refuse_connections_for`] works
//! below HTTP: the sandbox stops listening, so connects fail with "connection
//! refused" (nothing reached the provider), and listens again afterwards.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::Notify;
use tracing::warn;

use crate::conn::Cut;
use crate::envelope::Refusal;

/// The fault switches, shared with the running server (see the module
/// documentation for the order in which they apply).
#[derive(Debug)]
pub struct Faults {
    delay_ms: AtomicU64,
    /// Read the first piece of the request body, then close the connection
    /// without answering (nothing is processed or recorded).
    pub drop_mid_body: AtomicU32,
    /// Answer 429 with `Retry-After: retry_after_secs`.
    pub too_many: AtomicU32,
    /// The `Retry-After` of those 429s (default 1).
    pub retry_after_secs: AtomicU64,
    /// Answer 500.
    pub server_errors: AtomicU32,
    /// Process the request completely (an accepted batch is recorded and its
    /// callback scheduled), then close the connection without answering.
    pub accept_then_crash: AtomicU32,
    refuse_until: Mutex<Option<Instant>>,
    refusal_changed: Notify,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            delay_ms: AtomicU64::new(0),
            drop_mid_body: AtomicU32::new(0),
            too_many: AtomicU32::new(0),
            retry_after_secs: AtomicU64::new(1),
            server_errors: AtomicU32::new(0),
            accept_then_crash: AtomicU32::new(0),
            refuse_until: Mutex::new(None),
            refusal_changed: Notify::new(),
        }
    }
}

impl Faults {
    /// Sleep this long before answering every request (zero: no delay).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The delay set by [`Faults::set_delay`].
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))
    }

    /// Refuse-then-accept: stop listening now, so that every connect fails
    /// with "connection refused" for `window`, then listen again on the same
    /// port. Connections already open are not affected.
    pub fn refuse_connections_for(&self, window: Duration) {
        *self.refuse_lock() = Some(Instant::now() + window);
        self.refusal_changed.notify_one();
    }

    /// When the listener may accept again, while a refusal window is open.
    pub(crate) fn refusing_until(&self) -> Option<Instant> {
        let mut until = self.refuse_lock();
        if until.is_some_and(|t| t <= Instant::now()) {
            *until = None;
        }
        *until
    }

    /// Completes when a refusal window was opened or closed.
    pub(crate) async fn refusal_changed(&self) {
        self.refusal_changed.notified().await;
    }

    /// Turns every fault off.
    pub fn clear(&self) {
        self.set_delay(Duration::ZERO);
        for c in [
            &self.drop_mid_body,
            &self.too_many,
            &self.server_errors,
            &self.accept_then_crash,
        ] {
            c.store(0, Ordering::SeqCst);
        }
        *self.refuse_lock() = None;
        self.refusal_changed.notify_one();
    }

    fn refuse_lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.refuse_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one request down; true when it gets the fault.
    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// A request that passed the faults, until it is answered.
struct Armed {
    crash: bool,
    cut: Cut,
}

impl Armed {
    /// Sends `answer`, or, when accept-then-crash took this request, cuts
    /// the connection so that the processed request is never answered.
    fn finish(self, answer: Response) -> Response {
        if self.crash {
            warn!("sandbox fault: request processed, connection dropped before the answer");
            self.cut.fire();
        }
        answer
    }
}

/// Runs a handler behind the faults: `handle` gets the body unless a fault
/// answered first, and its answer is sent unless accept-then-crash took the
/// request.
pub(crate) async fn guard<F, Fut>(faults: &Faults, cut: Cut, body: Body, handle: F) -> Response
where
    F: FnOnce(Body) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    match before(faults, cut, body).await {
        Ok((body, armed)) => armed.finish(handle(body).await),
        Err(faulted) => faulted,
    }
}

/// Applies the faults to one request: `Err` is the faulted answer (or a
/// connection already cut), `Ok` gives the body back to the handler.
async fn before(faults: &Faults, cut: Cut, body: Body) -> Result<(Body, Armed), Response> {
    let delay = faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if Faults::take(&faults.too_many) {
        // Early answers read the body first: a client still sending would
        // otherwise see the connection reset instead of the answer.
        drain(body).await;
        let secs = faults.retry_after_secs.load(Ordering::SeqCst);
        return Err(Refusal {
            retry_after: Some(secs),
            ..Refusal::http(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests; retry later",
            )
        }
        .into_response());
    }
    if Faults::take(&faults.server_errors) {
        drain(body).await;
        return Err(Refusal::internal("internal server error").into_response());
    }
    if Faults::take(&faults.drop_mid_body) {
        let _ = body.into_data_stream().next().await;
        warn!("sandbox fault: connection dropped in the middle of the body");
        cut.fire();
        return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let crash = Faults::take(&faults.accept_then_crash);
    Ok((body, Armed { crash, cut }))
}

/// Reads and discards the rest of a body.
pub(crate) async fn drain(body: Body) {
    let mut data = body.into_data_stream();
    while let Some(Ok(_)) = data.next().await {}
}
