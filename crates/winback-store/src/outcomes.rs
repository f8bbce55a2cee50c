//! Each enrolment's outcome: its contact's orders and revenue within the campaign's conversion
//! window after entering, stored on the enrolment (`outcome_*` columns, migration 15) so a
//! report sums stored figures instead of looking up every contact's orders.
//!
//! The stored figures are never read stale. Every writer of orders or of profile membership
//! marks the customer records it touched in `outcome_dirty` in its own transaction;
//! [`fresh_join`] lets a reader take the stored figures only of enrolments whose window matches
//! and whose contact has no marked record, and compute the others from the orders; and
//! [`refresh`] recomputes the marked and new enrolments and clears the marks in one
//! transaction.

use std::collections::HashMap;

use crate::StoreError;
use crate::db::{Backend, Pool, Tx, Val};

/// The orders of an enrolment's contact `e` that count for it: any record of the profile
/// (`c.id = e.profile_id OR c.profile_id = e.profile_id`), ordered within `window` (an SQL
/// expression in microseconds) after entering, and neither cancelled nor refunded. The report's
/// definition, in one place for the stored and the computed figures.
pub(crate) fn orders_in_window(window: &str) -> (String, String) {
    let from = format!(
        "FROM orders o JOIN customers c ON c.id = o.customer_id \
         WHERE (c.id = e.profile_id OR c.profile_id = e.profile_id) \
           AND o.ordered_at >= e.entered_at AND o.ordered_at < e.entered_at + {window} \
           AND o.status NOT IN ('cancelled', 'refunded')"
    );
    (
        format!("(SELECT COUNT(*) {from})"),
        format!("(SELECT CAST(COALESCE(SUM(o.total_minor), 0) AS BIGINT) {from})"),
    )
}

/// A `LEFT JOIN` naming, as `stale.id`, the profile ids whose stored outcomes may be stale: each
/// marked record and the profile it belongs to now. With it, `e.outcome_window = {window} AND
/// stale.id IS NULL` says an enrolment `e`'s stored figures are exact.
///
/// `CROSS JOIN` makes SQLite walk the marks and look their records up: left to choose, it
/// walked the whole customer profile index and looked each entry up in the marks (33 ms a
/// campaign at a million customers with nothing marked). PostgreSQL plans it as any join.
pub(crate) const STALE_JOIN: &str = "LEFT JOIN ( \
        SELECT customer_id AS id FROM outcome_dirty \
        UNION SELECT COALESCE(c.profile_id, c.id) FROM outcome_dirty d CROSS JOIN customers c WHERE c.id = d.customer_id \
    ) stale ON stale.id = e.profile_id";

/// Marks customer records whose orders changed, inside the writer's transaction.
pub(crate) async fn mark(tx: &mut Tx, ids: &[i64]) -> Result<(), StoreError> {
    crate::features::mark(tx, "outcome_dirty", ids).await
}

/// Recomputes the stored outcome of every enrolment that needs it (never computed, computed
/// for another window, or its contact marked) for the given `(campaign id, window in
/// seconds)`, and clears the marks, in one transaction. Enrolments of campaigns not listed
/// that have a marked contact lose their stored figures (readers compute them), so no mark is
/// cleared without its enrolments being exact. Returns how many enrolments it recomputed.
pub(crate) async fn refresh(pool: &Pool, windows: &[(i64, i64)]) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    // A writer that marks after this ends leaves its mark for the next refresh.
    if crate::db::take_marks(&mut tx, "outcome_dirty", "winback_outcome_stale")
        .await?
        .is_none()
    {
        return Ok(0);
    }
    // The profiles the marked records belong to now (a merged record's enrolments are its
    // profile's).
    tx.execute(
        "INSERT INTO winback_outcome_stale (id) SELECT DISTINCT c.profile_id FROM customers c \
         WHERE c.id IN (SELECT id FROM winback_outcome_stale) AND c.profile_id IS NOT NULL \
         ON CONFLICT DO NOTHING",
        &[],
    )
    .await?;
    let stale = tx
        .fetch("SELECT COUNT(*) FROM winback_outcome_stale", &[])
        .await?[0]
        .i64(0)?;
    // The window each campaign's outcomes were last refreshed for.
    let mut last_window: HashMap<i64, Option<i64>> = HashMap::new();
    for r in tx
        .fetch("SELECT id, outcome_window FROM campaigns", &[])
        .await?
    {
        last_window.insert(r.i64("id")?, r.opt_i64("outcome_window")?);
    }
    let (orders, revenue) = orders_in_window("$2");
    let set = format!(
        "UPDATE enrolments AS e SET outcome_orders = {orders}, outcome_revenue_minor = {revenue}, outcome_window = $2 \
         WHERE e.campaign_id = $1 AND "
    );
    let mut recomputed = 0;
    for &(campaign, window_seconds) in windows {
        let window = window_seconds * 1_000_000;
        let args = [Val::from(campaign), Val::from(window)];
        if last_window.get(&campaign).copied().flatten() != Some(window) {
            // A new campaign, or its window changed: every enrolment of it (rare; a scan of
            // the campaign's enrolments).
            recomputed += tx
                .execute(
                    &format!(
                        "{set}(e.outcome_window IS NULL OR e.outcome_window <> $2 \
                         OR e.profile_id IN (SELECT id FROM winback_outcome_stale))"
                    ),
                    &args,
                )
                .await?;
            tx.execute(
                "UPDATE campaigns SET outcome_window = $2 WHERE id = $1",
                &args,
            )
            .await?;
            continue;
        }
        // Otherwise only new enrolments (a partial index holds them) and the marked contacts'
        // (by the contact index): an idle worker's refresh reads next to nothing.
        recomputed += tx
            .execute(&format!("{set}e.outcome_window IS NULL"), &args)
            .await?;
        if stale > 0 {
            recomputed += tx
                .execute(
                    &format!("{set}e.profile_id IN (SELECT id FROM winback_outcome_stale)"),
                    &args,
                )
                .await?;
        }
    }
    // Campaigns the caller did not name: their marked enrolments are computed by readers.
    let listed: Vec<String> = windows.iter().map(|(c, _)| c.to_string()).collect();
    let not_listed = if listed.is_empty() {
        String::new()
    } else {
        format!("campaign_id NOT IN ({}) AND ", listed.join(", "))
    };
    if stale > 0 {
        tx.execute(
            &format!(
                "UPDATE enrolments SET outcome_window = NULL WHERE {not_listed}outcome_window IS NOT NULL \
                 AND profile_id IN (SELECT id FROM winback_outcome_stale)"
            ),
            &[],
        )
        .await?;
    }
    tx.execute("DELETE FROM winback_outcome_stale", &[]).await?;
    tx.commit().await?;
    if pool.backend() == Backend::Postgres && stale >= 10_000 {
        // The marks were emptied: without fresh statistics PostgreSQL still counts the rows a
        // bulk load left there (199,106 where there were none, measured at 100,000 customers)
        // in every report's plan that joins them.
        pool.execute("ANALYZE outcome_dirty", &[]).await?;
    }
    Ok(recomputed)
}
