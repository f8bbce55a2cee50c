//! The facts feature computation reads, in one streaming scan per table, and the features it
//! writes back.
//!
//! Imports mark the customer records they touch in `feature_dirty`; identity resolution marks
//! the records whose profile changed. An incremental refresh reads the marks, scans the facts of
//! the affected profiles only, saves their features and clears exactly the marks it read, so a
//! mark added meanwhile survives for the next refresh.

use std::collections::HashMap;

use winback_domain::{
    Channel, EventKind, FactSet, OrderFact, ProfileFacts, Signal, SignalFact, Timestamp,
};

use crate::{
    StoreError,
    db::{Pool, Tx, Val, values_list},
    queries::effective_consents,
};

/// Which profiles a scan covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactScope {
    /// Every merged profile.
    All,
    /// Profiles with a record marked in `feature_dirty`.
    Dirty,
    /// The profiles with ids from `first` to `last` (inclusive), all of them or only those with
    /// a marked record: one chunk of a scan that holds a bounded number of profiles in memory
    /// (see [`crate::SqlStore::fact_chunks`]).
    Profiles {
        /// The first profile id.
        first: i64,
        /// The last profile id.
        last: i64,
        /// Only profiles with a record marked in `feature_dirty`.
        dirty_only: bool,
    },
}

/// The profile of `c` has a marked record: the profile's own (its id is its root record's) or
/// one merged into it. Two index probes per row. The `IN (SELECT … FROM feature_dirty JOIN
/// customers)` this replaces made PostgreSQL, which estimates one row for the chunk's
/// COALESCE conditions, rerun the whole subquery for every profile of a chunk: 36 s and more
/// per chunk at 100,000 customers (measured), where this takes 0.5 s; SQLite answers both in
/// tens of milliseconds.
const DIRTY: &str = "AND (EXISTS (SELECT 1 FROM feature_dirty f WHERE f.customer_id = COALESCE(c.profile_id, c.id)) \
                     OR EXISTS (SELECT 1 FROM customers d JOIN feature_dirty f ON f.customer_id = d.id WHERE d.profile_id = COALESCE(c.profile_id, c.id)))";

impl FactScope {
    /// `table` joined to its customers `c`. A chunk reads its few customers first and their
    /// rows by the customer index (SQLite's `CROSS JOIN` fixes that order; PostgreSQL plans it
    /// from the condition): left to itself, SQLite's planner walks every event of the wanted
    /// types through the type index, the whole table for each chunk. A whole scan joins freely.
    fn join(self, table: &str, alias: &str) -> String {
        match self {
            FactScope::Profiles { .. } => {
                format!("customers c CROSS JOIN {table} WHERE {alias}.customer_id = c.id AND")
            }
            FactScope::All | FactScope::Dirty => {
                format!("{table} JOIN customers c ON c.id = {alias}.customer_id WHERE")
            }
        }
    }

    /// A condition on `COALESCE(c.profile_id, c.id)` for a query over `customers c`.
    fn condition(self) -> String {
        match self {
            FactScope::All => String::new(),
            FactScope::Dirty => DIRTY.to_owned(),
            FactScope::Profiles {
                first,
                last,
                dirty_only,
            } => {
                // A profile's id is the smallest of its records' ids, so its records have ids
                // from `first` on: the OR lets both backends seek the primary key and the
                // profile index instead of scanning every customer; the COALESCE decides.
                format!(
                    "AND (c.id BETWEEN {first} AND {last} OR c.profile_id BETWEEN {first} AND {last}) \
                     AND COALESCE(c.profile_id, c.id) BETWEEN {first} AND {last} {}",
                    if dirty_only { DIRTY } else { "" }
                )
            }
        }
    }
}

fn time(micros: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_micros(micros).ok_or_else(|| StoreError::Data("time out of range".into()))
}

/// The signal a stored event carries; the payload is parsed only for kinds whose signal
/// depends on it.
fn signal_of(kind: &str, payload: &str) -> Result<Option<Signal>, StoreError> {
    if let Some(signal) = Signal::of_type(kind) {
        return Ok(Some(signal));
    }
    let kind: EventKind = serde_json::from_str(payload)
        .map_err(|e| StoreError::Data(format!("stored {kind} event: {e}")))?;
    Ok(Signal::of(&kind))
}

/// Scans the facts of the profiles in `scope`.
pub(crate) async fn profile_facts(pool: &Pool, scope: FactScope) -> Result<FactSet, StoreError> {
    let cond = scope.condition();
    let mut set = FactSet {
        categories: vec![String::new()],
        profiles: Vec::new(),
    };
    let mut index: HashMap<i64, usize> = HashMap::new();
    pool.for_each(
        &format!(
            "SELECT c.id, c.external_id, c.first_name, c.last_name FROM customers c \
             WHERE c.erased_at IS NULL AND COALESCE(c.profile_id, c.id) = c.id {cond} ORDER BY c.id"
        ),
        &[],
        |r| {
            index.insert(r.i64("id")?, set.profiles.len());
            set.profiles.push(ProfileFacts {
                profile_id: r.i64("id")?,
                external_id: r.text("external_id")?,
                name: display_name(r.opt_str("first_name")?, r.opt_str("last_name")?),
                ..ProfileFacts::default()
            });
            Ok(())
        },
    )
    .await?;
    // Orders and events are read at once, on two connections (each side fills its own
    // per-profile lists; both only look profiles up): at a million customers the events take
    // most of a scoring run's read, and the orders' read fits beside them on the other core.
    let n = set.profiles.len();
    let mut orders_of: Vec<Vec<OrderFact>> = vec![Vec::new(); n];
    let mut currency_of: Vec<Option<String>> = vec![None; n];
    let mut signals_of: Vec<Vec<SignalFact>> = vec![Vec::new(); n];
    let mut category_ids: HashMap<String, u32> = HashMap::new();
    let categories = &mut set.categories;
    let index = &index;
    let orders_sql = format!(
        "SELECT COALESCE(c.profile_id, c.id) AS profile, o.ordered_at, o.total_minor, o.discount_minor, o.currency, o.category \
         FROM {} \
         c.erased_at IS NULL AND o.status IN ('paid', 'pending', 'partially_refunded') {cond}",
        scope.join("orders o", "o")
    );
    let orders = pool.for_each(&orders_sql, &[], |r| {
        let Some(&i) = index.get(&r.i64("profile")?) else {
            return Ok(());
        };
        let category = match r.opt_str("category")? {
            None => 0,
            Some(name) => match category_ids.get(name) {
                Some(&id) => id,
                None => {
                    let id = categories.len() as u32;
                    categories.push(name.to_owned());
                    category_ids.insert(name.to_owned(), id);
                    id
                }
            },
        };
        if currency_of[i].is_none() {
            currency_of[i] = r.opt_str("currency")?.map(str::to_owned);
        }
        orders_of[i].push(OrderFact {
            at: time(r.i64("ordered_at")?)?,
            total_minor: r.i64("total_minor")?,
            discounted: r.i64("discount_minor")? > 0,
            category,
        });
        Ok(())
    });
    let types: Vec<String> = Signal::EVENT_TYPES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect();
    let events_sql = format!(
        "SELECT COALESCE(c.profile_id, c.id) AS profile, e.occurred_at, e.type, e.payload FROM {} \
         c.erased_at IS NULL AND e.type IN ({}) {cond}",
        scope.join("events e", "e"),
        types.join(", ")
    );
    let events = pool.for_each(&events_sql, &[], |r| {
        let Some(&i) = index.get(&r.i64("profile")?) else {
            return Ok(());
        };
        let kind = r.opt_str("type")?.unwrap_or_default();
        let payload = r.opt_str("payload")?.unwrap_or_default();
        if let Some(signal) = signal_of(kind, payload)? {
            signals_of[i].push(SignalFact {
                at: time(r.i64("occurred_at")?)?,
                signal,
            });
        }
        Ok(())
    });
    futures_util::future::try_join(orders, events).await?;
    let profiles = &mut set.profiles;
    for (((p, orders), currency), signals) in profiles
        .iter_mut()
        .zip(orders_of)
        .zip(currency_of)
        .zip(signals_of)
    {
        p.orders = orders;
        p.currency = currency;
        p.signals = signals;
    }
    let mut profile_of: HashMap<i64, i64> = HashMap::new();
    pool.for_each(
        &format!(
            "SELECT c.id, COALESCE(c.profile_id, c.id) AS profile FROM customers c WHERE c.erased_at IS NULL {cond}"
        ),
        &[],
        |r| {
            profile_of.insert(r.i64("id")?, r.i64("profile")?);
            Ok(())
        },
    )
    .await?;
    let consents = match scope {
        FactScope::All => effective_consents(pool, None).await?,
        FactScope::Dirty | FactScope::Profiles { .. } => {
            // In chunks: both backends cap the parameters of one statement.
            let ids: Vec<i64> = profile_of.keys().copied().collect();
            let mut all = HashMap::new();
            for chunk in ids.chunks(8000) {
                all.extend(effective_consents(pool, Some(chunk)).await?);
            }
            all
        }
    };
    for ((record, channel), c) in consents {
        if channel == Channel::Email && c.status.allows_marketing() {
            if let Some(&i) = profile_of.get(&record).and_then(|p| index.get(p)) {
                profiles[i].receives_email = true;
            }
        }
    }
    for p in profiles.iter_mut() {
        // Usually already in order (one record, scanned by index); sorting sorted data is linear.
        p.orders.sort_by_key(|o| o.at);
        p.signals.sort_by_key(|s| s.at);
    }
    Ok(set)
}

/// The profile ids a scan of `dirty_only` profiles (or all) covers, ascending.
pub(crate) async fn fact_profiles(pool: &Pool, dirty_only: bool) -> Result<Vec<i64>, StoreError> {
    let sql = if dirty_only {
        "SELECT DISTINCT COALESCE(d.profile_id, d.id) AS profile FROM feature_dirty f JOIN customers d ON d.id = f.customer_id \
         WHERE d.erased_at IS NULL ORDER BY 1"
    } else {
        "SELECT id AS profile FROM customers WHERE erased_at IS NULL AND COALESCE(profile_id, id) = id ORDER BY id"
    };
    let mut out = Vec::new();
    pool.for_each(sql, &[], |r| {
        out.push(r.i64("profile")?);
        Ok(())
    })
    .await?;
    Ok(out)
}

/// The customer records marked for a feature refresh.
pub(crate) async fn dirty_customers(pool: &Pool) -> Result<Vec<i64>, StoreError> {
    pool.fetch("SELECT customer_id FROM feature_dirty", &[])
        .await?
        .iter()
        .map(|r| r.i64(0))
        .collect()
}

/// Marks customer records for a feature refresh, inside the caller's transaction.
pub(crate) async fn mark_dirty(tx: &mut Tx, ids: &[i64]) -> Result<(), StoreError> {
    mark(tx, "feature_dirty", ids).await
}

/// Inserts customer record ids into a mark table (`feature_dirty`, `outcome_dirty`) inside the
/// caller's transaction.
pub(crate) async fn mark(tx: &mut Tx, table: &str, ids: &[i64]) -> Result<(), StoreError> {
    for chunk in ids.chunks(100_000) {
        let (set, list) = crate::db::id_set(tx.backend(), 1, chunk);
        // `WHERE true`: SQLite's parser needs it between a SELECT and an upsert clause.
        tx.execute(
            &format!("INSERT INTO {table} (customer_id) SELECT * FROM ({set}) AS ids WHERE true ON CONFLICT DO NOTHING"),
            &[list],
        )
        .await?;
    }
    Ok(())
}

/// Saves features (JSON per profile) and, in the same transaction, clears the given marks. A
/// full refresh (`replace_all`) first removes every stored row, so profiles merged away or
/// erased leave none behind; an incremental one removes the rows of profiles that no longer
/// exist.
pub(crate) async fn save_features(
    pool: &Pool,
    computed_at: Timestamp,
    features: &[winback_domain::Features],
    cleared: &[i64],
    replace_all: bool,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    if replace_all {
        tx.execute("DELETE FROM profile_features", &[]).await?;
    } else {
        tx.execute(
            "DELETE FROM profile_features WHERE profile_id IN (SELECT f.customer_id FROM feature_dirty f JOIN customers c ON c.id = f.customer_id \
             WHERE c.erased_at IS NOT NULL OR COALESCE(c.profile_id, c.id) <> c.id)",
            &[],
        )
        .await?;
    }
    upsert_features(&mut tx, computed_at, features).await?;
    clear_marks(&mut tx, cleared).await?;
    tx.commit().await?;
    // As after an import: fresh statistics, so plans that join features seek rather than scan.
    if pool.backend() == crate::db::Backend::Postgres && features.len() >= 10_000 {
        pool.execute("ANALYZE profile_features, feature_dirty", &[])
            .await?;
    }
    Ok(())
}

/// Clears exactly the given marks; one added meanwhile stays for the next refresh.
async fn clear_marks(tx: &mut Tx, cleared: &[i64]) -> Result<(), StoreError> {
    for chunk in cleared.chunks(8000) {
        let args: Vec<Val> = chunk.iter().map(|i| Val::from(*i)).collect();
        tx.execute(
            &format!(
                "DELETE FROM feature_dirty WHERE customer_id IN ({})",
                crate::db::in_list(chunk.len())
            ),
            &args,
        )
        .await?;
    }
    Ok(())
}

/// Writes features (JSON per profile) over the stored ones, in statements of 3,000 rows, each
/// serialised only when its statement is built: a million profiles' JSON is a gigabyte.
pub(crate) async fn upsert_features(
    tx: &mut Tx,
    computed_at: Timestamp,
    features: &[winback_domain::Features],
) -> Result<(), StoreError> {
    for chunk in features.chunks(3000) {
        // Kept as JSON: audiences read every field, and new fields need no migration.
        let rows: Vec<(i64, String)> = chunk
            .iter()
            .map(|f| Ok((f.profile_id, serde_json::to_string(f)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        let sql = format!(
            "INSERT INTO profile_features (profile_id, computed_at, data) VALUES {} \
             ON CONFLICT (profile_id) DO UPDATE SET computed_at = excluded.computed_at, data = excluded.data",
            values_list(rows.len(), 3)
        );
        let args: Vec<Val> = rows
            .iter()
            .flat_map(|(id, data)| {
                [
                    Val::from(*id),
                    Val::from(computed_at.as_micros()),
                    Val::from(data.as_str()),
                ]
            })
            .collect();
        tx.execute(&sql, &args).await?;
    }
    Ok(())
}

/// A profile's stored features: (computed at, JSON).
pub(crate) async fn features_of(
    pool: &Pool,
    profile_id: i64,
) -> Result<Option<(Timestamp, String)>, StoreError> {
    match pool
        .fetch_optional(
            "SELECT computed_at, data FROM profile_features WHERE profile_id = $1",
            &[Val::from(profile_id)],
        )
        .await?
    {
        Some(r) => Ok(Some((time(r.i64("computed_at")?)?, r.text("data")?))),
        None => Ok(None),
    }
}

/// The condition that customer record `c` is a current profile: not erased, not merged into
/// another. Every whole-base scan and prune says it the same way.
pub(crate) const CURRENT_PROFILE: &str =
    "c.erased_at IS NULL AND COALESCE(c.profile_id, c.id) = c.id";

/// Ends a scan of the whole base whose pages were written with [`upsert_features`]: removes
/// the rows of profiles that no longer exist (merged away or erased) and clears the given
/// marks, in one transaction.
pub(crate) async fn prune_features(pool: &Pool, cleared: &[i64]) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    // NOT EXISTS, not NOT IN: PostgreSQL turns it into an anti-join whatever the base's size.
    tx.execute(
        &format!(
            "DELETE FROM profile_features WHERE NOT EXISTS \
             (SELECT 1 FROM customers c WHERE c.id = profile_features.profile_id AND {CURRENT_PROFILE})"
        ),
        &[],
    )
    .await?;
    clear_marks(&mut tx, cleared).await?;
    tx.commit().await?;
    if pool.backend() == crate::db::Backend::Postgres {
        pool.execute("ANALYZE profile_features, feature_dirty", &[])
            .await?;
    }
    Ok(())
}

/// A profile's stored features with who it is.
#[derive(Debug, Clone)]
pub struct StoredFeatures {
    /// The features.
    pub features: winback_domain::Features,
    /// External id of the profile's own record.
    pub external_id: String,
    /// Its name, when known.
    pub name: Option<String>,
}

/// "First Last", either alone, or `None`.
pub(crate) fn display_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    let name = [first, last]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    (!name.is_empty()).then_some(name)
}

/// The stored features of existing profiles with ids above `after`, ascending, at most
/// `limit`: a keyset page, so a scan of a million profiles holds one page at a time.
pub(crate) async fn features_page(
    pool: &Pool,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<StoredFeatures>, StoreError> {
    pool.fetch(
        &format!(
            "SELECT f.profile_id, f.data, c.external_id, c.first_name, c.last_name FROM profile_features f \
             JOIN customers c ON c.id = f.profile_id \
             WHERE f.profile_id > $1 AND {CURRENT_PROFILE} ORDER BY f.profile_id LIMIT $2"
        ),
        &[
            Val::from(after.unwrap_or(i64::MIN)),
            Val::from(i64::try_from(limit).unwrap_or(i64::MAX)),
        ],
    )
    .await?
    .iter()
    .map(|r| {
        let id = r.i64("profile_id")?;
        let features = serde_json::from_str(&r.text("data")?)
            .map_err(|e| StoreError::Data(format!("stored features of profile {id}: {e}")))?;
        Ok(StoredFeatures {
            features,
            external_id: r.text("external_id")?,
            name: display_name(r.opt_str("first_name")?, r.opt_str("last_name")?),
        })
    })
    .collect()
}
