//! Measurement queries on both backends: the message funnel and "did they stay?".

use winback_domain::{ManualClock, Timestamp};
use winback_engine::file_outbox::FileOutbox;
use winback_engine::ports::JourneyStore;
use winback_engine::{Engine, EngineSettings};
use winback_import::SourceKind;
use winback_store::{SqlStore, ingest::Mode};

use crate::{conformance, import};

fn at(s: &str) -> Timestamp {
    Timestamp::new(s.parse().unwrap())
}

const CAMPAIGN: &str = r#"
[campaign]
name = "hello"
audience = 'email_ok && orders >= 1'
conversion_window = "30d"
[trigger]
type = "audience"
[holdout]
share = 0.0
[[steps]]
id = "hello"
type = "send"
template = "we-miss-you"
subject = "Hi"
"#;

async fn reactivated_customers_are_followed_after_their_return(store: &SqlStore) {
    let customers = "customer_id,email,email_consent,locale\n\
        A,a@gmail.com,yes,nl\nB,b@example.nl,yes,\nC,c@example.nl,no,\n";
    // Everyone bought long ago; C (no consent, never in a journey) also recently.
    let history = "order_id,customer_id,ordered_at,total,currency,status\n\
        H1,A,2023-01-10T10:00:00Z,30.00,EUR,paid\n\
        H2,B,2023-01-10T10:00:00Z,30.00,EUR,paid\n\
        H3,C,2024-05-10T10:00:00Z,30.00,EUR,paid\n";
    for (kind, name, text) in [
        (SourceKind::Customers, "customers.csv", customers),
        (SourceKind::Orders, "orders.csv", history),
    ] {
        let r = import(store, kind, name, text, Mode::Strict).await;
        assert!(r.committed, "{:?}", r.errors);
    }
    let start = at("2024-06-03T10:00:00Z");
    crate::engine::features(store, start).await;
    winback_engine::Campaign::parse("hello.toml", CAMPAIGN).unwrap();
    store
        .apply_campaign("hello", "hello.toml", CAMPAIGN, start)
        .await
        .unwrap();
    assert!(
        store
            .set_campaign_status("hello", winback_engine::CampaignStatus::Active, start)
            .await
            .unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start);
    let mut settings = EngineSettings::default();
    settings.policy.ramp.start_share = 1.0;
    let engine = Engine::new(store, &outbox, &clock, settings);
    let s = engine.run_until_idle(10).await.unwrap();
    assert_eq!((s.enrolled, s.sent), (2, 2), "{s:?}");
    // Both come back within the window; only A buys again (40 days later). C orders in the
    // same week, 30 days after its previous order: a customer who never lapsed.
    let later = "order_id,customer_id,ordered_at,total,currency,status\n\
        R1,A,2024-06-08T10:00:00Z,50.00,EUR,paid\n\
        R2,A,2024-07-18T10:00:00Z,70.00,EUR,paid\n\
        R3,B,2024-06-08T10:00:00Z,40.00,EUR,paid\n\
        R4,C,2024-06-08T10:00:00Z,20.00,EUR,paid\n";
    let r = import(store, SourceKind::Orders, "later.csv", later, Mode::Strict).await;
    assert!(r.committed, "{:?}", r.errors);
    let c = store.campaigns().await.unwrap();
    let id = c.iter().find(|c| c.name == "hello").unwrap().id;
    let arms = store.campaign_results(id, 30 * 86_400).await.unwrap();
    assert_eq!(arms.len(), 1);
    assert_eq!(
        (arms[0].enrolled, arms[0].converted, arms[0].orders),
        (2, 2, 2)
    );
    assert_eq!(arms[0].revenue_minor, 9_000);
    assert_eq!(arms[0].revenue_sq, 5_000f64.powi(2) + 4_000f64.powi(2));
    // The same contacts by locale and by mailbox provider.
    let split = |by| async move {
        store
            .segment_results(
                id,
                30 * 86_400,
                Timestamp::EPOCH,
                at("2030-01-01T00:00:00Z"),
                by,
            )
            .await
            .unwrap()
            .into_iter()
            .map(|(s, a)| (s, a.enrolled, a.converted, a.revenue_minor))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        split(winback_store::Segment::Locale).await,
        [
            ("default".to_owned(), 1, 1, 4_000),
            ("nl".to_owned(), 1, 1, 5_000)
        ]
    );
    assert_eq!(
        split(winback_store::Segment::Provider).await,
        [
            ("example.nl".to_owned(), 1, 1, 4_000),
            ("google".to_owned(), 1, 1, 5_000)
        ]
    );

    // 200 days after the returns: every share is measurable.
    let stay = store
        .stay(id, 30 * 86_400, at("2024-12-25T10:00:00Z"))
        .await
        .unwrap();
    let r = &stay.reactivated;
    assert_eq!(r.people, 2);
    assert_eq!((r.again_30d.eligible, r.again_30d.yes), (2, 0));
    assert_eq!((r.again_90d.eligible, r.again_90d.yes), (2, 1));
    assert_eq!((r.again_180d.eligible, r.again_180d.yes), (2, 1));
    assert_eq!((r.lapsed_again.eligible, r.lapsed_again.yes), (2, 1));
    assert_eq!(r.revenue_after_minor, 7_000);
    assert_eq!(stay.holdout_returned.people, 0);
    assert_eq!(stay.never_lapsed.people, 1);
    // Ten days after the returns: nobody is old enough for the 30-day share yet.
    let early = store
        .stay(id, 30 * 86_400, at("2024-06-18T10:00:00Z"))
        .await
        .unwrap();
    assert_eq!(early.reactivated.again_30d.eligible, 0);
    assert_eq!(early.reactivated.again_30d.rate(), None);

    // The funnel: two sent, one clicked (twice: counted once), one opened by a machine only.
    let keys: Vec<String> = store
        .pool()
        .fetch("SELECT idempotency_key FROM outbox ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect();
    let events = format!(
        "{{\"customer_id\":\"A\",\"at\":\"2024-06-04T10:00:00Z\",\"type\":\"email_clicked\",\"message_id\":\"{0}\"}}\n\
         {{\"customer_id\":\"A\",\"at\":\"2024-06-04T11:00:00Z\",\"type\":\"email_clicked\",\"message_id\":\"{0}\",\"url\":\"x\"}}\n\
         {{\"customer_id\":\"B\",\"at\":\"2024-06-04T10:00:00Z\",\"type\":\"email_opened\",\"message_id\":\"{1}\",\"machine\":true}}\n",
        keys[0], keys[1]
    );
    let r = import(
        store,
        SourceKind::Events,
        "events.jsonl",
        &events,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    let f = store
        .message_funnel(id, Timestamp::EPOCH, at("2030-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].sent, f[0].delivered, f[0].clicked), (2, 2, 1));
    assert_eq!((f[0].opened_human, f[0].opened_machine), (0, 1));
    // The same messages by locale and by mailbox provider.
    let detail = store
        .message_funnel_detail(id, Timestamp::EPOCH, at("2030-01-01T00:00:00Z"))
        .await
        .unwrap();
    let by_locale: Vec<(String, i64, i64)> =
        winback_store::rollup(&detail, winback_store::FunnelKey::Locale)
            .iter()
            .map(|f| (f.locale.clone(), f.sent, f.clicked))
            .collect();
    assert_eq!(
        by_locale,
        [("default".to_owned(), 1, 0), ("nl".to_owned(), 1, 1)]
    );
    let by_provider: Vec<(String, i64, i64)> =
        winback_store::rollup(&detail, winback_store::FunnelKey::Provider)
            .iter()
            .map(|f| (f.provider.clone(), f.sent, f.opened_machine))
            .collect();
    assert_eq!(
        by_provider,
        [("example.nl".to_owned(), 1, 1), ("google".to_owned(), 1, 0)]
    );
    let ramps = store.provider_ramps().await.unwrap();
    assert_eq!(
        ramps
            .iter()
            .map(|r| r.provider.as_str())
            .collect::<Vec<_>>(),
        ["example.nl", "google"]
    );
    assert!(
        ramps
            .iter()
            .all(|r| r.window_attempts == 1 && r.paused.is_none())
    );

    // A second campaign messages the same two people three weeks later. The report reads every
    // campaign's funnel and cohorts in one pass; each campaign keeps its own messages and
    // responses (the clicks above stay with "hello").
    let later = at("2024-06-24T10:00:00Z");
    let again = CAMPAIGN.replace("name = \"hello\"", "name = \"again\"");
    store
        .apply_campaign("again", "again.toml", &again, later)
        .await
        .unwrap();
    assert!(
        store
            .set_campaign_status("again", winback_engine::CampaignStatus::Active, later)
            .await
            .unwrap()
    );
    clock.set(later);
    let s = engine.run_until_idle(10).await.unwrap();
    let why: Vec<String> = store
        .pool()
        .fetch(
            "SELECT COALESCE(outcome, '-') FROM outbox WHERE state = 'dropped'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect();
    // A's order of 18 July is already stored, so A's journey ends as purchased before the send.
    assert_eq!((s.enrolled, s.sent, s.dropped), (2, 1, 1), "{s:?}");
    assert_eq!(why, ["journey_ended:purchased"]);
    let again_id = store
        .campaigns()
        .await
        .unwrap()
        .iter()
        .find(|c| c.name == "again")
        .unwrap()
        .id;
    let (from, until) = (Timestamp::EPOCH, at("2030-01-01T00:00:00Z"));
    let mut all = store.message_funnel_details(from, until).await.unwrap();
    assert_eq!(all.len(), 2);
    for cid in [id, again_id] {
        let one = store.message_funnel_detail(cid, from, until).await.unwrap();
        assert_eq!(all.remove(&cid).unwrap(), one);
    }
    let f = store.message_funnel(again_id, from, until).await.unwrap();
    assert_eq!(
        (f[0].sent, f[0].dropped, f[0].clicked, f[0].opened_machine),
        (1, 1, 0, 0)
    );
    let now = at("2024-12-25T10:00:00Z");
    let stays = store
        .stays(&[(id, 30 * 86_400), (again_id, 30 * 86_400)], now)
        .await
        .unwrap();
    assert_eq!(stays[0], store.stay(id, 30 * 86_400, now).await.unwrap());
    assert_eq!(
        stays[1],
        store.stay(again_id, 30 * 86_400, now).await.unwrap()
    );
    // Only A bought within 30 days of the second message (on 18 July).
    assert_eq!(stays[1].reactivated.people, 1);
}
conformance!(
    stay_and_funnel,
    super::reactivated_customers_are_followed_after_their_return
);
