//! A daemon given a wrong base path: the upload's warning names the URL it
//! went to and the 404s of the bulk inquiry. (A binary of its own: it reads
//! the captured log, which the daemons of other tests would crowd.)

mod watch_common;

use watch_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_base_path_is_a_warning_naming_the_url_and_the_404s() {
    init_logs();
    let rig = Rig::start_with(|s| s.bulk.callback.delay = NEVER).await;
    let mut config = rig.config();
    let wrong = format!("{}/wrong-prefix", rig.sandbox.base_url());
    config.provider.base_url = Some(wrong.clone());
    let daemon = rig.daemon(config).await;
    rig.drop_file("w.csv", &payments(73, 2));
    // The server answers 404 before it reads the streamed upload and closes
    // the connection: the upload's own status is lost to the client, so the
    // part is of unknown outcome; the bulk inquiry's 404s say why.
    let line = wait_for("the WARN line", || {
        log_lines(&["WARN", "w.csv", "OUTCOME UNKNOWN"])
            .into_iter()
            .next()
    })
    .await;
    assert!(
        line.contains(&format!(
            "{wrong}/api/paywall/payment/bulk/file/startdirect"
        )),
        "{line}"
    );
    assert!(line.contains("404 Not Found"), "{line}");
    daemon.stop().await;
}
