//! `winback-scoring` owns the statistics of who is leaving and what they are worth: the
//! buy-till-you-die models of the customer-base literature, fitted by maximum likelihood with
//! analytic gradients, and the per-customer predictions built on them.
//!
//! It holds BG/NBD (Fader, Hardie & Lee 2005), MBG/NBD and Pareto/NBD with P(alive) and conditional
//! expected purchases, the Gamma-Gamma spend model, CLV, the holdout check, RFM scores,
//! segments and migration, the usual reorder interval per customer (empirical Bayes), and
//! lifecycle stages under documented rules; customer features per merged profile, named
//! inactivity definitions, and the attrition score and win-back priority. Fits run on unique `(x, t_x, T)` groups
//! with weights, so a million customers cost about as much as the few thousand distinct
//! histories they share. Inputs are plain numbers: no IO, no async runtime.

mod bgnbd;
mod clv;
mod data;
mod features;
mod fit;
mod gammagamma;
mod hyp2f1;
mod inactivity;
mod model;
mod pareto;
mod priority;
mod reorder;
mod rfm;
mod stage;
mod validation;

pub use bgnbd::{BgNbd, BgNbdParams, MbgNbd};
pub use clv::{ClvSettings, Prediction, Predictor, clv, clv_at_value};
pub use data::{Frequency, Grouped, SpendRecord, group};
pub use features::{
    Features, LOYALTY_WINDOW_DAYS, LoyaltyTrend, SubscriptionState, features_of, rederive,
};
pub use fit::{Fit, FitError, FitLimits, MAX_EVALUATIONS, Progress, with_limits};
pub use gammagamma::{GammaGamma, GammaGammaParams};
pub use hyp2f1::{LnHyp2f1, hyp2f1, ln_hyp2f1, ln_hyp2f1_a1_grad, ln_hyp2f1_grad};
pub use inactivity::{InactivityDefinition, InactivityError, inactive_by};
pub use model::{AnyModel, Fitted, ModelKind, PurchaseModel};
pub use pareto::{ParetoNbd, ParetoNbdParams};
pub use priority::{
    Exclusion, Priority, PriorityInput, PrioritySettings, attrition, within_budget,
};
pub use reorder::{Gaps, IntervalPrior, Reorder};
pub use rfm::{RfmInput, RfmScore, Segment, migration, score as rfm_scores};
pub use stage::{Stage, StageInput, StageRules};
pub use validation::{HoldoutRow, holdout_table};
