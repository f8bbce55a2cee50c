//! Customer features per merged profile, computed from its [`ProfileFacts`] in one pass over
//! its orders and one over its signals.
//!
//! Purchases count per distinct order day (two orders on one day are one purchase occasion, as
//! the models count them). Email engagement is kept in three parts: clicks, human opens and
//! machine opens; only the first two are human email engagement, and only human engagement
//! drives inactivity rules. Times are kept as timestamps, so readers can recompute recency
//! against their own clock; `recency_days` and `tenure_days` are as of `as_of`.

use winback_domain::{LeaveReason, ProfileFacts, Signal, Timestamp};

/// Whether the profile has a subscription running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionState {
    /// Never subscribed.
    None,
    /// Subscribed.
    Active,
    /// Cancelled its subscription.
    Cancelled,
}

/// How loyalty points move: points earned in the last 90 days against the 90 before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoyaltyTrend {
    /// Earning more than before.
    Growing,
    /// Earning about as before (within 20%).
    Steady,
    /// Earning less than before.
    Declining,
    /// Earned nothing in the last 90 days.
    Stagnant,
}

/// The window of the loyalty trend, in days.
pub const LOYALTY_WINDOW_DAYS: i64 = 90;

/// One profile's features.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Features {
    /// The profile.
    pub profile_id: i64,
    /// The time the features were computed for.
    pub as_of: Timestamp,
    /// Counted orders.
    pub orders: u32,
    /// Distinct order days (purchase occasions).
    pub order_days: u32,
    /// First order.
    pub first_order_at: Option<Timestamp>,
    /// Last order.
    pub last_order_at: Option<Timestamp>,
    /// Days from the last order to `as_of`.
    pub recency_days: Option<f64>,
    /// Days from the first order to `as_of`.
    pub tenure_days: Option<f64>,
    /// Total spend in minor units.
    pub total_spend_minor: i64,
    /// Mean order value in minor units.
    pub mean_order_minor: Option<i64>,
    /// Mean spend per repeat order day (first day excluded), for the spend model.
    pub mean_repeat_spend_minor: Option<f64>,
    /// Currency of the spend.
    pub currency: Option<String>,
    /// Orders with a discount.
    pub discounted_orders: u32,
    /// Mean gap between order days.
    pub gap_mean_days: Option<f64>,
    /// The latest gap.
    pub gap_last_days: Option<f64>,
    /// The longest gap.
    pub gap_max_days: Option<f64>,
    /// The category ordered most (ties: the first in name order).
    pub main_category: Option<String>,
    /// Last click or human open of an email.
    pub last_human_email_engagement_at: Option<Timestamp>,
    /// Last click in an email.
    pub last_click_at: Option<Timestamp>,
    /// Last open by a person.
    pub last_human_open_at: Option<Timestamp>,
    /// Last open by a machine (privacy proxy, scanner): never engagement.
    pub last_machine_open_at: Option<Timestamp>,
    /// Last visit to the shop or login.
    pub last_site_visit_at: Option<Timestamp>,
    /// Last abandoned cart.
    pub last_cart_abandoned_at: Option<Timestamp>,
    /// Last quote request.
    pub last_quote_request_at: Option<Timestamp>,
    /// Last survey answer.
    pub last_survey_at: Option<Timestamp>,
    /// Last human engagement of any kind: email click or human open, visit, login, cart, quote,
    /// survey or order.
    pub last_engagement_at: Option<Timestamp>,
    /// Loyalty balance after the last change that reported one.
    pub loyalty_balance: Option<i64>,
    /// Points earned in the last 90 days.
    pub points_earned_90d: i64,
    /// Points earned in the 90 days before those.
    pub points_earned_prior_90d: i64,
    /// Last time points were earned.
    pub last_points_earned_at: Option<Timestamp>,
    /// How earning moves; `None` without any loyalty activity.
    pub loyalty_trend: Option<LoyaltyTrend>,
    /// Subscription state.
    pub subscription: SubscriptionState,
    /// When the subscription last started or was cancelled.
    pub subscription_changed_at: Option<Timestamp>,
    /// Complaints opened.
    pub complaints_opened: u32,
    /// Complaints resolved.
    pub complaints_resolved: u32,
    /// Complaints resolved to the customer's satisfaction.
    pub complaints_satisfied: u32,
    /// Messages marked as spam.
    pub spam_complaints: u32,
    /// Last unsubscribe from marketing email.
    pub unsubscribed_at: Option<Timestamp>,
    /// People referred.
    pub referrals: u32,
    /// Reasons for leaving given in surveys or cancellations, distinct, in survey order.
    pub reasons: Vec<LeaveReason>,
    /// Whether marketing email may be sent.
    pub receives_email: bool,
}

fn latest(slot: &mut Option<Timestamp>, at: Timestamp) {
    if slot.is_none_or(|t| at > t) {
        *slot = Some(at);
    }
}

impl Features {
    /// Computes the features of one profile as of `as_of`; `categories` names the category
    /// indexes of its orders. Orders and signals may come in any order.
    pub fn compute(p: &ProfileFacts, categories: &[String], as_of: Timestamp) -> Features {
        let mut f = Features::empty(p, as_of);
        f.add_orders(p, categories);
        f.add_signals(p);
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

    fn add_orders(&mut self, p: &ProfileFacts, categories: &[String]) {
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
            self.total_spend_minor += o.total_minor;
            self.discounted_orders += u32::from(o.discounted);
            if o.category != 0 {
                match category_counts.iter_mut().find(|c| c.0 == o.category) {
                    Some(c) => c.1 += 1,
                    None => category_counts.push((o.category, 1)),
                }
            }
        }
        let n = orders.len() as u32;
        let (first, last) = (orders[0].at, orders[orders.len() - 1].at);
        self.orders = n;
        self.order_days = days;
        self.first_order_at = Some(first);
        self.last_order_at = Some(last);
        let days_to = |t: Timestamp| t.fractional_days_until(self.as_of);
        self.recency_days = Some(days_to(last));
        self.tenure_days = Some(days_to(first));
        self.mean_order_minor = Some(self.total_spend_minor / i64::from(n));
        if days > 1 {
            let repeat = f64::from(days - 1);
            self.mean_repeat_spend_minor =
                Some((self.total_spend_minor - first_day_spend) as f64 / repeat);
            self.gap_mean_days = Some(gap_sum as f64 / repeat);
            self.gap_last_days = Some(gap_last as f64);
            self.gap_max_days = Some(gap_max as f64);
        }
        self.main_category = category_counts
            .iter()
            .filter_map(|&(c, count)| categories.get(c as usize).map(|name| (name, count)))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(name, _)| name.clone());
        latest(&mut self.last_engagement_at, last);
    }

    fn add_signals(&mut self, p: &ProfileFacts) {
        let window = LOYALTY_WINDOW_DAYS * Timestamp::DAY_MICROS;
        let now = self.as_of.as_micros();
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
                Signal::HumanOpen => latest(&mut self.last_human_open_at, at),
                Signal::MachineOpen => latest(&mut self.last_machine_open_at, at),
                Signal::Click => latest(&mut self.last_click_at, at),
                Signal::SiteVisit | Signal::Login => latest(&mut self.last_site_visit_at, at),
                Signal::CartAbandoned => latest(&mut self.last_cart_abandoned_at, at),
                Signal::QuoteRequest => latest(&mut self.last_quote_request_at, at),
                Signal::SurveyAnswer(reason) => {
                    latest(&mut self.last_survey_at, at);
                    note_reason(reason);
                }
                Signal::Points { delta, balance } => {
                    points_seen = true;
                    if let Some(b) = balance {
                        if balance_at.is_none_or(|t| at >= t) {
                            self.loyalty_balance = Some(b);
                            balance_at = Some(at);
                        }
                    }
                    if delta > 0 {
                        latest(&mut self.last_points_earned_at, at);
                        let age = now - at.as_micros();
                        if (0..window).contains(&age) {
                            self.points_earned_90d += delta;
                        } else if (window..2 * window).contains(&age) {
                            self.points_earned_prior_90d += delta;
                        }
                    }
                }
                Signal::SubscriptionStarted | Signal::SubscriptionCancelled(_) => {
                    if let Signal::SubscriptionCancelled(reason) = s.signal {
                        note_reason(reason);
                    }
                    if self.subscription_changed_at.is_none_or(|t| at >= t) {
                        self.subscription_changed_at = Some(at);
                        self.subscription = if s.signal == Signal::SubscriptionStarted {
                            SubscriptionState::Active
                        } else {
                            SubscriptionState::Cancelled
                        };
                    }
                }
                Signal::ComplaintOpened => self.complaints_opened += 1,
                Signal::ComplaintResolved(satisfied) => {
                    self.complaints_resolved += 1;
                    self.complaints_satisfied += u32::from(satisfied == Some(true));
                }
                Signal::Referral => self.referrals += 1,
                Signal::Unsubscribed => latest(&mut self.unsubscribed_at, at),
                Signal::SpamComplaint => self.spam_complaints += 1,
            }
        }
        self.last_human_email_engagement_at = self.last_click_at.max(self.last_human_open_at);
        for t in [
            self.last_human_email_engagement_at,
            self.last_site_visit_at,
            self.last_cart_abandoned_at,
            self.last_quote_request_at,
            self.last_survey_at,
        ]
        .into_iter()
        .flatten()
        {
            latest(&mut self.last_engagement_at, t);
        }
        if points_seen {
            let (now, before) = (self.points_earned_90d, self.points_earned_prior_90d);
            self.loyalty_trend = Some(if now == 0 {
                LoyaltyTrend::Stagnant
            } else if (now as f64) > 1.2 * before as f64 {
                LoyaltyTrend::Growing
            } else if (now as f64) < 0.8 * before as f64 {
                LoyaltyTrend::Declining
            } else {
                LoyaltyTrend::Steady
            });
        }
        self.reasons = LeaveReason::ALL
            .iter()
            .zip(reasons)
            .filter_map(|(r, seen)| seen.then_some(*r))
            .collect();
    }

    /// Days since a timestamp, as of these features.
    pub fn days_since(&self, t: Option<Timestamp>) -> Option<f64> {
        t.map(|t| t.fractional_days_until(self.as_of))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use winback_domain::{OrderFact, SignalFact};

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
        let f = Features::compute(&p, &cats, at(200));
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
        let f = Features::compute(&p, &[], at(200));
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
