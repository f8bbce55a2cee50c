//! `winback report`: prints the [`winback_report::Report`] as tables, JSON, CSV or HTML: per
//! campaign and variant what the messages did, who bought within the attribution window, the
//! causal readout against the holdout with 95% intervals, did they stay, deliverability per
//! mailbox provider; then list hygiene and the health of the base.

use std::process::ExitCode;

use anyhow::{Context, Result};
use winback_domain::{Clock, Timestamp};
use winback_measure::{Readout, Winner};
use winback_store::SqlStore;

pub use winback_report::{Report, arm, forever, pooled_holdout};

use crate::config::Config;
use crate::report::n;

/// Gathers the report for contacts who entered in `[from, until)`, as of `now`.
pub async fn build(
    config: &Config,
    store: &SqlStore,
    from: Timestamp,
    until: Timestamp,
    now: Timestamp,
) -> Result<Report> {
    Ok(winback_report::build(&config.report_settings(), store, from, until, now).await?)
}

fn money(minor: f64, cur: &str) -> String {
    crate::report::money(minor.round() as i64, cur)
}

/// One line per readout figure, in words a marketer reads; `brief` keeps the rate, the margin
/// and the first warning (`winback_report::present` words them, for every view).
pub fn readout_lines(r: &Readout, cur: &str, brief: bool) -> Vec<String> {
    winback_report::present::ReadoutView::new(r, cur).lines(brief)
}

/// Prints the report as tables.
pub fn print(r: &Report) {
    let cur = &r.currency;
    println!(
        "winback report, {} (contacts who entered {} to {})",
        r.as_of.date_local(),
        r.from.date_local(),
        r.until.date_local()
    );
    for c in &r.campaigns {
        println!();
        println!("{} [{}] — {}", c.name, c.status, c.description);
        if c.arms.iter().all(|a| a.contacts == 0) {
            println!("   nobody entered in this period");
            continue;
        }
        println!(
            "   {:<10} {:>8} {:>8} {:>7} {:>12} {:>10} {:>9} {:>10} {:>9}",
            "arm",
            "contacts",
            "bought",
            "rate",
            "revenue",
            "AOV",
            "redeemed",
            "discount",
            "messages"
        );
        for a in &c.arms {
            println!(
                "   {:<10} {:>8} {:>8} {:>6.1}% {:>12} {:>10} {:>9} {:>10} {:>9}",
                if a.holdout {
                    "holdout".to_owned()
                } else {
                    a.variant.clone()
                },
                n(a.contacts as u64),
                n(a.converted as u64),
                100.0 * a.converted as f64 / a.contacts.max(1) as f64,
                money(a.revenue_minor as f64, cur),
                a.average_order_minor
                    .map(|v| money(v as f64, cur))
                    .unwrap_or_else(|| "-".into()),
                n(a.redeemed as u64),
                money(a.discount_minor as f64, cur),
                money(a.message_cost_minor as f64, cur),
            );
        }
        if !c.messages.is_empty() {
            println!(
                "   {:<22} {:<8} {:<6} {:>6} {:>9} {:>6} {:>7} {:>8} {:>7} {:>6} {:>6} {:>7}",
                "step",
                "var.",
                "chan.",
                "sent",
                "delivered",
                "hard",
                "soft",
                "opened",
                "machine",
                "click",
                "unsub",
                "spam"
            );
            for f in &c.messages {
                println!(
                    "   {:<22} {:<8} {:<6} {:>6} {:>9} {:>6} {:>7} {:>8} {:>7} {:>6} {:>6} {:>7}",
                    f.step,
                    f.variant,
                    f.channel,
                    n(f.sent as u64),
                    n(f.delivered as u64),
                    n(f.hard_bounced as u64),
                    n(f.soft_bounced as u64),
                    n(f.opened_human as u64),
                    n(f.opened_machine as u64),
                    n(f.clicked as u64),
                    n(f.unsubscribed as u64),
                    n(f.complained as u64),
                );
                if !f.survey.is_empty() {
                    let reasons: Vec<String> =
                        f.survey.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    println!("      survey answers: {}", reasons.join(", "));
                }
            }
            if !c.dropped_by_reason.is_empty() {
                let why: Vec<String> = c
                    .dropped_by_reason
                    .iter()
                    .map(|(k, v)| format!("{} {}", n(*v as u64), k.replace('_', " ")))
                    .collect();
                println!("   dropped at send time: {}", why.join(", "));
            }
        }
        let multi = c.arms.iter().filter(|a| !a.holdout).count() > 1;
        for a in c.arms.iter().filter(|a| !a.holdout) {
            if let Some(x) = &a.readout {
                if multi {
                    println!("   variant {}:", a.variant);
                }
                for line in readout_lines(x, cur, false) {
                    println!("   {line}");
                }
            }
        }
        if multi {
            if let Some(o) = &c.overall {
                println!("   all variants together:");
                for line in readout_lines(o, cur, false) {
                    println!("   {line}");
                }
            }
        }
        match &c.winner {
            Some(Winner::Chosen { reason, .. }) => println!("   winner: {reason}"),
            Some(Winner::NotYet { reason }) => println!("   no winner yet: {reason}"),
            None => {}
        }
        for line in winback_report::present::stay_lines(&c.stay, cur) {
            println!("   {line}");
        }
        for (label, rows) in [
            ("locale", &c.results_by_locale),
            ("mailbox provider", &c.results_by_provider),
        ] {
            if rows.len() < 2 {
                continue;
            }
            let parts: Vec<String> = rows
                .iter()
                .map(|x| {
                    let lift = x
                        .readout
                        .as_ref()
                        .and_then(|r| r.rate_difference)
                        .map(|d| format!(", {:+.1} points vs holdout", 100.0 * d.estimate))
                        .unwrap_or_default();
                    format!(
                        "{} {} of {} bought{lift}",
                        x.segment,
                        n(x.converted.max(0) as u64),
                        n(x.contacts.max(0) as u64)
                    )
                })
                .collect();
            println!("   results by {label}: {}", parts.join("; "));
        }
        if c.by_locale.len() > 1 {
            let parts: Vec<String> = c
                .by_locale
                .iter()
                .map(|f| {
                    format!(
                        "{} {} sent, {} clicked",
                        f.locale,
                        n(f.sent as u64),
                        n(f.clicked as u64)
                    )
                })
                .collect();
            println!("   by locale: {}", parts.join("; "));
        }
        if !c.deliverability.is_empty() {
            println!(
                "   {:<18} {:>7} {:>9} {:>11} {:>11}",
                "mailbox provider", "sent", "delivered", "hard bounce", "complaints"
            );
            for d in &c.deliverability {
                println!(
                    "   {:<18} {:>7} {:>9} {:>10.2}% {:>10.3}%{}",
                    d.provider,
                    n(d.sent as u64),
                    n(d.delivered as u64),
                    100.0 * d.hard_bounce_rate,
                    100.0 * d.complaint_rate,
                    if d.over_threshold {
                        format!(
                            "  OVER the engine's limit ({:.2}% / {:.3}%)",
                            100.0 * d.max_hard_bounce_rate,
                            100.0 * d.max_complaint_rate
                        )
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    let paused: Vec<String> = r
        .providers
        .iter()
        .filter_map(|p| {
            p.paused
                .as_ref()
                .map(|why| format!("{}: {why}", p.provider))
        })
        .collect();
    if !paused.is_empty() {
        println!();
        println!("Paused mailbox providers: {}", paused.join("; "));
    }
    println!();
    crate::privacy::print_hygiene(&r.hygiene);
    if !r.base.stages.is_empty() {
        println!(
            "Base health (latest scoring run, {} people): {}",
            n(r.base.people() as u64),
            r.base.shares_text()
        );
    }
    let moved: Vec<String> = r
        .base
        .migration
        .iter()
        .filter(|(a, b, _)| a != b)
        .map(|(a, b, k)| format!("{a} → {b} {}", n(*k as u64)))
        .collect();
    if !moved.is_empty() {
        println!(
            "Segment moves since the previous scoring run: {}",
            moved.join(", ")
        );
    }
    if !r.base.reasons.is_empty() {
        let parts: Vec<String> = r
            .base
            .reasons
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("Reasons for leaving (survey answers): {}", parts.join(", "));
    }
}

/// The report in a dozen lines: the programme table (one row per campaign with its counts,
/// incremental margin and verdict, then the total), why each verdict, then the base and its
/// hygiene.
pub fn print_summary(r: &Report) {
    println!(
        "   {:<27} {:>8} {:>8} {:>8} {:>7} {:>6}  {:<50} verdict",
        "campaign",
        "entered",
        "held out",
        "messaged",
        "sent",
        "buyers",
        "incremental margin (95% at every look)"
    );
    let row = |name: &str,
               entered: i64,
               held_out: i64,
               messaged: i64,
               sent: i64,
               buyers: i64,
               margin: String,
               verdict: &str| {
        println!(
            "   {name:<27} {:>8} {:>8} {:>8} {:>7} {:>6}  {margin:<50} {verdict}",
            n(entered.max(0) as u64),
            if held_out > 0 {
                n(held_out as u64)
            } else {
                "–".into()
            },
            n(messaged.max(0) as u64),
            n(sent.max(0) as u64),
            n(buyers.max(0) as u64),
        );
    };
    for c in &r.campaigns {
        let s = &c.summary;
        row(
            &s.name,
            s.entered,
            s.held_out,
            s.messaged,
            s.sent,
            s.buyers,
            s.margin
                .as_ref()
                .map(|m| m.short.clone())
                .unwrap_or_else(|| "–".into()),
            s.verdict.label(),
        );
    }
    let t = &r.total;
    row(
        "all campaigns",
        t.entered,
        t.held_out,
        t.messaged,
        t.sent,
        t.buyers,
        t.margin
            .as_ref()
            .map(|m| m.short.clone())
            .unwrap_or_else(|| "–".into()),
        "",
    );
    println!("   Why:");
    for c in &r.campaigns {
        let s = &c.summary;
        println!("   - {} ({}): {}.", s.name, s.verdict.label(), s.why);
    }
    if t.margin_campaigns > 1 {
        println!(
            "   The total adds the {} campaigns' margins and the ends of their intervals: it holds however the campaigns' customers overlap.",
            t.margin_campaigns
        );
    }
    if r.margin >= 1.0 {
        println!(
            "   Margins count all revenue as margin: set your gross margin as `[clv] margin` (e.g. 0.4)."
        );
    }
    if !r.base.stages.is_empty() {
        println!("   The base: {}.", r.base.shares_text());
    }
    for (channel, why, until) in &r.transport_pauses {
        println!(
            "   The {channel} transport is paused until {until} (its circuit breaker: the relay or provider failed about itself; nobody was suppressed): {why}"
        );
    }
    let h = &r.hygiene;
    println!(
        "   Hygiene: {} of {} addresses idle 12+ months (spam-trap risk), {} hard bounces, complaint rate {:.3}%, {} unsubscribed by sunset.",
        n(h.idle_12m),
        n(h.addresses),
        n(h.hard_bounces),
        100.0 * h.complaint_rate,
        n(h.sunset)
    );
    if h.look_alike_addresses > 0 {
        println!(
            "   {} addresses use look-alike characters (another script or full-width letters); `winback privacy hygiene` lists them.",
            n(h.look_alike_addresses)
        );
    }
}

/// One CSV row per campaign arm, with the readout's intervals.
pub fn write_csv(r: &Report, out: impl std::io::Write) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "campaign",
        "arm",
        "holdout",
        "contacts",
        "converted",
        "orders",
        "revenue_minor",
        "discount_minor",
        "message_cost_minor",
        "rate_difference",
        "rate_difference_low",
        "rate_difference_high",
        "incremental_revenue_minor",
        "incremental_revenue_low",
        "incremental_revenue_high",
        "incremental_margin_minor",
        "incremental_margin_low",
        "incremental_margin_high",
        "currency",
    ])?;
    let f = |x: Option<f64>| x.map(|v| format!("{v:.6}")).unwrap_or_default();
    for c in &r.campaigns {
        for a in &c.arms {
            let x = a.readout.as_ref();
            let rd = x.and_then(|x| x.rate_difference);
            let ir = x.and_then(|x| x.incremental_revenue_minor);
            let im = x.and_then(|x| x.incremental_margin_minor);
            w.write_record([
                winback_channels::exports::defuse(&c.name),
                winback_channels::exports::defuse(&a.variant),
                a.holdout.to_string(),
                a.contacts.to_string(),
                a.converted.to_string(),
                a.orders.to_string(),
                a.revenue_minor.to_string(),
                a.discount_minor.to_string(),
                a.message_cost_minor.to_string(),
                f(rd.map(|i| i.estimate)),
                f(rd.map(|i| i.low)),
                f(rd.map(|i| i.high)),
                f(ir.map(|i| i.estimate)),
                f(ir.map(|i| i.low)),
                f(ir.map(|i| i.high)),
                f(im.map(|i| i.estimate)),
                f(im.map(|i| i.low)),
                f(im.map(|i| i.high)),
                r.currency.clone(),
            ])?;
        }
    }
    w.flush()?;
    Ok(())
}

fn date(flag: &str, s: &str) -> Result<Timestamp> {
    let d: jiff::civil::Date = s
        .parse()
        .with_context(|| format!("{flag}: `{s}` is not a date (YYYY-MM-DD)"))?;
    let z = d
        .to_zoned(jiff::tz::TimeZone::UTC)
        .with_context(|| format!("{flag}: `{s}`"))?;
    Ok(Timestamp::new(z.timestamp()))
}

/// `winback report` arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Only contacts who entered on or after this date (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// Only contacts who entered before this date.
    #[arg(long)]
    pub until: Option<String>,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV (one row per campaign arm).
    #[arg(long)]
    pub csv: bool,
    /// Measure as of this date instead of the default: today, or where the data ends when it
    /// runs ahead of the clock (a simulated programme).
    #[arg(long)]
    pub as_of: Option<String>,
    /// Also write the report as one self-contained HTML file with charts.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

/// Runs `winback report`.
pub async fn run(config: &Config, clock: &dyn Clock, args: ReportArgs) -> Result<ExitCode> {
    let from = args
        .since
        .as_deref()
        .map(|s| date("--since", s))
        .transpose()?
        .unwrap_or(Timestamp::EPOCH);
    // Without --until, everything (a simulated programme runs ahead of the clock).
    let until = match args.until.as_deref() {
        Some(s) => date("--until", s)?,
        None => forever(),
    };
    anyhow::ensure!(from < until, "--since must be before --until");
    let store = crate::open_store(config).await?;
    let as_of = match args.as_of.as_deref() {
        Some(s) => date("--as-of", s)?,
        None => winback_report::as_of(&store, clock.now()).await?,
    };
    let report = build(config, &store, from, until, as_of).await?;
    store.close().await;
    if let Some(path) = &args.html {
        crate::campaigns::write_shared(path, crate::html_report::render(&report)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.csv {
        write_csv(&report, std::io::stdout().lock())?;
    } else {
        print(&report);
    }
    Ok(ExitCode::SUCCESS)
}
