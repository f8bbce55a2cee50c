//! `winback-cli` owns the command line: argument parsing, configuration, progress display and
//! the composition of store, importers, identity resolution and the synthetic shop into
//! commands. `main.rs` only calls [`main`].

mod bench_cycle;
mod bench_engine;
mod bench_http;
mod bounces;
mod calls;
mod campaigns;
pub use winback_app::config;
mod demo;
mod examples;
mod html_report;
mod import;
mod kpi;
mod models;
mod privacy;
mod report;
mod score;
mod serve;
mod simulate;
mod templates;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use winback_domain::{Clock, SystemClock};
use winback_store::SqlStore;

pub use config::Config;

/// winback finds the customers and subscribers a shop is losing and wins back the ones worth it.
#[derive(Debug, Parser)]
#[command(name = "winback", version, about, long_about = None)]
struct Cli {
    /// Configuration file (default: ./winback.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database URL; overrides the configuration (`sqlite://winback.db`, `postgres://…`).
    #[arg(long, global = true, value_name = "URL", env = "WINBACK_DATABASE_URL")]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a realistic shop, import it, resolve identities and tell what winback found.
    Demo(demo::DemoArgs),
    /// Import customers, orders, order lines, events, a Shopify export or CDNOW data.
    Import(import::ImportArgs),
    /// Merge customer records that are one person (shared email key, phone, or address + name).
    Resolve {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compute features, fit the models, and show stages, RFM, P(alive), CLV and who to win back.
    Score {
        /// How many win-back candidates to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Print every scored profile as JSON, each as it is scored, then the run, the models
        /// and the summary.
        #[arg(long)]
        json: bool,
    },
    /// Look up customers.
    #[command(subcommand)]
    Customers(CustomersCommand),
    /// Fit and compare the purchase models (BG/NBD, MBG/NBD, Pareto/NBD) and the spend model.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Counts and data quality of the store.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a synthetic shop's export files (deterministic for a seed).
    Synth {
        /// Number of customers.
        #[arg(long, default_value_t = 10_000)]
        customers: u64,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output folder.
        #[arg(long, default_value = "winback-demo")]
        out: PathBuf,
        /// Skip events.jsonl.
        #[arg(long)]
        no_events: bool,
    },
    /// Campaign files: apply, start, pause, close, signal, list, offer codes.
    #[command(subcommand)]
    Campaigns(campaigns::CampaignsCommand),
    /// Call lists for customer service (`list NAME`), and agents' outcomes (`import FILE`).
    #[command(subcommand)]
    Calls(calls::CallsCommand),
    /// Run the engine: schedule journeys, step them into the outbox, send with the policies.
    Worker {
        /// One pass, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Serve tracking links, the preference centre, surveys and the /v1 API.
    Serve {
        /// Address to listen on (default: `server.listen`, 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Run the worker in the same process.
        #[arg(long)]
        worker: bool,
    },
    /// API keys: create (shown once, stored hashed), list, revoke.
    #[command(subcommand)]
    Keys(serve::KeysCommand),
    /// Dashboard administrators (`winback admin set-password NAME`).
    #[command(subcommand)]
    Admin(serve::AdminCommand),
    /// What the campaigns did and earned against their holdouts (95% intervals), list hygiene
    /// and base health; `--json`, `--csv`.
    Report(kpi::ReportArgs),
    /// Retention (36 months), access exports, erasure, objection, audit log, list hygiene.
    #[command(subcommand)]
    Privacy(privacy::PrivacyCommand),
    /// Forecast campaigns before launch: run them over a simulated shop in virtual time.
    Simulate(simulate::SimulateArgs),
    /// Measure import throughput and identity resolution (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(report::BenchCommand),
    /// Bounce and complaint mail: `bounces import MAILBOX…` (mbox, Maildir, .eml).
    #[command(subcommand)]
    Bounces(bounces::BouncesCommand),
    /// Email templates: `templates list`, `templates show NAME --locale nl`.
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
}

#[derive(Debug, Subcommand)]
enum CustomersCommand {
    /// One person: every record merged into the profile, why, orders, events and consent.
    Show {
        /// Customer id, external id or email address.
        key: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Profiles in id order; with a filter below, scored profiles from the last `winback score`,
    /// highest win-back priority first (or most valuable first with `--sort value`).
    List {
        /// Only these lifecycle stages (comma-separated: at_risk,lapsed,…).
        #[arg(long, value_delimiter = ',')]
        stage: Vec<String>,
        /// Only profiles with at least this predicted value (default currency, e.g. 50.00).
        #[arg(long)]
        min_clv: Option<String>,
        /// Only ranked profiles with at least this priority (expected incremental margin, e.g. 5.00).
        #[arg(long)]
        min_priority: Option<String>,
        /// Only profiles matching this inactivity definition (see `[[inactivity]]`).
        #[arg(long)]
        inactive: Option<String>,
        /// Stop when the expected offer cost of the list reaches this budget (e.g. 500.00).
        #[arg(long)]
        budget: Option<String>,
        /// Order of scored profiles.
        #[arg(long, value_enum, default_value_t = SortBy::Priority)]
        sort: SortBy,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Start after this profile id.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = report::Format::Table)]
        format: report::Format,
    },
}

/// Order of scored listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SortBy {
    /// Highest win-back priority first.
    Priority,
    /// Highest predicted value first.
    Value,
}

/// An amount in the default currency, as minor units, for a flag.
fn amount(config: &Config, flag: &str, value: &str) -> Result<f64> {
    let currency = winback_domain::Currency::parse(&config.default_currency)?;
    Ok(
        winback_domain::Money::parse_decimal(
            value,
            currency,
            winback_domain::DecimalSeparator::Auto,
        )
        .map_err(|e| anyhow::anyhow!("{flag}: {e}"))?
        .minor() as f64,
    )
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    // `winback customers list | head`: when the reader goes away, printing fails with a broken
    // pipe; stop quietly, as Unix tools do, instead of panicking.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") || msg.contains("os error 32") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let cli = Cli::parse();
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("WINBACK_LOG").unwrap_or_else(|_| "warn".into())
    };
    // `WINBACK_LOG_FORMAT=json`: one JSON object per line, for log collectors.
    let _ = if std::env::var("WINBACK_LOG_FORMAT").is_ok_and(|f| f == "json") {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .try_init()
    } else {
        // Colours only on a terminal: a log file or collector gets plain `key=value` text.
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .try_init()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    };
    drop(runtime);
    bench_cycle::report_peak_memory();
    code
}

/// An error and its causes on one line, each cause said once: typed errors often carry their
/// source's text in their own message as well (`database: …`), and anyhow's `{:#}` would then
/// repeat it.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn open_store(config: &Config) -> Result<SqlStore> {
    config.open_store().await
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(url) = cli.database {
        config.database_url = url;
    }
    // Days (recency, intervals, model histories, cohorts, printed dates) are the shop's
    // calendar days.
    winback_domain::set_shop_time_zone(
        jiff::tz::TimeZone::get(&config.default_time_zone)
            .with_context(|| format!("default_time_zone `{}`", config.default_time_zone))?,
    );
    // `WINBACK_NOW` starts the clock at a given instant (reproducible runs, tests on dated
    // data); it then runs at real speed.
    let shifted = match std::env::var("WINBACK_NOW") {
        Ok(v) if !v.trim().is_empty() => {
            let t: jiff::Timestamp = v.trim().parse().with_context(|| {
                format!("WINBACK_NOW: `{v}` is not a UTC time such as 2025-06-02T10:00:00Z")
            })?;
            Some(winback_domain::ShiftedClock::starting_at(
                winback_domain::Timestamp::new(t),
            ))
        }
        _ => None,
    };
    let clock: &dyn Clock = match &shifted {
        Some(c) => c,
        None => &SystemClock,
    };
    match cli.command {
        Command::Demo(args) => demo::run(&config, clock, args).await,
        Command::Import(args) => {
            let store = open_store(&config).await?;
            let ok = match import::run(&config, &store, clock, &args).await {
                Ok(ok) => ok,
                Err(e) => {
                    let disk_full = e.chain().any(|c| {
                        matches!(
                            c.downcast_ref::<winback_store::StoreError>(),
                            Some(winback_store::StoreError::DiskFull(_))
                        )
                    });
                    if disk_full {
                        // The rolled-back import's pages are still in the write-ahead log:
                        // give the disk that space back so the next command can open the store.
                        let released = store.release_space().await;
                        store.close().await;
                        return Err(match released {
                            Ok(()) => e.context(
                                "the import was rolled back and its write-ahead log truncated: the store is as it was",
                            ),
                            Err(_) => e.context(
                                "the import was rolled back: the store is as it was (its write-ahead log gives the space back once the disk has a little room)",
                            ),
                        });
                    }
                    return Err(e);
                }
            };
            store.close().await;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Templates(command) => {
            templates::run(&config, command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bounces(command) => {
            let store = open_store(&config).await?;
            bounces::run(&store, clock, command).await?;
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Resolve { json } => {
            let store = open_store(&config).await?;
            let stats = import::resolve(&config, &store, clock.now()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                println!(
                    "{} records → {} people; {} records merged into another profile ({} changed in this run); {} keys too common to merge on; {} links held apart (the profile would have been larger than max_group_size)",
                    stats.records,
                    stats.profiles,
                    stats.merged_records,
                    stats.changed,
                    stats.skipped_keys,
                    stats.held_apart
                );
            }
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Score { top, json } => {
            let store = open_store(&config).await?;
            let outcome = if json {
                // Every profile as it is scored: a million of them are never held at once.
                use std::io::Write as _;
                let mut out = std::io::BufWriter::new(std::io::stdout());
                write!(out, "{{\"profiles\": [")?;
                let mut first = true;
                let mut failed = None;
                let outcome = score::score_and_save(
                    &store,
                    clock.now(),
                    &config.scoring_settings(),
                    score::Facts::All,
                    top,
                    |s| {
                        let sep = if std::mem::take(&mut first) {
                            "\n"
                        } else {
                            ",\n"
                        };
                        let line = serde_json::to_string(s).map_err(anyhow::Error::from);
                        if let Err(e) = line.and_then(|l| Ok(write!(out, "{sep}{l}")?)) {
                            failed.get_or_insert(e);
                        }
                    },
                )
                .await?;
                if let Some(e) = failed {
                    return Err(e.context("writing the scored profiles"));
                }
                writeln!(
                    out,
                    "\n], \"run\": {}, \"models\": {}, \"summary\": {}}}",
                    serde_json::to_string(&outcome.stats)?,
                    serde_json::to_string(&outcome.models)?,
                    serde_json::to_string(&outcome.summary)?
                )?;
                out.flush()?;
                None
            } else {
                Some(
                    score::score_and_save(
                        &store,
                        clock.now(),
                        &config.scoring_settings(),
                        score::Facts::All,
                        top,
                        |_| {},
                    )
                    .await?,
                )
            };
            store.close().await;
            if let Some(outcome) = outcome {
                let run = &outcome.stats;
                score::print(&outcome.summary, &outcome.models);
                println!(
                    "Saved as scoring run {}: {} of {} people changed stage since the previous run.",
                    run.run_id, run.stage_changes, run.profiles
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Customers(CustomersCommand::Show { key, json }) => {
            let store = open_store(&config).await?;
            let detail = store.customer_detail(&key).await?;
            let (score, history, features, messages) = match &detail {
                Some(d) => (
                    store.latest_score(d.profile_id).await?,
                    store.stage_history(d.profile_id).await?,
                    store.features_of(d.profile_id).await?,
                    store.profile_messages(d.profile_id, 20).await?,
                ),
                None => (None, Vec::new(), None, Vec::new()),
            };
            let features: Option<serde_json::Value> = features
                .map(|(_, json)| serde_json::from_str(&json))
                .transpose()?;
            store.close().await;
            match detail {
                Some(d) if json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"profile": d, "features": features, "score": score, "stage_history": history, "messages": messages})
                        )?
                    )
                }
                Some(d) => {
                    report::print_customer(&d, &messages);
                    report::print_features(features.as_ref());
                    report::print_score(score.as_ref(), &history);
                }
                None => {
                    eprintln!(
                        "no customer `{key}` (give the shop's customer id, an email, a +phone or profile:N)"
                    );
                    return Ok(ExitCode::from(3));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Customers(CustomersCommand::List {
            limit,
            format,
            stage,
            min_clv,
            min_priority,
            inactive,
            budget,
            sort,
            ..
        }) if !stage.is_empty()
            || min_clv.is_some()
            || min_priority.is_some()
            || inactive.is_some()
            || budget.is_some() =>
        {
            for s in &stage {
                anyhow::ensure!(
                    winback_scoring::Stage::ALL.iter().any(|k| k.as_str() == s),
                    "--stage: `{s}` is not a stage ({})",
                    winback_scoring::Stage::ALL.map(|k| k.as_str()).join(", ")
                );
            }
            if let Some(name) = &inactive {
                anyhow::ensure!(
                    config.inactivity.iter().any(|d| &d.name == name),
                    "--inactive: no inactivity definition `{name}` (defined: {})",
                    config
                        .inactivity
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let filter = winback_store::ScoreFilter {
                stages: stage,
                min_clv_minor: min_clv
                    .map(|v| amount(&config, "--min-clv", &v))
                    .transpose()?,
                min_priority_minor: min_priority
                    .map(|v| amount(&config, "--min-priority", &v))
                    .transpose()?,
                inactive,
                by_priority: sort == SortBy::Priority,
                limit: if budget.is_some() {
                    10_000_000
                } else {
                    limit.clamp(1, 100_000)
                },
            };
            let store = open_store(&config).await?;
            let mut rows = store.list_scored(&filter).await?;
            store.close().await;
            if let Some(b) = budget {
                let budget = amount(&config, "--budget", &b)?;
                rows.retain(|r| r.score.priority_minor.is_some());
                let costs: Vec<winback_scoring::Priority> = rows
                    .iter()
                    .filter_map(|r| {
                        serde_json::from_value(r.score.details["priority"].clone()).ok()
                    })
                    .collect();
                rows.truncate(
                    winback_scoring::within_budget(&costs, budget).min(limit.max(1) as usize),
                );
            }
            report::print_scored(&rows, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Customers(CustomersCommand::List {
            limit,
            after,
            format,
            ..
        }) => {
            let store = open_store(&config).await?;
            let rows = store.list_profiles(after, limit.clamp(1, 100_000)).await?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let orders = store.order_summary(&ids).await?;
            store.close().await;
            report::print_customers(&rows, &orders, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Models(cmd) => models::run(&config, clock, cmd).await,
        Command::Status { json } => {
            let store = open_store(&config).await?;
            let s = store.summary().await?;
            store.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                report::print_summary(&s);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Synth {
            customers,
            seed,
            out,
            no_events,
        } => {
            let spec = winback_synth::ShopSpec {
                customers,
                seed,
                as_of: clock.now(),
                years: 3,
                events: !no_events,
                items: true,
            };
            let (files, stats) = winback_synth::generate(&spec, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} ({} customer records, {} orders, {} order lines, {} events)",
                files.customers.parent().unwrap_or(&out).display(),
                stats.customer_records,
                stats.orders,
                stats.items,
                stats.events
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(cmd) => report::bench(&config, clock, cmd).await,
        Command::Campaigns(cmd) => campaigns::run(&config, clock, cmd).await,
        Command::Calls(cmd) => calls::run(&config, clock, cmd).await,
        Command::Worker { once } => campaigns::worker(&config, once, clock).await,
        Command::Serve { listen, worker } => serve::serve(&config, listen, worker).await,
        Command::Keys(cmd) => serve::keys(&config, clock, cmd).await,
        Command::Admin(cmd) => serve::admin(&config, clock, cmd).await,
        Command::Simulate(args) => simulate::run(&config, clock, args).await,
        Command::Privacy(cmd) => privacy::run(&config, clock, cmd).await,
        Command::Report(args) => kpi::run(&config, clock, args).await,
    }
}
