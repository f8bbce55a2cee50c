//! A profile's features: what its orders and signals say about it as of a time (recency,
//! frequency, spend, gaps, engagement, loyalty, subscription, complaints, reasons for leaving).
//! `winback-scoring` computes them; the store keeps them; audiences read them. The type lives
//! here so that none of those needs another's crate to name it.

use crate::{LeaveReason, Timestamp};

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
    /// The points earned in the two loyalty windows before `as_of` (time, points), in time
    /// order: what moves the windows as days pass, kept so that a later day's windows follow
    /// from these features without reading the profile's events again. Features stored before
    /// it was kept read it as empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub points_in_windows: Vec<(Timestamp, i64)>,
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

impl Features {
    /// Days since a timestamp, as of these features.
    pub fn days_since(&self, t: Option<Timestamp>) -> Option<f64> {
        t.map(|t| t.fractional_days_until(self.as_of))
    }
}
