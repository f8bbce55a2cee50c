//! The outbox: claiming due messages, the send-time checks under the contact's lock
//! (`prepare_send`), the outcome (`finish_send`: retries, bounces, suppression), the deliverability
//! ramp's window, and the reaper of expired leases.

use super::*;

/// A stored channel name as the engine's type; an unknown one is corrupt data, never a
/// webhook by default.
pub(super) fn message_channel(name: &str) -> Result<MessageChannel, StoreError> {
    MessageChannel::parse(name)
        .ok_or_else(|| StoreError::Data(format!("outbox row with unknown channel `{name}`")))
}

pub(crate) async fn claim_messages(
    pool: &Pool,
    worker: &str,
    now: Timestamp,
    lease_seconds: i64,
    limit: usize,
) -> Result<Vec<ClaimedMessage>, StoreError> {
    let lock = match pool.backend() {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE outbox SET state = 'claimed', lease_owner = $1, lease_until = $2, fence = fence + 1 WHERE id IN ( \
           SELECT id FROM outbox WHERE state = 'pending' AND not_before <= $3 ORDER BY not_before, id LIMIT $4 {lock}) \
         RETURNING id, fence, idempotency_key, channel, campaign_id, enrolment_id, profile_id"
    );
    let rows = claim_rows(pool, &sql, worker, now, lease_seconds, limit).await?;
    let mut out: Vec<ClaimedMessage> = rows
        .iter()
        .map(|r| {
            Ok(ClaimedMessage {
                id: r.i64("id")?,
                fence: r.i64("fence")?,
                key: winback_domain::MessageKey::stored(r.text("idempotency_key")?),
                channel: message_channel(&r.text("channel")?)?,
                campaign_id: winback_domain::CampaignId::new(r.i64("campaign_id")?),
                enrolment_id: winback_domain::EnrolmentId::new(r.i64("enrolment_id")?),
                profile_id: winback_domain::ProfileId::new(r.i64("profile_id")?),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    out.sort_by_key(|m| m.id);
    Ok(out)
}

/// Why the contact's journey has ended, checked at send time: the enrolment's own end, or an
/// order, unsubscribe or complaint since it entered that the exit sweep has not seen yet.
pub(super) async fn ended_reason(
    tx: &mut Tx,
    enrolment_id: i64,
    profile: i64,
) -> Result<Option<String>, StoreError> {
    let e = tx
        .fetch(
            "SELECT state, end_reason, entered_at FROM enrolments WHERE id = $1",
            &[Val::from(enrolment_id)],
        )
        .await?;
    let Some(e) = e.first() else {
        return Ok(Some("unknown enrolment".into()));
    };
    if e.text("state")? == "exited" {
        return Ok(Some(
            e.opt_text("end_reason")?.unwrap_or_else(|| "exited".into()),
        ));
    }
    let since = Val::from(e.i64("entered_at")?);
    let ordered = tx
        .fetch(
            "SELECT 1 FROM orders o JOIN customers c ON c.id = o.customer_id WHERE (c.id = $1 OR c.profile_id = $1) AND o.ordered_at >= $2 LIMIT 1",
            &[Val::from(profile), since.clone()],
        )
        .await?;
    if !ordered.is_empty() {
        return Ok(Some("purchased".into()));
    }
    let left = tx
        .fetch(
            "SELECT e.type FROM events e JOIN customers c ON c.id = e.customer_id WHERE (c.id = $1 OR c.profile_id = $1) AND e.occurred_at >= $2 AND e.type IN ('email_unsubscribed', 'email_complained') LIMIT 1",
            &[Val::from(profile), since],
        )
        .await?;
    Ok(match left.first() {
        Some(r) if r.text(0)? == "email_complained" => Some("complained".into()),
        Some(_) => Some("unsubscribed".into()),
        None => None,
    })
}

pub(crate) async fn prepare_send(
    pool: &Pool,
    salt: &str,
    m: &ClaimedMessage,
    now: Timestamp,
    lease_seconds: i64,
    decide: &(dyn Fn(&SendContext) -> Decision + Sync),
) -> Result<Option<(Decision, Option<Dispatch>)>, StoreError> {
    let mut tx = pool.begin().await?;
    if tx.backend() == Backend::Postgres {
        // Serialises every send to one contact: caps and unsubscribes are exact across workers.
        tx.execute(
            "SELECT id FROM customers WHERE id = $1 FOR UPDATE",
            &[Val::from(m.profile_id)],
        )
        .await?;
    }
    // The row stays locked until commit: without the lock, a reaper could release the claim
    // (and another worker claim and send it) between this check and the update below, and
    // both workers would send. The crash test caught exactly that.
    let row = tx
        .fetch(
            &format!(
                "SELECT state, fence, step, variant, template, subject, preheader, sender_name, url, sunset, created_at, channel FROM outbox WHERE id = $1{}",
                row_lock(&tx)
            ),
            &[Val::from(m.id)],
        )
        .await?;
    let Some(row) = row.first() else {
        return Ok(None);
    };
    if row.text("state")? != "claimed" || row.i64("fence")? != m.fence {
        return Ok(None);
    }
    let sunset = row.i64("sunset")? != 0;
    let message_channel = message_channel(&row.text("channel")?)?;
    let channel_name = message_channel.as_str();
    let channel: Option<Channel> = message_channel.consent();
    let records = tx
        .fetch(
            "SELECT c.id, c.email, c.phone, c.first_name, c.locale, c.time_zone, c.external_id FROM customers c WHERE (c.id = $1 OR c.profile_id = $1) AND c.erased_at IS NULL ORDER BY c.id",
            &[Val::from(m.profile_id)],
        )
        .await?;
    let first_of = |col: &str| -> Result<Option<String>, StoreError> {
        for r in &records {
            if let Some(v) = r.opt_text(col)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    };
    // Every address of the profile for the channel, in record order (a private and a work
    // address, say). Each has its own consent, folded from every record that carries it.
    let mut candidates: Vec<(i64, String)> = Vec::new();
    if let Some(ch) = channel {
        let col = if ch == Channel::Email {
            "email"
        } else {
            "phone"
        };
        for r in &records {
            if let Some(v) = r.opt_text(col)? {
                if !candidates.iter().any(|(_, a)| *a == v) {
                    candidates.push((r.i64("id")?, v));
                }
            }
        }
    }
    let ended = ended_reason(&mut tx, m.enrolment_id.get(), m.profile_id.get()).await?;
    let (address, consent_ok, suppressed, erased) = match channel {
        Some(ch) if !candidates.is_empty() => {
            let ids: Vec<i64> = candidates.iter().map(|(id, _)| *id).collect();
            let folded = crate::consent::for_records(&mut tx, &ids).await?;
            let buyer = !tx
                .fetch(
                    // A buyer as the features count one: an order that was not cancelled or
                    // refunded (a soft opt-in comes from a sale).
                    "SELECT 1 FROM orders o JOIN customers c ON c.id = o.customer_id WHERE (c.id = $1 OR c.profile_id = $1) AND o.status IN ('paid', 'pending', 'partially_refunded') LIMIT 1",
                    &[Val::from(m.profile_id)],
                )
                .await?
                .is_empty();
            // The first address that consents and is not suppressed; else the first address,
            // whose refusal is the reason recorded.
            let mut chosen: Option<((i64, String), bool, bool)> = None;
            let mut erased_address = false;
            for (id, addr) in &candidates {
                let ok =
                    winback_domain::Consent::allows_marketing_to(folded.for_record(*id, ch), buyer);
                // Suppressed, or an erased person's address that came back on another record.
                let erased =
                    crate::privacy::address_hash(salt, ch.as_str(), addr).unwrap_or_default();
                let hits = tx
                    .fetch(
                        "SELECT 'suppressed' FROM suppressions WHERE channel = $1 AND address = $2 AND active = 1 \
                         UNION ALL SELECT 'erased' FROM erased_identities WHERE hash = $3",
                        &[
                            Val::from(ch.as_str()),
                            Val::from(addr.as_str()),
                            Val::from(erased),
                        ],
                    )
                    .await?;
                let sup = !hits.is_empty();
                let is_erased = hits
                    .iter()
                    .any(|r| r.opt_str(0).ok().flatten() == Some("erased"));
                if chosen.is_none() || (ok && !sup) {
                    chosen = Some(((*id, addr.clone()), ok, sup));
                    erased_address = is_erased;
                }
                if ok && !sup {
                    break;
                }
            }
            let (a, ok, sup) = chosen.expect("at least one candidate address");
            (Some(a), ok, sup, erased_address)
        }
        Some(_) => (None, false, false, false),
        None => (row.opt_text("url")?.map(|u| (0, u)), true, false, false),
    };
    let recent = tx
        .fetch(
            "SELECT sent_at FROM outbox WHERE profile_id = $1 AND channel = $2 AND sunset = 0 AND sent_at > $3 AND state IN ('sending', 'sent', 'in_doubt') ORDER BY sent_at DESC",
            &[
                Val::from(m.profile_id),
                Val::from(channel_name),
                Val::from(now.as_micros() - 31 * 86_400_000_000),
            ],
        )
        .await?
        .iter()
        .map(|r| ts(r.i64(0)?))
        .collect::<Result<Vec<_>, _>>()?;
    // One read for the stored features, the preference centre's frequency and the channel's
    // transport pause (a round trip per message matters on this path).
    let profile = tx
        .fetch(
            "SELECT (SELECT data FROM profile_features WHERE profile_id = $1) AS features, \
                    (SELECT frequency FROM preferences WHERE profile_id = $1) AS frequency, \
                    (SELECT paused_until FROM transport_pauses WHERE channel = $2) AS paused_until, \
                    (SELECT reason FROM transport_pauses WHERE channel = $2) AS paused_why",
            &[Val::from(m.profile_id), Val::from(channel_name)],
        )
        .await?;
    let profile = profile
        .first()
        .ok_or_else(|| StoreError::Data("no row from a scalar select".into()))?;
    let email_inactive = match profile.opt_text("features")? {
        Some(data) => {
            let f: winback_domain::Features = serde_json::from_str(&data)?;
            let last = f.last_click_at.max(f.last_human_open_at);
            last.is_none_or(|t| t.days_until(now) > 180)
        }
        None => true,
    };
    let low_frequency = profile.opt_text("frequency")?.as_deref() == Some("low");
    let transport_pause = match (
        profile.opt_i64("paused_until")?,
        profile.opt_text("paused_why")?,
    ) {
        (Some(until), Some(why)) => Some((ts(until)?, why)),
        _ => None,
    };
    let provider = match (channel, &address) {
        (Some(Channel::Email), Some((_, a))) => Some(policy::mailbox_provider(a)),
        _ => None,
    };
    let ramp = match &provider {
        Some(p) => ramp_state(&mut tx, p).await?,
        None => None,
    };
    let ctx = SendContext {
        now,
        channel: channel.unwrap_or(Channel::Email),
        time_zone: first_of("time_zone")?,
        has_address: address.is_some(),
        consent_ok,
        suppressed,
        erased,
        enrolment_ended: ended,
        exempt_from_caps: sunset || channel.is_none(),
        recent_sends: recent,
        campaign_window: None,
        queued_at: ts(row.i64("created_at")?)?,
        email_inactive,
        ramp_position: winback_engine::experiment::unit_hash(&["ramp", &m.profile_id.to_string()]),
        provider: provider.clone(),
        ramp,
        personal_cap: low_frequency.then_some(policy::LOW_FREQUENCY_CAP),
        transport_pause,
    };
    // A webhook is not a marketing message: only the journey's end and the address matter.
    let decision = if channel.is_none() {
        match (&ctx.enrolment_ended, ctx.has_address) {
            (Some(r), _) => Decision::Drop(policy::DropReason::JourneyEnded(r.clone())),
            (None, false) => Decision::Drop(policy::DropReason::NoAddress),
            (None, true) => Decision::Send,
        }
    } else {
        decide(&ctx)
    };
    let mut dispatch = None;
    match &decision {
        Decision::Send => {
            let (_, to) = address.clone().expect("a send decision has an address");
            tx.execute(
                "UPDATE outbox SET state = 'sending', sent_at = $2, lease_until = $3, attempts = attempts + 1, recipient = $4, provider = $5 WHERE id = $1 AND fence = $6",
                &[
                    Val::from(m.id),
                    Val::from(now.as_micros()),
                    Val::from(now.as_micros() + lease_seconds * 1_000_000),
                    Val::from(to.as_str()),
                    Val::from(provider),
                    Val::from(m.fence),
                ],
            )
            .await?;
            let campaign = tx
                .fetch(
                    "SELECT name FROM campaigns WHERE id = $1",
                    &[Val::from(m.campaign_id)],
                )
                .await?
                .first()
                .map(|r| r.text(0))
                .transpose()?
                .unwrap_or_default();
            let offer = tx
                .fetch(
                    "SELECT code, description, expires_at, min_order_minor, kind, amount_minor, percent, currency, sku FROM offers WHERE enrolment_id = $1 AND state = 'issued' ORDER BY issued_at DESC, rung DESC LIMIT 1",
                    &[Val::from(m.enrolment_id)],
                )
                .await?
                .first()
                .map(|r| -> Result<OfferView, StoreError> {
                    let kind = r.text("kind")?;
                    Ok(OfferView {
                        code: r.text("code")?,
                        description: r.text("description")?,
                        expires_at: ts(r.i64("expires_at")?)?,
                        min_order_minor: r.i64("min_order_minor")?,
                        kind: winback_engine::definition::OfferKind::from_stored(
                            &kind,
                            r.opt_i64("amount_minor")?,
                            r.opt_i64("percent")?,
                            r.opt_text("sku")?,
                        )
                        .ok_or_else(|| {
                            StoreError::Data(format!("offer of unknown kind `{kind}` or without its amount"))
                        })?,
                        currency: r.text("currency")?,
                    })
                })
                .transpose()?;
            dispatch = Some(Dispatch {
                key: m.key.clone(),
                channel: message_channel,
                to,
                campaign,
                step: row.text("step")?,
                variant: row.text("variant")?,
                template: row.text("template")?,
                subject: row.opt_text("subject")?,
                preheader: row.opt_text("preheader")?,
                sender_name: row.opt_text("sender_name")?,
                customer: records
                    .first()
                    .map(|r| r.text("external_id"))
                    .transpose()?
                    .unwrap_or_default(),
                first_name: first_of("first_name")?,
                locale: first_of("locale")?,
                offer,
                products: Vec::new(),
            });
        }
        Decision::Defer { until, reason } => {
            tx.execute(
                "UPDATE outbox SET state = 'pending', not_before = $2, detail = $3, lease_owner = NULL, lease_until = NULL WHERE id = $1 AND fence = $4",
                &[
                    Val::from(m.id),
                    Val::from(until.as_micros()),
                    Val::from(reason.as_str()),
                    Val::from(m.fence),
                ],
            )
            .await?;
        }
        Decision::Drop(reason) => {
            tx.execute(
                "UPDATE outbox SET state = 'dropped', outcome = $2, settled_at = $3, lease_owner = NULL, lease_until = NULL WHERE id = $1 AND fence = $4",
                &[
                    Val::from(m.id),
                    Val::from(reason.label()),
                    Val::from(now.as_micros()),
                    Val::from(m.fence),
                ],
            )
            .await?;
            if sunset {
                unsubscribe(&mut tx, m.profile_id.get(), m.campaign_id.get(), now).await?;
            }
            // A win-back conversation never starts in the middle: when a journey's first
            // message is dropped (no consent, suppressed, erased, expired), the journey ends, so
            // "tell us why" or a farewell is never the first thing a person receives. Later
            // drops leave the journey to its own steps.
            let message_channel = channel.is_some();
            let ended_already = matches!(reason, policy::DropReason::JourneyEnded(_));
            if message_channel && !ended_already {
                let delivered_before = !tx
                    .fetch(
                        "SELECT 1 FROM outbox WHERE enrolment_id = $1 AND id <> $2 AND channel IN ('email', 'sms') AND state IN ('sending', 'sent', 'in_doubt') LIMIT 1",
                        &[Val::from(m.enrolment_id), Val::from(m.id)],
                    )
                    .await?
                    .is_empty();
                if !delivered_before {
                    tx.execute(
                        "UPDATE enrolments SET state = 'exited', end_reason = $2, ended_at = $3, due_at = NULL, lease_owner = NULL, lease_until = NULL \
                         WHERE id = $1 AND state = 'active'",
                        &[
                            Val::from(m.enrolment_id),
                            Val::from(format!("first_message_dropped:{}", reason.label())),
                            Val::from(now.as_micros()),
                        ],
                    )
                    .await?;
                    tx.execute(
                        "UPDATE outbox SET state = 'cancelled', outcome = 'journey_ended:first_message_dropped', settled_at = $2, lease_owner = NULL, lease_until = NULL \
                         WHERE enrolment_id = $1 AND state = 'pending'",
                        &[Val::from(m.enrolment_id), Val::from(now.as_micros())],
                    )
                    .await?;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(Some((decision, dispatch)))
}

/// `FOR UPDATE` on PostgreSQL, where a checked row must stay as read until commit; SQLite's
/// `BEGIN IMMEDIATE` already excludes every other writer.
pub(super) fn row_lock(tx: &Tx) -> &'static str {
    match tx.backend() {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    }
}

pub(crate) async fn finish_send(
    pool: &Pool,
    m: &ClaimedMessage,
    outcome: &SendOutcome,
    now: Timestamp,
    ramp: &(dyn Fn(Option<RampState>, &str, ProviderStats) -> RampState + Sync),
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let row = tx
        .fetch(
            &format!(
                "SELECT state, fence, attempts, recipient, provider, sunset, channel FROM outbox WHERE id = $1{}",
                row_lock(&tx)
            ),
            &[Val::from(m.id)],
        )
        .await?;
    let Some(row) = row.first() else {
        return Ok(false);
    };
    if row.text("state")? != "sending" || row.i64("fence")? != m.fence {
        return Ok(false);
    }
    let attempts = row.i64("attempts")?;
    let recipient = row.opt_text("recipient")?.unwrap_or_default();
    let provider = row.opt_text("provider")?;
    let sunset = row.i64("sunset")? != 0;
    let channel = row.text("channel")?;
    let micros = now.as_micros();
    let settle = |state: &str,
                  outcome: &str,
                  detail: Option<String>,
                  provider_id: Option<String>| {
        (
            "UPDATE outbox SET state = $2, outcome = $3, detail = $4, provider_id = $5, settled_at = $6, lease_owner = NULL, lease_until = NULL WHERE id = $1",
            vec![
                Val::from(m.id),
                Val::from(state),
                Val::from(outcome),
                Val::from(detail),
                Val::from(provider_id),
                Val::from(micros),
            ],
        )
    };
    let mut settled = true;
    let (sql, args) = match outcome {
        SendOutcome::Sent { provider_id } => {
            // The transport works again: its breaker closes.
            tx.execute(
                "DELETE FROM transport_pauses WHERE channel = $1",
                &[Val::from(channel.as_str())],
            )
            .await?;
            settle("sent", "sent", None, provider_id.clone())
        }
        SendOutcome::TransportFailure(why) => {
            // About the relay or provider, not the recipient: nobody is suppressed, the
            // attempt does not count against the message, and the channel pauses with a
            // growing backoff (a half-open breaker: the first send after the pause probes it).
            settled = false;
            let failures = tx
                .fetch(
                    "SELECT failures FROM transport_pauses WHERE channel = $1",
                    &[Val::from(channel.as_str())],
                )
                .await?
                .first()
                .map(|r| r.i64(0))
                .transpose()?
                .unwrap_or(0)
                + 1;
            let until = micros + policy::transport_backoff_seconds(failures) * 1_000_000;
            tx.execute(
                "INSERT INTO transport_pauses (channel, reason, failures, paused_since, paused_until) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (channel) DO UPDATE SET reason = excluded.reason, failures = excluded.failures, paused_until = excluded.paused_until",
                &[
                    Val::from(channel.as_str()),
                    Val::from(why.chars().take(300).collect::<String>()),
                    Val::from(failures),
                    Val::from(micros),
                    Val::from(until),
                ],
            )
            .await?;
            (
                "UPDATE outbox SET state = 'pending', not_before = $2, detail = $3, attempts = attempts - 1, lease_owner = NULL, lease_until = NULL WHERE id = $1",
                vec![
                    Val::from(m.id),
                    Val::from(until),
                    Val::from(format!("transport paused: {why}")),
                ],
            )
        }
        SendOutcome::HardBounce(why) => {
            suppress(&mut tx, &channel, &recipient, "hard_bounce", now).await?;
            settle("failed", "hard_bounce", Some(why.clone()), None)
        }
        SendOutcome::SoftBounce(why) | SendOutcome::Failed(why) => {
            let soft = matches!(outcome, SendOutcome::SoftBounce(_));
            let bounces = if soft {
                soft_bounce(&mut tx, &channel, &recipient, now).await?
            } else {
                0
            };
            // The engine's policy: retries at 15 minutes, 1 hour and 4 hours; a soft bounce
            // after the third failed retry suppresses the address, as does its fourth soft
            // bounce across messages.
            let retry = policy::retry_after_seconds(attempts);
            if retry.is_none() || policy::soft_bounces_suppress(bounces) {
                if soft {
                    suppress(&mut tx, &channel, &recipient, "soft_bounces", now).await?;
                }
                settle(
                    "failed",
                    if soft { "soft_bounce" } else { "failed" },
                    Some(why.clone()),
                    None,
                )
            } else {
                settled = false;
                let wait = retry.unwrap_or_default();
                (
                    "UPDATE outbox SET state = 'pending', not_before = $2, detail = $3, lease_owner = NULL, lease_until = NULL WHERE id = $1",
                    vec![
                        Val::from(m.id),
                        Val::from(micros + wait * 1_000_000),
                        Val::from(why.as_str()),
                    ],
                )
            }
        }
    };
    tx.execute(sql, &args).await?;
    if settled && sunset {
        unsubscribe(&mut tx, m.profile_id.get(), m.campaign_id.get(), now).await?;
    }
    if let Some(p) = provider {
        let hard = matches!(outcome, SendOutcome::HardBounce(_));
        // Only settled attempts count, as the window's rates are per attempt.
        let (state, mut window) = ramp_window(&mut tx, &p).await?;
        if settled {
            window.cur.attempts += 1;
            window.cur.hard_bounces += u64::from(hard);
        }
        let stats = window.stats();
        let next = ramp(state, &p, stats);
        if window.cur.attempts >= RAMP_BUCKET {
            window.prev = window.cur;
            window.cur = ProviderStats::default();
        }
        tx.execute(
            "INSERT INTO provider_ramp (provider, share, attempts_at_share, paused, updated_at, cur_attempts, cur_hard, cur_complaints, prev_attempts, prev_hard, prev_complaints) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (provider) DO UPDATE SET share = excluded.share, attempts_at_share = excluded.attempts_at_share, paused = excluded.paused, updated_at = excluded.updated_at, \
             cur_attempts = excluded.cur_attempts, cur_hard = excluded.cur_hard, cur_complaints = excluded.cur_complaints, \
             prev_attempts = excluded.prev_attempts, prev_hard = excluded.prev_hard, prev_complaints = excluded.prev_complaints",
            &[
                Val::from(p.as_str()),
                Val::from(Some(next.share)),
                Val::from(next.attempts_at_share as i64),
                Val::from(next.paused),
                Val::from(micros),
                Val::from(window.cur.attempts as i64),
                Val::from(window.cur.hard_bounces as i64),
                Val::from(window.cur.complaints as i64),
                Val::from(window.prev.attempts as i64),
                Val::from(window.prev.hard_bounces as i64),
                Val::from(window.prev.complaints as i64),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Attempts per bucket of the ramp's window: the window holds the current bucket and the one
/// before, so its rates always cover at least the last 1,000 attempts once it has filled (the
/// policy needs 500 or more).
pub(super) const RAMP_BUCKET: u64 = 1000;

/// The ramp's window of recent attempts, as running counts in two buckets.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RampWindow {
    cur: ProviderStats,
    prev: ProviderStats,
}

impl RampWindow {
    fn stats(&self) -> ProviderStats {
        ProviderStats {
            attempts: self.cur.attempts + self.prev.attempts,
            hard_bounces: self.cur.hard_bounces + self.prev.hard_bounces,
            complaints: self.cur.complaints + self.prev.complaints,
        }
    }
}

/// A mailbox provider's stored ramp (`None` before its first attempt) and its window.
pub(super) async fn ramp_window(
    tx: &mut Tx,
    provider: &str,
) -> Result<(Option<RampState>, RampWindow), StoreError> {
    let rows = tx
        .fetch(
            "SELECT share, attempts_at_share, paused, cur_attempts, cur_hard, cur_complaints, prev_attempts, prev_hard, prev_complaints \
             FROM provider_ramp WHERE provider = $1",
            &[Val::from(provider)],
        )
        .await?;
    let Some(r) = rows.first() else {
        return Ok((None, RampWindow::default()));
    };
    let state = RampState {
        provider: provider.to_owned(),
        share: r.opt_f64("share")?.unwrap_or(0.0),
        attempts_at_share: r.i64("attempts_at_share")? as u64,
        paused: r.opt_text("paused")?,
    };
    // The window's two buckets: `cur_…` and `prev_…` columns.
    let bucket = |b: &str| -> Result<ProviderStats, StoreError> {
        Ok(ProviderStats {
            attempts: r.i64(format!("{b}_attempts").as_str())? as u64,
            hard_bounces: r.i64(format!("{b}_hard").as_str())? as u64,
            complaints: r.i64(format!("{b}_complaints").as_str())? as u64,
        })
    };
    Ok((
        Some(state),
        RampWindow {
            cur: bucket("cur")?,
            prev: bucket("prev")?,
        },
    ))
}

/// One mailbox provider's ramp and breaker window, as the engine last stored them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProviderRamp {
    /// Provider (see `winback_engine::policy::mailbox_provider`).
    pub provider: String,
    /// Share of email-inactive contacts admitted.
    pub share: f64,
    /// Why the breaker paused the provider, if it did.
    pub paused: Option<String>,
    /// Attempts in the breaker's window.
    pub window_attempts: i64,
    /// Hard bounces in the window.
    pub window_hard_bounces: i64,
    /// Complaints in the window.
    pub window_complaints: i64,
}

pub(crate) async fn provider_ramps(pool: &Pool) -> Result<Vec<ProviderRamp>, StoreError> {
    pool.fetch(
        "SELECT provider, share, paused, cur_attempts + prev_attempts AS attempts, cur_hard + prev_hard AS hard, cur_complaints + prev_complaints AS complaints \
         FROM provider_ramp ORDER BY provider",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(ProviderRamp {
            provider: r.text("provider")?,
            share: r.opt_f64("share")?.unwrap_or(0.0),
            paused: r.opt_text("paused")?,
            window_attempts: r.i64("attempts")?,
            window_hard_bounces: r.i64("hard")?,
            window_complaints: r.i64("complaints")?,
        })
    })
    .collect()
}

/// A mailbox provider's stored ramp; `None` before its first attempt.
pub(super) async fn ramp_state(
    tx: &mut Tx,
    provider: &str,
) -> Result<Option<RampState>, StoreError> {
    Ok(ramp_window(tx, provider).await?.0)
}

pub(crate) async fn suppress(
    tx: &mut Tx,
    channel: &str,
    address: &str,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO suppressions (channel, address, reason, created_at, active) VALUES ($1, $2, $3, $4, 1) \
         ON CONFLICT (channel, address) DO UPDATE SET active = 1, reason = excluded.reason",
        &[
            Val::from(channel),
            Val::from(address),
            Val::from(reason),
            Val::from(now.as_micros()),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn soft_bounce(
    tx: &mut Tx,
    channel: &str,
    address: &str,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let rows = tx
        .fetch(
            "INSERT INTO suppressions (channel, address, reason, created_at, soft_bounces, active) VALUES ($1, $2, 'soft_bounce', $3, 1, 0) \
             ON CONFLICT (channel, address) DO UPDATE SET soft_bounces = suppressions.soft_bounces + 1 RETURNING soft_bounces",
            &[Val::from(channel), Val::from(address), Val::from(now.as_micros())],
        )
        .await?;
    rows.first()
        .map(|r| r.i64(0))
        .transpose()
        .map(|v| v.unwrap_or(0))
}

pub(crate) async fn reap(pool: &Pool, now: Timestamp) -> Result<Reaped, StoreError> {
    let mut tx = pool.begin().await?;
    let n = Val::from(now.as_micros());
    let released = tx
        .execute(
            "UPDATE outbox SET state = 'pending', lease_owner = NULL, lease_until = NULL WHERE state = 'claimed' AND lease_until < $1",
            std::slice::from_ref(&n),
        )
        .await?;
    let in_doubt = tx
        .execute(
            "UPDATE outbox SET state = 'in_doubt', outcome = 'in_doubt', settled_at = $1, lease_owner = NULL, lease_until = NULL WHERE state = 'sending' AND lease_until < $1",
            &[n],
        )
        .await?;
    tx.commit().await?;
    Ok(Reaped { released, in_doubt })
}
