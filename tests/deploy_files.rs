//! What operators deploy (`deploy/`): the dashboard and the alert rules name
//! only metrics a running daemon serves on `/metrics`, the dashboard is JSON,
//! the rules file has the shape `promtool` wants, and the systemd unit passes
//! `systemd-analyze verify` (each tool run when installed, skipped loudly
//! otherwise).

mod watch_common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use paydrop::watch::DONE;
use watch_common::*;

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy(name)).unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

/// Every `paydrop_…` name in a PromQL expression or a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("paydrop_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.insert(name);
    }
    out
}

/// The metric names a `/metrics` text declares with `# TYPE`.
fn served(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

/// The `expr:` values of the rules file (one line each, as written there),
/// after checking its shape: `groups:`, each rule with `alert`, `expr`,
/// `labels.severity` and `annotations.summary`.
fn rule_exprs(rules: &str) -> Vec<String> {
    assert!(rules.lines().any(|l| l == "groups:"), "no groups:");
    let mut exprs = Vec::new();
    let blocks: Vec<&str> = rules.split("      - alert: ").skip(1).collect();
    assert!(!blocks.is_empty(), "no alert rules");
    for block in blocks {
        let alert = block.lines().next().unwrap_or_default();
        assert!(
            alert.starts_with("Paydrop") && !alert.contains(' '),
            "{alert}"
        );
        let expr = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("expr: "))
            .unwrap_or_else(|| panic!("{alert}: no expr"));
        for needed in ["labels:", "severity:", "annotations:", "summary:"] {
            assert!(block.contains(needed), "{alert}: no {needed}");
        }
        for line in block.lines().skip(1) {
            assert!(!line.contains('\t'), "{alert}: a tab in YAML");
        }
        exprs.push(expr.to_string());
    }
    exprs
}

/// A tool's run, or None (said loudly) when it is not installed.
fn run_tool(tool: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(tool).args(args).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: {tool} is not installed; deploy/ not checked with it");
            None
        }
        Err(e) => panic!("{tool}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_rules_name_only_metrics_the_daemon_serves() {
    let rig = Rig::start().await;
    let daemon = rig.daemon(rig.config()).await;
    rig.drop_file("d.csv", &payments(81, 3));
    rig.wait_filed(DONE, "d.csv").await;
    let text = daemon.metrics_when("paydrop_files_done_total", "1").await;
    daemon.stop().await;
    let served = served(&text);
    assert!(served.contains("paydrop_last_success_timestamp_seconds"));

    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana-dashboard.json")).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut used = BTreeSet::new();
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets of a panel");
        for t in targets {
            let expr = t["expr"].as_str().expect("a PromQL expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}: no paydrop metric");
            used.extend(names);
        }
    }
    let rules = read("paydrop.rules.yml");
    for expr in rule_exprs(&rules) {
        // `up` is Prometheus's own series about the scrape.
        assert!(
            !metric_names(&expr).is_empty() || expr.starts_with("up{"),
            "{expr}"
        );
        used.extend(metric_names(&expr));
    }
    let unknown: Vec<_> = used.difference(&served).collect();
    assert!(
        unknown.is_empty(),
        "not served by /metrics: {unknown:?}\nserved: {served:?}"
    );
    for needed in [
        "paydrop_parts_outcome_unknown",
        "paydrop_files_failed_total",
        "paydrop_last_success_timestamp_seconds",
        "paydrop_files_waiting",
    ] {
        assert!(used.contains(needed), "the alerts watch {needed}");
    }
}

#[test]
fn the_rules_pass_promtool_when_installed() {
    rule_exprs(&read("paydrop.rules.yml"));
    let path = deploy("paydrop.rules.yml");
    if let Some(out) = run_tool("promtool", &["check", "rules", path.to_str().unwrap()]) {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_unit_passes_systemd_analyze_verify_when_installed() {
    let unit = read("paydrop.service");
    for needed in [
        "Restart=on-failure",
        "Environment=NO_COLOR=1",
        "--config /etc/paydrop/paydrop.toml watch",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    // verify wants the binary ExecStart names to exist: point it at the
    // one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("paydrop.service");
    let unit = unit.replace("/usr/local/bin/paydrop", env!("CARGO_BIN_EXE_paydrop"));
    std::fs::write(&local, unit).unwrap();
    let Some(out) = run_tool("systemd-analyze", &["verify", local.to_str().unwrap()]) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Without a running systemd (a container) verify cannot load anything;
    // that is no finding about the unit.
    if stderr.contains("System has not been booted with systemd")
        || stderr.contains("Failed to initialize manager")
        || stderr.contains("Failed to connect to bus")
    {
        eprintln!("SKIPPED: systemd-analyze cannot run here: {stderr}");
        return;
    }
    let findings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("paydrop.service"))
        .collect();
    assert!(
        out.status.success() && findings.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

#[test]
fn the_dockerfile_builds_as_a_non_root_user_with_volumes() {
    let docker = read("Dockerfile");
    let froms = docker.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "a multi-stage build");
    assert!(docker.contains("cargo build --release --locked"));
    assert!(docker.lines().any(|l| l.starts_with("USER paydrop")));
    assert!(docker.contains(r#"VOLUME ["/data/inbox", "/data/ledger"]"#));
    assert!(docker.contains("NO_COLOR=1"));
}
