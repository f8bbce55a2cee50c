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
