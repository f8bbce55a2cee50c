//! Stepping journeys: claiming due enrolments under fenced leases, their snapshots and facts, and
//! applying the engine's plans (state, outbox rows, tags, offers) in one transaction.

use super::*;

pub(crate) async fn claim_due(
    pool: &Pool,
    worker: &str,
    now: Timestamp,
    lease_seconds: i64,
    limit: usize,
) -> Result<Vec<ClaimedEnrolment>, StoreError> {
    let lock = match pool.backend() {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    // The running campaigns' ids are inlined (they are integers) rather than joined: a join
    // makes both planners read every due enrolment and sort them, per batch; a plain list lets
    // them walk the due index in order and stop at the limit. `+` keeps SQLite off the campaign
    // index for the same reason.
    let running: Vec<String> = pool
        .fetch(
            "SELECT id FROM campaigns WHERE status IN ('active', 'closing')",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.i64(0).map(|i| i.to_string()))
        .collect::<Result<_, _>>()?;
    if running.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE enrolments SET lease_owner = $1, lease_until = $2, fence = fence + 1 WHERE id IN ( \
           SELECT e.id FROM enrolments e WHERE e.state = 'active' AND e.due_at <= $3 \
           AND (e.lease_until IS NULL OR e.lease_until < $3) AND +e.campaign_id IN ({}) \
           ORDER BY e.due_at LIMIT $4 {lock}) \
         RETURNING id, campaign_id, version, profile_id, step, resume, entered_at, due_at, variant, fence, waiting_since, waiting_event",
        running.join(",")
    );
    let rows = claim_rows(pool, &sql, worker, now, lease_seconds, limit).await?;
    let mut out: Vec<ClaimedEnrolment> = rows
        .iter()
        .map(|r| {
            Ok(ClaimedEnrolment {
                campaign_id: winback_domain::CampaignId::new(r.i64("campaign_id")?),
                version: r.i64("version")?,
                enrolment: Enrolment {
                    id: winback_domain::EnrolmentId::new(r.i64("id")?),
                    profile_id: winback_domain::ProfileId::new(r.i64("profile_id")?),
                    step: r.i64("step")? as usize,
                    resume: r.i64("resume")? != 0,
                    entered_at: ts(r.i64("entered_at")?)?,
                    due_at: ts(r.opt_i64("due_at")?.unwrap_or(0))?,
                    variant: r.text("variant")?,
                },
                fence: r.i64("fence")?,
                waiting_since: r.opt_i64("waiting_since")?.map(ts).transpose()?,
                waiting_event: r.opt_text("waiting_event")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    out.sort_by_key(|c| (c.enrolment.due_at, c.enrolment.id));
    Ok(out)
}

/// Runs a claim statement (`$1` worker, `$2` lease end, `$3` now, `$4` limit) in its own
/// transaction, so the claim is committed before any work on the rows starts.
pub(super) async fn claim_rows(
    pool: &Pool,
    sql: &str,
    worker: &str,
    now: Timestamp,
    lease_seconds: i64,
    limit: usize,
) -> Result<Vec<crate::db::DbRow>, StoreError> {
    let mut tx = pool.begin().await?;
    let rows = tx
        .fetch(
            sql,
            &[
                Val::from(worker),
                Val::from(now.as_micros() + lease_seconds * 1_000_000),
                Val::from(now.as_micros()),
                Val::from(limit as i64),
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(rows)
}

/// Whether `label` happened for the profile (or shop-wide) at or after `since`.
pub(super) async fn event_since(
    pool: &Pool,
    profile: i64,
    label: &str,
    since: Timestamp,
) -> Result<bool, StoreError> {
    let s = Val::from(since.as_micros());
    let p = Val::from(profile);
    let found = if label == "order_placed" {
        pool.fetch(
            "SELECT 1 FROM orders o JOIN customers c ON c.id = o.customer_id WHERE (c.id = $1 OR c.profile_id = $1) AND o.ordered_at >= $2 LIMIT 1",
            &[p, s],
        )
        .await?
    } else if let Some(name) = label.strip_prefix("custom:") {
        let mut rows = pool
            .fetch(
                "SELECT 1 FROM shop_signals WHERE name = $1 AND at >= $2 LIMIT 1",
                &[Val::from(name), s.clone()],
            )
            .await?;
        if rows.is_empty() {
            rows = pool
                .fetch(
                    "SELECT 1 FROM events e JOIN customers c ON c.id = e.customer_id WHERE (c.id = $1 OR c.profile_id = $1) AND e.occurred_at >= $2 AND e.type = 'custom' AND e.payload LIKE $3 LIMIT 1",
                    &[p, s, Val::from(format!("%\"name\":\"{name}\"%"))],
                )
                .await?;
        }
        rows
    } else {
        pool.fetch(
            "SELECT 1 FROM events e JOIN customers c ON c.id = e.customer_id WHERE (c.id = $1 OR c.profile_id = $1) AND e.occurred_at >= $2 AND e.type = $3 LIMIT 1",
            &[p, s, Val::from(label)],
        )
        .await?
    };
    Ok(!found.is_empty())
}

pub(crate) async fn wake_waiting(pool: &Pool, now: Timestamp) -> Result<u64, StoreError> {
    let waiting = pool
        .fetch(
            "SELECT id, profile_id, waiting_event, waiting_since FROM enrolments WHERE state = 'active' AND waiting_event IS NOT NULL AND due_at > $1",
            &[Val::from(now.as_micros())],
        )
        .await?;
    let mut woke = 0;
    for r in waiting {
        let since = ts(r.opt_i64("waiting_since")?.unwrap_or(0))?;
        if event_since(pool, r.i64("profile_id")?, &r.text("waiting_event")?, since).await? {
            woke += pool
                .execute(
                    "UPDATE enrolments SET due_at = $2 WHERE id = $1 AND state = 'active'",
                    &[Val::from(r.i64("id")?), Val::from(now.as_micros())],
                )
                .await?;
        }
    }
    crate::calls::close_ended(pool, now).await?;
    Ok(woke)
}

pub(crate) async fn snapshots(
    pool: &Pool,
    claimed: &[ClaimedEnrolment],
    full: &[bool],
    now: Timestamp,
) -> Result<Vec<Snapshot>, StoreError> {
    let profiles: Vec<i64> = {
        let mut v: Vec<i64> = claimed
            .iter()
            .map(|c| c.enrolment.profile_id.get())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut zones: HashMap<i64, String> = HashMap::new();
    for chunk in profiles.chunks(CHUNK) {
        let args: Vec<Val> = chunk.iter().map(|i| Val::from(*i)).collect();
        let list = in_list(chunk.len());
        for r in pool
            .fetch(
                &format!("SELECT {PROFILE}, c.time_zone FROM customers c WHERE (c.id IN ({list}) OR c.profile_id IN ({list})) AND c.time_zone IS NOT NULL ORDER BY c.id"),
                &args,
            )
            .await?
        {
            zones.entry(r.i64(0)?).or_insert(r.text(1)?);
        }
    }
    let mut offers: HashMap<i64, BTreeMap<String, usize>> = HashMap::new();
    let enrolment_ids: Vec<i64> = claimed.iter().map(|c| c.enrolment.id.get()).collect();
    for chunk in enrolment_ids.chunks(CHUNK) {
        let args: Vec<Val> = chunk.iter().map(|i| Val::from(*i)).collect();
        for r in pool
            .fetch(
                &format!("SELECT enrolment_id, ladder, COUNT(*) AS offers FROM offers WHERE enrolment_id IN ({}) GROUP BY enrolment_id, ladder", in_list(chunk.len())),
                &args,
            )
            .await?
        {
            offers.entry(r.i64("enrolment_id")?).or_default().insert(r.text("ladder")?, r.i64("offers")? as usize);
        }
    }
    let full_profiles: Vec<i64> = claimed
        .iter()
        .zip(full)
        .filter(|(_, f)| **f)
        .map(|(c, _)| c.enrolment.profile_id.get())
        .collect();
    let rows: HashMap<i64, AudienceRow> = if full_profiles.is_empty() {
        HashMap::new()
    } else {
        audience_rows(pool, now, Some(&full_profiles))
            .await?
            .into_iter()
            .map(|e| (e.row.profile_id.get(), e.row))
            .collect()
    };
    let mut out = Vec::with_capacity(claimed.len());
    for (c, f) in claimed.iter().zip(full) {
        let e = &c.enrolment;
        let event_arrived = match (&c.waiting_event, c.waiting_since) {
            (Some(label), Some(since)) if e.resume => {
                event_since(pool, e.profile_id.get(), label, since).await?
            }
            _ => false,
        };
        let mut snap = Snapshot {
            offers_issued: offers.remove(&e.id.get()).unwrap_or_default(),
            event_arrived,
            time_zone: zones.get(&e.profile_id.get()).cloned(),
            ..Snapshot::default()
        };
        if *f {
            snap.row = rows.get(&e.profile_id.get()).cloned().unwrap_or_default();
            snap.journey = journey_facts(pool, c, now).await?;
        }
        out.push(snap);
    }
    Ok(out)
}

pub(super) async fn journey_facts(
    pool: &Pool,
    c: &ClaimedEnrolment,
    now: Timestamp,
) -> Result<JourneyFacts, StoreError> {
    let e = &c.enrolment;
    let since = Val::from(e.entered_at.as_micros());
    let mut facts = JourneyFacts {
        days_in_journey: e.entered_at.days_until(now),
        variant: e.variant.clone(),
        ..JourneyFacts::default()
    };
    facts.purchased = !pool
        .fetch(
            "SELECT 1 FROM orders o JOIN customers c ON c.id = o.customer_id WHERE (c.id = $1 OR c.profile_id = $1) AND o.ordered_at >= $2 LIMIT 1",
            &[Val::from(e.profile_id), since.clone()],
        )
        .await?
        .is_empty();
    let own = e.id.to_string();
    let own = own.as_str();
    for r in pool
        .fetch(
            "SELECT e.type, e.payload FROM events e JOIN customers c ON c.id = e.customer_id WHERE (c.id = $1 OR c.profile_id = $1) AND e.occurred_at >= $2 \
                 AND e.type IN ('email_opened', 'email_clicked', 'survey_answered', 'call_outcome') ORDER BY e.occurred_at",
            &[Val::from(e.profile_id), since],
        )
        .await?
    {
        let kind: EventKind = match serde_json::from_str(&r.text(1)?) {
            Ok(k) => k,
            Err(_) => continue,
        };
        // Message ids are idempotency keys: `campaign/enrolment/step/channel`.
        let step_of = |id: &Option<String>| {
            let parts: Vec<&str> = id.as_deref()?.split('/').collect();
            match parts[..] {
                [_, enrolment, step, _] if enrolment == own => Some(step.to_owned()),
                _ => None,
            }
        };
        match kind {
            EventKind::EmailOpened {
                message_id,
                machine,
                user_agent,
            } => {
                let machine = winback_domain::is_machine_open(machine, user_agent.as_deref());
                if !machine {
                    if let Some(s) = step_of(&message_id) {
                        facts.opened.push(s);
                    }
                }
            }
            EventKind::EmailClicked { message_id, .. } => {
                if let Some(s) = step_of(&message_id) {
                    // A click implies the message was seen.
                    facts.opened.push(s.clone());
                    facts.clicked.push(s);
                }
            }
            EventKind::SurveyAnswered {
                reason: Some(reason),
                ..
            } => facts.survey_reason = Some(reason.as_str().to_owned()),
            EventKind::CallOutcome {
                outcome, reason, ..
            } => {
                facts.call_outcome = Some(outcome.as_str().to_owned());
                if let Some(r) = reason {
                    facts.survey_reason = Some(r.as_str().to_owned());
                }
            }
            _ => {}
        }
    }
    facts.opened.dedup();
    facts.clicked.dedup();
    Ok(facts)
}

pub(crate) async fn apply_plans(
    pool: &Pool,
    plans: &[(ClaimedEnrolment, Plan)],
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let mut applied: HashSet<i64> = HashSet::new();
    const COLS: usize = 10;
    for chunk in plans.chunks(CHUNK / COLS * 4) {
        let mut args = Vec::with_capacity(chunk.len() * COLS);
        for (c, plan) in chunk {
            let (state, step, resume, due, waiting, since, ended, reason) = match &plan.next {
                Next::At {
                    step,
                    resume,
                    due_at,
                    waiting_event,
                } => (
                    "active",
                    *step as i64,
                    i64::from(*resume),
                    Some(due_at.as_micros()),
                    waiting_event.clone(),
                    waiting_event.as_ref().map(|_| now.as_micros()),
                    None,
                    None,
                ),
                Next::Done { state, reason } => (
                    state.as_str(),
                    c.enrolment.step as i64,
                    0,
                    None,
                    None,
                    None,
                    Some(now.as_micros()),
                    Some(reason.clone()),
                ),
            };
            args.extend([
                Val::from(c.enrolment.id),
                Val::from(c.fence),
                Val::from(state),
                Val::from(step),
                Val::from(resume),
                Val::from(due),
                Val::from(waiting),
                Val::from(since),
                Val::from(ended),
                Val::from(reason),
            ]);
        }
        let sql = format!(
            "WITH v(id, fence, state, step, resume, due_at, waiting_event, waiting_since, ended_at, end_reason) AS (VALUES {}) \
             UPDATE enrolments SET state = v.state, step = v.step, resume = v.resume, due_at = v.due_at, \
               waiting_event = v.waiting_event, waiting_since = v.waiting_since, ended_at = v.ended_at, end_reason = v.end_reason, \
               lease_owner = NULL, lease_until = NULL, fence = enrolments.fence + 1 \
             FROM v WHERE enrolments.id = v.id AND enrolments.fence = v.fence AND enrolments.state = 'active' RETURNING enrolments.id",
            values_list(chunk.len(), COLS)
        );
        for r in tx.fetch(&sql, &args).await? {
            applied.insert(r.i64(0)?);
        }
    }
    // Each message is counted under the contact's locale as it was when the message was queued
    // (the rollups key on it; see migration 13).
    let mut messaged: Vec<i64> = plans
        .iter()
        .filter(|(c, plan)| {
            applied.contains(&c.enrolment.id.get())
                && plan
                    .effects
                    .iter()
                    .any(|f| matches!(f, Effect::Message(_) | Effect::Webhook { .. }))
        })
        .map(|(c, _)| c.enrolment.profile_id.get())
        .collect();
    messaged.sort_unstable();
    messaged.dedup();
    let mut locales: HashMap<i64, String> = HashMap::new();
    for chunk in messaged.chunks(CHUNK) {
        let args: Vec<Val> = chunk.iter().map(|&id| Val::from(id)).collect();
        for r in tx
            .fetch(
                &format!(
                    "SELECT id, locale FROM customers WHERE id IN ({}) AND locale IS NOT NULL",
                    in_list(chunk.len())
                ),
                &args,
            )
            .await?
        {
            locales.insert(r.i64("id")?, r.text("locale")?);
        }
    }
    let locale_of = |profile: i64| -> Val {
        Val::from(
            locales
                .get(&profile)
                .map_or("default", String::as_str)
                .to_owned(),
        )
    };
    let mut outbox: Vec<Vec<Val>> = Vec::new();
    let mut offers: Vec<Vec<Val>> = Vec::new();
    let mut logs: Vec<Vec<Val>> = Vec::new();
    let mut exports: Vec<Vec<Val>> = Vec::new();
    let mut calls: Vec<Vec<Val>> = Vec::new();
    let mut passes: Vec<Vec<Val>> = Vec::new();
    for (c, plan) in plans {
        let e = &c.enrolment;
        if !applied.contains(&e.id.get()) {
            continue;
        }
        for effect in &plan.effects {
            match effect {
                Effect::Message(m) => outbox.push(vec![
                    Val::from(m.idempotency_key.as_str()),
                    Val::from(crate::migrate::key_digest(m.idempotency_key.as_str())),
                    Val::from(c.campaign_id),
                    Val::from(e.id),
                    Val::from(e.profile_id),
                    Val::from(m.step_id.as_str()),
                    Val::from(e.variant.as_str()),
                    Val::from(m.channel.as_str()),
                    Val::from(m.template.as_str()),
                    Val::from(m.subject.clone()),
                    Val::from(m.preheader.clone()),
                    Val::from(m.sender_name.clone()),
                    Val::from(None::<String>),
                    Val::from(i64::from(m.sunset)),
                    Val::from(m.not_before.as_micros()),
                    Val::from(now.as_micros()),
                    Val::from("pending"),
                    locale_of(e.profile_id.get()),
                ]),
                Effect::Webhook {
                    step_id,
                    url,
                    idempotency_key,
                } => outbox.push(vec![
                    Val::from(idempotency_key.as_str()),
                    Val::from(crate::migrate::key_digest(idempotency_key.as_str())),
                    Val::from(c.campaign_id),
                    Val::from(e.id),
                    Val::from(e.profile_id),
                    Val::from(step_id.as_str()),
                    Val::from(e.variant.as_str()),
                    Val::from("webhook"),
                    Val::from("webhook"),
                    Val::from(None::<String>),
                    Val::from(None::<String>),
                    Val::from(None::<String>),
                    Val::from(url.as_str()),
                    Val::from(0i64),
                    Val::from(now.as_micros()),
                    Val::from(now.as_micros()),
                    Val::from("pending"),
                    locale_of(e.profile_id.get()),
                ]),
                Effect::Offer { step_id, offer } => {
                    use winback_engine::definition::OfferKind;
                    let (amount, percent, sku) = match &offer.details.kind {
                        OfferKind::Fixed { amount_minor } => (Some(*amount_minor), None, None),
                        OfferKind::Percent { percent } => (None, Some(i64::from(*percent)), None),
                        OfferKind::FreeShipping => (None, None, None),
                        OfferKind::FreeProduct { sku, cost_minor } => {
                            (Some(*cost_minor), None, Some(sku.clone()))
                        }
                    };
                    offers.push(vec![
                        Val::from(offer.code.as_str()),
                        Val::from(c.campaign_id),
                        Val::from(e.id),
                        Val::from(e.profile_id),
                        Val::from(step_id.as_str()),
                        Val::from(e.variant.as_str()),
                        Val::from(offer.ladder.as_str()),
                        Val::from(offer.rung as i64),
                        Val::from(offer.details.kind.as_str()),
                        Val::from(amount),
                        Val::from(percent),
                        Val::from(sku),
                        Val::from(offer.currency.as_str()),
                        Val::from(offer.details.min_order_minor),
                        Val::from(i64::from(offer.details.uses)),
                        Val::from(now.as_micros()),
                        Val::from(offer.expires_at.as_micros()),
                        Val::from(offer.details.description(&offer.currency)),
                        Val::from("issued"),
                    ]);
                }
                Effect::Tag(tags) => {
                    for t in tags {
                        tx.execute(
                            "INSERT INTO contact_tags (profile_id, tag, added_at, source) VALUES ($1, $2, $3, $4) ON CONFLICT (profile_id, tag) DO NOTHING",
                            &[
                                Val::from(e.profile_id),
                                Val::from(t.as_str()),
                                Val::from(now.as_micros()),
                                Val::from(format!("campaign:{}", c.campaign_id)),
                            ],
                        )
                        .await?;
                    }
                }
                Effect::Untag(tags) => {
                    for t in tags {
                        tx.execute(
                            "DELETE FROM contact_tags WHERE profile_id = $1 AND tag = $2",
                            &[Val::from(e.profile_id), Val::from(t.as_str())],
                        )
                        .await?;
                    }
                }
                Effect::Unsubscribe { .. } => {
                    unsubscribe(&mut tx, e.profile_id.get(), c.campaign_id.get(), now).await?;
                }
                Effect::Export { step_id, target } => exports.push(vec![
                    Val::from(c.campaign_id),
                    Val::from(step_id.as_str()),
                    Val::from(target.as_str()),
                    Val::from(e.profile_id),
                    Val::from(now.as_micros()),
                    Val::from(e.variant.as_str()),
                ]),
                Effect::Wallet {
                    step_id,
                    style,
                    serial,
                } => passes.push(vec![
                    Val::from(serial.as_str()),
                    Val::from(c.campaign_id),
                    Val::from(e.profile_id),
                    Val::from(e.id),
                    Val::from(step_id.as_str()),
                    Val::from(e.variant.as_str()),
                    Val::from(style.as_str()),
                ]),
                Effect::Call { step_id, list } => calls.push(vec![
                    Val::from(c.campaign_id),
                    Val::from(e.id),
                    Val::from(e.profile_id),
                    Val::from(step_id.as_str()),
                    Val::from(e.variant.as_str()),
                    Val::from(list.as_str()),
                    Val::from(now.as_micros()),
                    Val::from("open"),
                ]),
                Effect::Log { step_id, what } => logs.push(vec![
                    Val::from(e.id),
                    Val::from(now.as_micros()),
                    Val::from(step_id.as_str()),
                    Val::from(what.as_str()),
                ]),
            }
        }
    }
    insert_rows(
        &mut tx,
        "INSERT INTO outbox (idempotency_key, key_digest, campaign_id, enrolment_id, profile_id, step, variant, channel, template, subject, preheader, sender_name, url, sunset, not_before, created_at, state, locale) \
         VALUES {} ON CONFLICT (idempotency_key) DO NOTHING",
        18,
        &outbox,
    )
    .await?;
    insert_rows(
        &mut tx,
        "INSERT INTO offers (code, campaign_id, enrolment_id, profile_id, step, variant, ladder, rung, kind, amount_minor, percent, sku, currency, min_order_minor, uses, issued_at, expires_at, description, state) \
         VALUES {} ON CONFLICT DO NOTHING",
        19,
        &offers,
    )
    .await?;
    insert_rows(
        &mut tx,
        "INSERT INTO journey_log (enrolment_id, at, step, what) VALUES {}",
        4,
        &logs,
    )
    .await?;
    insert_rows(
        &mut tx,
        "INSERT INTO audience_exports (campaign_id, step, target, profile_id, added_at, variant) VALUES {} ON CONFLICT DO NOTHING",
        6,
        &exports,
    )
    .await?;
    // After the offers: a pass carries the campaign's newest unexpired code, which this step's
    // own offer effect may just have issued. A pass the person holds already is updated.
    for p in &passes {
        let mut args = p.clone();
        args.push(Val::from(now.as_micros()));
        tx.execute(
            "INSERT INTO wallet_passes (serial, campaign_id, profile_id, enrolment_id, step, variant, style, offer_code, version, issued_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, \
               (SELECT o.code FROM offers o WHERE o.campaign_id = $2 AND o.profile_id = $3 AND o.expires_at > $8 AND o.state = 'issued' ORDER BY o.issued_at DESC, o.rung DESC LIMIT 1), \
               1, $8, $8) \
             ON CONFLICT (serial) DO UPDATE SET enrolment_id = excluded.enrolment_id, step = excluded.step, variant = excluded.variant, \
               style = excluded.style, offer_code = excluded.offer_code, version = wallet_passes.version + 1, updated_at = excluded.updated_at",
            &args,
        )
        .await?;
    }
    // Once per enrolment and step, like an outbox row's idempotency key.
    insert_rows(
        &mut tx,
        "INSERT INTO call_tasks (campaign_id, enrolment_id, profile_id, step, variant, list, added_at, state) VALUES {} ON CONFLICT DO NOTHING",
        8,
        &calls,
    )
    .await?;
    tx.commit().await?;
    Ok(applied.len() as u64)
}

pub(super) async fn insert_rows(
    tx: &mut Tx,
    template: &str,
    cols: usize,
    rows: &[Vec<Val>],
) -> Result<(), StoreError> {
    for chunk in rows.chunks((CHUNK * 4 / cols).max(1)) {
        let args: Vec<Val> = chunk.iter().flat_map(|r| r.iter().cloned()).collect();
        let sql = template.replacen("{}", &values_list(chunk.len(), cols), 1);
        tx.execute(&sql, &args).await?;
    }
    Ok(())
}

/// Withdraws the email consent of the profile's email record (a sunset).
pub(super) async fn unsubscribe(
    tx: &mut Tx,
    profile: i64,
    campaign_id: i64,
    now: Timestamp,
) -> Result<(), StoreError> {
    let record = tx
        .fetch(
            "SELECT c.id FROM customers c WHERE (c.id = $1 OR c.profile_id = $1) AND c.email IS NOT NULL AND c.erased_at IS NULL ORDER BY c.id LIMIT 1",
            &[Val::from(profile)],
        )
        .await?;
    if let Some(r) = record.first() {
        tx.execute(
            "INSERT INTO consent_ledger (customer_id, channel, status, source, wording_version, recorded_at, inserted_at) \
             VALUES ($1, 'email', 'withdrawn', $2, NULL, $3, $3) ON CONFLICT DO NOTHING",
            &[
                Val::from(r.i64(0)?),
                Val::from(format!("sunset:campaign:{campaign_id}")),
                Val::from(now.as_micros()),
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO feature_dirty (customer_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[Val::from(r.i64(0)?)],
        )
        .await?;
    }
    Ok(())
}
