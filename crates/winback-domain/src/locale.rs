use std::fmt;

/// Why a locale or time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocaleError {
    /// Not a BCP 47 language tag winback understands.
    #[error("`{0}` is not a locale (expected a language tag such as `nl` or `en-GB`)")]
    InvalidLocale(String),
    /// Not in the IANA time zone database.
    #[error("`{0}` is not an IANA time zone (such as `Europe/Amsterdam`)")]
    UnknownTimeZone(String),
}

/// A contact's language: a BCP 47 tag reduced to `language` or `language-REGION`
/// (`nl`, `pl`, `en-GB`). Templates are chosen by [`Locale::language`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Locale(String);

impl Locale {
    /// Parses `nl`, `NL`, `en_GB`, `en-gb` (normalised to `en-GB`).
    pub fn parse(raw: &str) -> Result<Self, LocaleError> {
        let s = raw.trim().replace('_', "-");
        let bad = || LocaleError::InvalidLocale(raw.to_owned());
        let mut parts = s.split('-');
        let lang = parts.next().ok_or_else(bad)?;
        if !(2..=3).contains(&lang.len()) || !lang.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(bad());
        }
        let mut out = lang.to_ascii_lowercase();
        if let Some(region) = parts.next() {
            if region.len() != 2 || !region.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(bad());
            }
            out.push('-');
            out.push_str(&region.to_ascii_uppercase());
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
    /// The language subtag, e.g. `nl`.
    pub fn language(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }
    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Locale {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A contact's IANA time zone (`Europe/Warsaw`), used for quiet hours and send windows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct TimeZoneName(String);

impl TimeZoneName {
    /// Parses a zone name present in the (bundled) IANA database.
    pub fn parse(raw: &str) -> Result<Self, LocaleError> {
        let s = raw.trim();
        let tz =
            jiff::tz::TimeZone::get(s).map_err(|_| LocaleError::UnknownTimeZone(raw.to_owned()))?;
        // Keep the canonical spelling the database knows it by.
        Ok(Self(tz.iana_name().unwrap_or(s).to_owned()))
    }
    /// UTC.
    pub fn utc() -> Self {
        Self("UTC".to_owned())
    }
    /// The zone name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The zone, for local-time arithmetic.
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.0).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

impl fmt::Display for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TimeZoneName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn locales_normalise() {
        assert_eq!(Locale::parse("NL").unwrap().as_str(), "nl");
        assert_eq!(Locale::parse("en_gb").unwrap().as_str(), "en-GB");
        assert_eq!(Locale::parse("pl-PL").unwrap().language(), "pl");
        for bad in ["", "dutch", "n", "en-GBR", "en-GB-x", "e1"] {
            assert!(Locale::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones_come_from_the_iana_database() {
        assert_eq!(
            TimeZoneName::parse(" Europe/Amsterdam ").unwrap().as_str(),
            "Europe/Amsterdam"
        );
        assert!(TimeZoneName::parse("Mars/Olympus").is_err());
        assert!(TimeZoneName::parse("").is_err());
    }

    proptest! {
        #[test]
        fn locale_parse_is_idempotent(s in "[a-zA-Z]{2,3}([-_][a-zA-Z]{2})?") {
            let l = Locale::parse(&s).unwrap();
            prop_assert_eq!(Locale::parse(l.as_str()).unwrap(), l);
        }
    }
}
