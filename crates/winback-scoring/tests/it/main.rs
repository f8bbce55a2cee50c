//! Validation on real data: calibrating on the CDNOW 1/10 sample up to 1997-09-30, in weeks,
//! with repeat purchases counted per distinct day, must reproduce the published figures of
//! the design document.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use winback_scoring::{
    BgNbd, BgNbdParams, ClvSettings, Frequency, GammaGamma, GammaGammaParams, MbgNbd, ParetoNbd,
    ParetoNbdParams, SpendRecord, clv, group, holdout_table,
};

/// Days since 1970-01-01 of a YYYYMMDD date (proleptic Gregorian).
fn day_number(yyyymmdd: &str) -> i64 {
    let y: i64 = yyyymmdd[..4].parse().unwrap();
    let m: i64 = yyyymmdd[4..6].parse().unwrap();
    let d: i64 = yyyymmdd[6..8].parse().unwrap();
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m - 3) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (histories, repeat spend) of the calibration period.
fn cdnow_calibration() -> (Vec<Frequency>, Vec<SpendRecord>) {
    let (h, s, _) = cdnow_split();
    (h, s)
}

/// Calibration histories, repeat spend, and each customer's purchase days in the 39-week holdout
/// (1997-10-01 to 1998-06-30).
fn cdnow_split() -> (Vec<Frequency>, Vec<SpendRecord>, Vec<f64>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/cdnow/CDNOW_sample.txt"
    );
    let text = std::fs::read_to_string(path).expect("CDNOW sample present");
    let end = day_number("19970930");
    // customer → day → dollars spent that day
    let mut days: BTreeMap<u32, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut holdout_days: BTreeMap<u32, std::collections::BTreeSet<i64>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (id, date, dollars): (u32, &str, f64) =
            (f[1].parse().unwrap(), f[2], f[4].parse().unwrap());
        let day = day_number(date);
        if day <= end {
            *days.entry(id).or_default().entry(day).or_default() += dollars;
        } else {
            holdout_days.entry(id).or_default().insert(day);
        }
    }
    let mut histories = Vec::new();
    let mut spend = Vec::new();
    let mut holdout = Vec::new();
    for (id, per_day) in &days {
        holdout.push(holdout_days.get(id).map_or(0, |d| d.len()) as f64);
        let first = *per_day.keys().next().unwrap();
        let last = *per_day.keys().last().unwrap();
        let x = (per_day.len() - 1) as f64;
        histories.push(Frequency {
            x,
            t_x: (last - first) as f64 / 7.0,
            t: (end - first) as f64 / 7.0,
        });
        if x > 0.0 {
            let repeat: Vec<f64> = per_day.iter().skip(1).map(|(_, v)| *v).collect();
            spend.push(SpendRecord {
                x,
                mean_value: repeat.iter().sum::<f64>() / repeat.len() as f64,
            });
        }
    }
    (histories, spend, holdout)
}

fn close(actual: f64, expected: f64, rel: f64) -> bool {
    ((actual - expected) / expected).abs() <= rel
}

#[test]
fn bgnbd_reproduces_the_published_cdnow_fit() {
    let (histories, _) = cdnow_calibration();
    assert_eq!(histories.len(), 2357);
    let grouped = group(&histories);
    assert!(
        grouped.len() < histories.len(),
        "identical histories share a group"
    );
    let fit = BgNbd::fit(&grouped).expect("converges");
    let p = fit.params;
    for (name, actual, expected) in [
        ("r", p.r, 0.2426),
        ("alpha", p.alpha, 4.4135),
        ("a", p.a, 0.7929),
        ("b", p.b, 2.4258),
    ] {
        assert!(
            close(actual, expected, 1e-3),
            "{name}: {actual} vs published {expected}"
        );
    }
    assert!(
        (fit.log_likelihood - -9582.43).abs() < 0.01,
        "log-likelihood {}",
        fit.log_likelihood
    );
    assert!(
        fit.std_errors.iter().all(|s| s.is_finite() && *s > 0.0),
        "{:?}",
        fit.std_errors
    );
    assert_eq!(fit.customers, 2357.0);
}

#[test]
fn bgnbd_per_customer_predictions_match_the_literature() {
    let published = BgNbd(BgNbdParams {
        r: 0.2426,
        alpha: 4.4135,
        a: 0.7929,
        b: 2.4258,
    });
    let h = Frequency {
        x: 2.0,
        t_x: 30.43,
        t: 38.86,
    };
    let alive = published.p_alive(h);
    assert!(close(alive, 0.7266, 1e-3), "P(alive) {alive}");
    let expected = published.expected_purchases(h, 39.0);
    assert!(
        close(expected, 1.226, 1e-3),
        "E[purchases in 39 weeks] {expected}"
    );
    // Someone who never came back is certainly "alive" in BG/NBD (no dropout before a repeat),
    // and a long silence after frequent buying makes death likely.
    assert_eq!(
        published.p_alive(Frequency {
            x: 0.0,
            t_x: 0.0,
            t: 30.0
        }),
        1.0
    );
    assert!(
        published.p_alive(Frequency {
            x: 10.0,
            t_x: 5.0,
            t: 38.0
        }) < 0.01
    );
}

#[test]
fn gamma_gamma_reproduces_the_published_cdnow_fit() {
    let (_, spend) = cdnow_calibration();
    assert_eq!(spend.len(), 946);
    let fit = GammaGamma::fit(&spend).expect("converges");
    let p = fit.params;
    eprintln!(
        "Gamma-Gamma on CDNOW: p {} q {} gamma {} (LL {})",
        p.p, p.q, p.gamma, fit.log_likelihood
    );
    // The figures are published to two decimals: the fit must round to them (1e-3 relative
    // would be tighter than the published rounding itself, e.g. 3.7442 vs 3.74).
    for (name, actual, expected) in [
        ("p", p.p, 6.25),
        ("q", p.q, 3.74),
        ("gamma", p.gamma, 15.44),
    ] {
        assert!(
            (actual - expected).abs() <= 0.005,
            "{name}: {actual} does not round to the published {expected}"
        );
    }
}

#[test]
fn bgnbd_predicts_the_cdnow_holdout_period() {
    let (histories, _, actual) = cdnow_split();
    let fit = BgNbd::fit(&group(&histories)).unwrap();
    let model = BgNbd(fit.params);
    let table = holdout_table(&model, &histories, &actual, 39.0, 7);
    eprintln!("frequency  customers  predicted  actual");
    for r in &table {
        eprintln!(
            "{:>9}  {:>9}  {:>9.3}  {:>6.3}",
            r.frequency, r.customers, r.predicted, r.actual
        );
    }
    let predicted: f64 = histories
        .iter()
        .map(|h| model.expected_purchases(*h, 39.0))
        .sum();
    let total: f64 = actual.iter().sum();
    eprintln!("total: predicted {predicted:.0}, actual {total:.0}");
    // The model tracks the holdout: in total, and rising with calibration frequency. Measured:
    // 1,653 predicted vs 1,882 actual purchase days (-12.1%), BG/NBD's known mild under-forecast
    // of this sample; a broken model or prediction is far outside 15%.
    assert!(
        ((predicted - total) / total).abs() < 0.15,
        "predicted {predicted} vs actual {total}"
    );
    assert!(
        table.windows(2).all(|w| w[1].predicted > w[0].predicted),
        "{table:?}"
    );
    assert!(
        table
            .windows(2)
            .filter(|w| w[1].actual > w[0].actual)
            .count()
            >= table.len() - 2,
        "{table:?}"
    );
}

#[test]
fn clv_matches_lifetimes_on_the_same_parameters() {
    // Reference: lifetimes 0.11.3, GammaGammaFitter.customer_lifetime_value(time=12,
    // discount_rate=0.01, freq="W") with BG/NBD (0.2426, 4.4135, 0.7929, 2.4258) and Gamma-Gamma
    // (6.25, 3.74, 15.44) set as parameters.
    let bg = BgNbd(BgNbdParams {
        r: 0.2426,
        alpha: 4.4135,
        a: 0.7929,
        b: 2.4258,
    });
    let gg = GammaGamma(GammaGammaParams {
        p: 6.25,
        q: 3.74,
        gamma: 15.44,
    });
    let cases = [
        (
            (2.0, 30.43, 38.86),
            25.0,
            26.83727034120735,
            39.4838048085255,
        ),
        ((0.0, 0.0, 30.0), 0.0, 35.21897810218978, 10.202351675208229),
        (
            (10.0, 35.0, 38.0),
            40.0,
            39.79920294297977,
            304.2898729558061,
        ),
        (
            (1.0, 5.0, 38.0),
            10.0,
            17.686318131256954,
            6.657591990080065,
        ),
    ];
    for ((x, t_x, t), mean, expected_value, expected_clv) in cases {
        let h = Frequency { x, t_x, t };
        let v = gg.expected_value(x, mean);
        assert!(
            close(v, expected_value, 1e-9),
            "expected value {v} vs {expected_value}"
        );
        let c = clv(&bg, &gg, h, mean, &ClvSettings::default());
        assert!(
            close(c, expected_clv, 1e-6),
            "CLV {c} vs lifetimes {expected_clv} for {h:?}"
        );
    }
    // Margin scales CLV; a higher discount rate lowers it.
    let h = Frequency {
        x: 2.0,
        t_x: 30.43,
        t: 38.86,
    };
    let base = clv(&bg, &gg, h, 25.0, &ClvSettings::default());
    assert!(close(
        clv(
            &bg,
            &gg,
            h,
            25.0,
            &ClvSettings {
                margin: 0.3,
                ..ClvSettings::default()
            }
        ),
        base * 0.3,
        1e-12
    ));
    assert!(
        clv(
            &bg,
            &gg,
            h,
            25.0,
            &ClvSettings {
                monthly_discount_rate: 0.05,
                ..ClvSettings::default()
            }
        ) < base
    );
}

#[test]
fn ln_hyp2f1_matches_high_precision_references() {
    // 260 cases computed with mpmath at 40 digits (tests/data/hyp2f1_reference.py): general
    // arguments and the shapes Pareto/NBD and BG/NBD produce, z from 0 to 1 - 1e-6.
    let text = include_str!("../data/hyp2f1_reference.csv");
    let (mut accurate, mut declined) = (0, 0);
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let v: Vec<f64> = f[1..].iter().map(|s| s.parse().unwrap()).collect();
        let (a, b, c, z) = (v[0], v[1], v[2], v[3]);
        if f[0] == "pareto" && (c - (a + 1.0)).abs() < 1e-12 {
            // The form Pareto/NBD evaluates, through its series-or-quadrature entry point: the
            // derivative along c = a + 1 is d/da + d/dc.
            let g = winback_scoring::ln_hyp2f1_a1_grad(a, b, z);
            let tol = |expected: f64, rel: f64| rel * expected.abs().max(1.0);
            assert!(
                (g.value - v[4]).abs() <= tol(v[4], 1e-10),
                "line {}: ln 2F1({a}, {b}; {c}; {z}) = {} vs {}",
                i + 1,
                g.value,
                v[4]
            );
            for (name, actual, expected) in
                [("a+c", g.d_a + g.d_c, v[5] + v[7]), ("b", g.d_b, v[6])]
            {
                assert!(
                    (actual - expected).abs() <= tol(expected, 1e-8),
                    "line {}: d/d{name} ln 2F1({a}, {b}; {c}; {z}) = {actual} vs {expected}",
                    i + 1
                );
            }
            accurate += 1;
            continue;
        }
        let g = winback_scoring::ln_hyp2f1_grad(a, b, c, z);
        if g.value.is_nan() {
            // Allowed only for general arguments so close to z = 1 that the series would need
            // more terms than the budget; never for the shapes the models use.
            assert!(
                f[0] == "general" && z >= 0.99999,
                "line {}: NaN for {line}",
                i + 1
            );
            declined += 1;
            continue;
        }
        let tol = |expected: f64, rel: f64| rel * expected.abs().max(1.0);
        assert!(
            (g.value - v[4]).abs() <= tol(v[4], 1e-12),
            "line {}: ln 2F1({a}, {b}; {c}; {z}) = {} vs {}",
            i + 1,
            g.value,
            v[4]
        );
        for (name, actual, expected) in [("a", g.d_a, v[5]), ("b", g.d_b, v[6]), ("c", g.d_c, v[7])]
        {
            assert!(
                (actual - expected).abs() <= tol(expected, 1e-9),
                "line {}: d/d{name} ln 2F1({a}, {b}; {c}; {z}) = {actual} vs {expected}",
                i + 1
            );
        }
        accurate += 1;
    }
    eprintln!("{accurate} cases accurate, {declined} declined (NaN)");
    // Each series is bounded (2 million terms), so general arguments at 1 − z ≤ 10⁻⁵ are
    // declined; the Pareto/NBD shapes there are integrated instead and all agree.
    assert!(accurate >= 245, "{accurate} accurate, {declined} declined");
}

/// lifetimes 0.11.3 on the same calibration data (tests/data/lifetimes_cdnow.py; its output is
/// tests/data/lifetimes_cdnow.txt): fitted parameters, then per customer (x, t_x, T) the
/// P(alive) and expected purchases in 39 weeks, computed from those parameters.
const PREDICTION_CASES: [(f64, f64, f64); 5] = [
    (2.0, 30.43, 38.86),
    (0.0, 0.0, 38.86),
    (10.0, 35.0, 38.0),
    (1.0, 5.0, 38.0),
    (30.0, 38.5, 38.86),
];

/// Checks P(alive) and 39-week expected purchases against lifetimes' figures per case.
fn assert_predictions(
    p_alive: impl Fn(Frequency) -> f64,
    expected_purchases: impl Fn(Frequency) -> f64,
    expected: [(f64, f64); 5],
) {
    for ((x, t_x, t), (alive, purchases)) in PREDICTION_CASES.into_iter().zip(expected) {
        let h = Frequency { x, t_x, t };
        assert!(close(p_alive(h), alive, 1e-9), "{h:?}: {}", p_alive(h));
        let e = expected_purchases(h);
        assert!(close(e, purchases, 1e-9), "{h:?}: {e}");
    }
}

#[test]
fn pareto_nbd_reproduces_the_published_cdnow_fit() {
    let (histories, _) = cdnow_calibration();
    let fit = ParetoNbd::fit(&group(&histories)).expect("converges");
    let p = fit.params;
    for (name, actual, expected) in [
        ("r", p.r, 0.5533),
        ("alpha", p.alpha, 10.578),
        ("s", p.s, 0.6062),
        ("beta", p.beta, 11.669),
    ] {
        assert!(
            close(actual, expected, 1e-3),
            "{name}: {actual} vs published {expected}"
        );
    }
    assert!(
        (fit.log_likelihood - -9594.97).abs() < 0.01,
        "log-likelihood {}",
        fit.log_likelihood
    );
    assert!(fit.std_errors.iter().all(|s| s.is_finite() && *s > 0.0));
    // lifetimes reaches the same log-likelihood to 1e-6 (-9594.976179 both); the likelihood is
    // so flat in β that the two optimisers stop 1.3e-4 apart there (11.66874 vs 11.66721).
    let lifetimes = ParetoNbd(ParetoNbdParams {
        r: 0.553287590871214,
        alpha: 10.57776721091574,
        s: 0.6062073743477501,
        beta: 11.66721468068255,
    });
    let grouped = group(&histories);
    assert!(fit.log_likelihood >= lifetimes.log_likelihood(&grouped) - 1e-6);
    for (actual, expected) in [
        (p.r, 0.553287590871214),
        (p.alpha, 10.57776721091574),
        (p.s, 0.6062073743477501),
        (p.beta, 11.66721468068255),
    ] {
        assert!(close(actual, expected, 3e-4), "{actual} vs {expected}");
    }
}

#[test]
fn pareto_nbd_predictions_match_lifetimes() {
    let model = ParetoNbd(ParetoNbdParams {
        r: 0.553287590871214,
        alpha: 10.57776721091574,
        s: 0.6062073743477501,
        beta: 11.66721468068255,
    });
    let expected = [
        (0.8691180726273817, 1.4551138747613346),
        (0.29508784623640183, 0.10705839272772694),
        (0.9478544255529578, 6.658072448563058),
        (0.26307319153623077, 0.2719866370492525),
        (0.9951559640331179, 19.937356039509705),
    ];
    assert_predictions(
        |h| model.p_alive(h),
        |h| model.expected_purchases(h, 39.0),
        expected,
    );
    let new = model.expected_purchases_new(39.0);
    assert!(close(new, 1.2134003936212268, 1e-9), "{new}");
}

#[test]
fn mbg_nbd_fits_cdnow_like_lifetimes_and_predicts_alike() {
    let (histories, _) = cdnow_calibration();
    let fit = MbgNbd::fit(&group(&histories)).expect("converges");
    let p = fit.params;
    for (actual, expected) in [
        (p.r, 0.524842903149598),
        (p.alpha, 6.183081764399279),
        (p.a, 0.8913595172711999),
        (p.b, 1.6140029311982655),
    ] {
        assert!(close(actual, expected, 1e-3), "{p:?}");
    }
    let model = MbgNbd(BgNbdParams {
        r: 0.524842903149598,
        alpha: 6.183081764399279,
        a: 0.8913595172711999,
        b: 1.6140029311982655,
    });
    let expected = [
        (0.706125699315964, 1.2626692202500718),
        (0.3897151860726884, 0.153954276933175),
        (0.8614243412822619, 6.15552538982152),
        (0.2651925569540389, 0.29793218441575875),
        (0.9652317044439551, 19.27988831843869),
    ];
    assert_predictions(
        |h| model.p_alive(h),
        |h| model.expected_purchases(h, 39.0),
        expected,
    );
    let new = model.expected_purchases_new(39.0);
    assert!(close(new, 1.1822798470838078, 1e-9), "{new}");
}

mod fits_end {
    //! Every fit ends: over random shops (few or many buyers, short or long histories, bulk
    //! buyers, a rate scale far from the other), each model either fits or says why, within a
    //! fixed number of likelihood evaluations. What a shop's export once did, a 20-minute
    //! Pareto/NBD fit in one series, cannot come back: every evaluation is bounded
    //! (`ln_hyp2f1_a1_grad`), and so is their number.
    use proptest::prelude::*;
    use winback_scoring::{
        BgNbd, FitError, FitLimits, Frequency, MbgNbd, ParetoNbd, group, with_limits,
    };

    /// A budget well below the default: the fits converge or fail long before it.
    const BUDGET: u64 = 4_000;

    fn shop() -> impl Strategy<Value = Vec<Frequency>> {
        proptest::collection::vec(
            (
                0u32..40,
                0.0f64..1.0,
                1.0f64..120.0,
                proptest::bool::weighted(0.15),
            ),
            20..300,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(x, share, t, bulk)| {
                    // Bulk buyers: many purchases in a short, early window.
                    let x = if bulk {
                        f64::from(x) * 5.0
                    } else {
                        f64::from(x % 6)
                    };
                    let t_x = if x == 0.0 { 0.0 } else { (share * t).max(0.1) };
                    Frequency { x, t_x, t }
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn every_fit_ends_within_its_budget(histories in shop()) {
            let data = group(&histories);
            let limits = FitLimits { max_evaluations: BUDGET, ..FitLimits::default() };
            let results = with_limits(limits, || {
                [
                    BgNbd::fit(&data).map(|f| f.evaluations),
                    MbgNbd::fit(&data).map(|f| f.evaluations),
                    ParetoNbd::fit(&data).map(|f| f.evaluations),
                ]
            });
            for (model, r) in ["BG/NBD", "MBG/NBD", "Pareto/NBD"].iter().zip(results) {
                match r {
                    Ok(n) => prop_assert!(n <= BUDGET, "{model}: {n} evaluations"),
                    Err(FitError::Stopped { .. }) => {
                        prop_assert!(false, "{model} needed more than {BUDGET} evaluations")
                    }
                    Err(_) => {} // refused with a reason: it ended
                }
            }
        }
    }
}

/// Predicting once per distinct history (and, for BG/NBD and MBG/NBD, the costly part once per
/// `(x, T)`) gives every CDNOW customer exactly what predicting them one by one gives, for each
/// model, and computes far fewer predictions than customers.
#[test]
fn predictions_once_per_history_equal_predictions_per_customer() {
    use winback_scoring::{Predictor, PurchaseModel, clv_at_value};
    let (data, _) = cdnow_calibration();
    let settings = ClvSettings::default();
    let bg = BgNbd(BgNbdParams {
        r: 0.2426,
        alpha: 4.4135,
        a: 0.7929,
        b: 2.4258,
    });
    let pareto = ParetoNbd(ParetoNbdParams {
        r: 0.5533,
        alpha: 10.5776,
        s: 0.6061,
        beta: 11.6689,
    });
    fn check(model: &impl PurchaseModel, data: &[Frequency], settings: ClvSettings) -> usize {
        let mut predictor = Predictor::new(model, 13.0, settings);
        for h in data {
            let p = predictor.predict(*h);
            assert_eq!(p.p_alive, model.p_alive(*h), "{h:?}");
            assert_eq!(
                p.expected_purchases,
                model.expected_purchases(*h, 13.0),
                "{h:?}"
            );
            assert_eq!(
                p.clv(35.0, &settings),
                clv_at_value(model, 35.0, *h, &settings)
            );
        }
        predictor.distinct()
    }
    let mbg = MbgNbd(BgNbdParams {
        r: 0.2426,
        alpha: 4.4135,
        a: 0.7929,
        b: 2.4258,
    });
    let distinct = check(&bg, &data, settings);
    assert_eq!(distinct, check(&mbg, &data, settings));
    assert_eq!(distinct, check(&pareto, &data, settings));
    assert_eq!(distinct, group(&data).len());
    assert!(distinct < data.len() / 2, "{distinct} of {}", data.len());
}
