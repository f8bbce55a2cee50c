//! Named inactivity definitions, configured as `[[inactivity]]` tables in `winback.toml`. Several
//! are active at once; a profile matches a definition when every criterion it sets holds, and
//! each match carries its explanation. The criteria are the seeds':
//!
//! - days since the last purchase, absolute (`days_since_purchase`) or relative to the
//!   customer's usual reorder interval (`overdue_factor`);
//! - a repurchase cycle per product category (`category_cycle_days`, e.g. fashion 365,
//!   appliances 2,555; `default_cycle_days` for the others);
//! - no human email engagement for N months (`no_email_engagement_months`; seeds: 6–12);
//!   machine opens never count, and only profiles that receive marketing email match;
//! - no site visit, no quote request, no survey answer for N days;
//! - loyalty points stagnating (`loyalty_stagnant`: nothing earned in 90 days);
//! - subscription cancelled;
//! - one-time buyer N days after the first order (`one_time_buyer_after_days`).
//!
//! "No X for N days" also holds for someone who never did X.

use std::collections::BTreeMap;

use crate::{Features, LoyaltyTrend, Reorder, SubscriptionState};

/// Days per month for month-based criteria.
const DAYS_PER_MONTH: f64 = 30.44;

/// One named definition.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InactivityDefinition {
    /// Name (snake_case), used in audiences and listings.
    pub name: String,
    /// At least this many days since the last order (buyers only).
    pub days_since_purchase: Option<f64>,
    /// Days since the last order at least this multiple of the usual reorder interval.
    pub overdue_factor: Option<f64>,
    /// Repurchase cycle in days per category: inactive past the cycle of the main category.
    pub category_cycle_days: BTreeMap<String, f64>,
    /// Cycle for categories not listed (and orders without one).
    pub default_cycle_days: Option<f64>,
    /// No click or human open for this many months.
    pub no_email_engagement_months: Option<f64>,
    /// No site visit or login for this many days.
    pub no_site_visit_days: Option<f64>,
    /// No quote request for this many days.
    pub no_quote_request_days: Option<f64>,
    /// No survey answer for this many days.
    pub no_survey_days: Option<f64>,
    /// No loyalty points earned in the last 90 days (with loyalty activity before).
    pub loyalty_stagnant: Option<bool>,
    /// The subscription was cancelled.
    pub subscription_cancelled: Option<bool>,
    /// Exactly one purchase day, at least this many days ago.
    pub one_time_buyer_after_days: Option<f64>,
}

/// Why a set of definitions cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InactivityError {
    /// The name is empty or not snake_case.
    #[error(
        "inactivity definition {index}: name {name:?} must be snake_case letters, digits and _"
    )]
    BadName {
        /// Position in the file (1-based).
        index: usize,
        /// The name.
        name: String,
    },
    /// Two definitions share a name.
    #[error("inactivity definition {name:?} is defined twice")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// No criterion set.
    #[error("inactivity definition {name:?} sets no criterion, so it would match everyone")]
    Empty {
        /// The name.
        name: String,
    },
    /// A number out of range.
    #[error("inactivity definition {name:?}: {field} must be a positive number, not {value}")]
    BadValue {
        /// The name.
        name: String,
        /// The field.
        field: String,
        /// The value.
        value: f64,
    },
}

impl InactivityDefinition {
    /// The definitions winback uses when `winback.toml` has none: the seeds' defaults.
    pub fn defaults() -> Vec<InactivityDefinition> {
        vec![
            InactivityDefinition {
                name: "overdue_buyer".into(),
                overdue_factor: Some(3.0),
                ..Self::default()
            },
            InactivityDefinition {
                name: "lapsed_180d".into(),
                days_since_purchase: Some(180.0),
                ..Self::default()
            },
            InactivityDefinition {
                name: "one_time_buyer".into(),
                one_time_buyer_after_days: Some(180.0),
                ..Self::default()
            },
            InactivityDefinition {
                name: "inactive_subscriber".into(),
                no_email_engagement_months: Some(6.0),
                no_site_visit_days: Some(180.0),
                ..Self::default()
            },
            InactivityDefinition {
                name: "cancelled_subscription".into(),
                subscription_cancelled: Some(true),
                ..Self::default()
            },
        ]
    }

    /// Checks a set of definitions: snake_case unique names, at least one criterion each,
    /// positive numbers.
    pub fn validate(defs: &[InactivityDefinition]) -> Result<(), InactivityError> {
        let mut seen = std::collections::HashSet::new();
        for (i, d) in defs.iter().enumerate() {
            let ok = !d.name.is_empty()
                && d.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(InactivityError::BadName {
                    index: i + 1,
                    name: d.name.clone(),
                });
            }
            if !seen.insert(d.name.as_str()) {
                return Err(InactivityError::Duplicate {
                    name: d.name.clone(),
                });
            }
            let numbers = [
                ("days_since_purchase", d.days_since_purchase),
                ("overdue_factor", d.overdue_factor),
                ("default_cycle_days", d.default_cycle_days),
                ("no_email_engagement_months", d.no_email_engagement_months),
                ("no_site_visit_days", d.no_site_visit_days),
                ("no_quote_request_days", d.no_quote_request_days),
                ("no_survey_days", d.no_survey_days),
                ("one_time_buyer_after_days", d.one_time_buyer_after_days),
            ];
            let cycles = d
                .category_cycle_days
                .iter()
                .map(|(c, v)| (format!("category_cycle_days.{c}"), Some(*v)));
            for (field, value) in numbers
                .iter()
                .map(|(f, v)| ((*f).to_owned(), *v))
                .chain(cycles)
            {
                if let Some(v) = value.filter(|v| !(v.is_finite() && *v > 0.0)) {
                    return Err(InactivityError::BadValue {
                        name: d.name.clone(),
                        field,
                        value: v,
                    });
                }
            }
            let any = numbers.iter().any(|(_, v)| v.is_some())
                || !d.category_cycle_days.is_empty()
                || d.loyalty_stagnant == Some(true)
                || d.subscription_cancelled == Some(true);
            if !any {
                return Err(InactivityError::Empty {
                    name: d.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The explanation when the profile matches every criterion, else `None`.
    pub fn matches(&self, f: &Features, reorder: Option<&Reorder>) -> Option<String> {
        let mut why: Vec<String> = Vec::new();
        let silent = |last, days: f64, what: &str| -> Option<String> {
            match f.days_since(last) {
                None => Some(format!("never {what}")),
                Some(d) if d >= days => Some(format!("no {what} for {} days", d.round())),
                Some(_) => None,
            }
        };
        if let Some(days) = self.days_since_purchase {
            let d = f.recency_days.filter(|d| *d >= days)?;
            why.push(format!("{} days since the last order", d.round()));
        }
        if let Some(factor) = self.overdue_factor {
            let r = reorder.filter(|r| r.overdue_factor >= factor)?;
            why.push(format!(
                "{:.1}× the usual {}-day reorder interval",
                r.overdue_factor,
                r.usual_interval_days.round()
            ));
        }
        if !self.category_cycle_days.is_empty() || self.default_cycle_days.is_some() {
            let recency = f.recency_days?;
            let category = f.main_category.as_deref();
            let cycle = category
                .and_then(|c| self.category_cycle_days.get(c).copied())
                .or(self.default_cycle_days)?;
            if recency < cycle {
                return None;
            }
            why.push(format!(
                "{} days since the last order, past the {}-day cycle of {}",
                recency.round(),
                cycle.round(),
                category.unwrap_or("their purchases")
            ));
        }
        if let Some(months) = self.no_email_engagement_months {
            // Only someone who receives marketing email can ignore it.
            if !f.receives_email {
                return None;
            }
            why.push(silent(
                f.last_human_email_engagement_at,
                months * DAYS_PER_MONTH,
                "email click or human open",
            )?);
        }
        if let Some(days) = self.no_site_visit_days {
            why.push(silent(f.last_site_visit_at, days, "site visit")?);
        }
        if let Some(days) = self.no_quote_request_days {
            why.push(silent(f.last_quote_request_at, days, "quote request")?);
        }
        if let Some(days) = self.no_survey_days {
            why.push(silent(f.last_survey_at, days, "survey answer")?);
        }
        if self.loyalty_stagnant == Some(true) {
            if f.loyalty_trend != Some(LoyaltyTrend::Stagnant) {
                return None;
            }
            why.push("no loyalty points earned in 90 days".into());
        }
        if self.subscription_cancelled == Some(true) {
            if f.subscription != SubscriptionState::Cancelled {
                return None;
            }
            why.push("cancelled their subscription".into());
        }
        if let Some(days) = self.one_time_buyer_after_days {
            let tenure = f.tenure_days.filter(|t| f.order_days == 1 && *t >= days)?;
            why.push(format!("one order, {} days ago", tenure.round()));
        }
        Some(why.join("; "))
    }
}

/// Every definition the profile matches, with its explanation.
pub fn inactive_by(
    defs: &[InactivityDefinition],
    f: &Features,
    reorder: Option<&Reorder>,
) -> Vec<(String, String)> {
    defs.iter()
        .filter_map(|d| d.matches(f, reorder).map(|why| (d.name.clone(), why)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use winback_domain::{OrderFact, ProfileFacts, Signal, SignalFact, Timestamp};

    const DAY: i64 = Timestamp::DAY_MICROS;

    fn at(day: i64) -> Timestamp {
        Timestamp::from_micros(day * DAY).unwrap()
    }

    fn features(order_days: &[i64], signals: &[(i64, Signal)], category: u32) -> Features {
        let p = ProfileFacts {
            orders: order_days
                .iter()
                .map(|d| OrderFact {
                    at: at(*d),
                    total_minor: 1000,
                    discounted: false,
                    category,
                })
                .collect(),
            signals: signals
                .iter()
                .map(|(d, s)| SignalFact {
                    at: at(*d),
                    signal: *s,
                })
                .collect(),
            receives_email: true,
            ..ProfileFacts::default()
        };
        crate::features_of(
            &p,
            &["".into(), "fashion".into(), "appliances".into()],
            at(1000),
        )
    }

    fn def(f: impl FnOnce(&mut InactivityDefinition)) -> InactivityDefinition {
        let mut d = InactivityDefinition {
            name: "t".into(),
            ..InactivityDefinition::default()
        };
        f(&mut d);
        d
    }

    #[test]
    fn each_criterion_matches_and_explains() {
        let lapsed = features(&[500, 600], &[(900, Signal::MachineOpen)], 1);
        let d = def(|d| d.days_since_purchase = Some(365.0));
        assert_eq!(
            d.matches(&lapsed, None).as_deref(),
            Some("400 days since the last order")
        );
        assert!(
            def(|d| d.days_since_purchase = Some(401.0))
                .matches(&lapsed, None)
                .is_none()
        );

        let cycles = def(|d| {
            d.category_cycle_days = [("fashion".into(), 365.0), ("appliances".into(), 2555.0)]
                .into_iter()
                .collect();
        });
        assert!(
            cycles
                .matches(&lapsed, None)
                .unwrap()
                .contains("365-day cycle of fashion")
        );
        let fridge = features(&[500, 600], &[], 2);
        assert!(
            cycles.matches(&fridge, None).is_none(),
            "appliances last longer"
        );

        let email = def(|d| d.no_email_engagement_months = Some(6.0));
        assert_eq!(
            email.matches(&lapsed, None).as_deref(),
            Some("never email click or human open"),
            "a machine open is not engagement"
        );
        let clicker = features(&[500], &[(950, Signal::Click)], 1);
        assert!(email.matches(&clicker, None).is_none());

        let one_time = def(|d| d.one_time_buyer_after_days = Some(180.0));
        assert!(one_time.matches(&clicker, None).is_some());
        assert!(one_time.matches(&lapsed, None).is_none(), "two orders");

        let cancelled = features(
            &[],
            &[
                (10, Signal::SubscriptionStarted),
                (20, Signal::SubscriptionCancelled(None)),
            ],
            0,
        );
        let d = def(|d| d.subscription_cancelled = Some(true));
        assert!(d.matches(&cancelled, None).is_some());
        assert!(d.matches(&lapsed, None).is_none());

        let points = features(
            &[900],
            &[(
                700,
                Signal::Points {
                    delta: 50,
                    balance: None,
                },
            )],
            1,
        );
        assert!(
            def(|d| d.loyalty_stagnant = Some(true))
                .matches(&points, None)
                .is_some()
        );

        let quiet = def(|d| {
            d.no_site_visit_days = Some(100.0);
            d.no_quote_request_days = Some(100.0);
            d.no_survey_days = Some(100.0);
        });
        assert!(quiet.matches(&lapsed, None).is_some());
        let visitor = features(&[500], &[(990, Signal::Login)], 1);
        assert!(
            quiet.matches(&visitor, None).is_none(),
            "all criteria must hold"
        );
    }

    #[test]
    fn definitions_are_validated() {
        assert!(InactivityDefinition::validate(&InactivityDefinition::defaults()).is_ok());
        let empty = def(|_| {});
        assert_eq!(
            InactivityDefinition::validate(&[empty]),
            Err(InactivityError::Empty { name: "t".into() })
        );
        let bad = def(|d| d.days_since_purchase = Some(-3.0));
        assert!(matches!(
            InactivityDefinition::validate(&[bad]),
            Err(InactivityError::BadValue { .. })
        ));
        let a = def(|d| d.days_since_purchase = Some(3.0));
        assert_eq!(
            InactivityDefinition::validate(&[a.clone(), a]),
            Err(InactivityError::Duplicate { name: "t".into() })
        );
        let name = InactivityDefinition {
            name: "Lapsed Buyers".into(),
            days_since_purchase: Some(3.0),
            ..InactivityDefinition::default()
        };
        assert!(matches!(
            InactivityDefinition::validate(&[name]),
            Err(InactivityError::BadName { index: 1, .. })
        ));
    }
}
