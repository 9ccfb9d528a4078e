//! Issue 5 item 2: the typed `$filter` builder and the raw-expression
//! parser, and that a bad filter stops the CLI before any request.

mod common_export;

use chrono::{DateTime, NaiveDate, Utc};
use common_export::*;
use paydrop::export::filter::{Field, Filter, Op, Value};

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn strings_are_quoted_and_quotes_doubled() {
    let f = Filter::eq(Field::EnrollmentParticipantId, "O'Brien");
    assert_eq!(f.to_string(), "enrollmentParticipantId eq 'O''Brien'");
    let parsed = Filter::parse("enrollmentParticipantId eq 'O''Brien'").unwrap();
    assert_eq!(
        parsed,
        Filter::Cmp {
            field: Field::EnrollmentParticipantId,
            op: Op::Eq,
            value: Value::Text("O'Brien".into())
        }
    );
    let odd = Filter::eq(Field::ProgramName, "a'' and (b)");
    assert_eq!(Filter::parse(&odd.to_string()).unwrap(), odd);
}

#[test]
fn timestamps_and_dates_are_iso() {
    let f = Filter::all(vec![
        Filter::le(Field::PayoutStatusUpdateTS, ts("2019-09-25T23:11:55.647Z")),
        Filter::ge(Field::PaymentDate, date("2023-03-01")),
        Filter::le(Field::PaymentDate, date("2023-04-12")),
    ]);
    assert_eq!(
        f.to_string(),
        "payoutStatusUpdateTS le 2019-09-25T23:11:55.647Z and (paymentDate ge 2023-03-01) and \
         (paymentDate le 2023-04-12)"
    );
    // An offset is shown in UTC; whole seconds without a fraction.
    let g = Filter::parse("payoutStatusUpdateTS ge 2024-01-01T02:30:00+03:00").unwrap();
    assert_eq!(
        g.to_string(),
        "payoutStatusUpdateTS ge 2023-12-31T23:30:00Z"
    );
}

#[test]
fn the_cli_options_build_the_published_example() {
    let built = Filter::all(vec![
        Filter::le(Field::PayoutStatusUpdateTS, ts("2019-09-25T23:11:55.647Z")),
        Filter::eq(Field::EnrollmentParticipantId, "XXXXXXX"),
        Filter::eq(Field::ProgramName, "CSP Direct Bill Partner"),
        Filter::eq(Field::PayoutOrderType, "REBATE"),
        Filter::eq(Field::PaymentId, "000000000000"),
    ]);
    let published = "payoutStatusUpdateTS le 2019-09-25T23:11:55.647Z and \
        (enrollmentParticipantId eq 'XXXXXXX') and (programName eq 'CSP Direct Bill Partner') \
        and (payoutOrderType eq 'REBATE') and (paymentId eq '000000000000')";
    assert_eq!(built.to_string(), published);
    assert_eq!(Filter::parse(published).unwrap(), built);
}

#[test]
fn unknown_fields_are_refused_with_the_known_ones() {
    let e = Filter::parse("paymentDate ge 2023-01-01 and customerName eq 'x'").unwrap_err();
    assert_eq!(e.column, 31, "{e}");
    let text = e.to_string();
    assert!(text.contains("unknown field 'customerName'"), "{text}");
    assert!(
        text.contains("programName, enrollmentParticipantId") && text.contains("paymentAmount"),
        "{text}"
    );
    let e = Filter::parse("PaymentId eq '1'").unwrap_err();
    assert!(e.to_string().contains("did you mean paymentId?"), "{e}");
}

#[test]
fn malformed_expressions_name_the_column() {
    let cases: &[(&str, usize, &str)] = &[
        ("programName eq 'open", 16, "not closed"),
        ("programName eq \"x\"", 16, "quote strings with '"),
        ("programName ne 'x'", 13, "eq, le or ge"),
        ("programName eq", 15, "ends where a value"),
        ("(programName eq 'x'", 20, "')'"),
        ("programName eq 'x')", 19, "without a matching"),
        ("programName eq 'x' paymentId eq '1'", 20, "expected 'and'"),
        ("paymentDate ge 2023-13-01", 16, "not an ISO date"),
        ("paymentDate ge '2023-01-01'", 16, "unquoted ISO date"),
        ("paymentId eq 42", 14, "quoted string"),
        ("programName eq 'x' and", 23, "ends where a field name"),
        (
            "programName eq 'x' or paymentId eq '1'",
            20,
            "expected 'and'",
        ),
        ("and programName eq 'x'", 1, "unknown field 'and'"),
    ];
    for (raw, column, words) in cases {
        let e = Filter::parse(raw).expect_err(raw);
        assert_eq!(e.column, *column, "{raw}: {e}");
        assert!(e.to_string().contains(words), "{raw}: {e}");
    }
}

#[tokio::test]
async fn a_bad_filter_stops_the_cli_before_any_request() {
    let sandbox = spawn(config()).await;
    let (code, out, err, _) = export_cli(
        &sandbox,
        &["--summary", "--filter", "programName eq 'x' or 1"],
    )
    .await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("$filter column 20") && err.contains("nothing was sent"),
        "{err}"
    );
    assert!(sandbox.export_calls().is_empty());
}

#[tokio::test]
async fn the_options_reach_the_provider_intact() {
    let sandbox = spawn(config()).await;
    let (code, out, err, _) = export_cli(
        &sandbox,
        &[
            "--summary",
            "--from",
            "2023-03-01",
            "--to",
            "2023-04-12",
            "--participant",
            "O'Brien & Sons",
            "--program",
            "CSP Direct Bill Partner",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let post = &sandbox.export_calls()[0];
    assert_eq!(
        post.filter.as_deref(),
        Some(
            "paymentDate ge 2023-03-01 and (paymentDate le 2023-04-12) and \
             (programName eq 'CSP Direct Bill Partner') and \
             (enrollmentParticipantId eq 'O''Brien & Sons')"
        )
    );
}
