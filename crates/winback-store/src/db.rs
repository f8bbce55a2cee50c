//! A thin layer over sqlx that lets store logic be written once for SQLite and PostgreSQL.
//!
//! Both schemas use only 64-bit integers and text, and both drivers accept `$1`-style
//! parameters, so a query is one string; values cross as [`Val`] and rows come back as
//! [`DbRow`] with typed getters. Where the dialects differ (claims, bulk loads) callers branch on
//! [`Backend`].

use std::str::FromStr;

use sqlx::ConnectOptions;

use sqlx::{
    Row,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};

use crate::StoreError;
use crate::bulk::{RawIndex, RawRow, Readers};
use rusqlite::types::Value as Raw;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (one file, WAL).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A value bound to a query. Nulls are typed because PostgreSQL checks parameter types.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// A 64-bit integer or NULL.
    I(Option<i64>),
    /// Text or NULL.
    T(Option<String>),
    /// A double or NULL.
    F(Option<f64>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::I(Some(v))
    }
}
// The typed row ids bind as the integers they are.
macro_rules! id_val {
    ($($t:ty),*) => {$(
        impl From<$t> for Val {
            fn from(v: $t) -> Self {
                Val::I(Some(v.get()))
            }
        }
    )*};
}
id_val!(
    winback_domain::ProfileId,
    winback_domain::CampaignId,
    winback_domain::EnrolmentId
);
impl From<&winback_domain::MessageKey> for Val {
    fn from(v: &winback_domain::MessageKey) -> Self {
        Val::from(v.as_str())
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        Val::I(v)
    }
}
impl From<Option<f64>> for Val {
    fn from(v: Option<f64>) -> Self {
        Val::F(v)
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::T(Some(v))
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::T(Some(v.to_owned()))
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        Val::T(v)
    }
}
impl From<Option<&str>> for Val {
    fn from(v: Option<&str>) -> Self {
        Val::T(v.map(str::to_owned))
    }
}

/// A column of a result row, by name (`r.text("step")`, preferred: adding a column to the
/// `SELECT` cannot shift it) or by position (`r.text(2)`).
pub trait Col:
    sqlx::ColumnIndex<SqliteRow> + sqlx::ColumnIndex<PgRow> + std::fmt::Debug + Copy
{
    /// The column of a bulk scan's row ([`crate::bulk`]).
    fn raw(&self) -> RawIndex<'_>;
}
impl Col for usize {
    fn raw(&self) -> RawIndex<'_> {
        RawIndex::At(*self)
    }
}
impl Col for &str {
    fn raw(&self) -> RawIndex<'_> {
        RawIndex::Named(self)
    }
}

/// A result row of either backend.
pub enum DbRow {
    /// SQLite.
    S(SqliteRow),
    /// PostgreSQL.
    P(PgRow),
    /// SQLite, from a bulk scan ([`crate::bulk`]).
    R(RawRow),
}

/// A statement that only reads: it starts with `SELECT` (a `WITH` may lead to a write).
fn is_select(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("select"))
}

/// A bulk scan's value of another type than the getter reads.
fn raw_type(want: &str) -> StoreError {
    StoreError::Data(format!("a scan's column is not {want}"))
}

fn raw_i64(v: &Raw) -> Result<Option<i64>, StoreError> {
    match v {
        Raw::Null => Ok(None),
        Raw::Integer(i) => Ok(Some(*i)),
        _ => Err(raw_type("an integer")),
    }
}

fn raw_f64(v: &Raw) -> Result<Option<f64>, StoreError> {
    match v {
        Raw::Null => Ok(None),
        Raw::Real(f) => Ok(Some(*f)),
        Raw::Integer(i) => Ok(Some(*i as f64)),
        _ => Err(raw_type("a number")),
    }
}

fn raw_str(v: &Raw) -> Result<Option<&str>, StoreError> {
    match v {
        Raw::Null => Ok(None),
        Raw::Text(t) => Ok(Some(t)),
        _ => Err(raw_type("text")),
    }
}

fn not_null<T>(v: Option<T>) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Data("a scan's column is NULL".into()))
}

impl DbRow {
    /// A non-null integer column.
    pub fn i64(&self, i: impl Col) -> Result<i64, StoreError> {
        Ok(match self {
            DbRow::S(r) => r.try_get(i)?,
            DbRow::P(r) => r.try_get(i)?,
            DbRow::R(r) => not_null(raw_i64(r.get(i.raw())?)?)?,
        })
    }
    /// A nullable integer column.
    pub fn opt_i64(&self, i: impl Col) -> Result<Option<i64>, StoreError> {
        Ok(match self {
            DbRow::S(r) => r.try_get(i)?,
            DbRow::P(r) => r.try_get(i)?,
            DbRow::R(r) => raw_i64(r.get(i.raw())?)?,
        })
    }
    /// A non-null text column.
    pub fn text(&self, i: impl Col) -> Result<String, StoreError> {
        Ok(match self {
            DbRow::S(r) => r.try_get(i)?,
            DbRow::P(r) => r.try_get(i)?,
            DbRow::R(r) => not_null(raw_str(r.get(i.raw())?)?)?.to_owned(),
        })
    }
    /// A nullable double column.
    pub fn opt_f64(&self, i: impl Col) -> Result<Option<f64>, StoreError> {
        Ok(match self {
            DbRow::S(r) => r.try_get(i)?,
            DbRow::P(r) => r.try_get(i)?,
            DbRow::R(r) => raw_f64(r.get(i.raw())?)?,
        })
    }
    /// A nullable text column.
    pub fn opt_text(&self, i: impl Col) -> Result<Option<String>, StoreError> {
        Ok(match self {
            DbRow::S(r) => r.try_get(i)?,
            DbRow::P(r) => r.try_get(i)?,
            DbRow::R(r) => raw_str(r.get(i.raw())?)?.map(str::to_owned),
        })
    }
    /// A nullable text column, borrowed: for scans that must not allocate per row.
    pub fn opt_str(&self, i: impl Col) -> Result<Option<&str>, StoreError> {
        Ok(match self {
            DbRow::S(r) => r.try_get(i)?,
            DbRow::P(r) => r.try_get(i)?,
            DbRow::R(r) => raw_str(r.get(i.raw())?)?,
        })
    }
}

/// Rewrites `$N` parameters as anonymous `?` for SQLite, repeating arguments that are used
/// more than once.
///
/// SQLite keeps numbered and named parameters (`$1`, `?1`) in a list it scans linearly, both when
/// it parses a statement and when sqlx asks each parameter's name to bind it, which makes a
/// multi-row insert with thousands of parameters quadratic (measured: 1,300 rows/s instead of
/// hundreds of thousands). Anonymous `?` parameters are numbered by position and never looked up.
pub(crate) fn sqlite_positional<'a>(
    sql: &str,
    args: &'a [Val],
) -> Result<(String, std::borrow::Cow<'a, [Val]>), StoreError> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut order: Vec<usize> = Vec::with_capacity(args.len());
    let mut in_sequence = true;
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit() {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            let n: usize = sql[i + 1..j]
                .parse()
                .map_err(|_| StoreError::Data(format!("bad parameter in {sql}")))?;
            if n == 0 || n > args.len() {
                return Err(StoreError::Data(format!("parameter ${n} has no argument")));
            }
            in_sequence &= n == order.len() + 1;
            order.push(n - 1);
            out.push_str(&sql[last..i]);
            out.push('?');
            last = j;
            i = j;
        } else {
            i += 1;
        }
    }
    out.push_str(&sql[last..]);
    // Bulk statements number their parameters 1..n in order: bind the arguments as they are.
    if in_sequence && order.len() == args.len() {
        return Ok((out, std::borrow::Cow::Borrowed(args)));
    }
    Ok((
        out,
        std::borrow::Cow::Owned(order.into_iter().map(|k| args[k].clone()).collect()),
    ))
}

macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Val::I(v) => q.bind(*v),
                Val::T(v) => q.bind(v.as_deref()),
                Val::F(v) => q.bind(*v),
            };
        }
        q
    }};
}

/// A connection pool of either backend.
#[derive(Clone, Debug)]
pub enum Pool {
    /// SQLite, with the bulk readers of its file (none for an in-memory database).
    Sqlite(SqlitePool, Option<Readers>),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// Refuses to open a SQLite database whose write-ahead log the disk has no room to index.
///
/// Opening replays a left-over WAL into its index, the `-shm` file SQLite memory-maps, at 32 KiB
/// per 4,096 pages of log. When a failed import filled the disk, that file cannot grow, and a
/// write to the mapped page kills the process with SIGBUS and no message. Checking first turns
/// that into an error that says what to do.
fn room_for_the_wal(db: &std::path::Path) -> Result<(), StoreError> {
    let wal = std::path::PathBuf::from(format!("{}-wal", db.display()));
    let Ok(meta) = std::fs::metadata(&wal) else {
        return Ok(());
    };
    // Frames of the default 4 KiB page plus their 24-byte headers.
    let frames = meta.len() / (4096 + 24) + 1;
    let index = (frames / 4096 + 1) * 32 * 1024;
    // What of the index file is on disk already (a sparse file's holes need new blocks).
    let shm = std::fs::metadata(format!("{}-shm", db.display()))
        .map(|m| allocated(&m))
        .unwrap_or(0);
    if index <= shm {
        return Ok(());
    }
    let need = index - shm + 64 * 1024;
    let Some(free) = free_bytes(db) else {
        return Ok(());
    };
    if free < need {
        return Err(StoreError::DiskFull(format!(
            "{} has {} MB of write-ahead log to replay and its disk has {} KB free (it needs about {} KB): free space on that disk, then run the command again; the database itself is intact",
            db.display(),
            meta.len() / (1024 * 1024),
            free / 1024,
            need / 1024
        )));
    }
    Ok(())
}

/// Bytes a file occupies on disk.
#[cfg(unix)]
fn allocated(m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    m.blocks().saturating_mul(512)
}

#[cfg(not(unix))]
fn allocated(m: &std::fs::Metadata) -> u64 {
    m.len()
}

/// Bytes available to this user on the file system holding `path`.
#[cfg(unix)]
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    rustix::fs::statvfs(dir)
        .ok()
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(not(unix))]
fn free_bytes(_: &std::path::Path) -> Option<u64> {
    None
}

impl Pool {
    /// Connects to `url` (`sqlite://file.db`, `sqlite::memory:`, `postgres://…`). A PostgreSQL
    /// `schema` isolates a store in one database (tests, several shops).
    pub async fn connect(url: &str, pg_schema: Option<&str>) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut opts = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))?;
            if let Some(schema) = pg_schema {
                opts = opts.options([("search_path", schema)]);
            }
            // No JIT compilation: winback's queries are many and short, and a misestimated
            // cost (a mark table emptied since its last statistics, a CASE whose subquery never
            // runs) made PostgreSQL compile for ~100 ms before a 30 ms query. Measured at
            // 200,000 customers: the report 3.9 s -> 1.7 s (its arms 2.8 s -> 0.67 s), and a
            // full scoring run 47.2 s either way.
            opts = opts.options([("jit", "off")]);
            // Statements carry customer data; they are never logged.
            opts = opts.disable_statement_logging();
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(std::time::Duration::from_secs(30))
                .connect_with(opts)
                .await?;
            Ok(Pool::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::Config(format!("bad SQLite URL: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL with NORMAL is durable against process crashes; only an OS crash can lose
                // the last commits, never corrupt the file.
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(std::time::Duration::from_secs(30))
                // 64 MB of page cache per connection, and no memory-mapped reads. Imports
                // insert into indexes at random and want a large cache; but every page of a
                // map counts as resident, and at 100,000 customers 256 MB of cache and a 1 GB
                // map took a scan of the events to 2 GB. Measured at 100k: the report 10 s ->
                // 17-21 s, the events import about the same; the report's speed is to come
                // from rollups, not from caching the whole file (BENCHMARKS.md, issue 20).
                .pragma("cache_size", "-65536")
                .pragma("mmap_size", "0")
                // Sorts and temporary b-trees spill to files past the cache, not into memory
                // without bound: a first events load at a million customers sorts a gigabyte
                // of index (`ImportSession`), and a large ORDER BY would hold as much.
                .pragma("temp_store", "file")
                // Checkpoint every 64 MB of WAL rather than every 4 MB: a batch of journey steps
                // touches more than 1,000 pages, so the default checkpointed (and fsynced) on
                // nearly every commit.
                .pragma("wal_autocheckpoint", "4096")
                .disable_statement_logging();
            let memory = url.contains(":memory:");
            let readers = (!memory).then(|| Readers::new(opts.get_filename().to_path_buf()));
            if !memory {
                room_for_the_wal(opts.get_filename())?;
            }
            let pool = SqlitePoolOptions::new()
                // An in-memory database lives in one connection.
                .max_connections(if memory { 1 } else { 4 })
                .acquire_timeout(std::time::Duration::from_secs(60))
                .connect_with(opts)
                .await?;
            Ok(Pool::Sqlite(pool, readers))
        } else {
            Err(StoreError::Config(format!(
                "unsupported database URL `{url}`: use sqlite://FILE or postgres://USER@HOST/DB"
            )))
        }
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(..) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs one statement; returns rows affected.
    pub async fn execute(&self, sql: &str, args: &[Val]) -> Result<u64, StoreError> {
        Ok(match self {
            Pool::Sqlite(p, _) => {
                let (sql, args) = sqlite_positional(sql, args)?;
                bind_all!(sqlx::query(&sql), args.iter())
                    .execute(p)
                    .await?
                    .rows_affected()
            }
            Pool::Postgres(p) => bind_all!(sqlx::query(sql), args)
                .execute(p)
                .await?
                .rows_affected(),
        })
    }

    /// Runs a query; returns its rows.
    pub async fn fetch(&self, sql: &str, args: &[Val]) -> Result<Vec<DbRow>, StoreError> {
        Ok(match self {
            // A plain query reads as scans do (`crate::bulk`); a write with `RETURNING` goes to
            // the pool's connections, which may write.
            Pool::Sqlite(_, Some(readers)) if is_select(sql) => {
                let (sql, args) = sqlite_positional(sql, args)?;
                let mut rows = Vec::new();
                readers
                    .for_each(sql, args.into_owned(), |r| {
                        rows.push(DbRow::R(r));
                        Ok(())
                    })
                    .await?;
                rows
            }
            Pool::Sqlite(p, _) => {
                let (sql, args) = sqlite_positional(sql, args)?;
                bind_all!(sqlx::query(&sql), args.iter())
                    .fetch_all(p)
                    .await?
                    .into_iter()
                    .map(DbRow::S)
                    .collect()
            }
            Pool::Postgres(p) => bind_all!(sqlx::query(sql), args)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(DbRow::P)
                .collect(),
        })
    }

    /// Runs a query and hands each row to `f` as it arrives, so a scan of millions of rows never
    /// holds them all.
    pub async fn for_each(
        &self,
        sql: &str,
        args: &[Val],
        mut f: impl FnMut(&DbRow) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        use futures_util::TryStreamExt;
        let mut n = 0u64;
        match self {
            Pool::Sqlite(_, Some(readers)) => {
                let (sql, args) = sqlite_positional(sql, args)?;
                return readers
                    .for_each(sql, args.into_owned(), |r| f(&DbRow::R(r)))
                    .await;
            }
            Pool::Sqlite(p, None) => {
                let (sql, args) = sqlite_positional(sql, args)?;
                let mut rows = bind_all!(sqlx::query(&sql), args.iter()).fetch(p);
                while let Some(r) = rows.try_next().await? {
                    f(&DbRow::S(r))?;
                    n += 1;
                }
            }
            Pool::Postgres(p) => {
                let mut rows = bind_all!(sqlx::query(sql), args).fetch(p);
                while let Some(r) = rows.try_next().await? {
                    f(&DbRow::P(r))?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Runs a query expected to return at most one row.
    pub async fn fetch_optional(
        &self,
        sql: &str,
        args: &[Val],
    ) -> Result<Option<DbRow>, StoreError> {
        Ok(self.fetch(sql, args).await?.into_iter().next())
    }

    /// Starts a transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), so
    /// two writers never deadlock upgrading read locks.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Pool::Sqlite(p, _) => {
                let tx = p.begin_with("BEGIN IMMEDIATE").await?;
                Tx::Sqlite(tx)
            }
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p, readers) => {
                // The scans' connections first: SQLite folds the write-ahead log into the file
                // (and removes it) only when the last connection closes, and a copy of a
                // closed store's file must hold everything.
                if let Some(r) = readers {
                    r.close();
                }
                p.close().await;
                // sqlx's close can return before its connection threads have closed their
                // handles (seen under load: the log was still there), so the last one may not
                // be the one that folds the log in. Fold it in here, on a connection of our
                // own: whatever closes last, the file then holds every commit.
                if let Some(r) = readers {
                    // A large log takes a while to fold: off the async workers.
                    let r = r.clone();
                    let _ = tokio::task::spawn_blocking(move || r.checkpoint()).await;
                }
            }
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// A transaction of either backend. Dropped without [`Tx::commit`], it rolls back.
pub enum Tx {
    /// SQLite.
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    /// PostgreSQL.
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    /// The backend.
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs one statement; returns rows affected.
    pub async fn execute(&mut self, sql: &str, args: &[Val]) -> Result<u64, StoreError> {
        Ok(match self {
            Tx::Sqlite(t) => {
                let (sql, args) = sqlite_positional(sql, args)?;
                bind_all!(sqlx::query(&sql), args.iter())
                    .execute(&mut **t)
                    .await?
                    .rows_affected()
            }
            Tx::Postgres(t) => bind_all!(sqlx::query(sql), args)
                .execute(&mut **t)
                .await?
                .rows_affected(),
        })
    }

    /// Runs a query; returns its rows.
    pub async fn fetch(&mut self, sql: &str, args: &[Val]) -> Result<Vec<DbRow>, StoreError> {
        Ok(match self {
            Tx::Sqlite(t) => {
                let (sql, args) = sqlite_positional(sql, args)?;
                bind_all!(sqlx::query(&sql), args.iter())
                    .fetch_all(&mut **t)
                    .await?
                    .into_iter()
                    .map(DbRow::S)
                    .collect()
            }
            Tx::Postgres(t) => bind_all!(sqlx::query(sql), args)
                .fetch_all(&mut **t)
                .await?
                .into_iter()
                .map(DbRow::P)
                .collect(),
        })
    }

    /// Runs a query and hands each row to `f` as it arrives (see [`Pool::for_each`]).
    pub async fn for_each(
        &mut self,
        sql: &str,
        args: &[Val],
        mut f: impl FnMut(&DbRow) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        use futures_util::TryStreamExt;
        let mut n = 0u64;
        match self {
            Tx::Sqlite(t) => {
                let (sql, args) = sqlite_positional(sql, args)?;
                let mut rows = bind_all!(sqlx::query(&sql), args.iter()).fetch(&mut **t);
                while let Some(r) = rows.try_next().await? {
                    f(&DbRow::S(r))?;
                    n += 1;
                }
            }
            Tx::Postgres(t) => {
                let mut rows = bind_all!(sqlx::query(sql), args).fetch(&mut **t);
                while let Some(r) = rows.try_next().await? {
                    f(&DbRow::P(r))?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Runs several `;`-separated statements without parameters (migrations).
    pub async fn execute_script(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => {
                sqlx::raw_sql(sql).execute(&mut **t).await?;
            }
            Tx::Postgres(t) => {
                sqlx::raw_sql(sql).execute(&mut **t).await?;
            }
        }
        Ok(())
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.rollback().await?,
            Tx::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }
}

/// `($1, $2, …), (…)` for `rows` rows of `cols` columns: the VALUES list of a multi-row insert.
pub fn values_list(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            n += 1;
            s.push('$');
            s.push_str(&n.to_string());
        }
        s.push(')');
    }
    s
}

/// The domain of the address in column `col`: what follows its last `@` (all of it without
/// one), as `policy::mailbox_provider` reads it.
pub(crate) fn email_domain(backend: Backend, col: &str) -> String {
    match backend {
        Backend::Sqlite => {
            format!("substr({col}, length(rtrim({col}, replace({col}, '@', ''))) + 1)")
        }
        Backend::Postgres => format!("regexp_replace({col}, '^.*@', '')"),
    }
}

/// A set of ids passed as one text parameter and unpacked by the database: `(sql, parameter)`,
/// where `sql` is a `SELECT` of the ids reading parameter `$n`. One parameter instead of a
/// multi-row `VALUES` or an `IN ($1, …)` list: on SQLite a `VALUES` row cost 25 µs (measured:
/// +6 s on a 1M-order import), and both backends cap the parameters of a statement.
pub fn id_set(backend: Backend, n: usize, ids: &[i64]) -> (String, Val) {
    use std::fmt::Write;
    let mut list = String::with_capacity(ids.len() * 8 + 2);
    if backend == Backend::Sqlite {
        list.push('[');
    }
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        let _ = write!(list, "{id}");
    }
    let sql = match backend {
        Backend::Sqlite => {
            list.push(']');
            format!("SELECT value FROM json_each(${n})")
        }
        Backend::Postgres => format!("SELECT unnest(string_to_array(${n}, ',')::bigint[])"),
    };
    (sql, Val::from(list))
}

/// Moves the marks of a mark table (`outcome_dirty`, `hygiene_dirty`) into the temporary table
/// `into` (created when missing, emptied first), for a refresh that recomputes them in `tx`;
/// returns how many it moved, or `None` when it could not take them.
///
/// On PostgreSQL the mark table is locked first. The lock waits for every writer that has
/// marked a record and not committed, and holds off new ones until `tx` ends: a writer's mark
/// of a record already marked inserts nothing and locks no row, so without the lock a refresh
/// could take that mark, read the records before the writer's commit, and leave a stale figure
/// unmarked. Two refreshes take turns (the mode conflicts with itself). It waits at most half a
/// second, so a long import holding marks does not queue the lock in front of every other
/// writer: `None` then, and `tx` is aborted (drop it; readers are exact without the refresh,
/// and the next one runs). SQLite has one writer at a time.
pub(crate) async fn take_marks(
    tx: &mut Tx,
    table: &str,
    into: &str,
) -> Result<Option<u64>, StoreError> {
    if tx.backend() == Backend::Postgres {
        tx.execute("SET LOCAL lock_timeout = '500ms'", &[]).await?;
        match tx
            .execute(
                &format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"),
                &[],
            )
            .await
        {
            Ok(_) => {}
            // lock_not_available
            Err(StoreError::Database(e))
                if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        tx.execute("SET LOCAL lock_timeout = DEFAULT", &[]).await?;
    }
    tx.execute(
        &format!("CREATE TEMP TABLE IF NOT EXISTS {into} (id BIGINT PRIMARY KEY)"),
        &[],
    )
    .await?;
    tx.execute(&format!("DELETE FROM {into}"), &[]).await?;
    let moved = tx
        .execute(
            &format!("INSERT INTO {into} (id) SELECT customer_id FROM {table}"),
            &[],
        )
        .await?;
    if moved > 0 {
        tx.execute(&format!("DELETE FROM {table}"), &[]).await?;
    }
    Ok(Some(moved))
}

/// `$1, $2, …, $n`: the list of an `IN (…)`.
pub fn in_list(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_queries_read_on_the_scan_connections() {
        for sql in ["SELECT 1", "  select id FROM t", "\n\tSeLeCt x"] {
            assert!(is_select(sql), "{sql}");
        }
        for sql in [
            "INSERT INTO t VALUES (1) RETURNING id",
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x RETURNING id",
            "UPDATE t SET a = 1 RETURNING a",
            "DELETE FROM t RETURNING id",
            "SELEC",
            "",
            "PRAGMA table_info(t)",
        ] {
            assert!(!is_select(sql), "{sql}");
        }
    }

    #[test]
    fn numbered_parameters_become_positional_with_repeats_expanded() {
        let args = [Val::from(1i64), Val::from("a")];
        let (sql, ordered) =
            sqlite_positional("SELECT $2, $1 WHERE x = $2 AND y = '$'", &args).unwrap();
        assert_eq!(sql, "SELECT ?, ? WHERE x = ? AND y = '$'");
        assert_eq!(&*ordered, [Val::from("a"), Val::from(1i64), Val::from("a")]);
        let (_, same) = sqlite_positional("VALUES ($1, $2)", &args).unwrap();
        assert!(
            matches!(same, std::borrow::Cow::Borrowed(_)),
            "in-order parameters borrow"
        );
        assert!(sqlite_positional("SELECT $3", &args).is_err());
    }
}
