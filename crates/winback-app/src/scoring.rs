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

/// Scores every profile from its features; `labels` are the profiles' labels, in the same
/// order.
pub fn score(
    labels: &[Label],
    features: &[Features],
    s: &Settings,
) -> Result<(Vec<Scored>, Models)> {
    let buyers: Vec<Frequency> = features.iter().filter_map(frequency).collect();
    // A shop whose histories the model cannot fit (too few repeat buyers, or histories too
    // regular) is still scored: features, stages by rule, RFM, reorder rhythm and priority.
    // Every fit ends: a budget of evaluations and the configured time limit.
    let limits = winback_scoring::FitLimits {
        time_limit: Some(std::time::Duration::from_secs(
            s.scoring.fit_time_limit_seconds.max(1),
        )),
        ..winback_scoring::FitLimits::default()
    };
    let grouped = group(&buyers);
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
    let model = fitted.as_ref().map(|f| f.model());
    let spend: Vec<SpendRecord> = features
        .iter()
        .filter_map(|f| {
            f.mean_repeat_spend_minor.map(|m| SpendRecord {
                x: f64::from(f.order_days - 1),
                mean_value: m,
            })
        })
        .filter(|s| s.mean_value > 0.0)
        .collect();
    let (gg, gg_error) = match GammaGamma::fit(&spend) {
        Ok(f) => (Some(GammaGamma(f.params)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    // Interval priors: every buyer informs the population's; named categories get their own.
    let all: Vec<Gaps> = features.iter().filter(|f| f.orders > 0).map(gaps).collect();
    let mut by_category: HashMap<&str, Vec<Gaps>> = HashMap::new();
    for f in features.iter().filter(|f| f.orders > 0) {
        if let Some(c) = &f.main_category {
            by_category.entry(c).or_default().push(gaps(f));
        }
    }
    let population = IntervalPrior::fit(&all).ok().map(|f| f.params);
    let priors: HashMap<&str, IntervalPrior> = by_category
        .iter()
        .filter_map(|(c, g)| IntervalPrior::fit(g).ok().map(|f| (*c, f.params)))
        .collect();
    let rfm_inputs: Vec<(usize, RfmInput)> = features
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            Some((
                i,
                RfmInput {
                    recency_days: f.recency_days?,
                    frequency: f64::from(f.order_days),
                    monetary: f.total_spend_minor as f64,
                },
            ))
        })
        .collect();
    let rfm = rfm_scores(&rfm_inputs.iter().map(|(_, r)| *r).collect::<Vec<_>>());
    let rfm_of: HashMap<usize, RfmScore> = rfm_inputs
        .iter()
        .zip(&rfm)
        .map(|((i, _), s)| (*i, *s))
        .collect();
    let horizon_weeks = s.scoring.horizon_days / 7.0;
    // Once per distinct history, not once per customer.
    let mut predictor = model
        .as_ref()
        .map(|m| Predictor::new(m, horizon_weeks, s.clv));

    let scored = features
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(i, (f, p))| {
            let h = frequency(f);
            let prior = f
                .main_category
                .as_deref()
                .and_then(|c| priors.get(c))
                .or(population.as_ref());
            let reorder = match (prior, f.recency_days) {
                (Some(prior), Some(recency)) => prior.reorder(gaps(f), recency.floor()),
                _ => None,
            };
            let predicted = h.zip(predictor.as_mut()).map(|(h, p)| p.predict(h));
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
            let clv_minor = match (predicted.zip(h), &gg, f.mean_order_minor) {
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
            let rfm = rfm_of.get(&i).copied();
            Scored {
                profile_id: winback_domain::ProfileId::new(f.profile_id),
                external_id: p.external_id.clone(),
                name: p.name.clone(),
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
        })
        .collect();
    let mut interval_priors: Vec<(String, IntervalPrior)> =
        priors.into_iter().map(|(c, p)| (c.to_owned(), p)).collect();
    interval_priors.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(p) = population {
        interval_priors.push(("*".into(), p));
    }
    Ok((
        scored,
        Models {
            purchase: fitted,
            purchase_error,
            gamma_gamma: gg.map(|g| g.0),
            gamma_gamma_error: gg_error,
            interval_priors,
        },
    ))
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
    save(store, as_of, &[], &dirty, false).await?;
    Ok(Refresh {
        profiles,
        orders,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn save(
    store: &winback_store::SqlStore,
    as_of: Timestamp,
    features: &[Features],
    cleared: &[i64],
    replace_all: bool,
) -> Result<()> {
    store
        .save_features(as_of, features, cleared, replace_all)
        .await
        .context("saving features")
}

/// Scores the store's profiles and saves the run, the features and the model fits.
pub async fn score_and_save(
    store: &winback_store::SqlStore,
    as_of: Timestamp,
    settings: &Settings,
) -> Result<(Vec<Scored>, Models, winback_store::RunStats)> {
    let dirty = store.dirty_customers().await?;
    // Facts a chunk at a time; only the features (and labels) of the whole base are kept.
    let (mut features, mut labels_all) = (Vec::new(), Vec::new());
    for scope in store.fact_chunks(false, FACT_CHUNK).await? {
        let facts = store.profile_facts(scope).await?;
        // Feature computation is CPU work: off the async workers, so a worker's engine passes
        // go on meanwhile.
        let (f, l) =
            tokio::task::spawn_blocking(move || (compute_features(&facts, as_of), labels(&facts)))
                .await
                .context("the scoring thread")?;
        features.extend(f);
        labels_all.extend(l);
    }
    // The model fit is minutes of CPU for a large shop: on a blocking thread too.
    let s = settings.clone();
    let (features, fitted, fit_seconds) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let fitted = score(&labels_all, &features, &s);
        (features, fitted, started.elapsed().as_secs_f64())
    })
    .await
    .context("the scoring thread")?;
    save(store, as_of, &features, &dirty, true).await?;
    let (scored, models) = fitted?;
    let first = features.iter().filter_map(|f| f.first_order_at).min();
    if let Some(purchase) = &models.purchase {
        store
            .save_model_fit(&fit_row(purchase, as_of, first, fit_seconds))
            .await?;
    }
    let stats = store
        .save_scores(as_of, &serde_json::to_value(&models)?, &rows(&scored))
        .await?;
    Ok((scored, models, stats))
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
