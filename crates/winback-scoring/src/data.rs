//! Model inputs: a customer's repeat frequency, recency and age, and their grouping.

use crate::FitError;

/// One customer's purchase history in model units (weeks, usually).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frequency {
    /// Repeat purchases: distinct purchase days minus one.
    pub x: f64,
    /// Time from first to last purchase.
    pub t_x: f64,
    /// Time from first purchase to the end of the calibration period.
    pub t: f64,
}

/// Customers sharing one `(x, t_x, T)`, with their count as weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grouped {
    /// The shared history.
    pub h: Frequency,
    /// How many customers have it.
    pub weight: f64,
}

impl Grouped {
    /// `weight` customers with repeat purchases `x`, recency `t_x` and age `t`.
    pub fn new(x: f64, t_x: f64, t: f64, weight: f64) -> Self {
        Self {
            h: Frequency { x, t_x, t },
            weight,
        }
    }
}

/// A repeat buyer's spend: repeat purchases and their mean value (in major units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendRecord {
    /// Repeat purchases (> 0).
    pub x: f64,
    /// Mean value of the repeat purchases.
    pub mean_value: f64,
}

/// Groups histories by exact `(x, t_x, T)`, in sorted order of their bit patterns.
pub fn group(histories: &[Frequency]) -> Vec<Grouped> {
    // Sorting the bit patterns is several times faster than hashing a million keys.
    let mut keys: Vec<(u64, u64, u64)> = histories
        .iter()
        .map(|h| (h.x.to_bits(), h.t_x.to_bits(), h.t.to_bits()))
        .collect();
    keys.sort_unstable();
    let mut out: Vec<Grouped> = Vec::new();
    for run in keys.chunk_by(|a, b| a == b) {
        let (x, t_x, t) = run[0];
        out.push(Grouped {
            h: Frequency {
                x: f64::from_bits(x),
                t_x: f64::from_bits(t_x),
                t: f64::from_bits(t),
            },
            weight: run.len() as f64,
        });
    }
    out
}

/// Checks grouped histories for a frequency model and returns the number of customers: every
/// history possible, some repeat buyers, and at least ten customers.
pub(crate) fn validate(data: &[Grouped]) -> Result<f64, FitError> {
    if data.is_empty() {
        return Err(FitError::Empty);
    }
    let mut customers = 0.0;
    let mut repeat = 0.0;
    for g in data {
        let h = g.h;
        let ok = [h.x, h.t_x, h.t, g.weight].iter().all(|v| v.is_finite())
            && h.x >= 0.0
            && h.x.fract() == 0.0
            && h.t_x >= 0.0
            && h.t >= h.t_x
            && g.weight > 0.0
            && (h.x > 0.0 || h.t_x == 0.0);
        if !ok {
            return Err(FitError::Invalid(format!(
                "history x={}, t_x={}, T={} (weight {}) is impossible: need whole x ≥ 0, 0 ≤ t_x ≤ T, t_x = 0 when x = 0",
                h.x, h.t_x, h.t, g.weight
            )));
        }
        customers += g.weight;
        if h.x > 0.0 {
            repeat += g.weight;
        }
    }
    if repeat == 0.0 {
        return Err(FitError::NoRepeatBuyers {
            customers: customers as usize,
        });
    }
    if customers < 10.0 {
        return Err(FitError::TooFew {
            customers: customers as usize,
            needed: 10,
        });
    }
    Ok(customers)
}
