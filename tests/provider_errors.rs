//! A provider's refusal names the HTTP status, the address (without
//! secrets) and the answer's message.

mod common_export;

use common_export::*;

#[tokio::test]
async fn a_wrong_base_path_says_the_status_and_the_url() {
    let sandbox = spawn(config()).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = format!("{}/wrong-prefix", sandbox.base_url());
    let mut cmd = paydrop(&sandbox, dir.path());
    cmd.env("PAYDROP_BASE_URL", &wrong).args([
        "payout",
        "trigger",
        "--currency",
        "TRY",
        "--as-of",
        "2026-03-20",
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-10",
    ]);
    let (code, out, err) = run(cmd).await;
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("HTTP 404 Not Found"), "{err}");
    assert!(
        err.contains(&format!("{wrong}/api/paywall/marketplace")),
        "{err}"
    );
}

/// The export API's refusals name the call, the status and the address.
#[tokio::test]
async fn an_export_refusal_names_the_call_and_the_url() {
    let sandbox = spawn(config()).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = format!("{}/wrong-prefix", sandbox.base_url());
    let mut cmd = paydrop(&sandbox, dir.path());
    cmd.env("PAYDROP_EXPORT_BASE_URL", &wrong)
        .args(["export", "payments", "--summary"]);
    let (code, out, err) = run(cmd).await;
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("not found (404)"), "{err}");
    assert!(err.contains(&format!("POST {wrong}/")), "{err}");
    assert!(!err.contains(TOKEN), "the token leaked: {err}");
}
