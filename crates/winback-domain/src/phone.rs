use std::{fmt, str::FromStr};

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Nothing was given.
    #[error("phone number is empty")]
    Empty,
    /// The text is not a phone number.
    #[error("`{0}` is not a phone number: {1}")]
    Unparsable(String, String),
    /// It parses but is not a valid number for its region.
    #[error("`{0}` is not a valid number in its region")]
    InvalidForRegion(String),
    /// An unknown ISO 3166 region code.
    #[error("`{0}` is not an ISO 3166-1 alpha-2 region")]
    UnknownRegion(String),
}

/// The region assumed for numbers written without a country code (`06 12345678` in the
/// Netherlands). Comes from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region(phonenumber::country::Id);

impl Region {
    /// Parses an ISO 3166-1 alpha-2 code such as `NL` or `pl`.
    pub fn parse(code: &str) -> Result<Self, PhoneError> {
        phonenumber::country::Id::from_str(&code.trim().to_uppercase())
            .map(Self)
            .map_err(|_| PhoneError::UnknownRegion(code.to_owned()))
    }
}

impl Default for Region {
    fn default() -> Self {
        Self(phonenumber::country::Id::NL)
    }
}

/// A valid phone number in E.164 form (`+31612345678`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneE164(String);

impl PhoneE164 {
    /// Parses a number as people write it, using `default_region` when it has no country code.
    pub fn parse(raw: &str, default_region: Region) -> Result<Self, PhoneError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(PhoneError::Empty);
        }
        let n = phonenumber::parse(Some(default_region.0), s)
            .map_err(|e| PhoneError::Unparsable(s.to_owned(), e.to_string()))?;
        if !phonenumber::is_valid(&n) {
            return Err(PhoneError::InvalidForRegion(s.to_owned()));
        }
        Ok(Self(n.format().mode(phonenumber::Mode::E164).to_string()))
    }

    /// The number in E.164 form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Reads back a number the store wrote; it was validated when it was first parsed.
    pub fn from_stored(e164: &str) -> Result<Self, PhoneError> {
        Self::parse(e164, Region::default())
    }
}

impl fmt::Display for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for PhoneE164 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn national_numbers_use_the_default_region() {
        let nl = Region::parse("nl").unwrap();
        assert_eq!(
            PhoneE164::parse("06 12345678", nl).unwrap().as_str(),
            "+31612345678"
        );
        assert_eq!(
            PhoneE164::parse("+48 601 234 567", nl).unwrap().as_str(),
            "+48601234567"
        );
        let pl = Region::parse("PL").unwrap();
        assert_eq!(
            PhoneE164::parse("601-234-567", pl).unwrap().as_str(),
            "+48601234567"
        );
    }

    #[test]
    fn refuses_garbage_and_invalid_numbers() {
        let nl = Region::default();
        assert_eq!(PhoneE164::parse("  ", nl), Err(PhoneError::Empty));
        assert!(PhoneE164::parse("call me", nl).is_err());
        assert!(PhoneE164::parse("+31 1", nl).is_err());
        assert!(Region::parse("XX").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "[+0-9 ()-]{0,24}") {
            let _ = PhoneE164::parse(&s, Region::default());
        }

        #[test]
        fn e164_output_parses_to_itself(sub in 10_000_000u32..59_999_999) {
            let p = PhoneE164::parse(&format!("06{sub}"), Region::default()).unwrap();
            prop_assert_eq!(PhoneE164::from_stored(p.as_str()).unwrap(), p);
        }
    }
}
