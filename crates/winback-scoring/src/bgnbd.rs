//! BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive a
//! customer buys at Poisson rate λ ~ Gamma(r, α); after each purchase they drop out with
//! probability p ~ Beta(a, b).
//!
//! MBG/NBD (Batislam, Denizel & Filiztekin 2007) lets a customer also drop out at time zero,
//! right after the first purchase, so a one-time buyer is not assumed alive forever. The two
//! share one likelihood machine: MBG/NBD shifts b + x − 1 to b + x and applies the dropout term
//! to customers without repeat purchases too.

use statrs::function::gamma::{digamma, ln_gamma};

use crate::{Fit, FitError, Frequency, Grouped, data::validate, fit::maximise, hyp2f1::hyp2f1};

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

/// The MBG/NBD model (same parameters as BG/NBD, different dropout timing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MbgNbd(pub BgNbdParams);

/// Histories prepared once for many likelihood evaluations: the terms that depend only on `x`
/// are summed per distinct `x`, and times are indexed into tables of distinct values, so one
/// evaluation costs a log-sum-exp per group plus a few special functions per distinct value.
pub(crate) struct Prepared {
    /// 0 for BG/NBD, 1 for MBG/NBD (its b + x − 1 is b + x).
    shift: f64,
    /// (x, index into `ts`, index into `txs`, weight) of groups with a dropout term: x > 0 for
    /// BG/NBD, all for MBG/NBD.
    repeat: Vec<(u32, u32, u32, f64)>,
    /// (index into `ts`, weight) of groups without one (BG/NBD's x = 0).
    once: Vec<(u32, f64)>,
    /// Total weight per x.
    weight_by_x: Vec<f64>,
    ts: Vec<f64>,
    txs: Vec<f64>,
}

fn index_of(values: &mut Vec<f64>, map: &mut std::collections::HashMap<u64, u32>, v: f64) -> u32 {
    *map.entry(v.to_bits()).or_insert_with(|| {
        values.push(v);
        (values.len() - 1) as u32
    })
}

impl Prepared {
    pub(crate) fn new(data: &[Grouped], modified: bool) -> Self {
        let (mut ts, mut txs) = (Vec::new(), Vec::new());
        let (mut tmap, mut txmap) = (
            std::collections::HashMap::new(),
            std::collections::HashMap::new(),
        );
        let max_x = data.iter().map(|g| g.h.x as usize).max().unwrap_or(0);
        let mut weight_by_x = vec![0.0; max_x + 1];
        let (mut repeat, mut once) = (Vec::new(), Vec::new());
        for g in data {
            let x = g.h.x as u32;
            weight_by_x[x as usize] += g.weight;
            let ti = index_of(&mut ts, &mut tmap, g.h.t);
            if x == 0 && !modified {
                once.push((ti, g.weight));
            } else {
                let txi = index_of(&mut txs, &mut txmap, g.h.t_x);
                repeat.push((x, ti, txi, g.weight));
            }
        }
        Self {
            shift: f64::from(u8::from(modified)),
            repeat,
            once,
            weight_by_x,
            ts,
            txs,
        }
    }

    /// The weighted log-likelihood and its gradient in (r, α, a, b).
    pub(crate) fn log_likelihood(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let (r, alpha, a, b) = (p[0], p[1], p[2], p[3]);
        let k = self.shift;
        let (lg_r, dg_r, ln_alpha, ln_a) = (ln_gamma(r), digamma(r), alpha.ln(), a.ln());
        let (lg_ab, dg_ab, lg_b, dg_b) = (ln_gamma(a + b), digamma(a + b), ln_gamma(b), digamma(b));
        let mut ll = 0.0;
        let mut g = [0.0f64; 4];
        // Terms of x alone: A1 and A2 of the likelihood, summed per distinct x.
        for (x, &w) in self.weight_by_x.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let x = x as f64;
            ll += w
                * (ln_gamma(r + x) - lg_r + r * ln_alpha + lg_ab + ln_gamma(b + x + k)
                    - lg_b
                    - ln_gamma(a + b + x + k));
            let dg_abx = digamma(a + b + x + k);
            g[0] += w * (digamma(r + x) - dg_r + ln_alpha);
            g[1] += w * (r / alpha);
            g[2] += w * (dg_ab - dg_abx);
            g[3] += w * (dg_ab + digamma(b + x + k) - dg_b - dg_abx);
        }
        let ln_t: Vec<f64> = self.ts.iter().map(|t| (alpha + t).ln()).collect();
        let inv_t: Vec<f64> = self.ts.iter().map(|t| 1.0 / (alpha + t)).collect();
        let ln_tx: Vec<f64> = self.txs.iter().map(|t| (alpha + t).ln()).collect();
        let inv_tx: Vec<f64> = self.txs.iter().map(|t| 1.0 / (alpha + t)).collect();
        // x = 0: log(e^{A3}) with A3 = -r ln(α+T).
        for &(ti, w) in &self.once {
            let ti = ti as usize;
            ll -= w * r * ln_t[ti];
            g[0] -= w * ln_t[ti];
            g[1] -= w * r * inv_t[ti];
        }
        // With a dropout term: log(e^{A3} + e^{A4}), A4 = ln a - ln(b+x-1+k) - (r+x) ln(α+t_x).
        // The groups are split between two threads: this loop is where a large fit spends its
        // time.
        let ln_bx1: Vec<f64> = (0..self.weight_by_x.len())
            .map(|x| (b + x as f64 - 1.0 + k).ln())
            .collect();
        let part = |groups: &[(u32, u32, u32, f64)]| {
            let mut ll = 0.0;
            let mut g = [0.0f64; 4];
            for &(x, ti, txi, w) in groups {
                let (ti, txi, xi) = (ti as usize, txi as usize, x as usize);
                let x = f64::from(x);
                let rx = r + x;
                let a3 = -rx * ln_t[ti];
                let a4 = ln_a - ln_bx1[xi] - rx * ln_tx[txi];
                // Softmax weights of the two terms, computed stably.
                let (lse, w4) = if a4 > a3 {
                    let e = (a3 - a4).exp();
                    (a4 + e.ln_1p(), 1.0 / (1.0 + e))
                } else {
                    let e = (a4 - a3).exp();
                    (a3 + e.ln_1p(), e / (1.0 + e))
                };
                let w3 = 1.0 - w4;
                ll += w * lse;
                g[0] -= w * (w3 * ln_t[ti] + w4 * ln_tx[txi]);
                g[1] -= w * rx * (w3 * inv_t[ti] + w4 * inv_tx[txi]);
                g[2] += w * w4 / a;
                g[3] -= w * w4 / (b + x - 1.0 + k);
            }
            (ll, g)
        };
        let (ll2, g2) = crate::fit::sum_in_two(&self.repeat, 20_000, part);
        ll += ll2;
        for i in 0..4 {
            g[i] += g2[i];
        }
        (ll, g.to_vec())
    }
}

/// Fits BG/NBD or, when `modified`, MBG/NBD.
fn fit(data: &[Grouped], modified: bool) -> Result<Fit<BgNbdParams>, FitError> {
    let customers = validate(data)?;
    let mean_t = data.iter().map(|g| g.h.t * g.weight).sum::<f64>() / customers;
    let prepared = Prepared::new(data, modified);
    let o = maximise(
        if modified { "MBG/NBD" } else { "BG/NBD" },
        |p| prepared.log_likelihood(p),
        &[1.0, mean_t.max(1e-3), 1.0, 1.0],
        customers,
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
        evaluations: o.evaluations,
        customers,
    })
}

impl BgNbd {
    /// Fits the model by maximum likelihood on grouped histories.
    pub fn fit(data: &[Grouped]) -> Result<Fit<BgNbdParams>, FitError> {
        fit(data, false)
    }

    /// Log-likelihood of the data under these parameters.
    pub fn log_likelihood(&self, data: &[Grouped]) -> f64 {
        let p = self.0;
        Prepared::new(data, false)
            .log_likelihood(&[p.r, p.alpha, p.a, p.b])
            .0
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
        self.expected_numerator(h.x, h.t, horizon) / self.expected_denominator(h)
    }

    /// The numerator of [`BgNbd::expected_purchases`]: it depends on `x`, `T` and the horizon
    /// only, not on `t_x`, so customers who share `(x, T)` share it (and its ₂F₁).
    pub fn expected_numerator(&self, x: f64, t: f64, horizon: f64) -> f64 {
        let BgNbdParams { r, alpha, a, b } = self.0;
        let z = horizon / (alpha + t + horizon);
        let f = hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let lead = (a + b + x - 1.0) / (a - 1.0);
        lead * (1.0 - ((alpha + t) / (alpha + t + horizon)).powf(r + x) * f)
    }

    /// The denominator of [`BgNbd::expected_purchases`] (1 / P(alive), computed directly).
    pub fn expected_denominator(&self, h: Frequency) -> f64 {
        let BgNbdParams { r, alpha, a, b } = self.0;
        let Frequency { x, t_x, t } = h;
        if x > 0.0 {
            1.0 + a / (b + x - 1.0) * ((alpha + t) / (alpha + t_x)).powf(r + x)
        } else {
            1.0
        }
    }

    /// Expected purchases of a newly acquired customer within `horizon` (the population curve).
    pub fn expected_purchases_new(&self, horizon: f64) -> f64 {
        let BgNbdParams { r, alpha, a, b } = self.0;
        let z = horizon / (alpha + horizon);
        (a + b - 1.0) / (a - 1.0)
            * (1.0 - (alpha / (alpha + horizon)).powf(r) * hyp2f1(r, b, a + b - 1.0, z))
    }
}

impl MbgNbd {
    /// Fits the model by maximum likelihood on grouped histories.
    pub fn fit(data: &[Grouped]) -> Result<Fit<BgNbdParams>, FitError> {
        fit(data, true)
    }

    /// Log-likelihood of the data under these parameters.
    pub fn log_likelihood(&self, data: &[Grouped]) -> f64 {
        let p = self.0;
        Prepared::new(data, true)
            .log_likelihood(&[p.r, p.alpha, p.a, p.b])
            .0
    }

    /// The probability that a customer with this history is still alive; below 1 even without
    /// repeat purchases, since MBG/NBD allows dropout right after the first.
    pub fn p_alive(&self, h: Frequency) -> f64 {
        let BgNbdParams { r, alpha, a, b } = self.0;
        let log_ratio =
            (a / (b + h.x)).ln() + (r + h.x) * ((alpha + h.t).ln() - (alpha + h.t_x).ln());
        1.0 / (1.0 + log_ratio.exp())
    }

    /// Expected purchases in the next `horizon` time units for a customer with this history.
    pub fn expected_purchases(&self, h: Frequency, horizon: f64) -> f64 {
        self.expected_numerator(h.x, h.t, horizon) / self.expected_denominator(h)
    }

    /// The numerator of [`MbgNbd::expected_purchases`]: it depends on `x`, `T` and the horizon
    /// only.
    pub fn expected_numerator(&self, x: f64, t: f64, horizon: f64) -> f64 {
        let BgNbdParams { r, alpha, a, b } = self.0;
        let z = horizon / (alpha + t + horizon);
        let f = hyp2f1(r + x, b + x + 1.0, a + b + x, z);
        (a + b + x) / (a - 1.0) * (1.0 - ((alpha + t) / (alpha + t + horizon)).powf(r + x) * f)
    }

    /// The denominator of [`MbgNbd::expected_purchases`].
    pub fn expected_denominator(&self, h: Frequency) -> f64 {
        let BgNbdParams { r, alpha, a, b } = self.0;
        1.0 + a / (b + h.x) * ((alpha + h.t) / (alpha + h.t_x)).powf(r + h.x)
    }

    /// Expected purchases of a newly acquired customer within `horizon`.
    pub fn expected_purchases_new(&self, horizon: f64) -> f64 {
        let BgNbdParams { r, alpha, a, b } = self.0;
        let z = horizon / (alpha + horizon);
        b / (a - 1.0) * (1.0 - (alpha / (alpha + horizon)).powf(r) * hyp2f1(r, b + 1.0, a + b, z))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The likelihood written term by term as in the paper: the reference for [`Prepared`].
    fn reference(p: &[f64], data: &[Grouped]) -> f64 {
        let (r, alpha, a, b) = (p[0], p[1], p[2], p[3]);
        data.iter()
            .map(|d| {
                let Frequency { x, t_x, t } = d.h;
                let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
                let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
                let a3 = -(r + x) * (alpha + t).ln();
                let lse = if x > 0.0 {
                    let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + t_x).ln();
                    (a3.exp() + a4.exp()).ln()
                } else {
                    a3
                };
                d.weight * (a1 + a2 + lse)
            })
            .sum()
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let data = [
            Grouped::new(0.0, 0.0, 30.0, 5.0),
            Grouped::new(3.0, 20.0, 35.0, 2.0),
            Grouped::new(1.0, 2.0, 38.0, 1.0),
        ];
        let p = [0.7, 5.0, 0.9, 2.2];
        let prepared = Prepared::new(&data, false);
        crate::fit::assert_gradient(|q| prepared.log_likelihood(q), &p);
        crate::fit::assert_gradient(|q| Prepared::new(&data, true).log_likelihood(q), &p);
        let fast = prepared.log_likelihood(&p).0;
        assert!(
            (fast - reference(&p, &data)).abs() < 1e-9 * fast.abs(),
            "prepared {fast} vs reference {}",
            reference(&p, &data)
        );
    }

    #[test]
    fn degenerate_input_gets_clear_errors() {
        assert_eq!(BgNbd::fit(&[]), Err(FitError::Empty));
        let none = [Grouped::new(0.0, 0.0, 10.0, 50.0)];
        assert_eq!(
            BgNbd::fit(&none),
            Err(FitError::NoRepeatBuyers { customers: 50 })
        );
        let one = [Grouped::new(2.0, 5.0, 10.0, 1.0)];
        assert_eq!(
            BgNbd::fit(&one),
            Err(FitError::TooFew {
                customers: 1,
                needed: 10
            })
        );
        let bad = [Grouped::new(2.0, 11.0, 10.0, 1.0)];
        assert!(matches!(BgNbd::fit(&bad), Err(FitError::Invalid(_))));
    }
}
