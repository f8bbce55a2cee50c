//! Amounts, offers and dates as each language of the library writes them: `€5.00 off` and
//! `31 December 2025` in English, `€ 5,00 korting` and `31 december 2025` in Dutch, `-5,00 zł`
//! and `31 grudnia 2025` in Polish.
//!
//! Written here rather than taken from ICU4X: its currency formatter is still experimental and
//! its locale data adds megabytes, while the library speaks three languages whose rules fit in
//! a table. A language the library does not know falls back to English, as templates do.

use jiff::civil::Date;
use winback_engine::definition::OfferKind;

/// The library's language for a locale tag (`nl-NL` → `nl`), English when unknown.
pub fn language(locale: &str) -> &'static str {
    match locale
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
        .as_str()
    {
        "nl" => "nl",
        "pl" => "pl",
        _ => "en",
    }
}

fn symbol(currency: &str) -> Option<&'static str> {
    match currency {
        "EUR" => Some("€"),
        "GBP" => Some("£"),
        "USD" => Some("$"),
        "PLN" => Some("zł"),
        _ => None,
    }
}

/// Digits of `minor / 100` grouped by thousands with `sep`, and the cents after `dec`.
fn digits(minor: i64, sep: &str, dec: char) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    let whole = (m / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push_str(sep);
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}{dec}{:02}", m % 100)
}

/// An amount in minor units as `lang` writes it: `€1,234.56`, `€ 1.234,56`, `1 234,56 zł`.
pub fn money(minor: i64, currency: &str, lang: &str) -> String {
    match language(lang) {
        "nl" => {
            let d = digits(minor, ".", ',');
            match symbol(currency) {
                Some(s) if currency != "PLN" => format!("{s} {d}"),
                _ => format!("{currency} {d}"),
            }
        }
        "pl" => {
            // A no-break space groups thousands and keeps the amount and its currency on one
            // line.
            let d = digits(minor, "\u{a0}", ',');
            format!("{d}\u{a0}{}", symbol(currency).unwrap_or(currency))
        }
        _ => {
            let d = digits(minor, ",", '.');
            match symbol(currency) {
                Some(s) if currency != "PLN" => format!("{s}{d}"),
                _ => format!("{d} {currency}"),
            }
        }
    }
}

/// An offer's short description in `lang`, written to fit inside a sentence ("Here is
/// {{ offer }} on your next order", "Hier is {{ offer }} op je volgende bestelling", "Oto
/// {{ offer }} na kolejne zamówienie").
pub fn offer(lang: &str, kind: &OfferKind, currency: &str) -> String {
    let lang = language(lang);
    let amount = |minor: i64| money(minor, currency, lang);
    match (lang, kind) {
        ("nl", OfferKind::Fixed { amount_minor }) => format!("{} korting", amount(*amount_minor)),
        ("nl", OfferKind::Percent { percent }) => format!("{percent}% korting"),
        ("nl", OfferKind::FreeShipping) => "gratis verzending".into(),
        ("nl", OfferKind::FreeProduct { sku, .. }) => format!("gratis {sku}"),
        // Polish shops write a discount as a minus amount ("-15%"): it reads in every case of
        // the sentence around it, where "rabat" would need declining.
        ("pl", OfferKind::Fixed { amount_minor }) => format!("-{}", amount(*amount_minor)),
        ("pl", OfferKind::Percent { percent }) => format!("-{percent}%"),
        ("pl", OfferKind::FreeShipping) => "darmowa dostawa".into(),
        ("pl", OfferKind::FreeProduct { sku, .. }) => format!("gratis: {sku}"),
        (_, OfferKind::Fixed { amount_minor }) => format!("{} off", amount(*amount_minor)),
        (_, OfferKind::Percent { percent }) => format!("{percent}% off"),
        (_, OfferKind::FreeShipping) => "free shipping".into(),
        (_, OfferKind::FreeProduct { sku, .. }) => format!("a free {sku}"),
    }
}

const NL_MONTHS: [&str; 12] = [
    "januari",
    "februari",
    "maart",
    "april",
    "mei",
    "juni",
    "juli",
    "augustus",
    "september",
    "oktober",
    "november",
    "december",
];
// Polish dates take the month in the genitive ("31 grudnia").
const PL_MONTHS: [&str; 12] = [
    "stycznia",
    "lutego",
    "marca",
    "kwietnia",
    "maja",
    "czerwca",
    "lipca",
    "sierpnia",
    "września",
    "października",
    "listopada",
    "grudnia",
];
const EN_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A date as `lang` writes it in running text: `31 December 2025`, `31 december 2025`,
/// `31 grudnia 2025`.
pub fn date(d: Date, lang: &str) -> String {
    let months = match language(lang) {
        "nl" => &NL_MONTHS,
        "pl" => &PL_MONTHS,
        _ => &EN_MONTHS,
    };
    let m = usize::try_from(d.month() - 1).unwrap_or(0).min(11);
    format!("{} {} {}", d.day(), months[m], d.year())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_as_each_language_writes_them() {
        assert_eq!(money(500, "EUR", "en"), "€5.00");
        assert_eq!(money(123_456, "EUR", "en"), "€1,234.56");
        assert_eq!(money(500, "EUR", "nl"), "€ 5,00");
        assert_eq!(money(123_456, "EUR", "nl-NL"), "€ 1.234,56");
        assert_eq!(money(500, "PLN", "pl"), "5,00\u{a0}zł");
        assert_eq!(
            money(123_456_789, "PLN", "pl"),
            "1\u{a0}234\u{a0}567,89\u{a0}zł"
        );
        assert_eq!(money(500, "EUR", "pl"), "5,00\u{a0}€");
        assert_eq!(money(500, "PLN", "en"), "5.00 PLN");
        assert_eq!(money(500, "SEK", "nl"), "SEK 5,00");
        assert_eq!(money(5, "EUR", "fr"), "€0.05");
    }

    #[test]
    fn offers_read_inside_a_sentence() {
        assert_eq!(
            offer("nl", &OfferKind::Fixed { amount_minor: 500 }, "EUR"),
            "€ 5,00 korting"
        );
        assert_eq!(
            offer("pl", &OfferKind::Percent { percent: 15 }, "PLN"),
            "-15%"
        );
        assert_eq!(
            offer("pl", &OfferKind::Fixed { amount_minor: 2000 }, "PLN"),
            "-20,00\u{a0}zł"
        );
        assert_eq!(
            offer("en", &OfferKind::FreeShipping, "EUR"),
            "free shipping"
        );
        assert_eq!(
            offer(
                "nl",
                &OfferKind::FreeProduct {
                    sku: "TAS-1".into(),
                    cost_minor: 300
                },
                "EUR"
            ),
            "gratis TAS-1"
        );
    }

    #[test]
    fn dates_in_running_text() {
        let d = Date::new(2025, 12, 31).unwrap();
        assert_eq!(date(d, "en"), "31 December 2025");
        assert_eq!(date(d, "nl"), "31 december 2025");
        assert_eq!(date(d, "pl"), "31 grudnia 2025");
        assert_eq!(
            date(Date::new(2026, 1, 2).unwrap(), "pl_PL"),
            "2 stycznia 2026"
        );
    }
}
