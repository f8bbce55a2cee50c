//! A scoring run saved a page at a time (how a million-profile base is scored in bounded
//! memory) scores every profile exactly as the whole base scored in memory, records stage
//! changes against what was stored, drops the scores and features of profiles merged away, and
//! shows readers only finished runs' segment moves.

use winback_app::scoring::{
    Facts, Scored, Settings, compute_features, labels, score, score_and_save_in_pages,
};
use winback_domain::Timestamp;
use winback_identity::IdentityRules;
use winback_import::SourceKind;
use winback_store::{FactScope, SqlStore};

use super::{import, ts};

/// 80 customers with different rhythms, spends and categories, and 5 second records of the same
/// people (their email in other case), which resolution merges into the first.
async fn load(store: &SqlStore, now: Timestamp) {
    let mut customers = String::from("customer_id,email,first_name,phone,email_consent\n");
    let mut orders = String::from("order_id,customer_id,ordered_at,total,category\n");
    let start = ts("2023-01-01T10:00:00Z");
    for i in 1..=80i64 {
        let phone = if i == 21 { "+31612345021" } else { "" };
        customers.push_str(&format!("C{i},klant{i}@example.nl,Klant{i},{phone},yes\n"));
        let gap = 7 + (i * 13) % 90;
        let category = ["books", "toys", ""][(i % 3) as usize];
        for k in 0..(i % 6) {
            let at = start.plus_seconds((i + k * gap) * 86_400);
            let total = 10 + (i * 37 + k * 11) % 200;
            orders.push_str(&format!(
                "O{i}-{k},C{i},{},{total}.50,{category}\n",
                at.jiff()
            ));
        }
    }
    for i in 1..=5 {
        customers.push_str(&format!("D{i},KLANT{i}@Example.nl,Klant{i},,yes\n"));
        orders.push_str(&format!(
            "OD{i},D{i},2025-0{i}-15T09:00:00Z,{}.00,books\n",
            40 + i
        ));
    }
    import(store, SourceKind::Customers, &customers, now).await;
    import(store, SourceKind::Orders, &orders, now).await;
    winback_app::ingest::resolve(store, &IdentityRules::default(), now)
        .await
        .unwrap();
}

/// The whole base scored in memory, as a small shop could.
async fn in_memory(store: &SqlStore, now: Timestamp) -> Vec<Scored> {
    let facts = store.profile_facts(FactScope::All).await.unwrap();
    let features = compute_features(&facts, now);
    score(&labels(&facts), &features, &Settings::default())
        .unwrap()
        .0
}

async fn count(store: &SqlStore, table: &str) -> i64 {
    store
        .pool()
        .fetch(&format!("SELECT COUNT(*) FROM {table}"), &[])
        .await
        .unwrap()[0]
        .i64(0)
        .unwrap()
}

#[tokio::test]
async fn a_run_saved_a_page_at_a_time_scores_every_profile_as_the_whole_base_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let now = ts("2025-06-01T12:00:00Z");
    load(&store, now).await;
    let expected = in_memory(&store, now).await;
    assert_eq!(expected.len(), 80, "the 5 second records are merged");

    let settings = Settings::default();
    let mut seen = Vec::new();
    let outcome = score_and_save_in_pages(&store, now, &settings, Facts::All, 7, 4, |s| {
        seen.push(s.clone());
    })
    .await
    .unwrap();
    // To the bit: features read back from the store are the ones computed (floats included).
    assert_eq!(
        serde_json::to_value(&seen).unwrap(),
        serde_json::to_value(&expected).unwrap(),
        "pages of 7 score every profile as the whole base does"
    );
    assert!(
        outcome.models.purchase.is_some(),
        "the model was fitted: {:?}",
        outcome.models.purchase_error
    );

    let summary = &outcome.summary;
    assert_eq!(summary.profiles, 80);
    for (stage, n) in &summary.stages {
        assert_eq!(
            *n,
            expected.iter().filter(|s| s.stage == *stage).count(),
            "{stage:?}"
        );
    }
    let priority = |s: &Scored| s.priority.as_ref().map(|p| p.priority_minor);
    let mut ranked: Vec<&Scored> = expected.iter().filter(|s| priority(s).is_some()).collect();
    ranked.sort_by(|a, b| priority(b).unwrap().total_cmp(&priority(a).unwrap()));
    let want: Vec<i64> = ranked.iter().take(4).map(|s| s.profile_id.get()).collect();
    let got: Vec<i64> = summary.top.iter().map(|s| s.profile_id.get()).collect();
    assert!(!want.is_empty(), "some customers are worth winning back");
    assert_eq!(got, want, "the top 4 by priority, ties in profile order");

    assert_eq!(outcome.stats.profiles, 80);
    assert_eq!(
        outcome.stats.stage_changes, 80,
        "a first run is a change from nothing for everyone"
    );
    assert_eq!(count(&store, "profile_scores").await, 80);
    assert_eq!(count(&store, "profile_features").await, 80);
    for s in &expected {
        let row = store.latest_score(s.profile_id).await.unwrap().unwrap();
        assert_eq!(
            (row.stage.as_str(), row.segment.as_deref()),
            (s.stage.as_str(), s.segment.map(|g| g.as_str())),
            "{}",
            s.external_id
        );
    }
    let first_moves = store.segment_migration().await.unwrap();
    assert!(first_moves.is_empty(), "no run before the first");

    // Four months on, ten customers have ordered again, and a new record joins two profiles
    // (C20's email, C21's phone).
    let later = now.plus_seconds(120 * 86_400);
    let mut orders = String::from("order_id,customer_id,ordered_at,total\n");
    for i in 30..40 {
        orders.push_str(&format!(
            "N{i},C{i},{},35.00\n",
            later.plus_seconds(-5 * 86_400).jiff()
        ));
    }
    import(&store, SourceKind::Orders, &orders, later).await;
    import(
        &store,
        SourceKind::Customers,
        "customer_id,email,first_name,phone,email_consent\nX1,klant20@example.nl,Klant20,+31612345021,yes\n",
        later,
    )
    .await;
    winback_app::ingest::resolve(&store, &IdentityRules::default(), later)
        .await
        .unwrap();
    let expected_later = in_memory(&store, later).await;
    assert_eq!(expected_later.len(), 79);
    // The nightly run reads only what changed (and a seventh of the base by turns) and
    // re-derives the rest: to the bit what reading every profile's facts gives.
    let mut seen_later = Vec::new();
    let second = score_and_save_in_pages(&store, later, &settings, Facts::Changed, 5, 0, |s| {
        seen_later.push(s.clone());
    })
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(&seen_later).unwrap(),
        serde_json::to_value(&expected_later).unwrap(),
        "the nightly run scores every profile as a whole scan does"
    );
    // 79 profiles: the 10 who ordered and the joined ones are read, a seventh by turns, and
    // the rest re-derived.
    assert!(
        (40..69).contains(&second.rederived),
        "{} re-derived",
        second.rederived
    );
    assert!(
        second.summary.top.is_empty(),
        "nothing kept when asked for none"
    );
    let before: std::collections::HashMap<i64, &str> = expected
        .iter()
        .map(|s| (s.profile_id.get(), s.stage.as_str()))
        .collect();
    let moved = expected_later
        .iter()
        .filter(|s| before.get(&s.profile_id.get()) != Some(&s.stage.as_str()))
        .count();
    assert!(moved >= 10, "new orders move customers: {moved}");
    assert_eq!(second.stats.stage_changes, moved as u64);
    assert_eq!(
        count(&store, "profile_scores").await,
        79,
        "the profile merged away has no score left"
    );
    assert_eq!(count(&store, "profile_features").await, 79);
    let moves = store.segment_migration().await.unwrap();
    let buyers_in_both = expected_later
        .iter()
        .filter(|s| {
            s.segment.is_some()
                && expected
                    .iter()
                    .any(|e| e.profile_id == s.profile_id && e.segment.is_some())
        })
        .count() as i64;
    assert_eq!(moves.iter().map(|m| m.2).sum::<i64>(), buyers_in_both);

    // A run that has begun but not finished (a crash, or still running) changes no reader's
    // "latest run".
    let mut unfinished = store
        .begin_score_run(later.plus_seconds(86_400), &serde_json::json!({}))
        .await
        .unwrap();
    let mut row = store
        .latest_score(expected_later[0].profile_id)
        .await
        .unwrap()
        .unwrap();
    row.segment = Some("lost".into());
    store.write_scores(&mut unfinished, &[row]).await.unwrap();
    assert_eq!(store.segment_migration().await.unwrap(), moves);
}
