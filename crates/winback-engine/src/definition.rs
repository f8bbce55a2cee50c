//! Campaign files: a TOML document per campaign, parsed into a checked [`Campaign`].
//!
//! Parsing goes in two passes. Serde reads the file into raw structs that keep every value's
//! position; then [`Campaign::parse`] checks what serde cannot (step references, durations,
//! expressions, ladders, variants) and reports **every** problem with `file:line:column`, the
//! step id and what is wrong. Only a campaign without problems exists as a value, so an invalid
//! campaign can never start.
//!
//! ```toml
//! [campaign]
//! name = "we-miss-you"
//! audience = 'stage == "lapsed" && clv >= 40.0'
//!
//! [trigger]
//! type = "audience"
//! every = "1d"
//!
//! [[steps]]
//! id = "miss-you"
//! type = "send"
//! template = "we-miss-you"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use toml::Spanned;
use winback_domain::{Channel, LeaveReason};

use crate::audience::Audience;
use crate::duration::{Duration, LocalTime, LocalWindow};

/// One problem in a campaign file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The step it concerns.
    pub step: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(step) = &self.step {
            write!(f, "step `{step}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one campaign file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DefinitionError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The checked model.

/// A checked campaign, ready to run.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// Unique name: lowercase letters, digits and dashes.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Win-back journeys exclude one another: a contact is in at most one at a time unless
    /// `exclusive = false`.
    pub exclusive: bool,
    /// The campaign markets the shop's own range to people who bought there, so contacts with
    /// a soft opt-in (existing customers, similar products) may enter; `similar_products =
    /// false` limits it to explicit opt-ins.
    pub similar_products: bool,
    /// Who may enter (also re-checked by the audience trigger's schedule).
    pub audience: Option<Audience>,
    /// What enrols contacts.
    pub trigger: Trigger,
    /// Re-entry rules.
    pub entry: Entry,
    /// The sticky holdout.
    pub holdout: Holdout,
    /// A/B/n variants.
    pub experiment: Experiment,
    /// Send-time rules of this campaign.
    pub policy: CampaignPolicy,
    /// Offer ladders by name.
    pub offers: BTreeMap<String, Ladder>,
    /// The journey.
    pub steps: Vec<Step>,
    /// Days after a message within which an order counts as a conversion of this campaign.
    pub conversion_window: Duration,
}

/// What enrols a contact.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// Entering the audience, evaluated on a schedule.
    Audience {
        /// How often the audience is evaluated.
        every: Duration,
    },
    /// An event.
    Event {
        /// Which.
        event: EventMatch,
    },
    /// A date.
    Date {
        /// Which date.
        date: DateRule,
        /// Local time of day the journey starts.
        at: LocalTime,
    },
}

/// An event a trigger or a wait listens for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventMatch {
    /// An order was placed.
    OrderPlaced,
    /// A stored event type, e.g. `cart_abandoned`, `subscription_cancelled`.
    Type(String),
    /// A custom event by name, e.g. `assortment_updated` (written `custom:assortment_updated`).
    Custom(String),
}

impl EventMatch {
    fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw == "order_placed" {
            return Ok(Self::OrderPlaced);
        }
        if let Some(name) = raw.strip_prefix("custom:") {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(format!("custom event `{name}` must be snake_case"));
            }
            return Ok(Self::Custom(name.to_owned()));
        }
        // Onboarding steps and funnel drop-offs arrive as custom events too; accept the
        // common name directly.
        if raw == "onboarding_abandoned" {
            return Ok(Self::Custom(raw.to_owned()));
        }
        match winback_domain::Signal::EVENT_TYPES
            .iter()
            .chain(["email_delivered", "email_bounced", "call_outcome"].iter())
            .find(|t| **t == raw)
        {
            Some(t) => Ok(Self::Type((*t).to_owned())),
            None => Err(format!(
                "unknown event `{raw}`; use order_placed, a stored type such as cart_abandoned or subscription_cancelled, or custom:NAME"
            )),
        }
    }

    /// How the file writes it.
    pub fn label(&self) -> String {
        match self {
            Self::OrderPlaced => "order_placed".into(),
            Self::Type(t) => t.clone(),
            Self::Custom(n) => format!("custom:{n}"),
        }
    }
}

/// A date that starts a journey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateRule {
    /// The anniversary of the first purchase.
    FirstPurchaseAnniversary,
    /// The anniversary of a date attribute (`YYYY-MM-DD`), e.g. a birthday.
    Attribute(String),
}

/// Re-entry rules.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Time after a journey ends before the same contact may enter again.
    pub cooldown: Duration,
    /// How often one contact may ever enter; `None` for no limit.
    pub max_entries: Option<u32>,
}

/// The holdout: contacts who are enrolled and measured but never messaged.
#[derive(Debug, Clone)]
pub struct Holdout {
    /// Share held out, 0 ≤ share < 1.
    pub share: f64,
    /// Salt; changing it draws a new holdout.
    pub salt: String,
}

/// How contacts are spread over variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// By the configured weights, deterministically from the contact.
    Fixed,
    /// Thompson sampling on each variant's reactivations so far.
    Thompson,
}

/// A/B/n variants.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// Variant ids with weights; a campaign without variants has one, `"a"`.
    pub variants: Vec<(String, u32)>,
    /// Allocation rule.
    pub allocation: Allocation,
}

/// What happens to a step that became due while no worker ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleAction {
    /// Skip it and move on.
    Skip,
    /// Run it now, spread over `spread` so a backlog never leaves in a burst.
    Replan {
        /// The spreading window.
        spread: Duration,
    },
}

/// Send-time rules of one campaign (the global ones live in the engine's policy settings).
#[derive(Debug, Clone)]
pub struct CampaignPolicy {
    /// Local time window for sends; `None` uses the global one.
    pub send_window: Option<LocalWindow>,
    /// How late a step may run.
    pub max_late: Duration,
    /// What to do with a later one.
    pub stale: StaleAction,
}

/// One rung of an offer ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct Rung {
    /// What is offered.
    pub kind: OfferKind,
    /// How long a code stays valid.
    pub valid_for: Duration,
    /// Minimum order, minor units.
    pub min_order_minor: i64,
    /// Orders the code covers (multi-purchase rewards cover several).
    pub uses: u32,
    /// The shop's own words for the offer (`wording = "…"` or `{ en = "…", nl = "…" }`),
    /// stored as a JSON table by language; without them (or for a language the table lacks)
    /// each language's wording is derived from the kind.
    pub wording: Option<String>,
}

impl Rung {
    /// What the offers table stores as the description: the shop's wording (a text, or a JSON
    /// table by language), else the kind described in English for the shop's code list.
    pub fn description(&self, currency: &str) -> String {
        self.wording
            .clone()
            .unwrap_or_else(|| self.kind.describe(currency))
    }
}

/// The kinds of offer (seed 003). Serialised as `{"kind": "fixed", "amount_minor": 1000}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OfferKind {
    /// A fixed amount off, minor units.
    Fixed {
        /// Amount.
        amount_minor: i64,
    },
    /// A percentage off.
    Percent {
        /// Percent, 1–100.
        percent: u32,
    },
    /// Free shipping.
    FreeShipping,
    /// A free product.
    FreeProduct {
        /// SKU.
        sku: String,
        /// Its cost to the shop, minor units.
        cost_minor: i64,
    },
}

impl OfferKind {
    /// Short description: `"€10.00 off"`, `"15% off"`.
    pub fn describe(&self, currency: &str) -> String {
        match self {
            Self::Fixed { amount_minor } => format!(
                "{}.{:02} {currency} off",
                amount_minor / 100,
                amount_minor % 100
            ),
            Self::Percent { percent } => format!("{percent}% off"),
            Self::FreeShipping => "free shipping".into(),
            Self::FreeProduct { sku, .. } => format!("free {sku}"),
        }
    }

    /// Stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Fixed { .. } => "fixed",
            Self::Percent { .. } => "percent",
            Self::FreeShipping => "free_shipping",
            Self::FreeProduct { .. } => "free_product",
        }
    }

    /// An issued offer's stored columns read back (the amount is the product's cost for a
    /// free product); `None` for a kind this version does not know, or a missing amount.
    pub fn from_stored(
        kind: &str,
        amount_minor: Option<i64>,
        percent: Option<i64>,
        sku: Option<String>,
    ) -> Option<Self> {
        Some(match kind {
            "fixed" => Self::Fixed {
                amount_minor: amount_minor?,
            },
            "percent" => Self::Percent {
                percent: u32::try_from(percent?).ok()?,
            },
            "free_shipping" => Self::FreeShipping,
            "free_product" => Self::FreeProduct {
                sku: sku?,
                cost_minor: amount_minor.unwrap_or(0),
            },
            _ => return None,
        })
    }
}

/// An offer ladder: each offer step of an enrolment issues the next rung.
#[derive(Debug, Clone, PartialEq)]
pub struct Ladder {
    /// Currency of amounts.
    pub currency: String,
    /// Rungs, mildest first.
    pub rungs: Vec<Rung>,
}

/// One step of a journey.
#[derive(Debug, Clone)]
pub struct Step {
    /// Unique id within the campaign.
    pub id: String,
    /// What it does.
    pub action: Action,
    /// The step after this one (explicit `next`, or the following step); `None` ends.
    pub next: Option<usize>,
    /// Per-variant overrides.
    pub variants: BTreeMap<String, Override>,
}

/// Per-variant changes to a step (subject, content, offer, timing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Override {
    /// Template.
    pub template: Option<String>,
    /// Subject line.
    pub subject: Option<String>,
    /// Preheader.
    pub preheader: Option<String>,
    /// Sender name.
    pub sender_name: Option<String>,
    /// Offer ladder.
    pub ladder: Option<String>,
    /// Wait duration.
    pub duration: Option<Duration>,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Channel.
    pub channel: Channel,
    /// Template name.
    pub template: String,
    /// Subject line (email).
    pub subject: Option<String>,
    /// Preheader (email).
    pub preheader: Option<String>,
    /// Sender display name (email).
    pub sender_name: Option<String>,
}

/// Where an audience export goes (seed 001: "display via CRM onboarding, custom
/// audience/sociale netwerken, print").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExportTarget {
    /// Meta custom audience.
    Meta,
    /// Google Customer Match.
    Google,
    /// LinkedIn Matched Audiences (contact list).
    Linkedin,
    /// A hashed file for a CRM-onboarding or display partner, in the columns the campaign maps.
    Crm,
    /// A print mailing list.
    Print,
}

impl ExportTarget {
    /// Every destination, in the order files and tables list them.
    pub const ALL: [ExportTarget; 5] = [
        Self::Meta,
        Self::Google,
        Self::Linkedin,
        Self::Crm,
        Self::Print,
    ];

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Google => "google",
            Self::Linkedin => "linkedin",
            Self::Crm => "crm",
            Self::Print => "print",
        }
    }

    /// The destination with this stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Which kind of wallet pass a `wallet` step issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassStyle {
    /// A coupon: the offer and its code.
    Coupon,
    /// A store card: the shop's card with the current offer on it.
    StoreCard,
}

impl PassStyle {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coupon => "coupon",
            Self::StoreCard => "store_card",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "coupon" => Some(Self::Coupon),
            "store_card" => Some(Self::StoreCard),
            _ => None,
        }
    }
}

/// What one column of a CRM-onboarding file holds: one identifier per column, as onboarding
/// partners (LiveRamp and the like) ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportField {
    /// SHA-256 of the `n`th distinct email address of the profile (1-based), normalised.
    EmailSha256(u8),
    /// SHA-256 of the `n`th distinct phone number, E.164 digits without the `+`.
    PhoneSha256(u8),
    /// SHA-256 of the normalised first name.
    FirstNameSha256,
    /// SHA-256 of the normalised last name.
    LastNameSha256,
    /// The postal code, plain.
    PostalCode,
    /// The city, plain.
    City,
    /// The ISO country code, plain.
    Country,
}

impl ExportField {
    /// The names a campaign file may use (`email_sha256`, `email_sha256_2`, …).
    pub const NAMES: &'static str = "email_sha256, email_sha256_2, email_sha256_3, phone_sha256, phone_sha256_2, first_name_sha256, last_name_sha256, postal_code, city, country";

    /// Parses a field name.
    pub fn parse(s: &str) -> Option<Self> {
        let nth = |base: &str| -> Option<u8> {
            let rest = s.strip_prefix(base)?;
            match rest {
                "" => Some(1),
                _ => rest
                    .strip_prefix('_')?
                    .parse::<u8>()
                    .ok()
                    .filter(|n| (2..=3).contains(n)),
            }
        };
        if let Some(n) = nth("email_sha256") {
            return Some(Self::EmailSha256(n));
        }
        if let Some(n) = nth("phone_sha256").filter(|n| *n <= 2) {
            return Some(Self::PhoneSha256(n));
        }
        Some(match s {
            "first_name_sha256" => Self::FirstNameSha256,
            "last_name_sha256" => Self::LastNameSha256,
            "postal_code" => Self::PostalCode,
            "city" => Self::City,
            "country" => Self::Country,
            _ => return None,
        })
    }

    /// Whether the field is an identifier a partner matches on (a hashed email or phone).
    pub fn identifies(self) -> bool {
        matches!(self, Self::EmailSha256(_) | Self::PhoneSha256(_))
    }
}

/// One column of a CRM-onboarding file: the partner's header and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportColumn {
    /// The header the partner expects.
    pub header: String,
    /// What the column holds.
    pub field: ExportField,
}

/// A journey condition.
#[derive(Debug, Clone)]
pub enum Condition {
    /// The message of a send step was opened by a human.
    Opened(String),
    /// A link in the message of a send step was clicked.
    Clicked(String),
    /// The survey was answered with this reason since entering.
    SurveyReason(LeaveReason),
    /// The latest call on the journey's call list came to this outcome.
    CallOutcome(winback_domain::CallOutcome),
    /// The contact has the tag.
    HasTag(String),
    /// An order was placed since entering.
    Purchased,
    /// Any expression over the audience and journey variables.
    Expr(Audience),
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Wait a duration, optionally until a local time; or until an event, with the duration as
    /// the timeout.
    Wait {
        /// How long.
        duration: Duration,
        /// Then wait on to this local time.
        until_local: Option<LocalTime>,
        /// Continue as soon as this event arrives.
        until_event: Option<EventMatch>,
        /// Where to go when the event did not arrive in time (`None`: the journey ends).
        on_timeout: Option<usize>,
    },
    /// Send a message.
    Send(Message),
    /// Issue the next rung of a ladder.
    Offer {
        /// Ladder name.
        ladder: String,
    },
    /// Go one way or the other.
    Branch {
        /// The test.
        condition: Condition,
        /// When true.
        then: Option<usize>,
        /// When false.
        otherwise: Option<usize>,
    },
    /// Add tags.
    Tag(Vec<String>),
    /// Remove tags.
    Untag(Vec<String>),
    /// Say goodbye kindly, then unsubscribe from marketing email.
    Sunset(Message),
    /// Add the contact to an audience export.
    Export {
        /// Where.
        target: ExportTarget,
        /// The columns of a CRM-onboarding file (empty for the other destinations).
        columns: Vec<ExportColumn>,
    },
    /// Issue the contact's wallet pass with the campaign's newest offer code, or update the
    /// pass they hold (seed 001: "push wallet").
    Wallet {
        /// Coupon or store card.
        style: PassStyle,
    },
    /// Put the contact on a call list for customer service (seed 000: phone follow-up).
    Call {
        /// The list's name.
        list: String,
    },
    /// Call a webhook with the contact and journey.
    Webhook {
        /// HTTPS URL.
        url: String,
    },
    /// End the journey.
    Exit,
}

impl Action {
    /// Stored name of the step type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Wait { .. } => "wait",
            Self::Send(_) => "send",
            Self::Offer { .. } => "offer",
            Self::Branch { .. } => "branch",
            Self::Tag(_) => "tag",
            Self::Untag(_) => "untag",
            Self::Sunset(_) => "sunset",
            Self::Export { .. } => "export",
            Self::Call { .. } => "call",
            Self::Wallet { .. } => "wallet",
            Self::Webhook { .. } => "webhook",
            Self::Exit => "exit",
        }
    }
}

impl Campaign {
    /// The index of step `id`.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    /// The message a send or sunset step sends to `variant`.
    pub fn message_for(&self, step: usize, variant: &str) -> Option<Message> {
        let s = self.steps.get(step)?;
        let base = match &s.action {
            Action::Send(m) | Action::Sunset(m) => m.clone(),
            _ => return None,
        };
        let Some(o) = s.variants.get(variant) else {
            return Some(base);
        };
        Some(Message {
            channel: base.channel,
            template: o.template.clone().unwrap_or(base.template),
            subject: o.subject.clone().or(base.subject),
            preheader: o.preheader.clone().or(base.preheader),
            sender_name: o.sender_name.clone().or(base.sender_name),
        })
    }

    /// The ladder an offer step uses for `variant`.
    pub fn ladder_for(&self, step: usize, variant: &str) -> Option<&str> {
        let s = self.steps.get(step)?;
        let Action::Offer { ladder } = &s.action else {
            return None;
        };
        Some(
            s.variants
                .get(variant)
                .and_then(|o| o.ladder.as_deref())
                .unwrap_or(ladder),
        )
    }

    /// The duration of a wait step for `variant`.
    pub fn wait_for(&self, step: usize, variant: &str) -> Option<Duration> {
        let s = self.steps.get(step)?;
        let Action::Wait { duration, .. } = &s.action else {
            return None;
        };
        Some(
            s.variants
                .get(variant)
                .and_then(|o| o.duration)
                .unwrap_or(*duration),
        )
    }

    /// Channels this campaign sends on.
    pub fn channels(&self) -> BTreeSet<Channel> {
        self.steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Send(m) | Action::Sunset(m) => Some(m.channel),
                _ => None,
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The raw file.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    campaign: RawCampaign,
    trigger: Spanned<RawTrigger>,
    #[serde(default)]
    entry: Option<Spanned<RawEntry>>,
    #[serde(default)]
    holdout: Option<Spanned<RawHoldout>>,
    #[serde(default)]
    experiment: Option<Spanned<RawExperiment>>,
    #[serde(default)]
    policy: Option<Spanned<RawPolicy>>,
    #[serde(default)]
    offers: BTreeMap<String, Spanned<RawLadder>>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaign {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    audience: Option<Spanned<String>>,
    #[serde(default)]
    exclusive: Option<bool>,
    #[serde(default)]
    similar_products: Option<bool>,
    #[serde(default)]
    conversion_window: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    #[serde(default)]
    every: Option<Spanned<String>>,
    #[serde(default)]
    event: Option<Spanned<String>>,
    #[serde(default)]
    date: Option<Spanned<String>>,
    #[serde(default)]
    attribute: Option<Spanned<String>>,
    #[serde(default)]
    at: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    #[serde(default)]
    cooldown: Option<Spanned<String>>,
    #[serde(default)]
    max_entries: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoldout {
    share: Spanned<f64>,
    #[serde(default)]
    salt: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    variants: Vec<Spanned<RawVariant>>,
    #[serde(default)]
    allocation: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    id: String,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    send_window: Option<Spanned<String>>,
    #[serde(default)]
    max_late: Option<Spanned<String>>,
    #[serde(default)]
    stale: Option<Spanned<String>>,
    #[serde(default)]
    spread: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLadder {
    currency: Spanned<String>,
    rungs: Vec<Spanned<RawRung>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRung {
    kind: String,
    #[serde(default)]
    amount: Option<String>,
    #[serde(default)]
    percent: Option<u32>,
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    cost: Option<String>,
    #[serde(default)]
    valid: Option<String>,
    #[serde(default)]
    min_order: Option<String>,
    #[serde(default)]
    orders: Option<u32>,
    #[serde(default)]
    wording: Option<RawText>,
}

/// A message line (subject, preheader) as a campaign file gives it: one text for every
/// contact, or one per language (`subject = { en = "…", nl = "…", pl = "…" }`).
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawText {
    Plain(String),
    PerLocale(BTreeMap<String, String>),
}

/// The languages message lines can be given in (the template library's).
const TEXT_LOCALES: [&str; 3] = ["en", "nl", "pl"];

impl RawText {
    /// The stored form: a plain text as it is, per-language texts as a JSON object that the
    /// renderer picks from by the contact's language (falling back to the library's subject).
    fn stored(&self) -> Result<String, String> {
        match self {
            RawText::Plain(s) => Ok(s.clone()),
            RawText::PerLocale(m) => {
                if let Some(bad) = m.keys().find(|k| !TEXT_LOCALES.contains(&k.as_str())) {
                    return Err(format!(
                        "`{bad}` is not a language of the template library ({})",
                        TEXT_LOCALES.join(", ")
                    ));
                }
                if m.is_empty() {
                    return Err("give at least one language".into());
                }
                serde_json::to_string(m).map_err(|e| e.to_string())
            }
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    template: Option<String>,
    subject: Option<RawText>,
    preheader: Option<RawText>,
    sender_name: Option<String>,
    ladder: Option<String>,
    duration: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    #[serde(default)]
    next: Option<Spanned<String>>,
    // wait
    #[serde(default)]
    duration: Option<Spanned<String>>,
    #[serde(default)]
    until_local: Option<Spanned<String>>,
    #[serde(default)]
    until_event: Option<Spanned<String>>,
    #[serde(default)]
    on_timeout: Option<Spanned<String>>,
    // send / sunset
    #[serde(default)]
    channel: Option<Spanned<String>>,
    #[serde(default)]
    template: Option<Spanned<String>>,
    #[serde(default)]
    subject: Option<RawText>,
    #[serde(default)]
    preheader: Option<RawText>,
    #[serde(default)]
    sender_name: Option<String>,
    // offer
    #[serde(default)]
    ladder: Option<Spanned<String>>,
    // branch
    #[serde(default)]
    opened: Option<Spanned<String>>,
    #[serde(default)]
    clicked: Option<Spanned<String>>,
    #[serde(default)]
    survey_reason: Option<Spanned<String>>,
    #[serde(default)]
    call_outcome: Option<Spanned<String>>,
    #[serde(default)]
    has_tag: Option<Spanned<String>>,
    #[serde(default)]
    purchased: Option<Spanned<bool>>,
    #[serde(default)]
    expr: Option<Spanned<String>>,
    #[serde(default)]
    then: Option<Spanned<String>>,
    #[serde(default, rename = "else")]
    otherwise: Option<Spanned<String>>,
    // tag / untag
    #[serde(default)]
    tags: Option<Spanned<Vec<String>>>,
    // call
    #[serde(default)]
    list: Option<Spanned<String>>,
    // wallet
    #[serde(default)]
    style: Option<Spanned<String>>,
    // export / webhook
    #[serde(default)]
    target: Option<Spanned<String>>,
    #[serde(default)]
    columns: Option<Spanned<Vec<RawColumn>>>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    variants: BTreeMap<String, Spanned<RawOverride>>,
}

/// `{ header = "EMAIL1", value = "email_sha256" }`
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    header: String,
    value: String,
}

// ---------------------------------------------------------------------------------------------
// Checking.

struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    problems: Vec<Problem>,
    /// Whether an email template of this name exists (the library and the shop's own folder).
    template_exists: &'a dyn Fn(&str) -> bool,
}

impl Checker<'_> {
    fn at(&mut self, span: std::ops::Range<usize>, step: Option<&str>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line,
            column,
            step: step.map(str::to_owned),
            message: message.into(),
        });
    }

    fn duration(
        &mut self,
        v: &Spanned<String>,
        step: Option<&str>,
        what: &str,
    ) -> Option<Duration> {
        match Duration::parse(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.at(v.span(), step, format!("{what}: {e}"));
                None
            }
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

/// The header mapping of a `crm` export step: required there, refused elsewhere (the other
/// destinations' columns are the platforms' own). Headers are unique and defused-safe, and at
/// least one column identifies the contact.
fn export_columns(
    ck: &mut Checker,
    id: &str,
    span: &std::ops::Range<usize>,
    target: ExportTarget,
    raw: Option<&Spanned<Vec<RawColumn>>>,
) -> Vec<ExportColumn> {
    let Some(raw) = raw else {
        if target == ExportTarget::Crm {
            ck.at(
                span.clone(),
                Some(id),
                format!(
                    "a crm export step needs `columns = [{{ header = \"EMAIL1\", value = \"email_sha256\" }}, …]`; values: {}",
                    ExportField::NAMES
                ),
            );
        }
        return Vec::new();
    };
    if target != ExportTarget::Crm {
        ck.at(
            raw.span(),
            Some(id),
            format!(
                "`columns` is for target = \"crm\"; {} files have the platform's own columns",
                target.as_str()
            ),
        );
        return Vec::new();
    }
    let mut out: Vec<ExportColumn> = Vec::new();
    for c in raw.get_ref() {
        let header = c.header.trim();
        if header.is_empty()
            || header.len() > 64
            || header.starts_with(['=', '+', '-', '@'])
            || header.chars().any(char::is_control)
        {
            ck.at(
                raw.span(),
                Some(id),
                format!("column header `{}` must be 1–64 plain characters", c.header),
            );
            continue;
        }
        if out.iter().any(|o| o.header == header) {
            ck.at(
                raw.span(),
                Some(id),
                format!("column header `{header}` appears twice"),
            );
            continue;
        }
        let Some(field) = ExportField::parse(c.value.trim()) else {
            ck.at(
                raw.span(),
                Some(id),
                format!(
                    "column `{header}`: `{}` is not one of {}",
                    c.value,
                    ExportField::NAMES
                ),
            );
            continue;
        };
        out.push(ExportColumn {
            header: header.to_owned(),
            field,
        });
    }
    if !out.is_empty() && !out.iter().any(|c| c.field.identifies()) {
        ck.at(
            raw.span(),
            Some(id),
            "a crm file needs at least one email_sha256 or phone_sha256 column to match on",
        );
    }
    out
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn parse_minor(raw: &str, currency: &str) -> Result<i64, String> {
    let cur = winback_domain::Currency::parse(currency).map_err(|e| e.to_string())?;
    winback_domain::Money::parse_decimal(raw, cur, winback_domain::DecimalSeparator::Dot)
        .map(|m| m.minor())
        .map_err(|e| format!("`{raw}`: {e}"))
}

/// Fields each step type may use (besides `id`, `type`, `next` and `variants`).
fn allowed_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "wait" => &["duration", "until_local", "until_event", "on_timeout"],
        "send" | "sunset" => &["channel", "template", "subject", "preheader", "sender_name"],
        "offer" => &["ladder"],
        "branch" => &[
            "opened",
            "clicked",
            "survey_reason",
            "call_outcome",
            "has_tag",
            "purchased",
            "expr",
            "then",
            "else",
        ],
        "call" => &["list"],
        "wallet" => &["style"],
        "tag" | "untag" => &["tags"],
        "export" => &["target", "columns"],
        "webhook" => &["url"],
        "exit" => &[],
        _ => return None,
    })
}

fn present_fields(s: &RawStep) -> Vec<(&'static str, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    macro_rules! f {
        ($field:ident, $name:literal) => {
            if let Some(v) = &s.$field {
                out.push(($name, v.span()));
            }
        };
    }
    f!(duration, "duration");
    f!(until_local, "until_local");
    f!(until_event, "until_event");
    f!(on_timeout, "on_timeout");
    f!(channel, "channel");
    f!(template, "template");
    f!(ladder, "ladder");
    f!(opened, "opened");
    f!(clicked, "clicked");
    f!(survey_reason, "survey_reason");
    f!(call_outcome, "call_outcome");
    f!(list, "list");
    f!(style, "style");
    f!(has_tag, "has_tag");
    f!(purchased, "purchased");
    f!(expr, "expr");
    f!(then, "then");
    f!(otherwise, "else");
    f!(tags, "tags");
    f!(target, "target");
    f!(columns, "columns");
    f!(url, "url");
    let id = s.id.span();
    for (name, set) in [
        ("subject", s.subject.is_some()),
        ("preheader", s.preheader.is_some()),
        ("sender_name", s.sender_name.is_some()),
    ] {
        if set {
            out.push((name, id.clone()));
        }
    }
    out
}

impl Campaign {
    /// Parses and checks one campaign file. `file` names it in errors. Template names are
    /// checked for their form only; [`Campaign::parse_with_templates`] also checks that they
    /// exist.
    pub fn parse(file: &str, text: &str) -> Result<Campaign, DefinitionError> {
        Self::parse_with_templates(file, text, &|_| true)
    }

    /// Parses and checks one campaign file, and that every email step's template exists
    /// (`template_exists` knows the library and the shop's own templates).
    pub fn parse_with_templates(
        file: &str,
        text: &str,
        template_exists: &dyn Fn(&str) -> bool,
    ) -> Result<Campaign, DefinitionError> {
        let mut ck = Checker {
            file,
            text,
            problems: Vec::new(),
            template_exists,
        };
        let raw: RawFile = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                ck.at(span, None, e.message().to_owned());
                return Err(DefinitionError {
                    problems: ck.problems,
                });
            }
        };
        let campaign = check(&mut ck, raw);
        match campaign {
            Some(c) if ck.problems.is_empty() => Ok(c),
            _ => Err(DefinitionError {
                problems: ck.problems,
            }),
        }
    }
}

fn check(ck: &mut Checker<'_>, raw: RawFile) -> Option<Campaign> {
    let name = raw.campaign.name.get_ref().clone();
    if !valid_name(&name) {
        ck.at(
            raw.campaign.name.span(),
            None,
            format!(
                "campaign name `{name}` must be lowercase letters, digits, - or _ (at most 64)"
            ),
        );
    }
    let audience = raw.campaign.audience.as_ref().and_then(|a| {
        Audience::compile(a.get_ref(), false)
            .map_err(|e| ck.at(a.span(), None, format!("audience: {e}")))
            .ok()
    });
    let conversion_window = raw
        .campaign
        .conversion_window
        .as_ref()
        .and_then(|d| ck.duration(d, None, "conversion_window"))
        .unwrap_or(Duration::from_seconds(30 * 86_400).expect("positive"));

    // Steps: ids first, so references can be resolved in any order.
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for (i, s) in raw.steps.iter().enumerate() {
        let id = s.get_ref().id.get_ref();
        if !valid_name(id) {
            ck.at(
                s.get_ref().id.span(),
                Some(id),
                "step id must be lowercase letters, digits, - or _",
            );
        }
        if ids.insert(id.clone(), i).is_some() {
            ck.at(s.get_ref().id.span(), Some(id), "duplicate step id");
        }
    }
    if raw.steps.is_empty() {
        ck.at(0..0, None, "a campaign needs at least one step ([[steps]])");
    }

    // Offer ladders.
    let mut offers = BTreeMap::new();
    for (lname, l) in &raw.offers {
        let currency = l.get_ref().currency.get_ref().clone();
        if winback_domain::Currency::parse(&currency).is_err() {
            ck.at(
                l.get_ref().currency.span(),
                None,
                format!("offers.{lname}: unknown currency `{currency}`"),
            );
            continue;
        }
        let mut rungs = Vec::new();
        for r in &l.get_ref().rungs {
            let span = r.span();
            let r = r.get_ref();
            let bad = |ck: &mut Checker<'_>, m: String| {
                ck.at(span.clone(), None, format!("offers.{lname}: {m}"))
            };
            let kind = match r.kind.as_str() {
                "fixed" => match r.amount.as_deref().map(|a| parse_minor(a, &currency)) {
                    Some(Ok(amount_minor)) if amount_minor > 0 => OfferKind::Fixed { amount_minor },
                    Some(Ok(_)) => {
                        bad(ck, "a fixed offer's amount must be positive".into());
                        continue;
                    }
                    Some(Err(e)) => {
                        bad(ck, format!("amount {e}"));
                        continue;
                    }
                    None => {
                        bad(
                            ck,
                            "a fixed offer needs `amount`, e.g. amount = \"10.00\"".into(),
                        );
                        continue;
                    }
                },
                "percent" => match r.percent {
                    Some(p @ 1..=100) => OfferKind::Percent { percent: p },
                    _ => {
                        bad(
                            ck,
                            "a percent offer needs `percent` between 1 and 100".into(),
                        );
                        continue;
                    }
                },
                "free_shipping" => OfferKind::FreeShipping,
                "free_product" => {
                    let cost = r.cost.as_deref().map(|c| parse_minor(c, &currency));
                    match (&r.sku, cost) {
                        (Some(sku), Some(Ok(cost_minor))) => OfferKind::FreeProduct {
                            sku: sku.clone(),
                            cost_minor,
                        },
                        _ => {
                            bad(ck, "a free_product offer needs `sku` and `cost`".into());
                            continue;
                        }
                    }
                }
                other => {
                    bad(
                        ck,
                        format!(
                            "unknown offer kind `{other}` (fixed, percent, free_shipping, free_product)"
                        ),
                    );
                    continue;
                }
            };
            let valid_for = match r.valid.as_deref().map(Duration::parse) {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    bad(ck, format!("valid: {e}"));
                    continue;
                }
                None => Duration::from_seconds(30 * 86_400).expect("positive"),
            };
            let min_order_minor = match r.min_order.as_deref().map(|m| parse_minor(m, &currency)) {
                Some(Ok(m)) if m >= 0 => m,
                Some(Ok(_)) => {
                    bad(ck, "min_order must not be negative".into());
                    continue;
                }
                Some(Err(e)) => {
                    bad(ck, format!("min_order {e}"));
                    continue;
                }
                None => 0,
            };
            let uses = r.orders.unwrap_or(1);
            if !(1..=24).contains(&uses) {
                bad(
                    ck,
                    "orders (how many orders the reward covers) must be 1–24".into(),
                );
                continue;
            }
            // Stored as a table by language even when one text is given, so a message tells the
            // shop's words (a JSON table) from the derived English description of the code list.
            let wording = match r.wording.as_ref().map(|w| match w {
                RawText::Plain(t) => RawText::PerLocale(
                    TEXT_LOCALES
                        .iter()
                        .map(|l| ((*l).to_owned(), t.clone()))
                        .collect(),
                )
                .stored(),
                table => table.stored(),
            }) {
                Some(Ok(w)) => Some(w),
                Some(Err(e)) => {
                    bad(ck, format!("wording: {e}"));
                    continue;
                }
                None => None,
            };
            rungs.push(Rung {
                kind,
                valid_for,
                min_order_minor,
                uses,
                wording,
            });
        }
        if rungs.is_empty() {
            ck.at(
                l.span(),
                None,
                format!("offers.{lname}: a ladder needs at least one rung"),
            );
        }
        offers.insert(lname.clone(), Ladder { currency, rungs });
    }

    // Experiment.
    let experiment = match &raw.experiment {
        None => Experiment {
            variants: vec![("a".into(), 1)],
            allocation: Allocation::Fixed,
        },
        Some(e) => {
            let mut seen = BTreeSet::new();
            let mut variants = Vec::new();
            for v in &e.get_ref().variants {
                let r = v.get_ref();
                if !valid_name(&r.id) || !seen.insert(r.id.clone()) {
                    ck.at(
                        v.span(),
                        None,
                        format!("experiment variant `{}` is invalid or repeated", r.id),
                    );
                }
                if r.weight == 0 {
                    ck.at(
                        v.span(),
                        None,
                        format!("experiment variant `{}` has weight 0", r.id),
                    );
                }
                variants.push((r.id.clone(), r.weight));
            }
            if variants.is_empty() {
                ck.at(e.span(), None, "an experiment needs at least one variant");
            }
            let allocation = match e.get_ref().allocation.as_ref() {
                None => Allocation::Fixed,
                Some(a) => match a.get_ref().as_str() {
                    "fixed" => Allocation::Fixed,
                    "thompson" => Allocation::Thompson,
                    other => {
                        ck.at(
                            a.span(),
                            None,
                            format!("allocation `{other}` is not fixed or thompson"),
                        );
                        Allocation::Fixed
                    }
                },
            };
            Experiment {
                variants,
                allocation,
            }
        }
    };
    let variant_ids: BTreeSet<&str> = experiment
        .variants
        .iter()
        .map(|(v, _)| v.as_str())
        .collect();

    let mut steps = Vec::new();
    for (i, s) in raw.steps.iter().enumerate() {
        let span = s.span();
        let r = s.get_ref();
        let id = r.id.get_ref().as_str();
        let kind = r.kind.get_ref().as_str();
        let Some(allowed) = allowed_fields(kind) else {
            ck.at(
                r.kind.span(),
                Some(id),
                format!("unknown step type `{kind}` (wait, send, offer, branch, tag, untag, sunset, export, webhook, exit)"),
            );
            continue;
        };
        for (field, fspan) in present_fields(r) {
            if !allowed.contains(&field) {
                ck.at(
                    fspan,
                    Some(id),
                    format!("`{field}` does not belong to a {kind} step"),
                );
            }
        }
        let goto = |ck: &mut Checker<'_>,
                    v: &Option<Spanned<String>>,
                    what: &str|
         -> Option<Option<usize>> {
            let v = v.as_ref()?;
            if v.get_ref() == "end" {
                return Some(None);
            }
            match ids.get(v.get_ref()) {
                Some(&j) => Some(Some(j)),
                None => {
                    ck.at(
                        v.span(),
                        Some(id),
                        format!("{what} names step `{}`, which does not exist", v.get_ref()),
                    );
                    Some(None)
                }
            }
        };
        let next = goto(ck, &r.next, "next").unwrap_or(if i + 1 < raw.steps.len() {
            Some(i + 1)
        } else {
            None
        });
        let message = |ck: &mut Checker<'_>| -> Option<Message> {
            let channel = match r.channel.as_ref() {
                None => Channel::Email,
                Some(c) => match c.get_ref().parse::<Channel>() {
                    Ok(ch) => ch,
                    Err(_) => {
                        ck.at(
                            c.span(),
                            Some(id),
                            format!("channel `{}` is not email or sms", c.get_ref()),
                        );
                        return None;
                    }
                },
            };
            let Some(template) = r.template.as_ref() else {
                ck.at(
                    span.clone(),
                    Some(id),
                    format!("a {kind} step needs `template`"),
                );
                return None;
            };
            if !valid_name(template.get_ref()) {
                ck.at(
                    template.span(),
                    Some(id),
                    "template names are lowercase letters, digits, - or _",
                );
            } else if channel == Channel::Email && !(ck.template_exists)(template.get_ref()) {
                ck.at(
                    template.span(),
                    Some(id),
                    format!(
                        "no email template `{}` in the library or `[email] templates_dir` (see `winback templates list`)",
                        template.get_ref()
                    ),
                );
            }
            if channel == Channel::Sms && r.subject.is_some() {
                ck.at(span.clone(), Some(id), "an SMS has no subject");
            }
            let mut line = |field: &str, t: &Option<RawText>| match t.as_ref().map(RawText::stored)
            {
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    ck.at(span.clone(), Some(id), format!("{field}: {e}"));
                    None
                }
                None => None,
            };
            let subject = line("subject", &r.subject);
            let preheader = line("preheader", &r.preheader);
            Some(Message {
                channel,
                template: template.get_ref().clone(),
                subject,
                preheader,
                sender_name: r.sender_name.clone(),
            })
        };
        let action = match kind {
            "wait" => {
                let Some(d) = r.duration.as_ref() else {
                    ck.at(
                        span.clone(),
                        Some(id),
                        "a wait step needs `duration` (the timeout when it waits for an event)",
                    );
                    continue;
                };
                let Some(duration) = ck.duration(d, Some(id), "duration") else {
                    continue;
                };
                let until_local = r.until_local.as_ref().and_then(|t| {
                    LocalTime::parse(t.get_ref())
                        .map_err(|e| ck.at(t.span(), Some(id), format!("until_local: {e}")))
                        .ok()
                });
                let until_event = r.until_event.as_ref().and_then(|e| {
                    EventMatch::parse(e.get_ref())
                        .map_err(|m| ck.at(e.span(), Some(id), format!("until_event: {m}")))
                        .ok()
                });
                if let (Some(t), None) = (&r.on_timeout, &until_event) {
                    ck.at(t.span(), Some(id), "on_timeout needs until_event");
                }
                let on_timeout = goto(ck, &r.on_timeout, "on_timeout").unwrap_or(next);
                Action::Wait {
                    duration,
                    until_local,
                    until_event,
                    on_timeout,
                }
            }
            "send" => match message(ck) {
                Some(m) => Action::Send(m),
                None => continue,
            },
            "sunset" => match message(ck) {
                Some(m) if m.channel == Channel::Email => Action::Sunset(m),
                Some(_) => {
                    ck.at(
                        span.clone(),
                        Some(id),
                        "a sunset step says goodbye by email",
                    );
                    continue;
                }
                None => continue,
            },
            "offer" => match r.ladder.as_ref() {
                Some(l) if offers.contains_key(l.get_ref()) => Action::Offer {
                    ladder: l.get_ref().clone(),
                },
                Some(l) => {
                    ck.at(
                        l.span(),
                        Some(id),
                        format!("no ladder `[offers.{}]` in this file", l.get_ref()),
                    );
                    continue;
                }
                None => {
                    ck.at(span.clone(), Some(id), "an offer step needs `ladder`");
                    continue;
                }
            },
            "branch" => {
                let mut conditions = Vec::new();
                let step_ref = |ck: &mut Checker<'_>, v: &Spanned<String>| match ids
                    .get(v.get_ref())
                    .map(|&j| &raw.steps[j].get_ref().kind)
                {
                    Some(k) if matches!(k.get_ref().as_str(), "send" | "sunset") => {}
                    Some(_) => ck.at(
                        v.span(),
                        Some(id),
                        format!("`{}` is not a send step", v.get_ref()),
                    ),
                    None => ck.at(v.span(), Some(id), format!("no step `{}`", v.get_ref())),
                };
                if let Some(v) = &r.opened {
                    step_ref(ck, v);
                    conditions.push(Condition::Opened(v.get_ref().clone()));
                }
                if let Some(v) = &r.clicked {
                    step_ref(ck, v);
                    conditions.push(Condition::Clicked(v.get_ref().clone()));
                }
                if let Some(v) = &r.survey_reason {
                    match serde_json::from_value::<LeaveReason>(serde_json::Value::String(
                        v.get_ref().clone(),
                    )) {
                        Ok(reason) => conditions.push(Condition::SurveyReason(reason)),
                        Err(_) => ck.at(
                            v.span(),
                            Some(id),
                            format!(
                                "survey_reason `{}` is not one of {}",
                                v.get_ref(),
                                LeaveReason::ALL
                                    .iter()
                                    .map(|r| r.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ),
                    }
                }
                if let Some(v) = &r.call_outcome {
                    match winback_domain::CallOutcome::parse(v.get_ref())
                        .filter(|o| o.as_str() == v.get_ref())
                    {
                        Some(o) => conditions.push(Condition::CallOutcome(o)),
                        None => ck.at(
                            v.span(),
                            Some(id),
                            format!(
                                "call_outcome `{}` is not one of {}",
                                v.get_ref(),
                                winback_domain::CallOutcome::ALL
                                    .iter()
                                    .map(|o| o.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ),
                    }
                }
                if let Some(v) = &r.has_tag {
                    conditions.push(Condition::HasTag(v.get_ref().clone()));
                }
                if let Some(v) = &r.purchased {
                    if !v.get_ref() {
                        ck.at(
                            v.span(),
                            Some(id),
                            "write purchased = true and swap then/else",
                        );
                    }
                    conditions.push(Condition::Purchased);
                }
                if let Some(v) = &r.expr {
                    match Audience::compile(v.get_ref(), true) {
                        Ok(a) => conditions.push(Condition::Expr(a)),
                        Err(e) => ck.at(v.span(), Some(id), format!("expr: {e}")),
                    }
                }
                if conditions.len() != 1 {
                    ck.at(
                        span.clone(),
                        Some(id),
                        "a branch tests exactly one of opened, clicked, survey_reason, call_outcome, has_tag, purchased or expr",
                    );
                    continue;
                }
                let then = goto(ck, &r.then, "then").unwrap_or(next);
                let otherwise = goto(ck, &r.otherwise, "else").unwrap_or(next);
                Action::Branch {
                    condition: conditions.pop().expect("one"),
                    then,
                    otherwise,
                }
            }
            "tag" | "untag" => match r.tags.as_ref() {
                Some(t) if !t.get_ref().is_empty() && t.get_ref().iter().all(|t| valid_name(t)) => {
                    if kind == "tag" {
                        Action::Tag(t.get_ref().clone())
                    } else {
                        Action::Untag(t.get_ref().clone())
                    }
                }
                Some(t) => {
                    ck.at(
                        t.span(),
                        Some(id),
                        "tags are lowercase letters, digits, - or _",
                    );
                    continue;
                }
                None => {
                    ck.at(
                        span.clone(),
                        Some(id),
                        format!("a {kind} step needs `tags = [\"…\"]`"),
                    );
                    continue;
                }
            },
            "export" => {
                let Some(t) = r.target.as_ref() else {
                    ck.at(span.clone(), Some(id), "an export step needs `target`");
                    continue;
                };
                let Some(target) = ExportTarget::parse(t.get_ref()) else {
                    ck.at(
                        t.span(),
                        Some(id),
                        format!(
                            "export target `{}` is not meta, google, linkedin, crm or print",
                            t.get_ref()
                        ),
                    );
                    continue;
                };
                let columns = export_columns(ck, id, &span, target, r.columns.as_ref());
                Action::Export { target, columns }
            }
            "wallet" => match r.style.as_ref() {
                None => Action::Wallet {
                    style: PassStyle::Coupon,
                },
                Some(s) => match PassStyle::parse(s.get_ref()) {
                    Some(style) => Action::Wallet { style },
                    None => {
                        ck.at(
                            s.span(),
                            Some(id),
                            format!("wallet style `{}` is not coupon or store_card", s.get_ref()),
                        );
                        continue;
                    }
                },
            },
            "call" => match r.list.as_ref() {
                Some(l) if valid_name(l.get_ref()) => Action::Call {
                    list: l.get_ref().clone(),
                },
                Some(l) => {
                    ck.at(
                        l.span(),
                        Some(id),
                        "a call list's name is lowercase letters, digits, - or _",
                    );
                    continue;
                }
                None => {
                    ck.at(
                        span.clone(),
                        Some(id),
                        "a call step needs `list = \"NAME\"` (the call list customer service works)",
                    );
                    continue;
                }
            },
            "webhook" => match r.url.as_ref() {
                Some(u) if u.get_ref().starts_with("https://") => Action::Webhook {
                    url: u.get_ref().clone(),
                },
                Some(u) => {
                    ck.at(u.span(), Some(id), "webhook URLs must use https://");
                    continue;
                }
                None => {
                    ck.at(span.clone(), Some(id), "a webhook step needs `url`");
                    continue;
                }
            },
            "exit" => Action::Exit,
            _ => unreachable!("allowed_fields covers every kind"),
        };
        let next = if matches!(action, Action::Exit) {
            None
        } else {
            next
        };
        // Variant overrides.
        let mut variants = BTreeMap::new();
        for (vid, o) in &r.variants {
            if !variant_ids.contains(vid.as_str()) {
                ck.at(
                    o.span(),
                    Some(id),
                    format!("variant `{vid}` is not in [experiment]"),
                );
            }
            let raw_o = o.get_ref();
            let fits = match &action {
                Action::Send(_) | Action::Sunset(_) => {
                    raw_o.ladder.is_none() && raw_o.duration.is_none()
                }
                Action::Offer { .. } => {
                    raw_o.ladder.is_some()
                        && raw_o.template.is_none()
                        && raw_o.subject.is_none()
                        && raw_o.duration.is_none()
                }
                Action::Wait { .. } => {
                    raw_o.duration.is_some()
                        && raw_o.template.is_none()
                        && raw_o.ladder.is_none()
                        && raw_o.subject.is_none()
                }
                _ => false,
            };
            if !fits {
                ck.at(
                    o.span(),
                    Some(id),
                    format!("variant `{vid}` overrides something a {kind} step does not have"),
                );
            }
            if let Some(l) = &raw_o.ladder {
                if !offers.contains_key(l) {
                    ck.at(
                        o.span(),
                        Some(id),
                        format!("variant `{vid}`: no ladder `[offers.{l}]`"),
                    );
                }
            }
            let duration = match raw_o.duration.as_deref().map(Duration::parse) {
                Some(Ok(d)) => Some(d),
                Some(Err(e)) => {
                    ck.at(o.span(), Some(id), format!("variant `{vid}` duration: {e}"));
                    None
                }
                None => None,
            };
            let mut line = |field: &str, t: &Option<RawText>| match t.as_ref().map(RawText::stored)
            {
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    ck.at(o.span(), Some(id), format!("variant `{vid}` {field}: {e}"));
                    None
                }
                None => None,
            };
            let subject = line("subject", &raw_o.subject);
            let preheader = line("preheader", &raw_o.preheader);
            variants.insert(
                vid.clone(),
                Override {
                    template: raw_o.template.clone(),
                    subject,
                    preheader,
                    sender_name: raw_o.sender_name.clone(),
                    ladder: raw_o.ladder.clone(),
                    duration,
                },
            );
        }
        steps.push(Step {
            id: id.to_owned(),
            action,
            next,
            variants,
        });
    }

    // Trigger.
    let t = raw.trigger.get_ref();
    let trigger = match t.kind.get_ref().as_str() {
        "audience" => {
            if audience.is_none() && raw.campaign.audience.is_none() {
                ck.at(
                    t.kind.span(),
                    None,
                    "an audience trigger needs [campaign] audience = '…'",
                );
            }
            let every = t
                .every
                .as_ref()
                .and_then(|e| ck.duration(e, None, "trigger.every"))
                .unwrap_or(Duration::from_seconds(86_400).expect("positive"));
            Trigger::Audience { every }
        }
        "event" => match t.event.as_ref() {
            Some(e) => match EventMatch::parse(e.get_ref()) {
                Ok(event) => Trigger::Event { event },
                Err(m) => {
                    ck.at(e.span(), None, format!("trigger.event: {m}"));
                    return None;
                }
            },
            None => {
                ck.at(t.kind.span(), None, "an event trigger needs `event`");
                return None;
            }
        },
        "date" => {
            let date = match (t.date.as_ref(), t.attribute.as_ref()) {
                (Some(d), None) if d.get_ref() == "first_purchase_anniversary" => {
                    DateRule::FirstPurchaseAnniversary
                }
                (Some(d), None) => {
                    ck.at(d.span(), None, format!("trigger.date `{}` is not first_purchase_anniversary (or use attribute = \"…\")", d.get_ref()));
                    return None;
                }
                (None, Some(a)) if !a.get_ref().is_empty() => {
                    DateRule::Attribute(a.get_ref().clone())
                }
                _ => {
                    ck.at(t.kind.span(), None, "a date trigger needs date = \"first_purchase_anniversary\" or attribute = \"NAME\"");
                    return None;
                }
            };
            let at = match t.at.as_ref() {
                Some(a) => match LocalTime::parse(a.get_ref()) {
                    Ok(v) => v,
                    Err(e) => {
                        ck.at(a.span(), None, format!("trigger.at: {e}"));
                        return None;
                    }
                },
                None => LocalTime::hm(10, 0).expect("valid"),
            };
            Trigger::Date { date, at }
        }
        other => {
            ck.at(
                t.kind.span(),
                None,
                format!("unknown trigger type `{other}` (audience, event, date)"),
            );
            return None;
        }
    };
    for (field, set) in [
        (
            "every",
            t.every.is_some() && !matches!(trigger, Trigger::Audience { .. }),
        ),
        (
            "event",
            t.event.is_some() && !matches!(trigger, Trigger::Event { .. }),
        ),
        (
            "at",
            t.at.is_some() && !matches!(trigger, Trigger::Date { .. }),
        ),
    ] {
        if set {
            ck.at(
                t.kind.span(),
                None,
                format!("trigger field `{field}` does not belong to this trigger type"),
            );
        }
    }

    let entry = match &raw.entry {
        None => Entry {
            cooldown: Duration::from_seconds(90 * 86_400).expect("positive"),
            max_entries: None,
        },
        Some(e) => Entry {
            cooldown: e
                .get_ref()
                .cooldown
                .as_ref()
                .and_then(|c| ck.duration(c, None, "entry.cooldown"))
                .unwrap_or(Duration::from_seconds(90 * 86_400).expect("positive")),
            max_entries: e.get_ref().max_entries,
        },
    };
    let holdout = match &raw.holdout {
        None => Holdout {
            share: 0.10,
            salt: name.clone(),
        },
        Some(h) => {
            let share = *h.get_ref().share.get_ref();
            if !(0.0..0.9).contains(&share) {
                ck.at(
                    h.get_ref().share.span(),
                    None,
                    "holdout.share must be at least 0 and below 0.9 (0.10 is the default)",
                );
            }
            Holdout {
                share,
                salt: h.get_ref().salt.clone().unwrap_or_else(|| name.clone()),
            }
        }
    };
    let policy = match &raw.policy {
        None => CampaignPolicy {
            send_window: None,
            max_late: Duration::from_seconds(2 * 86_400).expect("positive"),
            stale: StaleAction::Replan {
                spread: Duration::from_seconds(6 * 3_600).expect("positive"),
            },
        },
        Some(p) => {
            let p = p.get_ref();
            let send_window = p.send_window.as_ref().and_then(|w| {
                LocalWindow::parse(w.get_ref())
                    .map_err(|e| ck.at(w.span(), None, format!("policy.send_window: {e}")))
                    .ok()
            });
            let max_late = p
                .max_late
                .as_ref()
                .and_then(|d| ck.duration(d, None, "policy.max_late"))
                .unwrap_or(Duration::from_seconds(2 * 86_400).expect("positive"));
            let spread = p
                .spread
                .as_ref()
                .and_then(|d| ck.duration(d, None, "policy.spread"))
                .unwrap_or(Duration::from_seconds(6 * 3_600).expect("positive"));
            let stale = match p.stale.as_ref() {
                None => StaleAction::Replan { spread },
                Some(s) => match s.get_ref().as_str() {
                    "skip" => StaleAction::Skip,
                    "replan" => StaleAction::Replan { spread },
                    other => {
                        ck.at(
                            s.span(),
                            None,
                            format!("policy.stale `{other}` is not skip or replan"),
                        );
                        StaleAction::Skip
                    }
                },
            };
            CampaignPolicy {
                send_window,
                max_late,
                stale,
            }
        }
    };

    // Journeys run forward: a loop would send the same step twice under one idempotency key.
    if steps.len() == raw.steps.len() {
        for (i, s) in steps.iter().enumerate() {
            if let Some(cycle) = cycle_from(&steps, i) {
                ck.at(
                    raw.steps[i].span(),
                    Some(&s.id),
                    format!(
                        "steps loop back ({}); journeys run forward, add steps instead",
                        cycle.join(" → ")
                    ),
                );
                break;
            }
        }
    }

    Some(Campaign {
        name,
        description: raw.campaign.description,
        exclusive: raw.campaign.exclusive.unwrap_or(true),
        similar_products: raw.campaign.similar_products.unwrap_or(true),
        audience,
        trigger,
        entry,
        holdout,
        experiment,
        policy,
        offers,
        steps,
        conversion_window,
    })
}

fn successors(step: &Step) -> Vec<usize> {
    match &step.action {
        Action::Branch {
            then, otherwise, ..
        } => then.iter().chain(otherwise.iter()).copied().collect(),
        Action::Wait { on_timeout, .. } => {
            step.next.iter().chain(on_timeout.iter()).copied().collect()
        }
        _ => step.next.into_iter().collect(),
    }
}

fn cycle_from(steps: &[Step], start: usize) -> Option<Vec<String>> {
    // Depth-first from `start`; a return to `start` is a cycle.
    let mut stack = vec![(start, vec![steps[start].id.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((i, path)) = stack.pop() {
        for j in successors(&steps[i]) {
            if j == start {
                let mut p = path.clone();
                p.push(steps[j].id.clone());
                return Some(p);
            }
            if j < steps.len() && seen.insert(j) {
                let mut p = path.clone();
                p.push(steps[j].id.clone());
                stack.push((j, p));
            }
        }
    }
    None
}
