use std::{fmt, str::FromStr};

/// Why an amount or currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not an ISO 4217 code.
    #[error("`{0}` is not an ISO 4217 currency code")]
    UnknownCurrency(String),
    /// Not a decimal amount.
    #[error("`{0}` is not an amount")]
    NotANumber(String),
    /// More decimals than the currency has minor units.
    #[error("`{0}` has more decimals than {1} allows ({2})")]
    TooPrecise(String, &'static str, u8),
    /// `1,234` or `1.500` could mean a thousand or a fraction; winback never guesses.
    #[error(
        "`{0}` is ambiguous: is `{1}` a decimal or a thousands separator? Set the decimal separator"
    )]
    Ambiguous(String, char),
    /// Beyond what 64-bit minor units hold.
    #[error("`{0}` is out of range")]
    Overflow(String),
    /// Larger than any real order: a broken export (sums of such amounts would overflow).
    #[error("`{0}` is not a plausible amount (more than 10,000,000,000.00); check the export")]
    Implausible(String),
    /// Two amounts of different currencies were combined.
    #[error("cannot combine {0} and {1}")]
    CurrencyMismatch(&'static str, &'static str),
}

/// The largest amount, in minor units, an import accepts: 10¹² (ten billion in a two-decimal
/// currency). Ten million such orders still sum inside 64 bits.
pub const MAX_PLAUSIBLE_MINOR: i64 = 1_000_000_000_000;

/// An ISO 4217 currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Euro, the default of the demo shop.
    pub const EUR: Self = Self(iso_currency::Currency::EUR);
    /// US dollar (CDNOW).
    pub const USD: Self = Self(iso_currency::Currency::USD);

    /// Parses a three-letter code, in any case.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        iso_currency::Currency::from_code(&code.trim().to_uppercase())
            .map(Self)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_owned()))
    }
    /// The three-letter code.
    pub fn code(self) -> &'static str {
        self.0.code()
    }
    /// Digits after the decimal point (2 for EUR, 0 for JPY).
    pub fn minor_digits(self) -> u8 {
        self.0.exponent().map_or(0, |e| e as u8)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Which character separates the decimals in the source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecimalSeparator {
    /// Decide from the text, refusing what could be read two ways.
    #[default]
    Auto,
    /// `1,234.56`
    Dot,
    /// `1.234,56`
    Comma,
}

/// An amount of money: integer minor units (cents) and a currency. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// An amount in minor units.
    pub const fn from_minor(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }
    /// Zero in `currency`.
    pub const fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }
    /// The amount in minor units.
    pub const fn minor(self) -> i64 {
        self.minor
    }
    /// The currency.
    pub const fn currency(self) -> Currency {
        self.currency
    }
    /// Adds two amounts of one currency.
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(
                self.currency.code(),
                other.currency.code(),
            ));
        }
        self.minor
            .checked_add(other.minor)
            .map(|minor| Self { minor, ..self })
            .ok_or_else(|| MoneyError::Overflow(format!("{self} + {other}")))
    }

    /// Parses a decimal amount as shops export it: `12.5`, `-3,99`, `€ 1.234,56`, `1,234.56`.
    /// A currency symbol or code around the number is ignored; the currency is given.
    pub fn parse_decimal(
        raw: &str,
        currency: Currency,
        sep: DecimalSeparator,
    ) -> Result<Self, MoneyError> {
        let text = raw.trim();
        let nan = || MoneyError::NotANumber(raw.to_owned());
        // Strip a leading/trailing currency symbol or code, and inner spaces.
        let core: String = text
            .trim_matches(|c: char| {
                !(c.is_ascii_digit() || c == '-' || c == '+' || c == '.' || c == ',')
            })
            .chars()
            .filter(|c| !matches!(c, ' ' | '\u{a0}' | '\'' | '_'))
            .collect();
        if core.is_empty() {
            return Err(nan());
        }
        let (negative, digits) = match core.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, core.strip_prefix('+').unwrap_or(&core)),
        };
        if digits.is_empty()
            || !digits
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
        {
            return Err(nan());
        }
        let minor_digits = currency.minor_digits();
        let decimal = match sep {
            DecimalSeparator::Dot => Some('.'),
            DecimalSeparator::Comma => Some(','),
            DecimalSeparator::Auto => {
                let last_dot = digits.rfind('.');
                let last_comma = digits.rfind(',');
                match (last_dot, last_comma) {
                    (None, None) => None,
                    (Some(d), Some(c)) => Some(if d > c { '.' } else { ',' }),
                    (Some(i), None) | (None, Some(i)) => {
                        let ch = digits.as_bytes()[i] as char;
                        let count = digits.matches(ch).count();
                        let after = digits.len() - i - 1;
                        if count > 1 {
                            None // `1.234.567`: only thousands separators
                        } else if after == 3 && (minor_digits < 3) {
                            return Err(MoneyError::Ambiguous(raw.to_owned(), ch));
                        } else {
                            Some(ch)
                        }
                    }
                }
            }
        };
        let (int_part, frac_part) = match decimal {
            Some(d) => match digits.rsplit_once(d) {
                Some((i, f)) => (i.to_owned(), f.to_owned()),
                None => (digits.to_owned(), String::new()),
            },
            None => (digits.to_owned(), String::new()),
        };
        let thousands = match decimal {
            Some('.') => ',',
            Some(_) => '.',
            None => '\0',
        };
        // Thousands separators must group by three; `1,23,4` is a typo, not a number.
        let groups: Vec<&str> = if thousands == '\0' {
            int_part.split([',', '.']).collect()
        } else {
            int_part.split(thousands).collect()
        };
        if groups.len() > 1
            && (groups[0].is_empty()
                || groups[0].len() > 3
                || groups[1..].iter().any(|g| g.len() != 3))
        {
            return Err(nan());
        }
        let int_digits: String = groups.concat();
        if int_digits.is_empty() && frac_part.is_empty() {
            return Err(nan());
        }
        if !int_digits.chars().all(|c| c.is_ascii_digit())
            || !frac_part.chars().all(|c| c.is_ascii_digit())
        {
            return Err(nan());
        }
        if frac_part.len() > minor_digits as usize {
            // Trailing zeros beyond the minor unit (`12.500`) are exact, anything else is not.
            if frac_part[minor_digits as usize..].chars().any(|c| c != '0') {
                return Err(MoneyError::TooPrecise(
                    raw.to_owned(),
                    currency.code(),
                    minor_digits,
                ));
            }
        }
        let mut frac = frac_part
            .chars()
            .take(minor_digits as usize)
            .collect::<String>();
        while frac.len() < minor_digits as usize {
            frac.push('0');
        }
        let all = format!(
            "{}{}",
            if int_digits.is_empty() {
                "0"
            } else {
                &int_digits
            },
            frac
        );
        let magnitude: i64 = all
            .parse()
            .map_err(|_| MoneyError::Overflow(raw.to_owned()))?;
        // No order, refund or discount is worth 10¹² minor units (ten billion euros): such a
        // figure is a broken export, and a few of them would overflow every sum.
        if magnitude > MAX_PLAUSIBLE_MINOR {
            return Err(MoneyError::Implausible(raw.to_owned()));
        }
        Ok(Self {
            minor: if negative { -magnitude } else { magnitude },
            currency,
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.currency.minor_digits() as u32;
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        if d == 0 {
            write!(f, "{sign}{abs} {}", self.currency)
        } else {
            let p = 10u64.pow(d);
            write!(
                f,
                "{sign}{}.{:0w$} {}",
                abs / p,
                abs % p,
                self.currency,
                w = d as usize
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implausible_amounts_are_refused() {
        let eur = Currency::parse("EUR").unwrap();
        let e = Money::parse_decimal("92233720368547758.07", eur, DecimalSeparator::Dot);
        assert!(matches!(e, Err(MoneyError::Implausible(_))), "{e:?}");
        assert!(Money::parse_decimal("10.000.000.000,00", eur, DecimalSeparator::Comma).is_ok());
        assert!(Money::parse_decimal("10.000.000.000,01", eur, DecimalSeparator::Comma).is_err());
    }
    use proptest::prelude::*;

    fn eur(s: &str) -> Result<i64, MoneyError> {
        Money::parse_decimal(s, Currency::EUR, DecimalSeparator::Auto).map(Money::minor)
    }

    #[test]
    fn parses_shop_formats() {
        assert_eq!(eur("12.5"), Ok(1250));
        assert_eq!(eur("12,50"), Ok(1250));
        assert_eq!(eur("€ 1.234,56"), Ok(123_456));
        assert_eq!(eur("1,234.56"), Ok(123_456));
        assert_eq!(eur("-3.99"), Ok(-399));
        assert_eq!(eur("0"), Ok(0));
        assert_eq!(eur("1.234.567"), Ok(123_456_700));
        assert_eq!(
            Money::parse_decimal("29.330", Currency::USD, DecimalSeparator::Dot)
                .unwrap()
                .minor(),
            2933
        );
        assert_eq!(eur("EUR 7"), Ok(700));
        assert_eq!(
            Money::parse_decimal("1.500", Currency::EUR, DecimalSeparator::Comma)
                .unwrap()
                .minor(),
            150_000
        );
        assert_eq!(
            Money::parse_decimal(
                "1500",
                Currency::parse("jpy").unwrap(),
                DecimalSeparator::Auto
            )
            .unwrap()
            .minor(),
            1500
        );
    }

    #[test]
    fn refuses_ambiguity_and_nonsense() {
        assert!(matches!(eur("1,234"), Err(MoneyError::Ambiguous(_, ','))));
        assert!(matches!(eur("1.500"), Err(MoneyError::Ambiguous(_, '.'))));
        assert!(matches!(eur("12.345"), Err(MoneyError::Ambiguous(..))));
        assert!(matches!(eur("1.2345"), Err(MoneyError::TooPrecise(..))));
        assert!(eur("abc").is_err());
        assert!(eur("").is_err());
        assert!(eur("1,23,4.00").is_err());
        assert!(eur("99999999999999999999").is_err());
        assert!(Currency::parse("XYZ").is_err());
    }

    #[test]
    fn displays_with_minor_digits_and_refuses_mixed_sums() {
        assert_eq!(
            Money::from_minor(-1205, Currency::EUR).to_string(),
            "-12.05 EUR"
        );
        let usd = Money::from_minor(1, Currency::USD);
        assert!(Money::zero(Currency::EUR).checked_add(usd).is_err());
    }

    proptest! {
        #[test]
        fn display_parses_back(minor in -10_000_000_000i64..10_000_000_000) {
            let m = Money::from_minor(minor, Currency::EUR);
            let text = m.to_string();
            let number = text.trim_end_matches(" EUR");
            prop_assert_eq!(Money::parse_decimal(number, Currency::EUR, DecimalSeparator::Dot).unwrap(), m);
        }

        #[test]
        fn parse_never_panics(s in "[-+0-9.,€ ]{0,20}") {
            let _ = Money::parse_decimal(&s, Currency::EUR, DecimalSeparator::Auto);
        }
    }
}
