//! Model fitting, the use case behind `winback models fit`: every purchase model (BG/NBD,
//! MBG/NBD, Pareto/NBD) and the spend model fitted on the shop's histories and saved with their
//! data window and fit time, and the literature's holdout check: each model also fitted on all
//! but the last N days and its predictions compared with the purchases actually made in them.

use std::time::Instant;

use anyhow::Result;
use winback_domain::{FactSet, Timestamp};
use winback_scoring::{
    Fit, FitError, FitLimits, Fitted, Frequency, GammaGamma, GammaGammaParams, HoldoutRow,
    ModelKind, SpendRecord, group, holdout_table,
};
use winback_store::ModelFitRow;

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
pub struct ModelReport {
    /// The model's label.
    pub model: &'static str,
    /// The fit on all the data, when it converged to something sane (and was saved).
    pub fit: Option<Fitted>,
    /// Why there is no fit.
    pub error: Option<String>,
    /// The fit on the calibration period (all but the holdout days).
    pub calibration_fit: Option<Fitted>,
    /// Seconds the full fit took.
    pub seconds: f64,
    /// Predicted against actual purchases in the holdout days, by calibration repeat purchases.
    pub holdout: Vec<HoldoutRow>,
    /// Purchases the calibration fit predicts for the holdout days, in total.
    pub holdout_predicted: f64,
    /// Purchases actually made in the holdout days.
    pub holdout_actual: f64,
}

/// What [`fit_all`] fitted, saved and checked.
#[derive(Debug)]
pub struct FitOutcome {
    /// Buyers the models were fitted on.
    pub customers: usize,
    /// One line per purchase model.
    pub reports: Vec<ModelReport>,
    /// The spend model, or why it did not fit.
    pub gamma_gamma: Result<Fit<GammaGammaParams>, FitError>,
    /// The calibration cut of the holdout check.
    pub cut: Timestamp,
}

impl FitOutcome {
    /// True when some purchase model did not fit.
    pub fn failed(&self) -> bool {
        self.reports.iter().any(|r| r.fit.is_none())
    }
}

/// Fits every model on the histories up to `now` and saves each fit that is sane; runs the
/// holdout check with the last `holdout_days` (positive) as the holdout. With `as_of_given`, a
/// `now` after the last order is refused: it would fit on ages that never happened.
pub async fn fit_all(
    store: &winback_store::SqlStore,
    now: Timestamp,
    as_of_given: bool,
    holdout_days: i64,
    limits: FitLimits,
) -> Result<FitOutcome> {
    anyhow::ensure!(holdout_days > 0, "--holdout-days must be positive");
    // The calibration cut is a calendar day in the shop's zone, `holdout_days` before the as-of
    // day (noon, so no daylight-saving change moves it to another day).
    let cut = now
        .date_local()
        .checked_sub(jiff::Span::new().days(holdout_days))
        .ok()
        .and_then(Timestamp::local_midnight)
        .map_or(now.plus_seconds(-holdout_days * 86_400), |t| {
            t.plus_seconds(12 * 3600)
        });
    // The histories a chunk of profiles at a time: only the three numbers per buyer are kept.
    let (mut all, mut spend) = (Vec::new(), Vec::new());
    let (mut calibration, mut actual) = (Vec::new(), Vec::new());
    let (mut first, mut last) = (None::<Timestamp>, None::<Timestamp>);
    for scope in store.fact_chunks(false, crate::scoring::FACT_CHUNK).await? {
        let facts = store.profile_facts(scope).await?;
        for p in &facts.profiles {
            if let (Some(a), Some(b)) = (p.orders.first(), p.orders.last()) {
                first = Some(first.map_or(a.at, |f| f.min(a.at)));
                last = Some(last.map_or(b.at, |l| l.max(b.at)));
            }
        }
        let (h, _, s) = split(&facts, now);
        all.extend(h);
        spend.extend(s);
        let (c, a, _) = split(&facts, cut);
        calibration.extend(c);
        actual.extend(a);
    }
    if let (Some(last), true) = (last, as_of_given) {
        anyhow::ensure!(
            now <= last.plus_seconds(86_400),
            "--as-of {} is after the last order in the store ({}); choose a date within the data, or leave --as-of out to fit on everything up to now",
            now.date_local(),
            last.date_local()
        );
    }
    let horizon = holdout_days as f64 / 7.0;
    let mut reports = Vec::new();
    // Grouped once for all three models.
    let (all_groups, calibration_groups) = (group(&all), group(&calibration));
    for kind in ModelKind::ALL {
        let started = Instant::now();
        let fit = winback_scoring::with_limits(limits.clone(), || kind.fit(&all_groups))
            .and_then(refuse_degenerate);
        let seconds = started.elapsed().as_secs_f64();
        let calibration_fit =
            winback_scoring::with_limits(limits.clone(), || kind.fit(&calibration_groups)).ok();
        let actual_total: f64 = actual.iter().sum();
        let (holdout, holdout_predicted) = match &calibration_fit {
            Some(cal) => {
                let m = cal.model();
                let predicted: f64 = calibration
                    .iter()
                    .map(|h| winback_scoring::PurchaseModel::expected_purchases(&m, *h, horizon))
                    .sum();
                (
                    holdout_table(&m, &calibration, &actual, horizon, 7),
                    predicted,
                )
            }
            None => (Vec::new(), f64::NAN),
        };
        let (fit, error) = match fit {
            Ok(f) => {
                store
                    .save_model_fit(&crate::scoring::fit_row(&f, now, first, seconds))
                    .await?;
                (Some(f), None)
            }
            Err(e) => (None, Some(e.to_string())),
        };
        reports.push(ModelReport {
            model: kind.label(),
            fit,
            error,
            calibration_fit,
            seconds,
            holdout,
            holdout_predicted,
            holdout_actual: actual_total,
        });
    }
    let gamma_gamma = GammaGamma::fit(&spend);
    if let Ok(f) = &gamma_gamma {
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
    Ok(FitOutcome {
        customers: all.len(),
        reports,
        gamma_gamma,
        cut,
    })
}

/// A fit whose parameters are absurd or whose standard errors are not numbers describes no
/// population (30 buyers at a cut, say): refused, so it never replaces a good saved fit.
fn refuse_degenerate(fit: Fitted) -> Result<Fitted, FitError> {
    let (params, errors) = (&fit.params, &fit.std_errors);
    let absurd = params
        .iter()
        .any(|p| !p.is_finite() || *p > 1e4 || *p < 1e-6);
    let unknown = errors.iter().any(|e| !e.is_finite());
    if absurd || unknown {
        return Err(FitError::Invalid(format!(
            "the fit is degenerate (parameters {params:.4?}, standard errors {errors:.3?}) and was not saved; the saved fit stays. Fit on more customers (a later --as-of, or all the data)"
        )));
    }
    Ok(fit)
}
