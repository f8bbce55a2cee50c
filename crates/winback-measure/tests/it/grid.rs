//! The intervals at every size (issue 22, item 1): a grid of holdout sizes (10 to 10,000),
//! splits (9:1 and 1:1), base rates (0.5%, 2%, 10%) and order values (lognormal with σ 0.5 and
//! 1.5, and CDNOW's real order amounts drawn with replacement), 2,000 simulated campaigns per
//! cell with the messaged group buying 25% more often. Every readout goes through
//! `Readout::new`, as the report's do.
//!
//! In every cell where an interval is shown in at least 500 of the 2,000 runs, the revenue and
//! margin intervals cover the truth in at least 93% of them; the rate difference's interval
//! does not depend on order values, so its coverage is asserted over the three order-value
//! cells of a size, split and base rate together (6,000 runs, shown in at least 1,500): 93–97%.
//! Where an interval is shown less often its coverage is printed but not asserted (its own
//! standard error passes a point). A run without an interval says why.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution, LogNormal};
use winback_measure::{Arm, Economics, Readout};

const RUNS: u64 = 2_000;
const ASSERTED: u64 = 500;
const LIFT: f64 = 1.25;
const MARGIN: f64 = 0.4;
/// Each messaged contact's messages cost 0.5 cent.
const MESSAGE_COST_MINOR_PER_CONTACT: f64 = 0.5;

#[derive(Clone)]
enum Values {
    Lognormal(f64),
    Cdnow(std::sync::Arc<Vec<i64>>),
}

impl Values {
    fn mean(&self) -> f64 {
        match self {
            // Median 50.00.
            Values::Lognormal(s) => (5_000f64.ln() + s * s / 2.0).exp(),
            Values::Cdnow(v) => v.iter().sum::<i64>() as f64 / v.len() as f64,
        }
    }

    fn name(&self) -> String {
        match self {
            Values::Lognormal(s) => format!("lognormal σ {s}"),
            Values::Cdnow(_) => "CDNOW orders".into(),
        }
    }
}

fn cdnow() -> Vec<i64> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/cdnow/CDNOW_master.txt"
    ))
    .expect("the CDNOW data is in the checkout");
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<f64>().ok())
        .map(|v| (v * 100.0).round() as i64)
        .filter(|v| *v > 0)
        .collect()
}

/// A group of `n` contacts buying with chance `p`, each buyer spending one draw.
fn group(n: u64, p: f64, values: &Values, rng: &mut ChaCha8Rng) -> Arm {
    let buyers = Binomial::new(n, p).unwrap().sample(rng);
    let mut a = Arm::default();
    let lognormal = match values {
        Values::Lognormal(s) => Some(LogNormal::new(5_000f64.ln(), *s).unwrap()),
        Values::Cdnow(_) => None,
    };
    for _ in 0..buyers {
        let v = match (values, &lognormal) {
            (_, Some(d)) => d.sample(rng).round().max(1.0) as i64,
            (Values::Cdnow(v), None) => v[rng.gen_range(0..v.len())],
            _ => unreachable!("lognormal values have a distribution"),
        };
        a.add(true, v);
    }
    // Those who bought nothing: counted without a draw each.
    a.contacts = n;
    a
}

#[derive(Debug, Default)]
struct Cell {
    rate: (u64, u64),
    revenue: (u64, u64),
    margin: (u64, u64),
    said_why: bool,
}

fn share((covered, shown): (u64, u64)) -> f64 {
    100.0 * covered as f64 / shown.max(1) as f64
}

/// A coverage for the table: `–` where no interval was shown.
fn cov(slot: (u64, u64)) -> String {
    if slot.1 == 0 {
        "–".into()
    } else {
        format!("{:.1}%", share(slot))
    }
}

fn run_cell(holdout: u64, ratio: u64, base: f64, values: &Values, seed: u64) -> Cell {
    let treated_n = holdout * ratio;
    let p1 = base * LIFT;
    let truth_rate = p1 - base;
    let truth_revenue = truth_rate * values.mean();
    let cost = (MESSAGE_COST_MINOR_PER_CONTACT * treated_n as f64).round() as i64;
    let truth_margin = MARGIN * truth_revenue * treated_n as f64 - cost as f64;
    let mut cell = Cell {
        said_why: true,
        ..Cell::default()
    };
    for r in 0..RUNS {
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 1_000_003 + r);
        let t = group(treated_n, p1, values, &mut rng);
        let h = group(holdout, base, values, &mut rng);
        let readout = Readout::new(
            t,
            h,
            Economics {
                margin: MARGIN,
                message_cost_minor: cost,
                messages: treated_n,
                ..Economics::default()
            },
        );
        let tally = |slot: &mut (u64, u64), i: Option<winback_measure::Interval>, truth| {
            if let Some(i) = i {
                slot.1 += 1;
                slot.0 += u64::from(i.contains(truth));
            }
        };
        tally(&mut cell.rate, readout.rate_difference, truth_rate);
        tally(
            &mut cell.revenue,
            readout.revenue_per_contact,
            truth_revenue,
        );
        tally(
            &mut cell.margin,
            readout.incremental_margin_minor,
            truth_margin,
        );
        if readout.rate_difference.is_none() {
            cell.said_why &= readout
                .warnings
                .iter()
                .any(|w| w.starts_with("too few buyers to tell"));
        }
    }
    cell
}

#[test]
fn intervals_are_honest_in_every_cell_of_the_grid() {
    let cdnow = std::sync::Arc::new(cdnow());
    let spreads = [
        Values::Lognormal(0.5),
        Values::Lognormal(1.5),
        Values::Cdnow(cdnow),
    ];
    let mut failures = Vec::new();
    let mut seed = 0;
    // The table recorded in BENCHMARKS.md.
    println!(
        "| held out | split | base rate | order values | rate: shown, covered | revenue: shown, covered | margin: covered |"
    );
    println!("|---:|---|---:|---|---|---|---|");
    let mut pooled_rates = Vec::new();
    for holdout in [10u64, 30, 100, 300, 1_000, 10_000] {
        for ratio in [9u64, 1] {
            for base in [0.005, 0.02, 0.10] {
                let mut rate = (0, 0);
                for values in &spreads {
                    seed += 1;
                    let c = run_cell(holdout, ratio, base, values, seed);
                    let pct = |n: u64| 100.0 * n as f64 / RUNS as f64;
                    println!(
                        "| {holdout} | {ratio}:1 | {:.1}% | {} | {:.0}%, {} | {:.0}%, {} | {} |",
                        100.0 * base,
                        values.name(),
                        pct(c.rate.1),
                        cov(c.rate),
                        pct(c.revenue.1),
                        cov(c.revenue),
                        cov(c.margin),
                    );
                    let name = format!("{holdout} {ratio}:1 {base} {}", values.name());
                    rate.0 += c.rate.0;
                    rate.1 += c.rate.1;
                    if c.revenue.1 >= ASSERTED && share(c.revenue) < 93.0 {
                        failures.push(format!("{name}: revenue covers {:.1}%", share(c.revenue)));
                    }
                    if c.margin.1 >= ASSERTED && share(c.margin) < 93.0 {
                        failures.push(format!("{name}: margin covers {:.1}%", share(c.margin)));
                    }
                    if !c.said_why {
                        failures.push(format!("{name}: a run without an interval did not say why"));
                    }
                }
                let shown = 100.0 * rate.1 as f64 / (3 * RUNS) as f64;
                pooled_rates.push(format!(
                    "| {holdout} | {ratio}:1 | {:.1}% | {shown:.0}% | {} |",
                    100.0 * base,
                    cov(rate)
                ));
                if rate.1 >= 3 * ASSERTED && !(93.0..=97.0).contains(&share(rate)) {
                    failures.push(format!(
                        "{holdout} {ratio}:1 {base}: rate covers {:.1}%",
                        share(rate)
                    ));
                }
            }
        }
    }
    println!("\n| held out | split | base rate | rate: shown | rate: covered |");
    println!("|---:|---|---:|---:|---:|");
    for line in pooled_rates {
        println!("{line}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
