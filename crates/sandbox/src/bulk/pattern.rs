//! The two published file patterns, as the sandbox reads them: their
//! columns, in order, and where each value sits in a row.
//!
//! Source: "Bulk Payment File Information"
//! (https://developer.paywall.one/payment-orchestration-integration-document/system-data/bulk-payment-file-information),
//! which writes a row as a plain comma join, `{a},{b},…`, with no header,
//! quoting or escaping. Patterns 2 and 4 are named there without columns,
//! so the sandbox cannot read them.

/// A `FilePattern` the sandbox reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilePattern {
    /// 1, Open Card - Simple: the full card number and its expiry.
    OpenCardSimple,
    /// 3, Insurance - Simple: the card's first 8 and last 4 digits and the
    /// payer's TCKN/VKN.
    InsuranceSimple,
}

/// The 15 columns both patterns end with, from `amount` on (same page).
const TAIL: [&str; 15] = [
    "amount",
    "lineNumber",
    "cardOwnerName",
    "trackingCode",
    "customerId",
    "productCategory",
    "productId",
    "merchantUniqueCode",
    "providerBased",
    "providerKey",
    "routeGroupKey",
    "payRouteByPass",
    "payRouteType",
    "posBased",
    "posId",
];

/// Pattern 1's 17 columns: `cardNumber,expiryDate`, then the tail.
const OPEN_CARD_SIMPLE: [&str; 17] = with_tail(["cardNumber", "expiryDate"]);

/// Pattern 3's 18 columns ("Sigortacılık - Basit" on the Turkish page):
/// `cardNoFirst,cardNoLast,identityNumber`, then the tail.
const INSURANCE_SIMPLE: [&str; 18] = with_tail(["cardNoFirst", "cardNoLast", "identityNumber"]);

/// `head` followed by [`TAIL`].
const fn with_tail<const H: usize, const N: usize>(head: [&'static str; H]) -> [&'static str; N] {
    assert!(H + TAIL.len() == N);
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = if i < H { head[i] } else { TAIL[i - H] };
        i += 1;
    }
    out
}

/// Positions in [`TAIL`]. Every column is listed, read or not, so that each
/// discriminant is the column's position.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    Amount = 0,
    LineNumber,
    CardOwnerName,
    TrackingCode,
    CustomerId,
    ProductCategory,
    ProductId,
    MerchantUniqueCode,
    ProviderBased,
    ProviderKey,
    RouteGroupKey,
    PayRouteByPass,
    PayRouteType,
    PosBased,
    PosId,
}

impl FilePattern {
    /// The pattern a `FilePattern` value names, if the sandbox reads it.
    pub fn from_id(id: u16) -> Option<FilePattern> {
        match id {
            1 => Some(FilePattern::OpenCardSimple),
            3 => Some(FilePattern::InsuranceSimple),
            _ => None,
        }
    }

    /// Its `FilePattern` value.
    pub fn id(self) -> u16 {
        match self {
            FilePattern::OpenCardSimple => 1,
            FilePattern::InsuranceSimple => 3,
        }
    }

    /// Its name on the page.
    pub fn name(self) -> &'static str {
        match self {
            FilePattern::OpenCardSimple => "Open Card - Simple",
            FilePattern::InsuranceSimple => "Insurance - Simple",
        }
    }

    /// Its columns, in order.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            FilePattern::OpenCardSimple => &OPEN_CARD_SIMPLE,
            FilePattern::InsuranceSimple => &INSURANCE_SIMPLE,
        }
    }

    /// Columns before the common tail (the card columns).
    fn head(self) -> usize {
        self.columns().len() - TAIL.len()
    }

    /// Index of a tail column in a row of this pattern.
    pub(crate) fn at(self, column: Tail) -> usize {
        self.head() + column as usize
    }

    /// `patternNo` of its result lines. The Turkish result-file page labels
    /// open card lines `PatterNo: 1` and insurance lines `PatterNo: 2`: the
    /// card model of the "Bulk Payment" system-data page
    /// (https://developer.paywall.one/payment-orchestration-integration-document/system-data/bulk-payment),
    /// not the `FilePattern` (docs/providers/paywall.md §2.3).
    pub fn card_model(self) -> u8 {
        match self {
            FilePattern::OpenCardSimple => 1,
            FilePattern::InsuranceSimple => 2,
        }
    }
}

/// Whether a line holds column names rather than a payment: any field that
/// is the name of a column of a published pattern.
pub(crate) fn is_header(fields: &[&str]) -> bool {
    fields.iter().any(|f| {
        let f = f.trim();
        OPEN_CARD_SIMPLE
            .iter()
            .chain(INSURANCE_SIMPLE.iter())
            .any(|c| c.eq_ignore_ascii_case(f))
    })
}
