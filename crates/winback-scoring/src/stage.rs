//! Lifecycle stages under documented rules, each with the reason it applies.
//!
//! In order of precedence:
//! 1. **never purchased**: no order. Such a contact is an **inactive subscriber** instead when
//!    they receive marketing email and have shown no human engagement (click, visit, login,
//!    survey, quote; opens do not count) for `inactive_subscriber_days` (seeds: 6–12 months).
//! 2. **new**: the first order is at most `new_days` old.
//! 3. **one-time buyer**: exactly one order, `one_time_after_days` or more ago (seed 002: 6 months).
//! 4. For everyone else, by the overdue factor (days since the last order ÷ the usual reorder
//!    interval) and P(alive): **lost** when overdue ≥ `lost_overdue` or P(alive) < `lost_p_alive`;
//!    **lapsed** when overdue ≥ `lapsed_overdue`; **at risk** when overdue ≥ `at_risk_overdue`
//!    or P(alive) < `at_risk_p_alive`; otherwise **active**.

/// A lifecycle stage.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// First order recently.
    New,
    /// Buying on their usual rhythm.
    Active,
    /// Later than usual.
    AtRisk,
    /// Well past their usual rhythm.
    Lapsed,
    /// Very likely gone.
    Lost,
    /// One order, long enough ago.
    OneTimeBuyer,
    /// Receives mail, engages with none of it.
    InactiveSubscriber,
    /// No order yet.
    NeverPurchased,
}

impl Stage {
    /// Every stage, in funnel order.
    pub const ALL: [Stage; 8] = [
        Stage::New,
        Stage::Active,
        Stage::AtRisk,
        Stage::Lapsed,
        Stage::Lost,
        Stage::OneTimeBuyer,
        Stage::InactiveSubscriber,
        Stage::NeverPurchased,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::New => "new",
            Stage::Active => "active",
            Stage::AtRisk => "at_risk",
            Stage::Lapsed => "lapsed",
            Stage::Lost => "lost",
            Stage::OneTimeBuyer => "one_time_buyer",
            Stage::InactiveSubscriber => "inactive_subscriber",
            Stage::NeverPurchased => "never_purchased",
        }
    }
}

/// The thresholds of the rules; from `[stages]` in `winback.toml`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StageRules {
    /// A first order at most this old makes a customer new.
    pub new_days: f64,
    /// One order at least this old makes a one-time buyer.
    pub one_time_after_days: f64,
    /// No human engagement for this long makes a non-buying subscriber inactive.
    pub inactive_subscriber_days: f64,
    /// Overdue factor from which a customer is at risk.
    pub at_risk_overdue: f64,
    /// Overdue factor from which a customer has lapsed.
    pub lapsed_overdue: f64,
    /// Overdue factor from which a customer is lost.
    pub lost_overdue: f64,
    /// P(alive) below which a customer is at risk.
    pub at_risk_p_alive: f64,
    /// P(alive) below which a customer is lost.
    pub lost_p_alive: f64,
}

impl Default for StageRules {
    fn default() -> Self {
        Self {
            new_days: 30.0,
            one_time_after_days: 180.0,
            inactive_subscriber_days: 180.0,
            at_risk_overdue: 1.5,
            lapsed_overdue: 3.0,
            lost_overdue: 6.0,
            at_risk_p_alive: 0.5,
            lost_p_alive: 0.1,
        }
    }
}

/// What the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StageInput {
    /// Counted orders.
    pub orders: u32,
    /// Days since the first order.
    pub days_since_first_order: Option<f64>,
    /// Days since the last order ÷ usual interval.
    pub overdue_factor: Option<f64>,
    /// P(alive) from the purchase model.
    pub p_alive: Option<f64>,
    /// Days since the last human engagement (`None`: never).
    pub days_since_human_engagement: Option<f64>,
    /// Whether the contact receives marketing email.
    pub receives_email: bool,
}

impl StageRules {
    /// The stage and the reason, in words.
    pub fn stage(&self, i: &StageInput) -> (Stage, String) {
        if i.orders == 0 {
            let silent = i
                .days_since_human_engagement
                .is_none_or(|d| d >= self.inactive_subscriber_days);
            if i.receives_email && silent {
                return (
                    Stage::InactiveSubscriber,
                    format!(
                        "no order, and no click or visit for {}+ days",
                        self.inactive_subscriber_days
                    ),
                );
            }
            return (Stage::NeverPurchased, "no order yet".into());
        }
        let first = i.days_since_first_order.unwrap_or(f64::INFINITY);
        if first <= self.new_days {
            return (
                Stage::New,
                format!("first order {} days ago", first.round()),
            );
        }
        if i.orders == 1 && first >= self.one_time_after_days {
            return (
                Stage::OneTimeBuyer,
                format!("one order, {} days ago", first.round()),
            );
        }
        let overdue = i.overdue_factor.unwrap_or(0.0);
        let alive = i.p_alive.unwrap_or(1.0);
        if overdue >= self.lost_overdue {
            return (
                Stage::Lost,
                format!("{overdue:.1}× their usual reorder interval without an order"),
            );
        }
        if alive < self.lost_p_alive {
            return (Stage::Lost, format!("P(alive) {alive:.2}"));
        }
        if overdue >= self.lapsed_overdue {
            return (
                Stage::Lapsed,
                format!("{overdue:.1}× their usual reorder interval without an order"),
            );
        }
        if overdue >= self.at_risk_overdue {
            return (
                Stage::AtRisk,
                format!("{overdue:.1}× their usual reorder interval without an order"),
            );
        }
        if alive < self.at_risk_p_alive {
            return (Stage::AtRisk, format!("P(alive) {alive:.2}"));
        }
        (Stage::Active, "ordering on their usual rhythm".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buyer(orders: u32, first: f64, overdue: f64, alive: f64) -> StageInput {
        StageInput {
            orders,
            days_since_first_order: Some(first),
            overdue_factor: Some(overdue),
            p_alive: Some(alive),
            days_since_human_engagement: Some(10.0),
            receives_email: true,
        }
    }

    #[test]
    fn every_rule_in_order() {
        let r = StageRules::default();
        let s = |i: StageInput| r.stage(&i).0;
        assert_eq!(
            s(StageInput {
                receives_email: true,
                ..StageInput::default()
            }),
            Stage::InactiveSubscriber
        );
        assert_eq!(
            s(StageInput {
                receives_email: true,
                days_since_human_engagement: Some(20.0),
                ..StageInput::default()
            }),
            Stage::NeverPurchased
        );
        assert_eq!(
            s(StageInput::default()),
            Stage::NeverPurchased,
            "not mailed: not an inactive subscriber"
        );
        assert_eq!(s(buyer(1, 10.0, 0.0, 1.0)), Stage::New);
        assert_eq!(s(buyer(1, 200.0, 2.0, 1.0)), Stage::OneTimeBuyer);
        assert_eq!(
            s(buyer(1, 100.0, 0.5, 1.0)),
            Stage::Active,
            "one order, not long enough ago"
        );
        assert_eq!(s(buyer(5, 400.0, 0.8, 0.9)), Stage::Active);
        assert_eq!(s(buyer(5, 400.0, 1.6, 0.9)), Stage::AtRisk);
        assert_eq!(s(buyer(5, 400.0, 0.8, 0.3)), Stage::AtRisk);
        assert_eq!(s(buyer(5, 400.0, 3.5, 0.9)), Stage::Lapsed);
        assert_eq!(s(buyer(5, 400.0, 7.0, 0.9)), Stage::Lost);
        assert_eq!(s(buyer(5, 400.0, 1.0, 0.05)), Stage::Lost);
        assert_eq!(
            r.stage(&buyer(5, 400.0, 3.5, 0.9)).1,
            "3.5× their usual reorder interval without an order"
        );
    }

    #[test]
    fn rules_are_configurable() {
        let strict = StageRules {
            one_time_after_days: 90.0,
            ..StageRules::default()
        };
        assert_eq!(
            strict.stage(&buyer(1, 100.0, 0.5, 1.0)).0,
            Stage::OneTimeBuyer
        );
    }
}
