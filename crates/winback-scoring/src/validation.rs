//! The holdout check of the customer-base literature: for customers grouped by their calibration
//! frequency, the mean number of purchases the model predicts for the holdout period against the
//! mean they actually made.

use crate::{Frequency, PurchaseModel};

/// One row of the holdout table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HoldoutRow {
    /// Repeat purchases in the calibration period (the last row holds `frequency` and more).
    pub frequency: u32,
    /// Customers in the row.
    pub customers: usize,
    /// Mean predicted purchases in the holdout period.
    pub predicted: f64,
    /// Mean actual purchases in the holdout period.
    pub actual: f64,
}

/// Builds the holdout table: `histories[i]` is customer i's calibration history and
/// `actual[i]` their purchases in the `horizon` that followed. Frequencies from `top` up share
/// the last row.
pub fn holdout_table(
    model: &impl PurchaseModel,
    histories: &[Frequency],
    actual: &[f64],
    horizon: f64,
    top: u32,
) -> Vec<HoldoutRow> {
    let mut rows: Vec<HoldoutRow> = (0..=top)
        .map(|f| HoldoutRow {
            frequency: f,
            customers: 0,
            predicted: 0.0,
            actual: 0.0,
        })
        .collect();
    for (h, a) in histories.iter().zip(actual) {
        let row = &mut rows[(h.x as u32).min(top) as usize];
        row.customers += 1;
        row.predicted += model.expected_purchases(*h, horizon);
        row.actual += a;
    }
    for r in &mut rows {
        if r.customers > 0 {
            r.predicted /= r.customers as f64;
            r.actual /= r.customers as f64;
        }
    }
    rows.retain(|r| r.customers > 0);
    rows
}
