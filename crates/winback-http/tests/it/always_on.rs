//! `winback serve --worker` with the clock driven and nothing else: no `winback score`, no
//! `resolve`, no cron. The worker (`winback_app::worker::run`, one round at a time) re-stages a
//! contact whose only order ages past the one-time-buyer threshold overnight and enrols them;
//! an order posted to `/v1/orders` refreshes their features and ends their journey.

use std::sync::Arc;

use axum::http::StatusCode;
use winback_app::config::Config;
use winback_app::worker::{Role, run};
use winback_domain::{Clock, ManualClock};
use winback_engine::JourneyStore;
use winback_http::{AppState, ServerSettings, app};
use winback_store::SqlStore;

use super::{Harness, ts};

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

/// The scheduled jobs that have run, by name.
async fn job_names(store: &SqlStore) -> Vec<String> {
    store
        .jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.name)
        .collect()
}

async fn one_round(config: &Config, store: &SqlStore, clock: &ManualClock) {
    run(config, store, clock, Role::Full, true, async {}, &|_| {})
        .await
        .unwrap();
}

/// A service on a fresh store, with the configuration its worker runs on: the driven clock is
/// a year off the database's, so the skew check is off (this worker has the store to itself).
async fn shop() -> (Harness, Config) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        database_url: format!("sqlite://{}", dir.path().join("w.db").display()),
        ..Config::default()
    };
    config.email.outbox_dir = dir.path().join("outbox").display().to_string();
    config.engine.max_clock_skew_seconds = 0;
    // Anna has never opened a mail: the deliverability ramp would admit her share of such
    // addresses only later. Admit them all here.
    config.policy.ramp.start_share = 1.0;
    let store = SqlStore::connect(&config.database_url).await.unwrap();
    // Monday 2 June 2025, 10:00 UTC (12:00 in Amsterdam, inside the send window).
    let clock = ManualClock::new(ts("2025-06-02T10:00:00Z"));
    let keys = config.keyring().unwrap();
    let settings = ServerSettings::from_config(&config, clock.now()).unwrap();
    let state = AppState::new(
        store.clone(),
        keys.clone(),
        Arc::new(clock.clone()),
        settings,
        None,
    );
    let h = Harness {
        app: app(state.clone()),
        state,
        store,
        clock,
        keys,
        anna: 0,
        _dir: dir,
    };
    (h, config)
}

#[tokio::test]
async fn serve_with_a_worker_restages_enrols_and_ends_a_journey_on_a_posted_order() {
    let (h, config) = shop().await;
    let (store, clock) = (h.store.clone(), h.clock.clone());
    let key = h.key(&["ingest"]).await;
    let post = |path: &'static str, body: &'static str| {
        let h = &h;
        let key = key.clone();
        async move {
            let r = h
                .send("POST", path, Some(&key), "application/x-ndjson", body, &[])
                .await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        }
    };
    post(
        "/v1/customers",
        "{\"customer_id\":\"C1\",\"email\":\"anna@example.nl\",\"first_name\":\"Anna\",\"email_consent\":\"yes\"}\n\
         {\"customer_id\":\"C2\",\"email\":\"bram@example.nl\",\"first_name\":\"Bram\",\"email_consent\":\"yes\"}\n",
    )
    .await;
    // Anna's only order is 179 days old: a one-time buyer from 180 days. Bram buys often.
    post(
        "/v1/orders",
        "{\"order_id\":\"O1\",\"customer_id\":\"C1\",\"ordered_at\":\"2024-12-05T10:00:00Z\",\"total\":\"40.00\"}\n\
         {\"order_id\":\"O2\",\"customer_id\":\"C2\",\"ordered_at\":\"2025-05-01T10:00:00Z\",\"total\":\"25.00\"}\n\
         {\"order_id\":\"O3\",\"customer_id\":\"C2\",\"ordered_at\":\"2025-05-20T10:00:00Z\",\"total\":\"30.00\"}\n",
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
    let stage = |who: &'static str| {
        let h = &h;
        async move {
            h.store
                .pool()
                .fetch(
                    &format!("SELECT s.stage FROM profile_scores s JOIN customers c ON c.id = s.profile_id WHERE c.external_id = '{who}'"),
                    &[],
                )
                .await
                .unwrap()
                .first()
                .map(|r| r.text(0).unwrap())
                .unwrap_or_default()
        }
    };
    let enrolments = || {
        let h = &h;
        async move {
            h.store
                .pool()
                .fetch("SELECT state FROM enrolments", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.text(0).unwrap())
                .collect::<Vec<_>>()
        }
    };

    // Day 0: the worker's first round scores (the nightly run was due at 03:00 and never
    // ran). Anna is not a one-time buyer yet: nobody is enrolled.
    one_round(&config, &store, &clock).await;
    assert_eq!(stage("C2").await, "active", "the worker scored");
    assert_ne!(stage("C1").await, "one_time_buyer");
    assert!(enrolments().await.is_empty());

    // Day 1, 10:00: the nightly run at 03:00 re-staged Anna, and the same round enrols her
    // and sends her the first message.
    clock.set(ts("2025-06-03T10:00:00Z"));
    one_round(&config, &store, &clock).await;
    assert_eq!(stage("C1").await, "one_time_buyer");
    assert_eq!(enrolments().await, ["active"]);
    let sent = h
        .scalar(
            "SELECT COUNT(*) FROM outbox WHERE state = 'sent' AND recipient = 'anna@example.nl'",
        )
        .await;
    assert_eq!(sent, 1);

    // Anna orders, through the API. Within the refresh delay the worker refreshes her
    // features, and its pass ends her journey.
    clock.advance_seconds(600);
    post(
        "/v1/orders",
        "{\"order_id\":\"O4\",\"customer_id\":\"C1\",\"ordered_at\":\"2025-06-03T10:05:00Z\",\"total\":\"55.00\"}\n",
    )
    .await;
    clock.advance_seconds(61);
    one_round(&config, &store, &clock).await;
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
    one_round(&config, &store, &clock).await;
    assert_ne!(
        enrolments().await,
        ["active"],
        "the order ended the journey"
    );
    // The jobs' last runs, for /metrics and the dashboard.
    assert_eq!(job_names(&store).await, ["refresh", "retention", "score"]);
}

#[tokio::test]
async fn serve_without_a_worker_still_refreshes_what_the_api_ingests() {
    let (h, config) = shop().await;
    let (store, clock) = (h.store.clone(), h.clock.clone());
    let key = h.key(&["ingest"]).await;
    let r = h
        .send(
            "POST",
            "/v1/orders",
            Some(&key),
            "application/json",
            "{\"order_id\":\"O1\",\"customer_id\":\"C1\",\"email\":\"anna@example.nl\",\"ordered_at\":\"2025-05-05T10:00:00Z\",\"total\":\"40.00\"}",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!store.dirty_customers().await.unwrap().is_empty());
    run(
        &config,
        &store,
        &clock,
        Role::RefreshOnly,
        true,
        async {},
        &|_| {},
    )
    .await
    .unwrap();
    assert!(
        store.dirty_customers().await.unwrap().is_empty(),
        "refreshed"
    );
    let features = h.scalar("SELECT COUNT(*) FROM profile_features").await;
    assert_eq!(features, 1);
    // A refresh-only service neither scores, nor enforces retention, nor sends.
    assert_eq!(job_names(&store).await, ["refresh"]);
    assert!(!std::path::Path::new(&config.email.outbox_dir).exists());
}
