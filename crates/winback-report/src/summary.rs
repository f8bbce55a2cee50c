//! The answer to "what makes money, what do I stop?": one row per campaign with its counts, its
//! incremental margin and a verdict, and the programme's total. The CLI report, `report.html`,
//! `GET /v1/report` and the dashboard's overview all show these rows, so a campaign's verdict
//! and figures are the same on every screen.
//!
//! The verdict comes from the incremental margin's interval alone, in its anytime-valid form
//! (campaigns are read every day; see `winback_measure::anytime`); the reactivation-rate
//! difference is shown beside it as supporting evidence, so the two cannot contradict each
//! other in the verdict.

use std::collections::BTreeMap;

use winback_measure::{Interval, MIN_GROUP, Readout};

use crate::present::Figure;
use crate::{CampaignReport, money, n};

/// What to do about a campaign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole margin interval lies above zero: it earns more than it costs.
    Keep,
    /// The whole margin interval lies below zero: it costs more than it brings.
    ChangeOrStop,
    /// Messages went out, but the groups are too small, there is no holdout, or the interval
    /// still spans zero.
    TooEarly,
    /// Nobody was messaged or exported yet.
    #[default]
    NothingSent,
}

impl Verdict {
    /// The verdict as its JSON value (`keep`, `change_or_stop`, `too_early`, `nothing_sent`).
    pub fn key(self) -> &'static str {
        match self {
            Verdict::Keep => "keep",
            Verdict::ChangeOrStop => "change_or_stop",
            Verdict::TooEarly => "too_early",
            Verdict::NothingSent => "nothing_sent",
        }
    }

    /// The verdict in a marketer's words, as every screen labels it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Keep => "keep",
            Verdict::ChangeOrStop => "change or stop",
            Verdict::TooEarly => "too early to tell",
            Verdict::NothingSent => "nothing sent",
        }
    }
}

/// One campaign's row of the programme table.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CampaignSummary {
    /// Campaign name.
    pub name: String,
    /// Status (`active`, `paused`, …).
    pub status: String,
    /// Channels its messages went out on, and `audience` / `print` when it exported people.
    pub channels: Vec<String>,
    /// People who entered (messaged arms and holdout).
    pub entered: i64,
    /// Of them, held out (never messaged).
    pub held_out: i64,
    /// People who received at least one message.
    pub messaged: i64,
    /// Messages the relay or provider accepted.
    pub sent: i64,
    /// Of them, not bounced.
    pub delivered: i64,
    /// Messages not sent at send time, with the reasons below.
    pub dropped: i64,
    /// Dropped messages by reason, in words.
    pub dropped_by_reason: BTreeMap<String, i64>,
    /// People handed to ad audiences or print.
    pub exported: i64,
    /// People put on a call list for customer service.
    pub called: i64,
    /// Wallet passes issued.
    pub passes: i64,
    /// Buyers in the messaged arms within the attribution window.
    pub buyers: i64,
    /// Buyers in the holdout.
    pub holdout_buyers: i64,
    /// Incremental margin after discounts and sending, minor units, with its anytime-valid 95%
    /// interval (the one the verdict reads; it holds however often the campaign is looked at,
    /// and is wider than the fixed-horizon interval of the detailed readout).
    pub margin_minor: Option<Interval>,
    /// The same in words.
    pub margin: Option<Figure>,
    /// Supporting evidence: the reactivation-rate difference in points.
    pub lift: Option<Figure>,
    /// What to do.
    pub verdict: Verdict,
    /// [`Verdict::label`], for JSON readers.
    pub verdict_label: &'static str,
    /// Why, in one sentence.
    pub why: String,
}

use crate::present::label as words;

/// The verdict on `overall` (the treated variants against the holdout) after `sent` messages
/// and `exported` people (handed to audiences, print or a call list), with its reason.
pub fn verdict(
    overall: Option<&Readout>,
    sent: i64,
    exported: i64,
    cur: &str,
) -> (Verdict, String) {
    if sent == 0 && exported == 0 {
        return (Verdict::NothingSent, "nothing was sent yet".into());
    }
    let Some(r) = overall else {
        return (
            Verdict::TooEarly,
            "it has no holdout, so what it earned cannot be measured".into(),
        );
    };
    if r.holdout.contacts < MIN_GROUP || r.treated.contacts < MIN_GROUP {
        return (
            Verdict::TooEarly,
            format!(
                "{} held out and {} in the messaged group; at least {MIN_GROUP} in each are needed",
                n(r.holdout.contacts),
                n(r.treated.contacts)
            ),
        );
    }
    let Some(m) = r.margin_anytime else {
        let why = if r.treated.converted + r.holdout.converted < winback_measure::MIN_BUYERS {
            format!(
                "too few buyers to tell: {} bought in the two groups together",
                n(r.treated.converted + r.holdout.converted)
            )
        } else {
            "no margin could be estimated yet".into()
        };
        return (Verdict::TooEarly, why);
    };
    let range = format!(
        "{} to {}",
        money(m.low.round() as i64, cur),
        money(m.high.round() as i64, cur)
    );
    if m.positive() {
        (
            Verdict::Keep,
            format!(
                "it earns more than it costs: the margin is {range} (95%, valid at every look)"
            ),
        )
    } else if m.negative() {
        (
            Verdict::ChangeOrStop,
            format!(
                "it costs more than it brings: the margin is {range} (95%, valid at every look)"
            ),
        )
    } else {
        (
            Verdict::TooEarly,
            format!(
                "the margin could still be either side of zero ({range}, 95%, valid at every look)"
            ),
        )
    }
}

impl CampaignSummary {
    /// The row of `c`, amounts in `cur`.
    pub fn new(c: &CampaignReport, cur: &str) -> Self {
        let outbox = || c.messages.iter().filter(|f| crate::is_outbox(&f.channel));
        let sent: i64 = outbox().map(|f| f.sent).sum();
        let exported: i64 = c.exports.iter().map(|e| e.people).sum();
        let touched = |channel: &str| -> i64 {
            c.messages
                .iter()
                .filter(|f| f.channel == channel)
                .map(|f| f.sent)
                .sum()
        };
        let (called, passes) = (touched("call"), touched("wallet"));
        let mut channels: Vec<String> = c
            .messages
            .iter()
            .filter(|f| f.sent + f.dropped > 0)
            .map(|f| crate::channel_family(&f.channel).to_owned())
            .chain(c.exports.iter().map(|e| e.kind().to_owned()))
            .collect();
        channels.sort();
        channels.dedup();
        let (verdict, why) = verdict(c.overall.as_ref(), sent, exported + called + passes, cur);
        let margin_minor = c.overall.as_ref().and_then(|o| o.margin_anytime);
        Self {
            name: c.name.clone(),
            status: c.status.clone(),
            channels,
            entered: c.arms.iter().map(|a| a.contacts).sum(),
            held_out: c
                .arms
                .iter()
                .filter(|a| a.holdout)
                .map(|a| a.contacts)
                .sum(),
            messaged: c.arms.iter().map(|a| a.messaged).sum(),
            sent,
            delivered: outbox().map(|f| f.delivered).sum(),
            dropped: outbox().map(|f| f.dropped).sum(),
            dropped_by_reason: c
                .dropped_by_reason
                .iter()
                .map(|(k, v)| (words(k), *v))
                .collect(),
            exported,
            called,
            passes,
            buyers: c.treated_converted(),
            holdout_buyers: c
                .arms
                .iter()
                .filter(|a| a.holdout)
                .map(|a| a.converted)
                .sum(),
            margin: margin_minor
                .as_ref()
                .map(|m| Figure::money_at_every_look(m, cur)),
            margin_minor,
            lift: c
                .overall
                .as_ref()
                .and_then(|o| o.rate_difference.as_ref())
                .map(Figure::points),
            verdict,
            verdict_label: verdict.label(),
            why,
        }
    }
}

/// The programme's total over its campaigns.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProgrammeTotal {
    /// Campaigns.
    pub campaigns: usize,
    /// Campaigns per verdict label.
    pub verdicts: BTreeMap<&'static str, usize>,
    /// People who entered, summed over campaigns (a person in two campaigns counts twice).
    pub entered: i64,
    /// Held out.
    pub held_out: i64,
    /// Messaged.
    pub messaged: i64,
    /// Messages sent.
    pub sent: i64,
    /// Delivered.
    pub delivered: i64,
    /// Dropped.
    pub dropped: i64,
    /// Exported to audiences or print.
    pub exported: i64,
    /// Put on a call list.
    pub called: i64,
    /// Wallet passes issued.
    pub passes: i64,
    /// Buyers in the messaged arms.
    pub buyers: i64,
    /// Incremental margin over the campaigns with a readout, minor units. The interval adds
    /// the campaigns' bounds: it holds whatever the correlation between campaigns (they share
    /// customers), and is wider than an interval that assumed them independent.
    pub margin_minor: Option<Interval>,
    /// The same in words.
    pub margin: Option<Figure>,
    /// Campaigns whose margin is in the total.
    pub margin_campaigns: usize,
}

impl ProgrammeTotal {
    /// The total of `rows`, amounts in `cur`.
    pub fn new(rows: &[CampaignSummary], cur: &str) -> Self {
        let mut verdicts = BTreeMap::new();
        for r in rows {
            *verdicts.entry(r.verdict.label()).or_default() += 1;
        }
        let with_margin: Vec<&Interval> = rows
            .iter()
            .filter_map(|r| r.margin_minor.as_ref())
            .collect();
        let margin_minor = (!with_margin.is_empty()).then(|| Interval {
            estimate: with_margin.iter().map(|m| m.estimate).sum(),
            low: with_margin.iter().map(|m| m.low).sum(),
            high: with_margin.iter().map(|m| m.high).sum(),
        });
        let sum = |f: fn(&CampaignSummary) -> i64| rows.iter().map(f).sum();
        Self {
            campaigns: rows.len(),
            verdicts,
            entered: sum(|r| r.entered),
            held_out: sum(|r| r.held_out),
            messaged: sum(|r| r.messaged),
            sent: sum(|r| r.sent),
            delivered: sum(|r| r.delivered),
            dropped: sum(|r| r.dropped),
            exported: sum(|r| r.exported),
            called: sum(|r| r.called),
            passes: sum(|r| r.passes),
            buyers: sum(|r| r.buyers),
            margin: margin_minor
                .as_ref()
                .map(|m| Figure::money_at_every_look(m, cur)),
            margin_minor,
            margin_campaigns: with_margin.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use winback_measure::{Arm, Economics};

    use super::*;

    fn readout(treated: (u64, u64), holdout: (u64, u64), discount: i64) -> Readout {
        let arm = |(contacts, converted): (u64, u64)| Arm {
            contacts,
            converted,
            revenue_minor: converted as i64 * 10_000,
            revenue_sq: converted as f64 * 10_000f64.powi(2),
            ..Arm::default()
        };
        Readout::new(
            arm(treated),
            arm(holdout),
            Economics {
                margin: 0.4,
                discount_minor: discount,
                message_cost_minor: treated.0 as i64,
                ..Economics::default()
            },
        )
    }

    #[test]
    fn the_verdict_follows_the_margin_interval_only() {
        let v = |r: &Readout| verdict(Some(r), 1, 0, "EUR").0;
        assert_eq!(v(&readout((4_000, 600), (1_000, 50), 0)), Verdict::Keep);
        assert_eq!(
            v(&readout((4_000, 600), (1_000, 50), 50_000_000)),
            Verdict::ChangeOrStop
        );
        assert_eq!(v(&readout((4_000, 200), (1_000, 50), 0)), Verdict::TooEarly);
        // Fewer buyers than the holdout: the margin shows it too.
        assert_eq!(
            v(&readout((4_000, 100), (1_000, 60), 0)),
            Verdict::ChangeOrStop
        );
        // A significant rate lift whose margin still spans zero is not a "keep".
        let r = readout((4_000, 260), (1_000, 45), 500_000);
        assert!(r.rate_difference.unwrap().positive());
        assert!(r.incremental_margin_minor.unwrap().contains(0.0));
        assert_eq!(v(&r), Verdict::TooEarly);
        // A margin whose fixed-horizon interval is above zero but whose interval valid at
        // every look is not: too early (campaigns are read every day).
        let early = (150..400)
            .map(|k| readout((4_000, k), (1_000, 50), 0))
            .find(|r| {
                r.incremental_margin_minor.unwrap().positive()
                    && r.margin_anytime.unwrap().contains(0.0)
            })
            .expect("a margin between the two");
        assert_eq!(v(&early), Verdict::TooEarly);
        assert!(
            verdict(Some(&early), 1, 0, "EUR")
                .1
                .contains("valid at every look")
        );
        // Too few buyers: too early, and why.
        let few = readout((4_000, 5), (1_000, 2), 0);
        assert!(
            verdict(Some(&few), 1, 0, "EUR")
                .1
                .starts_with("too few buyers to tell: 7")
        );
        // Small groups: too early, whatever the intervals say.
        assert_eq!(v(&readout((400, 200), (50, 1), 0)), Verdict::TooEarly);
        assert_eq!(verdict(None, 5, 0, "EUR").0, Verdict::TooEarly);
        assert_eq!(verdict(None, 0, 0, "EUR").0, Verdict::NothingSent);
        // An export to an audience is something sent.
        assert_eq!(verdict(None, 0, 3, "EUR").0, Verdict::TooEarly);
    }

    #[test]
    fn the_total_adds_bounds_and_counts_verdicts() {
        let row = |m: Option<Interval>, verdict: Verdict| CampaignSummary {
            name: "x".into(),
            status: "active".into(),
            channels: vec!["email".into()],
            entered: 10,
            held_out: 1,
            messaged: 8,
            sent: 12,
            delivered: 11,
            dropped: 1,
            dropped_by_reason: BTreeMap::new(),
            exported: 0,
            called: 0,
            passes: 0,
            buyers: 2,
            holdout_buyers: 0,
            margin: None,
            margin_minor: m,
            lift: None,
            verdict,
            verdict_label: verdict.label(),
            why: String::new(),
        };
        let i = |estimate, low, high| Interval {
            estimate,
            low,
            high,
        };
        let t = ProgrammeTotal::new(
            &[
                row(Some(i(100.0, 20.0, 180.0)), Verdict::Keep),
                row(Some(i(-50.0, -90.0, -10.0)), Verdict::ChangeOrStop),
                row(None, Verdict::NothingSent),
            ],
            "EUR",
        );
        assert_eq!(t.margin_minor, Some(i(50.0, -70.0, 170.0)));
        assert_eq!(t.margin_campaigns, 2);
        assert_eq!((t.entered, t.messaged, t.sent), (30, 24, 36));
        assert_eq!(t.verdicts.get("keep"), Some(&1));
        assert_eq!(t.verdicts.get("nothing sent"), Some(&1));
        assert_eq!(
            t.margin.unwrap().text,
            "0.50 EUR (95% at every look: -0.70 EUR to 1.70 EUR)"
        );
    }
}
