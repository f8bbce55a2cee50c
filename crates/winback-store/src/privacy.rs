//! Privacy: who the retention policy would delete and why, anonymising erasure, the salted
//! hashes that keep erased people out after a re-import, the right of access (a JSON export of
//! everything stored about one person), objection to direct marketing, the audit trail, and
//! the list-hygiene figures.
//!
//! Erasure anonymises instead of deleting rows: names, addresses, numbers, attributes, event
//! details and message recipients go, while orders, messages and events keep their pseudonymous
//! profile id, so revenue, counts and holdout readouts stay exactly what they were.

use std::collections::{BTreeMap, HashMap, HashSet};
use winback_domain::ProfileId;

use sha2::{Digest, Sha256};
use winback_domain::{Channel, ConsentStatus, EmailAddress, Timestamp};

use crate::StoreError;
use crate::db::{Pool, Tx, Val, in_list};
use crate::queries::ts;

/// Event payload fields kept after erasure: none of them says who the person was, and the
/// measurement reads them (survey reasons, machine opens, cart values, the message).
const KEPT_EVENT_FIELDS: [&str; 6] = [
    "message_id",
    "reason",
    "machine",
    "value_minor",
    "currency",
    "points",
];

/// A person's latest customer-originated activity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Activity {
    /// Profile.
    pub profile_id: ProfileId,
    /// When.
    pub at: Timestamp,
    /// What: `order`, an event type, `opt_in` (in the preference centre), or `first_seen` when
    /// nothing else is known (the account's creation, or the first import of the record).
    pub basis: String,
}

/// One person the retention policy would erase (or erased), with why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetentionCandidate {
    /// Profile.
    pub profile_id: ProfileId,
    /// The latest customer-originated activity.
    pub last_activity: Activity,
    /// Whether a retention notice is in flight or was sent within the notice period, so the
    /// erasure waits for the answer.
    pub notice_pending: bool,
}

/// How one erasure went.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    /// Profile.
    pub profile_id: ProfileId,
    /// Customer records anonymised.
    pub records: u64,
    /// Identity hashes added to the erased list.
    pub hashes: u64,
    /// Queued messages dropped and journeys ended.
    pub messages_dropped: u64,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// Run.
    pub run_id: i64,
    /// `retention`, `erasure`, `objection`, `export`.
    pub kind: String,
    /// Whether the run only listed.
    pub dry_run: bool,
    /// Profile.
    pub profile_id: ProfileId,
    /// `erased`, `objected`, `exported`, `would_erase`.
    pub action: String,
    /// Why.
    pub reason: String,
    /// The latest activity, for retention.
    pub last_activity_at: Option<Timestamp>,
    /// When.
    pub at: Timestamp,
}

/// A privacy run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PrivacyRun {
    /// Id.
    pub id: i64,
    /// `retention`, `erasure`, `objection`, `export`.
    pub kind: String,
    /// Whether it only listed.
    pub dry_run: bool,
    /// Its settings as JSON.
    pub settings: serde_json::Value,
    /// Start.
    pub started_at: Timestamp,
    /// End (none while running or after a crash).
    pub finished_at: Option<Timestamp>,
    /// People affected.
    pub affected: i64,
}

/// The list-hygiene figures (seeds 000 and 004): idle addresses, spam-trap risk, bounces,
/// complaints and merged duplicates.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Hygiene {
    /// People with an email address, not erased.
    pub addresses: u64,
    /// Of those, with no human engagement (click or human open) for 6 months or more.
    pub idle_6m: u64,
    /// … 12 months or more: a spam-trap risk (abandoned addresses get recycled as traps).
    pub idle_12m: u64,
    /// … 24 months or more.
    pub idle_24m: u64,
    /// Never engaged at all (idle counts them from when the address was first seen).
    pub never_engaged: u64,
    /// Addresses suppressed after a hard bounce.
    pub hard_bounces: u64,
    /// Addresses suppressed after soft bounces.
    pub soft_bounce_suppressions: u64,
    /// Spam complaints.
    pub complaints: u64,
    /// Email messages sent (for the complaint rate).
    pub emails_sent: u64,
    /// Complaints per email sent.
    pub complaint_rate: f64,
    /// Customer records merged into another person's profile by identity resolution.
    pub duplicates_merged: u64,
    /// People unsubscribed from email by a sunset (no answer to a re-permission message).
    pub sunset: u64,
    /// Identities kept as salted hashes after erasure.
    pub erased_identities: u64,
    /// Profiles erased.
    pub erased_profiles: u64,
    /// Active suppressions by reason.
    pub suppressions: BTreeMap<String, u64>,
    /// Addresses written with look-alike characters (a Cyrillic `а`, full-width letters): they
    /// pass as someone else's address to the eye, and are typos or abuse.
    pub look_alike_addresses: u64,
    /// Up to ten of them, for the report.
    pub look_alike_examples: Vec<String>,
}

/// Whether an address uses characters that look like ASCII letters or digits but are not (a
/// Cyrillic `а`, a Greek `ο`, full-width `ａ`): non-ASCII characters whose transliteration is a
/// single ASCII letter or digit. Accented Latin letters in an internationalised address do not
/// count: they are not disguised as something else.
pub fn is_look_alike(address: &str) -> bool {
    address.chars().any(|c| {
        if c.is_ascii() {
            return false;
        }
        // Latin letters with diacritics belong to real names (é, ø, ł).
        let latin = matches!(c, '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}');
        let ascii = deunicode::deunicode_char(c).unwrap_or("");
        !latin && ascii.len() == 1 && ascii.chars().all(|a| a.is_ascii_alphanumeric())
    })
}

/// The installation's salt for identity hashes, created on first use.
pub(crate) async fn salt(pool: &Pool) -> Result<String, StoreError> {
    if let Some(r) = pool
        .fetch_optional(
            "SELECT value FROM store_secrets WHERE name = 'identity_salt'",
            &[],
        )
        .await?
    {
        return r.text(0);
    }
    let mut bytes = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    // Two processes may race here; the first insert wins and both read it back.
    pool.execute(
        "INSERT INTO store_secrets (name, value, created_at) VALUES ('identity_salt', $1, $2) ON CONFLICT (name) DO NOTHING",
        &[Val::from(hex::encode(bytes)), Val::from(0i64)],
    )
    .await?;
    pool.fetch_optional(
        "SELECT value FROM store_secrets WHERE name = 'identity_salt'",
        &[],
    )
    .await?
    .ok_or_else(|| StoreError::Data("identity salt missing after insert".into()))?
    .text(0)
}

/// The salted hash of one identifier. Emails are hashed by their match key (so `A.B+x@gmail`
/// and `ab@gmail` are one person), phones as stored (E.164), customer ids as given.
pub fn identity_hash(salt: &str, kind: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(b"\0");
    h.update(kind.as_bytes());
    h.update(b"\0");
    h.update(value.as_bytes());
    hex::encode(h.finalize())
}

/// The match key of an address as the hash list keys it, or the lowercased text when it does
/// not parse (an address stored by an older version, say).
pub fn email_key(address: &str) -> String {
    EmailAddress::parse(address)
        .map(|e| e.match_key().to_owned())
        .unwrap_or_else(|_| address.trim().to_lowercase())
}

/// The erased-identity list, loaded once per import session when it is not empty.
#[derive(Debug, Clone, Default)]
pub struct ErasedList {
    salt: String,
    hashes: HashMap<String, i64>,
}

impl ErasedList {
    /// Loads the list (`None` when nobody was ever erased: imports then skip all hashing).
    pub(crate) async fn load(tx: &mut Tx, salt: &str) -> Result<Option<Self>, StoreError> {
        let rows = tx
            .fetch("SELECT hash, customer_id FROM erased_identities", &[])
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let salt = salt.to_owned();
        let mut hashes = HashMap::with_capacity(rows.len());
        for r in rows {
            hashes.insert(r.text("hash")?, r.i64("customer_id")?);
        }
        Ok(Some(Self { salt, hashes }))
    }

    /// The erased record an identifier belongs to, if any.
    pub fn find(&self, kind: &str, value: &str) -> Option<i64> {
        self.hashes
            .get(&identity_hash(&self.salt, kind, value))
            .copied()
    }

    /// The hash of an identifier under this installation's salt.
    pub fn hash(&self, kind: &str, value: &str) -> String {
        identity_hash(&self.salt, kind, value)
    }

    /// Whether an address or number of a channel belongs to an erased person.
    pub fn contains_address(&self, channel: &str, address: &str) -> bool {
        match channel {
            "email" => self.find("email", &email_key(address)).is_some(),
            "sms" => self.find("phone", address).is_some(),
            _ => false,
        }
    }
}

/// The hash list key of an address of a channel (`None` for webhooks).
pub fn address_hash(salt: &str, channel: &str, address: &str) -> Option<String> {
    match channel {
        "email" => Some(identity_hash(salt, "email", &email_key(address))),
        "sms" => Some(identity_hash(salt, "phone", address)),
        _ => None,
    }
}

/// Each person's latest activity as (time in microseconds, index of its basis in
/// [`LatestActivity::bases`]): a few dozen bytes per person where an [`Activity`] with its own
/// string took over a hundred, for a map that holds the whole base (775,000 people at a million
/// customers).
struct LatestActivity {
    latest: HashMap<i64, (i64, u16)>,
    bases: Vec<String>,
    /// The activity event types (already checked to be plain names: they are spliced into SQL).
    types: Vec<String>,
}

/// The bases' places in [`LatestActivity::bases`]; the event types follow from `FIRST_TYPE`.
const FIRST_SEEN: u16 = 0;
const ORDER: u16 = 1;
const OPT_IN: u16 = 2;
const FIRST_TYPE: u16 = 3;

/// A person's key in every query below: the profile, or the record itself before resolution.
const P: &str = "COALESCE(c.profile_id, c.id)";

impl LatestActivity {
    fn new(activity: &[&str]) -> Self {
        // Event type names are a fixed vocabulary, never input: only letters and `_` pass.
        let types: Vec<String> = activity
            .iter()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .map(|t| (*t).to_owned())
            .collect();
        let mut bases: Vec<String> = vec!["first_seen".into(), "order".into(), "opt_in".into()];
        bases.extend(types.iter().cloned());
        Self {
            latest: HashMap::new(),
            bases,
            types,
        }
    }

    /// Which basis wins when two happened at the same microsecond: the account, then an order,
    /// then the event types in their listed order, then an opt-in. Fixed here, not by the order
    /// the queries run in, so reading the events for some people only gives the same answer.
    fn rank(basis: u16) -> u16 {
        if basis == OPT_IN { u16::MAX } else { basis }
    }

    fn keep(&mut self, profile: i64, at: i64, basis: u16) {
        let slot = self.latest.entry(profile).or_insert((at, basis));
        if at > slot.0 || (at == slot.0 && Self::rank(basis) < Self::rank(slot.1)) {
            *slot = (at, basis);
        }
    }

    fn event_basis(&self, kind: &str) -> u16 {
        self.types
            .iter()
            .position(|t| t == kind)
            .and_then(|i| u16::try_from(i).ok())
            .map_or(FIRST_TYPE, |i| FIRST_TYPE + i)
    }

    fn activity(&self, profile: i64, (at, basis): (i64, u16)) -> Result<Activity, StoreError> {
        Ok(Activity {
            profile_id: ProfileId::new(profile),
            at: ts(at)?,
            basis: self.bases[usize::from(basis)].clone(),
        })
    }

    /// `e.type IN ('a', 'b', …)` for the activity types; `None` when there are none.
    fn types_sql(&self) -> Option<String> {
        (!self.types.is_empty()).then(|| {
            self.types
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    /// Folds the sources other than events, streamed: the account's creation (or first
    /// import), orders and opt-ins made in the preference centre.
    async fn fold_records(&mut self, pool: &Pool) -> Result<(), StoreError> {
        let sources = [
            (
                format!(
                    "SELECT {P} AS profile, MAX(COALESCE(c.created_at, c.inserted_at)) AS at FROM customers c WHERE c.erased_at IS NULL GROUP BY {P}"
                ),
                FIRST_SEEN,
            ),
            (
                format!(
                    "SELECT {P} AS profile, MAX(o.ordered_at) AS at FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.erased_at IS NULL GROUP BY {P}"
                ),
                ORDER,
            ),
            (
                format!(
                    "SELECT {P} AS profile, MAX(l.recorded_at) AS at FROM consent_ledger l JOIN customers c ON c.id = l.customer_id WHERE c.erased_at IS NULL AND l.status = 'opt_in' AND l.source = 'preference_centre' GROUP BY {P}"
                ),
                OPT_IN,
            ),
        ];
        for (sql, basis) in sources {
            pool.for_each(&sql, &[], |r| {
                self.keep(r.i64("profile")?, r.i64("at")?, basis);
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Folds the activity events of the records that `filter` (a condition on `c`) selects;
    /// the numbered parameters in `filter` are bound to `args`, in order.
    async fn fold_events(
        &mut self,
        pool: &Pool,
        filter: &str,
        args: &[Val],
    ) -> Result<(), StoreError> {
        let Some(types) = self.types_sql() else {
            return Ok(());
        };
        let sql = format!(
            "SELECT {P} AS profile, e.type, MAX(e.occurred_at) AS at FROM events e JOIN customers c ON c.id = e.customer_id \
             WHERE c.erased_at IS NULL AND {filter} AND e.type IN ({types}) GROUP BY {P}, e.type"
        );
        pool.for_each(&sql, args, |r| {
            let basis = self.event_basis(&r.text("type")?);
            self.keep(r.i64("profile")?, r.i64("at")?, basis);
            Ok(())
        })
        .await?;
        Ok(())
    }
}

/// The latest customer-originated activity of every person not erased: orders, clicks, visits,
/// logins, survey answers and the other `activity` event types (the retention policy's:
/// `winback_domain::ACTIVITY_EVENTS`), opt-ins made in the preference
/// centre, and as a floor the account's creation (or the record's first import when the source
/// gave no date). Imported consent statements do not count: one may be a default or a
/// migration, not the person's act.
pub(crate) async fn last_activity(
    pool: &Pool,
    activity: &[&str],
) -> Result<HashMap<i64, Activity>, StoreError> {
    // Each query's rows are folded one at a time, never held as a result set (the events'
    // rows, one per person and type, were most of a gigabyte at a million customers).
    let mut folded = LatestActivity::new(activity);
    folded.fold_records(pool).await?;
    folded.fold_events(pool, "1 = 1", &[]).await?;
    folded
        .latest
        .iter()
        .map(|(&profile, &latest)| Ok((profile, folded.activity(profile, latest)?)))
        .collect()
}

/// Profiles whose events are read in one query by [`retention_candidates`].
const EVENTS_BATCH: usize = 500;

/// The people whose latest activity is before `cutoff`, oldest first. With a notice campaign,
/// a person whose notice is queued, or was sent after `notice_since`, is marked
/// `notice_pending` (the erasure waits for an answer).
///
/// Events are read only for the people whose account, orders and opt-ins all lie before the
/// cutoff: events can only make someone more recent, so nobody else can be a candidate.
/// Those people's events come through the per-record index, which at a million customers
/// replaced a daily aggregate over every event (42 s on SQLite) with a read proportional to
/// the lapsed. When more than a quarter of the base is lapsed, one pass over the events is
/// used instead: the choice is a guess at where index reads stop paying, not a measurement.
pub(crate) async fn retention_candidates(
    pool: &Pool,
    cutoff: Timestamp,
    notice: Option<(&str, Timestamp)>,
    activity: &[&str],
) -> Result<Vec<RetentionCandidate>, StoreError> {
    let cutoff_micros = cutoff.as_micros();
    let mut folded = LatestActivity::new(activity);
    folded.fold_records(pool).await?;
    let mut lapsed: Vec<i64> = folded
        .latest
        .iter()
        .filter(|(_, (at, _))| *at < cutoff_micros)
        .map(|(&profile, _)| profile)
        .collect();
    if lapsed.len().saturating_mul(4) > folded.latest.len() {
        folded.fold_events(pool, "1 = 1", &[]).await?;
    } else {
        // In id order, so that successive batches read nearby index pages.
        lapsed.sort_unstable();
        for batch in lapsed.chunks(EVENTS_BATCH) {
            let list = in_list(batch.len());
            let args: Vec<Val> = batch.iter().map(|&p| Val::from(p)).collect();
            // A merged profile's records name it; a record not yet resolved is its own.
            folded
                .fold_events(pool, &format!("c.profile_id IN ({list})"), &args)
                .await?;
            folded
                .fold_events(
                    pool,
                    &format!("c.profile_id IS NULL AND c.id IN ({list})"),
                    &args,
                )
                .await?;
        }
    }
    let mut pending: HashSet<i64> = HashSet::new();
    if let Some((campaign, since)) = notice {
        for r in pool
            .fetch(
                "SELECT o.profile_id FROM outbox o JOIN campaigns k ON k.id = o.campaign_id WHERE k.name = $1 \
                 AND (o.state IN ('pending', 'claimed', 'sending') OR (o.state IN ('sent', 'in_doubt') AND o.sent_at > $2))",
                &[Val::from(campaign), Val::from(since.as_micros())],
            )
            .await?
        {
            pending.insert(r.i64(0)?);
        }
    }
    let mut out: Vec<RetentionCandidate> = folded
        .latest
        .iter()
        .filter(|(_, (at, _))| *at < cutoff_micros)
        .map(|(&profile, &latest)| {
            Ok(RetentionCandidate {
                profile_id: ProfileId::new(profile),
                notice_pending: pending.contains(&profile),
                last_activity: folded.activity(profile, latest)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    out.sort_by_key(|c| (c.last_activity.at, c.profile_id));
    Ok(out)
}

/// Starts a privacy run.
pub(crate) async fn begin_run(
    pool: &Pool,
    kind: &str,
    dry_run: bool,
    settings: &serde_json::Value,
    now: Timestamp,
) -> Result<i64, StoreError> {
    pool.fetch(
        "INSERT INTO privacy_runs (kind, dry_run, settings, started_at) VALUES ($1, $2, $3, $4) RETURNING id",
        &[
            Val::from(kind),
            Val::from(i64::from(dry_run)),
            Val::from(settings.to_string()),
            Val::from(now.as_micros()),
        ],
    )
    .await?
    .first()
    .ok_or_else(|| StoreError::Data("no id from INSERT … RETURNING".into()))?
    .i64(0)
}

/// Ends a privacy run with the number of people it affected.
pub(crate) async fn finish_run(
    pool: &Pool,
    run_id: i64,
    affected: i64,
    now: Timestamp,
) -> Result<(), StoreError> {
    pool.execute(
        "UPDATE privacy_runs SET finished_at = $2, affected = $3 WHERE id = $1",
        &[
            Val::from(run_id),
            Val::from(now.as_micros()),
            Val::from(affected),
        ],
    )
    .await?;
    Ok(())
}

/// Records one person in a run's audit trail.
pub(crate) async fn audit(
    pool: &Pool,
    run_id: i64,
    profile_id: i64,
    action: &str,
    reason: &str,
    last_activity: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    audit_in(
        &mut tx,
        run_id,
        profile_id,
        action,
        reason,
        last_activity,
        now,
    )
    .await?;
    tx.commit().await
}

async fn audit_in(
    tx: &mut Tx,
    run_id: i64,
    profile_id: i64,
    action: &str,
    reason: &str,
    last_activity: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO privacy_audit (run_id, profile_id, action, reason, last_activity_at, at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            Val::from(run_id),
            Val::from(profile_id),
            Val::from(action),
            Val::from(reason),
            Val::I(last_activity.map(Timestamp::as_micros)),
            Val::from(now.as_micros()),
        ],
    )
    .await?;
    Ok(())
}

/// Runs and their audit entries, newest first.
pub(crate) async fn audit_log(
    pool: &Pool,
    limit: i64,
) -> Result<(Vec<PrivacyRun>, Vec<AuditEntry>), StoreError> {
    let runs = pool
        .fetch(
            "SELECT id, kind, dry_run, settings, started_at, finished_at, affected FROM privacy_runs ORDER BY id DESC LIMIT $1",
            &[Val::from(limit)],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(PrivacyRun {
                id: r.i64("id")?,
                kind: r.text("kind")?,
                dry_run: r.i64("dry_run")? != 0,
                settings: serde_json::from_str(&r.text("settings")?)?,
                started_at: ts(r.i64("started_at")?)?,
                finished_at: r.opt_i64("finished_at")?.map(ts).transpose()?,
                affected: r.i64("affected")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let entries = pool
        .fetch(
            "SELECT a.run_id, r.kind, r.dry_run, a.profile_id, a.action, a.reason, a.last_activity_at, a.at \
             FROM privacy_audit a JOIN privacy_runs r ON r.id = a.run_id ORDER BY a.id DESC LIMIT $1",
            &[Val::from(limit)],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(AuditEntry {
                run_id: r.i64("run_id")?,
                kind: r.text("kind")?,
                dry_run: r.i64("dry_run")? != 0,
                profile_id: ProfileId::new(r.i64("profile_id")?),
                action: r.text("action")?,
                reason: r.text("reason")?,
                last_activity_at: r.opt_i64("last_activity_at")?.map(ts).transpose()?,
                at: ts(r.i64("at")?)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((runs, entries))
}

/// The profile a key names: a customer id, an external id, an email address or a phone number.
/// Erased people are not found.
/// The profile a key names. The one key reader of the CLI, the API, the dashboard and every
/// privacy request, in this order:
/// 1. `profile:N`: the internal profile (or record) number N, only in that explicit form;
/// 2. the shop's own customer id, exactly as imported (so `7` is the shop's customer `7`, never
///    internal row 7), then ignoring case;
/// 3. an email address, by its matching key;
/// 4. a phone number in international form (`+31618765432`, spaces allowed).
pub(crate) async fn find_profile(pool: &Pool, key: &str) -> Result<Option<i64>, StoreError> {
    let key = key.trim();
    if key.is_empty() {
        return Ok(None);
    }
    let first = |sql: &'static str, arg: Val| async move {
        pool.fetch_optional(sql, &[arg])
            .await?
            .map(|r| r.i64(0))
            .transpose()
    };
    if let Some(n) = key.strip_prefix("profile:") {
        let Ok(id) = n.trim().parse::<i64>() else {
            return Ok(None);
        };
        return first(
            "SELECT COALESCE(profile_id, id) FROM customers WHERE id = $1 AND erased_at IS NULL",
            Val::from(id),
        )
        .await;
    }
    if let Some(p) = first(
        "SELECT COALESCE(profile_id, id) FROM customers WHERE external_id = $1 AND erased_at IS NULL",
        Val::from(key),
    )
    .await?
    {
        return Ok(Some(p));
    }
    if let Some(p) = first(
        "SELECT COALESCE(profile_id, id) FROM customers WHERE LOWER(external_id) = $1 AND erased_at IS NULL ORDER BY id LIMIT 1",
        Val::from(key.to_lowercase()),
    )
    .await?
    {
        return Ok(Some(p));
    }
    if let Ok(email) = EmailAddress::parse(key) {
        return first(
            "SELECT COALESCE(profile_id, id) FROM customers WHERE email_key = $1 AND erased_at IS NULL ORDER BY id LIMIT 1",
            Val::from(email.match_key().to_owned()),
        )
        .await;
    }
    // Only a full international number is a phone key (a bare number is a customer id); the
    // region is unused for a number that starts with `+`.
    if key.starts_with('+') {
        let phone = winback_domain::Region::parse("NL")
            .ok()
            .and_then(|r| winback_domain::PhoneE164::parse(key, r).ok());
        if let Some(phone) = phone {
            return first(
                "SELECT COALESCE(profile_id, id) FROM customers WHERE phone = $1 AND erased_at IS NULL ORDER BY id LIMIT 1",
                Val::from(phone.as_str().to_owned()),
            )
            .await;
        }
    }
    Ok(None)
}

/// Every customer record of a profile that is not erased.
async fn records_of(tx: &mut Tx, profile_id: i64) -> Result<Vec<i64>, StoreError> {
    tx.fetch(
        "SELECT id FROM customers WHERE (id = $1 OR profile_id = $1) AND erased_at IS NULL ORDER BY id",
        &[Val::from(profile_id)],
    )
    .await?
    .iter()
    .map(|r| r.i64(0))
    .collect()
}

/// Withdraws every channel's consent for `records` (source `source`), drops the profile's queued
/// messages and ends its journeys; returns the messages dropped. Part of the caller's
/// transaction, so the next send-time check already sees it.
async fn stop_marketing(
    tx: &mut Tx,
    records: &[i64],
    profile_id: i64,
    source: &str,
    now: Timestamp,
) -> Result<u64, StoreError> {
    for channel in [Channel::Email, Channel::Sms] {
        for id in records {
            tx.execute(
                "INSERT INTO consent_ledger (customer_id, channel, status, source, wording_version, recorded_at, inserted_at) VALUES ($1, $2, $3, $4, NULL, $5, $5) \
                 ON CONFLICT (customer_id, channel, status, recorded_at, source) DO NOTHING",
                &[
                    Val::from(*id),
                    Val::from(channel.as_str()),
                    Val::from(ConsentStatus::Withdrawn.as_str()),
                    Val::from(source),
                    Val::from(now.as_micros()),
                ],
            )
            .await?;
        }
    }
    // Features carry whether marketing email may be sent: refreshed from the facts.
    crate::features::mark_dirty(tx, records).await?;
    let dropped = tx
        .execute(
            "UPDATE outbox SET state = 'dropped', outcome = $3, settled_at = $2 WHERE profile_id = $1 AND state = 'pending'",
            &[Val::from(profile_id), Val::from(now.as_micros()), Val::from(source)],
        )
        .await?;
    tx.execute(
        "UPDATE enrolments SET state = 'exited', end_reason = $3, ended_at = $2, due_at = NULL WHERE profile_id = $1 AND state = 'active'",
        &[Val::from(profile_id), Val::from(now.as_micros()), Val::from(source)],
    )
    .await?;
    Ok(dropped)
}

/// Erases one person: every record of the profile is anonymised, its identifiers go to the
/// erased list as salted hashes, plain-text suppressions of its addresses are replaced by that
/// list, queued messages are dropped and journeys ended, derived data (scores, features, tags,
/// preferences) deleted, and the audit trail gets one entry — all in one transaction.
pub(crate) async fn erase_profile(
    pool: &Pool,
    salt: &str,
    profile_id: i64,
    run_id: i64,
    reason: &str,
    last_activity: Option<Timestamp>,
    now: Timestamp,
) -> Result<Option<Erased>, StoreError> {
    let mut tx = pool.begin().await?;
    let records = records_of(&mut tx, profile_id).await?;
    if records.is_empty() {
        return Ok(None);
    }
    let args: Vec<Val> = records.iter().map(|i| Val::from(*i)).collect();
    let list = in_list(records.len());
    let mut identities: Vec<(&'static str, String)> = Vec::new();
    let mut emails: Vec<String> = Vec::new();
    let mut phones: Vec<String> = Vec::new();
    for r in tx
        .fetch(
            &format!(
                "SELECT external_id, email, email_key, phone FROM customers WHERE id IN ({list})"
            ),
            &args,
        )
        .await?
    {
        identities.push(("external_id", r.text("external_id")?));
        if let Some(e) = r.opt_text("email")? {
            identities.push(("email", email_key(&e)));
            emails.push(e);
        }
        if let Some(k) = r.opt_text("email_key")? {
            identities.push(("email", k));
        }
        if let Some(p) = r.opt_text("phone")? {
            identities.push(("phone", p.clone()));
            phones.push(p);
        }
    }
    // Addresses messages actually went to (they may differ from today's).
    for r in tx
        .fetch(
            "SELECT DISTINCT channel, recipient FROM outbox WHERE profile_id = $1 AND recipient IS NOT NULL",
            &[Val::from(profile_id)],
        )
        .await?
    {
        let to = r.text("recipient")?;
        match r.text("channel")?.as_str() {
            "email" => {
                identities.push(("email", email_key(&to)));
                emails.push(to);
            }
            "sms" => {
                identities.push(("phone", to.clone()));
                phones.push(to);
            }
            _ => {}
        }
    }
    identities.sort();
    identities.dedup();
    let mut hashes = 0;
    for (kind, value) in &identities {
        hashes += tx
            .execute(
                "INSERT INTO erased_identities (hash, kind, customer_id, erased_at) VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING",
                &[
                    Val::from(identity_hash(salt, kind, value)),
                    Val::from(*kind),
                    Val::from(profile_id),
                    Val::from(now.as_micros()),
                ],
            )
            .await?;
    }
    // The shop's customer ids become pseudonyms; a re-import finds them through the hash list.
    for id in &records {
        tx.execute(
            "UPDATE customers SET external_id = $2, email = NULL, email_key = NULL, phone = NULL, first_name = NULL, last_name = NULL, \
             address1 = NULL, address2 = NULL, postal_code = NULL, city = NULL, address_key = NULL, attributes = '{}', \
             erased_at = $3, updated_at = $3 WHERE id = $1",
            &[
                Val::from(*id),
                Val::from(format!("erased-{id}")),
                Val::from(now.as_micros()),
            ],
        )
        .await?;
    }
    // Event details may name the person (URLs, user agents, free text); keep what measurement
    // reads.
    for r in tx
        .fetch(
            &format!("SELECT id, payload FROM events WHERE customer_id IN ({list})"),
            &args,
        )
        .await?
    {
        let payload: serde_json::Value =
            serde_json::from_str(&r.text("payload")?).unwrap_or_default();
        let kept: serde_json::Map<String, serde_json::Value> = payload
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| KEPT_EVENT_FIELDS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        tx.execute(
            "UPDATE events SET payload = $2 WHERE id = $1",
            &[
                Val::from(r.i64(0)?),
                Val::from(serde_json::Value::Object(kept).to_string()),
            ],
        )
        .await?;
    }
    for e in &emails {
        tx.execute(
            "DELETE FROM suppressions WHERE channel = 'email' AND address = $1",
            &[Val::from(e.as_str())],
        )
        .await?;
    }
    for p in &phones {
        tx.execute(
            "DELETE FROM suppressions WHERE channel = 'sms' AND address = $1",
            &[Val::from(p.as_str())],
        )
        .await?;
        tx.execute(
            "UPDATE sms_inbound SET sender = 'erased', body = '' WHERE sender = $1",
            &[Val::from(p.as_str())],
        )
        .await?;
        // A do-not-call entry goes like the SMS suppression: the erased identity's hash keeps
        // the number out of later imports.
        tx.execute(
            "DELETE FROM suppressions WHERE channel = 'call' AND address = $1",
            &[Val::from(p.as_str())],
        )
        .await?;
    }
    tx.execute(
        &format!(
            "DELETE FROM identity_links WHERE customer_a IN ({list}) OR customer_b IN ({list})"
        ),
        &[args.clone(), args.clone()].concat(),
    )
    .await?;
    let p = [Val::from(profile_id)];
    for sql in [
        "DELETE FROM contact_tags WHERE profile_id = $1",
        "DELETE FROM preferences WHERE profile_id = $1",
        "DELETE FROM profile_features WHERE profile_id = $1",
        "DELETE FROM profile_scores WHERE profile_id = $1",
    ] {
        tx.execute(sql, &p).await?;
    }
    tx.execute(
        "UPDATE outbox SET recipient = NULL, sent_subject = NULL WHERE profile_id = $1",
        &p,
    )
    .await?;
    // Calls stay counted; what agents wrote about the person goes, and nobody calls them.
    tx.execute(
        "UPDATE call_tasks SET note = NULL, agent = NULL, \
           closed_reason = CASE WHEN state = 'open' THEN 'erased' ELSE closed_reason END, \
           state = CASE WHEN state = 'open' THEN 'cancelled' ELSE state END \
         WHERE profile_id = $1",
        &p,
    )
    .await?;
    // The devices that held their passes (identifiers and push tokens) go; the passes stay
    // counted as issued.
    tx.execute(
        "DELETE FROM wallet_registrations WHERE serial IN (SELECT serial FROM wallet_passes WHERE profile_id = $1)",
        &p,
    )
    .await?;
    // The domain of the address kept for the report's segments goes with the address.
    tx.execute(
        "UPDATE enrolments SET email_domain = NULL WHERE profile_id = $1",
        &p,
    )
    .await?;
    let dropped = stop_marketing(&mut tx, &records, profile_id, "erasure", now).await?;
    audit_in(
        &mut tx,
        run_id,
        profile_id,
        "erased",
        reason,
        last_activity,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Erased {
        profile_id: ProfileId::new(profile_id),
        records: records.len() as u64,
        hashes,
        messages_dropped: dropped,
    }))
}

/// Objection to direct marketing: every channel's consent is withdrawn for every record of the
/// profile (source `objection`), queued marketing is dropped and journeys end, at once.
pub(crate) async fn object(
    pool: &Pool,
    profile_id: i64,
    run_id: i64,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let records = records_of(&mut tx, profile_id).await?;
    let dropped = stop_marketing(&mut tx, &records, profile_id, "objection", now).await?;
    tx.execute(
        "INSERT INTO contact_tags (profile_id, tag, added_at, source) VALUES ($1, 'objected', $2, 'objection') ON CONFLICT (profile_id, tag) DO NOTHING",
        &[Val::from(profile_id), Val::from(now.as_micros())],
    )
    .await?;
    audit_in(
        &mut tx,
        run_id,
        profile_id,
        "objected",
        "objection to direct marketing",
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(dropped)
}

/// Everything stored about one person, as JSON: records, consent history, orders with their
/// lines and codes, events, messages, offers, tags, preferences, scores and features, journeys
/// and survey answers. Nothing about anyone else (merge links name only this person's records).
pub(crate) async fn export_profile(
    pool: &Pool,
    profile_id: i64,
) -> Result<serde_json::Value, StoreError> {
    use serde_json::{Value, json};
    let records: Vec<i64> = pool
        .fetch(
            "SELECT id FROM customers WHERE (id = $1 OR profile_id = $1) AND erased_at IS NULL ORDER BY id",
            &[Val::from(profile_id)],
        )
        .await?
        .iter()
        .map(|r| r.i64(0))
        .collect::<Result<_, _>>()?;
    let args: Vec<Val> = records.iter().map(|i| Val::from(*i)).collect();
    let list = in_list(records.len().max(1));
    let args_or_none = if args.is_empty() {
        vec![Val::from(-1i64)]
    } else {
        args.clone()
    };
    let p = [Val::from(profile_id)];
    let rows_json = |rows: Vec<crate::db::DbRow>,
                     cols: &[&str],
                     kinds: &[char]|
     -> Result<Vec<Value>, StoreError> {
        rows.iter()
            .map(|r| {
                let mut o = serde_json::Map::new();
                for (i, (c, k)) in cols.iter().zip(kinds).enumerate() {
                    let v = match k {
                        'i' => r.opt_i64(i)?.map(Value::from).unwrap_or(Value::Null),
                        // A probability (REAL in the store).
                        'f' => r.opt_f64(i)?.map(Value::from).unwrap_or(Value::Null),
                        // Money kept as REAL minor units: whole minor units in the export.
                        'm' => r
                            .opt_f64(i)?
                            .map(|v| Value::from(v.round() as i64))
                            .unwrap_or(Value::Null),
                        't' => r
                            .opt_i64(i)?
                            .map(|v| ts(v).map(|t| Value::from(t.to_string())))
                            .transpose()?
                            .unwrap_or(Value::Null),
                        'j' => r
                            .opt_text(i)?
                            .map(|s| serde_json::from_str(&s).unwrap_or(Value::String(s)))
                            .unwrap_or(Value::Null),
                        _ => r.opt_text(i)?.map(Value::from).unwrap_or(Value::Null),
                    };
                    o.insert((*c).to_owned(), v);
                }
                Ok(Value::Object(o))
            })
            .collect()
    };
    let customers = rows_json(
        pool.fetch(&format!("SELECT id, external_id, email, phone, first_name, last_name, address1, address2, postal_code, city, country, time_zone, locale, created_at, attributes, inserted_at, updated_at FROM customers WHERE id IN ({list}) ORDER BY id"), &args_or_none).await?,
        &["id", "external_id", "email", "phone", "first_name", "last_name", "address1", "address2", "postal_code", "city", "country", "time_zone", "locale", "created_at", "attributes", "first_stored_at", "updated_at"],
        &['i', 's', 's', 's', 's', 's', 's', 's', 's', 's', 's', 's', 's', 't', 'j', 't', 't'],
    )?;
    let consents = rows_json(
        pool.fetch(&format!("SELECT customer_id, channel, status, source, wording_version, recorded_at FROM consent_ledger WHERE customer_id IN ({list}) ORDER BY recorded_at, id"), &args_or_none).await?,
        &["customer_id", "channel", "status", "source", "wording_version", "at"],
        &['i', 's', 's', 's', 's', 't'],
    )?;
    let orders = rows_json(
        pool.fetch(&format!("SELECT id, external_id, customer_id, ordered_at, total_minor, discount_minor, currency, status, category, item_count FROM orders WHERE customer_id IN ({list}) ORDER BY ordered_at, id"), &args_or_none).await?,
        &["id", "external_id", "customer_id", "ordered_at", "total_minor", "discount_minor", "currency", "status", "category", "item_count"],
        &['i', 's', 'i', 't', 'i', 'i', 's', 's', 's', 'i'],
    )?;
    let lines = rows_json(
        pool.fetch(&format!("SELECT i.order_id, i.line_no, i.sku, i.name, i.category, i.quantity, i.unit_price_minor, i.currency FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.customer_id IN ({list}) ORDER BY i.order_id, i.line_no"), &args_or_none).await?,
        &["order_id", "line_no", "sku", "name", "category", "quantity", "unit_price_minor", "currency"],
        &['i', 'i', 's', 's', 's', 'i', 'i', 's'],
    )?;
    let codes = rows_json(
        pool.fetch(&format!("SELECT d.order_id, d.code FROM order_discount_codes d JOIN orders o ON o.id = d.order_id WHERE o.customer_id IN ({list}) ORDER BY d.order_id, d.code"), &args_or_none).await?,
        &["order_id", "code"],
        &['i', 's'],
    )?;
    let events = rows_json(
        pool.fetch(&format!("SELECT event_key, customer_id, type, occurred_at, payload FROM events WHERE customer_id IN ({list}) ORDER BY occurred_at, id"), &args_or_none).await?,
        &["key", "customer_id", "type", "at", "payload"],
        &['s', 'i', 's', 't', 'j'],
    )?;
    let messages = rows_json(
        pool.fetch("SELECT o.idempotency_key, k.name, o.step, o.variant, o.channel, o.template, o.subject, o.recipient, o.state, o.created_at, o.sent_at, o.outcome FROM outbox o JOIN campaigns k ON k.id = o.campaign_id WHERE o.profile_id = $1 ORDER BY o.id", &p).await?,
        &["key", "campaign", "step", "variant", "channel", "template", "subject", "recipient", "state", "queued_at", "sent_at", "outcome"],
        &['s', 's', 's', 's', 's', 's', 's', 's', 's', 't', 't', 's'],
    )?;
    let journeys = rows_json(
        pool.fetch("SELECT k.name, e.variant, e.holdout, e.state, e.entered_at, e.ended_at, e.end_reason FROM enrolments e JOIN campaigns k ON k.id = e.campaign_id WHERE e.profile_id = $1 ORDER BY e.id", &p).await?,
        &["campaign", "variant", "holdout", "state", "entered_at", "ended_at", "end_reason"],
        &['s', 's', 'i', 's', 't', 't', 's'],
    )?;
    let offers = rows_json(
        pool.fetch(
            "SELECT code, kind, state, expires_at FROM offers WHERE profile_id = $1 ORDER BY code",
            &p,
        )
        .await?,
        &["code", "kind", "state", "expires_at"],
        &['s', 's', 's', 't'],
    )?;
    // Customer service's calls, with the agents' notes about the person.
    let calls = rows_json(
        pool.fetch("SELECT k.name, t.list, t.added_at, t.state, t.attempts, t.outcome, t.reason, t.agent, t.note, t.outcome_at FROM call_tasks t JOIN campaigns k ON k.id = t.campaign_id WHERE t.profile_id = $1 ORDER BY t.id", &p).await?,
        &["campaign", "list", "added_at", "state", "attempts", "outcome", "reason", "agent", "note", "outcome_at"],
        &['s', 's', 't', 's', 'i', 's', 's', 's', 's', 't'],
    )?;
    let passes = rows_json(
        pool.fetch("SELECT w.serial, k.name, w.style, w.offer_code, w.version, w.issued_at, w.updated_at, \
                      (SELECT COUNT(*) FROM wallet_registrations r WHERE r.serial = w.serial AND r.unregistered_at IS NULL) \
                    FROM wallet_passes w JOIN campaigns k ON k.id = w.campaign_id WHERE w.profile_id = $1 ORDER BY w.serial", &p).await?,
        &["serial", "campaign", "style", "offer_code", "version", "issued_at", "updated_at", "devices"],
        &['s', 's', 's', 's', 'i', 't', 't', 'i'],
    )?;
    let tags = rows_json(
        pool.fetch(
            "SELECT tag, added_at FROM contact_tags WHERE profile_id = $1 ORDER BY tag",
            &p,
        )
        .await?,
        &["tag", "added_at"],
        &['s', 't'],
    )?;
    let preferences = rows_json(
        pool.fetch(
            "SELECT frequency, topics_off, updated_at FROM preferences WHERE profile_id = $1",
            &p,
        )
        .await?,
        &["frequency", "topics_off", "updated_at"],
        &['s', 'j', 't'],
    )?;
    let scores = rows_json(
        pool.fetch("SELECT stage, segment, rfm, p_alive, clv_minor, priority_minor FROM profile_scores WHERE profile_id = $1", &p).await?,
        &["stage", "segment", "rfm", "p_alive", "clv_minor", "priority_minor"],
        &['s', 's', 's', 'f', 'm', 'm'],
    )?;
    let features = rows_json(
        pool.fetch(
            "SELECT data FROM profile_features WHERE profile_id = $1",
            &p,
        )
        .await?,
        &["data"],
        &['j'],
    )?;
    let merges = rows_json(
        pool.fetch(&format!("SELECT customer_a, customer_b, rule, value FROM identity_links WHERE customer_a IN ({list}) AND customer_b IN ({list})"), &[args_or_none.clone(), args_or_none.clone()].concat()).await?,
        &["record_a", "record_b", "rule", "value"],
        &['i', 'i', 's', 's'],
    )?;
    // The statement in force per address, folded as every send-time check folds it.
    let folded = crate::consent::for_records(&mut &*pool, &records).await?;
    let mut in_force: Vec<Value> = Vec::new();
    for r in pool
        .fetch(
            &format!("SELECT id, email, phone FROM customers WHERE id IN ({list}) ORDER BY id"),
            &args_or_none,
        )
        .await?
    {
        let id = r.i64("id")?;
        for (ch, addr) in [
            (Channel::Email, r.opt_text("email")?),
            (Channel::Sms, r.opt_text("phone")?),
        ] {
            let Some(addr) = addr else { continue };
            if in_force.iter().any(|v| v["address"] == addr.as_str()) {
                continue;
            }
            let c = folded.for_record(id, ch);
            in_force.push(json!({
                "channel": ch.as_str(),
                "address": addr,
                "status": c.map_or("none", |c| c.status.as_str()),
                "source": c.map(|c| c.source.clone()),
                "at": c.map(|c| c.at.to_string()),
            }));
        }
    }
    Ok(json!({
        "format": "winback-subject-access/1",
        "profile_id": profile_id,
        "records": customers,
        "consent_in_force": in_force,
        "consent_history": consents,
        "orders": orders,
        "order_lines": lines,
        "discount_codes": codes,
        "events": events,
        "messages": messages,
        "journeys": journeys,
        "offers": offers,
        "calls": calls,
        "wallet_passes": passes,
        "tags": tags,
        "preferences": preferences.into_iter().next(),
        "scores": scores.into_iter().next(),
        "features": features.into_iter().next().map(|f| f["data"].clone()),
        "identity_merges": merges,
    }))
}

/// The list-hygiene report as of `now`. Each count reads an index or a small table: the idle
/// addresses from the per-profile rows kept exact by marks ([`crate::hygiene`]), the merged,
/// erased and look-alike records and the sunset unsubscribes from indexes made for them
/// (migration 17). It read every customer record (4.0 s at a million customers on SQLite,
/// 1.1–1.2 s on PostgreSQL).
pub(crate) async fn hygiene(pool: &Pool, now: Timestamp) -> Result<Hygiene, StoreError> {
    let mut h = Hygiene::default();
    let idle = crate::hygiene::idle(pool, now.as_micros()).await?;
    h.addresses = idle.addresses;
    h.never_engaged = idle.never_engaged;
    [h.idle_6m, h.idle_12m, h.idle_24m] = idle.idle;
    // Only addresses with a non-ASCII character can look like another (an index finds their
    // records: partial on SQLite, on the condition itself on PostgreSQL; migration 17, whose
    // wording of the condition this repeats); in record order, so the examples are the first
    // ten.
    let non_ascii = match pool.backend() {
        crate::db::Backend::Sqlite => "length(CAST(email AS BLOB)) <> length(email)",
        crate::db::Backend::Postgres => "octet_length(email) <> length(email)",
    };
    pool.for_each(
        &format!("SELECT email FROM customers WHERE {non_ascii} AND erased_at IS NULL ORDER BY id"),
        &[],
        |r| {
            if let Some(e) = r.opt_str("email")? {
                if is_look_alike(e) {
                    h.look_alike_addresses += 1;
                    if h.look_alike_examples.len() < 10 {
                        h.look_alike_examples.push(e.to_owned());
                    }
                }
            }
            Ok(())
        },
    )
    .await?;
    let count = |sql: &'static str| async move {
        pool.fetch(sql, &[]).await?[0]
            .i64(0)
            .map(|n| n.max(0) as u64)
    };
    h.hard_bounces =
        count("SELECT COUNT(*) FROM suppressions WHERE active = 1 AND reason = 'hard_bounce'")
            .await?;
    h.soft_bounce_suppressions =
        count("SELECT COUNT(*) FROM suppressions WHERE active = 1 AND reason = 'soft_bounces'")
            .await?;
    h.complaints = count("SELECT COUNT(*) FROM events WHERE type = 'email_complained'").await?;
    h.emails_sent =
        crate::rollups::message_count(pool, "channel = 'email' AND state IN ('sent', 'in_doubt')")
            .await?;
    h.complaint_rate = if h.emails_sent == 0 {
        0.0
    } else {
        h.complaints as f64 / h.emails_sent as f64
    };
    h.duplicates_merged =
        count("SELECT COUNT(*) FROM customers WHERE profile_id <> id AND erased_at IS NULL")
            .await?;
    h.erased_profiles = count(
        "SELECT COUNT(*) FROM customers WHERE erased_at IS NOT NULL AND COALESCE(profile_id, id) = id",
    )
    .await?;
    h.sunset = count(
        "SELECT COUNT(DISTINCT customer_id) FROM consent_ledger WHERE substr(source, 1, 7) = 'sunset:'",
    )
    .await?;
    h.erased_identities = count("SELECT COUNT(*) FROM erased_identities").await?;
    for r in pool
        .fetch(
            "SELECT reason, COUNT(*) FROM suppressions WHERE active = 1 GROUP BY reason ORDER BY reason",
            &[],
        )
        .await?
    {
        h.suppressions.insert(r.text(0)?, r.i64(1)?.max(0) as u64);
    }
    Ok(h)
}

/// A data-subject request about one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Right of access: everything stored, as JSON.
    Export,
    /// Right to erasure.
    Erase,
    /// Objection to direct marketing.
    Object,
}

/// What a request did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The export.
    Exported(serde_json::Value),
    /// The erasure (`None`: already erased).
    Erased(Option<Erased>),
    /// Queued messages dropped by the objection.
    Objected(u64),
}

/// Handles one request as an audited privacy run; `origin` says who asked (`cli`, an API key's
/// prefix).
pub(crate) async fn request(
    pool: &Pool,
    salt: &str,
    request: Request,
    profile_id: i64,
    origin: &str,
    now: Timestamp,
) -> Result<Outcome, StoreError> {
    let settings = serde_json::json!({ "origin": origin });
    let kind = match request {
        Request::Export => "export",
        Request::Erase => "erasure",
        Request::Object => "objection",
    };
    let run = begin_run(pool, kind, false, &settings, now).await?;
    let (outcome, affected) = match request {
        Request::Export => {
            let data = export_profile(pool, profile_id).await?;
            let reason = format!("subject access request ({origin})");
            audit(pool, run, profile_id, "exported", &reason, None, now).await?;
            (Outcome::Exported(data), 1)
        }
        Request::Erase => {
            let reason = format!("erasure request ({origin})");
            let e = erase_profile(pool, salt, profile_id, run, &reason, None, now).await?;
            let n = i64::from(e.is_some());
            (Outcome::Erased(e), n)
        }
        Request::Object => (
            Outcome::Objected(object(pool, profile_id, run, now).await?),
            1,
        ),
    };
    finish_run(pool, run, affected, now).await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alike_addresses_are_told_from_real_names() {
        assert!(is_look_alike("p\u{0430}ypal@example.com"), "Cyrillic a");
        assert!(is_look_alike("\u{ff41}nna@example.nl"), "full-width a");
        assert!(
            !is_look_alike("jos\u{e9}@example.es"),
            "an accent is a name"
        );
        assert!(!is_look_alike("anna@example.nl"));
    }
}
