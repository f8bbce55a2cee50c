//! The people behind the report's counts, on both backends: "messaged" counts the people who
//! received a message (not everyone in a messaged arm), every list is as long as its count, a
//! search finds customers by part of a name or address, and the data horizon follows the data.

use winback_domain::{ManualClock, Timestamp};
use winback_engine::file_outbox::FileOutbox;
use winback_engine::ports::JourneyStore;
use winback_engine::{Engine, EngineSettings};
use winback_import::SourceKind;
use winback_store::db::Val;
use winback_store::{
    ImportRun, Outcomes, PeopleGroup, PeoplePage, PeopleSegment, Segment, SqlStore, ingest::Mode,
};

use crate::{conformance, import};

fn at(s: &str) -> Timestamp {
    Timestamp::new(s.parse().unwrap())
}

// Everyone who bought enters, with or without email consent: those without it enter the
// messaged arm, and every message to them is dropped.
const CAMPAIGN: &str = r#"
[campaign]
name = "two-mails"
audience = 'orders >= 1'
conversion_window = "30d"
[trigger]
type = "audience"
[holdout]
share = 0.3
[[steps]]
id = "first"
type = "send"
template = "we-miss-you"
subject = "Hi"
[[steps]]
id = "pause"
type = "wait"
duration = "2d"
[[steps]]
id = "second"
type = "send"
template = "we-miss-you"
subject = "Hi again"
"#;

async fn count(store: &SqlStore, sql: &str) -> i64 {
    store.pool().fetch(sql, &[]).await.unwrap()[0]
        .i64(0)
        .unwrap()
}

async fn messaged_counts_people_and_every_list_matches_its_count(store: &SqlStore) {
    let mut customers =
        String::from("customer_id,first_name,last_name,email,phone,email_consent,locale\n");
    // Three mailbox providers and three locales (one unknown), so lists split by segment.
    let domain = |i: usize| ["example.nl", "gmail.com", "ziggo.nl"][i % 3];
    let locale = |i: usize| ["nl", "pl", ""][(i / 3) % 3];
    let mut orders = String::from("order_id,customer_id,ordered_at,total,currency,status\n");
    for i in 0..60usize {
        // One in four has no email consent.
        let consent = if i % 4 == 3 { "no" } else { "yes" };
        customers.push_str(&format!(
            "K{i:03},Anna{i},de Vries,anna{i}@{},+3161234{i:04},{consent},{}\n",
            domain(i),
            locale(i)
        ));
        orders.push_str(&format!(
            "H{i},K{i:03},2023-01-10T10:00:00Z,30.00,EUR,paid\n"
        ));
        // One in five ordered in the year before entering too (one of them later refunded).
        if i % 5 == 0 {
            let status = if i == 5 { "refunded" } else { "paid" };
            orders.push_str(&format!(
                "P{i},K{i:03},2024-01-15T10:00:00Z,25.00,EUR,{status}\n"
            ));
        }
    }
    // One person under two records that share a phone: the profile's root (the first record)
    // has neither a name nor an address; the list takes them from the other record.
    customers.push_str("K900,,,,+31612349999,no,nl\nK901,Anna900,de Vries,anna900@example.nl,+31612349999,yes,nl\n");
    orders.push_str("H900,K901,2023-01-10T10:00:00Z,30.00,EUR,paid\n");
    for (kind, name, text) in [
        (SourceKind::Customers, "customers.csv", customers.as_str()),
        (SourceKind::Orders, "orders.csv", orders.as_str()),
    ] {
        let r = import(store, kind, name, text, Mode::Strict).await;
        assert!(r.committed, "{:?}", r.errors);
    }
    let start = at("2024-06-03T10:00:00Z");
    let ids = store.identifiers().await.unwrap();
    store
        .save_resolution(
            &winback_identity::resolve(&winback_identity::IdentityRules::default(), &ids),
            start,
        )
        .await
        .unwrap();
    crate::engine::features(store, start).await;
    store
        .apply_campaign("two-mails", "two-mails.toml", CAMPAIGN, start)
        .await
        .unwrap();
    store
        .set_campaign_status("two-mails", winback_engine::CampaignStatus::Active, start)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start);
    let mut settings = EngineSettings::default();
    settings.policy.ramp.start_share = 1.0;
    let engine = Engine::new(store, &outbox, &clock, settings.clone());
    engine.run_until_idle(10).await.unwrap();
    // Ten withdraw their consent after the first mail: their second is dropped, yet they
    // were messaged once.
    let withdrawn: String = (0..40)
        .step_by(4)
        .map(|i| format!("K{i:03},anna{i}@{},no\n", domain(i)))
        .collect();
    let r = import(
        store,
        SourceKind::Customers,
        "withdrawn.csv",
        &format!("customer_id,email,email_consent\n{withdrawn}"),
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    clock.set(at("2024-06-06T10:00:00Z"));
    let engine = Engine::new(store, &outbox, &clock, settings);
    engine.run_until_idle(10).await.unwrap();
    // Two buyers after the mails.
    let later = "order_id,customer_id,ordered_at,total,currency,status\n\
        R1,K001,2024-06-08T10:00:00Z,50.00,EUR,paid\nR2,K002,2024-06-09T10:00:00Z,20.00,EUR,paid\n";
    let r = import(store, SourceKind::Orders, "later.csv", later, Mode::Strict).await;
    assert!(r.committed, "{:?}", r.errors);

    let id = store
        .campaigns()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == "two-mails")
        .unwrap()
        .id;
    let range = (Timestamp::EPOCH, at("2030-01-01T00:00:00Z"));
    let (arms, _) = store
        .campaign_arms(
            id,
            30 * 86_400,
            range,
            &[Segment::Locale],
            Outcomes::StoredWhereExact,
        )
        .await
        .unwrap();
    let treated: Vec<_> = arms.iter().filter(|a| !a.holdout).collect();
    let messaged: i64 = treated.iter().map(|a| a.messaged).sum();
    let entered_treated: i64 = treated.iter().map(|a| a.enrolled).sum();
    // The definition, straight from the outbox.
    let want = count(
        store,
        "SELECT COUNT(DISTINCT enrolment_id) FROM outbox WHERE state = 'sent'",
    )
    .await;
    let sent = count(store, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'").await;
    assert_eq!(messaged, want);
    assert!(
        sent > messaged,
        "some got two mails: {sent} sent to {messaged}"
    );
    assert!(
        messaged < entered_treated,
        "those without consent entered the messaged arm and got nothing: {messaged} of {entered_treated}"
    );
    assert!(arms.iter().filter(|a| a.holdout).all(|a| a.messaged == 0));

    // Every list is as long as its count, and holds exactly its definition's people: read
    // through in keyset pages of 7, and the numbered pages' total.
    let whole = |who: (PeopleGroup, PeopleSegment)| async move {
        let mut all: Vec<winback_store::CampaignPerson> = Vec::new();
        loop {
            let after = all.last().map(|p| (p.entered_at, p.enrolment_id));
            let (page, total) = store
                .campaign_people(
                    id,
                    30 * 86_400,
                    range,
                    (who.0, &who.1),
                    PeoplePage::After { limit: 7, after },
                )
                .await
                .unwrap();
            assert_eq!(total, None);
            let last = page.len() < 7;
            all.extend(page);
            if last {
                break;
            }
        }
        let (_, total) = store
            .campaign_people(
                id,
                30 * 86_400,
                range,
                (who.0, &who.1),
                PeoplePage::Offset {
                    limit: 1,
                    offset: 0,
                },
            )
            .await
            .unwrap();
        (all, total.unwrap())
    };
    let list = |group| whole((group, PeopleSegment::All));
    let ids = |people: &[winback_store::CampaignPerson]| {
        let mut v: Vec<i64> = people.iter().map(|p| p.profile_id).collect();
        v.sort();
        v
    };
    let (all, total) = list(PeopleGroup::Entered).await;
    assert_eq!(total, arms.iter().map(|a| a.enrolled).sum::<i64>());
    assert_eq!(all.len() as i64, total);
    let (held, total) = list(PeopleGroup::HeldOut).await;
    assert_eq!(
        total,
        arms.iter()
            .filter(|a| a.holdout)
            .map(|a| a.enrolled)
            .sum::<i64>()
    );
    assert!(held.iter().all(|p| p.holdout) && held.len() as i64 == total && total > 0);
    let (got, total) = list(PeopleGroup::Messaged).await;
    assert_eq!((got.len() as i64, total), (messaged, messaged));
    assert!(got.iter().all(|p| p.messaged_at.is_some() && !p.holdout));
    let (bought, total) = list(PeopleGroup::Bought).await;
    assert_eq!(total, treated.iter().map(|a| a.converted).sum::<i64>());
    assert!(bought.iter().all(|p| p.orders > 0 && !p.holdout));
    let (dropped, _) = list(PeopleGroup::Dropped).await;
    let want: Vec<i64> = {
        let mut v: Vec<i64> = store
            .pool()
            .fetch(
                "SELECT DISTINCT profile_id FROM outbox WHERE state = 'dropped' AND outcome <> 'soft_bounce'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.i64(0).unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&dropped), want);
    assert!(!want.is_empty());
    // Each segment's list is as long as the report's segment: by locale and by provider.
    let (_, by) = store
        .campaign_arms(
            id,
            30 * 86_400,
            range,
            &[Segment::Locale, Segment::Provider],
            Outcomes::StoredWhereExact,
        )
        .await
        .unwrap();
    for (rows, as_segment) in [
        (&by[0], PeopleSegment::Locale as fn(String) -> PeopleSegment),
        (&by[1], PeopleSegment::Provider),
    ] {
        let mut want: std::collections::BTreeMap<String, i64> = Default::default();
        for (segment, a) in rows.iter() {
            *want.entry(segment.clone()).or_default() += a.enrolled;
        }
        assert!(!want.is_empty());
        for (segment, n) in want {
            let (people, total) = whole((PeopleGroup::Entered, as_segment(segment.clone()))).await;
            assert_eq!((people.len() as i64, total), (n, n), "{segment}");
        }
    }
    // Names and addresses come with the list, from any of a person's records.
    assert!(
        all.iter()
            .all(|p| p.name.starts_with("Anna") && p.email.is_some()),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|p| p.customer_id == "K900" && p.name == "Anna900 de Vries")
    );
    // A page is a slice of the whole list, in the same order.
    let (page, total) = store
        .campaign_people(
            id,
            30 * 86_400,
            range,
            (PeopleGroup::Entered, &PeopleSegment::All),
            PeoplePage::Offset {
                limit: 5,
                offset: 5,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, Some(all.len() as i64));
    assert_eq!(page, all[5..10].to_vec());

    // Each enrolment carries its contact's orders and spend in the year before entry, taken
    // when it entered: the 11 paid orders of 2024-01-15 (the refunded one left out), not the
    // 2023 ones. The migration's backfill gives the same.
    let pre = "SELECT CAST(SUM(pre_orders) AS BIGINT) FROM enrolments";
    let spend = "SELECT CAST(SUM(pre_spend_minor) AS BIGINT) FROM enrolments";
    assert_eq!(
        (count(store, pre).await, count(store, spend).await),
        (11, 27_500)
    );
    let backfill = if store.pool().backend() == winback_store::db::Backend::Postgres {
        include_str!("../../migrations/postgres/0021_enrolment_pre_entry.sql")
    } else {
        include_str!("../../migrations/sqlite/0021_enrolment_pre_entry.sql")
    };
    store
        .pool()
        .execute(
            "UPDATE enrolments SET pre_orders = 0, pre_spend_minor = 0",
            &[],
        )
        .await
        .unwrap();
    let update = &backfill[backfill.find("UPDATE").unwrap()..];
    store.pool().execute(update, &[]).await.unwrap();
    assert_eq!(
        (count(store, pre).await, count(store, spend).await),
        (11, 27_500)
    );

    // The migration's backfill gives the live path's answer.
    let backfill = if store.pool().backend() == winback_store::db::Backend::Postgres {
        include_str!("../../migrations/postgres/0019_enrolment_messaged.sql")
    } else {
        include_str!("../../migrations/sqlite/0019_enrolment_messaged.sql")
    };
    let update = &backfill[backfill.find("UPDATE").unwrap()..];
    let before = count(
        store,
        "SELECT COUNT(*) FROM enrolments WHERE messaged_at IS NOT NULL",
    )
    .await;
    store
        .pool()
        .execute("UPDATE enrolments SET messaged_at = NULL", &[])
        .await
        .unwrap();
    store.pool().execute(update, &[]).await.unwrap();
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM enrolments WHERE messaged_at IS NOT NULL"
        )
        .await,
        before
    );
}

async fn search_finds_by_name_part_of_an_address_phone_and_any_case_id(store: &SqlStore) {
    let customers = "customer_id,first_name,last_name,email,phone,email_consent\n\
        AB-1001,Joost,van den Berg,joost.berg@ziggo.nl,+31612345678,yes\n\
        AB-1002,Marieke,Jansen,m.jansen@gmail.com,+31687654321,yes\n\
        AB-1003,Piet,100% Zeker,piet@example.nl,,yes\n";
    let r = import(
        store,
        SourceKind::Customers,
        "c.csv",
        customers,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    let find = |q: &'static str| async move {
        store
            .search_customers(q, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.external_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(find("ab-1002").await, ["AB-1002"]);
    assert_eq!(find("JANSEN").await, ["AB-1002"]);
    assert_eq!(find("van den berg").await, ["AB-1001"]);
    assert_eq!(find("ziggo").await, ["AB-1001"]);
    assert_eq!(find("06 1234 5678").await, ["AB-1001"]);
    assert_eq!(find("@example.nl").await, ["AB-1003"]);
    // `%` and `_` are letters in a search, not wildcards.
    assert_eq!(find("100%").await, ["AB-1003"]);
    assert!(find("_").await.is_empty());
    assert!(find("nobody").await.is_empty());
    // Two records of one person (a newsletter signup merged into the shop account) are one hit.
    let r = import(
        store,
        SourceKind::Customers,
        "signup.csv",
        "customer_id,first_name,email\nNL-77,Marieke,marieke.jansen@hetnet.nl\n",
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    let merged = store
        .pool()
        .fetch(
            "SELECT id FROM customers WHERE external_id = 'AB-1002'",
            &[],
        )
        .await
        .unwrap()[0]
        .i64(0)
        .unwrap();
    store
        .pool()
        .execute(
            "UPDATE customers SET profile_id = $1 WHERE external_id = 'NL-77'",
            &[Val::from(merged)],
        )
        .await
        .unwrap();
    assert_eq!(find("marieke").await, ["AB-1002"]);
    assert!(find("   ").await.is_empty());
    // An erased person is not found.
    store
        .pool()
        .execute(
            "UPDATE customers SET erased_at = 1 WHERE external_id = 'AB-1001'",
            &[],
        )
        .await
        .unwrap();
    assert!(find("ziggo").await.is_empty());
}

async fn the_data_horizon_is_the_latest_import_or_scoring_run(store: &SqlStore) {
    assert_eq!(store.data_horizon().await.unwrap(), None);
    let run = |t: &str| ImportRun {
        kind: "orders".into(),
        file: "o.csv".into(),
        started_at: at(t),
        finished_at: at(t),
        rows_ok: 1,
        rows_rejected: 0,
        mode: "strict".into(),
    };
    store
        .record_import_run(&run("2027-03-01T00:00:00Z"))
        .await
        .unwrap();
    store
        .record_import_run(&run("2025-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        store.data_horizon().await.unwrap(),
        Some(at("2027-03-01T00:00:00Z"))
    );
    store
        .pool()
        .execute(
            "INSERT INTO score_runs (scored_at, profiles, models) VALUES ($1, 0, '{}')",
            &[Val::from(at("2027-06-01T00:00:00Z").as_micros())],
        )
        .await
        .unwrap();
    assert_eq!(
        store.data_horizon().await.unwrap(),
        Some(at("2027-06-01T00:00:00Z"))
    );
}

conformance!(
    messaged_and_lists,
    super::messaged_counts_people_and_every_list_matches_its_count
);
conformance!(
    customer_search,
    super::search_finds_by_name_part_of_an_address_phone_and_any_case_id
);
conformance!(
    data_horizon,
    super::the_data_horizon_is_the_latest_import_or_scoring_run
);
