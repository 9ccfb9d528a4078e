//! What happens to each payment: approved or declined by the bank, a pure
//! function of the seed and the row's `merchantUniqueCode`, so that a test
//! can predict every result line and every inquiry item.

/// A bank's reason for declining a payment. Turkish banks answer with the
/// ISO 8583 response codes; these are common ones. The codes reach the
/// result line's `providerErrorCode`/`bankErrorCode` and the messages its
/// `providerErrorMessage`/`bankErrorMessage` (no commas: the line is a
/// plain comma join).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decline {
    /// The ISO 8583 response code.
    pub bank_code: &'static str,
    /// Its meaning.
    pub message: &'static str,
}

/// The reasons the sandbox declines with.
pub const DECLINES: [Decline; 6] = [
    Decline {
        bank_code: "51",
        message: "Insufficient funds",
    },
    Decline {
        bank_code: "05",
        message: "Do not honour",
    },
    Decline {
        bank_code: "54",
        message: "Expired card",
    },
    Decline {
        bank_code: "14",
        message: "Invalid card number",
    },
    Decline {
        bank_code: "57",
        message: "Transaction not permitted to cardholder",
    },
    Decline {
        bank_code: "61",
        message: "Exceeds withdrawal amount limit",
    },
];

/// `PaymentStatusId` values, from "Payment Statuses"
/// (https://developer.paywall.one/payment-orchestration-integration-document/system-data/payment-statuses).
pub mod status {
    /// Recorded, nothing sent to a provider yet: the inquiry's status of a
    /// batch that is not finished.
    pub const CREATED: u8 = 1;
    /// A pre-authorisation that succeeded and waits for capture (`Half2D`).
    pub const WAITING_FOR_SETTLEMENT: u8 = 3;
    /// Approved.
    pub const SUCCESSFUL: u8 = 4;
    /// Declined.
    pub const FAILED: u8 = 5;
}

/// `PaymentActivityTypeId` of a sale: 1, the only value seen in a bulk
/// callback example (the activity-type table is not public, docs §5.2).
pub const ACTIVITY_SALE: u8 = 1;

/// `paywallErrorCode` of a declined payment: `PaymentError` (111) of the
/// SDK's codes, the sandbox's choice (the result pages do not define the
/// column, docs §5.8). Empty on success, as the JSON callback example has
/// null error fields for successful payments.
pub const PAYWALL_DECLINED: &str = "111";

/// Whether the bank declines the payment whose row carries
/// `merchant_unique_code`, and why (`None`: approved).
///
/// ```
/// use paydrop_sandbox::bulk::outcome;
/// assert_eq!(outcome(7, 0.0, "pay-1"), None);
/// assert!(outcome(7, 1.0, "pay-1").is_some());
/// assert_eq!(outcome(7, 0.5, "pay-9"), outcome(7, 0.5, "pay-9"));
/// ```
pub fn outcome(seed: u64, decline_rate: f64, merchant_unique_code: &str) -> Option<Decline> {
    let h = mix(seed, merchant_unique_code.as_bytes());
    // The top 53 bits decide, the low bits pick the reason.
    let share = (h >> 11) as f64 / (1u64 << 53) as f64;
    (share < decline_rate).then(|| DECLINES[(h & 0x7ff) as usize % DECLINES.len()])
}

/// The payment's final `PaymentStatusId`.
pub(crate) fn final_status(decline: Option<Decline>, half_2d: bool) -> u8 {
    match (decline, half_2d) {
        (Some(_), _) => status::FAILED,
        (None, true) => status::WAITING_FOR_SETTLEMENT,
        (None, false) => status::SUCCESSFUL,
    }
}

/// FNV-1a over the seed and the bytes, then SplitMix64's finaliser: well
/// spread, stable across runs and platforms.
pub(crate) fn mix(seed: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in seed.to_le_bytes().iter().chain(bytes) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decline_rate_is_roughly_kept() {
        let declined = (0..10_000)
            .filter(|i| outcome(1, 0.2, &format!("pay-{i}")).is_some())
            .count();
        assert!((1700..2300).contains(&declined), "{declined}");
    }
}
