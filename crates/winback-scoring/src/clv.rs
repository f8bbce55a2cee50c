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
    value_per_purchase * s.margin * discounted_purchases(purchases, h, s)
}

/// The CLV horizon's month ends in model time units.
fn month_ends(s: &ClvSettings) -> Vec<f64> {
    (1..=s.months)
        .map(|m| f64::from(m) * s.units_per_month)
        .collect()
}

/// The purchases expected in each month of the horizon, discounted to today and summed: CLV is
/// this times the value of a purchase and the margin.
fn discounted_purchases(purchases: &impl PurchaseModel, h: Frequency, s: &ClvSettings) -> f64 {
    discounted(purchases.expected_purchases_curve(h, &month_ends(s)), s)
}

/// `curve` (cumulative expected purchases at each month's end) as discounted monthly purchases.
fn discounted(curve: impl IntoIterator<Item = f64>, s: &ClvSettings) -> f64 {
    let mut total = 0.0;
    let mut before = 0.0;
    for (month, cumulative) in (1..=s.months).zip(curve) {
        total += (cumulative - before) / (1.0 + s.monthly_discount_rate).powi(month as i32);
        before = cumulative;
    }
    total
}

/// What a purchase model predicts for one history: everything in it depends on the history
/// alone, not on the customer's spend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// P(alive) at the end of the history.
    pub p_alive: f64,
    /// Purchases expected within the predictor's horizon.
    pub expected_purchases: f64,
    /// The purchases expected in each month of the CLV horizon, discounted and summed.
    pub discounted_purchases: f64,
}

impl Prediction {
    /// CLV at `value_per_purchase` (before margin); the same as [`clv_at_value`].
    pub fn clv(&self, value_per_purchase: f64, s: &ClvSettings) -> f64 {
        value_per_purchase * s.margin * self.discounted_purchases
    }
}

/// Predictions for many customers, computed once per distinct history `(x, t_x, T)`: a shop's
/// customers share few histories (a million synthetic customers have 264,974), and each
/// prediction costs special functions that its neighbours with the same history would repeat
/// exactly. For BG/NBD and MBG/NBD the costly part (a ₂F₁ per horizon) depends on `(x, T)`
/// alone and is computed once per `(x, T)` (11,169 pairs among those million customers); the
/// results are the models' own to the bit.
#[derive(Debug)]
pub struct Predictor<'m, M> {
    model: &'m M,
    horizon: f64,
    settings: ClvSettings,
    month_ends: Vec<f64>,
    memo: std::collections::HashMap<(u64, u64, u64), Prediction>,
    /// Per `(x, T)`: the numerator at the horizon, then at each month's end.
    numerators: std::collections::HashMap<(u64, u64), Vec<f64>>,
}

impl<'m, M: PurchaseModel> Predictor<'m, M> {
    /// Predicts with `model`: expected purchases over `horizon` (model time units) and CLV as
    /// `settings` say.
    pub fn new(model: &'m M, horizon: f64, settings: ClvSettings) -> Self {
        Self {
            model,
            horizon,
            settings,
            month_ends: month_ends(&settings),
            memo: std::collections::HashMap::new(),
            numerators: std::collections::HashMap::new(),
        }
    }

    /// The prediction for history `h`, computed the first time it is asked for.
    pub fn predict(&mut self, h: Frequency) -> Prediction {
        let key = (h.x.to_bits(), h.t_x.to_bits(), h.t.to_bits());
        if let Some(p) = self.memo.get(&key) {
            return *p;
        }
        let model = self.model;
        let xt = (h.x.to_bits(), h.t.to_bits());
        if !self.numerators.contains_key(&xt) {
            // The horizon's numerator, then each month end's; `None` when the model does not
            // split its expected purchases that way.
            let numerators: Option<Vec<f64>> = std::iter::once(self.horizon)
                .chain(self.month_ends.iter().copied())
                .map(|t| model.expected_numerator(h.x, h.t, t))
                .collect();
            if let Some(n) = numerators {
                self.numerators.insert(xt, n);
            }
        }
        let p = match self.numerators.get(&xt) {
            Some(numerators) => {
                let denominator = model.expected_denominator(h);
                Prediction {
                    p_alive: model.p_alive(h),
                    expected_purchases: numerators[0] / denominator,
                    discounted_purchases: discounted(
                        numerators[1..].iter().map(|n| n / denominator),
                        &self.settings,
                    ),
                }
            }
            None => {
                let (p_alive, expected_purchases, curve) =
                    model.prediction(h, self.horizon, &self.month_ends);
                Prediction {
                    p_alive,
                    expected_purchases,
                    discounted_purchases: discounted(curve, &self.settings),
                }
            }
        };
        self.memo.insert(key, p);
        p
    }

    /// Distinct histories predicted so far.
    pub fn distinct(&self) -> usize {
        self.memo.len()
    }
}
