//! `paydrop doctor` through the binary against the embedded sandbox: good
//! settings are all ok, a wrong key fails naming the credentials, an
//! unreachable or wrong base fails naming the address, a missing inbox is
//! flagged; secrets never appear.

mod common_submit;

use common_submit::{Run, World, API_CLIENT, API_KEY};
use serde_json::Value;

/// Writes a config with one inbox (`inbox`, created when `create`) and a
/// webhook hash key, and returns the path.
fn config(world: &World, create: bool) -> std::path::PathBuf {
    let inbox = world.path("inbox");
    if create {
        std::fs::create_dir_all(&inbox).unwrap();
    }
    let path = world.path("paydrop.toml");
    std::fs::write(
        &path,
        format!(
            "[watch]\ncallback_bind = \"127.0.0.1:0\"\nwebhook_hash_key = \"hk-Zr9-secret\"\n\n\
             [[watch.inbox]]\npath = \"{}\"\npattern = 1\n",
            inbox.display()
        ),
    )
    .unwrap();
    path
}

async fn doctor(world: &World, base: &str, key: &str) -> (Run, Value) {
    let mut cmd = world.cli(["doctor", "--json"]);
    cmd.env("PAYDROP_BASE_URL", base)
        .env("PAYDROP_API_KEY", key);
    let run = world.run(cmd).await;
    for secret in [API_KEY, API_CLIENT, "hk-Zr9-secret", key] {
        assert!(
            !run.all().contains(secret),
            "a secret leaked:\n{}",
            run.all()
        );
    }
    let json: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}):\n{}", run.all()));
    (run, json)
}

/// `(level, topic, text)` of every check.
fn checks(json: &Value) -> Vec<(String, String, String)> {
    json["checks"]
        .as_array()
        .expect("a checks array")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().expect("a string").to_string();
            (s("level"), s("topic"), s("text"))
        })
        .collect()
}

fn check<'a>(all: &'a [(String, String, String)], topic: &str) -> &'a (String, String, String) {
    all.iter()
        .find(|c| c.1 == topic)
        .unwrap_or_else(|| panic!("no {topic} check in {all:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_settings_are_all_ok_and_the_text_form_says_the_same() {
    let world = World::start().await;
    config(&world, true);
    let base = world.sandbox.base_url();
    let (run, json) = doctor(&world, &base, API_KEY).await;
    run.expect_code(0);
    assert_eq!(json["ok"], Value::Bool(true));
    let all = checks(&json);
    let not_ok: Vec<_> = all
        .iter()
        .filter(|c| c.0 != "ok" && c.1 != "ledger")
        .collect();
    // The ledger does not exist before the first command: a warning.
    assert!(not_ok.is_empty(), "{all:#?}");
    assert!(check(&all, "probe").2.contains("credentials accepted"));
    assert!(check(&all, "currency").2.contains("TRY = 1"));
    let cb = &check(&all, "callback").2;
    assert!(cb.contains("webhook hash key set"), "{cb}");
    assert!(cb.contains("callback_secret not set"), "{cb}");
    // Paths are absolute.
    let inbox = &check(&all, "inbox").2;
    assert!(inbox.starts_with('/'), "{inbox}");
    assert!(check(&all, "config").2.starts_with('/'));
    assert!(
        world.sandbox.batches().is_empty(),
        "the probe creates nothing"
    );

    let mut cmd = world.cli(["doctor"]);
    cmd.env("PAYDROP_BASE_URL", &base);
    let text = world.run(cmd).await;
    text.expect_code(0);
    assert_eq!(text.stdout.lines().count(), all.len(), "{}", text.stdout);
    assert!(text
        .stdout
        .lines()
        .all(|l| ["ok ", "warn", "fail"].iter().any(|p| l.starts_with(p))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_fails_naming_the_credentials() {
    let world = World::start().await;
    config(&world, true);
    let (run, json) = doctor(&world, &world.sandbox.base_url(), "pk-wrong-key-4Xq").await;
    run.expect_code(1);
    assert_eq!(json["ok"], Value::Bool(false));
    let all = checks(&json);
    let probe = check(&all, "probe");
    assert_eq!(probe.0, "fail", "{all:#?}");
    assert!(probe.2.contains("credentials refused"), "{}", probe.2);
    assert!(probe.2.contains("PAYDROP_API_KEY"), "{}", probe.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_wrong_base_fails_naming_the_address() {
    let world = World::start().await;
    config(&world, true);
    // A port nobody listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let wrong_path = format!("{}/not-the-api", world.sandbox.base_url());
    for (base, says) in [
        (dead.as_str(), "cannot reach"),
        (wrong_path.as_str(), "path is probably wrong"),
        ("127.0.0.1:8080", "is not an absolute URL"),
    ] {
        let (run, json) = doctor(&world, base, API_KEY).await;
        run.expect_code(1);
        let all = checks(&json);
        let failed: Vec<_> = all.iter().filter(|c| c.0 == "fail").collect();
        assert_eq!(failed.len(), 1, "{base}: {all:#?}");
        assert!(failed[0].2.contains(says), "{base}: {all:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_inbox_folder_is_flagged() {
    let world = World::start().await;
    config(&world, false);
    let (run, json) = doctor(&world, &world.sandbox.base_url(), API_KEY).await;
    run.expect_code(0);
    let all = checks(&json);
    let inbox = check(&all, "inbox");
    assert_eq!(inbox.0, "warn", "{all:#?}");
    assert!(inbox.2.contains("does not exist"), "{}", inbox.2);
}
