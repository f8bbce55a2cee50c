//! The report's read model: each arm's contacts, buyers and revenue, message funnels by step,
//! variant, channel, locale and provider, campaign counts and offer codes.

use super::*;

/// One arm of a campaign: a variant, or the holdout.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ArmResult {
    /// Variant id (the holdout keeps the variant it would have had).
    pub variant: String,
    /// Held out.
    pub holdout: bool,
    /// Enrolments.
    pub enrolled: i64,
    /// Enrolments whose contact received at least one message (the relay or provider accepted
    /// it); 0 for the holdout, and for contacts whose every message was dropped.
    pub messaged: i64,
    /// Enrolments with an order within the conversion window after entering.
    pub converted: i64,
    /// Revenue of those orders within the window, minor units.
    pub revenue_minor: i64,
    /// Sum over enrolments of (their revenue in the window)², for the revenue variance.
    pub revenue_sq: f64,
    /// Sum over buyers of ln(their revenue in the window, at least 1 minor unit), for the
    /// lognormal interval of what a buyer spends.
    pub revenue_log_sum: f64,
    /// Sum over buyers of ln(revenue)².
    pub revenue_log_sq: f64,
    /// The buyers' revenues in the window: (revenue in minor units, buyers who spent that), in
    /// no particular order (a value may repeat); filled for the whole campaign (segment `all`)
    /// only, to name the large orders that drive a readout.
    #[serde(skip)]
    pub buyer_revenues: Vec<(i64, i64)>,
    /// Sums over contacts of their behaviour in the year before entry (migration 21), for
    /// CUPED: see [`PreEntrySums`].
    pub pre: PreEntrySums,
    /// Orders within the window.
    pub orders: i64,
    /// Messages by outbox state (`sent`, `dropped`, `cancelled`, `in_doubt`, …).
    pub messages: BTreeMap<String, i64>,
    /// Offers issued.
    pub offers: i64,
    /// Offers redeemed.
    pub redeemed: i64,
    /// Discount booked to redeemed offers, minor units.
    pub discount_minor: i64,
}

/// Where the contacts (not held out) who entered one version of a campaign are in its journey:
/// enough to count how many took every edge of the journey graph.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct JourneyFlow {
    /// The version counted (the campaign's current one).
    pub version: i64,
    /// Contacts who entered on that version.
    pub entered: i64,
    /// Contacts who entered on earlier versions: they follow those versions' steps and are not
    /// in these counts.
    pub other_versions: i64,
    /// Per step index: (still there, waiting or queued; left the journey there: an order, an
    /// unsubscribe, a bounce). Those who finished are in neither.
    pub at_step: BTreeMap<usize, (i64, i64)>,
    /// What the journeys recorded at their choices (a branch's answer, a wait's event or
    /// timeout): (step id, what, people).
    pub decisions: Vec<(String, String, i64)>,
}

impl ArmResult {
    /// Adds `other`'s contacts, buyers, revenue sums, pre-entry sums and offers to these: the
    /// same arm over another period or segment, or another variant's holdout. `messages` is
    /// left alone: it holds the campaign's counts over all time, which do not add up.
    pub fn absorb(&mut self, other: &ArmResult) {
        self.enrolled += other.enrolled;
        self.messaged += other.messaged;
        self.converted += other.converted;
        self.orders += other.orders;
        self.revenue_minor += other.revenue_minor;
        self.revenue_sq += other.revenue_sq;
        self.revenue_log_sum += other.revenue_log_sum;
        self.revenue_log_sq += other.revenue_log_sq;
        self.buyer_revenues
            .extend(other.buyer_revenues.iter().copied());
        self.pre.add(&other.pre);
        self.offers += other.offers;
        self.redeemed += other.redeemed;
        self.discount_minor += other.discount_minor;
    }
}

/// Sums over a group's contacts of their orders (x₁) and spend in minor units (x₂) in the year
/// before entry, their squares and product, and their products with the outcomes (bought,
/// revenue in the window): what CUPED needs to adjust the group's outcomes for where each
/// contact started.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct PreEntrySums {
    /// Σx₁, Σx₂.
    pub x: [f64; 2],
    /// Σx₁², Σx₂², Σx₁x₂.
    pub xx: [f64; 3],
    /// Σx₁·bought, Σx₂·bought.
    pub x_bought: [f64; 2],
    /// Σx₁·revenue, Σx₂·revenue.
    pub x_revenue: [f64; 2],
}

impl PreEntrySums {
    /// Adds `other` (another group's sums) to these.
    pub fn add(&mut self, other: &PreEntrySums) {
        for i in 0..2 {
            self.x[i] += other.x[i];
            self.x_bought[i] += other.x_bought[i];
            self.x_revenue[i] += other.x_revenue[i];
        }
        for i in 0..3 {
            self.xx[i] += other.xx[i];
        }
    }
}

/// How [`segment_results`] splits a campaign's contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// Not at all: one group, named `all`.
    All,
    /// By the contact's locale when it entered (`default` when none was known).
    Locale,
    /// By the mailbox provider of the contact's email address when it entered (`none`
    /// without one, or after the contact was erased).
    Provider,
}

/// Where [`segment_results`] takes each enrolment's orders and revenue from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcomes {
    /// The outcome stored on the enrolment where it is exact, computed from the orders
    /// elsewhere: what reports read.
    StoredWhereExact,
    /// Computed from the orders for every enrolment: the definition the stored outcomes are
    /// checked against.
    Recomputed,
}

/// Each arm's contacts, buyers and revenue within the window, per segment: (segment, arm), for
/// each of `by` in its order. One scan of the campaign's enrolments serves every segmentation.
pub(crate) async fn segment_results(
    pool: &Pool,
    campaign_id: winback_domain::CampaignId,
    window_seconds: i64,
    range: (i64, i64),
    by: &[Segment],
    outcomes: Outcomes,
) -> Result<Vec<Vec<(String, ArmResult)>>, StoreError> {
    // Where the enrolment's stored outcome is exact (computed for this window, no record of
    // the contact marked since) it is read; otherwise computed from the orders. The segments
    // are the enrolment's own, kept as the contact entered (migration 18). The database
    // groups the enrolments by arm, locale, email domain and outcome, so one row stands for
    // every contact alike (most bought nothing): one row per enrolment cost 7 µs each at a
    // million customers (1.8 s of a report), most of it reading rows. Each group's revenue is
    // squared here, exactly, for the readout's variance; the order makes the sums the same
    // whatever plan the database chose.
    let (orders, revenue) = crate::outcomes::orders_in_window("$2");
    let (fresh, stale_join) = match outcomes {
        Outcomes::StoredWhereExact => (
            "e.outcome_window = $2 AND stale.id IS NULL",
            crate::outcomes::STALE_JOIN,
        ),
        Outcomes::Recomputed => ("1 = 0", ""),
    };
    let mut arms: Vec<BTreeMap<(String, bool, String), ArmResult>> =
        vec![BTreeMap::new(); by.len()];
    pool.for_each(
        &format!(
            "SELECT variant, holdout, locale, domain, messaged, orders, revenue, COUNT(*) AS n, \
               SUM(x1) AS x1, SUM(x2) AS x2, SUM(x1 * x1) AS x11, SUM(x2 * x2) AS x22, SUM(x1 * x2) AS x12 FROM ( \
               SELECT e.variant, e.holdout, e.locale, e.email_domain AS domain, \
                 CAST(e.pre_orders AS DOUBLE PRECISION) AS x1, CAST(e.pre_spend_minor AS DOUBLE PRECISION) AS x2, \
                 CAST(CASE WHEN e.messaged_at IS NULL THEN 0 ELSE 1 END AS BIGINT) AS messaged, \
                 CASE WHEN {fresh} THEN e.outcome_orders ELSE {orders} END AS orders, \
                 CASE WHEN {fresh} THEN e.outcome_revenue_minor ELSE {revenue} END AS revenue \
               FROM enrolments e {stale_join} \
               WHERE e.campaign_id = $1 AND e.entered_at >= $3 AND e.entered_at < $4) g \
             GROUP BY variant, holdout, locale, domain, messaged, orders, revenue \
             ORDER BY variant, holdout, locale, domain, messaged, orders, revenue"
        ),
        &[
            Val::from(campaign_id),
            Val::from(window_seconds * 1_000_000),
            Val::from(range.0),
            Val::from(range.1),
        ],
        |r| {
            let (variant, holdout) = (r.text("variant")?, r.i64("holdout")? != 0);
            let (orders, revenue, n) = (r.i64("orders")?, r.i64("revenue")?, r.i64("n")?);
            // The group's contribution, read once and added to each segmentation's arm.
            let bought = orders > 0;
            let sums = |c: &str| r.opt_f64(c).map(Option::unwrap_or_default);
            let (x1, x2) = (sums("x1")?, sums("x2")?);
            let l = (revenue.max(1) as f64).ln();
            let group = ArmResult {
                enrolled: n,
                messaged: if r.i64("messaged")? != 0 { n } else { 0 },
                converted: if bought { n } else { 0 },
                orders: orders * n,
                revenue_minor: revenue * n,
                revenue_sq: n as f64 * (revenue as f64).powi(2),
                revenue_log_sum: if bought { n as f64 * l } else { 0.0 },
                revenue_log_sq: if bought { n as f64 * l * l } else { 0.0 },
                pre: PreEntrySums {
                    x: [x1, x2],
                    xx: [sums("x11")?, sums("x22")?, sums("x12")?],
                    x_bought: if bought { [x1, x2] } else { [0.0, 0.0] },
                    x_revenue: [x1 * revenue as f64, x2 * revenue as f64],
                },
                ..ArmResult::default()
            };
            for (segmentation, arms) in by.iter().zip(arms.iter_mut()) {
                let segment = match segmentation {
                    Segment::All => "all".to_owned(),
                    Segment::Locale => r.opt_text("locale")?.unwrap_or_else(|| "default".into()),
                    Segment::Provider => r
                        .opt_str("domain")?
                        .map(policy::mailbox_provider)
                        .unwrap_or_else(|| "none".into()),
                };
                let a = arms
                    .entry((segment, holdout, variant.clone()))
                    .or_insert_with(|| ArmResult {
                        variant: variant.clone(),
                        holdout,
                        ..ArmResult::default()
                    });
                a.absorb(&group);
                // Only the whole campaign names its large orders.
                if *segmentation == Segment::All && bought && revenue > 0 {
                    a.buyer_revenues.push((revenue, n));
                }
            }
            Ok(())
        },
    )
    .await?;
    Ok(arms
        .into_iter()
        .map(|a| a.into_iter().map(|((s, _, _), a)| (s, a)).collect())
        .collect())
}

/// Each arm of a campaign (segment `all`), with its messages and offers, followed by the arms
/// per segment of each of `by`: one scan of the enrolments for all of them.
pub(crate) async fn campaign_results(
    pool: &Pool,
    campaign_id: winback_domain::CampaignId,
    window_seconds: i64,
    range: (i64, i64),
    by: &[Segment],
    outcomes: Outcomes,
) -> Result<(Vec<ArmResult>, Vec<Vec<(String, ArmResult)>>), StoreError> {
    let mut all = vec![Segment::All];
    all.extend_from_slice(by);
    let mut results =
        segment_results(pool, campaign_id, window_seconds, range, &all, outcomes).await?;
    let segments = results.split_off(1);
    let mut out: Vec<ArmResult> = results
        .pop()
        .unwrap_or_default()
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    for ((variant, state), n) in crate::rollups::messages_by_variant(pool, campaign_id).await? {
        if let Some(a) = out.iter_mut().find(|a| !a.holdout && a.variant == variant) {
            a.messages.insert(state, n);
        }
    }
    // The offers of the contacts who entered in the range, like every other figure here.
    for r in pool
        .fetch(
            "SELECT o.variant, COUNT(*) AS offers, COUNT(CASE WHEN o.used > 0 THEN 1 END) AS redeemed, \
             CAST(COALESCE(SUM(o.cost_minor), 0) AS BIGINT) AS discount_minor \
             FROM offers o JOIN enrolments e ON e.id = o.enrolment_id \
             WHERE o.campaign_id = $1 AND e.entered_at >= $2 AND e.entered_at < $3 GROUP BY o.variant",
            &[Val::from(campaign_id), Val::from(range.0), Val::from(range.1)],
        )
        .await?
    {
        let v = r.text("variant")?;
        if let Some(a) = out.iter_mut().find(|a| !a.holdout && a.variant == v) {
            a.offers = r.i64("offers")?;
            a.redeemed = r.i64("redeemed")?;
            a.discount_minor = r.i64("discount_minor")?;
        }
    }
    Ok((out, segments))
}

/// What happened to one group of a campaign's messages. [`SqlStore::message_funnel`] groups by
/// step, variant and channel ([`MessageFunnel::locale`] and [`MessageFunnel::provider`] are then
/// empty); [`SqlStore::message_funnel_detail`] also by locale and mailbox provider, and
/// [`rollup`] sums the detail along any of them.
///
/// [`SqlStore::message_funnel`]: crate::SqlStore::message_funnel
/// [`SqlStore::message_funnel_detail`]: crate::SqlStore::message_funnel_detail
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageFunnel {
    /// Step id.
    pub step: String,
    /// Variant.
    pub variant: String,
    /// Channel.
    pub channel: String,
    /// The contact's locale (`default` when none is known); empty when not grouped by it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub locale: String,
    /// The recipient's mailbox provider (email only; `-` for other channels and messages never
    /// attempted); empty when not grouped by it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// Accepted by the relay or provider (or written to the outbox folder).
    pub sent: i64,
    /// Sent and not bounced afterwards.
    pub delivered: i64,
    /// Refused for good about the recipient, at send time or by a later bounce report (the
    /// address is suppressed).
    pub hard_bounced: i64,
    /// Refused for now (full mailbox, temporary recipient failure), or bounced later for a
    /// reason that is not the recipient's for good.
    pub soft_bounced: i64,
    /// Unknown after a crash (neither sent nor bounced): counted, never resent.
    pub in_doubt: i64,
    /// Not sent at send time (consent, suppression, caps, an ended journey…).
    pub dropped: i64,
    /// Messages opened by a person.
    pub opened_human: i64,
    /// Messages opened only by a machine (privacy proxies, scanners).
    pub opened_machine: i64,
    /// Messages clicked.
    pub clicked: i64,
    /// Unsubscribes from these messages.
    pub unsubscribed: i64,
    /// Spam complaints about these messages.
    pub complained: i64,
    /// Survey answers by reason.
    pub survey: BTreeMap<String, i64>,
}

impl MessageFunnel {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &MessageFunnel) {
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.hard_bounced += other.hard_bounced;
        self.soft_bounced += other.soft_bounced;
        self.in_doubt += other.in_doubt;
        self.dropped += other.dropped;
        self.opened_human += other.opened_human;
        self.opened_machine += other.opened_machine;
        self.clicked += other.clicked;
        self.unsubscribed += other.unsubscribed;
        self.complained += other.complained;
        for (k, v) in &other.survey {
            *self.survey.entry(k.clone()).or_default() += v;
        }
    }
}

/// Which dimensions a [`rollup`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunnelKey {
    /// Step, variant and channel (the journey view).
    StepVariantChannel,
    /// Locale and channel.
    Locale,
    /// Mailbox provider (email).
    Provider,
}

/// Sums detailed funnels along `key`; the dimensions not kept are left empty.
pub fn rollup(detail: &[MessageFunnel], key: FunnelKey) -> Vec<MessageFunnel> {
    let mut out: BTreeMap<(String, String, String, String, String), MessageFunnel> =
        BTreeMap::new();
    for f in detail {
        let k = match key {
            FunnelKey::StepVariantChannel => (
                f.step.clone(),
                f.variant.clone(),
                f.channel.clone(),
                String::new(),
                String::new(),
            ),
            FunnelKey::Locale => (
                String::new(),
                String::new(),
                f.channel.clone(),
                f.locale.clone(),
                String::new(),
            ),
            FunnelKey::Provider => {
                if f.channel != "email" {
                    continue;
                }
                (
                    String::new(),
                    String::new(),
                    f.channel.clone(),
                    String::new(),
                    f.provider.clone(),
                )
            }
        };
        out.entry(k.clone())
            .or_insert_with(|| MessageFunnel {
                step: k.0,
                variant: k.1,
                channel: k.2,
                locale: k.3,
                provider: k.4,
                ..MessageFunnel::default()
            })
            .add(f);
    }
    out.into_values().collect()
}

/// Message outcomes per step, variant, channel, locale and mailbox provider for messages queued
/// in `range`, with the engagement events that name them (`message_id`), per campaign id: one
/// campaign's, or every campaign's when `campaign` is `None`, recomputed from every message and
/// every engagement event. Reports read the rollups instead (`crate::rollups`); this is the
/// definition they are checked against.
pub(crate) async fn message_funnels_recomputed(
    pool: &Pool,
    campaign: Option<winback_domain::CampaignId>,
    range: (i64, i64),
) -> Result<HashMap<winback_domain::CampaignId, Vec<MessageFunnel>>, StoreError> {
    type Key = (i64, String, String, String, String, String);
    let mut by_key: HashMap<String, Key> = HashMap::new();
    let mut funnels: BTreeMap<Key, MessageFunnel> = BTreeMap::new();
    let mut accepted: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut args = vec![Val::from(range.0), Val::from(range.1)];
    let only = match campaign {
        Some(id) => {
            args.push(Val::from(id));
            " AND o.campaign_id = $3"
        }
        None => "",
    };
    // Both scans stream: the outbox and the engagement events of a large shop are millions of
    // rows, and only the counts and the message keys are kept.
    pool.for_each(
        &format!(
            "SELECT o.idempotency_key, o.step, o.variant, o.channel, o.state, o.outcome, o.locale, COALESCE(o.provider, '-') AS provider, o.campaign_id \
             FROM outbox o \
             WHERE o.created_at >= $1 AND o.created_at < $2{only}"
        ),
        &args,
        |r| {
        let id = (
            r.i64("campaign_id")?,
            r.text("step")?,
            r.text("variant")?,
            r.text("channel")?,
            r.text("locale")?,
            r.text("provider")?,
        );
        let f = funnels.entry(id.clone()).or_insert_with(|| MessageFunnel {
            step: id.1.clone(),
            variant: id.2.clone(),
            channel: id.3.clone(),
            locale: id.4.clone(),
            provider: id.5.clone(),
            ..MessageFunnel::default()
        });
        let outcome = r.opt_text("outcome")?.unwrap_or_default();
        // `sent` is what the relay or provider accepted; a message it refused is counted as
        // bounced instead, and one whose fate a crash left unknown as in doubt. A bounce
        // reported later (a DSN, a webhook) moves an accepted message from delivered to
        // bounced below.
        let state = r.text("state")?;
        match (state.as_str(), outcome.as_str()) {
            ("sent", _) => {
                f.sent += 1;
                f.delivered += 1;
                accepted.insert(r.text("idempotency_key")?);
            }
            ("failed", "hard_bounce") => f.hard_bounced += 1,
            (_, "soft_bounce") => f.soft_bounced += 1,
            ("in_doubt", _) => f.in_doubt += 1,
            ("dropped", _) => f.dropped += 1,
            _ => {}
        }
        by_key.insert(r.text("idempotency_key")?, id);
        Ok(())
    })
    .await?;
    if by_key.is_empty() {
        return Ok(HashMap::new());
    }
    // Each message counts once per kind of response, however often it was opened or clicked;
    // a message a person opened is not also counted as a machine open.
    #[derive(Default)]
    struct Seen {
        hard_bounce: bool,
        soft_bounce: bool,
        open: bool,
        machine_open: bool,
        click: bool,
        unsubscribe: bool,
        complaint: bool,
    }
    let mut seen: HashMap<String, Seen> = HashMap::new();
    pool.for_each(
        "SELECT type, payload FROM events WHERE type IN ('email_opened', 'email_clicked', 'email_unsubscribed', 'email_complained', 'email_bounced', 'survey_answered')",
        &[],
        |r| {
        let payload: serde_json::Value = serde_json::from_str(r.opt_str("payload")?.unwrap_or_default()).unwrap_or_default();
        let Some(key) = payload.get("message_id").and_then(|m| m.as_str()) else {
            return Ok(());
        };
        let Some(id) = by_key.get(key) else {
            return Ok(());
        };
        let s = seen.entry(key.to_owned()).or_default();
        match r.text("type")?.as_str() {
            "email_opened" if payload.get("machine").and_then(|m| m.as_bool()) == Some(true) => {
                s.machine_open = true
            }
            "email_opened" => s.open = true,
            "email_clicked" => s.click = true,
            "email_unsubscribed" => s.unsubscribe = true,
            "email_complained" => s.complaint = true,
            "email_bounced" if accepted.contains(key) => {
                if payload.get("bounce").and_then(|b| b.as_str()) == Some("soft") {
                    s.soft_bounce = true;
                } else {
                    s.hard_bounce = true;
                }
            }
            "email_bounced" => {}
            _ => {
                let reason = payload
                    .get("reason")
                    .and_then(|v| v.as_str())
                    .unwrap_or("other")
                    .to_owned();
                if let Some(f) = funnels.get_mut(id) {
                    *f.survey.entry(reason).or_default() += 1;
                }
            }
        }
        Ok(())
    })
    .await?;
    for (key, s) in &seen {
        let Some(f) = by_key.get(key).and_then(|id| funnels.get_mut(id)) else {
            continue;
        };
        // An accepted message bounced afterwards: once, hard over soft.
        if s.hard_bounce || s.soft_bounce {
            f.delivered -= 1;
            if s.hard_bounce {
                f.hard_bounced += 1;
            } else {
                f.soft_bounced += 1;
            }
        }
        f.opened_human += i64::from(s.open);
        f.opened_machine += i64::from(s.machine_open && !s.open);
        f.clicked += i64::from(s.click);
        f.unsubscribed += i64::from(s.unsubscribe);
        f.complained += i64::from(s.complaint);
    }
    let mut out: HashMap<winback_domain::CampaignId, Vec<MessageFunnel>> = HashMap::new();
    for ((campaign_id, ..), f) in funnels {
        out.entry(winback_domain::CampaignId::new(campaign_id))
            .or_default()
            .push(f);
    }
    Ok(out)
}

/// Counts of enrolments by state and of outbox rows by state, per campaign name.
/// One campaign's journeys by state, messages by state, and dropped messages by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CampaignCounts {
    /// The campaign.
    pub name: String,
    /// Enrolments by state (`active`, `completed`, `exited`, `held_out`).
    pub enrolments: BTreeMap<String, i64>,
    /// Messages by state (`sent`, `dropped`, `in_doubt`, …).
    pub messages: BTreeMap<String, i64>,
    /// Dropped messages by reason (`no_consent`, `suppressed`, `erased`, `expired`, `cap`,
    /// `no_address`, `journey_ended`).
    pub dropped: BTreeMap<String, i64>,
}

/// The reason a dropped message's outcome names, without the journey-end detail.
pub fn drop_reason(outcome: &str) -> &str {
    outcome.split(':').next().unwrap_or(outcome)
}

pub(crate) async fn campaign_counts(pool: &Pool) -> Result<Vec<CampaignCounts>, StoreError> {
    let mut out: BTreeMap<String, CampaignCounts> = BTreeMap::new();
    fn entry(out: &mut BTreeMap<String, CampaignCounts>, name: String) -> &mut CampaignCounts {
        out.entry(name.clone()).or_insert_with(|| CampaignCounts {
            name,
            ..CampaignCounts::default()
        })
    }
    for r in pool
        .fetch("SELECT c.name AS campaign, e.state, COUNT(*) AS n FROM enrolments e JOIN campaigns c ON c.id = e.campaign_id GROUP BY c.name, e.state", &[])
        .await?
    {
        entry(&mut out, r.text("campaign")?).enrolments.insert(r.text("state")?, r.i64("n")?);
    }
    // Messages come from the rollups (migration 13): a campaign's outbox is millions of rows.
    let names: HashMap<i64, String> = pool
        .fetch("SELECT id, name FROM campaigns", &[])
        .await?
        .iter()
        .map(|r| Ok((r.i64("id")?, r.text("name")?)))
        .collect::<Result<_, StoreError>>()?;
    let name = |id: winback_domain::CampaignId| names.get(&id.get()).cloned();
    for (id, states) in crate::rollups::message_states(pool).await? {
        if let Some(n) = name(id) {
            entry(&mut out, n).messages = states;
        }
    }
    for (id, reasons) in
        crate::rollups::drop_reasons(pool, None, (i64::MIN / 2, i64::MAX / 2)).await?
    {
        if let Some(n) = name(id) {
            entry(&mut out, n).dropped = reasons;
        }
    }
    Ok(out.into_values().collect())
}

/// Offer codes of a campaign for the shop: code, kind, amount, currency, minimum, expiry, state.
pub(crate) async fn offer_codes(
    pool: &Pool,
    campaign_id: winback_domain::CampaignId,
) -> Result<Vec<Vec<String>>, StoreError> {
    pool.fetch(
        "SELECT code, kind, COALESCE(CAST(amount_minor AS TEXT), ''), COALESCE(CAST(percent AS TEXT), ''), COALESCE(sku, ''), currency, \
         CAST(min_order_minor AS TEXT), CAST(uses AS TEXT), CAST(expires_at AS TEXT), state FROM offers WHERE campaign_id = $1 ORDER BY issued_at, code",
        &[Val::from(campaign_id)],
    )
    .await?
    .iter()
    .map(|r| (0..10).map(|i| r.text(i)).collect())
    .collect()
}

/// Which of a campaign's people a list shows: the people behind each of the report's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeopleGroup {
    /// Everyone who entered (messaged arms and holdout).
    Entered,
    /// The holdout.
    HeldOut,
    /// The messaged group: everyone not held out, whether a message reached them or not.
    Treated,
    /// People who received at least one message.
    Messaged,
    /// Buyers in the messaged arms within the attribution window.
    Bought,
    /// People with at least one message not sent at send time.
    Dropped,
}

impl PeopleGroup {
    /// The group named in a URL (`entered`, `held_out`, `treated`, `messaged`, `bought`,
    /// `dropped`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "entered" => Self::Entered,
            "held_out" => Self::HeldOut,
            "treated" => Self::Treated,
            "messaged" => Self::Messaged,
            "bought" => Self::Bought,
            "dropped" => Self::Dropped,
            _ => return None,
        })
    }

    /// The group's URL name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Entered => "entered",
            Self::HeldOut => "held_out",
            Self::Treated => "treated",
            Self::Messaged => "messaged",
            Self::Bought => "bought",
            Self::Dropped => "dropped",
        }
    }

    fn filter(self) -> &'static str {
        match self {
            Self::Entered => "1 = 1",
            Self::HeldOut => "x.holdout <> 0",
            Self::Treated => "x.holdout = 0",
            Self::Messaged => "x.messaged_at IS NOT NULL",
            Self::Bought => "x.holdout = 0 AND x.orders > 0",
            // The report's "not sent": dropped at send time, not a soft bounce given up on
            // (that one counts as a soft bounce), as the message rollup defines it.
            Self::Dropped => {
                "EXISTS (SELECT 1 FROM outbox o WHERE o.enrolment_id = x.id AND o.state = 'dropped' \
                 AND o.outcome <> 'soft_bounce')"
            }
        }
    }
}

/// Which segment of a campaign's people a list keeps, as the report splits them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PeopleSegment {
    /// Everyone.
    #[default]
    All,
    /// The contacts whose locale was this when they entered (`default`: none was known).
    Locale(String),
    /// The contacts whose email address was at this mailbox provider when they entered
    /// (`none`: no address).
    Provider(String),
}

/// One person behind a campaign's count.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CampaignPerson {
    /// The enrolment (with `entered_at`, the list's order and its key to the next page).
    pub enrolment_id: i64,
    /// Profile.
    pub profile_id: i64,
    /// The shop's customer id of the profile's record (empty once erased).
    pub customer_id: String,
    /// First and family name, as far as known.
    pub name: String,
    /// Email address, when known.
    pub email: Option<String>,
    /// Variant (the holdout keeps the one it would have had).
    pub variant: String,
    /// Held out.
    pub holdout: bool,
    /// When the person entered.
    pub entered_at: Timestamp,
    /// The journey's state (`active`, `completed`, `exited`, …).
    pub state: String,
    /// When the first message was accepted, if one was.
    pub messaged_at: Option<Timestamp>,
    /// Orders within the attribution window.
    pub orders: i64,
    /// Their revenue, minor units.
    pub revenue_minor: i64,
}

/// Which part of a people list to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeoplePage {
    /// A numbered page: `limit` people from `offset`, with the list's total.
    Offset {
        /// People on the page.
        limit: i64,
        /// People before it.
        offset: i64,
    },
    /// The next `limit` people after the one with this (entry time, enrolment id), or from the
    /// start: for reading a long list through without a growing offset. No total is counted.
    After {
        /// People to read.
        limit: i64,
        /// The last person read, as (`entered_at`, `enrolment_id`).
        after: Option<(Timestamp, i64)>,
    },
}

/// The people of `group` among a campaign's contacts who entered in `range`, oldest entry
/// first, the `page` asked for, and (for a numbered page) how many there are in all. Orders in
/// the window are read as the report reads them, so the list's length is the report's count.
pub(crate) async fn campaign_people(
    pool: &Pool,
    campaign_id: winback_domain::CampaignId,
    window_seconds: i64,
    range: (i64, i64),
    (group, segment): (PeopleGroup, &PeopleSegment),
    page: PeoplePage,
) -> Result<(Vec<CampaignPerson>, Option<i64>), StoreError> {
    let (orders, revenue) = crate::outcomes::orders_in_window("$2");
    let fresh = "e.outcome_window = $2 AND stale.id IS NULL";
    let stale_join = crate::outcomes::STALE_JOIN;
    let mut args = vec![
        Val::from(campaign_id),
        Val::from(window_seconds * 1_000_000),
        Val::from(range.0),
        Val::from(range.1),
    ];
    // The segment as the report draws it: the enrolment's own locale and email domain.
    let segment_filter = match segment {
        PeopleSegment::All => String::new(),
        PeopleSegment::Locale(l) if l == "default" => " AND e.locale IS NULL".to_owned(),
        PeopleSegment::Locale(l) => {
            args.push(Val::from(l.as_str()));
            format!(" AND e.locale = ${}", args.len())
        }
        PeopleSegment::Provider(p) if p == "none" => " AND e.email_domain IS NULL".to_owned(),
        PeopleSegment::Provider(p) => {
            // A provider is a set of domains; those of this campaign's contacts are few.
            let domains: Vec<String> = pool
                .fetch(
                    "SELECT DISTINCT email_domain FROM enrolments \
                     WHERE campaign_id = $1 AND email_domain IS NOT NULL",
                    &[Val::from(campaign_id)],
                )
                .await?
                .iter()
                .map(|r| r.text(0))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|d| policy::mailbox_provider(d) == *p)
                .collect();
            if domains.is_empty() {
                " AND 1 = 0".to_owned()
            } else {
                let first = args.len() + 1;
                args.extend(domains.iter().map(|d| Val::from(d.as_str())));
                let list: Vec<String> = (first..=args.len()).map(|i| format!("${i}")).collect();
                format!(" AND e.email_domain IN ({})", list.join(", "))
            }
        }
    };
    let inner = format!(
        "SELECT e.id, e.profile_id, e.variant, e.holdout, e.entered_at, e.state, e.messaged_at, \
           CASE WHEN {fresh} THEN e.outcome_orders ELSE {orders} END AS orders, \
           CASE WHEN {fresh} THEN e.outcome_revenue_minor ELSE {revenue} END AS revenue \
         FROM enrolments e {stale_join} \
         WHERE e.campaign_id = $1 AND e.entered_at >= $3 AND e.entered_at < $4{segment_filter}"
    );
    let filter = group.filter();
    let mut page_args = args.to_vec();
    let (total, limit, offset, key) = match page {
        PeoplePage::Offset { limit, offset } => {
            let total = pool
                .fetch(
                    &format!("SELECT COUNT(*) AS n FROM ({inner}) x WHERE {filter}"),
                    &args,
                )
                .await?
                .first()
                .map(|r| r.i64("n"))
                .transpose()?
                .unwrap_or(0);
            (Some(total), limit, offset, String::new())
        }
        PeoplePage::After { limit, after } => {
            let key = match after {
                Some((at, id)) => {
                    page_args.extend([Val::from(at.as_micros()), Val::from(id)]);
                    let (a, b) = (page_args.len() - 1, page_args.len());
                    format!(" AND (x.entered_at > ${a} OR (x.entered_at = ${a} AND x.id > ${b}))")
                }
                None => String::new(),
            };
            (None, limit, 0, key)
        }
    };
    page_args.extend([Val::from(limit.max(0)), Val::from(offset.max(0))]);
    // A merged profile's root record may lack a name or an address another record has: take
    // the first record of the profile that has one.
    let from_records = |col: &str| {
        format!(
            "COALESCE(c.{col}, (SELECT m.{col} FROM customers m WHERE m.profile_id = x.profile_id \
               AND m.erased_at IS NULL AND m.{col} IS NOT NULL AND m.{col} <> '' ORDER BY m.id LIMIT 1)) AS {col}"
        )
    };
    let rows = pool
        .fetch(
            &format!(
                "SELECT x.*, c.external_id, {}, {}, {} FROM ({inner}) x \
                 LEFT JOIN customers c ON c.id = x.profile_id AND c.erased_at IS NULL \
                 WHERE {filter}{key} ORDER BY x.entered_at, x.id LIMIT ${} OFFSET ${}",
                from_records("first_name"),
                from_records("last_name"),
                from_records("email"),
                page_args.len() - 1,
                page_args.len()
            ),
            &page_args,
        )
        .await?;
    let time = |v: i64| {
        Timestamp::from_micros(v).ok_or_else(|| StoreError::Data("time out of range".into()))
    };
    let people = rows
        .iter()
        .map(|r| {
            let name = [r.opt_text("first_name")?, r.opt_text("last_name")?]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            Ok(CampaignPerson {
                enrolment_id: r.i64("id")?,
                profile_id: r.i64("profile_id")?,
                customer_id: r.opt_text("external_id")?.unwrap_or_default(),
                name,
                email: r.opt_text("email")?,
                variant: r.text("variant")?,
                holdout: r.i64("holdout")? != 0,
                entered_at: time(r.i64("entered_at")?)?,
                state: r.text("state")?,
                messaged_at: r.opt_i64("messaged_at")?.map(time).transpose()?,
                orders: r.i64("orders")?,
                revenue_minor: r.i64("revenue")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((people, total))
}
