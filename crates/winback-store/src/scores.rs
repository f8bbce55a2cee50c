//! Scoring runs: each run replaces every profile's latest score, records the profiles whose
//! stage changed (so "moved from active to at risk on date D" can be asked), and the share of the
//! base in each stage (the "% inactive" KPI over time). A run is saved a page of profiles at a
//! time, one transaction per page, and finished in one more: its stage shares mark it finished.

use std::collections::HashMap;
use winback_domain::ProfileId;

use winback_domain::Timestamp;

use crate::{
    StoreError,
    db::{Pool, Val, values_list},
};

/// Money kept as a float of minor units is shown in whole minor units: no fractional cents.
fn whole_minor<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) if x.is_finite() => s.serialize_some(&(x.round() as i64)),
        _ => s.serialize_none(),
    }
}

/// One profile's score in a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScoreRow {
    /// Profile id.
    pub profile_id: ProfileId,
    /// Lifecycle stage name.
    pub stage: String,
    /// Why, in words.
    pub reason: String,
    /// RFM segment name.
    pub segment: Option<String>,
    /// P(alive).
    pub p_alive: Option<f64>,
    /// Expected purchases in 90 days.
    pub expected_90d: Option<f64>,
    /// Predicted 12-month value in minor units (whole minor units in JSON).
    #[serde(serialize_with = "whole_minor")]
    pub clv_minor: Option<f64>,
    /// Usual reorder interval, in words.
    pub reorder: Option<String>,
    /// Purchase days.
    pub purchases: i64,
    /// Spend in minor units.
    pub spend_minor: i64,
    /// Currency of the spend.
    pub currency: Option<String>,
    /// RFM scores as three digits (recency, frequency, monetary), e.g. `"545"`.
    pub rfm: Option<String>,
    /// Attrition score: 1 − P(alive).
    pub attrition: Option<f64>,
    /// Win-back priority in minor units (expected incremental margin); `None` when not ranked.
    /// Whole minor units in JSON.
    #[serde(serialize_with = "whole_minor")]
    pub priority_minor: Option<f64>,
    /// Names of the inactivity definitions the profile matches.
    pub inactive_by: Vec<String>,
    /// Explanations: inactivity reasons, priority reasons or exclusion, reorder timing.
    pub details: serde_json::Value,
}

/// Which scored profiles to list, and in which order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoreFilter {
    /// Only these stages (all when empty).
    pub stages: Vec<String>,
    /// At least this predicted value (minor units).
    pub min_clv_minor: Option<f64>,
    /// At least this priority (minor units); implies ranked profiles only.
    pub min_priority_minor: Option<f64>,
    /// Only profiles matching this inactivity definition.
    pub inactive: Option<String>,
    /// Highest priority first instead of highest predicted value first.
    pub by_priority: bool,
    /// At most this many.
    pub limit: i64,
}

/// A persisted model fit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelFitRow {
    /// Model name (`bgnbd`, `mbgnbd`, `pareto_nbd`, `gamma_gamma`, `interval_prior:<category>`).
    pub model: String,
    /// When it was fitted.
    pub fitted_at: Timestamp,
    /// Start of the data window (the first order), when known.
    pub window_start: Option<Timestamp>,
    /// End of the data window (the calibration cut-off).
    pub window_end: Timestamp,
    /// Customers fitted on.
    pub customers: i64,
    /// Parameters by name.
    pub params: serde_json::Value,
    /// Standard errors by name.
    pub std_errors: serde_json::Value,
    /// Log-likelihood at the optimum.
    pub log_likelihood: Option<f64>,
    /// Optimiser iterations.
    pub iterations: i64,
    /// Wall-clock seconds of the fit.
    pub seconds: f64,
}

/// What a saved run changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunStats {
    /// The run's id.
    pub run_id: i64,
    /// Profiles scored.
    pub profiles: u64,
    /// Profiles whose stage differs from the previous run (or that were scored for the first time).
    pub stage_changes: u64,
}

/// A recorded stage change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StageChange {
    /// When the run that saw it happened.
    pub at: Timestamp,
    /// The stage before (`None` on the first run).
    pub from: Option<String>,
    /// The stage after.
    pub to: String,
}

/// A scored profile for listings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScoredProfile {
    /// External id of the profile's first record.
    pub external_id: String,
    /// Name, when known.
    pub name: Option<String>,
    /// Email of the profile's first record.
    pub email: Option<String>,
    /// The score.
    pub score: ScoreRow,
    /// The profile's latest order that counts (not cancelled or refunded).
    pub last_order_at: Option<winback_domain::Timestamp>,
}

const SCORE_COLS: &str = "s.profile_id, s.stage, s.reason, s.segment, s.p_alive, s.expected_90d, s.clv_minor, s.reorder, s.purchases, s.spend_minor, s.currency, \
     s.rfm, s.attrition, s.priority_minor, s.inactive_by, s.details";

fn score_row(r: &crate::db::DbRow) -> Result<ScoreRow, StoreError> {
    Ok(ScoreRow {
        profile_id: ProfileId::new(r.i64("profile_id")?),
        stage: r.text("stage")?,
        reason: r.text("reason")?,
        segment: r.opt_text("segment")?,
        p_alive: r.opt_f64("p_alive")?,
        expected_90d: r.opt_f64("expected_90d")?,
        clv_minor: r.opt_f64("clv_minor")?,
        reorder: r.opt_text("reorder")?,
        purchases: r.i64("purchases")?,
        spend_minor: r.i64("spend_minor")?,
        currency: r.opt_text("currency")?,
        rfm: r.opt_text("rfm")?,
        attrition: r.opt_f64("attrition")?,
        priority_minor: r.opt_f64("priority_minor")?,
        inactive_by: r
            .text("inactive_by")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        details: serde_json::from_str(&r.text("details")?)?,
    })
}

/// A scoring run being saved a page of profiles at a time ([`crate::SqlStore::begin_score_run`]).
///
/// Each page is its own transaction, so a million profiles never sit in memory at once and no
/// write lock is held while the next page is scored. Until [`crate::SqlStore::finish_score_run`]
/// a reader sees each profile's latest score, from this run or the one before; the run's
/// segment moves and stage shares appear when it finishes, so the "latest run" readers see only
/// finished runs.
#[derive(Debug)]
pub struct ScoreRun {
    run_id: i64,
    at: Timestamp,
    profiles: u64,
    stage_changes: u64,
    moves: HashMap<(String, String), i64>,
    shares: HashMap<String, i64>,
}

impl ScoreRun {
    /// The run's id.
    pub fn id(&self) -> i64 {
        self.run_id
    }
}

pub(crate) async fn begin_run(
    pool: &Pool,
    at: Timestamp,
    models: &serde_json::Value,
) -> Result<ScoreRun, StoreError> {
    // `profiles` is set when the run finishes.
    let run_id = pool
        .fetch(
            "INSERT INTO score_runs (scored_at, profiles, models) VALUES ($1, 0, $2) RETURNING id",
            &[Val::from(at.as_micros()), Val::from(models.to_string())],
        )
        .await?[0]
        .i64(0)?;
    Ok(ScoreRun {
        run_id,
        at,
        profiles: 0,
        stage_changes: 0,
        moves: HashMap::new(),
        shares: HashMap::new(),
    })
}

/// Writes one page of a run's scores over the stored ones, with the stage changes against
/// what was stored, in one transaction.
pub(crate) async fn write_run(
    pool: &Pool,
    run: &mut ScoreRun,
    rows: &[ScoreRow],
) -> Result<(), StoreError> {
    const COLS: usize = 17;
    let Some((lo, hi)) =
        rows.iter()
            .map(|r| r.profile_id.get())
            .fold(None, |acc: Option<(i64, i64)>, id| {
                Some(acc.map_or((id, id), |(lo, hi)| (lo.min(id), hi.max(id))))
            })
    else {
        return Ok(());
    };
    let mut tx = pool.begin().await?;
    // What each profile was before this page: a page is a range of profile ids.
    let mut previous: HashMap<i64, (String, Option<String>)> = HashMap::new();
    for r in tx
        .fetch(
            "SELECT profile_id, stage, segment FROM profile_scores WHERE profile_id BETWEEN $1 AND $2",
            &[Val::from(lo), Val::from(hi)],
        )
        .await?
    {
        previous.insert(r.i64("profile_id")?, (r.text("stage")?, r.opt_text("segment")?));
    }
    for chunk in rows.chunks(16_000 / COLS) {
        let sql = format!(
            "INSERT INTO profile_scores (profile_id, run_id, stage, reason, segment, p_alive, expected_90d, clv_minor, reorder, purchases, spend_minor, currency, \
             rfm, attrition, priority_minor, inactive_by, details) VALUES {} \
             ON CONFLICT (profile_id) DO UPDATE SET run_id = excluded.run_id, stage = excluded.stage, reason = excluded.reason, \
             segment = excluded.segment, p_alive = excluded.p_alive, expected_90d = excluded.expected_90d, clv_minor = excluded.clv_minor, \
             reorder = excluded.reorder, purchases = excluded.purchases, spend_minor = excluded.spend_minor, currency = excluded.currency, \
             rfm = excluded.rfm, attrition = excluded.attrition, priority_minor = excluded.priority_minor, inactive_by = excluded.inactive_by, \
             details = excluded.details",
            values_list(chunk.len(), COLS)
        );
        let mut args = Vec::with_capacity(chunk.len() * COLS);
        for s in chunk {
            args.extend([
                Val::from(s.profile_id),
                Val::from(run.run_id),
                Val::from(s.stage.as_str()),
                Val::from(s.reason.as_str()),
                Val::from(s.segment.clone()),
                Val::from(s.p_alive),
                Val::from(s.expected_90d),
                Val::from(s.clv_minor),
                Val::from(s.reorder.clone()),
                Val::from(s.purchases),
                Val::from(s.spend_minor),
                Val::from(s.currency.clone()),
                Val::from(s.rfm.clone()),
                Val::from(s.attrition),
                Val::from(s.priority_minor),
                Val::from(s.inactive_by.join(",")),
                Val::from(s.details.to_string()),
            ]);
        }
        tx.execute(&sql, &args).await?;
    }
    let changes: Vec<(&ScoreRow, Option<&str>)> = rows
        .iter()
        .map(|s| {
            let before = previous.get(&s.profile_id.get());
            (s, before.map(|(stage, _)| stage.as_str()))
        })
        .filter(|(s, before)| before.is_none_or(|b| b != s.stage))
        .collect();
    for chunk in changes.chunks(3000) {
        let sql = format!(
            "INSERT INTO stage_history (profile_id, run_id, changed_at, from_stage, to_stage) VALUES {}",
            values_list(chunk.len(), 5)
        );
        let args: Vec<Val> = chunk
            .iter()
            .flat_map(|(s, before)| {
                [
                    Val::from(s.profile_id),
                    Val::from(run.run_id),
                    Val::from(run.at.as_micros()),
                    Val::from(*before),
                    Val::from(s.stage.as_str()),
                ]
            })
            .collect();
        tx.execute(&sql, &args).await?;
    }
    tx.commit().await?;
    // Counted once the page is stored: a failed page counts nothing.
    run.profiles += rows.len() as u64;
    run.stage_changes += changes.len() as u64;
    for s in rows {
        *run.shares.entry(s.stage.clone()).or_default() += 1;
        // RFM migration: moves between this run's segments and the previous run's.
        if let (Some((_, Some(before))), Some(now)) =
            (previous.get(&s.profile_id.get()), &s.segment)
        {
            *run.moves.entry((before.clone(), now.clone())).or_default() += 1;
        }
    }
    Ok(())
}

/// Ends a run: removes the scores of profiles that no longer exist (merged away or erased),
/// and records the run's size, segment moves and stage shares.
pub(crate) async fn finish_run(pool: &Pool, run: ScoreRun) -> Result<RunStats, StoreError> {
    let mut tx = pool.begin().await?;
    tx.execute(
        &format!(
            "DELETE FROM profile_scores WHERE NOT EXISTS \
             (SELECT 1 FROM customers c WHERE c.id = profile_scores.profile_id AND {})",
            crate::features::CURRENT_PROFILE
        ),
        &[],
    )
    .await?;
    tx.execute(
        "UPDATE score_runs SET profiles = $1 WHERE id = $2",
        &[Val::from(run.profiles as i64), Val::from(run.run_id)],
    )
    .await?;
    let moves: Vec<(&(String, String), &i64)> = run.moves.iter().collect();
    for chunk in moves.chunks(1000) {
        let sql = format!(
            "INSERT INTO segment_migration (run_id, from_segment, to_segment, profiles) VALUES {}",
            values_list(chunk.len(), 4)
        );
        let args: Vec<Val> = chunk
            .iter()
            .flat_map(|((from, to), n)| {
                [
                    Val::from(run.run_id),
                    Val::from(from.as_str()),
                    Val::from(to.as_str()),
                    Val::from(**n),
                ]
            })
            .collect();
        tx.execute(&sql, &args).await?;
    }
    let shares: Vec<(&String, &i64)> = run.shares.iter().collect();
    if !shares.is_empty() {
        let sql = format!(
            "INSERT INTO stage_shares (run_id, stage, profiles) VALUES {}",
            values_list(shares.len(), 3)
        );
        let args: Vec<Val> = shares
            .iter()
            .flat_map(|(st, c)| {
                [
                    Val::from(run.run_id),
                    Val::from(st.as_str()),
                    Val::from(**c),
                ]
            })
            .collect();
        tx.execute(&sql, &args).await?;
    }
    tx.commit().await?;
    Ok(RunStats {
        run_id: run.run_id,
        profiles: run.profiles,
        stage_changes: run.stage_changes,
    })
}

/// Saves a whole run given at once: [`begin_run`], its rows in pages, [`finish_run`].
pub(crate) async fn save_run(
    pool: &Pool,
    at: Timestamp,
    models: &serde_json::Value,
    rows: &[ScoreRow],
) -> Result<RunStats, StoreError> {
    let mut sorted: Vec<&ScoreRow> = rows.iter().collect();
    sorted.sort_by_key(|r| r.profile_id.get());
    let mut run = begin_run(pool, at, models).await?;
    for page in sorted.chunks(20_000) {
        let page: Vec<ScoreRow> = page.iter().map(|r| (*r).clone()).collect();
        write_run(pool, &mut run, &page).await?;
    }
    finish_run(pool, run).await
}

pub(crate) async fn stage_history(
    pool: &Pool,
    profile_id: i64,
) -> Result<Vec<StageChange>, StoreError> {
    pool.fetch(
        "SELECT changed_at, from_stage, to_stage FROM stage_history WHERE profile_id = $1 ORDER BY changed_at, run_id",
        &[Val::from(profile_id)],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(StageChange {
            at: Timestamp::from_micros(r.i64("changed_at")?).ok_or_else(|| StoreError::Data("time out of range".into()))?,
            from: r.opt_text("from_stage")?,
            to: r.text("to_stage")?,
        })
    })
    .collect()
}

pub(crate) async fn latest_score(
    pool: &Pool,
    profile_id: i64,
) -> Result<Option<ScoreRow>, StoreError> {
    let rows = pool
        .fetch(
            &format!("SELECT {SCORE_COLS} FROM profile_scores s WHERE s.profile_id = $1"),
            &[Val::from(profile_id)],
        )
        .await?;
    rows.first().map(score_row).transpose()
}

pub(crate) async fn list_scored(
    pool: &Pool,
    f: &ScoreFilter,
) -> Result<Vec<ScoredProfile>, StoreError> {
    let mut args: Vec<Val> = vec![Val::from(f.limit)];
    let mut conditions: Vec<String> = Vec::new();
    if let Some(min) = f.min_clv_minor {
        args.push(Val::from(Some(min)));
        conditions.push(format!("COALESCE(s.clv_minor, 0) >= ${}", args.len()));
    }
    if let Some(min) = f.min_priority_minor {
        args.push(Val::from(Some(min)));
        conditions.push(format!("s.priority_minor >= ${}", args.len()));
    }
    if let Some(name) = &f.inactive {
        // Names are snake_case (validated with the configuration), so a comma-delimited match
        // cannot confuse one with another.
        args.push(Val::from(format!("%,{name},%")));
        conditions.push(format!(
            "(',' || s.inactive_by || ',') LIKE ${}",
            args.len()
        ));
    }
    if !f.stages.is_empty() {
        let first = args.len() + 1;
        args.extend(f.stages.iter().map(|s| Val::from(s.as_str())));
        let list: Vec<String> = (first..first + f.stages.len())
            .map(|i| format!("${i}"))
            .collect();
        conditions.push(format!("s.stage IN ({})", list.join(",")));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let order = if f.by_priority {
        "s.priority_minor DESC NULLS LAST"
    } else {
        "COALESCE(s.clv_minor, 0) DESC"
    };
    let sql = format!(
        "SELECT c.external_id, c.first_name, c.last_name, c.email, {SCORE_COLS}, \
         (SELECT MAX(o.ordered_at) FROM orders o JOIN customers r ON r.id = o.customer_id WHERE COALESCE(r.profile_id, r.id) = s.profile_id AND o.status IN ('paid', 'pending', 'partially_refunded')) AS last_order_at \
         FROM profile_scores s JOIN customers c ON c.id = s.profile_id \
         {filter} ORDER BY {order}, s.profile_id LIMIT $1"
    );
    pool.fetch(&sql, &args)
        .await?
        .iter()
        .map(|r| {
            let name = [r.opt_text("first_name")?, r.opt_text("last_name")?]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            Ok(ScoredProfile {
                external_id: r.text("external_id")?,
                name: (!name.is_empty()).then_some(name),
                email: r.opt_text("email")?,
                score: score_row(r)?,
                last_order_at: r
                    .opt_i64("last_order_at")?
                    .map(crate::queries::ts)
                    .transpose()?,
            })
        })
        .collect()
}

/// RFM segment moves of the latest finished run: (from, to, profiles).
pub(crate) async fn segment_migration(
    pool: &Pool,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    pool.fetch(
        "SELECT from_segment, to_segment, profiles FROM segment_migration WHERE run_id = (SELECT MAX(run_id) FROM stage_shares) ORDER BY from_segment, to_segment",
        &[],
    )
    .await?
    .iter()
    .map(|r| Ok((r.text("from_segment")?, r.text("to_segment")?, r.i64("profiles")?)))
    .collect()
}

pub(crate) async fn save_model_fit(pool: &Pool, m: &ModelFitRow) -> Result<(), StoreError> {
    pool.execute(
        "INSERT INTO model_fits (model, fitted_at, window_start, window_end, customers, params, std_errors, log_likelihood, iterations, seconds) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            Val::from(m.model.as_str()),
            Val::from(m.fitted_at.as_micros()),
            Val::from(m.window_start.map(|t| t.as_micros())),
            Val::from(m.window_end.as_micros()),
            Val::from(m.customers),
            Val::from(m.params.to_string()),
            Val::from(m.std_errors.to_string()),
            Val::from(m.log_likelihood),
            Val::from(m.iterations),
            Val::from(Some(m.seconds)),
        ],
    )
    .await?;
    Ok(())
}

/// The latest fit of each model.
pub(crate) async fn latest_model_fits(pool: &Pool) -> Result<Vec<ModelFitRow>, StoreError> {
    let time = |v: i64| {
        Timestamp::from_micros(v).ok_or_else(|| StoreError::Data("time out of range".into()))
    };
    pool.fetch(
        "SELECT m.model, m.fitted_at, m.window_start, m.window_end, m.customers, m.params, m.std_errors, m.log_likelihood, m.iterations, m.seconds \
         FROM model_fits m WHERE m.id = (SELECT MAX(n.id) FROM model_fits n WHERE n.model = m.model) ORDER BY m.model",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(ModelFitRow {
            model: r.text("model")?,
            fitted_at: time(r.i64("fitted_at")?)?,
            window_start: r.opt_i64("window_start")?.map(time).transpose()?,
            window_end: time(r.i64("window_end")?)?,
            customers: r.i64("customers")?,
            params: serde_json::from_str(&r.text("params")?)?,
            std_errors: serde_json::from_str(&r.text("std_errors")?)?,
            log_likelihood: r.opt_f64("log_likelihood")?,
            iterations: r.i64("iterations")?,
            seconds: r.opt_f64("seconds")?.unwrap_or(0.0),
        })
    })
    .collect()
}

/// Share of the base in each stage, per run, oldest first: (run time, stage, profiles).
pub(crate) async fn stage_shares(pool: &Pool) -> Result<Vec<(Timestamp, String, i64)>, StoreError> {
    pool.fetch(
        "SELECT r.scored_at, s.stage, s.profiles FROM stage_shares s JOIN score_runs r ON r.id = s.run_id ORDER BY r.scored_at, s.stage",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        let at = Timestamp::from_micros(r.i64("scored_at")?)
            .ok_or_else(|| StoreError::Data("time out of range".into()))?;
        Ok((at, r.text("stage")?, r.i64("profiles")?))
    })
    .collect()
}

/// The latest instant the stored data was written for: the latest scoring run or import.
/// Simulated programmes write ahead of the wall clock; reports read "as of" the later of the
/// two, so every screen measures idleness and "did they stay?" at the same instant.
pub(crate) async fn data_horizon(pool: &Pool) -> Result<Option<Timestamp>, StoreError> {
    let rows = pool
        .fetch(
            "SELECT MAX(t) AS t FROM (SELECT MAX(scored_at) AS t FROM score_runs \
             UNION ALL SELECT MAX(finished_at) AS t FROM import_runs) x",
            &[],
        )
        .await?;
    match rows.first().map(|r| r.opt_i64("t")).transpose()?.flatten() {
        Some(t) => {
            Ok(Some(Timestamp::from_micros(t).ok_or_else(|| {
                StoreError::Data("time out of range".into())
            })?))
        }
        None => Ok(None),
    }
}
