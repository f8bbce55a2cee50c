//! Audiences: CEL expressions over one contact's features, scores, stage, RFM, tags and
//! attributes, e.g. `stage == "lapsed" && clv >= 50.0 && !("vip" in tags)`.
//!
//! The `cel` crate parses and interprets; this module fixes the vocabulary ([`VARIABLES`]),
//! refuses expressions that name anything else before a campaign can start, and binds the
//! variables of one [`AudienceRow`] lazily through a resolver, so an evaluation touches only
//! the variables its expression reads.
//!
//! A variable without a value (`days_since_last_order` for someone who never ordered) is CEL
//! `null`; comparing `null` with a number is an error in CEL, and an error counts as "not in the
//! audience", as `NULL` does in SQL. [`Audience::evaluate`] reports how many rows erred.

use std::sync::Arc;

use cel::common::value::CowVal;
use cel::context::VariableResolver;
use cel::{Context, Program, Value};

/// Every variable an audience or branch expression may use, with its type and meaning. The
/// README's table is generated from this list by `winback campaigns variables`.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("profile_id", "int", "the merged profile's id"),
    (
        "stage",
        "string",
        "lifecycle stage: new, active, at_risk, lapsed, lost, one_time_buyer, inactive_subscriber, never_purchased",
    ),
    (
        "segment",
        "string",
        "RFM segment: champions, loyal_customers, potential_loyalists, new_customers, promising, need_attention, about_to_sleep, at_risk, cant_lose_them, hibernating, lost",
    ),
    ("rfm", "string", "RFM cell as three digits, e.g. \"545\""),
    ("r", "int", "RFM recency score 1–5"),
    ("f", "int", "RFM frequency score 1–5"),
    ("m", "int", "RFM monetary score 1–5"),
    (
        "p_alive",
        "double",
        "probability the customer is still active (purchase model)",
    ),
    ("attrition", "double", "1 − p_alive"),
    (
        "clv",
        "double",
        "predicted 12-month value, major currency units",
    ),
    (
        "priority",
        "double",
        "win-back priority: expected incremental margin, major units",
    ),
    (
        "expected_90d",
        "double",
        "expected purchases in the next 90 days",
    ),
    ("orders", "int", "orders placed"),
    ("total_spend", "double", "total spend, major units"),
    ("mean_order", "double", "mean order value, major units"),
    ("currency", "string", "currency of the spend"),
    ("discounted_orders", "int", "orders placed with a discount"),
    ("main_category", "string", "most-bought category"),
    ("days_since_last_order", "int", "days since the last order"),
    (
        "days_since_first_order",
        "int",
        "days since the first order",
    ),
    (
        "usual_gap_days",
        "double",
        "the customer's usual days between orders",
    ),
    (
        "overdue_ratio",
        "double",
        "days since the last order ÷ the usual gap",
    ),
    (
        "days_since_human_open",
        "int",
        "days since the last human (not machine) email open",
    ),
    ("days_since_click", "int", "days since the last email click"),
    (
        "days_since_engagement",
        "int",
        "days since any engagement (click, human open, visit, login, cart, quote, survey)",
    ),
    (
        "days_since_visit",
        "int",
        "days since the last site visit or login",
    ),
    (
        "days_since_activity",
        "int",
        "days since the person last did something themselves (order, click, visit, login, cart, quote, survey; not opens): the retention clock",
    ),
    (
        "days_since_cart_abandoned",
        "int",
        "days since the last abandoned cart",
    ),
    ("loyalty_balance", "int", "loyalty points balance"),
    (
        "points_90d",
        "int",
        "loyalty points earned in the last 90 days",
    ),
    (
        "loyalty_trend",
        "string",
        "growing, steady, declining or stagnant",
    ),
    ("subscription", "string", "none, active or cancelled"),
    ("complaints", "int", "complaints opened"),
    (
        "complaints_satisfied",
        "int",
        "complaints resolved to the customer's satisfaction",
    ),
    ("spam_complaints", "int", "spam complaints about our email"),
    ("referrals", "int", "people referred"),
    (
        "leave_reasons",
        "list(string)",
        "reasons given for leaving: too_expensive, bad_experience, hard_to_understand, forgot_us, quality, other",
    ),
    (
        "inactive_by",
        "list(string)",
        "names of the inactivity definitions the profile matches",
    ),
    ("tags", "list(string)", "the contact's tags"),
    (
        "attributes",
        "map",
        "the customer's imported attributes, e.g. attributes.tier",
    ),
    ("has_email", "bool", "an email address is known"),
    ("has_phone", "bool", "a mobile number is known"),
    (
        "email_ok",
        "bool",
        "email marketing is allowed (consent, not suppressed; a soft opt-in only for customers with an order)",
    ),
    (
        "email_consent",
        "string",
        "the email consent in force: opt_in, soft_opt_in (existing customers, similar products only), none, withdrawn",
    ),
    (
        "sms_consent",
        "string",
        "the SMS consent in force: opt_in, soft_opt_in, none, withdrawn",
    ),
    (
        "sms_ok",
        "bool",
        "SMS marketing is allowed (consent, not suppressed)",
    ),
    (
        "email_inactive",
        "bool",
        "no human email engagement in 180 days",
    ),
    ("locale", "string", "the contact's locale, e.g. nl-NL"),
    (
        "country",
        "string",
        "ISO country code of the postal address",
    ),
];

/// Variables that exist only inside a journey, for branch expressions.
pub const JOURNEY_VARIABLES: &[(&str, &str, &str)] = &[
    (
        "opened",
        "list(string)",
        "ids of this journey's send steps the contact opened (human opens only)",
    ),
    (
        "clicked",
        "list(string)",
        "ids of this journey's send steps the contact clicked",
    ),
    ("purchased", "bool", "ordered since entering the journey"),
    (
        "survey_reason",
        "string",
        "the reason for leaving given since entering the journey",
    ),
    (
        "call_outcome",
        "string",
        "the latest outcome of this journey's call (reached, not_reached, reason_for_leaving, wants_fewer_emails, do_not_call, offer_accepted)",
    ),
    ("days_in_journey", "int", "days since entering the journey"),
    (
        "variant",
        "string",
        "the experiment variant the contact is in",
    ),
];

/// Everything an audience can ask about one contact. Built by the store from the latest
/// features, scores, tags, attributes and consent.
#[derive(Debug, Clone, Default)]
pub struct AudienceRow {
    /// Profile id.
    pub profile_id: winback_domain::ProfileId,
    /// Lifecycle stage.
    pub stage: Option<String>,
    /// RFM segment.
    pub segment: Option<String>,
    /// RFM cell digits.
    pub rfm: Option<String>,
    /// P(alive).
    pub p_alive: Option<f64>,
    /// 12-month CLV, major units.
    pub clv: Option<f64>,
    /// Win-back priority, major units.
    pub priority: Option<f64>,
    /// Expected purchases in 90 days.
    pub expected_90d: Option<f64>,
    /// Orders.
    pub orders: i64,
    /// Total spend, major units.
    pub total_spend: f64,
    /// Mean order, major units.
    pub mean_order: Option<f64>,
    /// Currency.
    pub currency: Option<String>,
    /// Discounted orders.
    pub discounted_orders: i64,
    /// Main category.
    pub main_category: Option<String>,
    /// Days since the last order.
    pub days_since_last_order: Option<i64>,
    /// Days since the first order.
    pub days_since_first_order: Option<i64>,
    /// Usual gap between orders.
    pub usual_gap_days: Option<f64>,
    /// Days since the last human open.
    pub days_since_human_open: Option<i64>,
    /// Days since the last click.
    pub days_since_click: Option<i64>,
    /// Days since any engagement.
    pub days_since_engagement: Option<i64>,
    /// Days since the last visit or login.
    pub days_since_visit: Option<i64>,
    /// Days since the last customer-originated activity (opens excluded).
    pub days_since_activity: Option<i64>,
    /// Days since the last abandoned cart.
    pub days_since_cart_abandoned: Option<i64>,
    /// Loyalty balance.
    pub loyalty_balance: Option<i64>,
    /// Points earned in 90 days.
    pub points_90d: i64,
    /// Loyalty trend name.
    pub loyalty_trend: Option<String>,
    /// Subscription state name.
    pub subscription: String,
    /// Complaints opened.
    pub complaints: i64,
    /// Complaints resolved to satisfaction.
    pub complaints_satisfied: i64,
    /// Spam complaints.
    pub spam_complaints: i64,
    /// Referrals.
    pub referrals: i64,
    /// Reasons for leaving.
    pub leave_reasons: Vec<String>,
    /// Matching inactivity definitions.
    pub inactive_by: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Imported attributes.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// An email address is known.
    pub has_email: bool,
    /// A phone number is known.
    pub has_phone: bool,
    /// Email marketing allowed.
    pub email_ok: bool,
    /// SMS marketing allowed.
    pub sms_ok: bool,
    /// The email consent in force (`opt_in`, `soft_opt_in`, `none`, `withdrawn`).
    pub email_consent: String,
    /// The SMS consent in force.
    pub sms_consent: String,
    /// Locale.
    pub locale: Option<String>,
    /// Country.
    pub country: Option<String>,
}

impl AsRef<AudienceRow> for AudienceRow {
    fn as_ref(&self) -> &AudienceRow {
        self
    }
}

impl AudienceRow {
    /// Fills the feature-derived fields from a profile's stored features, with day counts as of
    /// `now` (features keep timestamps, so they do not age).
    pub fn set_features(&mut self, f: &winback_domain::Features, now: winback_domain::Timestamp) {
        let days = |t: Option<winback_domain::Timestamp>| t.map(|t| t.days_until(now));
        let major = |minor: i64| minor as f64 / 100.0;
        self.orders = i64::from(f.orders);
        self.total_spend = major(f.total_spend_minor);
        self.mean_order = f.mean_order_minor.map(major);
        self.currency = f.currency.clone();
        self.discounted_orders = i64::from(f.discounted_orders);
        self.main_category = f.main_category.clone();
        self.days_since_last_order = days(f.last_order_at);
        self.days_since_first_order = days(f.first_order_at);
        self.usual_gap_days = f.gap_mean_days;
        self.days_since_human_open = days(f.last_human_open_at);
        self.days_since_click = days(f.last_click_at);
        self.days_since_engagement = days(f.last_engagement_at);
        self.days_since_visit = days(f.last_site_visit_at);
        self.days_since_activity = days(
            [
                f.last_order_at,
                f.last_click_at,
                f.last_site_visit_at,
                f.last_cart_abandoned_at,
                f.last_quote_request_at,
                f.last_survey_at,
            ]
            .into_iter()
            .flatten()
            .max(),
        );
        self.days_since_cart_abandoned = days(f.last_cart_abandoned_at);
        self.loyalty_balance = f.loyalty_balance;
        self.points_90d = f.points_earned_90d;
        self.loyalty_trend = f
            .loyalty_trend
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|v| v.as_str().map(str::to_owned));
        self.subscription = serde_json::to_value(f.subscription)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "none".into());
        self.complaints = i64::from(f.complaints_opened);
        self.complaints_satisfied = i64::from(f.complaints_satisfied);
        self.spam_complaints = i64::from(f.spam_complaints);
        self.referrals = i64::from(f.referrals);
        self.leave_reasons = f.reasons.iter().map(|r| r.as_str().to_owned()).collect();
    }

    /// No human email engagement (click or human open) in 180 days, or none ever: the
    /// "email-inactive" addresses the deliverability ramp admits slowly.
    pub fn email_inactive(&self) -> bool {
        let open = self.days_since_human_open.unwrap_or(i64::MAX);
        let click = self.days_since_click.unwrap_or(i64::MAX);
        open.min(click) > 180
    }

    fn value(&self, name: &str) -> Option<Value> {
        fn opt<T: Into<Value>>(v: Option<T>) -> Value {
            v.map_or(Value::Null, Into::into)
        }
        fn text(v: &Option<String>) -> Value {
            v.as_deref().map_or(Value::Null, Value::from)
        }
        fn list(v: &[String]) -> Value {
            Value::List(Arc::new(
                v.iter().map(|s| Value::from(s.as_str())).collect(),
            ))
        }
        let digit = |i: usize| -> Value {
            self.rfm
                .as_deref()
                .and_then(|s| s.as_bytes().get(i))
                .map_or(Value::Null, |b| Value::Int(i64::from(b - b'0')))
        };
        Some(match name {
            "profile_id" => Value::Int(self.profile_id.get()),
            "stage" => text(&self.stage),
            "segment" => text(&self.segment),
            "rfm" => text(&self.rfm),
            "r" => digit(0),
            "f" => digit(1),
            "m" => digit(2),
            "p_alive" => opt(self.p_alive),
            "attrition" => opt(self.p_alive.map(|p| 1.0 - p)),
            "clv" => opt(self.clv),
            "priority" => opt(self.priority),
            "expected_90d" => opt(self.expected_90d),
            "orders" => Value::Int(self.orders),
            "total_spend" => Value::Float(self.total_spend),
            "mean_order" => opt(self.mean_order),
            "currency" => text(&self.currency),
            "discounted_orders" => Value::Int(self.discounted_orders),
            "main_category" => text(&self.main_category),
            "days_since_last_order" => opt(self.days_since_last_order),
            "days_since_first_order" => opt(self.days_since_first_order),
            "usual_gap_days" => opt(self.usual_gap_days),
            "overdue_ratio" => opt(match (self.days_since_last_order, self.usual_gap_days) {
                (Some(d), Some(g)) if g > 0.0 => Some(d as f64 / g),
                _ => None,
            }),
            "days_since_human_open" => opt(self.days_since_human_open),
            "days_since_click" => opt(self.days_since_click),
            "days_since_engagement" => opt(self.days_since_engagement),
            "days_since_visit" => opt(self.days_since_visit),
            "days_since_activity" => opt(self.days_since_activity),
            "days_since_cart_abandoned" => opt(self.days_since_cart_abandoned),
            "loyalty_balance" => opt(self.loyalty_balance),
            "points_90d" => Value::Int(self.points_90d),
            "loyalty_trend" => text(&self.loyalty_trend),
            "subscription" => Value::from(self.subscription.as_str()),
            "complaints" => Value::Int(self.complaints),
            "complaints_satisfied" => Value::Int(self.complaints_satisfied),
            "spam_complaints" => Value::Int(self.spam_complaints),
            "referrals" => Value::Int(self.referrals),
            "leave_reasons" => list(&self.leave_reasons),
            "inactive_by" => list(&self.inactive_by),
            "tags" => list(&self.tags),
            "attributes" => json_to_cel(&serde_json::Value::Object(self.attributes.clone())),
            "has_email" => Value::Bool(self.has_email),
            "has_phone" => Value::Bool(self.has_phone),
            "email_ok" => Value::Bool(self.email_ok),
            "email_consent" => Value::from(self.email_consent.as_str()),
            "sms_consent" => Value::from(self.sms_consent.as_str()),
            "sms_ok" => Value::Bool(self.sms_ok),
            "email_inactive" => Value::Bool(self.email_inactive()),
            "locale" => text(&self.locale),
            "country" => text(&self.country),
            _ => return None,
        })
    }
}

fn json_to_cel(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN))),
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        serde_json::Value::Object(o) => {
            let map: std::collections::HashMap<cel::objects::Key, Value> = o
                .iter()
                .map(|(k, v)| (cel::objects::Key::from(k.as_str()), json_to_cel(v)))
                .collect();
            Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

/// What a journey knows about a contact beyond the audience row, for branch expressions.
#[derive(Debug, Clone, Default)]
pub struct JourneyFacts {
    /// Send steps whose message the contact opened (human opens).
    pub opened: Vec<String>,
    /// Send steps whose message the contact clicked.
    pub clicked: Vec<String>,
    /// Ordered since entering.
    pub purchased: bool,
    /// Reason for leaving answered since entering.
    pub survey_reason: Option<String>,
    /// The latest outcome of a call on this journey's call list (`reached`, `not_reached`, …).
    pub call_outcome: Option<String>,
    /// Days since entering.
    pub days_in_journey: i64,
    /// Experiment variant.
    pub variant: String,
}

impl JourneyFacts {
    fn value(&self, name: &str) -> Option<Value> {
        let list = |v: &[String]| {
            Value::List(Arc::new(
                v.iter().map(|s| Value::from(s.as_str())).collect(),
            ))
        };
        Some(match name {
            "opened" => list(&self.opened),
            "clicked" => list(&self.clicked),
            "purchased" => Value::Bool(self.purchased),
            "survey_reason" => self
                .survey_reason
                .as_deref()
                .map_or(Value::Null, Value::from),
            "call_outcome" => self
                .call_outcome
                .as_deref()
                .map_or(Value::Null, Value::from),
            "days_in_journey" => Value::Int(self.days_in_journey),
            "variant" => Value::from(self.variant.as_str()),
            _ => return None,
        })
    }
}

struct Resolver<'a> {
    row: &'a AudienceRow,
    journey: Option<&'a JourneyFacts>,
}

impl VariableResolver for Resolver<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value = match self.journey.and_then(|j| j.value(variable)) {
            Some(v) => v,
            None => self.row.value(variable)?,
        };
        value.try_into().ok().map(CowVal::Owned)
    }
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    /// CEL could not parse it.
    #[error("the expression does not parse: {0}")]
    Parse(String),
    /// It names a variable winback does not know.
    #[error("unknown variable `{name}`{hint}; see `winback campaigns variables`")]
    UnknownVariable {
        /// The name.
        name: String,
        /// "did you mean" text.
        hint: String,
    },
    /// It calls a function outside CEL's standard library.
    #[error("unknown function `{0}`")]
    UnknownFunction(String),
    /// It compares an enumerated variable with a value that variable never takes
    /// (`stage == "lapsd"`).
    #[error("`{variable}` is never \"{value}\"{hint}; its values are {values}")]
    UnknownValue {
        /// The variable.
        variable: String,
        /// The value written.
        value: String,
        /// "did you mean" text.
        hint: String,
        /// The values it takes, comma-separated.
        values: String,
    },
}

/// The values of the enumerated variables. An expression that compares one of them with any
/// other value is refused: it can never be true (or never false), which is always a typo.
pub const ENUMERATED: &[(&str, &[&str])] = &[
    ("stage", STAGES),
    (
        "segment",
        &[
            "champions",
            "loyal_customers",
            "potential_loyalists",
            "new_customers",
            "promising",
            "need_attention",
            "about_to_sleep",
            "at_risk",
            "cant_lose_them",
            "hibernating",
            "lost",
        ],
    ),
    ("email_consent", CONSENT_STATES),
    ("sms_consent", CONSENT_STATES),
    (
        "loyalty_trend",
        &["growing", "steady", "declining", "stagnant"],
    ),
    ("subscription", &["none", "active", "cancelled"]),
    ("leave_reasons", REASONS),
    ("survey_reason", REASONS),
    (
        "call_outcome",
        &[
            "reached",
            "not_reached",
            "reason_for_leaving",
            "wants_fewer_emails",
            "do_not_call",
            "offer_accepted",
        ],
    ),
];

/// The lifecycle stages, in funnel order.
pub const STAGES: &[&str] = &[
    "new",
    "active",
    "at_risk",
    "lapsed",
    "lost",
    "one_time_buyer",
    "inactive_subscriber",
    "never_purchased",
];
const CONSENT_STATES: &[&str] = &["opt_in", "soft_opt_in", "none", "withdrawn"];
const REASONS: &[&str] = &[
    "too_expensive",
    "bad_experience",
    "hard_to_understand",
    "forgot_us",
    "quality",
    "other",
];

/// The values an enumerated variable takes, or `None` for a free variable.
pub fn values_of(variable: &str) -> Option<&'static [&'static str]> {
    ENUMERATED
        .iter()
        .find(|(v, _)| *v == variable)
        .map(|(_, vals)| *vals)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Op(String),
    Other(char),
}

/// A lexer just good enough to find comparisons of variables with string literals; the CEL
/// parser has accepted the expression already, so nothing here reports syntax.
fn tokens(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let quote = c;
            let mut lit = String::new();
            i += 1;
            while i < chars.len() && chars[i] != quote {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                lit.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(Token::Str(lit));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if (c == '=' || c == '!') && chars.get(i + 1) == Some(&'=') {
            out.push(Token::Op(format!("{c}=")));
            i += 2;
        } else {
            out.push(Token::Other(c));
            i += 1;
        }
    }
    out
}

/// Refuses a comparison of an enumerated variable with a value it never takes:
/// `var == "x"`, `var != "x"`, `"x" == var`, `"x" in var` and `var in ["x", …]`.
fn check_values(source: &str) -> Result<(), ExpressionError> {
    let t = tokens(source);
    let is_var = |i: usize| -> Option<&'static [&'static str]> {
        match t.get(i) {
            // `attributes.stage` is an attribute, not the variable.
            Some(Token::Ident(name)) if !(i > 0 && t[i - 1] == Token::Other('.')) => {
                values_of(name)
            }
            _ => None,
        }
    };
    let name = |i: usize| match &t[i] {
        Token::Ident(n) => n.clone(),
        _ => String::new(),
    };
    let refuse = |var: String, value: &str, values: &[&str]| {
        let hint = values
            .iter()
            .map(|v| (edit_distance(value, v), *v))
            .filter(|(d, v)| *d <= 3.max(v.len() / 3))
            .min()
            .map(|(_, v)| format!(" (did you mean \"{v}\"?)"))
            .unwrap_or_default();
        Err(ExpressionError::UnknownValue {
            variable: var,
            value: value.to_owned(),
            hint,
            values: values.join(", "),
        })
    };
    let is_in = |i: usize| matches!(t.get(i), Some(Token::Ident(w)) if w == "in");
    for i in 0..t.len() {
        let Some(values) = is_var(i) else { continue };
        // var == "x" / var != "x"
        if let (Some(Token::Op(_)), Some(Token::Str(v))) = (t.get(i + 1), t.get(i + 2)) {
            if !values.contains(&v.as_str()) {
                return refuse(name(i), v, values);
            }
        }
        // "x" == var / "x" in var
        if i >= 2 {
            if let Token::Str(v) = &t[i - 2] {
                if (matches!(t[i - 1], Token::Op(_)) || is_in(i - 1))
                    && !values.contains(&v.as_str())
                {
                    return refuse(name(i), v, values);
                }
            }
        }
        // var in ["x", "y"]
        if is_in(i + 1) && t.get(i + 2) == Some(&Token::Other('[')) {
            let mut j = i + 3;
            while let Some(tok) = t.get(j) {
                match tok {
                    Token::Other(']') => break,
                    Token::Str(v) if !values.contains(&v.as_str()) => {
                        return refuse(name(i), v, values);
                    }
                    _ => {}
                }
                j += 1;
            }
        }
    }
    Ok(())
}

/// A compiled, checked expression.
#[derive(Debug, Clone)]
pub struct Audience {
    source: String,
    program: Arc<Program>,
}

/// CEL's standard functions and macros that audiences may call.
const FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "exists",
    "all",
    "exists_one",
    "map",
    "filter",
    "has",
    "int",
    "uint",
    "double",
    "string",
    "max",
    "min",
    "dyn",
    "type",
    "@in",
];

impl Audience {
    /// Compiles `source`; `journey` also allows the [`JOURNEY_VARIABLES`] (branch expressions).
    pub fn compile(source: &str, journey: bool) -> Result<Self, ExpressionError> {
        let program = Program::compile(source)
            .map_err(|e| ExpressionError::Parse(one_line(&e.to_string())))?;
        let refs = program.references();
        for name in refs.variables() {
            let known = VARIABLES.iter().any(|(v, _, _)| *v == name)
                || (journey && JOURNEY_VARIABLES.iter().any(|(v, _, _)| *v == name));
            // Comprehension variables (`tags.exists(t, t == "x")`) are declared by the macro.
            if !known && !declared_by_macro(source, name) {
                return Err(ExpressionError::UnknownVariable {
                    name: name.to_owned(),
                    hint: suggestion(name, journey),
                });
            }
        }
        for f in refs.functions() {
            let operator = f.starts_with('_') || f.starts_with('@') || f.starts_with('!');
            if !operator && !FUNCTIONS.contains(&f) {
                return Err(ExpressionError::UnknownFunction(f.to_owned()));
            }
        }
        check_values(source)?;
        Ok(Self {
            source: source.to_owned(),
            program: Arc::new(program),
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `row` is in the audience. An evaluation error (a null compared with a number,
    /// a non-boolean result) is `Err` with CEL's message; callers count it as "not in".
    pub fn matches(
        &self,
        ctx: &Evaluator,
        row: &AudienceRow,
        journey: Option<&JourneyFacts>,
    ) -> Result<bool, String> {
        let resolver = Resolver { row, journey };
        let mut scope = ctx.root.new_inner_scope();
        scope.set_variable_resolver(&resolver);
        match self.program.execute(&scope) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "`{}` gave {other:?}, not true or false",
                self.source
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Evaluates over many rows (anything holding an [`AudienceRow`]); the matching profile
    /// ids and the number of rows that erred.
    pub fn evaluate<R: AsRef<AudienceRow>>(&self, rows: &[R]) -> Evaluation {
        let ctx = Evaluator::new();
        let mut out = Evaluation::default();
        for row in rows {
            let row = row.as_ref();
            match self.matches(&ctx, row, None) {
                Ok(true) => out.matched.push(row.profile_id),
                Ok(false) => {}
                Err(e) => {
                    out.errors += 1;
                    out.first_error.get_or_insert(e);
                }
            }
        }
        out
    }

    /// [`evaluate`](Self::evaluate) on `threads` threads (rows split in contiguous chunks,
    /// results in row order).
    pub fn evaluate_parallel<R: AsRef<AudienceRow> + Sync>(
        &self,
        rows: &[R],
        threads: usize,
    ) -> Evaluation {
        let threads = threads.max(1);
        if threads == 1 || rows.len() < 10_000 {
            return self.evaluate(rows);
        }
        let chunk = rows.len().div_ceil(threads);
        let parts: Vec<Evaluation> = std::thread::scope(|s| {
            let handles: Vec<_> = rows
                .chunks(chunk)
                .map(|part| s.spawn(move || self.evaluate(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("audience evaluation thread panicked"))
                .collect()
        });
        let mut out = Evaluation::default();
        for p in parts {
            out.matched.extend(p.matched);
            out.errors += p.errors;
            if out.first_error.is_none() {
                out.first_error = p.first_error;
            }
        }
        out
    }
}

/// The result of evaluating an audience.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// Matching profile ids, in row order.
    pub matched: Vec<winback_domain::ProfileId>,
    /// Rows whose evaluation erred (counted as not in the audience).
    pub errors: usize,
    /// The first error, for the report.
    pub first_error: Option<String>,
}

/// A CEL root context with the standard library, built once per thread and reused for every
/// row: building one registers every standard function.
pub struct Evaluator {
    root: Context<'static, 'static>,
}

impl Evaluator {
    /// A fresh root context.
    pub fn new() -> Self {
        Self {
            root: Context::default(),
        }
    }
}

impl Default for Evaluator {
    fn default() -> Self {
        Self::new()
    }
}

fn declared_by_macro(source: &str, name: &str) -> bool {
    // `xs.exists(x, …)`, `xs.all(x, …)`, `xs.map(x, …)`, `xs.filter(x, …)`, `exists_one`.
    ["exists", "all", "map", "filter", "exists_one"]
        .iter()
        .any(|m| {
            let pat = format!("{m}(");
            source.match_indices(&pat).any(|(i, _)| {
                source[i + pat.len()..]
                    .trim_start()
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.trim_start().starts_with(','))
            })
        })
}

fn suggestion(name: &str, journey: bool) -> String {
    let candidates = VARIABLES.iter().chain(if journey {
        JOURNEY_VARIABLES.iter()
    } else {
        [].iter()
    });
    candidates
        .map(|(v, _, _)| (edit_distance(name, v), *v))
        .filter(|(d, v)| *d <= 3.max(v.len() / 4))
        .min()
        .map(|(_, v)| format!(" (did you mean `{v}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> AudienceRow {
        AudienceRow {
            profile_id: winback_domain::ProfileId::new(7),
            stage: Some("lapsed".into()),
            rfm: Some("245".into()),
            clv: Some(120.5),
            orders: 3,
            days_since_last_order: Some(200),
            usual_gap_days: Some(50.0),
            tags: vec!["vip".into(), "quality".into()],
            leave_reasons: vec!["too_expensive".into()],
            attributes: serde_json::json!({"tier": "gold", "age": 41})
                .as_object()
                .unwrap()
                .clone(),
            email_ok: true,
            ..AudienceRow::default()
        }
    }

    fn eval(src: &str) -> Result<bool, String> {
        let a = Audience::compile(src, false).map_err(|e| e.to_string())?;
        a.matches(&Evaluator::new(), &row(), None)
    }

    #[test]
    fn expressions_see_features_scores_tags_and_attributes() {
        assert_eq!(eval("stage == \"lapsed\" && clv > 100.0"), Ok(true));
        assert_eq!(eval("\"vip\" in tags && orders >= 3"), Ok(true));
        assert_eq!(eval("r <= 2 && m == 5 && rfm.startsWith(\"2\")"), Ok(true));
        assert_eq!(
            eval("attributes.tier == \"gold\" && attributes.age > 40"),
            Ok(true)
        );
        assert_eq!(eval("overdue_ratio > 3.0"), Ok(true));
        assert_eq!(eval("tags.exists(t, t == \"quality\")"), Ok(true));
        assert_eq!(
            eval("\"too_expensive\" in leave_reasons && email_ok"),
            Ok(true)
        );
        assert_eq!(eval("stage == \"active\""), Ok(false));
    }

    #[test]
    fn null_comparisons_are_errors_that_count_as_not_in() {
        let a = Audience::compile("days_since_click < 30", false).unwrap();
        let out = a.evaluate(&[row()]);
        assert!(out.matched.is_empty());
        assert_eq!(out.errors, 1);
        let guarded =
            Audience::compile("days_since_click != null && days_since_click < 30", false).unwrap();
        assert_eq!(guarded.evaluate(&[row()]).errors, 0);
    }

    #[test]
    fn unknown_names_are_refused_with_a_suggestion() {
        let e = Audience::compile("days_since_last_ordr > 90", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown variable `days_since_last_ordr` (did you mean `days_since_last_order`?); see `winback campaigns variables`"
        );
        // The enumerations are the scoring crate's names, all of them.
        let stages: Vec<&str> = winback_scoring::Stage::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(stages, STAGES);
        let segments: Vec<&str> = winback_scoring::Segment::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(Some(segments.as_slice()), values_of("segment"));
        let e = Audience::compile("stage == \"lapsd\" && email_ok", false).unwrap_err();
        assert!(e.to_string().contains("did you mean \"lapsed\""), "{e}");
        for bad in [
            "\"lost\" == stage",
            "stage in [\"lapsed\", \"gone\"]",
            "\"too_expensiv\" in leave_reasons",
            "email_consent != \"opt-in\"",
            "segment == \"champion\"",
        ] {
            let ok = bad.contains("\"lost\" == stage");
            assert_eq!(Audience::compile(bad, false).is_ok(), ok, "{bad}");
        }
        for good in [
            "stage == \"one_time_buyer\" || stage == 'inactive_subscriber'",
            "attributes.stage == \"whatever\"",
            "\"quality\" in leave_reasons && loyalty_trend == \"stagnant\"",
            "locale == \"nl\"",
        ] {
            assert!(Audience::compile(good, false).is_ok(), "{good}");
        }
        assert!(matches!(
            Audience::compile("opened.size() > 0", false),
            Err(ExpressionError::UnknownVariable { .. })
        ));
        assert!(Audience::compile("\"a\" in opened", true).is_ok());
        assert!(matches!(
            Audience::compile("stage == ", false),
            Err(ExpressionError::Parse(_))
        ));
        assert!(matches!(
            Audience::compile("launch_missiles(stage)", false),
            Err(ExpressionError::UnknownFunction(_))
        ));
    }

    #[test]
    fn journey_facts_shadow_nothing_and_answer_branches() {
        let a = Audience::compile("\"miss-you\" in opened && !purchased", true).unwrap();
        let facts = JourneyFacts {
            opened: vec!["miss-you".into()],
            ..JourneyFacts::default()
        };
        assert_eq!(a.matches(&Evaluator::new(), &row(), Some(&facts)), Ok(true));
    }

    #[test]
    fn parallel_evaluation_keeps_row_order() {
        let rows: Vec<AudienceRow> = (0..25_000)
            .map(|i| AudienceRow {
                profile_id: winback_domain::ProfileId::new(i),
                orders: i % 7,
                ..AudienceRow::default()
            })
            .collect();
        let a = Audience::compile("orders == 3", false).unwrap();
        let one = a.evaluate(&rows);
        let two = a.evaluate_parallel(&rows, 2);
        assert_eq!(one, two);
        assert_eq!(
            one.matched.len(),
            rows.iter().filter(|r| r.orders == 3).count()
        );
    }
}
