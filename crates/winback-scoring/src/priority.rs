//! Attrition score and win-back priority.
//!
//! Priority is the expected incremental margin of a win-back attempt, in minor units:
//!
//! ```text
//! priority = P(revivable) × value if revived × expected response − expected offer cost
//! ```
//!
//! - P(revivable) is the purchase model's P(alive): someone the model still counts alive can be
//!   brought back; someone long gone mostly cannot.
//! - Value if revived is the predicted margin over the CLV horizon for a customer who is alive:
//!   the CLV divided by P(alive) (floored at 0.05 so the lost do not explode).
//! - Expected response is the configured base response of the customer's stage, times the
//!   boosts that apply: the seed's "best lost customers" who referred others, left over price
//!   rather than service, or had a complaint resolved to their satisfaction.
//! - Expected offer cost is the offer's cost (a share of their mean order, or a fixed amount)
//!   times the response, since only a returning customer redeems it.
//!
//! Exclusions (configurable) take a customer out of the ranking: value below a minimum, a spam
//! complaint, or a complaint still open. A spend budget caps the total expected offer cost of a
//! selection, taking customers in priority order.

use std::collections::BTreeMap;

use crate::{Features, Stage};
use winback_domain::{Currency, LeaveReason, Money};

/// `[priority]` in `winback.toml`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrioritySettings {
    /// Base response rate per stage; stages not listed are not ranked.
    pub response: BTreeMap<Stage, f64>,
    /// Response multiplier for customers who referred someone.
    pub referrer_boost: f64,
    /// Response multiplier for customers who left over price (not over service).
    pub price_leaver_boost: f64,
    /// Response multiplier for customers whose complaint was resolved to their satisfaction.
    pub complaint_resolved_boost: f64,
    /// The offer's cost as a share of the customer's mean order (0.15 = 15% off).
    pub offer_share: f64,
    /// A fixed offer cost in minor units, added to the share.
    pub offer_fixed_minor: i64,
    /// Customers worth less than this (minor units, value if revived) are excluded.
    pub min_value_minor: i64,
    /// Exclude customers who marked a message as spam.
    pub exclude_spam_complainers: bool,
    /// Exclude customers with a complaint still open.
    pub exclude_open_complaints: bool,
}

impl Default for PrioritySettings {
    fn default() -> Self {
        Self {
            response: [
                (Stage::AtRisk, 0.12),
                (Stage::Lapsed, 0.08),
                (Stage::Lost, 0.03),
                (Stage::OneTimeBuyer, 0.06),
            ]
            .into_iter()
            .collect(),
            referrer_boost: 1.3,
            price_leaver_boost: 1.25,
            complaint_resolved_boost: 1.2,
            offer_share: 0.15,
            offer_fixed_minor: 0,
            min_value_minor: 500,
            exclude_spam_complainers: true,
            exclude_open_complaints: true,
        }
    }
}

/// One customer's priority and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Priority {
    /// Expected incremental margin in minor units (may be negative: not worth an offer).
    pub priority_minor: f64,
    /// P(revivable).
    pub p_revivable: f64,
    /// Predicted margin if revived, minor units.
    pub value_if_revived_minor: f64,
    /// Expected response after boosts.
    pub response: f64,
    /// Expected offer cost, minor units.
    pub expected_offer_cost_minor: f64,
    /// The reasons behind the score, most important first.
    pub reasons: Vec<String>,
}

/// Why a customer is not ranked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// Their stage is not one win-back ranks.
    Stage,
    /// No purchase model prediction (no orders).
    NoPrediction,
    /// Worth less than the minimum.
    LowValue,
    /// Marked a message as spam.
    SpamComplaint,
    /// A complaint is still open.
    OpenComplaint,
}

/// What priority reads of one customer besides their features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorityInput {
    /// Lifecycle stage.
    pub stage: Stage,
    /// P(alive) from the purchase model.
    pub p_alive: Option<f64>,
    /// CLV over the configured horizon, minor units.
    pub clv_minor: Option<f64>,
}

/// An amount in the customer's currency, with that currency's minor digits.
fn money(minor: f64, currency: Option<&str>) -> String {
    match currency.map(Currency::parse) {
        Some(Ok(c)) => Money::from_minor(minor.round() as i64, c).to_string(),
        _ => format!("{minor:.0} (minor units)"),
    }
}

impl PrioritySettings {
    /// The customer's priority, or why they are excluded.
    pub fn score(&self, f: &Features, i: PriorityInput) -> Result<Priority, Exclusion> {
        let base = *self.response.get(&i.stage).ok_or(Exclusion::Stage)?;
        let (Some(p_alive), Some(clv)) = (i.p_alive, i.clv_minor) else {
            return Err(Exclusion::NoPrediction);
        };
        if self.exclude_spam_complainers && f.spam_complaints > 0 {
            return Err(Exclusion::SpamComplaint);
        }
        if self.exclude_open_complaints && f.complaints_opened > f.complaints_resolved {
            return Err(Exclusion::OpenComplaint);
        }
        let value = clv / p_alive.max(0.05);
        if value < self.min_value_minor as f64 {
            return Err(Exclusion::LowValue);
        }
        let cur = f.currency.as_deref();
        let mut reasons = vec![format!(
            "worth {} over the horizon if they return",
            money(value, cur)
        )];
        reasons.push(format!(
            "P(alive) {p_alive:.2}: {}",
            if p_alive >= 0.5 {
                "likely still reachable"
            } else if p_alive >= 0.15 {
                "may still be won back"
            } else {
                "probably gone"
            }
        ));
        let mut response = base;
        if f.referrals > 0 {
            response *= self.referrer_boost;
            reasons.push(format!(
                "referred {} {} (×{})",
                f.referrals,
                if f.referrals == 1 { "person" } else { "people" },
                self.referrer_boost
            ));
        }
        let price = f.reasons.contains(&LeaveReason::TooExpensive)
            && !f.reasons.contains(&LeaveReason::BadExperience);
        if price {
            response *= self.price_leaver_boost;
            reasons.push(format!(
                "left over price, not service (×{})",
                self.price_leaver_boost
            ));
        }
        if f.complaints_satisfied > 0 {
            response *= self.complaint_resolved_boost;
            reasons.push(format!(
                "a complaint was resolved to their satisfaction (×{})",
                self.complaint_resolved_boost
            ));
        }
        let response = response.min(1.0);
        let offer = self.offer_share * f.mean_order_minor.unwrap_or(0) as f64
            + self.offer_fixed_minor as f64;
        let cost = offer * response;
        reasons.push(format!(
            "expected response {:.0}%, offer cost {} expected",
            response * 100.0,
            money(cost, cur)
        ));
        Ok(Priority {
            priority_minor: p_alive * value * response - cost,
            p_revivable: p_alive,
            value_if_revived_minor: value,
            response,
            expected_offer_cost_minor: cost,
            reasons,
        })
    }
}

/// The attrition score: the probability the customer has already left, 1 − P(alive).
pub fn attrition(p_alive: Option<f64>) -> Option<f64> {
    p_alive.map(|p| 1.0 - p)
}

/// The longest prefix of `ranked` (highest priority first) whose expected offer costs fit in
/// `budget_minor`; its length.
pub fn within_budget<'a>(
    ranked: impl IntoIterator<Item = &'a Priority>,
    budget_minor: f64,
) -> usize {
    let mut spent = 0.0;
    let mut n = 0;
    for p in ranked {
        if spent + p.expected_offer_cost_minor > budget_minor {
            break;
        }
        spent += p.expected_offer_cost_minor;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use winback_domain::{ProfileFacts, Timestamp};

    fn features() -> Features {
        let mut f = crate::features_of(&ProfileFacts::default(), &[], Timestamp::EPOCH);
        f.mean_order_minor = Some(4000);
        f.currency = Some("EUR".into());
        f
    }

    fn lapsed(p_alive: f64, clv: f64) -> PriorityInput {
        PriorityInput {
            stage: Stage::Lapsed,
            p_alive: Some(p_alive),
            clv_minor: Some(clv),
        }
    }

    #[test]
    fn priority_is_expected_incremental_margin() {
        let s = PrioritySettings::default();
        let p = s.score(&features(), lapsed(0.5, 10_000.0)).unwrap();
        // value 20,000; response 0.08; offer 15% of 4,000 = 600, expected 48.
        assert!((p.value_if_revived_minor - 20_000.0).abs() < 1e-9);
        assert!((p.expected_offer_cost_minor - 48.0).abs() < 1e-9);
        assert!((p.priority_minor - (0.5 * 20_000.0 * 0.08 - 48.0)).abs() < 1e-9);
        assert_eq!(
            p.reasons[0],
            "worth 200.00 EUR over the horizon if they return"
        );
    }

    #[test]
    fn boosts_exclusions_and_budget() {
        let s = PrioritySettings::default();
        let plain = s.score(&features(), lapsed(0.5, 10_000.0)).unwrap();
        let mut best = features();
        best.referrals = 2;
        best.reasons = vec![LeaveReason::TooExpensive];
        best.complaints_opened = 1;
        best.complaints_resolved = 1;
        best.complaints_satisfied = 1;
        let boosted = s.score(&best, lapsed(0.5, 10_000.0)).unwrap();
        assert!((boosted.response - 0.08 * 1.3 * 1.25 * 1.2).abs() < 1e-12);
        assert!(boosted.priority_minor > plain.priority_minor);
        assert!(
            boosted
                .reasons
                .iter()
                .any(|r| r.starts_with("referred 2 people"))
        );

        let mut service = best.clone();
        service.reasons.push(LeaveReason::BadExperience);
        let r = s.score(&service, lapsed(0.5, 10_000.0)).unwrap().response;
        assert!(
            (r - 0.08 * 1.3 * 1.2).abs() < 1e-12,
            "service leavers get no price boost"
        );

        let mut spam = features();
        spam.spam_complaints = 1;
        assert_eq!(
            s.score(&spam, lapsed(0.5, 1e4)),
            Err(Exclusion::SpamComplaint)
        );
        let mut open = features();
        open.complaints_opened = 1;
        assert_eq!(
            s.score(&open, lapsed(0.5, 1e4)),
            Err(Exclusion::OpenComplaint)
        );
        assert_eq!(
            s.score(&features(), lapsed(0.5, 100.0)),
            Err(Exclusion::LowValue)
        );
        let active = PriorityInput {
            stage: Stage::Active,
            ..lapsed(0.9, 1e4)
        };
        assert_eq!(s.score(&features(), active), Err(Exclusion::Stage));

        let ranked = [boosted.clone(), plain.clone(), plain.clone()];
        let cost = boosted.expected_offer_cost_minor + plain.expected_offer_cost_minor;
        assert_eq!(within_budget(&ranked, cost), 2);
        assert_eq!(within_budget(&ranked, cost - 0.01), 1);
        assert_eq!(within_budget(&ranked, 0.0), 0);
    }
}
