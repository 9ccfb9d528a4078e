//! Fault switches of the receiving-side surfaces (marketplace, export,
//! breakdown, report): each switch is the number of coming requests that
//! get the fault, counted down as they arrive, and can be changed while the
//! sandbox runs. Every surface answers a fault in its own provider's error
//! shape.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A number of coming requests that get a fault.
#[derive(Debug, Default)]
pub struct Countdown(AtomicU32);

impl Countdown {
    /// The next `n` requests get the fault.
    pub fn set(&self, n: u32) {
        self.0.store(n, Ordering::SeqCst);
    }

    /// Counts one request down; true when it gets the fault.
    pub fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The two faults every surface has: a busy answer (429 with
/// `Retry-After`) and a server error (500).
#[derive(Debug, Default)]
pub struct Busy {
    pub too_many: Countdown,
    pub server_errors: Countdown,
    retry_after_secs: AtomicU64,
}

/// Which of [`Busy`]'s faults a request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429, with `Retry-After` in seconds.
    TooMany(u64),
    /// 500.
    ServerError,
}

impl Busy {
    /// `Retry-After` of the 429 answers (default 0).
    pub fn set_retry_after_secs(&self, secs: u64) {
        self.retry_after_secs.store(secs, Ordering::SeqCst);
    }

    /// The fault this request gets, if any (429 first).
    pub fn take(&self) -> Option<Fault> {
        if self.too_many.take() {
            Some(Fault::TooMany(self.retry_after_secs.load(Ordering::SeqCst)))
        } else if self.server_errors.take() {
            Some(Fault::ServerError)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_to_zero() {
        let b = Busy::default();
        b.too_many.set(1);
        b.server_errors.set(1);
        b.set_retry_after_secs(3);
        assert_eq!(b.take(), Some(Fault::TooMany(3)));
        assert_eq!(b.take(), Some(Fault::ServerError));
        assert_eq!(b.take(), None);
    }
}
