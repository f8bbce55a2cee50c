//! The list hygiene's counts are exact: after random sequences of customer imports (new
//! addresses, removed ones, other sign-up dates, look-alike characters), clicks and opens,
//! profile merges and splits, erasures and refreshes, on both backends, the report equals a
//! recomputation from every customer record (the scan the report made before migration 17),
//! at several dates; and after a refresh nothing is left marked.

use winback_domain::{ProfileId, Timestamp};
use winback_import::SourceKind;
use winback_store::{SqlStore, ingest::Mode, privacy::Hygiene};

use crate::{Rng, conformance, import};

const DAY: i64 = 86_400_000_000;
const CUSTOMERS: u64 = 12;

fn day(d: i64) -> String {
    Timestamp::from_micros(crate::now().as_micros() + d * DAY)
        .unwrap()
        .to_string()
}

/// The hygiene's per-record counts as the report computed them from a scan of every customer
/// record before migration 17: the definition the kept rows are checked against.
async fn recomputed(store: &SqlStore, now: Timestamp) -> Hygiene {
    let mut h = Hygiene::default();
    let mut seen: std::collections::BTreeMap<i64, (Option<i64>, Option<i64>)> = Default::default();
    for r in store
        .pool()
        .fetch(
            "SELECT id, profile_id, erased_at, COALESCE(created_at, inserted_at) AS seen, last_engaged_at, email \
             FROM customers ORDER BY id",
            &[],
        )
        .await
        .unwrap()
    {
        let (id, profile_id) = (r.i64("id").unwrap(), r.opt_i64("profile_id").unwrap());
        let profile = profile_id.unwrap_or(id);
        if r.opt_i64("erased_at").unwrap().is_some() {
            h.erased_profiles += u64::from(profile == id);
            continue;
        }
        h.duplicates_merged += u64::from(profile != id);
        let slot = seen.entry(profile).or_default();
        if let Some(at) = r.opt_i64("last_engaged_at").unwrap() {
            slot.1 = slot.1.max(Some(at));
        }
        if let Some(e) = r.opt_text("email").unwrap() {
            slot.0 = slot.0.max(Some(r.i64("seen").unwrap()));
            if winback_store::privacy::is_look_alike(&e) {
                h.look_alike_addresses += 1;
                if h.look_alike_examples.len() < 10 {
                    h.look_alike_examples.push(e);
                }
            }
        }
    }
    for (seen, engaged) in seen.into_values() {
        let Some(seen) = seen else { continue };
        let at = engaged.map_or(seen, |e| seen.max(e));
        h.addresses += 1;
        h.never_engaged += u64::from(engaged.is_none());
        let idle = (now.as_micros() - at) / DAY;
        h.idle_6m += u64::from(idle >= 182);
        h.idle_12m += u64::from(idle >= 365);
        h.idle_24m += u64::from(idle >= 730);
    }
    h
}

/// The report's figures that the scan computed, the rest taken from the report itself.
async fn assert_exact(store: &SqlStore, seed: u64, round: u32) {
    for days in [0, 150, 200, 400, 800] {
        let now = Timestamp::from_micros(crate::now().as_micros() + days * DAY).unwrap();
        let read = store.hygiene(now).await.unwrap();
        let want = Hygiene {
            hard_bounces: read.hard_bounces,
            soft_bounce_suppressions: read.soft_bounce_suppressions,
            complaints: read.complaints,
            emails_sent: read.emails_sent,
            complaint_rate: read.complaint_rate,
            sunset: read.sunset,
            erased_identities: read.erased_identities,
            suppressions: read.suppressions.clone(),
            ..recomputed(store, now).await
        };
        assert_eq!(read, want, "seed {seed}, round {round}, {days} days on");
    }
}

/// Imports `text` through the real import (customers, or events as JSON lines); it must
/// commit.
async fn load(store: &SqlStore, kind: SourceKind, text: &str, mode: Mode) {
    let name = match kind {
        SourceKind::Events => "events.jsonl",
        _ => "customers.csv",
    };
    let r = import(store, kind, name, text, mode).await;
    assert!(r.committed, "{name}: {:?}", r.errors);
}

/// Re-imports some customers (numeric ids, as shops export them): an address added, changed,
/// written with a Cyrillic `а`, or removed, and another sign-up date.
async fn customers(store: &SqlStore, rng: &mut Rng) {
    let mut csv = String::from("customer_id,email,created_at\n");
    for _ in 0..1 + rng.below(3) {
        let id = 1 + rng.below(CUSTOMERS + 2); // sometimes a new customer
        let email = match rng.below(5) {
            0 => String::new(),
            1 => format!("p\u{0430}ypal{id}@example.com"),
            _ => format!("c{id}.{}@example.nl", rng.below(3)),
        };
        let created = if rng.below(3) == 0 {
            String::new()
        } else {
            day(-(rng.below(900) as i64))
        };
        csv.push_str(&format!("{id},{email},{created}\n"));
    }
    load(store, SourceKind::Customers, &csv, Mode::SkipInvalid).await;
}

/// Clicks and opens (human and machine) at random dates, some before the last one stored.
async fn events(store: &SqlStore, rng: &mut Rng, next: &mut u64) {
    let mut lines = String::new();
    for _ in 0..1 + rng.below(4) {
        *next += 1;
        let kind = match rng.below(3) {
            0 => r#""type":"email_clicked""#,
            1 => r#""type":"email_opened","user_agent":"Mozilla/5.0""#,
            _ => r#""type":"email_opened","machine":true"#,
        };
        lines.push_str(&format!(
            "{{\"event_id\":\"h{next}\",\"customer_id\":\"{}\",\"at\":\"{}\",{kind}}}\n",
            1 + rng.below(CUSTOMERS),
            day(-(rng.below(900) as i64)),
        ));
    }
    load(store, SourceKind::Events, &lines, Mode::SkipInvalid).await;
}

async fn erase(store: &SqlStore, rng: &mut Rng) {
    let ids = crate::outcomes::customer_ids(store).await;
    let profile = ids[rng.below(ids.len() as u64) as usize];
    let run = store
        .begin_privacy_run("erasure", false, &serde_json::json!({}), crate::now())
        .await
        .unwrap();
    store
        .erase_profile(ProfileId::new(profile), run, "test", None, crate::now())
        .await
        .unwrap();
}

async fn hygiene_counts_equal_a_recomputation(store: &SqlStore) {
    let mut csv = String::from("customer_id,email,created_at\n");
    for id in 1..=CUSTOMERS {
        let email = if id % 4 == 0 {
            String::new()
        } else {
            format!("c{id}@example.nl")
        };
        csv.push_str(&format!("{id},{email},{}\n", day(-(id as i64) * 70)));
    }
    load(store, SourceKind::Customers, &csv, Mode::Strict).await;
    assert_exact(store, 0, 0).await;
    let mut next_event = 0;
    for seed in 1..=3u64 {
        let mut rng = Rng(seed);
        for round in 0..8 {
            for _ in 0..5 {
                match rng.below(12) {
                    0..=3 => customers(store, &mut rng).await,
                    4..=7 => events(store, &mut rng, &mut next_event).await,
                    8 | 9 => crate::outcomes::resolve(store, &mut rng).await,
                    10 => erase(store, &mut rng).await,
                    _ => {
                        store.refresh_hygiene().await.unwrap();
                    }
                }
            }
            if rng.below(2) == 0 {
                store.refresh_hygiene().await.unwrap();
            }
            assert_exact(store, seed, round).await;
        }
    }
    // A refresh leaves nothing marked and a row for each profile with an address; a second
    // finds nothing to do.
    store.refresh_hygiene().await.unwrap();
    assert_eq!(crate::rows(store, "hygiene_dirty").await, 0);
    let h = store.hygiene(crate::now()).await.unwrap();
    assert_eq!(
        crate::rows(store, "profile_hygiene").await,
        h.addresses as i64
    );
    assert_eq!(store.refresh_hygiene().await.unwrap(), 0);
    assert_exact(store, 0, 99).await;
}
conformance!(
    hygiene_counts_are_exact,
    super::hygiene_counts_equal_a_recomputation
);

/// PostgreSQL: a refresh never clears a mark it could not see through. A writer changes a
/// profile that is already marked and has not committed (its mark inserted nothing and locked
/// no row); a refresh meanwhile waits for the mark table, gives up after half a second, and
/// leaves the mark, so once the writer commits the report counts the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_waits_for_a_writer_holding_marks() {
    let Some(db) = crate::TestDb::postgres("hygiene_refresh_waits").await else {
        return;
    };
    let store = &db.store;
    let csv = format!(
        "customer_id,email,created_at\n1,a@example.nl,{}\n",
        day(-700)
    );
    load(store, SourceKind::Customers, &csv, Mode::Strict).await;
    store.refresh_hygiene().await.unwrap();
    // Marked again (an address seen anew) and not refreshed.
    store
        .pool()
        .execute("UPDATE customers SET created_at = created_at + 1", &[])
        .await
        .unwrap();
    assert_eq!(crate::rows(store, "hygiene_dirty").await, 1);
    // The writer: a click today, not yet committed.
    let mut tx = store.pool().begin().await.unwrap();
    tx.execute(
        "UPDATE customers SET last_engaged_at = $1",
        &[winback_store::db::Val::from(crate::now().as_micros())],
    )
    .await
    .unwrap();
    assert_eq!(store.refresh_hygiene().await.unwrap(), 0, "gave up");
    tx.commit().await.unwrap();
    let h = store.hygiene(crate::now()).await.unwrap();
    assert_eq!((h.addresses, h.idle_6m), (1, 0), "the click counts: {h:?}");
    store.refresh_hygiene().await.unwrap();
    let h = store.hygiene(crate::now()).await.unwrap();
    assert_eq!((h.addresses, h.idle_6m), (1, 0), "{h:?}");
    db.finish().await;
}
