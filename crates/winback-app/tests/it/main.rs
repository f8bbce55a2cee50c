//! The use cases against a real store with a driven clock.
#![allow(missing_docs)]

mod ingest;
mod schedule;
mod scoring;
mod worker;

use std::io::Cursor;
use std::sync::Arc;

use winback_domain::Timestamp;
use winback_import::{ImportOptions, SourceKind, from_reader};
use winback_store::SqlStore;
use winback_store::ingest::{IngestOptions, Mode, ingest};

/// A time from RFC 3339.
pub fn ts(s: &str) -> Timestamp {
    Timestamp::new(s.parse().unwrap())
}

/// Imports a file's text strictly; every row must be stored.
pub async fn import(store: &SqlStore, kind: SourceKind, text: &str, now: Timestamp) {
    let rows = from_reader(
        kind,
        Arc::from("test.csv"),
        Cursor::new(text.as_bytes().to_vec()),
        &ImportOptions::new(now),
        None,
    )
    .unwrap();
    let options = IngestOptions {
        file: Arc::from("test.csv"),
        mode: Mode::Strict,
        max_errors: 20,
        batch_rows: 100,
        now,
    };
    let r = ingest(store, rows, &options, |_| {}, |_| {}).await.unwrap();
    assert_eq!(r.rows_rejected, 0, "{:?}", r.errors);
}
