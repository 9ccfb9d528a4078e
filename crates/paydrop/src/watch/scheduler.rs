//! The daemon's loop: wakes on file events and rescans, claims what is
//! ready, schedules claimed files over the worker slots (big files never take
//! the last one), holds and defers what has no outcome yet, and drains on
//! shutdown.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::inbox::{claim, is_big, keep_watching, recover, shown, shown_name, Claimed};
use super::outputs::refuse_unreadable;
use super::process::{process, Fate};
use super::scan::Scan;
use super::Shared;

pub(super) async fn watch_loop(
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
                    refuse_unreadable(&shared, i, &path, counter, &e, &mut scan, rescan);
                    continue;
                }
                match claim(inbox, &path, counter) {
                    Ok(claimed_path) => {
                        shared
                            .metrics
                            .inbox(i)
                            .files_claimed
                            .fetch_add(1, Ordering::Relaxed);
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
