use std::fmt;

use sha2::{Digest, Sha256};

use crate::{Currency, ExternalId, Money, Timestamp};

/// Why an event was refused after it parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A field has a value outside its range.
    #[error("{field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Hard bounces suppress an address at once; soft ones after repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceKind {
    /// Permanent: the address does not exist.
    Hard,
    /// Temporary: mailbox full, greylisting, …
    Soft,
}

/// Why a customer says they left (seeds 001, 003 and 004). Each reason calls for a different
/// answer: price-leavers get an offer, quality-leavers a promise kept.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// Too expensive.
    TooExpensive,
    /// A bad experience (service, delivery).
    BadExperience,
    /// The product was hard to understand.
    HardToUnderstand,
    /// They forgot about us.
    ForgotUs,
    /// Product or material quality (seed 004's "keep promises").
    Quality,
    /// Anything else.
    Other,
}

impl LeaveReason {
    /// Every reason, in survey order.
    pub const ALL: [LeaveReason; 6] = [
        LeaveReason::TooExpensive,
        LeaveReason::BadExperience,
        LeaveReason::HardToUnderstand,
        LeaveReason::ForgotUs,
        LeaveReason::Quality,
        LeaveReason::Other,
    ];
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::TooExpensive => "too_expensive",
            LeaveReason::BadExperience => "bad_experience",
            LeaveReason::HardToUnderstand => "hard_to_understand",
            LeaveReason::ForgotUs => "forgot_us",
            LeaveReason::Quality => "quality",
            LeaveReason::Other => "other",
        }
    }
}

impl fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a customer-service call came to (seed 000: reaching inactive subscribers "door middel
/// van telefonisch contact en een korte enquête").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Spoke with the contact.
    Reached,
    /// Nobody answered (the task stays on the list for another try, up to its attempts).
    NotReached,
    /// Spoke with the contact, who said why they left (the `reason` goes with it).
    ReasonForLeaving,
    /// The contact wants fewer emails (their preference is set to low frequency).
    WantsFewerEmails,
    /// The contact must not be called again (their number goes on the do-not-call list).
    DoNotCall,
    /// The contact accepted the suggested offer.
    OfferAccepted,
}

impl CallOutcome {
    /// Every outcome, in the order agents' forms list them.
    pub const ALL: [CallOutcome; 6] = [
        CallOutcome::Reached,
        CallOutcome::NotReached,
        CallOutcome::ReasonForLeaving,
        CallOutcome::WantsFewerEmails,
        CallOutcome::DoNotCall,
        CallOutcome::OfferAccepted,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Reached => "reached",
            CallOutcome::NotReached => "not_reached",
            CallOutcome::ReasonForLeaving => "reason_for_leaving",
            CallOutcome::WantsFewerEmails => "wants_fewer_emails",
            CallOutcome::DoNotCall => "do_not_call",
            CallOutcome::OfferAccepted => "offer_accepted",
        }
    }

    /// Parses the stored name, or how a call-centre export writes it (`Not reached`,
    /// `do-not-call`, Dutch `bereikt`, `niet bereikt`, `niet bellen`, `aanbod geaccepteerd`).
    pub fn parse(s: &str) -> Option<Self> {
        let k = s.trim().to_lowercase().replace(['-', ' '], "_");
        Some(match k.as_str() {
            "reached" | "bereikt" | "answered" => CallOutcome::Reached,
            "not_reached" | "niet_bereikt" | "no_answer" | "voicemail" => CallOutcome::NotReached,
            "reason_for_leaving" | "reason" | "reden" => CallOutcome::ReasonForLeaving,
            "wants_fewer_emails" | "fewer_emails" | "minder_mail" | "minder_e_mail" => {
                CallOutcome::WantsFewerEmails
            }
            "do_not_call" | "dnc" | "niet_bellen" | "bel_me_niet" => CallOutcome::DoNotCall,
            "offer_accepted" | "accepted" | "aanbod_geaccepteerd" | "geaccepteerd" => {
                CallOutcome::OfferAccepted
            }
            _ => return None,
        })
    }

    /// Whether the agent spoke with the contact.
    pub fn reached(self) -> bool {
        !matches!(self, CallOutcome::NotReached)
    }
}

impl fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened. Serialised with a `type` tag, as in `events.jsonl`:
/// `{"type":"email_opened","message_id":"m-1"}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventKind {
    /// The receiving server accepted a message.
    EmailDelivered {
        /// The message, when known.
        #[serde(default)]
        message_id: Option<String>,
    },
    /// A message bounced.
    EmailBounced {
        /// Hard or soft.
        bounce: BounceKind,
        /// The message, when known.
        #[serde(default)]
        message_id: Option<String>,
        /// The receiving server's reply.
        #[serde(default)]
        diagnostic: Option<String>,
    },
    /// A message was opened. Opens count least: machine opens (Apple Mail Privacy Protection,
    /// security scanners) are excluded from human engagement.
    EmailOpened {
        /// The message, when known.
        #[serde(default)]
        message_id: Option<String>,
        /// `true` when the source knows the open was automated.
        #[serde(default)]
        machine: Option<bool>,
        /// The opener's user agent, for classification.
        #[serde(default)]
        user_agent: Option<String>,
    },
    /// A link in a message was clicked.
    EmailClicked {
        /// The message, when known.
        #[serde(default)]
        message_id: Option<String>,
        /// The link.
        #[serde(default)]
        url: Option<String>,
    },
    /// The contact unsubscribed from marketing email.
    EmailUnsubscribed {
        /// The message, when known.
        #[serde(default)]
        message_id: Option<String>,
    },
    /// The contact marked a message as spam.
    EmailComplained {
        /// The message, when known.
        #[serde(default)]
        message_id: Option<String>,
    },
    /// A visit to the shop or app.
    SiteVisited {
        /// The page.
        #[serde(default)]
        url: Option<String>,
    },
    /// A login to the customer account.
    LoggedIn {},
    /// A cart was left without checking out.
    CartAbandoned {
        /// The cart.
        #[serde(default)]
        cart_id: Option<String>,
        /// Cart value in minor units.
        #[serde(default)]
        value_minor: Option<i64>,
        /// Currency of `value_minor`.
        #[serde(default)]
        currency: Option<Currency>,
        /// Product names or SKUs in the cart.
        #[serde(default)]
        items: Vec<String>,
    },
    /// A quote was requested (B2B).
    QuoteRequested {
        /// The quote.
        #[serde(default)]
        quote_id: Option<String>,
    },
    /// A survey was answered.
    SurveyAnswered {
        /// The survey.
        #[serde(default)]
        survey: Option<String>,
        /// The reason for leaving, when that was the question.
        #[serde(default)]
        reason: Option<LeaveReason>,
        /// Free text.
        #[serde(default)]
        answer: Option<String>,
        /// The message whose survey link was answered, when known: the report counts reasons
        /// per campaign and step by it. Left out of the stored payload when absent, so the
        /// content key of an answer imported before this field existed does not change.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
    },
    /// Loyalty points were earned or spent.
    LoyaltyPointsChanged {
        /// Points added (negative when spent or expired).
        delta: i64,
        /// Balance afterwards, when known.
        #[serde(default)]
        balance: Option<i64>,
    },
    /// A subscription started.
    SubscriptionStarted {
        /// The plan.
        #[serde(default)]
        plan: Option<String>,
    },
    /// A subscription was cancelled.
    SubscriptionCancelled {
        /// The plan.
        #[serde(default)]
        plan: Option<String>,
        /// The reason given.
        #[serde(default)]
        reason: Option<LeaveReason>,
    },
    /// A complaint was opened.
    ComplaintOpened {
        /// The complaint.
        #[serde(default)]
        complaint_id: Option<String>,
    },
    /// A complaint was resolved.
    ComplaintResolved {
        /// The complaint.
        #[serde(default)]
        complaint_id: Option<String>,
        /// Whether the customer was satisfied with the resolution.
        #[serde(default)]
        satisfied: Option<bool>,
    },
    /// The customer referred someone.
    ReferralMade {
        /// Who was referred, when known.
        #[serde(default)]
        referred: Option<String>,
    },
    /// A customer-service call on a journey's call list came to an outcome (written by
    /// `POST /v1/call-outcomes` and `winback calls import`, which also update the call list).
    CallOutcome {
        /// What it came to.
        outcome: CallOutcome,
        /// The reason for leaving, when the contact gave one.
        #[serde(default)]
        reason: Option<LeaveReason>,
        /// The call task.
        #[serde(default)]
        task: Option<i64>,
        /// Who called.
        #[serde(default)]
        agent: Option<String>,
    },
    /// Customer service tried a call on a journey's call list and did not reach the person;
    /// the task stays on the list for another try. Journeys wait for the `call_outcome` that
    /// closes the task, not for this.
    CallAttempt {
        /// The call task.
        #[serde(default)]
        task: Option<i64>,
        /// Who called.
        #[serde(default)]
        agent: Option<String>,
    },
    /// A business event of the shop's own, e.g. `assortment_updated` (seed 004: keep promises).
    Custom {
        /// Event name, snake_case.
        name: String,
        /// Anything else.
        #[serde(default)]
        properties: serde_json::Map<String, serde_json::Value>,
    },
}

/// Event types that are a person's own doing, and so keep their data alive under the retention
/// policy (with orders and preference-centre opt-ins). Opens are not among them (machines open
/// mail), nor are deliveries or bounces.
pub const ACTIVITY_EVENTS: [&str; 9] = [
    "email_clicked",
    "site_visited",
    "logged_in",
    "survey_answered",
    "cart_abandoned",
    "quote_requested",
    "subscription_started",
    "referral_made",
    "complaint_opened",
];

impl EventKind {
    /// The stored type name, e.g. `email_opened`.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::EmailDelivered { .. } => "email_delivered",
            EventKind::EmailBounced { .. } => "email_bounced",
            EventKind::EmailOpened { .. } => "email_opened",
            EventKind::EmailClicked { .. } => "email_clicked",
            EventKind::EmailUnsubscribed { .. } => "email_unsubscribed",
            EventKind::EmailComplained { .. } => "email_complained",
            EventKind::SiteVisited { .. } => "site_visited",
            EventKind::LoggedIn {} => "logged_in",
            EventKind::CartAbandoned { .. } => "cart_abandoned",
            EventKind::QuoteRequested { .. } => "quote_requested",
            EventKind::SurveyAnswered { .. } => "survey_answered",
            EventKind::LoyaltyPointsChanged { .. } => "loyalty_points_changed",
            EventKind::SubscriptionStarted { .. } => "subscription_started",
            EventKind::SubscriptionCancelled { .. } => "subscription_cancelled",
            EventKind::ComplaintOpened { .. } => "complaint_opened",
            EventKind::ComplaintResolved { .. } => "complaint_resolved",
            EventKind::ReferralMade { .. } => "referral_made",
            EventKind::CallOutcome { .. } => "call_outcome",
            EventKind::CallAttempt { .. } => "call_attempt",
            EventKind::Custom { .. } => "custom",
        }
    }

    /// Checks what serde cannot: value ranges and custom-event names.
    pub fn validate(&self) -> Result<(), EventError> {
        match self {
            EventKind::CartAbandoned {
                value_minor: Some(v),
                currency,
                ..
            } => {
                if *v < 0 {
                    return Err(EventError::Field {
                        field: "value_minor",
                        reason: "must not be negative".into(),
                    });
                }
                if currency.is_none() {
                    return Err(EventError::Field {
                        field: "currency",
                        reason: "required with value_minor".into(),
                    });
                }
            }
            EventKind::Custom { name, .. } => {
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && name.starts_with(|c: char| c.is_ascii_lowercase());
                if !ok {
                    return Err(EventError::Field {
                        field: "name",
                        reason: format!(
                            "`{name}` must be snake_case, 1-64 characters, starting with a letter"
                        ),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The cart value as money, for cart events that carry one.
    pub fn cart_value(&self) -> Option<Money> {
        match self {
            EventKind::CartAbandoned {
                value_minor: Some(v),
                currency: Some(c),
                ..
            } => Some(Money::from_minor(*v, *c)),
            _ => None,
        }
    }

    /// Whether this is human engagement with the brand (clicks, visits, logins, purchases-adjacent
    /// actions, survey answers). Opens are not: they count least and are often machine-made.
    pub fn is_human_engagement(&self) -> bool {
        matches!(
            self,
            EventKind::EmailClicked { .. }
                | EventKind::SiteVisited { .. }
                | EventKind::LoggedIn {}
                | EventKind::CartAbandoned { .. }
                | EventKind::QuoteRequested { .. }
                | EventKind::SurveyAnswered { .. }
        )
    }
}

/// An event as a source describes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRecord {
    /// The source's event id, when it has one.
    pub source_id: Option<ExternalId>,
    /// The customer it concerns.
    pub customer: ExternalId,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
}

impl EventRecord {
    /// The key that makes re-importing an event a no-op: the source's id when it has one,
    /// otherwise a SHA-256 of the event's content (customer, time and payload).
    pub fn natural_key(&self) -> String {
        match &self.source_id {
            Some(id) => format!("id:{id}"),
            None => {
                let payload = serde_json::to_string(&self.kind).unwrap_or_default();
                let mut h = Sha256::new();
                h.update(self.customer.as_str().as_bytes());
                h.update([0]);
                h.update(self.at.as_micros().to_le_bytes());
                h.update(payload.as_bytes());
                let digest = h.finalize();
                let mut out = String::with_capacity(3 + 32);
                out.push_str("h:");
                for b in &digest[..16] {
                    out.push_str(&format!("{b:02x}"));
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_with_a_type_tag() {
        let k: EventKind =
            serde_json::from_str(r#"{"type":"email_bounced","bounce":"hard","message_id":"m1"}"#)
                .unwrap();
        assert_eq!(k.type_name(), "email_bounced");
        let back: EventKind = serde_json::from_str(&serde_json::to_string(&k).unwrap()).unwrap();
        assert_eq!(back, k);
        let s: EventKind =
            serde_json::from_str(r#"{"type":"survey_answered","reason":"too_expensive"}"#).unwrap();
        assert!(s.is_human_engagement());
        let o: EventKind = serde_json::from_str(r#"{"type":"email_opened"}"#).unwrap();
        assert!(!o.is_human_engagement(), "opens are not human engagement");
        assert!(serde_json::from_str::<EventKind>(r#"{"type":"email_bounced"}"#).is_err());
        assert!(serde_json::from_str::<EventKind>(r#"{"type":"teleported"}"#).is_err());
    }

    #[test]
    fn validation_checks_ranges_and_names() {
        let bad = EventKind::Custom {
            name: "Assortment Updated".into(),
            properties: Default::default(),
        };
        assert!(bad.validate().is_err());
        let good = EventKind::Custom {
            name: "assortment_updated".into(),
            properties: Default::default(),
        };
        assert!(good.validate().is_ok());
        let cart = EventKind::CartAbandoned {
            cart_id: None,
            value_minor: Some(-1),
            currency: Some(Currency::EUR),
            items: vec![],
        };
        assert!(cart.validate().is_err());
    }

    #[test]
    fn natural_keys_are_stable_and_content_based() {
        let at = Timestamp::from_micros(1_700_000_000_000_000).unwrap();
        let e = EventRecord {
            source_id: None,
            customer: ExternalId::parse("c1").unwrap(),
            at,
            kind: EventKind::SiteVisited { url: None },
        };
        assert_eq!(e.natural_key(), e.clone().natural_key());
        // Pinned so that a change of hashing is noticed: it would duplicate re-imported events.
        assert_eq!(e.natural_key().len(), 34);
        let mut f = e.clone();
        f.kind = EventKind::SiteVisited {
            url: Some("/x".into()),
        };
        assert_ne!(e.natural_key(), f.natural_key());
        let g = EventRecord {
            source_id: Some(ExternalId::parse("ev-9").unwrap()),
            ..e
        };
        assert_eq!(g.natural_key(), "id:ev-9");
    }
}
