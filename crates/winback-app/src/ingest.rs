//! Ingest: a file streamed into the store ([`import`]), and what follows every ingest, whatever
//! its door (a CLI import, the `/v1` API, a webhook): the identities of the records it touched
//! resolved, and the touched profiles' features recomputed ([`after_ingest`]). An import runs
//! it right away; the worker's schedule runs it within `refresh_seconds` of any other ingest.
//! One function, so both do the same.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use winback_domain::{Clock, Timestamp};
use winback_identity::IdentityRules;
use winback_import::{Mapping, Rejected, SourceKind};
use winback_store::ingest::{IngestOptions, IngestReport, Mode, ingest};
use winback_store::{ImportRun, ResolutionStats, SqlStore};

use crate::config::Config;

use crate::scoring::{Refresh, refresh_features};

/// What [`after_ingest`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settled {
    /// The resolution, when resolving is on.
    pub resolution: Option<ResolutionStats>,
    /// The features refresh.
    pub features: Refresh,
}

/// Resolves identities over the store with `rules` and saves the result.
pub async fn resolve(
    store: &SqlStore,
    rules: &IdentityRules,
    now: Timestamp,
) -> Result<ResolutionStats> {
    let ids = store.identifiers().await?;
    let resolution = winback_identity::resolve(rules, &ids);
    Ok(store.save_resolution(&resolution, now).await?)
}

/// Resolves identities (when `rules` is given: `[identity] auto_resolve`), then recomputes the
/// features of the profiles ingests touched since the last refresh.
pub async fn after_ingest(
    store: &SqlStore,
    rules: Option<&IdentityRules>,
    now: Timestamp,
) -> Result<Settled> {
    let resolution = match rules {
        Some(r) => Some(resolve(store, r, now).await?),
        None => None,
    };
    let features = refresh_features(store, now).await?;
    // Engagement the files carried moved the message rollups and the hygiene's idle addresses,
    // and orders the enrolments' outcomes: keep what reports compute on reading small, as the
    // worker does after each round.
    crate::worker::fold(store).await?;
    Ok(Settled {
        resolution,
        features,
    })
}

/// One file to import.
#[derive(Debug, Clone, Copy)]
pub struct FileJob<'a> {
    /// What it holds.
    pub kind: SourceKind,
    /// The file.
    pub file: &'a Path,
    /// Its column mapping.
    pub mapping: Option<&'a Mapping>,
    /// Strict, skip-invalid or dry-run.
    pub mode: Mode,
    /// Refuse records whose optional fields cannot be read (instead of leaving the field out).
    pub strict: bool,
}

/// Streams one file into the store with `[import]`'s settings and records the run; reports
/// progress (records read) and every refused record to the callbacks. Nothing else follows:
/// [`import`] runs [`after_ingest`] too.
pub async fn import_file(
    config: &Config,
    store: &SqlStore,
    clock: &dyn Clock,
    job: FileJob<'_>,
    on_progress: impl FnMut(u64) + Send,
    on_reject: impl FnMut(&Rejected) + Send,
) -> Result<IngestReport> {
    let started = clock.now();
    let mut options = config.import_options(started)?;
    options.strict = job.strict;
    let rows = winback_import::open(job.kind, job.file, &options, job.mapping)?;
    let ingest_options = IngestOptions {
        file: Arc::from(job.file.display().to_string()),
        mode: job.mode,
        max_errors: config.import.max_errors,
        batch_rows: config.import.batch_rows,
        now: started,
    };
    let report = ingest(store, rows, &ingest_options, on_progress, on_reject)
        .await
        .with_context(|| format!("importing {}", job.file.display()))?;
    if report.committed {
        store
            .record_import_run(&ImportRun {
                kind: job.kind.as_str().into(),
                file: job.file.display().to_string(),
                started_at: started,
                finished_at: clock.now(),
                rows_ok: report.rows_ok,
                rows_rejected: report.rows_rejected,
                mode: job.mode.as_str().into(),
            })
            .await?;
    }
    Ok(report)
}

/// What [`import`] did.
#[derive(Debug)]
pub struct Imported {
    /// Each file's report, in import order.
    pub reports: Vec<(PathBuf, IngestReport)>,
    /// Every file was written (or, in a dry run, every record was valid).
    pub all_ok: bool,
    /// What followed, when anything was written.
    pub settled: Option<Settled>,
}

/// `winback import`: the file, then (with orders) its order lines when the orders were
/// written, then what follows every ingest. Identities are resolved only when every file was
/// written (a half-imported pair would merge on half the data), `[identity] auto_resolve` is on
/// and the file can change them (not events or order lines alone). `on_progress` gets the file and its records read so far.
pub async fn import(
    config: &Config,
    store: &SqlStore,
    clock: &dyn Clock,
    main: FileJob<'_>,
    items: Option<&Path>,
    mut on_progress: impl FnMut(&Path, u64) + Send,
    mut on_reject: impl FnMut(&Rejected) + Send,
) -> Result<Imported> {
    anyhow::ensure!(
        items.is_none() || main.kind == SourceKind::Orders,
        "order lines (--items) go with an orders file"
    );
    let ok = |r: &IngestReport, mode: Mode| {
        r.committed || (mode == Mode::DryRun && r.rows_rejected == 0)
    };
    let mut reports = Vec::new();
    let first = import_file(
        config,
        store,
        clock,
        main,
        |n| on_progress(main.file, n),
        &mut on_reject,
    )
    .await?;
    let first_ok = ok(&first, main.mode);
    reports.push((main.file.to_owned(), first));
    if let Some(items) = items.filter(|_| first_ok) {
        let job = FileJob {
            kind: SourceKind::OrderItems,
            file: items,
            mapping: None,
            ..main
        };
        let r = import_file(
            config,
            store,
            clock,
            job,
            |n| on_progress(items, n),
            &mut on_reject,
        )
        .await?;
        reports.push((items.to_owned(), r));
    }
    let all_ok = reports.iter().all(|(_, r)| ok(r, main.mode));
    let settled = if reports.iter().any(|(_, r)| r.committed) {
        // Events and order lines carry no identifiers (an unknown customer becomes a bare record,
        // a profile of its own), so they cannot change who is who: resolving over the whole
        // store after them would only cost time and, at a million customers, a gigabyte.
        let identities = !matches!(main.kind, SourceKind::Events | SourceKind::OrderItems);
        let rules = (all_ok && identities && config.identity.auto_resolve)
            .then_some(&config.identity.rules);
        Some(after_ingest(store, rules, clock.now()).await?)
    } else {
        None
    };
    Ok(Imported {
        reports,
        all_ok,
        settled,
    })
}
