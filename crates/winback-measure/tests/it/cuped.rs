//! Variance reduction with each contact's behaviour before entry (issue 22, item 3). Each
//! simulated contact has an activity level λ ~ Gamma(0.8, 1); in the year before entry they
//! ordered Poisson(3λ) times, each order a lognormal amount (median 50.00, σ 0.8); in the
//! 30-day window they buy with chance 1 − e^(−0.08λ) (about 6%), 30% more often when messaged,
//! and spend a lognormal amount. The same runs are read with and without the covariates:
//! CUPED must keep the coverage (rate 93–97%, revenue and margin at least 93%) and narrow the
//! intervals; by how much is printed and recorded in BENCHMARKS.md.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Bernoulli, Distribution, Gamma, LogNormal, Poisson};
use winback_measure::{Arm, Economics, Interval, Readout};

const RUNS: u64 = 1_000;
const SHAPE: f64 = 0.8;
const WINDOW_RATE: f64 = 0.08;
const LIFT: f64 = 1.3;

fn base() -> f64 {
    // E[1 − e^(−cλ)] for λ ~ Gamma(k, 1): 1 − (1 + c)^(−k).
    1.0 - (1.0 + WINDOW_RATE).powf(-SHAPE)
}

fn mean_spend() -> f64 {
    (5_000f64.ln() + 0.32).exp()
}

struct Run {
    with: Readout,
    without: Readout,
}

fn run(holdout: u64, ratio: u64, seed: u64) -> Run {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let activity = Gamma::new(SHAPE, 1.0).unwrap();
    let spend = LogNormal::new(5_000f64.ln(), 0.8).unwrap();
    let (mut t, mut h) = (Arm::default(), Arm::default());
    let (mut t0, mut h0) = (Arm::default(), Arm::default());
    for i in 0..holdout * (ratio + 1) {
        let messaged = i % (ratio + 1) != 0;
        let lambda: f64 = activity.sample(&mut rng);
        let before = Poisson::new(3.0 * lambda + 1e-9).unwrap().sample(&mut rng) as u64;
        let spent: f64 = (0..before).map(|_| spend.sample(&mut rng).round()).sum();
        let p = 1.0 - (-WINDOW_RATE * lambda).exp();
        let p = if messaged { (p * LIFT).min(1.0) } else { p };
        let bought = Bernoulli::new(p).unwrap().sample(&mut rng);
        let revenue = if bought {
            spend.sample(&mut rng).round() as i64
        } else {
            0
        };
        let (a, plain) = if messaged {
            (&mut t, &mut t0)
        } else {
            (&mut h, &mut h0)
        };
        a.add_with_pre(bought, revenue, (before as f64, spent));
        plain.add(bought, revenue);
    }
    let economics = Economics {
        margin: 0.4,
        ..Economics::default()
    };
    Run {
        with: Readout::new(t, h, economics),
        without: Readout::new(t0, h0, economics),
    }
}

fn width(i: &Interval) -> f64 {
    i.high - i.low
}

#[test]
fn cuped_keeps_coverage_and_narrows_the_intervals() {
    let truth_rate = (LIFT - 1.0) * base();
    let truth_revenue = truth_rate * mean_spend();
    println!(
        "| held out | split | rate covered, with / without | revenue covered, with / without | rate interval width kept | revenue interval width kept |"
    );
    println!("|---:|---|---|---|---:|---:|");
    let mut failures = Vec::new();
    for (k, (holdout, ratio)) in [(1_000u64, 9u64), (1_000, 1), (3_000, 1)]
        .into_iter()
        .enumerate()
    {
        let runs: Vec<Run> = (0..RUNS)
            .map(|r| run(holdout, ratio, 1_000_000 * k as u64 + r))
            .collect();
        let covered = |f: &dyn Fn(&Readout) -> Option<Interval>, truth: f64| {
            let shown: Vec<Interval> = runs.iter().filter_map(|r| f(&r.with)).collect();
            let plain: Vec<Interval> = runs.iter().filter_map(|r| f(&r.without)).collect();
            let share = |v: &[Interval]| {
                100.0 * v.iter().filter(|i| i.contains(truth)).count() as f64
                    / v.len().max(1) as f64
            };
            let kept = shown
                .iter()
                .zip(&plain)
                .map(|(a, b)| width(a) / width(b))
                .sum::<f64>()
                / shown.len().max(1) as f64;
            (share(&shown), share(&plain), kept, shown.len())
        };
        let rate = covered(&|r| r.rate_difference, truth_rate);
        let revenue = covered(&|r| r.revenue_per_contact, truth_revenue);
        println!(
            "| {holdout} | {ratio}:1 | {:.1}% / {:.1}% | {:.1}% / {:.1}% | {:.3} | {:.3} |",
            rate.0, rate.1, revenue.0, revenue.1, rate.2, revenue.2
        );
        let cell = format!("{holdout} {ratio}:1");
        if rate.3 < RUNS as usize || revenue.3 < RUNS as usize {
            failures.push(format!("{cell}: an interval missing"));
        }
        if !(93.0..=97.0).contains(&rate.0) {
            failures.push(format!("{cell}: rate covers {:.1}%", rate.0));
        }
        if revenue.0 < 93.0 {
            failures.push(format!("{cell}: revenue covers {:.1}%", revenue.0));
        }
        if rate.2 >= 1.0 || revenue.2 >= 1.0 {
            failures.push(format!(
                "{cell}: not narrower ({:.3}, {:.3})",
                rate.2, revenue.2
            ));
        }
        // A readout says how much variance the adjustment kept; without covariates there is
        // none, and with them it is left out only where it would not narrow anything.
        let adjusted = runs
            .iter()
            .filter(|r| r.with.variance_kept.is_some())
            .count();
        if runs.iter().any(|r| r.without.variance_kept.is_some()) || adjusted * 10 < runs.len() * 9
        {
            failures.push(format!("{cell}: adjusted in {adjusted} runs"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
