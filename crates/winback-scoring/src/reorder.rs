//! A customer's usual reorder interval, shrunk toward their category's (empirical Bayes), so it
//! works from a single order: "usually reorders every 41 days; 62 days since the last order".
//!
//! Gaps between a customer's order days are taken as exponential with the customer's own rate λ;
//! across the category λ ~ Gamma(shape k, rate θ), fitted by maximum marginal likelihood. After
//! n gaps totalling S days the customer's rate is Gamma(k + n, θ + S), and the usual interval is
//! the posterior mean of 1/λ: (θ + S) / (k + n − 1). With no repeat order it is the category's
//! θ / (k − 1); with many it approaches the customer's own mean gap.

use statrs::function::gamma::{digamma, ln_gamma};

use crate::{Fit, FitError, fit::maximise};

/// One customer's repeat history: gaps between distinct order days and their total in days.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gaps {
    /// Number of gaps (distinct order days minus one).
    pub n: u32,
    /// Sum of the gaps in days (last order day minus first).
    pub total_days: f64,
}

/// The category's (or population's) prior on purchase rates.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct IntervalPrior {
    /// Gamma shape k.
    pub shape: f64,
    /// Gamma rate θ (days).
    pub rate: f64,
}

/// A customer's reorder timing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Reorder {
    /// The usual interval between orders, in days.
    pub usual_interval_days: f64,
    /// Days since the last order.
    pub days_since_last: f64,
    /// Days from the last order to the expected next one (the usual interval).
    pub expected_next_in_days: f64,
    /// Days since the last order ÷ the usual interval: above 1 means overdue.
    pub overdue_factor: f64,
    /// The same in words.
    pub explanation: String,
}

fn log_marginal(p: &[f64], data: &[Gaps]) -> (f64, Vec<f64>) {
    let (k, theta) = (p[0], p[1]);
    let (lg_k, dg_k, ln_t) = (ln_gamma(k), digamma(k), theta.ln());
    let mut ll = 0.0;
    let mut g = [0.0f64; 2];
    for d in data.iter().filter(|d| d.n > 0) {
        let n = f64::from(d.n);
        let s = theta + d.total_days;
        ll += ln_gamma(k + n) - lg_k + k * ln_t - (k + n) * s.ln();
        g[0] += digamma(k + n) - dg_k + ln_t - s.ln();
        g[1] += k / theta - (k + n) / s;
    }
    (ll, g.to_vec())
}

impl IntervalPrior {
    /// Fits the prior on the repeat histories of one category (customers with one order carry no
    /// information about gaps and are skipped).
    pub fn fit(data: &[Gaps]) -> Result<Fit<IntervalPrior>, FitError> {
        if data.iter().any(|d| {
            !d.total_days.is_finite() || d.total_days < 0.0 || (d.n > 0 && d.total_days <= 0.0)
        }) {
            return Err(FitError::Invalid(
                "gaps must total a positive number of days".into(),
            ));
        }
        let repeat: Vec<Gaps> = data.iter().copied().filter(|d| d.n > 0).collect();
        if repeat.is_empty() {
            return Err(FitError::NoRepeatBuyers {
                customers: data.len(),
            });
        }
        if repeat.len() < 10 {
            return Err(FitError::TooFew {
                customers: repeat.len(),
                needed: 10,
            });
        }
        let mean_gap = repeat.iter().map(|d| d.total_days).sum::<f64>()
            / repeat.iter().map(|d| f64::from(d.n)).sum::<f64>();
        let o = maximise(
            "reorder-interval prior",
            |p| log_marginal(p, &repeat),
            &[2.0, mean_gap.max(1.0)],
            repeat.len() as f64,
        )?;
        Ok(Fit {
            params: IntervalPrior {
                shape: o.params[0],
                rate: o.params[1],
            },
            std_errors: o.std_errors,
            log_likelihood: o.log_likelihood,
            iterations: o.iterations,
            gradient_norm: o.gradient_norm,
            evaluations: o.evaluations,
            customers: repeat.len() as f64,
        })
    }

    /// The usual interval in days for a customer with these gaps; `None` when the prior has no
    /// finite mean interval and the customer has no repeat order.
    pub fn usual_interval(&self, gaps: Gaps) -> Option<f64> {
        let a = self.shape + f64::from(gaps.n) - 1.0;
        (a > 0.0).then(|| (self.rate + gaps.total_days) / a)
    }

    /// Reorder timing and its explanation for a customer whose last order was `days_since_last`
    /// days ago.
    pub fn reorder(&self, gaps: Gaps, days_since_last: f64) -> Option<Reorder> {
        let usual = self.usual_interval(gaps)?;
        let overdue = days_since_last / usual;
        let since = format!("{} days since the last order", days_since_last.round());
        let state = if overdue >= 1.5 {
            format!(" ({overdue:.1}× the usual interval: overdue)")
        } else if overdue >= 1.0 {
            " (due now)".to_owned()
        } else {
            String::new()
        };
        let explanation = if gaps.n == 0 {
            format!(
                "one order so far; customers like them reorder every {} days; {since}{state}",
                usual.round()
            )
        } else {
            format!(
                "usually reorders every {} days; {since}{state}",
                usual.round()
            )
        };
        Some(Reorder {
            usual_interval_days: usual,
            days_since_last,
            expected_next_in_days: usual,
            overdue_factor: overdue,
            explanation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Exp, Gamma};

    #[test]
    fn gradient_matches_finite_differences() {
        let data = [
            Gaps {
                n: 1,
                total_days: 30.0,
            },
            Gaps {
                n: 4,
                total_days: 200.0,
            },
            Gaps {
                n: 0,
                total_days: 0.0,
            },
        ];
        crate::fit::assert_gradient(|p| log_marginal(p, &data), &[2.5, 90.0]);
    }

    #[test]
    fn recovers_the_category_prior_and_shrinks_individuals_toward_it() {
        // Rates ~ Gamma(shape 3, rate 120 days): mean interval 120 / 2 = 60 days.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let rates = Gamma::new(3.0, 1.0 / 120.0).unwrap();
        let data: Vec<Gaps> = (0..5000)
            .map(|_| {
                let lambda: f64 = rates.sample(&mut rng);
                let n = rng.gen_range(1..8u32);
                let gap = Exp::new(lambda).unwrap();
                Gaps {
                    n,
                    total_days: (0..n).map(|_| gap.sample(&mut rng)).sum(),
                }
            })
            .collect();
        let prior = IntervalPrior::fit(&data).unwrap().params;
        assert!((prior.shape - 3.0).abs() < 0.3, "{prior:?}");
        assert!((prior.rate - 120.0).abs() < 15.0, "{prior:?}");
        // One order: the category's interval.
        let single = prior
            .usual_interval(Gaps {
                n: 0,
                total_days: 0.0,
            })
            .unwrap();
        assert!((single - prior.rate / (prior.shape - 1.0)).abs() < 1e-9);
        // Many regular orders: close to the customer's own 20-day rhythm.
        let regular = prior
            .usual_interval(Gaps {
                n: 40,
                total_days: 800.0,
            })
            .unwrap();
        assert!((regular - 20.0).abs() < 3.0, "{regular}");
    }

    #[test]
    fn explains_in_words() {
        let prior = IntervalPrior {
            shape: 3.0,
            rate: 120.0,
        };
        // (120 + 42) / (3 + 2 - 1) = 40.5 days
        let r = prior
            .reorder(
                Gaps {
                    n: 2,
                    total_days: 42.0,
                },
                62.0,
            )
            .unwrap();
        assert_eq!(
            r.explanation,
            "usually reorders every 41 days; 62 days since the last order (1.5× the usual interval: overdue)"
        );
        let first = prior
            .reorder(
                Gaps {
                    n: 0,
                    total_days: 0.0,
                },
                10.0,
            )
            .unwrap();
        assert_eq!(
            first.explanation,
            "one order so far; customers like them reorder every 60 days; 10 days since the last order"
        );
        assert!(
            IntervalPrior {
                shape: 0.8,
                rate: 50.0
            }
            .usual_interval(Gaps {
                n: 0,
                total_days: 0.0
            })
            .is_none()
        );
    }

    #[test]
    fn degenerate_input_is_refused_clearly() {
        assert_eq!(
            IntervalPrior::fit(
                &[Gaps {
                    n: 0,
                    total_days: 0.0
                }; 20]
            ),
            Err(FitError::NoRepeatBuyers { customers: 20 })
        );
        assert!(matches!(
            IntervalPrior::fit(&[Gaps {
                n: 1,
                total_days: 0.0
            }]),
            Err(FitError::Invalid(_))
        ));
    }
}
