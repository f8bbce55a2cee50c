//! The worker loop under an outside failure: a database that stops answering fails rounds, which
//! are reported and tried again; the worker (and the `winback serve` it runs in) stays up until
//! it is told to stop.

use std::sync::atomic::{AtomicUsize, Ordering};

use winback_app::config::Config;
use winback_app::worker::{Event, Role, run};
use winback_domain::SystemClock;
use winback_store::SqlStore;

#[tokio::test]
async fn a_database_outage_fails_rounds_but_does_not_end_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        database_url: format!("sqlite://{}", dir.path().join("w.db").display()),
        ..Config::default()
    };
    config.engine.poll_seconds = 1;
    let store = SqlStore::connect(&config.database_url).await.unwrap();
    // The database goes away: every query from now on fails.
    store.close().await;
    let failures = AtomicUsize::new(0);
    let on_event = |e: Event<'_>| {
        if let Event::Failed(_, why) = e {
            assert!(!format!("{why:#}").is_empty());
            failures.fetch_add(1, Ordering::SeqCst);
        }
    };
    let stop = async {
        while failures.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let ran = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        run(
            &config,
            &store,
            &SystemClock,
            Role::RefreshOnly,
            false,
            stop,
            &on_event,
        ),
    )
    .await
    .expect("the worker stops when told to");
    assert!(ran.is_ok(), "failed rounds do not end the worker: {ran:?}");
    assert!(
        failures.load(Ordering::SeqCst) >= 2,
        "each failed round was reported"
    );
}

#[tokio::test]
async fn a_single_round_still_reports_its_failure_to_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        database_url: format!("sqlite://{}", dir.path().join("w.db").display()),
        ..Config::default()
    };
    let store = SqlStore::connect(&config.database_url).await.unwrap();
    store.close().await;
    // `winback worker --once` exits with the error, as a cron job or a script expects.
    let ran = run(
        &config,
        &store,
        &SystemClock,
        Role::RefreshOnly,
        true,
        async {},
        &|_| {},
    )
    .await;
    assert!(ran.is_err());
}
