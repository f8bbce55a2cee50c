//! Customer lifetime value: the discounted margin a customer is expected to bring over a horizon,
//! from a purchase model's expected purchases and Gamma-Gamma's expected spend.

use crate::{Frequency, GammaGamma, PurchaseModel};

/// How CLV is computed; from configuration.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClvSettings {
    /// Horizon in months.
    pub months: u32,
    /// Monthly discount rate (0.01 = 1% a month).
    pub monthly_discount_rate: f64,
    /// Share of revenue that is margin (1.0 = revenue).
    pub margin: f64,
    /// Model time units per month (4.345 when histories are in weeks).
    pub units_per_month: f64,
}

impl Default for ClvSettings {
    fn default() -> Self {
        Self {
            months: 12,
            monthly_discount_rate: 0.01,
            margin: 1.0,
            units_per_month: 4.345,
        }
    }
}

/// CLV of a customer with history `h` (model time units) and mean repeat spend `mean_value`:
/// for each month, the purchases expected in it times the expected spend and margin, discounted
/// to today. The same monthly stepping as lifetimes' `customer_lifetime_value`, so the figures
/// compare one to one (with `margin = 1`).
pub fn clv(
    purchases: &impl PurchaseModel,
    spend: &GammaGamma,
    h: Frequency,
    mean_value: f64,
    s: &ClvSettings,
) -> f64 {
    clv_at_value(purchases, spend.expected_value(h.x, mean_value), h, s)
}

/// CLV with a given expected value per purchase (before margin): for shops where the spend
/// model cannot be fitted, the customer's own mean order value stands in.
pub fn clv_at_value(
    purchases: &impl PurchaseModel,
    value_per_purchase: f64,
    h: Frequency,
    s: &ClvSettings,
) -> f64 {
    let value = value_per_purchase * s.margin;
    let horizons: Vec<f64> = (1..=s.months)
        .map(|m| f64::from(m) * s.units_per_month)
        .collect();
    let curve = purchases.expected_purchases_curve(h, &horizons);
    let mut total = 0.0;
    let mut before = 0.0;
    for (month, cumulative) in (1..=s.months).zip(curve) {
        total += value * (cumulative - before) / (1.0 + s.monthly_discount_rate).powi(month as i32);
        before = cumulative;
    }
    total
}
