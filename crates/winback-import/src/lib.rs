//! `winback-import` owns reading customer data files: `customers.csv`, `orders.csv` with
//! `order_items.csv`, `events.jsonl`, Shopify's order export, the CDNOW transaction files, and any
//! other CSV through a column-mapping file.
//!
//! Parsers are pure and streaming: each is an iterator of parsed rows, so a 10-million-row file
//! never sits in memory, and the same code is fuzzed, tested and benchmarked without a database.
//! Every refusal names the file, the line and the field (`orders.csv:17: total: ...`).
//! UTF-8 with or without a byte-order mark, CRLF line ends and quoted fields are accepted. Dates
//! in ISO 8601 and common shop formats are accepted; an ambiguous date is an error, never a guess.

mod cdnow;
mod csvrows;
mod customers;
pub mod datetime;
mod events;
mod mapping;
mod orders;
mod shopify;

use std::{fmt, path::Path, sync::Arc};

use winback_domain::{
    Currency, CustomerRecord, DecimalSeparator, EventRecord, ExternalId, LineItem, Locale,
    OrderRecord, Region, TimeZoneName, Timestamp,
};

pub use datetime::{DateOrder, DateParser};
pub use mapping::{Mapping, MappingError};

/// A refused value: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The file, as given on the command line.
    pub file: Arc<str>,
    /// 1-based line where the record starts.
    pub line: u64,
    /// The column or JSON field (or `row` when the record as a whole is wrong).
    pub field: String,
    /// What is wrong, in words a marketer understands.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.field, self.reason
        )
    }
}

impl std::error::Error for RowError {}

/// A file that cannot be read at all (missing, not UTF-8 where it matters, required columns
/// absent). Distinct from [`RowError`], which refuses one record and lets the others be checked.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be opened.
    #[error("{file}: cannot open: {source}")]
    Open {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The header row is wrong.
    #[error("{0}")]
    Header(RowError),
    /// The mapping file is wrong.
    #[error(transparent)]
    Mapping(#[from] MappingError),
}

/// One record to store.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A customer to upsert: the values given replace stored ones.
    Customer(CustomerRecord),
    /// What an order or event says about its customer (a buyer's email, Shopify billing data):
    /// it only fills values the store does not have yet.
    CustomerHint(CustomerRecord),
    /// An order to upsert.
    Order(OrderRecord),
    /// A product line of an order that may have been imported earlier.
    OrderItem {
        /// The order's number.
        order: ExternalId,
        /// 1-based position of the line within its order in the file.
        line_no: u32,
        /// The line.
        item: LineItem,
    },
    /// An event to insert once.
    Event(EventRecord),
}

/// A source record that parsed: the items it yields.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRow {
    /// 1-based line where the record starts.
    pub line: u64,
    /// What to store.
    pub items: Vec<Item>,
    /// Optional fields that could not be read and were left out (the record was kept).
    pub warnings: Vec<RowError>,
}

/// A source record that was refused, with its raw text for the rejects file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Why.
    pub error: RowError,
    /// The record as it stood in the file.
    pub raw: String,
}

/// What a parser yields per source record.
pub type RowResult = Result<ParsedRow, Rejected>;

/// A streaming parser.
pub type RowIter = Box<dyn Iterator<Item = RowResult> + Send>;

/// The kinds of file winback reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// `customers.csv`
    Customers,
    /// `orders.csv`
    Orders,
    /// `order_items.csv`
    OrderItems,
    /// `events.jsonl`
    Events,
    /// Shopify's order export CSV.
    Shopify,
    /// CDNOW master or sample file.
    Cdnow,
}

impl SourceKind {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Customers => "customers",
            SourceKind::Orders => "orders",
            SourceKind::OrderItems => "order_items",
            SourceKind::Events => "events",
            SourceKind::Shopify => "shopify",
            SourceKind::Cdnow => "cdnow",
        }
    }
}

/// Defaults for values a file leaves out; from `winback.toml`.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Region for phone numbers without a country code.
    pub default_region: Region,
    /// Zone for dates and times written without an offset.
    pub default_time_zone: TimeZoneName,
    /// Currency for amounts without a currency column.
    pub default_currency: Currency,
    /// Locale for customers without one.
    pub default_locale: Option<Locale>,
    /// Day/month order for dates like `03/04/2024`; `None` refuses them when ambiguous.
    pub date_order: Option<DateOrder>,
    /// Decimal separator of amounts.
    pub decimal: DecimalSeparator,
    /// Field delimiter of CSV files.
    pub delimiter: u8,
    /// The import's "now" (from the injected clock).
    pub as_of: Timestamp,
    /// When a consent statement without a date of its own was made.
    pub undated_consent: UndatedConsent,
    /// Refuse a record for an unreadable optional field (a phone `n.v.t.`, an unknown country)
    /// instead of leaving the field out with a warning.
    pub strict: bool,
}

/// When a consent statement that carries no date was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UndatedConsent {
    /// A file's undated statement is the oldest possible (or the record's `created_at`): it
    /// never overrides a dated withdrawal, and re-importing the file adds nothing.
    #[default]
    Oldest,
    /// A statement received live (the API) was made when it arrived: `as_of`.
    Received,
}

impl ImportOptions {
    /// Options with winback's defaults, as of `as_of`.
    pub fn new(as_of: Timestamp) -> Self {
        Self {
            default_region: Region::default(),
            default_time_zone: TimeZoneName::utc(),
            default_currency: Currency::EUR,
            default_locale: None,
            date_order: None,
            decimal: DecimalSeparator::Auto,
            delimiter: b',',
            as_of,
            undated_consent: UndatedConsent::Oldest,
            strict: false,
        }
    }
}

/// Opens `path` as a `kind` file and returns its parser. A mapping file, when given, renames
/// the columns of any CSV to winback's and may override the options.
pub fn open(
    kind: SourceKind,
    path: &Path,
    options: &ImportOptions,
    mapping: Option<&Mapping>,
) -> Result<RowIter, FileError> {
    let file = std::fs::File::open(path).map_err(|source| FileError::Open {
        file: path.display().to_string(),
        source,
    })?;
    let name: Arc<str> = Arc::from(path.display().to_string());
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    from_reader(kind, name, reader, options, mapping)
}

/// Like [`open`], from any reader; `name` is used in error messages.
pub fn from_reader<R: std::io::Read + Send + 'static>(
    kind: SourceKind,
    name: Arc<str>,
    reader: R,
    options: &ImportOptions,
    mapping: Option<&Mapping>,
) -> Result<RowIter, FileError> {
    let mut options = options.clone();
    if let Some(m) = mapping {
        m.apply_options(&mut options)?;
    }
    let renames = mapping.map(Mapping::plan).unwrap_or_default();
    let date_format = mapping.and_then(|m| m.date_format.clone());
    let ctx = csvrows::Context::new(name, &options, date_format);
    Ok(match kind {
        SourceKind::Customers => Box::new(customers::parse(csvrows::CsvRows::new(
            reader, ctx, &renames,
        )?)?),
        SourceKind::Orders => Box::new(orders::parse_orders(csvrows::CsvRows::new(
            reader, ctx, &renames,
        )?)?),
        SourceKind::OrderItems => Box::new(orders::parse_items(csvrows::CsvRows::new(
            reader, ctx, &renames,
        )?)?),
        SourceKind::Shopify => Box::new(shopify::parse(csvrows::CsvRows::new(
            reader, ctx, &renames,
        )?)?),
        SourceKind::Events => Box::new(events::parse(reader, ctx)),
        SourceKind::Cdnow => Box::new(cdnow::parse(reader, ctx)),
    })
}
