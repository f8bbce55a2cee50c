//! `winback-store` owns persistence: [`SqlStore`] on SQLite (the embedded default: one file,
//! WAL) and PostgreSQL (the scale path), with per-backend migrations applied on connect. It
//! implements the port the engine owns (`JourneyStore`); everything else is a plain method,
//! since it has one implementation. The ingest driver writes through [`ImportSink`].
//!
//! Both backends run the same queries through a small dialect layer ([`db`]): the schemas use
//! only 64-bit integers and text, and both drivers take `$1` parameters. Where the databases
//! differ (write locks, bulk loads) the code branches on [`db::Backend`]. This keeps one
//! conformance suite meaningful for both, instead of two hand-kept copies of every query.
//!
//! It also owns [`ingest`]: streaming a parsed file into one import transaction.

pub mod admin;
pub mod bulk;
pub mod calls;
mod consent;
pub mod db;
mod features;
mod hygiene;
pub mod ingest;
mod journeys;
pub use journeys::{
    ArmResult, CampaignCounts, CampaignPerson, FunnelKey, JourneyFlow, MessageFunnel, Outcomes,
    PeopleGroup, PeoplePage, PeopleSegment, PreEntrySums, ProviderRamp, Segment, drop_reason,
    rollup,
};
pub mod jobs;
mod migrate;
mod outcomes;
pub mod privacy;
mod queries;
pub mod responses;
mod rollups;
mod scores;
mod session;
pub mod stay;
pub mod wallet;

use std::collections::HashMap;
use std::future::Future;

use winback_domain::{
    CustomerRecord, EventRecord, ExternalId, LineItem, OrderRecord, ProfileId, Timestamp,
};
use winback_identity::{Identifiers, Resolution};

pub use features::{FactScope, StoredFeatures};
pub use queries::{
    ConsentView, CustomerDetail, CustomerHit, CustomerRow, EventView, LinkView, OrderView,
    ResolutionStats, Summary, SuppressionView,
};
pub use scores::{
    ModelFitRow, RunStats, ScoreFilter, ScoreRow, ScoreRun, ScoredProfile, StageChange,
};
pub use session::{ImportSession, WriteCounts};

use db::{Backend, Pool, Val};
use winback_engine::EngineError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL or options are wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// A migration failed or the schema is not one this version knows.
    #[error("migration: {0}")]
    Migration(String),
    /// The database refused or failed a query.
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// The disk holding the database is full (SQLite's `SQLITE_FULL`, PostgreSQL's
    /// `disk_full`), or too full to open it safely. What was being written is rolled back.
    #[error("the disk holding the database is full: {0}")]
    DiskFull(String),
    /// A stored value could not be encoded or read back.
    #[error("stored data: {0}")]
    Data(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // SQLITE_FULL is 13; PostgreSQL's disk_full is SQLSTATE 53100.
        match e.as_database_error().and_then(|d| d.code()).as_deref() {
            Some("13") | Some("53100") => StoreError::DiskFull(format!(
                "{e}; nothing of this write was stored: free space and run it again"
            )),
            _ => StoreError::Database(e),
        }
    }
}

impl StoreError {
    /// Whether the database aborted the transaction to break a deadlock or a serialization
    /// conflict (PostgreSQL's SQLSTATE `40P01` and `40001`): run whole again, the same
    /// transaction normally goes through. Two workers' writes to the same journeys (a step's
    /// batch and the outcome refresh) met that way at 200,000 customers.
    pub fn is_conflict(&self) -> bool {
        match self {
            StoreError::Database(e) => matches!(
                e.as_database_error().and_then(|d| d.code()).as_deref(),
                Some("40P01") | Some("40001")
            ),
            _ => false,
        }
    }
}

/// Runs `attempt`, one whole transaction, again (at most four tries in all, a short pause
/// between) while it fails with an error `retry` accepts; any other outcome is returned.
pub(crate) async fn retrying<T, E: std::fmt::Display, Fut>(
    retry: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut tries = 1u64;
    loop {
        match attempt().await {
            Err(e) if tries < 4 && retry(&e) => {
                tracing::warn!(error = %e, tries, "the database aborted a transaction to break a conflict; running it again");
                tokio::time::sleep(std::time::Duration::from_millis(20 * tries)).await;
                tries += 1;
            }
            r => return r,
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Data(e.to_string())
    }
}

/// One write transaction for an import. Dropped without `commit`, it rolls back.
pub trait ImportSink: Send {
    /// Upserts customers; `authoritative` values replace stored ones, hints only fill gaps.
    fn upsert_customers(
        &mut self,
        records: &[CustomerRecord],
        authoritative: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Upserts orders with their codes and embedded lines, creating unknown customers.
    fn upsert_orders(
        &mut self,
        orders: &[OrderRecord],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Upserts lines of stored orders; returns the indices whose order is unknown.
    fn upsert_order_items(
        &mut self,
        items: &[(ExternalId, u32, LineItem)],
    ) -> impl Future<Output = Result<Vec<usize>, StoreError>> + Send;
    /// Inserts events once each.
    fn insert_events(
        &mut self,
        events: &[EventRecord],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// What was written so far.
    fn counts(&self) -> &WriteCounts;
    /// Makes the import visible.
    fn commit(self) -> impl Future<Output = Result<WriteCounts, StoreError>> + Send;
    /// Discards the import.
    fn rollback(self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A record of one import, for the audit trail and `winback status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportRun {
    /// What kind of file.
    pub kind: String,
    /// The file.
    pub file: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// Records stored.
    pub rows_ok: u64,
    /// Records refused.
    pub rows_rejected: u64,
    /// `strict`, `skip_invalid`.
    pub mode: String,
}

/// The store on SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: Pool,
    /// Enrolments written since the planner's statistics were last refreshed (PostgreSQL).
    unanalyzed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// This installation's salt for the hashes of erased identities.
    salt: std::sync::Arc<str>,
}

impl SqlStore {
    /// Connects and migrates. `url` is `sqlite://winback.db` or `postgres://user@host/db`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_in_schema(url, None).await
    }

    /// Like [`SqlStore::connect`], confining a PostgreSQL store to `schema` (created if absent).
    pub async fn connect_in_schema(url: &str, pg_schema: Option<&str>) -> Result<Self, StoreError> {
        if let Some(schema) = pg_schema {
            if !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(StoreError::Config(format!(
                    "schema name `{schema}` must be letters, digits and _"
                )));
            }
            let admin = Pool::connect(url, None).await?;
            admin
                .execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"), &[])
                .await?;
            admin.close().await;
        }
        let pool = Pool::connect(url, pg_schema).await?;
        migrate::migrate(&pool).await?;
        let salt = privacy::salt(&pool).await?.into();
        Ok(Self {
            pool,
            unanalyzed: Default::default(),
            salt,
        })
    }

    /// The connection pool, for backend-specific work.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Closes the pool (SQLite checkpoints its WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Claims the schedule's job `name` for `owner` until `lease_until`, unless another worker
    /// holds a live lease or it finished since `not_finished_since`; `true` when this worker
    /// runs it now.
    pub async fn claim_job(
        &self,
        name: &str,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        not_finished_since: Timestamp,
    ) -> Result<bool, StoreError> {
        jobs::claim(
            &self.pool,
            name,
            owner,
            now,
            lease_until,
            not_finished_since,
        )
        .await
    }

    /// Records the end of a job's run (`outcome`: JSON of what it did, or why it failed).
    pub async fn finish_job(
        &self,
        name: &str,
        owner: &str,
        now: Timestamp,
        outcome: &str,
    ) -> Result<(), StoreError> {
        jobs::finish(&self.pool, name, owner, now, outcome).await
    }

    /// The database's clock: what the workers sharing this store can agree on.
    pub async fn database_now(&self) -> Result<Timestamp, StoreError> {
        let sql = match self.pool.backend() {
            db::Backend::Sqlite => {
                "SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000000.0) AS INTEGER)"
            }
            db::Backend::Postgres => {
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"
            }
        };
        let micros = self.pool.fetch(sql, &[]).await?[0].i64(0)?;
        queries::ts(micros)
    }

    /// Whether any customer record awaits a features refresh: one row read, for the worker's
    /// check on every pass (the ids themselves can be millions after a large import).
    pub async fn has_dirty_customers(&self) -> Result<bool, StoreError> {
        Ok(!self
            .pool
            .fetch("SELECT 1 FROM feature_dirty LIMIT 1", &[])
            .await?
            .is_empty())
    }

    /// Every job's last run.
    pub async fn jobs(&self) -> Result<Vec<jobs::JobRow>, StoreError> {
        jobs::list(&self.pool).await
    }

    /// Gives the space of a failed write back: on SQLite, truncates the write-ahead log (a
    /// rolled-back import leaves its pages there, and on a full disk the next open would have
    /// to index them). PostgreSQL needs nothing.
    pub async fn release_space(&self) -> Result<(), StoreError> {
        if self.pool.backend() == db::Backend::Sqlite {
            self.pool
                .fetch("PRAGMA wal_checkpoint(TRUNCATE)", &[])
                .await?;
        }
        Ok(())
    }
}

impl ImportSink for ImportSession {
    async fn upsert_customers(
        &mut self,
        records: &[CustomerRecord],
        authoritative: bool,
    ) -> Result<(), StoreError> {
        ImportSession::upsert_customers(self, records, authoritative).await
    }
    async fn upsert_orders(&mut self, orders: &[OrderRecord]) -> Result<(), StoreError> {
        ImportSession::upsert_orders(self, orders).await
    }
    async fn upsert_order_items(
        &mut self,
        items: &[(ExternalId, u32, LineItem)],
    ) -> Result<Vec<usize>, StoreError> {
        ImportSession::upsert_order_items(self, items).await
    }
    async fn insert_events(&mut self, events: &[EventRecord]) -> Result<(), StoreError> {
        ImportSession::insert_events(self, events).await
    }
    fn counts(&self) -> &WriteCounts {
        ImportSession::counts(self)
    }
    async fn commit(self) -> Result<WriteCounts, StoreError> {
        ImportSession::commit(self).await
    }
    async fn rollback(self) -> Result<(), StoreError> {
        ImportSession::rollback(self).await
    }
}

/// The store's operations used by import, identity resolution, scoring, the report and the
/// CLI. A concrete type rather than a trait: the trait had one implementation and no fake used
/// it. The port that stays is the engine's `JourneyStore`, which the engine owns so that it
/// builds without sqlx.
impl SqlStore {
    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.pool.backend()
    }

    /// Opens an import transaction; `now` stamps what it writes.
    pub async fn begin_import(&self, now: Timestamp) -> Result<ImportSession, StoreError> {
        let mut tx = self.pool.begin().await?;
        if tx.backend() == Backend::Postgres {
            // Imports run one at a time: two order imports with overlapping customers upsert
            // the same rows in different orders and deadlock. The lock is the transaction's
            // (released at commit or rollback); a second import waits for the first. SQLite's
            // `BEGIN IMMEDIATE` already serialises writers.
            tx.execute("SELECT pg_advisory_xact_lock(7201500017)", &[])
                .await?;
        }
        Ok(ImportSession::new(
            tx,
            now,
            self.pool.clone(),
            self.salt.clone(),
        ))
    }

    /// Records a finished import.
    pub async fn record_import_run(&self, run: &ImportRun) -> Result<(), StoreError> {
        self.pool
            .execute(
                "INSERT INTO import_runs (kind, file, started_at, finished_at, rows_ok, rows_rejected, mode) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    Val::from(run.kind.as_str()),
                    Val::from(run.file.as_str()),
                    Val::from(run.started_at.as_micros()),
                    Val::from(run.finished_at.as_micros()),
                    Val::from(run.rows_ok as i64),
                    Val::from(run.rows_rejected as i64),
                    Val::from(run.mode.as_str()),
                ],
            )
            .await?;
        Ok(())
    }

    /// The identifiers of every customer record, for identity resolution.
    pub async fn identifiers(&self) -> Result<Vec<Identifiers>, StoreError> {
        queries::identifiers(&self.pool).await
    }

    /// Stores a resolution: profile ids, links and skipped keys, atomically.
    pub async fn save_resolution(
        &self,
        resolution: &Resolution,
        now: Timestamp,
    ) -> Result<ResolutionStats, StoreError> {
        queries::save_resolution(&self.pool, resolution, now).await
    }

    /// Counts and data-quality figures of the whole store.
    pub async fn summary(&self) -> Result<Summary, StoreError> {
        queries::summary(&self.pool).await
    }

    /// One merged profile by customer id, external id or email, with why it was merged.
    pub async fn customer_detail(&self, key: &str) -> Result<Option<CustomerDetail>, StoreError> {
        queries::customer_detail(&self.pool, key).await
    }

    /// Customer records (not erased) whose customer id matches `q` whole and case-insensitively,
    /// whose name or email contains it (case-insensitively), or whose phone ends in the same
    /// last nine digits; at most `limit`, by record id. Name and email parts scan the table.
    pub async fn search_customers(
        &self,
        q: &str,
        limit: i64,
    ) -> Result<Vec<CustomerHit>, StoreError> {
        queries::search_customers(&self.pool, q, limit).await
    }

    /// Saves a scoring run given whole: every profile's score, the stage changes, and the stage
    /// shares (a run of a large base is saved a page at a time with
    /// [`SqlStore::begin_score_run`]).
    pub async fn save_scores(
        &self,
        at: Timestamp,
        models: &serde_json::Value,
        rows: &[ScoreRow],
    ) -> Result<RunStats, StoreError> {
        scores::save_run(&self.pool, at, models, rows).await
    }

    /// Starts a scoring run with the models it scores by.
    pub async fn begin_score_run(
        &self,
        at: Timestamp,
        models: &serde_json::Value,
    ) -> Result<ScoreRun, StoreError> {
        scores::begin_run(&self.pool, at, models).await
    }

    /// Writes one page of a run's scores (a range of profiles, each once) with their stage
    /// changes, in one transaction.
    pub async fn write_scores(
        &self,
        run: &mut ScoreRun,
        rows: &[ScoreRow],
    ) -> Result<(), StoreError> {
        scores::write_run(&self.pool, run, rows).await
    }

    /// Finishes a run: drops the scores of profiles merged away or erased, and records its
    /// size, segment moves and stage shares.
    pub async fn finish_score_run(&self, run: ScoreRun) -> Result<RunStats, StoreError> {
        scores::finish_run(&self.pool, run).await
    }

    /// A profile's latest score.
    pub async fn latest_score(
        &self,
        profile_id: ProfileId,
    ) -> Result<Option<ScoreRow>, StoreError> {
        let profile_id = profile_id.get();
        scores::latest_score(&self.pool, profile_id).await
    }

    /// A profile's stage changes, oldest first.
    pub async fn stage_history(
        &self,
        profile_id: ProfileId,
    ) -> Result<Vec<StageChange>, StoreError> {
        let profile_id = profile_id.get();
        scores::stage_history(&self.pool, profile_id).await
    }

    /// Scored profiles matching the filter, by predicted value or by priority.
    pub async fn list_scored(
        &self,
        filter: &ScoreFilter,
    ) -> Result<Vec<ScoredProfile>, StoreError> {
        scores::list_scored(&self.pool, filter).await
    }
    /// RFM segment moves between the latest run and the one before: (from, to, profiles).
    pub async fn segment_migration(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        scores::segment_migration(&self.pool).await
    }
    /// Persists a model fit.
    pub async fn save_model_fit(&self, fit: &ModelFitRow) -> Result<(), StoreError> {
        scores::save_model_fit(&self.pool, fit).await
    }
    /// The latest fit of each model, by model name.
    pub async fn latest_model_fits(&self) -> Result<Vec<ModelFitRow>, StoreError> {
        scores::latest_model_fits(&self.pool).await
    }
    /// The latest instant the data was written for (the latest scoring run or import), `None`
    /// in an empty store. A simulated programme runs ahead of the clock; see
    /// `winback_report::as_of`.
    pub async fn data_horizon(&self) -> Result<Option<Timestamp>, StoreError> {
        scores::data_horizon(&self.pool).await
    }

    /// The share of the base in each stage per run: (run time, stage, profiles).
    pub async fn stage_shares(&self) -> Result<Vec<(Timestamp, String, i64)>, StoreError> {
        scores::stage_shares(&self.pool).await
    }

    /// External ids of records merged into another record's profile, oldest first.
    pub async fn merged_records(&self, limit: i64) -> Result<Vec<String>, StoreError> {
        queries::merged_records(&self.pool, limit).await
    }

    /// The orders, signals and email permission of the profiles in `scope`, in one streaming
    /// scan per table: the input of feature computation.
    pub async fn profile_facts(
        &self,
        scope: FactScope,
    ) -> Result<winback_domain::FactSet, StoreError> {
        features::profile_facts(&self.pool, scope).await
    }
    /// The scan of all profiles (or only those with a stale mark) cut into chunks of at most
    /// `profiles` profiles each, in id order: a scan that reads them one chunk at a time with
    /// [`SqlStore::profile_facts`] holds one chunk's facts in memory, whatever the shop's size.
    pub async fn fact_chunks(
        &self,
        dirty_only: bool,
        profiles: usize,
    ) -> Result<Vec<FactScope>, StoreError> {
        let ids = features::fact_profiles(&self.pool, dirty_only).await?;
        Ok(ids
            .chunks(profiles.max(1))
            .filter_map(|c| {
                Some(FactScope::Profiles {
                    first: *c.first()?,
                    last: *c.last()?,
                    dirty_only,
                })
            })
            .collect())
    }
    /// Writes features (JSON per profile) over the stored ones, atomically; marks and other
    /// rows stay (a chunk of a refresh; [`SqlStore::save_features`] ends it).
    pub async fn upsert_features(
        &self,
        computed_at: Timestamp,
        features: &[winback_domain::Features],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        features::upsert_features(&mut tx, computed_at, features).await?;
        tx.commit().await
    }
    /// The profile ids a scan of the marked profiles (`dirty_only`) or of all covers,
    /// ascending.
    pub async fn fact_profile_ids(&self, dirty_only: bool) -> Result<Vec<i64>, StoreError> {
        features::fact_profiles(&self.pool, dirty_only).await
    }
    /// Marks customer records (a profile's id is its own record's) for a feature refresh from
    /// their facts.
    pub async fn mark_for_refresh(&self, records: &[i64]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        features::mark_dirty(&mut tx, records).await?;
        tx.commit().await
    }
    /// Customer records whose features are stale (an import or resolution touched them).
    pub async fn dirty_customers(&self) -> Result<Vec<i64>, StoreError> {
        features::dirty_customers(&self.pool).await
    }
    /// Saves features (JSON per profile) and clears the given stale marks, atomically;
    /// `replace_all` drops every other stored row first (a full recomputation).
    pub async fn save_features(
        &self,
        computed_at: Timestamp,
        features: &[winback_domain::Features],
        cleared: &[i64],
        replace_all: bool,
    ) -> Result<(), StoreError> {
        features::save_features(&self.pool, computed_at, features, cleared, replace_all).await
    }
    /// Ends a scan of the whole base written page by page with
    /// [`SqlStore::upsert_features`]: drops the rows of profiles merged away or erased and
    /// clears the given marks, atomically.
    pub async fn prune_features(&self, cleared: &[i64]) -> Result<(), StoreError> {
        features::prune_features(&self.pool, cleared).await
    }
    /// The stored features of existing profiles with ids above `after`, ascending, at most
    /// `limit`, with who each is: one keyset page of a scan of the whole base.
    pub async fn features_page(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredFeatures>, StoreError> {
        features::features_page(&self.pool, after, limit).await
    }
    /// A profile's stored features: when they were computed, and the JSON.
    pub async fn features_of(
        &self,
        profile_id: ProfileId,
    ) -> Result<Option<(Timestamp, String)>, StoreError> {
        let profile_id = profile_id.get();
        features::features_of(&self.pool, profile_id).await
    }

    /// Customers, one row per merged profile, in id order, from `after` on.
    pub async fn list_profiles(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<CustomerRow>, StoreError> {
        queries::list_profiles(&self.pool, after, limit).await
    }
}

/// Privacy: retention, erasure, access, objection, audit and hygiene (see [`privacy`]).
impl SqlStore {
    /// People whose latest customer-originated activity is before `cutoff`, oldest first;
    /// `notice` = (notice campaign, sent after) marks those still waiting for an answer;
    /// `activity`: the event types that count as the person's own doing.
    pub async fn retention_candidates(
        &self,
        cutoff: Timestamp,
        notice: Option<(&str, Timestamp)>,
        activity: &[&str],
    ) -> Result<Vec<privacy::RetentionCandidate>, StoreError> {
        privacy::retention_candidates(&self.pool, cutoff, notice, activity).await
    }

    /// The latest customer-originated activity of every person.
    pub async fn last_activity(
        &self,
        activity: &[&str],
    ) -> Result<std::collections::HashMap<i64, privacy::Activity>, StoreError> {
        privacy::last_activity(&self.pool, activity).await
    }

    /// Starts a privacy run (retention, erasure, objection, export) and returns its id.
    pub async fn begin_privacy_run(
        &self,
        kind: &str,
        dry_run: bool,
        settings: &serde_json::Value,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        privacy::begin_run(&self.pool, kind, dry_run, settings, now).await
    }

    /// Ends a privacy run.
    pub async fn finish_privacy_run(
        &self,
        run_id: i64,
        affected: i64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        privacy::finish_run(&self.pool, run_id, affected, now).await
    }

    /// Adds one person to a run's audit trail.
    pub async fn privacy_audit(
        &self,
        run_id: i64,
        profile_id: ProfileId,
        action: &str,
        reason: &str,
        last_activity: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let profile_id = profile_id.get();
        privacy::audit(
            &self.pool,
            run_id,
            profile_id,
            action,
            reason,
            last_activity,
            now,
        )
        .await
    }

    /// The latest privacy runs and audit entries.
    pub async fn privacy_log(
        &self,
        limit: i64,
    ) -> Result<(Vec<privacy::PrivacyRun>, Vec<privacy::AuditEntry>), StoreError> {
        privacy::audit_log(&self.pool, limit).await
    }

    /// The profile a customer id, external id, email address or +phone names (not erased).
    pub async fn find_profile(&self, key: &str) -> Result<Option<ProfileId>, StoreError> {
        Ok(privacy::find_profile(&self.pool, key)
            .await?
            .map(ProfileId::new))
    }

    /// Erases one person (anonymises; see [`privacy`]); `None` when already erased or unknown.
    pub async fn erase_profile(
        &self,
        profile_id: ProfileId,
        run_id: i64,
        reason: &str,
        last_activity: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Option<privacy::Erased>, StoreError> {
        let profile_id = profile_id.get();
        privacy::erase_profile(
            &self.pool,
            &self.salt,
            profile_id,
            run_id,
            reason,
            last_activity,
            now,
        )
        .await
    }

    /// Objection to direct marketing: withdraws every channel at once; returns the queued
    /// messages dropped.
    pub async fn object(
        &self,
        profile_id: ProfileId,
        run_id: i64,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let profile_id = profile_id.get();
        privacy::object(&self.pool, profile_id, run_id, now).await
    }

    /// Handles an access, erasure or objection request as one audited privacy run.
    pub async fn privacy_request(
        &self,
        request: privacy::Request,
        profile_id: ProfileId,
        origin: &str,
        now: Timestamp,
    ) -> Result<privacy::Outcome, StoreError> {
        let profile_id = profile_id.get();
        privacy::request(&self.pool, &self.salt, request, profile_id, origin, now).await
    }

    /// Everything stored about one person, as JSON.
    pub async fn export_profile(
        &self,
        profile_id: ProfileId,
    ) -> Result<serde_json::Value, StoreError> {
        let profile_id = profile_id.get();
        privacy::export_profile(&self.pool, profile_id).await
    }

    /// The list-hygiene report.
    pub async fn hygiene(&self, now: Timestamp) -> Result<privacy::Hygiene, StoreError> {
        privacy::hygiene(&self.pool, now).await
    }

    /// Whether an address of a channel belongs to an erased person.
    pub async fn is_erased_address(
        &self,
        channel: &str,
        address: &str,
    ) -> Result<bool, StoreError> {
        let Some(hash) = privacy::address_hash(&self.salt, channel, address) else {
            return Ok(false);
        };
        Ok(!self
            .pool
            .fetch(
                "SELECT 1 FROM erased_identities WHERE hash = $1",
                &[Val::from(hash)],
            )
            .await?
            .is_empty())
    }
}

/// Responses from contacts and other systems (see [`responses`]).
impl SqlStore {
    /// The sent message an idempotency key names.
    pub async fn message(&self, key: &str) -> Result<Option<responses::MessageRef>, StoreError> {
        responses::message(&self.pool, key).await
    }

    /// The external id events are stored against, per message key, for the messages of `keys`
    /// the store has and whose person is not erased (one query per thousand keys).
    pub async fn message_customers(
        &self,
        keys: &[&str],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        responses::message_customers(&self.pool, keys).await
    }

    /// The message a bounce or complaint report names by a prefix of its key digest (the VERP
    /// tag of the envelope sender, or the hash in its `Message-ID`); `recipient` finds messages
    /// stored before digests were kept.
    pub async fn message_by_digest(
        &self,
        prefix: &str,
        recipient: Option<&str>,
    ) -> Result<Option<responses::MessageRef>, StoreError> {
        responses::message_by_digest(&self.pool, prefix, recipient).await
    }

    /// Which of these event keys (`id:SOURCE`, see `EventRecord::natural_key`) are stored
    /// already: a provider report read twice must not count a soft bounce twice.
    pub async fn stored_event_keys(
        &self,
        keys: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        responses::stored_event_keys(&self.pool, keys).await
    }

    /// Sets click destinations by link id.
    pub async fn set_links(
        &self,
        links: &[(String, String)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        responses::set_links(&self.pool, links, now).await
    }

    /// The destination of a link id.
    pub async fn link(&self, name: &str) -> Result<Option<String>, StoreError> {
        responses::link(&self.pool, name).await
    }

    /// Tags a profile; `false` when it had the tag already.
    pub async fn add_tag(
        &self,
        profile_id: ProfileId,
        tag: &str,
        source: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let profile_id = profile_id.get();
        responses::add_tag(&self.pool, profile_id, tag, source, now).await
    }

    /// A profile's preferences and channel consent.
    pub async fn preferences(
        &self,
        profile_id: ProfileId,
    ) -> Result<responses::Preferences, StoreError> {
        let profile_id = profile_id.get();
        responses::preferences(&self.pool, profile_id).await
    }

    /// Stores the preference centre's choices; channel changes go to the consent ledger.
    pub async fn set_preferences(
        &self,
        profile_id: ProfileId,
        prefs: &responses::Preferences,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let profile_id = profile_id.get();
        responses::set_preferences(&self.pool, profile_id, prefs, now).await
    }

    /// Puts an address on the suppression list.
    pub async fn suppress(
        &self,
        channel: &str,
        address: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        responses::suppress_address(&self.pool, channel, address, reason, now).await
    }

    /// Counts a soft bounce; the fourth (`winback_engine::policy::SOFT_BOUNCES_SUPPRESS`)
    /// suppresses the address (returns `true` then).
    pub async fn soft_bounce(
        &self,
        channel: &str,
        address: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        responses::soft_bounce_address(&self.pool, channel, address, now).await
    }

    /// Whether an address is suppressed.
    pub async fn is_suppressed(&self, channel: &str, address: &str) -> Result<bool, StoreError> {
        responses::is_suppressed(&self.pool, channel, address).await
    }

    /// An SMS STOP reply: suppresses the number and withdraws SMS consent of every record with
    /// it, once per provider message id.
    pub async fn sms_stop(
        &self,
        provider_id: &str,
        number: &str,
        body: &str,
        now: Timestamp,
    ) -> Result<responses::StopOutcome, StoreError> {
        responses::sms_stop(&self.pool, provider_id, number, body, now).await
    }

    /// Stores a new API key's hash; returns its id.
    pub async fn create_api_key(
        &self,
        name: &str,
        prefix: &str,
        hash: &str,
        scopes: &[String],
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        responses::create_api_key(&self.pool, name, prefix, hash, scopes, now).await
    }

    /// The unrevoked key with this hash.
    pub async fn api_key_by_hash(
        &self,
        hash: &str,
        now: Timestamp,
    ) -> Result<Option<responses::ApiKeyRow>, StoreError> {
        responses::api_key_by_hash(&self.pool, hash, now).await
    }

    /// Every key, revoked ones included.
    pub async fn api_keys(&self) -> Result<Vec<responses::ApiKeyRow>, StoreError> {
        responses::api_keys(&self.pool).await
    }

    /// Revokes keys by prefix or name; returns how many.
    pub async fn revoke_api_key(
        &self,
        name_or_prefix: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        responses::revoke_api_key(&self.pool, name_or_prefix, now).await
    }

    /// Claims an Idempotency-Key for a request.
    pub async fn idempotency_begin(
        &self,
        key_id: i64,
        key: &str,
        request_hash: &str,
        now: Timestamp,
    ) -> Result<responses::Idempotency, StoreError> {
        responses::idempotency_begin(&self.pool, key_id, key, request_hash, now).await
    }

    /// Stores the response for replay, or (with `None`) releases the key after a failure.
    pub async fn idempotency_finish(
        &self,
        key_id: i64,
        key: &str,
        response: Option<(u16, &str)>,
    ) -> Result<(), StoreError> {
        responses::idempotency_finish(&self.pool, key_id, key, response).await
    }

    /// The contacts a campaign's export steps added for `target` that the destination's legal
    /// `basis` lets go into its file, and how many it left out.
    pub async fn audience_members(
        &self,
        campaign_id: winback_domain::CampaignId,
        target: &str,
        basis: winback_domain::LegalBasis,
        now: Timestamp,
    ) -> Result<winback_engine::ports::AudienceFile, StoreError> {
        responses::audience_members(&self.pool, campaign_id, target, basis, now).await
    }

    /// The open tasks of call list `list`, checked now (see [`calls`]).
    pub async fn call_list(
        &self,
        list: &str,
        settings: &calls::CallSettings,
        now: Timestamp,
    ) -> Result<calls::CallList, StoreError> {
        calls::call_list(&self.pool, list, settings, now).await
    }

    /// Records an agent's outcome for a call task (see [`calls`]).
    pub async fn record_call_outcome(
        &self,
        report: &calls::CallReport,
        settings: &calls::CallSettings,
        now: Timestamp,
    ) -> Result<Result<calls::CallRecorded, calls::CallRefused>, StoreError> {
        calls::record(&self.pool, report, settings, now).await
    }

    /// Records several outcomes in one transaction: all, or none when one is refused.
    pub async fn record_call_outcomes(
        &self,
        reports: &[calls::CallReport],
        settings: &calls::CallSettings,
        now: Timestamp,
    ) -> Result<Result<Vec<calls::CallRecorded>, (usize, calls::CallRefused)>, StoreError> {
        calls::record_all(&self.pool, reports, settings, now).await
    }

    /// The wallet pass with this serial, with its offer.
    pub async fn wallet_pass(
        &self,
        serial: &str,
    ) -> Result<Option<wallet::StoredPass>, StoreError> {
        wallet::pass(&self.pool, serial).await
    }

    /// Registers a device for a pass's updates (`None`: no such pass; `Some(true)`: added to a
    /// wallet just now).
    pub async fn register_wallet_device(
        &self,
        device: &str,
        serial: &str,
        push_token: &str,
        now: Timestamp,
    ) -> Result<Option<bool>, StoreError> {
        wallet::register(&self.pool, device, serial, push_token, now).await
    }

    /// Unregisters a device from a pass (removed from that wallet).
    pub async fn unregister_wallet_device(
        &self,
        device: &str,
        serial: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        wallet::unregister(&self.pool, device, serial, now).await
    }

    /// The passes on a device that changed after `since` (micros), and the newest change.
    pub async fn wallet_updated_since(
        &self,
        device: &str,
        since: Option<i64>,
    ) -> Result<(Vec<String>, Option<i64>), StoreError> {
        wallet::updated_since(&self.pool, device, since).await
    }

    /// Pushes due to devices whose passes changed.
    pub async fn wallet_pushes_due(
        &self,
        limit: usize,
    ) -> Result<Vec<wallet::DuePush>, StoreError> {
        wallet::pushes_due(&self.pool, limit).await
    }

    /// Passes whose Google Wallet object is behind.
    pub async fn wallet_google_due(
        &self,
        limit: usize,
    ) -> Result<Vec<wallet::StoredPass>, StoreError> {
        wallet::google_due(&self.pool, limit).await
    }

    /// Records that a pass's Google object shows `version`.
    pub async fn wallet_google_synced(&self, serial: &str, version: i64) -> Result<(), StoreError> {
        wallet::google_synced(&self.pool, serial, version).await
    }

    /// Records an accepted push.
    pub async fn wallet_pushed(&self, push: &wallet::DuePush) -> Result<(), StoreError> {
        wallet::pushed(&self.pool, push).await
    }

    /// A campaign's wallet passes issued in `[from, until)`: issued, added, updated, removed,
    /// redeemed.
    pub async fn wallet_counts(
        &self,
        campaign_id: winback_domain::CampaignId,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<wallet::WalletCounts, StoreError> {
        wallet::counts(&self.pool, campaign_id.get(), from, until).await
    }

    /// Every campaign arm's wallet passes: issued, added, updated.
    pub async fn wallet_tallies(&self) -> Result<Vec<wallet::WalletTally>, StoreError> {
        wallet::tallies(&self.pool).await
    }

    /// Every campaign arm's calls: listed, reached, accepted.
    pub async fn call_tallies(&self) -> Result<Vec<calls::CallTally>, StoreError> {
        calls::tallies(&self.pool).await
    }

    /// The open task of `list` for the customer with this external id.
    pub async fn open_call_task(
        &self,
        list: &str,
        external_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        calls::open_task_of(&self.pool, list, external_id).await
    }

    /// The profile and its external id for an email match key.
    pub async fn customer_by_email_key(
        &self,
        email_key: &str,
    ) -> Result<Option<(i64, String)>, StoreError> {
        responses::customer_by_email_key(&self.pool, email_key).await
    }
}

impl SqlStore {
    /// Records a shop-wide signal such as `assortment_updated`: waits on `custom:NAME` end.
    pub async fn signal(&self, name: &str, at: Timestamp) -> Result<(), StoreError> {
        journeys::signal(&self.pool, name, at).await
    }

    /// Each arm of a campaign (variants and holdout) with conversions within `window_seconds`.
    pub async fn campaign_results(
        &self,
        campaign_id: winback_domain::CampaignId,
        window_seconds: i64,
    ) -> Result<Vec<ArmResult>, StoreError> {
        Ok(journeys::campaign_results(
            &self.pool,
            campaign_id,
            window_seconds,
            (i64::MIN, i64::MAX),
            &[],
            Outcomes::StoredWhereExact,
        )
        .await?
        .0)
    }

    /// Like [`SqlStore::campaign_results`], for the contacts who entered in `[from, until)`.
    pub async fn campaign_results_between(
        &self,
        campaign_id: winback_domain::CampaignId,
        window_seconds: i64,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<ArmResult>, StoreError> {
        Ok(self
            .campaign_arms(
                campaign_id,
                window_seconds,
                (from, until),
                &[],
                Outcomes::StoredWhereExact,
            )
            .await?
            .0)
    }

    /// [`SqlStore::campaign_results_between`] and, for each of `by`, the arms per segment
    /// (locale or mailbox provider): (segment, arm). One scan of the campaign's enrolments
    /// serves them all. Messages and offers are not split by segment. Reports read
    /// [`Outcomes::StoredWhereExact`]; [`Outcomes::Recomputed`] is the definition the stored
    /// outcomes are checked against (the store's test `outcomes`, on both backends).
    #[allow(clippy::type_complexity)]
    pub async fn campaign_arms(
        &self,
        campaign_id: winback_domain::CampaignId,
        window_seconds: i64,
        (from, until): (Timestamp, Timestamp),
        by: &[Segment],
        outcomes: Outcomes,
    ) -> Result<(Vec<ArmResult>, Vec<Vec<(String, ArmResult)>>), StoreError> {
        let range = (from.as_micros(), until.as_micros());
        journeys::campaign_results(&self.pool, campaign_id, window_seconds, range, by, outcomes)
            .await
    }

    /// Recomputes the stored outcome (orders and revenue in the conversion window) of every
    /// enrolment whose contact's orders or records changed since, or that has none yet, for
    /// each `(campaign id, window in seconds)`; returns how many it recomputed. Readers are
    /// exact without it (they compute what is not stored exactly); it keeps what they compute
    /// small. The worker runs it after each pass, and ingests after each file. Give every
    /// campaign: the marks it clears are the whole store's.
    pub async fn refresh_outcomes(
        &self,
        windows: &[(winback_domain::CampaignId, i64)],
    ) -> Result<u64, StoreError> {
        let windows: Vec<(i64, i64)> = windows.iter().map(|(c, w)| (c.get(), *w)).collect();
        // Its marks are taken inside the transaction, so an aborted run leaves them in place.
        retrying(StoreError::is_conflict, || {
            outcomes::refresh(&self.pool, &windows)
        })
        .await
    }

    /// Recomputes the list hygiene's per-profile rows (last engagement or first-seen address)
    /// of the profiles whose records changed since, and clears their marks, in one transaction;
    /// returns how many it recomputed. The hygiene report is exact without it (it recomputes
    /// the marked profiles on reading); this keeps that small. The worker runs it after each
    /// pass, and ingests after each file.
    pub async fn refresh_hygiene(&self) -> Result<u64, StoreError> {
        hygiene::refresh(&self.pool).await
    }

    /// Each arm's contacts, buyers and revenue within the window per segment (locale or
    /// mailbox provider), for the contacts who entered in `[from, until)`: (segment, arm).
    /// Messages and offers are not split (see [`SqlStore::campaign_results_between`]).
    pub async fn segment_results(
        &self,
        campaign_id: winback_domain::CampaignId,
        window_seconds: i64,
        from: Timestamp,
        until: Timestamp,
        by: Segment,
    ) -> Result<Vec<(String, ArmResult)>, StoreError> {
        Ok(journeys::segment_results(
            &self.pool,
            campaign_id,
            window_seconds,
            (from.as_micros(), until.as_micros()),
            &[by],
            Outcomes::StoredWhereExact,
        )
        .await?
        .pop()
        .unwrap_or_default())
    }

    /// "Did they stay?": the campaign's reactivated customers after their return, against
    /// holdout returners and never-lapsed customers (see [`stay`]).
    pub async fn stay(
        &self,
        campaign_id: winback_domain::CampaignId,
        window_seconds: i64,
        now: Timestamp,
    ) -> Result<stay::Stay, StoreError> {
        let mut all = stay::stays(&self.pool, &[(campaign_id, window_seconds)], now).await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// [`SqlStore::stay`] for several `(campaign id, window in seconds)` at once, in their order;
    /// the orders and scores all cohorts are followed through are read once.
    pub async fn stays(
        &self,
        campaigns: &[(winback_domain::CampaignId, i64)],
        now: Timestamp,
    ) -> Result<Vec<stay::Stay>, StoreError> {
        stay::stays(&self.pool, campaigns, now).await
    }

    /// Message outcomes of a campaign per step, variant and channel (see [`MessageFunnel`]),
    /// for messages queued in the UTC days covering `[from, until)` (the rollups' grain is a
    /// day; reports and the dashboard ask for whole days).
    pub async fn message_funnel(
        &self,
        campaign_id: winback_domain::CampaignId,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<MessageFunnel>, StoreError> {
        let detail = self.message_funnel_detail(campaign_id, from, until).await?;
        Ok(journeys::rollup(&detail, FunnelKey::StepVariantChannel))
    }

    /// Message outcomes per step, variant, channel, locale and mailbox provider; sum them with
    /// [`rollup`].
    pub async fn message_funnel_detail(
        &self,
        campaign_id: winback_domain::CampaignId,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<MessageFunnel>, StoreError> {
        let mut all = rollups::message_funnels(
            &self.pool,
            Some(campaign_id),
            (from.as_micros(), until.as_micros()),
        )
        .await?;
        Ok(all.remove(&campaign_id).unwrap_or_default())
    }

    /// [`SqlStore::message_funnel_detail`] of every campaign at once, by campaign id (campaigns
    /// without messages in the range are absent). It reads the engagement events once.
    pub async fn message_funnel_details(
        &self,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<HashMap<winback_domain::CampaignId, Vec<MessageFunnel>>, StoreError> {
        rollups::message_funnels(&self.pool, None, (from.as_micros(), until.as_micros())).await
    }

    /// [`SqlStore::message_funnel_details`] recomputed from every message and every engagement
    /// event instead of the rollups: slow at a large shop, and the definition the rollups are
    /// checked against (the store's test `rollups`, on both backends).
    pub async fn message_funnel_details_recomputed(
        &self,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<HashMap<winback_domain::CampaignId, Vec<MessageFunnel>>, StoreError> {
        journeys::message_funnels_recomputed(
            &self.pool,
            None,
            (from.as_micros(), until.as_micros()),
        )
        .await
    }

    /// Moves the rollups' pending deltas into their folded rows; returns how many it moved.
    /// Readers add both, so this changes no figure: it keeps what a reader adds up small. The
    /// worker calls it after each pass and the imports after each file.
    pub async fn fold_rollups(&self) -> Result<u64, StoreError> {
        rollups::fold(&self.pool).await
    }

    /// Every mailbox provider's ramp: share admitted, paused reason, and the attempts, hard
    /// bounces and complaints of its breaker window.
    pub async fn provider_ramps(&self) -> Result<Vec<journeys::ProviderRamp>, StoreError> {
        journeys::provider_ramps(&self.pool).await
    }

    /// Enrolments and messages by state, per campaign.
    #[allow(clippy::type_complexity)]
    pub async fn campaign_counts(&self) -> Result<Vec<journeys::CampaignCounts>, StoreError> {
        journeys::campaign_counts(&self.pool).await
    }

    /// A campaign's dropped messages by reason (`no_consent`, `suppressed`, `erased`, `cap`,
    /// `expired`, `no_address`, `journey_ended`), for messages queued in the UTC days covering
    /// `[from, until)`.
    pub async fn drop_reasons(
        &self,
        campaign_id: winback_domain::CampaignId,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let mut all = rollups::drop_reasons(
            &self.pool,
            Some(campaign_id),
            (from.as_micros(), until.as_micros()),
        )
        .await?;
        Ok(all.remove(&campaign_id).unwrap_or_default())
    }

    /// The people behind one of a campaign's counts (see [`PeopleGroup`]), in one segment (see
    /// [`PeopleSegment`]), among the contacts who entered in `[from, until)`, oldest entry
    /// first: the [`PeoplePage`] asked for, and for a numbered page how many there are in all.
    pub async fn campaign_people(
        &self,
        campaign_id: winback_domain::CampaignId,
        window_seconds: i64,
        (from, until): (Timestamp, Timestamp),
        who: (PeopleGroup, &PeopleSegment),
        page: PeoplePage,
    ) -> Result<(Vec<CampaignPerson>, Option<i64>), StoreError> {
        journeys::campaign_people(
            &self.pool,
            campaign_id,
            window_seconds,
            (from.as_micros(), until.as_micros()),
            who,
            page,
        )
        .await
    }

    /// The first and the last entry into a campaign in `[from, until)`, `None` when nobody
    /// entered then.
    pub async fn entry_span(
        &self,
        campaign_id: winback_domain::CampaignId,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<Option<(Timestamp, Timestamp)>, StoreError> {
        let rows = self
            .pool
            .fetch(
                "SELECT MIN(entered_at) AS first, MAX(entered_at) AS last FROM enrolments \
                 WHERE campaign_id = $1 AND entered_at >= $2 AND entered_at < $3",
                &[
                    Val::from(campaign_id),
                    Val::from(from.as_micros()),
                    Val::from(until.as_micros()),
                ],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let time = |v: Option<i64>| v.and_then(Timestamp::from_micros);
        Ok(time(r.opt_i64("first")?).zip(time(r.opt_i64("last")?)))
    }

    /// Where the contacts who entered version `version` of a campaign in `[from, until)` are
    /// in its journey, and what they chose at its branches and event waits.
    pub async fn journey_flow(
        &self,
        campaign_id: winback_domain::CampaignId,
        version: i64,
        (from, until): (Timestamp, Timestamp),
    ) -> Result<JourneyFlow, StoreError> {
        let range = [
            Val::from(campaign_id),
            Val::from(from.as_micros()),
            Val::from(until.as_micros()),
            Val::from(version),
        ];
        let mut flow = JourneyFlow {
            version,
            ..JourneyFlow::default()
        };
        for r in self
            .pool
            .fetch(
                "SELECT version, step, state, COUNT(*) AS n FROM enrolments \
                 WHERE campaign_id = $1 AND entered_at >= $2 AND entered_at < $3 AND holdout = 0 \
                 GROUP BY version, step, state",
                &range[..3],
            )
            .await?
        {
            let n = r.i64("n")?;
            if r.i64("version")? != version {
                flow.other_versions += n;
                continue;
            }
            flow.entered += n;
            let step = usize::try_from(r.i64("step")?).unwrap_or(usize::MAX);
            let (here, left) = flow.at_step.entry(step).or_default();
            match r.text("state")?.as_str() {
                "active" => *here += n,
                "exited" => *left += n,
                // Completed journeys keep the step they were claimed at; they passed every
                // edge on their way to the end, so they count on none of the steps.
                _ => {}
            }
        }
        flow.at_step.retain(|_, (here, left)| *here + *left > 0);
        flow.decisions = self
            .pool
            .fetch(
                "SELECT l.step AS a, l.what AS b, COUNT(*) AS n FROM enrolments e \
                 JOIN journey_log l ON l.enrolment_id = e.id \
                 WHERE e.campaign_id = $1 AND e.entered_at >= $2 AND e.entered_at < $3 AND e.version = $4 \
                 GROUP BY l.step, l.what ORDER BY l.step, l.what",
                &range,
            )
            .await?
            .iter()
            .map(|r| Ok((r.text("a")?, r.text("b")?, r.i64("n")?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(flow)
    }

    /// Messages accepted for the contacts who entered a campaign in `[from, until)`, by
    /// (variant, channel), whenever they were sent: what a cohort's messages cost.
    pub async fn cohort_messages(
        &self,
        campaign_id: winback_domain::CampaignId,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.counted_pairs(
            "SELECT o.variant AS a, o.channel AS b, COUNT(*) AS n FROM enrolments e \
             JOIN outbox o ON o.enrolment_id = e.id \
             WHERE e.campaign_id = $1 AND e.entered_at >= $2 AND e.entered_at < $3 AND o.state = 'sent' \
             GROUP BY o.variant, o.channel ORDER BY o.variant, o.channel",
            campaign_id,
            (from, until),
        )
        .await
    }

    /// Runs a query of one campaign over `[from, until)` (parameters 1 to 3) that returns
    /// `a`, `b` and a count `n`.
    async fn counted_pairs(
        &self,
        sql: &str,
        campaign_id: winback_domain::CampaignId,
        (from, until): (Timestamp, Timestamp),
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.pool
            .fetch(
                sql,
                &[
                    Val::from(campaign_id),
                    Val::from(from.as_micros()),
                    Val::from(until.as_micros()),
                ],
            )
            .await?
            .iter()
            .map(|r| Ok((r.text("a")?, r.text("b")?, r.i64("n")?)))
            .collect()
    }

    /// People a campaign handed to ad audiences or print, per (step, target), added in
    /// `[from, until)`: what its export steps reached outside the outbox.
    pub async fn audience_export_counts(
        &self,
        campaign_id: winback_domain::CampaignId,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.counted_pairs(
            "SELECT step AS a, target AS b, COUNT(*) AS n FROM audience_exports \
             WHERE campaign_id = $1 AND added_at >= $2 AND added_at < $3 \
             GROUP BY step, target ORDER BY step, target",
            campaign_id,
            (from, until),
        )
        .await
    }

    /// For each profile of `profiles`: its orders that count (not cancelled or refunded) and
    /// the latest of them, for listings.
    pub async fn order_summary(
        &self,
        profiles: &[i64],
    ) -> Result<HashMap<i64, (i64, Option<Timestamp>)>, StoreError> {
        let mut out = HashMap::new();
        for chunk in profiles.chunks(2000) {
            let args: Vec<Val> = chunk.iter().map(|p| Val::from(*p)).collect();
            let list = db::in_list(chunk.len());
            for r in self
                .pool
                .fetch(
                    &format!(
                        "SELECT COALESCE(c.profile_id, c.id) AS profile, COUNT(*) AS orders, MAX(o.ordered_at) AS latest FROM orders o JOIN customers c ON c.id = o.customer_id \
                         WHERE (c.id IN ({list}) OR c.profile_id IN ({list})) AND o.status IN ('paid', 'pending', 'partially_refunded') \
                         GROUP BY COALESCE(c.profile_id, c.id)"
                    ),
                    &[args.clone(), args].concat(),
                )
                .await?
            {
                out.insert(
                    r.i64("profile")?,
                    (
                        r.i64("orders")?,
                        r.opt_i64("latest")?.map(queries::ts).transpose()?,
                    ),
                );
            }
        }
        Ok(out)
    }

    /// Transports paused by their circuit breaker: (channel, reason, paused until).
    pub async fn transport_pauses(&self) -> Result<Vec<(String, String, Timestamp)>, StoreError> {
        self.pool
            .fetch(
                "SELECT channel, reason, paused_until FROM transport_pauses ORDER BY channel",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.text("channel")?,
                    r.text("reason")?,
                    queries::ts(r.i64("paused_until")?)?,
                ))
            })
            .collect()
    }

    /// A campaign's offer codes as text columns (see `winback campaigns codes`).
    pub async fn offer_codes(
        &self,
        campaign_id: winback_domain::CampaignId,
    ) -> Result<Vec<Vec<String>>, StoreError> {
        journeys::offer_codes(&self.pool, campaign_id).await
    }
}

impl winback_engine::JourneyStore for SqlStore {
    async fn apply_campaign(
        &self,
        name: &str,
        file: &str,
        source: &str,
        now: Timestamp,
    ) -> Result<winback_engine::ports::Applied, EngineError> {
        Ok(journeys::apply_campaign(&self.pool, name, file, source, now).await?)
    }
    async fn campaigns(&self) -> Result<Vec<winback_engine::ports::CampaignRecord>, EngineError> {
        Ok(journeys::campaigns(&self.pool).await?)
    }
    async fn campaign_source(
        &self,
        campaign_id: winback_domain::CampaignId,
        version: i64,
    ) -> Result<String, EngineError> {
        Ok(journeys::campaign_source(&self.pool, campaign_id, version).await?)
    }
    async fn set_campaign_status(
        &self,
        name: &str,
        status: winback_engine::CampaignStatus,
        now: Timestamp,
    ) -> Result<bool, EngineError> {
        Ok(journeys::set_campaign_status(&self.pool, name, status, now).await?)
    }
    async fn finish_campaign_if_done(
        &self,
        campaign_id: winback_domain::CampaignId,
        now: Timestamp,
    ) -> Result<bool, EngineError> {
        Ok(journeys::finish_campaign_if_done(&self.pool, campaign_id, now).await?)
    }
    async fn audience_page(
        &self,
        now: Timestamp,
        after: Option<ProfileId>,
        limit: usize,
    ) -> Result<Vec<winback_engine::ports::AudienceEntry>, EngineError> {
        Ok(journeys::audience_page(&self.pool, now, after.map(ProfileId::get), limit).await?)
    }
    async fn audience_rows_of(
        &self,
        now: Timestamp,
        profiles: &[ProfileId],
    ) -> Result<Vec<winback_engine::ports::AudienceEntry>, EngineError> {
        let ids: Vec<i64> = profiles.iter().map(|p| p.get()).collect();
        Ok(journeys::audience_rows(&self.pool, now, Some(&ids)).await?)
    }
    async fn trigger_cursor(
        &self,
        campaign_id: winback_domain::CampaignId,
    ) -> Result<i64, EngineError> {
        Ok(journeys::trigger_cursor(&self.pool, campaign_id).await?)
    }
    async fn wake_waiting(&self, now: Timestamp) -> Result<u64, EngineError> {
        Ok(journeys::wake_waiting(&self.pool, now).await?)
    }
    async fn trigger_events(
        &self,
        campaign_id: winback_domain::CampaignId,
        label: &str,
        limit: usize,
    ) -> Result<winback_engine::ports::TriggerBatch, EngineError> {
        Ok(journeys::trigger_events(&self.pool, campaign_id, label, limit).await?)
    }
    async fn claim_triggers(
        &self,
        campaigns: &[winback_domain::CampaignId],
        worker: &str,
        now: Timestamp,
        lease_seconds: i64,
    ) -> Result<Vec<winback_domain::CampaignId>, EngineError> {
        Ok(journeys::claim_triggers(&self.pool, campaigns, worker, now, lease_seconds).await?)
    }
    async fn release_triggers(
        &self,
        campaigns: &[winback_domain::CampaignId],
        worker: &str,
    ) -> Result<(), EngineError> {
        Ok(journeys::release_triggers(&self.pool, campaigns, worker).await?)
    }
    async fn advance_cursor(
        &self,
        campaign_id: winback_domain::CampaignId,
        cursor: i64,
    ) -> Result<(), EngineError> {
        Ok(journeys::advance_cursor(&self.pool, campaign_id, cursor).await?)
    }
    async fn enrol(
        &self,
        campaign_id: winback_domain::CampaignId,
        version: i64,
        exclusive: bool,
        candidates: &[winback_engine::ports::Candidate],
        now: Timestamp,
        admit: &(
             dyn Fn(
            &winback_engine::ports::Candidate,
            &winback_engine::journey::EntryHistory,
        ) -> winback_engine::journey::Admission
                 + Sync
         ),
    ) -> Result<(u64, u64), EngineError> {
        let (entered, held) = journeys::enrol(
            &self.pool,
            campaign_id,
            version,
            exclusive,
            candidates,
            now,
            admit,
        )
        .await?;
        // A bulk enrolment leaves PostgreSQL's statistics saying the table is small until
        // autovacuum's analyze runs (up to a minute later); meanwhile the planner sorts every
        // due enrolment per claim. Refresh them once 20,000 rows have come in.
        let written = self
            .unanalyzed
            .fetch_add(entered + held, std::sync::atomic::Ordering::Relaxed)
            + entered
            + held;
        if self.pool.backend() == db::Backend::Postgres && written >= 20_000 {
            self.unanalyzed
                .store(0, std::sync::atomic::Ordering::Relaxed);
            self.pool
                .execute("ANALYZE enrolments", &[])
                .await
                .map_err(EngineError::from)?;
        }
        Ok((entered, held))
    }
    async fn arm_stats(
        &self,
        campaign_id: winback_domain::CampaignId,
        variants: &[String],
        window_seconds: i64,
    ) -> Result<Vec<winback_engine::experiment::ArmStats>, EngineError> {
        Ok(journeys::arm_stats(&self.pool, campaign_id, variants, window_seconds).await?)
    }
    async fn claim_due(
        &self,
        worker: &str,
        now: Timestamp,
        lease_seconds: i64,
        limit: usize,
    ) -> Result<Vec<winback_engine::ports::ClaimedEnrolment>, EngineError> {
        Ok(journeys::claim_due(&self.pool, worker, now, lease_seconds, limit).await?)
    }
    async fn snapshots(
        &self,
        claimed: &[winback_engine::ports::ClaimedEnrolment],
        full: &[bool],
        now: Timestamp,
    ) -> Result<Vec<winback_engine::journey::Snapshot>, EngineError> {
        Ok(journeys::snapshots(&self.pool, claimed, full, now).await?)
    }
    async fn apply_plans(
        &self,
        plans: &[(
            winback_engine::ports::ClaimedEnrolment,
            winback_engine::journey::Plan,
        )],
        now: Timestamp,
    ) -> Result<u64, EngineError> {
        // One transaction from the plans alone: an aborted one wrote nothing, and runs again.
        Ok(retrying(StoreError::is_conflict, || {
            journeys::apply_plans(&self.pool, plans, now)
        })
        .await?)
    }
    async fn claim_messages(
        &self,
        worker: &str,
        now: Timestamp,
        lease_seconds: i64,
        limit: usize,
    ) -> Result<Vec<winback_engine::ports::ClaimedMessage>, EngineError> {
        Ok(journeys::claim_messages(&self.pool, worker, now, lease_seconds, limit).await?)
    }
    async fn prepare_sends(
        &self,
        messages: &[winback_engine::ports::ClaimedMessage],
        now: Timestamp,
        lease_seconds: i64,
        decide: &(
             dyn Fn(
            &winback_engine::ports::ClaimedMessage,
            &winback_engine::policy::SendContext,
        ) -> winback_engine::policy::Decision
                 + Sync
         ),
    ) -> Result<Vec<winback_engine::ports::Prepared>, EngineError> {
        Ok(
            journeys::prepare_sends(&self.pool, &self.salt, messages, now, lease_seconds, decide)
                .await?,
        )
    }
    async fn finish_sends(
        &self,
        outcomes: &[(
            winback_engine::ports::ClaimedMessage,
            Option<winback_engine::ports::SendOutcome>,
        )],
        now: Timestamp,
        ramp: &(
             dyn Fn(
            Option<winback_engine::policy::RampState>,
            &str,
            winback_engine::policy::ProviderStats,
        ) -> winback_engine::policy::RampState
                 + Sync
         ),
    ) -> Result<u64, EngineError> {
        Ok(journeys::finish_sends(&self.pool, outcomes, now, ramp).await?)
    }
    async fn process_exits(&self, now: Timestamp) -> Result<u64, EngineError> {
        Ok(journeys::process_exits(&self.pool, now).await?)
    }
    async fn reap(&self, now: Timestamp) -> Result<winback_engine::ports::Reaped, EngineError> {
        Ok(journeys::reap(&self.pool, now).await?)
    }
}

#[cfg(test)]
mod retry_tests {
    use super::retrying;

    #[tokio::test]
    async fn a_conflict_is_tried_again_and_other_errors_are_not() {
        let mut calls = 0;
        let r: Result<u32, &str> = retrying(
            |e: &&str| *e == "conflict",
            || {
                calls += 1;
                let n = calls;
                async move { if n < 3 { Err("conflict") } else { Ok(n) } }
            },
        )
        .await;
        assert_eq!(r, Ok(3));
        let mut calls = 0;
        let r: Result<u32, &str> = retrying(
            |e: &&str| *e == "conflict",
            || {
                calls += 1;
                async { Err("broken") }
            },
        )
        .await;
        assert_eq!((r, calls), (Err("broken"), 1));
        let mut calls = 0;
        let r: Result<u32, &str> = retrying(
            |e: &&str| *e == "conflict",
            || {
                calls += 1;
                async { Err("conflict") }
            },
        )
        .await;
        assert_eq!(
            (r, calls),
            (Err("conflict"), 4),
            "four tries, then the error"
        );
    }
}
