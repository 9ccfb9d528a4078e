//! The provider's clock: Europe/Istanbul (Paywall is Turkish; the pages
//! never name a time zone, docs §6.3), and the timestamp shapes of the
//! callback example on the bulk-transaction page
//! (https://developer.paywall.one/payment-orchestration-integration-document/callback-examples/bulk-transaction-callback):
//! `DateTime` and `FinishedAt` with 7 fractional digits and an offset,
//! `CreatedAt` with 3 and no offset.

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;

pub(crate) fn now() -> DateTime<Tz> {
    Utc::now().with_timezone(&chrono_tz::Europe::Istanbul)
}

/// `2025-09-01T10:00:05.1234567+03:00`, .NET's round-trip format.
pub(crate) fn with_offset(t: &DateTime<Tz>) -> String {
    format!(
        "{}.{:07}{}",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.nanosecond() % 1_000_000_000 / 100,
        t.format("%:z")
    )
}

/// `2025-09-01T09:59:10.120`, local time without an offset.
pub(crate) fn local_millis(t: &DateTime<Tz>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn shapes_of_the_page_example() {
        let t = chrono_tz::Europe::Istanbul
            .with_ymd_and_hms(2025, 9, 1, 10, 0, 5)
            .unwrap()
            + chrono::Duration::nanoseconds(123_456_700);
        assert_eq!(with_offset(&t), "2025-09-01T10:00:05.1234567+03:00");
        assert_eq!(local_millis(&t), "2025-09-01T10:00:05.123");
    }
}
