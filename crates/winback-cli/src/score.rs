//! `winback score`: the scoring use case is `winback_app::scoring`; this prints it.

pub use winback_app::scoring::*;

/// Prints the stage funnel, the models and the customers most worth winning back.
pub fn print(summary: &Summary, models: &Models) {
    use crate::report::{money, n};
    let total = summary.profiles.max(1);
    println!("Lifecycle stages of {} people:", n(summary.profiles as u64));
    for (stage, c) in &summary.stages {
        let c = *c;
        let bar = "█".repeat((c * 40).div_ceil(total).min(40));
        println!(
            "  {:<20} {:>8} {:>5.1}%  {bar}",
            stage.as_str().replace('_', " "),
            n(c as u64),
            100.0 * c as f64 / total as f64
        );
    }
    let mut inactive: Vec<(&str, usize)> = summary
        .inactive_by
        .iter()
        .map(|(name, c)| (name.as_str(), *c))
        .collect();
    inactive.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    if !inactive.is_empty() {
        println!("Inactive by definition:");
        for (name, c) in inactive {
            println!(
                "  {:<28} {:>8} {:>5.1}%",
                name,
                n(c as u64),
                100.0 * c as f64 / total as f64
            );
        }
    }
    let line: Vec<String> = summary
        .segments
        .iter()
        .filter(|(_, c)| *c > 0)
        .map(|(s, c)| format!("{} {}", s.as_str().replace('_', " "), n(*c as u64)))
        .collect();
    println!("RFM segments: {}", line.join(", "));
    match (&models.purchase, &models.purchase_error) {
        (Some(f), _) => {
            let names = f.kind.param_names();
            let params: Vec<String> = names
                .iter()
                .zip(&f.params)
                .map(|(n, v)| format!("{n} {v:.4}"))
                .collect();
            println!(
                "Purchase model ({}, weeks): {}; log-likelihood {:.1}",
                f.kind.label(),
                params.join(", "),
                f.log_likelihood
            );
        }
        (None, Some(e)) => println!(
            "Purchase model not fitted ({e}); stages follow the rules without P(alive), and expected purchases and CLV are left out"
        ),
        (None, None) => {}
    }
    match (&models.gamma_gamma, &models.gamma_gamma_error) {
        (Some(g), _) => println!(
            "Spend model (Gamma-Gamma, minor units): p {:.3}, q {:.3}, gamma {:.1}",
            g.p, g.q, g.gamma
        ),
        (None, Some(e)) => println!(
            "Spend model not fitted ({e}); predicted values use each customer's mean order value"
        ),
        _ => {}
    }
    for (cat, p) in &models.interval_priors {
        if let Some(d) = (p.shape > 1.0).then(|| p.rate / (p.shape - 1.0)) {
            let label = if cat == "*" {
                "all categories"
            } else {
                cat.as_str()
            };
            println!("  usual reorder interval, {label}: {d:.0} days");
        }
    }
    println!(
        "The {} customers most worth winning back (expected incremental margin of an offer):",
        summary.top.len()
    );
    for s in &summary.top {
        let cur = s.currency.as_deref().unwrap_or("EUR");
        let p = s.priority.as_ref().map_or(0.0, |p| p.priority_minor);
        println!(
            "  {:<12} {:<22} {:<15} priority {:>9}  P(alive) {:.2}  CLV {:>10}  {}",
            s.external_id,
            s.name.as_deref().unwrap_or("-"),
            s.stage.as_str().replace('_', " "),
            money(p.round() as i64, cur),
            s.p_alive.unwrap_or(0.0),
            money(s.clv_minor.unwrap_or(0.0).round() as i64, cur),
            s.reason
        );
        if let Some(pr) = &s.priority {
            println!("      why: {}", pr.reasons.join("; "));
        }
    }
}
