//! Model inputs: a customer's repeat frequency, recency and age, and their grouping.

use std::collections::HashMap;

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

/// A repeat buyer's spend: repeat purchases and their mean value (in major units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendRecord {
    /// Repeat purchases (> 0).
    pub x: f64,
    /// Mean value of the repeat purchases.
    pub mean_value: f64,
}

/// Groups histories by exact `(x, t_x, T)`; order follows first appearance.
pub fn group(histories: &[Frequency]) -> Vec<Grouped> {
    let mut index: HashMap<(u64, u64, u64), usize> = HashMap::new();
    let mut out: Vec<Grouped> = Vec::new();
    for h in histories {
        let key = (h.x.to_bits(), h.t_x.to_bits(), h.t.to_bits());
        match index.get(&key) {
            Some(&i) => out[i].weight += 1.0,
            None => {
                index.insert(key, out.len());
                out.push(Grouped { h: *h, weight: 1.0 });
            }
        }
    }
    out
}
