//! The purchase models behind one interface, so CLV, stages and priority work with whichever
//! the shop configures: BG/NBD (default), MBG/NBD or Pareto/NBD.

use crate::{BgNbd, BgNbdParams, Fit, FitError, Frequency, Grouped, MbgNbd, ParetoNbd};

/// What a buy-till-you-die purchase model predicts for one customer.
pub trait PurchaseModel {
    /// The probability that the customer is still "alive" at the end of their history.
    fn p_alive(&self, h: Frequency) -> f64;
    /// Expected purchases in the next `horizon` time units.
    fn expected_purchases(&self, h: Frequency, horizon: f64) -> f64;
    /// Expected purchases by each of several horizons, for CLV's monthly steps; models whose
    /// per-customer work does not depend on the horizon do it once.
    fn expected_purchases_curve(&self, h: Frequency, horizons: &[f64]) -> Vec<f64> {
        horizons
            .iter()
            .map(|t| self.expected_purchases(h, *t))
            .collect()
    }
    /// For models whose expected purchases are `numerator(x, T, horizon) / denominator(h)`
    /// (BG/NBD and MBG/NBD): the numerator, which customers sharing `(x, T)` share. `None` for
    /// the others. [`PurchaseModel::expected_purchases`] must equal the numerator divided by
    /// [`PurchaseModel::expected_denominator`], to the bit.
    fn expected_numerator(&self, _x: f64, _t: f64, _horizon: f64) -> Option<f64> {
        None
    }
    /// The denominator that goes with [`PurchaseModel::expected_numerator`].
    fn expected_denominator(&self, _h: Frequency) -> f64 {
        1.0
    }
    /// P(alive), expected purchases within `horizon`, and expected purchases by each of
    /// `horizons`, for one history. Models whose three share costly work (Pareto/NBD's
    /// likelihood) do it once; the results equal the three methods', to the bit.
    fn prediction(&self, h: Frequency, horizon: f64, horizons: &[f64]) -> (f64, f64, Vec<f64>) {
        (
            self.p_alive(h),
            self.expected_purchases(h, horizon),
            self.expected_purchases_curve(h, horizons),
        )
    }
}

impl PurchaseModel for BgNbd {
    fn p_alive(&self, h: Frequency) -> f64 {
        BgNbd::p_alive(self, h)
    }
    fn expected_purchases(&self, h: Frequency, horizon: f64) -> f64 {
        BgNbd::expected_purchases(self, h, horizon)
    }
    fn expected_numerator(&self, x: f64, t: f64, horizon: f64) -> Option<f64> {
        Some(BgNbd::expected_numerator(self, x, t, horizon))
    }
    fn expected_denominator(&self, h: Frequency) -> f64 {
        BgNbd::expected_denominator(self, h)
    }
}

impl PurchaseModel for MbgNbd {
    fn p_alive(&self, h: Frequency) -> f64 {
        MbgNbd::p_alive(self, h)
    }
    fn expected_purchases(&self, h: Frequency, horizon: f64) -> f64 {
        MbgNbd::expected_purchases(self, h, horizon)
    }
    fn expected_numerator(&self, x: f64, t: f64, horizon: f64) -> Option<f64> {
        Some(MbgNbd::expected_numerator(self, x, t, horizon))
    }
    fn expected_denominator(&self, h: Frequency) -> f64 {
        MbgNbd::expected_denominator(self, h)
    }
}

impl PurchaseModel for ParetoNbd {
    fn p_alive(&self, h: Frequency) -> f64 {
        ParetoNbd::p_alive(self, h)
    }
    fn expected_purchases(&self, h: Frequency, horizon: f64) -> f64 {
        ParetoNbd::expected_purchases(self, h, horizon)
    }
    fn expected_purchases_curve(&self, h: Frequency, horizons: &[f64]) -> Vec<f64> {
        ParetoNbd::expected_purchases_curve(self, h, horizons)
    }
    fn prediction(&self, h: Frequency, horizon: f64, horizons: &[f64]) -> (f64, f64, Vec<f64>) {
        ParetoNbd::prediction(self, h, horizon, horizons)
    }
}

/// Which purchase model to fit; `[scoring] model` in `winback.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// BG/NBD (Fader, Hardie & Lee 2005): fast and the most widely used.
    #[default]
    Bgnbd,
    /// MBG/NBD (Batislam et al. 2007): one-time buyers may already be gone.
    Mbgnbd,
    /// Pareto/NBD (Schmittlein et al. 1987): dropout at any time, not only after purchases.
    ParetoNbd,
}

impl ModelKind {
    /// Every model.
    pub const ALL: [ModelKind; 3] = [ModelKind::Bgnbd, ModelKind::Mbgnbd, ModelKind::ParetoNbd];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Bgnbd => "bgnbd",
            ModelKind::Mbgnbd => "mbgnbd",
            ModelKind::ParetoNbd => "pareto_nbd",
        }
    }

    /// The name in reports.
    pub fn label(self) -> &'static str {
        match self {
            ModelKind::Bgnbd => "BG/NBD",
            ModelKind::Mbgnbd => "MBG/NBD",
            ModelKind::ParetoNbd => "Pareto/NBD",
        }
    }

    /// The parameter names, in the order of [`Fitted::params`].
    pub fn param_names(self) -> [&'static str; 4] {
        match self {
            ModelKind::Bgnbd | ModelKind::Mbgnbd => ["r", "alpha", "a", "b"],
            ModelKind::ParetoNbd => ["r", "alpha", "s", "beta"],
        }
    }

    /// Fits this model on grouped histories.
    pub fn fit(self, data: &[Grouped]) -> Result<Fitted, FitError> {
        Ok(match self {
            ModelKind::Bgnbd => {
                Fitted::from_fit(self, BgNbd::fit(data)?, |p| [p.r, p.alpha, p.a, p.b])
            }
            ModelKind::Mbgnbd => {
                Fitted::from_fit(self, MbgNbd::fit(data)?, |p| [p.r, p.alpha, p.a, p.b])
            }
            ModelKind::ParetoNbd => {
                Fitted::from_fit(self, ParetoNbd::fit(data)?, |p| [p.r, p.alpha, p.s, p.beta])
            }
        })
    }
}

/// A fitted purchase model of any kind, with its diagnostics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Fitted {
    /// Which model.
    pub kind: ModelKind,
    /// Parameters in [`ModelKind::param_names`] order.
    pub params: [f64; 4],
    /// Their standard errors.
    pub std_errors: Vec<f64>,
    /// Log-likelihood at the optimum.
    pub log_likelihood: f64,
    /// Optimiser iterations.
    pub iterations: u64,
    /// Largest absolute gradient component at the optimum.
    pub gradient_norm: f64,
    /// Customers fitted on.
    pub customers: f64,
}

impl Fitted {
    fn from_fit<P>(kind: ModelKind, f: Fit<P>, params: impl Fn(&P) -> [f64; 4]) -> Fitted {
        Fitted {
            kind,
            params: params(&f.params),
            std_errors: f.std_errors,
            log_likelihood: f.log_likelihood,
            iterations: f.iterations,
            gradient_norm: f.gradient_norm,
            customers: f.customers,
        }
    }

    /// The model, ready to predict.
    pub fn model(&self) -> AnyModel {
        let [p0, p1, p2, p3] = self.params;
        match self.kind {
            ModelKind::Bgnbd => AnyModel::Bgnbd(BgNbd(BgNbdParams {
                r: p0,
                alpha: p1,
                a: p2,
                b: p3,
            })),
            ModelKind::Mbgnbd => AnyModel::Mbgnbd(MbgNbd(BgNbdParams {
                r: p0,
                alpha: p1,
                a: p2,
                b: p3,
            })),
            ModelKind::ParetoNbd => AnyModel::ParetoNbd(ParetoNbd(crate::ParetoNbdParams {
                r: p0,
                alpha: p1,
                s: p2,
                beta: p3,
            })),
        }
    }
}

/// Any of the purchase models.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnyModel {
    /// BG/NBD.
    Bgnbd(BgNbd),
    /// MBG/NBD.
    Mbgnbd(MbgNbd),
    /// Pareto/NBD.
    ParetoNbd(ParetoNbd),
}

impl PurchaseModel for AnyModel {
    fn p_alive(&self, h: Frequency) -> f64 {
        match self {
            AnyModel::Bgnbd(m) => m.p_alive(h),
            AnyModel::Mbgnbd(m) => m.p_alive(h),
            AnyModel::ParetoNbd(m) => m.p_alive(h),
        }
    }
    fn expected_purchases(&self, h: Frequency, horizon: f64) -> f64 {
        match self {
            AnyModel::Bgnbd(m) => m.expected_purchases(h, horizon),
            AnyModel::Mbgnbd(m) => m.expected_purchases(h, horizon),
            AnyModel::ParetoNbd(m) => m.expected_purchases(h, horizon),
        }
    }
    fn expected_purchases_curve(&self, h: Frequency, horizons: &[f64]) -> Vec<f64> {
        match self {
            AnyModel::ParetoNbd(m) => m.expected_purchases_curve(h, horizons),
            _ => horizons
                .iter()
                .map(|t| self.expected_purchases(h, *t))
                .collect(),
        }
    }
    fn prediction(&self, h: Frequency, horizon: f64, horizons: &[f64]) -> (f64, f64, Vec<f64>) {
        match self {
            AnyModel::ParetoNbd(m) => m.prediction(h, horizon, horizons),
            _ => (
                self.p_alive(h),
                self.expected_purchases(h, horizon),
                self.expected_purchases_curve(h, horizons),
            ),
        }
    }
    fn expected_numerator(&self, x: f64, t: f64, horizon: f64) -> Option<f64> {
        match self {
            AnyModel::Bgnbd(m) => Some(m.expected_numerator(x, t, horizon)),
            AnyModel::Mbgnbd(m) => Some(m.expected_numerator(x, t, horizon)),
            AnyModel::ParetoNbd(_) => None,
        }
    }
    fn expected_denominator(&self, h: Frequency) -> f64 {
        match self {
            AnyModel::Bgnbd(m) => m.expected_denominator(h),
            AnyModel::Mbgnbd(m) => m.expected_denominator(h),
            AnyModel::ParetoNbd(_) => 1.0,
        }
    }
}
