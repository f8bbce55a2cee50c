//! Identity persistence and the read models of the CLI: summary, profile detail, listings.

use std::collections::HashMap;
use winback_domain::ProfileId;

use winback_domain::{Channel, Consent, CustomerId, Timestamp};
use winback_identity::{Identifiers, Resolution};

use crate::{
    StoreError,
    db::{Pool, Val, in_list, values_list},
};

pub(crate) fn ts(micros: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_micros(micros)
        .ok_or_else(|| StoreError::Data(format!("timestamp {micros} out of range")))
}

/// Every record's identifiers, streamed: a million driver rows held at once would be several
/// times the identifiers themselves.
pub(crate) async fn identifiers(pool: &Pool) -> Result<Vec<Identifiers>, StoreError> {
    let mut out = Vec::new();
    pool.for_each(
        "SELECT id, email_key, phone, address_key, first_name FROM customers WHERE erased_at IS NULL ORDER BY id",
        &[],
        |r| {
            out.push(Identifiers {
                customer: Some(CustomerId::new(r.i64("id")?)),
                email_key: r.opt_text("email_key")?,
                phone: r.opt_text("phone")?,
                address_key: r.opt_text("address_key")?,
                first_name: r.opt_text("first_name")?,
            });
            Ok(())
        },
    )
    .await?;
    Ok(out)
}

/// What a resolution run changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ResolutionStats {
    /// Customer records considered.
    pub records: u64,
    /// Distinct profiles after merging.
    pub profiles: u64,
    /// Records merged into another record's profile.
    pub merged_records: u64,
    /// Records whose profile changed in this run.
    pub changed: u64,
    /// Keys too common to merge on.
    pub skipped_keys: u64,
    /// Links held apart: the profile would have grown past `max_group_size`.
    pub held_apart: u64,
}

pub(crate) async fn save_resolution(
    pool: &Pool,
    r: &Resolution,
    now: Timestamp,
) -> Result<ResolutionStats, StoreError> {
    let mut tx = pool.begin().await?;
    // The resolution's records are in id order (as `identifiers` reads them); the stored
    // profiles stream in the same order and are compared as they come, without a map of
    // a million entries.
    let mut wanted: Vec<(i64, i64)> = r
        .profile_of
        .iter()
        .map(|(c, p)| (c.get(), p.get()))
        .collect();
    if !wanted.is_sorted_by_key(|(c, _)| *c) {
        wanted.sort_unstable_by_key(|(c, _)| *c);
    }
    let mut changes: Vec<(i64, i64)> = Vec::new();
    let mut next = 0usize;
    tx.for_each(
        "SELECT id, profile_id FROM customers WHERE erased_at IS NULL ORDER BY id",
        &[],
        |row| {
            let (id, stored) = (row.i64("id")?, row.opt_i64("profile_id")?);
            while next < wanted.len() && wanted[next].0 < id {
                // A record resolved but gone from the table meanwhile: nothing to update.
                next += 1;
            }
            if let Some(&(c, p)) = wanted.get(next).filter(|(c, _)| *c == id) {
                if stored != Some(p) {
                    changes.push((c, p));
                }
                next += 1;
            }
            Ok(())
        },
    )
    .await?;
    // Changes go through a keyed temporary table, so the update is one indexed lookup per row on
    // both backends (a correlated lookup into a VALUES list would scan it for every row).
    tx.execute("CREATE TEMP TABLE IF NOT EXISTS winback_profile_changes (id BIGINT PRIMARY KEY, profile BIGINT NOT NULL)", &[]).await?;
    tx.execute("DELETE FROM winback_profile_changes", &[])
        .await?;
    for chunk in changes.chunks(4000) {
        let sql = format!(
            "INSERT INTO winback_profile_changes (id, profile) VALUES {}",
            values_list(chunk.len(), 2)
        );
        let args: Vec<Val> = chunk
            .iter()
            .flat_map(|(c, p)| [Val::from(*c), Val::from(*p)])
            .collect();
        tx.execute(&sql, &args).await?;
    }
    if !changes.is_empty() {
        // Features of the records that move, and of the profiles they leave, are stale.
        // (SQLite parses an upsert after a SELECT only when the SELECT has a WHERE clause.)
        // So are the outcomes of the enrolments of both profiles (a record that moves, marked,
        // names its new profile when the outcomes are refreshed).
        for (table, record) in [
            ("feature_dirty", "c.id"),
            ("feature_dirty", "COALESCE(c.profile_id, c.id)"),
            ("outcome_dirty", "c.id"),
            ("outcome_dirty", "COALESCE(c.profile_id, c.id)"),
        ] {
            tx.execute(
                &format!(
                    "INSERT INTO {table} (customer_id) SELECT DISTINCT {record} FROM winback_profile_changes p \
                     JOIN customers c ON c.id = p.id WHERE true ON CONFLICT DO NOTHING"
                ),
                &[],
            )
            .await?;
        }
        tx.execute(
            "UPDATE customers SET profile_id = (SELECT profile FROM winback_profile_changes p WHERE p.id = customers.id) \
             WHERE id IN (SELECT id FROM winback_profile_changes)",
            &[],
        )
        .await?;
    }
    tx.execute("DELETE FROM winback_profile_changes", &[])
        .await?;
    tx.execute("DELETE FROM identity_links", &[]).await?;
    for chunk in r.links.chunks(3000) {
        let sql = format!(
            "INSERT INTO identity_links (customer_a, customer_b, rule, value, linked_at) VALUES {} ON CONFLICT DO NOTHING",
            values_list(chunk.len(), 5)
        );
        let args: Vec<Val> = chunk
            .iter()
            .flat_map(|l| {
                [
                    Val::from(l.a.get()),
                    Val::from(l.b.get()),
                    Val::from(l.rule.as_str()),
                    Val::from(l.value.as_str()),
                    Val::from(now.as_micros()),
                ]
            })
            .collect();
        tx.execute(&sql, &args).await?;
    }
    tx.execute("DELETE FROM identity_skipped_keys", &[]).await?;
    for chunk in r.skipped.chunks(3000) {
        let sql = format!(
            "INSERT INTO identity_skipped_keys (rule, value, records) VALUES {}",
            values_list(chunk.len(), 3)
        );
        let args: Vec<Val> = chunk
            .iter()
            .flat_map(|s| {
                [
                    Val::from(s.rule.as_str()),
                    Val::from(s.value.as_str()),
                    Val::from(s.records as i64),
                ]
            })
            .collect();
        tx.execute(&sql, &args).await?;
    }
    tx.execute("DELETE FROM identity_held_apart", &[]).await?;
    for chunk in r.held_apart.chunks(3000) {
        let sql = format!(
            "INSERT INTO identity_held_apart (customer_a, customer_b, rule, value, would_be) VALUES {} ON CONFLICT DO NOTHING",
            values_list(chunk.len(), 5)
        );
        let args: Vec<Val> = chunk
            .iter()
            .flat_map(|h| {
                [
                    Val::from(h.a.get()),
                    Val::from(h.b.get()),
                    Val::from(h.rule.as_str()),
                    Val::from(h.value.as_str()),
                    Val::from(h.would_be as i64),
                ]
            })
            .collect();
        tx.execute(&sql, &args).await?;
    }
    tx.commit().await?;
    Ok(ResolutionStats {
        records: r.profile_of.len() as u64,
        profiles: r.profiles() as u64,
        merged_records: r.merged_records() as u64,
        changed: changes.len() as u64,
        skipped_keys: r.skipped.len() as u64,
        held_apart: r.held_apart.len() as u64,
    })
}

/// Counts and data quality of the whole store.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Customer records.
    pub customer_records: u64,
    /// Merged profiles (people).
    pub profiles: u64,
    /// Records merged into another profile.
    pub merged_records: u64,
    /// Merges by rule.
    pub merges_by_rule: Vec<(String, u64)>,
    /// Keys too common to merge on.
    pub skipped_identity_keys: u64,
    /// Links not applied because the merged profile would have been larger than
    /// `max_group_size` (an oversized chain split at its weakest links).
    pub held_apart_links: u64,
    /// Orders.
    pub orders: u64,
    /// Refunded or cancelled orders.
    pub refunded_or_cancelled_orders: u64,
    /// Orders with a zero total.
    pub zero_value_orders: u64,
    /// Order lines.
    pub order_items: u64,
    /// Revenue of counted orders by currency, in minor units.
    pub revenue_minor_by_currency: Vec<(String, i64)>,
    /// First and last order time.
    pub order_span: Option<(Timestamp, Timestamp)>,
    /// Events by type.
    pub events_by_type: Vec<(String, u64)>,
    /// Customer records with orders or events but no name, email or phone (known only by id).
    pub records_without_contact: u64,
    /// Records without an email address.
    pub records_without_email: u64,
    /// Profiles that never ordered.
    pub profiles_without_orders: u64,
    /// Customer records by email consent in force.
    pub email_consent: Vec<(String, u64)>,
    /// Customer records by SMS consent in force.
    pub sms_consent: Vec<(String, u64)>,
}

async fn count(pool: &Pool, sql: &str) -> Result<u64, StoreError> {
    Ok(pool
        .fetch(sql, &[])
        .await?
        .first()
        .map(|r| r.i64(0))
        .transpose()?
        .unwrap_or(0) as u64)
}

async fn grouped(pool: &Pool, sql: &str) -> Result<Vec<(String, u64)>, StoreError> {
    pool.fetch(sql, &[])
        .await?
        .iter()
        .map(|r| Ok((r.text(0)?, r.i64(1)? as u64)))
        .collect()
}

/// Each customer record's consent in force: the statement in force for the record's address
/// (email matching key) or number, folded from every record that carries it
/// ([`crate::consent`]).
pub(crate) async fn effective_consents(
    pool: &Pool,
    customer_ids: Option<&[i64]>,
) -> Result<HashMap<(i64, Channel), Consent>, StoreError> {
    let folded = match customer_ids {
        Some(ids) => crate::consent::for_records(&mut &*pool, ids).await?,
        None => crate::consent::for_all(pool).await?,
    };
    Ok(folded.into_records())
}

pub(crate) async fn summary(pool: &Pool) -> Result<Summary, StoreError> {
    let span = pool
        .fetch("SELECT MIN(ordered_at), MAX(ordered_at) FROM orders", &[])
        .await?;
    let order_span = match span.first() {
        Some(r) => match (r.opt_i64(0)?, r.opt_i64(1)?) {
            (Some(a), Some(b)) => Some((ts(a)?, ts(b)?)),
            _ => None,
        },
        None => None,
    };
    let profiles = count(
        pool,
        "SELECT COUNT(*) FROM customers WHERE erased_at IS NULL AND COALESCE(profile_id, id) = id",
    )
    .await?;
    let records = count(
        pool,
        "SELECT COUNT(*) FROM customers WHERE erased_at IS NULL",
    )
    .await?;
    let consents = effective_consents(pool, None).await?;
    let mut email: HashMap<&'static str, u64> = HashMap::new();
    let mut sms: HashMap<&'static str, u64> = HashMap::new();
    for ((_, channel), c) in &consents {
        let m = if *channel == Channel::Email {
            &mut email
        } else {
            &mut sms
        };
        *m.entry(c.status.as_str()).or_default() += 1;
    }
    let with_none = |m: HashMap<&'static str, u64>| {
        let known: u64 = m.values().sum();
        let mut v: Vec<(String, u64)> = m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        v.push(("no statement".into(), records.saturating_sub(known)));
        v.sort();
        v
    };
    Ok(Summary {
        customer_records: records,
        profiles,
        merged_records: count(pool, "SELECT COUNT(*) FROM customers WHERE profile_id IS NOT NULL AND profile_id <> id").await?,
        merges_by_rule: grouped(pool, "SELECT rule, COUNT(*) FROM identity_links GROUP BY rule ORDER BY rule").await?,
        skipped_identity_keys: count(pool, "SELECT COUNT(*) FROM identity_skipped_keys").await?,
        held_apart_links: count(pool, "SELECT COUNT(*) FROM identity_held_apart").await?,
        orders: count(pool, "SELECT COUNT(*) FROM orders").await?,
        refunded_or_cancelled_orders: count(pool, "SELECT COUNT(*) FROM orders WHERE status IN ('refunded', 'cancelled')").await?,
        zero_value_orders: count(pool, "SELECT COUNT(*) FROM orders WHERE total_minor = 0").await?,
        order_items: count(pool, "SELECT COUNT(*) FROM order_items").await?,
        revenue_minor_by_currency: pool
            .fetch(
                "SELECT currency, CAST(SUM(total_minor) AS BIGINT) FROM orders WHERE status NOT IN ('refunded', 'cancelled') GROUP BY currency ORDER BY currency",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok((r.text(0)?, r.i64(1)?)))
            .collect::<Result<_, StoreError>>()?,
        order_span,
        events_by_type: grouped(pool, "SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type").await?,
        records_without_contact: count(
            pool,
            "SELECT COUNT(*) FROM customers WHERE erased_at IS NULL AND email IS NULL AND phone IS NULL AND first_name IS NULL AND last_name IS NULL",
        )
        .await?,
        records_without_email: count(pool, "SELECT COUNT(*) FROM customers WHERE erased_at IS NULL AND email IS NULL").await?,
        // Profiles less those with an order: one pass over the orders (a correlated NOT EXISTS
        // on the profile expression cannot use an index and took minutes at 246k customers).
        profiles_without_orders: profiles.saturating_sub(
            count(
                pool,
                "SELECT COUNT(DISTINCT COALESCE(c.profile_id, c.id)) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.erased_at IS NULL",
            )
            .await?,
        ),
        email_consent: with_none(email),
        sms_consent: with_none(sms),
    })
}

/// One customer record of a profile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CustomerRow {
    /// Row id.
    pub id: i64,
    /// The profile it belongs to.
    pub profile_id: ProfileId,
    /// The source's key.
    pub external_id: String,
    /// Email.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// `line1, postal code city, country`.
    pub address: Option<String>,
    /// Time zone.
    pub time_zone: Option<String>,
    /// Locale.
    pub locale: Option<String>,
    /// Other columns of the source.
    pub attributes: serde_json::Value,
}

/// An order of a profile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OrderView {
    /// Order number.
    pub external_id: String,
    /// The record that placed it.
    pub customer_external_id: String,
    /// When.
    pub ordered_at: Timestamp,
    /// Total in minor units.
    pub total_minor: i64,
    /// Currency.
    pub currency: String,
    /// Status.
    pub status: String,
    /// Category.
    pub category: Option<String>,
    /// Discount codes used.
    pub discount_codes: Vec<String>,
}

/// An event of a profile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EventView {
    /// Type.
    pub kind: String,
    /// When.
    pub at: Timestamp,
    /// Payload JSON.
    pub payload: serde_json::Value,
}

/// Why two records of the profile were merged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkView {
    /// One record (external id).
    pub a: String,
    /// The other.
    pub b: String,
    /// The rule.
    pub rule: String,
    /// The shared identifier.
    pub value: String,
}

/// A record's consent in force for one channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsentView {
    /// The record (external id) the consent was given for.
    pub customer_external_id: String,
    /// Channel.
    pub channel: String,
    /// Status in force.
    pub status: String,
    /// Where it came from.
    pub source: String,
    /// When.
    pub at: Timestamp,
}

/// A merged profile with everything stored about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CustomerDetail {
    /// Profile id.
    pub profile_id: ProfileId,
    /// Its records (identifiers).
    pub records: Vec<CustomerRow>,
    /// Why they are one profile.
    pub links: Vec<LinkView>,
    /// Links to other records not applied: the profile would have been larger than
    /// `max_group_size` (`value` names the other record and the size it would have reached).
    pub held_apart: Vec<LinkView>,
    /// Consent in force per channel.
    pub consent: Vec<ConsentView>,
    /// Number of orders.
    pub order_count: u64,
    /// The latest orders (up to 50).
    pub orders: Vec<OrderView>,
    /// Number of events.
    pub event_count: u64,
    /// The latest events (up to 50).
    pub events: Vec<EventView>,
    /// Suppressions of the profile's addresses and numbers (active or lifted), with soft
    /// bounces counted.
    pub suppressions: Vec<SuppressionView>,
}

/// A suppression of one of a profile's addresses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SuppressionView {
    /// `email` or `sms`.
    pub channel: String,
    /// The address or number.
    pub address: String,
    /// `hard_bounce`, `soft_bounces`, `complaint`, `stop`, …
    pub reason: String,
    /// Soft bounces counted for it.
    pub soft_bounces: i64,
    /// Whether it is in force.
    pub active: bool,
    /// Since when.
    pub at: Timestamp,
}

const CUSTOMER_COLS: &str = "id, COALESCE(profile_id, id) AS profile, external_id, email, phone, first_name, last_name, address1, postal_code, city, country, time_zone, locale, attributes";

fn customer_row(r: &crate::db::DbRow) -> Result<CustomerRow, StoreError> {
    // "street, postal code city, country", with whichever parts are known.
    let town = [r.opt_text("postal_code")?, r.opt_text("city")?]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let parts: Vec<String> = [r.opt_text("address1")?, Some(town), r.opt_text("country")?]
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    Ok(CustomerRow {
        id: r.i64("id")?,
        profile_id: ProfileId::new(r.i64("profile")?),
        external_id: r.text("external_id")?,
        email: r.opt_text("email")?,
        phone: r.opt_text("phone")?,
        first_name: r.opt_text("first_name")?,
        last_name: r.opt_text("last_name")?,
        address: (!parts.is_empty()).then(|| parts.join(", ")),
        time_zone: r.opt_text("time_zone")?,
        locale: r.opt_text("locale")?,
        attributes: serde_json::from_str(&r.text("attributes")?)?,
    })
}

pub(crate) async fn customer_detail(
    pool: &Pool,
    key: &str,
) -> Result<Option<CustomerDetail>, StoreError> {
    let Some(profile) = crate::privacy::find_profile(pool, key).await? else {
        return Ok(None);
    };
    let records: Vec<CustomerRow> = pool
        .fetch(&format!("SELECT {CUSTOMER_COLS} FROM customers WHERE COALESCE(profile_id, id) = $1 AND erased_at IS NULL ORDER BY id"), &[Val::from(profile)])
        .await?
        .iter()
        .map(customer_row)
        .collect::<Result<_, _>>()?;
    let ids: Vec<i64> = records.iter().map(|r| r.id).collect();
    let args: Vec<Val> = ids.iter().map(|i| Val::from(*i)).collect();
    let list = in_list(ids.len());
    let links = pool
        .fetch(
            &format!(
                "SELECT a.external_id AS a, b.external_id AS b, l.rule, l.value FROM identity_links l JOIN customers a ON a.id = l.customer_a \
                 JOIN customers b ON b.id = l.customer_b WHERE l.customer_a IN ({list}) ORDER BY l.customer_a, l.customer_b"
            ),
            &args,
        )
        .await?
        .iter()
        .map(|r| Ok(LinkView { a: r.text("a")?, b: r.text("b")?, rule: r.text("rule")?, value: r.text("value")? }))
        .collect::<Result<_, StoreError>>()?;
    let order_count = pool
        .fetch(
            &format!("SELECT COUNT(*) FROM orders WHERE customer_id IN ({list})"),
            &args,
        )
        .await?[0]
        .i64(0)? as u64;
    let order_rows = pool
        .fetch(
            &format!(
                "SELECT o.id, o.external_id, c.external_id AS customer, o.ordered_at, o.total_minor, o.currency, o.status, o.category FROM orders o \
                 JOIN customers c ON c.id = o.customer_id WHERE o.customer_id IN ({list}) ORDER BY o.ordered_at DESC, o.id DESC LIMIT 50"
            ),
            &args,
        )
        .await?;
    // The listed orders' codes in one query, not one per order.
    let order_ids: Vec<Val> = order_rows
        .iter()
        .map(|r| r.i64(0).map(Val::from))
        .collect::<Result<_, _>>()?;
    let mut codes: HashMap<i64, Vec<String>> = HashMap::new();
    if !order_ids.is_empty() {
        let sql = format!(
            "SELECT order_id, code FROM order_discount_codes WHERE order_id IN ({}) ORDER BY code",
            in_list(order_ids.len())
        );
        for c in pool.fetch(&sql, &order_ids).await? {
            codes
                .entry(c.i64("order_id")?)
                .or_default()
                .push(c.text("code")?);
        }
    }
    let orders = order_rows
        .iter()
        .map(|r| {
            Ok(OrderView {
                external_id: r.text("external_id")?,
                customer_external_id: r.text("customer")?,
                ordered_at: ts(r.i64("ordered_at")?)?,
                total_minor: r.i64("total_minor")?,
                currency: r.text("currency")?,
                status: r.text("status")?,
                category: r.opt_text("category")?,
                discount_codes: codes.remove(&r.i64("id")?).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let event_count = pool
        .fetch(
            &format!("SELECT COUNT(*) FROM events WHERE customer_id IN ({list})"),
            &args,
        )
        .await?[0]
        .i64(0)? as u64;
    let events = pool
        .fetch(
            &format!("SELECT type, occurred_at, payload FROM events WHERE customer_id IN ({list}) ORDER BY occurred_at DESC, id DESC LIMIT 50"),
            &args,
        )
        .await?
        .iter()
        .map(|r| Ok(EventView { kind: r.text("type")?, at: ts(r.i64("occurred_at")?)?, payload: serde_json::from_str(&r.text("payload")?)? }))
        .collect::<Result<_, StoreError>>()?;
    let held_apart = pool
        .fetch(
            &format!(
                "SELECT a.external_id AS a, b.external_id AS b, h.rule, h.value, h.would_be FROM identity_held_apart h JOIN customers a ON a.id = h.customer_a \
                 JOIN customers b ON b.id = h.customer_b WHERE h.customer_a IN ({list}) OR h.customer_b IN ({list}) ORDER BY h.customer_a, h.customer_b"
            ),
            &[args.clone(), args.clone()].concat(),
        )
        .await?
        .iter()
        .map(|r| {
            Ok(LinkView {
                a: r.text("a")?,
                b: r.text("b")?,
                rule: r.text("rule")?,
                value: format!("{} (would make {} records)", r.text("value")?, r.i64("would_be")?),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut addresses: Vec<Val> = Vec::new();
    for r in &records {
        addresses.extend(r.email.iter().map(|e| Val::from(e.as_str())));
        addresses.extend(r.phone.iter().map(|p| Val::from(p.as_str())));
    }
    let suppressions = if addresses.is_empty() {
        Vec::new()
    } else {
        pool.fetch(
            &format!(
                "SELECT channel, address, reason, soft_bounces, active, created_at FROM suppressions WHERE address IN ({}) ORDER BY created_at",
                in_list(addresses.len())
            ),
            &addresses,
        )
        .await?
        .iter()
        .map(|r| {
            Ok(SuppressionView {
                channel: r.text("channel")?,
                address: r.text("address")?,
                reason: r.text("reason")?,
                soft_bounces: r.i64("soft_bounces")?,
                active: r.i64("active")? != 0,
                at: ts(r.i64("created_at")?)?,
            })
        })
        .collect::<Result<_, StoreError>>()?
    };
    let consents = effective_consents(pool, Some(&ids)).await?;
    let external: HashMap<i64, &str> = records
        .iter()
        .map(|r| (r.id, r.external_id.as_str()))
        .collect();
    let mut consent: Vec<ConsentView> = consents
        .into_iter()
        .map(|((id, ch), c)| ConsentView {
            customer_external_id: external.get(&id).copied().unwrap_or_default().to_owned(),
            channel: ch.as_str().into(),
            status: c.status.as_str().into(),
            source: c.source,
            at: c.at,
        })
        .collect();
    consent.sort_by(|a, b| {
        (&a.customer_external_id, &a.channel).cmp(&(&b.customer_external_id, &b.channel))
    });
    Ok(Some(CustomerDetail {
        profile_id: ProfileId::new(profile),
        records,
        links,
        held_apart,
        consent,
        order_count,
        orders,
        event_count,
        events,
        suppressions,
    }))
}

pub(crate) async fn list_profiles(
    pool: &Pool,
    after: i64,
    limit: i64,
) -> Result<Vec<CustomerRow>, StoreError> {
    pool.fetch(
        &format!("SELECT {CUSTOMER_COLS} FROM customers WHERE COALESCE(profile_id, id) = id AND erased_at IS NULL AND id > $1 ORDER BY id LIMIT $2"),
        &[Val::from(after), Val::from(limit)],
    )
    .await?
    .iter()
    .map(customer_row)
    .collect()
}

pub(crate) async fn merged_records(pool: &Pool, limit: i64) -> Result<Vec<String>, StoreError> {
    pool.fetch(
        "SELECT external_id FROM customers WHERE erased_at IS NULL AND profile_id IS NOT NULL AND profile_id <> id ORDER BY id LIMIT $1",
        &[Val::from(limit)],
    )
    .await?
    .iter()
    .map(|r| r.text(0))
    .collect()
}

/// One customer record a search found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CustomerHit {
    /// The profile it belongs to.
    pub profile_id: i64,
    /// The shop's customer id.
    pub external_id: String,
    /// First and family name, as far as known.
    pub name: String,
    /// Email address.
    pub email: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
}

/// `%`, `_` and the escape character itself escaped for a `LIKE … ESCAPE '\'` pattern.
fn like_escaped(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Customer records (not erased) whose customer id, name, email or phone matches `q`:
/// the id whole and case-insensitively, the name and email by any part, case-insensitively,
/// and the phone by its last nine digits (so `06 1234 5678` finds `+31612345678`). One hit per
/// person (their first matching record), from at most `limit` records, by record id. The name
/// and email parts are a scan of the customers table.
pub(crate) async fn search_customers(
    pool: &Pool,
    q: &str,
    limit: i64,
) -> Result<Vec<CustomerHit>, StoreError> {
    let q = q.trim();
    if q.is_empty() {
        return Ok(Vec::new());
    }
    let lower = q.to_lowercase();
    let part = format!("%{}%", like_escaped(&lower));
    let digits: String = q.chars().filter(char::is_ascii_digit).collect();
    // A phone needs enough digits to mean one number; fewer match nothing.
    // (`LIKE NULL` is never true.)
    let phone: Option<String> =
        (digits.len() >= 6).then(|| format!("%{}", &digits[digits.len().saturating_sub(9)..]));
    let mut hits = pool
        .fetch(
        "SELECT id, COALESCE(profile_id, id) AS profile, external_id, first_name, last_name, email, phone \
         FROM customers WHERE erased_at IS NULL AND ( \
           LOWER(external_id) = $1 \
           OR LOWER(email) LIKE $2 ESCAPE '\\' \
           OR LOWER(COALESCE(first_name, '') || ' ' || COALESCE(last_name, '')) LIKE $2 ESCAPE '\\' \
           OR REPLACE(REPLACE(REPLACE(phone, ' ', ''), '-', ''), '+', '') LIKE $3) \
         ORDER BY id LIMIT $4",
        &[
            Val::from(lower.as_str()),
            Val::from(part.as_str()),
            Val::from(phone),
            Val::from(limit),
        ],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(CustomerHit {
            profile_id: r.i64("profile")?,
            external_id: r.text("external_id")?,
            name: [r.opt_text("first_name")?, r.opt_text("last_name")?]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
            email: r.opt_text("email")?,
            phone: r.opt_text("phone")?,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    // A person with several matching records (a shop account and a newsletter signup) is one
    // hit: their first record, so one person still opens at once.
    let mut seen = std::collections::HashSet::new();
    hits.retain(|h| seen.insert(h.profile_id));
    Ok(hits)
}
