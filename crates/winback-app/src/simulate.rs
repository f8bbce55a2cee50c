//! The programme simulation behind `winback simulate` and `winback demo`: the real engine and
//! store run campaigns over a scored shop in virtual time, while simulated customers buy at the
//! rate their fitted purchase model predicts and respond to messages and offers according to
//! the response model (`[simulation]`). Every response comes back through the importer, as
//! real events and orders would.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use winback_channels::EmlOutbox;
use winback_domain::{Clock, ManualClock, Timestamp};
use winback_engine::definition::OfferKind;
use winback_engine::file_outbox::FileOutbox;
use winback_engine::ports::{Dispatch, JourneyStore, SendOutcome, Transport};
use winback_engine::simulate::{Recipient, ResponseModel, baseline_purchase_probability, respond};
use winback_engine::{Campaign, Engine, PassStats};
use winback_import::SourceKind;
use winback_store::{ArmResult, SqlStore, ingest};

use crate::config::Config;
use crate::scoring::Scored;

/// A transport that delivers into a file outbox and remembers each delivery for the response
/// model.
struct Recording {
    /// Email as `.eml` files (rendered, signed links, bulk-sender headers), SMS as the provider
    /// would get them (rendered text, footer, segments), webhooks as JSON files; in one folder.
    outbox: winback_channels::Routed<EmlOutbox, winback_channels::sms::SmsOutbox, FileOutbox>,
    delivered: Mutex<Vec<Dispatch>>,
    hard_bounce: Mutex<ChaCha8Rng>,
    bounce_rate: f64,
}

impl Transport for Recording {
    async fn deliver(&self, m: &Dispatch) -> SendOutcome {
        if m.channel == winback_engine::MessageChannel::Email {
            let dead = self
                .hard_bounce
                .lock()
                .expect("rng lock")
                .gen_bool(self.bounce_rate.clamp(0.0, 1.0));
            if dead {
                return SendOutcome::HardBounce("550 5.1.1 mailbox unavailable (simulated)".into());
            }
        }
        let outcome = self.outbox.deliver(m).await;
        if matches!(outcome, SendOutcome::Sent { .. }) {
            self.delivered
                .lock()
                .expect("delivery lock")
                .push(m.clone());
        }
        outcome
    }
}

/// One simulated customer.
struct Person {
    external_id: String,
    p_alive: f64,
    daily: f64,
    mean_order_minor: i64,
}

/// What happened in the simulated months.
pub struct Outcome {
    /// Campaigns with their arms.
    pub campaigns: Vec<(Campaign, Vec<ArmResult>)>,
    /// Engine totals.
    pub totals: PassStats,
    /// Orders the simulated customers placed (with and without messages).
    pub orders: u64,
    /// Responses imported as events.
    pub events: u64,
    /// Deliveries of a key already in the outbox (must be 0).
    pub repeated: u64,
    /// Calls customer service made from the campaigns' call lists, by outcome.
    pub calls: std::collections::BTreeMap<String, u64>,
    /// Each campaign arm's calls.
    pub call_tallies: Vec<winback_store::calls::CallTally>,
    /// Each campaign arm's wallet passes.
    pub wallet_tallies: Vec<winback_store::wallet::WalletTally>,
    /// Where the messages are.
    pub outbox: PathBuf,
    /// When the simulation ended.
    pub end: Timestamp,
}

/// Runs `campaigns` for `months` from `start` over the scored shop in `store`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: &Config,
    store: &SqlStore,
    scored: &[Scored],
    campaigns: &[(PathBuf, String, Campaign)],
    start: Timestamp,
    months: u32,
    seed: u64,
    outbox_dir: &Path,
    mut progress: impl FnMut(u32, &PassStats),
) -> Result<Outcome> {
    let settings = config.engine_settings()?;
    let model: &ResponseModel = &config.simulation;
    let clock = ManualClock::new(start);
    crate::campaigns::apply(store, clock.now(), campaigns).await?;
    for (_, _, c) in campaigns {
        store
            .set_campaign_status(&c.name, winback_engine::CampaignStatus::Active, start)
            .await?;
    }
    if outbox_dir.exists() {
        std::fs::remove_dir_all(outbox_dir)
            .with_context(|| format!("clearing {}", outbox_dir.display()))?;
    }
    let sim_clock: std::sync::Arc<dyn winback_domain::Clock> = std::sync::Arc::new(clock.clone());
    let transport = Recording {
        outbox: winback_channels::Routed {
            email: EmlOutbox::new(config.composer(sim_clock)?, outbox_dir)
                .with_context(|| format!("creating {}", outbox_dir.display()))?,
            sms: winback_channels::sms::SmsOutbox::new(
                outbox_dir,
                &config.email.shop_name,
                &config.sms.sender,
            )
            .with_context(|| format!("creating {}", outbox_dir.display()))?,
            webhook: FileOutbox::new(outbox_dir)
                .with_context(|| format!("creating {}", outbox_dir.display()))?,
        },
        delivered: Mutex::new(Vec::new()),
        hard_bounce: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0xb0b)),
        bounce_rate: model.hard_bounce_rate,
    };
    let horizon = config.scoring.horizon_days;
    let people: HashMap<i64, Person> = scored
        .iter()
        .map(|s| {
            let expected = s.expected_purchases.unwrap_or(0.0);
            let mean = if s.purchases > 0 {
                s.spend_minor / i64::from(s.purchases.max(1))
            } else {
                4_500
            };
            (
                s.profile_id.get(),
                Person {
                    external_id: s.external_id.clone(),
                    p_alive: s.p_alive.unwrap_or(0.5),
                    daily: baseline_purchase_probability(expected, horizon),
                    mean_order_minor: mean.max(500),
                },
            )
        })
        .collect();
    let by_external: HashMap<&str, &Person> = people
        .values()
        .map(|p| (p.external_id.as_str(), p))
        .collect();
    let mut ids: Vec<i64> = people.keys().copied().collect();
    ids.sort_unstable();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let engine = Engine::new(store, &transport, &clock, settings);
    // Responses wait in time order until the clock reaches them.
    let mut queue: Vec<(Timestamp, Row)> = Vec::new();
    let mut totals = PassStats::default();
    let (mut orders, mut events, mut order_no) = (0u64, 0u64, 0u64);
    let currency = config.default_currency.clone();
    let days = months * 30;
    // Days run from midnight UTC of the start date.
    let first_midnight = Timestamp::from_micros(start.day_number() * Timestamp::DAY_MICROS)
        .context("start date out of range")?;
    // Customer service works the campaigns' call lists once a day, after the pass.
    let mut lists: Vec<String> = campaigns
        .iter()
        .flat_map(|(_, _, c)| c.steps.iter())
        .filter_map(|s| match &s.action {
            winback_engine::definition::Action::Call { list } => Some(list.clone()),
            _ => None,
        })
        .collect();
    lists.sort();
    lists.dedup();
    let call_settings = config.call_settings()?;
    // Pass holders who added their pass to a wallet (a simulated device each).
    let mut in_wallet: std::collections::HashSet<String> = Default::default();
    let mut calls: std::collections::BTreeMap<String, u64> = Default::default();
    for day in 0..days {
        let midnight = first_midnight.plus_seconds(i64::from(day + 1) * 86_400);
        // Customers who buy today without any message, at the model's rate.
        for id in &ids {
            let p = &people[id];
            if p.daily > 0.0 && rng.gen_bool(p.daily.min(1.0)) {
                order_no += 1;
                let at = midnight.plus_seconds(rng.gen_range(8 * 3600..22 * 3600));
                let total = jitter(&mut rng, p.mean_order_minor);
                queue.push((
                    at,
                    Row::Order(order_row(
                        order_no,
                        &p.external_id,
                        at,
                        total,
                        0,
                        &currency,
                        "",
                    )),
                ));
            }
        }
        // Some customers leave a cart behind (the cart reminder's trigger).
        for id in &ids {
            let p = &people[id];
            if p.daily > 0.0 && rng.gen_bool((p.daily * 0.4).min(1.0)) {
                let at = midnight.plus_seconds(rng.gen_range(7 * 3600..14 * 3600));
                queue.push((
                    at,
                    Row::Event(format!(
                        "{{\"event_id\":\"sim-cart-{day}-{id}\",\"customer_id\":{},\"at\":\"{at}\",\"type\":\"cart_abandoned\",\"value_minor\":{},\"currency\":\"{currency}\"}}\n",
                        serde_json::Value::String(p.external_id.clone()),
                        jitter(&mut rng, p.mean_order_minor)
                    )),
                ));
            }
        }
        // Half way, the shop fixes what quality-leavers complained about (seed 004).
        if day == days / 2 {
            store.signal("assortment_updated", midnight).await?;
        }
        // One pass a day at 10:00 UTC (inside the default send window in European zones).
        for hour in [10i64] {
            let now = midnight.plus_seconds(hour * 3600);
            clock.set(now);
            let (o, e) = import_due(config, store, &mut queue, now).await?;
            orders += o;
            events += e;
            if o + e > 0 {
                crate::scoring::refresh_features(store, now).await?;
            }
            let s = engine.run_until_idle(4).await?;
            totals.add(&s);
            let delivered: Vec<Dispatch> =
                std::mem::take(&mut *transport.delivered.lock().expect("delivery lock"));
            for d in delivered {
                let Some(p) = by_external.get(d.customer.as_str()) else {
                    continue;
                };
                let who = Recipient {
                    p_alive: p.p_alive,
                    email_inactive: p.p_alive < 0.2,
                    sms: d.channel == winback_engine::MessageChannel::Sms,
                };
                let offer_kind = d.offer.as_ref().map(|o| o.kind.clone());
                let asks = d.template.contains("ask-why") || d.template.contains("survey");
                let r = respond(model, who, offer_kind.as_ref(), asks, &mut rng);
                let base = now;
                if let Some(h) = r.open_after_hours {
                    let at = base.plus_seconds(i64::from(h) * 3600 + 60);
                    queue.push((at, Row::Event(event_row(&d, "email_opened", at, "\"user_agent\":\"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Thunderbird/128.0\""))));
                    if r.click {
                        let at = at.plus_seconds(120);
                        queue.push((
                            at,
                            Row::Event(event_row(
                                &d,
                                "email_clicked",
                                at,
                                "\"url\":\"https://shop.example/\"",
                            )),
                        ));
                    }
                    if r.survey_answer {
                        let reason = [
                            "too_expensive",
                            "forgot_us",
                            "quality",
                            "bad_experience",
                            "other",
                        ][rng.gen_range(0..5)];
                        let at = at.plus_seconds(300);
                        queue.push((
                            at,
                            Row::Event(event_row(
                                &d,
                                "survey_answered",
                                at,
                                &format!("\"reason\":\"{reason}\""),
                            )),
                        ));
                    }
                }
                if let Some(days) = r.order_after_days {
                    order_no += 1;
                    let at =
                        base.plus_seconds(i64::from(days) * 86_400 + rng.gen_range(3600..36_000));
                    let mut total = jitter(&mut rng, p.mean_order_minor);
                    let (mut discount, mut code) = (0, String::new());
                    if let Some(o) = &d.offer {
                        if o.expires_at >= at {
                            total = total.max(o.min_order_minor);
                            discount = match &o.kind {
                                OfferKind::Fixed { amount_minor } => (*amount_minor).min(total),
                                OfferKind::Percent { percent } => total * i64::from(*percent) / 100,
                                OfferKind::FreeShipping => 495,
                                OfferKind::FreeProduct { cost_minor, .. } => *cost_minor,
                            };
                            code = o.code.clone();
                        }
                    }
                    queue.push((
                        at,
                        Row::Order(order_row(
                            order_no,
                            &d.customer,
                            at,
                            total,
                            discount,
                            &currency,
                            &code,
                        )),
                    ));
                }
                if r.unsubscribe {
                    let at = base.plus_seconds(3 * 3600);
                    queue.push((at, Row::Event(event_row(&d, "email_unsubscribed", at, ""))));
                } else if r.complaint {
                    let at = base.plus_seconds(3 * 3600);
                    queue.push((at, Row::Event(event_row(&d, "email_complained", at, ""))));
                }
            }
            // Wallet passes issued or changed since the last pass: some holders add a new pass
            // to their wallet (registering a device, as the PassKit web service would), and a
            // pass in a wallet, its code at hand, sometimes brings an order with the code.
            let since = now.plus_seconds(-86_400);
            for r in store
                .pool()
                .fetch(
                    "SELECT w.serial, w.version, w.offer_code, c.external_id FROM wallet_passes w JOIN customers c ON c.id = w.profile_id \
                     WHERE w.updated_at > $1 AND w.updated_at <= $2 ORDER BY w.serial",
                    &[
                        winback_store::db::Val::from(since.as_micros()),
                        winback_store::db::Val::from(now.as_micros()),
                    ],
                )
                .await?
            {
                let serial = r.text(0)?;
                let Some(p) = by_external.get(r.text(3)?.as_str()) else {
                    continue;
                };
                let mut chance = model.order_given_pass * (0.3 + 0.7 * p.p_alive);
                if r.i64(1)? == 1 {
                    if !rng.gen_bool(model.wallet_add_rate.clamp(0.0, 1.0)) {
                        continue;
                    }
                    store
                        .register_wallet_device(
                            &format!("sim-device-{serial}"),
                            &serial,
                            &format!("{:064x}", rng.r#gen::<u64>()),
                            now,
                        )
                        .await?;
                    in_wallet.insert(serial);
                } else if in_wallet.contains(&serial) {
                    chance *= 0.5;
                } else {
                    continue;
                }
                if let Some(code) = r.opt_text(2)? {
                    if rng.gen_bool(chance.clamp(0.0, 0.95)) {
                        order_no += 1;
                        let at = now.plus_seconds(
                            i64::from(rng.gen_range(1..20u32)) * 86_400 + rng.gen_range(3600..36_000),
                        );
                        let (total, discount) =
                            offer_order(store, &code, jitter(&mut rng, p.mean_order_minor)).await?;
                        queue.push((
                            at,
                            Row::Order(order_row(
                                order_no,
                                &p.external_id,
                                at,
                                total,
                                discount,
                                &currency,
                                &code,
                            )),
                        ));
                    }
                }
            }
            // The agents call whoever may be called now, and record what each call came to
            // through the same path as `POST /v1/call-outcomes`.
            for list in &lists {
                let rows = store.call_list(list, &call_settings, now).await?.rows;
                for row in rows.iter().filter(|r| r.callable_now) {
                    let p_alive = by_external
                        .get(row.customer_id.as_str())
                        .map_or(0.5, |p| p.p_alive);
                    let r = winback_engine::simulate::respond_to_call(model, p_alive, &mut rng);
                    let report = winback_store::calls::CallReport {
                        task: row.task,
                        outcome: r.outcome,
                        reason: r.reason,
                        agent: Some("simulated agent".into()),
                        note: None,
                        at: now,
                        key: Some(format!("sim-{day}-{}", row.task)),
                    };
                    if store
                        .record_call_outcome(&report, &call_settings, now)
                        .await?
                        .is_ok()
                    {
                        *calls.entry(r.outcome.as_str().to_owned()).or_default() += 1;
                    }
                    if let (Some(days), Some(code)) = (r.order_after_days, &row.offer_code) {
                        order_no += 1;
                        let at = now
                            .plus_seconds(i64::from(days) * 86_400 + rng.gen_range(3600..36_000));
                        let mean = by_external
                            .get(row.customer_id.as_str())
                            .map_or(4_500, |p| p.mean_order_minor);
                        let (total, discount) =
                            offer_order(store, code, jitter(&mut rng, mean)).await?;
                        queue.push((
                            at,
                            Row::Order(order_row(
                                order_no,
                                &row.customer_id,
                                at,
                                total,
                                discount,
                                &currency,
                                code,
                            )),
                        ));
                    }
                }
            }
        }
        if day % 30 == 29 {
            // Month end: the shop re-scores, so stages follow what customers did.
            crate::scoring::score_and_save(
                store,
                clock.now(),
                &config.scoring_settings(),
                crate::scoring::Facts::All,
                0,
                |_| {},
            )
            .await?;
            progress(day / 30 + 1, &totals);
        }
    }
    let end = start.plus_seconds(i64::from(days) * 86_400);
    clock.set(end);
    let (o, e) = import_due(config, store, &mut queue, end).await?;
    orders += o;
    events += e;
    let mut results = Vec::new();
    let stored = store.campaigns().await?;
    for (_, _, c) in campaigns {
        if let Some(rec) = stored.iter().find(|r| r.name == c.name) {
            results.push((
                c.clone(),
                store
                    .campaign_results(rec.id, c.conversion_window.seconds())
                    .await?,
            ));
        }
    }
    Ok(Outcome {
        campaigns: results,
        totals,
        orders,
        events,
        repeated: transport.outbox.email.files().repeated()
            + transport.outbox.sms.files().repeated()
            + transport.outbox.webhook.files().repeated(),
        calls,
        call_tallies: store.call_tallies().await?,
        wallet_tallies: store.wallet_tallies().await?,
        outbox: outbox_dir.to_path_buf(),
        end,
    })
}

/// An order that uses offer `code`: its total at least the offer's minimum, and the discount the
/// code gives.
async fn offer_order(store: &SqlStore, code: &str, total: i64) -> Result<(i64, i64)> {
    let rows = store
        .pool()
        .fetch(
            "SELECT kind, amount_minor, percent, min_order_minor FROM offers WHERE code = $1",
            &[winback_store::db::Val::from(code)],
        )
        .await?;
    let Some(o) = rows.first() else {
        return Ok((total, 0));
    };
    let total = total.max(o.opt_i64("min_order_minor")?.unwrap_or(0));
    let discount = match o.text("kind")?.as_str() {
        "fixed" => o.opt_i64("amount_minor")?.unwrap_or(0).min(total),
        "percent" => total * o.opt_i64("percent")?.unwrap_or(0) / 100,
        "free_shipping" => 495,
        _ => o.opt_i64("amount_minor")?.unwrap_or(0),
    };
    Ok((total, discount))
}

enum Row {
    Order(String),
    Event(String),
}

fn jitter(rng: &mut ChaCha8Rng, mean: i64) -> i64 {
    let f: f64 = rng.gen_range(0.6..1.4);
    ((mean as f64 * f) as i64).max(100)
}

fn major(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

fn order_row(
    no: u64,
    customer: &str,
    at: Timestamp,
    total: i64,
    discount: i64,
    currency: &str,
    code: &str,
) -> String {
    format!(
        "SIM-{no},{customer},{at},{},{},{currency},{code},paid\n",
        major(total),
        major(discount)
    )
}

fn event_row(d: &Dispatch, kind: &str, at: Timestamp, extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    // Survey answers stand on their own; the other responses name the message.
    let message = if kind == "survey_answered" {
        String::new()
    } else {
        format!(
            ",\"message_id\":{}",
            serde_json::Value::String(d.key.to_string())
        )
    };
    format!(
        "{{\"event_id\":\"sim-{kind}-{}\",\"customer_id\":{},\"at\":\"{at}\",\"type\":\"{kind}\"{message}{sep}{extra}}}\n",
        d.key.as_str().replace('/', "-"),
        serde_json::Value::String(d.customer.clone()),
    )
}

/// Imports the queued responses whose time has come.
async fn import_due(
    config: &Config,
    store: &SqlStore,
    queue: &mut Vec<(Timestamp, Row)>,
    now: Timestamp,
) -> Result<(u64, u64)> {
    let mut orders = String::from(
        "order_id,customer_id,ordered_at,total,discount,currency,discount_codes,status\n",
    );
    let mut events = String::new();
    let (mut no, mut ne) = (0u64, 0u64);
    let mut keep = Vec::with_capacity(queue.len());
    for (at, row) in queue.drain(..) {
        if at > now {
            keep.push((at, row));
            continue;
        }
        match row {
            Row::Order(r) => {
                orders.push_str(&r);
                no += 1;
            }
            Row::Event(r) => {
                events.push_str(&r);
                ne += 1;
            }
        }
    }
    *queue = keep;
    if no > 0 {
        ingest_text(
            config,
            store,
            SourceKind::Orders,
            "simulated-orders.csv",
            orders,
            now,
        )
        .await?;
    }
    if ne > 0 {
        ingest_text(
            config,
            store,
            SourceKind::Events,
            "simulated-events.jsonl",
            events,
            now,
        )
        .await?;
    }
    Ok((no, ne))
}

async fn ingest_text(
    config: &Config,
    store: &SqlStore,
    kind: SourceKind,
    name: &str,
    text: String,
    now: Timestamp,
) -> Result<()> {
    let options = config.import_options(now)?;
    let rows = winback_import::from_reader(
        kind,
        Arc::from(name),
        Cursor::new(text.into_bytes()),
        &options,
        None,
    )?;
    let report = ingest::ingest(
        store,
        rows,
        &ingest::IngestOptions {
            file: Arc::from(name),
            mode: ingest::Mode::Strict,
            max_errors: 5,
            batch_rows: 5_000,
            now,
        },
        |_| {},
        |_| {},
    )
    .await?;
    anyhow::ensure!(
        report.committed,
        "simulated {name} was refused: {:?}",
        report.errors
    );
    // Recorded like any import: its time is how far the simulated data runs, which is where
    // reports read "as of" (see `winback_report::as_of`).
    store
        .record_import_run(&winback_store::ImportRun {
            kind: kind.as_str().into(),
            file: name.into(),
            started_at: now,
            finished_at: now,
            rows_ok: report.rows_ok,
            rows_rejected: report.rows_rejected,
            mode: ingest::Mode::Strict.as_str().into(),
        })
        .await?;
    Ok(())
}

/// One arm's forecast figures.
pub struct Forecast {
    /// Conversion rate.
    pub rate: f64,
    /// Conversions above the holdout's rate.
    pub incremental_conversions: f64,
    /// Revenue above the holdout's, minor units.
    pub incremental_revenue_minor: f64,
    /// Message cost, minor units.
    pub message_cost_minor: i64,
    /// (incremental margin − discount − messages) ÷ (discount + messages).
    pub roi: Option<f64>,
}

/// Forecast of one arm against the campaign's holdout.
pub fn forecast(
    arm: &ArmResult,
    holdout: Option<&ArmResult>,
    model: &ResponseModel,
    margin: f64,
) -> Forecast {
    let rate = arm.converted as f64 / arm.enrolled.max(1) as f64;
    let (h_rate, h_rev) = holdout
        .filter(|h| h.enrolled > 0)
        .map(|h| {
            (
                h.converted as f64 / h.enrolled as f64,
                h.revenue_minor as f64 / h.enrolled as f64,
            )
        })
        .unwrap_or((0.0, 0.0));
    let n = arm.enrolled as f64;
    let sent = arm.messages.get("sent").copied().unwrap_or(0);
    let message_cost_minor = sent * model.email_cost_minor;
    let incremental_revenue_minor = arm.revenue_minor as f64 - h_rev * n;
    let cost = (arm.discount_minor + message_cost_minor) as f64;
    let roi = (cost > 0.0).then(|| (incremental_revenue_minor * margin - cost) / cost);
    Forecast {
        rate,
        incremental_conversions: (rate - h_rate) * n,
        incremental_revenue_minor,
        message_cost_minor,
        roi,
    }
}
