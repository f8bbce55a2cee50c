//! `customers.csv`: one row per customer. Unknown columns become attributes.

use std::{collections::BTreeMap, io::Read};

use winback_domain::{
    Channel, Consent, ConsentStatus, CustomerRecord, EmailAddress, ExternalId, Locale, PersonName,
    PhoneE164, PostalAddress, TimeZoneName,
};

use crate::{FileError, Item, ParsedRow, RowError, RowResult, csvrows::CsvRows};

/// Columns winback reads from a customer file (first name of each list is canonical).
pub(crate) const COLUMNS: &[&[&str]] = &[
    &["customer_id", "id", "customer_number", "external_id"],
    &["email", "email_address", "e_mail"],
    &["phone", "phone_number", "mobile"],
    &["first_name", "firstname", "given_name"],
    &["last_name", "lastname", "family_name", "surname"],
    &["address1", "address", "street", "address_line1"],
    &["address2", "address_line2"],
    &["postal_code", "zip", "postcode", "zip_code"],
    &["city", "town"],
    &["country", "country_code"],
    &["time_zone", "timezone", "tz"],
    &["locale", "language", "lang"],
    &["created_at", "signed_up_at", "registered_at"],
    &["email_consent", "accepts_marketing", "email_opt_in"],
    &["email_consent_at"],
    &["sms_consent", "accepts_sms", "sms_opt_in"],
    &["sms_consent_at"],
    &["consent_source"],
    &["consent_wording_version", "wording_version"],
];

/// The time given to consent statements that carry none: the Unix epoch.
const UNDATED: winback_domain::Timestamp = winback_domain::Timestamp::EPOCH;

struct Cols {
    id: Option<usize>,
    email: Option<usize>,
    phone: Option<usize>,
    first: Option<usize>,
    last: Option<usize>,
    addr: [Option<usize>; 5],
    tz: Option<usize>,
    locale: Option<usize>,
    created: Option<usize>,
    consent: [(Channel, Option<usize>, Option<usize>); 2],
    consent_source: Option<usize>,
    wording: Option<usize>,
    attributes: Vec<(String, usize)>,
}

pub(crate) fn parse<R: Read + Send + 'static>(
    mut rows: CsvRows<R>,
) -> Result<impl Iterator<Item = RowResult> + Send, FileError> {
    let mut c = |i: usize| rows.column(COLUMNS[i]);
    let mut cols = Cols {
        id: c(0),
        email: c(1),
        phone: c(2),
        first: c(3),
        last: c(4),
        addr: [c(5), c(6), c(7), c(8), c(9)],
        tz: c(10),
        locale: c(11),
        created: c(12),
        consent: [(Channel::Email, c(13), c(14)), (Channel::Sms, c(15), c(16))],
        consent_source: c(17),
        wording: c(18),
        attributes: Vec::new(),
    };
    if cols.id.is_none() && cols.email.is_none() {
        return Err(FileError::Header(rows.ctx.err(
            1,
            "customer_id",
            "a customer file needs a `customer_id` or an `email` column",
        )));
    }
    cols.attributes = rows.unused_columns();
    Ok(crate::csvrows::records(rows, move |rows, line| {
        row(rows, &cols, line)
    }))
}

/// An optional field that cannot be read: left out with a warning (the record is kept), or
/// with `strict` the record's refusal.
fn optional<T>(
    strict: bool,
    warnings: &mut Vec<RowError>,
    r: Result<Option<T>, RowError>,
) -> Result<Option<T>, RowError> {
    match r {
        Err(mut e) if !strict => {
            e.reason = format!("{}; left out, the record was kept", e.reason);
            warnings.push(e);
            Ok(None)
        }
        other => other,
    }
}

fn row<R: Read>(rows: &CsvRows<R>, cols: &Cols, line: u64) -> Result<ParsedRow, RowError> {
    rows.check_width(line)?;
    let ctx = &rows.ctx;
    let strict = ctx.opts.strict;
    let mut warnings = Vec::new();
    let email = rows
        .get(cols.email)
        .map(EmailAddress::parse)
        .transpose()
        .map_err(|e| ctx.err(line, "email", e.to_string()));
    // The email is optional only where a customer id identifies the record.
    let email = if rows.get(cols.id).is_some() {
        optional(strict, &mut warnings, email)?
    } else {
        email?
    };
    let external_id = match (rows.get(cols.id), &email) {
        (Some(id), _) => {
            ExternalId::parse(id).map_err(|e| ctx.err(line, "customer_id", e.to_string()))?
        }
        (None, Some(e)) => ExternalId::for_email(e),
        (None, None) => {
            return Err(ctx.err(
                line,
                "customer_id",
                "is empty and there is no email to identify the customer",
            ));
        }
    };
    let phone = optional(
        strict,
        &mut warnings,
        rows.get(cols.phone)
            .map(|p| PhoneE164::parse(p, ctx.opts.default_region))
            .transpose()
            .map_err(|e| ctx.err(line, "phone", e.to_string())),
    )?;
    let name = |i: Option<usize>, field: &str| {
        rows.get(i)
            .map(PersonName::parse)
            .transpose()
            .map_err(|e| ctx.err(line, field, e.to_string()))
    };
    let first_name = name(cols.first, "first_name")?;
    let last_name = name(cols.last, "last_name")?;
    let part = |i: Option<usize>| rows.get(i).unwrap_or("");
    let parse_address = |country: &str| {
        PostalAddress::parse(
            part(cols.addr[0]),
            part(cols.addr[1]),
            part(cols.addr[2]),
            part(cols.addr[3]),
            country,
        )
    };
    let address = match parse_address(part(cols.addr[4])) {
        Ok(a) => a,
        // An unknown country loses the country, not the address.
        Err(winback_domain::AddressError::BadCountry(c)) if !strict => {
            warnings.push(ctx.err(
                line,
                "country",
                format!(
                    "{}; left out, the record was kept",
                    winback_domain::AddressError::BadCountry(c)
                ),
            ));
            parse_address("").map_err(|e| ctx.err(line, "address", e.to_string()))?
        }
        Err(e) => {
            let field = if matches!(e, winback_domain::AddressError::BadCountry(_)) {
                "country"
            } else {
                "address"
            };
            optional(
                strict,
                &mut warnings,
                Err(ctx.err(line, field, e.to_string())),
            )?
        }
    };
    let time_zone = optional(
        strict,
        &mut warnings,
        rows.get(cols.tz)
            .map(TimeZoneName::parse)
            .transpose()
            .map_err(|e| ctx.err(line, "time_zone", e.to_string())),
    )?;
    let locale = match rows.get(cols.locale) {
        Some(l) => optional(
            strict,
            &mut warnings,
            Locale::parse(l)
                .map(Some)
                .map_err(|e| ctx.err(line, "locale", e.to_string())),
        )?
        .or_else(|| ctx.opts.default_locale.clone()),
        None => ctx.opts.default_locale.clone(),
    };
    let created_at = optional(
        strict,
        &mut warnings,
        rows.get(cols.created)
            .map(|d| rows.date(line, d, "created_at"))
            .transpose(),
    )?;
    let source = rows
        .get(cols.consent_source)
        .map_or_else(|| format!("import:{}", ctx.file), str::to_owned);
    let wording_version = rows.get(cols.wording).map(str::to_owned);
    let mut consents = Vec::new();
    for (channel, status_col, at_col) in cols.consent {
        let field = if channel == Channel::Email {
            "email_consent"
        } else {
            "sms_consent"
        };
        let Some(raw) = rows.get(status_col) else {
            continue;
        };
        let status: ConsentStatus = raw
            .parse()
            .map_err(|e: winback_domain::ConsentError| ctx.err(line, field, e.to_string()))?;
        let at = match rows.get(at_col) {
            Some(d) => rows.date(line, d, &format!("{field}_at"))?,
            // An undated statement counts as the oldest possible: it never overrides a dated
            // withdrawal, and re-importing the file adds nothing to the ledger.
            None => match ctx.opts.undated_consent {
                crate::UndatedConsent::Oldest => created_at.unwrap_or(UNDATED),
                crate::UndatedConsent::Received => ctx.opts.as_of,
            },
        };
        consents.push(Consent {
            channel,
            status,
            source: source.clone(),
            at,
            wording_version: wording_version.clone(),
        });
    }
    let attributes: BTreeMap<String, String> = cols
        .attributes
        .iter()
        .filter_map(|(h, i)| rows.get(Some(*i)).map(|v| (h.clone(), v.to_owned())))
        .collect();
    let record = CustomerRecord {
        external_id,
        email,
        phone,
        first_name,
        last_name,
        address,
        time_zone,
        locale,
        created_at,
        consents,
        attributes,
    };
    Ok(ParsedRow {
        line,
        items: vec![Item::Customer(record)],
        warnings,
    })
}
