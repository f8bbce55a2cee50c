//! Scoring runs: each run replaces every profile's latest score, records the profiles whose
//! stage changed (so "moved from active to at risk on date D" can be asked), and the share of the
//! base in each stage (the "% inactive" KPI over time). One transaction per run.

use std::collections::HashMap;

use winback_domain::Timestamp;

use crate::{
    StoreError,
    db::{Pool, Val, values_list},
};

/// One profile's score in a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScoreRow {
    /// Profile id.
    pub profile_id: i64,
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
    /// Predicted 12-month value in minor units.
    pub clv_minor: Option<f64>,
    /// Usual reorder interval, in words.
    pub reorder: Option<String>,
    /// Purchase days.
    pub purchases: i64,
    /// Spend in minor units.
    pub spend_minor: i64,
    /// Currency of the spend.
    pub currency: Option<String>,
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
}

const SCORE_COLS: &str = "s.profile_id, s.stage, s.reason, s.segment, s.p_alive, s.expected_90d, s.clv_minor, s.reorder, s.purchases, s.spend_minor, s.currency";

fn score_row(r: &crate::db::DbRow, at: usize) -> Result<ScoreRow, StoreError> {
    Ok(ScoreRow {
        profile_id: r.i64(at)?,
        stage: r.text(at + 1)?,
        reason: r.text(at + 2)?,
        segment: r.opt_text(at + 3)?,
        p_alive: r.opt_f64(at + 4)?,
        expected_90d: r.opt_f64(at + 5)?,
        clv_minor: r.opt_f64(at + 6)?,
        reorder: r.opt_text(at + 7)?,
        purchases: r.i64(at + 8)?,
        spend_minor: r.i64(at + 9)?,
        currency: r.opt_text(at + 10)?,
    })
}

pub(crate) async fn save_run(
    pool: &Pool,
    at: Timestamp,
    models: &serde_json::Value,
    rows: &[ScoreRow],
) -> Result<RunStats, StoreError> {
    let mut tx = pool.begin().await?;
    let run = tx
        .fetch(
            "INSERT INTO score_runs (scored_at, profiles, models) VALUES ($1, $2, $3) RETURNING id",
            &[
                Val::from(at.as_micros()),
                Val::from(rows.len() as i64),
                Val::from(models.to_string()),
            ],
        )
        .await?[0]
        .i64(0)?;
    let mut previous: HashMap<i64, String> = HashMap::new();
    for r in tx
        .fetch("SELECT profile_id, stage FROM profile_scores", &[])
        .await?
    {
        previous.insert(r.i64(0)?, r.text(1)?);
    }
    tx.execute("DELETE FROM profile_scores", &[]).await?;
    const COLS: usize = 12;
    for chunk in rows.chunks(16_000 / COLS) {
        let sql = format!(
            "INSERT INTO profile_scores (profile_id, run_id, stage, reason, segment, p_alive, expected_90d, clv_minor, reorder, purchases, spend_minor, currency) VALUES {}",
            values_list(chunk.len(), COLS)
        );
        let mut args = Vec::with_capacity(chunk.len() * COLS);
        for s in chunk {
            args.extend([
                Val::from(s.profile_id),
                Val::from(run),
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
            ]);
        }
        tx.execute(&sql, &args).await?;
    }
    let changes: Vec<(&ScoreRow, Option<&String>)> = rows
        .iter()
        .map(|s| (s, previous.get(&s.profile_id)))
        .filter(|(s, before)| before.is_none_or(|b| *b != s.stage))
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
                    Val::from(run),
                    Val::from(at.as_micros()),
                    Val::from(before.map(|b| b.as_str())),
                    Val::from(s.stage.as_str()),
                ]
            })
            .collect();
        tx.execute(&sql, &args).await?;
    }
    let mut shares: HashMap<&str, i64> = HashMap::new();
    for s in rows {
        *shares.entry(s.stage.as_str()).or_default() += 1;
    }
    let shares: Vec<(&str, i64)> = shares.into_iter().collect();
    if !shares.is_empty() {
        let sql = format!(
            "INSERT INTO stage_shares (run_id, stage, profiles) VALUES {}",
            values_list(shares.len(), 3)
        );
        let args: Vec<Val> = shares
            .iter()
            .flat_map(|(st, c)| [Val::from(run), Val::from(*st), Val::from(*c)])
            .collect();
        tx.execute(&sql, &args).await?;
    }
    tx.commit().await?;
    Ok(RunStats {
        run_id: run,
        profiles: rows.len() as u64,
        stage_changes: changes.len() as u64,
    })
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
            at: Timestamp::from_micros(r.i64(0)?).ok_or_else(|| StoreError::Data("time out of range".into()))?,
            from: r.opt_text(1)?,
            to: r.text(2)?,
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
    rows.first().map(|r| score_row(r, 0)).transpose()
}

pub(crate) async fn list_scored(
    pool: &Pool,
    stages: &[String],
    min_clv_minor: f64,
    limit: i64,
) -> Result<Vec<ScoredProfile>, StoreError> {
    let mut args: Vec<Val> = vec![Val::from(Some(min_clv_minor)), Val::from(limit)];
    let stage_filter = if stages.is_empty() {
        String::new()
    } else {
        args.extend(stages.iter().map(|s| Val::from(s.as_str())));
        let list: Vec<String> = (0..stages.len()).map(|i| format!("${}", i + 3)).collect();
        format!("AND s.stage IN ({})", list.join(","))
    };
    let sql = format!(
        "SELECT c.external_id, c.first_name, c.last_name, c.email, {SCORE_COLS} FROM profile_scores s JOIN customers c ON c.id = s.profile_id \
         WHERE COALESCE(s.clv_minor, 0) >= $1 {stage_filter} ORDER BY COALESCE(s.clv_minor, 0) DESC, s.profile_id LIMIT $2"
    );
    pool.fetch(&sql, &args)
        .await?
        .iter()
        .map(|r| {
            let name = [r.opt_text(1)?, r.opt_text(2)?]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            Ok(ScoredProfile {
                external_id: r.text(0)?,
                name: (!name.is_empty()).then_some(name),
                email: r.opt_text(3)?,
                score: score_row(r, 4)?,
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
    .map(|r| Ok((Timestamp::from_micros(r.i64(0)?).ok_or_else(|| StoreError::Data("time out of range".into()))?, r.text(1)?, r.i64(2)?)))
    .collect()
}
