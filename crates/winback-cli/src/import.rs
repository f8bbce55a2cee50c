//! `winback import`: stream a file into the store, with a progress bar on a terminal, a
//! rejects file for `--skip-invalid`, and identity resolution afterwards.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use winback_domain::{Clock, Timestamp};
use winback_import::{Mapping, Rejected, SourceKind};
use winback_store::{
    ImportRun, ResolutionStats, SqlStore, Store,
    ingest::{IngestOptions, IngestReport, Mode, ingest},
};

use crate::Config;

/// What kind of file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// customers.csv: one row per customer; unknown columns become attributes.
    Customers,
    /// orders.csv: one row per order.
    Orders,
    /// order_items.csv: one row per order line.
    Items,
    /// events.jsonl: one JSON event per line.
    Events,
    /// Shopify's order export (one row per line item).
    Shopify,
    /// CDNOW master or sample file.
    Cdnow,
    /// Any CSV, read through `--mapping FILE` (which names the kind).
    Mapped,
}

/// `winback import KIND FILE`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What the file holds.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The file.
    pub file: PathBuf,
    /// With `orders`: an order_items.csv to import after the orders, in the same transaction.
    #[arg(long, value_name = "FILE")]
    pub items: Option<PathBuf>,
    /// A column-mapping file (TOML) for a CSV with its own headers and conventions.
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,
    /// Import the good rows and write the refused ones, with reasons, to a rejects file.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Where `--skip-invalid` writes refused rows (default: FILE.rejects.csv).
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Check the file and report, without writing anything.
    #[arg(long, conflicts_with = "skip_invalid")]
    pub dry_run: bool,
    /// Refuse a record for an unreadable optional field (a phone `n.v.t.`, an unknown country)
    /// instead of leaving the field out with a warning.
    #[arg(long)]
    pub strict: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not show a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn source_kind(kind: Kind, mapping: Option<&Mapping>) -> Result<SourceKind> {
    Ok(match (kind, mapping) {
        (Kind::Mapped, Some(m)) => m.kind,
        (Kind::Mapped, None) => anyhow::bail!("`import mapped` needs --mapping FILE"),
        (Kind::Customers, _) => SourceKind::Customers,
        (Kind::Orders, _) => SourceKind::Orders,
        (Kind::Items, _) => SourceKind::OrderItems,
        (Kind::Events, _) => SourceKind::Events,
        (Kind::Shopify, _) => SourceKind::Shopify,
        (Kind::Cdnow, _) => SourceKind::Cdnow,
    })
}

/// Writes refused records as CSV: line, field, reason, and the record itself. Cells are
/// defused so a spreadsheet never runs a formula from imported data.
pub struct RejectsFile {
    path: PathBuf,
    writer: Option<csv::Writer<std::fs::File>>,
    count: u64,
}

impl RejectsFile {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            writer: None,
            count: 0,
        }
    }
    fn write(&mut self, r: &Rejected) -> std::io::Result<()> {
        if self.writer.is_none() {
            let mut w = csv::Writer::from_path(&self.path)?;
            w.write_record(["file", "line", "field", "reason", "record"])?;
            self.writer = Some(w);
        }
        let w = self.writer.as_mut().expect("opened above");
        w.write_record([
            defuse(&r.error.file),
            r.error.line.to_string(),
            defuse(&r.error.field),
            defuse(&r.error.reason),
            defuse(&r.raw),
        ])?;
        self.count += 1;
        Ok(())
    }
    fn finish(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
        }
        Ok(())
    }
}

pub use winback_channels::exports::defuse;

fn progress(quiet: bool, label: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    if quiet || !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} records ({per_sec}) {elapsed}")
            .expect("valid template"),
    );
    pb.set_message(label.to_owned());
    pb
}

/// One file to import.
pub struct Job<'a> {
    /// What it holds.
    pub kind: SourceKind,
    /// The file.
    pub file: &'a Path,
    /// Its column mapping.
    pub mapping: Option<&'a Mapping>,
    /// Strict, skip-invalid or dry-run.
    pub mode: Mode,
    /// No progress bar.
    pub quiet: bool,
    /// Refuse records whose optional fields cannot be read.
    pub strict: bool,
}

/// Imports one file; returns its report.
pub async fn import_file(
    config: &Config,
    store: &SqlStore,
    clock: &dyn Clock,
    job: Job<'_>,
    mut rejects: Option<&mut RejectsFile>,
) -> Result<IngestReport> {
    let started = clock.now();
    let mut options = config.import_options(started)?;
    options.strict = job.strict;
    let rows = winback_import::open(job.kind, job.file, &options, job.mapping)?;
    let name: Arc<str> = Arc::from(job.file.display().to_string());
    let ingest_options = IngestOptions {
        file: name,
        mode: job.mode,
        max_errors: config.import.max_errors,
        batch_rows: config.import.batch_rows,
        now: started,
    };
    let pb = progress(job.quiet, &format!("importing {}", job.file.display()));
    let mut sink_error = None;
    let report = ingest(
        store,
        rows,
        &ingest_options,
        |n| pb.set_position(n),
        |r| {
            if let Some(sink) = rejects.as_deref_mut() {
                if let Err(e) = sink.write(r) {
                    sink_error.get_or_insert(e);
                }
            }
        },
    )
    .await
    .with_context(|| format!("importing {}", job.file.display()))?;
    pb.finish_and_clear();
    if let Some(e) = sink_error {
        return Err(e).context("writing the rejects file");
    }
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

/// Runs `winback import`; `Ok(false)` when the file was refused.
pub async fn run(
    config: &Config,
    store: &SqlStore,
    clock: &dyn Clock,
    args: &ImportArgs,
) -> Result<bool> {
    let mapping = args.mapping.as_deref().map(Mapping::load).transpose()?;
    let kind = source_kind(args.kind, mapping.as_ref())?;
    let mode = if args.dry_run {
        Mode::DryRun
    } else if args.skip_invalid {
        Mode::SkipInvalid
    } else {
        Mode::Strict
    };
    let mut rejects = RejectsFile::new(args.rejects.clone().unwrap_or_else(|| {
        let mut p = args.file.clone().into_os_string();
        p.push(".rejects.csv");
        PathBuf::from(p)
    }));
    let skip = mode == Mode::SkipInvalid;
    let mut reports = Vec::new();
    let job = Job {
        kind,
        file: &args.file,
        mapping: mapping.as_ref(),
        mode,
        quiet: args.quiet,
        strict: args.strict,
    };
    let main = import_file(config, store, clock, job, skip.then_some(&mut rejects)).await?;
    let ok = main.committed || (mode == Mode::DryRun && main.rows_rejected == 0);
    reports.push((args.file.clone(), main));
    if let Some(items) = &args.items {
        anyhow::ensure!(
            kind == SourceKind::Orders,
            "--items goes with `import orders`"
        );
        if ok {
            let job = Job {
                kind: SourceKind::OrderItems,
                file: items,
                mapping: None,
                mode,
                quiet: args.quiet,
                strict: args.strict,
            };
            let r = import_file(config, store, clock, job, skip.then_some(&mut rejects)).await?;
            reports.push((items.clone(), r));
        }
    }
    rejects.finish()?;
    let all_ok = reports
        .iter()
        .all(|(_, r)| r.committed || (mode == Mode::DryRun && r.rows_rejected == 0));
    // What follows every ingest, the same as the worker does after an API ingest: identities
    // resolved, the touched profiles' features recomputed.
    let (resolution, refresh) = if reports.iter().any(|(_, r)| r.committed) {
        let rules = (all_ok && config.identity.auto_resolve).then_some(&config.identity.rules);
        let settled = winback_app::ingest::after_ingest(store, rules, clock.now()).await?;
        (settled.resolution, Some(settled.features))
    } else {
        (None, None)
    };
    if args.json {
        let out: Vec<_> = reports
            .iter()
            .map(|(f, r)| serde_json::json!({"file": f, "report": r}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"imports": out, "identity": resolution, "features": refresh})
            )?
        );
    } else {
        let mut out = std::io::stdout().lock();
        for (file, r) in &reports {
            print_report(&mut out, file, r)?;
        }
        if rejects.count > 0 {
            writeln!(
                out,
                "{} refused records written to {}",
                rejects.count,
                rejects.path.display()
            )?;
        }
        if let Some(s) = &resolution {
            writeln!(
                out,
                "identity: {} records → {} people ({} merged)",
                s.records, s.profiles, s.merged_records
            )?;
        }
        if let Some(r) = refresh.filter(|r| r.profiles > 0) {
            writeln!(
                out,
                "features: recomputed for the {} profiles this import touched ({} orders read, {:.2} s)",
                r.profiles, r.orders, r.seconds
            )?;
        }
    }
    Ok(all_ok)
}

/// The first messages of `total`, one a line, and how many more there were.
fn first_of(out: &mut impl Write, shown: &[String], total: u64) -> std::io::Result<()> {
    for m in shown {
        writeln!(out, "  {m}")?;
    }
    if total as usize > shown.len() {
        writeln!(out, "  … and {} more", total as usize - shown.len())?;
    }
    Ok(())
}

fn print_report(out: &mut impl Write, file: &Path, r: &IngestReport) -> std::io::Result<()> {
    let verdict = match (r.mode, r.committed) {
        (Mode::DryRun, _) if r.rows_rejected == 0 => {
            "checked: every record is valid (dry run, nothing written)"
        }
        (Mode::DryRun, _) => "checked: some records are invalid (dry run, nothing written)",
        (_, true) => "imported",
        (_, false) => "REFUSED: nothing was written",
    };
    writeln!(out, "{}: {verdict}", file.display())?;
    writeln!(
        out,
        "  {} records read, {} valid, {} refused",
        r.rows_read, r.rows_ok, r.rows_rejected
    )?;
    if r.committed {
        let w = &r.written;
        let new = w.orders + w.order_items + w.events + w.consents;
        if new == 0 && w.customers == 0 && w.orders_unchanged + w.duplicate_events > 0 {
            writeln!(
                out,
                "  nothing new: every order and event is stored already ({} orders and {} events unchanged)",
                w.orders_unchanged, w.duplicate_events
            )?;
        } else {
            writeln!(
                out,
                "  written: {} customer records, {} new or changed orders ({} unchanged), {} order lines, {} events ({} already stored), {} consent statements",
                w.customers,
                w.orders,
                w.orders_unchanged,
                w.order_items,
                w.events,
                w.duplicate_events,
                w.consents
            )?;
        }
    }
    if r.duplicate_rows > 0 {
        writeln!(
            out,
            "  {} rows repeat an order of an earlier row (the later row is kept)",
            r.duplicate_rows
        )?;
    }
    if r.fields_dropped > 0 {
        writeln!(
            out,
            "  {} optional fields could not be read and were left out (the records were kept; --strict refuses them):",
            r.fields_dropped
        )?;
        first_of(out, &r.warnings, r.fields_dropped)?;
    }
    first_of(out, &r.errors, r.rows_rejected)?;
    if !r.committed && r.mode == Mode::Strict {
        writeln!(
            out,
            "  Fix the file, or import the valid records with --skip-invalid (refused ones go to a rejects file)."
        )?;
    }
    Ok(())
}

/// Resolves identities over the whole store and saves the result.
pub async fn resolve(config: &Config, store: &SqlStore, now: Timestamp) -> Result<ResolutionStats> {
    winback_app::ingest::resolve(store, &config.identity.rules, now).await
}

#[cfg(test)]
mod tests {
    use super::defuse;

    #[test]
    fn formula_cells_are_defused() {
        for bad in [
            "=1+1",
            "+1+cmd|' /C calc'!A0",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "+HYPERLINK(\"x\")",
        ] {
            assert!(defuse(bad).starts_with('\''), "{bad:?}");
        }
        // Phones and signed amounts cannot run: they stay as they are.
        for plain in [
            "Anna",
            "+31612345678",
            "+31 6 1234 5678",
            "-12.50",
            "-1.234,56",
        ] {
            assert_eq!(defuse(plain), plain);
        }
    }
}
