//! `winback-measure` owns the statistics of measurement: what a campaign earned against its
//! holdout, with 95% confidence intervals, the incremental margin net of discount and message
//! cost, incremental ROI, the smallest effect the groups could detect, and when the evidence is
//! strong enough to name a winning variant. Pure functions over counts and sums; the store
//! gathers them and the CLI and the dashboard print them.
//!
//! Methods, chosen for honest coverage at the group sizes win-back campaigns have:
//! - the difference of two conversion rates: Newcombe's hybrid score interval (method 10 of
//!   Newcombe 1998), built from Wilson intervals; unlike the Wald interval it stays honest for
//!   small rates and small holdouts;
//! - the difference of revenue per contact: Welch's t interval (unequal variances, Welch–
//!   Satterthwaite degrees of freedom), since revenue is zero for most contacts and the two
//!   groups differ in size and spread.
//!
//! A simulation in the tests proves the coverage (see `tests/it/main.rs`).

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// The confidence level of every interval winback reports.
pub const LEVEL: f64 = 0.95;

/// Holdouts smaller than this get a warning whatever the intervals say.
pub const MIN_GROUP: u64 = 100;

/// One group's outcomes over the attribution window: contacts, how many bought, and their
/// revenue (sum and sum of squares of each contact's revenue, minor units).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    /// Contacts in the group.
    pub contacts: u64,
    /// Contacts with an order in the window.
    pub converted: u64,
    /// Revenue of the group in the window, minor units.
    pub revenue_minor: i64,
    /// Sum over contacts of (revenue in minor units)², for the revenue variance.
    pub revenue_sq: f64,
}

impl Arm {
    /// Adds one contact's outcome.
    pub fn add(&mut self, converted: bool, revenue_minor: i64) {
        self.contacts += 1;
        self.converted += u64::from(converted);
        self.revenue_minor += revenue_minor;
        self.revenue_sq += (revenue_minor as f64).powi(2);
    }

    /// The share who bought (0 for an empty group).
    pub fn rate(&self) -> f64 {
        if self.contacts == 0 {
            0.0
        } else {
            self.converted as f64 / self.contacts as f64
        }
    }

    /// Revenue per contact, minor units.
    pub fn revenue_per_contact(&self) -> f64 {
        if self.contacts == 0 {
            0.0
        } else {
            self.revenue_minor as f64 / self.contacts as f64
        }
    }

    /// The sample variance of revenue per contact (n − 1 in the denominator).
    pub fn revenue_variance(&self) -> f64 {
        let n = self.contacts as f64;
        if n < 2.0 {
            return 0.0;
        }
        let mean = self.revenue_per_contact();
        ((self.revenue_sq - n * mean * mean) / (n - 1.0)).max(0.0)
    }
}

/// An estimate with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The point estimate.
    pub estimate: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

impl Interval {
    /// Whether `x` lies inside (bounds included).
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }

    /// Whether the whole interval is above zero.
    pub fn positive(&self) -> bool {
        self.low > 0.0
    }

    /// Whether the whole interval is below zero.
    pub fn negative(&self) -> bool {
        self.high < 0.0
    }

    /// `k · self + c` (for totals and margins: k ≥ 0).
    pub fn affine(&self, k: f64, c: f64) -> Interval {
        Interval {
            estimate: k * self.estimate + c,
            low: k * self.low + c,
            high: k * self.high + c,
        }
    }
}

/// The two-sided standard normal quantile for a confidence level.
pub fn z(level: f64) -> f64 {
    Normal::new(0.0, 1.0)
        .expect("the standard normal exists")
        .inverse_cdf(1.0 - (1.0 - level) / 2.0)
}

/// Wilson's score interval for `k` successes in `n` trials (`None` for n = 0).
pub fn wilson(k: u64, n: u64, level: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (k, n) = (k as f64, n as f64);
    let z = z(level);
    let p = k / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// The difference of conversion rates `treated − control` with Newcombe's hybrid score
/// interval (`None` when a group is empty).
pub fn rate_difference(treated: &Arm, control: &Arm, level: f64) -> Option<Interval> {
    let (l1, u1) = wilson(treated.converted, treated.contacts, level)?;
    let (l2, u2) = wilson(control.converted, control.contacts, level)?;
    let (p1, p2) = (treated.rate(), control.rate());
    let d = p1 - p2;
    Some(Interval {
        estimate: d,
        low: d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        high: d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
    })
}

/// The difference of revenue per contact `treated − control` (minor units) with Welch's t
/// interval (`None` when a group has fewer than two contacts).
pub fn revenue_difference(treated: &Arm, control: &Arm, level: f64) -> Option<Interval> {
    if treated.contacts < 2 || control.contacts < 2 {
        return None;
    }
    let (n1, n2) = (treated.contacts as f64, control.contacts as f64);
    let (v1, v2) = (
        treated.revenue_variance() / n1,
        control.revenue_variance() / n2,
    );
    let d = treated.revenue_per_contact() - control.revenue_per_contact();
    let se = (v1 + v2).sqrt();
    if se == 0.0 {
        return Some(Interval {
            estimate: d,
            low: d,
            high: d,
        });
    }
    // Welch–Satterthwaite degrees of freedom.
    let df = (v1 + v2).powi(2) / (v1 * v1 / (n1 - 1.0) + v2 * v2 / (n2 - 1.0));
    let t = StudentsT::new(0.0, 1.0, df.max(1.0))
        .ok()?
        .inverse_cdf(1.0 - (1.0 - level) / 2.0);
    Some(Interval {
        estimate: d,
        low: d - t * se,
        high: d + t * se,
    })
}

/// The smallest absolute difference in conversion rate the groups detect with `power` at the
/// two-sided level `level`, around the base rate `base` (normal approximation).
pub fn minimum_detectable_effect(
    base: f64,
    treated: u64,
    control: u64,
    level: f64,
    power: f64,
) -> Option<f64> {
    if treated == 0 || control == 0 {
        return None;
    }
    let base = base.clamp(0.005, 0.995);
    let z_beta = Normal::new(0.0, 1.0).ok()?.inverse_cdf(power);
    Some(
        (z(level) + z_beta)
            * (base * (1.0 - base) * (1.0 / treated as f64 + 1.0 / control as f64)).sqrt(),
    )
}

/// Contacts needed in each of two equal groups to detect `effect` (absolute) around `base`.
pub fn sample_size_per_group(base: f64, effect: f64, level: f64, power: f64) -> Option<u64> {
    if effect <= 0.0 {
        return None;
    }
    let base = base.clamp(0.005, 0.995);
    let z_beta = Normal::new(0.0, 1.0).ok()?.inverse_cdf(power);
    let n = 2.0 * (z(level) + z_beta).powi(2) * base * (1.0 - base) / (effect * effect);
    Some(n.ceil() as u64)
}

/// What a campaign cost and the margin it earns on revenue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Economics {
    /// Gross margin as a share of revenue (0.4 = 40%).
    pub margin: f64,
    /// Discounts given on the treated group's orders, minor units.
    pub discount_minor: i64,
    /// What the treated group's messages cost, minor units.
    pub message_cost_minor: i64,
}

/// A campaign's (or a variant's) causal readout against its holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readout {
    /// The messaged group.
    pub treated: Arm,
    /// The holdout.
    pub holdout: Arm,
    /// Reactivation (conversion) rate difference, treated − holdout, as a share (0.02 = 2
    /// points).
    pub rate_difference: Option<Interval>,
    /// Incremental revenue per contact, minor units.
    pub revenue_per_contact: Option<Interval>,
    /// Incremental revenue of the treated group (per contact × contacts), minor units.
    pub incremental_revenue_minor: Option<Interval>,
    /// Incremental margin net of discount and message cost, minor units:
    /// `margin × incremental revenue − (1 − margin) × discount − message cost`. Revenue is what
    /// customers paid, so a discount has already lowered it; what is left of the discount's cost
    /// is the margin the shop would have earned on it.
    pub incremental_margin_minor: Option<Interval>,
    /// Incremental margin per unit of cost (discount + messages); `None` without cost.
    pub roi: Option<Interval>,
    /// The smallest rate difference these group sizes detect with 80% power.
    pub minimum_detectable_effect: Option<f64>,
    /// Contacts per group that would detect the observed difference (when it is positive).
    pub needed_per_group: Option<u64>,
    /// What a marketer should know before acting on the figures.
    pub warnings: Vec<String>,
}

impl Readout {
    /// Compares `treated` with `holdout` at [`LEVEL`].
    pub fn new(treated: Arm, holdout: Arm, economics: Economics) -> Self {
        let rate = rate_difference(&treated, &holdout, LEVEL);
        let revenue = revenue_difference(&treated, &holdout, LEVEL);
        let n = treated.contacts as f64;
        let total = revenue.map(|r| r.affine(n, 0.0));
        let cost = (economics.discount_minor + economics.message_cost_minor) as f64;
        let fixed = -(1.0 - economics.margin) * economics.discount_minor as f64
            - economics.message_cost_minor as f64;
        let margin = total.map(|t| t.affine(economics.margin, fixed));
        let roi = margin
            .filter(|_| cost > 0.0)
            .map(|m| m.affine(1.0 / cost, 0.0));
        let mde = minimum_detectable_effect(
            holdout.rate(),
            treated.contacts,
            holdout.contacts,
            LEVEL,
            0.8,
        );
        let needed = rate
            .filter(|r| r.estimate > 0.0)
            .and_then(|r| sample_size_per_group(holdout.rate(), r.estimate, LEVEL, 0.8));
        let mut warnings = Vec::new();
        if holdout.contacts == 0 {
            warnings.push("no holdout: what the campaign earned cannot be measured".into());
        } else if holdout.contacts < MIN_GROUP {
            warnings.push(format!(
                "the holdout has only {} contacts (at least {MIN_GROUP} are needed for a readout worth acting on)",
                holdout.contacts
            ));
        }
        if let (Some(r), Some(m)) = (rate, mde) {
            if !r.positive() && !r.negative() {
                warnings.push(format!(
                    "no significant difference yet: these groups detect a difference of {:.1} points or more (80% power)",
                    100.0 * m
                ));
                if let Some(k) = needed {
                    warnings.push(format!(
                        "about {k} contacts per group would detect the observed {:.1} points",
                        100.0 * r.estimate
                    ));
                }
            }
        }
        Readout {
            treated,
            holdout,
            rate_difference: rate,
            revenue_per_contact: revenue,
            incremental_revenue_minor: total,
            incremental_margin_minor: margin,
            roi,
            minimum_detectable_effect: mde,
            needed_per_group: needed,
            warnings,
        }
    }

    /// Whether the campaign measurably brought customers back (the whole interval above zero).
    pub fn significant(&self) -> bool {
        self.rate_difference.is_some_and(|r| r.positive())
    }
}

/// The outcome of automatic winner selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Winner {
    /// A variant wins: it beats the holdout and every other variant with 95% confidence.
    Chosen {
        /// The variant.
        variant: String,
        /// Why, in words.
        reason: String,
    },
    /// No winner yet.
    NotYet {
        /// Why, in words.
        reason: String,
    },
}

/// Names a winning variant only when the evidence holds: the best variant's conversion rate
/// beats the holdout's and every other variant's, each difference's 95% interval above zero.
pub fn choose_winner(variants: &[(String, Arm)], holdout: &Arm) -> Winner {
    if variants.len() < 2 {
        return Winner::NotYet {
            reason: "a single variant: nothing to choose".into(),
        };
    }
    let Some((best, arm)) = variants
        .iter()
        .max_by(|a, b| a.1.rate().total_cmp(&b.1.rate()))
    else {
        return Winner::NotYet {
            reason: "no variants".into(),
        };
    };
    if holdout.contacts > 0 {
        match rate_difference(arm, holdout, LEVEL) {
            Some(d) if d.positive() => {}
            Some(d) => {
                return Winner::NotYet {
                    reason: format!(
                        "variant {best} does not beat the holdout with 95% confidence ({:+.1} to {:+.1} points)",
                        100.0 * d.low,
                        100.0 * d.high
                    ),
                };
            }
            None => {
                return Winner::NotYet {
                    reason: "no outcomes yet".into(),
                };
            }
        }
    }
    for (name, other) in variants {
        if name == best {
            continue;
        }
        match rate_difference(arm, other, LEVEL) {
            Some(d) if d.positive() => {}
            Some(d) => {
                return Winner::NotYet {
                    reason: format!(
                        "variant {best} is not yet better than {name} with 95% confidence ({:+.1} to {:+.1} points)",
                        100.0 * d.low,
                        100.0 * d.high
                    ),
                };
            }
            None => {
                return Winner::NotYet {
                    reason: format!("variant {name} has no contacts yet"),
                };
            }
        }
    }
    Winner::Chosen {
        variant: best.clone(),
        reason: format!(
            "variant {best} converts {:.1}% and beats the holdout and every other variant with 95% confidence",
            100.0 * arm.rate()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(contacts: u64, converted: u64) -> Arm {
        Arm {
            contacts,
            converted,
            ..Arm::default()
        }
    }

    #[test]
    fn wilson_matches_the_published_example() {
        // Newcombe (1998), table I: 81/263 → 0.2553 to 0.3662.
        let (l, u) = wilson(81, 263, 0.95).unwrap();
        assert!(
            (l - 0.2553).abs() < 5e-4 && (u - 0.3662).abs() < 5e-4,
            "{l} {u}"
        );
        // 0 of 10 → 0 to 0.2775.
        let (l, u) = wilson(0, 10, 0.95).unwrap();
        assert!(l.abs() < 1e-12 && (u - 0.2775).abs() < 5e-4, "{l} {u}");
    }

    #[test]
    fn newcombe_matches_the_published_example() {
        // Newcombe (1998), method 10, example (a): 56/70 − 48/80 → 0.0524 to 0.3339.
        let d = rate_difference(&arm(70, 56), &arm(80, 48), 0.95).unwrap();
        assert!((d.estimate - 0.2).abs() < 1e-12);
        assert!((d.low - 0.0524).abs() < 5e-4, "{d:?}");
        assert!((d.high - 0.3339).abs() < 5e-4, "{d:?}");
    }

    #[test]
    fn welch_on_known_sums() {
        // Treated: 1,000 contacts, 100 buying 50.00 each; holdout: 500, 25 buying 50.00.
        let mut t = Arm::default();
        let mut c = Arm::default();
        for i in 0..1000 {
            t.add(i < 100, if i < 100 { 5000 } else { 0 });
        }
        for i in 0..500 {
            c.add(i < 25, if i < 25 { 5000 } else { 0 });
        }
        let d = revenue_difference(&t, &c, 0.95).unwrap();
        assert!((d.estimate - 250.0).abs() < 1e-9);
        // se = sqrt(0.09·5000²/999 + 0.0475·5000²/499) ≈ 68.06
        let se = ((t.revenue_variance() / 1000.0) + (c.revenue_variance() / 500.0)).sqrt();
        assert!((se - 68.06).abs() < 0.01, "{se}");
        assert!((d.high - d.estimate - 1.96 * se).abs() < 0.02 * se);
    }

    #[test]
    fn margin_and_roi_net_of_costs() {
        let mut t = Arm::default();
        let mut c = Arm::default();
        for i in 0..1000 {
            t.add(i < 100, if i < 100 { 5000 } else { 0 });
            c.add(i < 50, if i < 50 { 5000 } else { 0 });
        }
        let r = Readout::new(
            t,
            c,
            Economics {
                margin: 0.4,
                discount_minor: 100_000,
                message_cost_minor: 10_000,
            },
        );
        // +250,000 revenue → 100,000 margin − 60,000 discount − 10,000 messages = 30,000.
        let m = r.incremental_margin_minor.unwrap();
        assert!((m.estimate - 30_000.0).abs() < 1e-6, "{m:?}");
        let roi = r.roi.unwrap();
        assert!((roi.estimate - 30_000.0 / 110_000.0).abs() < 1e-9);
        assert!(r.significant());
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn small_groups_are_flagged() {
        let r = Readout::new(arm(400, 12), arm(40, 1), Economics::default());
        assert!(
            r.warnings.iter().any(|w| w.contains("only 40 contacts")),
            "{:?}",
            r.warnings
        );
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("no significant difference")),
            "{:?}",
            r.warnings
        );
        assert!(r.minimum_detectable_effect.unwrap() > 0.05);
    }

    #[test]
    fn a_winner_only_when_the_evidence_holds() {
        let holdout = arm(2000, 40);
        let clear = [
            ("a".to_owned(), arm(5000, 100)),
            ("b".to_owned(), arm(5000, 250)),
        ];
        assert!(
            matches!(choose_winner(&clear, &holdout), Winner::Chosen { variant, .. } if variant == "b")
        );
        let close = [
            ("a".to_owned(), arm(500, 20)),
            ("b".to_owned(), arm(500, 24)),
        ];
        match choose_winner(&close, &holdout) {
            Winner::NotYet { reason } => {
                assert!(reason.contains("not yet better than a"), "{reason}")
            }
            w => panic!("{w:?}"),
        }
        let none_beat_holdout = [
            ("a".to_owned(), arm(500, 10)),
            ("b".to_owned(), arm(500, 11)),
        ];
        assert!(matches!(
            choose_winner(&none_beat_holdout, &holdout),
            Winner::NotYet { .. }
        ));
    }

    #[test]
    fn sample_sizes_agree_with_the_mde() {
        let n = sample_size_per_group(0.05, 0.02, 0.95, 0.8).unwrap();
        let mde = minimum_detectable_effect(0.05, n, n, 0.95, 0.8).unwrap();
        assert!((mde - 0.02).abs() < 1e-4, "{n} {mde}");
    }
}
