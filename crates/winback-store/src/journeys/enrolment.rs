//! Triggers and enrolment: trigger events since a campaign's cursor, admission (re-entry rules,
//! holdout arms) under the enrolment lock.

use super::*;

pub(crate) async fn trigger_events(
    pool: &Pool,
    campaign_id: winback_domain::CampaignId,
    label: &str,
    limit: usize,
) -> Result<TriggerBatch, StoreError> {
    let cursor = trigger_cursor(pool, campaign_id).await?;
    let lim = limit as i64;
    let rows = if label == "order_placed" {
        pool.fetch(
            &format!(
                "SELECT o.id AS cursor, {PROFILE} AS profile, 'order:' || o.external_id AS trigger_key, o.ordered_at AS at, 'order_placed' AS label FROM orders o JOIN customers c ON c.id = o.customer_id \
                 WHERE o.id > $1 AND o.status NOT IN ('cancelled', 'refunded') ORDER BY o.id LIMIT $2"
            ),
            &[Val::from(cursor), Val::from(lim)],
        )
        .await?
    } else if let Some(name) = label.strip_prefix("custom:") {
        pool.fetch(
            &format!(
                "SELECT e.id AS cursor, {PROFILE} AS profile, 'event:' || e.event_key AS trigger_key, e.occurred_at AS at, 'custom:' || $3 AS label FROM events e JOIN customers c ON c.id = e.customer_id \
                 WHERE e.id > $1 AND e.type = 'custom' AND e.payload LIKE $4 ORDER BY e.id LIMIT $2"
            ),
            &[
                Val::from(cursor),
                Val::from(lim),
                Val::from(name),
                Val::from(format!("%\"name\":\"{name}\"%")),
            ],
        )
        .await?
    } else {
        pool.fetch(
            &format!(
                "SELECT e.id AS cursor, {PROFILE} AS profile, 'event:' || e.event_key AS trigger_key, e.occurred_at AS at, e.type AS label FROM events e JOIN customers c ON c.id = e.customer_id \
                 WHERE e.id > $1 AND e.type = $3 ORDER BY e.id LIMIT $2"
            ),
            &[Val::from(cursor), Val::from(lim), Val::from(label)],
        )
        .await?
    };
    let events: Vec<TriggerEvent> = rows
        .iter()
        .map(|r| {
            Ok(TriggerEvent {
                cursor: r.i64("cursor")?,
                profile_id: winback_domain::ProfileId::new(r.i64("profile")?),
                key: r.text("trigger_key")?,
                at: ts(r.i64("at")?)?,
                label: r.text("label")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    let next = match events.last() {
        // A full batch may be followed by more: continue right after it.
        Some(e) => e.cursor,
        // Nothing of this kind after the cursor: move it past the table's end, so the next
        // pass does not rescan history.
        None => {
            let table = if label == "order_placed" {
                "orders"
            } else {
                "events"
            };
            pool.fetch(&format!("SELECT MAX(id) FROM {table}"), &[])
                .await?
                .first()
                .map(|r| r.opt_i64(0))
                .transpose()?
                .flatten()
                .unwrap_or(0)
        }
    };
    Ok(TriggerBatch {
        events,
        cursor: (next > cursor).then_some(next),
    })
}

pub(super) async fn lock_enrolment(tx: &mut Tx) -> Result<(), StoreError> {
    // SQLite's BEGIN IMMEDIATE already holds the write lock.
    if tx.backend() == Backend::Postgres {
        tx.execute("SELECT pg_advisory_xact_lock(7310001)", &[])
            .await?;
    }
    Ok(())
}

pub(crate) async fn enrol(
    pool: &Pool,
    campaign_id: winback_domain::CampaignId,
    version: i64,
    exclusive: bool,
    candidates: &[Candidate],
    now: Timestamp,
    admit: &(dyn Fn(&Candidate, &EntryHistory) -> Admission + Sync),
) -> Result<(u64, u64), StoreError> {
    let mut tx = pool.begin().await?;
    lock_enrolment(&mut tx).await?;
    let mut histories: HashMap<i64, EntryHistory> = HashMap::new();
    let ids: Vec<i64> = {
        let mut v: Vec<i64> = candidates.iter().map(|c| c.profile_id.get()).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    for chunk in ids.chunks(CHUNK) {
        let mut args: Vec<Val> = vec![Val::from(campaign_id)];
        args.extend(chunk.iter().map(|i| Val::from(*i)));
        let list = (2..=chunk.len() + 1)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(",");
        for r in tx
            .fetch(
                &format!(
                    "SELECT e.profile_id, CAST(CASE WHEN e.campaign_id = $1 THEN 1 ELSE 0 END AS BIGINT) AS here, e.state, e.ended_at, e.exclusive, c.name AS campaign FROM enrolments e \
                     JOIN campaigns c ON c.id = e.campaign_id WHERE e.profile_id IN ({list})"
                ),
                &args,
            )
            .await?
        {
            let h = histories.entry(r.i64("profile_id")?).or_default();
            let here = r.i64("here")? != 0;
            let active = r.text("state")? == "active";
            if here {
                h.entries += 1;
                h.active_here |= active;
                if let Some(end) = r.opt_i64("ended_at")? {
                    let end = ts(end)?;
                    h.last_ended_at = Some(h.last_ended_at.map_or(end, |t| t.max(end)));
                }
            } else if active && r.i64("exclusive")? != 0 {
                h.exclusive_elsewhere = Some(r.text("campaign")?);
            }
        }
    }
    let mut rows: Vec<[Val; 14]> = Vec::new();
    let (mut entered, mut held) = (0u64, 0u64);
    let mut seen = HashSet::new();
    for cand in candidates {
        if !seen.insert(cand.profile_id) {
            continue;
        }
        let h = histories
            .get(&cand.profile_id.get())
            .cloned()
            .unwrap_or_default();
        if let Admission::Enter {
            variant,
            holdout,
            first_due,
        } = admit(cand, &h)
        {
            rows.push([
                Val::from(campaign_id),
                Val::from(version),
                Val::from(cand.profile_id),
                Val::from(cand.trigger_key.as_str()),
                Val::from(i64::from(exclusive)),
                Val::from(if holdout { "held_out" } else { "active" }),
                Val::from(i64::from(holdout)),
                Val::from(variant),
                Val::from(now.as_micros()),
                Val::from((!holdout).then_some(first_due.as_micros())),
                Val::from(holdout.then_some(now.as_micros())),
                Val::from(holdout.then_some("holdout")),
                Val::from(0i64),
                Val::from(0i64),
            ]);
        }
    }
    for chunk in rows.chunks(CHUNK / 14) {
        let args: Vec<Val> = chunk.iter().flat_map(|r| r.iter().cloned()).collect();
        let inserted = tx
            .fetch(
                &format!(
                    "INSERT INTO enrolments (campaign_id, version, profile_id, trigger_key, exclusive, state, holdout, variant, entered_at, due_at, ended_at, end_reason, step, resume) \
                     VALUES {} ON CONFLICT (campaign_id, profile_id, trigger_key) DO NOTHING RETURNING id, holdout",
                    values_list(chunk.len(), 14)
                ),
                &args,
            )
            .await?;
        let mut ids = Vec::with_capacity(inserted.len());
        for r in inserted {
            ids.push(r.i64("id")?);
            if r.i64("holdout")? != 0 {
                held += 1;
            } else {
                entered += 1;
            }
        }
        freeze_segments(&mut tx, &ids).await?;
    }
    tx.commit().await?;
    Ok((entered, held))
}

/// Copies each new enrolment's segments (its profile's locale and email domain) onto it, in the
/// enrolling transaction: the report splits arms by the contact as it entered (migration 18).
/// With them its orders and spend in the year before entry (migration 21), the report's CUPED
/// covariates, which must be fixed before the campaign could touch them.
async fn freeze_segments(tx: &mut Tx, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let (set, list) = crate::db::id_set(tx.backend(), 1, ids);
    let domain = crate::db::email_domain(tx.backend(), "c.email");
    let pre = "FROM orders o JOIN customers c ON c.id = o.customer_id \
               WHERE (c.id = enrolments.profile_id OR c.profile_id = enrolments.profile_id) \
                 AND o.ordered_at >= enrolments.entered_at - 31536000000000 AND o.ordered_at < enrolments.entered_at \
                 AND o.status NOT IN ('cancelled', 'refunded')";
    tx.execute(
        &format!(
            "UPDATE enrolments SET \
               locale = (SELECT c.locale FROM customers c WHERE c.id = enrolments.profile_id), \
               email_domain = (SELECT {domain} FROM customers c WHERE c.id = enrolments.profile_id), \
               pre_orders = (SELECT COUNT(*) {pre}), \
               pre_spend_minor = (SELECT CAST(COALESCE(SUM(o.total_minor), 0) AS BIGINT) {pre}) \
             WHERE id IN ({set})"
        ),
        &[list],
    )
    .await?;
    Ok(())
}

pub(crate) async fn arm_stats(
    pool: &Pool,
    campaign_id: winback_domain::CampaignId,
    variants: &[String],
    window_seconds: i64,
) -> Result<Vec<winback_engine::experiment::ArmStats>, StoreError> {
    let rows = pool
        .fetch(
            "SELECT e.variant, COUNT(*) AS entered, COUNT(CASE WHEN EXISTS (SELECT 1 FROM orders o JOIN customers c ON c.id = o.customer_id \
                 WHERE (c.id = e.profile_id OR c.profile_id = e.profile_id) AND o.ordered_at >= e.entered_at AND o.ordered_at < e.entered_at + $2) THEN 1 END) AS buyers \
                 FROM enrolments e WHERE e.campaign_id = $1 AND e.holdout = 0 GROUP BY e.variant",
            &[Val::from(campaign_id), Val::from(window_seconds * 1_000_000)],
        )
        .await?;
    let mut by: HashMap<String, (u64, u64)> = HashMap::new();
    for r in rows {
        by.insert(
            r.text("variant")?,
            (r.i64("entered")? as u64, r.i64("buyers")? as u64),
        );
    }
    Ok(variants
        .iter()
        .map(|v| {
            let (enrolled, converted) = by.get(v).copied().unwrap_or((0, 0));
            winback_engine::experiment::ArmStats {
                enrolled,
                converted,
            }
        })
        .collect())
}
