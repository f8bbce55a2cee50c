//! The campaign engine on a real store, both backends, with the clock driven by hand:
//! "advance 7 days, run until idle, assert one email".

use winback_domain::{Clock, ManualClock, Timestamp};
use winback_engine::file_outbox::FileOutbox;
use winback_engine::ports::{Applied, ClaimedMessage, JourneyStore, Prepared, SendOutcome};
use winback_engine::{Engine, EngineSettings};
use winback_import::SourceKind;
use winback_store::{FactScope, SqlStore, ingest::Mode};

use crate::{conformance, import};

/// Monday 2024-06-03 10:00 UTC: inside the default 09:00–20:00 send window.
/// Settings for scenarios about journeys: the deliverability ramp admits everyone (it has its
/// own tests), so contacts without email history are not held back.
fn settings() -> EngineSettings {
    let mut s = EngineSettings::default();
    s.policy.ramp.start_share = 1.0;
    s
}

fn start() -> Timestamp {
    Timestamp::new("2024-06-03T10:00:00Z".parse().unwrap())
}

const CUSTOMERS: &str = "customer_id,email,first_name,email_consent,time_zone\n\
    A,ann@example.nl,Ann,yes,UTC\n\
    B,ben@example.nl,Ben,yes,UTC\n\
    C,cas@example.nl,Cas,withdrawn,UTC\n\
    D,dee@example.nl,Dee,yes,UTC\n";

const ORDERS: &str = "order_id,customer_id,ordered_at,total,currency,status\n\
    O1,A,2024-01-10T10:00:00Z,40.00,EUR,paid\n\
    O2,B,2024-01-11T10:00:00Z,50.00,EUR,paid\n\
    O3,C,2024-01-12T10:00:00Z,60.00,EUR,paid\n";

const TWO_MAILS: &str = r#"
[campaign]
name = "two-mails"
audience = 'orders >= 1 && email_ok'
[trigger]
type = "audience"
[holdout]
share = 0.0
[[steps]]
id = "hello"
type = "send"
template = "hello"
subject = "Hi {{ first_name }}"
[[steps]]
id = "wait"
type = "wait"
duration = "7d"
[[steps]]
id = "offer"
type = "offer"
ladder = "back"
[[steps]]
id = "again"
type = "send"
template = "again"
[offers.back]
currency = "EUR"
rungs = [{ kind = "fixed", amount = "10.00", valid = "14d" }]
"#;

pub async fn features(store: &SqlStore, now: Timestamp) {
    let facts = store.profile_facts(FactScope::All).await.unwrap();
    let rows: Vec<_> = facts
        .profiles
        .iter()
        .map(|p| winback_scoring::features_of(p, &facts.categories, now))
        .collect();
    store.save_features(now, &rows, &[], true).await.unwrap();
}

async fn shop(store: &SqlStore) {
    for (kind, name, text) in [
        (SourceKind::Customers, "customers.csv", CUSTOMERS),
        (SourceKind::Orders, "orders.csv", ORDERS),
    ] {
        let r = import(store, kind, name, text, Mode::Strict).await;
        assert!(r.committed, "{:?}", r.errors);
    }
    features(store, start()).await;
}

async fn launch(store: &SqlStore, text: &str, name: &str) {
    winback_engine::Campaign::parse(name, text).unwrap();
    store
        .apply_campaign(name, "test.toml", text, start())
        .await
        .unwrap();
    assert!(
        store
            .set_campaign_status(name, winback_engine::CampaignStatus::Active, start())
            .await
            .unwrap()
    );
}

/// The shop with `TWO_MAILS` running; its campaign id.
async fn launched_two_mails(store: &SqlStore) -> winback_domain::CampaignId {
    shop(store).await;
    launch(store, TWO_MAILS, "two-mails").await;
    store
        .campaigns()
        .await
        .unwrap()
        .iter()
        .find(|c| c.name == "two-mails")
        .unwrap()
        .id
}

async fn count(store: &SqlStore, sql: &str) -> i64 {
    store.pool().fetch(sql, &[]).await.unwrap()[0]
        .i64(0)
        .unwrap()
}

async fn journeys_send_once_and_stop_at_a_purchase(store: &SqlStore) {
    shop(store).await;
    launch(store, TWO_MAILS, "two-mails").await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start());
    let engine = Engine::new(store, &outbox, &clock, settings());

    let s = engine.run_until_idle(10).await.unwrap();
    // A and B bought and consented; C withdrew; D never ordered.
    assert_eq!((s.enrolled, s.sent), (2, 2), "{s:?}");
    let again = engine.run_until_idle(10).await.unwrap();
    assert_eq!(
        (again.enrolled, again.sent),
        (0, 0),
        "a second pass sends nothing: {again:?}"
    );

    // B orders the next day: B's journey ends, A's goes on. A's order placed before A entered
    // (a late history import) ends nothing, and the sweep's cursor passes every order.
    clock.advance_days(1);
    let r = import(
        store,
        SourceKind::Orders,
        "more.csv",
        "order_id,customer_id,ordered_at,total,currency,status\n\
         O8,A,2024-05-20T09:00:00Z,25.00,EUR,paid\n\
         O9,B,2024-06-04T09:00:00Z,30.00,EUR,paid\n",
        Mode::Strict,
    )
    .await;
    assert!(r.committed);
    let s = engine.run_until_idle(10).await.unwrap();
    assert_eq!(s.exited, 1, "{s:?}");
    assert_eq!(
        count(
            store,
            "SELECT value FROM engine_cursors WHERE name = 'exit_orders'"
        )
        .await,
        count(store, "SELECT MAX(id) FROM orders").await
    );

    clock.advance_days(7);
    let s = engine.run_until_idle(10).await.unwrap();
    assert_eq!(s.sent, 1, "only A gets the second mail: {s:?}");
    assert_eq!(outbox.files().written(), 3);
    assert_eq!(outbox.files().repeated(), 0);
    let states = store
        .pool()
        .fetch(
            "SELECT e.state, e.end_reason FROM enrolments e ORDER BY e.profile_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(states[0].text(0).unwrap(), "completed");
    assert_eq!(states[1].text(0).unwrap(), "exited");
    assert_eq!(states[1].opt_text(1).unwrap().as_deref(), Some("purchased"));
    // A's second mail carries the offer issued just before it.
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("again"))
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(json["to"], "ann@example.nl");
    assert!(json["offer"]["code"].as_str().unwrap().starts_with("WB-"));
    assert_eq!(json["offer"]["description"], "10.00 EUR off");
}
conformance!(
    journeys_run_exactly_once,
    super::journeys_send_once_and_stop_at_a_purchase
);

/// A page of the base asks only about its own addresses' suppressions; a suppressed address is
/// still never `email_ok`, on a page of the whole base and for named profiles alike.
async fn a_page_knows_its_suppressed_addresses(store: &SqlStore) {
    shop(store).await;
    store
        .suppress("email", "ben@example.nl", "hard_bounce", start())
        .await
        .unwrap();
    let mut page = Vec::new();
    let mut after = None;
    loop {
        let part = store.audience_page(start(), after, 2).await.unwrap();
        after = part.last().map(|e| e.row.profile_id);
        let done = part.len() < 2;
        page.extend(part);
        if done {
            break;
        }
    }
    let ok: Vec<(bool, bool)> = page
        .iter()
        .map(|e| (e.row.has_email, e.row.email_ok))
        .collect();
    // Ann yes; Ben suppressed; Cas withdrew; Dee yes.
    assert_eq!(
        ok,
        [(true, true), (true, false), (true, false), (true, true)]
    );
    let ids: Vec<_> = page.iter().map(|e| e.row.profile_id).collect();
    let named = store.audience_rows_of(start(), &ids[1..2]).await.unwrap();
    assert_eq!(named.len(), 1);
    assert!(!named[0].row.email_ok, "Ben is suppressed when named too");
}
conformance!(
    suppressions_on_a_page,
    super::a_page_knows_its_suppressed_addresses
);

async fn expired_leases_are_fenced_and_unknown_sends_are_in_doubt(store: &SqlStore) {
    shop(store).await;
    launch(store, TWO_MAILS, "two-mails").await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start());
    let engine = Engine::new(store, &outbox, &clock, settings());
    engine.schedule().await.unwrap();

    // Worker 1 claims, stalls past its lease; worker 2 claims the same enrolments.
    let first = store.claim_due("w1", start(), 60, 10).await.unwrap();
    assert_eq!(first.len(), 2);
    let later = start().plus_seconds(120);
    let second = store.claim_due("w2", later, 60, 10).await.unwrap();
    assert_eq!(second.len(), 2);
    assert!(second[0].fence > first[0].fence);
    let plan = |c: &winback_engine::ports::ClaimedEnrolment| {
        let campaign = winback_engine::Campaign::parse("t", TWO_MAILS).unwrap();
        winback_engine::journey::advance(
            &campaign,
            &c.enrolment,
            &winback_engine::journey::Snapshot::default(),
            later,
            b"k",
            &winback_engine::Evaluator::new(),
        )
    };
    let stale: Vec<_> = first.iter().map(|c| (c.clone(), plan(c))).collect();
    assert_eq!(
        store.apply_plans(&stale, later).await.unwrap(),
        0,
        "the old fence applies nothing"
    );
    let fresh: Vec<_> = second.iter().map(|c| (c.clone(), plan(c))).collect();
    assert_eq!(store.apply_plans(&fresh, later).await.unwrap(), 2);
    // Applying again inserts nothing twice.
    assert_eq!(store.apply_plans(&fresh, later).await.unwrap(), 0);
    assert_eq!(count(store, "SELECT COUNT(*) FROM outbox").await, 2);

    // Dispatch: one message is marked sending, then its worker dies before settling it.
    let msgs = store.claim_messages("w1", later, 60, 10).await.unwrap();
    assert_eq!(msgs.len(), 2);
    let decide = |_: &ClaimedMessage, ctx: &winback_engine::policy::SendContext| {
        winback_engine::policy::decide(ctx, &settings().policy)
    };
    let prepared = store
        .prepare_sends(&msgs[..1], later, 60, &decide)
        .await
        .unwrap();
    let [Prepared::Decided(d, dispatch)] = &prepared[..] else {
        panic!("{prepared:?}");
    };
    assert_eq!(*d, winback_engine::policy::Decision::Send);
    assert!(dispatch.is_some());
    // The other claim expires untouched.
    let after = later.plus_seconds(300);
    let reaped = store.reap(after).await.unwrap();
    assert_eq!((reaped.released, reaped.in_doubt), (1, 1));
    // A late finish by the dead worker does not count.
    let ramp = |s: Option<winback_engine::policy::RampState>, p: &str, st| {
        let rs = winback_engine::policy::RampSettings::default();
        winback_engine::policy::ramp_after_attempt(
            s.unwrap_or_else(|| winback_engine::policy::RampState::new(p, &rs)),
            st,
            &rs,
        )
    };
    assert_eq!(
        store
            .finish_sends(
                &[(
                    msgs[0].clone(),
                    Some(SendOutcome::Sent {
                        provider_id: None,
                        subject: None,
                    })
                )],
                after,
                &ramp
            )
            .await
            .unwrap(),
        0
    );
    clock.set(after);
    let s = engine.run_until_idle(5).await.unwrap();
    assert_eq!(
        s.sent, 1,
        "the released one goes out, the in-doubt one never: {s:?}"
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM outbox WHERE state = 'in_doubt'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM outbox WHERE state IN ('claimed', 'sending')"
        )
        .await,
        0
    );
}
conformance!(
    fencing_and_in_doubt,
    super::expired_leases_are_fenced_and_unknown_sends_are_in_doubt
);

async fn unsubscribes_and_caps_are_checked_at_send_time(store: &SqlStore) {
    shop(store).await;
    launch(store, TWO_MAILS, "two-mails").await;
    let second = TWO_MAILS
        .replace("two-mails", "other")
        .replace("\"hello\"", "\"hello2\"");
    launch(store, &second, "other").await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start());
    let engine = Engine::new(store, &outbox, &clock, settings());
    let s = engine.run_until_idle(10).await.unwrap();
    // Both campaigns are exclusive win-back journeys: each contact enters only one of them.
    assert_eq!(s.enrolled, 2, "{s:?}");
    assert_eq!(s.sent, 2);

    // A unsubscribes before the second mail; the mail is never sent.
    let r = import(
        store,
        SourceKind::Events,
        "events.jsonl",
        "{\"customer_id\":\"A\",\"at\":\"2024-06-05T10:00:00Z\",\"type\":\"email_unsubscribed\"}\n",
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    clock.advance_days(7);
    let s = engine.run_until_idle(10).await.unwrap();
    assert_eq!(s.sent, 1, "{s:?}");
    assert_eq!(outbox.files().written(), 3);
    let to_a = count(
        store,
        "SELECT COUNT(*) FROM outbox o JOIN customers c ON c.id = o.profile_id WHERE c.external_id = 'A' AND o.state = 'sent'",
    )
    .await;
    assert_eq!(to_a, 1, "only the mail before the unsubscribe");
    // The exit sweep found the unsubscribe (by the type index) and ended A's journey, and its
    // cursor is past every event.
    let ended = store
        .pool()
        .fetch(
            "SELECT e.end_reason FROM enrolments e JOIN customers c ON c.id = e.profile_id WHERE c.external_id = 'A'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        ended[0].opt_text(0).unwrap().as_deref(),
        Some("unsubscribed")
    );
    assert_eq!(
        count(
            store,
            "SELECT value FROM engine_cursors WHERE name = 'exit_events'"
        )
        .await,
        count(store, "SELECT MAX(id) FROM events").await
    );
}
conformance!(
    send_time_checks,
    super::unsubscribes_and_caps_are_checked_at_send_time
);

async fn editing_a_running_campaign_keeps_enrolments_on_their_version(store: &SqlStore) {
    shop(store).await;
    launch(store, TWO_MAILS, "two-mails").await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start());
    let engine = Engine::new(store, &outbox, &clock, settings());
    engine.run_until_idle(10).await.unwrap();
    // Version 2 drops the offer and renames the last step.
    let edited = TWO_MAILS
        .replace(
            "[[steps]]\nid = \"offer\"\ntype = \"offer\"\nladder = \"back\"\n",
            "",
        )
        .replace("id = \"again\"", "id = \"again-v2\"");
    assert_eq!(
        store
            .apply_campaign("two-mails", "test.toml", &edited, start())
            .await
            .unwrap(),
        Applied::NewVersion(2)
    );
    assert_eq!(
        store
            .apply_campaign("two-mails", "test.toml", &edited, start())
            .await
            .unwrap(),
        Applied::Unchanged(2)
    );
    clock.advance_days(7);
    let s = engine.run_until_idle(10).await.unwrap();
    assert_eq!(s.sent, 2, "{s:?}");
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM outbox WHERE step = 'again'").await,
        2
    );
    assert_eq!(count(store, "SELECT COUNT(*) FROM offers").await, 2);
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM enrolments WHERE version = 1").await,
        2
    );
}
conformance!(
    versions,
    super::editing_a_running_campaign_keeps_enrolments_on_their_version
);

async fn offers_are_redeemed_from_imported_orders_and_booked(store: &SqlStore) {
    shop(store).await;
    let text = TWO_MAILS.replace(
        "[[steps]]\nid = \"hello\"\ntype = \"send\"\ntemplate = \"hello\"\nsubject = \"Hi {{ first_name }}\"\n",
        "",
    );
    launch(store, &text, "two-mails").await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start());
    let engine = Engine::new(store, &outbox, &clock, settings());
    engine.run_until_idle(10).await.unwrap();
    clock.advance_days(7);
    let s = engine.run_until_idle(10).await.unwrap();
    assert_eq!(s.sent, 2);
    let code = store
        .pool()
        .fetch(
            "SELECT f.code FROM offers f JOIN customers c ON c.id = f.profile_id WHERE c.external_id = 'A'",
            &[],
        )
        .await
        .unwrap()[0]
        .text(0)
        .unwrap();
    let orders = format!(
        "order_id,customer_id,ordered_at,total,discount,currency,discount_codes,status\nO10,A,2024-06-11T12:00:00Z,45.00,10.00,EUR,{code},paid\n"
    );
    let r = import(
        store,
        SourceKind::Orders,
        "redeem.csv",
        &orders,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    clock.advance_days(1);
    engine.run_until_idle(10).await.unwrap();
    let row = store
        .pool()
        .fetch(
            "SELECT state, cost_minor, used FROM offers WHERE code = $1",
            &[code.as_str().into()],
        )
        .await
        .unwrap();
    assert_eq!(row[0].text(0).unwrap(), "redeemed");
    assert_eq!(
        row[0].i64(1).unwrap(),
        1000,
        "the order's discount is booked to the offer"
    );
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM offer_redemptions").await,
        1
    );
}
conformance!(
    offers,
    super::offers_are_redeemed_from_imported_orders_and_booked
);

const THOMPSON: &str = r#"
[campaign]
name = "thompson"
audience = 'email_ok && (orders >= 1 || "wave2" in tags)'
conversion_window = "30d"
[trigger]
type = "audience"
every = "1d"
[holdout]
share = 0.0
[experiment]
allocation = "thompson"
variants = [{ id = "a" }, { id = "b" }]
[[steps]]
id = "hello"
type = "send"
template = "hello"
"#;

/// Thompson sampling through the store: the store counts each arm's enrolments and purchases
/// within the conversion window, and later contacts go mostly to the arm that converts.
async fn thompson_allocation_follows_the_arm_that_converts(store: &SqlStore) {
    let mut customers = String::from("customer_id,email,email_consent,time_zone\n");
    let mut orders = String::from("order_id,customer_id,ordered_at,total,currency,status\n");
    for i in 0..80 {
        customers.push_str(&format!("T{i},t{i}@example.nl,yes,UTC\n"));
        orders.push_str(&format!("P{i},T{i},2024-01-10T10:00:00Z,40.00,EUR,paid\n"));
    }
    for (kind, name, text) in [
        (SourceKind::Customers, "customers.csv", customers.as_str()),
        (SourceKind::Orders, "orders.csv", orders.as_str()),
    ] {
        assert!(
            import(store, kind, name, text, Mode::Strict)
                .await
                .committed
        );
    }
    features(store, start()).await;
    launch(store, THOMPSON, "thompson").await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start());
    let engine = Engine::new(store, &outbox, &clock, settings());
    engine.run_until_idle(10).await.unwrap();
    let id = store.campaigns().await.unwrap()[0].id;
    let variants = ["a".to_owned(), "b".to_owned()];
    let first = store.arm_stats(id, &variants, 30 * 86_400).await.unwrap();
    assert_eq!(first[0].enrolled + first[1].enrolled, 80, "{first:?}");
    assert!(
        first[0].enrolled > 10 && first[1].enrolled > 10,
        "no data: both arms tried {first:?}"
    );
    // Everyone who got `b` buys within the window; nobody who got `a` does.
    let b_people = store
        .pool()
        .fetch(
            "SELECT c.external_id FROM enrolments e JOIN customers c ON c.id = e.profile_id WHERE e.variant = 'b'",
            &[],
        )
        .await
        .unwrap();
    let mut more = String::from("order_id,customer_id,ordered_at,total,currency,status\n");
    for (n, r) in b_people.iter().enumerate() {
        more.push_str(&format!(
            "Q{n},{},2024-06-05T10:00:00Z,30.00,EUR,paid\n",
            r.text(0).unwrap()
        ));
    }
    assert!(
        import(store, SourceKind::Orders, "more.csv", &more, Mode::Strict)
            .await
            .committed
    );
    let stats = store.arm_stats(id, &variants, 30 * 86_400).await.unwrap();
    assert_eq!(stats[0].converted, 0);
    assert_eq!(stats[1].converted, stats[1].enrolled, "{stats:?}");
    // A second wave of 80 contacts: Thompson sends nearly all of them to `b`.
    let mut wave = String::from("customer_id,email,email_consent,time_zone\n");
    for i in 0..80 {
        wave.push_str(&format!("W{i},w{i}@example.nl,yes,UTC\n"));
    }
    assert!(
        import(
            store,
            SourceKind::Customers,
            "wave.csv",
            &wave,
            Mode::Strict
        )
        .await
        .committed
    );
    for w in store
        .pool()
        .fetch("SELECT id FROM customers WHERE external_id LIKE 'W%'", &[])
        .await
        .unwrap()
    {
        store
            .pool()
            .execute(
                "INSERT INTO contact_tags (profile_id, tag, added_at, source) VALUES ($1, 'wave2', 0, 'test')",
                &[winback_store::db::Val::from(w.i64(0).unwrap())],
            )
            .await
            .unwrap();
    }
    clock.advance_days(3);
    features(store, clock.now()).await;
    engine.run_until_idle(10).await.unwrap();
    let wave_b = count(
        store,
        "SELECT COUNT(*) FROM enrolments e JOIN customers c ON c.id = e.profile_id WHERE c.external_id LIKE 'W%' AND e.variant = 'b'",
    )
    .await;
    let wave_all = count(
        store,
        "SELECT COUNT(*) FROM enrolments e JOIN customers c ON c.id = e.profile_id WHERE c.external_id LIKE 'W%'",
    )
    .await;
    assert_eq!(wave_all, 80);
    assert!(
        wave_b >= 72,
        "Thompson sent {wave_b} of 80 to the converting arm"
    );
}
conformance!(
    thompson,
    super::thompson_allocation_follows_the_arm_that_converts
);

const ASK_WHY: &str = r#"
[campaign]
name = "ask-why"
audience = 'orders >= 1'
[trigger]
type = "audience"
[holdout]
share = 0.0
[[steps]]
id = "miss-you"
type = "send"
template = "we-miss-you"
[[steps]]
id = "wait"
type = "wait"
duration = "7d"
[[steps]]
id = "why"
type = "send"
template = "tell-us-why"
"#;

/// A journey whose first message is dropped ends there: "tell us why" is never the first thing
/// a person receives. The drop's reason is kept and counted per campaign.
async fn a_journey_whose_first_message_is_dropped_ends(store: &SqlStore) {
    shop(store).await;
    launch(store, ASK_WHY, "ask-why").await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start());
    let engine = Engine::new(store, &outbox, &clock, settings());
    let s = engine.run_until_idle(10).await.unwrap();
    // A, B and C bought; C withdrew consent, so C's first mail is dropped.
    assert_eq!((s.enrolled, s.sent, s.dropped), (3, 2, 1), "{s:?}");
    assert_eq!(s.drops.no_consent, 1, "{s:?}");
    let c_state = store
        .pool()
        .fetch(
            "SELECT e.state, e.end_reason FROM enrolments e JOIN customers c ON c.id = e.profile_id WHERE c.external_id = 'C'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(c_state[0].text(0).unwrap(), "exited");
    assert_eq!(
        c_state[0].opt_text(1).unwrap().as_deref(),
        Some("first_message_dropped:no_consent")
    );
    clock.advance_days(8);
    let s = engine.run_until_idle(10).await.unwrap();
    assert_eq!((s.sent, s.dropped), (2, 0), "only A and B hear why: {s:?}");
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM outbox o JOIN customers c ON c.id = o.profile_id WHERE c.external_id = 'C'"
        )
        .await,
        1,
        "C never gets a second message row"
    );
    let counts = store.campaign_counts().await.unwrap();
    let k = counts.iter().find(|k| k.name == "ask-why").unwrap();
    assert_eq!(k.dropped.get("no_consent"), Some(&1), "{k:?}");
    assert_eq!(k.messages.get("sent"), Some(&4), "{k:?}");
    // The report's figure: dropped by reason in its window.
    let id = store.campaigns().await.unwrap()[0].id;
    let reasons = store
        .drop_reasons(id, start(), clock.now().plus_seconds(1))
        .await
        .unwrap();
    assert_eq!(reasons.get("no_consent"), Some(&1), "{reasons:?}");
}
conformance!(
    first_message_dropped,
    super::a_journey_whose_first_message_is_dropped_ends
);

/// The whole re-permission journey of the example campaign: the one who answers "yes, keep me
/// subscribed" (a click on the first mail) stays subscribed and is tagged; the silent one is
/// unsubscribed from marketing email only (their SMS consent stays).
async fn re_permission_keeps_the_yes_sayers_and_sunsets_the_silent(store: &SqlStore) {
    let customers = "customer_id,email,phone,first_name,email_consent,sms_consent,time_zone\n\
        Y,yes@example.nl,+31611111111,Yara,yes,yes,UTC\n\
        S,silent@example.nl,+31622222222,Sam,yes,yes,UTC\n";
    let r = import(
        store,
        SourceKind::Customers,
        "c.csv",
        customers,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    features(store, start()).await;
    // The example campaign as shipped, without its holdout (two contacts, both asked).
    let text = format!(
        "{}\n[holdout]\nshare = 0.0\n",
        include_str!("../../../../examples/campaigns/re-permission.toml")
    );
    launch(store, &text, "re-permission").await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start());
    let engine = Engine::new(store, &outbox, &clock, settings());
    let s = engine.run_until_idle(10).await.unwrap();
    assert_eq!(s.sent, 2, "both are asked: {s:?}");
    let key = store
        .pool()
        .fetch(
            "SELECT o.idempotency_key FROM outbox o JOIN customers c ON c.id = o.profile_id WHERE c.external_id = 'Y'",
            &[],
        )
        .await
        .unwrap()[0]
        .text(0)
        .unwrap();
    // Yara clicks "yes, keep me subscribed" (the tracking server records it like this).
    let click = format!(
        "{{\"customer_id\":\"Y\",\"at\":\"2024-06-04T09:00:00Z\",\"type\":\"email_clicked\",\"message_id\":\"{key}\"}}\n"
    );
    let r = import(store, SourceKind::Events, "e.jsonl", &click, Mode::Strict).await;
    assert!(r.committed, "{:?}", r.errors);
    clock.advance_days(15);
    engine.run_until_idle(10).await.unwrap();
    let consent = |who: &'static str, channel: &'static str| {
        let store = store.clone();
        async move {
            store
                .customer_detail(who)
                .await
                .unwrap()
                .unwrap()
                .consent
                .iter()
                .find(|c| c.channel == channel)
                .map(|c| c.status.clone())
                .unwrap_or_default()
        }
    };
    assert_eq!(consent("Y", "email").await, "opt_in", "the yes-sayer stays");
    assert_eq!(
        consent("S", "email").await,
        "withdrawn",
        "the silent one is sunset"
    );
    assert_eq!(consent("S", "sms").await, "opt_in", "from email only");
    let tags = count(
        store,
        "SELECT COUNT(*) FROM contact_tags t JOIN customers c ON c.id = t.profile_id WHERE c.external_id = 'Y' AND t.tag = 're-permitted'",
    )
    .await;
    assert_eq!(tags, 1);

    // The access export of this scored, enrolled, messaged and merged person works on both
    // backends (its REAL columns once failed to decode).
    let r = import(
        store,
        SourceKind::Customers,
        "newsletter.csv",
        "email,first_name,email_consent\nYES@example.nl,Yara,subscribed\n",
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    let ids = store.identifiers().await.unwrap();
    store
        .save_resolution(
            &winback_identity::resolve(&winback_identity::IdentityRules::default(), &ids),
            clock.now(),
        )
        .await
        .unwrap();
    let yara = store.find_profile("Y").await.unwrap().unwrap();
    store
        .pool()
        .execute(
            &format!("INSERT INTO profile_scores (profile_id, run_id, stage, reason, p_alive, expected_90d, clv_minor, purchases, spend_minor, priority_minor) VALUES ({yara}, 1, 'inactive_subscriber', 'test', 0.4, 0.1, 2500.7, 0, 0, 12.2)"),
            &[],
        )
        .await
        .unwrap();
    let export = store.export_profile(yara).await.unwrap();
    assert_eq!(export["records"].as_array().unwrap().len(), 2, "{export}");
    assert_eq!(export["scores"]["p_alive"], 0.4);
    assert_eq!(export["scores"]["clv_minor"], 2501);
    assert!(!export["messages"].as_array().unwrap().is_empty());
    assert!(!export["journeys"].as_array().unwrap().is_empty());
    assert_eq!(export["identity_merges"].as_array().unwrap().len(), 1);
}
conformance!(
    re_permission,
    super::re_permission_keeps_the_yes_sayers_and_sunsets_the_silent
);

/// `TWO_MAILS` under another name, open to contacts already in another journey.
fn open_campaign(name: &str) -> String {
    TWO_MAILS.replace(
        "name = \"two-mails\"",
        &format!("name = \"{name}\"\nexclusive = false"),
    )
}

/// Two campaigns mail the same two contacts in one pass, so one batch holds two messages for
/// each. A batch's checks hold a contact's second message back until the first one's outcome is
/// recorded: the daily email cap defers it, exactly as one message at a time would.
async fn a_batch_checks_one_message_per_contact_at_a_time(store: &SqlStore) {
    shop(store).await;
    launch(store, &open_campaign("first"), "first").await;
    launch(store, &open_campaign("second"), "second").await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start());
    let engine = Engine::new(store, &outbox, &clock, settings());
    let s = engine.run_once().await.unwrap();
    // A and B have ordered and consent; each is in both journeys.
    assert_eq!(s.enrolled, 4, "{s:?}");
    assert_eq!((s.sent, s.deferred), (2, 2), "{s:?}");
    assert_eq!(
        count(
            store,
            "SELECT COUNT(DISTINCT profile_id) FROM outbox WHERE state = 'sent'"
        )
        .await,
        2,
        "one message per contact today"
    );
    // The next day the cap allows the second.
    clock.advance_days(1);
    clock.advance_seconds(3600);
    let s = engine.run_once().await.unwrap();
    assert_eq!(s.sent, 2, "{s:?}");
    assert_eq!(outbox.files().written(), 4);
    assert_eq!(outbox.files().repeated(), 0);
}
conformance!(
    one_message_per_contact_per_batch,
    super::a_batch_checks_one_message_per_contact_at_a_time
);

/// A relay that takes `delay` per message and answers `421` while `down`, and counts what it
/// was handed.
struct Relay<'a> {
    files: &'a FileOutbox,
    down: std::sync::atomic::AtomicBool,
    calls: std::sync::atomic::AtomicUsize,
    delay: std::time::Duration,
}

impl winback_engine::ports::Transport for Relay<'_> {
    async fn deliver(&self, d: &winback_engine::ports::Dispatch) -> SendOutcome {
        use std::sync::atomic::Ordering;
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.down.load(Ordering::SeqCst) {
            SendOutcome::TransportFailure("421 4.3.0 service not available".into())
        } else {
            winback_engine::ports::Transport::deliver(self.files, d).await
        }
    }
}

/// The relay fails the first message of a batch: the rest of the batch is never handed to it,
/// goes back to pending with its attempt uncounted, and nobody is suppressed. After the pause
/// every message goes out exactly once.
async fn a_relay_failure_stops_the_batch_and_loses_nothing(store: &SqlStore) {
    use std::sync::atomic::Ordering;
    shop(store).await;
    launch(store, TWO_MAILS, "two-mails").await;
    let dir = tempfile::tempdir().unwrap();
    let files = FileOutbox::new(dir.path()).unwrap();
    let relay = Relay {
        files: &files,
        down: true.into(),
        calls: 0.into(),
        delay: std::time::Duration::ZERO,
    };
    let clock = ManualClock::new(start());
    let engine = Engine::new(store, &relay, &clock, settings());
    let s = engine.run_once().await.unwrap();
    assert_eq!(s.enrolled, 2, "{s:?}");
    assert_eq!((s.sent, s.transport_failures), (0, 1), "{s:?}");
    assert_eq!(
        relay.calls.load(Ordering::SeqCst),
        1,
        "the rest was not tried"
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND attempts = 0"
        )
        .await,
        2,
        "both wait, neither attempt counted"
    );
    assert_eq!(count(store, "SELECT COUNT(*) FROM suppressions").await, 0);
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM transport_pauses").await,
        1
    );
    // Within the pause nothing is tried.
    clock.advance_seconds(60);
    let s = engine.run_until_idle(5).await.unwrap();
    assert_eq!(s.sent, 0, "{s:?}");
    assert_eq!(relay.calls.load(Ordering::SeqCst), 1);
    // The relay is back; after the pause both go out, once.
    relay.down.store(false, Ordering::SeqCst);
    clock.advance_seconds(15 * 60);
    let s = engine.run_until_idle(5).await.unwrap();
    assert_eq!(s.sent, 2, "{s:?}");
    assert_eq!(files.files().written(), 2);
    assert_eq!(files.files().repeated(), 0);
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM transport_pauses").await,
        0,
        "a send closes the breaker"
    );
}
conformance!(
    relay_failure_mid_batch,
    super::a_relay_failure_stops_the_batch_and_loses_nothing
);

/// A relay slower than half the lease per batch: what it has not reached by then goes back to
/// pending unattempted (its `sending` rows are recorded before the lease ends, so no reaper
/// calls a delivered message in doubt), and the next batch sends it, once.
async fn a_slow_relay_leaves_the_rest_of_the_batch_for_the_next_pass(store: &SqlStore) {
    shop(store).await;
    launch(store, TWO_MAILS, "two-mails").await;
    let dir = tempfile::tempdir().unwrap();
    let files = FileOutbox::new(dir.path()).unwrap();
    let relay = Relay {
        files: &files,
        down: false.into(),
        calls: 0.into(),
        delay: std::time::Duration::from_millis(1100),
    };
    let clock = ManualClock::new(start());
    let mut s = settings();
    s.lease_seconds = 2;
    s.send_concurrency = 1;
    let engine = Engine::new(store, &relay, &clock, s);
    let pass = engine.run_once().await.unwrap();
    // The second message was handed back once (counted deferred) and sent by the next batch.
    assert_eq!(
        (pass.enrolled, pass.sent, pass.deferred),
        (2, 2, 1),
        "{pass:?}"
    );
    assert_eq!(files.files().written(), 2);
    assert_eq!(files.files().repeated(), 0);
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM outbox WHERE state = 'sent' AND attempts = 1"
        )
        .await,
        2,
        "the handed-back attempt is not counted"
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM outbox WHERE state = 'in_doubt'"
        )
        .await,
        0
    );
}
conformance!(
    slow_relay_half_lease,
    super::a_slow_relay_leaves_the_rest_of_the_batch_for_the_next_pass
);

/// Deliveries in flight together fail together when the relay goes down: each failure sends
/// its message back uncounted, and the batch counts one failure of the channel, so the backoff
/// is the first rung's (15 minutes), not the hours of a relay that failed again and again.
async fn messages_in_flight_fail_together_and_count_once(store: &SqlStore) {
    shop(store).await;
    launch(store, TWO_MAILS, "two-mails").await;
    let dir = tempfile::tempdir().unwrap();
    let files = FileOutbox::new(dir.path()).unwrap();
    let relay = Relay {
        files: &files,
        down: true.into(),
        calls: 0.into(),
        delay: std::time::Duration::from_millis(20),
    };
    let clock = ManualClock::new(start());
    let engine = Engine::new(store, &relay, &clock, settings());
    let s = engine.run_once().await.unwrap();
    assert_eq!((s.sent, s.transport_failures), (0, 2), "{s:?}");
    assert_eq!(
        count(store, "SELECT failures FROM transport_pauses").await,
        1
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND attempts = 0"
        )
        .await,
        2
    );
    assert_eq!(count(store, "SELECT COUNT(*) FROM suppressions").await, 0);
}
conformance!(
    failures_in_flight,
    super::messages_in_flight_fail_together_and_count_once
);

/// Of two workers, one evaluates a campaign's trigger at a time: while one holds the trigger
/// lease (mid-scan), the other's schedule leaves the campaign alone and does not move its
/// cursor; once the lease is given back, or has expired after its holder died, the other
/// evaluates it.
async fn one_worker_evaluates_a_campaigns_trigger_at_a_time(store: &SqlStore) {
    let id = launched_two_mails(store).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start());
    let named = |worker: &str| {
        let mut s = settings();
        s.worker_id = worker.to_owned();
        s
    };
    let b = Engine::new(store, &outbox, &clock, named("worker-b"));

    // Worker A takes the lease (as its schedule does before scanning) and is still at it.
    let lease = winback_engine::worker::TRIGGER_LEASE_SECONDS;
    let taken = store
        .claim_triggers(&[id], "worker-a", clock.now(), lease)
        .await
        .unwrap();
    assert_eq!(taken, vec![id]);
    // Another worker's claim is refused; A's own claim renews it.
    let refused = store
        .claim_triggers(&[id], "worker-b", clock.now(), lease)
        .await
        .unwrap();
    assert!(refused.is_empty());
    let renewed = store
        .claim_triggers(&[id], "worker-a", clock.now(), lease)
        .await
        .unwrap();
    assert_eq!(renewed, vec![id]);
    let s = b.schedule().await.unwrap();
    assert_eq!(s.enrolled, 0, "B leaves A's campaign alone: {s:?}");
    assert_eq!(store.trigger_cursor(id).await.unwrap(), 0, "cursor unmoved");
    // B's pass did not take or drop A's lease.
    assert!(
        store
            .claim_triggers(&[id], "worker-b", clock.now(), lease)
            .await
            .unwrap()
            .is_empty()
    );

    // A dies holding it: once the lease has expired, B evaluates the campaign.
    clock.advance_seconds(lease + 1);
    let s = b.schedule().await.unwrap();
    assert_eq!(s.enrolled, 2, "{s:?}");
    // B gave its lease back at the end of its schedule: A may take it at once.
    let again = store
        .claim_triggers(&[id], "worker-a", clock.now(), lease)
        .await
        .unwrap();
    assert_eq!(again, vec![id]);
    store.release_triggers(&[id], "worker-a").await.unwrap();
    // Released leases let the next due evaluation run, and enrolment stays single.
    let s = b.run_until_idle(5).await.unwrap();
    assert_eq!((s.enrolled, s.sent), (0, 2), "{s:?}");
}
conformance!(
    one_worker_evaluates_a_trigger_at_a_time,
    super::one_worker_evaluates_a_campaigns_trigger_at_a_time
);

/// A daily audience is evaluated once per UTC day, at the first pass of the day, however late
/// the day before's evaluation came: evaluated at 10:00, not again at 23:00, and again at
/// 00:00:01 the next day, fourteen hours on (counting a day from the last evaluation, it
/// waited until 10:00).
async fn a_daily_audience_is_evaluated_once_per_day(store: &SqlStore) {
    let id = launched_two_mails(store).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start());
    let engine = Engine::new(store, &outbox, &clock, settings());
    engine.schedule().await.unwrap();
    assert_eq!(store.trigger_cursor(id).await.unwrap(), start().as_micros());
    // Later the same day: not due.
    clock.advance_seconds(13 * 3600);
    engine.schedule().await.unwrap();
    assert_eq!(store.trigger_cursor(id).await.unwrap(), start().as_micros());
    // 00:00:01 the next day.
    clock.advance_seconds(3600 + 1);
    let next_day = clock.now();
    engine.schedule().await.unwrap();
    assert_eq!(
        store.trigger_cursor(id).await.unwrap(),
        next_day.as_micros(),
        "evaluated at the first pass of the new day"
    );
}
conformance!(
    a_daily_audience_is_evaluated_once_per_day,
    super::a_daily_audience_is_evaluated_once_per_day
);
