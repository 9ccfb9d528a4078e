//! Issue 10 item 2: a payout export is read by its header, whatever
//! published schema it follows, or a user mapping; a header without an
//! amount column fails naming it; the sandbox applies `$filter`, and a zip
//! of CSV files (as the Partner Center sample downloads) sums the same.

mod common_export;

use common_export::*;
use paydrop::export::{ExportError, Format, Mapping, Sink};
use paydrop_sandbox::export::{Content, Encoding, Schema};

async fn summary_of(
    c: paydrop_sandbox::SandboxConfig,
    mapping: Mapping,
) -> Result<paydrop::export::Summary, ExportError> {
    let sandbox = spawn(c).await;
    let client = client(&sandbox, TOKEN).with_columns(mapping);
    guard("export", async {
        let queued = client.queue(None, Format::Csv).await?;
        let done = client.wait(queued, poll(HANG_GUARD), |_| {}).await?;
        Ok(client
            .download(&done, Format::Csv, &mut Sink::Discard)
            .await?
            .1)
    })
    .await
}

#[tokio::test]
async fn both_published_schemas_summarise_to_the_exact_totals() {
    for schema in [Schema::EarningsPayments, Schema::PaymentsDownload] {
        let s = summary_of(generated_in(2000, 4, schema), Mapping::default())
            .await
            .unwrap();
        assert_matches(&s, &expected(4, 2000));
        assert_eq!(s.roles["amount"], "totalPayment", "{schema:?}");
        let currency = match schema {
            Schema::EarningsPayments => "paymentCurrencyCode",
            Schema::PaymentsDownload => "currencyCode",
        };
        assert_eq!(s.roles["currency"], currency);
    }
}

/// An export with headers of its own, and the rows the fixture of the
/// Earnings schema holds (`tests/fixtures/partner-center/`).
fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("tests/fixtures/partner-center/{name}")).unwrap()
}

fn fixed(text: String) -> paydrop_sandbox::SandboxConfig {
    let mut c = config();
    c.export.content = Content::Fixed(text.into());
    c
}

#[tokio::test]
async fn the_earnings_fixture_and_a_user_mapping_give_the_same_exact_totals() {
    let earnings = summary_of(fixed(fixture("earnings-payments.csv")), Mapping::default())
        .await
        .unwrap();
    let mapping = Mapping {
        id: Some("Payment Ref".into()),
        amount: Some("Paid".into()),
        currency: Some("Ccy".into()),
        date: Some("Paid On".into()),
        status: Some("State".into()),
        program: None,
    };
    let mapped = summary_of(fixed(fixture("own-headers.csv")), mapping)
        .await
        .unwrap();
    for s in [&earnings, &mapped] {
        assert_eq!(s.rows, 4);
        let usd = &s.by_currency["USD"]["USD"];
        assert_eq!(
            (usd.rows, usd.amount.to_string()),
            (3, "1230.55".to_string())
        );
        let eur = &s.by_currency["EUR"]["EUR"];
        assert_eq!(
            (eur.rows, eur.amount.to_string()),
            (1, "-15.00".to_string())
        );
        assert_eq!(s.by_status["Sent"]["USD"].amount.to_string(), "1000.05");
    }
    assert_eq!(mapped.roles["amount"], "Paid");
    assert!(mapped.extra_columns.contains(&"Remark".to_string()));
    // Without the mapping the same file names what is missing.
    let e = summary_of(fixed(fixture("own-headers.csv")), Mapping::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ExportError::Header { .. }), "{e}");
}

#[tokio::test]
async fn a_header_without_an_amount_column_names_it_the_aliases_and_the_key() {
    let text = fixture("earnings-payments.csv").replace("totalPayment", "grossTotal");
    let e = summary_of(fixed(text), Mapping::default())
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("no amount column: looked for totalPayment / paymentAmount")
            && msg.contains("[export.columns]")
            && msg.contains("amount = "),
        "{msg}"
    );

    // The binary with a mapping in paydrop.toml reads it.
    let sandbox = spawn(fixed(fixture("own-headers.csv"))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = paydrop(&sandbox, dir.path());
    let config = dir.path().join("paydrop.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[export.columns]\nid = \"Payment Ref\"\namount = \"Paid\"\ncurrency = \"Ccy\"\n\
         date = \"Paid On\"\nstatus = \"State\"\n",
    );
    std::fs::write(&config, text).unwrap();
    cmd.args(["export", "payments", "--summary"]);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{out}{err}");
    let printed = collapse(&out);
    assert!(
        printed.contains(&"USD USD 1230.55 (3 rows)".to_string()),
        "{out}"
    );
    assert!(out.contains("amount = Paid"), "{out}");
}

#[tokio::test]
async fn the_sandbox_applies_the_filter_and_the_summary_shows_it() {
    let filter = "paymentAmount ge 20000 and (programName eq 'CSP Indirect Provider')";
    let sandbox = spawn(generated(3000, 8)).await;
    let (code, out, err, _) = export_cli(&sandbox, &["--summary", "--filter", filter]).await;
    assert_eq!(code, 0, "{err}");
    let want = expected_filtered(8, 3000, Some(filter));
    let all = expected(8, 3000);
    assert!(
        want.rows > 0 && want.rows < all.rows / 2,
        "{} of {}",
        want.rows,
        all.rows
    );
    let printed = collapse(&out);
    assert!(
        printed[0].contains(&format!(": {} rows,", want.rows)),
        "{out}"
    );
    for line in summary_lines(&want) {
        assert!(printed.contains(&line), "missing '{line}' in\n{out}");
    }
    assert_eq!(sandbox.export_calls()[0].filter.as_deref(), Some(filter));
}

#[tokio::test]
async fn a_zip_of_csv_files_sums_like_the_bare_file() {
    let mut c = generated(5000, 6);
    c.export.encoding = Encoding::Zip { entries: 3 };
    let s = summary_of(c, Mapping::default()).await.unwrap();
    assert_matches(&s, &expected(6, 5000));
    assert_eq!(s.entries, 3);
}
