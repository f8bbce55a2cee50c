//! The always-on schedule: what a shop needs done without cron or manual commands, run by every
//! worker (`winback worker`, `winback serve --worker`, several on PostgreSQL) between engine
//! passes. Each job is claimed under a lease in the store, so of several workers exactly one
//! runs a due job, and its last run is kept for `/metrics`, the dashboard and the worker's
//! output:
//!
//! - `refresh`: identities and features of the profiles any ingest touched (a CLI import, the
//!   `/v1` API, a webhook), at most `refresh_seconds` after the ingest;
//! - `score`: the whole scoring run once a day at `score_at` in the shop's time zone, so a
//!   contact whose last order ages past a stage's threshold is re-staged (and an audience on
//!   `stage` enrols them on the next pass);
//! - `retention`: the retention policy once each local day (its first round after midnight in
//!   the shop's time zone), when `[privacy] enforce` is on.

use anyhow::{Context, Result};
use jiff::civil::Time;
use winback_domain::Timestamp;
use winback_identity::IdentityRules;
use winback_store::SqlStore;

use crate::ingest::{Settled, after_ingest};
use crate::scoring::{Facts, Settings as ScoringSettings, score_and_save};

/// `[schedule]` in `winback.toml`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Local time of the nightly scoring run (`"03:00"`), or `"off"`.
    pub score: String,
    /// Longest delay, in seconds, between an ingest and the refresh of the profiles it touched.
    pub refresh_seconds: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            score: "03:00".into(),
            refresh_seconds: 60,
        }
    }
}

/// A checked schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// When the nightly scoring runs, local time; `None`: never.
    pub score_at: Option<Time>,
    /// Longest delay of a refresh, seconds.
    pub refresh_seconds: i64,
    /// Resolve identities before refreshing (`[identity] auto_resolve`).
    pub resolve: bool,
    /// The merge rules.
    pub rules: IdentityRules,
    /// How scoring runs.
    pub scoring: ScoringSettings,
    /// The retention policy, run daily: (months without activity, days a notice is awaited);
    /// `None` when `[privacy] enforce` is off.
    pub retention: Option<(u32, u32)>,
}

impl ScheduleConfig {
    /// Checks the configuration.
    pub fn schedule(
        &self,
        resolve: bool,
        rules: IdentityRules,
        scoring: ScoringSettings,
    ) -> Result<Schedule> {
        let score_at = match self.score.trim() {
            "off" | "" => None,
            t => Some(t.parse::<Time>().with_context(|| {
                format!("schedule.score: `{t}` is not a time such as \"03:00\" (or \"off\")")
            })?),
        };
        Ok(Schedule {
            score_at,
            refresh_seconds: i64::try_from(self.refresh_seconds.clamp(1, 86_400)).unwrap_or(60),
            resolve,
            rules,
            scoring,
            retention: None,
        })
    }
}

/// What a run of the schedule did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobsRun {
    /// Identities and features refreshed for the touched profiles.
    pub refreshed: Option<Settled>,
    /// The nightly scoring run.
    pub scored: Option<winback_store::RunStats>,
    /// The daily retention run.
    pub retention: Option<crate::retention::RetentionOutcome>,
    /// Jobs that failed this time, with why: recorded in the job's last run and retried when
    /// next due; the worker keeps running.
    pub failed: Vec<String>,
}

impl JobsRun {
    /// Whether any job ran (or failed).
    pub fn did_anything(&self) -> bool {
        self.refreshed.is_some()
            || self.scored.is_some()
            || self.retention.is_some()
            || !self.failed.is_empty()
    }
}

/// A lease outlives any run of a job by far; a worker killed mid-run frees its job when the
/// lease ends.
const LEASE_SECONDS: i64 = 3_600;

fn at(t: Timestamp, seconds: i64) -> Timestamp {
    Timestamp::from_micros(
        t.as_micros()
            .saturating_add(seconds.saturating_mul(1_000_000)),
    )
    .unwrap_or(t)
}

/// The last instant the nightly run was due at or before `now`: today's `score_at` in the
/// shop's zone when that has passed, else yesterday's.
pub fn last_due(now: Timestamp, score_at: Time) -> Timestamp {
    let today = now.date_local();
    let due_on = |date: jiff::civil::Date| {
        Timestamp::local_midnight(date).map(|m| {
            at(
                m,
                i64::from(score_at.hour()) * 3_600 + i64::from(score_at.minute()) * 60,
            )
        })
    };
    match due_on(today) {
        Some(t) if t <= now => t,
        _ => today
            .yesterday()
            .ok()
            .and_then(due_on)
            .unwrap_or(Timestamp::EPOCH),
    }
}

/// Runs the jobs that are due at `now` and that this worker (`owner`) wins the lease of. A job
/// that fails is recorded as failed (its last run, `/metrics`, the dashboard) and listed in
/// [`JobsRun::failed`]; it does not stop the others or the worker. Only the store failing to
/// hand out or record a lease is an error.
pub async fn run_due(
    store: &SqlStore,
    now: Timestamp,
    owner: &str,
    schedule: &Schedule,
) -> Result<JobsRun> {
    let mut run = JobsRun::default();
    // Where a round's time goes, logged at the end (`WINBACK_LOG=winback::worker=info`).
    let mut clock = std::time::Instant::now();
    let lap = |clock: &mut std::time::Instant| {
        let s = clock.elapsed().as_secs_f64();
        *clock = std::time::Instant::now();
        s
    };
    // Retention first: nothing is scored or refreshed for people it erases.
    if let Some((months, notice_days)) = schedule.retention {
        if store
            .claim_job(
                "retention",
                owner,
                now,
                at(now, LEASE_SECONDS),
                // Once each local day, on its first round: "not in the last 24 hours" put each
                // day's run later by the last one's length, and a worker that came back a few
                // milliseconds earlier than the day before skipped the day (measured).
                last_due(now, Time::midnight()),
            )
            .await?
        {
            let outcome = crate::retention::retention(store, now, months, notice_days, false).await;
            let text = match &outcome {
                Ok(r) => serde_json::json!({"run_id": r.run_id, "erased": r.erased.len(), "waiting_for_answer": r.waiting_for_answer.len()}).to_string(),
                Err(e) => format!("failed: {e:#}"),
            };
            store.finish_job("retention", owner, now, &text).await?;
            match outcome {
                Ok(r) => run.retention = Some(r),
                Err(e) => run.failed.push(format!("the daily retention run: {e:#}")),
            }
        }
    }
    let retention_s = lap(&mut clock);
    // The nightly run first: it refreshes every profile's features as well (re-derived where
    // nothing changed; see `scoring::Facts::Changed`).
    if let Some(score_at) = schedule.score_at {
        let due = last_due(now, score_at);
        if store
            .claim_job("score", owner, now, at(now, LEASE_SECONDS), due)
            .await?
        {
            let outcome =
                score_and_save(store, now, &schedule.scoring, Facts::Changed, 0, |_| {}).await;
            let text = match &outcome {
                Ok(o) => serde_json::to_string(&o.stats)?,
                Err(e) => format!("failed: {e:#}"),
            };
            store.finish_job("score", owner, now, &text).await?;
            match outcome {
                Ok(o) => run.scored = Some(o.stats),
                Err(e) => run.failed.push(format!("the nightly scoring run: {e:#}")),
            }
        }
    }
    let score_job_s = lap(&mut clock);
    if store.has_dirty_customers().await?
        && store
            .claim_job(
                "refresh",
                owner,
                now,
                at(now, LEASE_SECONDS),
                at(now, -schedule.refresh_seconds),
            )
            .await?
    {
        let outcome = after_ingest(store, schedule.resolve.then_some(&schedule.rules), now).await;
        let text = match &outcome {
            Ok(r) => serde_json::to_string(r)?,
            Err(e) => format!("failed: {e:#}"),
        };
        store.finish_job("refresh", owner, now, &text).await?;
        match outcome {
            Ok(r) => run.refreshed = Some(r),
            Err(e) => run
                .failed
                .push(format!("refreshing the touched profiles: {e:#}")),
        }
    }
    tracing::info!(
        target: "winback::worker",
        retention_job_s = retention_s,
        score_job_s,
        refresh_job_s = lap(&mut clock),
        "jobs round"
    );
    Ok(run)
}

/// This worker's clock and the database's disagree by more than the allowed skew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockSkew {
    /// The worker's clock minus the database's, seconds.
    pub ahead_seconds: i64,
    /// The allowed difference, seconds.
    pub max_seconds: u64,
}

impl std::fmt::Display for ClockSkew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (word, by) = if self.ahead_seconds >= 0 {
            ("ahead of", self.ahead_seconds)
        } else {
            ("behind", -self.ahead_seconds)
        };
        write!(
            f,
            "this worker's clock is {by} s {word} the database's (more than [engine] max_clock_skew_seconds = {}): its leases and due times would lock the other workers out or run work early; set the clock right (NTP) and start it again",
            self.max_seconds
        )
    }
}

impl std::error::Error for ClockSkew {}

/// Refuses a worker whose clock is off the database's by more than `max_seconds` (0: no
/// check). Every worker writes leases and due times with its own clock, so they only agree
/// while the clocks do.
pub async fn check_clock(
    store: &SqlStore,
    worker_now: Timestamp,
    max_seconds: u64,
) -> Result<(), anyhow::Error> {
    if max_seconds == 0 {
        return Ok(());
    }
    let db = store.database_now().await?;
    let ahead = (worker_now.as_micros() - db.as_micros()) / 1_000_000;
    if ahead.unsigned_abs() > max_seconds {
        return Err(ClockSkew {
            ahead_seconds: ahead,
            max_seconds,
        }
        .into());
    }
    Ok(())
}
