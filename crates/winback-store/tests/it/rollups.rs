//! The message rollups are exact: after random sequences of message writes, state changes,
//! engagement events (through the import session, as every event is stored), survey answers,
//! deletions and folds, on both backends, every funnel, state count and drop reason equals a
//! full recomputation from the messages and events themselves.

use std::collections::{BTreeMap, HashMap};

use winback_domain::{BounceKind, CampaignId, EventKind, EventRecord, ExternalId, Timestamp};
use winback_store::{MessageFunnel, SqlStore, db::Val};

use crate::{Rng, conformance};

const DAY: i64 = 86_400_000_000;

const STATES: [&str; 8] = [
    "pending",
    "claimed",
    "sending",
    "sent",
    "failed",
    "dropped",
    "cancelled",
    "in_doubt",
];
const OUTCOMES: [&str; 7] = [
    "",
    "hard_bounce",
    "soft_bounce",
    "no_consent",
    "journey_ended:exit",
    "cap",
    "accepted",
];
const PROVIDERS: [&str; 4] = ["", "gmail", "outlook", "kpn"];

/// Every funnel of every campaign, keyed for comparison (the order rows come back in is not
/// part of the answer).
fn keyed(
    all: HashMap<CampaignId, Vec<MessageFunnel>>,
) -> BTreeMap<(i64, String, String, String, String, String), String> {
    let mut out = BTreeMap::new();
    for (id, funnels) in all {
        for f in funnels {
            out.insert(
                (
                    id.get(),
                    f.step.clone(),
                    f.variant.clone(),
                    f.channel.clone(),
                    f.locale.clone(),
                    f.provider.clone(),
                ),
                format!("{f:?}"),
            );
        }
    }
    out
}

async fn insert_message(store: &SqlStore, rng: &mut Rng, n: u64) {
    let state = rng.pick(&STATES);
    let outcome = rng.pick(&OUTCOMES);
    let provider = rng.pick(&PROVIDERS);
    store
        .pool()
        .execute(
            "INSERT INTO outbox (idempotency_key, campaign_id, enrolment_id, profile_id, step, variant, channel, template, state, outcome, provider, locale, not_before, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 't', $8, $9, $10, $11, $12, $12)",
            &[
                Val::from(format!("c/{n}/s/email")),
                Val::from(1 + rng.below(3) as i64),
                Val::from(n as i64),
                Val::from(n as i64),
                Val::from(rng.pick(&["first", "second"])),
                Val::from(rng.pick(&["a", "b"])),
                Val::from(rng.pick(&["email", "sms"])),
                Val::from(state),
                Val::from((!outcome.is_empty()).then(|| outcome.to_owned())),
                Val::from((!provider.is_empty()).then(|| provider.to_owned())),
                Val::from(rng.pick(&["nl", "pl", "default"])),
                Val::from(1_717_200_000_000_000 + rng.below(5) as i64 * DAY + rng.below(DAY as u64) as i64),
            ],
        )
        .await
        .unwrap();
}

/// An event that names one of the messages `first..first + messages`, or one that never exists.
/// (An event is never about a message not queued yet: a message's id exists only once it is.)
/// Engagement goes through the import session, as every stored event does; a survey answer
/// naming a message is written as a payload (the typed event has no message field).
async fn event(
    store: &SqlStore,
    rng: &mut Rng,
    n: u64,
    (first, messages): (u64, u64),
    sent: &mut Vec<EventRecord>,
) {
    let target = Some(match rng.below(messages + 1) {
        i if i < messages => format!("c/{}/s/email", first + i),
        _ => "c/none/s/email".to_owned(),
    });
    let kind = match rng.below(9) {
        0 => EventKind::EmailOpened {
            message_id: target,
            machine: None,
            user_agent: None,
        },
        1 => EventKind::EmailOpened {
            message_id: target,
            machine: Some(true),
            user_agent: None,
        },
        2 => EventKind::EmailClicked {
            message_id: target,
            url: None,
        },
        3 => EventKind::EmailUnsubscribed { message_id: target },
        4 => EventKind::EmailComplained { message_id: target },
        5 => EventKind::EmailBounced {
            bounce: BounceKind::Soft,
            message_id: target,
            diagnostic: None,
        },
        6 => EventKind::EmailBounced {
            bounce: BounceKind::Hard,
            message_id: target,
            diagnostic: None,
        },
        7 => return survey(store, rng, n).await,
        // An open of a newsletter winback never sent.
        _ => EventKind::EmailOpened {
            message_id: Some("nl-44".into()),
            machine: None,
            user_agent: None,
        },
    };
    let record = EventRecord {
        source_id: Some(ExternalId::parse(&format!("ev{n}")).unwrap()),
        customer: ExternalId::parse(rng.pick(&["c1", "c2", "c3"])).unwrap(),
        at: Timestamp::from_micros(crate::now().as_micros() + rng.below(10) as i64 * DAY).unwrap(),
        kind,
    };
    sent.push(record.clone());
    // Now and then an earlier event delivered again (a webhook retried): it changes nothing.
    let mut batch = vec![record];
    if rng.below(5) == 0 {
        batch.push(sent[rng.below(sent.len() as u64) as usize].clone());
    }
    let mut session = store.begin_import(crate::now()).await.unwrap();
    session.insert_events(&batch).await.unwrap();
    session.commit().await.unwrap();
}

/// A survey answer about a sent message (its provider known), with a reason or without.
async fn survey(store: &SqlStore, rng: &mut Rng, n: u64) {
    let sent = store
        .pool()
        .fetch(
            "SELECT idempotency_key FROM outbox WHERE provider IS NOT NULL ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let target = match sent.len() {
        0 => "c/none/s/email".to_owned(),
        k => sent[rng.below(k as u64) as usize]
            .text("idempotency_key")
            .unwrap(),
    };
    let payload = match rng.below(3) {
        0 => serde_json::json!({"type": "survey_answered", "message_id": target}),
        _ => {
            serde_json::json!({"type": "survey_answered", "message_id": target, "reason": rng.pick(&["price", "too_often"])})
        }
    };
    store
        .pool()
        .execute(
            "INSERT INTO events (event_key, customer_id, type, occurred_at, payload, inserted_at) VALUES ($1, 1, 'survey_answered', $2, $3, $2) ON CONFLICT DO NOTHING",
            &[
                Val::from(format!("survey{n}")),
                Val::from(1_717_200_000_000_000i64),
                Val::from(payload.to_string()),
            ],
        )
        .await
        .unwrap();
}

async fn change_message(store: &SqlStore, rng: &mut Rng, first: u64, messages: u64) {
    let key = format!("c/{}/s/email", first + rng.below(messages));
    let outcome = rng.pick(&OUTCOMES);
    let provider = rng.pick(&PROVIDERS);
    let state = Val::from(rng.pick(&STATES));
    let outcome = Val::from((!outcome.is_empty()).then(|| outcome.to_owned()));
    let provider = Val::from((!provider.is_empty()).then(|| provider.to_owned()));
    let key = Val::from(key);
    let (sql, args) = match rng.below(5) {
        0 => (
            "UPDATE outbox SET state = $2, outcome = $3 WHERE idempotency_key = $1",
            vec![key, state, outcome],
        ),
        // The provider is chosen once, when a message is sent, before anyone can answer it; a
        // locale is fixed when it is queued. (Survey answers are counted under the message as it
        // was when they came.)
        1 => (
            "UPDATE outbox SET state = $2, provider = $3 WHERE idempotency_key = $1 AND provider IS NULL",
            vec![key, state, provider],
        ),
        // Leases and attempts: no counter moves.
        2 => (
            "UPDATE outbox SET attempts = attempts + 1, lease_owner = 'w' WHERE idempotency_key = $1",
            vec![key],
        ),
        3 => (
            "UPDATE outbox SET state = $2, outcome = $3, provider = $4 WHERE idempotency_key = $1 AND provider IS NULL",
            vec![key, state, outcome, provider],
        ),
        // Only a message nobody could answer yet (survey answers stay counted with the message
        // they answered).
        _ => (
            "DELETE FROM outbox WHERE idempotency_key = $1 AND provider IS NULL",
            vec![key],
        ),
    };
    store.pool().execute(sql, &args).await.unwrap();
}

/// Messages by state and dropped messages by reason, counted from the outbox itself.
async fn counted(store: &SqlStore) -> (BTreeMap<(i64, String), i64>, BTreeMap<(i64, String), i64>) {
    let mut states = BTreeMap::new();
    for r in store
        .pool()
        .fetch(
            "SELECT campaign_id, state, COUNT(*) AS n FROM outbox GROUP BY campaign_id, state",
            &[],
        )
        .await
        .unwrap()
    {
        states.insert(
            (r.i64("campaign_id").unwrap(), r.text("state").unwrap()),
            r.i64("n").unwrap(),
        );
    }
    let mut dropped: BTreeMap<(i64, String), i64> = BTreeMap::new();
    for r in store
        .pool()
        .fetch(
            "SELECT campaign_id, outcome FROM outbox WHERE state = 'dropped'",
            &[],
        )
        .await
        .unwrap()
    {
        let outcome = r.opt_text("outcome").unwrap().unwrap_or("unknown".into());
        *dropped
            .entry((
                r.i64("campaign_id").unwrap(),
                winback_store::drop_reason(&outcome).to_owned(),
            ))
            .or_default() += 1;
    }
    (states, dropped)
}

async fn assert_exact(store: &SqlStore, seed: u64, round: usize) {
    let epoch = Timestamp::EPOCH;
    let forever = Timestamp::from_micros(4_102_444_800_000_000).unwrap(); // 2100
    let kept = keyed(store.message_funnel_details(epoch, forever).await.unwrap());
    let recomputed = keyed(
        store
            .message_funnel_details_recomputed(epoch, forever)
            .await
            .unwrap(),
    );
    assert!(
        seed == 0 || !recomputed.is_empty(),
        "seed {seed}: nothing to compare"
    );
    assert_eq!(kept, recomputed, "seed {seed}, round {round}: funnels");
    // One day's range too: the rollups' grain.
    let day = Timestamp::from_micros(1_717_200_000_000_000 / DAY * DAY + 2 * DAY).unwrap();
    let next = Timestamp::from_micros(day.as_micros() + DAY).unwrap();
    assert_eq!(
        keyed(store.message_funnel_details(day, next).await.unwrap()),
        keyed(
            store
                .message_funnel_details_recomputed(day, next)
                .await
                .unwrap()
        ),
        "seed {seed}, round {round}: one day's funnels"
    );
    let (states, dropped) = counted(store).await;
    let names: HashMap<String, i64> = store
        .pool()
        .fetch("SELECT id, name FROM campaigns", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.text("name").unwrap(), r.i64("id").unwrap()))
        .collect();
    let mut kept_states = BTreeMap::new();
    let mut kept_dropped = BTreeMap::new();
    for c in store.campaign_counts().await.unwrap() {
        let Some(&id) = names.get(&c.name) else {
            continue;
        };
        for (s, n) in c.messages {
            kept_states.insert((id, s), n);
        }
        for (r, n) in c.dropped {
            kept_dropped.insert((id, r), n);
        }
    }
    assert_eq!(kept_states, states, "seed {seed}, round {round}: states");
    // Each customer's last click or human open, kept as events arrive, against the events.
    for r in store
        .pool()
        .fetch(
            "SELECT c.id, c.last_engaged_at AS kept, \
               (SELECT MAX(e.occurred_at) FROM events e WHERE e.customer_id = c.id \
                AND (e.type = 'email_clicked' OR (e.type = 'email_opened' AND e.payload NOT LIKE '%\"machine\":true%'))) AS recomputed \
             FROM customers c",
            &[],
        )
        .await
        .unwrap()
    {
        assert_eq!(
            r.opt_i64("kept").unwrap(),
            r.opt_i64("recomputed").unwrap(),
            "seed {seed}, round {round}: last engagement of customer {}",
            r.i64("id").unwrap()
        );
    }
    assert_eq!(kept_dropped, dropped, "seed {seed}, round {round}: drops");
    for id in 1..=3 {
        let by_reason = store
            .drop_reasons(CampaignId::new(id), epoch, forever)
            .await
            .unwrap();
        let expected: BTreeMap<String, i64> = dropped
            .iter()
            .filter(|((c, _), _)| *c == id)
            .map(|((_, r), n)| (r.clone(), *n))
            .collect();
        assert_eq!(
            by_reason, expected,
            "seed {seed}, round {round}: drop reasons of {id}"
        );
    }
}

async fn rollups_equal_a_recomputation(store: &SqlStore) {
    // Campaign rows so that the counts by campaign name have names to go by.
    crate::campaign_rows(store, 3).await;
    for seed in 1..=4u64 {
        let mut rng = Rng(seed);
        let base = seed * 10_000;
        let mut messages = 0u64;
        let mut sent = Vec::new();
        for round in 0..6 {
            for i in 0..25 {
                match rng.below(10) {
                    0..=2 => {
                        insert_message(store, &mut rng, base + messages).await;
                        messages += 1;
                    }
                    3..=4 if messages > 0 => change_message(store, &mut rng, base, messages).await,
                    _ => {
                        let n = base * 100 + round * 100 + i;
                        event(store, &mut rng, n, (base, messages), &mut sent).await
                    }
                }
            }
            if rng.below(2) == 0 {
                store.fold_rollups().await.unwrap();
            }
            assert_exact(store, seed, round as usize).await;
        }
    }
    // Folding everything changes no figure, and leaves no delta behind.
    store.fold_rollups().await.unwrap();
    assert_exact(store, 0, 99).await;
    assert_eq!(crate::rows(store, "message_rollup_delta").await, 0);
    assert_eq!(crate::rows(store, "survey_rollup_delta").await, 0);
}

conformance!(rollups_exact, super::rollups_equal_a_recomputation);

/// Writers and folds at once (several PostgreSQL connections): no delta is lost or folded twice.
async fn concurrent_folds_lose_nothing(store: &SqlStore) {
    store
        .pool()
        .execute(
            "INSERT INTO campaigns (id, name, status, version, file, created_at, updated_at) VALUES (1, 'campaign-1', 'active', 1, 'c.toml', 0, 0)",
            &[],
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(100 + w);
            for i in 0..40u64 {
                let n = w * 1_000 + i;
                insert_message(&store, &mut rng, n).await;
                store
                    .pool()
                    .execute(
                        "UPDATE outbox SET state = 'sent', provider = 'gmail', campaign_id = 1 WHERE idempotency_key = $1",
                        &[Val::from(format!("c/{n}/s/email"))],
                    )
                    .await
                    .unwrap();
                if i % 5 == 0 {
                    store.fold_rollups().await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_exact(store, 0, 0).await;
    let sent: i64 = store
        .message_funnel_details(
            Timestamp::EPOCH,
            Timestamp::from_micros(4_102_444_800_000_000).unwrap(),
        )
        .await
        .unwrap()
        .values()
        .flatten()
        .map(|f| f.sent)
        .sum();
    assert_eq!(sent, 160, "every message written by the four writers, once");
}

conformance!(rollups_concurrent, super::concurrent_folds_lose_nothing);
