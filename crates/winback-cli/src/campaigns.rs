//! `winback campaigns …` and `winback worker`: applying campaign files, starting and pausing
//! them, shop signals, offer-code exports, and the worker loop.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use winback_domain::Clock;
use winback_engine::Campaign;
use winback_engine::ports::{Applied, JourneyStore};
use winback_store::SqlStore;

use crate::Config;
use crate::report::n;

/// `winback campaigns`
#[derive(Debug, Subcommand)]
pub enum CampaignsCommand {
    /// Check campaign files and store them as new versions (a folder applies every `*.toml`).
    /// Nothing is applied when any file has a problem. New campaigns start as drafts.
    Apply {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Only check; store nothing.
        #[arg(long)]
        check: bool,
        /// The lift (in percentage points of buyers) each campaign's plan asks about: how many
        /// weeks until it is detectable.
        #[arg(long, default_value_t = 2.0)]
        lift: f64,
        /// A minimum detectable effect (percentage points) to size the holdout for: the plan
        /// gives the `[holdout] share` that detects it with the entries of `--weeks` weeks.
        #[arg(long)]
        target_mde: Option<f64>,
        /// Weeks of entries for `--target-mde`.
        #[arg(long, default_value_t = 12)]
        weeks: u32,
    },
    /// Campaigns with their status, version, journeys and messages.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start (or resume) a campaign: its trigger begins enrolling.
    Start {
        /// Campaign name.
        name: String,
    },
    /// Pause a campaign: nothing is enrolled, stepped or sent until it is started again.
    Pause {
        /// Campaign name.
        name: String,
    },
    /// Stop enrolling; running journeys finish, then the campaign is `finished`.
    Close {
        /// Campaign name.
        name: String,
    },
    /// Announce a shop-wide event such as `assortment_updated`; waits on `custom:NAME` end.
    Signal {
        /// Event name, snake_case.
        name: String,
    },
    /// The variables audience and branch expressions can use.
    Variables,
    /// Write the contacts a campaign's export steps added, under the destination's legal basis
    /// (`[exports]`): a Meta custom audience, Google Customer Match or LinkedIn Matched Audiences
    /// CSV (hashed identifiers), a CRM-onboarding file in the columns the campaign maps, or a
    /// print mailing list with personal codes.
    Export {
        /// Campaign name.
        name: String,
        /// meta, google, linkedin, crm or print.
        #[arg(long, value_enum)]
        format: ExportFormatArg,
        /// The crm export step whose column mapping to use, when several map differently.
        #[arg(long)]
        step: Option<String>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Export a campaign's offer codes for the shop (CSV).
    Codes {
        /// Campaign name.
        name: String,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Audience file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormatArg {
    /// Meta custom audience.
    Meta,
    /// Google Customer Match.
    Google,
    /// LinkedIn Matched Audiences (contact list).
    Linkedin,
    /// A CRM-onboarding or display partner's hashed file.
    Crm,
    /// Print mailing list.
    Print,
}

impl From<ExportFormatArg> for winback_engine::definition::ExportTarget {
    fn from(f: ExportFormatArg) -> Self {
        use winback_engine::definition::ExportTarget as T;
        match f {
            ExportFormatArg::Meta => T::Meta,
            ExportFormatArg::Google => T::Google,
            ExportFormatArg::Linkedin => T::Linkedin,
            ExportFormatArg::Crm => T::Crm,
            ExportFormatArg::Print => T::Print,
        }
    }
}

pub use winback_app::campaigns::load_files;

/// Applies checked campaigns (`winback_app::campaigns::apply`); prints what happened to each.
pub async fn apply(
    store: &SqlStore,
    clock: &dyn Clock,
    campaigns: &[(PathBuf, String, Campaign)],
    quiet: bool,
) -> Result<()> {
    let outcomes = winback_app::campaigns::apply(store, clock.now(), campaigns).await?;
    if !quiet {
        for ((_, _, c), outcome) in campaigns.iter().zip(outcomes) {
            match outcome {
                Applied::Created(_) => println!(
                    "{:<28} created (version 1, draft; start it with `winback campaigns start {}`)",
                    c.name, c.name
                ),
                Applied::NewVersion(v) => println!(
                    "{:<28} version {v}: new journeys use it, running ones keep theirs",
                    c.name
                ),
                Applied::Unchanged(v) => println!("{:<28} unchanged (version {v})", c.name),
            }
        }
    }
    Ok(())
}

/// Runs `winback campaigns …`.
pub async fn run(config: &Config, clock: &dyn Clock, cmd: CampaignsCommand) -> Result<ExitCode> {
    if let CampaignsCommand::Variables = cmd {
        println!("{:<28} {:<13} meaning", "variable", "type");
        for (v, t, m) in winback_engine::audience::VARIABLES {
            println!("{v:<28} {t:<13} {m}");
        }
        println!();
        println!("In branch expressions (`expr = '…'`) also:");
        for (v, t, m) in winback_engine::audience::JOURNEY_VARIABLES {
            println!("{v:<28} {t:<13} {m}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let exports = &config.exports;
    if let CampaignsCommand::Apply {
        paths, check: true, ..
    } = &cmd
    {
        let renderer = config.renderer()?;
        return Ok(match load_files(paths, &|t| renderer.has_template(t)) {
            Ok(c) => {
                println!("{} campaign file(s) are valid.", c.len());
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for p in &problems {
                    eprintln!("{p}");
                }
                ExitCode::from(2)
            }
        });
    }
    let store = crate::open_store(config).await?;
    let renderer = config.renderer()?;
    let code = match cmd {
        CampaignsCommand::Apply {
            paths,
            lift,
            target_mde,
            weeks,
            ..
        } => {
            match load_files(&paths, &|t| renderer.has_template(t)) {
                Ok(campaigns) => {
                    apply(&store, clock, &campaigns, false).await?;
                    // What each campaign can measure, for the shop as it is today (or where
                    // its data ends, when that runs ahead of the clock).
                    let as_of = winback_report::as_of(&store, clock.now()).await?;
                    println!("\nPlans (for the anytime-valid test the verdicts use):");
                    let all: Vec<&Campaign> = campaigns.iter().map(|(_, _, c)| c).collect();
                    let plans = winback_app::planning::plan(
                        &store,
                        &all,
                        as_of,
                        lift / 100.0,
                        target_mde.map(|m| (m / 100.0, weeks)),
                    )
                    .await?;
                    for plan in plans {
                        for (i, line) in plan.lines().iter().enumerate() {
                            let name = if i == 0 { plan.campaign.as_str() } else { "" };
                            println!("{name:<28} {line}");
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    for p in &problems {
                        eprintln!("{p}");
                    }
                    eprintln!("{} problem(s); nothing was applied.", problems.len());
                    ExitCode::from(2)
                }
            }
        }
        CampaignsCommand::List { json } => {
            let campaigns = store.campaigns().await?;
            let counts = store.campaign_counts().await?;
            if json {
                let rows: Vec<serde_json::Value> = campaigns
                    .iter()
                    .map(|c| {
                        let k = counts
                            .iter()
                            .find(|k| k.name == c.name)
                            .cloned()
                            .unwrap_or_default();
                        serde_json::json!({"name": c.name, "status": c.status, "version": c.version, "file": c.file, "enrolments": k.enrolments, "messages": k.messages, "dropped": k.dropped})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<28} {:<9} {:>3} {:>8} {:>9} {:>8} {:>8} {:>6} {:>8} {:>8}",
                    "campaign",
                    "status",
                    "v",
                    "active",
                    "completed",
                    "exited",
                    "holdout",
                    "sent",
                    "dropped",
                    "in doubt"
                );
                let mut reasons = Vec::new();
                for c in &campaigns {
                    let k = counts
                        .iter()
                        .find(|k| k.name == c.name)
                        .cloned()
                        .unwrap_or_default();
                    let g = |map: &std::collections::BTreeMap<String, i64>, key: &str| {
                        map.get(key).copied().unwrap_or(0)
                    };
                    println!(
                        "{:<28} {:<9} {:>3} {:>8} {:>9} {:>8} {:>8} {:>6} {:>8} {:>8}",
                        c.name,
                        c.status,
                        c.version,
                        g(&k.enrolments, "active"),
                        g(&k.enrolments, "completed"),
                        g(&k.enrolments, "exited"),
                        g(&k.enrolments, "held_out"),
                        g(&k.messages, "sent"),
                        g(&k.messages, "dropped"),
                        g(&k.messages, "in_doubt"),
                    );
                    if !k.dropped.is_empty() {
                        let why: Vec<String> = k
                            .dropped
                            .iter()
                            .map(|(r, n)| format!("{n} {}", r.replace('_', " ")))
                            .collect();
                        reasons.push(format!("  {}: {}", c.name, why.join(", ")));
                    }
                }
                if !reasons.is_empty() {
                    println!("\nDropped messages by reason:");
                    for r in reasons {
                        println!("{r}");
                    }
                }
            }
            ExitCode::SUCCESS
        }
        CampaignsCommand::Start { name } => {
            status(&store, clock, &name, winback_engine::CampaignStatus::Active).await?
        }
        CampaignsCommand::Pause { name } => {
            status(&store, clock, &name, winback_engine::CampaignStatus::Paused).await?
        }
        CampaignsCommand::Close { name } => {
            status(
                &store,
                clock,
                &name,
                winback_engine::CampaignStatus::Closing,
            )
            .await?
        }
        CampaignsCommand::Signal { name } => {
            anyhow::ensure!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "signal names are snake_case, e.g. assortment_updated"
            );
            store.signal(&name, clock.now()).await?;
            println!(
                "Signalled `{name}`: journeys waiting for custom:{name} continue at the next worker pass."
            );
            ExitCode::SUCCESS
        }
        CampaignsCommand::Codes { name, out } => {
            let Some(c) = campaign_named(&store, &name).await? else {
                eprintln!("no campaign `{name}`");
                return Ok(ExitCode::from(3));
            };
            let rows = store.offer_codes(c.id).await?;
            write_codes(&rows, out.as_deref())?;
            if let Some(p) = out {
                eprintln!("{} codes written to {}", n(rows.len() as u64), p.display());
            }
            ExitCode::SUCCESS
        }
        CampaignsCommand::Export {
            name,
            format,
            step,
            out,
        } => {
            let Some(done) = winback_app::exports::export(
                &store,
                exports,
                &name,
                format.into(),
                step.as_deref(),
                &out,
                clock.now(),
            )
            .await?
            else {
                eprintln!("no campaign `{name}`");
                return Ok(ExitCode::from(3));
            };
            println!(
                "{} of {} contacts written to {} ({}, {}{})",
                n(done.written),
                n(done.added),
                out.display(),
                done.target.as_str(),
                done.basis.as_str().replace('_', " "),
                if done.rows != done.written {
                    format!(", {} rows", n(done.rows))
                } else {
                    String::new()
                }
            );
            for (count, why) in [
                (done.objected, "objected to direct marketing"),
                (
                    done.no_consent,
                    "no explicit opt-in (this destination's basis is consent)",
                ),
                (done.unmatchable, "nothing this destination can match on"),
            ] {
                if count > 0 {
                    println!("  left out: {} {why}", n(count));
                }
            }
            for w in &done.warnings {
                println!("  note: {w}");
            }
            ExitCode::SUCCESS
        }
        CampaignsCommand::Variables => unreachable!("handled above"),
    };
    store.close().await;
    Ok(code)
}

async fn campaign_named(
    store: &SqlStore,
    name: &str,
) -> Result<Option<winback_engine::ports::CampaignRecord>> {
    Ok(store
        .campaigns()
        .await?
        .into_iter()
        .find(|c| c.name == name))
}

async fn status(
    store: &SqlStore,
    clock: &dyn Clock,
    name: &str,
    to: winback_engine::CampaignStatus,
) -> Result<ExitCode> {
    if store.set_campaign_status(name, to, clock.now()).await? {
        println!("{name}: {to}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("no campaign `{name}`; apply its file first (winback campaigns apply FILE)");
        Ok(ExitCode::from(3))
    }
}

fn write_codes(rows: &[Vec<String>], out: Option<&Path>) -> Result<()> {
    let sink: Box<dyn std::io::Write> = match out {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout()),
    };
    let mut w = csv::Writer::from_writer(sink);
    w.write_record([
        "code",
        "kind",
        "amount_minor",
        "percent",
        "sku",
        "currency",
        "min_order_minor",
        "uses",
        "expires_at",
        "state",
    ])?;
    for r in rows {
        let mut cells: Vec<String> = r.iter().map(|c| crate::import::defuse(c)).collect();
        // Expiry as an RFC 3339 time rather than microseconds.
        if let Some(t) = cells
            .get(8)
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(winback_domain::Timestamp::from_micros)
        {
            cells[8] = t.to_string();
        }
        w.write_record(&cells)?;
    }
    w.flush()?;
    Ok(())
}

/// `winback worker`: passes until interrupted (or once).
pub async fn worker(config: &Config, once: bool, clock: &dyn Clock) -> Result<ExitCode> {
    config.refuse_builtin_secrets()?;
    worker_until(
        config,
        winback_app::worker::Role::Full,
        once,
        clock,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await
}

/// Writes a file through a temporary file and a rename: a reader never sees half a file.
/// The file stays readable by its owner only (0600): for personal data such as an access
/// export.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, bytes, false)
}

/// Like [`write_atomic`], for a file meant to be opened and shared, such as a report: created
/// 0644 like any file the user makes.
pub(crate) fn write_shared(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, bytes, true)
}

fn write_file(path: &Path, bytes: &[u8], shared: bool) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    #[cfg(unix)]
    if shared {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = shared;
    tmp.persist(path)?;
    Ok(())
}

/// The worker (`winback_app::worker::run`) until `stop` resolves, printing what it does.
pub async fn worker_until(
    config: &Config,
    role: winback_app::worker::Role,
    once: bool,
    clock: &dyn Clock,
    stop: impl std::future::Future<Output = ()>,
) -> Result<ExitCode> {
    let store = crate::open_store(config).await?;
    let result =
        winback_app::worker::run(config, &store, clock, role, once, stop, &print_event).await;
    store.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Prints one of the worker's events: what a shop reads in its logs.
fn print_event(event: winback_app::worker::Event<'_>) {
    use winback_app::worker::Event;
    match event {
        Event::Jobs(at, jobs) => {
            for why in &jobs.failed {
                eprintln!("{at}: a scheduled job failed (it runs again when next due): {why}");
            }
            if let Some(r) = jobs.retention.as_ref().filter(|r| !r.erased.is_empty()) {
                println!(
                    "{at}: retention erased {} people without activity since {} (run {})",
                    r.erased.len(),
                    r.cutoff.date_local(),
                    r.run_id
                );
            }
            if let Some(stats) = &jobs.scored {
                println!(
                    "{at}: the nightly scoring run staged {} profiles ({} changed stage)",
                    stats.profiles, stats.stage_changes
                );
            }
            if let Some(r) = &jobs.refreshed {
                println!(
                    "{at}: refreshed the features of {} profiles touched by ingests{}",
                    r.features.profiles,
                    r.resolution
                        .as_ref()
                        .map(|s| format!(" ({} records → {} people)", s.records, s.profiles))
                        .unwrap_or_default()
                );
            }
        }
        Event::Pushed(at, p) => {
            println!(
                "{at}: wallet passes changed: {} devices told, {} gone, {} pushes to try again",
                p.sent, p.gone, p.failed
            );
        }
        Event::Synced(at, g) => {
            println!(
                "{at}: Google Wallet: {} offer objects created, {} updated, {} to try again",
                g.created, g.updated, g.failed
            );
        }
        Event::Pass(at, s) => {
            let why = if s.dropped > 0 {
                format!(" ({})", s.drops.describe())
            } else {
                String::new()
            };
            println!(
                "{at}: enrolled {} (+{} held out), advanced {}, sent {}, deferred {}, dropped {}{why}, failed {}, exited {}, in doubt {}",
                s.enrolled,
                s.held_out,
                s.advanced,
                s.sent,
                s.deferred,
                s.dropped,
                s.failed,
                s.exited,
                s.in_doubt
            );
        }
        Event::Paused {
            at,
            channel,
            why,
            until,
            failures,
        } => println!(
            "{at}: the {channel} transport is paused until {until} after {failures} failure(s) of the relay or provider itself; nobody was suppressed: {why}"
        ),
        Event::Failed(at, e) => {
            eprintln!("{at}: a worker round failed; it runs again at the next poll: {e:#}")
        }
        Event::Stopping => println!(
            "worker stopping: the current pass finished; claims of this worker expire with their leases"
        ),
    }
}
