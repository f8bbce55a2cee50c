//! The enrolments' stored outcomes are exact: after random sequences of order imports (numeric
//! customer and order ids, as shops export them), refunds,
//! orders moved to another customer, profile merges and splits, new enrolments, contacts moving
//! to another address and language, changed conversion windows and refreshes (some naming only
//! part of the campaigns), on both backends, every campaign's arms, per locale and per mailbox
//! provider, equal a recomputation from the orders, each contact counted in the segments it
//! entered with; and after a full refresh nothing is left to compute on reading.

use std::collections::BTreeMap;

use winback_domain::{CampaignId, CustomerId, Timestamp};
use winback_identity::Resolution;
use winback_import::SourceKind;
use winback_store::{Outcomes, Segment, SqlStore, db::Val, ingest::Mode};

use crate::{Rng, conformance, import};

const DAY: i64 = 86_400;
const CUSTOMERS: usize = 12;

/// A day of June–July 2024 as an ISO timestamp.
fn day(d: u64) -> String {
    Timestamp::from_micros(crate::now().as_micros() + d as i64 * DAY * 1_000_000)
        .unwrap()
        .to_string()
}

pub async fn customer_ids(store: &SqlStore) -> Vec<i64> {
    store
        .pool()
        .fetch("SELECT id FROM customers ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.i64(0).unwrap())
        .collect()
}

/// Imports orders through the real import (as every order is stored): some new, some an
/// earlier order again with another status or another customer.
async fn orders(store: &SqlStore, rng: &mut Rng, next_order: &mut u64) {
    let mut csv = String::from("order_id,customer_id,ordered_at,total,currency,status\n");
    for _ in 0..1 + rng.below(4) {
        let id = if *next_order > 0 && rng.below(3) == 0 {
            rng.below(*next_order) // an earlier order changed
        } else {
            *next_order += 1;
            *next_order - 1
        };
        let status = ["paid", "paid", "paid", "refunded", "cancelled"][rng.below(5) as usize];
        csv.push_str(&format!(
            "{id},{},{},{}.{:02},EUR,{status}\n",
            1 + rng.below(CUSTOMERS as u64),
            day(rng.below(60)),
            5 + rng.below(200),
            rng.below(100)
        ));
    }
    let r = import(store, SourceKind::Orders, "orders.csv", &csv, Mode::Strict).await;
    assert!(r.committed, "{:?}", r.errors);
}

/// Groups the customers into random profiles (each record's profile is its group's smallest
/// id), as identity resolution stores them: merges and splits.
pub async fn resolve(store: &SqlStore, rng: &mut Rng) {
    let ids = customer_ids(store).await;
    let groups = 1 + rng.below(ids.len() as u64);
    let mut group_of: Vec<(i64, u64)> = ids.iter().map(|&id| (id, rng.below(groups))).collect();
    group_of.sort_unstable();
    let profile_of = group_of
        .iter()
        .map(|&(id, g)| {
            let root = group_of.iter().find(|(_, h)| *h == g).unwrap().0;
            (CustomerId::new(id), CustomerId::new(root))
        })
        .collect();
    let resolution = Resolution {
        profile_of,
        links: Vec::new(),
        skipped: Vec::new(),
        held_apart: Vec::new(),
    };
    store
        .save_resolution(&resolution, crate::now())
        .await
        .unwrap();
}

/// Enrolments per (segment, held out, variant).
type Groups = BTreeMap<(String, bool, String), i64>;

/// What the test knows of an enrolment: its campaign, arm, entry, and its contact's locale and
/// address as it entered.
struct Entry {
    campaign: i64,
    variant: String,
    holdout: bool,
    entered_at: i64,
    locale: Option<String>,
    email: Option<String>,
}

/// Enrols a random record through the store's own enrolment, as the scheduler does.
async fn enrol(store: &SqlStore, rng: &mut Rng, n: u64, entries: &mut Vec<Entry>) {
    use winback_engine::JourneyStore;
    use winback_engine::journey::Admission;
    use winback_engine::ports::Candidate;
    let ids = customer_ids(store).await;
    let profile = ids[rng.below(ids.len() as u64) as usize];
    let campaign = 1 + rng.below(3) as i64;
    let variant = ["a", "b"][rng.below(2) as usize].to_owned();
    let holdout = rng.below(4) == 3;
    let at =
        Timestamp::from_micros(crate::now().as_micros() + rng.below(50) as i64 * DAY * 1_000_000)
            .unwrap();
    let now = store
        .pool()
        .fetch(
            "SELECT locale, email FROM customers WHERE id = $1",
            &[Val::from(profile)],
        )
        .await
        .unwrap();
    let candidate = Candidate {
        profile_id: winback_domain::ProfileId::new(profile),
        trigger_key: format!("t{n}"),
        start: at,
    };
    let v = variant.clone();
    let (entered, held) = store
        .enrol(
            CampaignId::new(campaign),
            1,
            false,
            &[candidate],
            at,
            &move |_, _| Admission::Enter {
                variant: v.clone(),
                holdout,
                first_due: at,
            },
        )
        .await
        .unwrap();
    assert_eq!(entered + held, 1);
    entries.push(Entry {
        campaign,
        variant,
        holdout,
        entered_at: at.as_micros(),
        locale: now[0].opt_text("locale").unwrap(),
        email: now[0].opt_text("email").unwrap(),
    });
}

/// A customer moves to another address and language after some of its enrolments.
async fn moves(store: &SqlStore, rng: &mut Rng, n: u64) {
    let i = 1 + rng.below(CUSTOMERS as u64);
    let domain = ["outlook.com", "wp.pl", "Example.ORG"][rng.below(3) as usize];
    let locale = ["pl", "en", ""][rng.below(3) as usize];
    let csv = format!(
        "customer_id,email,locale\n{},moved{n}@{domain},{locale}\n",
        CUSTOMERS as u64 + 1 - i
    );
    let r = import(
        store,
        SourceKind::Customers,
        "customers.csv",
        &csv,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
}

/// Every campaign's arms (and by locale and provider) read as reports read them equal the
/// recomputation, for the windows in use and another one, over the whole time and a part.
async fn assert_exact(
    store: &SqlStore,
    windows: &[(CampaignId, i64)],
    entries: &[Entry],
    seed: u64,
    round: u32,
) {
    let (start, mid, end) = (
        Timestamp::EPOCH,
        Timestamp::from_micros(crate::now().as_micros() + 20 * DAY * 1_000_000).unwrap(),
        Timestamp::from_micros(4_102_444_800_000_000).unwrap(),
    );
    for &(campaign, window) in windows {
        for w in [window, 7 * DAY] {
            for (from, until) in [(start, end), (mid, end)] {
                let by = [Segment::Locale, Segment::Provider];
                let arms =
                    |outcomes| store.campaign_arms(campaign, w, (from, until), &by, outcomes);
                let read = arms(Outcomes::StoredWhereExact).await.unwrap();
                let recomputed = arms(Outcomes::Recomputed).await.unwrap();
                assert_eq!(
                    read, recomputed,
                    "seed {seed}, round {round}: campaign {campaign:?}, window {w} s, from {from}"
                );
                // Each contact counts under its locale and its address's mailbox provider as
                // it entered, whatever its record says now.
                let (mut want, mut want_locale): (Groups, Groups) = Default::default();
                for e in entries.iter().filter(|e| {
                    e.campaign == campaign.get()
                        && e.entered_at >= from.as_micros()
                        && e.entered_at < until.as_micros()
                }) {
                    let provider = e.email.as_deref().map_or_else(
                        || "none".to_owned(),
                        winback_engine::policy::mailbox_provider,
                    );
                    let locale = e.locale.clone().unwrap_or_else(|| "default".into());
                    *want
                        .entry((provider, e.holdout, e.variant.clone()))
                        .or_default() += 1;
                    *want_locale
                        .entry((locale, e.holdout, e.variant.clone()))
                        .or_default() += 1;
                }
                let groups = |segments: &[(String, winback_store::ArmResult)]| -> Groups {
                    segments
                        .iter()
                        .map(|(p, a)| ((p.clone(), a.holdout, a.variant.clone()), a.enrolled))
                        .collect()
                };
                assert_eq!(
                    groups(&read.1[0]),
                    want_locale,
                    "seed {seed}, round {round}: locales"
                );
                let got = groups(&read.1[1]);
                assert_eq!(got, want, "seed {seed}, round {round}: providers");
            }
        }
    }
}

async fn stored_outcomes_equal_a_recomputation(store: &SqlStore) {
    let mut customers = String::from("customer_id,email,locale\n");
    for (i, domain) in (1..=CUSTOMERS).zip(["gmail.com", "Hotmail.NL", "kpn.nl"].iter().cycle()) {
        let locale = ["nl", "de", ""][i % 3];
        // Numeric ids, as most shops export them, numbered against the store's own row ids
        // (the shop's customer 1 is the store's last record).
        let id = CUSTOMERS + 1 - i;
        customers.push_str(&format!("{id},c{i}@{domain},{locale}\n"));
    }
    let r = import(
        store,
        SourceKind::Customers,
        "customers.csv",
        &customers,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    crate::campaign_rows(store, 3).await;
    let campaign = CampaignId::new;
    let mut windows = vec![
        (campaign(1), 10 * DAY),
        (campaign(2), 30 * DAY),
        (campaign(3), 60 * DAY),
    ];
    let (mut next_order, mut enrolled) = (0u64, 0u64);
    let mut entries = Vec::new();
    for seed in 1..=3u64 {
        let mut rng = Rng(seed);
        for round in 0..8 {
            for _ in 0..6 {
                match rng.below(11) {
                    0..=3 => orders(store, &mut rng, &mut next_order).await,
                    4 => resolve(store, &mut rng).await,
                    5 => moves(store, &mut rng, enrolled).await,
                    _ => {
                        enrol(store, &mut rng, enrolled, &mut entries).await;
                        enrolled += 1;
                    }
                }
            }
            match rng.below(4) {
                0 => {}
                1 => {
                    // A refresh that knows only some campaigns (one no longer parses).
                    let some = &windows[..rng.below(3) as usize];
                    store.refresh_outcomes(some).await.unwrap();
                }
                2 => {
                    // A campaign's conversion window changed on re-apply.
                    let i = rng.below(3) as usize;
                    windows[i].1 = (5 + rng.below(40) as i64) * DAY;
                    store.refresh_outcomes(&windows).await.unwrap();
                }
                _ => {
                    store.refresh_outcomes(&windows).await.unwrap();
                }
            }
            assert_exact(store, &windows, &entries, seed, round).await;
        }
    }
    // A full refresh leaves nothing marked and every enrolment's outcome stored, for the
    // windows in use; the figures read are still the recomputed ones.
    store.refresh_outcomes(&windows).await.unwrap();
    assert_eq!(crate::rows(store, "outcome_dirty").await, 0);
    let unstored = store
        .pool()
        .fetch(
            "SELECT COUNT(*) FROM enrolments WHERE outcome_window IS NULL",
            &[],
        )
        .await
        .unwrap()[0]
        .i64(0)
        .unwrap();
    assert_eq!(unstored, 0);
    assert!(enrolled > 20 && next_order > 20, "{enrolled} {next_order}");
    assert_exact(store, &windows, &entries, 0, 99).await;
    // Nothing changed: a second refresh recomputes nothing.
    assert_eq!(store.refresh_outcomes(&windows).await.unwrap(), 0);
}

conformance!(outcomes_exact, super::stored_outcomes_equal_a_recomputation);
