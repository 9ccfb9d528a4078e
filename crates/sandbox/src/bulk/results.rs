//! The result file of a batch, one page at a time: one line per payment in
//! the published column order, written straight from the spooled upload
//! (never all lines in memory), gzip when the callback is compressed.
//!
//! Columns, from "Bulk (File) Callback"
//! (https://developer.paywall.one/payment-orchestration-integration-document/callback-examples/bulk-file-callback):
//! `patternNo, lineNumber, dateTime, merchantUniqueCode, trackingCode,
//! cardOwner, cardNumber, expiryDate (identityNumber on insurance lines),
//! amount, gatewayId, gatewayName, providerId, providerKey,
//! paywallErrorCode, providerErrorCode, providerErrorMessage,
//! bankErrorCode, bankErrorMessage, PaymentActivityTypeId,
//! PaymentStatusId`, a plain comma join; the Turkish page stops after
//! `bankErrorMessage` (18 columns).

use std::io::{self, BufWriter, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use tempfile::TempPath;

use super::config::ResultColumns;
use super::fields;
use super::file::Row;
use super::outcome::{self, final_status, ACTIVITY_SALE, PAYWALL_DECLINED};
use super::pattern::{FilePattern, Tail};
use super::store::Batch;

/// The sandbox's gateway and provider, named on every line.
const GATEWAY_ID: &str = "7";
const GATEWAY_NAME: &str = "Sandbox Virtual POS";
const PROVIDER_ID: &str = "3";
/// `providerKey` of a row that names none.
const PROVIDER_KEY: &str = "sandbox-vpos";

/// How the lines of a page are written.
pub(crate) struct Style {
    pub(crate) columns: ResultColumns,
    pub(crate) crlf: bool,
    pub(crate) gzip: bool,
    pub(crate) seed: u64,
    pub(crate) decline_rate: f64,
    /// The lines' `dateTime`: when the batch finished.
    pub(crate) date_time: String,
}

/// One page's result file, on disk.
pub(crate) struct PageFile {
    pub(crate) path: TempPath,
    pub(crate) lines: u64,
    /// Bytes of the file as posted (compressed when gzip).
    pub(crate) size: u64,
}

/// Writes the results of rows `first..first + count` to a new file in `dir`.
pub(crate) fn write_page(
    dir: &Path,
    batch: &Batch,
    first: u64,
    count: u64,
    style: &Style,
) -> io::Result<PageFile> {
    let (file, path) = tempfile::Builder::new()
        .prefix("result-")
        .tempfile_in(dir)?
        .into_parts();
    let out = BufWriter::with_capacity(256 * 1024, file);
    let lines = if style.gzip {
        let mut gz = GzEncoder::new(out, Compression::fast());
        let lines = write_lines(&mut gz, batch, first, count, style)?;
        gz.finish()?.flush()?;
        lines
    } else {
        let mut out = out;
        let lines = write_lines(&mut out, batch, first, count, style)?;
        out.flush()?;
        lines
    };
    let size = std::fs::metadata(&path)?.len();
    Ok(PageFile { path, lines, size })
}

fn write_lines(
    out: &mut impl Write,
    batch: &Batch,
    first: u64,
    count: u64,
    style: &Style,
) -> io::Result<u64> {
    let mut lines = 0;
    let mut line = String::with_capacity(512);
    batch.each_row(first, count, |_, row| {
        line.clear();
        result_line(&mut line, batch, row, style);
        line.push_str(if style.crlf { "\r\n" } else { "\n" });
        lines += 1;
        out.write_all(line.as_bytes())
    })?;
    Ok(lines)
}

/// One row's result line, without its line ending.
fn result_line(line: &mut String, batch: &Batch, row: &Row<'_>, style: &Style) {
    let record = &batch.record;
    let code = row.tail(Tail::MerchantUniqueCode);
    let decline = outcome::outcome(style.seed, style.decline_rate, code);
    let (card, expiry_or_identity) = match batch.pattern {
        FilePattern::OpenCardSimple => {
            let number = row.field(0);
            let last = &number[number.len() - 4..];
            (
                fields::masked_card(number, last, number.len()),
                row.field(1),
            )
        }
        // The identity number comes back as sent: the page names the
        // column like the request's, and PCI DSS masking is for card
        // numbers. A client must mask it itself.
        FilePattern::InsuranceSimple => (
            fields::masked_card(row.field(0), row.field(1), 16),
            row.field(2),
        ),
    };
    let provider_key = Some(row.tail(Tail::ProviderKey))
        .filter(|k| !k.is_empty())
        .unwrap_or(PROVIDER_KEY);
    let (paywall, provider_code, provider_message, bank_code, bank_message) = match decline {
        None => ("", "", "", "", ""),
        Some(d) => (
            PAYWALL_DECLINED,
            d.bank_code,
            d.message,
            d.bank_code,
            d.message,
        ),
    };
    let pattern_no = batch.pattern.card_model().to_string();
    let mut columns = vec![
        pattern_no.as_str(),
        row.tail(Tail::LineNumber),
        &style.date_time,
        code,
        row.tail(Tail::TrackingCode),
        row.tail(Tail::CardOwnerName),
        &card,
        expiry_or_identity,
        row.tail(Tail::Amount),
        GATEWAY_ID,
        GATEWAY_NAME,
        PROVIDER_ID,
        provider_key,
        paywall,
        provider_code,
        provider_message,
        bank_code,
        bank_message,
    ];
    let activity = ACTIVITY_SALE.to_string();
    let status = final_status(decline, record.half_2d).to_string();
    if style.columns == ResultColumns::Twenty {
        columns.push(&activity);
        columns.push(&status);
    }
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(c);
    }
}
