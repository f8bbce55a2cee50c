//! "Did they stay?": what reactivated customers did after the order that brought them back,
//! compared with holdout contacts who came back on their own and with customers who never
//! lapsed. Seeds 001 and 002 warn of customers who take the reward and go silent again.

use std::collections::{HashMap, HashSet};

use winback_domain::Timestamp;

use crate::StoreError;
use crate::db::{Pool, Val};

const DAY: i64 = 86_400_000_000;

/// A share measured only over the people old enough to have shown it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Share {
    /// People whose return is at least that many days ago.
    pub eligible: u64,
    /// Of those, how many did it.
    pub yes: u64,
}

impl Share {
    fn add(&mut self, eligible: bool, yes: bool) {
        if eligible {
            self.eligible += 1;
            self.yes += u64::from(yes);
        }
    }

    /// The share (`None` when nobody is eligible yet).
    pub fn rate(&self) -> Option<f64> {
        (self.eligible > 0).then(|| self.yes as f64 / self.eligible as f64)
    }
}

/// One cohort's behaviour after its return order.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Cohort {
    /// People in the cohort.
    pub people: u64,
    /// Ordered again within 30 days of the return order.
    pub again_30d: Share,
    /// … within 90 days.
    pub again_90d: Share,
    /// … within 180 days.
    pub again_180d: Share,
    /// No further order within 180 days: lapsed again.
    pub lapsed_again: Share,
    /// Revenue after the return order (not counting it), minor units.
    pub revenue_after_minor: i64,
    /// The return order used the campaign's code and nothing followed within 90 days: the
    /// reward was the only reason (treated cohort only).
    pub reward_only: Share,
    /// Mean predicted CLV at the latest scoring run, minor units (scored people only).
    pub mean_clv_minor: Option<f64>,
}

/// The three cohorts of one campaign.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stay {
    /// Messaged contacts who bought within the window.
    pub reactivated: Cohort,
    /// Holdout contacts who bought within the window on their own.
    pub holdout_returned: Cohort,
    /// Customers never in a win-back journey whose order in the same period followed another
    /// within 90 days (they had not lapsed).
    pub never_lapsed: Cohort,
}

struct Order {
    profile: i64,
    at: i64,
    total: i64,
    id: i64,
}

/// Orders (not cancelled or refunded) from some time on, in one list sorted by profile, time
/// and id, with each profile's run: one allocation for all of them, not one per profile.
struct Orders {
    all: Vec<Order>,
    /// Each profile's run in `all`, as `(start, end)`.
    runs: HashMap<i64, (usize, usize)>,
}

impl Orders {
    /// A profile's orders, oldest first.
    fn of(&self, profile: i64) -> Option<&[Order]> {
        self.runs.get(&profile).map(|&(a, b)| &self.all[a..b])
    }
}

/// Orders (not cancelled or refunded) per profile, oldest first, from `since` (microseconds).
async fn orders_by_profile(pool: &Pool, since: i64) -> Result<Orders, StoreError> {
    let mut all: Vec<Order> = Vec::new();
    // Streamed: a whole shop's orders as result rows would be many times their 32 bytes each.
    pool.for_each(
        "SELECT COALESCE(c.profile_id, c.id) AS profile, o.ordered_at, o.total_minor, o.id FROM orders o JOIN customers c ON c.id = o.customer_id \
         WHERE o.status NOT IN ('cancelled', 'refunded') AND o.ordered_at >= $1",
        &[Val::from(since)],
        |r| {
            all.push(Order {
                profile: r.i64("profile")?,
                at: r.i64("ordered_at")?,
                total: r.i64("total_minor")?,
                id: r.i64("id")?,
            });
            Ok(())
        },
    )
    .await?;
    // Sorted here, not by the database (an ORDER BY would sort every order in a temporary
    // b-tree).
    all.sort_unstable_by_key(|o| (o.profile, o.at, o.id));
    let mut runs = HashMap::new();
    let mut start = 0;
    for i in 1..=all.len() {
        if i == all.len() || all[i].profile != all[start].profile {
            runs.insert(all[start].profile, (start, i));
            start = i;
        }
    }
    Ok(Orders { all, runs })
}

/// Adds one person to `cohort`, followed from their order `t0` through their `orders` (oldest
/// first).
fn follow(cohort: &mut Cohort, orders: &[Order], t0: &Order, now: i64, used_code: Option<bool>) {
    cohort.people += 1;
    let after = &orders[orders.partition_point(|o| o.at <= t0.at)..];
    // The orders are oldest first: the first one after is the one that could come soonest.
    let within = |days: i64| after.first().is_some_and(|o| o.at <= t0.at + days * DAY);
    for (share, days) in [
        (&mut cohort.again_30d, 30),
        (&mut cohort.again_90d, 90),
        (&mut cohort.again_180d, 180),
    ] {
        share.add(now >= t0.at + days * DAY, within(days));
    }
    cohort
        .lapsed_again
        .add(now >= t0.at + 180 * DAY, !within(180));
    cohort.revenue_after_minor += after.iter().map(|o| o.total).sum::<i64>();
    if let Some(used) = used_code {
        cohort
            .reward_only
            .add(used && now >= t0.at + 90 * DAY, !within(90));
    }
}

/// What every campaign's cohorts are followed through: read once per report.
struct Base {
    orders: Orders,
    /// The orders of customers never enrolled in any campaign that came within 90 days of the
    /// profile's previous one (the never-lapsed cohort's possible starts), as positions in
    /// `orders.all`: by profile, then time, so sums over them come out the same every run.
    repeats: Vec<usize>,
}

impl Base {
    fn new(orders: Orders, in_any: &HashSet<i64>) -> Self {
        let all = &orders.all;
        let repeats = (1..all.len())
            .filter(|&i| {
                all[i].profile == all[i - 1].profile
                    && all[i].at - all[i - 1].at <= 90 * DAY
                    && !in_any.contains(&all[i].profile)
            })
            .collect();
        Self { orders, repeats }
    }
}

/// The profiles of each cohort of one campaign (reactivated, holdout returned, never lapsed),
/// once per member, for their mean CLV.
type Members = [Vec<i64>; 3];

/// The cohorts of each `(campaign id, window in seconds)` as of `now`, in the same order.
pub(crate) async fn stays(
    pool: &Pool,
    campaigns: &[(winback_domain::CampaignId, i64)],
    now: Timestamp,
) -> Result<Vec<Stay>, StoreError> {
    if campaigns.is_empty() {
        return Ok(Vec::new());
    }
    let started = std::time::Instant::now();
    let mut in_any: HashSet<i64> = HashSet::new();
    pool.for_each("SELECT DISTINCT profile_id FROM enrolments", &[], |r| {
        in_any.insert(r.i64(0)?);
        Ok(())
    })
    .await?;
    // Every cohort starts at an order on or after someone's entry into these campaigns, and the
    // never-lapsed one looks 90 days back from such an order; nothing older can change a
    // figure, so a shop's history before these campaigns is not read.
    let ids: Vec<Val> = campaigns
        .iter()
        .map(|(id, _)| Val::from(id.get()))
        .collect();
    let first_entry = pool
        .fetch(
            &format!(
                "SELECT MIN(entered_at) AS first FROM enrolments WHERE campaign_id IN ({})",
                crate::db::in_list(ids.len())
            ),
            &ids,
        )
        .await?
        .first()
        .map(|r| r.opt_i64("first"))
        .transpose()?
        .flatten();
    let Some(first_entry) = first_entry else {
        return Ok(vec![Stay::default(); campaigns.len()]);
    };
    let enrolled_s = started.elapsed().as_secs_f64();
    let orders = orders_by_profile(pool, first_entry - 90 * DAY).await?;
    let orders_s = started.elapsed().as_secs_f64() - enrolled_s;
    let base = Base::new(orders, &in_any);
    let mut out = Vec::with_capacity(campaigns.len());
    let mut members = Vec::with_capacity(campaigns.len());
    for &(campaign_id, window_seconds) in campaigns {
        let (stay, m) = stay(
            pool,
            &base,
            campaign_id.get(),
            window_seconds,
            now.as_micros(),
        )
        .await?;
        out.push(stay);
        members.push(m);
    }
    let cohorts_s = started.elapsed().as_secs_f64() - enrolled_s - orders_s;
    // The predicted CLV of the cohorts' members only (a whole shop's scores were a million
    // rows read for a few thousand people).
    let mut wanted: Vec<i64> = members.iter().flatten().flatten().copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    let clv = clv_of(pool, &wanted).await?;
    for (stay, members) in out.iter_mut().zip(members) {
        for (cohort, ids) in [
            &mut stay.reactivated,
            &mut stay.holdout_returned,
            &mut stay.never_lapsed,
        ]
        .into_iter()
        .zip(members)
        {
            let (sum, k) = ids
                .iter()
                .filter_map(|p| clv.get(p))
                .fold((0.0, 0u64), |(s, k), v| (s + v, k + 1));
            cohort.mean_clv_minor = (k > 0).then(|| sum / k as f64);
        }
    }
    tracing::debug!(
        enrolled_s,
        orders_s,
        orders = base.orders.all.len(),
        cohorts_s,
        clv_s = started.elapsed().as_secs_f64() - enrolled_s - orders_s - cohorts_s,
        "did they stay?"
    );
    Ok(out)
}

/// The predicted CLV at the latest scoring run of each of `profiles` that has one.
async fn clv_of(pool: &Pool, profiles: &[i64]) -> Result<HashMap<i64, f64>, StoreError> {
    let mut clv = HashMap::with_capacity(profiles.len());
    for chunk in profiles.chunks(50_000) {
        let (set, list) = crate::db::id_set(pool.backend(), 1, chunk);
        pool.for_each(
            &format!(
                "SELECT profile_id, clv_minor FROM profile_scores WHERE clv_minor IS NOT NULL AND profile_id IN ({set})"
            ),
            &[list],
            |r| {
                if let Some(v) = r.opt_f64("clv_minor")? {
                    clv.insert(r.i64("profile_id")?, v);
                }
                Ok(())
            },
        )
        .await?;
    }
    Ok(clv)
}

/// The cohorts of one campaign as of `now` (microseconds), without their mean CLV, and their
/// members.
async fn stay(
    pool: &Pool,
    base: &Base,
    campaign_id: i64,
    window_seconds: i64,
    now: i64,
) -> Result<(Stay, Members), StoreError> {
    let Base { orders, repeats } = base;
    // Only contacts who may have bought in the window: an enrolment whose stored outcome is
    // exact and counts no order has no return order (its orders are a superset of those
    // followed here), so it cannot be in a cohort; reading them all was 247,000 rows a report
    // at a million customers, nine in ten of them without an order.
    let mut enrolments: Vec<(i64, bool, i64)> = Vec::new();
    pool.for_each(
        &format!(
            "SELECT e.profile_id, e.holdout, e.entered_at FROM enrolments e {} \
             WHERE e.campaign_id = $1 \
               AND NOT (COALESCE(e.outcome_window, -1) = $2 AND stale.id IS NULL AND e.outcome_orders = 0)",
            crate::outcomes::STALE_JOIN
        ),
        &[Val::from(campaign_id), Val::from(window_seconds * 1_000_000)],
        |r| {
            enrolments.push((
                r.i64("profile_id")?,
                r.i64("holdout")? != 0,
                r.i64("entered_at")?,
            ));
            Ok(())
        },
    )
    .await?;
    let coded: HashSet<i64> = pool
        .fetch(
            "SELECT d.order_id FROM order_discount_codes d JOIN offers f ON f.code = d.code WHERE f.campaign_id = $1",
            &[Val::from(campaign_id)],
        )
        .await?
        .iter()
        .map(|r| r.i64(0))
        .collect::<Result<_, _>>()?;
    let mut out = Stay::default();
    let mut members: Members = Default::default();
    let window = window_seconds * 1_000_000;
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for (profile, holdout, entered) in &enrolments {
        let Some(list) = orders.of(*profile) else {
            continue;
        };
        let Some(t0) = list
            .iter()
            .find(|o| o.at >= *entered && o.at < entered + window)
        else {
            continue;
        };
        first = first.min(t0.at);
        last = last.max(t0.at);
        let (cohort, ids, used) = if *holdout {
            (&mut out.holdout_returned, &mut members[1], None)
        } else {
            (
                &mut out.reactivated,
                &mut members[0],
                Some(coded.contains(&t0.id)),
            )
        };
        follow(cohort, list, t0, now, used);
        ids.push(*profile);
    }
    // Never-lapsed customers: outside every win-back journey, with an order in the same period
    // that came within 90 days of their previous one.
    if first <= last {
        let mut last_profile = None;
        for &i in repeats {
            let t0 = &orders.all[i];
            // Each profile's first repeat order in the period starts its follow-up.
            if last_profile == Some(t0.profile) || t0.at < first || t0.at > last {
                continue;
            }
            last_profile = Some(t0.profile);
            let list = orders.of(t0.profile).unwrap_or_default();
            follow(&mut out.never_lapsed, list, t0, now, None);
            members[2].push(t0.profile);
        }
    }
    Ok((out, members))
}
