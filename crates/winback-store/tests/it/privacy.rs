//! Privacy on both backends: retention with the clock moved 36 months, erasure that survives
//! a re-import, the subject access export, objection, and the hygiene figures.

use winback_domain::{ACTIVITY_EVENTS, Clock, ManualClock, Timestamp};
use winback_engine::file_outbox::FileOutbox;
use winback_engine::ports::JourneyStore;
use winback_engine::{Engine, EngineSettings};
use winback_import::SourceKind;
use winback_store::{SqlStore, ingest::Mode};

use crate::{conformance, import};

fn at(s: &str) -> Timestamp {
    Timestamp::new(s.parse().unwrap())
}

/// `t` plus `months` calendar months and `days` days (UTC).
fn shifted(t: Timestamp, months: i64, days: i64) -> Timestamp {
    let z = t
        .jiff()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .checked_add(jiff::Span::new().months(months).days(days))
        .unwrap();
    Timestamp::new(z.timestamp())
}

async fn count(store: &SqlStore, sql: &str) -> i64 {
    store.pool().fetch(sql, &[]).await.unwrap()[0]
        .i64(0)
        .unwrap()
}

async fn text_of(store: &SqlStore, sql: &str) -> String {
    store
        .pool()
        .fetch(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (0..4)
                .filter_map(|i| r.opt_text(i).ok().flatten())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// Everyone's latest own activity is 2021-03-01 10:00 or later, except as noted.
const CUSTOMERS: &str = "customer_id,email,phone,first_name,last_name,email_consent,created_at\n\
    OLD,old@example.nl,+31612345678,Olga,Oud,yes,2019-01-01T00:00:00Z\n\
    OPENER,opener@example.nl,,Otto,Open,yes,2019-01-01T00:00:00Z\n\
    VISITOR,visitor@example.nl,,Vera,Bezoek,yes,2019-01-01T00:00:00Z\n\
    BUYER,buyer@example.nl,,Bart,Koper,yes,2019-01-01T00:00:00Z\n\
    NEWBIE,newbie@example.nl,,Nina,Nieuw,yes,2021-03-02T10:00:00Z\n";

const ORDERS: &str = "order_id,customer_id,ordered_at,total,currency,status\n\
    O1,OLD,2021-03-01T10:00:00Z,40.00,EUR,paid\n\
    O2,OPENER,2021-03-01T10:00:00Z,50.00,EUR,paid\n\
    O3,VISITOR,2021-03-01T10:00:00Z,60.00,EUR,paid\n\
    O4,BUYER,2021-03-01T10:00:00Z,70.00,EUR,paid\n\
    O5,BUYER,2021-03-03T10:00:00Z,80.00,EUR,paid\n";

// Opens never keep anyone; a visit does.
const EVENTS: &str = "{\"customer_id\":\"OPENER\",\"at\":\"2021-03-20T10:00:00Z\",\"type\":\"email_opened\",\"user_agent\":\"Mozilla/5.0 (iPhone)\"}\n\
    {\"customer_id\":\"VISITOR\",\"at\":\"2021-03-02T12:00:00Z\",\"type\":\"site_visited\",\"url\":\"https://shop.example/account?u=vera\"}\n\
    {\"customer_id\":\"OLD\",\"at\":\"2021-02-01T10:00:00Z\",\"type\":\"survey_answered\",\"reason\":\"too_expensive\"}\n";

async fn load(store: &SqlStore) {
    for (kind, name, text) in [
        (SourceKind::Customers, "customers.csv", CUSTOMERS),
        (SourceKind::Orders, "orders.csv", ORDERS),
        (SourceKind::Events, "events.jsonl", EVENTS),
    ] {
        let r = import(store, kind, name, text, Mode::Strict).await;
        assert!(r.committed, "{:?}", r.errors);
    }
}

async fn profile(store: &SqlStore, key: &str) -> Option<i64> {
    store
        .find_profile(key)
        .await
        .unwrap()
        .map(winback_domain::ProfileId::get)
}

async fn run_retention(store: &SqlStore, now: Timestamp) -> Vec<i64> {
    let cutoff = shifted(now, -36, 0);
    let run = store
        .begin_privacy_run("retention", false, &serde_json::json!({}), now)
        .await
        .unwrap();
    let mut erased = Vec::new();
    for c in store
        .retention_candidates(cutoff, None, &ACTIVITY_EVENTS)
        .await
        .unwrap()
    {
        if store
            .erase_profile(c.profile_id, run, "test", Some(c.last_activity.at), now)
            .await
            .unwrap()
            .is_some()
        {
            erased.push(c.profile_id.get());
        }
    }
    store
        .finish_privacy_run(run, erased.len() as i64, now)
        .await
        .unwrap();
    erased.sort_unstable();
    erased
}

async fn retention_erases_exactly_the_inactive_and_keeps_aggregates(store: &SqlStore) {
    load(store).await;
    let ids = [
        profile(store, "OLD").await.unwrap(),
        profile(store, "OPENER").await.unwrap(),
        profile(store, "VISITOR").await.unwrap(),
        profile(store, "BUYER").await.unwrap(),
        profile(store, "NEWBIE").await.unwrap(),
    ];
    let revenue = "SELECT CAST(SUM(total_minor) AS BIGINT) FROM orders";
    let orders_per_customer = "SELECT COUNT(DISTINCT customer_id) FROM orders";
    let events = "SELECT COUNT(*) FROM events";
    let before = (
        count(store, revenue).await,
        count(store, orders_per_customer).await,
        count(store, events).await,
    );
    let last = at("2021-03-01T10:00:00Z");
    // What each person's latest activity was, and when: an order, a visit after it (OLD's
    // survey answer came before its order; OPENER's open is not an activity), or signing up.
    let latest = store.last_activity(&ACTIVITY_EVENTS).await.unwrap();
    let of = |i: usize| {
        let a = &latest[&ids[i]];
        (a.basis.clone(), a.at.to_string())
    };
    assert_eq!(of(0), ("order".into(), "2021-03-01T10:00:00Z".into()));
    assert_eq!(of(1), ("order".into(), "2021-03-01T10:00:00Z".into()));
    assert_eq!(
        of(2),
        ("site_visited".into(), "2021-03-02T12:00:00Z".into())
    );
    assert_eq!(of(3), ("order".into(), "2021-03-03T10:00:00Z".into()));
    assert_eq!(of(4), ("first_seen".into(), "2021-03-02T10:00:00Z".into()));
    assert_eq!(latest.len(), 5);

    // The clock at 36 months minus a day after the oldest activity: nobody is due.
    assert!(run_retention(store, shifted(last, 36, -1)).await.is_empty());
    // 36 months and a day: OLD (an order, then nothing) and OPENER (opens do not count) go.
    let erased = run_retention(store, shifted(last, 36, 1)).await;
    let mut expected = vec![ids[0], ids[1]];
    expected.sort_unstable();
    assert_eq!(erased, expected);
    // A day later still: VISITOR (visit on 03-02) and NEWBIE (signed up on 03-02) too; BUYER
    // ordered again on 03-03 and stays.
    let erased = run_retention(store, shifted(last, 36, 2)).await;
    let mut expected = vec![ids[2], ids[4]];
    expected.sort_unstable();
    assert_eq!(erased, expected);
    assert_eq!(profile(store, "BUYER").await, Some(ids[3]));
    assert_eq!(profile(store, "old@example.nl").await, None);

    // The aggregates are exactly what they were.
    let after = (
        count(store, revenue).await,
        count(store, orders_per_customer).await,
        count(store, events).await,
    );
    assert_eq!(before, after);
    // Nothing personal is left of the erased.
    let left = text_of(
        store,
        "SELECT email, phone, first_name, last_name FROM customers WHERE erased_at IS NOT NULL",
    )
    .await;
    assert!(left.trim().is_empty(), "{left}");
    let payloads = text_of(store, "SELECT payload FROM events").await;
    assert!(!payloads.contains("vera"), "{payloads}");
    assert!(
        payloads.contains("too_expensive"),
        "reasons stay for the KPIs"
    );
    for name in ["OLD", "OPENER", "VISITOR", "NEWBIE"] {
        let n = count(
            store,
            &format!("SELECT COUNT(*) FROM customers WHERE external_id = '{name}'"),
        )
        .await;
        assert_eq!(n, 0, "{name}'s shop id is replaced by a pseudonym");
    }
    // The audit trail names each person once, by id, with the reason.
    let (runs, entries) = store.privacy_log(100).await.unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(
        runs.iter().map(|r| r.affected).collect::<Vec<_>>(),
        vec![2, 2, 0]
    );
    assert_eq!(entries.len(), 4);
    assert!(entries.iter().all(|e| e.action == "erased"));
    let opener = entries
        .iter()
        .find(|e| e.profile_id == winback_domain::ProfileId::new(ids[1]))
        .unwrap();
    assert_eq!(opener.last_activity_at, Some(last));
}
conformance!(
    retention_clock,
    super::retention_erases_exactly_the_inactive_and_keeps_aggregates
);

async fn erasure_survives_reimport_and_export_is_one_persons(store: &SqlStore) {
    load(store).await;
    let now = at("2024-06-01T00:00:00Z");
    let old = profile(store, "old@example.nl").await.unwrap();
    assert_eq!(profile(store, "+31612345678").await, Some(old));

    // Access: everything about OLD, nothing about anyone else.
    let export = store
        .export_profile(winback_domain::ProfileId::new(old))
        .await
        .unwrap();
    let text = export.to_string();
    for own in [
        "old@example.nl",
        "+31612345678",
        "Olga",
        "O1",
        "too_expensive",
    ] {
        assert!(text.contains(own), "the export has {own}");
    }
    for other in ["OPENER", "opener@", "Vera", "BUYER", "O2", "O4"] {
        assert!(!text.contains(other), "the export leaks {other}: {text}");
    }
    assert_eq!(export["orders"].as_array().unwrap().len(), 1);
    assert_eq!(export["consent_history"].as_array().unwrap().len(), 1);

    // A mail Olga was sent, with her name in its subject as sent.
    crate::campaign_rows(store, 1).await;
    store
        .pool()
        .execute(
            "INSERT INTO outbox (idempotency_key, campaign_id, enrolment_id, profile_id, step, variant, channel, template, state, not_before, created_at, recipient, sent_at, sent_subject) \
             VALUES ('olga-1', 1, 1, $1, 's', 'a', 'email', 'we_miss_you', 'sent', 0, 0, 'old@example.nl', 1, 'Olga, we miss you')",
            &[winback_store::db::Val::from(old)],
        )
        .await
        .unwrap();
    // Erasure by email.
    let run = store
        .begin_privacy_run("erasure", false, &serde_json::json!({}), now)
        .await
        .unwrap();
    let e = store
        .erase_profile(
            winback_domain::ProfileId::new(old),
            run,
            "erasure request",
            None,
            now,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.records, 1);
    assert!(e.hashes >= 3, "external id, email and phone: {e:?}");
    assert!(
        store
            .is_erased_address("email", "Old@Example.nl")
            .await
            .unwrap()
    );
    assert!(
        store
            .is_erased_address("sms", "+31612345678")
            .await
            .unwrap()
    );
    let salts = text_of(store, "SELECT hash FROM erased_identities").await;
    assert!(!salts.contains("old@"), "only hashes are kept");
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM outbox WHERE sent_subject IS NOT NULL OR recipient IS NOT NULL"
        )
        .await,
        0,
        "the message's address and subject as sent go with her"
    );

    // The shop re-imports its full files: OLD stays erased, the order still counts once.
    let r = import(
        store,
        SourceKind::Customers,
        "customers.csv",
        CUSTOMERS,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    assert_eq!(r.written.erased_kept_out, 1);
    let r = import(
        store,
        SourceKind::Orders,
        "orders.csv",
        ORDERS,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    assert_eq!(profile(store, "old@example.nl").await, None);
    assert_eq!(profile(store, "OLD").await, None);
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM customers WHERE email = 'old@example.nl' OR phone = '+31612345678' OR first_name = 'Olga'").await,
        0
    );
    assert_eq!(count(store, "SELECT COUNT(*) FROM orders").await, 5);
    assert_eq!(
        count(
            store,
            &format!("SELECT COUNT(*) FROM orders WHERE customer_id = {old}")
        )
        .await,
        1,
        "the re-imported order attaches to the anonymous record"
    );
    // A new account with the erased address is kept out as well; a live customer who now
    // gives the erased phone number keeps everything but that number.
    let again = "customer_id,email,phone,first_name,email_consent\n\
        OLD-2,OLD@example.nl,,Olga,yes\n\
        BUYER,buyer@example.nl,+31612345678,Bart,yes\n";
    let r = import(
        store,
        SourceKind::Customers,
        "again.csv",
        again,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    assert_eq!(r.written.erased_kept_out, 1);
    assert_eq!(profile(store, "OLD-2").await, None);
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM customers WHERE phone = '+31612345678' OR email = 'old@example.nl'").await,
        0
    );
    assert!(profile(store, "buyer@example.nl").await.is_some());
    // Orders of the new account still count, anonymously.
    let r = import(
        store,
        SourceKind::Orders,
        "orders2.csv",
        "order_id,customer_id,ordered_at,total,currency,status\nO9,OLD-2,2024-05-01T10:00:00Z,10.00,EUR,paid\n",
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    assert_eq!(
        count(
            store,
            &format!("SELECT COUNT(*) FROM orders WHERE customer_id = {old}")
        )
        .await,
        2
    );
    // Events for the erased person are refused, payloads and all; another person's are kept.
    let events_before = count(store, "SELECT COUNT(*) FROM events").await;
    let r = import(
        store,
        SourceKind::Events,
        "events.jsonl",
        concat!(
            r#"{"customer_id":"OLD","at":"2024-05-02T10:00:00Z","type":"site_visited","url":"https://shop.example/olga-private"}"#,
            "\n",
            r#"{"customer_id":"BUYER","at":"2024-05-02T10:00:00Z","type":"site_visited","url":"https://shop.example/x"}"#,
            "\n"
        ),
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    assert_eq!(r.written.erased_events_refused, 1);
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM events").await,
        events_before + 1
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM events WHERE payload LIKE '%olga-private%'"
        )
        .await,
        0
    );
}
conformance!(
    erasure_reimport,
    super::erasure_survives_reimport_and_export_is_one_persons
);

/// The ramp admits everyone: these scenarios are about privacy, not warming up.
fn settings() -> EngineSettings {
    let mut s = EngineSettings::default();
    s.policy.ramp.start_share = 1.0;
    s
}

async fn launch(store: &SqlStore, name: &str, text: &str, start: Timestamp) {
    winback_engine::Campaign::parse(&format!("{name}.toml"), text).unwrap();
    store
        .apply_campaign(name, &format!("{name}.toml"), text, start)
        .await
        .unwrap();
    assert!(
        store
            .set_campaign_status(name, winback_engine::CampaignStatus::Active, start)
            .await
            .unwrap()
    );
}

const CAMPAIGN: &str = r#"
[campaign]
name = "hello"
audience = 'email_ok'
[trigger]
type = "audience"
[holdout]
share = 0.0
[[steps]]
id = "wait"
type = "wait"
duration = "1d"
[[steps]]
id = "hello"
type = "send"
template = "we-miss-you"
subject = "Hi"
"#;

async fn objection_and_erasure_stop_queued_messages_at_once(store: &SqlStore) {
    load(store).await;
    let start = at("2024-06-03T10:00:00Z");
    launch(store, "hello", CAMPAIGN, start).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start);
    let engine = Engine::new(store, &outbox, &clock, settings());
    let s = engine.run_until_idle(10).await.unwrap();
    assert_eq!(s.enrolled, 5, "{s:?}");
    assert_eq!(s.sent, 0);

    let now = clock.now();
    let buyer = profile(store, "buyer@example.nl").await.unwrap();
    let visitor = profile(store, "visitor@example.nl").await.unwrap();
    // The engine's enrolment keeps each contact's address domain for the report's segments.
    let domain = format!(
        "SELECT COUNT(*) FROM enrolments WHERE profile_id = {visitor} AND email_domain = 'example.nl'"
    );
    assert_eq!(count(store, &domain).await, 1);
    let run = store
        .begin_privacy_run("objection", false, &serde_json::json!({}), now)
        .await
        .unwrap();
    store
        .object(winback_domain::ProfileId::new(buyer), run, now)
        .await
        .unwrap();
    store
        .erase_profile(
            winback_domain::ProfileId::new(visitor),
            run,
            "erasure request",
            None,
            now,
        )
        .await
        .unwrap();
    // Erasure takes the domain with the address.
    assert_eq!(count(store, &domain).await, 0);
    assert_eq!(
        count(
            store,
            &format!("SELECT COUNT(*) FROM enrolments WHERE profile_id = {visitor} AND email_domain IS NULL")
        )
        .await,
        1
    );
    // A later soft opt-in (a purchase) does not undo the objection.
    let r = import(
        store,
        SourceKind::Customers,
        "later.csv",
        "customer_id,email,email_consent,email_consent_at\nBUYER,buyer@example.nl,soft_opt_in,2024-06-03T12:00:00Z\n",
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    let prefs = store
        .preferences(winback_domain::ProfileId::new(buyer))
        .await
        .unwrap();
    assert!(!prefs.email && !prefs.sms, "{prefs:?}");

    clock.advance_days(2);
    let s = engine.run_until_idle(10).await.unwrap();
    assert_eq!(s.sent, 3, "{s:?}");
    let sent_to = text_of(
        store,
        "SELECT recipient FROM outbox WHERE state = 'sent' ORDER BY recipient",
    )
    .await;
    assert!(!sent_to.contains("buyer@"), "{sent_to}");
    assert!(!sent_to.contains("visitor@"), "{sent_to}");
    assert_eq!(outbox.files().written(), 3);
}
conformance!(
    objection_erasure_send_time,
    super::objection_and_erasure_stop_queued_messages_at_once
);

async fn hygiene_counts_idle_addresses_bounces_and_merges(store: &SqlStore) {
    load(store).await;
    let now = at("2021-12-01T00:00:00Z");
    let clicks = "{\"customer_id\":\"BUYER\",\"at\":\"2021-11-01T10:00:00Z\",\"type\":\"email_clicked\"}\n\
        {\"customer_id\":\"VISITOR\",\"at\":\"2021-01-01T10:00:00Z\",\"type\":\"email_clicked\"}\n";
    let r = import(
        store,
        SourceKind::Events,
        "clicks.jsonl",
        clicks,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    store
        .suppress("email", "old@example.nl", "hard_bounce", now)
        .await
        .unwrap();
    let h = store.hygiene(now).await.unwrap();
    assert_eq!(h.addresses, 5);
    // OPENER's open was a person (an iPhone, no machine flag): 8 months ago. VISITOR clicked
    // 11 months ago, BUYER last month; OLD (since 2019) and NEWBIE (since March) never engaged.
    assert_eq!(h.never_engaged, 2);
    assert_eq!(h.idle_6m, 4);
    assert_eq!(h.idle_12m, 1);
    assert_eq!(h.idle_24m, 1);
    assert_eq!(h.hard_bounces, 1);
    assert_eq!(h.suppressions.get("hard_bounce"), Some(&1));
    assert_eq!(h.erased_profiles, 0);
}
conformance!(
    hygiene,
    super::hygiene_counts_idle_addresses_bounces_and_merges
);

/// The "do you want to stay?" notice: the example campaign reaches those a month from
/// erasure; erasure waits for the notice period; a click on "keep my account" is activity.
async fn the_retention_notice_is_sent_once_and_waited_for(store: &SqlStore) {
    load(store).await;
    let text = include_str!("../../../../examples/campaigns/retention-notice.toml");
    // 35 months after the orders of 2021-03-01 (~1,065 days): notices go out.
    let start = at("2024-02-05T10:00:00Z");
    crate::engine::features(store, start).await;
    launch(store, "retention-notice", text, start).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start);
    let engine = Engine::new(store, &outbox, &clock, settings());
    engine.run_until_idle(10).await.unwrap();
    clock.advance_days(1);
    engine.run_until_idle(10).await.unwrap();
    // OLD, OPENER, VISITOR (ordered 2021-03-01; a visit 03-02 and sign-up do not move the
    // feature clock past 1,065 days here) and BUYER (03-03) are not all due yet: only those
    // with 1,065 days since their own activity.
    let sent = outbox.files().written();
    assert!(sent >= 1, "notices went out");
    let old = profile(store, "OLD").await.unwrap();
    let buyer = profile(store, "BUYER").await.unwrap();
    // OPENER clicks "Yes, keep my account".
    let r = import(
        store,
        SourceKind::Events,
        "click.jsonl",
        "{\"customer_id\":\"OPENER\",\"at\":\"2024-02-07T09:00:00Z\",\"type\":\"email_clicked\"}\n",
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    let opener = profile(store, "OPENER").await.unwrap();

    // At 36 months and two days, the notice of OLD went out less than 30 days ago: it waits.
    let now = shifted(at("2021-03-01T10:00:00Z"), 36, 2);
    let notice = Some(("retention-notice", now.plus_seconds(-30 * 86_400)));
    let due = store
        .retention_candidates(shifted(now, -36, 0), notice, &ACTIVITY_EVENTS)
        .await
        .unwrap();
    let old_c = due
        .iter()
        .find(|c| c.profile_id == winback_domain::ProfileId::new(old))
        .expect("OLD is due");
    assert!(old_c.notice_pending, "{old_c:?}");
    assert!(
        due.iter()
            .all(|c| c.profile_id != winback_domain::ProfileId::new(opener)),
        "the click kept OPENER"
    );
    assert!(
        due.iter()
            .all(|c| c.profile_id != winback_domain::ProfileId::new(buyer))
    );
    // 31 days after the notice: no longer waiting.
    let later = at("2024-03-08T10:00:00Z");
    let notice = Some(("retention-notice", later.plus_seconds(-30 * 86_400)));
    let due = store
        .retention_candidates(shifted(later, -36, 0), notice, &ACTIVITY_EVENTS)
        .await
        .unwrap();
    let old_c = due
        .iter()
        .find(|c| c.profile_id == winback_domain::ProfileId::new(old))
        .expect("OLD is due");
    assert!(!old_c.notice_pending);
    // One notice per person, ever (the engine's once-only send).
    let per_person = count(
        store,
        "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM outbox GROUP BY profile_id) t",
    )
    .await;
    assert_eq!(per_person, 1);
}
conformance!(
    retention_notice,
    super::the_retention_notice_is_sent_once_and_waited_for
);

/// A soft opt-in reaches existing customers (an order) with campaigns about similar products;
/// a subscriber with a soft opt-in, or a campaign with `similar_products = false`, needs an
/// explicit opt-in. A later withdrawal wins over both.
async fn soft_opt_in_is_for_customers_and_similar_products(store: &SqlStore) {
    let customers = "customer_id,email,email_consent,email_consent_at\n\
        BOUGHT,bought@example.nl,soft_opt_in,2024-01-01T00:00:00Z\n\
        SUBSCRIBER,sub@example.nl,soft_opt_in,2024-01-01T00:00:00Z\n\
        EXPLICIT,explicit@example.nl,yes,2024-01-01T00:00:00Z\n\
        LEFT,left@example.nl,soft_opt_in,2024-01-01T00:00:00Z\n";
    let orders = "order_id,customer_id,ordered_at,total,currency,status\n\
        O1,BOUGHT,2024-02-01T10:00:00Z,40.00,EUR,paid\n\
        O2,LEFT,2024-02-01T10:00:00Z,40.00,EUR,paid\n";
    let events = "{\"customer_id\":\"LEFT\",\"at\":\"2024-03-01T10:00:00Z\",\"type\":\"email_unsubscribed\"}\n";
    for (kind, name, text) in [
        (SourceKind::Customers, "customers.csv", customers),
        (SourceKind::Orders, "orders.csv", orders),
        (SourceKind::Events, "events.jsonl", events),
    ] {
        let r = import(store, kind, name, text, Mode::Strict).await;
        assert!(r.committed, "{:?}", r.errors);
    }
    let start = at("2024-06-03T10:00:00Z");
    crate::engine::features(store, start).await;
    let similar = CAMPAIGN.replace("hello", "similar");
    let other = CAMPAIGN.replace("hello", "other").replace(
        "[campaign]\n",
        "[campaign]\nsimilar_products = false\nexclusive = false\n",
    );
    launch(store, "similar", &similar, start).await;
    launch(store, "other", &other, start).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start);
    let engine = Engine::new(store, &outbox, &clock, settings());
    engine.run_until_idle(10).await.unwrap();
    clock.advance_days(2);
    engine.run_until_idle(10).await.unwrap();
    let entered = text_of(
        store,
        "SELECT k.name || ':' || c.external_id FROM enrolments e JOIN campaigns k ON k.id = e.campaign_id \
         JOIN customers c ON c.id = e.profile_id ORDER BY 1",
    )
    .await;
    assert_eq!(
        entered, "other:EXPLICIT\nsimilar:BOUGHT\nsimilar:EXPLICIT",
        "a soft opt-in without an order, or for other products, or withdrawn, does not enter"
    );
    let sent = text_of(store, "SELECT recipient FROM outbox WHERE state = 'sent'").await;
    assert!(!sent.contains("sub@") && !sent.contains("left@"), "{sent}");
    assert!(sent.contains("bought@"), "{sent}");
    // The ledger keeps every statement with its source and time.
    let ledger = text_of(
        store,
        "SELECT l.status, l.source FROM consent_ledger l JOIN customers c ON c.id = l.customer_id WHERE c.external_id = 'LEFT' ORDER BY l.recorded_at",
    )
    .await;
    assert_eq!(
        ledger,
        "soft_opt_in|import:customers.csv\nwithdrawn|event:email_unsubscribed"
    );
}
conformance!(
    soft_opt_in,
    super::soft_opt_in_is_for_customers_and_similar_products
);

/// A sunset (no answer to a re-permission message) unsubscribes from marketing email only:
/// SMS, where consented, still reaches the person.
async fn a_sunset_ends_email_and_leaves_other_channels(store: &SqlStore) {
    let customers = "customer_id,email,phone,email_consent,sms_consent\n\
        QUIET,quiet@example.nl,+31612345679,yes,yes\n";
    let r = import(
        store,
        SourceKind::Customers,
        "customers.csv",
        customers,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    let start = at("2024-06-03T10:00:00Z");
    crate::engine::features(store, start).await;
    let sunset = r#"
[campaign]
name = "goodbye"
audience = 'email_ok'
[trigger]
type = "audience"
[holdout]
share = 0.0
[[steps]]
id = "goodbye"
type = "sunset"
template = "farewell"
subject = "There will always be a place for you"
"#;
    launch(store, "goodbye", sunset, start).await;
    let quiet = profile(store, "QUIET").await.unwrap();
    assert!(
        store
            .preferences(winback_domain::ProfileId::new(quiet))
            .await
            .unwrap()
            .email
    );
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start);
    let engine = Engine::new(store, &outbox, &clock, settings());
    let s = engine.run_until_idle(10).await.unwrap();
    assert_eq!(s.sent, 1, "{s:?}");
    let prefs = store
        .preferences(winback_domain::ProfileId::new(quiet))
        .await
        .unwrap();
    assert!(!prefs.email, "unsubscribed from marketing email");
    assert!(prefs.sms, "SMS still allowed by its own consent");
    let h = store.hygiene(start).await.unwrap();
    assert_eq!(h.sunset, 1);
}
conformance!(sunset, super::a_sunset_ends_email_and_leaves_other_channels);

/// Keys find the right person: the shop's customer id `7` is the shop's customer 7 even when
/// internal row 7 is somebody else; internal numbers need `profile:N`; a phone in international
/// form works; the access export of a scored person reads its REAL columns.
async fn keys_name_the_shops_customer(store: &SqlStore) {
    let mut customers = String::from("customer_id,email,phone,first_name\n");
    for i in 1..=9 {
        customers.push_str(&format!("K{i},k{i}@example.nl,+3161234560{i},Klant{i}\n"));
    }
    customers.push_str("7,seven@example.nl,+31618765432,Zeven\n");
    let r = import(
        store,
        SourceKind::Customers,
        "c.csv",
        &customers,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    let internal_seven = count(store, "SELECT id FROM customers WHERE external_id = 'K7'").await;
    assert_eq!(
        internal_seven, 7,
        "the fixture needs internal row 7 to be K7"
    );
    let shop_seven = count(store, "SELECT id FROM customers WHERE external_id = '7'").await;
    assert_eq!(
        store.find_profile("7").await.unwrap(),
        Some(winback_domain::ProfileId::new(shop_seven))
    );
    assert_eq!(
        store.find_profile("profile:7").await.unwrap(),
        Some(winback_domain::ProfileId::new(7))
    );
    assert_eq!(
        store.find_profile("+31 6 1876 5432").await.unwrap(),
        Some(winback_domain::ProfileId::new(shop_seven))
    );
    assert_eq!(
        store.find_profile("SEVEN@example.nl").await.unwrap(),
        Some(winback_domain::ProfileId::new(shop_seven))
    );
    assert_eq!(
        store.find_profile("k7").await.unwrap(),
        Some(winback_domain::ProfileId::new(7)),
        "ids ignore case"
    );
    assert_eq!(store.find_profile("profile:x").await.unwrap(), None);
    assert_eq!(
        store.find_profile("12").await.unwrap(),
        None,
        "no row number"
    );
    let detail = store.customer_detail("7").await.unwrap().unwrap();
    assert_eq!(detail.records[0].external_id, "7");

    // A scored person's export reads p_alive and CLV (REAL columns) on both backends.
    store
        .pool()
        .execute(
            &format!("INSERT INTO profile_scores (profile_id, run_id, stage, reason, p_alive, expected_90d, clv_minor, purchases, spend_minor, priority_minor) VALUES ({shop_seven}, 1, 'lapsed', 'test', 0.25, 0.5, 1234.4, 1, 100, 56.6)"),
            &[],
        )
        .await
        .unwrap();
    let export = store
        .export_profile(winback_domain::ProfileId::new(shop_seven))
        .await
        .unwrap();
    assert_eq!(export["scores"]["p_alive"], 0.25);
    assert_eq!(export["scores"]["clv_minor"], 1234);
    assert_eq!(export["consent_in_force"][0]["address"], "seven@example.nl");
}
conformance!(keys, super::keys_name_the_shops_customer);

/// The retention run reads events only for the people whose account, orders and opt-ins are
/// all older than the cutoff. Whatever the cutoff, on random shops with merged profiles, erased
/// people, activity and non-activity events, ties at one instant and opt-ins from several
/// sources, its candidates are exactly the people whose latest activity over everything is
/// older, with the same time and basis.
async fn retention_candidates_are_everyone_older_than_the_cutoff(store: &SqlStore) {
    let mut rng =
        crate::Rng(std::env::var("RETENTION_SEED").map_or(20_261_207, |s| s.parse().unwrap()));
    // Whole days at 10:00, so that an order, an event and an account often share an instant.
    let day = |rng: &mut crate::Rng| {
        let t = at("2018-01-01T10:00:00Z").plus_seconds(rng.below(4 * 365) as i64 * 86_400);
        t.to_string()
    };
    let n = 60;
    let mut customers = String::from("customer_id,email,created_at\n");
    let mut orders = String::from("order_id,customer_id,ordered_at,total,currency,status\n");
    let mut events = String::new();
    for i in 0..n {
        customers.push_str(&format!("K{i},p{i}@example.nl,{}\n", day(&mut rng)));
        for o in 0..rng.below(3) {
            orders.push_str(&format!("O{i}-{o},K{i},{},10.00,EUR,paid\n", day(&mut rng)));
        }
        for _ in 0..rng.below(5) {
            let kind = rng.pick(&[
                "site_visited",
                "logged_in",
                "email_clicked",
                "email_opened",
                "subscription_cancelled",
            ]);
            events.push_str(&format!(
                "{{\"customer_id\":\"K{i}\",\"at\":\"{}\",\"type\":\"{kind}\"}}\n",
                day(&mut rng)
            ));
        }
    }
    for (kind, name, text) in [
        (SourceKind::Customers, "customers.csv", customers.as_str()),
        (SourceKind::Orders, "orders.csv", orders.as_str()),
        (SourceKind::Events, "events.jsonl", events.as_str()),
    ] {
        let r = import(store, kind, name, text, Mode::Strict).await;
        assert!(r.committed, "{name}: {:?}", r.errors);
    }
    // Every seventh record is merged into the one before (resolution is the app's; here its
    // result is written as it would be); the others stay unresolved, their own person.
    for i in (0..n).filter(|i| i % 7 == 6) {
        store
            .pool()
            .execute(
                &format!(
                    "UPDATE customers SET profile_id = (SELECT id FROM customers WHERE external_id = 'K{}') \
                     WHERE external_id IN ('K{}', 'K{i}')",
                    i - 1,
                    i - 1
                ),
                &[],
            )
            .await
            .unwrap();
    }
    // Opt-ins: the preference centre's count, an imported one does not.
    for i in (0..n).step_by(5) {
        let source = if i % 10 == 0 {
            "preference_centre"
        } else {
            "import"
        };
        store
            .pool()
            .execute(
                &format!(
                    "INSERT INTO consent_ledger (customer_id, channel, status, source, recorded_at, inserted_at) \
                     SELECT id, 'email', 'opt_in', '{source}', $1, 0 FROM customers WHERE external_id = 'K{i}'"
                ),
                &[winback_store::db::Val::from(at(&day(&mut rng)).as_micros())],
            )
            .await
            .unwrap();
    }
    let everyone = store.last_activity(&ACTIVITY_EVENTS).await.unwrap();
    assert!(
        everyone.len() < n as usize,
        "some records were merged into one person"
    );
    // Two people erased: they are nobody's candidate any more.
    let run = store
        .begin_privacy_run("erasure", false, &serde_json::json!({}), crate::now())
        .await
        .unwrap();
    for key in ["K3", "K13"] {
        let p = profile(store, key).await.unwrap();
        store
            .erase_profile(
                winback_domain::ProfileId::new(p),
                run,
                "test",
                None,
                crate::now(),
            )
            .await
            .unwrap();
    }
    let everyone = store.last_activity(&ACTIVITY_EVENTS).await.unwrap();
    // The same without events: who is lapsed before the events are read.
    let without_events = store.last_activity(&[]).await.unwrap();
    let mut by_people = 0;
    let mut by_scan = 0;
    for cutoff in [
        "2018-01-01T10:00:00Z",
        "2019-06-01T10:00:00Z",
        "2020-06-01T10:00:00Z",
        "2021-01-01T10:00:00Z",
        "2021-09-01T10:00:00Z",
        "2022-06-01T10:00:00Z",
    ] {
        let cutoff = at(cutoff);
        let mut expected: Vec<_> = everyone
            .values()
            .filter(|a| a.at < cutoff)
            .cloned()
            .collect();
        expected.sort_by_key(|a| (a.at, a.profile_id));
        let got: Vec<_> = store
            .retention_candidates(cutoff, None, &ACTIVITY_EVENTS)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.last_activity)
            .collect();
        assert_eq!(got, expected, "cutoff {cutoff}");
        // Which way the events were read (see `retention_candidates`), from the same rule: both
        // must be covered for this test to mean anything.
        let lapsed_before_events = without_events.values().filter(|a| a.at < cutoff).count();
        if lapsed_before_events * 4 > without_events.len() {
            by_scan += 1;
        } else {
            by_people += 1;
        }
    }
    assert!(by_people > 0 && by_scan > 0, "{by_people} {by_scan}");
}
conformance!(
    retention_candidates_agree,
    super::retention_candidates_are_everyone_older_than_the_cutoff
);
