/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// A field is longer than 256 characters.
    #[error("address field `{0}` is longer than 256 characters")]
    TooLong(&'static str),
    /// The country is not ISO 3166-1 alpha-2.
    #[error("`{0}` is not a two-letter country code")]
    BadCountry(String),
}

/// A postal address, used for print mailings and for linking profiles of one household
/// (seed 000: link customers by address so that one who orders under another email address is
/// not treated as inactive).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct PostalAddress {
    line1: String,
    line2: String,
    postal_code: String,
    city: String,
    country: String,
}

impl PostalAddress {
    /// Builds an address from its parts; returns `None` when every part is empty.
    pub fn parse(
        line1: &str,
        line2: &str,
        postal_code: &str,
        city: &str,
        country: &str,
    ) -> Result<Option<Self>, AddressError> {
        let t = |s: &str, f: &'static str| {
            let s = s.trim();
            if s.chars().count() > 256 {
                Err(AddressError::TooLong(f))
            } else {
                Ok(s.to_owned())
            }
        };
        let a = Self {
            line1: t(line1, "address1")?,
            line2: t(line2, "address2")?,
            postal_code: t(postal_code, "postal_code")?.to_uppercase(),
            city: t(city, "city")?,
            country: {
                let c = country.trim().to_ascii_uppercase();
                if !c.is_empty() && (c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_alphabetic()))
                {
                    return Err(AddressError::BadCountry(country.to_owned()));
                }
                c
            },
        };
        if a.line1.is_empty() && a.postal_code.is_empty() && a.city.is_empty() {
            return Ok(None);
        }
        Ok(Some(a))
    }

    /// First address line.
    pub fn line1(&self) -> &str {
        &self.line1
    }
    /// Second address line.
    pub fn line2(&self) -> &str {
        &self.line2
    }
    /// Postal code, upper-cased.
    pub fn postal_code(&self) -> &str {
        &self.postal_code
    }
    /// City.
    pub fn city(&self) -> &str {
        &self.city
    }
    /// ISO 3166-1 alpha-2 country, upper-cased, or empty.
    pub fn country(&self) -> &str {
        &self.country
    }

    /// A normalised form for matching: country, postal code without spaces, and the first line
    /// ASCII-folded with punctuation and common street words removed. `None` when the address
    /// is too incomplete to identify a household (no postal code or no first line).
    pub fn match_key(&self) -> Option<String> {
        let fold = |s: &str| -> Vec<String> {
            deunicode::deunicode(s)
                .to_ascii_lowercase()
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(|w| match w {
                    "straat" | "str" | "street" | "st" | "ulica" | "ul" => "str".to_owned(),
                    "laan" | "ln" | "lane" => "ln".to_owned(),
                    other => other.to_owned(),
                })
                .collect()
        };
        let postal: String = self
            .postal_code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let street = fold(&format!("{} {}", self.line1, self.line2)).join(" ");
        if postal.is_empty() || street.is_empty() {
            return None;
        }
        Some(format!(
            "{}|{}|{}",
            self.country,
            postal.to_ascii_lowercase(),
            street
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_variants_share_a_key() {
        let a = PostalAddress::parse("Keizersgracht 12", "", "1015 cs", "Amsterdam", "nl")
            .unwrap()
            .unwrap();
        let b = PostalAddress::parse("keizersgracht, 12", "", "1015CS", "AMSTERDAM", "NL")
            .unwrap()
            .unwrap();
        assert_eq!(a.match_key(), b.match_key());
        let c = PostalAddress::parse("ul. Długa 5", "", "00-001", "Warszawa", "PL")
            .unwrap()
            .unwrap();
        let d = PostalAddress::parse("Ulica Dluga 5", "", "00001", "Warszawa", "pl")
            .unwrap()
            .unwrap();
        assert_eq!(c.match_key(), d.match_key());
        assert_ne!(a.match_key(), c.match_key());
    }

    #[test]
    fn incomplete_addresses_do_not_match_and_empty_is_none() {
        assert_eq!(PostalAddress::parse("", "", "", "", "").unwrap(), None);
        let a = PostalAddress::parse("", "", "", "Gouda", "NL")
            .unwrap()
            .unwrap();
        assert_eq!(a.match_key(), None);
        assert!(PostalAddress::parse("x", "", "1", "y", "NLD").is_err());
    }
}
