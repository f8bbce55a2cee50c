//! Column-mapping files: read any CSV by naming which of its columns holds what.
//!
//! ```toml
//! kind = "orders"                 # customers | orders | order_items | shopify
//! delimiter = ";"
//! date_order = "dmy"              # how to read 03/04/2024
//! date_format = "%d-%m-%Y %H:%M"  # optional strftime format for every date column
//! decimal = "comma"               # 12,50
//! currency = "EUR"
//! time_zone = "Europe/Amsterdam"
//! region = "NL"
//!
//! ignore = ["Status"]             # headers to skip (neither a field nor an attribute)
//!
//! [columns]                       # winback column = "the file's header"
//! order_id = "Bestelnummer"
//! customer_id = "Klantnummer"
//! ordered_at = "Besteldatum"
//! total = "Totaal"
//! status = "Betaalstatus"
//!
//! [values.status]                 # the file's value = winback's
//! voltooid = "paid"
//! geannuleerd = "cancelled"
//! ```

use std::{collections::BTreeMap, path::Path};

use winback_domain::{Currency, DecimalSeparator, Region, TimeZoneName};

use crate::{DateOrder, ImportOptions, SourceKind, customers, orders};

/// Why a mapping file was refused; the message names the file, line and key.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {field}: {reason}")]
pub struct MappingError {
    /// The mapping file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The key.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// A parsed mapping file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// What the file holds.
    pub kind: SourceKind,
    /// Field delimiter: one character, or `tab`.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Day/month order of numeric dates.
    #[serde(default)]
    pub date_order: Option<DateOrder>,
    /// An explicit strftime format for dates.
    #[serde(default)]
    pub date_format: Option<String>,
    /// Decimal separator of amounts.
    #[serde(default)]
    pub decimal: Option<DecimalSeparator>,
    /// Currency of amounts without a currency column.
    #[serde(default)]
    pub currency: Option<String>,
    /// Zone of times without an offset.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Region of phone numbers without a country code.
    #[serde(default)]
    pub region: Option<String>,
    /// winback column name → the file's header.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Per winback column, the file's values and what they mean to winback
    /// (`[values.status] voltooid = "paid"`); other values pass through unchanged.
    #[serde(default)]
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    /// Headers of the file to ignore: neither read as a field nor kept as an attribute (a
    /// column whose name collides with a winback field it does not hold).
    #[serde(default)]
    pub ignore: Vec<String>,
    #[serde(skip)]
    file: String,
    #[serde(skip)]
    text: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Mapping {
    /// Reads and checks a mapping file.
    pub fn load(path: &Path) -> Result<Self, MappingError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| MappingError {
            file: file.clone(),
            line: 0,
            field: "file".into(),
            reason: e.to_string(),
        })?;
        Self::parse(&file, &text)
    }

    /// Parses mapping text; `file` is used in messages.
    pub fn parse(file: &str, text: &str) -> Result<Self, MappingError> {
        let mut m: Mapping = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            let msg = e.message().to_owned();
            let field = msg.split('`').nth(1).unwrap_or("mapping").to_owned();
            MappingError {
                file: file.to_owned(),
                line,
                field,
                reason: msg,
            }
        })?;
        m.file = file.to_owned();
        m.text = text.to_owned();
        let known: Vec<&str> = match m.kind {
            SourceKind::Customers => customers::COLUMNS.iter().map(|c| c[0]).collect(),
            SourceKind::Orders => orders::ORDER_COLUMNS.iter().map(|c| c[0]).collect(),
            SourceKind::OrderItems => orders::ITEM_COLUMNS.iter().map(|c| c[0]).collect(),
            SourceKind::Shopify => Vec::new(),
            SourceKind::Events | SourceKind::Cdnow => {
                return Err(m.error(
                    "kind",
                    format!(
                        "a mapping applies to CSV files; `{}` files have a fixed format",
                        m.kind.as_str()
                    ),
                ));
            }
        };
        for name in m.columns.keys() {
            if !known.is_empty() && !known.contains(&name.as_str()) {
                return Err(m.error(
                    name,
                    format!(
                        "`{name}` is not a column winback reads from {} files; the columns are: {}",
                        m.kind.as_str().replace('_', " "),
                        known.join(", ")
                    ),
                ));
            }
        }
        for name in m.values.keys() {
            if !known.is_empty() && !known.contains(&name.as_str()) {
                return Err(m.error_at(
                    &format!("[values.{name}]"),
                    name,
                    format!(
                        "`{name}` is not a column winback reads from {} files; values can be translated for: {}",
                        m.kind.as_str().replace('_', " "),
                        known.join(", ")
                    ),
                ));
            }
        }
        if let Some(d) = &m.delimiter {
            m.delimiter_byte()
                .map_err(|reason| m.error("delimiter", reason))?;
            let _ = d;
        }
        if let Some(f) = &m.date_format {
            if !f.contains('%') {
                return Err(m.error(
                    "date_format",
                    format!("`{f}` has no strftime directives such as %d, %m, %Y"),
                ));
            }
        }
        Ok(m)
    }

    /// The plan the CSV reader applies.
    pub(crate) fn plan(&self) -> crate::csvrows::Plan {
        crate::csvrows::Plan {
            renames: self.columns.clone(),
            values: self.values.clone(),
            ignore: self.ignore.clone(),
        }
    }

    /// An error on the line that contains `needle` (a table header).
    fn error_at(&self, needle: &str, field: &str, reason: String) -> MappingError {
        let line = self
            .text
            .lines()
            .position(|l| l.trim_start().starts_with(needle))
            .map_or(0, |i| i + 1);
        MappingError {
            file: self.file.clone(),
            line,
            field: field.to_owned(),
            reason,
        }
    }

    fn error(&self, field: &str, reason: String) -> MappingError {
        // Point at the line where the key is written, when it is.
        let line = self
            .text
            .lines()
            .position(|l| {
                let t = l.trim_start();
                t.starts_with(field) && t[field.len()..].trim_start().starts_with('=')
            })
            .map_or(0, |i| i + 1);
        MappingError {
            file: self.file.clone(),
            line,
            field: field.to_owned(),
            reason,
        }
    }

    fn delimiter_byte(&self) -> Result<Option<u8>, String> {
        match self.delimiter.as_deref() {
            None => Ok(None),
            Some("tab") | Some("\t") => Ok(Some(b'\t')),
            Some(d) if d.len() == 1 && d.is_ascii() => Ok(Some(d.as_bytes()[0])),
            Some(d) => Err(format!("`{d}` is not a single ASCII character or `tab`")),
        }
    }

    /// Applies the mapping's settings over the configured ones.
    pub(crate) fn apply_options(&self, o: &mut ImportOptions) -> Result<(), MappingError> {
        if let Some(d) = self
            .delimiter_byte()
            .map_err(|r| self.error("delimiter", r))?
        {
            o.delimiter = d;
        }
        if self.date_order.is_some() {
            o.date_order = self.date_order;
        }
        if let Some(d) = self.decimal {
            o.decimal = d;
        }
        if let Some(c) = &self.currency {
            o.default_currency =
                Currency::parse(c).map_err(|e| self.error("currency", e.to_string()))?;
        }
        if let Some(tz) = &self.time_zone {
            o.default_time_zone =
                TimeZoneName::parse(tz).map_err(|e| self.error("time_zone", e.to_string()))?;
        }
        if let Some(r) = &self.region {
            o.default_region = Region::parse(r).map_err(|e| self.error("region", e.to_string()))?;
        }
        Ok(())
    }
}
