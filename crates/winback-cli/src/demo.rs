//! `winback demo`: the main job on the embedded default. It generates a realistic shop's export
//! files, imports them like a real user would, resolves identities, and tells what it found.
//! Later capabilities (scoring, campaigns, measurement) extend this story.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{Context, Result};
use clap::Args;
use winback_domain::Clock;
use winback_store::ingest::Mode;

use crate::{
    Config, import,
    report::{counts, money, n},
};

/// `winback demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Customers in the synthetic shop. The default keeps the whole demo, with twelve simulated
    /// months of campaigns, within about a minute.
    #[arg(long, default_value_t = 1_000)]
    pub customers: u64,
    /// Random seed (the same seed gives the same shop).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where to write the shop's export files and the outbox.
    #[arg(long, default_value = "winback-demo")]
    pub dir: PathBuf,
    /// Simulated months of the win-back programme.
    #[arg(long, default_value_t = 12)]
    pub months: u32,
}

/// Prints what a simulated programme did, per campaign and arm.
pub fn print_outcome(config: &Config, o: &winback_app::simulate::Outcome, json: bool) {
    let model = &config.simulation;
    let margin = config.clv.margin;
    let cur = &config.default_currency;
    if json {
        let rows: Vec<serde_json::Value> = o
            .campaigns
            .iter()
            .map(|(c, arms)| {
                let pooled = crate::kpi::pooled_holdout(arms);
                let holdout = pooled.as_ref();
                let arms: Vec<serde_json::Value> = arms
                    .iter()
                    .map(|a| {
                        let f = winback_app::simulate::forecast(a, holdout, model, margin);
                        serde_json::json!({
                            "arm": a, "conversion_rate": f.rate,
                            "incremental_conversions": f.incremental_conversions,
                            "incremental_revenue_minor": f.incremental_revenue_minor,
                            "message_cost_minor": f.message_cost_minor, "roi": f.roi,
                        })
                    })
                    .collect();
                serde_json::json!({"campaign": c.name, "arms": arms})
            })
            .collect();
        let out = serde_json::json!({
            "campaigns": rows, "orders": o.orders, "events": o.events,
            "sent": o.totals.sent, "dropped": o.totals.dropped, "deferred": o.totals.deferred,
            "in_doubt": o.totals.in_doubt, "repeated_deliveries": o.repeated,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    println!(
        "What happened up to {} ({} messages in {}/):",
        o.end.date_local(),
        n(o.totals.sent),
        o.outbox.display()
    );
    for (c, arms) in &o.campaigns {
        let pooled = crate::kpi::pooled_holdout(arms);
        let holdout = pooled.as_ref();
        let enrolled: i64 = arms.iter().map(|a| a.enrolled).sum();
        println!("   {} — {}", c.name, c.description);
        if enrolled == 0 {
            println!("      nobody qualified in the simulated months");
            continue;
        }
        for a in arms.iter().filter(|a| !a.holdout) {
            let mut f = winback_app::simulate::forecast(a, holdout, model, margin);
            let sent = a.messages.get("sent").copied().unwrap_or(0);
            let calls = o
                .call_tallies
                .iter()
                .find(|t| t.campaign == c.name && t.variant == a.variant);
            // Agent time is a cost like a message's.
            f.message_cost_minor +=
                calls.map_or(0, |t| t.listed) * config.measurement.call_cost_minor;
            let label = if c.experiment.variants.len() > 1 {
                format!("variant {}", a.variant)
            } else {
                "treated".into()
            };
            println!(
                "      {label}: {} entered, {} messages, {} bought within {} ({:.1}%); discounts {} on {} redeemed codes",
                n(a.enrolled as u64),
                n(sent as u64),
                n(a.converted as u64),
                c.conversion_window,
                f.rate * 100.0,
                money(a.discount_minor, cur),
                n(a.redeemed as u64),
            );
            let exports_only = !c.steps.iter().any(|s| {
                matches!(
                    s.action,
                    winback_engine::definition::Action::Send(_)
                        | winback_engine::definition::Action::Sunset(_)
                )
            }) && c
                .steps
                .iter()
                .any(|s| matches!(s.action, winback_engine::definition::Action::Export { .. }));
            let passes = o
                .wallet_tallies
                .iter()
                .find(|t| t.campaign == c.name && t.variant == a.variant);
            if let Some(t) = passes {
                println!(
                    "         {} wallet passes issued, {} added to a wallet, {} pass updates (pushed to the devices that added them when APNs is set up)",
                    n(t.issued as u64),
                    n(t.added as u64),
                    n(t.updated as u64)
                );
            }
            if let Some(t) = calls {
                println!(
                    "         {} put on a call list, {} reached by customer service, {} accepted the offer on the phone, {} asked not to be called again",
                    n(t.listed as u64),
                    n(t.reached as u64),
                    n(t.accepted as u64),
                    n(t.do_not_call as u64)
                );
            }
            if sent == 0 && calls.is_none() && passes.is_none() {
                // The simulated customers respond only to messages: without one, any difference
                // from the holdout is chance, and printing it as lift would mislead.
                println!(
                    "         {}",
                    if exports_only {
                        "no messages: its audience files go to ads and print, whose effect the simulation does not model"
                    } else {
                        "no messages sent yet in the simulated months, so no comparison with the holdout"
                    }
                );
            } else if let Some(h) = holdout.filter(|h| h.enrolled > 0) {
                let r = winback_measure::Readout::new(
                    crate::kpi::arm(a),
                    crate::kpi::arm(h),
                    winback_measure::Economics {
                        margin,
                        discount_minor: a.discount_minor,
                        message_cost_minor: f.message_cost_minor,
                        ..winback_measure::Economics::default()
                    },
                );
                for line in crate::kpi::readout_lines(&r, cur, true) {
                    println!("         {line}");
                }
            }
        }
        if let Some(h) = holdout {
            println!(
                "      holdout: {} entered, never messaged, {} bought on their own",
                n(h.enrolled as u64),
                n(h.converted as u64)
            );
        }
    }
    println!(
        "   Policies at send time: {} times a message waited for a send window, the frequency cap or the deliverability ramp; {} were dropped",
        n(o.totals.deferred),
        n(o.totals.dropped)
    );
    println!(
        "   (no consent, suppressed, or the journey ended first). {} journeys ended because the customer bought,",
        n(o.totals.exited)
    );
    println!(
        "   unsubscribed or complained. Sent twice: {}. In doubt after a crash: {}.",
        o.repeated, o.totals.in_doubt
    );
    println!(
        "   Intervals are 95%: a campaign is credited only with what its holdout shows. The full report:"
    );
    println!(
        "   winback report --database sqlite://{}",
        o.outbox
            .parent()
            .map(|p| p.join("programme.db").display().to_string())
            .unwrap_or_default()
    );
}

/// Runs the demo.
pub async fn run(config: &Config, clock: &dyn Clock, args: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let now = clock.now();
    println!(
        "winback demo: a web shop with {} customers (seed {}), history up to {}",
        n(args.customers),
        args.seed,
        now.date_local()
    );
    println!();

    let t = Instant::now();
    let (files, truth) = winback_app::demo::export(args.customers, args.seed, now, &args.dir)?;
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
    let steps = winback_app::demo::load_order(&files)?;
    for (kind, file) in steps {
        let t = Instant::now();
        let job = winback_app::ingest::FileJob {
            kind,
            file: &file,
            mapping: None,
            mode: Mode::Strict,
            strict: false,
        };
        let r = import::import_file(config, &store, clock, job, false, None).await?;
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
        println!("   Orders from {} to {}.", a.date_local(), b.date_local());
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
    // The simulated programme below gives every customer a behaviour from its score: all kept
    // (the demo's shop is small).
    let mut scored = Vec::new();
    let outcome = crate::score::score_and_save(
        &store,
        clock.now(),
        &config.scoring_settings(),
        crate::score::Facts::All,
        5,
        |s| scored.push(s.clone()),
    )
    .await?;
    crate::score::print(&outcome.summary, &outcome.models);
    println!();

    let t = Instant::now();
    let programme = crate::examples::campaigns()?;
    println!(
        "6. Running the win-back programme ({} campaigns from examples/campaigns/) for {} simulated months:",
        programme.len(),
        args.months
    );
    println!(
        "   each journey's state change and its message are written together; a 10% holdout per campaign"
    );
    println!(
        "   is never messaged, so what the campaigns earned can be measured. Customers keep buying at"
    );
    println!("   the rate their purchase model predicts, and respond to mails and offers.");
    let outbox = args.dir.join("outbox");
    // The simulated months write future orders and events; they run on a copy of the demo
    // database so the shop's own data stays as imported.
    store.close().await;
    let Some((sim_config, store)) = winback_app::demo::programme_store(config, &args.dir).await?
    else {
        println!(
            "   (the programme simulation runs on the embedded SQLite default; on this database use `winback simulate`)"
        );
        return Ok(ExitCode::SUCCESS);
    };
    let outcome = winback_app::simulate::run(
        &sim_config,
        &store,
        &scored,
        &programme,
        clock.now(),
        args.months,
        args.seed,
        &outbox,
        |month, s| {
            if month % 3 == 0 {
                println!(
                    "   month {month:>2}: {} journeys started, {} messages sent, {} journeys ended by a purchase or unsubscribe",
                    n(s.enrolled),
                    n(s.sent),
                    n(s.exited)
                );
            }
        },
    )
    .await?;
    println!("   ({:.1} s)", t.elapsed().as_secs_f64());
    println!();
    print_outcome(config, &outcome, false);
    // As of where the simulated data ends, by the rule every screen follows (the dashboard and
    // `winback report` without `--as-of` show the same figures).
    let as_of = winback_report::as_of(&store, outcome.end).await?;
    let report = crate::kpi::build(
        &sim_config,
        &store,
        winback_domain::Timestamp::EPOCH,
        crate::kpi::forever(),
        as_of,
    )
    .await?;
    let html = args.dir.join("report.html");
    crate::campaigns::write_shared(&html, crate::html_report::render(&report)?.as_bytes())
        .with_context(|| format!("writing {}", html.display()))?;
    println!("   The report with its charts: {}", html.display());
    println!();
    print_privacy(config, clock.now()).await?;
    println!();
    let url = format!("sqlite://{}", args.dir.join("programme.db").display());
    println!(
        "8. The report on the simulated programme, as of {}:",
        report.as_of.date_local()
    );
    crate::kpi::print_summary(&report);
    println!(
        "   Every figure per step, variant, channel, locale and mailbox provider, and did they stay:"
    );
    println!("   winback report --database {url}");
    println!("   The dashboard: winback admin set-password you --database {url}");
    println!("                  winback serve --database {url}   then open /admin");
    println!();
    println!(
        "Done in {:.1} s. Explore: winback campaigns list, winback score, winback customers show C0000001",
        started.elapsed().as_secs_f64()
    );
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Step 7: list hygiene and the retention policy on the shop as imported (a dry run).
async fn print_privacy(config: &Config, now: winback_domain::Timestamp) -> Result<()> {
    let snapshot = winback_app::demo::privacy_snapshot(config, now).await?;
    let h = &snapshot.hygiene;
    let share = |k: u64| {
        if h.addresses == 0 {
            0.0
        } else {
            100.0 * k as f64 / h.addresses as f64
        }
    };
    // Today's shop, before the simulated year: step 8's hygiene line is a year on, when those
    // the programme never reached have been idle longer.
    println!(
        "7. List hygiene and privacy on the shop as imported, today {} (seeds 000, 001 and 004):",
        now.date_local()
    );
    println!(
        "   {} people have an email address; {:.0}% have not clicked or opened for 6 months, {:.0}% for 12 months",
        n(h.addresses),
        share(h.idle_6m),
        share(h.idle_12m)
    );
    println!(
        "   ({} addresses): a spam-trap risk. The re-permission campaign asks them once; silence unsubscribes.",
        n(h.idle_12m)
    );
    println!(
        "   {} duplicate records were merged into their person; {} hard bounces are suppressed.",
        n(h.duplicates_merged),
        n(h.hard_bounces)
    );
    println!(
        "   {} people have done nothing themselves for {} months (opens do not count): the GDPR practice seed 001",
        n(snapshot.due_for_erasure),
        config.privacy.retention_months
    );
    println!(
        "   cites says to delete them. `winback privacy retention --dry-run` lists them; the worker erases them daily,"
    );
    println!(
        "   after a \"do you want to keep your account?\" mail if you start examples/campaigns/retention-notice.toml."
    );
    Ok(())
}
