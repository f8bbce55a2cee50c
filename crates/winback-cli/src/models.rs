//! `winback models`: fits every purchase model (BG/NBD, MBG/NBD, Pareto/NBD) and the spend model
//! on the shop, persists the fits with their data window and fit time, and reports the
//! parameters with standard errors, log-likelihoods, convergence, and the holdout check of the
//! literature: fitted on all but the last N days, predicted against the purchases actually made
//! in them.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Subcommand;
use winback_domain::{Clock, FactSet, Timestamp};
use winback_scoring::{
    Fitted, Frequency, GammaGamma, HoldoutRow, ModelKind, SpendRecord, group, holdout_table,
};
use winback_store::{FactScope, ModelFitRow, Store};

use crate::config::Config;

/// `winback models …`
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Fit every model on the shop's histories and save the fits.
    Fit {
        /// Print the parameter table and the holdout check.
        #[arg(long)]
        report: bool,
        /// Days at the end of the history held out to check predictions.
        #[arg(long, default_value_t = 180)]
        holdout_days: i64,
        /// End of the data (a date, `2024-06-30`, or an RFC 3339 time); orders after it are
        /// ignored. Default: now.
        #[arg(long)]
        as_of: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The latest saved fit of each model.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Histories (in weeks) of every buyer as of `cut`, counting purchase days up to it, and each
/// buyer's purchase days after it.
pub fn split(facts: &FactSet, cut: Timestamp) -> (Vec<Frequency>, Vec<f64>, Vec<SpendRecord>) {
    let cut_day = cut.day_number();
    let (mut histories, mut after, mut spend) = (Vec::new(), Vec::new(), Vec::new());
    for p in &facts.profiles {
        let mut days: Vec<(i64, i64)> = Vec::new();
        let mut later: Vec<i64> = Vec::new();
        for o in &p.orders {
            let day = o.at.day_number();
            if day <= cut_day {
                match days.last_mut() {
                    Some(d) if d.0 == day => d.1 += o.total_minor,
                    _ => days.push((day, o.total_minor)),
                }
            } else if later.last() != Some(&day) {
                later.push(day);
            }
        }
        let (Some(first), Some(last)) = (days.first(), days.last()) else {
            continue;
        };
        let x = (days.len() - 1) as f64;
        histories.push(Frequency {
            x,
            t_x: (last.0 - first.0) as f64 / 7.0,
            t: (cut_day - first.0) as f64 / 7.0,
        });
        after.push(later.len() as f64);
        if x > 0.0 {
            let mean = days[1..].iter().map(|d| d.1 as f64).sum::<f64>() / x;
            if mean > 0.0 {
                spend.push(SpendRecord {
                    x,
                    mean_value: mean,
                });
            }
        }
    }
    (histories, after, spend)
}

/// One model's line of the report.
#[derive(Debug, serde::Serialize)]
struct ModelReport {
    model: &'static str,
    fit: Option<Fitted>,
    error: Option<String>,
    /// The fit on the calibration period (all but the holdout days).
    calibration_fit: Option<Fitted>,
    seconds: f64,
    holdout: Vec<HoldoutRow>,
    holdout_predicted: f64,
    holdout_actual: f64,
}

/// Runs `winback models`.
pub async fn run(config: &Config, clock: &dyn Clock, cmd: ModelsCommand) -> Result<ExitCode> {
    let store = crate::open_store(config).await?;
    let code = match cmd {
        ModelsCommand::Show { json } => {
            let fits = store.latest_model_fits().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&fits)?);
            } else {
                print_saved(&fits);
            }
            ExitCode::SUCCESS
        }
        ModelsCommand::Fit {
            report,
            holdout_days,
            as_of,
            json,
        } => {
            anyhow::ensure!(holdout_days > 0, "--holdout-days must be positive");
            let as_of_given = as_of.is_some();
            let now = match as_of {
                Some(v) => parse_as_of(&v)?,
                None => clock.now(),
            };
            let facts = store.profile_facts(FactScope::All).await?;
            let first = facts
                .profiles
                .iter()
                .filter_map(|p| p.orders.first().map(|o| o.at))
                .min();
            let last = facts
                .profiles
                .iter()
                .filter_map(|p| p.orders.last().map(|o| o.at))
                .max();
            // A cut after the data would fit on ages that never happened.
            if let (Some(last), true) = (last, as_of_given) {
                anyhow::ensure!(
                    now <= last.plus_seconds(86_400),
                    "--as-of {} is after the last order in the store ({}); choose a date within the data, or leave --as-of out to fit on everything up to now",
                    now.date_local(),
                    last.date_local()
                );
            }
            let (all, _, spend) = split(&facts, now);
            // The calibration cut is a calendar day in the shop's zone, `holdout_days` before
            // the as-of day (noon, so no daylight-saving change moves it to another day).
            let cut = now
                .date_local()
                .checked_sub(jiff::Span::new().days(holdout_days))
                .ok()
                .and_then(Timestamp::local_midnight)
                .map_or(now.plus_seconds(-holdout_days * 86_400), |t| {
                    t.plus_seconds(12 * 3600)
                });
            let (calibration, actual, _) = split(&facts, cut);
            let horizon = holdout_days as f64 / 7.0;
            let mut reports = Vec::new();
            let mut failed = false;
            // Grouped once for all three models.
            let (all_groups, calibration_groups) = (group(&all), group(&calibration));
            let limits = fit_limits(config, json);
            for kind in ModelKind::ALL {
                let started = Instant::now();
                let fit = winback_scoring::with_limits(limits.clone(), || kind.fit(&all_groups))
                    .and_then(refuse_degenerate);
                let seconds = started.elapsed().as_secs_f64();
                let cal_fit =
                    winback_scoring::with_limits(limits.clone(), || kind.fit(&calibration_groups))
                        .ok();
                let (holdout, predicted, actual_total) = match &cal_fit {
                    Some(cal) => {
                        let m = cal.model();
                        let predicted: f64 = calibration
                            .iter()
                            .map(|h| {
                                winback_scoring::PurchaseModel::expected_purchases(&m, *h, horizon)
                            })
                            .sum();
                        (
                            holdout_table(&m, &calibration, &actual, horizon, 7),
                            predicted,
                            actual.iter().sum(),
                        )
                    }
                    None => (Vec::new(), f64::NAN, actual.iter().sum()),
                };
                match fit {
                    Ok(f) => {
                        store
                            .save_model_fit(&crate::score::fit_row(&f, now, first, seconds))
                            .await?;
                        reports.push(ModelReport {
                            model: kind.label(),
                            fit: Some(f),
                            error: None,
                            calibration_fit: cal_fit,
                            seconds,
                            holdout,
                            holdout_predicted: predicted,
                            holdout_actual: actual_total,
                        });
                    }
                    Err(e) => {
                        failed = true;
                        reports.push(ModelReport {
                            model: kind.label(),
                            fit: None,
                            error: Some(e.to_string()),
                            calibration_fit: cal_fit,
                            seconds,
                            holdout,
                            holdout_predicted: predicted,
                            holdout_actual: actual_total,
                        });
                    }
                }
            }
            let gg = GammaGamma::fit(&spend);
            if let Ok(f) = &gg {
                store
                    .save_model_fit(&ModelFitRow {
                        model: "gamma_gamma".into(),
                        fitted_at: now,
                        window_start: first,
                        window_end: now,
                        customers: f.customers as i64,
                        params: serde_json::json!({"p": f.params.p, "q": f.params.q, "gamma": f.params.gamma}),
                        std_errors: serde_json::json!({"p": f.std_errors[0], "q": f.std_errors[1], "gamma": f.std_errors[2]}),
                        log_likelihood: Some(f.log_likelihood),
                        iterations: f.iterations as i64,
                        seconds: 0.0,
                    })
                    .await?;
            }
            if json {
                let gg = match &gg {
                    Ok(f) => {
                        serde_json::json!({"params": f.params, "std_errors": f.std_errors, "log_likelihood": f.log_likelihood})
                    }
                    Err(e) => serde_json::json!({"error": e.to_string()}),
                };
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "customers": all.len(),
                        "holdout_days": holdout_days,
                        "models": reports,
                        "gamma_gamma": gg,
                    }))?
                );
            } else {
                print_fits(&reports, all.len(), &gg);
                if report {
                    print_holdout(&reports, holdout_days, cut);
                }
            }
            if failed {
                ExitCode::from(4)
            } else {
                ExitCode::SUCCESS
            }
        }
    };
    store.close().await;
    Ok(code)
}

/// `--as-of`: a date (midnight UTC) or an RFC 3339 time.
/// The limits every fit of `models fit` and `score` runs under: the evaluation budget, the
/// configured time limit, and on a terminal a progress line per model.
pub fn fit_limits(config: &Config, quiet: bool) -> winback_scoring::FitLimits {
    use std::io::IsTerminal;
    let progress: Option<winback_scoring::Progress> = if !quiet && std::io::stderr().is_terminal() {
        Some(std::sync::Arc::new(|model, n, ll| {
            eprint!("\r  fitting {model}: {n} likelihood evaluations, log-likelihood {ll:.2}   ");
        }))
    } else {
        None
    };
    winback_scoring::FitLimits {
        max_evaluations: winback_scoring::MAX_EVALUATIONS,
        time_limit: Some(std::time::Duration::from_secs(
            config.scoring.fit_time_limit_seconds.max(1),
        )),
        progress,
    }
}

/// A fit whose parameters are absurd or whose standard errors are not numbers describes no
/// population (30 buyers at a cut, say): refused, so it never replaces a good saved fit.
fn refuse_degenerate(
    fit: winback_scoring::Fitted,
) -> Result<winback_scoring::Fitted, winback_scoring::FitError> {
    let (params, errors) = (&fit.params, &fit.std_errors);
    let absurd = params
        .iter()
        .any(|p| !p.is_finite() || *p > 1e4 || *p < 1e-6);
    let unknown = errors.iter().any(|e| !e.is_finite());
    if absurd || unknown {
        return Err(winback_scoring::FitError::Invalid(format!(
            "the fit is degenerate (parameters {params:.4?}, standard errors {errors:.3?}) and was not saved; the saved fit stays. Fit on more customers (a later --as-of, or all the data)"
        )));
    }
    Ok(fit)
}

/// `--as-of`: a time, or a date meaning the end of that calendar day in the shop's zone (its
/// orders count), so the same date cuts the same days whatever the zone.
fn parse_as_of(v: &str) -> Result<Timestamp> {
    if let Ok(t) = v.parse::<jiff::Timestamp>() {
        return Ok(Timestamp::new(t));
    }
    let date: jiff::civil::Date = v
        .parse()
        .map_err(|e| anyhow::anyhow!("--as-of: `{v}` is not a date or time: {e}"))?;
    Timestamp::local_midnight(date)
        .map(|t| t.plus_seconds(12 * 3600))
        .ok_or_else(|| anyhow::anyhow!("--as-of: `{v}` is out of range"))
}

fn print_fits(
    reports: &[ModelReport],
    customers: usize,
    gg: &Result<winback_scoring::Fit<winback_scoring::GammaGammaParams>, winback_scoring::FitError>,
) {
    println!(
        "Purchase models on {} buyers (time in weeks, repeat purchases per distinct day):",
        crate::report::n(customers as u64)
    );
    println!(
        "  {:<11} {:<6} {:>12} {:>10}   {:>14} {:>6} {:>9} {:>8}",
        "model", "param", "estimate", "std err", "log-likelihood", "iters", "gradient", "seconds"
    );
    for r in reports {
        match &r.fit {
            Some(f) => {
                for (i, (name, v)) in f.kind.param_names().iter().zip(&f.params).enumerate() {
                    let se = f.std_errors.get(i).copied().unwrap_or(f64::NAN);
                    if i == 0 {
                        println!(
                            "  {:<11} {:<6} {:>12.6} {:>10.6}   {:>14.2} {:>6} {:>9.1e} {:>8.3}",
                            r.model,
                            name,
                            v,
                            se,
                            f.log_likelihood,
                            f.iterations,
                            f.gradient_norm,
                            r.seconds
                        );
                    } else {
                        println!("  {:<11} {:<6} {:>12.6} {:>10.6}", "", name, v, se);
                    }
                }
            }
            None => println!(
                "  {:<11} did not fit: {}",
                r.model,
                r.error.as_deref().unwrap_or("-")
            ),
        }
    }
    match gg {
        Ok(f) => println!(
            "Spend model (Gamma-Gamma on {} repeat buyers, minor units): p {:.4} (±{:.4}), q {:.4} (±{:.4}), gamma {:.2} (±{:.2}); log-likelihood {:.2}",
            f.customers,
            f.params.p,
            f.std_errors[0],
            f.params.q,
            f.std_errors[1],
            f.params.gamma,
            f.std_errors[2],
            f.log_likelihood
        ),
        Err(e) => println!("Spend model did not fit: {e}"),
    }
}

fn print_holdout(reports: &[ModelReport], days: i64, cut: Timestamp) {
    println!(
        "Holdout check: fitted on purchases up to {}, predicted for the {days} days after; mean purchases per customer by calibration repeat purchases:",
        cut.date_local()
    );
    let Some(first) = reports.iter().find(|r| !r.holdout.is_empty()) else {
        println!("  (no model could be fitted on the calibration period)");
        return;
    };
    let mut header = format!("  {:>9} {:>9} {:>8}", "repeats", "customers", "actual");
    for r in reports {
        header.push_str(&format!(" {:>11}", r.model));
    }
    println!("{header}");
    for (i, row) in first.holdout.iter().enumerate() {
        let label = if i + 1 == first.holdout.len() && row.frequency == 7 {
            "7+".to_owned()
        } else {
            row.frequency.to_string()
        };
        let mut line = format!("  {:>9} {:>9} {:>8.3}", label, row.customers, row.actual);
        for r in reports {
            match r.holdout.get(i) {
                Some(h) => line.push_str(&format!(" {:>11.3}", h.predicted)),
                None => line.push_str(&format!(" {:>11}", "-")),
            }
        }
        println!("{line}");
    }
    let mut total = format!("  {:>9} {:>9} {:>8.0}", "total", "", first.holdout_actual);
    for r in reports {
        total.push_str(&format!(" {:>11.0}", r.holdout_predicted));
    }
    println!("{total}");
}

fn print_saved(fits: &[ModelFitRow]) {
    if fits.is_empty() {
        println!("No saved fits yet: run `winback models fit` or `winback score`.");
    }
    for f in fits {
        println!(
            "{:<12} fitted {} on {} customers (data {} to {}), log-likelihood {}, {} iterations, {:.3} s: {}",
            f.model,
            f.fitted_at,
            f.customers,
            f.window_start
                .map_or("-".into(), |t| t.date_local().to_string()),
            f.window_end.date_local(),
            f.log_likelihood.map_or("-".into(), |l| format!("{l:.2}")),
            f.iterations,
            f.seconds,
            f.params
        );
    }
}
