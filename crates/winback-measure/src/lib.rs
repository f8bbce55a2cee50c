//! `winback-measure` owns the statistics of measurement: what a campaign earned against its
//! holdout, with 95% confidence intervals, the incremental margin net of discount and message
//! cost, incremental ROI, the smallest effect the groups could detect, and when the evidence is
//! strong enough to name a winning variant. Pure functions over counts and sums; the store
//! gathers them and the CLI and the dashboard print them.
//!
//! Methods, chosen for honest coverage at the group sizes win-back campaigns have:
//! - the difference of two conversion rates: Newcombe's hybrid score interval (method 10 of
//!   Newcombe 1998), built from Wilson intervals; unlike the Wald interval it stays honest for
//!   small rates and small holdouts;
//! - the difference of revenue per contact: a two-part ("hurdle") interval. Revenue per contact
//!   is the share who buy times what a buyer spends. Each group's share gets its Wilson
//!   interval, what a buyer spends gets two intervals (Student's t on the buyers' amounts, and
//!   the modified Cox interval for a lognormal mean on their logarithms), and the method of
//!   variance estimates recovery (MOVER; Zou & Donner 2008, the construction behind Newcombe's
//!   interval) joins them: first into each group's revenue per contact (on the log scale),
//!   then into the difference. The reported interval is the union of the t-based and the
//!   lognormal-based one: the first undercovers when order values are very skewed, the second
//!   when they are not lognormal, the union did neither on the simulated grid. A group with
//!   fewer than [`MIN_BUYERS`] buyers borrows what buyers spend from both groups together. Welch's t
//!   interval, used before, took an all-zero holdout's variance as 0 and undercovered badly in
//!   small groups (45% coverage with 10 held out).
//! - no interval at all when fewer than [`MIN_BUYERS`] contacts bought in both groups together:
//!   there no method reached an honest coverage on the grid (Newcombe's interval covered 98–100%
//!   there, so "no difference" was near certain whatever the truth), and the readout says so.
//!
//! Simulations in the tests prove the coverage: 1,000 campaigns through the engine's response
//! model, and a grid of holdout sizes, splits, base rates and order-value spreads (see
//! `tests/it/`). The grid's results are in `BENCHMARKS.md`.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// The confidence level of every interval winback reports.
pub const LEVEL: f64 = 0.95;

/// Holdouts smaller than this get a warning whatever the intervals say.
pub const MIN_GROUP: u64 = 100;

/// Fewer buyers than this in both groups together get no interval: too few to tell.
pub const MIN_BUYERS: u64 = 10;

/// The number of contacts (both groups) at which the anytime-valid intervals are tightest; they
/// stay valid at every other size, only wider. A design constant, fixed before any data (the
/// guarantee needs it fixed).
pub const ANYTIME_TARGET_CONTACTS: f64 = 1_000.0;

/// ROI is shown only while its interval stays within ±this share (10 = ±1,000%); beyond it the
/// money spent is too small for a ratio to mean anything, and the readout gives the margin per
/// 1,000 messages instead.
pub const MAX_MEANINGFUL_ROI: f64 = 10.0;

/// One group's outcomes over the attribution window: contacts, how many bought, and their
/// revenue (sum and sum of squares of each contact's revenue, minor units).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    /// Contacts in the group.
    pub contacts: u64,
    /// Contacts with an order in the window.
    pub converted: u64,
    /// Revenue of the group in the window, minor units.
    pub revenue_minor: i64,
    /// Sum over contacts of (revenue in minor units)², for the revenue variance.
    pub revenue_sq: f64,
    /// Sum over buyers of ln(their revenue in minor units, at least 1), for the lognormal
    /// interval of what a buyer spends; 0 where unknown (that interval is then left out).
    #[serde(default)]
    pub revenue_log_sum: f64,
    /// Sum over buyers of ln(revenue)².
    #[serde(default)]
    pub revenue_log_sq: f64,
    /// The contacts' behaviour before entry, for CUPED; `None` where it was not gathered.
    #[serde(default)]
    pub pre: Option<PreEntry>,
}

/// Sums over a group's contacts of two covariates fixed before entry (x₁ = orders and x₂ =
/// spend in the year before), their squares and product, and their products with the outcomes:
/// what CUPED (Deng, Xu, Kohavi and Walker 2013) needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PreEntry {
    /// Σx₁, Σx₂.
    pub x: [f64; 2],
    /// Σx₁², Σx₂², Σx₁x₂.
    pub xx: [f64; 3],
    /// Σx·bought.
    pub x_bought: [f64; 2],
    /// Σx·revenue.
    pub x_revenue: [f64; 2],
}

impl PreEntry {
    fn plus(&self, o: &PreEntry) -> PreEntry {
        PreEntry {
            x: [self.x[0] + o.x[0], self.x[1] + o.x[1]],
            xx: [
                self.xx[0] + o.xx[0],
                self.xx[1] + o.xx[1],
                self.xx[2] + o.xx[2],
            ],
            x_bought: [
                self.x_bought[0] + o.x_bought[0],
                self.x_bought[1] + o.x_bought[1],
            ],
            x_revenue: [
                self.x_revenue[0] + o.x_revenue[0],
                self.x_revenue[1] + o.x_revenue[1],
            ],
        }
    }
}

impl Arm {
    /// Adds one contact's outcome with its orders and spend (minor units) in the year before
    /// entry.
    pub fn add_with_pre(
        &mut self,
        converted: bool,
        revenue_minor: i64,
        (orders, spend): (f64, f64),
    ) {
        self.add(converted, revenue_minor);
        let (b, r) = (f64::from(u8::from(converted)), revenue_minor as f64);
        let p = self.pre.get_or_insert_with(PreEntry::default);
        *p = p.plus(&PreEntry {
            x: [orders, spend],
            xx: [orders * orders, spend * spend, orders * spend],
            x_bought: [orders * b, spend * b],
            x_revenue: [orders * r, spend * r],
        });
    }

    /// Adds one contact's outcome.
    pub fn add(&mut self, converted: bool, revenue_minor: i64) {
        self.contacts += 1;
        self.converted += u64::from(converted);
        self.revenue_minor += revenue_minor;
        self.revenue_sq += (revenue_minor as f64).powi(2);
        if converted {
            let l = (revenue_minor.max(1) as f64).ln();
            self.revenue_log_sum += l;
            self.revenue_log_sq += l * l;
        }
    }

    /// Both groups as one.
    pub fn pooled(&self, other: &Arm) -> Arm {
        Arm {
            contacts: self.contacts + other.contacts,
            converted: self.converted + other.converted,
            revenue_minor: self.revenue_minor + other.revenue_minor,
            revenue_sq: self.revenue_sq + other.revenue_sq,
            revenue_log_sum: self.revenue_log_sum + other.revenue_log_sum,
            revenue_log_sq: self.revenue_log_sq + other.revenue_log_sq,
            // An empty group gathered nothing and has nothing to add.
            pre: match (self.pre, other.pre) {
                (Some(a), Some(b)) => Some(a.plus(&b)),
                (None, x) if self.contacts == 0 => x,
                (x, None) if other.contacts == 0 => x,
                _ => None,
            },
        }
    }

    /// The share who bought (0 for an empty group).
    pub fn rate(&self) -> f64 {
        if self.contacts == 0 {
            0.0
        } else {
            self.converted as f64 / self.contacts as f64
        }
    }

    /// Revenue per contact, minor units.
    pub fn revenue_per_contact(&self) -> f64 {
        if self.contacts == 0 {
            0.0
        } else {
            self.revenue_minor as f64 / self.contacts as f64
        }
    }

    /// The sample variance of revenue per contact (n − 1 in the denominator).
    pub fn revenue_variance(&self) -> f64 {
        let n = self.contacts as f64;
        if n < 2.0 {
            return 0.0;
        }
        let mean = self.revenue_per_contact();
        ((self.revenue_sq - n * mean * mean) / (n - 1.0)).max(0.0)
    }
}

/// An estimate with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The point estimate.
    pub estimate: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

impl Interval {
    /// Whether `x` lies inside (bounds included).
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }

    /// Whether the whole interval is above zero.
    pub fn positive(&self) -> bool {
        self.low > 0.0
    }

    /// Whether the whole interval is below zero.
    pub fn negative(&self) -> bool {
        self.high < 0.0
    }

    /// `k · self + c` (for totals and margins: k ≥ 0).
    pub fn affine(&self, k: f64, c: f64) -> Interval {
        Interval {
            estimate: k * self.estimate + c,
            low: k * self.low + c,
            high: k * self.high + c,
        }
    }
}

/// The two-sided standard normal quantile for a confidence level.
pub fn z(level: f64) -> f64 {
    Normal::new(0.0, 1.0)
        .expect("the standard normal exists")
        .inverse_cdf(1.0 - (1.0 - level) / 2.0)
}

/// Wilson's score interval for `k` successes in `n` trials (`None` for n = 0).
pub fn wilson(k: u64, n: u64, level: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (k, n) = (k as f64, n as f64);
    let z = z(level);
    let p = k / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// The difference of conversion rates `treated − control` with Newcombe's hybrid score
/// interval (`None` when a group is empty).
pub fn rate_difference(treated: &Arm, control: &Arm, level: f64) -> Option<Interval> {
    let (l1, u1) = wilson(treated.converted, treated.contacts, level)?;
    let (l2, u2) = wilson(control.converted, control.contacts, level)?;
    let (p1, p2) = (treated.rate(), control.rate());
    let d = p1 - p2;
    Some(Interval {
        estimate: d,
        low: d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        high: d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
    })
}

/// How a buyer's spend is modelled for its interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spend {
    /// Student's t on the buyers' amounts.
    T,
    /// The modified Cox interval for a lognormal mean, on the amounts' logarithms.
    Lognormal,
}

/// What a buyer spends: (estimate, low, high) in minor units, from `a`'s buyers (at least two).
fn spend_per_buyer(a: &Arm, model: Spend, level: f64) -> Option<(f64, f64, f64)> {
    if a.converted < 2 {
        return None;
    }
    let k = a.converted as f64;
    let t = StudentsT::new(0.0, 1.0, k - 1.0)
        .ok()?
        .inverse_cdf(1.0 - (1.0 - level) / 2.0);
    match model {
        Spend::T => {
            let m = a.revenue_minor as f64 / k;
            let var = ((a.revenue_sq - k * m * m) / (k - 1.0)).max(0.0);
            let half = t * (var / k).sqrt();
            Some((m, (m - half).max(0.0), m + half))
        }
        Spend::Lognormal => {
            if a.revenue_log_sum <= 0.0 {
                return None; // no logarithms gathered
            }
            let y = a.revenue_log_sum / k;
            let s2 = ((a.revenue_log_sq - k * y * y) / (k - 1.0)).max(0.0);
            let centre = y + s2 / 2.0;
            let se = (s2 / k + s2 * s2 / (2.0 * (k - 1.0))).sqrt();
            Some((
                centre.exp(),
                (centre - t * se).exp(),
                (centre + t * se).exp(),
            ))
        }
    }
}

/// One group's revenue per contact, share who buy × what a buyer spends, with MOVER on the log
/// scale: (estimate, low, high). A group with fewer than [`MIN_BUYERS`] buyers borrows the
/// spend of `pooled`: three holdout buyers who happened to spend little once made a margin
/// "certain" while the rate's interval spanned zero.
fn revenue_per_contact(a: &Arm, pooled: &Arm, model: Spend, level: f64) -> Option<(f64, f64, f64)> {
    let (lp, up) = wilson(a.converted, a.contacts, level)?;
    let p = a.rate();
    let own = if a.converted >= MIN_BUYERS { a } else { pooled };
    let (m, lm, um) = spend_per_buyer(own, model, level)?;
    let r = p * m;
    if p == 0.0 || m == 0.0 {
        return Some((r, 0.0, up * um));
    }
    let spread = |a: f64, b: f64| (a / b).ln().powi(2);
    let low = if lm > 0.0 {
        (r.ln() - (spread(p, lp) + spread(m, lm)).sqrt()).exp()
    } else {
        0.0
    };
    let high = (r.ln() + (spread(up, p) + spread(um, m)).sqrt()).exp();
    Some((r, low, high))
}

/// The difference of revenue per contact `treated − control` (minor units): the plain
/// difference of the groups' means, with the union of the t-based and the lognormal-based
/// two-part interval (see the crate's documentation). `None` when a group is empty or nobody
/// bought.
pub fn revenue_difference(treated: &Arm, control: &Arm, level: f64) -> Option<Interval> {
    if treated.contacts == 0 || control.contacts == 0 || treated.converted + control.converted == 0
    {
        return None;
    }
    let pooled = treated.pooled(control);
    let d = treated.revenue_per_contact() - control.revenue_per_contact();
    let mut bounds: Option<(f64, f64)> = None;
    for model in [Spend::T, Spend::Lognormal] {
        let (Some((r1, l1, u1)), Some((r0, l0, u0))) = (
            revenue_per_contact(treated, &pooled, model, level),
            revenue_per_contact(control, &pooled, model, level),
        ) else {
            continue;
        };
        // MOVER for a difference (Newcombe's construction).
        let centre = r1 - r0;
        let low = centre - ((r1 - l1).max(0.0).powi(2) + (u0 - r0).max(0.0).powi(2)).sqrt();
        let high = centre + ((u1 - r1).max(0.0).powi(2) + (r0 - l0).max(0.0).powi(2)).sqrt();
        bounds = Some(match bounds {
            Some((lo, hi)) => (lo.min(low), hi.max(high)),
            None => (low, high),
        });
    }
    let (low, high) = bounds?;
    Some(Interval {
        estimate: d,
        low: low.min(d),
        high: high.max(d),
    })
}

/// Which outcome CUPED adjusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Bought,
    Revenue,
}

/// CUPED (Deng, Xu, Kohavi and Walker 2013) for the difference `treated − control` of one
/// outcome, with both covariates of [`PreEntry`] and one θ for both groups (regressed within
/// the groups, so the treatment does not leak into it): the estimate moves by −θ·(x̄ₜ − x̄꜀) and
/// its variance shrinks by the returned ratio. `None` without covariates, with groups under
/// [`MIN_GROUP`], or when the adjustment would not narrow anything.
fn cuped(treated: &Arm, control: &Arm, outcome: Outcome) -> Option<(f64, f64)> {
    if treated.contacts < MIN_GROUP || control.contacts < MIN_GROUP {
        return None;
    }
    struct G {
        n: f64,
        mx: [f64; 2],
        my: f64,
        sy2: f64,
        sxx: [[f64; 2]; 2],
        sxy: [f64; 2],
    }
    let group = |a: &Arm| -> Option<G> {
        let p = a.pre?;
        let n = a.contacts as f64;
        let (sy, sy2, sxy) = match outcome {
            Outcome::Bought => (a.converted as f64, a.converted as f64, p.x_bought),
            Outcome::Revenue => (a.revenue_minor as f64, a.revenue_sq, p.x_revenue),
        };
        Some(G {
            n,
            mx: [p.x[0] / n, p.x[1] / n],
            my: sy / n,
            sy2,
            sxx: [[p.xx[0], p.xx[2]], [p.xx[2], p.xx[1]]],
            sxy,
        })
    };
    let (t, c) = (group(treated)?, group(control)?);
    // Within-group (co)variances, pooled.
    let mut cxx = [[0.0; 2]; 2];
    let mut cxy = [0.0; 2];
    for g in [&t, &c] {
        for (i, row) in cxx.iter_mut().enumerate() {
            cxy[i] += g.sxy[i] - g.n * g.mx[i] * g.my;
            for (j, cell) in row.iter_mut().enumerate() {
                *cell += g.sxx[i][j] - g.n * g.mx[i] * g.mx[j];
            }
        }
    }
    let det = cxx[0][0] * cxx[1][1] - cxx[0][1] * cxx[1][0];
    let theta = if cxx[0][0] > 0.0 && cxx[1][1] > 0.0 && det > 1e-9 * cxx[0][0] * cxx[1][1] {
        [
            (cxx[1][1] * cxy[0] - cxx[0][1] * cxy[1]) / det,
            (cxx[0][0] * cxy[1] - cxx[1][0] * cxy[0]) / det,
        ]
    } else if cxx[1][1] > 0.0 {
        [0.0, cxy[1] / cxx[1][1]]
    } else if cxx[0][0] > 0.0 {
        [cxy[0] / cxx[0][0], 0.0]
    } else {
        return None;
    };
    // Each group's variance of y, and of y − θ·x.
    let variances = |g: &G| {
        let plain = (g.sy2 - g.n * g.my * g.my) / (g.n - 1.0);
        let txy = theta[0] * g.sxy[0] + theta[1] * g.sxy[1];
        let txxt = theta[0] * theta[0] * g.sxx[0][0]
            + 2.0 * theta[0] * theta[1] * g.sxx[0][1]
            + theta[1] * theta[1] * g.sxx[1][1];
        let mean = g.my - theta[0] * g.mx[0] - theta[1] * g.mx[1];
        let residual = (g.sy2 - 2.0 * txy + txxt - g.n * mean * mean) / (g.n - 1.0);
        (plain.max(0.0), residual.max(0.0))
    };
    let ((vt, rt), (vc, rc)) = (variances(&t), variances(&c));
    let before = vt / t.n + vc / c.n;
    let after = rt / t.n + rc / c.n;
    if before <= 0.0 || after >= before {
        return None;
    }
    let shift = theta[0] * (t.mx[0] - c.mx[0]) + theta[1] * (t.mx[1] - c.mx[1]);
    Some((shift, after / before))
}

/// `i` moved by −`shift` and narrowed by √`ratio` on each side (CUPED's adjustment).
fn adjusted(i: &Interval, (shift, ratio): (f64, f64)) -> Interval {
    let k = ratio.sqrt();
    let estimate = i.estimate - shift;
    Interval {
        estimate,
        low: estimate - k * (i.estimate - i.low),
        high: estimate + k * (i.high - i.estimate),
    }
}

/// How much wider than a fixed-horizon interval at `level` an anytime-valid one is after
/// `contacts` contacts (both groups): the asymptotic confidence sequence of Waudby-Smith,
/// Arbour, Sinha, Kennedy and Ramdas ("Time-uniform central limit theory and asymptotic
/// confidence sequences", 2023), whose half-width after t observations is
/// σ̂·√(2(tρ² + 1)/(t²ρ²) · ln(√(tρ² + 1)/α)), against the fixed interval's z·σ̂/√t. ρ makes it
/// tightest at [`ANYTIME_TARGET_CONTACTS`]. For an estimator that is asymptotically normal
/// (both rate and revenue differences are) the sequence is the fixed interval widened by this
/// factor around its estimate, and it holds at every look at once: a campaign read every day
/// is wrongly called a winner no more often than 1 − `level`.
pub fn anytime_factor(contacts: u64, level: f64) -> f64 {
    let alpha = 1.0 - level;
    let t = contacts.max(1) as f64;
    let a = -2.0 * alpha.ln();
    let rho2 = (a + (a + 1.0).ln()) / ANYTIME_TARGET_CONTACTS;
    let u = t * rho2;
    let half = (2.0 * (u + 1.0) / u * ((u + 1.0).sqrt() / alpha).ln()).sqrt();
    // Never narrower than the fixed interval (it is not, for these α; the guard keeps it so).
    (half / z(level)).max(1.0)
}

/// `i` widened into its anytime-valid interval after `contacts` contacts (see
/// [`anytime_factor`]); each side keeps its own length ratio, so an asymmetric interval stays
/// asymmetric.
pub fn anytime(i: &Interval, contacts: u64, level: f64) -> Interval {
    let f = anytime_factor(contacts, level);
    Interval {
        estimate: i.estimate,
        low: i.estimate - f * (i.estimate - i.low),
        high: i.estimate + f * (i.high - i.estimate),
    }
}

/// The smallest absolute difference in conversion rate the groups detect with `power` at the
/// two-sided level `level` by a fixed-horizon test, read once (normal approximation around the
/// base rate `base`).
pub fn minimum_detectable_effect(
    base: f64,
    treated: u64,
    control: u64,
    level: f64,
    power: f64,
) -> Option<f64> {
    detectable_with(z(level), base, treated, control, power)
}

/// The smallest rate difference `treated` and `holdout` contacts detect with `power` by the
/// anytime-valid test the verdict uses: [`minimum_detectable_effect`] with the level's
/// quantile widened by [`anytime_factor`], around the base rate `base`.
pub fn detectable_at_every_look(base: f64, treated: u64, holdout: u64, power: f64) -> Option<f64> {
    let z_alpha = z(LEVEL) * anytime_factor(treated + holdout, LEVEL);
    detectable_with(z_alpha, base, treated, holdout, power)
}

/// (z_α + z_β)·√(p(1 − p)(1/n₁ + 1/n₀)), the base clamped away from 0 and 1.
fn detectable_with(z_alpha: f64, base: f64, treated: u64, control: u64, power: f64) -> Option<f64> {
    if treated == 0 || control == 0 {
        return None;
    }
    let base = base.clamp(0.005, 0.995);
    let z_beta = Normal::new(0.0, 1.0).ok()?.inverse_cdf(power);
    Some(
        (z_alpha + z_beta)
            * (base * (1.0 - base) * (1.0 / treated as f64 + 1.0 / control as f64)).sqrt(),
    )
}

/// Contacts (messaged, held out) at `ratio` messaged per held-out contact that detect `effect`
/// around `base` with 80% power by the anytime-valid test: the inverse of
/// [`detectable_at_every_look`], found by bisection (it falls as the groups grow).
pub fn needed_at_every_look(base: f64, effect: f64, ratio: f64) -> Option<(u64, u64)> {
    if effect <= 0.0 || ratio <= 0.0 || !ratio.is_finite() {
        return None;
    }
    let groups = |h: u64| ((h as f64 * ratio).ceil() as u64, h);
    let detects = |h: u64| {
        let (t, h) = groups(h);
        detectable_at_every_look(base, t, h, 0.8).is_some_and(|m| m <= effect)
    };
    let (mut lo, mut hi) = (1u64, 1u64 << 40);
    if !detects(hi) {
        return None;
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if detects(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(groups(lo))
}

/// Weeks until a campaign that enters `initial` contacts at once and `per_week` a week after,
/// holding out `share` of them, detects `effect` (absolute) around `base` with 80% power by the
/// anytime-valid test: the first week (0 when the first entries are enough), up to
/// `max_weeks`, whose contacts are enough. `None` when even `max_weeks` is too short.
pub fn weeks_to_detect(
    base: f64,
    effect: f64,
    (initial, per_week): (f64, f64),
    share: f64,
    max_weeks: u32,
) -> Option<u32> {
    if effect <= 0.0 || !(0.0..1.0).contains(&share) || share == 0.0 {
        return None;
    }
    (0..=max_weeks).find(|w| {
        let contacts = initial + per_week.max(0.0) * f64::from(*w);
        let holdout = (contacts * share).floor() as u64;
        let treated = (contacts - holdout as f64).floor() as u64;
        detectable_at_every_look(base, treated, holdout, 0.8).is_some_and(|m| m <= effect)
    })
}

/// The smallest holdout share (from 1% to 50%, in steps of one point) with which `contacts`
/// contacts detect `effect` (absolute) around `base` with 80% power by the anytime-valid test;
/// `None` when even an even split is not enough.
pub fn holdout_share_for(base: f64, effect: f64, contacts: u64) -> Option<f64> {
    (1..=50).map(|p| f64::from(p) / 100.0).find(|share| {
        let holdout = (contacts as f64 * share).floor() as u64;
        detectable_at_every_look(base, contacts - holdout, holdout, 0.8)
            .is_some_and(|m| m <= effect)
    })
}

/// What a campaign cost and the margin it earns on revenue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Economics {
    /// Gross margin as a share of revenue (0.4 = 40%).
    pub margin: f64,
    /// Discounts given on the treated group's orders, minor units.
    pub discount_minor: i64,
    /// What the treated group's messages cost, minor units.
    pub message_cost_minor: i64,
    /// Messages the treated group was sent (for the margin per 1,000 messages).
    #[serde(default)]
    pub messages: u64,
}

/// A campaign's (or a variant's) causal readout against its holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readout {
    /// The messaged group.
    pub treated: Arm,
    /// The holdout.
    pub holdout: Arm,
    /// Reactivation (conversion) rate difference, treated − holdout, as a share (0.02 = 2
    /// points).
    pub rate_difference: Option<Interval>,
    /// Incremental revenue per contact, minor units.
    pub revenue_per_contact: Option<Interval>,
    /// Incremental revenue of the treated group (per contact × contacts), minor units.
    pub incremental_revenue_minor: Option<Interval>,
    /// Where CUPED adjusted the rate and revenue differences for the contacts' orders and spend
    /// in the year before entry: the share of each one's variance that remained (0.8: the
    /// interval is √0.8 ≈ 0.89 times as wide).
    #[serde(default)]
    pub variance_kept: Option<(f64, f64)>,
    /// The rate difference's interval valid at every look (see [`anytime`]): what the winner
    /// selection reads.
    #[serde(default)]
    pub rate_anytime: Option<Interval>,
    /// The incremental margin's interval valid at every look: what the verdict reads, since
    /// campaigns are looked at every day.
    #[serde(default)]
    pub margin_anytime: Option<Interval>,
    /// Incremental margin net of discount and message cost, minor units:
    /// `margin × incremental revenue − (1 − margin) × discount − message cost`. Revenue is what
    /// customers paid, so a discount has already lowered it; what is left of the discount's cost
    /// is the margin the shop would have earned on it.
    pub incremental_margin_minor: Option<Interval>,
    /// Incremental margin per unit of cost (discount + messages), only while its interval
    /// stays within ±[`MAX_MEANINGFUL_ROI`]: with costs of fractions of a cent a ratio says
    /// nothing.
    pub roi: Option<Interval>,
    /// Incremental margin per 1,000 messages sent, minor units: the readout where ROI is not
    /// meaningful.
    #[serde(default)]
    pub margin_per_1000_messages: Option<Interval>,
    /// The smallest rate difference these group sizes detect with 80% power by the
    /// anytime-valid test the verdict uses, around the groups' pooled rate, at their own split.
    pub minimum_detectable_effect: Option<f64>,
    /// Contacts (messaged, held out), at the campaign's split, that would detect the observed
    /// difference with 80% power by the same test; only when the evidence is not yet clear and
    /// more are needed than there are.
    pub needed: Option<(u64, u64)>,
    /// What a marketer should know before acting on the figures.
    pub warnings: Vec<String>,
}

impl Readout {
    /// Compares `treated` with `holdout` at [`LEVEL`].
    pub fn new(treated: Arm, holdout: Arm, economics: Economics) -> Self {
        let buyers = treated.converted + holdout.converted;
        let enough = buyers >= MIN_BUYERS;
        // Adjusted for where the contacts started (CUPED) when their pre-entry behaviour is known
        // and it narrows the interval.
        let cuped_rate = cuped(&treated, &holdout, Outcome::Bought);
        let cuped_revenue = cuped(&treated, &holdout, Outcome::Revenue);
        let rate = rate_difference(&treated, &holdout, LEVEL)
            .filter(|_| enough)
            .map(|r| cuped_rate.map_or(r, |c| adjusted(&r, c)));
        let revenue = revenue_difference(&treated, &holdout, LEVEL)
            .filter(|_| enough)
            .map(|r| cuped_revenue.map_or(r, |c| adjusted(&r, c)));
        let n = treated.contacts as f64;
        let total = revenue.map(|r| r.affine(n, 0.0));
        let cost = (economics.discount_minor + economics.message_cost_minor) as f64;
        let fixed = -(1.0 - economics.margin) * economics.discount_minor as f64
            - economics.message_cost_minor as f64;
        let margin = total.map(|t| t.affine(economics.margin, fixed));
        let roi = margin
            .filter(|m| cost > 0.0 && m.low.abs().max(m.high.abs()) <= MAX_MEANINGFUL_ROI * cost)
            .map(|m| m.affine(1.0 / cost, 0.0));
        let per_1000 = margin
            .filter(|_| economics.messages > 0)
            .map(|m| m.affine(1_000.0 / economics.messages as f64, 0.0));
        let pooled = treated.pooled(&holdout);
        let ratio = treated.contacts as f64 / holdout.contacts.max(1) as f64;
        // For the test the verdict uses: the anytime-valid one.
        let mde = detectable_at_every_look(pooled.rate(), treated.contacts, holdout.contacts, 0.8);
        // The verdict's evidence: the margin where there is one, else the rate; valid at every
        // look, as the verdict reads them.
        let contacts = treated.contacts + holdout.contacts;
        let rate_anytime = rate.map(|r| anytime(&r, contacts, LEVEL));
        let margin_anytime = margin.map(|m| anytime(&m, contacts, LEVEL));
        let evidence = margin_anytime.or(rate_anytime);
        let unclear = evidence.is_some_and(|e| !e.positive() && !e.negative());
        let needed = rate
            .filter(|r| unclear && r.estimate > 0.0)
            .and_then(|r| needed_at_every_look(pooled.rate(), r.estimate, ratio))
            .filter(|(t, h)| *t > treated.contacts || *h > holdout.contacts);
        let mut warnings = Vec::new();
        if holdout.contacts == 0 {
            warnings.push("no holdout: what the campaign earned cannot be measured".into());
        } else if holdout.contacts < MIN_GROUP {
            warnings.push(format!(
                "the holdout has only {} contacts (at least {MIN_GROUP} are needed for a readout worth acting on)",
                holdout.contacts
            ));
        }
        if holdout.contacts > 0 && treated.contacts > 0 && !enough {
            warnings.push(format!(
                "too few buyers to tell: {buyers} bought in the two groups together, and an interval needs at least {MIN_BUYERS}"
            ));
        }
        if unclear {
            let what = if margin.is_some() {
                "the incremental margin is not yet clearly above or below zero"
            } else {
                "no clear difference in buying yet"
            };
            match mde {
                Some(m) => warnings.push(format!(
                    "{what}: these groups detect a true difference in buying of {:.1} points or more 80% of the time, however often they are read",
                    100.0 * m
                )),
                None => warnings.push(what.to_owned()),
            }
            if let (Some(r), Some((t, h))) = (rate, needed) {
                warnings.push(format!(
                    "to detect the observed {:.1} points 80% of the time, however often it is read, about {t} messaged and {h} held out are needed at this split",
                    100.0 * r.estimate
                ));
            }
        }
        Readout {
            treated,
            holdout,
            variance_kept: (enough && (cuped_rate.is_some() || cuped_revenue.is_some())).then(
                || {
                    (
                        cuped_rate.map_or(1.0, |c| c.1),
                        cuped_revenue.map_or(1.0, |c| c.1),
                    )
                },
            ),
            rate_anytime,
            margin_anytime,
            rate_difference: rate,
            revenue_per_contact: revenue,
            incremental_revenue_minor: total,
            incremental_margin_minor: margin,
            roi,
            margin_per_1000_messages: per_1000,
            minimum_detectable_effect: mde,
            needed,
            warnings,
        }
    }

    /// Whether the campaign measurably brought customers back (the whole interval above zero).
    pub fn significant(&self) -> bool {
        self.rate_difference.is_some_and(|r| r.positive())
    }
}

/// The outcome of automatic winner selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Winner {
    /// A variant wins: it beats the holdout and every other variant with 95% confidence.
    Chosen {
        /// The variant.
        variant: String,
        /// Why, in words.
        reason: String,
    },
    /// No winner yet.
    NotYet {
        /// Why, in words.
        reason: String,
    },
}

/// Names a winning variant only when the evidence holds: the best variant's conversion rate
/// beats the holdout's and every other variant's, each difference's anytime-valid 95% interval
/// (see [`anytime`]) above zero, so reading the campaign every day does not pick a false
/// winner more than 5% of the time.
pub fn choose_winner(variants: &[(String, Arm)], holdout: &Arm) -> Winner {
    if variants.len() < 2 {
        return Winner::NotYet {
            reason: "a single variant: nothing to choose".into(),
        };
    }
    let Some((best, arm)) = variants
        .iter()
        .max_by(|a, b| a.1.rate().total_cmp(&b.1.rate()))
    else {
        return Winner::NotYet {
            reason: "no variants".into(),
        };
    };
    if holdout.contacts > 0 {
        match sequential_difference(arm, holdout) {
            Some(d) if d.positive() => {}
            Some(d) => {
                return Winner::NotYet {
                    reason: format!(
                        "variant {best} does not beat the holdout with 95% confidence at every look ({:+.1} to {:+.1} points)",
                        100.0 * d.low,
                        100.0 * d.high
                    ),
                };
            }
            None => {
                return Winner::NotYet {
                    reason: "no outcomes yet".into(),
                };
            }
        }
    }
    for (name, other) in variants {
        if name == best {
            continue;
        }
        match sequential_difference(arm, other) {
            Some(d) if d.positive() => {}
            Some(d) => {
                return Winner::NotYet {
                    reason: format!(
                        "variant {best} is not yet better than {name} with 95% confidence at every look ({:+.1} to {:+.1} points)",
                        100.0 * d.low,
                        100.0 * d.high
                    ),
                };
            }
            None => {
                return Winner::NotYet {
                    reason: format!("variant {name} has no contacts yet"),
                };
            }
        }
    }
    Winner::Chosen {
        variant: best.clone(),
        reason: format!(
            "variant {best} converts {:.1}% and beats the holdout and every other variant with 95% confidence at every look",
            100.0 * arm.rate()
        ),
    }
}

/// The anytime-valid rate difference of two groups.
fn sequential_difference(a: &Arm, b: &Arm) -> Option<Interval> {
    rate_difference(a, b, LEVEL).map(|d| anytime(&d, a.contacts + b.contacts, LEVEL))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(contacts: u64, converted: u64) -> Arm {
        Arm {
            contacts,
            converted,
            ..Arm::default()
        }
    }

    #[test]
    fn wilson_matches_the_published_example() {
        // Newcombe (1998), table I: 81/263 → 0.2553 to 0.3662.
        let (l, u) = wilson(81, 263, 0.95).unwrap();
        assert!(
            (l - 0.2553).abs() < 5e-4 && (u - 0.3662).abs() < 5e-4,
            "{l} {u}"
        );
        // 0 of 10 → 0 to 0.2775.
        let (l, u) = wilson(0, 10, 0.95).unwrap();
        assert!(l.abs() < 1e-12 && (u - 0.2775).abs() < 5e-4, "{l} {u}");
    }

    #[test]
    fn newcombe_matches_the_published_example() {
        // Newcombe (1998), method 10, example (a): 56/70 − 48/80 → 0.0524 to 0.3339.
        let d = rate_difference(&arm(70, 56), &arm(80, 48), 0.95).unwrap();
        assert!((d.estimate - 0.2).abs() < 1e-12);
        assert!((d.low - 0.0524).abs() < 5e-4, "{d:?}");
        assert!((d.high - 0.3339).abs() < 5e-4, "{d:?}");
    }

    #[test]
    fn when_every_buyer_spends_the_same_revenue_is_the_rate_interval_times_the_spend() {
        // Treated: 1,000 contacts, 100 buying 50.00 each; holdout: 500, 25 buying 50.00.
        let mut t = Arm::default();
        let mut c = Arm::default();
        for i in 0..1000 {
            t.add(i < 100, if i < 100 { 5000 } else { 0 });
        }
        for i in 0..500 {
            c.add(i < 25, if i < 25 { 5000 } else { 0 });
        }
        let d = revenue_difference(&t, &c, 0.95).unwrap();
        let rate = rate_difference(&t, &c, 0.95).unwrap();
        assert!((d.estimate - 250.0).abs() < 1e-9);
        assert!((d.low - 5000.0 * rate.low).abs() < 1e-6, "{d:?} {rate:?}");
        assert!((d.high - 5000.0 * rate.high).abs() < 1e-6, "{d:?} {rate:?}");
    }

    #[test]
    fn an_all_zero_holdout_is_not_certainty() {
        // The demo's case: 11 held out, none bought; 106 messaged, 12 bought. Welch's interval
        // took the holdout's variance as 0 and excluded zero; the rate's interval did not.
        let mut t = Arm::default();
        let mut c = Arm::default();
        for i in 0..106u64 {
            t.add(i < 12, if i < 12 { 2_000 + 700 * i as i64 } else { 0 });
        }
        for _ in 0..11 {
            c.add(false, 0);
        }
        let rate = rate_difference(&t, &c, 0.95).unwrap();
        let revenue = revenue_difference(&t, &c, 0.95).unwrap();
        assert!(rate.contains(0.0), "{rate:?}");
        assert!(revenue.contains(0.0), "{revenue:?}");
        assert!(revenue.estimate > 0.0);
        let r = Readout::new(t, c, Economics::default());
        let m = r.incremental_margin_minor.unwrap();
        assert!(m.contains(0.0), "{m:?}");
        assert!(
            r.warnings.iter().any(|w| w.contains("not yet clearly")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn too_few_buyers_get_no_interval_and_say_why() {
        let r = Readout::new(arm(106, 6), arm(11, 0), Economics::default());
        assert!(r.rate_difference.is_none() && r.incremental_margin_minor.is_none());
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("too few buyers to tell: 6 bought")),
            "{:?}",
            r.warnings
        );
    }

    /// 1,000 messaged with 100 buyers and 1,000 held out with 50, each spending 50.00.
    fn hundred_and_fifty_buyers() -> (Arm, Arm) {
        let mut t = Arm::default();
        let mut c = Arm::default();
        for i in 0..1000 {
            t.add(i < 100, if i < 100 { 5000 } else { 0 });
            c.add(i < 50, if i < 50 { 5000 } else { 0 });
        }
        (t, c)
    }

    #[test]
    fn roi_only_when_the_money_spent_makes_a_ratio_meaningful() {
        let (t, c) = hundred_and_fifty_buyers();
        // 2,000 messages at a fraction of a cent: no ROI, the margin per 1,000 messages.
        let r = Readout::new(
            t,
            c,
            Economics {
                margin: 0.4,
                message_cost_minor: 3,
                messages: 2_000,
                ..Economics::default()
            },
        );
        assert!(r.roi.is_none());
        let m = r.incremental_margin_minor.unwrap();
        let per = r.margin_per_1000_messages.unwrap();
        assert!((per.estimate - m.estimate / 2.0).abs() < 1e-9, "{per:?}");
    }

    #[test]
    fn margin_and_roi_net_of_costs() {
        let (t, c) = hundred_and_fifty_buyers();
        let r = Readout::new(
            t,
            c,
            Economics {
                margin: 0.4,
                discount_minor: 100_000,
                message_cost_minor: 10_000,
                messages: 1_000,
            },
        );
        // +250,000 revenue → 100,000 margin − 60,000 discount − 10,000 messages = 30,000.
        let m = r.incremental_margin_minor.unwrap();
        assert!((m.estimate - 30_000.0).abs() < 1e-6, "{m:?}");
        let roi = r.roi.unwrap();
        assert!((roi.estimate - 30_000.0 / 110_000.0).abs() < 1e-9);
        // More bought, clearly; yet the margin after these costs may still be on either
        // side of zero, and that is the verdict's figure.
        assert!(r.significant());
        assert!(m.contains(0.0), "{m:?}");
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].starts_with("the incremental margin is not yet clearly"));
    }

    #[test]
    fn small_groups_are_flagged() {
        let r = Readout::new(arm(400, 12), arm(40, 1), Economics::default());
        assert!(
            r.warnings.iter().any(|w| w.contains("only 40 contacts")),
            "{:?}",
            r.warnings
        );
        assert!(
            r.warnings.iter().any(|w| w.contains("not yet clearly")),
            "{:?}",
            r.warnings
        );
        assert!(r.minimum_detectable_effect.unwrap() > 0.05);
    }

    #[test]
    fn a_winner_only_when_the_evidence_holds() {
        let holdout = arm(2000, 40);
        let clear = [
            ("a".to_owned(), arm(5000, 100)),
            ("b".to_owned(), arm(5000, 250)),
        ];
        assert!(
            matches!(choose_winner(&clear, &holdout), Winner::Chosen { variant, .. } if variant == "b")
        );
        let close = [
            ("a".to_owned(), arm(500, 20)),
            ("b".to_owned(), arm(500, 24)),
        ];
        match choose_winner(&close, &holdout) {
            Winner::NotYet { reason } => {
                assert!(reason.contains("not yet better than a"), "{reason}")
            }
            w => panic!("{w:?}"),
        }
        let none_beat_holdout = [
            ("a".to_owned(), arm(500, 10)),
            ("b".to_owned(), arm(500, 11)),
        ];
        assert!(matches!(
            choose_winner(&none_beat_holdout, &holdout),
            Winner::NotYet { .. }
        ));
    }

    #[test]
    fn anytime_intervals_are_the_fixed_ones_widened_most_at_the_extremes() {
        // At the target size: √(2·8.94/7.94 · ln(√8.94/0.05)) / 1.96 = 1.549.
        let at_target = anytime_factor(1_000, 0.95);
        assert!((at_target - 1.549).abs() < 2e-3, "{at_target}");
        for n in [10, 100, 10_000, 1_000_000] {
            assert!(anytime_factor(n, 0.95) > at_target, "{n}");
        }
        let i = Interval {
            estimate: 2.0,
            low: 1.0,
            high: 5.0,
        };
        let w = anytime(&i, 1_000, 0.95);
        assert!((w.low - (2.0 - at_target)).abs() < 1e-12);
        assert!((w.high - (2.0 + 3.0 * at_target)).abs() < 1e-12);
    }

    #[test]
    fn plans_agree_with_the_test_the_verdict_uses() {
        // 1,000 contacts a week at a 10% holdout, 5% base: the week found detects 1.5 points,
        // the week before does not.
        let w = weeks_to_detect(0.05, 0.015, (0.0, 1_000.0), 0.10, 104).unwrap();
        let at = |w: u32| {
            let n = 1_000 * u64::from(w);
            detectable_at_every_look(0.05, n - n / 10, n / 10, 0.8).unwrap()
        };
        assert!(at(w) <= 0.015 && at(w - 1) > 0.015, "{w}");
        // A larger holdout gets there sooner; an impossible lift never.
        assert!(weeks_to_detect(0.05, 0.015, (0.0, 1_000.0), 0.5, 104).unwrap() < w);
        assert_eq!(weeks_to_detect(0.05, 0.0001, (0.0, 10.0), 0.10, 104), None);
        // Enough at once: week 0.
        assert_eq!(
            weeks_to_detect(0.05, 0.015, (1_000.0 * f64::from(w), 0.0), 0.10, 104),
            Some(0)
        );
        // The share found is the smallest that detects the target.
        let share = holdout_share_for(0.05, 0.02, 20_000).unwrap();
        let d = |s: f64| {
            let h = (20_000.0 * s) as u64;
            detectable_at_every_look(0.05, 20_000 - h, h, 0.8).unwrap()
        };
        assert!(d(share) <= 0.02 && d(share - 0.01) > 0.02, "{share}");
        // The anytime test needs more than the fixed one.
        assert!(
            detectable_at_every_look(0.05, 9_000, 1_000, 0.8).unwrap()
                > minimum_detectable_effect(0.05, 9_000, 1_000, LEVEL, 0.8).unwrap()
        );
    }

    #[test]
    fn sample_sizes_agree_with_the_mde() {
        // The fixed-horizon MDE by its textbook formula: 2·(1.96 + 0.84)²·p(1 − p)/δ² per group
        // of 1,863 detects 2 points around 5%.
        let mde = minimum_detectable_effect(0.05, 1_863, 1_863, 0.95, 0.8).unwrap();
        assert!((mde - 0.02).abs() < 1e-4, "{mde}");
        // The anytime-valid test's sizes at a 9:1 split: the groups found detect the effect,
        // one held-out contact fewer does not, and a fixed-horizon test would need fewer.
        let (t, h) = needed_at_every_look(0.03, 0.01, 9.0).unwrap();
        assert!((t as f64 / h as f64 - 9.0).abs() < 0.01);
        assert!(detectable_at_every_look(0.03, t, h, 0.8).unwrap() <= 0.01);
        assert!(detectable_at_every_look(0.03, 9 * (h - 1), h - 1, 0.8).unwrap() > 0.01);
        assert!(minimum_detectable_effect(0.03, t, h, 0.95, 0.8).unwrap() < 0.01);
    }
}
