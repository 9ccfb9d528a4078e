//! The one retry loop every provider call goes through: exponential backoff
//! with full jitter, `Retry-After` honoured as a minimum, and the rule that
//! decides what may be sent again. A call that never reached the provider,
//! or that the provider said it did not process, may always be sent again;
//! a call that may have reached it and had an effect is sent again only
//! when it is idempotent (a read, or a request the provider deduplicates by
//! an id of ours). How an answer is classified stays with each client.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// Delay before attempt `n + 1` after `n` failed attempts; a Retry-After
    /// from the provider is honoured as a minimum.
    pub fn delay(&self, n: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self.base.saturating_mul(1u32 << n.min(16)).min(self.max);
        let jittered = exp.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
        retry_after.map_or(jittered, |r| r.max(jittered))
    }
}

/// Whether sending a call twice can do twice what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// A read, or a request the provider deduplicates by an id of ours:
    /// an attempt without a definite answer is simply made again.
    Idempotent,
    /// It may move money (a payment file, a payout order): after an attempt
    /// that may have reached the provider it is never sent again blind.
    Once,
}

/// What one attempt came to, as its client classified it.
#[derive(Debug)]
pub(crate) enum Step<T> {
    /// A definite answer (a success or a refusal): no more attempts.
    Done(T),
    /// Nothing reached the provider (see [`super::never_sent`]), or the
    /// provider said it did not process the call (e.g. 429): safe to send
    /// again.
    NotTaken {
        why: String,
        retry_after: Option<Duration>,
    },
    /// The call may have reached the provider and had an effect (a 5xx, a
    /// timeout, a lost answer): sent again only when [`Effect::Idempotent`].
    Ambiguous {
        why: String,
        retry_after: Option<Duration>,
    },
}

impl<T> Step<T> {
    /// A transport error: [`Step::NotTaken`] when the request cannot have
    /// left (refused connection, DNS, TLS, a request that could not be
    /// built), else [`Step::Ambiguous`]. `why` is what to say about it.
    pub(crate) fn failed(e: &reqwest::Error, why: String) -> Step<T> {
        if super::never_sent(e) {
            Step::NotTaken {
                why,
                retry_after: None,
            }
        } else {
            Step::Ambiguous {
                why,
                retry_after: None,
            }
        }
    }
}

/// Why [`Retry::run`] ended without a definite answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ended {
    /// Attempts made, those before the loop included.
    pub attempts: u32,
    /// Why the last one failed.
    pub last: String,
    /// The last attempt of an [`Effect::Once`] call may have reached the
    /// provider, and was not repeated; otherwise every attempt was used.
    pub ambiguous: bool,
}

/// The retry loop of one call. The caller makes the attempts and says
/// what each came to; `Retry` decides whether and when the next one comes:
///
/// ```text
/// let mut calls = Retry::new(policy, Effect::Idempotent, "the report");
/// while let Some(n) = calls.next().await {
///     if let Some(done) = calls.judge(attempt(n).await) {
///         return Ok(done);
///     }
/// }
/// Err(calls.ended())
/// ```
///
/// (A loop taking the attempt as an `AsyncFnMut` would read better, but
/// rustc cannot prove its future `Send` when the attempt borrows the
/// caller's ledger, and the daemon spawns submissions.)
pub(crate) struct Retry<'a> {
    policy: RetryPolicy,
    effect: Effect,
    /// Names the call in the log ("the payment report", "part 1 (pd-…)").
    what: &'a str,
    /// Attempts made, those that failed before this loop included.
    made: u32,
    last: String,
    wait: Option<Duration>,
    /// An `Effect::Once` attempt may have reached the provider: no more.
    ambiguous: bool,
}

impl<'a> Retry<'a> {
    pub(crate) fn new(policy: RetryPolicy, effect: Effect, what: &'a str) -> Self {
        Retry {
            policy,
            effect,
            what,
            made: 0,
            last: String::new(),
            wait: None,
            ambiguous: false,
        }
    }

    /// Continues a call of which `failed` attempts already failed (a
    /// download that broke off): the first attempt waits its turn, and the
    /// count goes on.
    pub(crate) fn after_failures(mut self, failed: u32) -> Self {
        self.made = failed;
        self
    }

    /// Waits for the next attempt's turn (backoff with jitter, at least
    /// the last `Retry-After`) and gives its number, counting from 1;
    /// `None` when the call is over: `policy.max_attempts` (at least one)
    /// were made, or the last was ambiguous and the call [`Effect::Once`].
    pub(crate) async fn next(&mut self) -> Option<u32> {
        if self.ambiguous {
            return None;
        }
        if self.made > 0 {
            if self.made >= self.policy.max_attempts.max(1) {
                return None;
            }
            let delay = self.policy.delay(self.made - 1, self.wait);
            tracing::warn!(what = self.what, attempt = self.made, error = %self.last, retry_in = ?delay, "retrying");
            tokio::time::sleep(delay).await;
        }
        self.made += 1;
        Some(self.made)
    }

    /// Takes what the attempt came to: its value when [`Step::Done`], else
    /// `None`, keeping why for the next wait and for [`Retry::ended`].
    pub(crate) fn judge<T>(&mut self, step: Step<T>) -> Option<T> {
        let (why, retry_after) = match step {
            Step::Done(t) => return Some(t),
            Step::NotTaken { why, retry_after } => (why, retry_after),
            Step::Ambiguous { why, retry_after } => {
                self.ambiguous = self.effect == Effect::Once;
                (why, retry_after)
            }
        };
        self.last = why;
        self.wait = retry_after;
        None
    }

    /// Why the call ended without a definite answer, once [`Retry::next`]
    /// said `None`.
    pub(crate) fn ended(self) -> Ended {
        Ended {
            attempts: self.made,
            last: self.last,
            ambiguous: self.ambiguous,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
        }
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert!(p.delay(0, None) <= Duration::from_millis(100));
        assert!(p.delay(10, None) <= Duration::from_secs(1));
        assert!(p.delay(10, None) >= Duration::from_millis(500));
        assert!(p.delay(0, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }

    /// A 127.0.0.1 server that answers `429` with `Retry-After: 1` to its
    /// first `busy` calls, then `500` to every call while `broken`, else 200.
    async fn server(busy: u32, broken: bool) -> (String, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    let mut h = HeaderMap::new();
                    if n <= busy {
                        h.insert("retry-after", "1".parse().unwrap());
                        return (StatusCode::TOO_MANY_REQUESTS, h).into_response();
                    }
                    if broken {
                        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                    "ok".into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, calls)
    }

    /// Drives `attempt` through the loop as every client does.
    async fn run<T, F: std::future::Future<Output = Step<T>>>(
        mut retry: Retry<'_>,
        mut attempt: impl FnMut(u32) -> F,
    ) -> Result<T, Ended> {
        loop {
            let Some(n) = retry.next().await else {
                break Err(retry.ended());
            };
            if let Some(done) = retry.judge(attempt(n).await) {
                break Ok(done);
            }
        }
    }

    /// The classification the idempotent clients share: 429 not taken with
    /// its Retry-After, 5xx ambiguous, 2xx done.
    async fn get(http: &reqwest::Client, url: &str) -> Step<String> {
        match http.get(url).send().await {
            Err(e) => Step::failed(&e, super::super::describe(&e)),
            Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => Step::NotTaken {
                why: r.status().to_string(),
                retry_after: super::super::retry_after(r.headers()),
            },
            Ok(r) if r.status().is_server_error() => Step::Ambiguous {
                why: r.status().to_string(),
                retry_after: None,
            },
            Ok(r) => Step::Done(r.text().await.unwrap()),
        }
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let (url, calls) = server(1, false).await;
        let http = reqwest::Client::new();
        let started = Instant::now();
        let body = run(Retry::new(policy(3), Effect::Idempotent, "test"), |_| {
            get(&http, &url)
        })
        .await
        .unwrap();
        assert_eq!(body, "ok");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "the second attempt came before Retry-After: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn never_sent_calls_are_retried_even_when_they_move_money() {
        // A port nothing listens on: the connection is refused.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/", l.local_addr().unwrap())
        };
        let (url, calls) = server(0, false).await;
        let http = reqwest::Client::new();
        let body = run(Retry::new(policy(3), Effect::Once, "test"), |n| {
            get(&http, if n == 1 { &closed } else { &url })
        })
        .await
        .unwrap();
        assert_eq!(body, "ok");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn ambiguous_answers_end_a_call_that_moves_money() {
        let (url, calls) = server(0, true).await;
        let http = reqwest::Client::new();
        let e = run(Retry::new(policy(5), Effect::Once, "test"), |_| {
            get(&http, &url)
        })
        .await
        .unwrap_err();
        assert!(
            e.ambiguous && e.attempts == 1 && e.last.contains("500"),
            "{e:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "sent once, never again");
        // The same answers to a read are retried until the attempts run out.
        let e = run(Retry::new(policy(3), Effect::Idempotent, "test"), |_| {
            get(&http, &url)
        })
        .await
        .unwrap_err();
        assert!(
            !e.ambiguous && e.attempts == 3 && e.last.contains("500"),
            "{e:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_counts_earlier_failures() {
        let mut made = Vec::new();
        let e = run(Retry::new(policy(4), Effect::Once, "test"), |n| {
            made.push(n);
            std::future::ready(Step::<()>::NotTaken {
                why: format!("busy {n}"),
                retry_after: None,
            })
        })
        .await
        .unwrap_err();
        assert_eq!(
            e,
            Ended {
                attempts: 4,
                last: "busy 4".into(),
                ambiguous: false
            }
        );
        assert_eq!(made, [1, 2, 3, 4]);
        // A resumed call: two attempts already failed, two are left.
        made.clear();
        let retry = Retry::new(policy(4), Effect::Idempotent, "test").after_failures(2);
        let e = run(retry, |n| {
            made.push(n);
            std::future::ready(Step::<()>::NotTaken {
                why: "busy".into(),
                retry_after: None,
            })
        })
        .await
        .unwrap_err();
        assert_eq!((e.attempts, e.ambiguous), (4, false), "{e:?}");
        assert_eq!(made, [3, 4]);
        // Zero attempts configured still makes one.
        let done = run(Retry::new(policy(0), Effect::Once, "test"), |n| {
            std::future::ready(Step::Done(n))
        })
        .await;
        assert_eq!(done, Ok(1));
    }
}
