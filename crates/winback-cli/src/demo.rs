//! `winback demo`: the main job on the embedded default. It generates a realistic shop's export
//! files, imports them like a real user would, resolves identities, and tells what it found.
//! Later capabilities (scoring, campaigns, measurement) extend this story.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{Context, Result};
use clap::Args;
use winback_domain::Clock;
use winback_import::SourceKind;
use winback_store::{Store, ingest::Mode};

use crate::{
    Config, import,
    report::{counts, money, n},
};

/// `winback demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Customers in the synthetic shop.
    #[arg(long, default_value_t = 10_000)]
    pub customers: u64,
    /// Random seed (the same seed gives the same shop).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where to write the shop's export files.
    #[arg(long, default_value = "winback-demo")]
    pub dir: PathBuf,
}

/// Runs the demo.
pub async fn run(config: &Config, clock: &dyn Clock, args: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let now = clock.now();
    println!(
        "winback demo: a web shop with {} customers (seed {}), history up to {}",
        n(args.customers),
        args.seed,
        now.date_utc()
    );
    println!();

    let t = Instant::now();
    let spec = winback_synth::ShopSpec {
        customers: args.customers,
        seed: args.seed,
        as_of: now,
        years: 3,
        events: true,
        items: true,
    };
    let (files, truth) = winback_synth::generate(&spec, &args.dir)
        .with_context(|| format!("writing {}", args.dir.display()))?;
    println!(
        "1. The shop exported its data to {}/ ({:.1} s):",
        args.dir.display(),
        t.elapsed().as_secs_f64()
    );
    println!(
        "   {} customer records, {} orders with {} order lines, {} email and site events.",
        n(truth.customer_records),
        n(truth.orders),
        n(truth.items),
        n(truth.events)
    );
    println!();

    let store = crate::open_store(config).await?;
    println!(
        "2. Importing into {} (re-running the demo updates, never duplicates):",
        crate::config::redact(&config.database_url)
    );
    let items = files.items.clone().context("items were generated")?;
    let events = files.events.clone().context("events were generated")?;
    let steps = [
        (SourceKind::Customers, files.customers.clone()),
        (SourceKind::Orders, files.orders.clone()),
        (SourceKind::OrderItems, items),
        (SourceKind::Events, events),
    ];
    for (kind, file) in steps {
        let t = Instant::now();
        let job = import::Job {
            kind,
            file: &file,
            mapping: None,
            mode: Mode::Strict,
            quiet: false,
        };
        let r = import::import_file(config, &store, clock, job, None).await?;
        anyhow::ensure!(
            r.committed,
            "{} was refused: {:?}",
            file.display(),
            r.errors
        );
        let secs = t.elapsed().as_secs_f64().max(1e-6);
        println!(
            "   {:<20} {:>9} records in {:>5.1} s ({:>9} records/s)",
            file.file_name().and_then(|f| f.to_str()).unwrap_or("?"),
            n(r.rows_ok),
            secs,
            n((r.rows_ok as f64 / secs) as u64)
        );
    }
    println!();

    let t = Instant::now();
    let stats = import::resolve(config, &store, clock.now()).await?;
    let summary = store.summary().await?;
    println!("3. Who is who ({:.1} s):", t.elapsed().as_secs_f64());
    println!(
        "   {} customer records are {} people. {} records belong to someone the shop already knew under",
        n(stats.records),
        n(stats.profiles),
        n(stats.merged_records)
    );
    println!("   another email address, linked by:");
    for (rule, c) in &summary.merges_by_rule {
        println!("     - {}: {}", rule.replace('_', " "), n(*c));
    }
    println!(
        "   Without this, a customer who now orders with a work address would look lapsed and get a"
    );
    println!("   \"we miss you\" discount while still buying (seed 000).");
    // Show one merged person, if there is one.
    if let Some(first_merge) = store.merged_records(1).await?.into_iter().next() {
        if let Some(d) = store.customer_detail(&first_merge).await? {
            let names: Vec<String> = d
                .records
                .iter()
                .map(|r| format!("{} <{}>", r.external_id, r.email.as_deref().unwrap_or("-")))
                .collect();
            println!(
                "   For example: {} — {} orders in total.",
                names.join(" and "),
                d.order_count
            );
            if let Some(l) = d.links.first() {
                println!(
                    "   Linked because they share {} {}. See: winback customers show {}",
                    l.rule.replace('_', " "),
                    l.value,
                    l.a
                );
            }
        }
    }
    println!();

    println!("4. What the data looks like:");
    if let Some((a, b)) = summary.order_span {
        println!("   Orders from {} to {}.", a.date_utc(), b.date_utc());
    }
    for (cur, minor) in &summary.revenue_minor_by_currency {
        println!(
            "   Revenue {} from {} orders ({} refunded or cancelled, not counted).",
            money(*minor, cur),
            n(summary.orders),
            n(summary.refunded_or_cancelled_orders)
        );
    }
    println!(
        "   {} people never bought anything (newsletter subscribers); {} one-time buyers in the shop's history.",
        n(summary.profiles_without_orders),
        n(truth.one_time_buyers)
    );
    let opens: u64 = summary
        .events_by_type
        .iter()
        .filter(|(k, _)| k == "email_opened")
        .map(|(_, c)| c)
        .sum();
    let clicks: u64 = summary
        .events_by_type
        .iter()
        .filter(|(k, _)| k == "email_clicked")
        .map(|(_, c)| c)
        .sum();
    println!(
        "   {} email opens (many from Apple Mail Privacy Protection, which opens every mail) and {} clicks.",
        n(opens),
        n(clicks)
    );
    println!("   Email consent: {}.", counts(&summary.email_consent));
    println!(
        "   Data quality: {} records without an email address; every imported row was valid.",
        n(summary.records_without_email)
    );
    println!();
    println!("5. Who is slipping away, and who is worth winning back:");
    let (scored, models, _) =
        crate::score::score_and_save(&store, clock.now(), &crate::score::Settings::of(config))
            .await?;
    crate::score::print(&scored, &models, 5);
    println!();
    println!(
        "Done in {:.1} s. Explore: winback score, winback status, winback customers show C0000001",
        started.elapsed().as_secs_f64()
    );
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
