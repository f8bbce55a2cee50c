//! The store conformance suite: every case runs on SQLite and on PostgreSQL.
//!
//! PostgreSQL comes from `WINBACK_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets its own schema. When PostgreSQL
//! cannot be reached the PostgreSQL half prints a skip line, except under `CI=true`, where it
//! fails.
#![allow(missing_docs)]

use std::{io::Cursor, sync::Arc};

use winback_domain::Timestamp;
use winback_import::{ImportOptions, SourceKind, from_reader};
use winback_store::{
    SqlStore,
    ingest::{IngestOptions, IngestReport, Mode, ingest},
};

mod bulk;
mod calls;
mod conformance;
mod consent;
mod deadlock;
mod engine;
mod hygiene;
mod measure;
mod outcomes;
mod people;
mod privacy;
mod rollups;

/// splitmix64: a seeded sequence, so a failure names the seed that reproduces it.
pub struct Rng(u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// Campaign rows 1..=n named `campaign-N`, for tests that write enrolments or messages directly.
pub async fn campaign_rows(store: &SqlStore, n: i64) {
    for id in 1..=n {
        store
            .pool()
            .execute(
                "INSERT INTO campaigns (id, name, status, version, file, created_at, updated_at) VALUES ($1, $2, 'active', 1, 'c.toml', 0, 0)",
                &[winback_store::db::Val::from(id), winback_store::db::Val::from(format!("campaign-{id}"))],
            )
            .await
            .unwrap();
    }
}

pub fn now() -> Timestamp {
    Timestamp::from_micros(1_717_200_000_000_000).unwrap() // 2024-06-01
}

pub struct TestDb {
    pub store: SqlStore,
    cleanup: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        Self {
            store: SqlStore::connect(&url).await.unwrap(),
            cleanup: None,
            _dir: Some(dir),
        }
    }

    /// `None` (after printing why) when PostgreSQL is unreachable outside CI.
    pub async fn postgres(test: &str) -> Option<Self> {
        let url = std::env::var("WINBACK_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!(
            "t_{}_{}_{}",
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(30)
                .collect::<String>()
                .to_lowercase(),
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        match SqlStore::connect_in_schema(&url, Some(&schema)).await {
            Ok(store) => Some(Self {
                store,
                cleanup: Some((url, schema)),
                _dir: None,
            }),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("PostgreSQL at {url} is required under CI=true: {e}")
            }
            Err(e) => {
                eprintln!(
                    "SKIP {test} on PostgreSQL: {url} unreachable ({e}); set WINBACK_TEST_DATABASE_URL"
                );
                None
            }
        }
    }

    pub async fn finish(self) {
        self.store.close().await;
        if let Some((url, schema)) = self.cleanup {
            if let Ok(admin) = winback_store::db::Pool::connect(&url, None).await {
                let _ = admin
                    .execute(&format!("DROP SCHEMA {schema} CASCADE"), &[])
                    .await;
                admin.close().await;
            }
        }
    }
}

/// Runs `$body` (an async fn taking `&SqlStore`) once per backend.
#[macro_export]
macro_rules! conformance {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::TestDb::sqlite().await;
                $body(&db.store).await;
                db.finish().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = $crate::TestDb::postgres(stringify!($name)).await else {
                    return;
                };
                $body(&db.store).await;
                db.finish().await;
            }
        }
    };
}

pub fn opts() -> ImportOptions {
    ImportOptions::new(now())
}

/// Imports `text` as a `kind` file named `name`.
pub async fn import(
    store: &SqlStore,
    kind: SourceKind,
    name: &str,
    text: &str,
    mode: Mode,
) -> IngestReport {
    let rows = from_reader(
        kind,
        Arc::from(name),
        Cursor::new(text.as_bytes().to_vec()),
        &opts(),
        None,
    )
    .unwrap();
    let options = IngestOptions {
        file: Arc::from(name),
        mode,
        max_errors: 20,
        batch_rows: 2,
        now: now(),
    };
    ingest(store, rows, &options, |_| {}, |_| {}).await.unwrap()
}

/// Rows in a table.
pub async fn rows(store: &SqlStore, table: &str) -> i64 {
    store
        .pool()
        .fetch(&format!("SELECT COUNT(*) FROM {table}"), &[])
        .await
        .unwrap()[0]
        .i64(0)
        .unwrap()
}

/// A session dropped without commit leaves nothing behind.
pub async fn dropped_session(store: &SqlStore) {
    let mut s = store.begin_import(now()).await.unwrap();
    s.upsert_customers(
        &[winback_domain::CustomerRecord::stub(
            winback_domain::ExternalId::parse("ghost").unwrap(),
        )],
        true,
    )
    .await
    .unwrap();
    drop(s);
}
