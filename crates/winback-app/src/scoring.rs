//! Scoring, the use case behind `winback score` and the worker's nightly run: computes every
//! profile's features in one pass over the store, fits the configured purchase model and the
//! spend model, and gives each profile its lifecycle stage, RFM cell and segment, P(alive),
//! expected purchases, CLV, usual reorder interval, the inactivity definitions it matches, and
//! its attrition score and win-back priority, each with reasons. The run, the features and the
//! model fits are saved. Also the features refresh of the profiles an ingest touched.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result};
use winback_domain::{FactSet, Timestamp};
use winback_scoring::{
    ClvSettings, Exclusion, Features, Fitted, Frequency, GammaGamma, GammaGammaParams, Gaps,
    InactivityDefinition, IntervalPrior, Predictor, PriorityInput, PrioritySettings, RfmInput,
    RfmScore, Segment, SpendRecord, Stage, StageInput, StageRules, attrition, group, inactive_by,
    rfm_scores,
};
use winback_store::ModelFitRow;

/// One scored profile.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scored {
    /// Profile id.
    pub profile_id: winback_domain::ProfileId,
    /// External id of its first record.
    pub external_id: String,
    /// Name, when known.
    pub name: Option<String>,
    /// Lifecycle stage.
    pub stage: Stage,
    /// Why.
    pub reason: String,
    /// Purchase days.
    pub purchases: u32,
    /// Total spend in minor units.
    pub spend_minor: i64,
    /// Currency of the spend.
    pub currency: Option<String>,
    /// RFM quintile scores (buyers only).
    pub rfm: Option<RfmScore>,
    /// RFM segment (buyers only).
    pub segment: Option<Segment>,
    /// P(alive) (buyers only).
    pub p_alive: Option<f64>,
    /// Expected purchases within the configured horizon.
    pub expected_purchases: Option<f64>,
    /// Predicted value over the CLV horizon, minor units.
    pub clv_minor: Option<f64>,
    /// Usual reorder interval, in words.
    pub reorder: Option<String>,
    /// When the next order is expected: the last order plus the usual interval.
    pub expected_next_order: Option<Timestamp>,
    /// Matched inactivity definitions: (name, why).
    pub inactive_by: Vec<(String, String)>,
    /// Win-back priority with its reasons, when ranked.
    pub priority: Option<winback_scoring::Priority>,
    /// Why the profile is not ranked for win-back.
    pub excluded: Option<Exclusion>,
}

/// The fitted models of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Models {
    /// The purchase model (in weeks), when it could be fitted.
    pub purchase: Option<Fitted>,
    /// Why the purchase model could not be fitted, when it could not: stages then follow the
    /// rules without P(alive), and expected purchases and CLV stay empty.
    pub purchase_error: Option<String>,
    /// Gamma-Gamma on mean repeat spend (minor units), when it could be fitted.
    pub gamma_gamma: Option<GammaGammaParams>,
    /// Why Gamma-Gamma could not be fitted, when it could not.
    pub gamma_gamma_error: Option<String>,
    /// Interval priors per category, and the population's under `*`.
    pub interval_priors: Vec<(String, IntervalPrior)>,
}

/// The scoring settings of `winback.toml`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Purchase model and horizon.
    pub scoring: ScoringConfig,
    /// Stage thresholds.
    pub stages: StageRules,
    /// CLV settings.
    pub clv: ClvSettings,
    /// Inactivity definitions.
    pub inactivity: Vec<InactivityDefinition>,
    /// Priority settings.
    pub priority: PrioritySettings,
}

/// `[scoring]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// `bgnbd` (default), `mbgnbd` or `pareto_nbd`.
    pub model: winback_scoring::ModelKind,
    /// Horizon of "expected purchases", in days.
    pub horizon_days: f64,
    /// A model fit that runs longer than this is stopped with an error naming the model.
    pub fit_time_limit_seconds: u64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            model: winback_scoring::ModelKind::Bgnbd,
            horizon_days: 90.0,
            fit_time_limit_seconds: 300,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            scoring: ScoringConfig::default(),
            stages: StageRules::default(),
            clv: ClvSettings::default(),
            inactivity: InactivityDefinition::defaults(),
            priority: PrioritySettings::default(),
        }
    }
}

/// A profile's model history in weeks, from its features.
pub fn frequency(f: &Features) -> Option<Frequency> {
    let (first, last) = (
        f.first_order_at?.day_number(),
        f.last_order_at?.day_number(),
    );
    let today = f.as_of.day_number();
    Some(Frequency {
        x: f64::from(f.order_days.saturating_sub(1)),
        t_x: (last - first) as f64 / 7.0,
        t: ((today - first).max(last - first)) as f64 / 7.0,
    })
}

fn gaps(f: &Features) -> Gaps {
    let day = |t: Option<Timestamp>| t.map_or(0, Timestamp::day_number);
    Gaps {
        n: f.order_days.saturating_sub(1),
        total_days: (day(f.last_order_at) - day(f.first_order_at)) as f64,
    }
}

/// Features of every profile in a fact set, computed on two threads.
pub fn compute_features(facts: &FactSet, as_of: Timestamp) -> Vec<Features> {
    let compute = |part: &[winback_domain::ProfileFacts]| -> Vec<Features> {
        part.iter()
            .map(|p| winback_scoring::features_of(p, &facts.categories, as_of))
            .collect()
    };
    let (left, right) = facts.profiles.split_at(facts.profiles.len() / 2);
    if facts.profiles.len() < 10_000 {
        return compute(&facts.profiles);
    }
    std::thread::scope(|s| {
        let h = s.spawn(|| compute(right));
        let mut out = compute(left);
        out.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        out
    })
}

/// Who a profile is, for the scored list: its own record's external id and the name.
#[derive(Debug, Clone, Default)]
pub struct Label {
    /// External id of the profile's own record.
    pub external_id: String,
    /// Name, when known.
    pub name: Option<String>,
}

/// The labels of the profiles in `facts`, in their order.
pub fn labels(facts: &FactSet) -> Vec<Label> {
    facts
        .profiles
        .iter()
        .map(|p| Label {
            external_id: p.external_id.clone(),
            name: p.name.clone(),
        })
        .collect()
}

/// Profiles whose facts a scan of the whole base holds in memory at once: the facts of a
/// million profiles (orders and engagement signals) would be gigabytes, 20,000 are a few dozen
/// megabytes.
pub const FACT_CHUNK: usize = 20_000;

/// What scoring learns from the whole base before it scores anyone, gathered a page of
/// features at a time: the histories the purchase model is fitted on, the repeat spend of
/// Gamma-Gamma, the gaps between orders of the reorder priors, and the RFM inputs (quintiles
/// rank every buyer against the others). A few dozen bytes per buyer, where the features
/// themselves are about a kilobyte.
#[derive(Debug, Default)]
pub struct Population {
    buyers: Vec<Frequency>,
    spend: Vec<SpendRecord>,
    gaps: Vec<Gaps>,
    by_category: HashMap<String, Vec<Gaps>>,
    rfm: Vec<(i64, RfmInput)>,
    first_order: Option<Timestamp>,
}

impl Population {
    /// Adds a page of profiles' features.
    pub fn add(&mut self, features: &[Features]) {
        for f in features {
            self.buyers.extend(frequency(f));
            if let Some(m) = f.mean_repeat_spend_minor.filter(|m| *m > 0.0) {
                self.spend.push(SpendRecord {
                    x: f64::from(f.order_days - 1),
                    mean_value: m,
                });
            }
            if f.orders > 0 {
                // Every buyer informs the population's prior; named categories get their own.
                self.gaps.push(gaps(f));
                if let Some(c) = &f.main_category {
                    match self.by_category.get_mut(c.as_str()) {
                        Some(g) => g.push(gaps(f)),
                        None => {
                            self.by_category.insert(c.clone(), vec![gaps(f)]);
                        }
                    }
                }
            }
            if let Some(recency_days) = f.recency_days {
                self.rfm.push((
                    f.profile_id,
                    RfmInput {
                        recency_days,
                        frequency: f64::from(f.order_days),
                        monetary: f.total_spend_minor as f64,
                    },
                ));
            }
            if let Some(first) = f.first_order_at {
                self.first_order = Some(self.first_order.map_or(first, |t| t.min(first)));
            }
        }
    }

    /// Fits the models and ranks the buyers: the [`Scorer`] that then scores each profile on
    /// its own. CPU work (a minute for a million customers' model fit): call it off the async
    /// workers.
    pub fn fit(self, s: &Settings) -> Scorer {
        // A shop whose histories the model cannot fit (too few repeat buyers, or histories too
        // regular) is still scored: features, stages by rule, RFM, reorder rhythm and priority.
        // Every fit ends: a budget of evaluations and the configured time limit.
        let limits = winback_scoring::FitLimits {
            time_limit: Some(std::time::Duration::from_secs(
                s.scoring.fit_time_limit_seconds.max(1),
            )),
            ..winback_scoring::FitLimits::default()
        };
        let grouped = group(&self.buyers);
        let (fitted, purchase_error) =
            match winback_scoring::with_limits(limits, || s.scoring.model.fit(&grouped)) {
                Ok(f) => (Some(f), None),
                Err(e) => {
                    let why = format!(
                        "{} could not be fitted on the shop's purchase histories: {e}",
                        s.scoring.model.label()
                    );
                    tracing::warn!("{why}");
                    (None, Some(why))
                }
            };
        let model = fitted.as_ref().map(Fitted::model);
        let (gg, gg_error) = match GammaGamma::fit(&self.spend) {
            Ok(f) => (Some(GammaGamma(f.params)), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let population = IntervalPrior::fit(&self.gaps).ok().map(|f| f.params);
        let priors: HashMap<String, IntervalPrior> = self
            .by_category
            .iter()
            .filter_map(|(c, g)| IntervalPrior::fit(g).ok().map(|f| (c.clone(), f.params)))
            .collect();
        let scores = rfm_scores(&self.rfm.iter().map(|(_, r)| *r).collect::<Vec<_>>());
        let mut rfm: Vec<(i64, RfmScore)> = self
            .rfm
            .iter()
            .zip(scores)
            .map(|((id, _), s)| (*id, s))
            .collect();
        rfm.sort_unstable_by_key(|(id, _)| *id);
        let horizon_weeks = s.scoring.horizon_days / 7.0;
        // Once per distinct history, not once per customer: the groups the model was fitted on
        // are exactly the histories there are.
        let predictions = model
            .as_ref()
            .map(|m| {
                let mut predictor = Predictor::new(m, horizon_weeks, s.clv);
                grouped
                    .iter()
                    .map(|g| (history_key(g.h), predictor.predict(g.h)))
                    .collect()
            })
            .unwrap_or_default();
        let mut interval_priors: Vec<(String, IntervalPrior)> =
            priors.iter().map(|(c, p)| (c.clone(), *p)).collect();
        interval_priors.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(p) = population {
            interval_priors.push(("*".into(), p));
        }
        Scorer {
            settings: s.clone(),
            model,
            gg,
            priors,
            population,
            rfm,
            predictions,
            first_order: self.first_order,
            models: Models {
                purchase: fitted,
                purchase_error,
                gamma_gamma: gg.map(|g| g.0),
                gamma_gamma_error: gg_error,
                interval_priors,
            },
        }
    }
}

fn history_key(h: Frequency) -> (u64, u64, u64) {
    (h.x.to_bits(), h.t_x.to_bits(), h.t.to_bits())
}

/// The fitted models and the population's ranks: scores any profile from its features alone,
/// so a base is scored a page at a time.
#[derive(Debug, Clone)]
pub struct Scorer {
    settings: Settings,
    model: Option<winback_scoring::AnyModel>,
    gg: Option<GammaGamma>,
    priors: HashMap<String, IntervalPrior>,
    population: Option<IntervalPrior>,
    /// RFM scores by profile id, ascending.
    rfm: Vec<(i64, RfmScore)>,
    /// Predictions per distinct history of the fitted population.
    predictions: HashMap<(u64, u64, u64), winback_scoring::Prediction>,
    first_order: Option<Timestamp>,
    models: Models,
}

impl Scorer {
    /// The fitted models.
    pub fn models(&self) -> &Models {
        &self.models
    }

    /// The earliest order of the population.
    pub fn first_order(&self) -> Option<Timestamp> {
        self.first_order
    }

    /// Scores profiles from their features; `labels` are the profiles' labels, in the same
    /// order.
    pub fn score(&self, labels: &[Label], features: &[Features]) -> Vec<Scored> {
        // A history the fit did not see (features refreshed since) is predicted here.
        let mut fallback = self.model.as_ref().map(|m| {
            Predictor::new(
                m,
                self.settings.scoring.horizon_days / 7.0,
                self.settings.clv,
            )
        });
        features
            .iter()
            .zip(labels)
            .map(|(f, l)| self.score_one(&mut fallback, &l.external_id, l.name.as_deref(), f))
            .collect()
    }

    /// Scores stored features (a page of [`winback_store::SqlStore::features_page`]).
    pub fn score_stored(&self, page: &[winback_store::StoredFeatures]) -> Vec<Scored> {
        let mut fallback = self.model.as_ref().map(|m| {
            Predictor::new(
                m,
                self.settings.scoring.horizon_days / 7.0,
                self.settings.clv,
            )
        });
        page.iter()
            .map(|p| {
                self.score_one(
                    &mut fallback,
                    &p.external_id,
                    p.name.as_deref(),
                    &p.features,
                )
            })
            .collect()
    }

    fn score_one(
        &self,
        fallback: &mut Option<Predictor<'_, winback_scoring::AnyModel>>,
        external_id: &str,
        name: Option<&str>,
        f: &Features,
    ) -> Scored {
        let s = &self.settings;
        let h = frequency(f);
        let prior = f
            .main_category
            .as_deref()
            .and_then(|c| self.priors.get(c))
            .or(self.population.as_ref());
        let reorder = match (prior, f.recency_days) {
            (Some(prior), Some(recency)) => prior.reorder(gaps(f), recency.floor()),
            _ => None,
        };
        let predicted = h.and_then(|h| match self.predictions.get(&history_key(h)) {
            Some(p) => Some(*p),
            None => fallback.as_mut().map(|p| p.predict(h)),
        });
        let p_alive = predicted.map(|p| p.p_alive);
        let input = StageInput {
            orders: f.order_days,
            days_since_first_order: f.tenure_days.map(f64::floor),
            overdue_factor: reorder.as_ref().map(|r| r.overdue_factor),
            p_alive,
            days_since_human_engagement: f.days_since(f.last_engagement_at),
            receives_email: f.receives_email,
        };
        let (stage, reason) = s.stages.stage(&input);
        // Without a spend model, each customer's own mean order value stands in.
        let clv_minor = match (predicted.zip(h), &self.gg, f.mean_order_minor) {
            (Some((p, h)), Some(gg), _) => Some(p.clv(
                gg.expected_value(h.x, f.mean_repeat_spend_minor.unwrap_or(0.0)),
                &s.clv,
            )),
            (Some((p, _)), None, Some(mean)) => Some(p.clv(mean as f64, &s.clv)),
            _ => None,
        };
        let (priority, excluded) = match s.priority.score(
            f,
            PriorityInput {
                stage,
                p_alive,
                clv_minor,
            },
        ) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        };
        let rfm = self
            .rfm
            .binary_search_by_key(&f.profile_id, |(id, _)| *id)
            .ok()
            .map(|i| self.rfm[i].1);
        Scored {
            profile_id: winback_domain::ProfileId::new(f.profile_id),
            external_id: external_id.to_owned(),
            name: name.map(str::to_owned),
            stage,
            // An interval-based stage is best told by the reorder rhythm itself; a
            // P(alive)-based one keeps its reason and adds the rhythm.
            reason: match &reorder {
                Some(r) if reason.contains("reorder interval") => r.explanation.clone(),
                Some(r) if matches!(stage, Stage::AtRisk | Stage::Lost) => {
                    format!("{reason}; {}", r.explanation)
                }
                Some(r) if stage == Stage::Active => r.explanation.clone(),
                _ => reason,
            },
            purchases: f.order_days,
            spend_minor: f.total_spend_minor,
            currency: f.currency.clone(),
            rfm,
            segment: rfm.map(Segment::of),
            p_alive,
            expected_purchases: predicted.map(|p| p.expected_purchases),
            clv_minor,
            inactive_by: inactive_by(&s.inactivity, f, reorder.as_ref()),
            expected_next_order: reorder.as_ref().zip(f.last_order_at).map(|(r, last)| {
                last.plus_seconds((r.usual_interval_days * 86_400.0).round() as i64)
            }),
            reorder: reorder.map(|r| r.explanation),
            priority,
            excluded,
        }
    }
}

/// Scores every profile from its features held in memory; `labels` are the profiles' labels,
/// in the same order. A store's base is scored a page at a time by [`score_and_save`].
pub fn score(
    labels: &[Label],
    features: &[Features],
    s: &Settings,
) -> Result<(Vec<Scored>, Models)> {
    let mut population = Population::default();
    population.add(features);
    let scorer = population.fit(s);
    let scored = scorer.score(labels, features);
    Ok((scored, scorer.models))
}

/// A scoring run in figures: how many people are in each stage, segment and inactivity
/// definition, and the ones most worth winning back. Kept as the run goes, so a run over a
/// million profiles never holds them all.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Profiles scored.
    pub profiles: usize,
    /// Profiles per lifecycle stage, in [`Stage::ALL`] order.
    pub stages: Vec<(Stage, usize)>,
    /// Profiles per matched inactivity definition, by name.
    pub inactive_by: std::collections::BTreeMap<String, usize>,
    /// Buyers per RFM segment, in [`Segment::ALL`] order.
    pub segments: Vec<(Segment, usize)>,
    /// The profiles most worth winning back, by priority (ties in profile order).
    pub top: Vec<Scored>,
    #[serde(skip)]
    keep: usize,
}

impl Summary {
    /// An empty summary that keeps the `top` profiles most worth winning back.
    pub fn new(top: usize) -> Self {
        Self {
            profiles: 0,
            stages: Stage::ALL.iter().map(|s| (*s, 0)).collect(),
            inactive_by: std::collections::BTreeMap::new(),
            segments: Segment::ALL.iter().map(|s| (*s, 0)).collect(),
            top: Vec::new(),
            keep: top,
        }
    }

    /// Counts one scored profile.
    pub fn add(&mut self, s: &Scored) {
        self.profiles += 1;
        if let Some(c) = self.stages.iter_mut().find(|(st, _)| *st == s.stage) {
            c.1 += 1;
        }
        for (name, _) in &s.inactive_by {
            *self.inactive_by.entry(name.clone()).or_default() += 1;
        }
        if let Some(c) = s
            .segment
            .and_then(|seg| self.segments.iter_mut().find(|(g, _)| *g == seg))
        {
            c.1 += 1;
        }
        let Some(priority) = s.priority.as_ref().map(|p| p.priority_minor) else {
            return;
        };
        // After every kept profile of equal or higher priority: ties stay in profile order.
        let at = self.top.partition_point(|t| {
            t.priority
                .as_ref()
                .is_some_and(|p| p.priority_minor.total_cmp(&priority).is_ge())
        });
        if at < self.keep {
            self.top.insert(at, s.clone());
            self.top.truncate(self.keep);
        }
    }
}

/// The rows the store keeps for a run.
pub fn rows(scored: &[Scored]) -> Vec<winback_store::ScoreRow> {
    scored
        .iter()
        .map(|s| winback_store::ScoreRow {
            profile_id: s.profile_id,
            stage: s.stage.as_str().into(),
            reason: s.reason.clone(),
            segment: s.segment.map(|g| g.as_str().into()),
            p_alive: s.p_alive,
            expected_90d: s.expected_purchases,
            clv_minor: s.clv_minor,
            reorder: s.reorder.clone(),
            purchases: i64::from(s.purchases),
            spend_minor: s.spend_minor,
            currency: s.currency.clone(),
            rfm: s.rfm.map(|r| format!("{}{}{}", r.r, r.f, r.m)),
            attrition: attrition(s.p_alive),
            priority_minor: s.priority.as_ref().map(|p| p.priority_minor),
            inactive_by: s.inactive_by.iter().map(|(n, _)| n.clone()).collect(),
            details: serde_json::json!({
                "inactive_by": s.inactive_by.iter().map(|(n, why)| serde_json::json!({"name": n, "why": why})).collect::<Vec<_>>(),
                "priority": s.priority,
                "excluded": s.excluded,
                "expected_next_order": s.expected_next_order,
            }),
        })
        .collect()
}

/// The persisted form of a purchase-model fit.
pub fn fit_row(
    f: &Fitted,
    at: Timestamp,
    window_start: Option<Timestamp>,
    seconds: f64,
) -> ModelFitRow {
    let names = f.kind.param_names();
    let by_name = |v: &[f64]| -> serde_json::Value {
        names
            .iter()
            .zip(v)
            .map(|(n, v)| ((*n).to_owned(), serde_json::json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    ModelFitRow {
        model: f.kind.as_str().into(),
        fitted_at: at,
        window_start,
        window_end: at,
        customers: f.customers as i64,
        params: by_name(&f.params),
        std_errors: by_name(&f.std_errors),
        log_likelihood: Some(f.log_likelihood),
        iterations: f.iterations as i64,
        seconds,
    }
}

/// What a refresh did.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Refresh {
    /// Profiles whose features were computed.
    pub profiles: usize,
    /// Orders read.
    pub orders: usize,
    /// Seconds spent.
    pub seconds: f64,
}

/// Recomputes the features of the profiles an import or resolution touched, and saves them.
pub async fn refresh_features(
    store: &winback_store::SqlStore,
    as_of: Timestamp,
) -> Result<Refresh> {
    let started = Instant::now();
    let dirty = store.dirty_customers().await?;
    if dirty.is_empty() {
        return Ok(Refresh {
            profiles: 0,
            orders: 0,
            seconds: 0.0,
        });
    }
    let (mut profiles, mut orders) = (0, 0);
    // A chunk at a time: an import that touched the whole base refreshes it in bounded memory.
    for scope in store.fact_chunks(true, FACT_CHUNK).await? {
        let facts = store.profile_facts(scope).await?;
        orders += facts.profiles.iter().map(|p| p.orders.len()).sum::<usize>();
        let features = compute_features(&facts, as_of);
        drop(facts);
        profiles += features.len();
        store
            .upsert_features(as_of, &features)
            .await
            .context("saving features")?;
    }
    // Removes the rows of profiles merged away or erased, and exactly the marks read above.
    store
        .save_features(as_of, &[], &dirty, false)
        .await
        .context("saving features")?;
    Ok(Refresh {
        profiles,
        orders,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Seconds per part of a scoring run.
#[derive(Debug, Default)]
struct ScorePhases {
    plan: f64,
    rederive: f64,
    read_facts: f64,
    features: f64,
    write_features: f64,
    prune: f64,
    fit: f64,
    read_features: f64,
    score: f64,
    write_scores: f64,
    finish: f64,
}

impl ScorePhases {
    /// Adds the time since `clock` to the slot `pick` names, and restarts the clock.
    fn lap(&mut self, clock: &mut Instant, pick: impl FnOnce(&mut Self) -> &mut f64) {
        *pick(self) += clock.elapsed().as_secs_f64();
        *clock = Instant::now();
    }

    /// Adds a chunk's reading parts (timed apart while a write ran beside them).
    fn add(&mut self, other: &Self) {
        self.rederive += other.rederive;
        self.read_facts += other.read_facts;
        self.features += other.features;
    }
}

/// What a saved scoring run gives back.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The run in figures, with the profiles most worth winning back.
    pub summary: Summary,
    /// The fitted models.
    pub models: Models,
    /// What the store recorded.
    pub stats: winback_store::RunStats,
    /// Profiles whose features were re-derived from the stored ones instead of read from their
    /// facts ([`Facts::Changed`]).
    pub rederived: usize,
}

/// Scores the store's profiles and saves the run, the features and the model fits, a page of
/// profiles at a time: features from the facts of [`FACT_CHUNK`] profiles at a time (written
/// as they are computed, while the population's histories are gathered), the models fitted
/// once, then every profile scored from its stored features and written a page at a time.
/// Memory holds one page and the population's few dozen bytes per buyer, whatever the base's
/// size. `each` sees every scored profile in profile order; the summary keeps the `top` most
/// worth winning back.
pub async fn score_and_save(
    store: &winback_store::SqlStore,
    as_of: Timestamp,
    settings: &Settings,
    facts: Facts,
    top: usize,
    each: impl FnMut(&Scored),
) -> Result<Outcome> {
    score_and_save_in_pages(store, as_of, settings, facts, FACT_CHUNK, top, each).await
}

/// Which profiles' facts a scoring run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facts {
    /// Every profile's (`winback score`).
    All,
    /// Only what may have changed (the worker's nightly run; on PostgreSQL, whose scan of only
    /// the marked profiles is the slower, the same as `All`): profiles marked since their
    /// features were computed, profiles without features, profiles whose loyalty windows move,
    /// and one [`RENEW_DAYS`]th of the base by turns, so that every profile is renewed from its
    /// facts within that many days whatever else happens. The others' features are re-derived
    /// from what is stored ([`winback_scoring::rederive`]: only recency and tenure move), which
    /// gives the same features without reading a million profiles' orders and events.
    Changed,
}

/// A nightly run renews this share (1 in `RENEW_DAYS`) of the base from its facts by turns.
pub const RENEW_DAYS: usize = 7;

/// [`score_and_save`] reading `facts`, with pages of `page` profiles (tests use small ones).
pub async fn score_and_save_in_pages(
    store: &winback_store::SqlStore,
    as_of: Timestamp,
    settings: &Settings,
    facts: Facts,
    page: usize,
    top: usize,
    mut each: impl FnMut(&Scored),
) -> Result<Outcome> {
    let page_size = page.max(1);
    // Where a run's time goes, logged at the end (`WINBACK_LOG=winback::score=info`).
    let mut phases = ScorePhases::default();
    let mut clock = Instant::now();
    let mut dirty = store.dirty_customers().await?;
    let mut population = Population::default();
    let mut rederived = 0;
    // PostgreSQL's scan of only the marked profiles measured slower than its whole scan
    // (7.1–10.3 s against 4.3 s at 50,000 customers; SQLite's 9.4–12.9 s against 26.9 s at
    // 200,000): there every profile's facts are read.
    let facts = match store.backend() {
        winback_store::db::Backend::Postgres => Facts::All,
        winback_store::db::Backend::Sqlite => facts,
    };
    let all = store.fact_profile_ids(false).await?;
    let changed: std::collections::HashSet<i64> = match facts {
        Facts::All => Default::default(),
        Facts::Changed => store.fact_profile_ids(true).await?.into_iter().collect(),
    };
    let turn = as_of.day_number().rem_euclid(RENEW_DAYS as i64) as usize;
    let renew = all.len() * turn / RENEW_DAYS..all.len() * (turn + 1) / RENEW_DAYS;
    phases.lap(&mut clock, |p| &mut p.plan);
    // Each chunk's features are written while the next chunk is read (one write in flight):
    // on SQLite the write and the scan run on different connections, and on two cores the
    // one waits on the disk or the lock while the other computes.
    let mut pending: Option<Vec<Features>> = None;
    for (chunk, ids) in all.chunks(page_size).enumerate() {
        let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
            continue;
        };
        let offset = chunk * page_size;
        let read = async {
            let mut clock = Instant::now();
            let mut laps = ScorePhases::default();
            // What can be re-derived from the stored features; the rest is read from its facts.
            let mut derived: HashMap<i64, Features> = HashMap::new();
            let mut to_mark = Vec::new();
            if facts == Facts::Changed {
                let stored: HashMap<i64, Features> = store
                    .features_page(Some(first - 1), ids.len())
                    .await?
                    .into_iter()
                    .map(|s| (s.features.profile_id, s.features))
                    .filter(|(id, _)| *id <= last)
                    .collect();
                for (k, id) in ids.iter().enumerate() {
                    if changed.contains(id) {
                        continue;
                    }
                    let again = (!renew.contains(&(offset + k)))
                        .then(|| {
                            stored
                                .get(id)
                                .and_then(|f| winback_scoring::rederive(f, as_of))
                        })
                        .flatten();
                    match again {
                        Some(f) => {
                            derived.insert(*id, f);
                        }
                        None => to_mark.push(*id),
                    }
                }
            }
            let rederived = derived.len();
            laps.lap(&mut clock, |p| &mut p.rederive);
            let computed = if derived.len() < ids.len() {
                // Marked like an import's records, so the facts scan takes exactly these; the
                // marks are cleared with the run's own below.
                store.mark_for_refresh(&to_mark).await?;
                let facts_of = store
                    .profile_facts(winback_store::FactScope::Profiles {
                        first,
                        last,
                        dirty_only: facts == Facts::Changed,
                    })
                    .await?;
                laps.lap(&mut clock, |p| &mut p.read_facts);
                // Feature computation is CPU work: off the async workers, so a worker's engine
                // passes go on meanwhile.
                tokio::task::spawn_blocking(move || compute_features(&facts_of, as_of))
                    .await
                    .context("the scoring thread")?
            } else {
                Vec::new()
            };
            // In profile order, as a whole scan gives them: the models see the same population.
            let features: Vec<Features> = if derived.is_empty() {
                computed
            } else {
                let mut computed: HashMap<i64, Features> =
                    computed.into_iter().map(|f| (f.profile_id, f)).collect();
                ids.iter()
                    .filter_map(|id| computed.remove(id).or_else(|| derived.remove(id)))
                    .collect()
            };
            laps.lap(&mut clock, |p| &mut p.features);
            anyhow::Ok((features, to_mark, rederived, laps))
        };
        let written = pending.take();
        let write = async {
            let started = Instant::now();
            if let Some(features) = written {
                store
                    .upsert_features(as_of, &features)
                    .await
                    .context("saving features")?;
            }
            anyhow::Ok(started.elapsed().as_secs_f64())
        };
        let ((features, to_mark, n, laps), wrote) =
            futures_util::future::try_join(read, write).await?;
        dirty.extend(to_mark);
        rederived += n;
        phases.add(&laps);
        phases.write_features += wrote;
        population.add(&features);
        pending = Some(features);
    }
    if let Some(features) = pending {
        let started = Instant::now();
        store
            .upsert_features(as_of, &features)
            .await
            .context("saving features")?;
        phases.write_features += started.elapsed().as_secs_f64();
    }
    clock = Instant::now();
    // Drops the rows of profiles merged away or erased, and exactly the marks read above.
    store
        .prune_features(&dirty)
        .await
        .context("saving features")?;
    phases.lap(&mut clock, |p| &mut p.prune);
    // The model fit is minutes of CPU for a large shop: on a blocking thread too.
    let s = settings.clone();
    let (scorer, fit_seconds) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let scorer = population.fit(&s);
        (scorer, started.elapsed().as_secs_f64())
    })
    .await
    .context("the scoring thread")?;
    if let Some(purchase) = &scorer.models().purchase {
        store
            .save_model_fit(&fit_row(purchase, as_of, scorer.first_order(), fit_seconds))
            .await?;
    }
    let scorer = std::sync::Arc::new(scorer);
    let mut run = store
        .begin_score_run(as_of, &serde_json::to_value(scorer.models())?)
        .await?;
    let mut summary = Summary::new(top);
    let mut after = None;
    phases.lap(&mut clock, |p| &mut p.fit);
    // As above: a page's scores are written while the next page is read and scored.
    let mut pending: Option<Vec<winback_store::ScoreRow>> = None;
    loop {
        let read = async {
            let started = Instant::now();
            let page = store.features_page(after, page_size).await?;
            let read_s = started.elapsed().as_secs_f64();
            let Some(last) = page.last().map(|p| p.features.profile_id) else {
                return anyhow::Ok(None);
            };
            let scorer = scorer.clone();
            let scored = tokio::task::spawn_blocking(move || scorer.score_stored(&page))
                .await
                .context("the scoring thread")?;
            anyhow::Ok(Some((
                last,
                scored,
                read_s,
                started.elapsed().as_secs_f64() - read_s,
            )))
        };
        let written = pending.take();
        let run = &mut run;
        let write = async {
            let started = Instant::now();
            if let Some(rows) = written {
                store
                    .write_scores(run, &rows)
                    .await
                    .context("saving scores")?;
            }
            anyhow::Ok(started.elapsed().as_secs_f64())
        };
        let (page, wrote) = futures_util::future::try_join(read, write).await?;
        phases.write_scores += wrote;
        let Some((last, scored, read_s, score_s)) = page else {
            break;
        };
        phases.read_features += read_s;
        phases.score += score_s;
        after = Some(last);
        for s in &scored {
            summary.add(s);
            each(s);
        }
        pending = Some(rows(&scored));
    }
    clock = Instant::now();
    let stats = store.finish_score_run(run).await?;
    phases.lap(&mut clock, |p| &mut p.finish);
    tracing::info!(
        target: "winback::score",
        plan_s = phases.plan,
        rederive_s = phases.rederive,
        rederived = rederived,
        read_facts_s = phases.read_facts,
        features_s = phases.features,
        write_features_s = phases.write_features,
        prune_s = phases.prune,
        fit_s = phases.fit,
        read_features_s = phases.read_features,
        score_s = phases.score,
        write_scores_s = phases.write_scores,
        finish_s = phases.finish,
        "scoring run saved"
    );
    let models = std::sync::Arc::unwrap_or_clone(scorer).models;
    Ok(Outcome {
        summary,
        models,
        stats,
        rederived,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use winback_domain::{OrderFact, ProfileFacts};

    fn profile(id: i64, days: &[i64], category: u32) -> ProfileFacts {
        ProfileFacts {
            profile_id: id,
            external_id: format!("C{id}"),
            orders: days
                .iter()
                .map(|d| OrderFact {
                    at: Timestamp::from_micros(d * Timestamp::DAY_MICROS).unwrap(),
                    // Spend varies between customers, or the spend model has nothing to fit.
                    total_minor: 1500 + (id * 7919 + d) % 6000,
                    discounted: false,
                    category,
                })
                .collect(),
            currency: Some("EUR".into()),
            receives_email: true,
            ..ProfileFacts::default()
        }
    }

    #[test]
    fn scores_stages_priors_inactivity_and_priority() {
        let base = 19_000; // days since the epoch
        let mut facts = FactSet {
            categories: vec![String::new(), "books".into()],
            profiles: (0..200)
                .map(|i| {
                    // Customers differ a lot in rhythm, as real ones do.
                    let (g1, g2) = (2 + 3 * (1 << (i % 8)), 1 + 4 * (1 << ((i / 3) % 8)));
                    let days = [base, base + g1, base + g1 + g2, base + g1 + 2 * g2];
                    let orders = 1 + (i as usize * 7 / 3) % 4;
                    profile(i, &days[..orders], u32::from(i % 2 == 1))
                })
                .collect(),
        };
        facts.profiles.push(profile(1000, &[], 0));
        let as_of = Timestamp::from_micros((base + 400) * Timestamp::DAY_MICROS).unwrap();
        let features = compute_features(&facts, as_of);
        let (scored, models) = score(&labels(&facts), &features, &Settings::default()).unwrap();
        let labels: Vec<&str> = models
            .interval_priors
            .iter()
            .map(|(c, _)| c.as_str())
            .collect();
        assert_eq!(
            labels,
            ["books", "*"],
            "no stray group for missing categories"
        );
        assert_eq!(scored.len(), 201);
        let subscriber = scored.iter().find(|s| s.profile_id.get() == 1000).unwrap();
        assert_eq!(subscriber.stage, Stage::InactiveSubscriber);
        assert!(
            subscriber
                .inactive_by
                .iter()
                .any(|(n, _)| n == "inactive_subscriber"),
            "{:?}",
            subscriber.inactive_by
        );
        let one_time = scored.iter().find(|s| s.purchases == 1).unwrap();
        assert_eq!(one_time.stage, Stage::OneTimeBuyer);
        assert!(
            one_time
                .inactive_by
                .iter()
                .any(|(n, _)| n == "one_time_buyer")
        );
        // Ranked customers are in win-back stages, with reasons; others say why not.
        for s in &scored {
            match &s.priority {
                Some(p) => {
                    assert!(matches!(
                        s.stage,
                        Stage::AtRisk | Stage::Lapsed | Stage::Lost | Stage::OneTimeBuyer
                    ));
                    assert!(p.reasons.len() >= 3, "{:?}", p.reasons);
                }
                None => assert!(s.excluded.is_some()),
            }
        }
        let excluded: Vec<_> = scored.iter().filter_map(|s| s.excluded.clone()).collect();
        assert!(
            scored.iter().any(|s| s.priority.is_some()),
            "{:?} {excluded:?}",
            models.gamma_gamma_error
        );
        let rows = rows(&scored);
        assert!(
            rows.iter()
                .filter(|r| r.rfm.is_some())
                .all(|r| r.rfm.as_ref().unwrap().len() == 3)
        );
    }
}
