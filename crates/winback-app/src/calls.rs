//! Call lists for customer service, and agents' outcomes coming back: one path for
//! `POST /v1/call-outcomes`, `winback calls import FILE` and the list's CSV
//! (`winback calls list NAME --out FILE`, `GET /v1/call-lists/NAME`).

use std::io::Write;

use anyhow::Result;
use winback_channels::exports::defuse;
use winback_domain::{CallOutcome, LeaveReason, Timestamp};
use winback_import::DateParser;
use winback_store::SqlStore;
use winback_store::calls::{CallList, CallRecorded, CallRefused, CallReport, CallSettings};

/// One outcome as an agent's tool sends it (JSON) or a call-centre file holds it (a row).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeInput {
    /// The task id from the call list; or `list` with `customer_id`.
    #[serde(default)]
    pub task: Option<i64>,
    /// The call list, with `customer_id`, when the task id is not at hand.
    #[serde(default)]
    pub list: Option<String>,
    /// The shop's customer id, with `list`.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// `reached`, `not_reached`, `reason_for_leaving`, `wants_fewer_emails`, `do_not_call` or
    /// `offer_accepted`.
    pub outcome: String,
    /// With `reason_for_leaving`: `too_expensive`, `bad_experience`, `hard_to_understand`,
    /// `forgot_us`, `quality` or `other`.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who called.
    #[serde(default)]
    pub agent: Option<String>,
    /// A note for colleagues.
    #[serde(default)]
    pub note: Option<String>,
    /// When the call was made (default: now).
    #[serde(default)]
    pub at: Option<String>,
    /// The caller's id for this report: sending it again changes nothing.
    #[serde(default)]
    pub id: Option<String>,
}

/// A field of an outcome that is wrong, by name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field,
        reason: reason.into(),
    }
}

/// Longest agent name and note kept (a note is for colleagues, not a transcript).
const MAX_AGENT: usize = 100;
const MAX_NOTE: usize = 2_000;

impl OutcomeInput {
    /// Checks the fields that need no store: the outcome, the reason, the time, the lengths.
    fn check(
        &self,
        dates: &DateParser,
        now: Timestamp,
    ) -> Result<(CallOutcome, Option<LeaveReason>, Timestamp), FieldError> {
        let outcome = CallOutcome::parse(&self.outcome).ok_or_else(|| {
            bad(
                "outcome",
                format!(
                    "`{}` is not one of {}",
                    self.outcome,
                    CallOutcome::ALL.map(CallOutcome::as_str).join(", ")
                ),
            )
        })?;
        let reason = match self.reason.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(r) => Some(
                serde_json::from_value::<LeaveReason>(serde_json::Value::String(
                    r.to_lowercase().replace([' ', '-'], "_"),
                ))
                .map_err(|_| {
                    bad(
                        "reason",
                        format!(
                            "`{r}` is not one of {}",
                            LeaveReason::ALL.map(LeaveReason::as_str).join(", ")
                        ),
                    )
                })?,
            ),
        };
        if outcome == CallOutcome::ReasonForLeaving && reason.is_none() {
            return Err(bad("reason", "reason_for_leaving needs the reason"));
        }
        let at = match self.at.as_deref().map(str::trim) {
            None | Some("") => now,
            Some(raw) => dates.parse(raw).map_err(|e| bad("at", e))?,
        };
        if at > now.plus_seconds(300) {
            return Err(bad("at", "is in the future"));
        }
        if self
            .agent
            .as_ref()
            .is_some_and(|a| a.chars().count() > MAX_AGENT)
        {
            return Err(bad("agent", format!("longer than {MAX_AGENT} characters")));
        }
        if self
            .note
            .as_ref()
            .is_some_and(|a| a.chars().count() > MAX_NOTE)
        {
            return Err(bad("note", format!("longer than {MAX_NOTE} characters")));
        }
        Ok((outcome, reason, at))
    }

    /// The task this outcome is for.
    async fn task(&self, store: &SqlStore) -> Result<Result<i64, FieldError>> {
        Ok(match (self.task, &self.list, &self.customer_id) {
            (Some(t), _, _) => Ok(t),
            (None, Some(list), Some(customer)) => store
                .open_call_task(list.trim(), customer.trim())
                .await?
                .ok_or_else(|| {
                    bad(
                        "customer_id",
                        format!("`{customer}` has no open task on call list `{list}`"),
                    )
                }),
            _ => Err(bad(
                "task",
                "give the task, or the list and the customer_id",
            )),
        })
    }

    /// The report to store, or what is wrong with it.
    pub async fn resolve(
        &self,
        store: &SqlStore,
        dates: &DateParser,
        now: Timestamp,
    ) -> Result<Result<CallReport, FieldError>> {
        let (outcome, reason, at) = match self.check(dates, now) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let task = match self.task(store).await? {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let clean = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Ok(Ok(CallReport {
            task,
            outcome,
            reason,
            agent: clean(&self.agent),
            note: clean(&self.note),
            at,
            key: clean(&self.id),
        }))
    }
}

/// What importing a file of outcomes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomeImport {
    /// Outcomes stored.
    pub recorded: u64,
    /// Rows stored before (same id, or same task, outcome and time): unchanged.
    pub repeats: u64,
    /// `file:line: field: reason` for each refused row; with any, nothing was stored.
    pub errors: Vec<String>,
}

/// The headers a call-centre file may use for each field (English and Dutch).
const HEADERS: [(&str, &[&str]); 9] = [
    ("task", &["task", "task_id", "taak"]),
    ("list", &["list", "call_list", "lijst", "belijst"]),
    (
        "customer_id",
        &["customer_id", "klantnummer", "klant_id", "customer"],
    ),
    ("outcome", &["outcome", "uitkomst", "resultaat"]),
    ("reason", &["reason", "reden"]),
    ("agent", &["agent", "medewerker", "caller"]),
    ("note", &["note", "notitie", "opmerking"]),
    ("at", &["at", "called_at", "gebeld_op", "datum"]),
    ("id", &["id", "outcome_id", "call_id"]),
];

/// Reads a file of outcomes (comma or semicolon separated, English or Dutch headers) and stores
/// them. Every row is checked against the store first; any refused row means nothing is stored,
/// and every refusal is named with its line and field.
pub async fn import_outcomes(
    store: &SqlStore,
    settings: &CallSettings,
    file: &str,
    text: &str,
    dates: &DateParser,
    now: Timestamp,
) -> Result<OutcomeImport> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.lines().next().unwrap_or_default();
    let delimiter = if first.matches(';').count() > first.matches(',').count() {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| anyhow::anyhow!("{file}:1: {e}"))?
        .iter()
        .map(|h| h.trim().to_lowercase().replace([' ', '-'], "_"))
        .collect();
    let column = |field: &str| -> Option<usize> {
        let names = HEADERS.iter().find(|(f, _)| *f == field)?.1;
        headers.iter().position(|h| names.contains(&h.as_str()))
    };
    let mut out = OutcomeImport::default();
    if column("outcome").is_none() {
        out.errors.push(format!(
            "{file}:1: outcome: no `outcome` (or `uitkomst`) column"
        ));
        return Ok(out);
    }
    let mut reports: Vec<(usize, CallReport)> = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                out.errors.push(format!("{file}:{line}: {e}"));
                continue;
            }
        };
        let get = |field: &str| {
            column(field)
                .and_then(|c| record.get(c))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let task = match get("task").map(|t| t.parse::<i64>()) {
            Some(Ok(t)) => Some(t),
            Some(Err(_)) => {
                out.errors.push(format!(
                    "{file}:{line}: task: `{}` is not a task number",
                    get("task").unwrap_or_default()
                ));
                continue;
            }
            None => None,
        };
        let input = OutcomeInput {
            task,
            list: get("list"),
            customer_id: get("customer_id"),
            outcome: get("outcome").unwrap_or_default(),
            reason: get("reason"),
            agent: get("agent"),
            note: get("note"),
            at: get("at"),
            id: get("id"),
        };
        match input.resolve(store, dates, now).await? {
            Ok(r) => reports.push((line, r)),
            Err(e) => out.errors.push(format!("{file}:{line}: {e}")),
        }
    }
    if !out.errors.is_empty() {
        return Ok(out);
    }
    // One transaction: every row, or none when the store refuses one (a task already closed,
    // the same task closed twice in the file).
    let all: Vec<CallReport> = reports.iter().map(|(_, r)| r.clone()).collect();
    match store.record_call_outcomes(&all, settings, now).await? {
        Ok(done) => {
            for d in done {
                match d {
                    CallRecorded::Stored { .. } => out.recorded += 1,
                    CallRecorded::Repeat => out.repeats += 1,
                }
            }
        }
        Err((i, refused)) => out
            .errors
            .push(format!("{file}:{}: task: {refused}", reports[i].0)),
    }
    Ok(out)
}

/// Whether a refusal is the caller's mistake about the task (404) or about its state (409).
pub fn refusal_code(r: &CallRefused) -> (&'static str, u16) {
    match r {
        CallRefused::UnknownTask(_) => ("unknown_task", 404),
        CallRefused::Closed { .. } => ("task_closed", 409),
        CallRefused::ReasonMissing => ("invalid_outcome", 422),
    }
}

/// The call list as CSV for a call centre's dialler or a spreadsheet; every cell defused.
pub fn write_call_list<W: Write>(list: &CallList, out: W) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "task",
        "customer_id",
        "name",
        "phone",
        "time_zone",
        "window_today",
        "callable_now",
        "next_call_at",
        "campaign",
        "stage",
        "days_since_last_order",
        "usual_gap_days",
        "orders",
        "spent",
        "clv",
        "currency",
        "leave_reasons",
        "offer_code",
        "offer",
        "offer_expires_at",
        "attempts",
        "added_at",
    ])?;
    let money = |m: Option<i64>| {
        m.map(|v| format!("{}.{:02}", v / 100, (v % 100).abs()))
            .unwrap_or_default()
    };
    for r in &list.rows {
        let cells = [
            r.task.to_string(),
            r.customer_id.clone(),
            r.name.clone().unwrap_or_default(),
            r.phone.clone(),
            r.time_zone.clone(),
            r.window.clone(),
            r.callable_now.to_string(),
            r.next_call_at.to_string(),
            r.campaign.clone(),
            r.stage.clone().unwrap_or_default(),
            r.days_since_last_order
                .map(|d| d.to_string())
                .unwrap_or_default(),
            r.usual_gap_days
                .map(|d| format!("{d:.0}"))
                .unwrap_or_default(),
            r.orders.to_string(),
            money(Some(r.spent_minor)),
            money(r.clv_minor),
            r.currency.clone().unwrap_or_default(),
            r.leave_reasons.join(" "),
            r.offer_code.clone().unwrap_or_default(),
            r.offer.clone().unwrap_or_default(),
            r.offer_expires_at
                .map(|t| t.to_string())
                .unwrap_or_default(),
            r.attempts.to_string(),
            r.added_at.to_string(),
        ];
        w.write_record(cells.iter().map(|c| defuse(c)))?;
    }
    w.flush()?;
    Ok(())
}
