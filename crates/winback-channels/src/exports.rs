//! Audience files for channels that need no opt-in (seed 001: reach lapsed customers through
//! ads and print): Meta custom audiences and Google Customer Match with normalised, SHA-256-hashed
//! identifiers in each platform's documented columns, and a print mailing list with postal
//! addresses and personal codes. Every cell is defused against spreadsheet formulas.

use std::io::Write;

use sha2::{Digest, Sha256};

/// One contact to export (the store's audience member).
pub use winback_engine::ports::AudienceMember as ExportContact;

/// The file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// Meta custom audience (hashed `email,phone,fn,ln,zip,ct,country`).
    Meta,
    /// Google Customer Match (hashed `Email,Phone,First Name,Last Name`; plain `Country,Zip`).
    Google,
    /// A print mailing list (plain postal addresses and personal codes).
    Print,
}

/// Prefixes a cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR)
/// with an apostrophe.
pub fn defuse(cell: &str) -> String {
    match cell.chars().next() {
        // A signed plain number (`+31 6 12345678`, `-12.50`) cannot run as a formula: it stays
        // as it is, so phone numbers and refunds read correctly.
        Some('+' | '-') if is_plain_number(&cell[1..]) => cell.to_owned(),
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_owned(),
    }
}

/// Digits with the separators people write numbers with, and at least one digit.
fn is_plain_number(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | ',' | '(' | ')'))
}

fn sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Both platforms: trimmed and lower-cased. Gmail-style dot removal is not applied: neither
/// platform asks for it, and it would break matching of non-Gmail addresses.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Lower-case letters only, as both platforms ask for names (accents kept, as UTF-8).
pub fn normalise_name(name: &str) -> String {
    name.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphabetic())
        .collect()
}

fn hashed(v: Option<String>) -> String {
    v.filter(|s| !s.is_empty())
        .map(|s| sha256(&s))
        .unwrap_or_default()
}

/// Writes `contacts` in `format`; returns how many rows were written (contacts with nothing to
/// match on are left out).
pub fn write_export<W: Write>(
    format: ExportFormat,
    contacts: &[ExportContact],
    out: W,
) -> csv::Result<u64> {
    let mut w = csv::Writer::from_writer(out);
    let mut n = 0;
    match format {
        ExportFormat::Meta => {
            w.write_record(["email", "phone", "fn", "ln", "zip", "ct", "country"])?;
            for c in contacts {
                if c.email.is_none() && c.phone.is_none() {
                    continue;
                }
                w.write_record([
                    hashed(c.email.as_deref().map(normalise_email)),
                    // Meta: digits only, with the country code, no `+`.
                    hashed(
                        c.phone
                            .as_deref()
                            .map(|p| p.chars().filter(char::is_ascii_digit).collect()),
                    ),
                    hashed(c.first_name.as_deref().map(normalise_name)),
                    hashed(c.last_name.as_deref().map(normalise_name)),
                    hashed(
                        c.postal_code
                            .as_deref()
                            .map(|z| z.to_lowercase().replace(' ', "")),
                    ),
                    hashed(c.city.as_deref().map(normalise_name)),
                    hashed(c.country.as_deref().map(|s| s.trim().to_lowercase())),
                ])?;
                n += 1;
            }
        }
        ExportFormat::Google => {
            w.write_record([
                "Email",
                "Phone",
                "First Name",
                "Last Name",
                "Country",
                "Zip",
            ])?;
            for c in contacts {
                if c.email.is_none() && c.phone.is_none() {
                    continue;
                }
                w.write_record([
                    hashed(c.email.as_deref().map(normalise_email)),
                    // Google: E.164 with the `+`.
                    hashed(c.phone.clone()),
                    hashed(c.first_name.as_deref().map(normalise_name)),
                    hashed(c.last_name.as_deref().map(normalise_name)),
                    defuse(&c.country.clone().unwrap_or_default().to_uppercase()),
                    defuse(&c.postal_code.clone().unwrap_or_default()),
                ])?;
                n += 1;
            }
        }
        ExportFormat::Print => {
            w.write_record([
                "first_name",
                "last_name",
                "address1",
                "address2",
                "postal_code",
                "city",
                "country",
                "code",
            ])?;
            for c in contacts {
                // A card needs somewhere to go.
                if c.address1.is_none() || c.postal_code.is_none() && c.city.is_none() {
                    continue;
                }
                let cell = |v: &Option<String>| defuse(v.as_deref().unwrap_or_default());
                w.write_record([
                    cell(&c.first_name),
                    cell(&c.last_name),
                    cell(&c.address1),
                    cell(&c.address2),
                    cell(&c.postal_code),
                    cell(&c.city),
                    cell(&c.country),
                    cell(&c.code),
                ])?;
                n += 1;
            }
        }
    }
    w.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anna() -> ExportContact {
        ExportContact {
            email: Some("  Anna.de.Vries@Example.NL ".into()),
            phone: Some("+31612345678".into()),
            first_name: Some("Anna".into()),
            last_name: Some("de Vries".into()),
            address1: Some("Keizersgracht 12".into()),
            postal_code: Some("1015 CS".into()),
            city: Some("Amsterdam".into()),
            country: Some("NL".into()),
            code: Some("WB-7QK2".into()),
            ..Default::default()
        }
    }

    fn rows(format: ExportFormat, c: &[ExportContact]) -> Vec<Vec<String>> {
        let mut buf = Vec::new();
        write_export(format, c, &mut buf).unwrap();
        csv::Reader::from_reader(buf.as_slice())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn meta_hashes_normalised_values() {
        let r = rows(ExportFormat::Meta, &[anna()]);
        assert_eq!(r[0][0], sha256("anna.de.vries@example.nl"));
        assert_eq!(r[0][1], sha256("31612345678"));
        assert_eq!(r[0][2], sha256("anna"));
        assert_eq!(r[0][3], sha256("devries"));
        assert_eq!(r[0][4], sha256("1015cs"));
        assert_eq!(r[0][6], sha256("nl"));
        assert_eq!(r[0][0].len(), 64);
    }

    #[test]
    fn google_hashes_identifiers_and_keeps_country_and_zip_plain() {
        let r = rows(ExportFormat::Google, &[anna()]);
        assert_eq!(r[0][0], sha256("anna.de.vries@example.nl"));
        assert_eq!(r[0][1], sha256("+31612345678"));
        assert_eq!(&r[0][4..], ["NL", "1015 CS"]);
    }

    #[test]
    fn print_lists_addresses_and_defuses_formulas() {
        let mut evil = anna();
        evil.first_name = Some("=HYPERLINK(\"http://x\")".into());
        evil.city = Some("@SUM(A1)".into());
        let mut nowhere = anna();
        nowhere.address1 = None;
        let r = rows(ExportFormat::Print, &[evil, nowhere]);
        assert_eq!(r.len(), 1, "no address, no card");
        assert_eq!(r[0][0], "'=HYPERLINK(\"http://x\")");
        assert_eq!(r[0][5], "'@SUM(A1)");
        assert_eq!(r[0][7], "WB-7QK2");
        for c in ["=1", "+1+1", "-1-cmd", "+A1", "@x", "\tx", "\rx"] {
            assert!(defuse(c).starts_with('\''), "{c:?}");
        }
        // A signed plain number (a phone, a refund) cannot run as a formula.
        for c in ["Anna", "+31 6 1234 5678", "-12.50"] {
            assert_eq!(defuse(c), c);
        }
    }
}
