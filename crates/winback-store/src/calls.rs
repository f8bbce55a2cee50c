//! Call lists: phone follow-up by customer service (seed 000: reaching inactive subscribers
//! "door middel van telefonisch contact en een korte enquête").
//!
//! A journey's `call` step puts the contact on a named list, once per enrolment and step (table
//! `call_tasks`). The list is read like the send-time check reads the outbox: at the moment an
//! agent asks for it, everyone on it is checked again (the journey still running, a number, no
//! do-not-call, no objection, a customer recent enough to call), and who is held back is counted
//! by reason, never dropped silently. An agent's outcome is stored on the task and as a
//! `call_outcome` event of the contact, which journeys wait and branch on; "do not call" puts
//! every number of the person on the do-not-call list (`suppressions`, channel `call`), "wants
//! fewer emails" sets their preference, and a reason for leaving counts as a survey answer.

use std::collections::{BTreeMap, HashMap, HashSet};

use winback_domain::{CallOutcome, EventKind, LeaveReason, Timestamp};
use winback_engine::policy::CallHours;

use crate::{
    StoreError,
    db::{Pool, Tx, Val, in_list},
    queries::ts,
};

/// How call lists are read (`[policy.calls]`).
#[derive(Debug, Clone, PartialEq)]
pub struct CallSettings {
    /// When calls may be made, in each contact's zone.
    pub hours: CallHours,
    /// The zone of contacts without one.
    pub default_zone: String,
    /// Tries before a task that keeps being "not reached" leaves the list.
    pub max_attempts: u32,
    /// Only customers whose last order is at most this many years old are called (the Dutch
    /// rule for calls without consent since 2021: one's own customers, for three years); `None`
    /// calls anyone on the list.
    pub customer_years: Option<u32>,
}

impl Default for CallSettings {
    fn default() -> Self {
        Self {
            hours: CallHours::default(),
            default_zone: "UTC".into(),
            max_attempts: 3,
            customer_years: Some(3),
        }
    }
}

/// One contact to call, with why and what to offer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallRow {
    /// The task: what an outcome names.
    pub task: i64,
    /// Campaign.
    pub campaign: String,
    /// Step of the campaign.
    pub step: String,
    /// The shop's customer id.
    pub customer_id: String,
    /// Name, as the shop has it.
    pub name: Option<String>,
    /// The number to call (E.164).
    pub phone: String,
    /// The contact's zone.
    pub time_zone: String,
    /// Today's calling window in that zone (`09:00-21:00`), or `none` on a day without calls.
    pub window: String,
    /// Whether a call may be made now.
    pub callable_now: bool,
    /// When a call may next be made.
    pub next_call_at: Timestamp,
    /// Lifecycle stage.
    pub stage: Option<String>,
    /// Days since the last order.
    pub days_since_last_order: Option<i64>,
    /// The contact's usual days between orders.
    pub usual_gap_days: Option<f64>,
    /// Orders so far.
    pub orders: i64,
    /// Spent so far, minor units.
    pub spent_minor: i64,
    /// Predicted customer value, minor units.
    pub clv_minor: Option<i64>,
    /// Currency of the amounts.
    pub currency: Option<String>,
    /// Reasons for leaving the contact gave before.
    pub leave_reasons: Vec<String>,
    /// The campaign's newest unexpired offer for the contact: code, wording and expiry.
    pub offer_code: Option<String>,
    /// What the offer is.
    pub offer: Option<String>,
    /// When it expires.
    pub offer_expires_at: Option<Timestamp>,
    /// Tries so far.
    pub attempts: i64,
    /// When the journey put them on the list.
    pub added_at: Timestamp,
}

/// A call list as an agent gets it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CallList {
    /// The list.
    pub list: String,
    /// Who to call, the callable ones first, then by predicted value.
    pub rows: Vec<CallRow>,
    /// Open tasks not shown, by reason: `journey_ended`, `no_phone`, `do_not_call`,
    /// `objected`, `not_a_recent_customer`, `erased`.
    pub held_back: BTreeMap<String, u64>,
}

/// An agent's outcome for one task.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReport {
    /// The task.
    pub task: i64,
    /// What it came to.
    pub outcome: CallOutcome,
    /// The reason for leaving (required with [`CallOutcome::ReasonForLeaving`]).
    pub reason: Option<LeaveReason>,
    /// Who called.
    pub agent: Option<String>,
    /// A note for colleagues (kept on the task, not in the event).
    pub note: Option<String>,
    /// When the call was made.
    pub at: Timestamp,
    /// The caller's own id for this report, so a retried request is applied once (default:
    /// the task, outcome and time).
    pub key: Option<String>,
}

/// Why an outcome was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallRefused {
    /// No such task.
    #[error("call task {0} does not exist")]
    UnknownTask(i64),
    /// The task already has its outcome, or was cancelled.
    #[error("call task {task} is {state} ({why}); it takes no more outcomes")]
    Closed {
        /// The task.
        task: i64,
        /// `done` or `cancelled`.
        state: String,
        /// Its outcome or why it was cancelled.
        why: String,
    },
    /// A reason for leaving without the reason.
    #[error("outcome reason_for_leaving needs a reason")]
    ReasonMissing,
}

/// What recording an outcome did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallRecorded {
    /// Stored; the task is now in this state.
    Stored {
        /// `open` (not reached, tries left), `done` or `cancelled` (tries used up).
        open: bool,
    },
    /// The same report was stored before (same key): nothing changed.
    Repeat,
}

/// Open tasks of `list` whose journeys ended are cancelled: the worker's pass runs this, so a
/// list never fills with people the campaign is done with.
pub(crate) async fn close_ended(pool: &Pool, now: Timestamp) -> Result<u64, StoreError> {
    pool.execute(
        "UPDATE call_tasks SET state = 'cancelled', closed_reason = 'journey_ended', outcome_at = $1 \
         WHERE state = 'open' AND EXISTS (SELECT 1 FROM enrolments e WHERE e.id = call_tasks.enrolment_id AND e.state <> 'active')",
        &[Val::from(now.as_micros())],
    )
    .await
}

/// The open tasks of `list`, checked now.
pub(crate) async fn call_list(
    pool: &Pool,
    list: &str,
    settings: &CallSettings,
    now: Timestamp,
) -> Result<CallList, StoreError> {
    let tasks = pool
        .fetch(
            "SELECT t.id, c.name AS campaign, t.campaign_id, t.step, t.profile_id, t.attempts, t.added_at, e.state AS journey \
             FROM call_tasks t JOIN campaigns c ON c.id = t.campaign_id JOIN enrolments e ON e.id = t.enrolment_id \
             WHERE t.list = $1 AND t.state = 'open' ORDER BY t.added_at, t.id",
            &[Val::from(list)],
        )
        .await?;
    let mut out = CallList {
        list: list.to_owned(),
        ..CallList::default()
    };
    let mut profiles: Vec<i64> = tasks
        .iter()
        .map(|r| r.i64("profile_id"))
        .collect::<Result<_, _>>()?;
    profiles.sort_unstable();
    profiles.dedup();
    let people = people(pool, &profiles).await?;
    let offers = offers_for(pool, &profiles, now).await?;
    let rows: HashMap<i64, winback_engine::audience::AudienceRow> = if profiles.is_empty() {
        HashMap::new()
    } else {
        crate::journeys::audience_rows(pool, now, Some(&profiles))
            .await?
            .into_iter()
            .map(|e| (e.row.profile_id.get(), e.row))
            .collect()
    };
    let mut hold = |why: &str| *out.held_back.entry(why.to_owned()).or_default() += 1;
    for t in &tasks {
        let profile = t.i64("profile_id")?;
        if t.text("journey")? != "active" {
            hold("journey_ended");
            continue;
        }
        let Some(p) = people.get(&profile) else {
            hold("erased");
            continue;
        };
        if p.objected {
            hold("objected");
            continue;
        }
        let Some(phone) = p.phones.iter().find(|n| !p.do_not_call.contains(*n)) else {
            hold(if p.phones.is_empty() {
                "no_phone"
            } else {
                "do_not_call"
            });
            continue;
        };
        let row = rows.get(&profile);
        if let Some(years) = settings.customer_years {
            let recent = row
                .and_then(|r| r.days_since_last_order)
                .is_some_and(|d| d <= i64::from(years) * 365);
            if !recent {
                hold("not_a_recent_customer");
                continue;
            }
        }
        let zone_name = p
            .time_zone
            .clone()
            .unwrap_or_else(|| settings.default_zone.clone());
        let zone = jiff::tz::TimeZone::get(&zone_name)
            .or_else(|_| jiff::tz::TimeZone::get(&settings.default_zone))
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let today = now.jiff().to_zoned(zone.clone()).date().weekday();
        let next = settings.hours.next_open(now, &zone).unwrap_or(now);
        let offer = offers.get(&(t.i64("campaign_id")?, profile));
        // Features keep amounts in major units; the list gives minor units, as the API does.
        let scale = 10f64.powi(
            row.and_then(|r| r.currency.as_deref())
                .and_then(|c| winback_domain::Currency::parse(c).ok())
                .map_or(2, |c| i32::from(c.minor_digits())),
        );
        out.rows.push(CallRow {
            task: t.i64("id")?,
            campaign: t.text("campaign")?,
            step: t.text("step")?,
            customer_id: p.external_id.clone(),
            name: p.name.clone(),
            phone: phone.clone(),
            time_zone: zone_name,
            window: settings
                .hours
                .on(today)
                .map_or_else(|| "none".to_owned(), |w| w.to_string()),
            callable_now: next == now,
            next_call_at: next,
            stage: row.and_then(|r| r.stage.clone()),
            days_since_last_order: row.and_then(|r| r.days_since_last_order),
            usual_gap_days: row.and_then(|r| r.usual_gap_days),
            orders: row.map_or(0, |r| r.orders),
            spent_minor: row.map_or(0, |r| (r.total_spend * scale).round() as i64),
            clv_minor: row.and_then(|r| r.clv).map(|v| (v * scale).round() as i64),
            currency: row.and_then(|r| r.currency.clone()),
            leave_reasons: row.map(|r| r.leave_reasons.clone()).unwrap_or_default(),
            offer_code: offer.map(|o| o.0.clone()),
            offer: offer.map(|o| o.1.clone()),
            offer_expires_at: offer.map(|o| o.2),
            attempts: t.i64("attempts")?,
            added_at: ts(t.i64("added_at")?)?,
        });
    }
    // Who can be called now first; among them the most valuable; then the longest waiting.
    out.rows.sort_by(|a, b| {
        b.callable_now
            .cmp(&a.callable_now)
            .then(b.clv_minor.unwrap_or(-1).cmp(&a.clv_minor.unwrap_or(-1)))
            .then(a.added_at.cmp(&b.added_at))
            .then(a.task.cmp(&b.task))
    });
    Ok(out)
}

/// What a call list needs to know about one person.
#[derive(Debug, Default)]
struct Person {
    external_id: String,
    name: Option<String>,
    phones: Vec<String>,
    time_zone: Option<String>,
    do_not_call: HashSet<String>,
    objected: bool,
}

/// The people of `profiles` who are not erased, from all their records.
async fn people(pool: &Pool, profiles: &[i64]) -> Result<HashMap<i64, Person>, StoreError> {
    let mut out: HashMap<i64, Person> = HashMap::new();
    for chunk in profiles.chunks(2000) {
        let args: Vec<Val> = chunk.iter().map(|i| Val::from(*i)).collect();
        let list = in_list(chunk.len());
        for r in pool
            .fetch(
                &format!(
                    "SELECT COALESCE(c.profile_id, c.id) AS profile, c.id, c.external_id, c.first_name, c.last_name, c.phone, c.time_zone \
                     FROM customers c WHERE (c.id IN ({list}) OR c.profile_id IN ({list})) AND c.erased_at IS NULL ORDER BY c.id"
                ),
                &args,
            )
            .await?
        {
            let profile = r.i64("profile")?;
            let p = out.entry(profile).or_default();
            if r.i64("id")? == profile || p.external_id.is_empty() {
                p.external_id = r.text("external_id")?;
            }
            if p.name.is_none() {
                let name = [r.opt_text("first_name")?, r.opt_text("last_name")?]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                p.name = (!name.is_empty()).then_some(name);
            }
            if let Some(n) = r.opt_text("phone")? {
                if !p.phones.contains(&n) {
                    p.phones.push(n);
                }
            }
            if p.time_zone.is_none() {
                p.time_zone = r.opt_text("time_zone")?;
            }
        }
        for r in pool
            .fetch(
                &format!(
                    "SELECT profile_id FROM contact_tags WHERE tag = 'objected' AND profile_id IN ({list})"
                ),
                &args,
            )
            .await?
        {
            if let Some(p) = out.get_mut(&r.i64(0)?) {
                p.objected = true;
            }
        }
    }
    let phones: Vec<String> = out.values().flat_map(|p| p.phones.clone()).collect();
    let mut blocked: HashSet<String> = HashSet::new();
    for chunk in phones.chunks(2000) {
        let args: Vec<Val> = chunk.iter().map(|p| Val::from(p.as_str())).collect();
        for r in pool
            .fetch(
                &format!(
                    "SELECT address FROM suppressions WHERE channel = 'call' AND active = 1 AND address IN ({})",
                    in_list(chunk.len())
                ),
                &args,
            )
            .await?
        {
            blocked.insert(r.text(0)?);
        }
    }
    for p in out.values_mut() {
        p.do_not_call = p
            .phones
            .iter()
            .filter(|n| blocked.contains(*n))
            .cloned()
            .collect();
    }
    Ok(out)
}

/// Each (campaign, profile)'s newest unexpired offer among `profiles`: code, wording, expiry.
/// One read for the whole list (a list of thousands would otherwise cost a query per row).
async fn offers_for(
    pool: &Pool,
    profiles: &[i64],
    now: Timestamp,
) -> Result<HashMap<(i64, i64), (String, String, Timestamp)>, StoreError> {
    let mut out = HashMap::new();
    for chunk in profiles.chunks(2000) {
        let mut args: Vec<Val> = chunk.iter().map(|i| Val::from(*i)).collect();
        args.push(Val::from(now.as_micros()));
        for r in pool
            .fetch(
                &format!(
                    "SELECT campaign_id, profile_id, code, description, expires_at FROM offers \
                     WHERE profile_id IN ({}) AND expires_at > ${} AND state = 'issued' \
                     ORDER BY campaign_id, profile_id, issued_at DESC",
                    in_list(chunk.len()),
                    chunk.len() + 1
                ),
                &args,
            )
            .await?
        {
            // The first row of each pair is its newest.
            out.entry((r.i64("campaign_id")?, r.i64("profile_id")?))
                .or_insert((
                    r.text("code")?,
                    r.opt_text("description")?.unwrap_or_default(),
                    ts(r.i64("expires_at")?)?,
                ));
        }
    }
    Ok(out)
}

/// Records an agent's outcome: on the task, as a `call_outcome` event of the person, and with
/// its consequences, in one transaction. `Ok(Err(_))`: refused, nothing written.
pub(crate) async fn record(
    pool: &Pool,
    report: &CallReport,
    settings: &CallSettings,
    now: Timestamp,
) -> Result<Result<CallRecorded, CallRefused>, StoreError> {
    Ok(
        record_all(pool, std::slice::from_ref(report), settings, now)
            .await?
            .map(|mut v| v.remove(0))
            .map_err(|(_, r)| r),
    )
}

/// Records several outcomes in one transaction (a call-centre file): all of them, or, when one
/// is refused, none (`Err((index, why))`).
pub(crate) async fn record_all(
    pool: &Pool,
    reports: &[CallReport],
    settings: &CallSettings,
    now: Timestamp,
) -> Result<Result<Vec<CallRecorded>, (usize, CallRefused)>, StoreError> {
    let mut tx = pool.begin().await?;
    let mut out = Vec::with_capacity(reports.len());
    for (i, report) in reports.iter().enumerate() {
        match record_in(&mut tx, report, settings, now).await? {
            Ok(r) => out.push(r),
            Err(refused) => {
                tx.rollback().await?;
                return Ok(Err((i, refused)));
            }
        }
    }
    tx.commit().await?;
    Ok(Ok(out))
}

async fn record_in(
    tx: &mut Tx,
    report: &CallReport,
    settings: &CallSettings,
    now: Timestamp,
) -> Result<Result<CallRecorded, CallRefused>, StoreError> {
    if report.outcome == CallOutcome::ReasonForLeaving && report.reason.is_none() {
        return Ok(Err(CallRefused::ReasonMissing));
    }
    let lock = match tx.backend() {
        crate::db::Backend::Postgres => " FOR UPDATE",
        crate::db::Backend::Sqlite => "",
    };
    let task = tx
        .fetch(
            &format!(
                "SELECT profile_id, state, outcome, closed_reason, added_at, attempts FROM call_tasks WHERE id = $1{lock}"
            ),
            &[Val::from(report.task)],
        )
        .await?;
    let Some(t) = task.first() else {
        return Ok(Err(CallRefused::UnknownTask(report.task)));
    };
    let profile = t.i64("profile_id")?;
    let key = format!(
        "call:{}:{}",
        report.task,
        report.key.clone().unwrap_or_else(|| format!(
            "{}@{}",
            report.outcome,
            report.at.as_micros()
        ))
    );
    // The same report again (a retried request, a re-imported file): applied once.
    if !tx
        .fetch(
            "SELECT 1 FROM events WHERE event_key = $1",
            &[Val::from(key.as_str())],
        )
        .await?
        .is_empty()
    {
        return Ok(Ok(CallRecorded::Repeat));
    }
    let state = t.text("state")?;
    if state != "open" {
        let why = t
            .opt_text("outcome")?
            .or(t.opt_text("closed_reason")?)
            .unwrap_or_default();
        return Ok(Err(CallRefused::Closed {
            task: report.task,
            state,
            why,
        }));
    }
    // Journeys wait for an outcome that arrives after they started waiting: a call reported
    // with a time before the task existed (a wrong clock) counts from the task's creation.
    let at = report.at.max(ts(t.i64("added_at")?)?);
    // A try that leaves the task on the list is an attempt; the outcome that closes it (the
    // last "not reached" included) is what journeys wait and branch on.
    let stays_open = report.outcome == CallOutcome::NotReached
        && t.i64("attempts")? + 1 < i64::from(settings.max_attempts.max(1));
    let kind = if stays_open {
        EventKind::CallAttempt {
            task: Some(report.task),
            agent: report.agent.clone(),
        }
    } else {
        EventKind::CallOutcome {
            outcome: report.outcome,
            reason: report.reason,
            task: Some(report.task),
            agent: report.agent.clone(),
        }
    };
    tx.execute(
        "INSERT INTO events (event_key, customer_id, type, occurred_at, payload, inserted_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            Val::from(key.as_str()),
            Val::from(profile),
            Val::from(kind.type_name()),
            Val::from(at.as_micros()),
            Val::from(serde_json::to_string(&kind)?),
            Val::from(now.as_micros()),
        ],
    )
    .await?;
    let open = report.outcome == CallOutcome::NotReached;
    tx.execute(
        "UPDATE call_tasks SET attempts = attempts + 1, outcome = $2, reason = $3, agent = $4, note = $5, outcome_at = $6, \
           state = CASE WHEN $7 = 0 THEN 'done' WHEN attempts + 1 >= $8 THEN 'cancelled' ELSE 'open' END, \
           closed_reason = CASE WHEN $7 = 1 AND attempts + 1 >= $8 THEN 'attempts' ELSE closed_reason END \
         WHERE id = $1",
        &[
            Val::from(report.task),
            Val::from(report.outcome.as_str()),
            Val::from(report.reason.map(|r| r.as_str().to_owned())),
            Val::from(report.agent.clone()),
            Val::from(report.note.clone()),
            Val::from(at.as_micros()),
            Val::from(i64::from(open)),
            Val::from(i64::from(settings.max_attempts.max(1))),
        ],
    )
    .await?;
    match report.outcome {
        CallOutcome::DoNotCall => {
            for r in tx
                .fetch(
                    "SELECT DISTINCT phone FROM customers WHERE (id = $1 OR profile_id = $1) AND phone IS NOT NULL",
                    &[Val::from(profile)],
                )
                .await?
            {
                tx.execute(
                    "INSERT INTO suppressions (channel, address, reason, created_at, active) VALUES ('call', $1, 'do_not_call', $2, 1) \
                     ON CONFLICT (channel, address) DO UPDATE SET active = 1, reason = 'do_not_call'",
                    &[Val::from(r.text(0)?), Val::from(now.as_micros())],
                )
                .await?;
            }
            tx.execute(
                "UPDATE call_tasks SET state = 'cancelled', closed_reason = 'do_not_call', outcome_at = $2 WHERE profile_id = $1 AND state = 'open'",
                &[Val::from(profile), Val::from(now.as_micros())],
            )
            .await?;
        }
        CallOutcome::WantsFewerEmails => {
            tx.execute(
                "INSERT INTO preferences (profile_id, frequency, topics_off, updated_at) VALUES ($1, 'low', '[]', $2) \
                 ON CONFLICT (profile_id) DO UPDATE SET frequency = 'low', updated_at = excluded.updated_at",
                &[Val::from(profile), Val::from(now.as_micros())],
            )
            .await?;
        }
        _ => {}
    }
    // The reason for leaving enters the features at the next refresh.
    tx.execute(
        "INSERT INTO feature_dirty (customer_id) VALUES ($1) ON CONFLICT DO NOTHING",
        &[Val::from(profile)],
    )
    .await?;
    Ok(Ok(CallRecorded::Stored { open: stays_open }))
}

/// Calls of one campaign arm: listed, reached, offers accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CallTally {
    /// Campaign name.
    pub campaign: String,
    /// Variant.
    pub variant: String,
    /// Put on a call list.
    pub listed: i64,
    /// Reached by an agent.
    pub reached: i64,
    /// Accepted the offer on the phone.
    pub accepted: i64,
    /// Asked never to be called again.
    pub do_not_call: i64,
}

/// Every campaign arm's calls.
pub(crate) async fn tallies(pool: &Pool) -> Result<Vec<CallTally>, StoreError> {
    pool.fetch(
        "SELECT c.name, t.variant, COUNT(*) AS listed, \
           CAST(SUM(CASE WHEN t.outcome IS NOT NULL AND t.outcome <> 'not_reached' THEN 1 ELSE 0 END) AS BIGINT) AS reached, \
           CAST(SUM(CASE WHEN t.outcome = 'offer_accepted' THEN 1 ELSE 0 END) AS BIGINT) AS accepted, \
           CAST(SUM(CASE WHEN t.outcome = 'do_not_call' THEN 1 ELSE 0 END) AS BIGINT) AS dnc \
         FROM call_tasks t JOIN campaigns c ON c.id = t.campaign_id GROUP BY c.name, t.variant ORDER BY c.name, t.variant",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(CallTally {
            campaign: r.text(0)?,
            variant: r.text(1)?,
            listed: r.i64("listed")?,
            reached: r.i64("reached")?,
            accepted: r.i64("accepted")?,
            do_not_call: r.i64("dnc")?,
        })
    })
    .collect()
}

/// The open task of `list` for the customer with `external_id` (a call-centre file that names
/// customers rather than tasks).
pub(crate) async fn open_task_of(
    pool: &Pool,
    list: &str,
    external_id: &str,
) -> Result<Option<i64>, StoreError> {
    pool
        .fetch(
            "SELECT t.id FROM call_tasks t JOIN customers c ON c.external_id = $2 AND t.profile_id = COALESCE(c.profile_id, c.id) \
             WHERE t.list = $1 AND t.state = 'open' ORDER BY t.added_at DESC, t.id DESC LIMIT 1",
            &[Val::from(list), Val::from(external_id)],
        )
        .await?
        .first()
        .map(|r| r.i64(0))
        .transpose()
}
