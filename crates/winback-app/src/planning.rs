//! Planning a campaign before launch: how many contacts it will see, how small a lift they can
//! detect, how many weeks until it detects a given lift, and the holdout share a target minimum
//! detectable effect needs. Every figure is for the anytime-valid test the verdict uses
//! (`winback_measure::detectable_at_every_look`), so the plan and the readout agree.

use anyhow::Result;
use winback_domain::Timestamp;
use winback_engine::definition::Trigger;
use winback_engine::{Campaign, JourneyStore};
use winback_store::{Outcomes, SqlStore};

/// Weeks a plan looks ahead at most.
pub const MAX_WEEKS: u32 = 104;

/// Profiles read per audience page while counting.
const PAGE: usize = 10_000;

/// What a campaign can measure, from the shop's data as it is now.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    /// Campaign name.
    pub campaign: String,
    /// Its holdout share.
    pub share: f64,
    /// Its attribution window in days: results are readable this long after entry.
    pub window_days: f64,
    /// Profiles matching an audience trigger today (they enter on the first pass).
    pub matching_now: Option<u64>,
    /// Contacts entering a week, from the campaign's last 28 days in the store.
    pub per_week: Option<f64>,
    /// The share expected to buy within the window without a message: the matching profiles'
    /// purchase model for an audience trigger, else the campaign's holdout so far.
    pub base_rate: Option<f64>,
    /// The smallest lift (absolute) the first entrants detect with 80% power.
    pub detectable_now: Option<f64>,
    /// The lift asked about (absolute).
    pub lift: f64,
    /// Weeks until it is detectable (0: with the first entrants), within [`MAX_WEEKS`].
    pub weeks: Option<u32>,
    /// The holdout share that detects `target` (absolute) with the contacts expected by then,
    /// when a target was given.
    pub share_for_target: Option<(f64, Option<f64>)>,
}

impl Plan {
    /// The plan in a marketer's words, one line each.
    pub fn lines(&self) -> Vec<String> {
        let pts = |x: f64| format!("{:.1} points", 100.0 * x);
        let mut out = Vec::new();
        let base = self
            .base_rate
            .map(|b| {
                format!(
                    " ({:.1}% would buy within {:.0} days anyway)",
                    100.0 * b,
                    self.window_days
                )
            })
            .unwrap_or_default();
        match (self.matching_now, self.per_week) {
            (Some(m), _) => out.push(format!(
                "{} match the audience today{base}; {:.0}% held out",
                winback_report::n(m),
                100.0 * self.share
            )),
            (None, Some(w)) if w > 0.0 => out.push(format!(
                "about {:.0} enter a week (the last 28 days){base}; {:.0}% held out",
                w,
                100.0 * self.share
            )),
            (None, Some(_)) => out.push(
                "nobody entered in the last 28 days (it enters on events); `winback simulate` forecasts it"
                    .into(),
            ),
            (None, None) => out.push(
                "no entries to plan from yet (it enters on events; `winback simulate` forecasts it)"
                    .into(),
            ),
        }
        if self.share <= 0.0 {
            out.push("no holdout: what it earns cannot be measured (set `[holdout] share`)".into());
            return out;
        }
        if let Some(d) = self.detectable_now {
            out.push(format!(
                "the first entrants detect a lift of {} or more (80% power, at every look)",
                pts(d)
            ));
        }
        if self.base_rate.is_some() && (self.matching_now.is_some() || self.per_week.is_some()) {
            out.push(match self.weeks {
                Some(0) => format!("a lift of {} is detectable with the first entrants", pts(self.lift)),
                Some(w) => format!(
                    "a lift of {} is detectable after about {w} week(s) of entries, then {:.0} days to read",
                    pts(self.lift),
                    self.window_days
                ),
                None => format!(
                    "a lift of {} is not detectable within {MAX_WEEKS} weeks at this holdout share",
                    pts(self.lift)
                ),
            });
        }
        if let Some((target, share)) = self.share_for_target {
            out.push(match share {
                Some(s) => format!("to detect {} set `[holdout] share = {s:.2}`", pts(target)),
                None => format!("even an even split does not detect {}", pts(target)),
            });
        }
        out
    }
}

/// The share who bought within the window without a message, from a campaign's arms: the
/// holdout's rate when it has at least `MIN_GROUP` contacts, else everyone's (which includes
/// the campaign's own effect, so it overstates the base a little) when there are 30.
pub fn observed_base(arms: &[winback_store::ArmResult]) -> Option<f64> {
    let rate = |held_only: bool| {
        let (n, k) = arms
            .iter()
            .filter(|a| a.holdout || !held_only)
            .fold((0, 0), |(n, k), a| (n + a.enrolled, k + a.converted));
        (n, k as f64 / n.max(1) as f64)
    };
    match (rate(true), rate(false)) {
        ((n, r), _) if n >= winback_measure::MIN_GROUP as i64 => Some(r),
        (_, (n, r)) if n >= 30 => Some(r),
        _ => None,
    }
}

/// Weeks until a campaign detects `lift` (absolute), from a simulated run: its entries over
/// `months` and the buying its arms showed. (base rate, contacts a week, weeks).
pub fn simulated(
    c: &Campaign,
    arms: &[winback_store::ArmResult],
    months: u32,
    lift: f64,
) -> Option<(f64, f64, Option<u32>)> {
    let base = observed_base(arms)?;
    let entered: i64 = arms.iter().map(|a| a.enrolled).sum();
    let per_week = entered.max(0) as f64 / (f64::from(months.max(1)) * 30.44 / 7.0);
    let weeks =
        winback_measure::weeks_to_detect(base, lift, (0.0, per_week), c.holdout.share, MAX_WEEKS);
    Some((base, per_week, weeks))
}

/// Plans `campaigns` against the store as of `now`: `lift` and `target` are absolute (0.02 =
/// 2 points), `target` with the weeks of entries to reach it. The base is read once, a page
/// at a time, for every audience-triggered campaign together.
pub async fn plan(
    store: &SqlStore,
    campaigns: &[&Campaign],
    now: Timestamp,
    lift: f64,
    target: Option<(f64, u32)>,
) -> Result<Vec<Plan>> {
    // Who matches each audience today, and their purchase model's chance of an order within
    // the campaign's window: (matched, Σ chance), for audience triggers only.
    let mut audiences: Vec<Option<(u64, f64)>> = campaigns
        .iter()
        .map(|c| {
            matches!(c.trigger, Trigger::Audience { .. } if c.audience.is_some())
                .then_some((0, 0.0))
        })
        .collect();
    if audiences.iter().any(Option::is_some) {
        let mut after = None;
        loop {
            let page = store.audience_page(now, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.row.profile_id);
            for (c, found) in campaigns.iter().zip(audiences.iter_mut()) {
                let (Some((matched, expected)), Some(audience)) =
                    (found.as_mut(), c.audience.as_ref())
                else {
                    continue;
                };
                let window_days = c.conversion_window.seconds() as f64 / 86_400.0;
                // Matches come back in row order: walk the page beside them.
                let hits = audience.evaluate_parallel(&page, 2).matched;
                let mut rows = page.iter();
                for id in hits {
                    let Some(e) = rows.find(|e| e.row.profile_id == id) else {
                        break;
                    };
                    *matched += 1;
                    let per_90 = e.row.expected_90d.unwrap_or(0.0).max(0.0);
                    *expected += 1.0 - (-per_90 * window_days / 90.0).exp();
                }
            }
        }
    }
    let records = store.campaigns().await?;
    let mut out = Vec::with_capacity(campaigns.len());
    for (c, found) in campaigns.iter().zip(audiences) {
        let window = c.conversion_window.seconds();
        let mut base_rate = found.and_then(|(m, e)| (m > 0).then(|| e / m as f64));
        // The campaign's own entries so far, when it is in the store already.
        let mut per_week = None;
        if let Some(rec) = records.iter().find(|r| r.name == c.name) {
            let month = now.plus_seconds(-28 * 86_400);
            let (recent, _) = store
                .campaign_arms(
                    rec.id,
                    window,
                    (month, now),
                    &[],
                    Outcomes::StoredWhereExact,
                )
                .await?;
            let entered: i64 = recent.iter().map(|a| a.enrolled).sum();
            per_week = Some(entered.max(0) as f64 / 4.0);
            if base_rate.is_none() {
                let (all, _) = store
                    .campaign_arms(
                        rec.id,
                        window,
                        (Timestamp::EPOCH, now.plus_seconds(-window)),
                        &[],
                        Outcomes::StoredWhereExact,
                    )
                    .await?;
                base_rate = observed_base(&all);
            }
        }
        out.push(assemble(
            c,
            found.map(|(m, _)| m),
            per_week,
            base_rate,
            lift,
            target,
        ));
    }
    Ok(out)
}

/// A plan from what was counted.
fn assemble(
    c: &Campaign,
    matching_now: Option<u64>,
    per_week: Option<f64>,
    base_rate: Option<f64>,
    lift: f64,
    target: Option<(f64, u32)>,
) -> Plan {
    let share = c.holdout.share;
    let initial = matching_now.unwrap_or(0) as f64;
    let detectable_now = base_rate.and_then(|b| {
        let holdout = (initial * share).floor() as u64;
        let treated = (initial as u64).saturating_sub(holdout);
        winback_measure::detectable_at_every_look(b, treated, holdout, 0.8)
    });
    let weeks = base_rate.and_then(|b| {
        winback_measure::weeks_to_detect(
            b,
            lift,
            (initial, per_week.unwrap_or(0.0)),
            share,
            MAX_WEEKS,
        )
    });
    let share_for_target = match (target, base_rate) {
        (Some((mde, weeks)), Some(b)) => {
            let contacts = initial + per_week.unwrap_or(0.0) * f64::from(weeks);
            Some((
                mde,
                winback_measure::holdout_share_for(b, mde, contacts as u64),
            ))
        }
        _ => None,
    };
    Plan {
        campaign: c.name.clone(),
        share,
        window_days: c.conversion_window.seconds() as f64 / 86_400.0,
        matching_now,
        per_week,
        base_rate,
        detectable_now,
        lift,
        weeks,
        share_for_target,
    }
}
