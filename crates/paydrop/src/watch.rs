//! The drop-folder daemon: watches inboxes, takes each completely written
//! file, submits it, and files it under `done/` or `failed/` with a report;
//! runs the result-callback server ([`crate::callback`]) beside.
//!
//! A file's way: `inbox/x.csv` → (stable for the quiet period) → atomic rename
//! to `processing/<time>-<n>-x.csv` → submit → `done/` or `failed/` beside a
//! `.report.json`. The rename is the claim: a file in `processing/` is ours,
//! and after a crash the restart submits it again, which the ledger turns into
//! "finish the bookkeeping" (already accepted), "resume with the same codes"
//! (outcome unknown) or "start" (never sent). Nothing is moved or deleted
//! before its outcome is in the ledger.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use rust_decimal::Decimal;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::callback::{self, prometheus};
use crate::compress::{Codec, Compression};
use crate::config::{Config, InboxConfig};
use crate::currency::Currency;
use crate::ledger::{Batch, Ledger};
use crate::pattern::{Pattern, Registry};
use crate::submit::{submit_file, SubmitError, SubmitOptions, Submitted};
use crate::upload::{BodyMode, Client};
use crate::validate::{Fatal, Report};
use crate::{mask, names};

mod scan;
use scan::Scan;
pub use scan::{ignored, skipped};

/// Sub-folders of every inbox.
pub const PROCESSING: &str = "processing";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";

/// A watched folder, resolved.
pub struct Inbox {
    pub dir: PathBuf,
    pub pattern: Pattern,
    pub currency: Currency,
    pub currency_id: u32,
    pub installment: u32,
    pub half_2d: bool,
    pub compression: Compression,
    pub mode: BodyMode,
}

impl Inbox {
    fn resolve(cfg: &InboxConfig, config: &Config, registry: &Registry) -> Result<Inbox> {
        let currency: Currency = cfg.currency.parse().map_err(anyhow::Error::msg)?;
        let codec: Codec = cfg
            .compress
            .as_deref()
            .unwrap_or(&config.submit.compress)
            .parse()
            .map_err(anyhow::Error::msg)?;
        Ok(Inbox {
            dir: cfg.path.clone(),
            pattern: registry.get(cfg.pattern)?.clone(),
            currency,
            currency_id: config.currency_id(currency)?,
            installment: cfg.installment,
            half_2d: cfg.half_2d,
            compression: Compression::new(codec, cfg.level.or(config.submit.level))
                .map_err(anyhow::Error::msg)?,
            mode: if cfg
                .compress_file_part
                .unwrap_or(config.submit.compress_file_part)
            {
                BodyMode::FilePart
            } else {
                BodyMode::WholeBody
            },
        })
    }

    fn sub(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn ensure_dirs(&self) -> std::io::Result<()> {
        for d in [PROCESSING, DONE, FAILED] {
            std::fs::create_dir_all(self.sub(d))?;
        }
        Ok(())
    }
}

/// Counters for `/metrics` (Prometheus text format).
#[derive(Default)]
pub struct Metrics {
    pub files_claimed: AtomicU64,
    pub files_done: AtomicU64,
    pub files_failed: AtomicU64,
    pub files_deferred: AtomicU64,
    pub rows_submitted: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub submit_millis: AtomicU64,
    /// Exact, printed as a decimal literal (never through a float).
    pub amount_submitted: std::sync::Mutex<Decimal>,
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        for (name, help, v) in [
            (
                "paydrop_files_claimed_total",
                "Files taken from an inbox",
                c(&self.files_claimed),
            ),
            (
                "paydrop_files_done_total",
                "Files submitted and moved to done/",
                c(&self.files_done),
            ),
            (
                "paydrop_files_failed_total",
                "Files moved to failed/",
                c(&self.files_failed),
            ),
            (
                "paydrop_files_deferred_total",
                "Files left in processing/ to retry later",
                c(&self.files_deferred),
            ),
            (
                "paydrop_rows_submitted_total",
                "Payment rows accepted by the provider",
                c(&self.rows_submitted),
            ),
            (
                "paydrop_upload_bytes_total",
                "File bytes streamed into uploads",
                c(&self.upload_bytes),
            ),
            (
                "paydrop_submit_milliseconds_total",
                "Time spent validating and submitting",
                c(&self.submit_millis),
            ),
        ] {
            prometheus(&mut out, "counter", name, help, v);
        }
        let amount = *self.amount_submitted.lock().expect("metrics lock");
        prometheus(
            &mut out,
            "counter",
            "paydrop_amount_submitted_total",
            "Sum of accepted amounts, all currencies",
            amount,
        );
        out
    }
}

/// Settings of the daemon not in the config file (tests set them).
#[derive(Clone, Default)]
pub struct WatchHooks {
    /// Makes the next N moves to `done/`/`failed/` fail, as a full disk would.
    pub fail_moves: Arc<AtomicU32>,
}

/// Everything the workers share.
struct Shared {
    config: Config,
    inboxes: Vec<Arc<Inbox>>,
    client: Client,
    callback_url: String,
    metrics: Arc<Metrics>,
    hooks: WatchHooks,
    /// The result-callback server, which also writes a batch's results.
    results: Arc<callback::Receiver>,
}

/// A claimed file waiting for, or in, processing.
#[derive(Clone, Debug)]
struct Claimed {
    inbox: usize,
    path: PathBuf,
    original: String,
    /// At least [`BIG_FILE`] bytes: big files never take the last free slot.
    big: bool,
}

/// Files of this size or more count as big for scheduling.
pub const BIG_FILE: u64 = 16 << 20;

fn is_big(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() >= BIG_FILE)
}

/// What happened to one file.
enum Fate {
    Done,
    Failed,
    /// Stays in `processing/`; retried after the provider comes back.
    Deferred,
    /// A part's outcome is unknown: the file stays in `processing/` and is
    /// looked at again every `unknown_recheck_secs` (bulk inquiry, `paydrop
    /// resolve`), never sent again blindly and never in the way of others.
    Held,
}

/// Runs the daemon until `shutdown` resolves. Returns the address of the
/// callback server through `ready` once it listens.
pub async fn run(
    config: Config,
    registry: Registry,
    client: Client,
    hooks: WatchHooks,
    ready: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    anyhow::ensure!(
        !config.watch.inboxes.is_empty(),
        "no inbox configured: add a [[watch.inbox]] with path and pattern to paydrop.toml"
    );
    let inboxes = config
        .watch
        .inboxes
        .iter()
        .map(|i| Inbox::resolve(i, &config, &registry).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    for inbox in &inboxes {
        inbox
            .ensure_dirs()
            .with_context(|| format!("preparing {}", inbox.dir.display()))?;
    }
    check_callback_listener(&config.watch)?;
    let listener = tokio::net::TcpListener::bind(&config.watch.callback_bind)
        .await
        .with_context(|| {
            format!(
                "binding the callback server to {}",
                config.watch.callback_bind
            )
        })?;
    let addr = listener.local_addr()?;
    let callback_url = match (&config.watch.callback_url, &config.watch.callback_secret) {
        (Some(url), _) => url.clone(),
        (None, Some(secret)) => format!("http://{addr}/callback/{}", secret.expose()),
        (None, None) => format!("http://{addr}/callback"),
    };
    let metrics = Arc::new(Metrics::default());
    let results = callback::Receiver::new(config.clone(), registry, metrics.clone())?;
    let shared = Arc::new(Shared {
        config,
        inboxes,
        client,
        callback_url,
        metrics,
        hooks,
        results: results.clone(),
    });
    // Aborted on every way out, also when this future is dropped: the
    // callback server must not outlive the daemon.
    let _server = AbortOnDrop(tokio::spawn(callback::serve(listener, results)));
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }
    tracing::info!(callback = %addr, inboxes = shared.inboxes.len(), "watching");
    watch_loop(shared.clone(), shutdown).await
}

/// A callback listener other machines can reach must have its path secret
/// (the `Hash` alone is checked only after the whole body is read), and a
/// configured `callback_url` must carry that secret, or every callback would
/// be refused.
fn check_callback_listener(watch: &crate::config::WatchConfig) -> Result<()> {
    let bind = watch.callback_bind.trim();
    let loopback = match bind.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => bind.starts_with("localhost:"),
    };
    anyhow::ensure!(
        loopback || watch.callback_secret.is_some(),
        "the callback listener {bind} can be reached from other machines, but [watch] \
         callback_secret is not set: set it (a long random string; it becomes part of the \
         callback address) or bind to 127.0.0.1 behind a reverse proxy"
    );
    if let (Some(url), Some(secret)) = (&watch.callback_url, &watch.callback_secret) {
        if !url.contains(secret.expose()) {
            tracing::warn!(
                "[watch] callback_url does not contain callback_secret: the provider's result \
                 callbacks will be refused with 401; end the address with /callback/<secret>"
            );
        }
    }
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn watch_loop(
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let (wake_tx, mut wake_rx) = mpsc::channel::<()>(16);
    let mut watchers = HashMap::new();
    let cfg = &shared.config.watch;
    let quiet = Duration::from_millis(cfg.quiet_ms);
    let tick = Duration::from_millis(cfg.rescan_ms.min(cfg.quiet_ms / 2).max(50));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rescan = Duration::from_millis(cfg.rescan_ms);
    let mut scan = Scan::default();
    let mut queue: VecDeque<Claimed> = recover(&shared);
    let mut running: JoinSet<(Claimed, Fate)> = JoinSet::new();
    // Which running tasks are big files (by task id, so that a task that
    // panicked is still accounted for).
    let mut big_tasks: HashMap<tokio::task::Id, bool> = HashMap::new();
    let mut paused_until: Option<Instant> = None;
    let mut held: Vec<(Instant, Claimed)> = Vec::new();
    let recheck = Duration::from_secs(shared.config.watch.unknown_recheck_secs);
    let mut counter = 0u64;
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = wake_rx.recv() => {}
            _ = interval.tick() => {}
            Some(done) = running.join_next_with_id() => {
                let id = match &done {
                    Ok((id, _)) => *id,
                    Err(e) => e.id(),
                };
                big_tasks.remove(&id);
                if let Ok((_, (claimed, Fate::Held))) = done {
                    held.push((Instant::now() + recheck, claimed));
                } else if let Ok((_, (claimed, Fate::Deferred))) = done {
                    // Keep arrival order (claim names sort by time): the
                    // deferred file goes back before every later file, after
                    // a pause that lets the provider come back.
                    let at = queue
                        .iter()
                        .position(|c| c.path.file_name() > claimed.path.file_name())
                        .unwrap_or(queue.len());
                    queue.insert(at, claimed);
                    paused_until = Some(Instant::now() + Duration::from_millis(shared.config.submit.backoff_max_ms.min(30_000)));
                }
            }
        }
        for (i, inbox) in shared.inboxes.iter().enumerate() {
            keep_watching(&mut watchers, i, inbox, &wake_tx);
            for path in scan.stable_files(&inbox.dir, quiet) {
                counter += 1;
                // A file that cannot be read is never claimed: nothing could
                // be done with it in processing/, on any restart.
                if let Err(e) = crate::validate::open_regular(&path) {
                    refuse_unreadable(&shared, inbox, &path, counter, &e, &mut scan, rescan);
                    continue;
                }
                match claim(inbox, &path, counter) {
                    Ok(claimed_path) => {
                        shared.metrics.files_claimed.fetch_add(1, Ordering::Relaxed);
                        queue.push_back(Claimed {
                            inbox: i,
                            original: shown_name(&path),
                            big: is_big(&claimed_path),
                            path: claimed_path,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(file = %shown(&path), error = %e, "cannot claim")
                    }
                }
            }
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut held)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        held = later;
        for (_, claimed) in due {
            let at = queue
                .iter()
                .position(|c| c.path.file_name() > claimed.path.file_name())
                .unwrap_or(queue.len());
            queue.insert(at, claimed);
        }
        if paused_until.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        paused_until = None;
        // Big files may use all slots but one, so a small file dropped behind
        // fifty big ones still goes through; within each kind, arrival order.
        let limit = shared.config.watch.concurrency.max(1);
        let big_limit = limit.saturating_sub(1).max(1);
        while running.len() < limit {
            let big_running = big_tasks.values().filter(|b| **b).count();
            let next = if big_running < big_limit {
                (!queue.is_empty()).then_some(0)
            } else {
                queue.iter().position(|c| !c.big)
            };
            let Some(claimed) = next.and_then(|i| queue.remove(i)) else {
                break;
            };
            let big = claimed.big;
            let shared = shared.clone();
            let handle = running.spawn(async move {
                let fate = process(&shared, &claimed).await;
                (claimed, fate)
            });
            big_tasks.insert(handle.id(), big);
        }
    }

    tracing::info!(
        in_flight = running.len(),
        "stopping: no new files are taken"
    );
    let grace = Duration::from_secs(shared.config.watch.shutdown_secs);
    let drained = tokio::time::timeout(grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "work in flight did not finish in time; it stays in processing/ and resumes on restart"
        );
        running.abort_all();
    }
    Ok(())
}

/// Files left in `processing/` by an earlier run, in claim order.
fn recover(shared: &Shared) -> VecDeque<Claimed> {
    let mut out = Vec::new();
    for (i, inbox) in shared.inboxes.iter().enumerate() {
        let Ok(entries) = std::fs::read_dir(inbox.sub(PROCESSING)) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_file() {
                let name = shown_name(&path);
                let original = name.splitn(3, '-').nth(2).unwrap_or(&name).to_string();
                out.push(Claimed {
                    inbox: i,
                    big: is_big(&path),
                    path,
                    original,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
    if !out.is_empty() {
        tracing::info!(files = out.len(), "resuming files left in processing/");
    }
    out.into()
}

/// (Re-)establishes the notify watcher of an inbox; the folder may have been
/// deleted and recreated, which silently ends a watch. The bool is whether
/// `processing/` existed since the watch began.
fn keep_watching(
    watchers: &mut HashMap<usize, (notify::RecommendedWatcher, bool)>,
    i: usize,
    inbox: &Inbox,
    wake: &mpsc::Sender<()>,
) {
    use notify::Watcher;
    if !inbox.dir.is_dir() {
        watchers.remove(&i);
        return;
    }
    let complete = inbox.sub(PROCESSING).is_dir();
    match watchers.get_mut(&i) {
        // Recreated inbox: watch it anew. Its sub-folders are made when a
        // file needs them, not here: recreating them at once would undo an
        // `rm -rf` of the inbox under its feet ("Directory not empty").
        Some((_, had)) if *had && !complete => {
            watchers.remove(&i);
        }
        Some((_, had)) => {
            *had |= complete;
            return;
        }
        None => {}
    }
    let wake = wake.clone();
    let made = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the folder (every scan does) raises open and close events
        // on it: waking up for them made each scan cause the next one, about
        // 1,800 a second on an idle inbox. A closed writer still counts.
        if let Ok(e) = &event {
            use notify::event::{AccessKind, AccessMode, EventKind};
            if matches!(e.kind, EventKind::Access(k) if k != AccessKind::Close(AccessMode::Write)) {
                return;
            }
        }
        // Any other event just triggers a scan; a full queue means one is
        // pending.
        let _ = wake.try_send(());
    })
    .and_then(|mut w| {
        w.watch(&inbox.dir, notify::RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    match made {
        Ok(w) => {
            watchers.insert(i, (w, complete));
        }
        Err(e) => {
            tracing::warn!(dir = %inbox.dir.display(), error = %e, "no file events; relying on rescans")
        }
    }
}

/// Files paydrop writes beside a filed payment file.
fn is_sidecar(name: &str) -> bool {
    [".report.json", ".results.json", ".retry.csv"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Moves a file into `processing/` under a name that never collides.
fn claim(inbox: &Inbox, path: &Path, counter: u64) -> std::io::Result<PathBuf> {
    let to = inbox.sub(PROCESSING).join(claim_name(path, counter));
    // The inbox may have been deleted and recreated meanwhile.
    std::fs::create_dir_all(inbox.sub(PROCESSING))?;
    std::fs::rename(path, &to)?;
    tracing::info!(file = %shown(path), claimed = %shown(&to), "claimed");
    Ok(to)
}

/// A path as logs and reports show it: sanitised (a name can hold a line
/// break) and masked (or a card number).
fn shown(path: &Path) -> String {
    mask::card_numbers(&names::path(path))
}

/// A file name as logs and reports show it (see [`shown`]).
fn shown_name(path: &Path) -> String {
    mask::card_numbers(&names::file_name(path))
}

/// `<time>-<n>-<name>`: unique, sorting in arrival order, and keeping the
/// original name (bytes and all) after the second dash.
fn claim_name(path: &Path, counter: u64) -> std::ffi::OsString {
    let mut name = std::ffi::OsString::from(format!(
        "{}-{counter:06}-",
        Utc::now().format("%Y%m%dT%H%M%S%3fZ")
    ));
    name.push(path.file_name().unwrap_or_default());
    name
}

/// Files a file that cannot be read straight from the inbox to `failed/`,
/// with a report saying why. When even that fails it stays in the inbox,
/// with one ERROR per rescan period.
fn refuse_unreadable(
    shared: &Shared,
    inbox: &Inbox,
    path: &Path,
    counter: u64,
    error: &Fatal,
    scan: &mut Scan,
    rescan: Duration,
) {
    let reason = unreadable_reason(error);
    let dest = inbox.sub(FAILED).join(claim_name(path, counter));
    let claimed_as = shown(&dest);
    let report = FileReport {
        file: &shown_name(path),
        claimed_as: claimed_as.clone(),
        state: FAILED,
        at: Utc::now(),
        reason: Some(reason.clone()),
        validation: None,
        batch: None,
        notices: &[],
    };
    let report_path = sibling(&dest, "report.json");
    let filed = std::fs::create_dir_all(inbox.sub(FAILED))
        .and_then(|()| write_json(&report_path, &report))
        .and_then(|()| {
            std::fs::rename(path, &dest).inspect_err(|_| {
                let _ = std::fs::remove_file(&report_path);
            })
        });
    match filed {
        Ok(()) => {
            shared.metrics.files_failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(file = %shown(path), to = %claimed_as, reason = %reason, "filed unread");
        }
        Err(e) if scan.stuck(path, rescan) => tracing::error!(
            file = %shown(path),
            reason = %reason,
            error = %e,
            "cannot read the file, nor move it to failed/: it stays in the inbox until it is \
             readable or removed"
        ),
        Err(_) => {}
    }
}

/// Why a file could not be read, and what to do about it.
fn unreadable_reason(error: &Fatal) -> String {
    #[cfg(unix)]
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let who = format!("the paydrop daemon (uid {})", unsafe { libc::geteuid() });
    #[cfg(not(unix))]
    let who = "the paydrop daemon".to_string();
    format!(
        "{error}; nothing was sent: {who} must be able to read the file: fix its permissions \
         (chmod / chown) and drop it into the inbox again"
    )
}

/// The report written beside a file in `done/` or `failed/`.
#[derive(Serialize)]
struct FileReport<'a> {
    file: &'a str,
    claimed_as: String,
    state: &'static str,
    at: chrono::DateTime<Utc>,
    reason: Option<String>,
    validation: Option<&'a Report>,
    batch: Option<&'a Batch>,
    notices: &'a [String],
}

async fn process(shared: &Shared, claimed: &Claimed) -> Fate {
    let inbox = &shared.inboxes[claimed.inbox];
    let started = Instant::now();
    let mut ledger = match Ledger::open(&shared.config.ledger.path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "ledger unavailable; file waits in processing/");
            return Fate::Deferred;
        }
    };
    let configured = match shared.config.submit_options(inbox.currency) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "submit settings unusable; file waits in processing/");
            return Fate::Deferred;
        }
    };
    let opts = SubmitOptions {
        currency_id: inbox.currency_id,
        installment: inbox.installment,
        half_2d: inbox.half_2d,
        callback_address: Some(shared.callback_url.clone()),
        compression: inbox.compression,
        mode: inbox.mode,
        ..configured
    };
    let sent = Arc::new(AtomicU64::new(0));
    let outcome = submit_file(
        &claimed.path,
        &inbox.pattern,
        &mut ledger,
        &shared.client,
        &opts,
        sent.clone(),
    )
    .await;
    let m = &shared.metrics;
    m.upload_bytes
        .fetch_add(sent.load(Ordering::Relaxed), Ordering::Relaxed);
    m.submit_millis
        .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    // Compared with the ledger's record, so not sanitised; shown through
    // `shown`.
    let claimed_path = claimed.path.display().to_string();
    let shown_path = shown(&claimed.path);
    let (fate, reason, report, batch, notices) = match outcome {
        // The batch was created for another file with the same content,
        // still in flight when this copy was claimed: the provider
        // deduplicated its codes, and this copy is a duplicate.
        Ok(Submitted { report, batch, .. }) if batch.file != claimed_path => (
            Fate::Failed,
            Some(format!(
                "duplicate: this content was already submitted: {}",
                crate::submit::describe_batch(&batch)
            )),
            Some(report),
            None,
            Vec::new(),
        ),
        Ok(Submitted {
            report,
            batch,
            notices,
        }) => {
            m.rows_submitted.fetch_add(batch.rows, Ordering::Relaxed);
            let mut sum = m.amount_submitted.lock().expect("metrics lock");
            match sum.checked_add(batch.amount) {
                Some(s) => *sum = s,
                None => {
                    tracing::warn!("the submitted-amount metric overflows; it stays where it was")
                }
            }
            (Fate::Done, None, Some(report), Some(batch), notices)
        }
        Err(SubmitError::AlreadySubmitted { sha, earlier }) => {
            // Ours from before a crash (accepted, not yet moved), or a
            // duplicate someone dropped.
            let own = ledger.batches_for(&sha).ok().and_then(|bs| {
                bs.into_iter()
                    .find(|b| b.is_accepted() && b.file == claimed_path)
            });
            match own {
                Some(b) => (
                    Fate::Done,
                    None,
                    None,
                    Some(b),
                    vec!["accepted before a restart".into()],
                ),
                None => (
                    Fate::Failed,
                    Some(format!(
                        "duplicate: this content was already submitted: {earlier}"
                    )),
                    None,
                    None,
                    Vec::new(),
                ),
            }
        }
        Err(SubmitError::Invalid(report)) => (
            Fate::Failed,
            Some(format!(
                "{} of {} rows are invalid; nothing was sent",
                report.rows_invalid, report.rows_read
            )),
            Some(*report),
            None,
            Vec::new(),
        ),
        Err(
            e @ (SubmitError::Unusable(_)
            | SubmitError::Rejected { .. }
            | SubmitError::Conflict { .. }
            | SubmitError::RowsAlreadySent { .. }
            | SubmitError::FileChanged { .. }
            | SubmitError::Currency { .. }),
        ) => {
            match &e {
                SubmitError::Unusable(f @ Fatal::Open { .. }) => {
                    if claimed.path.symlink_metadata().is_err() {
                        // Deleted while we worked: nothing left to file.
                        tracing::error!(file = %shown_path, error = %e, "file disappeared");
                        m.files_failed.fetch_add(1, Ordering::Relaxed);
                        return Fate::Failed;
                    }
                    // Unreadable (e.g. claimed by an older version): filed in
                    // failed/, never claimed again on a restart.
                    (
                        Fate::Failed,
                        Some(unreadable_reason(f)),
                        None,
                        None,
                        Vec::new(),
                    )
                }
                _ => (Fate::Failed, Some(e.to_string()), None, None, Vec::new()),
            }
        }
        Err(e @ (SubmitError::Unknown { .. } | SubmitError::InFlight { .. })) => {
            tracing::warn!(file = %claimed_path, error = %e, "outcome unknown; the file stays in processing/ and is not sent again until the bulk inquiry or `paydrop resolve` settles it");
            m.files_deferred.fetch_add(1, Ordering::Relaxed);
            return Fate::Held;
        }
        Err(
            e @ (SubmitError::NotSent { .. }
            | SubmitError::Ledger(_)
            | SubmitError::Spool(_)
            | SubmitError::Join(_)),
        ) => {
            tracing::warn!(file = %shown_path, error = %e, "no definite outcome; the file stays in processing/ and is retried");
            m.files_deferred.fetch_add(1, Ordering::Relaxed);
            return Fate::Deferred;
        }
    };
    let state = if matches!(fate, Fate::Done) {
        DONE
    } else {
        FAILED
    };
    let file_report = FileReport {
        file: &claimed.original,
        claimed_as: shown_path.clone(),
        state,
        at: Utc::now(),
        // A provider's message or an error may quote a value.
        reason: reason.map(|r| mask::card_numbers(&r)),
        validation: report.as_ref(),
        batch: batch.as_ref(),
        notices: &notices,
    };
    match file_away(shared, inbox, claimed, state, &file_report) {
        Ok(dest) => {
            if let Some(b) = &batch {
                if let Err(e) = ledger.set_batch_file(b.id, &dest.display().to_string()) {
                    tracing::error!(error = %e, "cannot record the new place of the file");
                }
            }
            let counter = if state == DONE {
                &m.files_done
            } else {
                &m.files_failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::info!(file = %claimed.original, to = %shown(&dest), reason = file_report.reason.as_deref().unwrap_or(""), "filed");
            if let Some(b) = &batch {
                shared.results.write_outputs(b.id).await;
            }
            fate
        }
        Err(e) => {
            tracing::error!(file = %shown_path, error = %e, "cannot move the file; it stays in processing/ and is retried");
            m.files_deferred.fetch_add(1, Ordering::Relaxed);
            Fate::Deferred
        }
    }
}

/// Writes the report, then moves the file beside it. The file moves last, so
/// a failure leaves it in `processing/`, to be handled again.
fn file_away(
    shared: &Shared,
    inbox: &Inbox,
    claimed: &Claimed,
    state: &str,
    report: &FileReport<'_>,
) -> std::io::Result<PathBuf> {
    let dest = inbox
        .sub(state)
        .join(claimed.path.file_name().unwrap_or_default());
    let report_path = sibling(&dest, "report.json");
    if shared
        .hooks
        .fail_moves
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "injected: no space left on device",
        ));
    }
    std::fs::create_dir_all(inbox.sub(state))?;
    write_json(&report_path, report)?;
    std::fs::rename(&claimed.path, &dest)?;
    Ok(dest)
}

/// `done/x.csv` → `done/x.csv.{suffix}`.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes JSON to a temporary name, then renames: a reader never sees half.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = sibling(path, "tmp");
    let f = std::fs::File::create(&tmp)?;
    let mut w = std::io::BufWriter::new(f);
    serde_json::to_writer_pretty(&mut w, value)?;
    use std::io::Write;
    w.flush()?;
    w.get_ref().sync_all()?;
    drop(w);
    std::fs::rename(&tmp, path)
}

/// Files in each state of an inbox, for `paydrop status`.
pub fn inbox_counts(dir: &Path) -> [(String, usize); 4] {
    let count = |d: &Path, reports: bool| {
        std::fs::read_dir(d)
            .map(|es| {
                es.flatten()
                    // The entry itself: a link to a file is not a file here.
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        !(ignored(&n) || (reports && is_sidecar(&n)))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    [
        ("waiting".into(), count(dir, false)),
        (PROCESSING.into(), count(&dir.join(PROCESSING), false)),
        (DONE.into(), count(&dir.join(DONE), true)),
        (FAILED.into(), count(&dir.join(FAILED), true)),
    ]
}
