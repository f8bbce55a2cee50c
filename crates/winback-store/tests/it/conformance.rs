use winback_identity::{IdentityRules, resolve};
use winback_import::SourceKind;
use winback_store::{FactScope, ScoreFilter, SqlStore, ingest::Mode};

use crate::{conformance, dropped_session, import, now, rows};

const CUSTOMERS: &str = "customer_id,email,first_name,last_name,phone,address1,postal_code,city,country,email_consent,sms_consent,tier\n\
    C1,anna@example.nl,Anna,de Vries,0612345678,Keizersgracht 12,1015 CS,Amsterdam,NL,yes,yes,gold\n\
    C2,anna.work@corp.nl,Anna,de Vries,06 12345678,,,,,soft_opt_in,,\n\
    C3,bob@example.nl,Bob,Bakker,,Dorpsstraat 1,1234 AB,Gouda,NL,yes,,silver\n\
    C4,bobby@example.nl,Bob,Bakker,,Dorpsstraat 1,1234AB,GOUDA,NL,none,,\n\
    C5,carl@example.nl,Carl,Smit,,,,,,withdrawn,,\n";

const ORDERS: &str = "order_id,customer_id,ordered_at,total,currency,discount_codes,status,category\n\
    O1,C1,2024-01-10T10:00:00Z,59.90,EUR,WELKOM10,paid,fashion\n\
    O2,C2,2024-04-02T10:00:00Z,19.95,EUR,,paid,fashion\n\
    O3,C3,2023-05-01T10:00:00Z,120.00,EUR,,refunded,home\n\
    O4,C9,2024-02-01T10:00:00Z,5.00,EUR,,paid,\n";

const EVENTS: &str = "{\"event_id\":\"e1\",\"customer_id\":\"C1\",\"at\":\"2024-03-01T10:00:00Z\",\"type\":\"email_opened\"}\n\
    {\"customer_id\":\"C3\",\"at\":\"2024-03-02T10:00:00Z\",\"type\":\"email_unsubscribed\"}\n\
    {\"customer_id\":\"C1\",\"at\":\"2024-03-03T10:00:00Z\",\"type\":\"site_visited\",\"url\":\"/sale\"}\n";

async fn load_all(store: &SqlStore) {
    for (kind, name, text) in [
        (SourceKind::Customers, "customers.csv", CUSTOMERS),
        (SourceKind::Orders, "orders.csv", ORDERS),
        (SourceKind::Events, "events.jsonl", EVENTS),
    ] {
        let r = import(store, kind, name, text, Mode::Strict).await;
        assert!(r.committed && r.errors.is_empty(), "{name}: {:?}", r.errors);
    }
}

async fn load_and_resolve(store: &SqlStore) {
    load_all(store).await;
    let ids = store.identifiers().await.unwrap();
    store
        .save_resolution(&resolve(&IdentityRules::default(), &ids), now())
        .await
        .unwrap();
}

async fn reimport_never_duplicates(store: &SqlStore) {
    load_all(store).await;
    let before = (
        rows(store, "customers").await,
        rows(store, "orders").await,
        rows(store, "events").await,
        rows(store, "consent_ledger").await,
    );
    assert_eq!(before.0, 6, "C1..C5 and C9 (created by its order)");
    assert_eq!((before.1, before.2), (4, 3));
    load_all(store).await;
    let after = (
        rows(store, "customers").await,
        rows(store, "orders").await,
        rows(store, "events").await,
        rows(store, "consent_ledger").await,
    );
    assert_eq!(before, after);
    let report = import(
        store,
        SourceKind::Events,
        "events.jsonl",
        EVENTS,
        Mode::Strict,
    )
    .await;
    assert_eq!(
        (report.written.events, report.written.duplicate_events),
        (0, 3)
    );
    // Changed values of an order are updated in place.
    let changed = ORDERS.replace(
        "O1,C1,2024-01-10T10:00:00Z,59.90",
        "O1,C1,2024-01-10T10:00:00Z,69.90",
    );
    import(
        store,
        SourceKind::Orders,
        "orders.csv",
        &changed,
        Mode::Strict,
    )
    .await;
    let total = store
        .pool()
        .fetch(
            "SELECT total_minor FROM orders WHERE external_id = 'O1'",
            &[],
        )
        .await
        .unwrap()[0]
        .i64(0)
        .unwrap();
    assert_eq!(total, 6990);
    assert_eq!(rows(store, "orders").await, 4);
}
conformance!(reimport_is_idempotent, super::reimport_never_duplicates);

async fn strict_import_with_errors_writes_nothing(store: &SqlStore) {
    load_all(store).await;
    let bad = "order_id,customer_id,ordered_at,total\nO10,C1,2024-05-01,10.00\nO11,C1,2024-05-01,ten euros\nO12,C1,31/02/2024,1.00\n";
    let r = import(store, SourceKind::Orders, "more.csv", bad, Mode::Strict).await;
    assert!(!r.committed);
    assert_eq!(r.errors.len(), 2);
    assert!(
        r.errors[0].starts_with("more.csv:3: total:"),
        "{}",
        r.errors[0]
    );
    assert!(
        r.errors[1].starts_with("more.csv:4: ordered_at:"),
        "{}",
        r.errors[1]
    );
    assert_eq!(
        rows(store, "orders").await,
        4,
        "the good row O10 was not written either"
    );

    let r = import(store, SourceKind::Orders, "more.csv", bad, Mode::DryRun).await;
    assert!(!r.committed && r.rows_ok == 1 && r.rows_rejected == 2);
    assert_eq!(rows(store, "orders").await, 4);

    let r = import(
        store,
        SourceKind::Orders,
        "more.csv",
        bad,
        Mode::SkipInvalid,
    )
    .await;
    assert!(r.committed && r.rows_ok == 1 && r.rows_rejected == 2);
    assert_eq!(rows(store, "orders").await, 5);

    dropped_session(store).await;
    assert_eq!(
        store
            .pool()
            .fetch(
                "SELECT COUNT(*) FROM customers WHERE external_id = 'ghost'",
                &[]
            )
            .await
            .unwrap()[0]
            .i64(0)
            .unwrap(),
        0,
        "an interrupted session leaves nothing"
    );
}
conformance!(
    refused_files_leave_the_store_unchanged,
    super::strict_import_with_errors_writes_nothing
);

async fn items_of_unknown_orders_are_refused_with_their_line(store: &SqlStore) {
    load_all(store).await;
    let items = "order_id,sku,name,quantity,unit_price\nO1,A,Shirt,1,59.90\nO404,B,Mug,1,5.00\nO1,C,Socks,2,1.00\n";
    let r = import(
        store,
        SourceKind::OrderItems,
        "items.csv",
        items,
        Mode::Strict,
    )
    .await;
    assert!(!r.committed);
    assert_eq!(
        r.errors,
        ["items.csv:3: order_id: order `O404` is not in the store; import the orders file first"]
    );
    assert_eq!(rows(store, "order_items").await, 0);
    let r = import(
        store,
        SourceKind::OrderItems,
        "items.csv",
        items,
        Mode::SkipInvalid,
    )
    .await;
    assert!(r.committed);
    assert_eq!(rows(store, "order_items").await, 2);
    import(
        store,
        SourceKind::OrderItems,
        "items.csv",
        items,
        Mode::SkipInvalid,
    )
    .await;
    assert_eq!(
        rows(store, "order_items").await,
        2,
        "re-import updates lines in place"
    );
}
conformance!(
    order_items,
    super::items_of_unknown_orders_are_refused_with_their_line
);

async fn identity_merges_profiles_and_explains_them(store: &SqlStore) {
    load_all(store).await;
    let ids = store.identifiers().await.unwrap();
    let stats = store
        .save_resolution(&resolve(&IdentityRules::default(), &ids), now())
        .await
        .unwrap();
    assert_eq!(
        (stats.records, stats.merged_records),
        (6, 2),
        "C2 joins C1 by phone, C4 joins C3 by address + family name"
    );
    assert_eq!(stats.profiles, 4);
    // Saving the same resolution again changes nothing.
    let again = store
        .save_resolution(
            &resolve(
                &IdentityRules::default(),
                &store.identifiers().await.unwrap(),
            ),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(again.changed, 0);

    // Anna's second address orders too: her profile is not inactive (seed 000).
    let anna = store
        .customer_detail("anna.work@corp.nl")
        .await
        .unwrap()
        .expect("found by email");
    assert_eq!(
        anna.records
            .iter()
            .map(|r| r.external_id.as_str())
            .collect::<Vec<_>>(),
        ["C1", "C2"]
    );
    assert_eq!(anna.order_count, 2);
    assert_eq!(anna.orders[0].external_id, "O2", "newest first");
    assert_eq!(anna.orders[1].discount_codes, ["WELKOM10"]);
    assert_eq!(anna.links.len(), 1);
    assert_eq!(
        (anna.links[0].rule.as_str(), anna.links[0].value.as_str()),
        ("phone", "+31612345678")
    );
    assert_eq!(anna.records[0].attributes["tier"], "gold");
    assert_eq!(anna.event_count, 2);
    let consent = |who: &str| {
        anna.consent
            .iter()
            .find(|c| c.channel == "email" && c.customer_external_id == who)
            .unwrap()
            .status
            .clone()
    };
    assert_eq!(
        (consent("C1"), consent("C2")),
        ("opt_in".to_string(), "soft_opt_in".to_string()),
        "consent stays with its address"
    );

    let bob = store.customer_detail("C4").await.unwrap().unwrap();
    assert_eq!(
        bob.profile_id,
        store
            .customer_detail("C3")
            .await
            .unwrap()
            .unwrap()
            .profile_id
    );
    assert_eq!(bob.links[0].rule, "address_family_name");
    // The unsubscribe event withdrew email consent in the ledger.
    assert_eq!(
        bob.consent
            .iter()
            .find(|c| c.channel == "email" && c.customer_external_id == "C3")
            .unwrap()
            .status,
        "withdrawn"
    );

    let s = store.summary().await.unwrap();
    assert_eq!(
        (s.customer_records, s.profiles, s.merged_records),
        (6, 4, 2)
    );
    assert_eq!((s.orders, s.refunded_or_cancelled_orders), (4, 1));
    assert_eq!(
        s.revenue_minor_by_currency,
        [("EUR".to_string(), 5990 + 1995 + 500)]
    );
    assert_eq!(
        s.records_without_contact, 1,
        "C9 is known only by its order"
    );
    let withdrawn = s
        .email_consent
        .iter()
        .find(|(k, _)| k == "withdrawn")
        .unwrap()
        .1;
    assert_eq!(withdrawn, 2, "Carl withdrew; Bob unsubscribed");
    assert!(
        store
            .customer_detail("nobody@example.nl")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.merged_records(10).await.unwrap(),
        ["C2", "C4"],
        "merged into Anna's and Bob's profiles"
    );
    let profiles = store.list_profiles(0, 100).await.unwrap();
    assert_eq!(profiles.len(), 4);
}
conformance!(
    identity_resolution,
    super::identity_merges_profiles_and_explains_them
);

async fn hints_fill_gaps_but_customer_files_win(store: &SqlStore) {
    let orders = "order_id,email,ordered_at,total\nS1,Jan.Jansen+shop@gmail.com,2024-01-01,10\n";
    import(store, SourceKind::Orders, "shop.csv", orders, Mode::Strict).await;
    let customers = "customer_id,email,first_name\nemail:janjansen@gmail.com,jan@jansen.nl,Jan\n";
    import(
        store,
        SourceKind::Customers,
        "customers.csv",
        customers,
        Mode::Strict,
    )
    .await;
    import(store, SourceKind::Orders, "shop.csv", orders, Mode::Strict).await;
    let d = store
        .customer_detail("email:janjansen@gmail.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        d.records[0].email.as_deref(),
        Some("jan@jansen.nl"),
        "the order's email does not overwrite the customer file's"
    );
    assert_eq!(d.records[0].first_name.as_deref(), Some("Jan"));
}
conformance!(
    hints_and_authoritative_records,
    super::hints_fill_gaps_but_customer_files_win
);

async fn cdnow_sample_imports_with_the_right_counts(store: &SqlStore) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/cdnow/CDNOW_sample.txt");
    let rows_iter = winback_import::open(SourceKind::Cdnow, &path, &crate::opts(), None).unwrap();
    let options = winback_store::ingest::IngestOptions {
        file: std::sync::Arc::from("CDNOW_sample.txt"),
        mode: Mode::Strict,
        max_errors: 20,
        batch_rows: 5000,
        now: now(),
    };
    let r = winback_store::ingest::ingest(store, rows_iter, &options, |_| {}, |_| {})
        .await
        .unwrap();
    assert!(r.committed, "{:?}", r.errors);
    assert_eq!(rows(store, "orders").await, 6_919);
    assert_eq!(rows(store, "customers").await, 2_357);
    let s = store.summary().await.unwrap();
    assert_eq!(s.revenue_minor_by_currency[0].0, "USD");
    assert!(s.zero_value_orders > 0, "CDNOW has zero-dollar orders");
}
conformance!(
    cdnow_sample,
    super::cdnow_sample_imports_with_the_right_counts
);

async fn migrations_are_idempotent(store: &SqlStore) {
    let n = store
        .pool()
        .fetch("SELECT COUNT(*) FROM winback_migrations", &[])
        .await
        .unwrap()[0]
        .i64(0)
        .unwrap();
    assert_eq!(
        n, 23,
        "foundation, scores, features and models, campaigns, ramp window, tracking and api, privacy, dashboard, identity held apart, transport pauses, outbox key digest, jobs, message rollup, last engaged, enrolment outcomes, trigger leases, profile hygiene, enrolment segments, enrolment messaged, outbox sent subject, enrolment pre-entry, channel mix, wallet google"
    );
    // Tampering with an applied migration is detected on the next connect.
    store
        .pool()
        .execute("UPDATE winback_migrations SET checksum = 'x'", &[])
        .await
        .unwrap();
    let url = match store.pool() {
        winback_store::db::Pool::Sqlite(p, _) => {
            format!("sqlite://{}", p.connect_options().get_filename().display())
        }
        winback_store::db::Pool::Postgres(_) => return, // schema-scoped URL is not reconstructible here; SQLite covers the runner
    };
    let err = SqlStore::connect(&url).await.unwrap_err();
    assert!(
        err.to_string().contains("was changed after it was applied"),
        "{err}"
    );
}
conformance!(migrations, super::migrations_are_idempotent);

async fn profile_facts_feed_features(store: &SqlStore) {
    load_and_resolve(store).await;
    let set = store.profile_facts(FactScope::All).await.unwrap();
    assert_eq!(set.profiles.len(), 4, "one per merged profile");
    let anna = set.profiles.iter().find(|p| p.external_id == "C1").unwrap();
    // O1 (C1) and O2 (C2, merged into Anna), in time order, with the category named.
    assert_eq!(
        anna.orders
            .iter()
            .map(|o| o.total_minor)
            .collect::<Vec<_>>(),
        [5990, 1995]
    );
    assert!(anna.orders.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(set.categories[anna.orders[0].category as usize], "fashion");
    assert_eq!(anna.name.as_deref(), Some("Anna de Vries"));
    assert!(
        anna.signals
            .iter()
            .any(|s| s.signal == winback_domain::Signal::SiteVisit
                && s.at.to_string() == "2024-03-03T10:00:00Z"),
        "{:?}",
        anna.signals
    );
    assert!(anna.receives_email);
    let bob = set.profiles.iter().find(|p| p.external_id == "C3").unwrap();
    assert!(bob.orders.is_empty(), "a refunded order is not a purchase");
    assert!(
        !set.profiles
            .iter()
            .find(|p| p.external_id == "C5")
            .unwrap()
            .receives_email,
        "Carl withdrew"
    );
}
conformance!(profile_facts, super::profile_facts_feed_features);

/// A profile's facts with category names instead of a chunk's own category indexes.
fn comparable(set: &winback_domain::FactSet) -> Vec<String> {
    set.profiles
        .iter()
        .map(|p| {
            let orders: Vec<String> = p
                .orders
                .iter()
                .map(|o| {
                    format!(
                        "{} {} {} {}",
                        o.at, o.total_minor, o.discounted, set.categories[o.category as usize]
                    )
                })
                .collect();
            format!(
                "{} {} {:?} {:?} {:?} {} {orders:?} {:?}",
                p.profile_id,
                p.external_id,
                p.name,
                p.currency,
                p.receives_email,
                p.signals.len(),
                p.signals
            )
        })
        .collect()
}

/// Whole-base scans read a chunk of profiles at a time; the chunks together are exactly the
/// one scan, for every chunk size, for all profiles and for the stale ones.
async fn fact_chunks_are_the_whole_scan(store: &SqlStore) {
    load_and_resolve(store).await;
    let whole = comparable(&store.profile_facts(FactScope::All).await.unwrap());
    let stale = comparable(&store.profile_facts(FactScope::Dirty).await.unwrap());
    assert!(!stale.is_empty());
    for size in [1, 2, 3, 1000] {
        for (dirty_only, expected) in [(false, &whole), (true, &stale)] {
            let mut got = Vec::new();
            let chunks = store.fact_chunks(dirty_only, size).await.unwrap();
            assert!(chunks.len() >= expected.len().div_ceil(size));
            for scope in chunks {
                got.extend(comparable(&store.profile_facts(scope).await.unwrap()));
            }
            assert_eq!(&got, expected, "chunks of {size}, dirty only: {dirty_only}");
        }
    }
}
conformance!(fact_chunks, super::fact_chunks_are_the_whole_scan);

async fn imports_mark_touched_profiles_for_an_incremental_refresh(store: &SqlStore) {
    load_and_resolve(store).await;
    let dirty = store.dirty_customers().await.unwrap();
    assert!(!dirty.is_empty(), "the imports marked their records");
    let all = store.profile_facts(FactScope::All).await.unwrap();
    let now = winback_domain::Timestamp::from_micros(1_720_000_000_000_000).unwrap();
    let rows: Vec<_> = all
        .profiles
        .iter()
        .map(|p| winback_scoring::features_of(p, &all.categories, now))
        .collect();
    store.save_features(now, &rows, &dirty, true).await.unwrap();
    assert!(store.dirty_customers().await.unwrap().is_empty());
    assert!(
        store
            .profile_facts(FactScope::Dirty)
            .await
            .unwrap()
            .profiles
            .is_empty(),
        "nothing stale after a full refresh"
    );
    // A new order for C2 (merged into Anna's profile) makes exactly that profile stale.
    let orders = "order_id,customer_id,ordered_at,total,currency,status\nO9,C2,2024-05-01T09:00:00Z,12.50,EUR,paid\n";
    let r = import(
        store,
        SourceKind::Orders,
        "orders.csv",
        orders,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    let stale = store.profile_facts(FactScope::Dirty).await.unwrap();
    assert_eq!(
        stale
            .profiles
            .iter()
            .map(|p| p.external_id.as_str())
            .collect::<Vec<_>>(),
        ["C1"],
        "the merged profile, recomputed with all its records"
    );
    assert_eq!(stale.profiles[0].orders.len(), 3);
    let anna = all
        .profiles
        .iter()
        .find(|p| p.external_id == "C1")
        .unwrap()
        .profile_id;
    let (at, json) = store
        .features_of(winback_domain::ProfileId::new(anna))
        .await
        .unwrap()
        .unwrap();
    let kept: winback_domain::Features = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (at, kept.orders),
        (now, 2),
        "the stored features, until refreshed"
    );
}
conformance!(
    incremental_marks,
    super::imports_mark_touched_profiles_for_an_incremental_refresh
);

fn row(profile_id: i64, stage: &str, clv: f64) -> winback_store::ScoreRow {
    winback_store::ScoreRow {
        profile_id: winback_domain::ProfileId::new(profile_id),
        stage: stage.into(),
        reason: format!("because {stage}"),
        segment: Some("at_risk".into()),
        p_alive: Some(0.42),
        expected_90d: Some(0.3),
        clv_minor: Some(clv),
        reorder: None,
        purchases: 2,
        spend_minor: 7985,
        currency: Some("EUR".into()),
        rfm: Some("315".into()),
        attrition: Some(0.58),
        priority_minor: (stage != "active").then_some(clv / 10.0),
        inactive_by: if stage == "lapsed" {
            vec!["lapsed_180d".into(), "overdue_buyer".into()]
        } else {
            Vec::new()
        },
        details: serde_json::json!({"priority": {"reasons": ["worth it"]}}),
    }
}

async fn score_runs_record_stage_changes(store: &SqlStore) {
    load_and_resolve(store).await;
    let anna = store
        .customer_detail("C1")
        .await
        .unwrap()
        .unwrap()
        .profile_id;
    let bob = store
        .customer_detail("C3")
        .await
        .unwrap()
        .unwrap()
        .profile_id;
    let models = serde_json::json!({"bgnbd": {"r": 0.24}});
    let first = store
        .save_scores(
            now(),
            &models,
            &[
                row(anna.get(), "active", 5000.0),
                row(bob.get(), "lapsed", 900.0),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        (first.profiles, first.stage_changes),
        (2, 2),
        "a first score is a change from nothing"
    );
    let later = now().plus_seconds(30 * 86_400);
    let second = store
        .save_scores(
            later,
            &models,
            &[
                row(anna.get(), "at_risk", 4000.0),
                row(bob.get(), "lapsed", 800.0),
            ],
        )
        .await
        .unwrap();
    assert_eq!(second.stage_changes, 1, "only Anna moved");
    let history = store
        .stage_history(winback_domain::ProfileId::new(anna.get()))
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[1].from.as_deref(), history[1].to.as_str()),
        (Some("active"), "at_risk")
    );
    assert_eq!(
        history[1].at, later,
        "moved from active to at risk on the second run's date"
    );
    let latest = store
        .latest_score(winback_domain::ProfileId::new(anna.get()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (latest.stage.as_str(), latest.clv_minor, latest.p_alive),
        ("at_risk", Some(4000.0), Some(0.42))
    );
    assert_eq!(latest.details["priority"]["reasons"][0], "worth it");
    let filter = |f: &dyn Fn(&mut ScoreFilter)| {
        let mut x = ScoreFilter {
            limit: 10,
            ..ScoreFilter::default()
        };
        f(&mut x);
        x
    };
    let lapsed = store
        .list_scored(&filter(&|f| f.stages = vec!["lapsed".into()]))
        .await
        .unwrap();
    assert_eq!(lapsed.len(), 1);
    assert_eq!(lapsed[0].external_id, "C3");
    assert_eq!(
        lapsed[0].score.inactive_by,
        ["lapsed_180d", "overdue_buyer"]
    );
    let overdue = store
        .list_scored(&filter(&|f| f.inactive = Some("overdue_buyer".into())))
        .await
        .unwrap();
    assert_eq!(overdue.len(), 1, "matched by definition name");
    let none = store
        .list_scored(&filter(&|f| f.inactive = Some("overdue".into())))
        .await
        .unwrap();
    assert!(none.is_empty(), "a prefix of a name is not the name");
    let ranked = store
        .list_scored(&filter(&|f| {
            f.by_priority = true;
            f.min_priority_minor = Some(50.0);
        }))
        .await
        .unwrap();
    assert_eq!(
        ranked
            .iter()
            .map(|p| p.external_id.as_str())
            .collect::<Vec<_>>(),
        ["C1", "C3"],
        "400 then 80"
    );
    let migration = store.segment_migration().await.unwrap();
    assert_eq!(migration, [("at_risk".into(), "at_risk".into(), 2)]);
    let valuable = store
        .list_scored(&filter(&|f| f.min_clv_minor = Some(1000.0)))
        .await
        .unwrap();
    assert_eq!(
        valuable
            .iter()
            .map(|p| p.external_id.as_str())
            .collect::<Vec<_>>(),
        ["C1"]
    );
    let shares = store.stage_shares().await.unwrap();
    assert_eq!(shares.len(), 4, "two runs × two stages");
    assert_eq!(shares[0].0, now());
}
conformance!(score_runs, super::score_runs_record_stage_changes);

async fn model_fits_are_persisted(store: &SqlStore) {
    let fit = |model: &str, r: f64, at: i64| winback_store::ModelFitRow {
        model: model.into(),
        fitted_at: now().plus_seconds(at),
        window_start: Some(now().plus_seconds(-86_400 * 365)),
        window_end: now(),
        customers: 2357,
        params: serde_json::json!({"r": r}),
        std_errors: serde_json::json!({"r": 0.01}),
        log_likelihood: Some(-9582.43),
        iterations: 24,
        seconds: 0.01,
    };
    store.save_model_fit(&fit("bgnbd", 0.2, 0)).await.unwrap();
    store.save_model_fit(&fit("bgnbd", 0.24, 60)).await.unwrap();
    store
        .save_model_fit(&fit("pareto_nbd", 0.55, 0))
        .await
        .unwrap();
    let latest = store.latest_model_fits().await.unwrap();
    assert_eq!(latest, [fit("bgnbd", 0.24, 60), fit("pareto_nbd", 0.55, 0)]);
}
conformance!(model_fits, super::model_fits_are_persisted);

async fn responses_keys_idempotency_preferences_and_stop(store: &SqlStore) {
    use winback_store::responses::Idempotency;
    load_and_resolve(store).await;
    let t = now();
    // API keys: found by hash until revoked; never by anything else.
    let id = store
        .create_api_key(
            "shop",
            "wbk_0000aaaa",
            "hash-1",
            &["ingest".into(), "read".into()],
            t,
        )
        .await
        .unwrap();
    let k = store.api_key_by_hash("hash-1", t).await.unwrap().unwrap();
    assert_eq!(
        (k.id, k.scopes.clone()),
        (id, vec!["ingest".to_owned(), "read".to_owned()])
    );
    assert!(store.api_key_by_hash("hash-2", t).await.unwrap().is_none());
    assert_eq!(store.revoke_api_key("wbk_0000aaaa", t).await.unwrap(), 1);
    assert!(store.api_key_by_hash("hash-1", t).await.unwrap().is_none());
    assert!(store.api_keys().await.unwrap()[0].revoked_at.is_some());
    // Idempotency: new, in progress, replay, mismatch, released after a failure.
    assert_eq!(
        store.idempotency_begin(id, "k1", "h", t).await.unwrap(),
        Idempotency::New
    );
    assert_eq!(
        store.idempotency_begin(id, "k1", "h", t).await.unwrap(),
        Idempotency::InProgress
    );
    store
        .idempotency_finish(id, "k1", Some((200, "{\"ok\":1}")))
        .await
        .unwrap();
    assert_eq!(
        store.idempotency_begin(id, "k1", "h", t).await.unwrap(),
        Idempotency::Replay(200, "{\"ok\":1}".into())
    );
    assert_eq!(
        store.idempotency_begin(id, "k1", "other", t).await.unwrap(),
        Idempotency::Mismatch
    );
    assert_eq!(
        store.idempotency_begin(id, "k2", "h", t).await.unwrap(),
        Idempotency::New
    );
    store.idempotency_finish(id, "k2", None).await.unwrap();
    assert_eq!(
        store.idempotency_begin(id, "k2", "h", t).await.unwrap(),
        Idempotency::New
    );
    // Preferences: C1 (Anna, merged with C2) consented to email and SMS.
    let anna = store
        .customer_detail("C1")
        .await
        .unwrap()
        .unwrap()
        .profile_id;
    let p = store
        .preferences(winback_domain::ProfileId::new(anna.get()))
        .await
        .unwrap();
    assert!(p.email && p.sms && !p.low_frequency, "{p:?}");
    let fewer = winback_store::responses::Preferences {
        low_frequency: true,
        topics_off: vec!["news".into()],
        email: true,
        sms: false,
    };
    store
        .set_preferences(winback_domain::ProfileId::new(anna.get()), &fewer, t)
        .await
        .unwrap();
    assert_eq!(
        store
            .preferences(winback_domain::ProfileId::new(anna.get()))
            .await
            .unwrap(),
        fewer
    );
    assert!(
        store
            .add_tag(
                winback_domain::ProfileId::new(anna.get()),
                "reason:price",
                "survey",
                t
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .add_tag(
                winback_domain::ProfileId::new(anna.get()),
                "reason:price",
                "survey",
                t
            )
            .await
            .unwrap()
    );
    // An SMS STOP from Anna's number: handled once per provider message.
    let phone = store
        .pool()
        .fetch("SELECT phone FROM customers WHERE external_id = 'C1'", &[])
        .await
        .unwrap()[0]
        .text(0)
        .unwrap();
    let first = store.sms_stop("in-1", &phone, "STOP", t).await.unwrap();
    assert!(first.new);
    assert!(store.is_suppressed("sms", &phone).await.unwrap());
    assert!(!store.sms_stop("in-1", &phone, "STOP", t).await.unwrap().new);
    // Hard bounces suppress at once; the fourth soft bounce does.
    store
        .suppress("email", "bob@example.nl", "hard_bounce", t)
        .await
        .unwrap();
    assert!(
        store
            .is_suppressed("email", "bob@example.nl")
            .await
            .unwrap()
    );
    for _ in 0..3 {
        assert!(
            !store
                .soft_bounce("email", "carl@example.nl", t)
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .soft_bounce("email", "carl@example.nl", t)
            .await
            .unwrap()
    );
    assert!(
        store
            .is_suppressed("email", "carl@example.nl")
            .await
            .unwrap()
    );
    // Links.
    store
        .set_links(&[("shop".into(), "https://shop.example/".into())], t)
        .await
        .unwrap();
    assert_eq!(
        store.link("shop").await.unwrap().as_deref(),
        Some("https://shop.example/")
    );
    assert_eq!(store.link("evil").await.unwrap(), None);
}
conformance!(
    responses,
    super::responses_keys_idempotency_preferences_and_stop
);

async fn admin_sessions_expire_end_and_end_with_a_new_password(store: &SqlStore) {
    let t = now();
    assert!(!store.has_admins().await.unwrap());
    store
        .set_admin_password("marketer", "$argon2id$first", t)
        .await
        .unwrap();
    assert!(store.has_admins().await.unwrap());
    let (id, hash) = store.admin_user("marketer").await.unwrap().unwrap();
    assert_eq!(hash, "$argon2id$first");
    assert!(store.admin_user("nobody").await.unwrap().is_none());
    let later = t.plus_seconds(3600);
    store
        .create_admin_session("h1", id, "csrf1", t, later)
        .await
        .unwrap();
    let s = store.admin_session("h1", t).await.unwrap().unwrap();
    assert_eq!(
        (s.user_id, s.username.as_str(), s.csrf.as_str()),
        (id, "marketer", "csrf1")
    );
    assert!(
        store.admin_session("h1", later).await.unwrap().is_none(),
        "expired"
    );
    assert!(store.admin_session("other", t).await.unwrap().is_none());
    store.delete_admin_session("h1").await.unwrap();
    assert!(
        store.admin_session("h1", t).await.unwrap().is_none(),
        "logged out"
    );
    // A new password replaces the hash and ends every session of that administrator.
    store
        .create_admin_session("h2", id, "csrf2", t, later)
        .await
        .unwrap();
    store
        .set_admin_password("marketer", "$argon2id$second", t)
        .await
        .unwrap();
    assert_eq!(
        store.admin_user("marketer").await.unwrap().unwrap().1,
        "$argon2id$second"
    );
    assert!(store.admin_session("h2", t).await.unwrap().is_none());
    assert_eq!(rows(store, "admin_users").await, 1);
}
conformance!(
    admin_sessions,
    super::admin_sessions_expire_end_and_end_with_a_new_password
);

/// Two order imports with overlapping customers at once (the second in reverse order) both
/// commit: imports are serialised instead of deadlocking.
async fn concurrent_imports_with_overlapping_customers_both_commit(store: &SqlStore) {
    let mut forward = String::from("order_id,customer_id,ordered_at,total\n");
    let mut backward = forward.clone();
    for i in 0..1500 {
        forward.push_str(&format!("F{i},C{},2024-05-01,10.00\n", i % 400));
        backward.push_str(&format!("B{i},C{},2024-05-02,12.50\n", 399 - i % 400));
    }
    let run = |name: &'static str, text: String| async move {
        let rows = winback_import::from_reader(
            SourceKind::Orders,
            std::sync::Arc::from(name),
            std::io::Cursor::new(text.into_bytes()),
            &crate::opts(),
            None,
        )
        .unwrap();
        let options = winback_store::ingest::IngestOptions {
            file: std::sync::Arc::from(name),
            mode: Mode::Strict,
            max_errors: 20,
            batch_rows: 300,
            now: now(),
        };
        winback_store::ingest::ingest(store, rows, &options, |_| {}, |_| {}).await
    };
    let (a, b) = tokio::join!(run("forward.csv", forward), run("backward.csv", backward));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.committed && b.committed, "{:?} {:?}", a.errors, b.errors);
    assert_eq!(crate::rows(store, "orders").await, 3000);
    assert_eq!(crate::rows(store, "customers").await, 400);
}
conformance!(
    concurrent_imports,
    super::concurrent_imports_with_overlapping_customers_both_commit
);

/// The schedule's job leases: of two workers one claims a due job; a finished job is not due
/// again until its next due time; a dead worker's lease frees the job when it ends.
async fn job_leases_hold_on_both_backends(store: &SqlStore) {
    let t = |s: &str| winback_domain::Timestamp::new(s.parse().unwrap());
    let (now, lease, due) = (
        t("2025-06-03T10:00:00Z"),
        t("2025-06-03T11:00:00Z"),
        t("2025-06-03T03:00:00Z"),
    );
    assert!(
        store
            .claim_job("score", "a", now, lease, due)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_job("score", "b", now, lease, due)
            .await
            .unwrap()
    );
    store.finish_job("score", "a", now, "{}").await.unwrap();
    assert!(
        !store
            .claim_job("score", "b", now, lease, due)
            .await
            .unwrap()
    );
    let next = t("2025-06-04T03:00:00Z");
    assert!(
        store
            .claim_job(
                "score",
                "a",
                t("2025-06-04T04:00:00Z"),
                t("2025-06-04T05:00:00Z"),
                next
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_job(
                "score",
                "b",
                t("2025-06-04T04:30:00Z"),
                t("2025-06-04T06:00:00Z"),
                next
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_job(
                "score",
                "b",
                t("2025-06-04T05:01:00Z"),
                t("2025-06-04T06:00:00Z"),
                next
            )
            .await
            .unwrap()
    );
    let jobs = store.jobs().await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].running_on.as_deref(), Some("b"));
    assert_eq!(jobs[0].runs, 1);
}
conformance!(job_leases, super::job_leases_hold_on_both_backends);

/// The named indexes of `events` (SQLite defers them during a first load and builds them
/// again before commit; PostgreSQL keeps them).
async fn events_indexes(store: &SqlStore) -> Vec<String> {
    let sql = match store.backend() {
        winback_store::db::Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL ORDER BY name"
        }
        winback_store::db::Backend::Postgres => {
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'events' \
             AND indexname IN ('events_customer_time', 'events_type_time') ORDER BY indexname"
        }
    };
    store
        .pool()
        .fetch(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect()
}

async fn a_first_events_load_leaves_the_store_indexed(store: &SqlStore) {
    let indexed = vec![
        "events_customer_time".to_owned(),
        "events_type_time".to_owned(),
    ];
    // A first load that fails half-way (strict; the good batches before the bad row were
    // written) leaves nothing, and the indexes as they were.
    let bad = format!(
        "{EVENTS}{{\"customer_id\":\"C1\",\"at\":\"yesterday\",\"type\":\"site_visited\"}}\n"
    );
    let r = import(store, SourceKind::Events, "bad.jsonl", &bad, Mode::Strict).await;
    assert!(!r.committed, "{r:?}");
    assert_eq!(rows(store, "events").await, 0);
    assert_eq!(events_indexes(store).await, indexed);
    // A first load with a repeated event: the repeat is still skipped, and the indexes are
    // there after commit, with every row in them.
    let repeated = format!("{EVENTS}{}\n", EVENTS.lines().next().unwrap());
    let r = import(
        store,
        SourceKind::Events,
        "events.jsonl",
        &repeated,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    assert_eq!((r.written.events, r.written.duplicate_events), (3, 1));
    assert_eq!(events_indexes(store).await, indexed);
    let by_index = store
        .pool()
        .fetch(
            "SELECT COUNT(*) FROM events WHERE type IN ('email_opened', 'email_unsubscribed', 'site_visited') AND occurred_at > 0",
            &[],
        )
        .await
        .unwrap()[0]
        .i64(0)
        .unwrap();
    assert_eq!(by_index, 3);
    // A later load goes into the indexed table as it is.
    let more = "{\"event_id\":\"e9\",\"customer_id\":\"C2\",\"at\":\"2024-03-09T10:00:00Z\",\"type\":\"site_visited\"}\n";
    let r = import(store, SourceKind::Events, "more.jsonl", more, Mode::Strict).await;
    assert!(r.committed && r.written.events == 1, "{r:?}");
    assert_eq!(events_indexes(store).await, indexed);
}
conformance!(
    first_events_load_indexes,
    super::a_first_events_load_leaves_the_store_indexed
);

/// Opens, clicks, visits, complaints, referrals, points, answers and subscription changes of
/// two profiles (Anna's across her two records), with machine opens told by flag and by agent.
const SIGNAL_EVENTS: &str = r#"{"customer_id":"C1","at":"2024-05-01T10:00:00Z","type":"email_opened","machine":true}
{"customer_id":"C1","at":"2024-05-02T10:00:00Z","type":"email_opened","user_agent":"Mozilla/5.0"}
{"customer_id":"C1","at":"2024-04-02T10:00:00Z","type":"email_opened","user_agent":"Mozilla/5.0 (iPhone) Mobile"}
{"customer_id":"C2","at":"2024-04-20T10:00:00Z","type":"email_opened","machine":false,"user_agent":"Mozilla/5.0"}
{"customer_id":"C1","at":"2024-03-20T10:00:00Z","type":"email_opened"}
{"customer_id":"C1","at":"2024-04-03T10:00:00Z","type":"email_clicked","url":"https://shop.example/a"}
{"customer_id":"C2","at":"2024-04-05T10:00:00Z","type":"email_clicked"}
{"customer_id":"C1","at":"2024-04-06T10:00:00Z","type":"complaint_opened"}
{"customer_id":"C2","at":"2024-04-07T10:00:00Z","type":"complaint_opened"}
{"customer_id":"C1","at":"2024-04-08T10:00:00Z","type":"complaint_resolved","satisfied":true}
{"customer_id":"C1","at":"2024-04-09T10:00:00Z","type":"complaint_resolved","satisfied":false}
{"customer_id":"C1","at":"2024-04-10T10:00:00Z","type":"referral_made"}
{"customer_id":"C1","at":"2024-04-11T10:00:00Z","type":"referral_made"}
{"customer_id":"C2","at":"2024-04-12T10:00:00Z","type":"referral_made"}
{"customer_id":"C1","at":"2024-04-13T10:00:00Z","type":"loyalty_points_changed","delta":50,"balance":150}
{"customer_id":"C1","at":"2024-01-13T10:00:00Z","type":"loyalty_points_changed","delta":30}
{"customer_id":"C2","at":"2024-05-13T10:00:00Z","type":"loyalty_points_changed","delta":-20,"balance":130}
{"customer_id":"C1","at":"2024-04-14T10:00:00Z","type":"survey_answered","reason":"too_expensive"}
{"customer_id":"C2","at":"2024-04-15T10:00:00Z","type":"survey_answered","reason":"quality"}
{"customer_id":"C1","at":"2024-04-16T10:00:00Z","type":"subscription_started"}
{"customer_id":"C1","at":"2024-04-17T10:00:00Z","type":"subscription_cancelled","reason":"forgot_us"}
{"customer_id":"C1","at":"2024-04-18T10:00:00Z","type":"email_complained"}
{"customer_id":"C2","at":"2024-04-19T10:00:00Z","type":"email_complained"}
{"customer_id":"C3","at":"2024-04-21T10:00:00Z","type":"logged_in"}
{"customer_id":"C3","at":"2024-04-22T10:00:00Z","type":"site_visited"}
{"customer_id":"C3","at":"2024-04-23T10:00:00Z","type":"cart_abandoned","value_minor":2500,"currency":"EUR"}
{"customer_id":"C3","at":"2024-04-24T10:00:00Z","type":"quote_requested"}
{"customer_id":"C3","at":"2024-04-25T10:00:00Z","type":"email_opened","user_agent":"GoogleImageProxy"}
{"customer_id":"C3","at":"2024-04-26T10:00:00Z","type":"email_unsubscribed"}
"#;

/// The facts scan reads events through its own type filter and payload rules (and may one day
/// read them grouped): every feature must come out as from every stored event read and
/// classified one by one.
async fn scanned_signals_give_the_features_of_every_event(store: &SqlStore) {
    load_and_resolve(store).await;
    let r = import(
        store,
        SourceKind::Events,
        "signals.jsonl",
        SIGNAL_EVENTS,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    let set = store.profile_facts(FactScope::All).await.unwrap();
    // Each stored event, read and classified on its own.
    let mut reference: std::collections::HashMap<i64, Vec<winback_domain::SignalFact>> =
        std::collections::HashMap::new();
    for row in store
        .pool()
        .fetch(
            "SELECT COALESCE(c.profile_id, c.id), e.occurred_at, e.payload FROM events e JOIN customers c ON c.id = e.customer_id",
            &[],
        )
        .await
        .unwrap()
    {
        let kind: winback_domain::EventKind = serde_json::from_str(&row.text(2).unwrap()).unwrap();
        if let Some(signal) = winback_domain::Signal::of(&kind) {
            reference
                .entry(row.i64(0).unwrap())
                .or_default()
                .push(winback_domain::SignalFact {
                    at: winback_domain::Timestamp::from_micros(row.i64(1).unwrap()).unwrap(),
                    signal,
                });
        }
    }
    let mut compared = 0;
    for p in &set.profiles {
        let mut one_by_one = p.clone();
        one_by_one.signals = reference.remove(&p.profile_id).unwrap_or_default();
        one_by_one.signals.sort_by_key(|s| s.at);
        let got = winback_scoring::features_of(p, &set.categories, now());
        let want = winback_scoring::features_of(&one_by_one, &set.categories, now());
        assert_eq!(got, want, "profile {}", p.external_id);
        compared += usize::from(!one_by_one.signals.is_empty());
    }
    assert!(
        reference.is_empty(),
        "every profile with events was scanned"
    );
    assert_eq!(compared, 2, "Anna's and Bob's signals were compared");
    // And they are not empty: machine and human opens told apart, counts counted.
    let anna = set.profiles.iter().find(|p| p.external_id == "C1").unwrap();
    let f = winback_scoring::features_of(anna, &set.categories, now());
    assert_eq!(
        (f.complaints_opened, f.referrals, f.spam_complaints),
        (2, 3, 2)
    );
    assert_eq!(
        f.last_machine_open_at.unwrap().to_string(),
        "2024-05-02T10:00:00Z"
    );
    assert_eq!(
        f.last_human_open_at.unwrap().to_string(),
        "2024-04-20T10:00:00Z"
    );
}
conformance!(
    scanned_signals,
    super::scanned_signals_give_the_features_of_every_event
);
