//! Realistic payment files for tests, benches and demos (the
//! `paydrop-generate` crate: no part of the pipeline library).
//!
//! Values follow each column's type (Luhn-valid cards of Turkish BIN ranges,
//! future expiries, valid identity numbers and IBANs, Turkish names with
//! non-ASCII letters, mixed amounts). A chosen share of rows carries exactly
//! one deliberate error of a known kind, and the generator says which: the
//! test of the validator is that it finds exactly those. The same seed always
//! gives the same bytes.

#![forbid(unsafe_code)]

use std::io::{self, Write};

use chrono::{Datelike, NaiveDate};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use serde::Serialize;

use paydrop::currency::Currency;
use paydrop::pattern::{ColumnType, Encoding, Header, Pattern};
use paydrop::totals::Totals;
use paydrop::validate::{check, ErrorKind};

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenOptions {
    pub rows: u64,
    /// Share of rows (0.0–1.0) that carry one deliberate error.
    pub error_rate: f64,
    pub seed: u64,
    /// Write a header row (default: when the pattern requires one).
    pub header: Option<bool>,
    /// Expiry dates are generated relative to this date.
    pub as_of: NaiveDate,
    /// Currency used for amounts when the pattern has no currency column.
    pub currency: Currency,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            rows: 1000,
            error_rate: 0.0,
            seed: 1,
            header: None,
            as_of: paydrop::provider_today(),
            currency: Currency::lookup("TRY").expect("TRY is known"),
        }
    }
}

/// One deliberately broken row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Planted {
    pub line: u64,
    pub kind: ErrorKind,
}

/// What was written.
#[derive(Clone, Debug, Serialize)]
pub struct Generated {
    pub rows: u64,
    pub planted: Vec<Planted>,
    /// Totals of the rows without errors: what the validator must compute.
    pub totals: Totals,
}

/// Turkish BIN prefixes (Visa, Mastercard, Troy) used by real issuers.
const BINS: &[&str] = &[
    "454360", "540667", "552879", "979204", "415565", "402940", "528939", "979210", "450803",
    "589004",
];
const FIRST: &[&str] = &[
    "Ayşe", "Mehmet", "Zeynep", "Ömer", "Çağla", "Şükrü", "Gülşen", "İbrahim", "Ebru", "Ahmet",
    "Özlem", "Ümit", "Hüseyin", "Elif", "Barış", "Doğan", "Işıl", "Can",
];
const LAST: &[&str] = &[
    "Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Yıldız", "Öztürk", "Aydın", "Özdemir", "Arslan",
    "Doğan", "Kılıç", "Aslan", "Çetin", "Koç", "Kurt", "Güneş", "Erdoğan",
];

/// Writes a file of `opts.rows` data rows in `pattern`'s layout.
///
/// ```
/// use paydrop::pattern::Registry;
/// use paydrop_generate::{generate, GenOptions};
/// let registry = Registry::load(None).unwrap();
/// let mut out = Vec::new();
/// let opts = GenOptions { rows: 100, error_rate: 0.1, seed: 7, ..GenOptions::default() };
/// let g = generate(&mut out, registry.get(1).unwrap(), &opts).unwrap();
/// assert_eq!(g.rows, 100);
/// assert_eq!(g.planted.len(), 10);
/// ```
pub fn generate<W: Write>(out: W, pattern: &Pattern, opts: &GenOptions) -> io::Result<Generated> {
    let mut gen = Generator::new(pattern, opts);
    let mut w = csv::WriterBuilder::new()
        .delimiter(pattern.delimiter)
        .flexible(true)
        .from_writer(io::BufWriter::with_capacity(64 * 1024, out));
    let header = opts.header.unwrap_or(pattern.header == Header::Present);
    let mut line = 0u64;
    if header {
        line += 1;
        let names: Vec<Vec<u8>> = pattern
            .columns
            .iter()
            .map(|c| gen.encode(&c.name))
            .collect();
        w.write_record(&names)?;
    }
    let errors = (opts.rows as f64 * opts.error_rate.clamp(0.0, 1.0)).round() as u64;
    let mut result = Generated {
        rows: opts.rows,
        planted: Vec::with_capacity(errors as usize),
        totals: Totals::default(),
    };
    // Spread the broken rows evenly, then pick their kind at random, so that
    // the count is exact and reproducible.
    let stride = opts.rows.checked_div(errors).unwrap_or(u64::MAX);
    let mut fields: Vec<Vec<u8>> = Vec::with_capacity(pattern.columns.len());
    for row in 1..=opts.rows {
        line += 1;
        let broken = errors > 0 && row % stride == 0 && row / stride <= errors;
        let (cells, amount, currency) = gen.row(row);
        fields.clear();
        fields.extend(cells.iter().map(|c| gen.encode(c)));
        if broken {
            let kind = gen.break_row(row, &mut fields);
            result.planted.push(Planted { line, kind });
        } else {
            gen.valid_codes.push(row);
            if let Some(a) = amount {
                result
                    .totals
                    .add(currency.unwrap_or(opts.currency), a)
                    .map_err(io::Error::other)?;
            }
        }
        w.write_record(&fields)?;
    }
    w.flush()?;
    Ok(result)
}

struct Generator<'a> {
    pattern: &'a Pattern,
    opts: &'a GenOptions,
    rng: ChaCha8Rng,
    /// Rows without errors whose unique codes a duplicate may copy.
    valid_codes: Vec<u64>,
}

impl<'a> Generator<'a> {
    fn new(pattern: &'a Pattern, opts: &'a GenOptions) -> Self {
        Generator {
            pattern,
            opts,
            rng: ChaCha8Rng::seed_from_u64(opts.seed),
            valid_codes: Vec::new(),
        }
    }

    fn encode(&self, s: &str) -> Vec<u8> {
        match self.pattern.encoding {
            Encoding::Utf8 => s.as_bytes().to_vec(),
            Encoding::Windows1254 => encoding_rs::WINDOWS_1254.encode(s).0.into_owned(),
        }
    }

    fn unique_code(&self, row: u64) -> String {
        format!("PD-{}-{row:08}", self.opts.seed)
    }

    /// A valid row: its cells, its amount and its currency.
    fn row(&mut self, row: u64) -> (Vec<String>, Option<Decimal>, Option<Currency>) {
        let currency_col = self.pattern.currency_column();
        let currency = currency_col.map(|_| {
            *["TRY", "USD", "EUR"]
                .choose(&mut self.rng)
                .and_then(|c| Currency::lookup(c))
                .as_ref()
                .expect("known currencies")
        });
        let minor = currency.unwrap_or(self.opts.currency).minor_units;
        let mut amount = None;
        // Patterns that carry parts of a card take them from one card.
        let has_parts = self
            .pattern
            .columns
            .iter()
            .any(|c| matches!(c.kind, ColumnType::CardFirst8 | ColumnType::CardLast4));
        let card = if has_parts {
            self.card()
        } else {
            String::new()
        };
        let cells = self
            .pattern
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if !c.required && !c.unique && self.rng.gen_bool(0.5) {
                    return String::new();
                }
                match &c.kind {
                    _ if c.unique => self.unique_code(row),
                    _ if c.line_number => row.to_string(),
                    _ if Some(i) == currency_col => {
                        currency.map(|c| c.code).unwrap_or("TRY").into()
                    }
                    ColumnType::Decimal { .. } => {
                        let d = self.amount(minor, c.amount);
                        if c.amount {
                            amount = Some(d);
                        }
                        self.decimal_text(d)
                    }
                    ColumnType::CardNumber => self.card(),
                    ColumnType::CardFirst8 => card[..8].to_string(),
                    ColumnType::CardLast4 => card[card.len() - 4..].to_string(),
                    ColumnType::TrTaxNumber => self.tax_number(),
                    ColumnType::TrIdentityOrTaxNumber => {
                        if self.rng.gen_bool(0.5) {
                            self.identity()
                        } else {
                            self.tax_number()
                        }
                    }
                    ColumnType::CardExpiry => {
                        let months = self.rng.gen_range(1..60);
                        let (y, m) = add_months(self.opts.as_of, months);
                        format!("{m:02}/{:02}", y % 100)
                    }
                    ColumnType::TrIdentity => self.identity(),
                    ColumnType::Iban => self.iban(),
                    ColumnType::Integer { min, max } => {
                        let lo = min.unwrap_or(0);
                        let hi = max.unwrap_or(lo + 9999).max(lo);
                        self.rng.gen_range(lo..=hi).to_string()
                    }
                    ColumnType::Boolean => ["true", "false"][self.rng.gen_range(0..2)].into(),
                    ColumnType::Enum { values } => {
                        values.choose(&mut self.rng).cloned().unwrap_or_default()
                    }
                    ColumnType::Currency => "TRY".into(),
                    ColumnType::Email => format!("musteri{row}@example.com.tr"),
                    ColumnType::Date { format } => self.opts.as_of.format(format).to_string(),
                    ColumnType::DateTime { format } => self
                        .opts
                        .as_of
                        .and_hms_opt(12, 0, 0)
                        .expect("noon")
                        .format(format)
                        .to_string(),
                    ColumnType::String {
                        min_len, max_len, ..
                    } => {
                        let name = format!(
                            "{} {}",
                            FIRST.choose(&mut self.rng).expect("names"),
                            LAST.choose(&mut self.rng).expect("names")
                        );
                        let min = min_len.unwrap_or(0);
                        let max = max_len.unwrap_or(usize::MAX);
                        if (min..=max).contains(&name.chars().count()) {
                            name
                        } else {
                            "x".repeat(min.max(1).min(max))
                        }
                    }
                }
            })
            .collect();
        (cells, amount, currency)
    }

    /// Mostly everyday amounts, some large, some tiny, some whole.
    fn amount(&mut self, minor: u32, is_amount: bool) -> Decimal {
        let units: i64 = match self.rng.gen_range(0..10) {
            0 => 1,
            1 => self.rng.gen_range(100_000..10_000_000),
            2 => self.rng.gen_range(1..100) * 100,
            _ => self.rng.gen_range(1_000..500_000),
        };
        let units = if is_amount { units.max(1) } else { units };
        // `units` is in hundredths; express it in the currency's minor units.
        match minor {
            0 => Decimal::new((units / 100).max(1), 0),
            m => Decimal::new(units * 10i64.pow(m.saturating_sub(2)), m),
        }
    }

    fn decimal_text(&self, d: Decimal) -> String {
        let s = d.to_string();
        if self.pattern.decimal_separator == b',' {
            s.replace('.', ",")
        } else {
            s
        }
    }

    fn card(&mut self) -> String {
        let bin = BINS.choose(&mut self.rng).expect("bins");
        let mut digits: Vec<u8> = bin.bytes().collect();
        digits.extend((0..9).map(|_| b'0' + self.rng.gen_range(0..10)));
        digits.push(check::luhn_check_digit(&digits));
        String::from_utf8(digits).expect("ascii digits")
    }

    fn identity(&mut self) -> String {
        let mut d = [0u32; 9];
        d[0] = self.rng.gen_range(1..10);
        for x in d.iter_mut().skip(1) {
            *x = self.rng.gen_range(0..10);
        }
        let (c10, c11) = check::tr_identity_check_digits(&d);
        d.iter()
            .chain(&[c10, c11])
            .map(|x| char::from(b'0' + *x as u8))
            .collect()
    }

    fn tax_number(&mut self) -> String {
        let mut d = [0u32; 9];
        for x in d.iter_mut() {
            *x = self.rng.gen_range(0..10);
        }
        let check = check::tr_tax_check_digit(&d);
        d.iter()
            .chain(&[check])
            .map(|x| char::from(b'0' + *x as u8))
            .collect()
    }

    fn iban(&mut self) -> String {
        let bban: String = (0..22)
            .map(|_| char::from(b'0' + self.rng.gen_range(0..10)))
            .collect();
        // Check digits: 98 - (BBAN + "TR00" as digits) mod 97.
        let mut rem = 0u32;
        for b in bban.bytes().chain(*b"2927" /* T=29 R=27 */).chain(*b"00") {
            rem = (rem * 10 + (b - b'0') as u32) % 97;
        }
        format!("TR{:02}{bban}", 98 - rem)
    }

    /// Breaks one row in exactly one way; returns how.
    fn break_row(&mut self, row: u64, fields: &mut Vec<Vec<u8>>) -> ErrorKind {
        let cols = &self.pattern.columns;
        let find = |f: &dyn Fn(&ColumnType) -> bool| cols.iter().position(|c| f(&c.kind));
        let card = find(&|k| matches!(k, ColumnType::CardNumber));
        let expiry = find(&|k| matches!(k, ColumnType::CardExpiry));
        let identity = find(&|k| {
            matches!(
                k,
                ColumnType::TrIdentity
                    | ColumnType::TrTaxNumber
                    | ColumnType::TrIdentityOrTaxNumber
            )
        });
        let card_part = find(&|k| matches!(k, ColumnType::CardFirst8 | ColumnType::CardLast4));
        let amount = self.pattern.amount_column();
        let unique = cols.iter().position(|c| c.unique);
        let line_no = cols.iter().position(|c| c.line_number);
        let text = cols.iter().position(|c| {
            c.required
                && !c.unique
                && matches!(&c.kind, ColumnType::String { regex: None, max_len, .. } if max_len.is_some())
        });
        let boolean = find(&|k| matches!(k, ColumnType::Boolean));
        let integer = cols
            .iter()
            .position(|c| !c.line_number && matches!(c.kind, ColumnType::Integer { .. }));
        let sep = self.pattern.decimal_separator as char;
        let other = if sep == '.' { ',' } else { '.' };

        let mut options: Vec<(ErrorKind, usize, String)> = Vec::new();
        if let Some(c) = card {
            let mut v = fields[c].clone();
            let last = v.len() - 1;
            v[last] = b'0' + (v[last] - b'0' + 1) % 10;
            options.push((ErrorKind::Luhn, c, String::from_utf8(v).expect("digits")));
        }
        if let Some(c) = expiry {
            let (y, m) = add_months(self.opts.as_of, -self.rng.gen_range(1..36));
            options.push((ErrorKind::Expired, c, format!("{m:02}/{:02}", y % 100)));
            options.push((ErrorKind::ExpiryFormat, c, "13/30".into()));
        }
        if let Some(c) = card_part {
            let mut v = fields[c].clone();
            v.pop();
            options.push((
                ErrorKind::CardNumber,
                c,
                String::from_utf8(v).expect("digits"),
            ));
        }
        if let Some(c) = identity {
            // Another check digit: the last one (a TCKN's second, a VKN's).
            let mut v = fields[c].clone();
            let last = v.len() - 1;
            v[last] = b'0' + (v[last] - b'0' + 1) % 10;
            options.push((
                ErrorKind::TrIdentity,
                c,
                String::from_utf8(v).expect("digits"),
            ));
        }
        if let Some(c) = amount {
            for bad in [
                "1e5".to_string(),
                "NaN".into(),
                format!("1{other}234{sep}56"),
            ] {
                options.push((ErrorKind::Decimal, c, bad));
            }
            options.push((ErrorKind::Scale, c, format!("12{sep}345")));
            options.push((ErrorKind::Range, c, "-0".into()));
        }
        if let Some(c) = text {
            options.push((ErrorKind::Required, c, String::new()));
            options.push((ErrorKind::ControlChar, c, "Ay\0şe".into()));
            if let ColumnType::String {
                max_len: Some(m), ..
            } = cols[c].kind
            {
                options.push((ErrorKind::Length, c, "ş".repeat(m + 1)));
            }
        }
        if let Some(c) = line_no {
            options.push((ErrorKind::LineNumber, c, (row + 1_000_000).to_string()));
        }
        if let Some(c) = unique.filter(|_| !self.valid_codes.is_empty()) {
            let earlier = self.valid_codes[self.rng.gen_range(0..self.valid_codes.len())];
            options.push((ErrorKind::Duplicate, c, self.unique_code(earlier)));
        }
        if let Some(c) = boolean {
            options.push((ErrorKind::Boolean, c, "evet".into()));
        }
        if let Some(c) = integer {
            options.push((ErrorKind::Integer, c, "12a".into()));
        }
        options.push((ErrorKind::ColumnCount, usize::MAX, String::new()));

        let (kind, col, value) = options.swap_remove(self.rng.gen_range(0..options.len()));
        if kind == ErrorKind::ColumnCount {
            fields.pop();
        } else {
            fields[col] = self.encode(&value);
        }
        kind
    }
}

/// The (year, month) `months` months after (or before) `date`'s month.
fn add_months(date: NaiveDate, months: i32) -> (i32, u32) {
    let total = date.year() * 12 + date.month0() as i32 + months;
    (total.div_euclid(12), total.rem_euclid(12) as u32 + 1)
}
