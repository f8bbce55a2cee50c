//! The engine's storage: campaigns and versions, enrolments, the outbox, tags, suppressions,
//! offers, exports and the deliverability ramp ([`winback_engine::JourneyStore`]).
//!
//! Exactly-once rests on four rules kept here:
//! - a plan's state change and its outbox rows commit in one transaction, and only while the
//!   claim's fencing token is still the enrolment's (a worker whose lease expired cannot apply);
//! - every message has a unique idempotency key, so a repeated plan inserts nothing twice;
//! - a message is marked `sending` (committed) before the transport is called; a `sending` row
//!   whose lease expires is `in_doubt`, never resent;
//! - send-time checks run in the transaction that marks `sending`, under a lock on the contact
//!   (PostgreSQL: the profile's customer row; SQLite: the database write lock).

use std::collections::{BTreeMap, HashMap, HashSet};

use sha2::{Digest, Sha256};
use winback_domain::{Channel, ConsentStatus, EventKind, Timestamp};
use winback_engine::audience::{AudienceRow, JourneyFacts};
use winback_engine::journey::{Admission, Effect, Enrolment, EntryHistory, Next, Plan, Snapshot};
use winback_engine::policy::{self, Decision, ProviderStats, RampState, SendContext};
use winback_engine::ports::{
    Applied, AudienceEntry, CampaignRecord, Candidate, ClaimedEnrolment, ClaimedMessage, Dispatch,
    EngineError, OfferView, Reaped, SendOutcome, TriggerBatch, TriggerEvent,
};

use crate::StoreError;
use crate::db::{Backend, Pool, Tx, Val, in_list, values_list};
use crate::queries::ts;

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        EngineError::Store(e.to_string())
    }
}

const PROFILE: &str = "COALESCE(c.profile_id, c.id)";
// Records of one profile are matched with `(c.id = P OR c.profile_id = P)`, which both
// databases answer from the primary key and the profile index; `COALESCE(…) = P` would scan
// every customer. The two agree because a profile's id is its smallest record's id.
/// Rows per multi-row statement (parameters stay far below both databases' limits).
const CHUNK: usize = 400;

// ---------------------------------------------------------------------------------------------
// Campaigns.

pub(crate) async fn apply_campaign(
    pool: &Pool,
    name: &str,
    file: &str,
    source: &str,
    now: Timestamp,
) -> Result<Applied, StoreError> {
    let sum = hex::encode(Sha256::digest(source.as_bytes()));
    let mut tx = pool.begin().await?;
    let existing = tx
        .fetch(
            "SELECT id, version FROM campaigns WHERE name = $1",
            &[Val::from(name)],
        )
        .await?;
    let applied = match existing.first() {
        None => {
            let id = tx
                .fetch(
                    "INSERT INTO campaigns (name, status, version, file, created_at, updated_at) VALUES ($1, 'draft', 1, $2, $3, $3) RETURNING id",
                    &[Val::from(name), Val::from(file), Val::from(now.as_micros())],
                )
                .await?[0]
                .i64(0)?;
            insert_version(&mut tx, id, 1, source, &sum, now).await?;
            Applied::Created(1)
        }
        Some(r) => {
            let (id, version) = (r.i64(0)?, r.i64(1)?);
            let current = tx
                .fetch(
                    "SELECT checksum FROM campaign_versions WHERE campaign_id = $1 AND version = $2",
                    &[Val::from(id), Val::from(version)],
                )
                .await?;
            if current.first().map(|r| r.text(0)).transpose()?.as_deref() == Some(sum.as_str()) {
                Applied::Unchanged(version)
            } else {
                insert_version(&mut tx, id, version + 1, source, &sum, now).await?;
                tx.execute(
                    "UPDATE campaigns SET version = $2, file = $3, updated_at = $4 WHERE id = $1",
                    &[
                        Val::from(id),
                        Val::from(version + 1),
                        Val::from(file),
                        Val::from(now.as_micros()),
                    ],
                )
                .await?;
                Applied::NewVersion(version + 1)
            }
        }
    };
    tx.commit().await?;
    Ok(applied)
}

async fn insert_version(
    tx: &mut Tx,
    id: i64,
    version: i64,
    source: &str,
    sum: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO campaign_versions (campaign_id, version, source, checksum, applied_at) VALUES ($1, $2, $3, $4, $5)",
        &[
            Val::from(id),
            Val::from(version),
            Val::from(source),
            Val::from(sum),
            Val::from(now.as_micros()),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn campaigns(pool: &Pool) -> Result<Vec<CampaignRecord>, StoreError> {
    pool.fetch(
        "SELECT c.id, c.name, c.status, c.version, v.source, c.file FROM campaigns c \
         JOIN campaign_versions v ON v.campaign_id = c.id AND v.version = c.version ORDER BY c.name",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(CampaignRecord {
            id: r.i64(0)?,
            name: r.text(1)?,
            status: r.text(2)?,
            version: r.i64(3)?,
            source: r.text(4)?,
            file: r.text(5)?,
        })
    })
    .collect()
}

pub(crate) async fn campaign_source(
    pool: &Pool,
    id: i64,
    version: i64,
) -> Result<String, StoreError> {
    pool.fetch(
        "SELECT source FROM campaign_versions WHERE campaign_id = $1 AND version = $2",
        &[Val::from(id), Val::from(version)],
    )
    .await?
    .first()
    .map(|r| r.text(0))
    .transpose()?
    .ok_or_else(|| StoreError::Data(format!("campaign {id} has no version {version}")))
}

pub(crate) async fn set_campaign_status(
    pool: &Pool,
    name: &str,
    status: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    Ok(pool
        .execute(
            "UPDATE campaigns SET status = $2, updated_at = $3 WHERE name = $1",
            &[
                Val::from(name),
                Val::from(status),
                Val::from(now.as_micros()),
            ],
        )
        .await?
        > 0)
}

pub(crate) async fn finish_campaign_if_done(
    pool: &Pool,
    id: i64,
    now: Timestamp,
) -> Result<bool, StoreError> {
    Ok(pool
        .execute(
            "UPDATE campaigns SET status = 'finished', updated_at = $2 WHERE id = $1 AND status = 'closing' \
             AND NOT EXISTS (SELECT 1 FROM enrolments e WHERE e.campaign_id = $1 AND e.state = 'active') \
             AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.campaign_id = $1 AND o.state IN ('pending', 'claimed', 'sending'))",
            &[Val::from(id), Val::from(now.as_micros())],
        )
        .await?
        > 0)
}

pub(crate) async fn trigger_cursor(pool: &Pool, id: i64) -> Result<i64, StoreError> {
    Ok(pool
        .fetch(
            "SELECT trigger_cursor FROM campaigns WHERE id = $1",
            &[Val::from(id)],
        )
        .await?
        .first()
        .map(|r| r.i64(0))
        .transpose()?
        .unwrap_or(0))
}

pub(crate) async fn advance_cursor(pool: &Pool, id: i64, cursor: i64) -> Result<(), StoreError> {
    pool.execute(
        "UPDATE campaigns SET trigger_cursor = $2 WHERE id = $1",
        &[Val::from(id), Val::from(cursor)],
    )
    .await?;
    Ok(())
}

/// Inserts a shop-wide signal (`assortment_updated`).
pub(crate) async fn signal(pool: &Pool, name: &str, at: Timestamp) -> Result<(), StoreError> {
    pool.execute(
        "INSERT INTO shop_signals (name, at) VALUES ($1, $2)",
        &[Val::from(name), Val::from(at.as_micros())],
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Audience rows.

struct Contact {
    /// Every record of the profile with an email address, in record order.
    emails: Vec<(i64, String)>,
    /// Every record of the profile with a number, in record order.
    phones: Vec<(i64, String)>,
    zone: Option<String>,
    locale: Option<String>,
    country: Option<String>,
    attributes: Option<String>,
}

async fn contacts(
    pool: &Pool,
    profiles: Option<&[i64]>,
) -> Result<BTreeMap<i64, Contact>, StoreError> {
    let base = format!(
        "SELECT {PROFILE}, c.id, c.email, c.phone, c.time_zone, c.locale, c.country, c.attributes FROM customers c WHERE c.erased_at IS NULL"
    );
    let mut rows = Vec::new();
    match profiles {
        None => rows = pool.fetch(&format!("{base} ORDER BY c.id"), &[]).await?,
        Some(ids) => {
            for chunk in ids.chunks(CHUNK) {
                let args: Vec<Val> = chunk.iter().map(|i| Val::from(*i)).collect();
                let list = in_list(chunk.len());
                rows.extend(
                    pool.fetch(
                        &format!("{base} AND (c.id IN ({list}) OR c.profile_id IN ({list})) ORDER BY c.id"),
                        &args,
                    )
                    .await?,
                );
            }
        }
    }
    let mut out: BTreeMap<i64, Contact> = BTreeMap::new();
    for r in rows {
        let profile = r.i64(0)?;
        let id = r.i64(1)?;
        let c = out.entry(profile).or_insert(Contact {
            emails: Vec::new(),
            phones: Vec::new(),
            zone: None,
            locale: None,
            country: None,
            attributes: None,
        });
        if let Some(e) = r.opt_text(2)? {
            c.emails.push((id, e));
        }
        if let Some(p) = r.opt_text(3)? {
            c.phones.push((id, p));
        }
        if c.zone.is_none() {
            c.zone = r.opt_text(4)?;
        }
        if c.locale.is_none() {
            c.locale = r.opt_text(5)?;
        }
        if c.country.is_none() {
            c.country = r.opt_text(6)?;
        }
        if c.attributes.is_none() {
            c.attributes = r.opt_text(7)?.filter(|a| a != "{}");
        }
    }
    Ok(out)
}

async fn suppressed_set(pool: &Pool) -> Result<HashSet<(String, String)>, StoreError> {
    pool.fetch(
        "SELECT channel, address FROM suppressions WHERE active = 1",
        &[],
    )
    .await?
    .iter()
    .map(|r| Ok((r.text(0)?, r.text(1)?)))
    .collect()
}

pub(crate) async fn audience_rows(
    pool: &Pool,
    now: Timestamp,
    profiles: Option<&[i64]>,
) -> Result<Vec<AudienceEntry>, StoreError> {
    let contacts = contacts(pool, profiles).await?;
    let ids: Vec<i64> = contacts.keys().copied().collect();
    let filter = |col: &str, n: usize| format!("{col} IN ({})", in_list(n));
    let mut features: HashMap<i64, String> = HashMap::new();
    let mut scores: HashMap<i64, crate::db::DbRow> = HashMap::new();
    let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
    let chunks: Vec<Option<&[i64]>> = match profiles {
        None => vec![None],
        Some(_) => ids.chunks(CHUNK).map(Some).collect(),
    };
    for chunk in chunks {
        let (cond, args): (String, Vec<Val>) = match chunk {
            None => ("1 = 1".into(), vec![]),
            Some(c) => (
                filter("profile_id", c.len()),
                c.iter().map(|i| Val::from(*i)).collect(),
            ),
        };
        for r in pool
            .fetch(
                &format!("SELECT profile_id, data FROM profile_features WHERE {cond}"),
                &args,
            )
            .await?
        {
            features.insert(r.i64(0)?, r.text(1)?);
        }
        for r in pool
            .fetch(
                &format!("SELECT profile_id, stage, segment, rfm, p_alive, clv_minor, priority_minor, expected_90d, inactive_by FROM profile_scores WHERE {cond}"),
                &args,
            )
            .await?
        {
            scores.insert(r.i64(0)?, r);
        }
        for r in pool
            .fetch(
                &format!("SELECT profile_id, tag FROM contact_tags WHERE {cond} ORDER BY tag"),
                &args,
            )
            .await?
        {
            tags.entry(r.i64(0)?).or_default().push(r.text(1)?);
        }
    }
    let records: Vec<i64> = contacts
        .values()
        .flat_map(|c| c.emails.iter().chain(c.phones.iter()).map(|(id, _)| *id))
        .collect();
    // Consent is the address's, folded from every record that carries it.
    let consents = if profiles.is_some() {
        crate::consent::for_records(&mut &*pool, &records).await?
    } else {
        crate::consent::for_all(pool).await?
    };
    let suppressed = suppressed_set(pool).await?;
    // The first address the rules allow, else the first address (for its status).
    let pick = |addresses: &[(i64, String)], channel: Channel, buyer: bool| {
        let allowed = addresses.iter().find(|(id, addr)| {
            crate::consent::allows(consents.for_record(*id, channel), buyer)
                && !suppressed.contains(&(channel.as_str().to_owned(), addr.clone()))
        });
        let shown = allowed.or(addresses.first());
        let status = shown
            .and_then(|(id, _)| consents.for_record(*id, channel))
            .map_or(ConsentStatus::None, |c| c.status);
        (allowed.is_some(), status)
    };
    let mut out = Vec::with_capacity(contacts.len());
    for (profile, c) in &contacts {
        let mut row = AudienceRow {
            profile_id: *profile,
            has_email: !c.emails.is_empty(),
            has_phone: !c.phones.is_empty(),
            locale: c.locale.clone(),
            country: c.country.clone(),
            subscription: "none".into(),
            ..AudienceRow::default()
        };
        if let Some(a) = &c.attributes {
            if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(a) {
                row.attributes = m;
            }
        }
        let mut first_order_at = None;
        if let Some(data) = features.get(profile) {
            let f: winback_scoring::Features = serde_json::from_str(data)?;
            row.set_features(&f, now);
            first_order_at = f.first_order_at;
        }
        // A soft opt-in covers existing customers only (someone who bought from the shop).
        let buyer = row.orders > 0;
        let (email_ok, email_status) = pick(&c.emails, Channel::Email, buyer);
        let (sms_ok, sms_status) = pick(&c.phones, Channel::Sms, buyer);
        row.email_ok = email_ok;
        row.sms_ok = sms_ok;
        row.email_consent = email_status.as_str().to_owned();
        row.sms_consent = sms_status.as_str().to_owned();
        if let Some(s) = scores.get(profile) {
            row.stage = Some(s.text(1)?);
            row.segment = s.opt_text(2)?;
            row.rfm = s.opt_text(3)?;
            row.p_alive = s.opt_f64(4)?;
            row.clv = s.opt_f64(5)?.map(|v| v / 100.0);
            row.priority = s.opt_f64(6)?.map(|v| v / 100.0);
            row.expected_90d = s.opt_f64(7)?;
            row.inactive_by = s
                .text(8)?
                .split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(t) = tags.get(profile) {
            row.tags = t.clone();
        }
        out.push(AudienceEntry {
            row,
            first_order_at,
            time_zone: c.zone.clone(),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Triggers and enrolment.

pub(crate) async fn trigger_events(
    pool: &Pool,
    campaign_id: i64,
    label: &str,
    limit: usize,
) -> Result<TriggerBatch, StoreError> {
    let cursor = trigger_cursor(pool, campaign_id).await?;
    let lim = limit as i64;
    let rows = if label == "order_placed" {
        pool.fetch(
            &format!(
                "SELECT o.id, {PROFILE}, 'order:' || o.external_id, o.ordered_at, 'order_placed' FROM orders o JOIN customers c ON c.id = o.customer_id \
                 WHERE o.id > $1 AND o.status NOT IN ('cancelled', 'refunded') ORDER BY o.id LIMIT $2"
            ),
            &[Val::from(cursor), Val::from(lim)],
        )
        .await?
    } else if let Some(name) = label.strip_prefix("custom:") {
        pool.fetch(
            &format!(
                "SELECT e.id, {PROFILE}, 'event:' || e.event_key, e.occurred_at, 'custom:' || $3 FROM events e JOIN customers c ON c.id = e.customer_id \
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
                "SELECT e.id, {PROFILE}, 'event:' || e.event_key, e.occurred_at, e.type FROM events e JOIN customers c ON c.id = e.customer_id \
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
                cursor: r.i64(0)?,
                profile_id: r.i64(1)?,
                key: r.text(2)?,
                at: ts(r.i64(3)?)?,
                label: r.text(4)?,
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

async fn lock_enrolment(tx: &mut Tx) -> Result<(), StoreError> {
    // SQLite's BEGIN IMMEDIATE already holds the write lock.
    if tx.backend() == Backend::Postgres {
        tx.execute("SELECT pg_advisory_xact_lock(7310001)", &[])
            .await?;
    }
    Ok(())
}

pub(crate) async fn enrol(
    pool: &Pool,
    campaign_id: i64,
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
        let mut v: Vec<i64> = candidates.iter().map(|c| c.profile_id).collect();
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
                    "SELECT e.profile_id, CAST(CASE WHEN e.campaign_id = $1 THEN 1 ELSE 0 END AS BIGINT), e.state, e.ended_at, e.exclusive, c.name FROM enrolments e \
                     JOIN campaigns c ON c.id = e.campaign_id WHERE e.profile_id IN ({list})"
                ),
                &args,
            )
            .await?
        {
            let h = histories.entry(r.i64(0)?).or_default();
            let here = r.i64(1)? != 0;
            let active = r.text(2)? == "active";
            if here {
                h.entries += 1;
                h.active_here |= active;
                if let Some(end) = r.opt_i64(3)? {
                    let end = ts(end)?;
                    h.last_ended_at = Some(h.last_ended_at.map_or(end, |t| t.max(end)));
                }
            } else if active && r.i64(4)? != 0 {
                h.exclusive_elsewhere = Some(r.text(5)?);
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
        let h = histories.get(&cand.profile_id).cloned().unwrap_or_default();
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
                     VALUES {} ON CONFLICT (campaign_id, profile_id, trigger_key) DO NOTHING RETURNING holdout",
                    values_list(chunk.len(), 14)
                ),
                &args,
            )
            .await?;
        for r in inserted {
            if r.i64(0)? != 0 {
                held += 1;
            } else {
                entered += 1;
            }
        }
    }
    tx.commit().await?;
    Ok((entered, held))
}

pub(crate) async fn arm_stats(
    pool: &Pool,
    campaign_id: i64,
    variants: &[String],
    window_seconds: i64,
) -> Result<Vec<winback_engine::experiment::ArmStats>, StoreError> {
    let rows = pool
        .fetch(
            "SELECT e.variant, COUNT(*), COUNT(CASE WHEN EXISTS (SELECT 1 FROM orders o JOIN customers c ON c.id = o.customer_id \
                 WHERE (c.id = e.profile_id OR c.profile_id = e.profile_id) AND o.ordered_at >= e.entered_at AND o.ordered_at < e.entered_at + $2) THEN 1 END) \
                 FROM enrolments e WHERE e.campaign_id = $1 AND e.holdout = 0 GROUP BY e.variant",
            &[Val::from(campaign_id), Val::from(window_seconds * 1_000_000)],
        )
        .await?;
    let mut by: HashMap<String, (u64, u64)> = HashMap::new();
    for r in rows {
        by.insert(r.text(0)?, (r.i64(1)? as u64, r.i64(2)? as u64));
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

// ---------------------------------------------------------------------------------------------
// Stepping.

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
                campaign_id: r.i64(1)?,
                version: r.i64(2)?,
                enrolment: Enrolment {
                    id: r.i64(0)?,
                    profile_id: r.i64(3)?,
                    step: r.i64(4)? as usize,
                    resume: r.i64(5)? != 0,
                    entered_at: ts(r.i64(6)?)?,
                    due_at: ts(r.opt_i64(7)?.unwrap_or(0))?,
                    variant: r.text(8)?,
                },
                fence: r.i64(9)?,
                waiting_since: r.opt_i64(10)?.map(ts).transpose()?,
                waiting_event: r.opt_text(11)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    out.sort_by_key(|c| (c.enrolment.due_at, c.enrolment.id));
    Ok(out)
}

/// Runs a claim statement (`$1` worker, `$2` lease end, `$3` now, `$4` limit) in its own
/// transaction, so the claim is committed before any work on the rows starts.
async fn claim_rows(
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
async fn event_since(
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
        let since = ts(r.opt_i64(3)?.unwrap_or(0))?;
        if event_since(pool, r.i64(1)?, &r.text(2)?, since).await? {
            woke += pool
                .execute(
                    "UPDATE enrolments SET due_at = $2 WHERE id = $1 AND state = 'active'",
                    &[Val::from(r.i64(0)?), Val::from(now.as_micros())],
                )
                .await?;
        }
    }
    Ok(woke)
}

pub(crate) async fn snapshots(
    pool: &Pool,
    claimed: &[ClaimedEnrolment],
    full: &[bool],
    now: Timestamp,
) -> Result<Vec<Snapshot>, StoreError> {
    let profiles: Vec<i64> = {
        let mut v: Vec<i64> = claimed.iter().map(|c| c.enrolment.profile_id).collect();
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
    let enrolment_ids: Vec<i64> = claimed.iter().map(|c| c.enrolment.id).collect();
    for chunk in enrolment_ids.chunks(CHUNK) {
        let args: Vec<Val> = chunk.iter().map(|i| Val::from(*i)).collect();
        for r in pool
            .fetch(
                &format!("SELECT enrolment_id, ladder, COUNT(*) FROM offers WHERE enrolment_id IN ({}) GROUP BY enrolment_id, ladder", in_list(chunk.len())),
                &args,
            )
            .await?
        {
            offers.entry(r.i64(0)?).or_default().insert(r.text(1)?, r.i64(2)? as usize);
        }
    }
    let full_profiles: Vec<i64> = claimed
        .iter()
        .zip(full)
        .filter(|(_, f)| **f)
        .map(|(c, _)| c.enrolment.profile_id)
        .collect();
    let rows: HashMap<i64, AudienceRow> = if full_profiles.is_empty() {
        HashMap::new()
    } else {
        audience_rows(pool, now, Some(&full_profiles))
            .await?
            .into_iter()
            .map(|e| (e.row.profile_id, e.row))
            .collect()
    };
    let mut out = Vec::with_capacity(claimed.len());
    for (c, f) in claimed.iter().zip(full) {
        let e = &c.enrolment;
        let event_arrived = match (&c.waiting_event, c.waiting_since) {
            (Some(label), Some(since)) if e.resume => {
                event_since(pool, e.profile_id, label, since).await?
            }
            _ => false,
        };
        let mut snap = Snapshot {
            offers_issued: offers.remove(&e.id).unwrap_or_default(),
            event_arrived,
            time_zone: zones.get(&e.profile_id).cloned(),
            ..Snapshot::default()
        };
        if *f {
            snap.row = rows.get(&e.profile_id).cloned().unwrap_or_default();
            snap.journey = journey_facts(pool, c, now).await?;
        }
        out.push(snap);
    }
    Ok(out)
}

async fn journey_facts(
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
                 AND e.type IN ('email_opened', 'email_clicked', 'survey_answered') ORDER BY e.occurred_at",
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
    let mut outbox: Vec<Vec<Val>> = Vec::new();
    let mut offers: Vec<Vec<Val>> = Vec::new();
    let mut logs: Vec<Vec<Val>> = Vec::new();
    let mut exports: Vec<Vec<Val>> = Vec::new();
    for (c, plan) in plans {
        let e = &c.enrolment;
        if !applied.contains(&e.id) {
            continue;
        }
        for effect in &plan.effects {
            match effect {
                Effect::Message(m) => outbox.push(vec![
                    Val::from(m.idempotency_key.as_str()),
                    Val::from(crate::migrate::key_digest(&m.idempotency_key)),
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
                ]),
                Effect::Webhook {
                    step_id,
                    url,
                    idempotency_key,
                } => outbox.push(vec![
                    Val::from(idempotency_key.as_str()),
                    Val::from(crate::migrate::key_digest(idempotency_key)),
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
                    unsubscribe(&mut tx, e.profile_id, c.campaign_id, now).await?;
                }
                Effect::Export { step_id, target } => exports.push(vec![
                    Val::from(c.campaign_id),
                    Val::from(step_id.as_str()),
                    Val::from(target.as_str()),
                    Val::from(e.profile_id),
                    Val::from(now.as_micros()),
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
        "INSERT INTO outbox (idempotency_key, key_digest, campaign_id, enrolment_id, profile_id, step, variant, channel, template, subject, preheader, sender_name, url, sunset, not_before, created_at, state) \
         VALUES {} ON CONFLICT (idempotency_key) DO NOTHING",
        17,
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
        "INSERT INTO audience_exports (campaign_id, step, target, profile_id, added_at) VALUES {} ON CONFLICT DO NOTHING",
        5,
        &exports,
    )
    .await?;
    tx.commit().await?;
    Ok(applied.len() as u64)
}

async fn insert_rows(
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
async fn unsubscribe(
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

// ---------------------------------------------------------------------------------------------
// Dispatch.

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
                id: r.i64(0)?,
                fence: r.i64(1)?,
                key: r.text(2)?,
                channel: r.text(3)?,
                campaign_id: r.i64(4)?,
                enrolment_id: r.i64(5)?,
                profile_id: r.i64(6)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    out.sort_by_key(|m| m.id);
    Ok(out)
}

/// Why the contact's journey has ended, checked at send time: the enrolment's own end, or an
/// order, unsubscribe or complaint since it entered that the exit sweep has not seen yet.
async fn ended_reason(
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
    if e.text(0)? == "exited" {
        return Ok(Some(e.opt_text(1)?.unwrap_or_else(|| "exited".into())));
    }
    let since = Val::from(e.i64(2)?);
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
    if row.text(0)? != "claimed" || row.i64(1)? != m.fence {
        return Ok(None);
    }
    let sunset = row.i64(9)? != 0;
    let channel_name = row.text(11)?;
    let channel: Option<Channel> = channel_name.parse().ok();
    let records = tx
        .fetch(
            "SELECT c.id, c.email, c.phone, c.first_name, c.locale, c.time_zone, c.external_id FROM customers c WHERE (c.id = $1 OR c.profile_id = $1) AND c.erased_at IS NULL ORDER BY c.id",
            &[Val::from(m.profile_id)],
        )
        .await?;
    let first_of = |col: usize| -> Result<Option<String>, StoreError> {
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
        let col = if ch == Channel::Email { 1 } else { 2 };
        for r in &records {
            if let Some(v) = r.opt_text(col)? {
                if !candidates.iter().any(|(_, a)| *a == v) {
                    candidates.push((r.i64(0)?, v));
                }
            }
        }
    }
    let ended = ended_reason(&mut tx, m.enrolment_id, m.profile_id).await?;
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
                let ok = crate::consent::allows(folded.for_record(*id, ch), buyer);
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
        None => (row.opt_text(8)?.map(|u| (0, u)), true, false, false),
    };
    let recent = tx
        .fetch(
            "SELECT sent_at FROM outbox WHERE profile_id = $1 AND channel = $2 AND sunset = 0 AND sent_at > $3 AND state IN ('sending', 'sent', 'in_doubt') ORDER BY sent_at DESC",
            &[
                Val::from(m.profile_id),
                Val::from(channel_name.as_str()),
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
            "SELECT (SELECT data FROM profile_features WHERE profile_id = $1), \
                    (SELECT frequency FROM preferences WHERE profile_id = $1), \
                    (SELECT paused_until FROM transport_pauses WHERE channel = $2), \
                    (SELECT reason FROM transport_pauses WHERE channel = $2)",
            &[Val::from(m.profile_id), Val::from(channel_name.as_str())],
        )
        .await?;
    let profile = profile
        .first()
        .ok_or_else(|| StoreError::Data("no row from a scalar select".into()))?;
    let email_inactive = match profile.opt_text(0)? {
        Some(data) => {
            let f: winback_scoring::Features = serde_json::from_str(&data)?;
            let last = f.last_click_at.max(f.last_human_open_at);
            last.is_none_or(|t| t.days_until(now) > 180)
        }
        None => true,
    };
    let low_frequency = profile.opt_text(1)?.as_deref() == Some("low");
    let transport_pause = match (profile.opt_i64(2)?, profile.opt_text(3)?) {
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
        time_zone: first_of(5)?,
        has_address: address.is_some(),
        consent_ok,
        suppressed,
        erased,
        enrolment_ended: ended,
        exempt_from_caps: sunset || channel.is_none(),
        recent_sends: recent,
        campaign_window: None,
        queued_at: ts(row.i64(10)?)?,
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
                    Ok(OfferView {
                        code: r.text(0)?,
                        description: r.text(1)?,
                        expires_at: ts(r.i64(2)?)?,
                        min_order_minor: r.i64(3)?,
                        kind: r.text(4)?,
                        amount_minor: r.opt_i64(5)?,
                        percent: r.opt_i64(6)?,
                        currency: r.text(7)?,
                        sku: r.opt_text(8)?,
                    })
                })
                .transpose()?;
            dispatch = Some(Dispatch {
                key: m.key.clone(),
                channel: channel_name.clone(),
                to,
                campaign,
                step: row.text(2)?,
                variant: row.text(3)?,
                template: row.text(4)?,
                subject: row.opt_text(5)?,
                preheader: row.opt_text(6)?,
                sender_name: row.opt_text(7)?,
                customer: records
                    .first()
                    .map(|r| r.text(6))
                    .transpose()?
                    .unwrap_or_default(),
                first_name: first_of(3)?,
                locale: first_of(4)?,
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
                unsubscribe(&mut tx, m.profile_id, m.campaign_id, now).await?;
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
fn row_lock(tx: &Tx) -> &'static str {
    match tx.backend() {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    }
}

/// Retries of a message that soft-bounced or failed: at 15 minutes, 1 hour and 4 hours.
const RETRIES: i64 = 3;
/// Soft bounces of one address, across messages, after which it is suppressed.
const SOFT_BOUNCE_LIMIT: i64 = 3;

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
    if row.text(0)? != "sending" || row.i64(1)? != m.fence {
        return Ok(false);
    }
    let attempts = row.i64(2)?;
    let recipient = row.opt_text(3)?.unwrap_or_default();
    let provider = row.opt_text(4)?;
    let sunset = row.i64(5)? != 0;
    let channel = row.text(6)?;
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
            // Retries at 15 minutes, 1 hour and 4 hours; after the third failed retry a soft
            // bounce suppresses the address (as do SOFT_BOUNCE_LIMIT soft bounces of different
            // messages).
            if attempts > RETRIES || bounces > SOFT_BOUNCE_LIMIT {
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
                // Retried with backoff: 15 minutes, then an hour, then four.
                let wait = 15 * 60 * 4i64.pow((attempts.max(1) - 1) as u32);
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
        unsubscribe(&mut tx, m.profile_id, m.campaign_id, now).await?;
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
const RAMP_BUCKET: u64 = 1000;

/// The ramp's window of recent attempts, as running counts in two buckets.
#[derive(Debug, Clone, Copy, Default)]
struct RampWindow {
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
async fn ramp_window(
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
        share: r.opt_f64(0)?.unwrap_or(0.0),
        attempts_at_share: r.i64(1)? as u64,
        paused: r.opt_text(2)?,
    };
    let bucket = |i: usize| -> Result<ProviderStats, StoreError> {
        Ok(ProviderStats {
            attempts: r.i64(i)? as u64,
            hard_bounces: r.i64(i + 1)? as u64,
            complaints: r.i64(i + 2)? as u64,
        })
    };
    Ok((
        Some(state),
        RampWindow {
            cur: bucket(3)?,
            prev: bucket(6)?,
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
        "SELECT provider, share, paused, cur_attempts + prev_attempts, cur_hard + prev_hard, cur_complaints + prev_complaints \
         FROM provider_ramp ORDER BY provider",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(ProviderRamp {
            provider: r.text(0)?,
            share: r.opt_f64(1)?.unwrap_or(0.0),
            paused: r.opt_text(2)?,
            window_attempts: r.i64(3)?,
            window_hard_bounces: r.i64(4)?,
            window_complaints: r.i64(5)?,
        })
    })
    .collect()
}

/// A mailbox provider's stored ramp; `None` before its first attempt.
async fn ramp_state(tx: &mut Tx, provider: &str) -> Result<Option<RampState>, StoreError> {
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

async fn cursor(tx: &mut Tx, name: &str) -> Result<i64, StoreError> {
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

async fn set_cursor(tx: &mut Tx, name: &str, value: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO engine_cursors (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        &[Val::from(name), Val::from(value)],
    )
    .await?;
    Ok(())
}

/// Ends the active journeys of `profile` entered at or before `at`, cancelling their pending
/// messages; returns the enrolments ended.
async fn exit_profile(
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

pub(crate) async fn process_exits(pool: &Pool, now: Timestamp) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await?;
        lock_enrolment(&mut tx).await?;
        let from = cursor(&mut tx, "exit_orders").await?;
        let orders = tx
            .fetch(
                &format!(
                    "SELECT o.id, {PROFILE}, o.ordered_at, o.discount_minor, o.status FROM orders o JOIN customers c ON c.id = o.customer_id \
                     WHERE o.id > $1 ORDER BY o.id LIMIT 2000"
                ),
                &[Val::from(from)],
            )
            .await?;
        let Some(last) = orders.last().map(|r| r.i64(0)).transpose()? else {
            tx.commit().await?;
            break;
        };
        let profiles: Vec<i64> = {
            let mut v = orders
                .iter()
                .map(|r| r.i64(1))
                .collect::<Result<Vec<_>, _>>()?;
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut engaged: HashSet<i64> = HashSet::new();
        for chunk in profiles.chunks(CHUNK) {
            let args: Vec<Val> = chunk.iter().map(|i| Val::from(*i)).collect();
            for r in tx
                .fetch(
                    &format!("SELECT DISTINCT profile_id FROM enrolments WHERE profile_id IN ({}) AND (state = 'active' OR EXISTS (SELECT 1 FROM offers f WHERE f.profile_id = enrolments.profile_id AND f.state = 'issued'))", in_list(chunk.len())),
                    &args,
                )
                .await?
            {
                engaged.insert(r.i64(0)?);
            }
        }
        for r in &orders {
            let (order_id, profile, at) = (r.i64(0)?, r.i64(1)?, r.i64(2)?);
            if !engaged.contains(&profile) {
                continue;
            }
            let status = r.text(4)?;
            if matches!(status.as_str(), "cancelled" | "refunded") {
                continue;
            }
            // Redemptions: codes on the order that winback issued to this profile.
            let codes = tx
                .fetch(
                    "SELECT f.code FROM order_discount_codes d JOIN offers f ON f.code = d.code \
                     WHERE d.order_id = $1 AND f.state = 'issued' AND f.expires_at >= $2 AND f.issued_at <= $2",
                    &[Val::from(order_id), Val::from(at)],
                )
                .await?;
            let discount = r.i64(3)?;
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
    loop {
        let mut tx = pool.begin().await?;
        lock_enrolment(&mut tx).await?;
        let from = cursor(&mut tx, "exit_events").await?;
        let events = tx
            .fetch(
                &format!(
                    "SELECT e.id, {PROFILE}, e.occurred_at, e.type FROM events e JOIN customers c ON c.id = e.customer_id \
                     WHERE e.id > $1 AND e.type IN ('email_unsubscribed', 'email_complained') ORDER BY e.id LIMIT 2000"
                ),
                &[Val::from(from)],
            )
            .await?;
        let last = match events.last() {
            Some(r) => r.i64(0)?,
            None => {
                // Skip past events of other types in one step.
                let max = tx
                    .fetch("SELECT MAX(id) FROM events", &[])
                    .await?
                    .first()
                    .map(|r| r.opt_i64(0))
                    .transpose()?
                    .flatten()
                    .unwrap_or(0);
                if max > from {
                    set_cursor(&mut tx, "exit_events", max).await?;
                }
                tx.commit().await?;
                break;
            }
        };
        for r in &events {
            let (profile, at) = (r.i64(1)?, r.i64(2)?);
            let complained = r.text(3)? == "email_complained";
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
                        &[Val::from(row.i64(0)?)],
                    )
                    .await?;
                    if let Some(p) = row.opt_text(1)? {
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

// ---------------------------------------------------------------------------------------------
// Reports.

/// One arm of a campaign: a variant, or the holdout.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ArmResult {
    /// Variant id (the holdout keeps the variant it would have had).
    pub variant: String,
    /// Held out.
    pub holdout: bool,
    /// Enrolments.
    pub enrolled: i64,
    /// Enrolments with an order within the conversion window after entering.
    pub converted: i64,
    /// Revenue of those orders within the window, minor units.
    pub revenue_minor: i64,
    /// Sum over enrolments of (their revenue in the window)², for the revenue variance.
    pub revenue_sq: f64,
    /// Orders within the window.
    pub orders: i64,
    /// Messages by outbox state (`sent`, `dropped`, `cancelled`, `in_doubt`, …).
    pub messages: BTreeMap<String, i64>,
    /// Offers issued.
    pub offers: i64,
    /// Offers redeemed.
    pub redeemed: i64,
    /// Discount booked to redeemed offers, minor units.
    pub discount_minor: i64,
}

/// How [`segment_results`] splits a campaign's contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// Not at all: one group, named `all`.
    All,
    /// By the contact's locale (`default` when none is known).
    Locale,
    /// By the mailbox provider of the contact's email address (`none` without one).
    Provider,
}

/// Each arm's contacts, buyers and revenue within the window, per segment: (segment, arm).
pub(crate) async fn segment_results(
    pool: &Pool,
    campaign_id: i64,
    window_seconds: i64,
    range: (i64, i64),
    by: Segment,
) -> Result<Vec<(String, ArmResult)>, StoreError> {
    // One row per enrolment (its orders in the window), summed here: the readout needs each
    // contact's revenue squared, which SQL would compute differently on the two backends.
    let window = "o.ordered_at >= e.entered_at AND o.ordered_at < e.entered_at + $2 AND o.status NOT IN ('cancelled', 'refunded')";
    let rows = pool
        .fetch(
            &format!(
                "SELECT e.variant, e.holdout, \
                   (SELECT COUNT(*) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE (c.id = e.profile_id OR c.profile_id = e.profile_id) AND {window}), \
                   (SELECT CAST(COALESCE(SUM(o.total_minor), 0) AS BIGINT) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE (c.id = e.profile_id OR c.profile_id = e.profile_id) AND {window}), \
                   p.locale, p.email \
                 FROM enrolments e LEFT JOIN customers p ON p.id = e.profile_id \
                 WHERE e.campaign_id = $1 AND e.entered_at >= $3 AND e.entered_at < $4"
            ),
            &[
                Val::from(campaign_id),
                Val::from(window_seconds * 1_000_000),
                Val::from(range.0),
                Val::from(range.1),
            ],
        )
        .await?;
    let mut arms: BTreeMap<(String, bool, String), ArmResult> = BTreeMap::new();
    for r in &rows {
        let (variant, holdout) = (r.text(0)?, r.i64(1)? != 0);
        let (orders, revenue) = (r.i64(2)?, r.i64(3)?);
        let segment = match by {
            Segment::All => "all".to_owned(),
            Segment::Locale => r.opt_text(4)?.unwrap_or_else(|| "default".into()),
            Segment::Provider => r
                .opt_text(5)?
                .map(|e| policy::mailbox_provider(&e))
                .unwrap_or_else(|| "none".into()),
        };
        let a = arms
            .entry((segment, holdout, variant.clone()))
            .or_insert_with(|| ArmResult {
                variant,
                holdout,
                ..ArmResult::default()
            });
        a.enrolled += 1;
        a.converted += i64::from(orders > 0);
        a.orders += orders;
        a.revenue_minor += revenue;
        a.revenue_sq += (revenue as f64).powi(2);
    }
    Ok(arms.into_iter().map(|((s, _, _), a)| (s, a)).collect())
}

pub(crate) async fn campaign_results(
    pool: &Pool,
    campaign_id: i64,
    window_seconds: i64,
    range: (i64, i64),
) -> Result<Vec<ArmResult>, StoreError> {
    let mut out: Vec<ArmResult> =
        segment_results(pool, campaign_id, window_seconds, range, Segment::All)
            .await?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
    for r in pool
        .fetch(
            "SELECT variant, state, COUNT(*) FROM outbox WHERE campaign_id = $1 GROUP BY variant, state",
            &[Val::from(campaign_id)],
        )
        .await?
    {
        let v = r.text(0)?;
        if let Some(a) = out.iter_mut().find(|a| !a.holdout && a.variant == v) {
            a.messages.insert(r.text(1)?, r.i64(2)?);
        }
    }
    for r in pool
        .fetch(
            "SELECT variant, COUNT(*), COUNT(CASE WHEN used > 0 THEN 1 END), CAST(COALESCE(SUM(cost_minor), 0) AS BIGINT) FROM offers WHERE campaign_id = $1 GROUP BY variant",
            &[Val::from(campaign_id)],
        )
        .await?
    {
        let v = r.text(0)?;
        if let Some(a) = out.iter_mut().find(|a| !a.holdout && a.variant == v) {
            a.offers = r.i64(1)?;
            a.redeemed = r.i64(2)?;
            a.discount_minor = r.i64(3)?;
        }
    }
    Ok(out)
}

/// What happened to one group of a campaign's messages. [`SqlStore::message_funnel`] groups by
/// step, variant and channel ([`MessageFunnel::locale`] and [`MessageFunnel::provider`] are then
/// empty); [`SqlStore::message_funnel_detail`] also by locale and mailbox provider, and
/// [`rollup`] sums the detail along any of them.
///
/// [`SqlStore::message_funnel`]: crate::SqlStore::message_funnel
/// [`SqlStore::message_funnel_detail`]: crate::SqlStore::message_funnel_detail
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageFunnel {
    /// Step id.
    pub step: String,
    /// Variant.
    pub variant: String,
    /// Channel.
    pub channel: String,
    /// The contact's locale (`default` when none is known); empty when not grouped by it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub locale: String,
    /// The recipient's mailbox provider (email only; `-` for other channels and messages never
    /// attempted); empty when not grouped by it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// Accepted by the relay or provider (or written to the outbox folder).
    pub sent: i64,
    /// Sent and not bounced afterwards.
    pub delivered: i64,
    /// Refused for good about the recipient, at send time or by a later bounce report (the
    /// address is suppressed).
    pub hard_bounced: i64,
    /// Refused for now (full mailbox, temporary recipient failure), or bounced later for a
    /// reason that is not the recipient's for good.
    pub soft_bounced: i64,
    /// Unknown after a crash (neither sent nor bounced): counted, never resent.
    pub in_doubt: i64,
    /// Not sent at send time (consent, suppression, caps, an ended journey…).
    pub dropped: i64,
    /// Messages opened by a person.
    pub opened_human: i64,
    /// Messages opened only by a machine (privacy proxies, scanners).
    pub opened_machine: i64,
    /// Messages clicked.
    pub clicked: i64,
    /// Unsubscribes from these messages.
    pub unsubscribed: i64,
    /// Spam complaints about these messages.
    pub complained: i64,
    /// Survey answers by reason.
    pub survey: BTreeMap<String, i64>,
}

impl MessageFunnel {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &MessageFunnel) {
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.hard_bounced += other.hard_bounced;
        self.soft_bounced += other.soft_bounced;
        self.in_doubt += other.in_doubt;
        self.dropped += other.dropped;
        self.opened_human += other.opened_human;
        self.opened_machine += other.opened_machine;
        self.clicked += other.clicked;
        self.unsubscribed += other.unsubscribed;
        self.complained += other.complained;
        for (k, v) in &other.survey {
            *self.survey.entry(k.clone()).or_default() += v;
        }
    }
}

/// Which dimensions a [`rollup`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunnelKey {
    /// Step, variant and channel (the journey view).
    StepVariantChannel,
    /// Locale and channel.
    Locale,
    /// Mailbox provider (email).
    Provider,
}

/// Sums detailed funnels along `key`; the dimensions not kept are left empty.
pub fn rollup(detail: &[MessageFunnel], key: FunnelKey) -> Vec<MessageFunnel> {
    let mut out: BTreeMap<(String, String, String, String, String), MessageFunnel> =
        BTreeMap::new();
    for f in detail {
        let k = match key {
            FunnelKey::StepVariantChannel => (
                f.step.clone(),
                f.variant.clone(),
                f.channel.clone(),
                String::new(),
                String::new(),
            ),
            FunnelKey::Locale => (
                String::new(),
                String::new(),
                f.channel.clone(),
                f.locale.clone(),
                String::new(),
            ),
            FunnelKey::Provider => {
                if f.channel != "email" {
                    continue;
                }
                (
                    String::new(),
                    String::new(),
                    f.channel.clone(),
                    String::new(),
                    f.provider.clone(),
                )
            }
        };
        out.entry(k.clone())
            .or_insert_with(|| MessageFunnel {
                step: k.0,
                variant: k.1,
                channel: k.2,
                locale: k.3,
                provider: k.4,
                ..MessageFunnel::default()
            })
            .add(f);
    }
    out.into_values().collect()
}

/// Message outcomes per step, variant, channel, locale and mailbox provider for messages queued
/// in `range`, with the engagement events that name them (`message_id`), per campaign id: one
/// campaign's, or every campaign's when `campaign` is `None`. Every campaign at once reads the
/// engagement events once rather than once per campaign (a report covers them all).
pub(crate) async fn message_funnels(
    pool: &Pool,
    campaign: Option<i64>,
    range: (i64, i64),
) -> Result<HashMap<i64, Vec<MessageFunnel>>, StoreError> {
    type Key = (i64, String, String, String, String, String);
    let mut by_key: HashMap<String, Key> = HashMap::new();
    let mut funnels: BTreeMap<Key, MessageFunnel> = BTreeMap::new();
    let mut accepted: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut args = vec![Val::from(range.0), Val::from(range.1)];
    let only = match campaign {
        Some(id) => {
            args.push(Val::from(id));
            " AND o.campaign_id = $3"
        }
        None => "",
    };
    for r in pool
        .fetch(
            &format!(
                "SELECT o.idempotency_key, o.step, o.variant, o.channel, o.state, o.outcome, COALESCE(c.locale, 'default'), COALESCE(o.provider, '-'), o.campaign_id \
                 FROM outbox o LEFT JOIN customers c ON c.id = o.profile_id \
                 WHERE o.created_at >= $1 AND o.created_at < $2{only}"
            ),
            &args,
        )
        .await?
    {
        let id = (
            r.i64(8)?,
            r.text(1)?,
            r.text(2)?,
            r.text(3)?,
            r.text(6)?,
            r.text(7)?,
        );
        let f = funnels.entry(id.clone()).or_insert_with(|| MessageFunnel {
            step: id.1.clone(),
            variant: id.2.clone(),
            channel: id.3.clone(),
            locale: id.4.clone(),
            provider: id.5.clone(),
            ..MessageFunnel::default()
        });
        let outcome = r.opt_text(5)?.unwrap_or_default();
        // `sent` is what the relay or provider accepted; a message it refused is counted as
        // bounced instead, and one whose fate a crash left unknown as in doubt. A bounce
        // reported later (a DSN, a webhook) moves an accepted message from delivered to
        // bounced below.
        let state = r.text(4)?;
        match (state.as_str(), outcome.as_str()) {
            ("sent", _) => {
                f.sent += 1;
                f.delivered += 1;
                accepted.insert(r.text(0)?);
            }
            ("failed", "hard_bounce") => f.hard_bounced += 1,
            (_, "soft_bounce") => f.soft_bounced += 1,
            ("in_doubt", _) => f.in_doubt += 1,
            ("dropped", _) => f.dropped += 1,
            _ => {}
        }
        by_key.insert(r.text(0)?, id);
    }
    if by_key.is_empty() {
        return Ok(HashMap::new());
    }
    // Each message counts once per kind of response, however often it was opened or clicked;
    // a message a person opened is not also counted as a machine open.
    #[derive(Default)]
    struct Seen {
        hard_bounce: bool,
        soft_bounce: bool,
        open: bool,
        machine_open: bool,
        click: bool,
        unsubscribe: bool,
        complaint: bool,
    }
    let mut seen: HashMap<String, Seen> = HashMap::new();
    for r in pool
        .fetch(
            "SELECT type, payload FROM events WHERE type IN ('email_opened', 'email_clicked', 'email_unsubscribed', 'email_complained', 'email_bounced', 'survey_answered') \
             AND occurred_at >= $1",
            &[Val::from(range.0)],
        )
        .await?
    {
        let payload: serde_json::Value = serde_json::from_str(&r.text(1)?).unwrap_or_default();
        let Some(key) = payload.get("message_id").and_then(|m| m.as_str()) else {
            continue;
        };
        let Some(id) = by_key.get(key) else {
            continue;
        };
        let s = seen.entry(key.to_owned()).or_default();
        match r.text(0)?.as_str() {
            "email_opened" if payload.get("machine").and_then(|m| m.as_bool()) == Some(true) => {
                s.machine_open = true
            }
            "email_opened" => s.open = true,
            "email_clicked" => s.click = true,
            "email_unsubscribed" => s.unsubscribe = true,
            "email_complained" => s.complaint = true,
            "email_bounced" if accepted.contains(key) => {
                if payload.get("bounce").and_then(|b| b.as_str()) == Some("soft") {
                    s.soft_bounce = true;
                } else {
                    s.hard_bounce = true;
                }
            }
            "email_bounced" => {}
            _ => {
                let reason = payload
                    .get("reason")
                    .and_then(|v| v.as_str())
                    .unwrap_or("other")
                    .to_owned();
                if let Some(f) = funnels.get_mut(id) {
                    *f.survey.entry(reason).or_default() += 1;
                }
            }
        }
    }
    for (key, s) in &seen {
        let Some(f) = by_key.get(key).and_then(|id| funnels.get_mut(id)) else {
            continue;
        };
        // An accepted message bounced afterwards: once, hard over soft.
        if s.hard_bounce || s.soft_bounce {
            f.delivered -= 1;
            if s.hard_bounce {
                f.hard_bounced += 1;
            } else {
                f.soft_bounced += 1;
            }
        }
        f.opened_human += i64::from(s.open);
        f.opened_machine += i64::from(s.machine_open && !s.open);
        f.clicked += i64::from(s.click);
        f.unsubscribed += i64::from(s.unsubscribe);
        f.complained += i64::from(s.complaint);
    }
    let mut out: HashMap<i64, Vec<MessageFunnel>> = HashMap::new();
    for ((campaign_id, ..), f) in funnels {
        out.entry(campaign_id).or_default().push(f);
    }
    Ok(out)
}

/// Counts of enrolments by state and of outbox rows by state, per campaign name.
/// One campaign's journeys by state, messages by state, and dropped messages by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CampaignCounts {
    /// The campaign.
    pub name: String,
    /// Enrolments by state (`active`, `completed`, `exited`, `held_out`).
    pub enrolments: BTreeMap<String, i64>,
    /// Messages by state (`sent`, `dropped`, `in_doubt`, …).
    pub messages: BTreeMap<String, i64>,
    /// Dropped messages by reason (`no_consent`, `suppressed`, `erased`, `expired`, `cap`,
    /// `no_address`, `journey_ended`).
    pub dropped: BTreeMap<String, i64>,
}

/// The reason a dropped message's outcome names, without the journey-end detail.
pub fn drop_reason(outcome: &str) -> &str {
    outcome.split(':').next().unwrap_or(outcome)
}

pub(crate) async fn campaign_counts(pool: &Pool) -> Result<Vec<CampaignCounts>, StoreError> {
    let mut out: BTreeMap<String, CampaignCounts> = BTreeMap::new();
    fn entry(out: &mut BTreeMap<String, CampaignCounts>, name: String) -> &mut CampaignCounts {
        out.entry(name.clone()).or_insert_with(|| CampaignCounts {
            name,
            ..CampaignCounts::default()
        })
    }
    for r in pool
        .fetch("SELECT c.name, e.state, COUNT(*) FROM enrolments e JOIN campaigns c ON c.id = e.campaign_id GROUP BY c.name, e.state", &[])
        .await?
    {
        entry(&mut out, r.text(0)?).enrolments.insert(r.text(1)?, r.i64(2)?);
    }
    for r in pool
        .fetch("SELECT c.name, o.state, COUNT(*) FROM outbox o JOIN campaigns c ON c.id = o.campaign_id GROUP BY c.name, o.state", &[])
        .await?
    {
        entry(&mut out, r.text(0)?).messages.insert(r.text(1)?, r.i64(2)?);
    }
    for r in pool
        .fetch("SELECT c.name, o.outcome, COUNT(*) FROM outbox o JOIN campaigns c ON c.id = o.campaign_id WHERE o.state = 'dropped' GROUP BY c.name, o.outcome", &[])
        .await?
    {
        let reason = r.opt_text(1)?.unwrap_or_else(|| "unknown".into());
        *entry(&mut out, r.text(0)?)
            .dropped
            .entry(drop_reason(&reason).to_owned())
            .or_default() += r.i64(2)?;
    }
    Ok(out.into_values().collect())
}

/// Offer codes of a campaign for the shop: code, kind, amount, currency, minimum, expiry, state.
pub(crate) async fn offer_codes(
    pool: &Pool,
    campaign_id: i64,
) -> Result<Vec<Vec<String>>, StoreError> {
    pool.fetch(
        "SELECT code, kind, COALESCE(CAST(amount_minor AS TEXT), ''), COALESCE(CAST(percent AS TEXT), ''), COALESCE(sku, ''), currency, \
         CAST(min_order_minor AS TEXT), CAST(uses AS TEXT), CAST(expires_at AS TEXT), state FROM offers WHERE campaign_id = $1 ORDER BY issued_at, code",
        &[Val::from(campaign_id)],
    )
    .await?
    .iter()
    .map(|r| (0..10).map(|i| r.text(i)).collect())
    .collect()
}
