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
    /// Return on the campaign's costs.
    pub roi: Option<Figure>,
    /// The verdict in words, when the interval of the lift excludes zero.
    pub verdict: Option<&'static str>,
    /// What to keep in mind (small groups, too little time).
    pub warnings: Vec<String>,
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
            roi: r.roi.as_ref().map(Figure::percent),
            warnings: r.warnings.clone(),
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
                m.text,
                self.roi
                    .as_ref()
                    .map(|x| format!("; ROI {}", x.text))
                    .unwrap_or_default()
            ));
        }
        for w in self
            .warnings
            .iter()
            .take(if brief { 1 } else { usize::MAX })
        {
            out.push(format!("note: {w}"));
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

/// What a marketer should do about a campaign, from its readout.
pub fn verdict(r: &Readout) -> &'static str {
    let margin = r.incremental_margin_minor;
    let rate = r.rate_difference;
    if r.holdout.contacts < winback_measure::MIN_GROUP
        || r.treated.contacts < winback_measure::MIN_GROUP
    {
        return "too few contacts to tell yet: let it run";
    }
    if margin.is_some_and(|m| m.low > 0.0) {
        "keep it: it earns more than it costs"
    } else if margin.is_some_and(|m| m.high < 0.0) {
        "change or stop it: it costs more than it brings"
    } else if rate.is_some_and(|d| d.positive()) {
        "it brings people back; profit not proven yet"
    } else if rate.is_some_and(|d| d.negative()) {
        "fewer buy than in the holdout: change it"
    } else {
        "not proven either way yet: let it run"
    }
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
    use winback_measure::{Arm, Economics};

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

    fn readout(treated: (u64, u64), holdout: (u64, u64), discount: i64) -> Readout {
        let arm = |(contacts, converted): (u64, u64)| Arm {
            contacts,
            converted,
            revenue_minor: converted as i64 * 10_000,
            revenue_sq: converted as f64 * 10_000f64.powi(2),
        };
        Readout::new(
            arm(treated),
            arm(holdout),
            Economics {
                margin: 0.4,
                discount_minor: discount,
                message_cost_minor: treated.0 as i64,
            },
        )
    }

    #[test]
    fn the_verdict_follows_the_intervals_and_the_group_sizes() {
        assert_eq!(
            verdict(&readout((4_000, 600), (1_000, 50), 0)),
            "keep it: it earns more than it costs"
        );
        assert_eq!(
            verdict(&readout((4_000, 600), (1_000, 50), 50_000_000)),
            "change or stop it: it costs more than it brings"
        );
        assert_eq!(
            verdict(&readout((4_000, 200), (1_000, 50), 0)),
            "not proven either way yet: let it run"
        );
        // Fewer buyers than the holdout, and the margin shows it too.
        assert_eq!(
            verdict(&readout((4_000, 100), (1_000, 60), 0)),
            "change or stop it: it costs more than it brings"
        );
        assert_eq!(
            verdict(&readout((400, 200), (50, 1), 0)),
            "too few contacts to tell yet: let it run"
        );
    }
}
