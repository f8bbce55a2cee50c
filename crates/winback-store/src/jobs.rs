//! The schedule's jobs: a lease per job name, so that of several workers exactly one runs a
//! due job, and the last run of each for `/metrics` and the dashboard.

use winback_domain::Timestamp;

use crate::StoreError;
use crate::db::{Pool, Val};
use crate::queries::ts;

/// A job's last run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobRow {
    /// Name (`refresh`, `score`, `retention`).
    pub name: String,
    /// The worker running it now, if one is.
    pub running_on: Option<String>,
    /// When the last run started.
    pub last_started: Option<Timestamp>,
    /// When the last run finished.
    pub last_finished: Option<Timestamp>,
    /// What it did (JSON), or why it failed.
    pub last_outcome: Option<String>,
    /// Runs finished.
    pub runs: i64,
}

/// Claims `name` for `owner` until `lease_until` if no lease is live and it has not finished
/// since `not_finished_since`; `true` when this worker now runs it.
pub(crate) async fn claim(
    pool: &Pool,
    name: &str,
    owner: &str,
    now: Timestamp,
    lease_until: Timestamp,
    not_finished_since: Timestamp,
) -> Result<bool, StoreError> {
    pool.execute(
        "INSERT INTO jobs (name, runs) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
        &[Val::from(name)],
    )
    .await?;
    // One conditional update: of workers racing for it, exactly one matches.
    let claimed = pool
        .execute(
            "UPDATE jobs SET lease_owner = $2, lease_until = $3, last_started = $4 \
             WHERE name = $1 AND (lease_until IS NULL OR lease_until < $4) \
             AND (last_finished IS NULL OR last_finished < $5)",
            &[
                Val::from(name),
                Val::from(owner),
                Val::from(lease_until.as_micros()),
                Val::from(now.as_micros()),
                Val::from(not_finished_since.as_micros()),
            ],
        )
        .await?;
    Ok(claimed == 1)
}

/// Records the end of `owner`'s run of `name` and releases the lease.
pub(crate) async fn finish(
    pool: &Pool,
    name: &str,
    owner: &str,
    now: Timestamp,
    outcome: &str,
) -> Result<(), StoreError> {
    pool.execute(
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, last_finished = $3, last_outcome = $4, runs = runs + 1 \
         WHERE name = $1 AND lease_owner = $2",
        &[
            Val::from(name),
            Val::from(owner),
            Val::from(now.as_micros()),
            Val::from(outcome),
        ],
    )
    .await?;
    Ok(())
}

/// Every job's last run.
pub(crate) async fn list(pool: &Pool) -> Result<Vec<JobRow>, StoreError> {
    pool.fetch(
        "SELECT name, lease_owner, last_started, last_finished, last_outcome, runs FROM jobs ORDER BY name",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(JobRow {
            name: r.text("name")?,
            running_on: r.opt_text("lease_owner")?,
            last_started: r.opt_i64("last_started")?.map(ts).transpose()?,
            last_finished: r.opt_i64("last_finished")?.map(ts).transpose()?,
            last_outcome: r.opt_text("last_outcome")?,
            runs: r.i64("runs")?,
        })
    })
    .collect()
}
