//! `winback simulate`: forecasts campaigns before launch. A synthetic shop (deterministic for a
//! seed) is generated into a scratch database, scored, and the campaigns run over it for the
//! given months; the report shows reactivations, revenue, discount and message cost, and ROI per
//! variant against the holdout. The shop's own database is never touched.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use winback_domain::Clock;
use winback_import::SourceKind;
use winback_store::ingest::Mode;

use crate::report::n;
use crate::{Config, import};

/// `winback simulate`
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Campaign files or folders.
    #[arg(required = true)]
    pub campaigns: Vec<PathBuf>,
    /// Simulated months.
    #[arg(long, default_value_t = 12)]
    pub months: u32,
    /// Customers in the simulated shop.
    #[arg(long, default_value_t = 5_000)]
    pub customers: u64,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The lift (percentage points of buyers) to plan for: weeks until each campaign detects
    /// it at the simulated entry rate and its holdout share.
    #[arg(long, default_value_t = 2.0)]
    pub lift: f64,
}

/// Runs `winback simulate`.
pub async fn run(config: &Config, clock: &dyn Clock, args: SimulateArgs) -> Result<ExitCode> {
    let renderer = config.renderer()?;
    let campaigns =
        match crate::campaigns::load_files(&args.campaigns, &|t| renderer.has_template(t)) {
            Ok(c) => c,
            Err(problems) => {
                for p in &problems {
                    eprintln!("{p}");
                }
                return Ok(ExitCode::from(2));
            }
        };
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let mut cfg = config.clone();
    cfg.database_url = format!(
        "sqlite://{}",
        scratch.path().join("simulation.db").display()
    );
    let now = clock.now();
    let spec = winback_synth::ShopSpec {
        customers: args.customers,
        seed: args.seed,
        as_of: now,
        years: 3,
        events: true,
        items: false,
    };
    let (files, _) = winback_synth::generate(&spec, scratch.path())?;
    let store = crate::open_store(&cfg).await?;
    let mut steps = vec![
        (SourceKind::Customers, files.customers.clone()),
        (SourceKind::Orders, files.orders.clone()),
    ];
    if let Some(e) = files.events.clone() {
        steps.push((SourceKind::Events, e));
    }
    for (kind, file) in steps {
        let job = winback_app::ingest::FileJob {
            kind,
            file: &file,
            mapping: None,
            mode: Mode::Strict,
            strict: false,
        };
        let r = import::import_file(&cfg, &store, clock, job, true, None).await?;
        anyhow::ensure!(r.committed, "{} was refused", file.display());
    }
    import::resolve(&cfg, &store, now).await?;
    let mut scored = Vec::new();
    crate::score::score_and_save(
        &store,
        now,
        &cfg.scoring_settings(),
        crate::score::Facts::All,
        0,
        |s| {
            scored.push(s.clone());
        },
    )
    .await?;
    if !args.json {
        println!(
            "Simulating {} campaign(s) for {} months over a shop of {} customers (seed {})…",
            campaigns.len(),
            args.months,
            n(args.customers),
            args.seed
        );
    }
    let outcome = winback_app::simulate::run(
        &cfg,
        &store,
        &scored,
        &campaigns,
        now,
        args.months,
        args.seed,
        &scratch.path().join("outbox"),
        |_, _| {},
    )
    .await?;
    store.close().await;
    crate::demo::print_outcome(&cfg, &outcome, args.json);
    if !args.json {
        println!(
            "\nWeeks until each campaign detects a lift of {:.1} points (80% power, the anytime-valid test the verdicts use), at the simulated entry rate and its holdout share:",
            args.lift
        );
        for (c, arms) in &outcome.campaigns {
            let plan = winback_app::planning::simulated(c, arms, args.months, args.lift / 100.0);
            let line = match plan {
                _ if c.holdout.share <= 0.0 => {
                    "no holdout: what it earns cannot be measured (set `[holdout] share`)".into()
                }
                Some((base, per_week, Some(w))) => format!(
                    "{w} week(s): about {per_week:.0} enter a week, {:.1}% buy anyway",
                    100.0 * base
                ),
                Some((base, per_week, None)) => format!(
                    "not within {} weeks: about {per_week:.0} enter a week, {:.1}% buy anyway; a larger holdout share or audience is needed",
                    winback_app::planning::MAX_WEEKS,
                    100.0 * base
                ),
                None => "too few entered to plan from".into(),
            };
            println!("   {:<28} {line}", c.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
