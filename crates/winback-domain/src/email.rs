use std::fmt;

/// Why an email address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Nothing was given.
    #[error("email address is empty")]
    Empty,
    /// Longer than RFC 5321 allows.
    #[error("email address is longer than 254 characters")]
    TooLong,
    /// Not an address by RFC 5322, or not one mail can be delivered to.
    #[error("`{0}` is not a valid email address: {1}")]
    Invalid(String, &'static str),
}

/// A deliverable email address, normalised (trimmed, lower-cased), with a separate matching key
/// used by identity resolution: the key also drops `+tags` and, for Gmail, dots in the local part,
/// so `Jan.Jansen+shop@GoogleMail.com` and `janjansen@gmail.com` are recognised as one person.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress {
    normalised: String,
    match_key: String,
}

const GMAIL_DOMAINS: [&str; 2] = ["gmail.com", "googlemail.com"];

impl EmailAddress {
    /// Parses and normalises an address.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        if s.chars().count() > 254 {
            return Err(EmailError::TooLong);
        }
        let invalid = |why| EmailError::Invalid(s.to_owned(), why);
        // Quoted local parts and IP-literal domains are valid RFC 5322 but never a shop customer's
        // address; refusing them keeps matching keys simple and safe.
        if s.contains('"')
            || s.contains('[')
            || s.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "quotes, brackets, spaces and control characters are not accepted",
            ));
        }
        if !email_address::EmailAddress::is_valid(s) {
            return Err(invalid("not an RFC 5322 address"));
        }
        let normalised = s.to_lowercase();
        let (local, domain) = normalised.rsplit_once('@').ok_or_else(|| invalid("no @"))?;
        if local.is_empty() {
            return Err(invalid("empty local part"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
            return Err(invalid("the domain needs a dot and no empty labels"));
        }
        let match_key = Self::matching_key(local, domain);
        Ok(Self {
            normalised,
            match_key,
        })
    }

    fn matching_key(local: &str, domain: &str) -> String {
        let base = local.split('+').next().unwrap_or(local);
        let base = if base.is_empty() { local } else { base };
        if GMAIL_DOMAINS.contains(&domain) {
            format!("{}@gmail.com", base.replace('.', ""))
        } else {
            format!("{base}@{domain}")
        }
    }

    /// The normalised address, as mail is sent to it.
    pub fn as_str(&self) -> &str {
        &self.normalised
    }

    /// The key two addresses of one person share (no `+tag`, Gmail dots removed).
    pub fn match_key(&self) -> &str {
        &self.match_key
    }

    /// The domain part, e.g. for per-provider deliverability.
    pub fn domain(&self) -> &str {
        self.normalised.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalised)
    }
}

impl serde::Serialize for EmailAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.normalised)
    }
}

impl<'de> serde::Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_and_builds_matching_key() {
        let e = EmailAddress::parse("  Jan.Jansen+Shop@GoogleMail.com ").unwrap();
        assert_eq!(e.as_str(), "jan.jansen+shop@googlemail.com");
        assert_eq!(e.match_key(), "janjansen@gmail.com");
        let other = EmailAddress::parse("janjansen@gmail.com").unwrap();
        assert_eq!(e.match_key(), other.match_key());
        // Dots matter outside Gmail.
        let a = EmailAddress::parse("a.b@example.nl").unwrap();
        let b = EmailAddress::parse("ab@example.nl").unwrap();
        assert_ne!(a.match_key(), b.match_key());
        assert_eq!(
            EmailAddress::parse("ann+news@example.nl")
                .unwrap()
                .match_key(),
            "ann@example.nl"
        );
        assert_eq!(a.domain(), "example.nl");
    }

    #[test]
    fn refuses_what_is_not_deliverable() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@x.nl",
            "a@x..nl",
            "\"q\"@x.nl",
            "a@[127.0.0.1]",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} should be refused");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&long), Err(EmailError::TooLong));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = EmailAddress::parse(&s);
        }

        #[test]
        fn valid_addresses_round_trip(local in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,5})?", tag in "(\\+[a-z]{1,5})?", domain in "[a-z]{1,10}\\.(nl|pl|com)") {
            let raw = format!("{local}{tag}@{domain}");
            let e = EmailAddress::parse(&raw.to_uppercase()).unwrap();
            prop_assert_eq!(e.as_str(), raw.as_str());
            // Normalising is idempotent and the key never keeps a tag.
            let again = EmailAddress::parse(e.as_str()).unwrap();
            prop_assert_eq!(&again, &e);
            prop_assert!(!e.match_key().contains('+'));
        }
    }
}
