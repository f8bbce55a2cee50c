//! Customer features per merged profile, computed from its [`ProfileFacts`] in one pass over
//! its orders and one over its signals.
//!
//! Purchases count per distinct order day (two orders on one day are one purchase occasion, as
//! the models count them). Email engagement is kept in three parts: clicks, human opens and
//! machine opens; only the first two are human email engagement, and only human engagement
//! drives inactivity rules. Times are kept as timestamps, so readers can recompute recency
//! against their own clock; `recency_days` and `tenure_days` are as of `as_of`.

pub use winback_domain::{Features, LOYALTY_WINDOW_DAYS, LoyaltyTrend, SubscriptionState};
use winback_domain::{LeaveReason, ProfileFacts, Signal, Timestamp};

fn latest(slot: &mut Option<Timestamp>, at: Timestamp) {
    if slot.is_none_or(|t| at > t) {
        *slot = Some(at);
    }
}

/// Computes the features of one profile as of `as_of`; `categories` names the category
/// indexes of its orders. Orders and signals may come in any order.
pub fn features_of(p: &ProfileFacts, categories: &[String], as_of: Timestamp) -> Features {
    let mut f = empty(p, as_of);
    add_orders(&mut f, p, categories);
    add_signals(&mut f, p);
    f
}

fn empty(p: &ProfileFacts, as_of: Timestamp) -> Features {
    Features {
        profile_id: p.profile_id,
        as_of,
        orders: 0,
        order_days: 0,
        first_order_at: None,
        last_order_at: None,
        recency_days: None,
        tenure_days: None,
        total_spend_minor: 0,
        mean_order_minor: None,
        mean_repeat_spend_minor: None,
        currency: p.currency.clone(),
        discounted_orders: 0,
        gap_mean_days: None,
        gap_last_days: None,
        gap_max_days: None,
        main_category: None,
        last_human_email_engagement_at: None,
        last_click_at: None,
        last_human_open_at: None,
        last_machine_open_at: None,
        last_site_visit_at: None,
        last_cart_abandoned_at: None,
        last_quote_request_at: None,
        last_survey_at: None,
        last_engagement_at: None,
        loyalty_balance: None,
        points_earned_90d: 0,
        points_earned_prior_90d: 0,
        last_points_earned_at: None,
        loyalty_trend: None,
        points_in_windows: Vec::new(),
        subscription: SubscriptionState::None,
        subscription_changed_at: None,
        complaints_opened: 0,
        complaints_resolved: 0,
        complaints_satisfied: 0,
        spam_complaints: 0,
        unsubscribed_at: None,
        referrals: 0,
        reasons: Vec::new(),
        receives_email: p.receives_email,
    }
}

fn add_orders(feat: &mut Features, p: &ProfileFacts, categories: &[String]) {
    if p.orders.is_empty() {
        return;
    }
    // Facts normally arrive in time order; sort a copy only when they do not.
    let sorted;
    let orders = if p.orders.is_sorted_by_key(|o| o.at) {
        &p.orders
    } else {
        let mut v = p.orders.clone();
        v.sort_by_key(|o| o.at);
        sorted = v;
        &sorted
    };
    let (mut days, mut first_day_spend, mut prev_day) = (0u32, 0i64, i64::MIN);
    let (mut gap_sum, mut gap_last, mut gap_max) = (0i64, 0i64, 0i64);
    let mut category_counts: Vec<(u32, u32)> = Vec::new();
    for o in orders {
        let day = o.at.day_number();
        if day != prev_day {
            if days > 0 {
                let gap = day - prev_day;
                gap_sum += gap;
                gap_last = gap;
                gap_max = gap_max.max(gap);
            }
            days += 1;
            prev_day = day;
        }
        if days == 1 {
            first_day_spend += o.total_minor;
        }
        feat.total_spend_minor += o.total_minor;
        feat.discounted_orders += u32::from(o.discounted);
        if o.category != 0 {
            match category_counts.iter_mut().find(|c| c.0 == o.category) {
                Some(c) => c.1 += 1,
                None => category_counts.push((o.category, 1)),
            }
        }
    }
    let n = orders.len() as u32;
    let (first, last) = (orders[0].at, orders[orders.len() - 1].at);
    feat.orders = n;
    feat.order_days = days;
    feat.first_order_at = Some(first);
    feat.last_order_at = Some(last);
    let days_to = |t: Timestamp| t.fractional_days_until(feat.as_of);
    feat.recency_days = Some(days_to(last));
    feat.tenure_days = Some(days_to(first));
    feat.mean_order_minor = Some(feat.total_spend_minor / i64::from(n));
    if days > 1 {
        let repeat = f64::from(days - 1);
        feat.mean_repeat_spend_minor =
            Some((feat.total_spend_minor - first_day_spend) as f64 / repeat);
        feat.gap_mean_days = Some(gap_sum as f64 / repeat);
        feat.gap_last_days = Some(gap_last as f64);
        feat.gap_max_days = Some(gap_max as f64);
    }
    feat.main_category = category_counts
        .iter()
        .filter_map(|&(c, count)| categories.get(c as usize).map(|name| (name, count)))
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(name, _)| name.clone());
    latest(&mut feat.last_engagement_at, last);
}

fn add_signals(feat: &mut Features, p: &ProfileFacts) {
    let window = LOYALTY_WINDOW_DAYS * Timestamp::DAY_MICROS;
    let now = feat.as_of.as_micros();
    let mut points_seen = false;
    let mut balance_at: Option<Timestamp> = None;
    let mut reasons = [false; LeaveReason::ALL.len()];
    let mut note_reason = |r: Option<LeaveReason>| {
        if let Some(r) = r {
            reasons[LeaveReason::ALL.iter().position(|x| *x == r).unwrap_or(0)] = true;
        }
    };
    for s in &p.signals {
        let at = s.at;
        match s.signal {
            Signal::HumanOpen => latest(&mut feat.last_human_open_at, at),
            Signal::MachineOpen => latest(&mut feat.last_machine_open_at, at),
            Signal::Click => latest(&mut feat.last_click_at, at),
            Signal::SiteVisit | Signal::Login => latest(&mut feat.last_site_visit_at, at),
            Signal::CartAbandoned => latest(&mut feat.last_cart_abandoned_at, at),
            Signal::QuoteRequest => latest(&mut feat.last_quote_request_at, at),
            Signal::SurveyAnswer(reason) => {
                latest(&mut feat.last_survey_at, at);
                note_reason(reason);
            }
            Signal::Points { delta, balance } => {
                points_seen = true;
                if let Some(b) = balance {
                    if balance_at.is_none_or(|t| at >= t) {
                        feat.loyalty_balance = Some(b);
                        balance_at = Some(at);
                    }
                }
                if delta > 0 {
                    latest(&mut feat.last_points_earned_at, at);
                    if (0..2 * window).contains(&(now - at.as_micros())) {
                        feat.points_in_windows.push((at, delta));
                    }
                }
            }
            Signal::SubscriptionStarted | Signal::SubscriptionCancelled(_) => {
                if let Signal::SubscriptionCancelled(reason) = s.signal {
                    note_reason(reason);
                }
                if feat.subscription_changed_at.is_none_or(|t| at >= t) {
                    feat.subscription_changed_at = Some(at);
                    feat.subscription = if s.signal == Signal::SubscriptionStarted {
                        SubscriptionState::Active
                    } else {
                        SubscriptionState::Cancelled
                    };
                }
            }
            Signal::ComplaintOpened => feat.complaints_opened += 1,
            Signal::ComplaintResolved(satisfied) => {
                feat.complaints_resolved += 1;
                feat.complaints_satisfied += u32::from(satisfied == Some(true));
            }
            Signal::Referral => feat.referrals += 1,
            Signal::Unsubscribed => latest(&mut feat.unsubscribed_at, at),
            Signal::SpamComplaint => feat.spam_complaints += 1,
        }
    }
    feat.last_human_email_engagement_at = feat.last_click_at.max(feat.last_human_open_at);
    for t in [
        feat.last_human_email_engagement_at,
        feat.last_site_visit_at,
        feat.last_cart_abandoned_at,
        feat.last_quote_request_at,
        feat.last_survey_at,
    ]
    .into_iter()
    .flatten()
    {
        latest(&mut feat.last_engagement_at, t);
    }
    // In one order whatever order equal times came in, so that features read twice are equal.
    feat.points_in_windows.sort_unstable();
    (feat.points_earned_90d, feat.points_earned_prior_90d) =
        windows(&feat.points_in_windows, feat.as_of);
    if points_seen {
        feat.loyalty_trend = Some(trend(feat.points_earned_90d, feat.points_earned_prior_90d));
    }
    feat.reasons = LeaveReason::ALL
        .iter()
        .zip(reasons)
        .filter_map(|(r, seen)| seen.then_some(*r))
        .collect();
}

/// The points earned in the last loyalty window before `as_of`, and in the window before it.
fn windows(earned: &[(Timestamp, i64)], as_of: Timestamp) -> (i64, i64) {
    let window = LOYALTY_WINDOW_DAYS * Timestamp::DAY_MICROS;
    earned.iter().fold((0, 0), |(now, before), &(at, points)| {
        match as_of.as_micros() - at.as_micros() {
            age if (0..window).contains(&age) => (now + points, before),
            age if (window..2 * window).contains(&age) => (now, before + points),
            _ => (now, before),
        }
    })
}

/// How earning moves: the last window's points against the one before.
fn trend(now: i64, before: i64) -> LoyaltyTrend {
    if now == 0 {
        LoyaltyTrend::Stagnant
    } else if (now as f64) > 1.2 * before as f64 {
        LoyaltyTrend::Growing
    } else if (now as f64) < 0.8 * before as f64 {
        LoyaltyTrend::Declining
    } else {
        LoyaltyTrend::Steady
    }
}

/// The features of a profile whose facts have not changed since `f` was computed, as of a
/// later `as_of`, without reading its facts again: the recency and tenure move with time, and
/// the loyalty windows move over the points `f` keeps ([`Features::points_in_windows`]).
/// `None` when that is not enough: `as_of` is earlier, points were earned after `f`'s `as_of`
/// (they enter the windows later), or `f` was stored before the points were kept (its windows
/// disagree with its list). Read the facts then.
pub fn rederive(f: &Features, as_of: Timestamp) -> Option<Features> {
    let later_points = f.last_points_earned_at.is_some_and(|t| t > f.as_of);
    let kept =
        windows(&f.points_in_windows, f.as_of) == (f.points_earned_90d, f.points_earned_prior_90d);
    if as_of < f.as_of || later_points || !kept {
        return None;
    }
    let mut g = f.clone();
    g.as_of = as_of;
    g.recency_days = f.last_order_at.map(|t| t.fractional_days_until(as_of));
    g.tenure_days = f.first_order_at.map(|t| t.fractional_days_until(as_of));
    let two_windows = 2 * LOYALTY_WINDOW_DAYS * Timestamp::DAY_MICROS;
    g.points_in_windows
        .retain(|(at, _)| as_of.as_micros() - at.as_micros() < two_windows);
    (g.points_earned_90d, g.points_earned_prior_90d) = windows(&g.points_in_windows, as_of);
    if g.loyalty_trend.is_some() {
        g.loyalty_trend = Some(trend(g.points_earned_90d, g.points_earned_prior_90d));
    }
    Some(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use winback_domain::{OrderFact, SignalFact};

    fn any_signal() -> impl Strategy<Value = Signal> {
        prop_oneof![
            Just(Signal::HumanOpen),
            Just(Signal::MachineOpen),
            Just(Signal::Click),
            Just(Signal::Login),
            Just(Signal::CartAbandoned),
            Just(Signal::SubscriptionStarted),
            Just(Signal::SubscriptionCancelled(None)),
            Just(Signal::ComplaintOpened),
            Just(Signal::Unsubscribed),
            (-50i64..200, proptest::option::of(0i64..5000))
                .prop_map(|(delta, balance)| Signal::Points { delta, balance }),
        ]
    }

    proptest! {
        /// Whenever `rederive` answers, it answers exactly what reading the facts again would:
        /// orders and signals over three years (some after the first `as_of`), loyalty points
        /// in and out of the windows, any later `as_of`.
        #[test]
        fn rederived_features_equal_features_read_again(
            orders in proptest::collection::vec((0i64..1100, 100i64..50_000, 0u32..3), 0..8),
            signals in proptest::collection::vec((0i64..1100, any_signal()), 0..10),
            first in 300i64..1000,
            later in 0i64..400,
        ) {
            let cats = vec![String::new(), "books".into(), "toys".into()];
            let mut p = ProfileFacts {
                profile_id: 1,
                orders: orders
                    .iter()
                    .map(|&(d, minor, c)| order(d, minor, c))
                    .collect(),
                signals: signals.iter().map(|&(d, s)| signal(d, s)).collect(),
                currency: Some("EUR".into()),
                ..ProfileFacts::default()
            };
            p.orders.sort_by_key(|o| o.at);
            p.signals.sort_by_key(|s| s.at);
            let before = features_of(&p, &cats, at(first));
            let again = features_of(&p, &cats, at(first + later));
            match rederive(&before, at(first + later)) {
                Some(derived) => prop_assert_eq!(derived, again),
                // Only points earned after the first as_of, which enter the windows later,
                // need the facts read again.
                None => prop_assert!(before.last_points_earned_at > Some(at(first))),
            }
        }
    }

    #[test]
    fn rederive_moves_the_loyalty_windows_and_refuses_what_it_cannot_know() {
        let p = ProfileFacts {
            profile_id: 1,
            orders: vec![order(10, 2000, 0)],
            signals: vec![signal(
                100,
                Signal::Points {
                    delta: 50,
                    balance: None,
                },
            )],
            ..ProfileFacts::default()
        };
        let cats = vec![String::new()];
        // Points 50 days ago: the windows move as time passes, from the points kept.
        let recent = features_of(&p, &cats, at(150));
        assert_eq!(recent.points_earned_90d, 50);
        for later in [151, 189, 190, 250, 279, 280, 400] {
            let derived = rederive(&recent, at(later)).unwrap();
            assert_eq!(derived, features_of(&p, &cats, at(later)), "day {later}");
        }
        let moved = rederive(&recent, at(200)).unwrap();
        assert_eq!(
            (moved.points_earned_90d, moved.points_earned_prior_90d),
            (0, 50)
        );
        assert_eq!(moved.loyalty_trend, Some(LoyaltyTrend::Stagnant));
        assert!(
            rederive(&recent, at(300))
                .unwrap()
                .points_in_windows
                .is_empty()
        );
        // Stored before the points were kept: the windows cannot follow.
        let stored_before: Features = serde_json::from_str(
            &serde_json::to_string(&Features {
                points_in_windows: Vec::new(),
                ..recent.clone()
            })
            .unwrap(),
        )
        .unwrap();
        assert!(rederive(&stored_before, at(151)).is_none());
        // Points long ago: nothing moves but recency and tenure.
        let old = features_of(&p, &cats, at(400));
        let derived = rederive(&old, at(430)).unwrap();
        assert_eq!(derived.recency_days, Some(420.0));
        assert_eq!(derived, features_of(&p, &cats, at(430)));
        // Points earned after the first as_of enter the windows later.
        assert!(rederive(&features_of(&p, &cats, at(50)), at(120)).is_none());
        assert!(rederive(&old, at(399)).is_none());
    }

    fn at(day: i64) -> Timestamp {
        Timestamp::from_micros(day * Timestamp::DAY_MICROS + 3_600_000_000).unwrap()
    }

    fn order(day: i64, minor: i64, category: u32) -> OrderFact {
        OrderFact {
            at: at(day),
            total_minor: minor,
            discounted: minor < 1000,
            category,
        }
    }

    fn signal(day: i64, signal: Signal) -> SignalFact {
        SignalFact {
            at: at(day),
            signal,
        }
    }

    #[test]
    fn orders_count_per_day_with_gaps_spend_and_main_category() {
        let cats = vec![String::new(), "books".into(), "toys".into()];
        let p = ProfileFacts {
            profile_id: 7,
            // Out of order on purpose; two orders on day 110.
            orders: vec![
                order(110, 2000, 2),
                order(100, 5000, 1),
                order(110, 500, 2),
                order(150, 3000, 1),
                order(160, 1500, 2),
            ],
            currency: Some("EUR".into()),
            ..ProfileFacts::default()
        };
        let f = features_of(&p, &cats, at(200));
        assert_eq!((f.orders, f.order_days), (5, 4));
        assert_eq!(f.total_spend_minor, 12_000);
        assert_eq!(f.mean_order_minor, Some(2_400));
        assert_eq!(f.mean_repeat_spend_minor, Some(7_000.0 / 3.0));
        assert_eq!(f.discounted_orders, 1);
        assert_eq!(f.gap_mean_days, Some(20.0));
        assert_eq!((f.gap_last_days, f.gap_max_days), (Some(10.0), Some(40.0)));
        assert_eq!((f.recency_days, f.tenure_days), (Some(40.0), Some(100.0)));
        assert_eq!(f.main_category.as_deref(), Some("toys"));
        assert_eq!(f.last_engagement_at, Some(at(160)));
    }

    #[test]
    fn signals_keep_machine_opens_apart_and_track_loyalty_subscription_and_reasons() {
        let p = ProfileFacts {
            signals: vec![
                signal(10, Signal::HumanOpen),
                signal(50, Signal::MachineOpen),
                signal(20, Signal::Click),
                signal(30, Signal::Login),
                signal(
                    60,
                    Signal::Points {
                        delta: 100,
                        balance: Some(100),
                    },
                ),
                signal(
                    120,
                    Signal::Points {
                        delta: 40,
                        balance: Some(140),
                    },
                ),
                signal(
                    125,
                    Signal::Points {
                        delta: -40,
                        balance: Some(100),
                    },
                ),
                signal(40, Signal::SubscriptionStarted),
                signal(
                    90,
                    Signal::SubscriptionCancelled(Some(LeaveReason::TooExpensive)),
                ),
                signal(95, Signal::SurveyAnswer(Some(LeaveReason::Quality))),
                signal(96, Signal::SurveyAnswer(Some(LeaveReason::TooExpensive))),
                signal(70, Signal::ComplaintOpened),
                signal(75, Signal::ComplaintResolved(Some(true))),
                signal(80, Signal::Referral),
            ],
            receives_email: true,
            ..ProfileFacts::default()
        };
        let f = features_of(&p, &[], at(200));
        assert_eq!(f.last_human_email_engagement_at, Some(at(20)));
        assert_eq!(f.last_machine_open_at, Some(at(50)));
        assert_eq!(f.last_site_visit_at, Some(at(30)));
        assert_eq!(f.last_engagement_at, Some(at(96)), "the survey answer");
        assert_eq!(f.loyalty_balance, Some(100));
        assert_eq!((f.points_earned_90d, f.points_earned_prior_90d), (40, 100));
        assert_eq!(f.loyalty_trend, Some(LoyaltyTrend::Declining));
        assert_eq!(f.subscription, SubscriptionState::Cancelled);
        assert_eq!(
            (
                f.complaints_opened,
                f.complaints_resolved,
                f.complaints_satisfied,
                f.referrals
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(f.reasons, [LeaveReason::TooExpensive, LeaveReason::Quality]);
        assert_eq!(f.orders, 0);
        assert!(f.recency_days.is_none());
    }
}
