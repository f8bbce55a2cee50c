//! An import session: one transaction into which parsed records are written in batches.
//! Nothing is visible to others until [`ImportSession::commit`]; dropping the session, an error
//! or a killed process leaves the store as it was.

use std::collections::{HashMap, HashSet};

use winback_domain::{
    Channel, ConsentStatus, CustomerRecord, EventKind, EventRecord, ExternalId, LineItem,
    OrderRecord, Timestamp,
};

use crate::{
    StoreError,
    db::{Backend, Tx, Val, in_list, values_list},
};

/// Rows per multi-row statement: well under both backends' parameter limits.
const CHUNK_PARAMS: usize = 4_000;

/// Orders or events per PostgreSQL COPY round.
const PG_COPY_ROWS: usize = 50_000;

/// Customers whose latest engagement a session notes before writing them out.
const ENGAGED_FLUSH: usize = 100_000;

/// Columns of an events row as imports write it.
const EVENT_COLS: usize = 6;

/// Escapes a value for COPY's text format.
fn copy_escape(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// PostgreSQL: creates the staging table `table` (dropped at commit) unless `ready`, and
/// `COPY`s `rows` (COPY's text format) into it.
async fn copy_to_stage(
    t: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    ready: &mut bool,
    table: &str,
    columns: &str,
    rows: String,
) -> Result<(), StoreError> {
    if !*ready {
        sqlx::query(&format!(
            "CREATE TEMP TABLE {table} ({columns}) ON COMMIT DROP"
        ))
        .execute(&mut **t)
        .await?;
        *ready = true;
    }
    let mut copy = t.copy_in_raw(&format!("COPY {table} FROM STDIN")).await?;
    copy.send(rows.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// What a session wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriteCounts {
    /// Customer records inserted or updated (including ones created for orders and events).
    pub customers: u64,
    /// Orders new or changed (a re-imported order that is the same as stored is not counted).
    pub orders: u64,
    /// Orders already stored exactly as the file has them.
    pub orders_unchanged: u64,
    /// Order lines inserted or updated.
    pub order_items: u64,
    /// Events inserted (a re-imported event is not counted).
    pub events: u64,
    /// Events already stored and skipped.
    pub duplicate_events: u64,
    /// Consent statements added to the ledger.
    pub consents: u64,
    /// Customer records kept out because they name an erased person (their orders and events
    /// attach to the anonymous record; nothing personal is stored).
    pub erased_kept_out: u64,
    /// Events of erased people, refused (nothing personal is stored for them).
    pub erased_events_refused: u64,
}

/// The condition under which an upsert touches a stored order: some value differs
/// (`distinct` is the dialect's null-safe inequality), so an unchanged re-import writes and
/// counts nothing.
fn order_changed(distinct: &str) -> String {
    [
        "customer_id",
        "ordered_at",
        "total_minor",
        "discount_minor",
        "currency",
        "status",
        "item_count",
    ]
    .iter()
    .map(|c| format!("orders.{c} {distinct} excluded.{c}"))
    .chain(std::iter::once(format!(
        "(excluded.category IS NOT NULL AND orders.category {distinct} excluded.category)"
    )))
    .collect::<Vec<_>>()
    .join(" OR ")
}

/// A write transaction for imports.
pub struct ImportSession {
    tx: Tx,
    now: Timestamp,
    /// external id → customer row id, for records seen in this session.
    customer_ids: HashMap<String, i64>,
    counts: WriteCounts,
    /// Whether the PostgreSQL staging table for COPY exists in this transaction.
    pg_stage_ready: bool,
    /// Whether the PostgreSQL staging table for events exists in this transaction.
    pg_events_stage_ready: bool,
    /// SQLite, a first load of events: the secondary indexes of `events` dropped inside this
    /// transaction, to be created again before it commits. `None` until the first events write
    /// decides.
    events_indexes_deferred: Option<Vec<String>>,
    /// Customer record → its latest click or human open among the events written so far and
    /// not yet applied to `customers.last_engaged_at`.
    engaged: HashMap<i64, i64>,
    /// The pool, to refresh PostgreSQL's statistics after a bulk load.
    pool: crate::db::Pool,
    /// The installation's salt for erased-identity hashes.
    salt: std::sync::Arc<str>,
    /// The erased-identity list, loaded at the first write (`Some(None)`: nobody was erased).
    erased: Option<Option<crate::privacy::ErasedList>>,
    /// Anonymous records that incoming identifiers were diverted to.
    diverted: HashSet<i64>,
    /// Where the session's time went, logged at commit (`WINBACK_LOG=winback::import=info`).
    phases: Phases,
}

/// Wall time per part of an import, to tell which part a slow import waits on.
#[derive(Debug, Default)]
struct Phases {
    ids: std::time::Duration,
    rows: std::time::Duration,
    engagement: std::time::Duration,
    last_engaged: std::time::Duration,
    consents: std::time::Duration,
}

fn opt_str<T: AsRef<str>>(v: &Option<T>) -> Val {
    Val::T(v.as_ref().map(|s| s.as_ref().to_owned()))
}

/// Splits `items` into runs in which no key repeats, each at most `max` long: PostgreSQL refuses
/// an upsert that touches one row twice, and the later record must win.
fn unique_runs<'a, T, K: std::hash::Hash + Eq>(
    items: &'a [T],
    max: usize,
    key: impl Fn(&'a T) -> K,
) -> Vec<&'a [T]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut seen: HashSet<K> = HashSet::new();
    for (i, it) in items.iter().enumerate() {
        let k = key(it);
        if i - start >= max || seen.contains(&k) {
            runs.push(&items[start..i]);
            start = i;
            seen.clear();
        }
        seen.insert(k);
    }
    if start < items.len() {
        runs.push(&items[start..]);
    }
    runs
}

impl ImportSession {
    pub(crate) fn new(
        tx: Tx,
        now: Timestamp,
        pool: crate::db::Pool,
        salt: std::sync::Arc<str>,
    ) -> Self {
        Self {
            tx,
            now,
            customer_ids: HashMap::new(),
            counts: WriteCounts::default(),
            pg_stage_ready: false,
            pg_events_stage_ready: false,
            events_indexes_deferred: None,
            engaged: HashMap::new(),
            pool,
            salt,
            erased: None,
            diverted: HashSet::new(),
            phases: Phases::default(),
        }
    }

    async fn erased_list(&mut self) -> Result<Option<crate::privacy::ErasedList>, StoreError> {
        if self.erased.is_none() {
            self.erased = Some(crate::privacy::ErasedList::load(&mut self.tx, &self.salt).await?);
        }
        Ok(self.erased.clone().flatten())
    }

    /// Keeps erased people out: a record whose customer id, email or phone is on the erased
    /// list is not stored; its id is mapped to the anonymous record so its orders and events
    /// still count. A live record (another person) that now carries an erased address or
    /// number keeps its other data, without that identifier.
    async fn divert_erased(
        &mut self,
        records: &[CustomerRecord],
        list: &crate::privacy::ErasedList,
    ) -> Result<Vec<CustomerRecord>, StoreError> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            if let Some(shell) = list.find("external_id", r.external_id.as_str()) {
                self.divert(r.external_id.as_str(), shell);
                continue;
            }
            let by_email = r
                .email
                .as_ref()
                .and_then(|e| list.find("email", e.match_key()));
            let by_phone = r
                .phone
                .as_ref()
                .and_then(|p| list.find("phone", p.as_str()));
            let Some(shell) = by_email.or(by_phone) else {
                out.push(r.clone());
                continue;
            };
            let live = !self
                .tx
                .fetch(
                    "SELECT 1 FROM customers WHERE external_id = $1 AND erased_at IS NULL",
                    &[Val::from(r.external_id.as_str())],
                )
                .await?
                .is_empty();
            if live {
                let mut kept = r.clone();
                if by_email.is_some() {
                    kept.email = None;
                    kept.consents.retain(|c| c.channel != Channel::Email);
                }
                if by_phone.is_some() {
                    kept.phone = None;
                    kept.consents.retain(|c| c.channel != Channel::Sms);
                }
                out.push(kept);
                continue;
            }
            // A new account of an erased person: remember its id (hashed) for later files.
            self.tx
                .execute(
                    "INSERT INTO erased_identities (hash, kind, customer_id, erased_at) VALUES ($1, 'external_id', $2, $3) ON CONFLICT (hash) DO NOTHING",
                    &[
                        Val::from(list.hash("external_id", r.external_id.as_str())),
                        Val::from(shell),
                        Val::from(self.now.as_micros()),
                    ],
                )
                .await?;
            self.divert(r.external_id.as_str(), shell);
        }
        Ok(out)
    }

    fn divert(&mut self, external_id: &str, shell: i64) {
        self.customer_ids.insert(external_id.to_owned(), shell);
        self.diverted.insert(shell);
        self.counts.erased_kept_out += 1;
    }

    /// What was written so far.
    pub fn counts(&self) -> &WriteCounts {
        &self.counts
    }

    /// Upserts customers. With `authoritative`, given values replace stored ones (a customer
    /// file); otherwise they only fill values the store lacks (what an order says of its buyer).
    pub async fn upsert_customers(
        &mut self,
        records: &[CustomerRecord],
        authoritative: bool,
    ) -> Result<(), StoreError> {
        let kept;
        let records = match self.erased_list().await? {
            Some(list) => {
                kept = self.divert_erased(records, &list).await?;
                &kept[..]
            }
            None => records,
        };
        const COLS: usize = 18;
        let merge = |col: &str| {
            if authoritative {
                format!("{col} = COALESCE(excluded.{col}, customers.{col})")
            } else {
                format!("{col} = COALESCE(customers.{col}, excluded.{col})")
            }
        };
        let mut sets: Vec<String> = [
            "email",
            "email_key",
            "phone",
            "first_name",
            "last_name",
            "time_zone",
            "locale",
            "created_at",
        ]
        .iter()
        .map(|c| merge(c))
        .collect();
        // Address parts move together, so two sources never mix into one address.
        for c in [
            "address1",
            "address2",
            "postal_code",
            "city",
            "country",
            "address_key",
        ] {
            // Any part given counts: a file with only a city (or a customer who moved town)
            // replaces the stored address as a whole.
            sets.push(if authoritative {
                format!("{c} = CASE WHEN excluded.postal_code IS NOT NULL OR excluded.address1 IS NOT NULL OR excluded.city IS NOT NULL OR excluded.country IS NOT NULL THEN excluded.{c} ELSE customers.{c} END")
            } else {
                format!("{c} = CASE WHEN customers.postal_code IS NULL AND customers.address1 IS NULL AND customers.city IS NULL THEN excluded.{c} ELSE customers.{c} END")
            });
        }
        sets.push(if authoritative {
            "attributes = CASE WHEN excluded.attributes <> '{}' THEN excluded.attributes ELSE customers.attributes END".into()
        } else {
            "attributes = customers.attributes".into()
        });
        sets.push("updated_at = excluded.updated_at".into());
        let now = self.now.as_micros();
        for run in unique_runs(records, CHUNK_PARAMS / COLS, |r| r.external_id.as_str()) {
            let sql = format!(
                "INSERT INTO customers (external_id, email, email_key, phone, first_name, last_name, address1, address2, postal_code, city, country, address_key, time_zone, locale, created_at, attributes, inserted_at, updated_at) \
                 VALUES {} ON CONFLICT (external_id) DO UPDATE SET {} RETURNING id, external_id",
                values_list(run.len(), COLS),
                sets.join(", ")
            );
            let mut args = Vec::with_capacity(run.len() * COLS);
            for r in run {
                let addr = r.address.as_ref();
                let attrs = if r.attributes.is_empty() {
                    "{}".to_owned()
                } else {
                    serde_json::to_string(&r.attributes)?
                };
                args.extend([
                    Val::from(r.external_id.as_str()),
                    opt_str(&r.email.as_ref().map(|e| e.as_str())),
                    opt_str(&r.email.as_ref().map(|e| e.match_key())),
                    opt_str(&r.phone.as_ref().map(|p| p.as_str())),
                    opt_str(&r.first_name.as_ref().map(|n| n.as_str())),
                    opt_str(&r.last_name.as_ref().map(|n| n.as_str())),
                    opt_str(&addr.map(|a| a.line1()).filter(|s| !s.is_empty())),
                    opt_str(&addr.map(|a| a.line2()).filter(|s| !s.is_empty())),
                    opt_str(&addr.map(|a| a.postal_code()).filter(|s| !s.is_empty())),
                    opt_str(&addr.map(|a| a.city()).filter(|s| !s.is_empty())),
                    opt_str(&addr.map(|a| a.country()).filter(|s| !s.is_empty())),
                    Val::T(r.address_identity_key()),
                    opt_str(&r.time_zone.as_ref().map(|t| t.as_str())),
                    opt_str(&r.locale.as_ref().map(|l| l.as_str())),
                    Val::I(r.created_at.map(Timestamp::as_micros)),
                    Val::from(attrs),
                    Val::from(now), // inserted_at
                    Val::from(now), // updated_at
                ]);
            }
            let rows = self.tx.fetch(&sql, &args).await?;
            for row in rows {
                self.customer_ids.insert(row.text(1)?, row.i64(0)?);
            }
            self.counts.customers += run.len() as u64;
        }
        let consents: Vec<(&ExternalId, &winback_domain::Consent)> = records
            .iter()
            .flat_map(|r| r.consents.iter().map(move |c| (&r.external_id, c)))
            .collect();
        self.add_consents(&consents).await?;
        Ok(())
    }

    /// Adds consent statements to the ledger; a statement already there is skipped.
    async fn add_consents(
        &mut self,
        consents: &[(&ExternalId, &winback_domain::Consent)],
    ) -> Result<(), StoreError> {
        if consents.is_empty() {
            return Ok(());
        }
        let ids: Vec<&ExternalId> = consents.iter().map(|(id, _)| *id).collect();
        self.ensure_customers(&ids).await?;
        // Nothing is recorded for erased people.
        let live: Vec<(&ExternalId, &winback_domain::Consent)> = consents
            .iter()
            .filter(|(id, _)| !self.diverted.contains(&self.customer_ids[id.as_str()]))
            .copied()
            .collect();
        let consents = &live[..];
        const COLS: usize = 7;
        for chunk in consents.chunks(CHUNK_PARAMS / COLS) {
            let sql = format!(
                "INSERT INTO consent_ledger (customer_id, channel, status, source, wording_version, recorded_at, inserted_at) VALUES {} \
                 ON CONFLICT (customer_id, channel, status, recorded_at, source) DO NOTHING",
                values_list(chunk.len(), COLS)
            );
            let mut args = Vec::with_capacity(chunk.len() * COLS);
            for (id, c) in chunk {
                args.extend([
                    Val::from(self.customer_ids[id.as_str()]),
                    Val::from(c.channel.as_str()),
                    Val::from(c.status.as_str()),
                    Val::from(c.source.as_str()),
                    opt_str(&c.wording_version),
                    Val::from(c.at.as_micros()),
                    Val::from(self.now.as_micros()),
                ]);
            }
            self.counts.consents += self.tx.execute(&sql, &args).await?;
        }
        Ok(())
    }

    /// Makes sure every customer exists, creating bare records for unknown ones, and caches ids.
    async fn ensure_customers(&mut self, ids: &[&ExternalId]) -> Result<(), StoreError> {
        let mut missing: Vec<&str> = Vec::new();
        let mut seen = HashSet::new();
        for id in ids {
            if !self.customer_ids.contains_key(id.as_str()) && seen.insert(id.as_str()) {
                missing.push(id.as_str());
            }
        }
        for chunk in missing.chunks(900) {
            let sql = format!(
                "SELECT id, external_id FROM customers WHERE external_id IN ({})",
                in_list(chunk.len())
            );
            let args: Vec<Val> = chunk.iter().map(|s| Val::from(*s)).collect();
            for row in self.tx.fetch(&sql, &args).await? {
                self.customer_ids.insert(row.text(1)?, row.i64(0)?);
            }
        }
        let mut absent: Vec<&str> = missing
            .into_iter()
            .filter(|s| !self.customer_ids.contains_key(*s))
            .collect();
        if !absent.is_empty() {
            if let Some(list) = self.erased_list().await? {
                let mut fresh = Vec::with_capacity(absent.len());
                for s in absent {
                    match list.find("external_id", s) {
                        Some(shell) => self.divert(s, shell),
                        None => fresh.push(s),
                    }
                }
                absent = fresh;
            }
        }
        let now = self.now.as_micros();
        for chunk in absent.chunks(4000) {
            let sql = format!(
                "INSERT INTO customers (external_id, attributes, inserted_at, updated_at) VALUES {} \
                 ON CONFLICT (external_id) DO UPDATE SET external_id = excluded.external_id RETURNING id, external_id",
                values_list(chunk.len(), 4)
            );
            let args: Vec<Val> = chunk
                .iter()
                .flat_map(|s| {
                    [
                        Val::from(*s),
                        Val::from("{}"),
                        Val::from(now),
                        Val::from(now),
                    ]
                })
                .collect();
            for row in self.tx.fetch(&sql, &args).await? {
                self.customer_ids.insert(row.text(1)?, row.i64(0)?);
            }
            self.counts.customers += chunk.len() as u64;
        }
        Ok(())
    }

    /// Upserts orders (with their discount codes and any embedded line items).
    pub async fn upsert_orders(&mut self, orders: &[OrderRecord]) -> Result<(), StoreError> {
        let ids: Vec<&ExternalId> = orders.iter().map(|o| &o.customer).collect();
        self.ensure_customers(&ids).await?;
        const COLS: usize = 10;
        let now = self.now.as_micros();
        let max_run = if self.tx.backend() == Backend::Postgres {
            PG_COPY_ROWS
        } else {
            CHUNK_PARAMS / COLS
        };
        for run in unique_runs(orders, max_run, |o| o.external_id.as_str()) {
            if self.tx.backend() == Backend::Postgres {
                self.copy_orders(run).await?;
            } else {
                self.insert_orders(run, now).await?;
            }
            let with_details: Vec<&OrderRecord> = run
                .iter()
                .filter(|o| !o.discount_codes.is_empty() || !o.items.is_empty())
                .collect();
            if !with_details.is_empty() {
                self.write_order_details(&with_details).await?;
            }
        }
        Ok(())
    }

    /// SQLite: one multi-row upsert.
    async fn insert_orders(&mut self, run: &[OrderRecord], now: i64) -> Result<(), StoreError> {
        const COLS: usize = 10;
        {
            let sql = format!(
                "INSERT INTO orders (external_id, customer_id, ordered_at, total_minor, discount_minor, currency, status, category, item_count, inserted_at) VALUES {} \
                 ON CONFLICT (external_id) DO UPDATE SET customer_id = excluded.customer_id, ordered_at = excluded.ordered_at, \
                 total_minor = excluded.total_minor, discount_minor = excluded.discount_minor, currency = excluded.currency, \
                 status = excluded.status, category = COALESCE(excluded.category, orders.category), item_count = excluded.item_count \
                 WHERE {}",
                values_list(run.len(), COLS),
                order_changed("IS NOT")
            );
            let mut args = Vec::with_capacity(run.len() * COLS);
            for o in run {
                args.extend([
                    Val::from(o.external_id.as_str()),
                    Val::from(self.customer_ids[o.customer.as_str()]),
                    Val::from(o.ordered_at.as_micros()),
                    Val::from(o.total.minor()),
                    Val::from(o.discount.minor()),
                    Val::from(o.total.currency().code()),
                    Val::from(o.status.as_str()),
                    opt_str(&o.category),
                    Val::from(i64::from(o.item_count)),
                    Val::from(now),
                ]);
            }
            let changed = self.tx.execute(&sql, &args).await?;
            self.counts.orders += changed;
            self.counts.orders_unchanged += run.len() as u64 - changed.min(run.len() as u64);
        }
        Ok(())
    }

    /// PostgreSQL: `COPY` into a staging table dropped at commit, then one set-based upsert.
    async fn copy_orders(&mut self, run: &[OrderRecord]) -> Result<(), StoreError> {
        let now = self.now.as_micros();
        let mut buf = String::with_capacity(run.len() * 96);
        for o in run {
            let cols: [Option<String>; 10] = [
                Some(o.external_id.as_str().to_owned()),
                Some(self.customer_ids[o.customer.as_str()].to_string()),
                Some(o.ordered_at.as_micros().to_string()),
                Some(o.total.minor().to_string()),
                Some(o.discount.minor().to_string()),
                Some(o.total.currency().code().to_owned()),
                Some(o.status.as_str().to_owned()),
                o.category.clone(),
                Some(o.item_count.to_string()),
                Some(now.to_string()),
            ];
            for (i, c) in cols.iter().enumerate() {
                if i > 0 {
                    buf.push('\t');
                }
                match c {
                    Some(v) => copy_escape(&mut buf, v),
                    None => buf.push_str("\\N"),
                }
            }
            buf.push('\n');
        }
        let Tx::Postgres(t) = &mut self.tx else {
            return Err(StoreError::Data("COPY is PostgreSQL-only".into()));
        };
        copy_to_stage(
            t,
            &mut self.pg_stage_ready,
            "winback_stage_orders",
            "external_id TEXT, customer_id BIGINT, ordered_at BIGINT, total_minor BIGINT, discount_minor BIGINT, \
             currency TEXT, status TEXT, category TEXT, item_count BIGINT, inserted_at BIGINT",
            buf,
        )
        .await?;
        let changed = sqlx::query(&format!(
            "INSERT INTO orders (external_id, customer_id, ordered_at, total_minor, discount_minor, currency, status, category, item_count, inserted_at) \
             SELECT external_id, customer_id, ordered_at, total_minor, discount_minor, currency, status, category, item_count, inserted_at \
             FROM winback_stage_orders ON CONFLICT (external_id) DO UPDATE SET customer_id = excluded.customer_id, ordered_at = excluded.ordered_at, \
             total_minor = excluded.total_minor, discount_minor = excluded.discount_minor, currency = excluded.currency, \
             status = excluded.status, category = COALESCE(excluded.category, orders.category), item_count = excluded.item_count \
             WHERE {}",
            order_changed("IS DISTINCT FROM")
        ))
        .execute(&mut **t)
        .await?
        .rows_affected();
        self.counts.orders += changed;
        self.counts.orders_unchanged += run.len() as u64 - changed.min(run.len() as u64);
        sqlx::query("TRUNCATE winback_stage_orders")
            .execute(&mut **t)
            .await?;
        Ok(())
    }

    async fn order_ids(&mut self, external: &[&str]) -> Result<HashMap<String, i64>, StoreError> {
        let mut out = HashMap::with_capacity(external.len());
        for chunk in external.chunks(900) {
            let sql = format!(
                "SELECT id, external_id FROM orders WHERE external_id IN ({})",
                in_list(chunk.len())
            );
            let args: Vec<Val> = chunk.iter().map(|s| Val::from(*s)).collect();
            for row in self.tx.fetch(&sql, &args).await? {
                out.insert(row.text(1)?, row.i64(0)?);
            }
        }
        Ok(out)
    }

    async fn write_order_details(&mut self, orders: &[&OrderRecord]) -> Result<(), StoreError> {
        let names: Vec<&str> = orders.iter().map(|o| o.external_id.as_str()).collect();
        let ids = self.order_ids(&names).await?;
        let order_ids: Vec<Val> = ids.values().map(|i| Val::from(*i)).collect();
        for chunk in order_ids.chunks(900) {
            let list = in_list(chunk.len());
            self.tx
                .execute(
                    &format!("DELETE FROM order_discount_codes WHERE order_id IN ({list})"),
                    chunk,
                )
                .await?;
        }
        let codes: Vec<(i64, &str)> = orders
            .iter()
            .flat_map(|o| {
                let id = ids[o.external_id.as_str()];
                let mut seen = HashSet::new();
                o.discount_codes
                    .iter()
                    .filter(move |c| seen.insert(c.as_str()))
                    .map(move |c| (id, c.as_str()))
            })
            .collect();
        for chunk in codes.chunks(4000) {
            let sql = format!(
                "INSERT INTO order_discount_codes (order_id, code) VALUES {}",
                values_list(chunk.len(), 2)
            );
            let args: Vec<Val> = chunk
                .iter()
                .flat_map(|(id, c)| [Val::from(*id), Val::from(*c)])
                .collect();
            self.tx.execute(&sql, &args).await?;
        }
        let with_items: Vec<&&OrderRecord> =
            orders.iter().filter(|o| !o.items.is_empty()).collect();
        if !with_items.is_empty() {
            let item_order_ids: Vec<Val> = with_items
                .iter()
                .map(|o| Val::from(ids[o.external_id.as_str()]))
                .collect();
            for chunk in item_order_ids.chunks(900) {
                let list = in_list(chunk.len());
                self.tx
                    .execute(
                        &format!("DELETE FROM order_items WHERE order_id IN ({list})"),
                        chunk,
                    )
                    .await?;
            }
            let lines: Vec<(i64, u32, &LineItem)> = with_items
                .iter()
                .flat_map(|o| {
                    let id = ids[o.external_id.as_str()];
                    o.items
                        .iter()
                        .enumerate()
                        .map(move |(i, it)| (id, i as u32 + 1, it))
                })
                .collect();
            self.insert_lines(&lines).await?;
        }
        Ok(())
    }

    async fn insert_lines(&mut self, lines: &[(i64, u32, &LineItem)]) -> Result<(), StoreError> {
        const COLS: usize = 8;
        // Runs without a repeated (order, line) for the upsert.
        for run in unique_runs(lines, CHUNK_PARAMS / COLS, |(o, l, _)| (*o, *l)) {
            let sql = format!(
                "INSERT INTO order_items (order_id, line_no, sku, name, category, quantity, unit_price_minor, currency) VALUES {} \
                 ON CONFLICT (order_id, line_no) DO UPDATE SET sku = excluded.sku, name = excluded.name, category = excluded.category, \
                 quantity = excluded.quantity, unit_price_minor = excluded.unit_price_minor, currency = excluded.currency",
                values_list(run.len(), COLS)
            );
            let mut args = Vec::with_capacity(run.len() * COLS);
            for (order_id, line_no, it) in run {
                args.extend([
                    Val::from(*order_id),
                    Val::from(i64::from(*line_no)),
                    opt_str(&it.sku),
                    Val::from(it.name.as_str()),
                    opt_str(&it.category),
                    Val::from(i64::from(it.quantity)),
                    Val::from(it.unit_price.minor()),
                    Val::from(it.unit_price.currency().code()),
                ]);
            }
            self.tx.execute(&sql, &args).await?;
            self.counts.order_items += run.len() as u64;
        }
        Ok(())
    }

    /// Upserts order lines from an items file. Returns the indices of `items` whose order is
    /// not in the store; the others are written.
    pub async fn upsert_order_items(
        &mut self,
        items: &[(ExternalId, u32, LineItem)],
    ) -> Result<Vec<usize>, StoreError> {
        let names: Vec<&str> = items.iter().map(|(o, _, _)| o.as_str()).collect();
        let ids = self.order_ids(&names).await?;
        let mut unknown = Vec::new();
        let mut lines = Vec::with_capacity(items.len());
        for (i, (order, line_no, item)) in items.iter().enumerate() {
            match ids.get(order.as_str()) {
                Some(id) => lines.push((*id, *line_no, item)),
                None => unknown.push(i),
            }
        }
        self.insert_lines(&lines).await?;
        Ok(unknown)
    }

    /// Sets the engagement bits (migration 13) of the messages `events` name, in one statement:
    /// the message rollups count them from there. Done here, from the typed events, rather than by a
    /// trigger that would parse every stored payload (three quarters of a shop's events are
    /// opens and clicks, mostly of newsletters winback never sent).
    async fn mark_engagement(&mut self, events: &[EventRecord]) -> Result<(), StoreError> {
        let mut bits: HashMap<&str, i64> = HashMap::new();
        for e in events {
            let (key, bit) = match &e.kind {
                EventKind::EmailOpened {
                    message_id: Some(k),
                    machine,
                    ..
                } => (k, if *machine == Some(true) { 2 } else { 1 }),
                EventKind::EmailClicked {
                    message_id: Some(k),
                    ..
                } => (k, 4),
                EventKind::EmailUnsubscribed {
                    message_id: Some(k),
                } => (k, 8),
                EventKind::EmailComplained {
                    message_id: Some(k),
                } => (k, 16),
                EventKind::EmailBounced {
                    message_id: Some(k),
                    bounce,
                    ..
                } => (
                    k,
                    match bounce {
                        winback_domain::BounceKind::Soft => 64,
                        winback_domain::BounceKind::Hard => 32,
                    },
                ),
                _ => continue,
            };
            if winback_domain::MessageKey::is_winback_shaped(key) {
                *bits.entry(key.as_str()).or_default() |= bit;
            }
        }
        // In key order: two writers at once then lock the rows they share in the same order.
        let mut bits: Vec<(&str, i64)> = bits.into_iter().collect();
        bits.sort_unstable();
        for chunk in bits.chunks(CHUNK_PARAMS / 2) {
            let mut args = Vec::with_capacity(chunk.len() * 2);
            for (key, bit) in chunk {
                args.extend([Val::from(*key), Val::from(*bit)]);
            }
            self.tx
                .execute(
                    &format!(
                        "UPDATE outbox SET engagement = outbox.engagement | v.bits \
                         FROM (SELECT column1 AS k, column2 AS bits FROM (VALUES {}) AS t) AS v \
                         WHERE outbox.idempotency_key = v.k AND (outbox.engagement | v.bits) <> outbox.engagement",
                        values_list(chunk.len(), 2)
                    ),
                    &args,
                )
                .await?;
        }
        Ok(())
    }

    /// Notes each customer record's latest click or human open among `events`, for
    /// [`Self::apply_engaged_customers`].
    fn note_engaged_customers(&mut self, events: &[EventRecord]) {
        for e in events {
            let human = match &e.kind {
                EventKind::EmailClicked { .. } => true,
                EventKind::EmailOpened { machine, .. } => *machine != Some(true),
                _ => false,
            };
            if human {
                let at = self
                    .engaged
                    .entry(self.customer_ids[e.customer.as_str()])
                    .or_insert(i64::MIN);
                *at = (*at).max(e.at.as_micros());
            }
        }
    }

    /// Moves each noted customer record's `last_engaged_at` (migration 14) to its latest
    /// engagement, in record order, a chunk per statement. Gathered over many batches: a
    /// customer's opens and clicks of a year come in one statement, not one per batch.
    async fn apply_engaged_customers(&mut self) -> Result<(), StoreError> {
        let mut latest: Vec<(i64, i64)> = std::mem::take(&mut self.engaged).into_iter().collect();
        latest.sort_unstable();
        for chunk in latest.chunks(CHUNK_PARAMS / 2) {
            let mut args = Vec::with_capacity(chunk.len() * 2);
            for (id, at) in chunk {
                args.extend([Val::from(*id), Val::from(*at)]);
            }
            self.tx
                .execute(
                    &format!(
                        "UPDATE customers SET last_engaged_at = v.at \
                         FROM (SELECT column1 AS id, column2 AS at FROM (VALUES {}) AS t) AS v \
                         WHERE customers.id = v.id AND (customers.last_engaged_at IS NULL OR customers.last_engaged_at < v.at)",
                        values_list(chunk.len(), 2)
                    ),
                    &args,
                )
                .await?;
        }
        Ok(())
    }

    /// SQLite, when `events` is empty (a shop's first load, tens of millions of rows): drops
    /// its secondary indexes inside the import's transaction and returns their definitions, for
    /// [`Self::commit`] to create them again from the loaded rows. Keeping them up to date row
    /// by row costs random writes all over an index larger than the page cache: on 7.5M events
    /// a plain insert with them ran at 42k rows/s, without them and rebuilding at the end at
    /// 155k/s (BENCHMARKS.md). The unique key stays: it is what skips repeated events. Readers
    /// keep seeing the committed store, indexes included; a failed import rolls the drop back.
    /// PostgreSQL keeps its indexes: dropping one would lock out readers until commit.
    async fn defer_events_indexes(&mut self) -> Result<Vec<String>, StoreError> {
        if self.tx.backend() != Backend::Sqlite {
            return Ok(Vec::new());
        }
        let empty = self
            .tx
            .fetch("SELECT NOT EXISTS (SELECT 1 FROM events)", &[])
            .await?;
        if empty.first().map(|r| r.i64(0)).transpose()? != Some(1) {
            return Ok(Vec::new());
        }
        // Named indexes only: the UNIQUE constraint's own index has no SQL and stays.
        let rows = self
            .tx
            .fetch(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL ORDER BY name",
                &[],
            )
            .await?;
        let mut definitions = Vec::with_capacity(rows.len());
        for row in rows {
            let name = row.text(0)?;
            self.tx
                .execute(
                    &format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")),
                    &[],
                )
                .await?;
            definitions.push(row.text(1)?);
        }
        Ok(definitions)
    }

    /// Creates again the indexes [`Self::defer_events_indexes`] dropped. The sort spills to
    /// temporary files (the pool's `temp_store = FILE`; `SQLITE_TMPDIR` chooses where, as for
    /// every SQLite program), not memory: at a million customers an index is over a gigabyte.
    async fn restore_events_indexes(&mut self) -> Result<(), StoreError> {
        let definitions = self.events_indexes_deferred.take().unwrap_or_default();
        if definitions.is_empty() {
            return Ok(());
        }
        // A helper thread sorts beside the main one (the machine's second core).
        self.tx.execute("PRAGMA threads = 2", &[]).await?;
        let mut built = Ok(());
        for sql in &definitions {
            built = self.tx.execute(sql, &[]).await.map(|_| ());
            if built.is_err() {
                break;
            }
        }
        // The connection goes back to the pool with its usual setting, whatever happened.
        self.tx.execute("PRAGMA threads = 0", &[]).await?;
        built
    }

    /// Stores `events` whose keys are not stored yet; returns how many were new.
    async fn write_event_rows(&mut self, events: &[EventRecord]) -> Result<u64, StoreError> {
        let now = self.now.as_micros();
        if let Tx::Postgres(_) = self.tx {
            return self.copy_events(events, now).await;
        }
        let sql = format!(
            "INSERT INTO events (event_key, customer_id, type, occurred_at, payload, inserted_at) VALUES {} \
             ON CONFLICT (event_key) DO NOTHING",
            values_list(events.len(), EVENT_COLS)
        );
        let mut args = Vec::with_capacity(events.len() * EVENT_COLS);
        for e in events {
            args.extend([
                Val::from(e.natural_key()),
                Val::from(self.customer_ids[e.customer.as_str()]),
                Val::from(e.kind.type_name()),
                Val::from(e.at.as_micros()),
                Val::from(serde_json::to_string(&e.kind)?),
                Val::from(now),
            ]);
        }
        self.tx.execute(&sql, &args).await
    }

    /// PostgreSQL: `COPY` into a staging table dropped at commit, then one set-based insert
    /// that skips stored keys (and repeats within the round).
    async fn copy_events(&mut self, events: &[EventRecord], now: i64) -> Result<u64, StoreError> {
        use std::fmt::Write as _;
        let mut buf = String::with_capacity(events.len() * 160);
        for e in events {
            copy_escape(&mut buf, &e.natural_key());
            let _ = write!(buf, "\t{}\t", self.customer_ids[e.customer.as_str()]);
            copy_escape(&mut buf, e.kind.type_name());
            let _ = write!(buf, "\t{}\t", e.at.as_micros());
            copy_escape(&mut buf, &serde_json::to_string(&e.kind)?);
            let _ = writeln!(buf, "\t{now}");
        }
        let Tx::Postgres(t) = &mut self.tx else {
            return Err(StoreError::Data("COPY is PostgreSQL-only".into()));
        };
        copy_to_stage(
            t,
            &mut self.pg_events_stage_ready,
            "winback_stage_events",
            "event_key TEXT, customer_id BIGINT, type TEXT, occurred_at BIGINT, payload TEXT, inserted_at BIGINT",
            buf,
        )
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO events (event_key, customer_id, type, occurred_at, payload, inserted_at) \
             SELECT event_key, customer_id, type, occurred_at, payload, inserted_at FROM winback_stage_events \
             ON CONFLICT (event_key) DO NOTHING",
        )
        .execute(&mut **t)
        .await?
        .rows_affected();
        sqlx::query("TRUNCATE winback_stage_events")
            .execute(&mut **t)
            .await?;
        Ok(inserted)
    }

    /// Inserts events; an event whose natural key is stored already is skipped. Unsubscribes and
    /// complaints also withdraw email consent in the ledger.
    pub async fn insert_events(&mut self, events: &[EventRecord]) -> Result<(), StoreError> {
        let ids: Vec<&ExternalId> = events.iter().map(|e| &e.customer).collect();
        let start = std::time::Instant::now();
        self.ensure_customers(&ids).await?;
        self.phases.ids += start.elapsed();
        // An erased person's events are refused: their payloads (URLs, cart lines, survey
        // answers) are personal data that could then be neither exported nor erased. Counted.
        let kept: Vec<EventRecord>;
        let events: &[EventRecord] = if self.diverted.is_empty() {
            events
        } else {
            kept = events
                .iter()
                .filter(|e| {
                    !self
                        .diverted
                        .contains(&self.customer_ids[e.customer.as_str()])
                })
                .cloned()
                .collect();
            self.counts.erased_events_refused += (events.len() - kept.len()) as u64;
            &kept
        };
        if self.events_indexes_deferred.is_none() {
            self.events_indexes_deferred = Some(self.defer_events_indexes().await?);
        }
        // PostgreSQL takes a COPY round at a time; SQLite a multi-row statement.
        let rows = match self.tx {
            Tx::Postgres(_) => PG_COPY_ROWS,
            Tx::Sqlite(_) => CHUNK_PARAMS / EVENT_COLS,
        };
        for chunk in events.chunks(rows) {
            let start = std::time::Instant::now();
            let inserted = self.write_event_rows(chunk).await?;
            self.phases.rows += start.elapsed();
            self.counts.events += inserted;
            self.counts.duplicate_events += chunk.len() as u64 - inserted;
            // Duplicates too: a key names one event (the source's id, or a hash of the content),
            // so a duplicate's bit and time are its first copy's, and setting them again
            // changes nothing. (Asking the insert which rows it stored cost an eighth of the
            // import's time.)
            let start = std::time::Instant::now();
            self.mark_engagement(chunk).await?;
            self.phases.engagement += start.elapsed();
            self.note_engaged_customers(chunk);
        }
        // Bounded: past this many customers the noted times are written out.
        if self.engaged.len() >= ENGAGED_FLUSH {
            let start = std::time::Instant::now();
            self.apply_engaged_customers().await?;
            self.phases.last_engaged += start.elapsed();
        }
        let withdrawals: Vec<(&ExternalId, winback_domain::Consent)> = events
            .iter()
            .filter_map(|e| {
                let source = match e.kind {
                    EventKind::EmailUnsubscribed { .. } => "event:email_unsubscribed",
                    EventKind::EmailComplained { .. } => "event:email_complained",
                    _ => return None,
                };
                Some((
                    &e.customer,
                    winback_domain::Consent {
                        channel: Channel::Email,
                        status: ConsentStatus::Withdrawn,
                        source: source.into(),
                        at: e.at,
                        wording_version: None,
                    },
                ))
            })
            .collect();
        let refs: Vec<(&ExternalId, &winback_domain::Consent)> =
            withdrawals.iter().map(|(id, c)| (*id, c)).collect();
        let start = std::time::Instant::now();
        self.add_consents(&refs).await?;
        self.phases.consents += start.elapsed();
        Ok(())
    }

    /// Makes everything written visible at once, marking every customer record the import
    /// touched for a feature refresh (and, when orders changed, for an outcome refresh).
    pub async fn commit(mut self) -> Result<WriteCounts, StoreError> {
        let mut touched: Vec<i64> = self.customer_ids.values().copied().collect();
        touched.sort_unstable();
        let start = std::time::Instant::now();
        self.apply_engaged_customers().await?;
        self.phases.last_engaged += start.elapsed();
        let start = std::time::Instant::now();
        self.restore_events_indexes().await?;
        let indexes = start.elapsed();
        let start = std::time::Instant::now();
        crate::features::mark_dirty(&mut self.tx, &touched).await?;
        if self.counts.orders > 0 {
            // Orders changed: the enrolments of these records' profiles have stale outcomes.
            crate::outcomes::mark(&mut self.tx, &touched).await?;
        }
        let dirty = start.elapsed();
        let start = std::time::Instant::now();
        self.tx.commit().await?;
        let p = &self.phases;
        tracing::info!(
            target: "winback::import",
            ids_s = p.ids.as_secs_f64(),
            event_rows_s = p.rows.as_secs_f64(),
            engagement_s = p.engagement.as_secs_f64(),
            last_engaged_s = p.last_engaged.as_secs_f64(),
            consents_s = p.consents.as_secs_f64(),
            events_indexes_s = indexes.as_secs_f64(),
            mark_dirty_s = dirty.as_secs_f64(),
            commit_s = start.elapsed().as_secs_f64(),
            "import session committed"
        );
        let c = &self.counts;
        // After a bulk load PostgreSQL's statistics still describe the small tables of before
        // until autovacuum analyzes them (up to a minute later), and plans made meanwhile scan
        // instead of seeking. 10,000 rows is where a stale plan starts to cost seconds.
        if self.pool.backend() == crate::db::Backend::Postgres
            && c.customers + c.orders + c.order_items + c.events >= 10_000
        {
            self.pool
                .execute(
                    "ANALYZE customers, orders, order_items, order_discount_codes, events, consent_ledger",
                    &[],
                )
                .await?;
        }
        Ok(self.counts)
    }

    /// Discards everything written.
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await
    }
}
