//! RFM: recency, frequency and monetary quintile scores from 1 to 5, the usual named segments,
//! and how customers move between segments from one scoring run to the next.

use std::collections::BTreeMap;

/// One customer's raw RFM values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RfmInput {
    /// Days since the last order (lower is better).
    pub recency_days: f64,
    /// Number of orders.
    pub frequency: f64,
    /// Spend (total or mean, in minor units).
    pub monetary: f64,
}

/// Quintile scores, 5 best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RfmScore {
    /// Recency score: 5 for the most recent fifth.
    pub r: u8,
    /// Frequency score.
    pub f: u8,
    /// Monetary score.
    pub m: u8,
}

/// The usual named RFM segments, from the recency and frequency scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// Bought recently and often.
    Champions,
    /// Buy often; responsive.
    LoyalCustomers,
    /// Recent, with average frequency.
    PotentialLoyalists,
    /// Bought most recently, once.
    NewCustomers,
    /// Recent, but bought little.
    Promising,
    /// Average recency and frequency.
    NeedAttention,
    /// Below average recency and frequency.
    AboutToSleep,
    /// Bought often, but long ago.
    AtRisk,
    /// Were the best customers; long gone.
    CantLoseThem,
    /// Long ago, few orders.
    Hibernating,
    /// Longest ago, fewest orders.
    Lost,
}

impl Segment {
    /// Every segment, best first.
    pub const ALL: [Segment; 11] = [
        Segment::Champions,
        Segment::LoyalCustomers,
        Segment::PotentialLoyalists,
        Segment::NewCustomers,
        Segment::Promising,
        Segment::NeedAttention,
        Segment::AboutToSleep,
        Segment::AtRisk,
        Segment::CantLoseThem,
        Segment::Hibernating,
        Segment::Lost,
    ];

    /// The segment of a score, by the widely used recency × frequency grid.
    pub fn of(score: RfmScore) -> Segment {
        match (score.r, score.f) {
            (5, 4..=5) => Segment::Champions,
            (3..=4, 4..=5) => Segment::LoyalCustomers,
            (4..=5, 2..=3) => Segment::PotentialLoyalists,
            (5, 1) => Segment::NewCustomers,
            (4, 1) => Segment::Promising,
            (3, 3) => Segment::NeedAttention,
            (3, 1..=2) => Segment::AboutToSleep,
            (1..=2, 5) => Segment::CantLoseThem,
            (1..=2, 3..=4) => Segment::AtRisk,
            (1, 1) => Segment::Lost,
            _ => Segment::Hibernating,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Segment::Champions => "champions",
            Segment::LoyalCustomers => "loyal_customers",
            Segment::PotentialLoyalists => "potential_loyalists",
            Segment::NewCustomers => "new_customers",
            Segment::Promising => "promising",
            Segment::NeedAttention => "need_attention",
            Segment::AboutToSleep => "about_to_sleep",
            Segment::AtRisk => "at_risk",
            Segment::CantLoseThem => "cant_lose_them",
            Segment::Hibernating => "hibernating",
            Segment::Lost => "lost",
        }
    }
}

/// Quintile scores of `values` (1–5), 5 for the largest when `higher_is_better`. Equal values
/// always get the same score: a tie sits in the quintile of its first rank.
fn quintiles(values: &[f64], higher_is_better: bool) -> Vec<u8> {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut scores = vec![0u8; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let q = (i * 5 / n) as u8 + 1; // 1..=5 by the tie's first rank
        let score = if higher_is_better { q } else { 6 - q };
        for &k in &order[i..=j] {
            scores[k] = score;
        }
        i = j + 1;
    }
    scores
}

/// Scores every customer against the others.
pub fn score(inputs: &[RfmInput]) -> Vec<RfmScore> {
    let r = quintiles(
        &inputs.iter().map(|i| i.recency_days).collect::<Vec<_>>(),
        false,
    );
    let f = quintiles(
        &inputs.iter().map(|i| i.frequency).collect::<Vec<_>>(),
        true,
    );
    let m = quintiles(&inputs.iter().map(|i| i.monetary).collect::<Vec<_>>(), true);
    (0..inputs.len())
        .map(|k| RfmScore {
            r: r[k],
            f: f[k],
            m: m[k],
        })
        .collect()
}

/// How many customers moved from each segment to each other between two runs, for customers
/// scored in both (`before` and `after` pair a customer key with a segment).
pub fn migration<K: Ord + Clone>(
    before: &[(K, Segment)],
    after: &[(K, Segment)],
) -> BTreeMap<(Segment, Segment), u64> {
    let previous: BTreeMap<&K, Segment> = before.iter().map(|(k, s)| (k, *s)).collect();
    let mut out = BTreeMap::new();
    for (k, now) in after {
        if let Some(was) = previous.get(k) {
            *out.entry((*was, *now)).or_insert(0) += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quintiles_split_evenly_and_keep_ties_together() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quintiles(&v, true), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        assert_eq!(quintiles(&v, false), [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]);
        let ties = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quintiles(&ties, true), [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]);
    }

    #[test]
    fn segments_follow_the_grid() {
        let s = |r, f| Segment::of(RfmScore { r, f, m: 3 });
        assert_eq!(s(5, 5), Segment::Champions);
        assert_eq!(s(1, 5), Segment::CantLoseThem);
        assert_eq!(s(2, 3), Segment::AtRisk);
        assert_eq!(s(1, 1), Segment::Lost);
        assert_eq!(s(2, 1), Segment::Hibernating);
        assert_eq!(s(5, 1), Segment::NewCustomers);
        // Every score has exactly one segment.
        for r in 1..=5 {
            for f in 1..=5 {
                assert!(Segment::ALL.contains(&s(r, f)));
            }
        }
    }

    #[test]
    fn migration_counts_moves_of_customers_in_both_runs() {
        let before = [
            (1, Segment::Champions),
            (2, Segment::AtRisk),
            (3, Segment::Lost),
        ];
        let after = [
            (1, Segment::AtRisk),
            (2, Segment::AtRisk),
            (4, Segment::NewCustomers),
        ];
        let m = migration(&before, &after);
        assert_eq!(m[&(Segment::Champions, Segment::AtRisk)], 1);
        assert_eq!(m[&(Segment::AtRisk, Segment::AtRisk)], 1);
        assert_eq!(m.values().sum::<u64>(), 2);
    }

    proptest! {
        /// Scores are 1..=5, and a customer better on a dimension never scores lower there.
        #[test]
        fn scores_are_monotone(values in proptest::collection::vec((0u32..400, 1u32..30, 0u32..50_000), 1..200)) {
            let inputs: Vec<RfmInput> = values.iter().map(|&(r, f, m)| RfmInput {
                recency_days: f64::from(r), frequency: f64::from(f), monetary: f64::from(m),
            }).collect();
            let s = score(&inputs);
            for (i, a) in inputs.iter().enumerate() {
                prop_assert!((1..=5).contains(&s[i].r) && (1..=5).contains(&s[i].f) && (1..=5).contains(&s[i].m));
                for (j, b) in inputs.iter().enumerate() {
                    if a.recency_days < b.recency_days { prop_assert!(s[i].r >= s[j].r); }
                    if a.frequency > b.frequency { prop_assert!(s[i].f >= s[j].f); }
                    if a.monetary > b.monetary { prop_assert!(s[i].m >= s[j].m); }
                }
            }
        }
    }
}
