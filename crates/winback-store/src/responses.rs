//! What comes back from contacts and other systems: the message a tracking token names, click
//! destinations, tags, the preference centre, suppressions from bounce webhooks and SMS STOP
//! replies, API keys and idempotent API requests.
//!
//! Engagement itself (opens, clicks, unsubscribes, survey answers) is stored as events through
//! the import session, so one path withdraws consent and ends journeys whatever the source.

use winback_domain::LegalBasis;
use winback_domain::ProfileId;
use winback_domain::{Channel, ConsentStatus, Timestamp};
use winback_engine::ports::{AudienceFile, AudienceMember};

use crate::StoreError;
use crate::db::{Pool, Tx, Val};
use crate::queries::ts;

/// The sent message a tracking token names.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MessageRef {
    /// Outbox row.
    pub outbox_id: i64,
    /// Idempotency key.
    pub key: String,
    /// Profile.
    pub profile_id: ProfileId,
    /// External id of the profile's first record (events are stored against it).
    pub customer: String,
    /// Campaign name.
    pub campaign: String,
    /// Step id.
    pub step: String,
    /// Variant.
    pub variant: String,
    /// Channel.
    pub channel: String,
    /// The address it went to.
    pub recipient: Option<String>,
    /// When the send began.
    pub sent_at: Option<Timestamp>,
    /// The contact's locale.
    pub locale: Option<String>,
}

/// What the preference centre shows and stores.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Preferences {
    /// `true` for "fewer emails" (at most one per two weeks).
    pub low_frequency: bool,
    /// Topics the contact turned off (stored as `topic_off:NAME` tags for audiences to use).
    pub topics_off: Vec<String>,
    /// Marketing email allowed by the consent in force.
    pub email: bool,
    /// Marketing SMS allowed by the consent in force.
    pub sms: bool,
}

/// A stored API key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyRow {
    /// Id.
    pub id: i64,
    /// Name given at creation.
    pub name: String,
    /// The public prefix of the key, shown in lists.
    pub prefix: String,
    /// Scopes, e.g. `ingest`, `admin`.
    pub scopes: Vec<String>,
    /// Created.
    pub created_at: Timestamp,
    /// Revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// Last used (updated at most once a minute).
    pub last_used_at: Option<Timestamp>,
}

/// Where an idempotent request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// First time: handle it, then [`crate::SqlStore::idempotency_finish`].
    New,
    /// Seen with the same body: replay this status and body.
    Replay(u16, String),
    /// Seen with a different body.
    Mismatch,
    /// The first request with this key is still being handled.
    InProgress,
}

/// What an SMS STOP reply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopOutcome {
    /// First time this provider message was seen (send the confirmation only then).
    pub new: bool,
    /// Customer records whose SMS consent was withdrawn.
    pub records: u64,
}

async fn profile_records(tx: &mut Tx, profile_id: i64) -> Result<Vec<i64>, StoreError> {
    tx.fetch(
        "SELECT id FROM customers WHERE (id = $1 OR profile_id = $1) ORDER BY id",
        &[Val::from(profile_id)],
    )
    .await?
    .iter()
    .map(|r| r.i64(0))
    .collect()
}

async fn record_consent(
    tx: &mut Tx,
    records: &[i64],
    channel: Channel,
    status: ConsentStatus,
    source: &str,
    wording: Option<&str>,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut n = 0;
    for id in records {
        n += tx
            .execute(
                "INSERT INTO consent_ledger (customer_id, channel, status, source, wording_version, recorded_at, inserted_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
                 ON CONFLICT (customer_id, channel, status, recorded_at, source) DO NOTHING",
                &[
                    Val::from(*id),
                    Val::from(channel.as_str()),
                    Val::from(status.as_str()),
                    Val::from(source),
                    Val::from(wording),
                    Val::from(now.as_micros()),
                ],
            )
            .await?;
    }
    // Features carry whether marketing email may be sent: refreshed from the facts.
    crate::features::mark_dirty(tx, records).await?;
    Ok(n)
}

/// Whether any of the profile's addresses on `channel` may receive marketing: each address's
/// statement in force, folded from every record that carries it (`crate::consent`).
async fn consent_allows(
    tx: &mut Tx,
    records: &[i64],
    channel: Channel,
) -> Result<bool, StoreError> {
    let folded = crate::consent::for_records(tx, records).await?;
    Ok(records.iter().any(|id| {
        folded
            .for_record(*id, channel)
            .is_some_and(|c| c.status.allows_marketing())
    }))
}

/// The message a tracking token names. An erased person's messages are not found: their old
/// links answer like an unknown token and write nothing.
const MESSAGE: &str = "SELECT o.id, o.idempotency_key, o.profile_id, c.external_id, k.name AS campaign, o.step, o.variant, o.channel, o.recipient, o.sent_at, c.locale \
     FROM outbox o JOIN customers c ON c.id = o.profile_id JOIN campaigns k ON k.id = o.campaign_id";

fn message_ref(r: &crate::db::DbRow) -> Result<MessageRef, StoreError> {
    Ok(MessageRef {
        outbox_id: r.i64("id")?,
        key: r.text("idempotency_key")?,
        profile_id: ProfileId::new(r.i64("profile_id")?),
        customer: r.text("external_id")?,
        campaign: r.text("campaign")?,
        step: r.text("step")?,
        variant: r.text("variant")?,
        channel: r.text("channel")?,
        recipient: r.opt_text("recipient")?,
        sent_at: r.opt_i64("sent_at")?.map(ts).transpose()?,
        locale: r.opt_text("locale")?,
    })
}

pub(crate) async fn message(pool: &Pool, key: &str) -> Result<Option<MessageRef>, StoreError> {
    let rows = pool
        .fetch(
            &format!("{MESSAGE} WHERE o.idempotency_key = $1 AND c.erased_at IS NULL"),
            &[Val::from(key)],
        )
        .await?;
    rows.first().map(message_ref).transpose()
}

/// The external id events are stored against, for each of `keys` whose message the store has
/// and whose person is not erased: what the tracking writer records clicks under.
pub(crate) async fn message_customers(
    pool: &Pool,
    keys: &[&str],
) -> Result<std::collections::HashMap<String, String>, StoreError> {
    let mut out = std::collections::HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(1_000) {
        let args: Vec<Val> = chunk.iter().map(|k| Val::from(*k)).collect();
        for r in pool
            .fetch(
                &format!(
                    "SELECT o.idempotency_key, c.external_id FROM outbox o JOIN customers c ON c.id = o.profile_id \
                     WHERE o.idempotency_key IN ({}) AND c.erased_at IS NULL",
                    crate::db::in_list(chunk.len())
                ),
                &args,
            )
            .await?
        {
            out.insert(r.text("idempotency_key")?, r.text("external_id")?);
        }
    }
    Ok(out)
}

/// The message whose key digest starts with `prefix` (lower-case hex: a VERP tag or the hash
/// in a `Message-ID`), falling back, for rows written without a digest, to the messages sent to
/// `recipient`. `None` when nothing matches or the prefix is ambiguous.
pub(crate) async fn message_by_digest(
    pool: &Pool,
    prefix: &str,
    recipient: Option<&str>,
) -> Result<Option<MessageRef>, StoreError> {
    let prefix = prefix.to_ascii_lowercase();
    if prefix.len() < 16 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    // `[prefix, prefix + "g")` is every lower-case hex string starting with the prefix, and a
    // range an index serves on both backends (LIKE would not on PostgreSQL's default collation).
    let rows = pool
        .fetch(
            &format!(
                "{MESSAGE} WHERE o.key_digest >= $1 AND o.key_digest < $2 AND c.erased_at IS NULL LIMIT 2"
            ),
            &[Val::from(prefix.as_str()), Val::from(format!("{prefix}g"))],
        )
        .await?;
    if rows.len() == 1 {
        return rows.first().map(message_ref).transpose();
    }
    if !rows.is_empty() {
        return Ok(None);
    }
    let Some(recipient) = recipient else {
        return Ok(None);
    };
    let rows = pool
        .fetch(
            &format!(
                "{MESSAGE} WHERE o.recipient = $1 AND o.key_digest IS NULL AND c.erased_at IS NULL"
            ),
            &[Val::from(recipient)],
        )
        .await?;
    for r in &rows {
        let m = message_ref(r)?;
        if crate::migrate::key_digest(&m.key).starts_with(&prefix) {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

/// Which of these event keys (`id:SOURCE`) are stored already.
pub(crate) async fn stored_event_keys(
    pool: &Pool,
    keys: &[String],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut out = std::collections::HashSet::new();
    for chunk in keys.chunks(500) {
        let list = (1..=chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let args: Vec<Val> = chunk.iter().map(|k| Val::from(k.as_str())).collect();
        for r in pool
            .fetch(
                &format!("SELECT event_key FROM events WHERE event_key IN ({list})"),
                &args,
            )
            .await?
        {
            out.insert(r.text(0)?);
        }
    }
    Ok(out)
}

pub(crate) async fn set_links(
    pool: &Pool,
    links: &[(String, String)],
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for (name, url) in links {
        tx.execute(
            "INSERT INTO links (name, url, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET url = excluded.url, updated_at = excluded.updated_at",
            &[
                Val::from(name.as_str()),
                Val::from(url.as_str()),
                Val::from(now.as_micros()),
            ],
        )
        .await?;
    }
    tx.commit().await
}

pub(crate) async fn link(pool: &Pool, name: &str) -> Result<Option<String>, StoreError> {
    pool.fetch("SELECT url FROM links WHERE name = $1", &[Val::from(name)])
        .await?
        .first()
        .map(|r| r.text(0))
        .transpose()
}

pub(crate) async fn add_tag(
    pool: &Pool,
    profile_id: i64,
    tag: &str,
    source: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    Ok(pool
        .execute(
            "INSERT INTO contact_tags (profile_id, tag, added_at, source) VALUES ($1, $2, $3, $4) ON CONFLICT (profile_id, tag) DO NOTHING",
            &[
                Val::from(profile_id),
                Val::from(tag),
                Val::from(now.as_micros()),
                Val::from(source),
            ],
        )
        .await?
        > 0)
}

pub(crate) async fn preferences(pool: &Pool, profile_id: i64) -> Result<Preferences, StoreError> {
    let mut tx = pool.begin().await?;
    let records = profile_records(&mut tx, profile_id).await?;
    let low_frequency = tx
        .fetch(
            "SELECT frequency FROM preferences WHERE profile_id = $1",
            &[Val::from(profile_id)],
        )
        .await?
        .first()
        .map(|r| r.text(0))
        .transpose()?
        .is_some_and(|f| f == "low");
    let topics_off = tx
        .fetch(
            "SELECT tag FROM contact_tags WHERE profile_id = $1 AND tag LIKE 'topic_off:%' ORDER BY tag",
            &[Val::from(profile_id)],
        )
        .await?
        .iter()
        .map(|r| Ok(r.text(0)?.trim_start_matches("topic_off:").to_owned()))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let email = consent_allows(&mut tx, &records, Channel::Email).await?;
    let sms = consent_allows(&mut tx, &records, Channel::Sms).await?;
    tx.rollback().await?;
    Ok(Preferences {
        low_frequency,
        topics_off,
        email,
        sms,
    })
}

/// Stores the preference centre's form. Channel switches only record a change: turning a
/// channel off withdraws consent; turning it on records an explicit opt-in by the person.
pub(crate) async fn set_preferences(
    pool: &Pool,
    profile_id: i64,
    prefs: &Preferences,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let records = profile_records(&mut tx, profile_id).await?;
    // The consent in force, read in the transaction that records the change.
    let was_email = consent_allows(&mut tx, &records, Channel::Email).await?;
    let was_sms = consent_allows(&mut tx, &records, Channel::Sms).await?;
    tx.execute(
        "INSERT INTO preferences (profile_id, frequency, topics_off, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (profile_id) DO UPDATE SET frequency = excluded.frequency, topics_off = excluded.topics_off, updated_at = excluded.updated_at",
        &[
            Val::from(profile_id),
            Val::from(if prefs.low_frequency { "low" } else { "normal" }),
            Val::from(serde_json::to_string(&prefs.topics_off)?),
            Val::from(now.as_micros()),
        ],
    )
    .await?;
    tx.execute(
        "DELETE FROM contact_tags WHERE profile_id = $1 AND tag LIKE 'topic_off:%'",
        &[Val::from(profile_id)],
    )
    .await?;
    for topic in &prefs.topics_off {
        tx.execute(
            "INSERT INTO contact_tags (profile_id, tag, added_at, source) VALUES ($1, $2, $3, 'preference_centre') ON CONFLICT (profile_id, tag) DO NOTHING",
            &[
                Val::from(profile_id),
                Val::from(format!("topic_off:{topic}")),
                Val::from(now.as_micros()),
            ],
        )
        .await?;
    }
    for (channel, was, wants) in [
        (Channel::Email, was_email, prefs.email),
        (Channel::Sms, was_sms, prefs.sms),
    ] {
        if was != wants {
            let status = if wants {
                ConsentStatus::OptIn
            } else {
                ConsentStatus::Withdrawn
            };
            record_consent(
                &mut tx,
                &records,
                channel,
                status,
                "preference_centre",
                Some("preferences-v1"),
                now,
            )
            .await?;
        }
    }
    tx.commit().await
}

pub(crate) async fn suppress_address(
    pool: &Pool,
    channel: &str,
    address: &str,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    crate::journeys::suppress(&mut tx, channel, address, reason, now).await?;
    tx.commit().await
}

pub(crate) async fn soft_bounce_address(
    pool: &Pool,
    channel: &str,
    address: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let n = crate::journeys::soft_bounce(&mut tx, channel, address, now).await?;
    let suppressed = winback_engine::policy::soft_bounces_suppress(n);
    if suppressed {
        crate::journeys::suppress(&mut tx, channel, address, "soft_bounces", now).await?;
    }
    tx.commit().await?;
    Ok(suppressed)
}

pub(crate) async fn is_suppressed(
    pool: &Pool,
    channel: &str,
    address: &str,
) -> Result<bool, StoreError> {
    Ok(!pool
        .fetch(
            "SELECT 1 FROM suppressions WHERE channel = $1 AND address = $2 AND active = 1",
            &[Val::from(channel), Val::from(address)],
        )
        .await?
        .is_empty())
}

pub(crate) async fn sms_stop(
    pool: &Pool,
    provider_id: &str,
    number: &str,
    body: &str,
    now: Timestamp,
) -> Result<StopOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let new = tx
        .execute(
            "INSERT INTO sms_inbound (provider_id, sender, body, action, received_at) VALUES ($1, $2, $3, 'stop', $4) ON CONFLICT (provider_id) DO NOTHING",
            &[
                Val::from(provider_id),
                Val::from(number),
                Val::from(body),
                Val::from(now.as_micros()),
            ],
        )
        .await?
        > 0;
    if !new {
        tx.rollback().await?;
        return Ok(StopOutcome { new, records: 0 });
    }
    crate::journeys::suppress(&mut tx, "sms", number, "stop", now).await?;
    let records: Vec<i64> = tx
        .fetch(
            "SELECT id FROM customers WHERE phone = $1",
            &[Val::from(number)],
        )
        .await?
        .iter()
        .map(|r| r.i64(0))
        .collect::<Result<_, _>>()?;
    let n = record_consent(
        &mut tx,
        &records,
        Channel::Sms,
        ConsentStatus::Withdrawn,
        "sms:stop",
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(StopOutcome { new, records: n })
}

pub(crate) async fn create_api_key(
    pool: &Pool,
    name: &str,
    prefix: &str,
    hash: &str,
    scopes: &[String],
    now: Timestamp,
) -> Result<i64, StoreError> {
    let rows = pool
        .fetch(
            "INSERT INTO api_keys (name, prefix, hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                Val::from(name),
                Val::from(prefix),
                Val::from(hash),
                Val::from(scopes.join(",")),
                Val::from(now.as_micros()),
            ],
        )
        .await?;
    rows.first()
        .ok_or_else(|| StoreError::Data("no id returned".into()))?
        .i64(0)
}

fn key_row(r: &crate::db::DbRow) -> Result<ApiKeyRow, StoreError> {
    Ok(ApiKeyRow {
        id: r.i64("id")?,
        name: r.text("name")?,
        prefix: r.text("prefix")?,
        scopes: r
            .text("scopes")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: ts(r.i64("created_at")?)?,
        revoked_at: r.opt_i64("revoked_at")?.map(ts).transpose()?,
        last_used_at: r.opt_i64("last_used_at")?.map(ts).transpose()?,
    })
}

const KEY_COLUMNS: &str = "id, name, prefix, scopes, created_at, revoked_at, last_used_at";

/// The active key with this hash. Read on every request, never cached, so a revocation takes
/// effect on the next request.
pub(crate) async fn api_key_by_hash(
    pool: &Pool,
    hash: &str,
    now: Timestamp,
) -> Result<Option<ApiKeyRow>, StoreError> {
    let rows = pool
        .fetch(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = $1 AND revoked_at IS NULL"),
            &[Val::from(hash)],
        )
        .await?;
    let Some(row) = rows.first().map(key_row).transpose()? else {
        return Ok(None);
    };
    if row
        .last_used_at
        .is_none_or(|t| now.as_micros() - t.as_micros() > 60_000_000)
    {
        pool.execute(
            "UPDATE api_keys SET last_used_at = $2 WHERE id = $1",
            &[Val::from(row.id), Val::from(now.as_micros())],
        )
        .await?;
    }
    Ok(Some(row))
}

pub(crate) async fn api_keys(pool: &Pool) -> Result<Vec<ApiKeyRow>, StoreError> {
    pool.fetch(
        &format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id"),
        &[],
    )
    .await?
    .iter()
    .map(key_row)
    .collect()
}

pub(crate) async fn revoke_api_key(
    pool: &Pool,
    name_or_prefix: &str,
    now: Timestamp,
) -> Result<u64, StoreError> {
    pool.execute(
        "UPDATE api_keys SET revoked_at = $2 WHERE (prefix = $1 OR name = $1) AND revoked_at IS NULL",
        &[Val::from(name_or_prefix), Val::from(now.as_micros())],
    )
    .await
}

pub(crate) async fn idempotency_begin(
    pool: &Pool,
    key_id: i64,
    key: &str,
    request_hash: &str,
    now: Timestamp,
) -> Result<Idempotency, StoreError> {
    let inserted = pool
        .execute(
            "INSERT INTO idempotency_keys (api_key_id, idem_key, request_hash, status, body, created_at) VALUES ($1, $2, $3, 0, '', $4) \
             ON CONFLICT (api_key_id, idem_key) DO NOTHING",
            &[
                Val::from(key_id),
                Val::from(key),
                Val::from(request_hash),
                Val::from(now.as_micros()),
            ],
        )
        .await?;
    if inserted > 0 {
        return Ok(Idempotency::New);
    }
    let rows = pool
        .fetch(
            "SELECT request_hash, status, body FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2",
            &[Val::from(key_id), Val::from(key)],
        )
        .await?;
    let Some(r) = rows.first() else {
        // Deleted between the two statements (the first request failed): the caller may retry.
        return Ok(Idempotency::InProgress);
    };
    if r.text("request_hash")? != request_hash {
        return Ok(Idempotency::Mismatch);
    }
    let status = r.i64("status")?;
    if status == 0 {
        return Ok(Idempotency::InProgress);
    }
    Ok(Idempotency::Replay(
        u16::try_from(status).map_err(|e| StoreError::Data(e.to_string()))?,
        r.text("body")?,
    ))
}

pub(crate) async fn idempotency_finish(
    pool: &Pool,
    key_id: i64,
    key: &str,
    status: Option<(u16, &str)>,
) -> Result<(), StoreError> {
    match status {
        Some((status, body)) => {
            pool.execute(
                "UPDATE idempotency_keys SET status = $3, body = $4 WHERE api_key_id = $1 AND idem_key = $2",
                &[
                    Val::from(key_id),
                    Val::from(key),
                    Val::from(i64::from(status)),
                    Val::from(body),
                ],
            )
            .await?;
        }
        None => {
            pool.execute(
                "DELETE FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2",
                &[Val::from(key_id), Val::from(key)],
            )
            .await?;
        }
    }
    Ok(())
}

pub(crate) async fn customer_by_email_key(
    pool: &Pool,
    email_key: &str,
) -> Result<Option<(i64, String)>, StoreError> {
    let rows = pool
        .fetch(
            "SELECT COALESCE(c.profile_id, c.id), p.external_id FROM customers c JOIN customers p ON p.id = COALESCE(c.profile_id, c.id) \
             WHERE c.email_key = $1 AND c.erased_at IS NULL ORDER BY c.id LIMIT 1",
            &[Val::from(email_key)],
        )
        .await?;
    rows.first()
        .map(|r| Ok((r.i64(0)?, r.text(1)?)))
        .transpose()
}

/// Everyone a campaign's export steps added for `target`, under the destination's legal
/// basis, with each field from the first of the profile's records that has it (and every
/// distinct address). Erased people are left out, and so is anyone who objected to direct
/// marketing; under [`LegalBasis::Consent`] only the addresses whose consent in force is an
/// explicit opt-in are kept, and a contact with none is left out. Consent is read as the
/// send-time check reads it: folded per address over every record that shares it.
pub(crate) async fn audience_members(
    pool: &Pool,
    campaign_id: winback_domain::CampaignId,
    target: &str,
    basis: LegalBasis,
    now: Timestamp,
) -> Result<AudienceFile, StoreError> {
    let rows = pool
        .fetch(
            "SELECT a.profile_id, c.id, c.email, c.phone, c.first_name, c.last_name, c.address1, c.address2, c.postal_code, c.city, c.country, \
                    (SELECT o.code FROM offers o WHERE o.campaign_id = a.campaign_id AND o.profile_id = a.profile_id AND o.expires_at > $3 ORDER BY o.issued_at DESC LIMIT 1) AS code, \
                    CAST(CASE WHEN EXISTS (SELECT 1 FROM contact_tags t WHERE t.profile_id = a.profile_id AND t.tag = 'objected') THEN 1 ELSE 0 END AS BIGINT) AS objected \
             FROM (SELECT DISTINCT campaign_id, target, profile_id FROM audience_exports WHERE campaign_id = $1 AND target = $2) a \
             JOIN customers c ON (c.id = a.profile_id OR c.profile_id = a.profile_id) AND c.erased_at IS NULL \
             ORDER BY a.profile_id, c.id",
            &[Val::from(campaign_id), Val::from(target), Val::from(now.as_micros())],
        )
        .await?;
    let consent = match basis {
        LegalBasis::Consent => {
            let records: Vec<i64> = rows.iter().map(|r| r.i64("id")).collect::<Result<_, _>>()?;
            Some(crate::consent::for_records(&mut &*pool, &records).await?)
        }
        LegalBasis::LegitimateInterest => None,
    };
    let opted_in = |record: i64, channel: Channel| {
        consent.as_ref().is_none_or(|f| {
            f.for_record(record, channel)
                .is_some_and(|c| c.status == ConsentStatus::OptIn)
        })
    };
    let mut file = AudienceFile::default();
    let mut current: Option<(AudienceMember, bool)> = None;
    let finish = |m: Option<(AudienceMember, bool)>, file: &mut AudienceFile| {
        let Some((m, objected)) = m else { return };
        if objected {
            file.objected += 1;
        } else if consent.is_some() && m.email.is_none() && m.phone.is_none() {
            file.no_consent += 1;
        } else {
            file.members.push(m);
        }
    };
    for r in &rows {
        let profile_id = winback_domain::ProfileId::new(r.i64("profile_id")?);
        if current
            .as_ref()
            .is_none_or(|(m, _)| m.profile_id != profile_id)
        {
            finish(current.take(), &mut file);
            current = Some((
                AudienceMember {
                    profile_id,
                    code: r.opt_text("code")?,
                    ..Default::default()
                },
                r.i64("objected")? != 0,
            ));
        }
        let (m, _) = &mut current.as_mut().expect("set above");
        let record = r.i64("id")?;
        if let Some(e) = r
            .opt_text("email")?
            .filter(|_| opted_in(record, Channel::Email))
        {
            push_distinct(&mut m.email, &mut m.other_emails, e, |a, b| {
                a.trim().eq_ignore_ascii_case(b.trim())
            });
        }
        if let Some(p) = r
            .opt_text("phone")?
            .filter(|_| opted_in(record, Channel::Sms))
        {
            push_distinct(&mut m.phone, &mut m.other_phones, p, |a, b| a == b);
        }
        for (slot, col) in [
            (&mut m.first_name, "first_name"),
            (&mut m.last_name, "last_name"),
            (&mut m.address1, "address1"),
            (&mut m.address2, "address2"),
            (&mut m.postal_code, "postal_code"),
            (&mut m.city, "city"),
            (&mut m.country, "country"),
        ] {
            if slot.is_none() {
                *slot = r.opt_text(col)?;
            }
        }
    }
    finish(current.take(), &mut file);
    Ok(file)
}

/// Puts `v` in `first` when empty, else in `others` unless an equal one is there already.
fn push_distinct(
    first: &mut Option<String>,
    others: &mut Vec<String>,
    v: String,
    same: impl Fn(&str, &str) -> bool,
) {
    match first {
        None => *first = Some(v),
        Some(f) if same(f, &v) => {}
        Some(_) if others.iter().any(|o| same(o, &v)) => {}
        Some(_) => others.push(v),
    }
}
