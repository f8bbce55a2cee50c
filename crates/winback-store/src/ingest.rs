//! Streaming a parsed file into the store.
//!
//! The parser runs on its own thread and hands batches to the writer, so parsing and writing
//! overlap. Every batch goes into one import transaction:
//! - **strict** (the default): at the first refused record writing stops, up to `max_errors`
//!   errors are collected, and the transaction is rolled back: nothing is half-imported;
//! - **skip invalid**: good records are written, refused ones are handed to a rejects sink;
//! - **dry run**: everything is parsed and checked, nothing is written.
//!
//! A killed process leaves an uncommitted transaction, which both databases discard.

use std::collections::HashMap;
use std::sync::Arc;

use winback_domain::{CustomerRecord, EventRecord, ExternalId, LineItem, OrderRecord, Timestamp};
use winback_import::{Item, ParsedRow, Rejected, RowError, RowIter};

use crate::{ImportSink, SqlStore, StoreError, WriteCounts};

/// How an import treats refused records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Refuse the whole file if any record is refused.
    Strict,
    /// Store the good records, report the refused ones.
    SkipInvalid,
    /// Check only.
    DryRun,
}

impl Mode {
    /// The name recorded in `import_runs`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Strict => "strict",
            Mode::SkipInvalid => "skip_invalid",
            Mode::DryRun => "dry_run",
        }
    }
}

/// Settings of one import.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The file's name, for messages about records refused by the store (unknown orders).
    pub file: Arc<str>,
    /// Strict, skip-invalid or dry-run.
    pub mode: Mode,
    /// Errors listed before a strict import stops looking.
    pub max_errors: usize,
    /// Source records per batch.
    pub batch_rows: usize,
    /// Stamps what is written.
    pub now: Timestamp,
}

/// The outcome of an import.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestReport {
    /// Source records read (good and refused).
    pub rows_read: u64,
    /// Source records accepted.
    pub rows_ok: u64,
    /// Source records refused.
    pub rows_rejected: u64,
    /// The first refusals, `file:line: field: reason`.
    pub errors: Vec<String>,
    /// Optional fields left out of kept records because they could not be read.
    pub fields_dropped: u64,
    /// Rows that repeat an order of an earlier row of the same file (the later one is kept).
    pub duplicate_rows: u64,
    /// The first of those, `file:line: field: reason`.
    pub warnings: Vec<String>,
    /// Whether anything was committed.
    pub committed: bool,
    /// What was written (zero when nothing was committed).
    pub written: WriteCounts,
    /// The mode.
    pub mode: Mode,
}

#[derive(Default)]
struct Batch {
    customers: Vec<CustomerRecord>,
    hints: Vec<CustomerRecord>,
    orders: Vec<OrderRecord>,
    items: Vec<(ExternalId, u32, LineItem)>,
    item_lines: Vec<u64>,
    events: Vec<EventRecord>,
}

impl Batch {
    fn add(&mut self, row: ParsedRow) {
        for item in row.items {
            match item {
                Item::Customer(c) => self.customers.push(c),
                Item::CustomerHint(c) => self.hints.push(c),
                Item::Order(o) => self.orders.push(o),
                Item::OrderItem {
                    order,
                    line_no,
                    item,
                } => {
                    self.items.push((order, line_no, item));
                    self.item_lines.push(row.line);
                }
                Item::Event(e) => self.events.push(e),
            }
        }
    }

    /// Writes the batch; returns records refused by the store (items of unknown orders).
    async fn write<S: ImportSink>(
        self,
        session: &mut S,
        file: &Arc<str>,
    ) -> Result<Vec<Rejected>, StoreError> {
        if !self.customers.is_empty() {
            session.upsert_customers(&self.customers, true).await?;
        }
        if !self.hints.is_empty() {
            session.upsert_customers(&self.hints, false).await?;
        }
        if !self.orders.is_empty() {
            session.upsert_orders(&self.orders).await?;
        }
        let mut refused = Vec::new();
        if !self.items.is_empty() {
            for i in session.upsert_order_items(&self.items).await? {
                let (order, _, _) = &self.items[i];
                refused.push(Rejected {
                    error: RowError {
                        file: file.clone(),
                        line: self.item_lines[i],
                        field: "order_id".into(),
                        reason: format!(
                            "order `{order}` is not in the store; import the orders file first"
                        ),
                    },
                    raw: String::new(),
                });
            }
        }
        if !self.events.is_empty() {
            session.insert_events(&self.events).await?;
        }
        Ok(refused)
    }
}

type Message = Vec<Result<ParsedRow, Rejected>>;

/// Imports `rows` into `store`. `on_progress` gets the number of records read so far;
/// `on_reject` every refused record (for the rejects file in skip-invalid mode).
pub async fn ingest(
    store: &SqlStore,
    rows: RowIter,
    options: &IngestOptions,
    mut on_progress: impl FnMut(u64) + Send,
    mut on_reject: impl FnMut(&Rejected) + Send,
) -> Result<IngestReport, StoreError> {
    let batch_rows = options.batch_rows.max(1);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(4);
    // Parsing is CPU work: it runs on its own thread while this task writes.
    let parser = std::thread::spawn(move || {
        let mut buf = Vec::with_capacity(batch_rows);
        for r in rows {
            buf.push(r);
            if buf.len() >= batch_rows
                && tx
                    .blocking_send(std::mem::replace(&mut buf, Vec::with_capacity(batch_rows)))
                    .is_err()
            {
                return; // the writer stopped listening
            }
        }
        if !buf.is_empty() {
            let _ = tx.blocking_send(buf);
        }
    });
    let mut report = IngestReport {
        rows_read: 0,
        rows_ok: 0,
        rows_rejected: 0,
        errors: Vec::new(),
        fields_dropped: 0,
        duplicate_rows: 0,
        warnings: Vec::new(),
        committed: false,
        written: WriteCounts::default(),
        mode: options.mode,
    };
    let mut session = match options.mode {
        Mode::DryRun => None,
        _ => Some(store.begin_import(options.now).await?),
    };
    let mut failed = false;
    // Order number (hashed) → the line it was first seen on, to name a repeated row.
    let mut seen_orders: HashMap<u64, u64> = HashMap::new();
    // Time the writer spent waiting for parsed rows: the parser's share of a slow import.
    let mut waited = std::time::Duration::ZERO;
    let result: Result<(), StoreError> = async {
        loop {
            let start = std::time::Instant::now();
            let Some(msg) = rx.recv().await else { break };
            waited += start.elapsed();
            let mut batch = Batch::default();
            for r in msg {
                report.rows_read += 1;
                match r {
                    Ok(mut row) => {
                        report.rows_ok += 1;
                        for item in &row.items {
                            if let Item::Order(o) = item {
                                let key = hash_of(o.external_id.as_str());
                                if let Some(first) = seen_orders.insert(key, row.line) {
                                    report.duplicate_rows += 1;
                                    if report.warnings.len() < options.max_errors {
                                        report.warnings.push(format!(
                                            "{}:{}: order_id: `{}` repeats line {first}; the later row is kept",
                                            options.file,
                                            row.line,
                                            o.external_id.as_str()
                                        ));
                                    }
                                }
                            }
                        }
                        report.fields_dropped += row.warnings.len() as u64;
                        for w in row.warnings.drain(..) {
                            if report.warnings.len() < options.max_errors {
                                report.warnings.push(w.to_string());
                            }
                        }
                        batch.add(row);
                    }
                    Err(rej) => {
                        report.rows_rejected += 1;
                        if report.errors.len() < options.max_errors {
                            report.errors.push(rej.error.to_string());
                        }
                        on_reject(&rej);
                        failed = true;
                    }
                }
            }
            on_progress(report.rows_read);
            if options.mode == Mode::Strict && failed {
                if report.errors.len() >= options.max_errors {
                    break;
                }
                continue; // keep checking, stop writing
            }
            if let Some(s) = session.as_mut() {
                for rej in batch.write(s, &options.file).await? {
                    report.rows_ok -= 1;
                    report.rows_rejected += 1;
                    if report.errors.len() < options.max_errors {
                        report.errors.push(rej.error.to_string());
                    }
                    on_reject(&rej);
                    failed = true;
                }
            }
        }
        Ok(())
    }
    .await;
    drop(rx);
    let _ = parser.join();
    tracing::info!(
        target: "winback::import",
        file = &*options.file,
        waited_for_parser_s = waited.as_secs_f64(),
        "import read"
    );
    match (result, session) {
        (Err(e), Some(s)) => {
            let _ = s.rollback().await;
            Err(e)
        }
        (Err(e), None) => Err(e),
        (Ok(()), Some(s)) if options.mode == Mode::Strict && failed => {
            s.rollback().await?;
            Ok(report)
        }
        (Ok(()), Some(s)) => {
            report.written = s.commit().await?;
            report.committed = true;
            Ok(report)
        }
        (Ok(()), None) => Ok(report),
    }
}

/// A 64-bit hash of an order number: the duplicate check keeps 16 bytes per order, not the text.
fn hash_of(s: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(s)
}
