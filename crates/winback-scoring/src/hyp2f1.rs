//! The Gauss hypergeometric function ₂F₁(a, b; c; z) for 0 ≤ z < 1, as BG/NBD's conditional
//! expectation needs it. Written here because no maintained crate provides it; the series is
//! summed in log space term by term ratio, so large parameters do not overflow.
//!
//! For z close to 1 the series converges slowly; BG/NBD calls it with z = t / (α + T + t), which
//! stays well below 1 for horizons comparable to the history. The Pareto/NBD work adds the
//! transformations that keep z near 1 accurate.

/// ₂F₁(a, b; c; z) by its power series, for 0 ≤ z < 1 and c > 0. Returns NaN when the series
/// does not converge within 100,000 terms.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    if !(0.0..1.0).contains(&z) || c <= 0.0 {
        return f64::NAN;
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
    fn closed_forms() {
        // ₂F₁(1, 1; 2; z) = -ln(1 - z) / z
        for z in [0.01, 0.3, 0.7, 0.95] {
            let exact = -(1.0f64 - z).ln() / z;
            assert!(
                (hyp2f1(1.0, 1.0, 2.0, z) - exact).abs() < 1e-12 * exact,
                "z={z}"
            );
        }
        assert_eq!(hyp2f1(2.0, 3.0, 4.0, 0.0), 1.0);
        assert!(hyp2f1(1.0, 1.0, 2.0, 1.0).is_nan());
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
