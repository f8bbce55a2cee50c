//! `winback report`: per campaign and variant, what the messages did (sent, delivered, bounced,
//! opened by people and by machines, clicked, unsubscribed, complained, survey answers), who
//! bought within the campaign's attribution window, revenue, average order value, discount and
//! message cost, and the causal readout against the holdout with 95% intervals
//! ([`winback_measure`]); then list hygiene and the shares of the base per lifecycle stage.

use std::process::ExitCode;

use anyhow::{Context, Result};
use winback_domain::{Clock, Timestamp};
use winback_engine::Campaign;
use winback_engine::ports::JourneyStore;
use winback_measure::{Arm, Economics, Readout, Winner};
use winback_store::{ArmResult, MessageFunnel, SqlStore, Store};

use crate::config::Config;
use crate::report::n;

/// One arm (variant or holdout) of a campaign, with its readout.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArmReport {
    /// Variant (the holdout keeps the variant it would have had).
    pub variant: String,
    /// Held out (never messaged).
    pub holdout: bool,
    /// Contacts who entered.
    pub contacts: i64,
    /// Contacts who bought within the attribution window.
    pub converted: i64,
    /// Their orders in the window.
    pub orders: i64,
    /// Revenue of those orders, minor units.
    pub revenue_minor: i64,
    /// Average order value, minor units.
    pub average_order_minor: Option<i64>,
    /// Offers issued.
    pub offers: i64,
    /// Offers redeemed.
    pub redeemed: i64,
    /// Discount on redeemed offers, minor units.
    pub discount_minor: i64,
    /// What the arm's messages cost, minor units (`[measurement]` costs per channel).
    pub message_cost_minor: i64,
    /// Against the holdout (treated arms only, when there is a holdout).
    pub readout: Option<Readout>,
}

/// One campaign's report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CampaignReport {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Status.
    pub status: String,
    /// Attribution window in days (the campaign's `conversion_window`).
    pub window_days: f64,
    /// Variants and holdout.
    pub arms: Vec<ArmReport>,
    /// The treated variants together against the holdout.
    pub overall: Option<Readout>,
    /// Message outcomes per step, variant and channel.
    pub messages: Vec<MessageFunnel>,
    /// Automatic winner selection (campaigns with several variants).
    pub winner: Option<Winner>,
    /// Did they stay? Reactivated customers after their return.
    pub stay: winback_store::stay::Stay,
}

/// The whole report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// As of.
    pub as_of: Timestamp,
    /// Contacts who entered from here …
    pub from: Timestamp,
    /// … until here.
    pub until: Timestamp,
    /// Currency of the money figures.
    pub currency: String,
    /// Campaigns.
    pub campaigns: Vec<CampaignReport>,
    /// List hygiene.
    pub hygiene: winback_store::privacy::Hygiene,
    /// People per lifecycle stage at the latest scoring run.
    pub stages: Vec<(String, i64)>,
}

/// A store arm as the statistics see it.
pub fn arm(a: &ArmResult) -> Arm {
    Arm {
        contacts: a.enrolled.max(0) as u64,
        converted: a.converted.max(0) as u64,
        revenue_minor: a.revenue_minor,
        revenue_sq: a.revenue_sq,
    }
}

/// All holdout arms as one (each keeps the variant it would have had; they are one group).
pub fn pooled_holdout(arms: &[ArmResult]) -> Option<ArmResult> {
    let mut out: Option<ArmResult> = None;
    for a in arms.iter().filter(|a| a.holdout) {
        let h = out.get_or_insert_with(|| ArmResult {
            variant: "holdout".into(),
            holdout: true,
            ..ArmResult::default()
        });
        h.enrolled += a.enrolled;
        h.converted += a.converted;
        h.orders += a.orders;
        h.revenue_minor += a.revenue_minor;
        h.revenue_sq += a.revenue_sq;
        h.offers += a.offers;
        h.redeemed += a.redeemed;
        h.discount_minor += a.discount_minor;
    }
    out
}

/// Message cost of one variant's messages.
fn message_cost(config: &Config, funnel: &[MessageFunnel], variant: &str) -> i64 {
    funnel
        .iter()
        .filter(|f| f.variant == variant)
        .map(|f| {
            f.sent
                * match f.channel.as_str() {
                    "email" => config.measurement.email_cost_minor,
                    "sms" => config.measurement.sms_cost_minor,
                    _ => 0,
                }
        })
        .sum()
}

/// The readouts of a campaign's arms: each treated variant and all of them together against
/// the holdout.
pub fn arm_reports(
    config: &Config,
    arms: &[ArmResult],
    funnel: &[MessageFunnel],
) -> (Vec<ArmReport>, Option<Readout>) {
    let margin = config.clv.margin;
    let pooled = pooled_holdout(arms);
    let holdout = pooled.as_ref().filter(|h| h.enrolled > 0);
    let arms: Vec<&ArmResult> = arms
        .iter()
        .filter(|a| !a.holdout)
        .chain(pooled.iter())
        .collect();
    let mut out = Vec::new();
    let mut all = Arm::default();
    let mut all_cost = Economics {
        margin,
        ..Economics::default()
    };
    for a in arms {
        let cost = if a.holdout {
            0
        } else {
            message_cost(config, funnel, &a.variant)
        };
        let economics = Economics {
            margin,
            discount_minor: a.discount_minor,
            message_cost_minor: cost,
        };
        if !a.holdout {
            let x = arm(a);
            all.contacts += x.contacts;
            all.converted += x.converted;
            all.revenue_minor += x.revenue_minor;
            all.revenue_sq += x.revenue_sq;
            all_cost.discount_minor += a.discount_minor;
            all_cost.message_cost_minor += cost;
        }
        out.push(ArmReport {
            variant: a.variant.clone(),
            holdout: a.holdout,
            contacts: a.enrolled,
            converted: a.converted,
            orders: a.orders,
            revenue_minor: a.revenue_minor,
            average_order_minor: (a.orders > 0).then(|| a.revenue_minor / a.orders),
            offers: a.offers,
            redeemed: a.redeemed,
            discount_minor: a.discount_minor,
            message_cost_minor: cost,
            readout: holdout
                .filter(|_| !a.holdout && a.enrolled > 0)
                .map(|h| Readout::new(arm(a), arm(h), economics)),
        });
    }
    let overall = holdout
        .filter(|_| all.contacts > 0)
        .map(|h| Readout::new(all, arm(h), all_cost));
    (out, overall)
}

/// The last instant a report covers by default (a simulated programme runs ahead of the clock).
pub fn forever() -> Timestamp {
    Timestamp::from_micros(253_370_764_800_000_000).unwrap_or(Timestamp::EPOCH)
}

/// Gathers the report for contacts who entered in `[from, until)`.
pub async fn build(
    config: &Config,
    store: &SqlStore,
    from: Timestamp,
    until: Timestamp,
    now: Timestamp,
) -> Result<Report> {
    let mut campaigns = Vec::new();
    for rec in store.campaigns().await? {
        let c = Campaign::parse(&rec.file, &rec.source)
            .map_err(|e| anyhow::anyhow!("stored campaign {}: {e}", rec.name))?;
        let window = c.conversion_window.seconds();
        let arms = store
            .campaign_results_between(rec.id, window, from, until)
            .await?;
        let messages = store.message_funnel(rec.id, from, until).await?;
        let stay = store.stay(rec.id, window, now).await?;
        let (arms_out, overall) = arm_reports(config, &arms, &messages);
        let variants: Vec<(String, Arm)> = arms
            .iter()
            .filter(|a| !a.holdout)
            .map(|a| (a.variant.clone(), arm(a)))
            .collect();
        let holdout = pooled_holdout(&arms).map(|h| arm(&h)).unwrap_or_default();
        campaigns.push(CampaignReport {
            name: rec.name,
            description: c.description.clone(),
            status: rec.status,
            window_days: window as f64 / 86_400.0,
            arms: arms_out,
            overall,
            messages,
            winner: (variants.len() > 1)
                .then(|| winback_measure::choose_winner(&variants, &holdout)),
            stay,
        });
    }
    let hygiene = store.hygiene(now).await?;
    let shares = store.stage_shares().await?;
    let latest = shares.iter().map(|(t, _, _)| *t).max();
    let stages = shares
        .into_iter()
        .filter(|(t, _, _)| Some(*t) == latest)
        .map(|(_, s, k)| (s, k))
        .collect();
    Ok(Report {
        as_of: now,
        from,
        until,
        currency: config.default_currency.clone(),
        campaigns,
        hygiene,
        stages,
    })
}

fn money(minor: f64, cur: &str) -> String {
    crate::report::money(minor.round() as i64, cur)
}

fn points(i: &winback_measure::Interval) -> String {
    format!(
        "{:+.1} points (95% CI {:+.1} to {:+.1})",
        100.0 * i.estimate,
        100.0 * i.low,
        100.0 * i.high
    )
}

fn money_interval(i: &winback_measure::Interval, cur: &str) -> String {
    format!(
        "{} ({} to {})",
        money(i.estimate, cur),
        money(i.low, cur),
        money(i.high, cur)
    )
}

/// One line per readout figure, in words a marketer reads; `brief` keeps the rate, the margin
/// and the first warning.
pub fn readout_lines(r: &Readout, cur: &str, brief: bool) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(d) = &r.rate_difference {
        out.push(format!(
            "reactivation {:.1}% vs {:.1}% in the holdout: {}{}",
            100.0 * r.treated.rate(),
            100.0 * r.holdout.rate(),
            points(d),
            if d.positive() {
                " — the campaign brought people back"
            } else if d.negative() {
                " — fewer bought than in the holdout"
            } else {
                ""
            }
        ));
    }
    if let Some(v) = r.revenue_per_contact.as_ref().filter(|_| !brief) {
        out.push(format!(
            "incremental revenue {} per contact, {} in all",
            money_interval(v, cur),
            r.incremental_revenue_minor
                .map(|t| money_interval(&t, cur))
                .unwrap_or_default()
        ));
    }
    if let Some(m) = &r.incremental_margin_minor {
        out.push(format!(
            "incremental margin after discounts and sending {}{}",
            money_interval(m, cur),
            r.roi
                .map(|x| format!(
                    "; ROI {:+.0}% ({:+.0}% to {:+.0}%)",
                    100.0 * x.estimate,
                    100.0 * x.low,
                    100.0 * x.high
                ))
                .unwrap_or_default()
        ));
    }
    for w in r.warnings.iter().take(if brief { 1 } else { usize::MAX }) {
        out.push(format!("note: {w}"));
    }
    out
}

fn share(s: &winback_store::stay::Share) -> String {
    match s.rate() {
        Some(r) => format!("{:.0}%", 100.0 * r),
        None => "-".into(),
    }
}

/// "Did they stay?" in a few lines: reactivated, holdout returners, never-lapsed.
pub fn stay_lines(s: &winback_store::stay::Stay, cur: &str) -> Vec<String> {
    if s.reactivated.people == 0 {
        return Vec::new();
    }
    let mut out = vec![format!(
        "did they stay? {:<22} {:>6} {:>8} {:>8} {:>8} {:>13} {:>14} {:>12}",
        "", "people", "again30", "again90", "again180", "lapsed again", "revenue after", "mean CLV"
    )];
    for (label, c) in [
        ("reactivated", &s.reactivated),
        ("holdout, came back", &s.holdout_returned),
        ("never lapsed", &s.never_lapsed),
    ] {
        out.push(format!(
            "               {:<22} {:>6} {:>8} {:>8} {:>8} {:>13} {:>14} {:>12}",
            label,
            n(c.people),
            share(&c.again_30d),
            share(&c.again_90d),
            share(&c.again_180d),
            share(&c.lapsed_again),
            money(c.revenue_after_minor as f64, cur),
            c.mean_clv_minor
                .map(|v| money(v, cur))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    if s.reactivated.reward_only.eligible > 0 {
        out.push(format!(
            "reward only: {} of {} who came back with the campaign's code bought nothing more within 90 days",
            n(s.reactivated.reward_only.yes),
            n(s.reactivated.reward_only.eligible)
        ));
    }
    out
}

/// Prints the report as tables.
pub fn print(r: &Report) {
    let cur = &r.currency;
    println!(
        "winback report, {} (contacts who entered {} to {})",
        r.as_of.date_utc(),
        r.from.date_utc(),
        r.until.date_utc()
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
        for line in stay_lines(&c.stay, cur) {
            println!("   {line}");
        }
    }
    println!();
    crate::privacy::print_hygiene(&r.hygiene);
    if !r.stages.is_empty() {
        let total: i64 = r.stages.iter().map(|(_, k)| k).sum();
        let parts: Vec<String> = r
            .stages
            .iter()
            .map(|(s, k)| format!("{s} {:.1}%", 100.0 * *k as f64 / total.max(1) as f64))
            .collect();
        println!(
            "Base health (latest scoring run, {} people): {}",
            n(total as u64),
            parts.join(", ")
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
    /// Measure as of this date instead of today (a simulated programme runs ahead of the clock).
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
        None => clock.now(),
    };
    let report = build(config, &store, from, until, as_of).await?;
    store.close().await;
    if let Some(path) = &args.html {
        crate::campaigns::write_atomic(path, crate::html_report::render(&report)?.as_bytes())
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
