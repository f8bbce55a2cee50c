/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// A field is longer than 256 characters.
    #[error("address field `{0}` is longer than 256 characters")]
    TooLong(&'static str),
    /// The country is neither ISO 3166-1 alpha-2 nor a country name winback knows.
    #[error(
        "`{0}` is not a country (a two-letter code such as NL, or its name in English, Dutch or Polish)"
    )]
    BadCountry(String),
}

/// Country names as shops write them, in English, Dutch and Polish (lower case, without
/// accents), with their ISO 3166-1 alpha-2 codes: the countries of the EU, EFTA and the UK, and
/// the usual others in a European shop's customer base.
const COUNTRY_NAMES: &[(&str, &[&str])] = &[
    (
        "NL",
        &[
            "netherlands",
            "the netherlands",
            "nederland",
            "holland",
            "holandia",
            "niderlandy",
        ],
    ),
    ("BE", &["belgium", "belgie", "belgique", "belgia"]),
    ("LU", &["luxembourg", "luxemburg", "luksemburg"]),
    ("DE", &["germany", "duitsland", "deutschland", "niemcy"]),
    ("FR", &["france", "frankrijk", "francja"]),
    ("PL", &["poland", "polen", "polska"]),
    (
        "GB",
        &[
            "united kingdom",
            "uk",
            "great britain",
            "verenigd koninkrijk",
            "engeland",
            "england",
            "wielka brytania",
        ],
    ),
    ("IE", &["ireland", "ierland", "irlandia"]),
    ("ES", &["spain", "spanje", "hiszpania", "espana"]),
    ("PT", &["portugal", "portugalia"]),
    ("IT", &["italy", "italie", "wlochy", "italia"]),
    ("AT", &["austria", "oostenrijk", "osterreich"]),
    (
        "CH",
        &[
            "switzerland",
            "zwitserland",
            "szwajcaria",
            "schweiz",
            "suisse",
        ],
    ),
    ("DK", &["denmark", "denemarken", "dania", "danmark"]),
    ("SE", &["sweden", "zweden", "szwecja", "sverige"]),
    ("NO", &["norway", "noorwegen", "norwegia", "norge"]),
    ("FI", &["finland", "finlandia", "suomi"]),
    ("IS", &["iceland", "ijsland", "islandia"]),
    ("CZ", &["czech republic", "czechia", "tsjechie", "czechy"]),
    ("SK", &["slovakia", "slowakije", "slowacja"]),
    ("HU", &["hungary", "hongarije", "wegry"]),
    ("SI", &["slovenia", "slovenie", "slowenia"]),
    ("HR", &["croatia", "kroatie", "chorwacja"]),
    ("RO", &["romania", "roemenie", "rumunia"]),
    ("BG", &["bulgaria", "bulgarije", "bulgaria"]),
    ("GR", &["greece", "griekenland", "grecja"]),
    ("CY", &["cyprus", "cypr"]),
    ("MT", &["malta"]),
    ("EE", &["estonia", "estland"]),
    ("LV", &["latvia", "letland", "lotwa"]),
    ("LT", &["lithuania", "litouwen", "litwa"]),
    ("UA", &["ukraine", "oekraine", "ukraina"]),
    ("TR", &["turkey", "turkije", "turcja", "turkiye"]),
    (
        "US",
        &[
            "united states",
            "usa",
            "united states of america",
            "verenigde staten",
            "stany zjednoczone",
        ],
    ),
    ("CA", &["canada", "kanada"]),
    ("AU", &["australia", "australie"]),
    ("SR", &["suriname", "surinam"]),
    ("CW", &["curacao"]),
    ("AW", &["aruba"]),
    ("MA", &["morocco", "marokko", "maroko"]),
];

/// The ISO 3166-1 alpha-2 code of a country written as a code or by its name in English, Dutch
/// or Polish (`NL`, `nl`, `Nederland`, `Polska`, `Verenigd Koninkrijk`).
pub fn country_code(raw: &str) -> Option<&'static str> {
    let t = raw.trim();
    if t.len() == 2 && t.chars().all(|c| c.is_ascii_alphabetic()) {
        let up = t.to_ascii_uppercase();
        if let Some(c) = ISO_ALPHA2.iter().copied().find(|c| *c == up) {
            return Some(c);
        }
    }
    let plain = deunicode::deunicode(t).to_lowercase();
    let plain = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    COUNTRY_NAMES
        .iter()
        .find(|(_, names)| names.contains(&plain.as_str()))
        .map(|(c, _)| *c)
}

/// Every assigned ISO 3166-1 alpha-2 code.
const ISO_ALPHA2: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

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
            country: if country.trim().is_empty() {
                String::new()
            } else {
                country_code(country)
                    .ok_or_else(|| AddressError::BadCountry(country.to_owned()))?
                    .to_owned()
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
    fn countries_by_code_or_name_in_three_languages() {
        for (raw, code) in [
            ("nl", "NL"),
            ("Nederland", "NL"),
            ("  the  Netherlands ", "NL"),
            ("Polska", "PL"),
            ("Belgi\u{eb}", "BE"),
            ("Duitsland", "DE"),
            ("Niemcy", "DE"),
            ("UK", "GB"),
            ("Verenigd Koninkrijk", "GB"),
        ] {
            assert_eq!(country_code(raw), Some(code), "{raw}");
        }
        assert_eq!(country_code("Atlantis"), None);
        assert_eq!(country_code("XX"), None);
    }

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
