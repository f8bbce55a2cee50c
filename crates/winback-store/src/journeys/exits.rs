//! Exits: journeys ended by an order, an unsubscribe or a complaint since they entered (the exit
//! sweep over the event cursor), their pending messages cancelled.

use super::*;

pub(super) async fn cursor(tx: &mut Tx, name: &str) -> Result<i64, StoreError> {
    Ok(tx
        .fetch(
            "SELECT value FROM engine_cursors WHERE name = $1",
            &[Val::from(name)],
        )
        .await?
        .first()
        .map(|r| r.i64(0))
        .transpose()?
        .unwrap_or(0))
}

pub(super) async fn set_cursor(tx: &mut Tx, name: &str, value: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO engine_cursors (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        &[Val::from(name), Val::from(value)],
    )
    .await?;
    Ok(())
}

/// Ends the active journeys of `profile` entered at or before `at`, cancelling their pending
/// messages; returns the enrolments ended.
pub(super) async fn exit_profile(
    tx: &mut Tx,
    profile: i64,
    at: i64,
    reason: &str,
    now: Timestamp,
) -> Result<Vec<i64>, StoreError> {
    let ended: Vec<i64> = tx
        .fetch(
            "UPDATE enrolments SET state = 'exited', end_reason = $3, ended_at = $4, due_at = NULL, lease_owner = NULL, lease_until = NULL \
             WHERE profile_id = $1 AND state = 'active' AND entered_at <= $2 RETURNING id",
            &[
                Val::from(profile),
                Val::from(at),
                Val::from(reason),
                Val::from(now.as_micros()),
            ],
        )
        .await?
        .iter()
        .map(|r| r.i64(0))
        .collect::<Result<_, _>>()?;
    for id in &ended {
        tx.execute(
            "UPDATE outbox SET state = 'cancelled', outcome = $2, settled_at = $3, lease_owner = NULL, lease_until = NULL \
             WHERE enrolment_id = $1 AND state IN ('pending', 'claimed')",
            &[
                Val::from(*id),
                Val::from(format!("journey_ended:{reason}")),
                Val::from(now.as_micros()),
            ],
        )
        .await?;
    }
    Ok(ended)
}

/// The largest id in `table` (one of this module's own names), 0 when it is empty.
async fn max_id(tx: &mut Tx, table: &'static str) -> Result<i64, StoreError> {
    Ok(tx
        .fetch(&format!("SELECT MAX(id) FROM {table}"), &[])
        .await?
        .first()
        .map(|r| r.opt_i64(0))
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

/// The earliest time an order can matter to the sweep: the entry of the first active journey
/// or the issue of the first open offer (`None`: nothing open). An order placed before it ends
/// no journey (a journey ends by orders at or after its entry) and redeems no code (a code
/// counts from its issue).
async fn earliest_open(tx: &mut Tx) -> Result<Option<i64>, StoreError> {
    Ok(tx
        .fetch(
            "SELECT MIN(t) AS t FROM (SELECT MIN(entered_at) AS t FROM enrolments WHERE state = 'active' \
             UNION ALL SELECT MIN(issued_at) FROM offers WHERE state = 'issued') open_since",
            &[],
        )
        .await?
        .first()
        .map(|r| r.opt_i64("t"))
        .transpose()?
        .flatten())
}

pub(crate) async fn process_exits(pool: &Pool, now: Timestamp) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await?;
        lock_enrolment(&mut tx).await?;
        let from = cursor(&mut tx, "exit_orders").await?;
        // Only orders placed since the first open journey or offer can change anything; older
        // ones are skipped in the same scan, and with nothing open the cursor jumps to the last
        // order at once. On a programme's first pass the walk was the shop's whole order
        // history, 2,000 orders a transaction (22.5 s at a million customers). Asked under the
        // enrolment lock, so no journey enters meanwhile.
        let Some(earliest) = earliest_open(&mut tx).await? else {
            let max = max_id(&mut tx, "orders").await?;
            if max > from {
                set_cursor(&mut tx, "exit_orders", max).await?;
            }
            tx.commit().await?;
            break;
        };
        // The last order now, read first: an order stored after the scan below is after it.
        let max = max_id(&mut tx, "orders").await?;
        let orders = tx
            .fetch(
                &format!(
                    "SELECT o.id, {PROFILE} AS profile, o.ordered_at, o.discount_minor, o.status FROM orders o JOIN customers c ON c.id = o.customer_id \
                     WHERE o.id > $1 AND o.id <= $2 AND o.ordered_at >= $3 ORDER BY o.id LIMIT 2000"
                ),
                &[Val::from(from), Val::from(max), Val::from(earliest)],
            )
            .await?;
        let Some(last) = orders.last().map(|r| r.i64("id")).transpose()? else {
            // Nothing after the cursor that can matter: past all of it.
            if max > from {
                set_cursor(&mut tx, "exit_orders", max).await?;
            }
            tx.commit().await?;
            break;
        };
        let profiles: Vec<i64> = {
            let mut v = orders
                .iter()
                .map(|r| r.i64("profile"))
                .collect::<Result<Vec<_>, _>>()?;
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut engaged: HashSet<i64> = HashSet::new();
        for r in fetch_in(
            &mut tx,
            "SELECT DISTINCT profile_id FROM enrolments WHERE profile_id IN ({ids}) AND (state = 'active' OR EXISTS (SELECT 1 FROM offers f WHERE f.profile_id = enrolments.profile_id AND f.state = 'issued'))",
            &profiles,
        )
        .await?
        {
            engaged.insert(r.i64("profile_id")?);
        }
        // The orders that end journeys, and of those the ones that carry any code: only they
        // are asked which of winback's codes they redeem. Asking every order was the lookup a
        // sampler caught most often in a day's exit sweep on PostgreSQL at a million customers
        // (67 s for 2,048 exits; the table had no statistics after its bulk load).
        let mut ending: Vec<i64> = Vec::new();
        for r in &orders {
            if engaged.contains(&r.i64("profile")?)
                && !matches!(r.text("status")?.as_str(), "cancelled" | "refunded")
            {
                ending.push(r.i64("id")?);
            }
        }
        let mut coded: HashSet<i64> = HashSet::new();
        for r in fetch_in(
            &mut tx,
            "SELECT DISTINCT order_id FROM order_discount_codes WHERE order_id IN ({ids})",
            &ending,
        )
        .await?
        {
            coded.insert(r.i64(0)?);
        }
        for r in &orders {
            let (order_id, profile, at) = (r.i64("id")?, r.i64("profile")?, r.i64("ordered_at")?);
            if ending.binary_search(&order_id).is_err() {
                continue;
            }
            // Redemptions: codes on the order that winback issued to this profile, asked one
            // order at a time: an earlier order of the chunk may have used or revoked them.
            let codes = if coded.contains(&order_id) {
                tx.fetch(
                    "SELECT f.code FROM order_discount_codes d JOIN offers f ON f.code = d.code \
                     WHERE d.order_id = $1 AND f.state = 'issued' AND f.expires_at >= $2 AND f.issued_at <= $2",
                    &[Val::from(order_id), Val::from(at)],
                )
                .await?
            } else {
                Vec::new()
            };
            let discount = r.i64("discount_minor")?;
            for c in &codes {
                let code = c.text(0)?;
                let inserted = tx
                    .execute(
                        "INSERT INTO offer_redemptions (code, order_id, redeemed_at, discount_minor) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        &[Val::from(code.as_str()), Val::from(order_id), Val::from(at), Val::from(discount)],
                    )
                    .await?;
                if inserted > 0 {
                    tx.execute(
                        "UPDATE offers SET used = used + 1, cost_minor = cost_minor + $2, state = CASE WHEN used + 1 >= uses THEN 'redeemed' ELSE state END WHERE code = $1",
                        &[Val::from(code.as_str()), Val::from(discount)],
                    )
                    .await?;
                }
            }
            let ended = exit_profile(&mut tx, profile, at, "purchased", now).await?;
            total += ended.len() as u64;
            // Single-use codes of the journeys the order ended are revoked: the goal is met.
            for id in &ended {
                tx.execute(
                    "UPDATE offers SET state = 'revoked' WHERE enrolment_id = $1 AND state = 'issued' AND uses = 1",
                    &[Val::from(*id)],
                )
                .await?;
            }
        }
        set_cursor(&mut tx, "exit_orders", last).await?;
        tx.commit().await?;
    }
    // The unsubscribes and complaints after the cursor, found by the type index and handled
    // 2,000 to a transaction in id order. Walking the events by id after the cursor read every
    // event of every type: 31.3 s over 37.7M events at a million customers, for 91,617 of
    // these.
    let (from, max) = {
        let mut tx = pool.begin().await?;
        let from = cursor(&mut tx, "exit_events").await?;
        let max = max_id(&mut tx, "events").await?;
        tx.commit().await?;
        (from, max)
    };
    let mut wanted: Vec<i64> = Vec::new();
    pool.for_each(
        "SELECT id FROM events WHERE type IN ('email_unsubscribed', 'email_complained') AND id > $1 AND id <= $2",
        &[Val::from(from), Val::from(max)],
        |r| {
            wanted.push(r.i64("id")?);
            Ok(())
        },
    )
    .await?;
    wanted.sort_unstable();
    let mut chunks = wanted.chunks(2000);
    loop {
        let mut tx = pool.begin().await?;
        lock_enrolment(&mut tx).await?;
        // Another worker's sweep may have taken some meanwhile: its cursor says which.
        let done = cursor(&mut tx, "exit_events").await?;
        let Some(chunk) = chunks.next() else {
            // Past the events of other types too, in one step.
            if max > done {
                set_cursor(&mut tx, "exit_events", max).await?;
            }
            tx.commit().await?;
            break;
        };
        let ids: Vec<i64> = chunk.iter().copied().filter(|id| *id > done).collect();
        let Some(&last) = ids.last() else {
            tx.commit().await?;
            continue;
        };
        let (set, list) = crate::db::id_set(tx.backend(), 1, &ids);
        let events = tx
            .fetch(
                &format!(
                    "SELECT e.id, {PROFILE} AS profile, e.occurred_at, e.type FROM events e JOIN customers c ON c.id = e.customer_id \
                     WHERE e.id IN ({set}) ORDER BY e.id"
                ),
                &[list],
            )
            .await?;
        for r in &events {
            let (profile, at) = (r.i64("profile")?, r.i64("occurred_at")?);
            let complained = r.text("type")? == "email_complained";
            let reason = if complained {
                "complained"
            } else {
                "unsubscribed"
            };
            total += exit_profile(&mut tx, profile, at, reason, now).await?.len() as u64;
            if complained {
                let email = tx
                    .fetch(
                        "SELECT c.email FROM customers c WHERE (c.id = $1 OR c.profile_id = $1) AND c.email IS NOT NULL ORDER BY c.id LIMIT 1",
                        &[Val::from(profile)],
                    )
                    .await?;
                if let Some(e) = email.first() {
                    suppress(&mut tx, "email", &e.text(0)?, "complaint", now).await?;
                }
                // The complaint counts against the provider of the last email it could be about,
                // once, in that provider's ramp window.
                let last = tx
                    .fetch(
                        "SELECT id, provider FROM outbox WHERE id = (SELECT MAX(id) FROM outbox WHERE profile_id = $1 AND channel = 'email' AND state = 'sent' AND sent_at <= $2) AND complained = 0",
                        &[Val::from(profile), Val::from(at)],
                    )
                    .await?;
                if let Some(row) = last.first() {
                    tx.execute(
                        "UPDATE outbox SET complained = 1 WHERE id = $1",
                        &[Val::from(row.i64("id")?)],
                    )
                    .await?;
                    if let Some(p) = row.opt_text("provider")? {
                        tx.execute(
                            "UPDATE provider_ramp SET cur_complaints = cur_complaints + 1 WHERE provider = $1",
                            &[Val::from(p.as_str())],
                        )
                        .await?;
                    }
                }
            }
        }
        set_cursor(&mut tx, "exit_events", last).await?;
        tx.commit().await?;
    }
    Ok(total)
}
