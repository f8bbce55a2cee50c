//! Pareto/NBD (Schmittlein, Morrison & Colombo 1987): while alive a customer buys at Poisson
//! rate λ ~ Gamma(r, α) and dies after an exponential lifetime with rate μ ~ Gamma(s, β).
//!
//! The likelihood (Fader & Hardie 2005, "A note on deriving the Pareto/NBD model") needs
//! ₂F₁(r+s+x, ·; r+s+x+1; z) at the recency and at the age of each customer; both are taken in
//! log space with their parameter derivatives from [`crate::hyp2f1`], which makes the gradient
//! analytic. Each distinct `(x, t)` pair is evaluated once per likelihood evaluation.

use std::collections::HashMap;

use statrs::function::gamma::{digamma, ln_gamma};

use crate::{
    Fit, FitError, Frequency, Grouped, data::validate, fit::maximise, hyp2f1::ln_hyp2f1_a1_grad,
};

/// Pareto/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ParetoNbdParams {
    /// Shape of the purchase-rate distribution.
    pub r: f64,
    /// Scale (in time units) of the purchase-rate distribution.
    pub alpha: f64,
    /// Shape of the dropout-rate distribution.
    pub s: f64,
    /// Scale (in time units) of the dropout-rate distribution.
    pub beta: f64,
}

/// The Pareto/NBD model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParetoNbd(pub ParetoNbdParams);

/// ln of (₂F₁ term at time t) = ln ₂F₁(r+s+x, b'; r+s+x+1; z_t) − (r+s+x) ln(max(α,β) + t),
/// with z_t = |α − β| / (max(α,β) + t) and b' = s + 1 when α ≥ β, r + x otherwise; and its
/// gradient in (r, α, s, β).
fn ln_term(p: &[f64; 4], x: f64, t: f64) -> (f64, [f64; 4]) {
    let [r, alpha, s, beta] = *p;
    let rsf = r + s + x;
    if alpha >= beta {
        let q = alpha + t;
        let z = (alpha - beta) / q;
        let g = ln_hyp2f1_a1_grad(rsf, s + 1.0, z);
        let d_rsf = g.d_a + g.d_c;
        let ln_q = q.ln();
        (
            g.value - rsf * ln_q,
            [
                d_rsf - ln_q,
                g.d_z * (beta + t) / (q * q) - rsf / q,
                d_rsf + g.d_b - ln_q,
                -g.d_z / q,
            ],
        )
    } else {
        let q = beta + t;
        let z = (beta - alpha) / q;
        let g = ln_hyp2f1_a1_grad(rsf, r + x, z);
        let d_rsf = g.d_a + g.d_c;
        let ln_q = q.ln();
        (
            g.value - rsf * ln_q,
            [
                d_rsf + g.d_b - ln_q,
                -g.d_z / q,
                d_rsf - ln_q,
                g.d_z * (alpha + t) / (q * q) - rsf / q,
            ],
        )
    }
}

/// A log value with its gradient in (r, α, s, β).
type LogGrad = (f64, [f64; 4]);

/// ln A₀ = ln(term(t_x) − term(T)) and its gradient; −∞ when t_x = T.
fn ln_a0(p: &[f64; 4], x: f64, t_x: f64, t: f64) -> LogGrad {
    a0_of(ln_term(p, x, t_x), ln_term(p, x, t))
}

/// ln(e^{l1} − e^{l2}) with its gradient, from the terms at t_x and at T.
fn a0_of((l1, g1): LogGrad, (l2, g2): LogGrad) -> LogGrad {
    let ratio = (l2 - l1).exp();
    if ratio.is_nan() || ratio >= 1.0 {
        return (f64::NEG_INFINITY, [0.0; 4]);
    }
    let value = l1 + (-ratio).ln_1p();
    let mut g = [0.0; 4];
    for i in 0..4 {
        g[i] = (g1[i] - ratio * g2[i]) / (1.0 - ratio);
    }
    (value, g)
}

/// A group's log-likelihood without the terms of x alone, and its gradient, from its ln A₀:
/// the log-sum of the "still alive at T" term B and the "died in (t_x, T)" term C.
fn group_ll_with(p: &[f64; 4], x: f64, t: f64, (la0, da0): LogGrad) -> LogGrad {
    let [r, alpha, s, beta] = *p;
    let b = -(r + x) * (alpha + t).ln() - s * (beta + t).ln();
    let db = [
        -(alpha + t).ln(),
        -(r + x) / (alpha + t),
        -(beta + t).ln(),
        -s / (beta + t),
    ];
    let rsf = r + s + x;
    let c = s.ln() - rsf.ln() + la0;
    if c == f64::NEG_INFINITY {
        return (b, db);
    }
    let dc = [
        -1.0 / rsf + da0[0],
        da0[1],
        1.0 / s - 1.0 / rsf + da0[2],
        da0[3],
    ];
    let (lse, wc) = if c > b {
        let e = (b - c).exp();
        (c + e.ln_1p(), 1.0 / (1.0 + e))
    } else {
        let e = (c - b).exp();
        (b + e.ln_1p(), e / (1.0 + e))
    };
    let mut g = [0.0; 4];
    for i in 0..4 {
        g[i] = (1.0 - wc) * db[i] + wc * dc[i];
    }
    (lse, g)
}

/// Histories prepared for many evaluations: terms of x alone summed per x, and each group's
/// two ₂F₁ terms as indexes into the distinct `(x, t)` pairs, which customers share far more
/// than whole histories (one evaluation per pair instead of two per group).
struct Prepared {
    weight_by_x: Vec<f64>,
    /// Distinct (x, t) pairs of recencies and ages.
    pairs: Vec<(f64, f64)>,
    /// (x, T, index of (x, t_x), index of (x, T), weight).
    groups: Vec<(f64, f64, u32, u32, f64)>,
}

impl Prepared {
    fn new(data: &[Grouped]) -> Self {
        let max_x = data.iter().map(|g| g.h.x as usize).max().unwrap_or(0);
        let mut weight_by_x = vec![0.0; max_x + 1];
        let mut merged: HashMap<(u64, u64, u64), f64> = HashMap::new();
        for g in data {
            weight_by_x[g.h.x as usize] += g.weight;
            *merged
                .entry((g.h.x.to_bits(), g.h.t_x.to_bits(), g.h.t.to_bits()))
                .or_default() += g.weight;
        }
        let mut keys: Vec<((u64, u64, u64), f64)> = merged.into_iter().collect();
        // A fixed order makes the floating-point sum, and so the fit, reproducible.
        keys.sort_unstable_by_key(|(k, _)| *k);
        let mut pairs: Vec<(f64, f64)> = Vec::new();
        let mut index: HashMap<(u64, u64), u32> = HashMap::new();
        let mut pair = |x: u64, t: u64| -> u32 {
            *index.entry((x, t)).or_insert_with(|| {
                pairs.push((f64::from_bits(x), f64::from_bits(t)));
                (pairs.len() - 1) as u32
            })
        };
        let groups = keys
            .into_iter()
            .map(|((x, t_x, t), w)| {
                (
                    f64::from_bits(x),
                    f64::from_bits(t),
                    pair(x, t_x),
                    pair(x, t),
                    w,
                )
            })
            .collect();
        Self {
            weight_by_x,
            pairs,
            groups,
        }
    }

    fn log_likelihood(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let (r, alpha, s, beta) = (p[0], p[1], p[2], p[3]);
        let mut ll = 0.0;
        let mut g = [0.0f64; 4];
        let (lg_r, dg_r) = (ln_gamma(r), digamma(r));
        for (x, &w) in self.weight_by_x.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let x = x as f64;
            ll += w * (ln_gamma(r + x) - lg_r + r * alpha.ln() + s * beta.ln());
            g[0] += w * (digamma(r + x) - dg_r + alpha.ln());
            g[1] += w * r / alpha;
            g[2] += w * beta.ln();
            g[3] += w * s / beta;
        }
        let params = [r, alpha, s, beta];
        // The ₂F₁ terms, one per distinct pair, on two threads: this is where a fit spends
        // its time.
        let terms_of = |pairs: &[(f64, f64)]| -> Vec<LogGrad> {
            pairs.iter().map(|&(x, t)| ln_term(&params, x, t)).collect()
        };
        let terms: Vec<LogGrad> = if self.pairs.len() > 2_000 {
            let (left, right) = self.pairs.split_at(self.pairs.len() / 2);
            std::thread::scope(|sc| {
                let h = sc.spawn(|| terms_of(right));
                let mut out = terms_of(left);
                out.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
                out
            })
        } else {
            terms_of(&self.pairs)
        };
        let part = |groups: &[(f64, f64, u32, u32, f64)]| {
            let mut ll = 0.0;
            let mut g = [0.0f64; 4];
            for &(x, t, i_tx, i_t, w) in groups {
                let a0 = a0_of(terms[i_tx as usize], terms[i_t as usize]);
                let (v, d) = group_ll_with(&params, x, t, a0);
                ll += w * v;
                for i in 0..4 {
                    g[i] += w * d[i];
                }
            }
            (ll, g)
        };
        let (ll2, g2) = crate::fit::sum_in_two(&self.groups, 20_000, part);
        ll += ll2;
        for i in 0..4 {
            g[i] += g2[i];
        }
        (ll, g.to_vec())
    }
}

impl ParetoNbd {
    /// Fits the model by maximum likelihood on grouped histories.
    pub fn fit(data: &[Grouped]) -> Result<Fit<ParetoNbdParams>, FitError> {
        let customers = validate(data)?;
        let mean_t = data.iter().map(|g| g.h.t * g.weight).sum::<f64>() / customers;
        let prepared = Prepared::new(data);
        // α and β start apart: at α = β every ₂F₁ is 1 and the two branches meet.
        let o = maximise(
            "Pareto/NBD",
            |p| prepared.log_likelihood(p),
            &[1.0, mean_t.max(1e-3), 1.0, 2.0 * mean_t.max(1e-3)],
            customers,
        )?;
        let p = &o.params;
        Ok(Fit {
            params: ParetoNbdParams {
                r: p[0],
                alpha: p[1],
                s: p[2],
                beta: p[3],
            },
            std_errors: o.std_errors,
            log_likelihood: o.log_likelihood,
            iterations: o.iterations,
            gradient_norm: o.gradient_norm,
            evaluations: o.evaluations,
            customers,
        })
    }

    fn array(&self) -> [f64; 4] {
        let p = self.0;
        [p.r, p.alpha, p.s, p.beta]
    }

    /// Log-likelihood of the data under these parameters.
    pub fn log_likelihood(&self, data: &[Grouped]) -> f64 {
        Prepared::new(data).log_likelihood(&self.array()).0
    }

    /// The probability that a customer with this history is still alive at the end of it.
    pub fn p_alive(&self, h: Frequency) -> f64 {
        self.p_alive_with(h, ln_a0(&self.array(), h.x, h.t_x, h.t).0)
    }

    /// [`ParetoNbd::p_alive`] with ln A₀ already computed.
    fn p_alive_with(&self, h: Frequency, la0: f64) -> f64 {
        let ParetoNbdParams { r, alpha, s, beta } = self.0;
        let exponent = s.ln() - (r + s + h.x).ln()
            + (r + h.x) * (alpha + h.t).ln()
            + s * (beta + h.t).ln()
            + la0;
        1.0 / (1.0 + exponent.exp())
    }

    /// P(alive), expected purchases within `horizon` and by each of `horizons`, from one
    /// evaluation of the history's ₂F₁ terms (the three methods would each evaluate them):
    /// the same figures to the bit, a third of the work.
    pub fn prediction(&self, h: Frequency, horizon: f64, horizons: &[f64]) -> (f64, f64, Vec<f64>) {
        let a0 = ln_a0(&self.array(), h.x, h.t_x, h.t);
        let at = self.curve_with(h, a0);
        (
            self.p_alive_with(h, a0.0),
            at(horizon),
            horizons.iter().map(|&t| at(t)).collect(),
        )
    }

    /// Expected purchases in the next `horizon` time units for a customer with this history.
    pub fn expected_purchases(&self, h: Frequency, horizon: f64) -> f64 {
        self.expected_purchases_curve(h, &[horizon])[0]
    }

    /// Expected purchases by each horizon: the customer's likelihood is computed once.
    pub fn expected_purchases_curve(&self, h: Frequency, horizons: &[f64]) -> Vec<f64> {
        let at = self.curve_with(h, ln_a0(&self.array(), h.x, h.t_x, h.t));
        horizons.iter().map(|&t| at(t)).collect()
    }

    /// Expected purchases by a horizon, for a history whose ln A₀ is known.
    fn curve_with(&self, h: Frequency, a0: LogGrad) -> impl Fn(f64) -> f64 {
        let ParetoNbdParams { r, alpha, s, beta } = self.0;
        let Frequency { x, t, .. } = h;
        // first − likelihood: the x-only terms cancel.
        let first = -(r + x) * (alpha + t).ln()
            - s * (beta + t).ln()
            - group_ll_with(&self.array(), x, t, a0).0;
        let second = (r + x).ln() + (beta + t).ln() - (alpha + t).ln();
        move |horizon| (first + second + ln_survival_integral(s, beta + t, horizon)).exp()
    }

    /// Expected purchases of a newly acquired customer within `horizon`.
    pub fn expected_purchases_new(&self, horizon: f64) -> f64 {
        let ParetoNbdParams { r, alpha, s, beta } = self.0;
        r * beta / alpha * ln_survival_integral(s, beta, horizon).exp()
    }
}

/// ln[(1 − (b/(b+t))^(s−1)) / (s − 1)] (the expected alive time in the next t, divided by b),
/// with its limit ln ln((b+t)/b) at s = 1.
fn ln_survival_integral(s: f64, b: f64, t: f64) -> f64 {
    let ln_ratio = (b / (b + t)).ln();
    if (s - 1.0).abs() < 1e-9 {
        return (-ln_ratio).ln();
    }
    (-((s - 1.0) * ln_ratio).exp_m1() / (s - 1.0)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences_on_both_sides_of_alpha_equals_beta() {
        let data = [
            Grouped::new(0.0, 0.0, 30.0, 5.0),
            Grouped::new(3.0, 20.0, 35.0, 2.0),
            Grouped::new(40.0, 37.9, 38.0, 1.0),
        ];
        let prepared = Prepared::new(&data);
        for p in [[0.55, 10.6, 0.61, 11.7], [0.7, 5.0, 1.3, 2.2]] {
            crate::fit::assert_gradient(|q| prepared.log_likelihood(q), &p);
        }
    }

    #[test]
    fn degenerate_input_gets_clear_errors() {
        assert_eq!(ParetoNbd::fit(&[]), Err(FitError::Empty));
        let none = [Grouped::new(0.0, 0.0, 10.0, 50.0)];
        assert_eq!(
            ParetoNbd::fit(&none),
            Err(FitError::NoRepeatBuyers { customers: 50 })
        );
    }
}
