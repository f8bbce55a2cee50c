//! Call lists on both backends: a journey's call step fills the list once; the list is checked
//! when read (quiet hours in each contact's zone, do-not-call, objection, customers too long
//! gone, journeys that ended); agents' outcomes move the journey, and "do not call" holds from
//! then on. A property test drives random outcomes and never finds a blocked number on a list.

use proptest::prelude::*;
use winback_domain::{CallOutcome, LeaveReason, ManualClock, ProfileId, Timestamp};
use winback_engine::file_outbox::FileOutbox;
use winback_engine::ports::JourneyStore;
use winback_engine::{Engine, EngineSettings};
use winback_import::SourceKind;
use winback_store::calls::{CallRecorded, CallRefused, CallReport, CallSettings};
use winback_store::{SqlStore, ingest::Mode};

use crate::{TestDb, conformance, import};

/// Monday 2 June 2025, 10:00 UTC (12:00 in Amsterdam, 06:00 in New York).
fn start() -> Timestamp {
    Timestamp::new("2025-06-02T10:00:00Z".parse().unwrap())
}

// Numeric customer ids, as shop exports write them. 1001: a recent customer in Amsterdam with
// a personal offer; 1002: a recent customer in New York; 1003: last ordered in 2021 (too long
// ago to call); 1004: no number; 1005: a recent customer who objected; 1006: a recent customer
// whose number is already on the do-not-call list.
const CUSTOMERS: &str = "customer_id,email,phone,first_name,last_name,time_zone\n\
1001,anna@example.nl,+31612345601,Anna,de Vries,Europe/Amsterdam\n\
1002,ben@example.com,+12125550102,Ben,Miller,America/New_York\n\
1003,cor@example.nl,+31612345603,Cor,Jansen,Europe/Amsterdam\n\
1004,dirk@example.nl,,Dirk,Bakker,Europe/Amsterdam\n\
1005,eva@example.nl,+31612345605,Eva,Smit,Europe/Amsterdam\n\
1006,fleur@example.nl,+31612345606,Fleur,Visser,Europe/Amsterdam\n";

const ORDERS: &str = "order_id,customer_id,ordered_at,total,currency\n\
O1,1001,2024-11-02T12:00:00Z,120.00,EUR\n\
O2,1001,2025-01-10T12:00:00Z,80.00,EUR\n\
O3,1002,2025-02-01T12:00:00Z,60.00,EUR\n\
O4,1003,2021-03-01T12:00:00Z,40.00,EUR\n\
O5,1004,2025-01-01T12:00:00Z,40.00,EUR\n\
O6,1005,2025-01-01T12:00:00Z,40.00,EUR\n\
O7,1006,2025-01-01T12:00:00Z,40.00,EUR\n";

const CAMPAIGN: &str = r#"
[campaign]
name = "call-back"
audience = 'orders >= 1'
[trigger]
type = "audience"
[holdout]
share = 0.0
[[steps]]
id = "code"
type = "offer"
ladder = "comeback"
[[steps]]
id = "call"
type = "call"
list = "vip"
[[steps]]
id = "wait"
type = "wait"
duration = "14d"
until_event = "call_outcome"
[[steps]]
id = "accepted"
type = "branch"
call_outcome = "offer_accepted"
then = "won"
else = "done"
[[steps]]
id = "won"
type = "tag"
tags = ["won-by-phone"]
[[steps]]
id = "done"
type = "exit"
[offers.comeback]
currency = "EUR"
rungs = [{ kind = "fixed", amount = "15.00", valid = "60d" }]
"#;

async fn shop(store: &SqlStore) {
    for (kind, name, text) in [
        (SourceKind::Customers, "customers.csv", CUSTOMERS),
        (SourceKind::Orders, "orders.csv", ORDERS),
    ] {
        let r = import(store, kind, name, text, Mode::Strict).await;
        assert!(r.committed, "{:?}", r.errors);
    }
    crate::engine::features(store, start()).await;
    store
        .apply_campaign("call-back", "call-back.toml", CAMPAIGN, start())
        .await
        .unwrap();
    store
        .set_campaign_status("call-back", winback_engine::CampaignStatus::Active, start())
        .await
        .unwrap();
    // Eva objects; Fleur's number was put on the do-not-call list by an earlier call.
    let eva = profile(store, "1005").await;
    store
        .privacy_request(
            winback_store::privacy::Request::Object,
            eva,
            "test",
            start(),
        )
        .await
        .unwrap();
    store
        .pool()
        .execute(
            "INSERT INTO suppressions (channel, address, reason, created_at, active) VALUES ('call', '+31612345606', 'do_not_call', 0, 1)",
            &[],
        )
        .await
        .unwrap();
}

async fn profile(store: &SqlStore, external: &str) -> ProfileId {
    let r = store
        .pool()
        .fetch(
            "SELECT COALESCE(profile_id, id) FROM customers WHERE external_id = $1",
            &[winback_store::db::Val::from(external)],
        )
        .await
        .unwrap();
    ProfileId::new(r[0].i64(0).unwrap())
}

async fn pass(store: &SqlStore, clock: &ManualClock) {
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let engine = Engine::new(store, &outbox, clock, EngineSettings::default());
    engine.run_until_idle(10).await.unwrap();
}

fn report(task: i64, outcome: CallOutcome, at: Timestamp) -> CallReport {
    CallReport {
        task,
        outcome,
        reason: None,
        agent: Some("Sanne".into()),
        note: None,
        at,
        key: None,
    }
}

async fn one(store: &SqlStore, sql: &str) -> i64 {
    store.pool().fetch(sql, &[]).await.unwrap()[0]
        .i64(0)
        .unwrap()
}

async fn call_lists(store: &SqlStore) {
    shop(store).await;
    let clock = ManualClock::new(start());
    pass(store, &clock).await;
    let settings = CallSettings {
        default_zone: "Europe/Amsterdam".into(),
        ..CallSettings::default()
    };
    assert_eq!(
        one(store, "SELECT COUNT(*) FROM call_tasks").await,
        6,
        "everyone who entered is listed once"
    );
    // A second pass lists nobody twice.
    pass(store, &clock).await;
    assert_eq!(one(store, "SELECT COUNT(*) FROM call_tasks").await, 6);

    let list = store.call_list("vip", &settings, start()).await.unwrap();
    let who: Vec<&str> = list.rows.iter().map(|r| r.customer_id.as_str()).collect();
    assert_eq!(who, ["1001", "1002"], "callable now first: {list:?}");
    assert_eq!(
        list.held_back,
        [
            ("do_not_call".to_owned(), 1),
            ("no_phone".to_owned(), 1),
            ("not_a_recent_customer".to_owned(), 1),
            ("objected".to_owned(), 1),
        ]
        .into_iter()
        .collect()
    );
    let anna = &list.rows[0];
    assert!(anna.callable_now);
    assert_eq!(anna.phone, "+31612345601");
    assert_eq!(anna.name.as_deref(), Some("Anna de Vries"));
    assert_eq!(anna.window, "09:00-21:00");
    assert_eq!(anna.orders, 2);
    assert_eq!(anna.spent_minor, 20_000);
    assert!(anna.offer_code.is_some(), "the campaign's code to offer");
    assert!(anna.offer.as_deref().unwrap().contains("15"), "{anna:?}");
    // 06:00 in New York: not now; at 09:00 there.
    let ben = &list.rows[1];
    assert!(!ben.callable_now);
    assert_eq!(
        ben.next_call_at,
        Timestamp::new("2025-06-02T13:00:00Z".parse().unwrap())
    );
    // Reading the list changed nothing.
    assert_eq!(
        one(
            store,
            "SELECT COUNT(*) FROM call_tasks WHERE state = 'open'"
        )
        .await,
        6
    );

    // Anna accepts the offer: the journey takes the `then` branch at the next pass.
    let later = start().plus_seconds(3_600);
    clock.set(later);
    let r = store
        .record_call_outcome(
            &report(anna.task, CallOutcome::OfferAccepted, later),
            &settings,
            later,
        )
        .await
        .unwrap();
    assert_eq!(r, Ok(CallRecorded::Stored { open: false }));
    // The same report again (a retried request): applied once.
    let again = store
        .record_call_outcome(
            &report(anna.task, CallOutcome::OfferAccepted, later),
            &settings,
            later,
        )
        .await
        .unwrap();
    assert_eq!(again, Ok(CallRecorded::Repeat));
    // Another outcome for the closed task is refused, and so is an unknown task.
    let closed = store
        .record_call_outcome(
            &report(anna.task, CallOutcome::Reached, later),
            &settings,
            later,
        )
        .await
        .unwrap();
    assert!(
        matches!(closed, Err(CallRefused::Closed { .. })),
        "{closed:?}"
    );
    assert_eq!(
        store
            .record_call_outcome(
                &report(9_999, CallOutcome::Reached, later),
                &settings,
                later
            )
            .await
            .unwrap(),
        Err(CallRefused::UnknownTask(9_999))
    );
    pass(store, &clock).await;
    let anna_profile = profile(store, "1001").await;
    assert_eq!(
        one(
            store,
            &format!("SELECT COUNT(*) FROM contact_tags WHERE tag = 'won-by-phone' AND profile_id = {anna_profile}")
        )
        .await,
        1,
        "the branch read the call's outcome"
    );
    assert_eq!(
        one(store, &format!("SELECT COUNT(*) FROM journey_log l JOIN enrolments e ON e.id = l.enrolment_id WHERE e.profile_id = {anna_profile} AND l.what = 'call outcome offer_accepted: yes'")).await,
        1
    );

    // Ben is not reached three times: off the list after the third try.
    for i in 0..3 {
        let at = later.plus_seconds(3_600 * (i + 4));
        let r = store
            .record_call_outcome(
                &report(ben.task, CallOutcome::NotReached, at),
                &settings,
                at,
            )
            .await
            .unwrap();
        assert_eq!(r, Ok(CallRecorded::Stored { open: i < 2 }), "try {i}");
    }
    let list = store.call_list("vip", &settings, later).await.unwrap();
    assert!(list.rows.is_empty(), "{list:?}");

    // A reason for leaving reaches the journey as its survey reason; "wants fewer emails" sets
    // the preference; "do not call" blocks every number of the person.
    let cor = profile(store, "1003").await;
    let cor_task = one(
        store,
        &format!("SELECT id FROM call_tasks WHERE profile_id = {cor}"),
    )
    .await;
    let mut why = report(cor_task, CallOutcome::ReasonForLeaving, later);
    assert_eq!(
        store
            .record_call_outcome(&why, &settings, later)
            .await
            .unwrap(),
        Err(CallRefused::ReasonMissing)
    );
    why.reason = Some(LeaveReason::TooExpensive);
    assert!(
        store
            .record_call_outcome(&why, &settings, later)
            .await
            .unwrap()
            .is_ok()
    );
    let payload = store
        .pool()
        .fetch(
            &format!(
                "SELECT payload FROM events WHERE type = 'call_outcome' AND customer_id = {cor}"
            ),
            &[],
        )
        .await
        .unwrap()[0]
        .text(0)
        .unwrap();
    assert!(
        payload.contains("\"reason\":\"too_expensive\""),
        "{payload}"
    );
    let dirk = profile(store, "1004").await;
    let dirk_task = one(
        store,
        &format!("SELECT id FROM call_tasks WHERE profile_id = {dirk}"),
    )
    .await;
    store
        .record_call_outcome(
            &report(dirk_task, CallOutcome::WantsFewerEmails, later),
            &settings,
            later,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(store.preferences(dirk).await.unwrap().low_frequency);
    let anna_second = store
        .pool()
        .execute(
            &format!(
                "INSERT INTO call_tasks (campaign_id, enrolment_id, profile_id, step, variant, list, added_at, state) \
                 SELECT campaign_id, enrolment_id + 1000, profile_id, 'call', variant, 'other', added_at, 'open' FROM call_tasks WHERE profile_id = {anna_profile}"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(anna_second, 1);
    let fleur = profile(store, "1006").await;
    let fleur_task = one(
        store,
        &format!("SELECT id FROM call_tasks WHERE profile_id = {fleur}"),
    )
    .await;
    let mut dnc = report(fleur_task, CallOutcome::DoNotCall, later);
    dnc.note = Some("asked us never to call again".into());
    store
        .record_call_outcome(&dnc, &settings, later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        one(store, "SELECT COUNT(*) FROM suppressions WHERE channel = 'call' AND address = '+31612345606' AND active = 1").await,
        1
    );

    // Ben orders: his journey ends, and the next pass cancels what is left of his tasks.
    store
        .pool()
        .execute(
            "UPDATE call_tasks SET state = 'open', attempts = 0 WHERE id = $1",
            &[winback_store::db::Val::from(ben.task)],
        )
        .await
        .unwrap();
    let r = import(
        store,
        SourceKind::Orders,
        "orders2.csv",
        "order_id,customer_id,ordered_at,total,currency\nO9,1002,2025-06-02T12:00:00Z,30.00,EUR\n",
        Mode::Strict,
    )
    .await;
    assert!(r.committed);
    clock.set(later.plus_seconds(86_400));
    pass(store, &clock).await;
    assert_eq!(
        store
            .pool()
            .fetch(
                "SELECT state, closed_reason FROM call_tasks WHERE id = $1",
                &[winback_store::db::Val::from(ben.task)],
            )
            .await
            .unwrap()[0]
            .text(1)
            .unwrap(),
        "journey_ended"
    );
    // Fleur's access export holds what the agent wrote; her erasure takes it, and her
    // do-not-call entry, as it takes her SMS suppressions (her hash keeps her number out).
    let export = store.export_profile(fleur).await.unwrap();
    assert_eq!(export["calls"][0]["outcome"], "do_not_call");
    assert_eq!(export["calls"][0]["note"], "asked us never to call again");
    store
        .privacy_request(winback_store::privacy::Request::Erase, fleur, "test", later)
        .await
        .unwrap();
    assert_eq!(
        one(store, &format!("SELECT COUNT(*) FROM call_tasks WHERE profile_id = {fleur} AND (note IS NOT NULL OR agent IS NOT NULL)")).await,
        0
    );
    assert_eq!(
        one(
            store,
            "SELECT COUNT(*) FROM suppressions WHERE channel = 'call' AND address = '+31612345606'"
        )
        .await,
        0
    );
}
conformance!(call_lists_follow_journeys_and_outcomes, super::call_lists);

/// Random outcomes from random agents for random tasks, with numbers blocked by other means
/// (an imported do-not-call list) at random times: a list never shows a blocked number or an
/// objected person, and a task never takes an outcome after it closed.
fn script() -> impl Strategy<Value = Vec<(usize, usize, bool)>> {
    proptest::collection::vec(
        (0usize..6, 0usize..6, proptest::bool::weighted(0.15)),
        1..24,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn never_lists_a_blocked_number(steps in script()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let db = TestDb::sqlite().await;
            let store = &db.store;
            shop(store).await;
            let clock = ManualClock::new(start());
            pass(store, &clock).await;
            let settings = CallSettings { customer_years: None, ..CallSettings::default() };
            let tasks: Vec<i64> = store.pool().fetch("SELECT id FROM call_tasks ORDER BY id", &[]).await.unwrap()
                .iter().map(|r| r.i64(0).unwrap()).collect();
            let mut now = start();
            for (i, (t, o, block)) in steps.iter().enumerate() {
                now = now.plus_seconds(600);
                if *block {
                    // A number from the list is blocked outside any call (an imported list).
                    store.pool().execute(
                        &format!("INSERT INTO suppressions (channel, address, reason, created_at, active) \
                                  SELECT 'call', c.phone, 'do_not_call', 0, 1 FROM customers c JOIN call_tasks t ON t.profile_id = COALESCE(c.profile_id, c.id) \
                                  WHERE t.id = {} AND c.phone IS NOT NULL ON CONFLICT (channel, address) DO NOTHING", tasks[*t]),
                        &[],
                    ).await.unwrap();
                }
                let before = store.pool().fetch(&format!("SELECT state FROM call_tasks WHERE id = {}", tasks[*t]), &[]).await.unwrap()[0].text(0).unwrap();
                let mut r = report(tasks[*t], CallOutcome::ALL[*o], now);
                r.reason = Some(LeaveReason::Other);
                r.key = Some(format!("k{i}"));
                let got = store.record_call_outcome(&r, &settings, now).await.unwrap();
                if before != "open" {
                    prop_assert!(matches!(got, Err(CallRefused::Closed { .. })), "{got:?}");
                }
                let list = store.call_list("vip", &settings, now).await.unwrap();
                let blocked: Vec<String> = store.pool().fetch("SELECT address FROM suppressions WHERE channel = 'call' AND active = 1", &[]).await.unwrap()
                    .iter().map(|r| r.text(0).unwrap()).collect();
                for row in &list.rows {
                    prop_assert!(!blocked.contains(&row.phone), "{} is blocked: {list:?}", row.phone);
                    prop_assert!(row.customer_id != "1005", "1005 objected");
                }
                let shown = list.rows.len() as u64 + list.held_back.values().sum::<u64>();
                let open = store.pool().fetch("SELECT COUNT(*) FROM call_tasks WHERE list = 'vip' AND state = 'open'", &[]).await.unwrap()[0].i64(0).unwrap();
                prop_assert_eq!(shown, open as u64, "every open task is shown or counted as held back");
            }
            db.finish().await;
            Ok(())
        })?;
    }
}

const WALLET: &str = r#"
[campaign]
name = "pass-holders"
audience = 'orders >= 1'
[trigger]
type = "audience"
[holdout]
share = 0.0
[[steps]]
id = "code"
type = "offer"
ladder = "comeback"
[[steps]]
id = "pass"
type = "wallet"
[[steps]]
id = "later"
type = "wait"
duration = "14d"
[[steps]]
id = "better"
type = "offer"
ladder = "comeback"
[[steps]]
id = "update"
type = "wallet"
style = "store_card"
[offers.comeback]
currency = "EUR"
rungs = [{ kind = "fixed", amount = "15.00", valid = "60d" }, { kind = "fixed", amount = "20.00", valid = "30d" }]
"#;

/// A wallet step issues one pass per person with the campaign's newest code; a later wallet
/// step updates the same pass with the next rung's code (version 2), which is what devices are
/// then told about.
async fn wallet_passes(store: &SqlStore) {
    for (kind, name, text) in [
        (SourceKind::Customers, "customers.csv", CUSTOMERS),
        (SourceKind::Orders, "orders.csv", ORDERS),
    ] {
        assert!(
            import(store, kind, name, text, Mode::Strict)
                .await
                .committed
        );
    }
    crate::engine::features(store, start()).await;
    store
        .apply_campaign("pass-holders", "p.toml", WALLET, start())
        .await
        .unwrap();
    store
        .set_campaign_status(
            "pass-holders",
            winback_engine::CampaignStatus::Active,
            start(),
        )
        .await
        .unwrap();
    let clock = ManualClock::new(start());
    pass(store, &clock).await;
    let anna = profile(store, "1001").await;
    let first = store
        .pool()
        .fetch(
            &format!(
                "SELECT serial, offer_code, version FROM wallet_passes WHERE profile_id = {anna}"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let serial = first[0].text(0).unwrap();
    let code = first[0].text(1).unwrap();
    assert_eq!(first[0].i64(2).unwrap(), 1);
    assert_eq!(
        one(store, "SELECT COUNT(*) FROM wallet_passes").await,
        6,
        "one pass per person"
    );
    let p = store.wallet_pass(&serial).await.unwrap().unwrap();
    assert_eq!(p.offer_code.as_deref(), Some(code.as_str()));
    assert!(p.offer.as_deref().unwrap().contains("15"), "{p:?}");
    // A device adds Anna's pass; two weeks later the next rung updates it.
    assert_eq!(
        store
            .register_wallet_device("dev-1", &serial, "abc", start())
            .await
            .unwrap(),
        Some(true)
    );
    assert!(
        store.wallet_pushes_due(10).await.unwrap().is_empty(),
        "up to date when added"
    );
    clock.set(start().plus_seconds(15 * 86_400));
    pass(store, &clock).await;
    let p = store.wallet_pass(&serial).await.unwrap().unwrap();
    assert_eq!(p.version, 2);
    assert_eq!(p.style, "store_card");
    assert_ne!(
        p.offer_code.as_deref(),
        Some(code.as_str()),
        "the next rung's code"
    );
    assert!(p.offer.as_deref().unwrap().contains("20"), "{p:?}");
    let due = store.wallet_pushes_due(10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].device.as_str(), due[0].version), ("dev-1", 2));
    store.wallet_pushed(&due[0]).await.unwrap();
    assert!(store.wallet_pushes_due(10).await.unwrap().is_empty());
    let c = store
        .wallet_counts(
            store.campaigns().await.unwrap()[0].id,
            start(),
            start().plus_seconds(30 * 86_400),
        )
        .await
        .unwrap();
    assert_eq!(
        (c.issued, c.added, c.updated, c.removed),
        (6, 1, 6, 0),
        "{c:?}"
    );
    assert_eq!(
        store
            .register_wallet_device("dev-1", "no-such-serial", "abc", start())
            .await
            .unwrap(),
        None
    );
    // Anna's export lists her pass and its device; erasure takes the device, the pass stays
    // counted as issued.
    let export = store.export_profile(anna).await.unwrap();
    assert_eq!(export["wallet_passes"][0]["serial"], serial.as_str());
    assert_eq!(export["wallet_passes"][0]["devices"], 1);
    store
        .privacy_request(
            winback_store::privacy::Request::Erase,
            anna,
            "test",
            start(),
        )
        .await
        .unwrap();
    assert_eq!(
        one(store, "SELECT COUNT(*) FROM wallet_registrations").await,
        0
    );
    assert_eq!(one(store, "SELECT COUNT(*) FROM wallet_passes").await, 6);
}
conformance!(wallet_steps_issue_and_update_one_pass, super::wallet_passes);
