//! Gamma-Gamma spend model (Fader, Hardie & Lee 2005b): each transaction's value is
//! Gamma(p, ν) distributed, with ν ~ Gamma(q, γ) across customers; fitted on repeat buyers'
//! number of repeat transactions and mean repeat value.

use statrs::function::gamma::{digamma, ln_gamma};

use crate::{Fit, FitError, SpendRecord, fit::maximise};

/// Gamma-Gamma parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GammaGammaParams {
    /// Shape of a transaction's value.
    pub p: f64,
    /// Shape of the customers' scale distribution.
    pub q: f64,
    /// Scale of the customers' scale distribution.
    pub gamma: f64,
}

/// The Gamma-Gamma model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma(pub GammaGammaParams);

fn log_likelihood(par: &[f64], data: &[SpendRecord]) -> (f64, Vec<f64>) {
    let (p, q, g) = (par[0], par[1], par[2]);
    let (lg_q, dg_q, ln_g) = (ln_gamma(q), digamma(q), g.ln());
    let mut ll = 0.0;
    let mut grad = [0.0f64; 3];
    for d in data {
        let (x, m) = (d.x, d.mean_value);
        let px = p * x;
        let s = g + m * x;
        ll += ln_gamma(px + q) - ln_gamma(px) - lg_q + q * ln_g + (px - 1.0) * m.ln() + px * x.ln()
            - (px + q) * s.ln();
        let dg_pxq = digamma(px + q);
        grad[0] += x * (dg_pxq - digamma(px) + m.ln() + x.ln() - s.ln());
        grad[1] += dg_pxq - dg_q + ln_g - s.ln();
        grad[2] += q / g - (px + q) / s;
    }
    (ll, grad.to_vec())
}

impl GammaGamma {
    /// Fits the model on repeat buyers (x > 0) with positive mean spend.
    pub fn fit(data: &[SpendRecord]) -> Result<Fit<GammaGammaParams>, FitError> {
        if data.is_empty() {
            return Err(FitError::Empty);
        }
        if let Some(bad) = data
            .iter()
            .find(|d| !d.x.is_finite() || d.x <= 0.0 || !d.mean_value.is_finite())
        {
            return Err(FitError::Invalid(format!(
                "x={}, mean value={}: the model takes repeat buyers only (x > 0)",
                bad.x, bad.mean_value
            )));
        }
        let non_positive = data.iter().filter(|d| d.mean_value <= 0.0).count();
        if non_positive > 0 {
            return Err(FitError::NonPositiveSpend {
                count: non_positive,
            });
        }
        if data.len() < 10 {
            return Err(FitError::TooFew {
                customers: data.len(),
                needed: 10,
            });
        }
        let mean = data.iter().map(|d| d.mean_value).sum::<f64>() / data.len() as f64;
        let o = maximise(
            "Gamma-Gamma",
            |p| log_likelihood(p, data),
            &[1.0, 1.0, mean],
            data.len() as f64,
        )?;
        let p = &o.params;
        Ok(Fit {
            params: GammaGammaParams {
                p: p[0],
                q: p[1],
                gamma: p[2],
            },
            std_errors: o.std_errors,
            log_likelihood: o.log_likelihood,
            iterations: o.iterations,
            gradient_norm: o.gradient_norm,
            evaluations: o.evaluations,
            customers: data.len() as f64,
        })
    }

    /// The expected value of a customer's future transactions given their history; for a
    /// customer without repeat purchases (x = 0) the population mean p·γ/(q−1).
    pub fn expected_value(&self, x: f64, mean_value: f64) -> f64 {
        let GammaGammaParams { p, q, gamma } = self.0;
        let population = p * gamma / (q - 1.0);
        if x <= 0.0 {
            return population;
        }
        let weight = (q - 1.0) / (p * x + q - 1.0);
        weight * population + (1.0 - weight) * mean_value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let data = [
            SpendRecord {
                x: 1.0,
                mean_value: 20.0,
            },
            SpendRecord {
                x: 4.0,
                mean_value: 35.5,
            },
        ];
        let p = [5.0, 3.0, 14.0];
        crate::fit::assert_gradient(|q| log_likelihood(q, &data), &p);
    }

    #[test]
    fn zero_spend_is_refused_with_advice() {
        let data = vec![
            SpendRecord {
                x: 1.0,
                mean_value: 0.0
            };
            12
        ];
        let err = GammaGamma::fit(&data).unwrap_err();
        assert_eq!(err, FitError::NonPositiveSpend { count: 12 });
        assert!(err.to_string().contains("exclude them"));
    }
}
