//! Maximum-likelihood fitting shared by the models: L-BFGS on log-parameters (so every
//! parameter stays positive), standard errors from the inverse Hessian, and errors with advice.

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason, TerminationStatus};
use argmin::solver::{linesearch::MoreThuenteLineSearch, quasinewton::LBFGS};

/// Why a model could not be fitted. Each message says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// No customers at all.
    #[error("no customers to fit on; import orders first")]
    Empty,
    /// Nobody bought twice: frequency models cannot be identified.
    #[error(
        "none of the {customers} customers bought more than once, so repeat behaviour cannot be estimated; use a longer calibration period or more customers"
    )]
    NoRepeatBuyers {
        /// Customers given.
        customers: usize,
    },
    /// Too few customers for a stable fit.
    #[error(
        "{customers} customer(s) are too few for a stable fit (at least {needed} are needed); widen the data or use population defaults"
    )]
    TooFew {
        /// Customers given.
        customers: usize,
        /// Minimum.
        needed: usize,
    },
    /// Spend data the Gamma-Gamma model cannot take.
    #[error(
        "{count} repeat buyer(s) have a mean spend of zero or less (the model needs positive amounts); exclude them, e.g. zero-value orders, and fit again"
    )]
    NonPositiveSpend {
        /// How many.
        count: usize,
    },
    /// A value is not a finite, valid history.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The fit ran out of its budget of likelihood evaluations or its time limit.
    #[error(
        "the {model} fit was stopped after {evaluations} likelihood evaluations ({seconds:.1} s): {why}. The data may not suit this model: try `[scoring] model = \"bgnbd\"`, a longer calibration period, or more customers; `[scoring] fit_time_limit_seconds` raises the limit"
    )]
    Stopped {
        /// The model being fitted.
        model: &'static str,
        /// Likelihood evaluations made.
        evaluations: u64,
        /// Seconds spent.
        seconds: f64,
        /// Which limit.
        why: String,
    },
    /// The optimiser stopped without converging.
    #[error(
        "the fit did not converge after {iterations} iterations ({reason}); the data may not follow the model (check for bulk or test orders, or too short a history)"
    )]
    NotConverged {
        /// Iterations run.
        iterations: u64,
        /// The optimiser's reason.
        reason: String,
    },
}

/// A fitted model: parameters, their standard errors, and diagnostics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Fit<P> {
    /// The maximum-likelihood parameters.
    pub params: P,
    /// Standard errors in parameter order (NaN where the Hessian is singular).
    pub std_errors: Vec<f64>,
    /// Log-likelihood at the optimum.
    pub log_likelihood: f64,
    /// Optimiser iterations.
    pub iterations: u64,
    /// Largest absolute gradient component at the optimum (natural parameters).
    pub gradient_norm: f64,
    /// Customers the fit used (sum of weights).
    pub customers: f64,
    /// Likelihood evaluations the fit made (bounded by [`FitLimits::max_evaluations`]).
    pub evaluations: u64,
}

/// The limits every fit obeys, so a fit always ends: a budget of likelihood evaluations, an
/// optional wall-clock limit, and a progress callback (evaluations so far, best log-likelihood)
/// for a terminal. Set for the fits run inside [`with_limits`] on the calling thread.
#[derive(Clone)]
pub struct FitLimits {
    /// Likelihood evaluations before a fit is stopped with [`FitError::Stopped`].
    pub max_evaluations: u64,
    /// Wall-clock time before a fit is stopped.
    pub time_limit: Option<std::time::Duration>,
    /// Called every 25 evaluations with (model, evaluations, best log-likelihood so far).
    pub progress: Option<Progress>,
}

/// A progress callback: (model, likelihood evaluations so far, best log-likelihood).
pub type Progress = std::sync::Arc<dyn Fn(&'static str, u64, f64) + Send + Sync>;

/// The default budget: 20,000 evaluations. Every model in this crate converges on real and
/// synthetic data in a few hundred.
pub const MAX_EVALUATIONS: u64 = 20_000;

impl Default for FitLimits {
    fn default() -> Self {
        Self {
            max_evaluations: MAX_EVALUATIONS,
            time_limit: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for FitLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FitLimits")
            .field("max_evaluations", &self.max_evaluations)
            .field("time_limit", &self.time_limit)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

thread_local! {
    static LIMITS: std::cell::RefCell<FitLimits> = std::cell::RefCell::new(FitLimits::default());
}

/// Runs `f` with `limits` applying to every fit it makes on this thread.
pub fn with_limits<T>(limits: FitLimits, f: impl FnOnce() -> T) -> T {
    let previous = LIMITS.with(|l| l.replace(limits));
    let out = f();
    LIMITS.with(|l| *l.borrow_mut() = previous);
    out
}

/// Counts evaluations against the limits.
struct Meter {
    model: &'static str,
    limits: FitLimits,
    started: std::time::Instant,
    evaluations: std::sync::atomic::AtomicU64,
    best: std::sync::Mutex<f64>,
    stopped: std::sync::Mutex<Option<String>>,
}

impl Meter {
    /// Records one evaluation; `Err` with the reason once a limit is reached.
    fn tick(&self, ll: f64) -> Result<(), String> {
        let n = self
            .evaluations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let mut best = self.best.lock().unwrap_or_else(|e| e.into_inner());
        if ll.is_finite() && ll > *best {
            *best = ll;
        }
        if n % 25 == 0 {
            if let Some(p) = &self.limits.progress {
                p(self.model, n, *best);
            }
        }
        let why = if n > self.limits.max_evaluations {
            Some(format!(
                "its budget of {} likelihood evaluations ran out",
                self.limits.max_evaluations
            ))
        } else {
            self.limits
                .time_limit
                .filter(|t| self.started.elapsed() > *t)
                .map(|t| format!("it ran past its time limit of {} s", t.as_secs()))
        };
        match why {
            Some(w) => {
                self.stopped
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(w.clone());
                Err(w)
            }
            None => Ok(()),
        }
    }

    fn error(&self) -> Option<FitError> {
        let why = self
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(FitError::Stopped {
            model: self.model,
            evaluations: self.evaluations.load(std::sync::atomic::Ordering::Relaxed),
            seconds: self.started.elapsed().as_secs_f64(),
            why,
        })
    }
}

/// A point (log-parameters), the log-likelihood there and its gradient.
type Evaluation = (Vec<f64>, f64, Vec<f64>);

/// A negative log-likelihood over log-parameters, for the optimiser.
pub(crate) struct Objective<'m, F> {
    /// Returns (log-likelihood, gradient w.r.t. natural parameters) at natural parameters.
    pub ll: F,
    /// 1 / customers: the optimiser sees the mean log-likelihood per customer, so its first,
    /// gradient-sized step stays small whatever the number of customers.
    pub scale: f64,
    /// The last evaluation: argmin asks for the cost and then the gradient at the same point, and
    /// one evaluation yields both.
    pub last: std::sync::Mutex<Option<Evaluation>>,
    /// The limits, counted per evaluation.
    meter: &'m Meter,
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Objective<'_, &F> {
    fn eval(&self, logp: &[f64]) -> Result<(f64, Vec<f64>), argmin::core::Error> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, v, g)) = last.as_ref() {
            if at.as_slice() == logp {
                return Ok((*v, g.clone()));
            }
        }
        let p: Vec<f64> = logp.iter().map(|v| v.exp()).collect();
        let (v, g) = (self.ll)(&p);
        *last = Some((logp.to_vec(), v, g.clone()));
        self.meter.tick(v).map_err(argmin::core::Error::msg)?;
        Ok((v, g))
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> CostFunction for Objective<'_, &F> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, logp: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let (ll, _) = self.eval(logp)?;
        Ok(if ll.is_finite() {
            -ll * self.scale
        } else {
            f64::INFINITY
        })
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Gradient for Objective<'_, &F> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, logp: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        let p: Vec<f64> = logp.iter().map(|v| v.exp()).collect();
        let (_, g) = self.eval(logp)?;
        // d(-LL)/d(log θ) = -θ · dLL/dθ
        Ok(g.iter().zip(&p).map(|(g, p)| -g * p * self.scale).collect())
    }
}

/// Where the optimiser ended.
pub(crate) struct Optimum {
    pub params: Vec<f64>,
    pub log_likelihood: f64,
    pub gradient_norm: f64,
    pub iterations: u64,
    pub std_errors: Vec<f64>,
    pub evaluations: u64,
}

/// Maximises `ll` (log-likelihood and its gradient at natural parameters) from `start`, within
/// the thread's [`FitLimits`]; `model` names the model in errors and progress.
pub(crate) fn maximise<F>(
    model: &'static str,
    ll: F,
    start: &[f64],
    customers: f64,
) -> Result<Optimum, FitError>
where
    F: Fn(&[f64]) -> (f64, Vec<f64>),
{
    let meter = Meter {
        model,
        limits: LIMITS.with(|l| l.borrow().clone()),
        started: std::time::Instant::now(),
        evaluations: std::sync::atomic::AtomicU64::new(0),
        best: std::sync::Mutex::new(f64::NEG_INFINITY),
        stopped: std::sync::Mutex::new(None),
    };
    let objective = Objective {
        ll: &ll,
        scale: 1.0 / customers.max(1.0),
        last: std::sync::Mutex::new(None),
        meter: &meter,
    };
    let line = MoreThuenteLineSearch::new();
    let solver = LBFGS::new(line, 10)
        .with_tolerance_grad(1e-9)
        .and_then(|s| s.with_tolerance_cost(1e-13))
        .map_err(|e| FitError::Invalid(e.to_string()))?;
    let init: Vec<f64> = start.iter().map(|v| v.ln()).collect();
    let run = Executor::new(objective, solver)
        .configure(|s| s.param(init).max_iters(2000))
        .run();
    // A stop by the meter surfaces as the executor's error: report the limit, not the error.
    if let Some(e) = meter.error() {
        return Err(e);
    }
    let result = run.map_err(|e| FitError::NotConverged {
        iterations: 0,
        reason: e.to_string(),
    })?;
    let evaluations = meter.evaluations.load(std::sync::atomic::Ordering::Relaxed);
    let state = result.state();
    let iterations = state.get_iter();
    let best = state
        .get_best_param()
        .cloned()
        .ok_or_else(|| FitError::NotConverged {
            iterations,
            reason: "no parameters".into(),
        })?;
    let converged = matches!(
        state.get_termination_status(),
        TerminationStatus::Terminated(TerminationReason::SolverConverged)
    );
    let p: Vec<f64> = best.iter().map(|v| v.exp()).collect();
    let f = &ll;
    let (value, grad) = f(&p);
    // Relative gradient in log space: θ·∂LL/∂θ measures how much a 1% change would gain.
    let scaled: f64 = grad
        .iter()
        .zip(&p)
        .map(|(g, p)| (g * p).abs())
        .fold(0.0, f64::max);
    if !converged && scaled / customers.max(1.0) > 1e-6 {
        return Err(FitError::NotConverged {
            iterations,
            reason: format!("{:?}", state.get_termination_status()),
        });
    }
    if !value.is_finite() || p.iter().any(|v| !v.is_finite()) {
        return Err(FitError::NotConverged {
            iterations,
            reason: "the likelihood is not finite at the optimum".into(),
        });
    }
    let std_errors = standard_errors(f, &p);
    let gradient_norm = grad.iter().map(|g| g.abs()).fold(0.0, f64::max);
    Ok(Optimum {
        params: p,
        log_likelihood: value,
        gradient_norm,
        iterations,
        std_errors,
        evaluations,
    })
}

/// Sums a likelihood part (value and 4-gradient) over `items`, split between two threads when
/// there are more than `threshold` of them: the per-group loop is where a large fit spends its
/// time, and the machines this runs on have at least two cores.
pub(crate) fn sum_in_two<T: Sync>(
    items: &[T],
    threshold: usize,
    part: impl Fn(&[T]) -> (f64, [f64; 4]) + Sync,
) -> (f64, [f64; 4]) {
    let (left, right) = items.split_at(items.len() / 2);
    let ((ll1, g1), (ll2, g2)) = if items.len() > threshold {
        std::thread::scope(|s| {
            let h = s.spawn(|| part(right));
            (
                part(left),
                h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
            )
        })
    } else {
        (part(left), part(right))
    };
    let mut g = g1;
    for i in 0..4 {
        g[i] += g2[i];
    }
    (ll1 + ll2, g)
}

/// Standard errors from the inverse of the observed information (central differences of the
/// analytic gradient). Hand-written inversion: the matrix is at most 4×4, and a linear-algebra
/// crate for that would be the heaviest dependency of this crate.
fn standard_errors<F: Fn(&[f64]) -> (f64, Vec<f64>)>(f: &F, p: &[f64]) -> Vec<f64> {
    let n = p.len();
    let mut h = vec![vec![0.0; n]; n];
    for j in 0..n {
        let step = 1e-5 * p[j].max(1e-3);
        let mut up = p.to_vec();
        let mut down = p.to_vec();
        up[j] += step;
        down[j] -= step;
        let (_, gu) = f(&up);
        let (_, gd) = f(&down);
        for i in 0..n {
            h[i][j] = -(gu[i] - gd[i]) / (2.0 * step);
        }
    }
    let symmetric: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| 0.5 * (h[i][j] + h[j][i])).collect())
        .collect();
    match invert(symmetric) {
        Some(inv) => (0..n)
            .map(|i| {
                if inv[i][i] > 0.0 {
                    inv[i][i].sqrt()
                } else {
                    f64::NAN
                }
            })
            .collect(),
        None => vec![f64::NAN; n],
    }
}

/// Gauss-Jordan inversion with partial pivoting.
fn invert(mut a: Vec<Vec<f64>>) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut inv: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for j in 0..n {
            a[col][j] /= d;
            inv[col][j] /= d;
        }
        for row in 0..n {
            if row != col {
                let factor = a[row][col];
                for j in 0..n {
                    a[row][j] -= factor * a[col][j];
                    inv[row][j] -= factor * inv[col][j];
                }
            }
        }
    }
    Some(inv)
}

/// Checks an analytic gradient against central finite differences.
#[cfg(test)]
pub(crate) fn assert_gradient(ll: impl Fn(&[f64]) -> (f64, Vec<f64>), p: &[f64]) {
    let (_, g) = ll(p);
    for i in 0..p.len() {
        let h = 1e-6;
        let (mut up, mut down) = (p.to_vec(), p.to_vec());
        up[i] += h;
        down[i] -= h;
        let numeric = (ll(&up).0 - ll(&down).0) / (2.0 * h);
        assert!(
            (numeric - g[i]).abs() < 1e-5 * (1.0 + numeric.abs()),
            "parameter {i}: numeric {numeric} vs analytic {}",
            g[i]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverts_small_matrices() {
        let inv = invert(vec![vec![4.0, 7.0], vec![2.0, 6.0]]).unwrap();
        assert!((inv[0][0] - 0.6).abs() < 1e-12 && (inv[0][1] + 0.7).abs() < 1e-12);
        assert!(invert(vec![vec![1.0, 2.0], vec![2.0, 4.0]]).is_none());
    }

    #[test]
    fn a_fit_is_stopped_by_its_budget_with_the_model_named() {
        let ll = |p: &[f64]| (-(p[0] - 4.0).powi(2), vec![-2.0 * (p[0] - 4.0)]);
        let limits = FitLimits {
            max_evaluations: 2,
            ..FitLimits::default()
        };
        let Err(e) = with_limits(limits, || maximise("Pareto/NBD", ll, &[1.0], 3.0)) else {
            panic!("the budget of 2 evaluations stops the fit");
        };
        assert!(
            matches!(
                e,
                FitError::Stopped {
                    model: "Pareto/NBD",
                    evaluations: 3,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("Pareto/NBD fit was stopped"), "{e}");
        // The limits end with the closure.
        assert!(maximise("x", ll, &[1.0], 3.0).is_ok());
    }

    #[test]
    fn maximises_a_known_likelihood() {
        // Poisson rate λ from counts 3, 5, 4: MLE 4, SE sqrt(4/3).
        let counts = [3.0, 5.0, 4.0];
        let ll = |p: &[f64]| {
            let l = p[0];
            let v: f64 = counts.iter().map(|k| k * l.ln() - l).sum();
            let g: f64 = counts.iter().map(|k| k / l - 1.0).sum();
            (v, vec![g])
        };
        let o = maximise("test", ll, &[1.0], 3.0).unwrap();
        assert!(o.evaluations > 0);
        assert!((o.params[0] - 4.0).abs() < 1e-6, "{:?}", o.params);
        assert!(
            (o.std_errors[0] - (4.0f64 / 3.0).sqrt()).abs() < 1e-4,
            "{:?}",
            o.std_errors
        );
    }
}
