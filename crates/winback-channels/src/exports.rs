//! Audience files for channels that need no opt-in (seed 001: reach lapsed customers through
//! "display via CRM onboarding, custom audience/sociale netwerken, print"): Meta custom
//! audiences, Google Customer Match and LinkedIn Matched Audiences with normalised,
//! SHA-256-hashed identifiers in each platform's documented columns; a CRM-onboarding file for
//! a display partner in the columns the campaign maps, one identifier per column; and a print
//! mailing list with postal addresses and personal codes. Every cell is defused against
//! spreadsheet formulas. Who may go into a file (the destination's legal basis) is the store's
//! to decide ([`winback_engine::ports::AudienceFile`]); this module only writes it.

use std::io::Write;

use sha2::{Digest, Sha256};
use winback_engine::definition::{ExportColumn, ExportField};

/// One contact to export (the store's audience member).
pub use winback_engine::ports::AudienceMember as ExportContact;

/// The destinations, as campaign files name them.
pub use winback_engine::definition::ExportTarget as ExportFormat;

/// LinkedIn's contact-list template, whose headers must not be changed.
pub const LINKEDIN_HEADERS: [&str; 7] = [
    "email",
    "firstname",
    "lastname",
    "jobtitle",
    "employeecompany",
    "country",
    "googleaid",
];

/// LinkedIn refuses a contact list with fewer rows than this.
pub const LINKEDIN_MIN_ROWS: u64 = 300;

/// LinkedIn takes at most this many rows in one list.
pub const LINKEDIN_MAX_ROWS: u64 = 300_000;

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

/// What [`write_export`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Contacts in the file.
    pub contacts: u64,
    /// Data rows (LinkedIn takes one email per row, so a contact with two addresses has two).
    pub rows: u64,
}

/// A file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing failed.
    #[error(transparent)]
    Csv(#[from] csv::Error),
    /// A CRM file needs the campaign's column mapping.
    #[error("a crm file needs the export step's `columns`")]
    NoColumns,
}

/// The value of one mapped CRM column for `c`.
fn crm_cell(c: &ExportContact, field: ExportField) -> String {
    match field {
        ExportField::EmailSha256(n) => hashed(c.nth_email(n.into()).map(normalise_email)),
        ExportField::PhoneSha256(n) => hashed(c.nth_phone(n.into()).map(phone_digits)),
        ExportField::FirstNameSha256 => hashed(c.first_name.as_deref().map(normalise_name)),
        ExportField::LastNameSha256 => hashed(c.last_name.as_deref().map(normalise_name)),
        ExportField::PostalCode => defuse(c.postal_code.as_deref().unwrap_or_default()),
        ExportField::City => defuse(c.city.as_deref().unwrap_or_default()),
        ExportField::Country => defuse(
            &c.country
                .as_deref()
                .unwrap_or_default()
                .trim()
                .to_uppercase(),
        ),
    }
}

/// E.164 digits without the `+` (Meta's form, and most onboarding partners').
fn phone_digits(p: &str) -> String {
    p.chars().filter(char::is_ascii_digit).collect()
}

/// Writes `contacts` in `format` (`columns`: a CRM file's mapping); says how many contacts and
/// rows were written (contacts with nothing to match on are left out).
pub fn write_export<W: Write>(
    format: ExportFormat,
    columns: &[ExportColumn],
    contacts: &[ExportContact],
    out: W,
) -> Result<Written, ExportError> {
    let mut w = csv::Writer::from_writer(out);
    let mut n = 0;
    let mut rows = 0;
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
                    hashed(c.phone.as_deref().map(phone_digits)),
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
        ExportFormat::Linkedin => {
            w.write_record(LINKEDIN_HEADERS)?;
            for c in contacts {
                if c.email.is_none() {
                    continue;
                }
                // One email per row; names stay empty: LinkedIn matches names only together
                // with a company and title, which a shop does not hold, so sending them would
                // hand over personal data for nothing.
                let country = c
                    .country
                    .as_deref()
                    .unwrap_or_default()
                    .trim()
                    .to_uppercase();
                for e in c.email.iter().chain(&c.other_emails) {
                    w.write_record([
                        sha256(&normalise_email(e)),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                        defuse(&country),
                        String::new(),
                    ])?;
                    rows += 1;
                }
                n += 1;
            }
        }
        ExportFormat::Crm => {
            if columns.is_empty() {
                return Err(ExportError::NoColumns);
            }
            w.write_record(columns.iter().map(|c| defuse(&c.header)))?;
            for c in contacts {
                let cells: Vec<String> = columns.iter().map(|col| crm_cell(c, col.field)).collect();
                let matchable = columns
                    .iter()
                    .zip(&cells)
                    .any(|(col, v)| col.field.identifies() && !v.is_empty());
                if !matchable {
                    continue;
                }
                w.write_record(&cells)?;
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
    w.flush().map_err(csv::Error::from)?;
    if format != ExportFormat::Linkedin {
        rows = n;
    }
    Ok(Written { contacts: n, rows })
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
        write_export(format, &[], c, &mut buf).unwrap();
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
    fn linkedin_has_its_template_headers_and_one_hashed_email_per_row() {
        let mut two = anna();
        two.other_emails = vec!["anna@work.example".into()];
        let mut phone_only = anna();
        phone_only.email = None;
        let mut buf = Vec::new();
        let w = write_export(ExportFormat::Linkedin, &[], &[two, phone_only], &mut buf).unwrap();
        assert_eq!((w.contacts, w.rows), (1, 2), "no email, no LinkedIn row");
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            "email,firstname,lastname,jobtitle,employeecompany,country,googleaid"
        );
        let r = rows(ExportFormat::Linkedin, &[anna()]);
        assert_eq!(r[0][0], sha256("anna.de.vries@example.nl"));
        assert_eq!(&r[0][1..3], ["", ""], "names are not handed over");
        assert_eq!(r[0][5], "NL");
        assert!(
            !text.contains("Anna"),
            "nothing in plain text but the country"
        );
        assert!(text.contains(&sha256("anna@work.example")));
    }

    #[test]
    fn crm_writes_the_mapped_columns_one_identifier_each() {
        use winback_engine::definition::{ExportColumn, ExportField};
        let col = |h: &str, f| ExportColumn {
            header: h.into(),
            field: f,
        };
        let columns = [
            col("EMAIL1", ExportField::EmailSha256(1)),
            col("EMAIL2", ExportField::EmailSha256(2)),
            col("PHONE1", ExportField::PhoneSha256(1)),
            col("FN", ExportField::FirstNameSha256),
            col("ZIP", ExportField::PostalCode),
            col("COUNTRY", ExportField::Country),
        ];
        let mut two = anna();
        two.other_emails = vec!["anna@work.example".into()];
        two.postal_code = Some("=1+1".into());
        let mut nothing = anna();
        nothing.email = None;
        nothing.phone = None;
        let mut buf = Vec::new();
        let w = write_export(ExportFormat::Crm, &columns, &[two, nothing], &mut buf).unwrap();
        assert_eq!(w.contacts, 1, "nothing to match on, no row");
        let mut r = csv::Reader::from_reader(buf.as_slice());
        assert_eq!(
            r.headers().unwrap().iter().collect::<Vec<_>>(),
            ["EMAIL1", "EMAIL2", "PHONE1", "FN", "ZIP", "COUNTRY"]
        );
        let row: Vec<String> = r
            .records()
            .next()
            .unwrap()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(row[0], sha256("anna.de.vries@example.nl"));
        assert_eq!(row[1], sha256("anna@work.example"));
        assert_eq!(row[2], sha256("31612345678"), "E.164 digits without +");
        assert_eq!(row[3], sha256("anna"));
        assert_eq!(row[4], "'=1+1", "plain cells are defused");
        assert_eq!(row[5], "NL");
        assert!(matches!(
            write_export(ExportFormat::Crm, &[], &[anna()], Vec::new()),
            Err(ExportError::NoColumns)
        ));
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
