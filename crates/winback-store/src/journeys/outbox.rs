//! The outbox: claiming due messages, the send-time checks under the contacts' locks
//! (`prepare_sends`, a batch at a time), the outcomes (`finish_sends`: retries, bounces,
//! suppression), the deliverability ramp's window, and the reaper of expired leases.

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

/// One customer record of a profile, as the send-time checks read it.
struct Record {
    id: i64,
    email: Option<String>,
    email_key: Option<String>,
    phone: Option<String>,
    first_name: Option<String>,
    locale: Option<String>,
    time_zone: Option<String>,
    external_id: String,
}

/// What one batch's reads found, by profile, enrolment and address, before any decision.
#[derive(Default)]
struct BatchFacts {
    rows: HashMap<i64, crate::db::DbRow>,
    records: HashMap<i64, Vec<Record>>,
    /// Per message: the journey's end already known (exited), or since entry.
    ended: HashMap<i64, Option<String>>,
    buyers: HashSet<i64>,
    suppressed: HashSet<(String, String)>,
    erased: HashSet<String>,
    recent: HashMap<(i64, String), Vec<Timestamp>>,
    features: HashMap<i64, String>,
    frequency: HashMap<i64, String>,
    pauses: HashMap<String, (i64, String)>,
    offers: HashMap<i64, OfferView>,
    /// The wallet pass each journey issued, by enrolment.
    passes: HashMap<i64, String>,
    campaigns: HashMap<i64, String>,
    /// Consent folded for every record of the batch's profiles. Read once: a decision that
    /// changes consent (a sunset's unsubscribe) holds back every later message of its contact
    /// and addresses to the next batch.
    consent: crate::consent::Folded,
}

/// Every read the send-time checks of `batch` need, one statement per kind for the whole batch
/// (a round trip per check per message was most of a send's time).
async fn batch_facts(
    tx: &mut Tx,
    salt: &str,
    batch: &[ClaimedMessage],
    now: Timestamp,
) -> Result<BatchFacts, StoreError> {
    let mut f = BatchFacts::default();
    let ids: Vec<i64> = batch.iter().map(|m| m.id).collect();
    let mut profiles: Vec<i64> = batch.iter().map(|m| m.profile_id.get()).collect();
    profiles.sort_unstable();
    profiles.dedup();
    let mut enrolments: Vec<i64> = batch.iter().map(|m| m.enrolment_id.get()).collect();
    enrolments.sort_unstable();
    enrolments.dedup();
    if tx.backend() == Backend::Postgres {
        // Serialises every send to one contact: caps and unsubscribes are exact across workers.
        // In id order, so that two workers' batches never wait for each other in a cycle.
        fetch_in(
            tx,
            "SELECT id FROM customers WHERE id IN ({ids}) ORDER BY id FOR UPDATE",
            &profiles,
        )
        .await?;
    }
    // The rows stay locked until commit: without the lock, a reaper could release a claim (and
    // another worker claim and send it) between this check and the update, and both workers
    // would send. The crash test caught exactly that.
    let sql = format!(
        "SELECT id, state, fence, step, variant, template, subject, preheader, sender_name, url, sunset, created_at, channel \
         FROM outbox WHERE id IN ({{ids}}){}",
        row_lock(tx)
    );
    for r in fetch_in(tx, &sql, &ids).await? {
        f.rows.insert(r.i64("id")?, r);
    }
    // A profile's records are its own row and the rows merged into it, in record order.
    for r in fetch_in(
        tx,
        &"SELECT c.id, c.profile_id, c.email, c.email_key, c.phone, c.first_name, c.locale, c.time_zone, c.external_id \
          FROM customers c WHERE (c.id IN ({ids}) OR c.profile_id IN ({ids2})) AND c.erased_at IS NULL ORDER BY c.id"
            .replace("{ids2}", "{ids}"),
        &profiles,
    )
    .await?
    {
        let id = r.i64("id")?;
        let owner = r.opt_i64("profile_id")?;
        let rec = || -> Result<Record, StoreError> {
            Ok(Record {
                id,
                email: r.opt_text("email")?,
                email_key: r.opt_text("email_key")?,
                phone: r.opt_text("phone")?,
                first_name: r.opt_text("first_name")?,
                locale: r.opt_text("locale")?,
                time_zone: r.opt_text("time_zone")?,
                external_id: r.text("external_id")?,
            })
        };
        if profiles.binary_search(&id).is_ok() {
            f.records.entry(id).or_default().push(rec()?);
        }
        if let Some(p) = owner.filter(|p| *p != id && profiles.binary_search(p).is_ok()) {
            f.records.entry(p).or_default().push(rec()?);
        }
    }
    // Why a journey has ended, checked at send time: the enrolment's own end, or an order,
    // unsubscribe or complaint since it entered that the exit sweep has not seen yet.
    let of_profile = "(c.id = ob.profile_id OR c.profile_id = ob.profile_id)";
    for r in fetch_in(
        tx,
        &format!(
            "SELECT ob.id, e.state, e.end_reason, \
               CASE WHEN EXISTS (SELECT 1 FROM orders o JOIN customers c ON c.id = o.customer_id WHERE {of_profile} AND o.ordered_at >= e.entered_at) THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END AS ordered, \
               CASE WHEN EXISTS (SELECT 1 FROM events v JOIN customers c ON c.id = v.customer_id WHERE {of_profile} AND v.occurred_at >= e.entered_at AND v.type = 'email_complained') THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END AS complained, \
               CASE WHEN EXISTS (SELECT 1 FROM events v JOIN customers c ON c.id = v.customer_id WHERE {of_profile} AND v.occurred_at >= e.entered_at AND v.type = 'email_unsubscribed') THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END AS unsubscribed \
             FROM outbox ob JOIN enrolments e ON e.id = ob.enrolment_id WHERE ob.id IN ({{ids}})"
        ),
        &ids,
    )
    .await?
    {
        let reason = if r.text("state")? == "exited" {
            Some(r.opt_text("end_reason")?.unwrap_or_else(|| "exited".into()))
        } else if r.i64("ordered")? != 0 {
            Some("purchased".into())
        } else if r.i64("complained")? != 0 {
            Some("complained".into())
        } else if r.i64("unsubscribed")? != 0 {
            Some("unsubscribed".into())
        } else {
            None
        };
        f.ended.insert(r.i64("id")?, reason);
    }
    let mut record_ids: Vec<i64> = f.records.values().flatten().map(|r| r.id).collect();
    record_ids.sort_unstable();
    record_ids.dedup();
    f.consent = crate::consent::for_records(tx, &record_ids).await?;
    // A buyer as the features count one: an order that was not cancelled or refunded (a soft
    // opt-in comes from a sale).
    for r in fetch_in(
        tx,
        "SELECT c.id, c.profile_id FROM customers c WHERE (c.id IN ({ids}) OR c.profile_id IN ({ids})) \
         AND EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.status IN ('paid', 'pending', 'partially_refunded'))",
        &profiles,
    )
    .await?
    {
        let id = r.i64("id")?;
        if profiles.binary_search(&id).is_ok() {
            f.buyers.insert(id);
        }
        if let Some(p) = r.opt_i64("profile_id")? {
            f.buyers.insert(p);
        }
    }
    // Suppressions and erased people's addresses, for every address the batch may use.
    let mut addresses: Vec<String> = Vec::new();
    let mut hashes: Vec<String> = Vec::new();
    for recs in f.records.values() {
        for r in recs {
            if let Some(e) = &r.email {
                addresses.push(e.clone());
                hashes.extend(crate::privacy::address_hash(salt, "email", e));
            }
            if let Some(p) = &r.phone {
                addresses.push(p.clone());
                hashes.extend(crate::privacy::address_hash(salt, "sms", p));
            }
        }
    }
    addresses.sort_unstable();
    addresses.dedup();
    hashes.sort_unstable();
    hashes.dedup();
    for r in fetch_in(
        tx,
        "SELECT channel, address FROM suppressions WHERE active = 1 AND address IN ({ids})",
        &addresses,
    )
    .await?
    {
        f.suppressed
            .insert((r.text("channel")?, r.text("address")?));
    }
    for r in fetch_in(
        tx,
        "SELECT hash FROM erased_identities WHERE hash IN ({ids})",
        &hashes,
    )
    .await?
    {
        f.erased.insert(r.text(0)?);
    }
    // Sends of the last 31 days, for the frequency caps (the cutoff is an integer, written
    // into the statement so the profiles' list can take the parameters).
    let cutoff = now.as_micros() - 31 * 86_400_000_000;
    for r in fetch_in(
        tx,
        &format!(
            "SELECT profile_id, channel, sent_at FROM outbox WHERE profile_id IN ({{ids}}) AND sunset = 0 AND sent_at > {cutoff} \
             AND state IN ('sending', 'sent', 'in_doubt') ORDER BY sent_at DESC"
        ),
        &profiles,
    )
    .await?
    {
        f.recent
            .entry((r.i64("profile_id")?, r.text("channel")?))
            .or_default()
            .push(ts(r.i64("sent_at")?)?);
    }
    for r in fetch_in(
        tx,
        "SELECT profile_id, data FROM profile_features WHERE profile_id IN ({ids})",
        &profiles,
    )
    .await?
    {
        f.features.insert(r.i64("profile_id")?, r.text("data")?);
    }
    for r in fetch_in(
        tx,
        "SELECT profile_id, frequency FROM preferences WHERE profile_id IN ({ids})",
        &profiles,
    )
    .await?
    {
        if let Some(freq) = r.opt_text("frequency")? {
            f.frequency.insert(r.i64("profile_id")?, freq);
        }
    }
    for r in tx
        .fetch(
            "SELECT channel, paused_until, reason FROM transport_pauses",
            &[],
        )
        .await?
    {
        f.pauses.insert(
            r.text("channel")?,
            (r.i64("paused_until")?, r.text("reason")?),
        );
    }
    for r in tx.fetch("SELECT id, name FROM campaigns", &[]).await? {
        f.campaigns.insert(r.i64("id")?, r.text("name")?);
    }
    // The wallet pass of each journey that issued one.
    for r in fetch_in(
        tx,
        "SELECT enrolment_id, serial FROM wallet_passes WHERE enrolment_id IN ({ids})",
        &enrolments,
    )
    .await?
    {
        f.passes.insert(r.i64("enrolment_id")?, r.text("serial")?);
    }
    // The newest issued offer of each journey.
    for r in fetch_in(
        tx,
        "SELECT enrolment_id, code, description, expires_at, min_order_minor, kind, amount_minor, percent, currency, sku \
         FROM offers WHERE enrolment_id IN ({ids}) AND state = 'issued' ORDER BY enrolment_id, issued_at DESC, rung DESC",
        &enrolments,
    )
    .await?
    {
        let enrolment = r.i64("enrolment_id")?;
        if f.offers.contains_key(&enrolment) {
            continue;
        }
        let kind = r.text("kind")?;
        f.offers.insert(
            enrolment,
            OfferView {
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
            },
        );
    }
    Ok(f)
}

/// The send-time checks of a batch of claimed messages, in one transaction that locks their
/// contacts: reads every fact once for the batch, asks `decide` about each message in order,
/// and records the decisions (`sending`, deferred, dropped).
///
/// A message whose contact, or one of whose addresses, an earlier message of the batch already
/// has is left claimed and answered [`Prepared::Later`]: the caller prepares it after the
/// earlier one's outcome is recorded, so one contact's caps, unsubscribes and suppressions read
/// exactly as they would one message at a time.
pub(crate) async fn prepare_sends(
    pool: &Pool,
    salt: &str,
    batch: &[ClaimedMessage],
    now: Timestamp,
    lease_seconds: i64,
    decide: &(dyn Fn(&ClaimedMessage, &SendContext) -> Decision + Sync),
) -> Result<Vec<Prepared>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    let facts = batch_facts(&mut tx, salt, batch, now).await?;
    let mut taken: HashSet<String> = HashSet::new();
    let mut state = BatchState::default();
    let mut out = Vec::with_capacity(batch.len());
    for m in batch {
        let Some(row) = facts.rows.get(&m.id) else {
            out.push(Prepared::Lost);
            continue;
        };
        if row.text("state")? != "claimed" || row.i64("fence")? != m.fence {
            out.push(Prepared::Lost);
            continue;
        }
        let records: &[Record] = facts
            .records
            .get(&m.profile_id.get())
            .map_or(&[], Vec::as_slice);
        // The contact and every address it may be reached on: one message each per batch.
        let mut keys = vec![format!("profile:{}", m.profile_id.get())];
        for r in records {
            keys.extend(r.email.iter().map(|e| format!("email:{e}")));
            keys.extend(r.email_key.iter().map(|e| format!("email_key:{e}")));
            keys.extend(r.phone.iter().map(|p| format!("phone:{p}")));
        }
        if keys.iter().any(|k| taken.contains(k)) {
            out.push(Prepared::Later);
            continue;
        }
        taken.extend(keys);
        let (decision, dispatch) = decide_one(
            &mut tx, &facts, &mut state, salt, row, records, m, now, decide,
        )
        .await?;
        out.push(Prepared::Decided(decision, dispatch));
    }
    mark_sending(&mut tx, &state.sends, now, lease_seconds).await?;
    tx.commit().await?;
    Ok(out)
}

/// What a batch's decisions carry from one message to the next.
#[derive(Default)]
struct BatchState {
    /// Each mailbox provider's ramp, read once: it moves only when outcomes are recorded.
    ramps: HashMap<String, Option<RampState>>,
    /// The sends decided: (id, fence, recipient, provider).
    sends: Vec<(i64, i64, String, Option<String>)>,
}

/// Marks a batch's sends `sending` in one statement per hundred (one round trip per message
/// was a third of a batch's checks). The rows are locked and checked in this transaction; the
/// fence is checked again all the same.
async fn mark_sending(
    tx: &mut Tx,
    sends: &[(i64, i64, String, Option<String>)],
    now: Timestamp,
    lease_seconds: i64,
) -> Result<(), StoreError> {
    for chunk in sends.chunks(CHUNK / 4) {
        let n = chunk.len() * 4;
        let mut args: Vec<Val> = Vec::with_capacity(n + 2);
        for (id, fence, to, provider) in chunk {
            args.extend([
                Val::from(*id),
                Val::from(*fence),
                Val::from(to.as_str()),
                Val::from(provider.clone()),
            ]);
        }
        args.push(Val::from(now.as_micros()));
        args.push(Val::from(now.as_micros() + lease_seconds * 1_000_000));
        tx.execute(
            &format!(
                "UPDATE outbox SET state = 'sending', sent_at = ${}, lease_until = ${}, attempts = attempts + 1, \
                 recipient = v.column3, provider = v.column4 FROM (VALUES {}) AS v \
                 WHERE outbox.id = v.column1 AND outbox.fence = v.column2",
                n + 1,
                n + 2,
                values_list(chunk.len(), 4)
            ),
            &args,
        )
        .await?;
    }
    Ok(())
}

/// One message's checks from the batch's facts, and its decision recorded.
#[allow(clippy::too_many_arguments)]
async fn decide_one(
    tx: &mut Tx,
    facts: &BatchFacts,
    state: &mut BatchState,
    salt: &str,
    row: &crate::db::DbRow,
    records: &[Record],
    m: &ClaimedMessage,
    now: Timestamp,
    decide: &(dyn Fn(&ClaimedMessage, &SendContext) -> Decision + Sync),
) -> Result<(Decision, Option<Box<Dispatch>>), StoreError> {
    let profile_id = m.profile_id.get();
    let sunset = row.i64("sunset")? != 0;
    let message_channel = message_channel(&row.text("channel")?)?;
    let channel_name = message_channel.as_str();
    let channel: Option<Channel> = message_channel.consent();
    let first_of = |get: fn(&Record) -> &Option<String>| -> Option<String> {
        records.iter().find_map(|r| get(r).clone())
    };
    // Every address of the profile for the channel, in record order (a private and a work
    // address, say). Each has its own consent, folded from every record that carries it.
    let mut candidates: Vec<(i64, String)> = Vec::new();
    if let Some(ch) = channel {
        for r in records {
            let v = if ch == Channel::Email {
                &r.email
            } else {
                &r.phone
            };
            if let Some(v) = v {
                if !candidates.iter().any(|(_, a)| a == v) {
                    candidates.push((r.id, v.clone()));
                }
            }
        }
    }
    let ended = facts
        .ended
        .get(&m.id)
        .cloned()
        .unwrap_or_else(|| Some("unknown enrolment".into()));
    let (address, consent_ok, suppressed, erased) = match channel {
        Some(ch) if !candidates.is_empty() => {
            let folded = &facts.consent;
            let buyer = facts.buyers.contains(&profile_id);
            // The first address that consents and is not suppressed; else the first address,
            // whose refusal is the reason recorded.
            let mut chosen: Option<((i64, String), bool, bool, bool)> = None;
            for (id, addr) in &candidates {
                let ok =
                    winback_domain::Consent::allows_marketing_to(folded.for_record(*id, ch), buyer);
                // Suppressed, or an erased person's address that came back on another record.
                let hash = crate::privacy::address_hash(salt, ch.as_str(), addr);
                let is_erased = hash.is_some_and(|h| facts.erased.contains(&h));
                let sup = is_erased
                    || facts
                        .suppressed
                        .contains(&(ch.as_str().to_owned(), addr.clone()));
                if chosen.is_none() || (ok && !sup) {
                    chosen = Some(((*id, addr.clone()), ok, sup, is_erased));
                }
                if ok && !sup {
                    break;
                }
            }
            let (a, ok, sup, is_erased) = chosen.expect("at least one candidate address");
            (Some(a), ok, sup, is_erased)
        }
        Some(_) => (None, false, false, false),
        None => (row.opt_text("url")?.map(|u| (0, u)), true, false, false),
    };
    let recent = facts
        .recent
        .get(&(profile_id, channel_name.to_owned()))
        .cloned()
        .unwrap_or_default();
    let email_inactive = match facts.features.get(&profile_id) {
        Some(data) => {
            let f: winback_domain::Features = serde_json::from_str(data)?;
            let last = f.last_click_at.max(f.last_human_open_at);
            last.is_none_or(|t| t.days_until(now) > 180)
        }
        None => true,
    };
    let low_frequency = facts.frequency.get(&profile_id).map(String::as_str) == Some("low");
    let transport_pause = match facts.pauses.get(channel_name) {
        Some((until, why)) => Some((ts(*until)?, why.clone())),
        None => None,
    };
    let provider = match (channel, &address) {
        (Some(Channel::Email), Some((_, a))) => Some(policy::mailbox_provider(a)),
        _ => None,
    };
    // A provider's ramp moves only when outcomes are recorded, after the batch.
    let ramp = match &provider {
        Some(p) => match state.ramps.get(p) {
            Some(r) => r.clone(),
            None => {
                let r = ramp_state(tx, p).await?;
                state.ramps.insert(p.clone(), r.clone());
                r
            }
        },
        None => None,
    };
    let ctx = SendContext {
        now,
        channel: channel.unwrap_or(Channel::Email),
        time_zone: first_of(|r| &r.time_zone),
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
        ramp_position: winback_engine::experiment::unit_hash(&["ramp", &profile_id.to_string()]),
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
        decide(m, &ctx)
    };
    let mut dispatch = None;
    match &decision {
        Decision::Send => {
            let (_, to) = address.clone().expect("a send decision has an address");
            // Marked `sending` with the batch's others before commit (see `mark_sending`).
            state
                .sends
                .push((m.id, m.fence, to.clone(), provider.clone()));
            dispatch = Some(Box::new(Dispatch {
                key: m.key.clone(),
                channel: message_channel,
                to,
                campaign: facts
                    .campaigns
                    .get(&m.campaign_id.get())
                    .cloned()
                    .unwrap_or_default(),
                step: row.text("step")?,
                variant: row.text("variant")?,
                template: row.text("template")?,
                subject: row.opt_text("subject")?,
                preheader: row.opt_text("preheader")?,
                sender_name: row.opt_text("sender_name")?,
                customer: records
                    .first()
                    .map(|r| r.external_id.clone())
                    .unwrap_or_default(),
                first_name: first_of(|r| &r.first_name),
                locale: first_of(|r| &r.locale),
                offer: facts.offers.get(&m.enrolment_id.get()).cloned(),
                products: Vec::new(),
                wallet_pass: facts.passes.get(&m.enrolment_id.get()).cloned(),
            }));
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
                unsubscribe(tx, profile_id, m.campaign_id.get(), now).await?;
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
    Ok((decision, dispatch))
}

/// `FOR UPDATE` on PostgreSQL, where a checked row must stay as read until commit; SQLite's
/// `BEGIN IMMEDIATE` already excludes every other writer.
pub(super) fn row_lock(tx: &Tx) -> &'static str {
    match tx.backend() {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    }
}

/// Records the outcomes of a batch's delivery attempts in one transaction: each message's
/// settlement, retry or release exactly as one at a time, the transport's breaker, and each
/// provider's ramp window read once and written once. `None` is a message the transport was
/// never handed (the batch stopped at a failure of the relay): it goes back to pending, its
/// attempt uncounted. Returns how many were recorded (a lost fence records nothing).
pub(crate) async fn finish_sends(
    pool: &Pool,
    outcomes: &[(ClaimedMessage, Option<SendOutcome>)],
    now: Timestamp,
    ramp: &(dyn Fn(Option<RampState>, &str, ProviderStats) -> RampState + Sync),
) -> Result<u64, StoreError> {
    if outcomes.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    if tx.backend() == Backend::Postgres {
        // One batch's outcomes at a time across workers: a batch writes several channels'
        // breakers, providers' ramps and addresses' suppressions, and two batches doing so in
        // different orders could deadlock. A batch records in milliseconds; SQLite's
        // `BEGIN IMMEDIATE` already serialises writers.
        tx.execute("SELECT pg_advisory_xact_lock(7201500018)", &[])
            .await?;
    }
    let ids: Vec<i64> = outcomes.iter().map(|(m, _)| m.id).collect();
    let mut rows: HashMap<i64, crate::db::DbRow> = HashMap::new();
    let sql = format!(
        "SELECT id, state, fence, attempts, recipient, provider, sunset, channel FROM outbox WHERE id IN ({{ids}}){}",
        row_lock(&tx)
    );
    for r in fetch_in(&mut tx, &sql, &ids).await? {
        rows.insert(r.i64("id")?, r);
    }
    // Channels whose breaker may hold a pause (every one, until a send clears it here).
    let mut cleared: HashSet<String> = HashSet::new();
    let mut failed: HashSet<String> = HashSet::new();
    let mut sent: Vec<(i64, Option<String>, Option<String>)> = Vec::new();
    let mut windows: BTreeMap<String, (Option<RampState>, RampWindow)> = BTreeMap::new();
    let micros = now.as_micros();
    let mut recorded = 0;
    for (m, outcome) in outcomes {
        let Some(row) = rows.get(&m.id) else {
            continue;
        };
        if row.text("state")? != "sending" || row.i64("fence")? != m.fence {
            continue;
        }
        recorded += 1;
        let Some(outcome) = outcome else {
            tx.execute(
                "UPDATE outbox SET state = 'pending', detail = 'not attempted: the transport failed before it', attempts = attempts - 1, lease_owner = NULL, lease_until = NULL WHERE id = $1",
                &[Val::from(m.id)],
            )
            .await?;
            continue;
        };
        let attempts = row.i64("attempts")?;
        let recipient = row.opt_text("recipient")?.unwrap_or_default();
        let provider = row.opt_text("provider")?;
        let sunset = row.i64("sunset")? != 0;
        let channel = row.text("channel")?;
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
        // The row's own update; a send is settled with the batch's others (`settle_sent`).
        let update: Option<(&str, Vec<Val>)> = match outcome {
            SendOutcome::Sent {
                provider_id,
                subject,
            } => {
                // The transport works again: its breaker closes.
                if cleared.insert(channel.clone()) {
                    tx.execute(
                        "DELETE FROM transport_pauses WHERE channel = $1",
                        &[Val::from(channel.as_str())],
                    )
                    .await?;
                }
                sent.push((m.id, provider_id.clone(), subject.clone()));
                None
            }
            SendOutcome::TransportFailure(why) => {
                // About the relay or provider, not the recipient: nobody is suppressed, the
                // attempt does not count against the message, and the channel pauses with a
                // growing backoff (a half-open breaker: the first send after the pause probes
                // it).
                settled = false;
                cleared.remove(&channel);
                // Deliveries in flight together fail together: one failure of the channel per
                // batch, or the backoff would jump to hours at the first refusal.
                let counted = !failed.insert(channel.clone());
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
                    + i64::from(!counted);
                let until = micros + policy::transport_backoff_seconds(failures.max(1)) * 1_000_000;
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
                Some((
                    "UPDATE outbox SET state = 'pending', not_before = $2, detail = $3, attempts = attempts - 1, lease_owner = NULL, lease_until = NULL WHERE id = $1",
                    vec![
                        Val::from(m.id),
                        Val::from(until),
                        Val::from(format!("transport paused: {why}")),
                    ],
                ))
            }
            SendOutcome::HardBounce(why) => {
                suppress(&mut tx, &channel, &recipient, "hard_bounce", now).await?;
                Some(settle("failed", "hard_bounce", Some(why.clone()), None))
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
                    Some(settle(
                        "failed",
                        if soft { "soft_bounce" } else { "failed" },
                        Some(why.clone()),
                        None,
                    ))
                } else {
                    settled = false;
                    let wait = retry.unwrap_or_default();
                    Some((
                        "UPDATE outbox SET state = 'pending', not_before = $2, detail = $3, lease_owner = NULL, lease_until = NULL WHERE id = $1",
                        vec![
                            Val::from(m.id),
                            Val::from(micros + wait * 1_000_000),
                            Val::from(why.as_str()),
                        ],
                    ))
                }
            }
        };
        if let Some((sql, args)) = update {
            tx.execute(sql, &args).await?;
        }
        if settled && sunset {
            unsubscribe(&mut tx, m.profile_id.get(), m.campaign_id.get(), now).await?;
        }
        if let Some(p) = provider {
            let hard = matches!(outcome, SendOutcome::HardBounce(_));
            if !windows.contains_key(&p) {
                let w = ramp_window(&mut tx, &p).await?;
                windows.insert(p.clone(), w);
            }
            let (state, window) = windows.get_mut(&p).expect("read just above");
            // Only settled attempts count, as the window's rates are per attempt.
            if settled {
                window.cur.attempts += 1;
                window.cur.hard_bounces += u64::from(hard);
            }
            let next = ramp(state.take(), &p, window.stats());
            if window.cur.attempts >= RAMP_BUCKET {
                window.prev = window.cur;
                window.cur = ProviderStats::default();
            }
            *state = Some(next);
        }
    }
    settle_sent(&mut tx, &sent, now).await?;
    // Each provider's ramp as the last outcome left it: one write per provider per batch.
    for (p, (state, window)) in &windows {
        let Some(next) = state else { continue };
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
                Val::from(next.paused.clone()),
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
    Ok(recorded)
}

/// Settles a batch's accepted messages `sent` (id, provider's id, subject as sent) in one
/// statement per chunk.
async fn settle_sent(
    tx: &mut Tx,
    sent: &[(i64, Option<String>, Option<String>)],
    now: Timestamp,
) -> Result<(), StoreError> {
    for chunk in sent.chunks(CHUNK / 3) {
        let n = chunk.len() * 3;
        let mut args: Vec<Val> = Vec::with_capacity(n + 1);
        for (id, provider_id, subject) in chunk {
            args.extend([
                Val::from(*id),
                Val::from(provider_id.clone()),
                Val::from(subject.clone()),
            ]);
        }
        args.push(Val::from(now.as_micros()));
        tx.execute(
            &format!(
                "UPDATE outbox SET state = 'sent', outcome = 'sent', detail = NULL, provider_id = v.column2, sent_subject = v.column3, \
                 settled_at = ${}, lease_owner = NULL, lease_until = NULL FROM (VALUES {}) AS v WHERE outbox.id = v.column1",
                n + 1,
                values_list(chunk.len(), 3)
            ),
            &args,
        )
        .await?;
        // The first accepted message of a journey makes its contact "messaged" (migration 19).
        let mut ids: Vec<Val> = chunk.iter().map(|(id, _, _)| Val::from(*id)).collect();
        ids.push(Val::from(now.as_micros()));
        tx.execute(
            &format!(
                "UPDATE enrolments SET messaged_at = ${} WHERE messaged_at IS NULL \
                 AND id IN (SELECT enrolment_id FROM outbox WHERE id IN ({}))",
                chunk.len() + 1,
                (1..=chunk.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &ids,
        )
        .await?;
    }
    Ok(())
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
