//! BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive a
//! customer buys at Poisson rate λ ~ Gamma(r, α); after each purchase they drop out with
//! probability p ~ Beta(a, b).

use statrs::function::gamma::{digamma, ln_gamma};

use crate::{Fit, FitError, Frequency, Grouped, fit::maximise, hyp2f1::hyp2f1};

/// BG/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BgNbdParams {
    /// Shape of the purchase-rate distribution.
    pub r: f64,
    /// Scale (in time units) of the purchase-rate distribution.
    pub alpha: f64,
    /// Dropout Beta shape a.
    pub a: f64,
    /// Dropout Beta shape b.
    pub b: f64,
}

/// The BG/NBD model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd(pub BgNbdParams);

fn validate(data: &[Grouped]) -> Result<f64, FitError> {
    if data.is_empty() {
        return Err(FitError::Empty);
    }
    let mut customers = 0.0;
    let mut repeat = 0.0;
    for g in data {
        let h = g.h;
        let ok = [h.x, h.t_x, h.t, g.weight].iter().all(|v| v.is_finite())
            && h.x >= 0.0
            && h.x.fract() == 0.0
            && h.t_x >= 0.0
            && h.t >= h.t_x
            && g.weight > 0.0
            && (h.x > 0.0 || h.t_x == 0.0);
        if !ok {
            return Err(FitError::Invalid(format!(
                "history x={}, t_x={}, T={} (weight {}) is impossible: need whole x ≥ 0, 0 ≤ t_x ≤ T, t_x = 0 when x = 0",
                h.x, h.t_x, h.t, g.weight
            )));
        }
        customers += g.weight;
        if h.x > 0.0 {
            repeat += g.weight;
        }
    }
    if repeat == 0.0 {
        return Err(FitError::NoRepeatBuyers {
            customers: customers as usize,
        });
    }
    if customers < 10.0 {
        return Err(FitError::TooFew {
            customers: customers as usize,
            needed: 10,
        });
    }
    Ok(customers)
}

/// The weighted log-likelihood and its gradient in (r, α, a, b).
pub(crate) fn log_likelihood(p: &[f64], data: &[Grouped]) -> (f64, Vec<f64>) {
    let (r, alpha, a, b) = (p[0], p[1], p[2], p[3]);
    let mut ll = 0.0;
    let mut g = [0.0f64; 4];
    let (lg_r, dg_r, ln_alpha) = (ln_gamma(r), digamma(r), alpha.ln());
    let (lg_ab, dg_ab, lg_b, dg_b) = (ln_gamma(a + b), digamma(a + b), ln_gamma(b), digamma(b));
    for d in data {
        let Frequency { x, t_x, t } = d.h;
        let w = d.weight;
        let a1 = ln_gamma(r + x) - lg_r + r * ln_alpha;
        let a2 = lg_ab + ln_gamma(b + x) - lg_b - ln_gamma(a + b + x);
        let a3 = -(r + x) * (alpha + t).ln();
        let (lse, w3, w4) = if x > 0.0 {
            let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + t_x).ln();
            let m = a3.max(a4);
            let (e3, e4) = ((a3 - m).exp(), (a4 - m).exp());
            (m + (e3 + e4).ln(), e3 / (e3 + e4), e4 / (e3 + e4))
        } else {
            (a3, 1.0, 0.0)
        };
        ll += w * (a1 + a2 + lse);
        let dg_rx = digamma(r + x);
        // ∂/∂r
        g[0] += w * (dg_rx - dg_r + ln_alpha - w3 * (alpha + t).ln() - w4 * (alpha + t_x).ln());
        // ∂/∂α
        g[1] += w * (r / alpha - w3 * (r + x) / (alpha + t) - w4 * (r + x) / (alpha + t_x));
        let dg_abx = digamma(a + b + x);
        // ∂/∂a
        g[2] += w * (dg_ab - dg_abx + w4 / a);
        // ∂/∂b
        g[3] += w
            * (dg_ab + digamma(b + x)
                - dg_b
                - dg_abx
                - if x > 0.0 { w4 / (b + x - 1.0) } else { 0.0 });
    }
    (ll, g.to_vec())
}

impl BgNbd {
    /// Fits the model by maximum likelihood on grouped histories.
    pub fn fit(data: &[Grouped]) -> Result<Fit<BgNbdParams>, FitError> {
        let customers = validate(data)?;
        let mean_t = data.iter().map(|g| g.h.t * g.weight).sum::<f64>() / customers;
        let o = maximise(
            |p| log_likelihood(p, data),
            &[1.0, mean_t.max(1e-3), 1.0, 1.0],
        )?;
        let p = &o.params;
        Ok(Fit {
            params: BgNbdParams {
                r: p[0],
                alpha: p[1],
                a: p[2],
                b: p[3],
            },
            std_errors: o.std_errors,
            log_likelihood: o.log_likelihood,
            iterations: o.iterations,
            gradient_norm: o.gradient_norm,
            customers,
        })
    }

    /// Log-likelihood of the data under these parameters.
    pub fn log_likelihood(&self, data: &[Grouped]) -> f64 {
        let p = self.0;
        log_likelihood(&[p.r, p.alpha, p.a, p.b], data).0
    }

    /// The probability that a customer with this history is still "alive" at the end of it.
    pub fn p_alive(&self, h: Frequency) -> f64 {
        let BgNbdParams { r, alpha, a, b } = self.0;
        if h.x == 0.0 {
            return 1.0;
        }
        // 1 / (1 + a/(b+x-1) · ((α+T)/(α+t_x))^(r+x)), in log space for long histories.
        let log_ratio =
            (a / (b + h.x - 1.0)).ln() + (r + h.x) * ((alpha + h.t).ln() - (alpha + h.t_x).ln());
        1.0 / (1.0 + log_ratio.exp())
    }

    /// Expected purchases in the next `horizon` time units for a customer with this history.
    pub fn expected_purchases(&self, h: Frequency, horizon: f64) -> f64 {
        let BgNbdParams { r, alpha, a, b } = self.0;
        let Frequency { x, t_x, t } = h;
        let z = horizon / (alpha + t + horizon);
        let f = hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let lead = (a + b + x - 1.0) / (a - 1.0);
        let numerator = lead * (1.0 - ((alpha + t) / (alpha + t + horizon)).powf(r + x) * f);
        let denominator = if x > 0.0 {
            1.0 + a / (b + x - 1.0) * ((alpha + t) / (alpha + t_x)).powf(r + x)
        } else {
            1.0
        };
        numerator / denominator
    }

    /// Expected purchases of a newly acquired customer within `horizon` (the population curve).
    pub fn expected_purchases_new(&self, horizon: f64) -> f64 {
        let BgNbdParams { r, alpha, a, b } = self.0;
        let z = horizon / (alpha + horizon);
        (a + b - 1.0) / (a - 1.0)
            * (1.0 - (alpha / (alpha + horizon)).powf(r) * hyp2f1(r, b, a + b - 1.0, z))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let data = [
            Grouped {
                h: Frequency {
                    x: 0.0,
                    t_x: 0.0,
                    t: 30.0,
                },
                weight: 5.0,
            },
            Grouped {
                h: Frequency {
                    x: 3.0,
                    t_x: 20.0,
                    t: 35.0,
                },
                weight: 2.0,
            },
            Grouped {
                h: Frequency {
                    x: 1.0,
                    t_x: 2.0,
                    t: 38.0,
                },
                weight: 1.0,
            },
        ];
        let p = [0.7, 5.0, 0.9, 2.2];
        crate::fit::assert_gradient(|q| log_likelihood(q, &data), &p);
    }

    #[test]
    fn degenerate_input_gets_clear_errors() {
        assert_eq!(BgNbd::fit(&[]), Err(FitError::Empty));
        let none = [Grouped {
            h: Frequency {
                x: 0.0,
                t_x: 0.0,
                t: 10.0,
            },
            weight: 50.0,
        }];
        assert_eq!(
            BgNbd::fit(&none),
            Err(FitError::NoRepeatBuyers { customers: 50 })
        );
        let one = [Grouped {
            h: Frequency {
                x: 2.0,
                t_x: 5.0,
                t: 10.0,
            },
            weight: 1.0,
        }];
        assert_eq!(
            BgNbd::fit(&one),
            Err(FitError::TooFew {
                customers: 1,
                needed: 10
            })
        );
        let bad = [Grouped {
            h: Frequency {
                x: 2.0,
                t_x: 11.0,
                t: 10.0,
            },
            weight: 1.0,
        }];
        assert!(matches!(BgNbd::fit(&bad), Err(FitError::Invalid(_))));
    }
}
