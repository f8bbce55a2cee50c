//! The list hygiene's idle addresses, kept per profile (`profile_hygiene`, migration 17) so a
//! report counts them from an index instead of reading every customer record.
//!
//! The counts are never read stale. Triggers on `customers` mark, in the writer's own
//! transaction, the profile (old and new) of every record whose address, first-seen time, last
//! engagement, profile or erasure changed; [`idle`] counts the stored rows of unmarked profiles
//! and recomputes the marked ones from their records, in one statement (one snapshot); and
//! [`refresh`] recomputes the marked rows and clears the marks in one transaction.

use crate::StoreError;
use crate::db::{Backend, Pool, Val};

const DAY: i64 = 86_400_000_000;

/// The rows of the profiles in `stale` (a query of profile ids; `None`: every profile) as
/// computed from their records: `(profile_id, last_at, engaged)` for the profiles with an
/// email address on a record that is not erased. `last_at` is the last click or human open of
/// any of its records, or when its address was first seen when that is later or it never
/// engaged. The definition the stored rows are checked against (the store's test `hygiene`).
fn computed(stale: Option<&str>) -> String {
    let (records, profiles) = match stale {
        Some(q) => (
            format!("(c.id IN ({q}) OR c.profile_id IN ({q})) AND"),
            format!("g.p IN ({q}) AND"),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "SELECT g.p AS profile_id, \
           CASE WHEN g.engaged_at IS NULL OR g.engaged_at < g.seen THEN g.seen ELSE g.engaged_at END AS last_at, \
           CASE WHEN g.engaged_at IS NULL THEN 0 ELSE 1 END AS engaged \
         FROM (SELECT COALESCE(c.profile_id, c.id) AS p, \
                 MAX(CASE WHEN c.email IS NOT NULL THEN COALESCE(c.created_at, c.inserted_at) END) AS seen, \
                 MAX(c.last_engaged_at) AS engaged_at \
               FROM customers c \
               WHERE {records} c.erased_at IS NULL \
               GROUP BY COALESCE(c.profile_id, c.id)) g \
         WHERE {profiles} g.seen IS NOT NULL"
    )
}

/// From this many marked profiles on, a refresh recomputes every profile in one pass (after a
/// bulk load most are marked, and one grouping of the whole table beats looking each up).
const WHOLE: u64 = 100_000;

/// The idle-address counts of the hygiene report as of `now` (microseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Idle {
    /// Profiles with an email address, not erased.
    pub addresses: u64,
    /// Of those, never engaged.
    pub never_engaged: u64,
    /// Idle 6 (182 days), 12 (365) and 24 (730) months or more.
    pub idle: [u64; 3],
}

/// The idle thresholds, in days: 6, 12 and 24 months.
const IDLE_DAYS: [i64; 3] = [182, 365, 730];

/// Counts the idle addresses as of `now`, exactly: stored rows of unmarked profiles plus the
/// marked profiles recomputed, in one statement so both backends read one snapshot.
pub(crate) async fn idle(pool: &Pool, now: i64) -> Result<Idle, StoreError> {
    // Idle for `d` days or more: `(now - last_at) / DAY >= d`, that is `last_at <= now - d DAY`.
    let counts = |table: &str| {
        format!(
            "(SELECT COUNT(*) FROM {table}) AS n_{table}, \
             (SELECT COUNT(*) FROM {table} WHERE engaged = 0) AS never_{table}, \
             (SELECT COUNT(*) FROM {table} WHERE last_at <= $1) AS idle0_{table}, \
             (SELECT COUNT(*) FROM {table} WHERE last_at <= $2) AS idle1_{table}, \
             (SELECT COUNT(*) FROM {table} WHERE last_at <= $3) AS idle2_{table}"
        )
    };
    let sql = format!(
        "WITH stale AS (SELECT customer_id AS id FROM hygiene_dirty), \
         stored AS (SELECT h.last_at, h.engaged FROM profile_hygiene h WHERE h.profile_id IN (SELECT id FROM stale)), \
         fresh AS ({}) \
         SELECT {}, {}, {}",
        computed(Some("SELECT id FROM stale")),
        counts("profile_hygiene"),
        counts("stored"),
        counts("fresh"),
    );
    let args: Vec<Val> = IDLE_DAYS.iter().map(|d| Val::from(now - d * DAY)).collect();
    let rows = pool.fetch(&sql, &args).await?;
    let r = &rows[0];
    // Stored, less the marked profiles' stored rows, plus their rows as they are now.
    let count = |name: &str| -> Result<u64, StoreError> {
        let n = r.i64(format!("{name}_profile_hygiene").as_str())?
            - r.i64(format!("{name}_stored").as_str())?
            + r.i64(format!("{name}_fresh").as_str())?;
        Ok(n.max(0) as u64)
    };
    Ok(Idle {
        addresses: count("n")?,
        never_engaged: count("never")?,
        idle: [count("idle0")?, count("idle1")?, count("idle2")?],
    })
}

/// Recomputes the rows of the marked profiles and clears the marks, in one transaction;
/// returns how many marks it took (0 as well when a writer held the marks on PostgreSQL for
/// longer than [`crate::db::take_marks`] waits: the next refresh takes them).
pub(crate) async fn refresh(pool: &Pool) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let Some(stale) =
        crate::db::take_marks(&mut tx, "hygiene_dirty", "winback_hygiene_stale").await?
    else {
        return Ok(0);
    };
    if stale == 0 {
        tx.commit().await?;
        return Ok(0);
    }
    let scope = (stale < WHOLE).then_some("SELECT id FROM winback_hygiene_stale");
    match scope {
        Some(q) => {
            tx.execute(
                &format!("DELETE FROM profile_hygiene WHERE profile_id IN ({q})"),
                &[],
            )
            .await?
        }
        None => tx.execute("DELETE FROM profile_hygiene", &[]).await?,
    };
    tx.execute(
        &format!(
            "INSERT INTO profile_hygiene (profile_id, last_at, engaged) {}",
            computed(scope)
        ),
        &[],
    )
    .await?;
    tx.execute("DELETE FROM winback_hygiene_stale", &[]).await?;
    tx.commit().await?;
    if pool.backend() == Backend::Postgres && stale >= 10_000 {
        // Fresh statistics, as after an import, so the counts seek the index; and the
        // visibility map set, so they read the index alone instead of visiting each row.
        pool.execute("VACUUM (ANALYZE) profile_hygiene, hygiene_dirty", &[])
            .await?;
    }
    Ok(stale)
}
