//! What the daemon checks before it takes a file: every inbox folder is
//! there (or may be made), the ledger opens, and, once, whether the
//! provider's base address answers. What makes the config unusable ends the
//! start (exit 2); an unreachable provider is an ERROR and the daemon keeps
//! running, as files wait safely for it to come back.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::inbox::Inbox;
use crate::ledger::Ledger;
use crate::names;
use crate::upload::Client;

/// Every inbox folder exists, or is made when `create` says so.
pub(super) fn check_inboxes(inboxes: &[Arc<Inbox>], create: bool) -> Result<()> {
    for inbox in inboxes {
        let shown = names::path(&inbox.dir);
        if inbox.dir.is_dir() {
            continue;
        }
        anyhow::ensure!(
            create && !inbox.dir.exists(),
            "the inbox folder {shown} does not exist (or is not a folder): create it, correct \
             the [[watch.inbox]] path, or set [watch] create_inboxes = true"
        );
        std::fs::create_dir_all(&inbox.dir)
            .with_context(|| format!("creating the inbox folder {shown}"))?;
        tracing::warn!(inbox = %shown, "created the missing inbox folder ([watch] create_inboxes)");
    }
    Ok(())
}

/// The ledger opens (and is created when new): nothing is sent without it.
pub(super) fn check_ledger(path: &Path) -> Result<()> {
    Ledger::open(path).with_context(|| {
        format!(
            "opening the ledger {}: the daemon records every submission there before sending \
             it; check [ledger] path and the folder's permissions",
            names::path(path)
        )
    })?;
    Ok(())
}

/// Asks the provider's base address once and says what came back.
pub(super) async fn probe(client: Client) {
    let base = client.shown_base();
    match client.probe().await {
        Ok(status) => tracing::info!(provider = %base, status, "the provider answers"),
        Err(e) => tracing::error!(
            provider = %base,
            error = %e,
            "the provider cannot be reached: files wait in processing/ and are retried; check \
             [provider] base_url (PAYDROP_BASE_URL), DNS, proxies and firewalls"
        ),
    }
}
