//! The journey state machine, pure: given an enrolment that is due, its campaign and what is
//! known about the contact, [`advance`] runs steps until the journey waits or ends and returns
//! the effects (messages, offers, tags, exports, webhooks) with the next state. The store
//! applies a [`Plan`] in one transaction together with the outbox rows, under the claim's
//! fencing token, so a step's state change and its messages are written together or not at all.

use jiff::tz::TimeZone;
use winback_domain::{Channel, EnrolmentId, MessageKey, ProfileId, Timestamp};

use crate::audience::{AudienceRow, Evaluator, JourneyFacts};
use crate::definition::{
    Action, Campaign, Condition, DateRule, ExportTarget, StaleAction, Trigger,
};
use crate::experiment::{self, ArmStats};
use crate::offer::{self, IssuedOffer};
use crate::policy::next_local_time;

/// An enrolment as the engine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrolment {
    /// Id.
    pub id: EnrolmentId,
    /// The contact (merged profile).
    pub profile_id: ProfileId,
    /// The current step.
    pub step: usize,
    /// `true` when the current step is a wait that has started: being due means it is over.
    pub resume: bool,
    /// When the contact entered.
    pub entered_at: Timestamp,
    /// When the current step became due.
    pub due_at: Timestamp,
    /// Experiment variant.
    pub variant: String,
}

/// What is known about the contact when a step runs.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Features, scores, tags, attributes, consent.
    pub row: AudienceRow,
    /// Opens, clicks, purchases and survey answers since entering.
    pub journey: JourneyFacts,
    /// Offers this enrolment already holds, per ladder.
    pub offers_issued: std::collections::BTreeMap<String, usize>,
    /// The event a waiting step waits for has arrived since the wait began.
    pub event_arrived: bool,
    /// The contact's IANA zone.
    pub time_zone: Option<String>,
}

/// A message for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    /// Step id.
    pub step_id: String,
    /// Channel.
    pub channel: Channel,
    /// Template.
    pub template: String,
    /// Subject.
    pub subject: Option<String>,
    /// Preheader.
    pub preheader: Option<String>,
    /// Sender name.
    pub sender_name: Option<String>,
    /// `campaign/enrolment/step/channel`: unique per message, for ever.
    pub idempotency_key: MessageKey,
    /// Not before.
    pub not_before: Timestamp,
    /// A farewell: unsubscribe from marketing email once it is settled.
    pub sunset: bool,
}

/// One effect of running steps.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Queue a message.
    Message(OutgoingMessage),
    /// Issue an offer code.
    Offer {
        /// Step id.
        step_id: String,
        /// The offer.
        offer: IssuedOffer,
    },
    /// Add tags.
    Tag(Vec<String>),
    /// Remove tags.
    Untag(Vec<String>),
    /// Unsubscribe from marketing email (a sunset whose farewell was skipped).
    Unsubscribe {
        /// Step id.
        step_id: String,
    },
    /// Add to an audience export.
    Export {
        /// Step id.
        step_id: String,
        /// Where.
        target: ExportTarget,
    },
    /// Issue or update the contact's wallet pass.
    Wallet {
        /// Step id.
        step_id: String,
        /// Coupon or store card.
        style: crate::definition::PassStyle,
        /// The pass's serial (one per campaign and person).
        serial: String,
    },
    /// Put the contact on a call list.
    Call {
        /// Step id.
        step_id: String,
        /// The list.
        list: String,
    },
    /// Call a webhook (queued in the outbox like a message).
    Webhook {
        /// Step id.
        step_id: String,
        /// URL.
        url: String,
        /// Idempotency key.
        idempotency_key: MessageKey,
    },
    /// A line for the journey log.
    Log {
        /// Step id.
        step_id: String,
        /// What happened.
        what: String,
    },
}

/// How a journey ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// It ran to its end (or an exit step).
    Completed,
    /// It was left early (order, unsubscribe, complaint).
    Exited,
}

impl Terminal {
    /// Stored state name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Exited => "exited",
        }
    }
}

/// The state after a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Continue at `step` when `due_at` comes.
    At {
        /// Step.
        step: usize,
        /// Resuming a started wait.
        resume: bool,
        /// When.
        due_at: Timestamp,
        /// The event that ends the wait early, as the file writes it.
        waiting_event: Option<String>,
    },
    /// Done.
    Done {
        /// How.
        state: Terminal,
        /// Why, in words.
        reason: String,
    },
}

/// The effects of one advance and the state after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// In order.
    pub effects: Vec<Effect>,
    /// The next state.
    pub next: Next,
    /// Steps executed.
    pub steps_run: u32,
}

/// Runs a due enrolment until it waits or ends. `secret` keys offer codes.
pub fn advance(
    campaign: &Campaign,
    e: &Enrolment,
    snap: &Snapshot,
    now: Timestamp,
    secret: &[u8],
    eval: &Evaluator,
) -> Plan {
    let mut effects = Vec::new();
    let zone = snap
        .time_zone
        .as_deref()
        .and_then(|z| TimeZone::get(z).ok())
        .unwrap_or(TimeZone::UTC);
    let late =
        now.as_micros() - e.due_at.as_micros() > campaign.policy.max_late.seconds() * 1_000_000;
    let mut stale_handled = false;
    let mut i = e.step;
    let mut resume = e.resume;
    let mut steps_run = 0;
    let done = |effects, state, reason: String, steps_run| Plan {
        effects,
        next: Next::Done { state, reason },
        steps_run,
    };
    // Journeys are acyclic (checked on load), so each step runs at most once per advance.
    for _ in 0..=campaign.steps.len() {
        let Some(step) = campaign.steps.get(i) else {
            return done(
                effects,
                Terminal::Completed,
                "journey finished".into(),
                steps_run,
            );
        };
        steps_run += 1;
        let mut goto = step.next;
        match &step.action {
            Action::Wait {
                until_local,
                until_event,
                on_timeout,
                ..
            } => {
                if resume {
                    resume = false;
                    if let Some(ev) = until_event {
                        if !snap.event_arrived {
                            effects.push(Effect::Log {
                                step_id: step.id.clone(),
                                what: format!("{} did not arrive in time", ev.label()),
                            });
                            goto = *on_timeout;
                        } else {
                            effects.push(Effect::Log {
                                step_id: step.id.clone(),
                                what: format!("{} arrived", ev.label()),
                            });
                        }
                    }
                } else {
                    let d = campaign
                        .wait_for(i, &e.variant)
                        .expect("a wait step has a duration");
                    let mut due = now.plus_seconds(d.seconds());
                    if let Some(t) = until_local {
                        due = next_local_time(due, &zone, *t);
                    }
                    return Plan {
                        effects,
                        next: Next::At {
                            step: i,
                            resume: true,
                            due_at: due,
                            waiting_event: until_event.as_ref().map(|e| e.label()),
                        },
                        steps_run,
                    };
                }
            }
            Action::Send(_) | Action::Sunset(_) => {
                let m = campaign
                    .message_for(i, &e.variant)
                    .expect("a send step has a message");
                let sunset = matches!(step.action, Action::Sunset(_));
                if late && !stale_handled {
                    stale_handled = true;
                    match campaign.policy.stale {
                        StaleAction::Skip => {
                            effects.push(Effect::Log {
                                step_id: step.id.clone(),
                                what: format!(
                                    "skipped: due {} but workers were down (policy.stale = skip)",
                                    e.due_at
                                ),
                            });
                            if sunset {
                                effects.push(Effect::Unsubscribe {
                                    step_id: step.id.clone(),
                                });
                            }
                            i = match goto {
                                Some(j) => j,
                                None => {
                                    return done(
                                        effects,
                                        Terminal::Completed,
                                        "journey finished".into(),
                                        steps_run,
                                    );
                                }
                            };
                            continue;
                        }
                        StaleAction::Replan { spread } => {
                            // Spread the backlog deterministically over the window.
                            let u = experiment::unit_hash(&["replan", &e.id.to_string(), &step.id]);
                            let offset = (u * spread.seconds() as f64) as i64;
                            effects.push(Effect::Log {
                                step_id: step.id.clone(),
                                what: format!("late: re-planned {offset}s from now"),
                            });
                            return Plan {
                                effects,
                                next: Next::At {
                                    step: i,
                                    resume: false,
                                    due_at: now.plus_seconds(offset.max(1)),
                                    waiting_event: None,
                                },
                                steps_run,
                            };
                        }
                    }
                }
                effects.push(Effect::Message(OutgoingMessage {
                    step_id: step.id.clone(),
                    channel: m.channel,
                    template: m.template,
                    subject: m.subject,
                    preheader: m.preheader,
                    sender_name: m.sender_name,
                    idempotency_key: message_key(
                        &campaign.name,
                        e.id,
                        &step.id,
                        m.channel.as_str(),
                    ),
                    not_before: now,
                    sunset,
                }));
            }
            Action::Offer { .. } => {
                let name = campaign.ladder_for(i, &e.variant).expect("an offer step");
                let ladder = &campaign.offers[name];
                let held = snap.offers_issued.get(name).copied().unwrap_or(0);
                let (rung, details) = offer::next_rung(ladder, held);
                effects.push(Effect::Offer {
                    step_id: step.id.clone(),
                    offer: IssuedOffer {
                        code: offer::code(secret, &campaign.name, e.id, &step.id),
                        ladder: name.to_owned(),
                        rung,
                        details: details.clone(),
                        currency: ladder.currency.clone(),
                        expires_at: now.plus_seconds(details.valid_for.seconds()),
                    },
                });
            }
            Action::Branch {
                condition,
                then,
                otherwise,
            } => {
                let (yes, what) = test(condition, snap, eval);
                effects.push(Effect::Log {
                    step_id: step.id.clone(),
                    what: format!("{what}: {}", if yes { "yes" } else { "no" }),
                });
                goto = if yes { *then } else { *otherwise };
            }
            Action::Tag(tags) => effects.push(Effect::Tag(tags.clone())),
            Action::Untag(tags) => effects.push(Effect::Untag(tags.clone())),
            Action::Export { target, .. } => effects.push(Effect::Export {
                step_id: step.id.clone(),
                target: *target,
            }),
            Action::Wallet { style } => effects.push(Effect::Wallet {
                step_id: step.id.clone(),
                style: *style,
                serial: offer::pass_serial(secret, &campaign.name, e.profile_id),
            }),
            Action::Call { list } => effects.push(Effect::Call {
                step_id: step.id.clone(),
                list: list.clone(),
            }),
            Action::Webhook { url } => effects.push(Effect::Webhook {
                step_id: step.id.clone(),
                url: url.clone(),
                idempotency_key: message_key(&campaign.name, e.id, &step.id, "webhook"),
            }),
            Action::Exit => {
                return done(
                    effects,
                    Terminal::Completed,
                    format!("exit step `{}`", step.id),
                    steps_run,
                );
            }
        }
        match goto {
            Some(j) => i = j,
            None => {
                return done(
                    effects,
                    Terminal::Completed,
                    "journey finished".into(),
                    steps_run,
                );
            }
        }
    }
    done(
        effects,
        Terminal::Completed,
        "journey finished".into(),
        steps_run,
    )
}

/// The idempotency key of a message: one per (campaign, enrolment, step, channel), where the
/// enrolment stands for (campaign, contact, entry).
pub fn message_key(
    campaign: &str,
    enrolment_id: EnrolmentId,
    step: &str,
    channel: &str,
) -> MessageKey {
    MessageKey::new(campaign, enrolment_id, step, channel)
}

fn test(condition: &Condition, snap: &Snapshot, eval: &Evaluator) -> (bool, String) {
    match condition {
        Condition::Opened(s) => (
            snap.journey.opened.iter().any(|o| o == s),
            format!("opened `{s}`"),
        ),
        Condition::Clicked(s) => (
            snap.journey.clicked.iter().any(|o| o == s),
            format!("clicked `{s}`"),
        ),
        Condition::SurveyReason(r) => (
            snap.journey.survey_reason.as_deref() == Some(r.as_str()),
            format!("survey reason {}", r.as_str()),
        ),
        Condition::CallOutcome(o) => (
            snap.journey.call_outcome.as_deref() == Some(o.as_str()),
            format!("call outcome {}", o.as_str()),
        ),
        Condition::HasTag(t) => (
            snap.row.tags.iter().any(|x| x == t),
            format!("has tag `{t}`"),
        ),
        Condition::Purchased => (snap.journey.purchased, "purchased".into()),
        Condition::Expr(a) => match a.matches(eval, &snap.row, Some(&snap.journey)) {
            Ok(b) => (b, format!("`{}`", a.source())),
            Err(err) => (
                false,
                format!("`{}` could not be evaluated ({err})", a.source()),
            ),
        },
    }
}

/// A contact's entry history in one campaign and elsewhere.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntryHistory {
    /// An enrolment in this campaign is still active.
    pub active_here: bool,
    /// When the last enrolment in this campaign ended.
    pub last_ended_at: Option<Timestamp>,
    /// Entries so far.
    pub entries: u32,
    /// An active enrolment in another exclusive campaign, by name.
    pub exclusive_elsewhere: Option<String>,
}

/// Whether and how a contact enters.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Enrol.
    Enter {
        /// Variant.
        variant: String,
        /// Held out: enrolled for measurement, never messaged.
        holdout: bool,
        /// When the first step is due.
        first_due: Timestamp,
    },
    /// Not now.
    Refuse(&'static str),
}

/// Decides an entry at `now` (first step due at `start`).
pub fn admit(
    campaign: &Campaign,
    profile_id: ProfileId,
    history: &EntryHistory,
    arms: &[ArmStats],
    start: Timestamp,
    now: Timestamp,
) -> Admission {
    if history.active_here {
        return Admission::Refuse("already in this journey");
    }
    if let Some(max) = campaign.entry.max_entries {
        if history.entries >= max {
            return Admission::Refuse("entered the maximum number of times");
        }
    }
    if let Some(ended) = history.last_ended_at {
        if ended.plus_seconds(campaign.entry.cooldown.seconds()) > now {
            return Admission::Refuse("in cooldown after the last journey");
        }
    }
    if campaign.exclusive && history.exclusive_elsewhere.is_some() {
        return Admission::Refuse("already in another win-back journey");
    }
    Admission::Enter {
        variant: experiment::assign_variant(campaign, profile_id, arms),
        holdout: experiment::in_holdout(campaign, profile_id),
        first_due: start.max(now),
    }
}

/// For a date trigger: the entry key (the year) and start time when the contact's date falls
/// today or within the last `grace_days` in their zone; `None` otherwise.
pub fn date_entry(
    campaign: &Campaign,
    row: &AudienceRow,
    first_order_at: Option<Timestamp>,
    zone: &TimeZone,
    now: Timestamp,
    grace_days: i64,
) -> Option<(String, Timestamp)> {
    let Trigger::Date { date, at } = &campaign.trigger else {
        return None;
    };
    let origin: jiff::civil::Date = match date {
        DateRule::FirstPurchaseAnniversary => first_order_at?.jiff().to_zoned(zone.clone()).date(),
        DateRule::Attribute(name) => row.attributes.get(name)?.as_str()?.parse().ok()?,
    };
    let today = now.jiff().to_zoned(zone.clone()).date();
    for back in 0..=grace_days {
        let day = today.checked_sub(jiff::Span::new().days(back)).ok()?;
        let years = day.year() - origin.year();
        if years < 1 {
            continue;
        }
        // 29 February anniversaries fall on 28 February in common years.
        let anniversary = origin
            .with()
            .year(day.year())
            .build()
            .or_else(|_| jiff::civil::date(day.year(), 2, 28).with().build())
            .ok()?;
        if anniversary == day {
            let m = at.minute_of_day();
            let start = day
                .at((m / 60) as i8, (m % 60) as i8, 0, 0)
                .to_zoned(zone.clone())
                .ok()
                .map(|z| Timestamp::new(z.timestamp()))?;
            return Some((format!("{}", day.year()), start));
        }
    }
    None
}
