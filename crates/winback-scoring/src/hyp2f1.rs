//! The Gauss hypergeometric function ₂F₁(a, b; c; z), in log space and with the derivatives of
//! its logarithm in every argument.
//!
//! Written here because no maintained Rust crate has it, and Pareto/NBD needs both the log (its
//! values overflow `f64` for frequent buyers: ₂F₁(r+s+x, r+x; r+s+x+1; z) grows like
//! (1 − z)^(−x)) and the parameter derivatives (for analytic likelihood gradients), which no
//! library offers at all.
//!
//! Domain: a, b, c > 0 and 0 ≤ z < 1, where every term of the series is positive, so summing
//! never cancels. Two forms are summed, whichever converges faster:
//! - the power series Σ (a)ₙ(b)ₙ / ((c)ₙ n!) zⁿ, whose terms behave like n^(a+b−c−1) zⁿ;
//! - when a + b > c and a, b ≤ c, Euler's transformation
//!   ₂F₁(a, b; c; z) = (1 − z)^(c−a−b) ₂F₁(c−a, c−b; c; z), which takes the singular factor out
//!   analytically, so the remaining series is bounded up to z = 1 and its terms are positive.
//!
//! The sum is kept in log space by rescaling (terms never overflow), compensated (Neumaier), and
//! stops when the geometric bound on the tail falls below 10⁻¹⁷ of the sum. Near z = 1 the
//! series needs about 40 / (1 − z) terms; every series is bounded (past its budget the result
//! is NaN, which an optimiser reads as "not here"), and Pareto/NBD's ₂F₁(a, b; a + 1; z) is
//! integrated by tanh-sinh quadrature there instead ([`ln_hyp2f1_a1_grad`]), so its
//! likelihood costs a bounded amount of work for any parameters.

/// ln ₂F₁(a, b; c; z) and the partial derivatives of that logarithm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LnHyp2f1 {
    /// ln ₂F₁(a, b; c; z).
    pub value: f64,
    /// ∂/∂a of the log.
    pub d_a: f64,
    /// ∂/∂b of the log.
    pub d_b: f64,
    /// ∂/∂c of the log.
    pub d_c: f64,
    /// ∂/∂z of the log.
    pub d_z: f64,
}

impl LnHyp2f1 {
    const NAN: LnHyp2f1 = LnHyp2f1 {
        value: f64::NAN,
        d_a: f64::NAN,
        d_b: f64::NAN,
        d_c: f64::NAN,
        d_z: f64::NAN,
    };
}

/// The most terms one series may sum before giving up (NaN): enough for 1 − z down to about
/// 2·10⁻⁵. It bounds every evaluation; Pareto/NBD's functions, which reach z → 1 when one rate
/// scale is far smaller than the other, switch to quadrature well before it
/// ([`ln_hyp2f1_a1_grad`]). (It was 60 million, and a fit that wandered to z = 1 − 10⁻⁷ spent
/// twenty minutes in one likelihood.)
const MAX_TERMS: u32 = 2_000_000;

/// Below this 1 − z, ₂F₁(a, b; a + 1; z) is integrated instead of summed (the series would need
/// about 40 / (1 − z) terms).
const QUADRATURE_BELOW: f64 = 2e-3;

/// ln ₂F₁(a, b; c; z) for a, b, c > 0 and 0 ≤ z < 1; NaN outside that domain.
pub fn ln_hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    ln_hyp2f1_impl::<false>(a, b, c, z).value
}

/// ln ₂F₁(a, b; c; z) with its partial derivatives, for a, b, c > 0 and 0 ≤ z < 1.
pub fn ln_hyp2f1_grad(a: f64, b: f64, c: f64, z: f64) -> LnHyp2f1 {
    ln_hyp2f1_impl::<true>(a, b, c, z)
}

/// ln ₂F₁(a, b; a + 1; z) (the form Pareto/NBD needs) with its derivatives, for a, b > 0 and
/// 0 ≤ z < 1. `d_a` is the derivative along c = a + 1 (so `d_c` is 0 and `d_a + d_c` is the same
/// total in both paths).
///
/// Summed as a series while that converges quickly; for z close to 1, where the series needs
/// about 40 / (1 − z) terms, it is integrated instead: with u = t^a the Euler integral
/// ₂F₁(a, b; a + 1; z) = a ∫₀¹ t^(a−1) (1 − z t)^(−b) dt becomes ∫₀¹ (1 − z u^(1/a))^(−b) du,
/// whose only difficulty is a steep rise at u = 1 of width about a(1 − z), which double-
/// exponential (tanh-sinh) quadrature resolves with a fixed 265 nodes down to 1 − z ≈ 10⁻¹².
/// Every evaluation therefore costs a bounded amount of work, wherever an optimiser goes.
pub fn ln_hyp2f1_a1_grad(a: f64, b: f64, z: f64) -> LnHyp2f1 {
    if !(a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite() && (0.0..1.0).contains(&z)) {
        return LnHyp2f1::NAN;
    }
    if 1.0 - z >= QUADRATURE_BELOW {
        let g = ln_hyp2f1_impl::<true>(a, b, a + 1.0, z);
        return LnHyp2f1 {
            d_a: g.d_a + g.d_c,
            d_c: 0.0,
            ..g
        };
    }
    a1_quadrature(a, b, z)
}

/// ln(1 + eˣ) without overflow.
fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x + (-x).exp()
    } else {
        x.exp().ln_1p()
    }
}

/// ln cosh x without overflow.
fn ln_cosh(x: f64) -> f64 {
    let x = x.abs();
    x + (-2.0 * x).exp().ln_1p() - std::f64::consts::LN_2
}

/// Tanh-sinh quadrature of ∫₀¹ (1 − z u^(1/a))^(−b) du in log space, with the derivatives of its
/// logarithm (integrands differentiated under the integral sign).
fn a1_quadrature(a: f64, b: f64, z: f64) -> LnHyp2f1 {
    use std::f64::consts::FRAC_PI_2;
    const H: f64 = 1.0 / 40.0;
    const N: i32 = 132; // t in [−3.3, 3.3]: the nodes reach within 1e-18 of both ends
    let mut nodes: Vec<(f64, f64, f64, f64)> = Vec::with_capacity(2 * N as usize + 1);
    let mut max = f64::NEG_INFINITY;
    for k in -N..=N {
        let t = f64::from(k) * H;
        let x = FRAC_PI_2 * t.sinh();
        // u = (1 + tanh x) / 2 = 1 / (1 + e^(−2x)), so ln u = −ln(1 + e^(−2x)).
        let ln_u = -softplus(-2.0 * x);
        // du/dt = (π/2) cosh t · sech²x / 2
        let ln_weight = (H * FRAC_PI_2 / 2.0).ln() + ln_cosh(t) - 2.0 * ln_cosh(x);
        let w = (ln_u / a).exp();
        let one_minus_w = -(ln_u / a).exp_m1();
        // 1 − z·w, without cancelling when both z and w are close to 1.
        let gap = (1.0 - z) + z * one_minus_w;
        let ln_f = -b * gap.ln();
        let d_b = -gap.ln();
        let d_z = b * w / gap;
        let d_a = if w > 0.0 {
            -b * z * w * ln_u / (a * a * gap)
        } else {
            0.0
        };
        let l = ln_weight + ln_f;
        max = max.max(l);
        nodes.push((l, d_a, d_b, d_z));
    }
    let (mut sum, mut da, mut db, mut dz) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (l, a_, b_, z_) in &nodes {
        let p = (l - max).exp();
        sum += p;
        da += p * a_;
        db += p * b_;
        dz += p * z_;
    }
    LnHyp2f1 {
        value: max + sum.ln(),
        d_a: da / sum,
        d_b: db / sum,
        d_c: 0.0,
        d_z: dz / sum,
    }
}

/// Both entry points; without `GRAD` the derivative sums (three divisions a term) are skipped.
fn ln_hyp2f1_impl<const GRAD: bool>(a: f64, b: f64, c: f64, z: f64) -> LnHyp2f1 {
    let valid = a > 0.0 && b > 0.0 && c > 0.0 && (0.0..1.0).contains(&z) && c.is_finite();
    if !valid || !a.is_finite() || !b.is_finite() {
        return LnHyp2f1::NAN;
    }
    // Euler's form has positive terms only when a, b ≤ c, and it pays when the direct series
    // is the slower one (a + b > c).
    if a + b > c && a <= c && b <= c {
        let m = c - a - b;
        let ln1z = (-z).ln_1p();
        let g = series::<GRAD>(c - a, c - b, c, z);
        return LnHyp2f1 {
            value: m * ln1z + g.value,
            d_a: -ln1z - g.d_a,
            d_b: -ln1z - g.d_b,
            d_c: ln1z + g.d_a + g.d_b + g.d_c,
            d_z: -m / (1.0 - z) + g.d_z,
        };
    }
    series::<GRAD>(a, b, c, z)
}

/// The power series with every term non-negative (a, b ≥ 0, c > 0), rescaled so it never
/// overflows, with the derivative sums carried along: d(term n)/da = term n · Σₖ₌₀ⁿ⁻¹ 1/(a+k).
fn series<const GRAD: bool>(a: f64, b: f64, c: f64, z: f64) -> LnHyp2f1 {
    if a == 0.0 || b == 0.0 || z == 0.0 {
        // F = 1; the derivatives are those of the first-order term at this point.
        return LnHyp2f1 {
            value: 0.0,
            d_a: b / c * z,
            d_b: a / c * z,
            d_c: -a * b / (c * c) * z,
            d_z: a * b / c,
        };
    }
    // Terms grow until n ≈ (a + b − c − 1) / (−ln z); when that peak lies beyond the budget the
    // sum cannot finish, so say so at once.
    let peak = (a + b - c - 1.0) / -z.ln();
    if peak > f64::from(MAX_TERMS) / 2.0 {
        return LnHyp2f1::NAN;
    }
    let (mut term, mut sum, mut compensation) = (1.0f64, 1.0f64, 0.0f64);
    let (mut sa, mut sb, mut sc) = (0.0f64, 0.0f64, 0.0f64);
    let (mut da, mut db, mut dc, mut dz) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut ln_scale = 0.0f64;
    const RESCALE: f64 = 1e200;
    for n in 0..MAX_TERMS {
        let k = f64::from(n);
        let ratio = (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        term *= ratio;
        // Neumaier's compensated sum: a million small terms would otherwise lose digits.
        let t = sum + term;
        compensation += if sum.abs() >= term.abs() {
            (sum - t) + term
        } else {
            (term - t) + sum
        };
        sum = t;
        if GRAD {
            sa += 1.0 / (a + k);
            sb += 1.0 / (b + k);
            sc += 1.0 / (c + k);
            da += term * sa;
            db += term * sb;
            dc -= term * sc;
            dz += term * (k + 1.0);
        }
        if term > RESCALE {
            term /= RESCALE;
            sum /= RESCALE;
            compensation /= RESCALE;
            da /= RESCALE;
            db /= RESCALE;
            dc /= RESCALE;
            dz /= RESCALE;
            ln_scale += RESCALE.ln();
        }
        // Past the peak the ratios tend to z, so the remaining terms shrink at least
        // geometrically by the larger of the next ratio and z, which bounds the tail. The
        // derivative sums weigh term n by up to n + Σ 1/(a+k) + Σ 1/(b+k), hence the factor.
        let next = (a + k + 1.0) * (b + k + 1.0) / ((c + k + 1.0) * (k + 2.0)) * z;
        let bound = next.max(z);
        let weight = if GRAD { k + 2.0 + sa + sb } else { 1.0 };
        if ratio <= 1.0 && term * weight <= 1e-17 * sum * (1.0 - bound) {
            let total = sum + compensation;
            return LnHyp2f1 {
                value: total.ln() + ln_scale,
                d_a: da / total,
                d_b: db / total,
                d_c: dc / total,
                d_z: dz / (z * total),
            };
        }
    }
    LnHyp2f1::NAN
}

/// ₂F₁(a, b; c; z) by its plain power series, for 0 ≤ z < 1 and c > 0, with parameters of any
/// sign (BG/NBD's c = a + b + x − 1 may fall below a or b). Returns NaN when the series does not
/// converge within 100,000 terms. For a, b, c > 0 prefer [`ln_hyp2f1`], which cannot overflow.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    if !(0.0..1.0).contains(&z) || c <= 0.0 {
        return f64::NAN;
    }
    if a > 0.0 && b > 0.0 {
        return ln_hyp2f1(a, b, c, z).exp();
    }
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    for n in 0..100_000u32 {
        let n = f64::from(n);
        term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum += term;
        if term.abs() <= 1e-17 * sum.abs() {
            return sum;
        }
    }
    f64::NAN
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quadrature_agrees_with_the_series_where_both_work() {
        for &(a, b) in &[
            (0.8, 1.6),
            (3.5, 0.4),
            (12.0, 7.0),
            (55.0, 1.2),
            (2.0, 30.0),
        ] {
            for &z in &[0.3, 0.9, 0.99, 0.997] {
                let s = ln_hyp2f1_impl::<true>(a, b, a + 1.0, z);
                let q = a1_quadrature(a, b, z);
                let rel = |x: f64, y: f64| (x - y).abs() / x.abs().max(1.0);
                assert!(
                    rel(s.value, q.value) < 1e-10,
                    "value at {a} {b} {z}: {} vs {}",
                    s.value,
                    q.value
                );
                assert!(rel(s.d_a + s.d_c, q.d_a) < 1e-7, "d_a at {a} {b} {z}");
                assert!(rel(s.d_b, q.d_b) < 1e-7, "d_b at {a} {b} {z}");
                assert!(
                    rel(s.d_z, q.d_z) < 1e-7,
                    "d_z at {a} {b} {z}: {} vs {}",
                    s.d_z,
                    q.d_z
                );
            }
        }
    }

    #[test]
    fn the_pareto_form_is_finite_and_bounded_up_to_z_near_one() {
        // Where the series would need 10⁸ terms and more.
        for &z in &[1.0 - 1e-5, 1.0 - 1e-7, 1.0 - 1e-10] {
            let g = ln_hyp2f1_a1_grad(20.5, 1.7, z);
            assert!(
                g.value.is_finite() && g.d_a.is_finite() && g.d_z.is_finite(),
                "{z}: {g:?}"
            );
            // ₂F₁(a, b; a+1; z) grows like (1 − z)^(1 − b) for b > 1.
            let expected = (1.0 - 1.7) * (1.0 - z).ln();
            assert!(
                (g.value - expected).abs() < 5.0,
                "{z}: {} vs about {expected}",
                g.value
            );
        }
    }

    #[test]
    fn closed_forms() {
        // ₂F₁(1, 1; 2; z) = -ln(1 - z) / z
        for z in [0.01, 0.3, 0.7, 0.95, 0.9999] {
            let exact = -(1.0f64 - z).ln() / z;
            assert!(
                (hyp2f1(1.0, 1.0, 2.0, z) - exact).abs() < 1e-12 * exact,
                "z={z}"
            );
        }
        assert_eq!(hyp2f1(2.0, 3.0, 4.0, 0.0), 1.0);
        assert!(hyp2f1(1.0, 1.0, 2.0, 1.0).is_nan());
        assert!(
            ln_hyp2f1(-1.0, 1.0, 2.0, 0.5).is_nan(),
            "outside the domain"
        );
    }

    #[test]
    fn no_overflow_where_the_value_exceeds_f64() {
        // ₂F₁(a, b; b; z) = (1 - z)^(-a): here e^(1151), beyond f64.
        let v = ln_hyp2f1(500.0, 3.0, 3.0, 0.9);
        assert!((v - 500.0 * 10f64.ln()).abs() < 1e-9 * v, "{v}");
    }

    fn numeric(f: impl Fn(f64) -> f64, x: f64) -> f64 {
        let h = 1e-6 * x.abs().max(1e-3);
        (f(x + h) - f(x - h)) / (2.0 * h)
    }

    #[test]
    fn derivatives_match_finite_differences_in_both_forms() {
        // (a, b, c, z): direct series, then Euler's form (a + b > c, a, b ≤ c).
        for (a, b, c, z) in [(0.7, 2.5, 4.0, 0.6), (3.2, 2.1, 4.3, 0.97)] {
            let g = ln_hyp2f1_grad(a, b, c, z);
            let checks = [
                (g.d_a, numeric(|v| ln_hyp2f1(v, b, c, z), a)),
                (g.d_b, numeric(|v| ln_hyp2f1(a, v, c, z), b)),
                (g.d_c, numeric(|v| ln_hyp2f1(a, b, v, z), c)),
                (g.d_z, numeric(|v| ln_hyp2f1(a, b, c, v), z)),
            ];
            for (i, (analytic, numeric)) in checks.into_iter().enumerate() {
                assert!(
                    (analytic - numeric).abs() < 1e-6 * (1.0 + numeric.abs()),
                    "({a}, {b}, {c}, {z}) argument {i}: {analytic} vs {numeric}"
                );
            }
        }
    }

    proptest! {
        /// ₂F₁(a, b; b; z) = (1 - z)^(-a)
        #[test]
        fn reduces_to_a_power(a in 0.1f64..20.0, b in 0.1f64..20.0, z in 0.0f64..0.9) {
            let exact = (1.0 - z).powf(-a);
            prop_assert!((hyp2f1(a, b, b, z) - exact).abs() <= 1e-10 * exact);
        }
    }
}
