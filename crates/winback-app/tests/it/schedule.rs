//! The always-on schedule with the clock driven: nobody runs `winback score` or `resolve`, yet a
//! contact whose last order ages past a stage's threshold is re-staged overnight and enrolled on
//! the next pass, and an order that arrives through an ingest refreshes their features and ends
//! their journey.

use winback_app::schedule::{ScheduleConfig, last_due};
use winback_app::scoring::Settings;
use winback_domain::{Clock, ManualClock, Timestamp};
use winback_engine::file_outbox::FileOutbox;
use winback_engine::{Engine, EngineSettings, JourneyStore};
use winback_import::SourceKind;
use winback_store::SqlStore;

use super::{import, ts};

async fn stage(store: &SqlStore, external: &str) -> String {
    store
        .pool()
        .fetch(
            &format!(
                "SELECT s.stage FROM profile_scores s JOIN customers c ON c.id = s.profile_id WHERE c.external_id = '{external}'"
            ),
            &[],
        )
        .await
        .unwrap()
        .first()
        .map(|r| r.text(0).unwrap())
        .unwrap_or_default()
}

const CAMPAIGN: &str = r#"
[campaign]
name = "one-timers"
audience = 'stage == "one_time_buyer" && email_ok'
[trigger]
type = "audience"
every = "1d"
[holdout]
share = 0.0
[[steps]]
id = "hello"
type = "send"
template = "we-miss-you"
[[steps]]
id = "wait"
type = "wait"
duration = "30d"
"#;

#[tokio::test]
async fn the_worker_restages_overnight_and_refreshes_after_an_ingest_without_any_command() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::connect(&format!("sqlite://{}", dir.path().join("w.db").display()))
        .await
        .unwrap();
    // Monday 2 June 2025, 10:00 UTC. Anna's only order is 179 days old: a one-time buyer from
    // 180 days.
    let clock = ManualClock::new(ts("2025-06-02T10:00:00Z"));
    import(
        &store,
        SourceKind::Customers,
        "customer_id,email,first_name,email_consent\nC1,anna@example.nl,Anna,yes\nC2,bram@example.nl,Bram,yes\n",
        clock.now(),
    )
    .await;
    import(
        &store,
        SourceKind::Orders,
        "order_id,customer_id,ordered_at,total\nO1,C1,2024-12-05T10:00:00Z,40.00\nO2,C2,2025-05-01T10:00:00Z,25.00\nO3,C2,2025-05-20T10:00:00Z,30.00\n",
        clock.now(),
    )
    .await;
    store
        .apply_campaign("one-timers", "one-timers.toml", CAMPAIGN, clock.now())
        .await
        .unwrap();
    store
        .set_campaign_status(
            "one-timers",
            winback_engine::CampaignStatus::Active,
            clock.now(),
        )
        .await
        .unwrap();
    let mut schedule = ScheduleConfig::default()
        .schedule(true, Default::default(), Settings::default())
        .unwrap();
    // The retention policy daily (`[privacy] enforce`): 36 months, no notice.
    schedule.retention = Some((36, 0));
    let outbox = FileOutbox::new(dir.path().join("outbox")).unwrap();
    let engine = Engine::new(&store, &outbox, &clock, EngineSettings::default());

    // Day 0: the first pass scores (the nightly run was due at 03:00 and never ran); Anna is not
    // a one-time buyer yet, so nobody enrols.
    let run = winback_app::schedule::run_due(&store, clock.now(), "w1", &schedule)
        .await
        .unwrap();
    assert!(
        run.scored.is_some(),
        "the first pass runs the due nightly score"
    );
    let retention = run
        .retention
        .expect("the first pass runs the daily retention");
    assert!(retention.erased.is_empty(), "everyone is recent");
    assert_ne!(stage(&store, "C1").await, "one_time_buyer");
    let pass = engine.run_once().await.unwrap();
    assert_eq!(pass.enrolled + pass.held_out, 0);
    // Later the same day nothing is due again, on this worker or another.
    clock.advance_seconds(3_600);
    for owner in ["w1", "w2"] {
        let run = winback_app::schedule::run_due(&store, clock.now(), owner, &schedule)
            .await
            .unwrap();
        assert!(
            run.scored.is_none() && run.refreshed.is_none() && run.retention.is_none(),
            "{owner}"
        );
    }

    // Day 1, early: the retention runs once each local day, though the last run was less than
    // 24 hours ago (the scoring is left out of this round).
    clock.set(ts("2025-06-03T02:00:00Z"));
    let only_retention = winback_app::schedule::Schedule {
        score_at: None,
        ..schedule.clone()
    };
    let run = winback_app::schedule::run_due(&store, clock.now(), "w2", &only_retention)
        .await
        .unwrap();
    assert!(run.retention.is_some(), "a new day's retention");
    let run = winback_app::schedule::run_due(&store, clock.now(), "w1", &only_retention)
        .await
        .unwrap();
    assert!(run.retention.is_none(), "once a day");

    // Day 1, 10:00: the nightly run at 03:00 re-staged Anna; the pass enrols her.
    clock.set(ts("2025-06-03T10:00:00Z"));
    let run = winback_app::schedule::run_due(&store, clock.now(), "w2", &schedule)
        .await
        .unwrap();
    assert!(run.scored.is_some());
    assert_eq!(stage(&store, "C1").await, "one_time_buyer");
    let pass = engine.run_once().await.unwrap();
    assert_eq!(pass.enrolled, 1, "{pass:?}");

    // Anna orders through an ingest (what POST /v1/orders does). Within the refresh delay the
    // worker refreshes her features, and the next pass ends her journey: no command was run.
    clock.advance_seconds(600);
    import(
        &store,
        SourceKind::Orders,
        "order_id,customer_id,ordered_at,total\nO4,C1,2025-06-03T10:05:00Z,55.00\n",
        clock.now(),
    )
    .await;
    assert!(!store.dirty_customers().await.unwrap().is_empty());
    let run = winback_app::schedule::run_due(&store, clock.now(), "w1", &schedule)
        .await
        .unwrap();
    let refreshed = run.refreshed.expect("the touched profile is refreshed");
    assert!(refreshed.features.profiles >= 1, "{refreshed:?}");
    assert!(store.dirty_customers().await.unwrap().is_empty());
    let features = store
        .pool()
        .fetch(
            "SELECT f.data FROM profile_features f JOIN customers c ON c.id = f.profile_id WHERE c.external_id = 'C1'",
            &[],
        )
        .await
        .unwrap();
    let f: serde_json::Value = serde_json::from_str(&features[0].text(0).unwrap()).unwrap();
    assert_eq!(f["order_days"], 2, "{f}");
    clock.advance_seconds(60);
    engine.run_once().await.unwrap();
    let state = store
        .pool()
        .fetch("SELECT state FROM enrolments", &[])
        .await
        .unwrap()[0]
        .text(0)
        .unwrap();
    assert_ne!(state, "active", "the order ended the journey");
    // A campaign's dashboard page gathers only its own figures, and they are the whole
    // report's: the same enrolment, message and buyer.
    let settings = winback_report::Settings::default();
    let (from, until) = (Timestamp::EPOCH, winback_report::forever());
    let whole = winback_report::build(&settings, &store, from, until, clock.now())
        .await
        .unwrap();
    let one =
        winback_report::build_campaign(&settings, &store, "one-timers", from, until, clock.now())
            .await
            .unwrap()
            .expect("the campaign's report");
    let one = serde_json::to_value(&one).unwrap();
    assert_eq!(one, serde_json::to_value(&whole.campaigns[0]).unwrap());
    assert_eq!(one["arms"][0]["contacts"], 1, "{one}");
    assert!(
        winback_report::build_campaign(&settings, &store, "no-such", from, until, clock.now())
            .await
            .unwrap()
            .is_none()
    );
    // The jobs' last runs are kept for /metrics and the dashboard.
    let jobs = store.jobs().await.unwrap();
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["refresh", "retention", "score"]);
    assert!(jobs.iter().all(|j| j.running_on.is_none() && j.runs >= 1));
}

#[test]
fn the_nightly_run_is_due_at_its_local_time() {
    let at = "03:00".parse().unwrap();
    assert_eq!(
        last_due(ts("2025-06-03T10:00:00Z"), at),
        ts("2025-06-03T03:00:00Z")
    );
    assert_eq!(
        last_due(ts("2025-06-03T02:00:00Z"), at),
        ts("2025-06-02T03:00:00Z")
    );
    assert!(
        ScheduleConfig {
            score: "25:00".into(),
            ..ScheduleConfig::default()
        }
        .schedule(true, Default::default(), Settings::default())
        .is_err()
    );
}

/// A worker whose clock disagrees with the database's is refused before it writes a lease.
#[tokio::test]
async fn a_worker_with_a_wrong_clock_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::connect(&format!("sqlite://{}", dir.path().join("w.db").display()))
        .await
        .unwrap();
    let db = store.database_now().await.unwrap();
    let system = winback_domain::SystemClock.now();
    assert!(
        (db.as_micros() - system.as_micros()).abs() < 5_000_000,
        "the database's clock is this machine's"
    );
    winback_app::schedule::check_clock(&store, system, 60)
        .await
        .unwrap();
    let fast = Timestamp::from_micros(system.as_micros() + 30 * 86_400 * 1_000_000).unwrap();
    let e = winback_app::schedule::check_clock(&store, fast, 60)
        .await
        .unwrap_err();
    let skew = e
        .downcast_ref::<winback_app::schedule::ClockSkew>()
        .expect("a ClockSkew");
    assert!((skew.ahead_seconds - 30 * 86_400).abs() < 10, "{skew:?}");
    assert!(e.to_string().contains("s ahead of the database's"), "{e}");
    // 0 turns the check off, for a simulation on a store no other worker uses.
    winback_app::schedule::check_clock(&store, fast, 0)
        .await
        .unwrap();
}

/// A job that fails is recorded as failed and does not stop the other jobs or the worker.
#[tokio::test]
async fn a_failing_job_is_recorded_and_the_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::connect(&format!("sqlite://{}", dir.path().join("w.db").display()))
        .await
        .unwrap();
    let now = ts("2025-06-02T10:00:00Z");
    import(
        &store,
        SourceKind::Customers,
        "customer_id,email,email_consent\nC1,anna@example.nl,yes\n",
        now,
    )
    .await;
    import(
        &store,
        SourceKind::Orders,
        "order_id,customer_id,ordered_at,total\nO1,C1,2025-05-01T10:00:00Z,40.00\n",
        now,
    )
    .await;
    // The retention run cannot record itself.
    store
        .pool()
        .execute("DROP TABLE privacy_runs", &[])
        .await
        .unwrap();
    let mut schedule = ScheduleConfig::default()
        .schedule(true, Default::default(), Settings::default())
        .unwrap();
    schedule.retention = Some((36, 0));
    let run = winback_app::schedule::run_due(&store, now, "w1", &schedule)
        .await
        .unwrap();
    assert!(run.retention.is_none());
    assert_eq!(run.failed.len(), 1, "{:?}", run.failed);
    assert!(
        run.failed[0].starts_with("the daily retention run:"),
        "{:?}",
        run.failed
    );
    assert!(run.scored.is_some(), "the nightly scoring still ran");
    let jobs = store.jobs().await.unwrap();
    let retention = jobs.iter().find(|j| j.name == "retention").unwrap();
    assert!(
        retention
            .last_outcome
            .as_deref()
            .unwrap()
            .starts_with("failed:"),
        "{retention:?}"
    );
    assert!(retention.running_on.is_none(), "the lease is released");
}
