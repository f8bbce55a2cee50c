//! `winback import`: the use case is `winback_app::ingest::import`; this adds the progress bar
//! on a terminal, the rejects file of `--skip-invalid`, and the printed report.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use winback_app::ingest::FileJob;
use winback_domain::{Clock, Timestamp};
use winback_import::{Mapping, Rejected, SourceKind};
use winback_store::{
    ResolutionStats, SqlStore,
    ingest::{IngestReport, Mode},
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

/// Imports one file with a progress bar (unless `quiet`); returns its report. The use case is
/// `winback_app::ingest::import_file`; nothing follows it here.
pub async fn import_file(
    config: &Config,
    store: &SqlStore,
    clock: &dyn Clock,
    job: FileJob<'_>,
    quiet: bool,
    mut rejects: Option<&mut RejectsFile>,
) -> Result<IngestReport> {
    let pb = progress(quiet, &format!("importing {}", job.file.display()));
    let mut sink_error = None;
    let report = winback_app::ingest::import_file(
        config,
        store,
        clock,
        job,
        |n| pb.set_position(n),
        |r| {
            if let Some(sink) = rejects.as_deref_mut() {
                if let Err(e) = sink.write(r) {
                    sink_error.get_or_insert(e);
                }
            }
        },
    )
    .await?;
    pb.finish_and_clear();
    if let Some(e) = sink_error {
        return Err(e).context("writing the rejects file");
    }
    Ok(report)
}

/// Runs `winback import` (`winback_app::ingest::import`) and prints its report; `Ok(false)`
/// when the file was refused.
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
    let job = FileJob {
        kind,
        file: &args.file,
        mapping: mapping.as_ref(),
        mode,
        strict: args.strict,
    };
    let pb = progress(args.quiet, "importing");
    let mut sink_error = None;
    let imported = winback_app::ingest::import(
        config,
        store,
        clock,
        job,
        args.items.as_deref(),
        |file, n| {
            pb.set_message(format!("importing {}", file.display()));
            pb.set_position(n);
        },
        |r| {
            if skip {
                if let Err(e) = rejects.write(r) {
                    sink_error.get_or_insert(e);
                }
            }
        },
    )
    .await?;
    pb.finish_and_clear();
    if let Some(e) = sink_error {
        return Err(e).context("writing the rejects file");
    }
    rejects.finish()?;
    let reports = &imported.reports;
    let (resolution, refresh) = match imported.settled {
        Some(s) => (s.resolution, Some(s.features)),
        None => (None, None),
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
        for (file, r) in reports {
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
    Ok(imported.all_ok)
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
