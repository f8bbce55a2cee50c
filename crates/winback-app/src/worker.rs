//! The always-on worker (`winback worker`, `winback serve --worker`): the schedule's jobs
//! ([`crate::schedule`]) and the engine's passes (enrol, advance, send, exit), until stopped.
//!
//! The two run side by side: the nightly scoring run of a large shop takes minutes, and sends
//! must not wait for it (its model fit runs on a blocking thread, so the engine's passes go on
//! meanwhile). With `once`, one round of each runs in order (schedule, then pass), which is
//! what simulations and tests step through.

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use winback_domain::{Clock, Timestamp};
use winback_engine::{Engine, PassStats};
use winback_store::SqlStore;

use crate::config::Config;
use crate::schedule::{ClockSkew, JobsRun, check_clock, run_due};

/// What the worker did, for its output (the CLI prints these; the HTTP service's worker too).
#[derive(Debug)]
pub enum Event<'a> {
    /// Scheduled jobs ran (or failed: `failed` says which and why).
    Jobs(Timestamp, &'a JobsRun),
    /// An engine pass that did something.
    Pass(Timestamp, &'a PassStats),
    /// A channel's transport is paused after failures of the relay or provider itself.
    Paused {
        /// When.
        at: Timestamp,
        /// The channel.
        channel: &'a str,
        /// The provider's last answer.
        why: &'a str,
        /// Until when.
        until: Timestamp,
        /// Failures in the pass.
        failures: u64,
    },
    /// Wallet passes changed and their devices were told (APNs).
    Pushed(Timestamp, crate::wallet::PushTally),
    /// Google Wallet objects were created or updated.
    Synced(Timestamp, crate::wallet::SyncTally),
    /// A round failed (the database unreachable, a relay down at connect): it runs again after
    /// the next nap. Only a clock off the database's stops the worker.
    Failed(Timestamp, &'a anyhow::Error),
    /// Stopped after finishing the round in progress.
    Stopping,
}

/// What a worker process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything: the schedule's jobs and the engine's passes (`winback worker`,
    /// `winback serve --worker`).
    Full,
    /// Only the refresh of profiles that ingests touched (`winback serve` without `--worker`:
    /// what its `/v1` API ingests is resolved and refreshed within `refresh_seconds` even when
    /// no worker runs). Sends, scoring and retention are left to a worker.
    RefreshOnly,
}

/// Folds the rollups' pending deltas and refreshes the enrolments' stored outcomes and the
/// profiles' hygiene rows, which keeps what reports add up or compute small and changes no
/// figure (see `SqlStore::fold_rollups`, `SqlStore::refresh_outcomes` and
/// `SqlStore::refresh_hygiene`); logs their time
/// (`WINBACK_LOG=winback::worker=info`). The worker runs it after each round, and ingests
/// after each file.
pub(crate) async fn fold(store: &SqlStore) -> Result<()> {
    let t = std::time::Instant::now();
    store.fold_rollups().await?;
    let folded = t.elapsed();
    let t = std::time::Instant::now();
    let outcomes = crate::campaigns::refresh_outcomes(store).await?;
    let refreshed = t.elapsed();
    let t = std::time::Instant::now();
    let hygiene = store.refresh_hygiene().await?;
    tracing::info!(
        target: "winback::worker",
        fold_rollups_s = folded.as_secs_f64(),
        refresh_outcomes_s = refreshed.as_secs_f64(),
        outcomes,
        refresh_hygiene_s = t.elapsed().as_secs_f64(),
        hygiene,
        "rollups folded, outcomes and hygiene refreshed"
    );
    Ok(())
}

/// A name for this worker in the schedule's leases and the engine's claims.
pub fn worker_name() -> String {
    format!(
        "{}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
        std::process::id()
    )
}

/// Runs the worker in `role` on `store` until `stop` resolves (a round in progress finishes first), or
/// for one round with `once`. Every event goes to `on_event`. Refuses to run on a clock off the
/// database's by more than `[engine] max_clock_skew_seconds`.
pub async fn run(
    config: &Config,
    store: &SqlStore,
    clock: &dyn Clock,
    role: Role,
    once: bool,
    stop: impl Future<Output = ()>,
    on_event: &(dyn Fn(Event<'_>) + Sync),
) -> Result<()> {
    // Only a worker that sends builds the engine, its transports and the links it redirects
    // to (a refresh-only service needs no relay; `winback serve` stores the links itself).
    let transport = match role {
        Role::Full => {
            // Click tokens name a link id; `winback serve` redirects to what is stored here.
            store
                .set_links(
                    &[("shop".into(), config.email.shop_url.clone())],
                    clock.now(),
                )
                .await?;
            Some(config.transports(std::sync::Arc::new(winback_domain::SystemClock))?)
        }
        Role::RefreshOnly => None,
    };
    let engine = match &transport {
        Some(t) => Some(Engine::new(store, t, clock, config.engine_settings()?)),
        None => None,
    };
    // Pass updates are pushed by the worker that steps the journeys which change them.
    let (wallet, google) = match role {
        Role::Full => (
            crate::wallet::WalletService::from_config(config)?,
            crate::wallet::GoogleWalletService::from_config(config)?,
        ),
        Role::RefreshOnly => (None, None),
    };
    let mut schedule = config.schedule()?;
    if role == Role::RefreshOnly {
        schedule.score_at = None;
        schedule.retention = None;
    }
    let owner = worker_name();
    let poll = Duration::from_secs(config.engine.poll_seconds.max(1));
    let skew = config.engine.max_clock_skew_seconds;

    let jobs_round = || async {
        // Leases and due times are written with this worker's clock: refuse to run on one
        // that disagrees with the database's (and so with every other worker's).
        check_clock(store, clock.now(), skew).await?;
        let jobs = run_due(store, clock.now(), &owner, &schedule).await?;
        if jobs.did_anything() {
            on_event(Event::Jobs(clock.now(), &jobs));
        }
        fold(store).await?;
        anyhow::Ok(())
    };
    let pass = || async {
        let Some(engine) = &engine else {
            return anyhow::Ok(());
        };
        check_clock(store, clock.now(), skew).await?;
        let s = engine.run_once().await?;
        if let Some(w) = &wallet {
            let pushed = w.push_due(store, clock.now()).await?;
            if pushed != crate::wallet::PushTally::default() {
                on_event(Event::Pushed(clock.now(), pushed));
            }
        }
        if let Some(g) = &google {
            let synced = g.sync_due(store, clock.now()).await?;
            if synced != crate::wallet::SyncTally::default() {
                on_event(Event::Synced(clock.now(), synced));
            }
        }
        if s.busy() || s.in_doubt > 0 {
            on_event(Event::Pass(clock.now(), &s));
            if s.transport_failures > 0 {
                for (channel, why, until) in store.transport_pauses().await? {
                    on_event(Event::Paused {
                        at: clock.now(),
                        channel: &channel,
                        why: &why,
                        until,
                        failures: s.transport_failures,
                    });
                }
            }
        }
        anyhow::Ok(())
    };

    if once {
        jobs_round().await?;
        pass().await?;
        fold(store).await?;
        return Ok(());
    }
    // Each loop finishes its round, then stops at its next nap.
    let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(false);
    let nap = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = rx.wait_for(|s| *s) => {}
        }
    };
    // A failed round is reported and tried again after the nap: a database outage must not
    // end the worker, nor the `winback serve` it runs in. A wrong clock does end it.
    let survive = |r: Result<()>| match r {
        Err(e) if e.downcast_ref::<ClockSkew>().is_some() => Err(e),
        Err(e) => {
            on_event(Event::Failed(clock.now(), &e));
            Ok(())
        }
        Ok(()) => Ok(()),
    };
    let jobs_loop = async {
        while !*stopped_rx.borrow() {
            survive(jobs_round().await)?;
            nap(stopped_rx.clone()).await;
        }
        anyhow::Ok(())
    };
    let engine_loop = async {
        while !*stopped_rx.borrow() {
            survive(pass().await)?;
            nap(stopped_rx.clone()).await;
        }
        anyhow::Ok(())
    };
    let work = async { tokio::try_join!(jobs_loop, engine_loop).map(|_| ()) };
    tokio::pin!(work, stop);
    tokio::select! {
        r = &mut work => return r,
        _ = &mut stop => {
            let _ = stopped_tx.send(true);
        }
    }
    let r = work.await;
    on_event(Event::Stopping);
    r
}
