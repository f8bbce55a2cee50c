//! What the store knows about one merged profile, in the shape the feature computation reads:
//! its orders and the signals its events carry. The store produces these in one scan; the
//! scoring crate turns them into features. Neither side needs the other's types.

use crate::{EventKind, LeaveReason, Timestamp};

/// One counted order (paid, pending or partially refunded) of a profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderFact {
    /// When it was placed.
    pub at: Timestamp,
    /// Its total in minor units.
    pub total_minor: i64,
    /// Whether a discount was applied.
    pub discounted: bool,
    /// Its category as an index into [`FactSet::categories`]; 0 means none.
    pub category: u32,
}

/// What an event says about a customer's engagement, reduced to what features use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// An open by a person.
    HumanOpen,
    /// An open by a machine: Apple Mail Privacy Protection, a security scanner, a prefetch.
    MachineOpen,
    /// A click in a message.
    Click,
    /// A visit to the shop.
    SiteVisit,
    /// A login.
    Login,
    /// A cart left behind.
    CartAbandoned,
    /// A quote request.
    QuoteRequest,
    /// A survey answer, with the reason for leaving when that was the question.
    SurveyAnswer(Option<LeaveReason>),
    /// Loyalty points earned (positive) or spent/expired (negative), and the balance after.
    Points {
        /// Change.
        delta: i64,
        /// Balance afterwards, when known.
        balance: Option<i64>,
    },
    /// A subscription started.
    SubscriptionStarted,
    /// A subscription was cancelled, with the reason given.
    SubscriptionCancelled(Option<LeaveReason>),
    /// A complaint was opened.
    ComplaintOpened,
    /// A complaint was resolved; `Some(true)` when to the customer's satisfaction.
    ComplaintResolved(Option<bool>),
    /// The customer referred someone.
    Referral,
    /// Unsubscribed from marketing email.
    Unsubscribed,
    /// Marked a message as spam.
    SpamComplaint,
}

/// User agents of machines that fetch images without a person reading: Apple Mail Privacy
/// Protection's proxy (a bare `Mozilla/5.0`), mail security scanners and HTTP libraries.
const MACHINE_AGENTS: [&str; 23] = [
    "barracuda",
    "mimecast",
    "proofpoint",
    "symantec",
    "trend micro",
    "trendmicro",
    "forcepoint",
    "sophos",
    "fortinet",
    "cisco",
    "safelinks",
    "microsoft office protection",
    "scanner",
    "bot",
    "crawler",
    "spider",
    "python-requests",
    "python-urllib",
    "curl/",
    "go-http-client",
    "java/",
    "wget",
    "headless",
];

/// Whether an open was made by a machine rather than a person: the source says so, or the user
/// agent is Apple's privacy proxy or a scanner. Opens within seconds of delivery are classified
/// by the tracking server, which knows the delivery time.
pub fn is_machine_open(machine: Option<bool>, user_agent: Option<&str>) -> bool {
    if let Some(m) = machine {
        return m;
    }
    let Some(ua) = user_agent.map(str::trim) else {
        return false;
    };
    if ua == "Mozilla/5.0" {
        return true;
    }
    let lower = ua.to_ascii_lowercase();
    MACHINE_AGENTS.iter().any(|m| lower.contains(m))
}

impl Signal {
    /// The signal an event carries, if features use it.
    pub fn of(kind: &EventKind) -> Option<Signal> {
        Some(match kind {
            EventKind::EmailOpened {
                machine,
                user_agent,
                ..
            } => {
                if is_machine_open(*machine, user_agent.as_deref()) {
                    Signal::MachineOpen
                } else {
                    Signal::HumanOpen
                }
            }
            EventKind::EmailClicked { .. } => Signal::Click,
            EventKind::SiteVisited { .. } => Signal::SiteVisit,
            EventKind::LoggedIn {} => Signal::Login,
            EventKind::CartAbandoned { .. } => Signal::CartAbandoned,
            EventKind::QuoteRequested { .. } => Signal::QuoteRequest,
            EventKind::SurveyAnswered { reason, .. } => Signal::SurveyAnswer(*reason),
            EventKind::LoyaltyPointsChanged { delta, balance } => Signal::Points {
                delta: *delta,
                balance: *balance,
            },
            EventKind::SubscriptionStarted { .. } => Signal::SubscriptionStarted,
            EventKind::SubscriptionCancelled { reason, .. } => {
                Signal::SubscriptionCancelled(*reason)
            }
            EventKind::ComplaintOpened { .. } => Signal::ComplaintOpened,
            EventKind::ComplaintResolved { satisfied, .. } => Signal::ComplaintResolved(*satisfied),
            EventKind::ReferralMade { .. } => Signal::Referral,
            EventKind::EmailUnsubscribed { .. } => Signal::Unsubscribed,
            EventKind::EmailComplained { .. } => Signal::SpamComplaint,
            // A reason for leaving told to customer service counts as a survey answer.
            EventKind::CallOutcome {
                reason: Some(r), ..
            } => Signal::SurveyAnswer(Some(*r)),
            EventKind::CallOutcome { .. } | EventKind::CallAttempt { .. } => return None,
            EventKind::EmailDelivered { .. }
            | EventKind::EmailBounced { .. }
            | EventKind::Custom { .. } => return None,
        })
    }

    /// The signal of an event type whose signal does not depend on its payload, so a scan of
    /// stored events can skip parsing it; `None` for types that need the payload (opens,
    /// survey answers, points, cancellations, resolutions) or carry no signal.
    pub fn of_type(type_name: &str) -> Option<Signal> {
        Some(match type_name {
            "email_clicked" => Signal::Click,
            "site_visited" => Signal::SiteVisit,
            "logged_in" => Signal::Login,
            "cart_abandoned" => Signal::CartAbandoned,
            "quote_requested" => Signal::QuoteRequest,
            "subscription_started" => Signal::SubscriptionStarted,
            "complaint_opened" => Signal::ComplaintOpened,
            "referral_made" => Signal::Referral,
            "email_unsubscribed" => Signal::Unsubscribed,
            "email_complained" => Signal::SpamComplaint,
            _ => return None,
        })
    }

    /// The stored event types that carry signals, for the store's scan.
    pub const EVENT_TYPES: [&'static str; 15] = [
        "email_opened",
        "email_clicked",
        "site_visited",
        "logged_in",
        "cart_abandoned",
        "quote_requested",
        "survey_answered",
        "loyalty_points_changed",
        "subscription_started",
        "subscription_cancelled",
        "complaint_opened",
        "complaint_resolved",
        "referral_made",
        "email_unsubscribed",
        "email_complained",
    ];
}

/// A signal and when it happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalFact {
    /// When.
    pub at: Timestamp,
    /// What.
    pub signal: Signal,
}

/// Everything feature computation reads about one merged profile.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProfileFacts {
    /// The profile (the smallest customer id of its identity group).
    pub profile_id: i64,
    /// External id of the profile's own record.
    pub external_id: String,
    /// Name, when known.
    pub name: Option<String>,
    /// Counted orders of all merged records, in time order.
    pub orders: Vec<OrderFact>,
    /// Signals of all merged records, in time order.
    pub signals: Vec<SignalFact>,
    /// Currency of the orders (the first seen).
    pub currency: Option<String>,
    /// Whether marketing email may be sent (consent in force, not withdrawn).
    pub receives_email: bool,
}

/// Facts of many profiles, with the category names their orders index.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FactSet {
    /// Category names; index 0 is the empty name, meaning none.
    pub categories: Vec<String>,
    /// The profiles.
    pub profiles: Vec<ProfileFacts>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_shortcut_agrees_with_the_payload() {
        for line in [
            r#"{"type":"email_clicked"}"#,
            r#"{"type":"site_visited"}"#,
            r#"{"type":"logged_in"}"#,
            r#"{"type":"cart_abandoned"}"#,
            r#"{"type":"quote_requested"}"#,
            r#"{"type":"subscription_started"}"#,
            r#"{"type":"complaint_opened"}"#,
            r#"{"type":"referral_made"}"#,
            r#"{"type":"email_unsubscribed"}"#,
            r#"{"type":"email_complained"}"#,
        ] {
            let kind: EventKind = serde_json::from_str(line).unwrap();
            assert_eq!(
                Signal::of_type(kind.type_name()),
                Signal::of(&kind),
                "{line}"
            );
            assert!(Signal::EVENT_TYPES.contains(&kind.type_name()), "{line}");
        }
        assert_eq!(
            Signal::of_type("email_opened"),
            None,
            "opens need the payload"
        );
    }

    #[test]
    fn machine_opens_are_told_apart() {
        assert!(
            is_machine_open(None, Some("Mozilla/5.0")),
            "Apple MPP proxy"
        );
        assert!(is_machine_open(None, Some("Barracuda Sentinel (EE)")));
        assert!(!is_machine_open(
            None,
            Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15")
        ));
        assert!(!is_machine_open(None, None), "unknown agent: a person");
        assert!(is_machine_open(
            Some(true),
            Some("Mozilla/5.0 (Windows NT 10.0)")
        ));
        assert!(
            !is_machine_open(Some(false), Some("Mozilla/5.0")),
            "the source knows best"
        );
    }
}
