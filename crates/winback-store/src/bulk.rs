//! Large SQLite scans through connections of their own.
//!
//! sqlx runs each SQLite connection on a worker thread and hands every row to the calling task
//! through a channel, as an owned row of reference-counted values: about 4.5 µs a row. A report
//! at a million customers scans hundreds of thousands of orders, and scoring tens of millions
//! of events, so that hand-off was most of their time (measured on the report's order read at a
//! million customers: 264,193 rows took 1.2–1.5 s through sqlx; the same statement a day's
//! orders later, 274,084 rows, took 0.42 s with rusqlite on the same file). [`Readers`] runs a
//! read on a blocking thread with a read-only connection of its own and hands rows over in
//! batches.
//!
//! [`crate::db::Pool::for_each`] and [`crate::db::Pool::fetch`] of a plain `SELECT` read this
//! way. Both are outside any transaction, so a connection of its own sees what sqlx's would (the
//! last committed state; WAL lets it read while a writer writes). Transactions and writes (a
//! `RETURNING` included) stay on sqlx.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::types::Value;

use crate::StoreError;
use crate::db::Val;

/// Rows per hand-over to the calling task.
const BATCH: usize = 1_024;
/// Connections reading at once, and kept idle for the next read: as many as the pool's own
/// (`Pool::connect`). Each may hold 64 MB of page cache, so under load (a tracking burst, a
/// report beside the worker) reads queue for one, as they queued for the pool's, instead of
/// opening a connection each.
const CONNECTIONS: usize = 4;

/// Read-only connections to one SQLite file, opened on first use.
#[derive(Clone, Debug)]
pub struct Readers {
    path: PathBuf,
    idle: Arc<Mutex<Vec<rusqlite::Connection>>>,
    /// Set by [`Readers::close`]: connections are no longer kept.
    closed: Arc<std::sync::atomic::AtomicBool>,
    /// One permit per connection in use.
    permits: Arc<tokio::sync::Semaphore>,
}

/// One row of a bulk scan: its values and the statement's column names.
#[derive(Debug)]
pub struct RawRow {
    cols: Arc<[String]>,
    vals: Vec<Value>,
}

impl RawRow {
    pub(crate) fn get(&self, i: RawIndex<'_>) -> Result<&Value, StoreError> {
        let at = match i {
            RawIndex::At(n) => Some(n),
            RawIndex::Named(name) => self.cols.iter().position(|c| c == name),
        };
        at.and_then(|n| self.vals.get(n))
            .ok_or_else(|| StoreError::Data(format!("no column {i:?} in a scan's row")))
    }
}

/// A column of a [`RawRow`], by position or by name.
#[derive(Debug, Clone, Copy)]
pub enum RawIndex<'a> {
    /// By position.
    At(usize),
    /// By name.
    Named(&'a str),
}

fn read_error(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == rusqlite::ErrorCode::DiskFull {
            return StoreError::DiskFull(e.to_string());
        }
    }
    StoreError::Data(format!("SQLite scan: {e}"))
}

impl Readers {
    /// Connections to the database file at `path`.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Arc::default(),
            closed: Arc::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(CONNECTIONS)),
        }
    }

    fn take(&self) -> Result<rusqlite::Connection, StoreError> {
        if let Some(c) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(c);
        }
        let c = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(read_error)?;
        // As the pool's connections (`Pool::connect`): bounded cache, no memory map, sorts
        // spill to files; a writer's checkpoint may hold the file for a moment.
        c.execute_batch(
            "PRAGMA cache_size = -65536; PRAGMA mmap_size = 0; PRAGMA temp_store = FILE;",
        )
        .map_err(read_error)?;
        c.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(read_error)?;
        Ok(c)
    }

    fn give_back(&self, c: rusqlite::Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < CONNECTIONS && !self.closed.load(std::sync::atomic::Ordering::Acquire) {
                idle.push(c);
            }
        }
    }

    /// Closes the idle connections; a scan running now closes its own when it ends.
    pub(crate) fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Folds the write-ahead log into the database file and empties it, on a connection of its
    /// own (best effort: a store being closed has no one to report to; a failure leaves the
    /// log for the next open, which SQLite folds in then).
    pub(crate) fn checkpoint(&self) {
        let Ok(c) = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ) else {
            return;
        };
        let _ = c.busy_timeout(std::time::Duration::from_secs(5));
        if let Err(e) = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "folding the write-ahead log into the file on close");
        }
    }

    /// Runs `sql` (anonymous `?` parameters) with `args` and hands each row to `f`; returns how
    /// many rows it handed over. At most a few batches are in flight, so memory stays bounded
    /// whatever the scan's size; when `f` fails, the scan stops at its next batch.
    pub(crate) async fn for_each(
        &self,
        sql: String,
        args: Vec<Val>,
        mut f: impl FnMut(RawRow) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<RawRow>, StoreError>>(4);
        let readers = self.clone();
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Data(format!("SQLite scan: {e}")))?;
        let scan = tokio::task::spawn_blocking(move || {
            // Held until the connection is back (or closed).
            let _permit = permit;
            let conn = match readers.take() {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            if let Err(e) = scan(&conn, &sql, &args, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
            readers.give_back(conn);
        });
        let mut n = 0u64;
        while let Some(batch) = rx.recv().await {
            for row in batch? {
                f(row)?;
                n += 1;
            }
        }
        scan.await
            .map_err(|e| StoreError::Data(format!("SQLite scan stopped: {e}")))?;
        Ok(n)
    }
}

/// The blocking part: prepares, binds and sends the rows in batches. Returns early, without an
/// error, when the receiver is gone.
fn scan(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[Val],
    tx: &tokio::sync::mpsc::Sender<Result<Vec<RawRow>, StoreError>>,
) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached(sql).map_err(read_error)?;
    for (i, a) in args.iter().enumerate() {
        let v = match a {
            Val::I(v) => v.map_or(Value::Null, Value::Integer),
            Val::F(v) => v.map_or(Value::Null, Value::Real),
            Val::T(v) => v.clone().map_or(Value::Null, Value::Text),
        };
        st.raw_bind_parameter(i + 1, v).map_err(read_error)?;
    }
    let cols: Arc<[String]> = st.column_names().iter().map(|c| c.to_string()).collect();
    let width = cols.len();
    let mut rows = st.raw_query();
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(r) = rows.next().map_err(read_error)? {
        let mut vals = Vec::with_capacity(width);
        for i in 0..width {
            vals.push(Value::from(r.get_ref(i).map_err(read_error)?));
        }
        batch.push(RawRow {
            cols: cols.clone(),
            vals,
        });
        if batch.len() == BATCH
            && tx
                .blocking_send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))))
                .is_err()
        {
            return Ok(());
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(Ok(batch));
    }
    Ok(())
}
