//! A daemon given a wrong base path says so: the 404 and the URL it went
//! to, in the failed file's report or in the warning of an unknown outcome.
//! (A binary of its own: it may read the captured log, which the daemons of
//! other tests would crowd.)

mod watch_common;

use paydrop::watch::FAILED;
use watch_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_base_path_is_reported_with_the_url_and_the_404() {
    init_logs();
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let mut config = rig.config();
    let wrong = format!("{}/wrong-prefix", rig.sandbox.base_url());
    config.provider.base_url = Some(wrong.clone());
    let daemon = rig.daemon(config).await;
    rig.drop_file("w.csv", &payments(73, 2));
    let url = format!("{wrong}/api/paywall/payment/bulk/file/startdirect");
    // The server answers 404, perhaps before it has read the streamed
    // upload, closing the connection: then the upload's own status is lost
    // to the client and the part is of unknown outcome (a WARN, with the
    // bulk inquiry's 404s); else the refusal files it in failed/.
    let said = wait_for("the file's outcome", || {
        let failed = rig.sub(FAILED);
        let report = std::fs::read_dir(&failed)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("w.csv.report.json"));
        match report {
            Some(r) => read_json(&r)["reason"].as_str().map(str::to_string),
            None => log_lines(&["WARN", "w.csv", "OUTCOME UNKNOWN"])
                .into_iter()
                .next(),
        }
    })
    .await;
    assert!(said.contains(&url), "{said}");
    assert!(said.contains("404 Not Found"), "{said}");
    daemon.stop().await;
}
