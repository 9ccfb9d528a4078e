//! The one-command end-to-end run (`paydrop demo`): the embedded sandbox
//! provider and the watch daemon on temporary folders, generated files
//! dropped into the inbox the way a batch integration would (write, then
//! rename), and a summary of what was validated, sent, paid and declined.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use paydrop::config::{Config, InboxConfig, Secret};
use paydrop::pattern::Registry;
use paydrop::upload::{Client, Credentials};
use paydrop::watch::{self, WatchHooks, DONE, FAILED};
use paydrop_generate::{generate, GenOptions};
use paydrop_sandbox::SandboxConfig;

/// Longest the demo waits for a file to be filed and its results to arrive.
const WAIT: Duration = Duration::from_secs(120);

/// Runs the demo with a large file of `rows` rows; prints to `out`.
pub async fn run(registry: Registry, rows: u64, out: &mut impl Write) -> Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix("paydrop-demo-")
        .tempdir()?
        .keep();
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox)?;
    writeln!(out, "paydrop demo in {}", dir.display())?;

    // The provider signs its result callbacks with the merchant's webhook
    // hash key; the daemon checks them with the same key.
    let webhook_hash_key = uuid::Uuid::new_v4().simple().to_string();
    // The independent provider (crates/sandbox): it posts the results as
    // the pages publish them (`file` + `data` with a `Hash`), in pages of
    // 1,000 lines, to the daemon's callback receiver.
    let mut sandbox_config = SandboxConfig::default();
    sandbox_config.bulk.decline_rate = 0.08;
    sandbox_config.bulk.webhook_hash_key = webhook_hash_key.as_str().into();
    let keys = sandbox_config.bulk.keys.clone();
    let sandbox = paydrop_sandbox::spawn(sandbox_config).await?;
    writeln!(out, "  sandbox provider  {}", sandbox.base_url())?;

    let mut config = Config::default();
    config.ledger.path = dir.join("ledger.db");
    config.watch.inboxes.push(InboxConfig {
        path: inbox.clone(),
        pattern: 1,
        currency: "TRY".into(),
        installment: 1,
        half_2d: false,
        compress: Some("gzip".into()),
        level: None,
        compress_file_part: None,
    });
    config.watch.quiet_ms = 300;
    config.watch.rescan_ms = 200;
    config.watch.callback_bind = "127.0.0.1:0".into();
    config.watch.metrics_bind = "127.0.0.1:0".into();
    config.watch.callback_secret = Some(Secret::new(uuid::Uuid::new_v4().simple().to_string()));
    config.watch.webhook_hash_key = Some(Secret::new(webhook_hash_key));
    config.submit.backoff_ms = 100;
    config.submit.backoff_max_ms = 1000;
    let client = Client::new(
        &sandbox.base_url(),
        Credentials {
            api_key: Secret::new(keys.api_key.expose()),
            api_client: Secret::new(keys.api_client.expose()),
        },
        Duration::from_secs(60),
        Duration::from_secs(5),
    )?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(watch::run(
        config,
        registry.clone(),
        client,
        WatchHooks::default(),
        Some(ready_tx),
        async {
            let _ = stop_rx.await;
        },
    ));
    let callback = ready_rx.await.context("the daemon did not start")?.callback;
    writeln!(
        out,
        "  watch daemon      inbox {}, callbacks on {callback}",
        inbox.display()
    )?;

    let pattern = registry.get(1)?;
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging)?;
    let make = |name: &str, rows: u64, error_rate: f64, seed: u64| -> Result<PathBuf> {
        let path = staging.join(name);
        let opts = GenOptions {
            rows,
            error_rate,
            seed,
            ..GenOptions::default()
        };
        generate(paydrop::private::create(&path)?, pattern, &opts)?;
        Ok(path)
    };
    let big = make("payments-large.csv", rows, 0.0, 2026)?;
    let bad = make("payments-with-errors.csv", 5_000, 0.01, 7)?;
    let started = Instant::now();

    drop_into(&big, &inbox)?;
    drop_into(&bad, &inbox)?;
    writeln!(out, "\ndropped payments-large.csv ({rows} rows) and payments-with-errors.csv (5000 rows, 1% broken)")?;
    let large = wait_for(&inbox.join(DONE), "payments-large.csv", "results.json").await?;
    let broken = wait_for(
        &inbox.join(FAILED),
        "payments-with-errors.csv",
        "report.json",
    )
    .await?;
    // The same content again under another name: the ledger must refuse it.
    std::fs::copy(&big, staging.join("payments-large-again.csv"))?;
    drop_into(&staging.join("payments-large-again.csv"), &inbox)?;
    writeln!(
        out,
        "dropped payments-large-again.csv (a copy of payments-large.csv)"
    )?;
    let duplicate = wait_for(
        &inbox.join(FAILED),
        "payments-large-again.csv",
        "report.json",
    )
    .await?;

    writeln!(
        out,
        "\n== results after {:.1} s ==",
        started.elapsed().as_secs_f64()
    )?;
    summarise_done(out, &large)?;
    summarise_failed(out, &broken)?;
    summarise_failed(out, &duplicate)?;
    writeln!(
        out,
        "\nsandbox: {} batches created, {} result callback pages delivered",
        sandbox.batches().len(),
        sandbox.callbacks_delivered()
    )?;
    writeln!(out, "everything is kept in {}", dir.display())?;

    let _ = stop_tx.send(());
    daemon.await??;
    sandbox.shutdown().await;
    Ok(dir)
}

/// Write-then-rename: the daemon never sees a half-written file.
fn drop_into(file: &Path, inbox: &Path) -> Result<()> {
    let name = file
        .file_name()
        .context("file name")?
        .to_string_lossy()
        .into_owned();
    let part = inbox.join(format!("{name}.part"));
    std::fs::copy(file, &part)?;
    std::fs::rename(&part, inbox.join(&name))?;
    Ok(())
}

/// Waits until `folder` holds `*-{name}.{suffix}`; returns that sidecar path.
async fn wait_for(folder: &Path, name: &str, suffix: &str) -> Result<PathBuf> {
    let deadline = Instant::now() + WAIT;
    let wanted = format!("-{name}.{suffix}");
    loop {
        if let Ok(entries) = std::fs::read_dir(folder) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(&wanted) {
                    return Ok(e.path());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("{name} did not reach {} in time", folder.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn read_json(path: &Path) -> Result<Value> {
    Ok(serde_json::from_reader(std::fs::File::open(path)?)?)
}

fn summarise_done(out: &mut impl Write, results: &Path) -> Result<()> {
    let base = results
        .to_string_lossy()
        .trim_end_matches(".results.json")
        .to_string();
    let report = read_json(Path::new(&format!("{base}.report.json")))?;
    let r = read_json(results)?;
    let s = &r["summary"];
    writeln!(out, "\n{} — DONE", report["file"].as_str().unwrap_or("?"))?;
    if let Some(v) = report.get("validation").filter(|v| !v.is_null()) {
        writeln!(
            out,
            "  validated  {} rows, all valid, sha256 {}…",
            v["rows_read"],
            &v["sha256"].as_str().unwrap_or("")[..16]
        )?;
    }
    let batch = &report["batch"];
    for sub in batch["submissions"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  sent       part {}: {} rows, TRY {}, BulkPaymentId {}",
            sub["part"],
            sub["rows"],
            str_of(&sub["amount"]),
            sub["bulk_payment_id"]
        )?;
    }
    writeln!(
        out,
        "  paid       {} rows, TRY {}",
        s["paid"]["rows"],
        str_of(&s["paid"]["amount"])
    )?;
    writeln!(
        out,
        "  declined   {} rows, TRY {}",
        s["declined"]["rows"],
        str_of(&s["declined"]["amount"])
    )?;
    for (code, t) in s["by_code"].as_object().into_iter().flatten() {
        writeln!(
            out,
            "             {code} {:<40} {} rows, TRY {}{}",
            t["message"].as_str().unwrap_or(""),
            t["rows"],
            str_of(&t["amount"]),
            if t["retryable"].as_bool() == Some(true) {
                "  (retry)"
            } else {
                ""
            }
        )?;
    }
    match r["retry_file"].as_str() {
        Some(f) => writeln!(
            out,
            "  retry file {f} ({} rows, TRY {}): drop it into the inbox to retry",
            r["retry"]["rows"],
            str_of(&r["retry"]["amount"])
        )?,
        None => writeln!(
            out,
            "  retry file none: no declined payment is worth retrying"
        )?,
    }
    Ok(())
}

fn summarise_failed(out: &mut impl Write, report: &Path) -> Result<()> {
    let r = read_json(report)?;
    writeln!(
        out,
        "\n{} — FAILED, nothing was sent",
        r["file"].as_str().unwrap_or("?")
    )?;
    writeln!(out, "  reason     {}", r["reason"].as_str().unwrap_or("?"))?;
    if let Some(errors) = r["validation"]["errors"].as_array() {
        for e in errors.iter().take(5) {
            writeln!(
                out,
                "  line {:<6} {} '{}': {}",
                e["line"],
                e["column"].as_str().unwrap_or("(row)"),
                e["value"].as_str().unwrap_or(""),
                e["reason"].as_str().unwrap_or("")
            )?;
        }
        if errors.len() > 5 {
            writeln!(out, "  … {} more in {}", errors.len() - 5, report.display())?;
        }
    }
    Ok(())
}

fn str_of(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}
