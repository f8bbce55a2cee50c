//! The retention policy (GDPR storage limitation): everyone without customer-originated
//! activity (an order, a human click, a visit, a login, a survey answer; opens do not count)
//! for `retention_months` is erased, except people whose retention notice is queued or was sent
//! within `notice_days`. Run by `winback privacy retention` and daily by the worker's schedule.

use anyhow::{Context, Result};
use winback_domain::Timestamp;
use winback_store::{SqlStore, privacy::RetentionCandidate};

/// The notice campaign the retention policy waits for (when `[privacy] notice_days` > 0 and the
/// campaign is applied; see `examples/campaigns/retention-notice.toml`).
pub const NOTICE_CAMPAIGN: &str = "retention-notice";

/// What one retention run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RetentionOutcome {
    /// The run (also for dry runs).
    pub run_id: i64,
    /// Activity before this instant counts as expired.
    pub cutoff: Timestamp,
    /// People erased (or, in a dry run, who would be).
    pub erased: Vec<RetentionCandidate>,
    /// People past the cutoff whose retention notice awaits an answer.
    pub waiting_for_answer: Vec<RetentionCandidate>,
    /// Whether nothing was changed.
    pub dry_run: bool,
}

/// `now` minus `months` calendar months (UTC).
pub fn cutoff(now: Timestamp, months: u32) -> Result<Timestamp> {
    let t = now
        .jiff()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .checked_sub(jiff::Span::new().months(i64::from(months)))
        .context("retention cutoff out of range")?;
    Ok(Timestamp::new(t.timestamp()))
}

/// Runs the retention policy once: erases (or lists) everyone inactive since before the
/// cutoff, except people whose retention notice was sent within `notice_days` or is queued.
pub async fn retention(
    store: &SqlStore,
    now: Timestamp,
    months: u32,
    notice_days: u32,
    dry_run: bool,
) -> Result<RetentionOutcome> {
    let cutoff = cutoff(now, months)?;
    let notice_since = now.plus_seconds(-i64::from(notice_days) * 86_400);
    let settings = serde_json::json!({
        "retention_months": months,
        "notice_days": notice_days,
        "cutoff": cutoff.to_string(),
    });
    let run_id = store
        .begin_privacy_run("retention", dry_run, &settings, now)
        .await?;
    let candidates = store
        .retention_candidates(
            cutoff,
            (notice_days > 0).then_some((NOTICE_CAMPAIGN, notice_since)),
            &winback_domain::ACTIVITY_EVENTS,
        )
        .await?;
    let (waiting, due): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|c| c.notice_pending);
    let mut erased = Vec::with_capacity(due.len());
    for c in due {
        let reason = format!(
            "no customer activity for {months} months (last: {} on {})",
            c.last_activity.basis,
            c.last_activity.at.date_local()
        );
        if dry_run {
            store
                .privacy_audit(
                    run_id,
                    c.profile_id,
                    "would_erase",
                    &reason,
                    Some(c.last_activity.at),
                    now,
                )
                .await?;
            erased.push(c);
        } else if store
            .erase_profile(c.profile_id, run_id, &reason, Some(c.last_activity.at), now)
            .await?
            .is_some()
        {
            erased.push(c);
        }
    }
    store
        .finish_privacy_run(run_id, erased.len() as i64, now)
        .await?;
    Ok(RetentionOutcome {
        run_id,
        cutoff,
        erased,
        waiting_for_answer: waiting,
        dry_run,
    })
}
