//! `winback models`: runs `winback_app::models::fit_all` (every purchase model and the spend
//! model fitted, saved, and checked against a holdout period) and prints the parameters with
//! standard errors, log-likelihoods, convergence, and the holdout table.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use winback_app::models::ModelReport;
use winback_domain::{Clock, Timestamp};
use winback_store::ModelFitRow;

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
            let as_of_given = as_of.is_some();
            let now = match as_of {
                Some(v) => parse_as_of(&v)?,
                None => clock.now(),
            };
            let out = winback_app::models::fit_all(
                &store,
                now,
                as_of_given,
                holdout_days,
                fit_limits(config, json),
            )
            .await?;
            if json {
                let gg = match &out.gamma_gamma {
                    Ok(f) => {
                        serde_json::json!({"params": f.params, "std_errors": f.std_errors, "log_likelihood": f.log_likelihood})
                    }
                    Err(e) => serde_json::json!({"error": e.to_string()}),
                };
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "customers": out.customers,
                        "holdout_days": holdout_days,
                        "models": out.reports,
                        "gamma_gamma": gg,
                    }))?
                );
            } else {
                print_fits(&out.reports, out.customers, &out.gamma_gamma);
                if report {
                    print_holdout(&out.reports, holdout_days, out.cut);
                }
            }
            if out.failed() {
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
