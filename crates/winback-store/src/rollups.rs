//! The message rollups (migration 13): what reports and the dashboard read instead of every
//! message and engagement event.
//!
//! Triggers append a delta for every change of a message that the counters see; readers add
//! the folded rows and the deltas not yet folded, so a page shows the store as it is with no
//! cache to go stale. [`fold`] moves the deltas into the folded table; the worker calls it after
//! each pass and the imports after each file, which keeps the unfolded part small.

use std::collections::{BTreeMap, HashMap};

use winback_domain::CampaignId;

use crate::StoreError;
use crate::db::{Backend, Pool, Val};
use crate::journeys::MessageFunnel;

/// What each counter of `message_rollup` counts, written once for both backends: SQL over one
/// `message_rollup_delta` row (a message as it is, `sign` +1, or as it was, -1) that is the
/// row's sign when the message counts and 0 otherwise. `messages` is every message.
const COUNTERS: [(&str, &str); 12] = [
    ("messages", "sign"),
    // What the relay or provider accepted.
    ("sent", "CASE WHEN state = 'sent' THEN sign ELSE 0 END"),
    // Accepted and not bounced afterwards.
    (
        "delivered",
        "CASE WHEN state = 'sent' AND (engagement & 96) = 0 THEN sign ELSE 0 END",
    ),
    // Refused for good at send time, or accepted and bounced hard afterwards.
    (
        "hard_bounced",
        "CASE WHEN (state = 'failed' AND outcome = 'hard_bounce') OR (state = 'sent' AND (engagement & 32) <> 0) THEN sign ELSE 0 END",
    ),
    // Refused for now at send time, or accepted and bounced only soft afterwards.
    (
        "soft_bounced",
        "CASE WHEN (state <> 'sent' AND outcome = 'soft_bounce') OR (state = 'sent' AND (engagement & 96) = 64) THEN sign ELSE 0 END",
    ),
    // Unknown after a crash: counted, never resent.
    (
        "in_doubt",
        "CASE WHEN state = 'in_doubt' AND outcome <> 'soft_bounce' THEN sign ELSE 0 END",
    ),
    // Not sent at send time (consent, suppression, caps, an ended journey…).
    (
        "dropped",
        "CASE WHEN state = 'dropped' AND outcome <> 'soft_bounce' THEN sign ELSE 0 END",
    ),
    // Engagement, once per message and kind; a message a person opened is not also a machine
    // open.
    (
        "opened_human",
        "CASE WHEN (engagement & 1) <> 0 THEN sign ELSE 0 END",
    ),
    (
        "opened_machine",
        "CASE WHEN (engagement & 3) = 2 THEN sign ELSE 0 END",
    ),
    (
        "clicked",
        "CASE WHEN (engagement & 4) <> 0 THEN sign ELSE 0 END",
    ),
    (
        "unsubscribed",
        "CASE WHEN (engagement & 8) <> 0 THEN sign ELSE 0 END",
    ),
    (
        "complained",
        "CASE WHEN (engagement & 16) <> 0 THEN sign ELSE 0 END",
    ),
];

/// The dimensions of `message_rollup`.
const KEY: &str = "campaign_id, day, step, variant, channel, locale, provider, state, reason";

/// The dimensions of `survey_rollup`.
const SURVEY_KEY: &str = "campaign_id, day, step, variant, channel, locale, provider, reason";

/// One UTC day in microseconds: the rollups' time grain.
const DAY: i64 = 86_400_000_000;

/// The counters' names, comma-separated.
fn counter_names() -> String {
    COUNTERS.map(|(name, _)| name).join(", ")
}

/// `f(name, definition)` for each counter, comma-separated.
fn counters(f: impl Fn(&str, &str) -> String) -> String {
    COUNTERS
        .iter()
        .map(|(name, def)| f(name, def))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The folded rows and the pending deltas (each as its contributions) of `message_rollup`
/// that match `filter`, with the columns `dims` and every counter, as one row set.
fn messages_now(dims: &str, filter: &str) -> String {
    format!(
        "SELECT {dims}, {names} FROM message_rollup WHERE {filter} \
         UNION ALL \
         SELECT {dims}, {contributions} FROM message_rollup_delta WHERE {filter}",
        names = counter_names(),
        contributions = counters(|name, def| format!("{def} AS {name}")),
    )
}

/// The days covering `[from, until)` (microseconds), rounded outwards to whole UTC days.
fn days(range: (i64, i64)) -> (i64, i64) {
    (
        range.0.div_euclid(DAY),
        range.1.saturating_add(DAY - 1).div_euclid(DAY),
    )
}

/// The rollup rows of the UTC days covering `range` (and of one campaign, when given): the
/// condition and its arguments.
fn days_of(campaign: Option<CampaignId>, range: (i64, i64)) -> (String, Vec<Val>) {
    let (from, until) = days(range);
    let mut args = vec![Val::from(from), Val::from(until)];
    let mut filter = "day >= $1 AND day < $2".to_owned();
    if let Some(id) = campaign {
        args.push(Val::from(id));
        filter.push_str(" AND campaign_id = $3");
    }
    (filter, args)
}

/// Moves the unfolded deltas into the folded tables and returns how many were moved.
///
/// PostgreSQL: one `DELETE … RETURNING` statement per table takes exactly the deltas its
/// snapshot sees, so a delta committed meanwhile stays for the next fold, and two folds at once
/// never count one twice (the second skips what the first deleted). SQLite has one writer at a
/// time, so the sum and the delete see the same rows.
pub(crate) async fn fold(pool: &Pool) -> Result<u64, StoreError> {
    let names = counter_names();
    let sums = counters(|_, def| format!("SUM({def})"));
    let adds = counters(|name, _| format!("{name} = message_rollup.{name} + excluded.{name}"));
    let survey_add = "answers = survey_rollup.answers + excluded.answers";
    let mut tx = pool.begin().await?;
    let moved = match tx.backend() {
        Backend::Postgres => {
            let messages = tx
                .fetch(
                    &format!(
                        "WITH moved AS (DELETE FROM message_rollup_delta RETURNING *), \
                              ins AS (INSERT INTO message_rollup ({KEY}, {names}) \
                                SELECT {KEY}, {sums} FROM moved GROUP BY {KEY} \
                                ON CONFLICT ({KEY}) DO UPDATE SET {adds}) \
                         SELECT COUNT(*) AS n FROM moved"
                    ),
                    &[],
                )
                .await?;
            let surveys = tx
                .fetch(
                    &format!(
                        "WITH moved AS (DELETE FROM survey_rollup_delta RETURNING *), \
                              ins AS (INSERT INTO survey_rollup ({SURVEY_KEY}, answers) \
                                SELECT {SURVEY_KEY}, COUNT(*) FROM moved GROUP BY {SURVEY_KEY} \
                                ON CONFLICT ({SURVEY_KEY}) DO UPDATE SET {survey_add}) \
                         SELECT COUNT(*) AS n FROM moved"
                    ),
                    &[],
                )
                .await?;
            first_count(&messages)? + first_count(&surveys)?
        }
        Backend::Sqlite => {
            // `WHERE true`: SQLite's parser needs it between a SELECT and an upsert clause.
            tx.execute(
                &format!(
                    "INSERT INTO message_rollup ({KEY}, {names}) \
                     SELECT {KEY}, {sums} FROM message_rollup_delta WHERE true GROUP BY {KEY} \
                     ON CONFLICT ({KEY}) DO UPDATE SET {adds}"
                ),
                &[],
            )
            .await?;
            tx.execute(
                &format!(
                    "INSERT INTO survey_rollup ({SURVEY_KEY}, answers) \
                     SELECT {SURVEY_KEY}, COUNT(*) FROM survey_rollup_delta WHERE true GROUP BY {SURVEY_KEY} \
                     ON CONFLICT ({SURVEY_KEY}) DO UPDATE SET {survey_add}"
                ),
                &[],
            )
            .await?;
            tx.execute("DELETE FROM message_rollup_delta", &[]).await?
                + tx.execute("DELETE FROM survey_rollup_delta", &[]).await?
        }
    };
    // Counters that came back to zero everywhere (a message that moved on from `claimed`) are
    // kept out of the folded table so that it grows with days and campaigns, not changes.
    let zero = counters(|name, _| format!("{name} = 0")).replace(", ", " AND ");
    tx.execute(&format!("DELETE FROM message_rollup WHERE {zero}"), &[])
        .await?;
    tx.commit().await?;
    Ok(moved)
}

fn first_count(rows: &[crate::db::DbRow]) -> Result<u64, StoreError> {
    Ok(rows
        .first()
        .map(|r| r.i64("n"))
        .transpose()?
        .unwrap_or(0)
        .max(0) as u64)
}

/// Message outcomes per campaign, step, variant, channel, locale and mailbox provider for
/// messages queued in the UTC days covering `[from, until)`: one campaign's, or every
/// campaign's.
pub(crate) async fn message_funnels(
    pool: &Pool,
    campaign: Option<CampaignId>,
    range: (i64, i64),
) -> Result<HashMap<CampaignId, Vec<MessageFunnel>>, StoreError> {
    let (filter, args) = days_of(campaign, range);
    let dims = "campaign_id, step, variant, channel, locale, provider";
    let sums = counters(|name, _| format!("CAST(SUM({name}) AS BIGINT) AS {name}"));
    type Key = (i64, String, String, String, String, String);
    let mut funnels: BTreeMap<Key, MessageFunnel> = BTreeMap::new();
    let key = |r: &crate::db::DbRow| -> Result<Key, StoreError> {
        Ok((
            r.i64("campaign_id")?,
            r.text("step")?,
            r.text("variant")?,
            r.text("channel")?,
            r.text("locale")?,
            r.text("provider")?,
        ))
    };
    fn entry(funnels: &mut BTreeMap<Key, MessageFunnel>, k: Key) -> &mut MessageFunnel {
        funnels.entry(k.clone()).or_insert_with(|| MessageFunnel {
            step: k.1,
            variant: k.2,
            channel: k.3,
            locale: k.4,
            provider: k.5,
            ..MessageFunnel::default()
        })
    }
    for r in pool
        .fetch(
            &format!(
                "SELECT {dims}, {sums} FROM ({rows}) r GROUP BY {dims}",
                rows = messages_now(dims, &filter)
            ),
            &args,
        )
        .await?
    {
        if r.i64("messages")? == 0 {
            continue;
        }
        let f = entry(&mut funnels, key(&r)?);
        f.sent = r.i64("sent")?;
        f.delivered = r.i64("delivered")?;
        f.hard_bounced = r.i64("hard_bounced")?;
        f.soft_bounced = r.i64("soft_bounced")?;
        f.in_doubt = r.i64("in_doubt")?;
        f.dropped = r.i64("dropped")?;
        f.opened_human = r.i64("opened_human")?;
        f.opened_machine = r.i64("opened_machine")?;
        f.clicked = r.i64("clicked")?;
        f.unsubscribed = r.i64("unsubscribed")?;
        f.complained = r.i64("complained")?;
    }
    for r in pool
        .fetch(
            &format!(
                "SELECT {dims}, reason, CAST(SUM(answers) AS BIGINT) AS answers FROM ( \
                   SELECT {dims}, reason, answers FROM survey_rollup WHERE {filter} \
                   UNION ALL \
                   SELECT {dims}, reason, 1 AS answers FROM survey_rollup_delta WHERE {filter} \
                 ) r GROUP BY {dims}, reason"
            ),
            &args,
        )
        .await?
    {
        let n = r.i64("answers")?;
        if n != 0 {
            *entry(&mut funnels, key(&r)?)
                .survey
                .entry(r.text("reason")?)
                .or_default() += n;
        }
    }
    // A campaign's touches outside the outbox count beside its messages, under the channel of
    // their destination: people added to an audience or a print list (sent and delivered: the
    // file carries them), and people put on a call list (sent: listed; delivered: reached).
    for (campaign_id, step, variant, channel, sent, delivered) in
        touches(pool, campaign, range).await?
    {
        let f = entry(
            &mut funnels,
            (
                campaign_id,
                step,
                variant,
                channel,
                "default".to_owned(),
                "-".to_owned(),
            ),
        );
        f.sent += sent;
        f.delivered += delivered;
    }
    let mut out: HashMap<CampaignId, Vec<MessageFunnel>> = HashMap::new();
    for ((campaign_id, ..), f) in funnels {
        out.entry(CampaignId::new(campaign_id)).or_default().push(f);
    }
    Ok(out)
}

/// Audience exports per campaign, step, variant and destination, and call tasks per campaign,
/// step and variant, in the UTC days covering `range`, as (campaign, step, variant, channel,
/// sent, delivered).
async fn touches(
    pool: &Pool,
    campaign: Option<CampaignId>,
    range: (i64, i64),
) -> Result<Vec<(i64, String, String, String, i64, i64)>, StoreError> {
    let (from, until) = days(range);
    let mut args = vec![Val::from(from * DAY), Val::from(until.saturating_mul(DAY))];
    let mut filter = "added_at >= $1 AND added_at < $2".to_owned();
    if let Some(id) = campaign {
        args.push(Val::from(id));
        filter.push_str(" AND campaign_id = $3");
    }
    let mut out = Vec::new();
    let exports = format!(
        "SELECT campaign_id, step, COALESCE(variant, '') AS variant, target AS channel, COUNT(*) AS n, COUNT(*) AS reached \
         FROM audience_exports WHERE {filter} GROUP BY campaign_id, step, variant, target"
    );
    // A call task counts as sent when listed, and as delivered when an agent reached the person.
    let calls = format!(
        "SELECT campaign_id, step, variant, 'call' AS channel, COUNT(*) AS n, \
           CAST(SUM(CASE WHEN outcome IS NOT NULL AND outcome <> 'not_reached' THEN 1 ELSE 0 END) AS BIGINT) AS reached \
         FROM call_tasks WHERE {filter} GROUP BY campaign_id, step, variant"
    );
    // A wallet pass counts as sent when issued, and as delivered once a device added it.
    let passes = format!(
        "SELECT campaign_id, step, variant, 'wallet' AS channel, COUNT(*) AS n, \
           CAST(SUM(CASE WHEN EXISTS (SELECT 1 FROM wallet_registrations r WHERE r.serial = wallet_passes.serial) THEN 1 ELSE 0 END) AS BIGINT) AS reached \
         FROM wallet_passes WHERE {} GROUP BY campaign_id, step, variant",
        filter.replace("added_at", "issued_at")
    );
    let mut rows = pool.fetch(&exports, &args).await?;
    rows.extend(pool.fetch(&calls, &args).await?);
    rows.extend(pool.fetch(&passes, &args).await?);
    for r in rows {
        out.push((
            r.i64("campaign_id")?,
            r.text("step")?,
            r.text("variant")?,
            r.text("channel")?,
            r.i64("n")?,
            r.i64("reached")?,
        ));
    }
    Ok(out)
}

/// Messages per campaign id and `column` (`state`, `reason`) among those matching `filter`.
async fn messages_by(
    pool: &Pool,
    column: &str,
    filter: &str,
    args: &[Val],
) -> Result<HashMap<CampaignId, BTreeMap<String, i64>>, StoreError> {
    let mut out: HashMap<CampaignId, BTreeMap<String, i64>> = HashMap::new();
    for r in pool
        .fetch(
            &format!(
                "SELECT campaign_id, {column}, CAST(SUM(messages) AS BIGINT) AS n FROM ({rows}) r \
                 GROUP BY campaign_id, {column}",
                rows = messages_now(&format!("campaign_id, {column}"), filter)
            ),
            args,
        )
        .await?
    {
        let n = r.i64("n")?;
        if n != 0 {
            out.entry(CampaignId::new(r.i64("campaign_id")?))
                .or_default()
                .insert(r.text(column)?, n);
        }
    }
    Ok(out)
}

/// Messages matching `filter` (over the rollups' dimensions), every campaign and day.
pub(crate) async fn message_count(pool: &Pool, filter: &str) -> Result<u64, StoreError> {
    let rows = pool
        .fetch(
            &format!(
                "SELECT CAST(COALESCE(SUM(messages), 0) AS BIGINT) AS n FROM ({rows}) r",
                rows = messages_now("campaign_id", filter)
            ),
            &[],
        )
        .await?;
    first_count(&rows)
}

/// One campaign's messages per variant and state.
pub(crate) async fn messages_by_variant(
    pool: &Pool,
    campaign: CampaignId,
) -> Result<BTreeMap<(String, String), i64>, StoreError> {
    let mut out = BTreeMap::new();
    for r in pool
        .fetch(
            &format!(
                "SELECT variant, state, CAST(SUM(messages) AS BIGINT) AS n FROM ({rows}) r \
                 GROUP BY variant, state",
                rows = messages_now("variant, state", "campaign_id = $1")
            ),
            &[Val::from(campaign)],
        )
        .await?
    {
        let n = r.i64("n")?;
        if n != 0 {
            out.insert((r.text("variant")?, r.text("state")?), n);
        }
    }
    Ok(out)
}

/// Messages per campaign id and state.
pub(crate) async fn message_states(
    pool: &Pool,
) -> Result<HashMap<CampaignId, BTreeMap<String, i64>>, StoreError> {
    messages_by(pool, "state", "true", &[]).await
}

/// Dropped messages per campaign id and reason (`no_consent`, `cap`, …), for messages queued in
/// the UTC days covering `[from, until)`; one campaign's, or every campaign's.
pub(crate) async fn drop_reasons(
    pool: &Pool,
    campaign: Option<CampaignId>,
    range: (i64, i64),
) -> Result<HashMap<CampaignId, BTreeMap<String, i64>>, StoreError> {
    let (filter, args) = days_of(campaign, range);
    messages_by(
        pool,
        "reason",
        &format!("state = 'dropped' AND {filter}"),
        &args,
    )
    .await
}
