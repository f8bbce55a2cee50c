//! Consent in force, folded per address.
//!
//! Consent belongs to an address or a number, not to a customer record: a shop's customer
//! export, its newsletter tool and its checkout each hold a record for the same address, and a
//! withdrawal in any of them is a withdrawal for that address. So the statement in force for an
//! email address is folded (by [`Consent::effective`]) from the ledger rows of *every* record whose
//! email matching key is that address's, and for a number from every record with that E.164
//! number. A record without an address keeps its own statements. Audiences, the send-time check,
//! the preference centre, `customers show`, the status counts and the access export all read
//! consent through this module, so they cannot disagree.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use winback_domain::{Channel, Consent};

use crate::{
    StoreError,
    db::{DbRow, Pool, Tx, Val, in_list},
    queries::ts,
};

/// Both a pool and an open transaction can answer the fold's reads (the send-time check reads
/// inside its transaction, the read models outside one).
pub(crate) trait Reader: Send {
    /// Runs one query.
    fn read(
        &mut self,
        sql: &str,
        args: &[Val],
    ) -> impl Future<Output = Result<Vec<DbRow>, StoreError>> + Send;
}

impl Reader for &Pool {
    fn read(
        &mut self,
        sql: &str,
        args: &[Val],
    ) -> impl Future<Output = Result<Vec<DbRow>, StoreError>> + Send {
        let pool: &Pool = self;
        pool.fetch(sql, args)
    }
}

impl Reader for Tx {
    fn read(
        &mut self,
        sql: &str,
        args: &[Val],
    ) -> impl Future<Output = Result<Vec<DbRow>, StoreError>> + Send {
        self.fetch(sql, args)
    }
}

/// What a statement is folded under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum AddressKey {
    /// An email matching key (lower case, no `+tag`, Gmail dots ignored).
    Email(String),
    /// An E.164 number.
    Phone(String),
    /// A record that carries no address for the channel keeps its own statements.
    Record(i64, Channel),
}

impl AddressKey {
    /// The key a record's statements for `channel` are folded under.
    pub(crate) fn of(
        record: i64,
        channel: Channel,
        email_key: Option<&str>,
        phone: Option<&str>,
    ) -> Self {
        match (channel, email_key, phone) {
            (Channel::Email, Some(k), _) => AddressKey::Email(k.to_owned()),
            (Channel::Sms, _, Some(p)) => AddressKey::Phone(p.to_owned()),
            _ => AddressKey::Record(record, channel),
        }
    }
}

/// A ledger row's statement and the address it folds under (columns `id, email_key, phone,
/// channel, status, source, wording_version, recorded_at`).
fn keyed_statement(r: &DbRow) -> Result<(AddressKey, Consent), StoreError> {
    let c = statement(r)?;
    let key = AddressKey::of(
        r.i64("id")?,
        c.channel,
        r.opt_str("email_key")?,
        r.opt_str("phone")?,
    );
    Ok((key, c))
}

/// A ledger row's statement (columns `channel, status, source, wording_version, recorded_at`).
fn statement(r: &DbRow) -> Result<Consent, StoreError> {
    let data = |e: winback_domain::ConsentError| StoreError::Data(e.to_string());
    Ok(Consent {
        channel: r.text("channel")?.parse().map_err(data)?,
        status: r.text("status")?.parse().map_err(data)?,
        source: r.text("source")?,
        wording_version: r.opt_text("wording_version")?,
        at: ts(r.i64("recorded_at")?)?,
    })
}

fn fold(history: HashMap<AddressKey, Vec<Consent>>) -> HashMap<AddressKey, Consent> {
    history
        .into_iter()
        .filter_map(|(k, h)| Consent::effective(&h).cloned().map(|c| (k, c)))
        .collect()
}

/// The statement in force for every address of the given records (or of every record), and for
/// each record the keys its email and SMS statements fold under.
#[derive(Default)]
pub(crate) struct Folded {
    by_address: HashMap<AddressKey, Consent>,
    keys: HashMap<(i64, Channel), AddressKey>,
}

impl Folded {
    /// The statement in force for a record's address on a channel.
    pub(crate) fn for_record(&self, record: i64, channel: Channel) -> Option<&Consent> {
        self.keys
            .get(&(record, channel))
            .and_then(|k| self.by_address.get(k))
    }

    /// Every record's statement in force, keyed by record and channel.
    pub(crate) fn into_records(self) -> HashMap<(i64, Channel), Consent> {
        self.keys
            .into_iter()
            .filter_map(|(rc, k)| self.by_address.get(&k).map(|c| (rc, c.clone())))
            .collect()
    }
}

/// Folds the statements in force for the addresses of `records` (chunked: both backends cap a
/// statement's parameters). Erased records take part with whatever address they still carry
/// (none, after erasure).
pub(crate) async fn for_records(
    q: &mut impl Reader,
    records: &[i64],
) -> Result<Folded, StoreError> {
    let mut keys: HashMap<(i64, Channel), AddressKey> = HashMap::new();
    for chunk in records.chunks(4000) {
        let args: Vec<Val> = chunk.iter().map(|i| Val::from(*i)).collect();
        for r in q
            .read(
                &format!(
                    "SELECT id, email_key, phone FROM customers WHERE id IN ({})",
                    in_list(chunk.len())
                ),
                &args,
            )
            .await?
        {
            let id = r.i64("id")?;
            let (email, phone) = (r.opt_text("email_key")?, r.opt_text("phone")?);
            for ch in Channel::ALL {
                keys.insert(
                    (id, ch),
                    AddressKey::of(id, ch, email.as_deref(), phone.as_deref()),
                );
            }
        }
    }
    let mut emails: Vec<String> = Vec::new();
    let mut phones: Vec<String> = Vec::new();
    let mut bare: Vec<i64> = Vec::new();
    let mut seen: HashSet<&AddressKey> = HashSet::new();
    for k in keys.values() {
        if !seen.insert(k) {
            continue;
        }
        match k {
            AddressKey::Email(e) => emails.push(e.clone()),
            AddressKey::Phone(p) => phones.push(p.clone()),
            AddressKey::Record(id, _) => bare.push(*id),
        }
    }
    bare.sort_unstable();
    bare.dedup();
    let cols = "c.id, c.email_key, c.phone, l.channel, l.status, l.source, l.wording_version, l.recorded_at";
    let mut history: HashMap<AddressKey, Vec<Consent>> = HashMap::new();
    let mut add = |r: &DbRow| -> Result<(), StoreError> {
        let (key, c) = keyed_statement(r)?;
        history.entry(key).or_default().push(c);
        Ok(())
    };
    for chunk in emails.chunks(4000) {
        let args: Vec<Val> = chunk.iter().map(|e| Val::from(e.as_str())).collect();
        for r in q
            .read(
                &format!("SELECT {cols} FROM consent_ledger l JOIN customers c ON c.id = l.customer_id WHERE l.channel = 'email' AND c.email_key IN ({})", in_list(chunk.len())),
                &args,
            )
            .await?
        {
            add(&r)?;
        }
    }
    for chunk in phones.chunks(4000) {
        let args: Vec<Val> = chunk.iter().map(|p| Val::from(p.as_str())).collect();
        for r in q
            .read(
                &format!("SELECT {cols} FROM consent_ledger l JOIN customers c ON c.id = l.customer_id WHERE l.channel = 'sms' AND c.phone IN ({})", in_list(chunk.len())),
                &args,
            )
            .await?
        {
            add(&r)?;
        }
    }
    for chunk in bare.chunks(4000) {
        let args: Vec<Val> = chunk.iter().map(|i| Val::from(*i)).collect();
        for r in q
            .read(
                &format!("SELECT {cols} FROM consent_ledger l JOIN customers c ON c.id = l.customer_id WHERE c.id IN ({})", in_list(chunk.len())),
                &args,
            )
            .await?
        {
            // Only the record's own statements for a channel it has no address on.
            let (key, c) = keyed_statement(&r)?;
            if matches!(key, AddressKey::Record(..)) {
                history.entry(key).or_default().push(c);
            }
        }
    }
    Ok(Folded {
        by_address: fold(history),
        keys,
    })
}

/// Folds the statements in force for every record in the store, in two streaming scans.
pub(crate) async fn for_all(pool: &Pool) -> Result<Folded, StoreError> {
    let mut history: HashMap<AddressKey, Vec<Consent>> = HashMap::new();
    pool.for_each(
        "SELECT c.id, c.email_key, c.phone, l.channel, l.status, l.source, l.wording_version, l.recorded_at FROM consent_ledger l JOIN customers c ON c.id = l.customer_id",
        &[],
        |r| {
            let (key, c) = keyed_statement(r)?;
            history.entry(key).or_default().push(c);
            Ok(())
        },
    )
    .await?;
    let mut keys = HashMap::new();
    pool.for_each("SELECT id, email_key, phone FROM customers", &[], |r| {
        let id = r.i64("id")?;
        let (email, phone) = (r.opt_str("email_key")?, r.opt_str("phone")?);
        for ch in Channel::ALL {
            keys.insert((id, ch), AddressKey::of(id, ch, email, phone));
        }
        Ok(())
    })
    .await?;
    Ok(Folded {
        by_address: fold(history),
        keys,
    })
}
