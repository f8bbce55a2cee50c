//! How the report's figures read, in one place: the CLI text, `report.html`, the dashboard and
//! the JSON's readable fields all take their numbers and intervals from here, so "95% CI a to b"
//! is written one way everywhere.

use winback_measure::{Interval, Readout};

use crate::{money, n};

/// A share as a percentage with one decimal: `12.3%`.
pub fn percent(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

/// A count with thousands separators: `12,345`.
pub fn count(v: u64) -> String {
    n(v)
}

/// An estimate with its 95% interval, in the words of one unit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Figure {
    /// The estimate (`+1.2`, `3.40 EUR`, `+12%`).
    pub estimate: String,
    /// The interval's lower end.
    pub low: String,
    /// The interval's upper end.
    pub high: String,
    /// The interval in words: `95% CI +0.3 to +2.1`.
    pub interval: String,
    /// In a sentence: `+1.2 points (95% CI +0.3 to +2.1)`.
    pub text: String,
    /// In a table whose header says what and that intervals are 95%: `+1.2 (+0.3 to +2.1)`.
    pub short: String,
    /// Whether the interval lies above zero.
    pub positive: bool,
    /// Whether it lies below zero.
    pub negative: bool,
}

impl Figure {
    fn new(i: &Interval, unit: &str, fmt: impl Fn(f64) -> String) -> Self {
        let (estimate, low, high) = (fmt(i.estimate), fmt(i.low), fmt(i.high));
        let interval = format!("95% CI {low} to {high}");
        Self {
            text: format!("{estimate}{unit} ({interval})"),
            interval,
            short: format!("{estimate} ({low} to {high})"),
            estimate,
            low,
            high,
            positive: i.positive(),
            negative: i.negative(),
        }
    }

    /// An amount whose 95% interval holds at every look (the verdict's margin):
    /// `3.40 EUR (95% at every look: 1.10 EUR to 5.70 EUR)`.
    pub fn money_at_every_look(i: &Interval, currency: &str) -> Self {
        let mut f = Self::money(i, currency);
        f.interval = format!("95% at every look: {} to {}", f.low, f.high);
        f.text = format!("{} ({})", f.estimate, f.interval);
        f
    }

    /// A difference of two rates, in percentage points: `+1.2 points (95% CI +0.3 to +2.1)`.
    pub fn points(i: &Interval) -> Self {
        Self::new(i, " points", |v| format!("{:+.1}", 100.0 * v))
    }

    /// An amount in minor units of `currency`: `3.40 EUR (95% CI 1.10 EUR to 5.70 EUR)`.
    pub fn money(i: &Interval, currency: &str) -> Self {
        Self::new(i, "", |v| money(v.round() as i64, currency))
    }

    /// A ratio as a signed percentage (ROI): `+12% (95% CI -4% to +30%)`.
    pub fn percent(i: &Interval) -> Self {
        Self::new(i, "", |v| format!("{:+.0}%", 100.0 * v))
    }
}

/// A readout against the holdout as every view shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReadoutView {
    /// The treated group's reactivation rate.
    pub treated_rate: String,
    /// The holdout's.
    pub holdout_rate: String,
    /// Their difference, in points.
    pub lift: Option<Figure>,
    /// Incremental revenue per contact.
    pub revenue_per_contact: Option<Figure>,
    /// Incremental revenue in all.
    pub revenue: Option<Figure>,
    /// Incremental margin net of discounts and message costs.
    pub margin: Option<Figure>,
    /// The same with its interval valid at every look (the verdict's).
    pub margin_at_every_look: Option<Figure>,
    /// Return on the campaign's costs, where the money spent makes a ratio meaningful.
    pub roi: Option<Figure>,
    /// Incremental margin per 1,000 messages, where ROI is not meaningful.
    pub margin_per_1000_messages: Option<Figure>,
    /// The verdict in words, when the interval of the lift excludes zero.
    pub verdict: Option<&'static str>,
    /// What to keep in mind (small groups, too little time).
    pub warnings: Vec<String>,
    /// How the intervals were narrowed with the contacts' behaviour before entry (CUPED), when
    /// they were.
    pub adjustment: Option<String>,
}

impl ReadoutView {
    /// The view of `r`, amounts in `currency`.
    pub fn new(r: &Readout, currency: &str) -> Self {
        let lift = r.rate_difference.as_ref().map(Figure::points);
        Self {
            treated_rate: percent(r.treated.rate()),
            holdout_rate: percent(r.holdout.rate()),
            verdict: lift.as_ref().and_then(|l| {
                if l.positive {
                    Some("the campaign brought people back")
                } else if l.negative {
                    Some("fewer bought than in the holdout")
                } else {
                    None
                }
            }),
            lift,
            revenue_per_contact: r
                .revenue_per_contact
                .as_ref()
                .map(|i| Figure::money(i, currency)),
            revenue: r
                .incremental_revenue_minor
                .as_ref()
                .map(|i| Figure::money(i, currency)),
            margin: r
                .incremental_margin_minor
                .as_ref()
                .map(|i| Figure::money(i, currency)),
            margin_at_every_look: r
                .margin_anytime
                .as_ref()
                .map(|i| Figure::money_at_every_look(i, currency)),
            roi: r.roi.as_ref().map(Figure::percent),
            margin_per_1000_messages: r
                .margin_per_1000_messages
                .as_ref()
                .filter(|_| r.roi.is_none())
                .map(|i| Figure::money(i, currency)),
            warnings: r.warnings.clone(),
            adjustment: r.variance_kept.map(|(rate, revenue)| {
                format!(
                    "adjusted for each contact's orders and spend in the year before entry (CUPED): the rate's interval is {:.0}% and the revenue's {:.0}% narrower than without",
                    100.0 * (1.0 - rate.sqrt()),
                    100.0 * (1.0 - revenue.sqrt())
                )
            }),
        }
    }

    /// One line per figure, in words a marketer reads; `brief` keeps the rate, the margin and
    /// the first warning.
    pub fn lines(&self, brief: bool) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(l) = &self.lift {
            out.push(format!(
                "reactivation {} vs {} in the holdout: {}{}",
                self.treated_rate,
                self.holdout_rate,
                l.text,
                self.verdict.map(|v| format!(" — {v}")).unwrap_or_default()
            ));
        }
        if let Some(v) = self.revenue_per_contact.as_ref().filter(|_| !brief) {
            out.push(format!(
                "incremental revenue {} per contact, {} in all",
                v.text,
                self.revenue.as_ref().map(|t| t.text.as_str()).unwrap_or("")
            ));
        }
        if let Some(m) = &self.margin {
            out.push(format!(
                "incremental margin after discounts and sending {}{}",
                match &self.margin_at_every_look {
                    Some(a) => format!("{} ({}; {})", m.estimate, m.interval, a.interval),
                    None => m.text.clone(),
                },
                match (&self.roi, &self.margin_per_1000_messages) {
                    (Some(x), _) => format!("; ROI {}", x.text),
                    (None, Some(x)) => format!("; {} per 1,000 messages", x.text),
                    (None, None) => String::new(),
                }
            ));
        }
        for w in self
            .warnings
            .iter()
            .take(if brief { 1 } else { usize::MAX })
        {
            out.push(format!("note: {w}"));
        }
        if let Some(a) = self.adjustment.as_ref().filter(|_| !brief) {
            out.push(a.clone());
        }
        out
    }
}

/// `n` of `of` as a percentage with one decimal (`0.0%` of nothing).
pub fn percent_of(n: u64, of: u64) -> String {
    if of == 0 {
        percent(0.0)
    } else {
        percent(n as f64 / of as f64)
    }
}

/// A stored key (a stage, an RFM segment, a reason, a state) in words: `cant_lose_them` →
/// `can't lose them`, `at_risk` → `at risk`.
pub fn label(key: &str) -> String {
    match key {
        "cant_lose_them" => "can't lose them".into(),
        "one_time_buyer" => "one-time buyer".into(),
        "in_doubt" => "in doubt (unknown after a crash)".into(),
        _ => key.replace('_', " "),
    }
}

/// A count for a table cell: `–` for none, so an empty holdout does not read as a measured 0.
pub fn count_or_dash(v: i64) -> String {
    if v > 0 { n(v as u64) } else { "–".into() }
}

/// Where an interval sits on an axis `width` pixels wide that spans `-span` to `+span`, zero in
/// the middle: the same scale for every row of a table, so rows compare.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AxisBar {
    /// x of the lower end.
    pub low: String,
    /// x of the estimate.
    pub est: String,
    /// x of the upper end.
    pub high: String,
    /// `good`, `bad` or `open`: above zero, below zero, or spanning it.
    pub tone: &'static str,
}

/// A shared horizontal axis for interval bars: zero in the middle, labelled ends.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Axis {
    /// Pixel width.
    pub width: f64,
    /// The value at each end (the axis runs from minus to plus this).
    pub span: f64,
    /// x of zero.
    pub zero: String,
    /// The left end's label.
    pub left: String,
    /// The right end's label.
    pub right: String,
}

impl Axis {
    /// An axis wide enough for every interval in `all`, labelled by `label`.
    pub fn new<'a>(
        all: impl IntoIterator<Item = &'a Interval>,
        width: f64,
        label: impl Fn(f64) -> String,
    ) -> Self {
        let span = all
            .into_iter()
            .flat_map(|i| [i.low.abs(), i.high.abs()])
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        // Round the end up to 1, 2 or 5 times a power of ten, so the labels read.
        let span = if span > 0.0 {
            let p = 10f64.powf(span.log10().floor());
            [1.0, 2.0, 5.0, 10.0]
                .iter()
                .map(|m| m * p)
                .find(|v| *v >= span)
                .unwrap_or(10.0 * p)
        } else {
            1.0
        };
        Self {
            width,
            span,
            zero: format!("{:.1}", width / 2.0),
            left: label(-span),
            right: label(span),
        }
    }

    fn x(&self, v: f64) -> String {
        format!(
            "{:.1}",
            (self.width / 2.0 * (1.0 + v / self.span)).clamp(0.0, self.width)
        )
    }

    /// The bar of `i` on this axis.
    pub fn bar(&self, i: &Interval) -> AxisBar {
        AxisBar {
            low: self.x(i.low),
            est: self.x(i.estimate),
            high: self.x(i.high),
            tone: if i.positive() {
                "good"
            } else if i.negative() {
                "bad"
            } else {
                "open"
            },
        }
    }
}

/// One row of the programme table as every screen shows it: counts with separators, the
/// margin in words and on the shared axis, the verdict and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProgrammeRow {
    /// Campaign name (empty for the total).
    pub name: String,
    /// Status.
    pub status: String,
    /// Channels, in words.
    pub channels: String,
    /// Entered.
    pub entered: String,
    /// Held out (`–` for none).
    pub held_out: String,
    /// Messaged people.
    pub messaged: String,
    /// Messages sent.
    pub sent: String,
    /// Delivered.
    pub delivered: String,
    /// Dropped at send time.
    pub dropped: String,
    /// Why they were dropped, in words.
    pub dropped_reasons: String,
    /// Exported to audiences or print (`–` for none).
    pub exported: String,
    /// Buyers in the messaged arms.
    pub buyers: String,
    /// Incremental margin with its interval.
    pub margin: Option<Figure>,
    /// The margin's estimate in minor units, for sorting.
    pub margin_raw: Option<i64>,
    /// The margin on the table's axis.
    pub bar: Option<AxisBar>,
    /// The rate difference in points, as supporting evidence.
    pub lift: Option<String>,
    /// `keep`, `change_or_stop`, `too_early`, `nothing_sent` (empty for the total).
    pub verdict: String,
    /// The verdict in words.
    pub verdict_label: String,
    /// Why.
    pub why: String,
    /// The raw counts, for machine readers and tests: entered, held out, messaged, sent,
    /// buyers, delivered, dropped.
    pub raw: [i64; 7],
}

/// The programme table: a row per campaign, the total, and the axis their margins share.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProgrammeView {
    /// One row per campaign.
    pub rows: Vec<ProgrammeRow>,
    /// All campaigns together.
    pub total: ProgrammeRow,
    /// The margins' shared axis.
    pub axis: Axis,
    /// How the total's interval is made, when it adds several campaigns.
    pub total_note: Option<String>,
}

/// The programme table of `r`.
pub fn programme(r: &crate::Report) -> ProgrammeView {
    let cur = &r.currency;
    let axis = Axis::new(
        r.campaigns
            .iter()
            .filter_map(|c| c.summary.margin_minor.as_ref()),
        240.0,
        |v| money(v.round() as i64, cur),
    );
    let row = |s: &crate::summary::CampaignSummary| ProgrammeRow {
        name: s.name.clone(),
        status: s.status.clone(),
        channels: s.channels.join(", "),
        entered: n(s.entered.max(0) as u64),
        held_out: count_or_dash(s.held_out),
        messaged: n(s.messaged.max(0) as u64),
        sent: n(s.sent.max(0) as u64),
        delivered: n(s.delivered.max(0) as u64),
        dropped: n(s.dropped.max(0) as u64),
        dropped_reasons: s
            .dropped_by_reason
            .iter()
            .map(|(k, v)| format!("{} {k}", n(*v as u64)))
            .collect::<Vec<_>>()
            .join(", "),
        exported: count_or_dash(s.exported),
        buyers: n(s.buyers.max(0) as u64),
        margin: s.margin.clone(),
        margin_raw: s.margin_minor.map(|m| m.estimate.round() as i64),
        bar: s.margin_minor.as_ref().map(|m| axis.bar(m)),
        lift: s.lift.as_ref().map(|l| format!("{} points", l.short)),
        verdict: s.verdict.key().to_owned(),
        verdict_label: s.verdict.label().to_owned(),
        why: s.why.clone(),
        raw: [
            s.entered,
            s.held_out,
            s.messaged,
            s.sent,
            s.buyers,
            s.delivered,
            s.dropped,
        ],
    };
    let rows: Vec<ProgrammeRow> = r.campaigns.iter().map(|c| row(&c.summary)).collect();
    let t = &r.total;
    let total = ProgrammeRow {
        name: "All campaigns".into(),
        status: String::new(),
        channels: String::new(),
        entered: n(t.entered.max(0) as u64),
        held_out: count_or_dash(t.held_out),
        messaged: n(t.messaged.max(0) as u64),
        sent: n(t.sent.max(0) as u64),
        delivered: n(t.delivered.max(0) as u64),
        dropped: n(t.dropped.max(0) as u64),
        dropped_reasons: String::new(),
        exported: count_or_dash(t.exported),
        buyers: n(t.buyers.max(0) as u64),
        margin: t.margin.clone(),
        margin_raw: t.margin_minor.map(|m| m.estimate.round() as i64),
        bar: None,
        lift: None,
        verdict: String::new(),
        verdict_label: t
            .verdicts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        why: String::new(),
        raw: [
            t.entered,
            t.held_out,
            t.messaged,
            t.sent,
            t.buyers,
            t.delivered,
            t.dropped,
        ],
    };
    ProgrammeView {
        rows,
        total,
        axis,
        total_note: (t.margin_campaigns > 1).then(|| {
            format!(
                "The total adds the {} measured campaigns' margins and the ends of their intervals, so it holds however their customers overlap.",
                t.margin_campaigns
            )
        }),
    }
}

/// One row of "did they stay?" as the dashboard and report.html show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StayRow {
    /// Which cohort.
    pub label: &'static str,
    /// People in it.
    pub people: String,
    /// Bought again within 30, 90 and 180 days of their return (`–` before anyone could).
    pub again_30d: String,
    /// Within 90 days.
    pub again_90d: String,
    /// Within 180 days.
    pub again_180d: String,
    /// Lapsed again.
    pub lapsed_again: String,
    /// Revenue after their return.
    pub revenue_after: String,
    /// Mean predicted customer value (`–` unscored).
    pub clv: String,
}

/// "Did they stay?" as rows: reactivated, holdout returners, never lapsed; empty when nobody
/// was reactivated.
pub fn stay_rows(s: &winback_store::stay::Stay, cur: &str) -> Vec<StayRow> {
    if s.reactivated.people == 0 {
        return Vec::new();
    }
    let sh = |x: &winback_store::stay::Share| x.rate().map(percent).unwrap_or_else(|| "–".into());
    [
        ("reactivated", &s.reactivated),
        ("holdout, came back anyway", &s.holdout_returned),
        ("never lapsed", &s.never_lapsed),
    ]
    .into_iter()
    .map(|(label, c)| StayRow {
        label,
        people: n(c.people),
        again_30d: sh(&c.again_30d),
        again_90d: sh(&c.again_90d),
        again_180d: sh(&c.again_180d),
        lapsed_again: sh(&c.lapsed_again),
        revenue_after: money(c.revenue_after_minor, cur),
        clv: c
            .mean_clv_minor
            .map(|v| money(v.round() as i64, cur))
            .unwrap_or_else(|| "–".into()),
    })
    .collect()
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
            money(c.revenue_after_minor, cur),
            c.mean_clv_minor
                .map(|v| money(v.round() as i64, cur))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interval_reads_the_same_way() {
        let i = Interval {
            estimate: 0.012,
            low: 0.003,
            high: 0.021,
        };
        let p = Figure::points(&i);
        assert_eq!(p.text, "+1.2 points (95% CI +0.3 to +2.1)");
        assert_eq!(p.short, "+1.2 (+0.3 to +2.1)");
        assert!(p.positive && !p.negative);
        let m = Figure::money(
            &Interval {
                estimate: 340.0,
                low: -110.4,
                high: 570.0,
            },
            "EUR",
        );
        assert_eq!(m.text, "3.40 EUR (95% CI -1.10 EUR to 5.70 EUR)");
        assert!(!m.positive && !m.negative);
        let r = Figure::percent(&Interval {
            estimate: 0.12,
            low: -0.04,
            high: 0.3,
        });
        assert_eq!(r.text, "+12% (95% CI -4% to +30%)");
    }
}
