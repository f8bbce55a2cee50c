//! The demo's story, the use case behind `winback demo`: a realistic shop's export files
//! written, imported in the order a shop would load them, and the win-back programme simulated
//! on a copy of the store so that the shop's own data stays as imported. `winback-cli` tells
//! the story; each step here is a plain function so the story's figures come from the same
//! use cases a real shop runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use winback_domain::Timestamp;
use winback_import::SourceKind;
use winback_store::{SqlStore, privacy::Hygiene};
use winback_synth::{ShopFiles, ShopSpec, ShopStats};

use crate::config::Config;

/// Writes a synthetic shop of `customers` with three years of history up to `now`, with order
/// lines and email and site events, to `dir`.
pub fn export(
    customers: u64,
    seed: u64,
    now: Timestamp,
    dir: &Path,
) -> Result<(ShopFiles, ShopStats)> {
    let spec = ShopSpec {
        customers,
        seed,
        as_of: now,
        years: 3,
        events: true,
        items: true,
    };
    winback_synth::generate(&spec, dir).with_context(|| format!("writing {}", dir.display()))
}

/// The files in the order a shop loads them: customers, orders, their lines, then events (each
/// refers to what came before).
pub fn load_order(files: &ShopFiles) -> Result<[(SourceKind, PathBuf); 4]> {
    Ok([
        (SourceKind::Customers, files.customers.clone()),
        (SourceKind::Orders, files.orders.clone()),
        (
            SourceKind::OrderItems,
            files
                .items
                .clone()
                .context("order lines were not generated")?,
        ),
        (
            SourceKind::Events,
            files.events.clone().context("events were not generated")?,
        ),
    ])
}

/// The file of a `sqlite://FILE` URL; `None` for other databases and in-memory SQLite.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

/// A copy of the (closed) SQLite store at `dir/programme.db` for the simulated months, which
/// write future orders and events; its configuration and the opened store. `None` when the store
/// is not a SQLite file.
pub async fn programme_store(config: &Config, dir: &Path) -> Result<Option<(Config, SqlStore)>> {
    let Some(db_file) = sqlite_file(&config.database_url) else {
        return Ok(None);
    };
    let copy = dir.join("programme.db");
    for suffix in ["", "-wal", "-shm"] {
        // A previous run's copy; absent on the first run.
        let _ = std::fs::remove_file(format!("{}{suffix}", copy.display()));
    }
    std::fs::copy(&db_file, &copy)
        .with_context(|| format!("copying {} to {}", db_file.display(), copy.display()))?;
    let mut programme = config.clone();
    programme.database_url = format!("sqlite://{}", copy.display());
    let store = programme.open_store().await?;
    Ok(Some((programme, store)))
}

/// The list's hygiene on the shop as imported, and how many people the retention policy would
/// erase today (a dry run: nothing changes).
#[derive(Debug)]
pub struct Snapshot {
    /// Idle addresses, merged duplicates, suppressions.
    pub hygiene: Hygiene,
    /// People without customer-originated activity for `[privacy] retention_months`.
    pub due_for_erasure: u64,
}

/// Reads the [`Snapshot`] as of `now`.
pub async fn privacy_snapshot(config: &Config, now: Timestamp) -> Result<Snapshot> {
    let store = config.open_store().await?;
    let hygiene = store.hygiene(now).await?;
    let cutoff = crate::retention::cutoff(now, config.privacy.retention_months)?;
    let due = store
        .retention_candidates(cutoff, None, &winback_domain::ACTIVITY_EVENTS)
        .await?;
    store.close().await;
    Ok(Snapshot {
        hygiene,
        due_for_erasure: due.len() as u64,
    })
}
