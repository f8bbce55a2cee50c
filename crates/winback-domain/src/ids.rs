use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier was empty after trimming.
    #[error("identifier is empty")]
    Empty,
    /// The identifier is longer than [`ExternalId::MAX_LEN`] bytes.
    #[error("identifier is longer than {} bytes", ExternalId::MAX_LEN)]
    TooLong,
    /// The identifier contains a control character.
    #[error("identifier contains a control character")]
    ControlCharacter,
}

/// The natural key of a record in its source system (a shop's customer number, an order number,
/// an event id). Re-importing a record with the same key updates it instead of duplicating it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ExternalId(String);

impl ExternalId {
    /// Longest accepted identifier, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Parses an identifier: trimmed, non-empty, at most 255 bytes, no control characters.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(IdError::TooLong);
        }
        if s.chars().any(char::is_control) {
            return Err(IdError::ControlCharacter);
        }
        Ok(Self(s.to_owned()))
    }

    /// The key winback gives a customer known only by email address (a Shopify buyer, an order
    /// without a customer number): `email:` followed by the address's matching key.
    pub fn for_email(email: &crate::EmailAddress) -> Self {
        Self(format!("email:{}", email.match_key()))
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ExternalId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Numbers are accepted too: many exports write customer ids unquoted.
        let v = serde_json::Value::deserialize(d)?;
        let s = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a string or number, found {other}"
                )));
            }
        };
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// winback's own id for a customer record in the store.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct CustomerId(i64);

impl CustomerId {
    /// Wraps a store row id. Only the store creates these.
    pub const fn new(raw: i64) -> Self {
        Self(raw)
    }
    /// The row id.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A store row id with its own type, so that a profile's id is never passed where a campaign's
/// or an enrolment's is expected. Only the store makes them from rows.
macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize,
            serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// Wraps a stored id.
            pub const fn new(raw: i64) -> Self {
                Self(raw)
            }
            /// The stored id.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

row_id!(
    /// A merged profile (one person): its smallest customer record's id.
    ProfileId
);
row_id!(
    /// A campaign.
    CampaignId
);
row_id!(
    /// An enrolment: one contact's journey through one campaign.
    EnrolmentId
);

/// A message's idempotency key, `campaign/enrolment/step/channel`: one per message, for ever,
/// and the local part of its `Message-ID`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct MessageKey(String);

impl MessageKey {
    /// The key of the message `step` of `enrolment` in `campaign` sends on `channel`.
    pub fn new(campaign: &str, enrolment: EnrolmentId, step: &str, channel: &str) -> Self {
        Self(format!("{campaign}/{enrolment}/{step}/{channel}"))
    }
    /// A key as stored (the store's outbox rows, a report's `message_id`).
    pub fn stored(key: String) -> Self {
        Self(key)
    }
    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `key` has the shape of a key [`MessageKey::new`] makes
    /// (`campaign/enrolment/step/channel`, the enrolment a number). An event naming anything
    /// else (a newsletter's id from the shop's mail tool) cannot be about a win-back message,
    /// so the store need not look it up.
    pub fn is_winback_shaped(key: &str) -> bool {
        let mut parts = key.rsplitn(4, '/');
        let (Some(channel), Some(step), Some(enrolment), Some(campaign)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        !channel.is_empty()
            && !step.is_empty()
            && !campaign.is_empty()
            && enrolment.parse::<u64>().is_ok()
    }
}

impl From<&str> for MessageKey {
    fn from(key: &str) -> Self {
        Self(key.to_owned())
    }
}

impl From<String> for MessageKey {
    fn from(key: String) -> Self {
        Self(key)
    }
}

impl fmt::Display for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_are_recognised_by_shape() {
        let key = MessageKey::new("we-miss-you", EnrolmentId::new(42), "first", "email");
        assert!(MessageKey::is_winback_shaped(key.as_str()));
        for other in [
            "nl-44",
            "",
            "a/b/c",
            "c/x/s/email",
            "/1/s/email",
            "c/1//email",
            "c/1/s/",
        ] {
            assert!(!MessageKey::is_winback_shaped(other), "{other}");
        }
    }

    #[test]
    fn trims_and_refuses_empty_or_control() {
        assert_eq!(ExternalId::parse("  C-1 ").unwrap().as_str(), "C-1");
        assert_eq!(ExternalId::parse("   "), Err(IdError::Empty));
        assert_eq!(ExternalId::parse("a\u{0}b"), Err(IdError::ControlCharacter));
        assert_eq!(ExternalId::parse(&"x".repeat(256)), Err(IdError::TooLong));
    }

    #[test]
    fn numbers_deserialize_as_ids() {
        let id: ExternalId = serde_json::from_str("12345").unwrap();
        assert_eq!(id.as_str(), "12345");
        assert!(serde_json::from_str::<ExternalId>("\"\"").is_err());
    }
}
