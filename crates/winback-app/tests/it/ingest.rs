//! `winback_app::ingest::import`, as `winback import` runs it: a file, then what follows.

use winback_app::config::Config;
use winback_app::ingest::{FileJob, Imported, import};
use winback_domain::{ManualClock, Timestamp};
use winback_import::SourceKind;
use winback_store::ingest::Mode;

/// `winback import KIND FILE`, strict, without progress or rejects.
async fn run(
    config: &Config,
    store: &winback_store::SqlStore,
    clock: &ManualClock,
    kind: SourceKind,
    file: &std::path::Path,
) -> Imported {
    let job = FileJob {
        kind,
        file,
        mapping: None,
        mode: Mode::Strict,
        strict: false,
    };
    import(config, store, clock, job, None, |_, _| {}, |_| {})
        .await
        .unwrap()
}

/// Customers and orders can change who is who, so identities are resolved after them; events
/// carry no identifiers, so after them only the touched profiles' features are refreshed (a
/// whole-store resolution after every event file cost a gigabyte at a million customers).
#[tokio::test]
async fn identities_are_resolved_after_files_that_carry_them_and_features_after_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        database_url: format!("sqlite://{}", dir.path().join("w.db").display()),
        ..Config::default()
    };
    let store = config.open_store().await.unwrap();
    let clock = ManualClock::new(Timestamp::new("2024-06-01T10:00:00Z".parse().unwrap()));
    let customers = dir.path().join("customers.csv");
    std::fs::write(
        &customers,
        "customer_id,email,phone\nC1,anna@example.nl,+31612345678\nC2,anna.work@example.nl,+31612345678\nC3,bob@example.nl,\n",
    )
    .unwrap();
    let done = run(&config, &store, &clock, SourceKind::Customers, &customers).await;
    let settled = done.settled.unwrap();
    let resolution = settled.resolution.expect("customers carry identifiers");
    assert_eq!(
        (resolution.records, resolution.profiles),
        (3, 2),
        "C1 and C2 share a phone"
    );

    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        "{\"event_id\":\"e1\",\"customer_id\":\"C2\",\"at\":\"2024-05-30T10:00:00Z\",\"type\":\"site_visited\",\"url\":\"/\"}\n\
         {\"event_id\":\"e2\",\"customer_id\":\"C9\",\"at\":\"2024-05-30T11:00:00Z\",\"type\":\"site_visited\",\"url\":\"/\"}\n",
    )
    .unwrap();
    let done = run(&config, &store, &clock, SourceKind::Events, &events).await;
    let settled = done.settled.unwrap();
    assert!(settled.resolution.is_none(), "events change no identities");
    // Anna's profile (C2 is merged into C1) and the bare record C9 the event created.
    assert_eq!(settled.features.profiles, 2);
    assert!(store.dirty_customers().await.unwrap().is_empty());
    let anna = store.find_profile("C2").await.unwrap().unwrap();
    assert_eq!(Some(anna), store.find_profile("C1").await.unwrap());
    let (_, features) = store.features_of(anna).await.unwrap().unwrap();
    assert!(
        features.contains("2024-05-30T10:00:00Z"),
        "the visit counts: {features}"
    );

    // A later customer file still merges: a new record with Bob's address.
    std::fs::write(&customers, "customer_id,email\nC4,BOB@example.nl\n").unwrap();
    let done = run(&config, &store, &clock, SourceKind::Customers, &customers).await;
    let resolution = done.settled.unwrap().resolution.expect("resolved");
    assert_eq!(
        resolution.profiles, 3,
        "C4 joins Bob; C9 is a profile of its own"
    );
    store.close().await;
}
