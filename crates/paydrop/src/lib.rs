//! paydrop: bulk card-payment files, checked, totalled, compressed and
//! submitted to the provider's `startdirect` endpoint without ever holding a
//! file in memory.
//!
//! Data flows one way: [`pattern`] → [`read`] → [`validate`] → [`totals`]
//! → `sent` / [`compress`] → [`upload`] → [`ledger`], orchestrated per file
//! by [`submit`]; [`watch`] runs that for drop folders, and [`callback`]
//! receives the provider's [`results`]. The other direction: [`payout`]
//! orders payouts, [`export`] and [`report`] stream what the providers
//! report, [`reconcile`] matches it against what was sent. Every client
//! shares [`transport`]. The providers are simulated by the separate
//! `paydrop-sandbox` crate (`crates/sandbox`), which shares no code with this
//! one; test files come from the `paydrop-generate` crate
//! (`crates/generate`); the command line (`src/cli.rs` of the `paydrop-cli`
//! package) sits on top.

// One reviewed exception, with its SAFETY comment: a cache prefetch hint in
// the uniqueness index.
#![deny(unsafe_code)]

pub mod api;
pub mod bounds;
pub mod callback;
pub mod compress;
pub mod config;
pub mod currency;
pub mod export;
pub mod inquiry;
pub mod ledger;
pub mod mask;
pub mod names;
pub mod pattern;
pub mod payout;
pub mod private;
pub mod read;
pub mod reconcile;
pub mod report;
pub mod results;
pub(crate) mod sent;
pub mod submit;
pub mod totals;
pub mod transport;
pub mod upload;
pub mod validate;
pub mod watch;

use chrono::NaiveDate;

/// The provider accepts at most this many transactions in one file.
pub const PROVIDER_MAX_ROWS: u64 = 150_000;

/// The provider's time zone: its cut-off windows and "yesterday" are local
/// to Istanbul.
pub const PROVIDER_TZ: chrono_tz::Tz = chrono_tz::Europe::Istanbul;

/// Today's date at the provider.
pub fn provider_today() -> NaiveDate {
    chrono::Utc::now().with_timezone(&PROVIDER_TZ).date_naive()
}
