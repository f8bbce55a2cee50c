//! `winback-report` owns the model of winback's campaign report and gathers it from the store:
//! per campaign and variant what the messages did (sent, delivered, bounced, opened by people
//! and by machines, clicked, unsubscribed, complained, survey answers), broken down by step,
//! variant, channel, locale and mailbox provider; who bought within the campaign's attribution
//! window, revenue, average order value, discount and message cost; the causal readout against
//! the holdout with 95% intervals ([`winback_measure`]); "did they stay?"; deliverability per
//! mailbox provider against the thresholds the engine enforces; list hygiene and the health of
//! the base over time.
//!
//! `winback report` prints it, writes it as JSON, CSV or HTML; the dashboard in `winback serve`
//! and `GET /v1/report` show the same [`Report`], so the figures agree everywhere.

pub mod present;
pub mod summary;

use std::collections::{BTreeMap, HashMap};

use winback_domain::{Currency, Timestamp};
use winback_engine::Campaign;
use winback_engine::definition::ExportTarget;
use winback_engine::policy::RampSettings;
use winback_engine::ports::JourneyStore;
use winback_measure::{Arm, Economics, Readout, Winner};
use winback_store::{
    ArmResult, FunnelKey, JourneyFlow, MessageFunnel, Outcomes, ProviderRamp, Segment, SqlStore,
    StoreError,
};

/// Why a report could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored campaign could not be read.
    #[error("stored campaign {name}: {message}")]
    Campaign {
        /// The campaign's name.
        name: String,
        /// What was wrong.
        message: String,
    },
}

/// What a report needs besides the store (`[measurement]`, `[clv]`, `[policy.ramp]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Gross margin on revenue (0–1).
    pub margin: f64,
    /// What one email costs, minor units.
    pub email_cost_minor: i64,
    /// What one SMS costs, minor units.
    pub sms_cost_minor: i64,
    /// What one printed card costs, minor units.
    pub print_cost_minor: i64,
    /// What one contact added to an ad or onboarding audience costs, minor units.
    pub audience_cost_minor: i64,
    /// What one contact on a call list costs in agent time, minor units.
    pub call_cost_minor: i64,
    /// Currency of the money figures.
    pub currency: String,
    /// The deliverability thresholds the engine enforces.
    pub ramp: RampSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            margin: 0.3,
            email_cost_minor: 1,
            sms_cost_minor: 8,
            print_cost_minor: 90,
            audience_cost_minor: 0,
            call_cost_minor: 250,
            currency: "EUR".into(),
            ramp: RampSettings::default(),
        }
    }
}

/// Deliverability of one mailbox provider's email, against the thresholds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Deliverability {
    /// Provider.
    pub provider: String,
    /// Emails handed to the relay.
    pub sent: i64,
    /// Delivered.
    pub delivered: i64,
    /// Hard bounces.
    pub hard_bounced: i64,
    /// Soft bounces.
    pub soft_bounced: i64,
    /// Complaints.
    pub complained: i64,
    /// Hard bounces per email sent.
    pub hard_bounce_rate: f64,
    /// Complaints per email sent.
    pub complaint_rate: f64,
    /// The hard-bounce rate at which the engine pauses the provider.
    pub max_hard_bounce_rate: f64,
    /// The complaint rate at which the engine pauses the provider.
    pub max_complaint_rate: f64,
    /// A rate is at or above its threshold.
    pub over_threshold: bool,
}

impl Deliverability {
    fn new(f: &MessageFunnel, ramp: &RampSettings) -> Self {
        let rate = |x: i64, of: i64| if of > 0 { x as f64 / of as f64 } else { 0.0 };
        // Bounces over every message the relay was asked to take: the accepted (`sent`
        // includes those that bounced later) plus those it refused at once. Complaints over
        // the accepted.
        let attempted = f.delivered + f.hard_bounced + f.soft_bounced + f.in_doubt;
        let hard_bounce_rate = rate(f.hard_bounced, attempted);
        let complaint_rate = rate(f.complained, f.sent);
        Self {
            provider: f.provider.clone(),
            sent: f.sent,
            delivered: f.delivered,
            hard_bounced: f.hard_bounced,
            soft_bounced: f.soft_bounced,
            complained: f.complained,
            hard_bounce_rate,
            complaint_rate,
            max_hard_bounce_rate: ramp.max_hard_bounce_rate,
            max_complaint_rate: ramp.max_complaint_rate,
            over_threshold: attempted > 0
                && (hard_bounce_rate >= ramp.max_hard_bounce_rate
                    || complaint_rate >= ramp.max_complaint_rate),
        }
    }
}

/// One step of a campaign's journey with what its messages did, for the journey graph.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JourneyNode {
    /// Step id.
    pub id: String,
    /// Step type (`send`, `wait`, `offer`, `branch`, …).
    pub kind: String,
    /// What it does, in a few words.
    pub label: String,
    /// Where it goes next: (step id or `end`, label of the edge).
    pub next: Vec<(String, String)>,
    /// People who took each edge of `next`: recorded at a choice (a branch's yes and no, a
    /// wait's event and timeout); elsewhere, those who reached the step less those still there
    /// or who left the journey there.
    pub taken: Vec<i64>,
    /// People (of the version counted) who reached this step.
    pub reached: i64,
    /// Of them, still here: waiting, or queued for their send window.
    pub waiting: i64,
    /// Of them, left the journey here: an order, an unsubscribe, a bounce.
    pub left: i64,
    /// Messages sent by this step (all variants and channels).
    pub sent: i64,
    /// Of them, opened by a person.
    pub opened: i64,
    /// Clicked.
    pub clicked: i64,
    /// Not sent at send time (consent, suppression, caps…).
    pub dropped: i64,
}

/// The journey of `c` with the counts of `messages` (rolled up by step, variant, channel) and
/// the choices its contacts' journeys recorded (`decisions`: step, what was logged, people).
pub fn journey(c: &Campaign, messages: &[MessageFunnel], flow: &JourneyFlow) -> Vec<JourneyNode> {
    use winback_engine::definition::{Action, Condition};
    // People whose log line at `step` ends with `suffix`.
    let took = |step: &str, suffix: &str| {
        Some(
            flow.decisions
                .iter()
                .filter(|(s, what, _)| s == step && what.ends_with(suffix))
                .map(|(_, _, n)| n)
                .sum::<i64>(),
        )
    };
    let id_of = |i: Option<usize>| {
        i.and_then(|i| c.steps.get(i))
            .map(|s| s.id.clone())
            .unwrap_or_else(|| "end".into())
    };
    // Each step's edges as step indices (`None`: the end), and the people the journey logged
    // taking each (`None` on a plain edge: it is counted in the walk below), beside the node.
    let mut targets: Vec<Vec<Option<usize>>> = Vec::with_capacity(c.steps.len());
    let mut logged: Vec<Vec<Option<i64>>> = Vec::with_capacity(c.steps.len());
    let mut nodes: Vec<JourneyNode> = c
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let mut taken = Vec::new();
            targets.push(match &step.action {
                Action::Wait {
                    until_event: Some(_),
                    on_timeout,
                    ..
                } => vec![step.next, *on_timeout],
                Action::Branch {
                    then, otherwise, ..
                } => vec![*then, *otherwise],
                Action::Exit => Vec::new(),
                _ => vec![step.next],
            });
            let (label, next) = match &step.action {
                Action::Wait {
                    duration,
                    until_event,
                    on_timeout,
                    ..
                } => match until_event {
                    Some(ev) => {
                        taken = vec![
                            took(&step.id, " arrived"),
                            took(&step.id, " did not arrive in time"),
                        ];
                        (
                            format!("wait for {}, at most {duration}", ev.label()),
                            vec![
                                (id_of(step.next), "it came".to_owned()),
                                (id_of(*on_timeout), "timed out".to_owned()),
                            ],
                        )
                    }
                    None => (
                        format!("wait {duration}"),
                        vec![(id_of(step.next), String::new())],
                    ),
                },
                Action::Send(m) | Action::Sunset(m) => (
                    format!("{} {}", m.channel, m.template),
                    vec![(id_of(step.next), String::new())],
                ),
                Action::Offer { ladder } => (
                    format!("offer from ladder {ladder}"),
                    vec![(id_of(step.next), String::new())],
                ),
                Action::Branch {
                    condition,
                    then,
                    otherwise,
                } => {
                    taken = vec![took(&step.id, ": yes"), took(&step.id, ": no")];
                    let question = match condition {
                        Condition::Opened(s) => format!("opened {s}?"),
                        Condition::Clicked(s) => format!("clicked in {s}?"),
                        Condition::SurveyReason(r) => {
                            format!("left because: {}?", present::label(r.as_str()))
                        }
                        Condition::CallOutcome(o) => {
                            format!("call: {}?", present::label(o.as_str()))
                        }
                        Condition::HasTag(t) => format!("tagged {t}?"),
                        Condition::Purchased => "bought since entering?".to_owned(),
                        Condition::Expr(a) => format!("{}?", a.source()),
                    };
                    (
                        question,
                        vec![
                            (id_of(*then), "yes".to_owned()),
                            (id_of(*otherwise), "no".to_owned()),
                        ],
                    )
                }
                Action::Tag(t) => (
                    format!("tag {}", t.join(", ")),
                    vec![(id_of(step.next), String::new())],
                ),
                Action::Untag(t) => (
                    format!("untag {}", t.join(", ")),
                    vec![(id_of(step.next), String::new())],
                ),
                Action::Export { target, .. } => (
                    match target {
                        ExportTarget::Print => "print mailing list".to_owned(),
                        t => format!("{} audience", t.as_str()),
                    },
                    vec![(id_of(step.next), String::new())],
                ),
                Action::Wallet { style } => (
                    format!("wallet pass ({})", style.as_str().replace('_', " ")),
                    vec![(id_of(step.next), String::new())],
                ),
                Action::Call { list } => (
                    format!("call list {list}"),
                    vec![(id_of(step.next), String::new())],
                ),
                Action::Webhook { .. } => (
                    "webhook".to_owned(),
                    vec![(id_of(step.next), String::new())],
                ),
                Action::Exit => ("exit".to_owned(), Vec::new()),
            };
            taken.resize(next.len(), None);
            logged.push(taken);
            let (waiting, left) = flow.at_step.get(&index).copied().unwrap_or_default();
            let mut node = JourneyNode {
                id: step.id.clone(),
                kind: step.action.type_name().to_owned(),
                label,
                next,
                // Filled in below, in the order people flow.
                taken: Vec::new(),
                reached: 0,
                waiting,
                left,
                sent: 0,
                opened: 0,
                clicked: 0,
                dropped: 0,
            };
            for f in messages.iter().filter(|f| f.step == step.id) {
                node.sent += f.sent;
                node.opened += f.opened_human;
                node.clicked += f.clicked;
                node.dropped += f.dropped;
            }
            node
        })
        .collect();
    // Journeys are acyclic (checked on load): walk the steps in an order where every step comes
    // after all the steps that lead to it, and pass each step's people on along its edges.
    let mut incoming = vec![0usize; nodes.len()];
    for t in targets.iter().flatten().flatten() {
        incoming[*t] += 1;
    }
    let mut ready: Vec<usize> = (0..nodes.len()).filter(|i| incoming[*i] == 0).collect();
    if let Some(first) = nodes.first_mut() {
        first.reached = flow.entered;
    }
    while let Some(i) = ready.pop() {
        let node = &mut nodes[i];
        let onward = (node.reached - node.waiting - node.left).max(0);
        node.taken = logged[i].iter().map(|t| t.unwrap_or(onward)).collect();
        let taken = node.taken.clone();
        for (t, people) in targets[i].iter().zip(taken) {
            if let Some(t) = *t {
                nodes[t].reached += people;
                incoming[t] -= 1;
                if incoming[t] == 0 {
                    ready.push(t);
                }
            }
        }
    }
    nodes
}

/// Buyers and revenue of one segment (a locale or a mailbox provider) of a campaign, messaged
/// against held out.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SegmentReport {
    /// The locale or provider.
    pub segment: String,
    /// Messaged contacts.
    pub contacts: i64,
    /// Of them, buyers within the window.
    pub converted: i64,
    /// Their revenue in the window, minor units.
    pub revenue_minor: i64,
    /// Held-out contacts.
    pub holdout_contacts: i64,
    /// Of them, buyers within the window.
    pub holdout_converted: i64,
    /// Messaged against held out (economics left out: offers and messages are not split by
    /// segment).
    pub readout: Option<Readout>,
}

fn segments(rows: &[(String, ArmResult)], margin: f64) -> Vec<SegmentReport> {
    let mut by: BTreeMap<&str, (Arm, Arm)> = BTreeMap::new();
    for (segment, a) in rows {
        let (t, h) = by.entry(segment.as_str()).or_default();
        let x = if a.holdout { h } else { t };
        *x = x.pooled(&arm(a));
    }
    by.into_iter()
        .map(|(segment, (t, h))| SegmentReport {
            segment: segment.to_owned(),
            contacts: t.contacts as i64,
            converted: t.converted as i64,
            revenue_minor: t.revenue_minor,
            holdout_contacts: h.contacts as i64,
            holdout_converted: h.converted as i64,
            readout: (t.contacts > 0 && h.contacts > 0).then(|| {
                Readout::new(
                    t,
                    h,
                    Economics {
                        margin,
                        ..Economics::default()
                    },
                )
            }),
        })
        .collect()
}

impl CampaignReport {
    /// Contacts in the messaged arms.
    pub fn treated_contacts(&self) -> i64 {
        self.arms
            .iter()
            .filter(|a| !a.holdout)
            .map(|a| a.contacts)
            .sum()
    }

    /// Buyers in the messaged arms.
    pub fn treated_converted(&self) -> i64 {
        self.arms
            .iter()
            .filter(|a| !a.holdout)
            .map(|a| a.converted)
            .sum()
    }
}

impl BaseHealth {
    /// People at the latest scoring run.
    pub fn people(&self) -> i64 {
        self.stages.iter().map(|(_, k)| k).sum()
    }

    /// `active 27.0%, at risk 10.7%, …` at the latest scoring run.
    pub fn shares_text(&self) -> String {
        let total = self.people().max(1) as f64;
        self.stages
            .iter()
            .map(|(s, k)| {
                format!(
                    "{} {}",
                    present::label(s),
                    present::percent(*k as f64 / total)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Health of the base: lifecycle stages over time, how people moved between segments, and
/// why leavers said they left.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct BaseHealth {
    /// People per lifecycle stage at the latest scoring run.
    pub stages: Vec<(String, i64)>,
    /// People per stage at every scoring run (time, stage, people), oldest first.
    pub history: Vec<(Timestamp, String, i64)>,
    /// Segment migration between the last two scoring runs: (from, to, people).
    pub migration: Vec<(String, String, i64)>,
    /// Survey answers by reason over all campaigns (why people stopped buying).
    pub reasons: BTreeMap<String, i64>,
}

/// One arm (variant or holdout) of a campaign, with its readout.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArmReport {
    /// Variant (the holdout keeps the variant it would have had).
    pub variant: String,
    /// Held out (never messaged).
    pub holdout: bool,
    /// Contacts who entered.
    pub contacts: i64,
    /// Of them, contacts who received at least one message (0 in the holdout).
    pub messaged: i64,
    /// Contacts who bought within the attribution window.
    pub converted: i64,
    /// Their orders in the window.
    pub orders: i64,
    /// Revenue of those orders, minor units.
    pub revenue_minor: i64,
    /// Average order value, minor units.
    pub average_order_minor: Option<i64>,
    /// Offers issued.
    pub offers: i64,
    /// Offers redeemed.
    pub redeemed: i64,
    /// Discount on redeemed offers, minor units.
    pub discount_minor: i64,
    /// What the arm's messages cost, minor units (`[measurement]` costs per channel).
    pub message_cost_minor: i64,
    /// Against the holdout (treated arms only, when there is a holdout).
    pub readout: Option<Readout>,
}

/// One campaign's report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CampaignReport {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Status.
    pub status: String,
    /// Attribution window in days (the campaign's `conversion_window`).
    pub window_days: f64,
    /// Variants and holdout.
    pub arms: Vec<ArmReport>,
    /// The treated variants together against the holdout.
    pub overall: Option<Readout>,
    /// Message outcomes per step, variant and channel.
    pub messages: Vec<MessageFunnel>,
    /// The journey's steps with their counts, for the people who entered on the current
    /// version.
    pub journey: Vec<JourneyNode>,
    /// The version whose people the journey counts.
    pub journey_version: i64,
    /// People who entered on earlier versions (they follow those versions' steps).
    pub journey_other_versions: i64,
    /// Message outcomes per locale and channel.
    pub by_locale: Vec<MessageFunnel>,
    /// Buyers and revenue per locale, messaged against held out.
    pub results_by_locale: Vec<SegmentReport>,
    /// Buyers and revenue per mailbox provider, messaged against held out.
    pub results_by_provider: Vec<SegmentReport>,
    /// Email deliverability per mailbox provider against the engine's thresholds.
    pub deliverability: Vec<Deliverability>,
    /// Automatic winner selection (campaigns with several variants).
    pub winner: Option<Winner>,
    /// Did they stay? Reactivated customers after their return.
    pub stay: winback_store::stay::Stay,
    /// Messages dropped at send time, by reason (no consent, suppressed, erased, cap, …).
    pub dropped_by_reason: std::collections::BTreeMap<String, i64>,
    /// People its export steps handed to ad audiences or print.
    pub exports: Vec<AudienceExport>,
    /// Its wallet passes (campaigns with a wallet step): issued, added to a wallet, updates,
    /// removed from every wallet, codes used.
    pub wallet: Option<winback_store::wallet::WalletCounts>,
    /// Its row of the programme table: counts, margin and verdict.
    pub summary: summary::CampaignSummary,
}

/// People one export step handed to one destination.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AudienceExport {
    /// Step id.
    pub step: String,
    /// Destination (`meta:lapsed`, `google:…`, `print:…`).
    pub target: String,
    /// People added.
    pub people: i64,
}

impl AudienceExport {
    /// `print` for a print list, `audience` for an ad platform's audience.
    pub fn kind(&self) -> &'static str {
        if self.target.starts_with("print") {
            "print"
        } else {
            "audience"
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// As of.
    pub as_of: Timestamp,
    /// Contacts who entered from here …
    pub from: Timestamp,
    /// … until here.
    pub until: Timestamp,
    /// Currency of the money figures.
    pub currency: String,
    /// The gross margin on revenue the margins and ROI assume (`[clv] margin`).
    pub margin: f64,
    /// Campaigns.
    pub campaigns: Vec<CampaignReport>,
    /// The programme's total over the campaigns' rows.
    pub total: summary::ProgrammeTotal,
    /// Email deliverability per mailbox provider over every campaign, against the thresholds
    /// at which the engine's breaker pauses the provider.
    pub deliverability: Vec<Deliverability>,
    /// List hygiene.
    pub hygiene: winback_store::privacy::Hygiene,
    /// Health of the base.
    pub base: BaseHealth,
    /// Every mailbox provider's ramp and breaker as the engine left them.
    pub providers: Vec<ProviderRamp>,
    /// Transports paused by their circuit breaker: (channel, reason, until).
    pub transport_pauses: Vec<(String, String, Timestamp)>,
}

/// A store arm as the statistics see it.
pub fn arm(a: &ArmResult) -> Arm {
    Arm {
        contacts: a.enrolled.max(0) as u64,
        converted: a.converted.max(0) as u64,
        revenue_minor: a.revenue_minor,
        revenue_sq: a.revenue_sq,
        revenue_log_sum: a.revenue_log_sum,
        revenue_log_sq: a.revenue_log_sq,
        pre: Some(winback_measure::PreEntry {
            x: a.pre.x,
            xx: a.pre.xx,
            x_bought: a.pre.x_bought,
            x_revenue: a.pre.x_revenue,
        }),
    }
}

/// All holdout arms as one (each keeps the variant it would have had; they are one group).
pub fn pooled_holdout(arms: &[ArmResult]) -> Option<ArmResult> {
    let mut out: Option<ArmResult> = None;
    for a in arms.iter().filter(|a| a.holdout) {
        let h = out.get_or_insert_with(|| ArmResult {
            variant: "holdout".into(),
            holdout: true,
            ..ArmResult::default()
        });
        h.absorb(a);
    }
    out
}

/// Whether a funnel row's channel is a message the outbox sent (email, SMS, a webhook call), as
/// opposed to a touch outside it (an audience file, a printed card, a call, a wallet pass):
/// "sent" and "delivered" totals count only these, the touches have their own columns.
pub fn is_outbox(channel: &str) -> bool {
    matches!(channel, "email" | "sms" | "webhook")
}

/// The family a funnel row's channel belongs to, as the programme table names channels: the
/// ad and onboarding destinations are one `audience`.
pub fn channel_family(channel: &str) -> &str {
    match channel {
        "meta" | "google" | "linkedin" | "crm" => "audience",
        other => other,
    }
}

/// Whether a funnel row's channel reaches one person at a time (email, SMS, a printed card, a
/// call, a wallet pass), as opposed to an ad audience or a webhook: margin per 1,000 messages
/// counts only these.
pub fn is_message(channel: &str) -> bool {
    !matches!(channel, "meta" | "google" | "linkedin" | "crm" | "webhook")
}

/// Message cost of one variant's messages.
fn message_cost(settings: &Settings, funnel: &[MessageFunnel], variant: &str) -> i64 {
    funnel
        .iter()
        .filter(|f| f.variant == variant)
        .map(|f| {
            f.sent
                * match f.channel.as_str() {
                    "email" => settings.email_cost_minor,
                    "sms" => settings.sms_cost_minor,
                    "print" => settings.print_cost_minor,
                    "meta" | "google" | "linkedin" | "crm" => settings.audience_cost_minor,
                    "call" => settings.call_cost_minor,
                    _ => 0,
                }
        })
        .sum()
}

/// The readouts of a campaign's arms: each treated variant and all of them together against
/// the holdout.
pub fn arm_reports(
    settings: &Settings,
    arms: &[ArmResult],
    funnel: &[MessageFunnel],
) -> (Vec<ArmReport>, Option<Readout>) {
    let margin = settings.margin;
    let pooled = pooled_holdout(arms);
    let holdout = pooled.as_ref().filter(|h| h.enrolled > 0);
    let arms: Vec<&ArmResult> = arms
        .iter()
        .filter(|a| !a.holdout)
        .chain(pooled.iter())
        .collect();
    let mut out = Vec::new();
    let mut all = Arm::default();
    let mut all_cost = Economics {
        margin,
        ..Economics::default()
    };
    for a in arms.iter().copied() {
        let cost = if a.holdout {
            0
        } else {
            message_cost(settings, funnel, &a.variant)
        };
        let messages: u64 = funnel
            .iter()
            .filter(|f| !a.holdout && f.variant == a.variant && is_message(&f.channel))
            .map(|f| f.sent.max(0) as u64)
            .sum();
        let economics = Economics {
            margin,
            discount_minor: a.discount_minor,
            message_cost_minor: cost,
            messages,
        };
        if !a.holdout {
            all = all.pooled(&arm(a));
            all_cost.discount_minor += a.discount_minor;
            all_cost.message_cost_minor += cost;
            all_cost.messages += messages;
        }
        out.push(ArmReport {
            variant: a.variant.clone(),
            holdout: a.holdout,
            contacts: a.enrolled,
            messaged: a.messaged,
            converted: a.converted,
            orders: a.orders,
            revenue_minor: a.revenue_minor,
            average_order_minor: (a.orders > 0).then(|| a.revenue_minor / a.orders),
            offers: a.offers,
            redeemed: a.redeemed,
            discount_minor: a.discount_minor,
            message_cost_minor: cost,
            readout: holdout
                .filter(|_| !a.holdout && a.enrolled > 0)
                .map(|h| Readout::new(arm(a), arm(h), economics)),
        });
    }
    let overall = holdout.filter(|_| all.contacts > 0).map(|h| {
        let mut r = Readout::new(all, arm(h), all_cost);
        let treated: Vec<&ArmResult> = arms.iter().copied().filter(|a| !a.holdout).collect();
        if let Some(large) = large_orders(&treated, h, all_cost) {
            if let Some(line) = large.sentence(&settings.currency) {
                r.warnings.push(line);
            }
        }
        r
    });
    (out, overall)
}

/// The buyers whose revenue in the window lies above the 99th percentile of both groups'
/// buyers, and the readout with every buyer's revenue capped there.
#[derive(Debug, Clone, PartialEq)]
pub struct LargeOrders {
    /// The 99th percentile, minor units.
    pub cap_minor: i64,
    /// Messaged buyers above it, and what they spent in all.
    pub treated: (i64, i64),
    /// Held-out buyers above it, and what they spent in all.
    pub holdout: (i64, i64),
    /// The readout with revenues capped at the percentile (without the CUPED adjustment,
    /// which needs each buyer's own revenue).
    pub capped: Readout,
    /// The same readout uncapped, to compare with.
    pub uncapped: Readout,
}

impl LargeOrders {
    /// What to say when the large orders move the margin by more than a quarter of its
    /// interval's half-width (or across zero); `None` when they do not matter.
    pub fn sentence(&self, currency: &str) -> Option<String> {
        let (m, c) = (
            self.uncapped.incremental_margin_minor?,
            self.capped.incremental_margin_minor?,
        );
        let half = (m.high - m.low) / 2.0;
        let moved = (m.estimate - c.estimate).abs();
        if moved <= 0.25 * half && (m.estimate >= 0.0) == (c.estimate >= 0.0) {
            return None;
        }
        let mut who = Vec::new();
        for ((k, spent), group) in [(self.holdout, "holdout"), (self.treated, "messaged")] {
            if k > 0 {
                who.push(format!(
                    "{k} {group} buyer(s) spent {}",
                    money(spent, currency)
                ));
            }
        }
        Some(format!(
            "large orders drive this readout: {} above the 99th percentile ({} a buyer); with every buyer capped there the margin is {}",
            who.join(" and "),
            money(self.cap_minor, currency),
            present::Figure::money(&c, currency).text
        ))
    }
}

/// [`LargeOrders`] of the messaged arms `treated` against `holdout`; `None` when nobody spent
/// above the 99th percentile (or nobody bought).
pub fn large_orders(
    treated: &[&ArmResult],
    holdout: &ArmResult,
    economics: Economics,
) -> Option<LargeOrders> {
    let mut all: Vec<(i64, i64)> = treated
        .iter()
        .chain(std::iter::once(&holdout))
        .flat_map(|a| a.buyer_revenues.iter().copied())
        .collect();
    all.sort_unstable();
    let buyers: i64 = all.iter().map(|(_, n)| n).sum();
    // The smallest revenue with at least 99% of buyers at or below it.
    let rank = ((buyers as f64) * 0.99).ceil() as i64;
    let mut seen = 0;
    let cap = all.iter().find_map(|(r, n)| {
        seen += n;
        (seen >= rank).then_some(*r)
    })?;
    let above = |arms: &[&ArmResult]| {
        arms.iter()
            .flat_map(|a| a.buyer_revenues.iter())
            .filter(|(r, _)| *r > cap)
            .fold((0, 0), |(k, s), (r, n)| (k + n, s + r * n))
    };
    let (t_above, h_above) = (above(treated), above(&[holdout]));
    if t_above.0 + h_above.0 == 0 {
        return None;
    }
    let capped = |arms: &[&ArmResult], cap: i64| {
        let mut a = Arm::default();
        for x in arms {
            a.contacts += x.enrolled.max(0) as u64;
            a.converted += x.converted.max(0) as u64;
            for (r, n) in &x.buyer_revenues {
                let v = (*r).min(cap);
                a.revenue_minor += v * n;
                let n = *n as f64;
                a.revenue_sq += n * (v as f64).powi(2);
                let l = (v.max(1) as f64).ln();
                a.revenue_log_sum += n * l;
                a.revenue_log_sq += n * l * l;
            }
        }
        a
    };
    Some(LargeOrders {
        cap_minor: cap,
        treated: t_above,
        holdout: h_above,
        capped: Readout::new(capped(treated, cap), capped(&[holdout], cap), economics),
        uncapped: Readout::new(
            capped(treated, i64::MAX),
            capped(&[holdout], i64::MAX),
            economics,
        ),
    })
}

/// The instant a report measures at when none is given: the later of the clock and the
/// store's data horizon (its latest scoring run or import). A shop's data never runs ahead of
/// its clock, so there this is `now`; a simulated programme's runs months ahead, and every
/// screen (`winback report`, `report.html`, `GET /v1/report`, the dashboard) then measures
/// idleness and "did they stay?" at the same instant, where the data ends.
pub async fn as_of(store: &SqlStore, now: Timestamp) -> Result<Timestamp, ReportError> {
    Ok(store.data_horizon().await?.map_or(now, |h| h.max(now)))
}

/// The last instant a report covers by default (a simulated programme runs ahead of the clock).
pub fn forever() -> Timestamp {
    Timestamp::from_micros(253_370_764_800_000_000).unwrap_or(Timestamp::EPOCH)
}

/// Gathers the report for contacts who entered in `[from, until)`.
pub async fn build(
    settings: &Settings,
    store: &SqlStore,
    from: Timestamp,
    until: Timestamp,
    now: Timestamp,
) -> Result<Report, ReportError> {
    // Where a report's time goes, logged at the end (`WINBACK_LOG=winback::report=info`).
    let mut parts = Parts::default();
    let mut clock = std::time::Instant::now();
    let (campaigns, reasons, deliverability) = campaign_reports(
        settings, store, from, until, now, None, &mut parts, &mut clock,
    )
    .await?;
    let hygiene = store.hygiene(now).await?;
    parts.lap(&mut clock, |p| &mut p.hygiene);
    let shares = store.stage_shares().await?;
    let latest = shares.iter().map(|(t, _, _)| *t).max();
    let stages = shares
        .iter()
        .filter(|(t, _, _)| Some(*t) == latest)
        .map(|(_, s, k)| (s.clone(), *k))
        .collect();
    let mut history = shares;
    history.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let migration = store.segment_migration().await?;
    parts.lap(&mut clock, |p| &mut p.base);
    let providers = store.provider_ramps().await?;
    let transport_pauses = store.transport_pauses().await?;
    parts.lap(&mut clock, |p| &mut p.providers);
    parts.log("*");
    let rows: Vec<summary::CampaignSummary> = campaigns.iter().map(|c| c.summary.clone()).collect();
    Ok(Report {
        as_of: now,
        from,
        until,
        currency: settings.currency.clone(),
        margin: settings.margin,
        total: summary::ProgrammeTotal::new(&rows, &settings.currency),
        campaigns,
        deliverability,
        hygiene,
        base: BaseHealth {
            stages,
            history,
            migration,
            reasons,
        },
        providers,
        transport_pauses,
    })
}

/// The report of one campaign (`None`: no such campaign), for contacts who entered in
/// `[from, until)`: what its dashboard page shows, without the other campaigns' figures, the
/// list hygiene or the base's health.
pub async fn build_campaign(
    settings: &Settings,
    store: &SqlStore,
    name: &str,
    from: Timestamp,
    until: Timestamp,
    now: Timestamp,
) -> Result<Option<CampaignReport>, ReportError> {
    let mut parts = Parts::default();
    let mut clock = std::time::Instant::now();
    let (mut campaigns, _, _) = campaign_reports(
        settings,
        store,
        from,
        until,
        now,
        Some(name),
        &mut parts,
        &mut clock,
    )
    .await?;
    parts.log(name);
    Ok(campaigns.pop())
}

/// One calendar month (UTC) of a campaign's contacts, by the month they entered.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MonthPoint {
    /// `2027-03`.
    pub month: String,
    /// The month's first instant.
    pub start: Timestamp,
    /// Contacts who entered that month.
    pub entered: i64,
    /// Messages accepted for the contacts who entered that month, whenever they left.
    pub sent: i64,
    /// Of the month's messaged-group contacts, buyers within the attribution window.
    pub buyers: i64,
    /// Of the month's held-out contacts, buyers within the window.
    pub holdout_buyers: i64,
    /// Incremental margin of everyone who entered from the first month through this one, with
    /// its 95% interval (`None` without a holdout yet).
    pub margin_to_date: Option<winback_measure::Interval>,
}

/// Months a campaign's chart covers at most (the latest ones).
pub const TIMELINE_MONTHS: usize = 24;

/// A campaign's contacts month by month of entry in `[from, until)`: how many entered, their
/// messages, the buyers, and the incremental margin to date. `None`: no such campaign. One
/// read of the arms and of the messages per month; the margin to date adds the months' arms
/// and messages, which are disjoint cohorts, so at the last month it is the report's margin.
pub async fn timeline(
    settings: &Settings,
    store: &SqlStore,
    name: &str,
    from: Timestamp,
    until: Timestamp,
) -> Result<Option<Vec<MonthPoint>>, ReportError> {
    let records = store.campaigns().await.map_err(|e| ReportError::Campaign {
        name: name.into(),
        message: e.to_string(),
    })?;
    let Some(rec) = records.into_iter().find(|r| r.name == name) else {
        return Ok(None);
    };
    let c = Campaign::parse(&rec.file, &rec.source).map_err(|e| ReportError::Campaign {
        name: rec.name.clone(),
        message: e.to_string(),
    })?;
    let Some((first, last)) = store.entry_span(rec.id, from, until).await? else {
        return Ok(Some(Vec::new()));
    };
    let month_start = |t: Timestamp| {
        let d = t.date_local();
        jiff::civil::date(d.year(), d.month(), 1)
    };
    let mut months = Vec::new();
    let mut m = month_start(first);
    let end = month_start(last);
    while m <= end {
        months.push(m);
        m = match m.checked_add(jiff::Span::new().months(1)) {
            Ok(next) => next,
            Err(_) => break,
        };
    }
    let skip = months.len().saturating_sub(TIMELINE_MONTHS);
    let at = |d: jiff::civil::Date| {
        d.to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| Timestamp::new(z.timestamp()))
            .unwrap_or(Timestamp::EPOCH)
    };
    let window = c.conversion_window.seconds();
    let mut all_arms: Vec<ArmResult> = Vec::new();
    let mut all_funnel: Vec<MessageFunnel> = Vec::new();
    let mut out = Vec::new();
    for (i, m) in months.iter().enumerate() {
        let lo = at(*m).max(from);
        let hi = months
            .get(i + 1)
            .map(|n| at(*n))
            .unwrap_or(until)
            .min(until);
        let (arms, _) = store
            .campaign_arms(rec.id, window, (lo, hi), &[], Outcomes::StoredWhereExact)
            .await?;
        // The cohort's own messages, whenever they left: what it cost.
        let funnel: Vec<MessageFunnel> = store
            .cohort_messages(rec.id, lo, hi)
            .await?
            .into_iter()
            .map(|(variant, channel, sent)| MessageFunnel {
                variant,
                channel,
                sent,
                ..MessageFunnel::default()
            })
            .collect();
        for a in &arms {
            match all_arms
                .iter_mut()
                .find(|x| x.variant == a.variant && x.holdout == a.holdout)
            {
                Some(x) => x.absorb(a),
                None => all_arms.push(a.clone()),
            }
        }
        all_funnel.extend(funnel.iter().cloned());
        if i < skip {
            continue;
        }
        let (_, overall) = arm_reports(settings, &all_arms, &all_funnel);
        out.push(MonthPoint {
            month: format!("{:04}-{:02}", m.year(), m.month()),
            start: at(*m),
            entered: arms.iter().map(|a| a.enrolled).sum(),
            sent: funnel
                .iter()
                .filter(|f| is_outbox(&f.channel))
                .map(|f| f.sent)
                .sum(),
            buyers: arms
                .iter()
                .filter(|a| !a.holdout)
                .map(|a| a.converted)
                .sum(),
            holdout_buyers: arms.iter().filter(|a| a.holdout).map(|a| a.converted).sum(),
            margin_to_date: overall.and_then(|o| o.incremental_margin_minor),
        });
    }
    Ok(Some(out))
}

/// Each campaign's report (or only `only`'s), the survey's reasons for leaving summed over
/// them, and email deliverability per mailbox provider over them.
#[allow(clippy::too_many_arguments)]
async fn campaign_reports(
    settings: &Settings,
    store: &SqlStore,
    from: Timestamp,
    until: Timestamp,
    now: Timestamp,
    only: Option<&str>,
    parts: &mut Parts,
    clock: &mut std::time::Instant,
) -> Result<
    (
        Vec<CampaignReport>,
        BTreeMap<String, i64>,
        Vec<Deliverability>,
    ),
    ReportError,
> {
    let mut campaigns = Vec::new();
    let mut all_detail: Vec<MessageFunnel> = Vec::new();
    let mut reasons: BTreeMap<String, i64> = BTreeMap::new();
    let records = store.campaigns().await.map_err(|e| ReportError::Campaign {
        name: "*".into(),
        message: e.to_string(),
    })?;
    let parsed = records
        .into_iter()
        .filter(|rec| only.is_none_or(|name| rec.name == name))
        .map(|rec| {
            let c = Campaign::parse(&rec.file, &rec.source).map_err(|e| ReportError::Campaign {
                name: rec.name.clone(),
                message: e.to_string(),
            })?;
            Ok((rec, c))
        })
        .collect::<Result<Vec<_>, ReportError>>()?;
    parts.lap(clock, |p| &mut p.campaigns);
    if only.is_some() && parsed.is_empty() {
        // An unknown name: nothing to gather.
        return Ok((Vec::new(), BTreeMap::new(), Vec::new()));
    }
    // The funnels and the cohorts are read once for all campaigns, not once per campaign.
    let mut details = match &parsed[..] {
        [(rec, _)] if only.is_some() => HashMap::from([(
            rec.id,
            store.message_funnel_detail(rec.id, from, until).await?,
        )]),
        _ => store.message_funnel_details(from, until).await?,
    };
    parts.lap(clock, |p| &mut p.funnels);
    let windows: Vec<(winback_domain::CampaignId, i64)> = parsed
        .iter()
        .map(|(rec, c)| (rec.id, c.conversion_window.seconds()))
        .collect();
    // The cohorts and every campaign's arms are independent reads, made at once on two
    // connections (SQLite's scans run on threads of their own): the report waits for the
    // longer of the two, not their sum (at a million customers 0.86 s and 0.37 s).
    let timed = |started: std::time::Instant| started.elapsed().as_secs_f64();
    let cohorts = async {
        let started = std::time::Instant::now();
        let stays = store.stays(&windows, now).await?;
        Ok::<_, ReportError>((stays, timed(started)))
    };
    let all_arms = async {
        let started = std::time::Instant::now();
        let mut all = Vec::with_capacity(parsed.len());
        for (rec, c) in &parsed {
            all.push(
                store
                    .campaign_arms(
                        rec.id,
                        c.conversion_window.seconds(),
                        (from, until),
                        &[Segment::Locale, Segment::Provider],
                        Outcomes::StoredWhereExact,
                    )
                    .await?,
            );
        }
        Ok::<_, ReportError>((all, timed(started)))
    };
    let ((stays, stays_s), (all_arms, arms_s)) =
        futures_util::future::try_join(cohorts, all_arms).await?;
    // Each part's own time (they overlap); the clock restarts after both.
    parts.stays += stays_s;
    parts.arms += arms_s;
    *clock = std::time::Instant::now();
    for (((rec, c), stay), (arms, mut by_segment)) in parsed.into_iter().zip(stays).zip(all_arms) {
        let window = c.conversion_window.seconds();
        let detail = details.remove(&rec.id).unwrap_or_default();
        all_detail.extend(detail.iter().cloned());
        let messages = winback_store::rollup(&detail, FunnelKey::StepVariantChannel);
        for f in &messages {
            for (k, v) in &f.survey {
                *reasons.entry(k.clone()).or_default() += v;
            }
        }
        let (arms_out, overall) = arm_reports(settings, &arms, &messages);
        let variants: Vec<(String, Arm)> = arms
            .iter()
            .filter(|a| !a.holdout)
            .map(|a| (a.variant.clone(), arm(a)))
            .collect();
        let holdout = pooled_holdout(&arms).map(|h| arm(&h)).unwrap_or_default();
        let flow = store
            .journey_flow(rec.id, rec.version, (from, until))
            .await?;
        let journey_nodes = journey(&c, &messages, &flow);
        let results_by_provider = segments(&by_segment.pop().unwrap_or_default(), settings.margin);
        let results_by_locale = segments(&by_segment.pop().unwrap_or_default(), settings.margin);
        let exports = store
            .audience_export_counts(rec.id, from, until)
            .await?
            .into_iter()
            .map(|(step, target, people)| AudienceExport {
                step,
                target,
                people,
            })
            .collect();
        let wallet = if c
            .steps
            .iter()
            .any(|s| matches!(s.action, winback_engine::definition::Action::Wallet { .. }))
        {
            Some(store.wallet_counts(rec.id, from, until).await?)
        } else {
            None
        };
        let mut report = CampaignReport {
            name: rec.name,
            description: c.description.clone(),
            status: rec.status.to_string(),
            window_days: window as f64 / 86_400.0,
            arms: arms_out,
            overall,
            messages,
            journey: journey_nodes,
            journey_version: flow.version,
            journey_other_versions: flow.other_versions,
            by_locale: winback_store::rollup(&detail, FunnelKey::Locale),
            results_by_locale,
            results_by_provider,
            deliverability: winback_store::rollup(&detail, FunnelKey::Provider)
                .iter()
                // `-`: email dropped before an attempt, so no provider was ever asked.
                .filter(|f| f.provider != "-")
                .map(|f| Deliverability::new(f, &settings.ramp))
                .collect(),
            winner: (variants.len() > 1)
                .then(|| winback_measure::choose_winner(&variants, &holdout)),
            stay,
            dropped_by_reason: store.drop_reasons(rec.id, from, until).await?,
            exports,
            wallet,
            // Filled in from the report's own figures just below.
            summary: summary::CampaignSummary::default(),
        };
        report.summary = summary::CampaignSummary::new(&report, &settings.currency);
        campaigns.push(report);
        parts.lap(clock, |p| &mut p.drops);
    }
    let deliverability = winback_store::rollup(&all_detail, FunnelKey::Provider)
        .iter()
        .filter(|f| f.provider != "-")
        .map(|f| Deliverability::new(f, &settings.ramp))
        .collect();
    Ok((campaigns, reasons, deliverability))
}

/// Seconds spent on each part of [`build`]; `stays` and `arms` run at once, so each is its own
/// time and together they took the longer of the two.
#[derive(Debug, Default)]
struct Parts {
    campaigns: f64,
    funnels: f64,
    stays: f64,
    arms: f64,
    drops: f64,
    hygiene: f64,
    base: f64,
    providers: f64,
}

impl Parts {
    /// Logs where the time went (`WINBACK_LOG=winback::report=info`); `scope` is `*` for the
    /// whole report, or the campaign's name.
    fn log(&self, scope: &str) {
        tracing::info!(
            target: "winback::report",
            scope,
            campaigns_s = self.campaigns,
            funnels_s = self.funnels,
            stays_s = self.stays,
            arms_s = self.arms,
            drops_s = self.drops,
            hygiene_s = self.hygiene,
            base_s = self.base,
            providers_s = self.providers,
            "report gathered"
        );
    }

    /// Adds the time since `clock` to one part and restarts the clock.
    fn lap(&mut self, clock: &mut std::time::Instant, part: impl FnOnce(&mut Self) -> &mut f64) {
        *part(self) += clock.elapsed().as_secs_f64();
        *clock = std::time::Instant::now();
    }
}

/// Formats minor units of a currency code, e.g. `1234.50 EUR`.
pub fn money(minor: i64, currency: &str) -> String {
    let Ok(c) = Currency::parse(currency) else {
        return format!("{minor} {currency} (minor units)");
    };
    // Whole units grouped by thousands: 269,940.16 EUR.
    let sign = if minor < 0 { "-" } else { "" };
    let (abs, digits) = (minor.unsigned_abs(), u32::from(c.minor_digits()));
    let unit = 10u64.pow(digits);
    if digits == 0 {
        format!("{sign}{} {c}", n(abs))
    } else {
        format!(
            "{sign}{}.{:0w$} {c}",
            n(abs / unit),
            abs % unit,
            w = digits as usize
        )
    }
}

/// Thousands separators for counts: `12,345`.
pub fn n(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn funnel(sent: i64, hard: i64, complained: i64) -> MessageFunnel {
        MessageFunnel {
            channel: "email".into(),
            provider: "google".into(),
            sent,
            delivered: sent - hard,
            hard_bounced: hard,
            complained,
            ..MessageFunnel::default()
        }
    }

    #[test]
    fn deliverability_is_flagged_at_the_engines_thresholds() {
        let ramp = RampSettings::default(); // 2% hard bounces, 0.1% complaints
        let ok = Deliverability::new(&funnel(1_000, 19, 0), &ramp);
        assert!(!ok.over_threshold);
        assert!((ok.hard_bounce_rate - 0.019).abs() < 1e-12);
        assert!(Deliverability::new(&funnel(1_000, 20, 0), &ramp).over_threshold);
        assert!(Deliverability::new(&funnel(1_000, 0, 1), &ramp).over_threshold);
        assert!(!Deliverability::new(&funnel(0, 0, 0), &ramp).over_threshold);
    }

    #[test]
    fn journeys_carry_each_steps_counts_and_edges() {
        let c = Campaign::parse(
            "t.toml",
            r#"
[campaign]
name = "t"
audience = 'email_ok'
[trigger]
type = "audience"
[[steps]]
id = "hello"
type = "send"
template = "we-miss-you"
subject = "Hi"
[[steps]]
id = "pause"
type = "wait"
duration = "7d"
"#,
        )
        .unwrap();
        let mut f = funnel(10, 0, 0);
        f.step = "hello".into();
        f.clicked = 3;
        // 100 entered; 10 still wait at `pause` and 5 left there (they bought).
        let flow = JourneyFlow {
            version: 1,
            entered: 100,
            at_step: [(1, (10, 5))].into(),
            ..JourneyFlow::default()
        };
        let j = journey(&c, &[f.clone(), f], &flow);
        assert_eq!(j.len(), 2);
        assert_eq!(
            (j[0].id.as_str(), j[0].sent, j[0].clicked),
            ("hello", 20, 6)
        );
        assert_eq!(j[0].next, [("pause".to_owned(), String::new())]);
        assert_eq!(j[1].label, "wait 1w");
        assert_eq!(j[1].next, [("end".to_owned(), String::new())]);
        assert_eq!((j[0].reached, j[0].taken.as_slice()), (100, &[100][..]));
        assert_eq!(
            (j[1].reached, j[1].waiting, j[1].left, j[1].taken.as_slice()),
            (100, 10, 5, &[85][..])
        );
    }

    #[test]
    fn branch_edges_carry_their_question_and_how_many_took_them() {
        let c = Campaign::parse(
            "t.toml",
            r#"
[campaign]
name = "t"
audience = 'email_ok'
[trigger]
type = "audience"
[[steps]]
id = "hello"
type = "send"
template = "we-miss-you"
subject = "Hi"
[[steps]]
id = "pause"
type = "wait"
duration = "7d"
[[steps]]
id = "reacted"
type = "branch"
opened = "hello"
then = "end"
else = "again"
[[steps]]
id = "again"
type = "send"
template = "we-miss-you"
subject = "Hi again"
"#,
        )
        .unwrap();
        let decisions = [
            ("reacted".to_owned(), "opened `hello`: yes".to_owned(), 4),
            ("reacted".to_owned(), "opened `hello`: no".to_owned(), 11),
            ("pause".to_owned(), "something else".to_owned(), 99),
        ];
        let flow = JourneyFlow {
            version: 1,
            entered: 20,
            at_step: [(1, (5, 0))].into(),
            decisions: decisions.to_vec(),
            ..JourneyFlow::default()
        };
        let j = journey(&c, &[], &flow);
        let branch = j.iter().find(|s| s.id == "reacted").unwrap();
        assert_eq!(branch.label, "opened hello?");
        assert_eq!(
            branch.next,
            [
                ("end".to_owned(), "yes".to_owned()),
                ("again".to_owned(), "no".to_owned())
            ]
        );
        assert_eq!(branch.taken, [4, 11]);
        // A plain step's edge carries those who reached it and moved on; the branch's "no"
        // feeds the step after it.
        assert_eq!((j[1].reached, j[1].taken.as_slice()), (20, &[15][..]));
        assert_eq!(branch.reached, 15);
        assert_eq!((j[3].reached, j[3].taken.as_slice()), (11, &[11][..]));
    }

    #[test]
    fn large_orders_that_drive_a_readout_are_named() {
        // 2,000 messaged with 200 buyers at 50.00; 500 held out with 25 at 50.00 and 2 who
        // spent 2,500.00 each: without those two the campaign is clearly ahead.
        let arm = |holdout: bool, n: i64, buyers: &[(i64, i64)]| {
            let mut a = ArmResult {
                variant: "a".into(),
                holdout,
                enrolled: n,
                ..ArmResult::default()
            };
            for (r, k) in buyers {
                a.converted += k;
                a.orders += k;
                a.revenue_minor += r * k;
                a.revenue_sq += *k as f64 * (*r as f64).powi(2);
                a.revenue_log_sum += *k as f64 * (*r as f64).ln();
                a.revenue_log_sq += *k as f64 * (*r as f64).ln().powi(2);
                a.buyer_revenues.push((*r, *k));
            }
            a
        };
        let arms = [
            arm(false, 2_000, &[(5_000, 200)]),
            arm(true, 500, &[(5_000, 25), (250_000, 2)]),
        ];
        let settings = Settings {
            margin: 0.4,
            ..Settings::default()
        };
        let (_, overall) = arm_reports(&settings, &arms, &[]);
        let r = overall.unwrap();
        let line = r
            .warnings
            .iter()
            .find(|w| w.starts_with("large orders drive this readout"))
            .unwrap_or_else(|| panic!("{:?}", r.warnings));
        assert!(
            line.contains("2 holdout buyer(s) spent 5,000.00 EUR above the 99th percentile (50.00 EUR a buyer)"),
            "{line}"
        );
        let economics = Economics {
            margin: 0.4,
            ..Economics::default()
        };
        let large = large_orders(&[&arms[0]], &arms[1], economics).unwrap();
        assert!(
            large.capped.incremental_margin_minor.unwrap().estimate
                > large.uncapped.incremental_margin_minor.unwrap().estimate
        );
        // Without outliers nothing is said.
        let calm = [
            arm(false, 2_000, &[(5_000, 200)]),
            arm(true, 500, &[(5_000, 25)]),
        ];
        let (_, overall) = arm_reports(&settings, &calm, &[]);
        assert!(
            !overall
                .unwrap()
                .warnings
                .iter()
                .any(|w| w.starts_with("large orders"))
        );
    }

    #[test]
    fn money_groups_thousands_in_the_currency_s_digits() {
        assert_eq!(money(26_994_016, "EUR"), "269,940.16 EUR");
        assert_eq!(money(-5, "EUR"), "-0.05 EUR");
        assert_eq!(money(1_500, "JPY"), "1,500 JPY");
        assert_eq!(n(1_234_567), "1,234,567");
    }
}
