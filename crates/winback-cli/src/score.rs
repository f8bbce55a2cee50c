//! `winback score`: fits the customer-base models on the shop and places every profile in a
//! lifecycle stage with its reason, RFM segment, P(alive), expected purchases, CLV and usual
//! reorder interval. Results are printed (and returned to the demo); storing scores and stage
//! history per run comes with the rest of the customer-intelligence work.

use std::collections::HashMap;

use anyhow::{Context, Result};
use winback_domain::Timestamp;
use winback_scoring::{
    BgNbd, BgNbdParams, ClvSettings, Frequency, GammaGamma, GammaGammaParams, Gaps, IntervalPrior,
    RfmInput, Segment, SpendRecord, Stage, StageInput, StageRules, clv, group, rfm_scores,
};
use winback_store::ProfileHistory;

/// One scored profile.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scored {
    /// Profile id.
    pub profile_id: i64,
    /// External id of its first record.
    pub external_id: String,
    /// Name, when known.
    pub name: Option<String>,
    /// Lifecycle stage.
    pub stage: Stage,
    /// Why.
    pub reason: String,
    /// Purchase days.
    pub purchases: usize,
    /// Total spend in minor units.
    pub spend_minor: i64,
    /// Currency of the spend.
    pub currency: Option<String>,
    /// RFM segment (buyers only).
    pub segment: Option<Segment>,
    /// P(alive) (buyers only).
    pub p_alive: Option<f64>,
    /// Expected purchases in the next 90 days.
    pub expected_purchases_90d: Option<f64>,
    /// Predicted 12-month value in minor units.
    pub clv_minor: Option<f64>,
    /// Usual reorder interval, in words.
    pub reorder: Option<String>,
}

/// The fitted models.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Models {
    /// BG/NBD in weeks.
    pub bgnbd: BgNbdParams,
    /// Its log-likelihood.
    pub bgnbd_log_likelihood: f64,
    /// Gamma-Gamma on mean repeat spend (minor units), when it could be fitted.
    pub gamma_gamma: Option<GammaGammaParams>,
    /// Interval priors per category, and the population's under `*`.
    pub interval_priors: Vec<(String, IntervalPrior)>,
}

const DAY_MICROS: i64 = 86_400_000_000;

/// Mean spend of the repeat purchase days (the first purchase excluded), for repeat buyers.
fn mean_repeat_spend(h: &ProfileHistory) -> Option<f64> {
    let repeat = h.order_days.get(1..).filter(|r| !r.is_empty())?;
    Some(repeat.iter().map(|d| d.1 as f64).sum::<f64>() / repeat.len() as f64)
}

/// Scores every profile as of `as_of`.
pub fn score(histories: &[ProfileHistory], as_of: Timestamp) -> Result<(Vec<Scored>, Models)> {
    let today = as_of.as_micros().div_euclid(DAY_MICROS);
    let frequency = |h: &ProfileHistory| -> Option<Frequency> {
        let first = h.order_days.first()?.0;
        let last = h.order_days.last()?.0;
        Some(Frequency {
            x: (h.order_days.len() - 1) as f64,
            t_x: (last - first) as f64 / 7.0,
            t: ((today - first).max(last - first)) as f64 / 7.0,
        })
    };
    let buyers: Vec<Frequency> = histories.iter().filter_map(frequency).collect();
    let bg =
        BgNbd::fit(&group(&buyers)).context("fitting BG/NBD on the shop's purchase histories")?;
    let model = BgNbd(bg.params);
    let spend: Vec<SpendRecord> = histories
        .iter()
        .filter_map(|h| {
            mean_repeat_spend(h).map(|m| SpendRecord {
                x: (h.order_days.len() - 1) as f64,
                mean_value: m,
            })
        })
        .filter(|s| s.mean_value > 0.0)
        .collect();
    let gg = GammaGamma::fit(&spend).ok().map(|f| GammaGamma(f.params));
    // Interval priors: per category with enough repeat buyers, else the population's.
    let gaps_of = |h: &ProfileHistory| Gaps {
        n: h.order_days.len().saturating_sub(1) as u32,
        total_days: h
            .order_days
            .last()
            .zip(h.order_days.first())
            .map_or(0.0, |(l, f)| (l.0 - f.0) as f64),
    };
    // Every buyer informs the population prior; named categories also get their own.
    let all: Vec<Gaps> = histories
        .iter()
        .filter(|h| !h.order_days.is_empty())
        .map(gaps_of)
        .collect();
    let mut by_category: HashMap<String, Vec<Gaps>> = HashMap::new();
    for h in histories.iter().filter(|h| !h.order_days.is_empty()) {
        if let Some(c) = &h.category {
            by_category.entry(c.clone()).or_default().push(gaps_of(h));
        }
    }
    let population = IntervalPrior::fit(&all).ok().map(|f| f.params);
    let mut priors: HashMap<String, IntervalPrior> = HashMap::new();
    for (cat, gaps) in &by_category {
        if let Ok(f) = IntervalPrior::fit(gaps) {
            priors.insert(cat.clone(), f.params);
        }
    }
    let rules = StageRules::default();
    let settings = ClvSettings::default();
    let rfm_inputs: Vec<(usize, RfmInput)> = histories
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.order_days.is_empty())
        .map(|(i, h)| {
            let last = h.order_days.last().map_or(today, |d| d.0);
            (
                i,
                RfmInput {
                    recency_days: (today - last) as f64,
                    frequency: h.order_days.len() as f64,
                    monetary: h.order_days.iter().map(|d| d.1 as f64).sum(),
                },
            )
        })
        .collect();
    let rfm = rfm_scores(&rfm_inputs.iter().map(|(_, r)| *r).collect::<Vec<_>>());
    let segment_of: HashMap<usize, Segment> = rfm_inputs
        .iter()
        .zip(&rfm)
        .map(|((i, _), s)| (*i, Segment::of(*s)))
        .collect();

    let scored = histories
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let f = frequency(h);
            let prior = h
                .category
                .as_ref()
                .and_then(|c| priors.get(c))
                .or(population.as_ref());
            let reorder = match (prior, h.order_days.last()) {
                (Some(p), Some(last)) => p.reorder(gaps_of(h), (today - last.0) as f64),
                _ => None,
            };
            let spend_minor: i64 = h.order_days.iter().map(|d| d.1).sum();
            let mean_repeat = mean_repeat_spend(h).unwrap_or(0.0);
            let input = StageInput {
                orders: h.order_days.len() as u32,
                days_since_first_order: h.order_days.first().map(|d| (today - d.0) as f64),
                overdue_factor: reorder.as_ref().map(|r| r.overdue_factor),
                p_alive: f.map(|f| model.p_alive(f)),
                days_since_human_engagement: h
                    .last_human_engagement
                    .map(|t| (today - t.as_micros().div_euclid(DAY_MICROS)) as f64),
                receives_email: h.receives_email,
            };
            let (stage, reason) = rules.stage(&input);
            Scored {
                profile_id: h.profile_id,
                external_id: h.external_id.clone(),
                name: h.name.clone(),
                stage,
                reason: reorder
                    .as_ref()
                    .filter(|_| {
                        matches!(
                            stage,
                            Stage::Active | Stage::AtRisk | Stage::Lapsed | Stage::Lost
                        )
                    })
                    .map_or(reason, |r| r.explanation.clone()),
                purchases: h.order_days.len(),
                spend_minor,
                currency: h.currency.clone(),
                segment: segment_of.get(&i).copied(),
                p_alive: input.p_alive,
                expected_purchases_90d: f.map(|f| model.expected_purchases(f, 90.0 / 7.0)),
                clv_minor: match (f, &gg) {
                    (Some(f), Some(gg)) => Some(clv(&model, gg, f, mean_repeat, &settings)),
                    _ => None,
                },
                reorder: reorder.map(|r| r.explanation),
            }
        })
        .collect();
    let mut interval_priors: Vec<(String, IntervalPrior)> = priors.into_iter().collect();
    interval_priors.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(p) = population {
        interval_priors.push(("*".into(), p));
    }
    Ok((
        scored,
        Models {
            bgnbd: bg.params,
            bgnbd_log_likelihood: bg.log_likelihood,
            gamma_gamma: gg.map(|g| g.0),
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
            expected_90d: s.expected_purchases_90d,
            clv_minor: s.clv_minor,
            reorder: s.reorder.clone(),
            purchases: s.purchases as i64,
            spend_minor: s.spend_minor,
            currency: s.currency.clone(),
        })
        .collect()
}

/// Scores the store's profiles and saves the run.
pub async fn score_and_save<S: winback_store::Store>(
    store: &S,
    as_of: Timestamp,
) -> Result<(Vec<Scored>, Models, winback_store::RunStats)> {
    let histories = store.profile_histories().await?;
    let (scored, models) = score(&histories, as_of)?;
    let stats = store
        .save_scores(as_of, &serde_json::to_value(&models)?, &rows(&scored))
        .await?;
    Ok((scored, models, stats))
}

/// Prints the stage funnel, the models and the most valuable customers slipping away.
pub fn print(scored: &[Scored], models: &Models, top: usize) {
    use crate::report::{money, n};
    let total = scored.len().max(1);
    println!("Lifecycle stages of {} people:", n(scored.len() as u64));
    for stage in Stage::ALL {
        let c = scored.iter().filter(|s| s.stage == stage).count();
        let bar = "█".repeat((c * 40).div_ceil(total).min(40));
        println!(
            "  {:<20} {:>8} {:>5.1}%  {bar}",
            stage.as_str().replace('_', " "),
            n(c as u64),
            100.0 * c as f64 / total as f64
        );
    }
    let b = models.bgnbd;
    println!(
        "Purchase model (BG/NBD, weeks): r {:.4}, alpha {:.4}, a {:.4}, b {:.4}; log-likelihood {:.1}",
        b.r, b.alpha, b.a, b.b, models.bgnbd_log_likelihood
    );
    if let Some(g) = models.gamma_gamma {
        println!(
            "Spend model (Gamma-Gamma, minor units): p {:.3}, q {:.3}, gamma {:.1}",
            g.p, g.q, g.gamma
        );
    }
    for (cat, p) in &models.interval_priors {
        if let Some(d) = (p.shape > 1.0).then(|| p.rate / (p.shape - 1.0)) {
            let label = if cat == "*" {
                "all categories"
            } else {
                cat.as_str()
            };
            println!("  usual reorder interval, {label}: {:.0} days", d);
        }
    }
    let mut slipping: Vec<&Scored> = scored
        .iter()
        .filter(|s| matches!(s.stage, Stage::AtRisk | Stage::Lapsed | Stage::OneTimeBuyer))
        .collect();
    slipping.sort_by(|a, b| {
        b.clv_minor
            .unwrap_or(0.0)
            .total_cmp(&a.clv_minor.unwrap_or(0.0))
    });
    println!(
        "The {} most valuable customers slipping away (at risk, lapsed, one-time), by predicted 12-month value:",
        top.min(slipping.len())
    );
    for s in slipping.iter().take(top) {
        let cur = s.currency.as_deref().unwrap_or("EUR");
        println!(
            "  {:<12} {:<22} {:<15} spent {:>12}  P(alive) {:.2}  12-month value {:>10}  {}",
            s.external_id,
            s.name.as_deref().unwrap_or("-"),
            s.stage.as_str().replace('_', " "),
            money(s.spend_minor, cur),
            s.p_alive.unwrap_or(0.0),
            money(s.clv_minor.unwrap_or(0.0).round() as i64, cur),
            s.reason
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(id: i64, days: &[i64], category: Option<&str>) -> ProfileHistory {
        ProfileHistory {
            profile_id: id,
            external_id: format!("C{id}"),
            name: None,
            order_days: days.iter().map(|d| (*d, 2500)).collect(),
            currency: Some("EUR".into()),
            category: category.map(Into::into),
            last_human_engagement: None,
            receives_email: true,
        }
    }

    #[test]
    fn uncategorised_orders_only_feed_the_population_prior() {
        let base = 19_000; // days since the epoch
        let mut histories: Vec<ProfileHistory> = (0..200)
            .map(|i| {
                // Customers differ a lot in rhythm, as real ones do.
                let (g1, g2) = (2 + 3 * (1 << (i % 8)), 1 + 4 * (1 << ((i / 3) % 8)));
                let days = [base, base + g1, base + g1 + g2, base + g1 + 2 * g2];
                let orders = 1 + (i as usize * 7 / 3) % 4;
                history(
                    i,
                    &days[..orders],
                    if i % 2 == 0 { None } else { Some("books") },
                )
            })
            .collect();
        histories.push(history(1000, &[], None));
        let as_of = Timestamp::from_micros((base + 400) * DAY_MICROS).unwrap();
        let (scored, models) = score(&histories, as_of).unwrap();
        let labels: Vec<&str> = models
            .interval_priors
            .iter()
            .map(|(c, _)| c.as_str())
            .collect();
        assert_eq!(
            labels,
            ["books", "*"],
            "one population prior, no stray group for missing categories"
        );
        assert_eq!(scored.len(), 201);
        assert_eq!(
            scored.iter().find(|s| s.profile_id == 1000).unwrap().stage,
            Stage::InactiveSubscriber
        );
    }
}
