//! The audience's rows: every contact with the facts an audience expression reads (stage, features,
//! consent, suppression, tags), for the engine to evaluate.

use super::*;

pub(super) struct Contact {
    /// Every record of the profile with an email address, in record order.
    emails: Vec<(i64, String)>,
    /// Every record of the profile with a number, in record order.
    phones: Vec<(i64, String)>,
    zone: Option<String>,
    locale: Option<String>,
    country: Option<String>,
    attributes: Option<String>,
}

pub(super) async fn contacts(
    pool: &Pool,
    profiles: Option<&[i64]>,
) -> Result<BTreeMap<i64, Contact>, StoreError> {
    let base = format!(
        "SELECT {PROFILE} AS profile, c.id, c.email, c.phone, c.time_zone, c.locale, c.country, c.attributes FROM customers c WHERE c.erased_at IS NULL"
    );
    let mut rows = Vec::new();
    match profiles {
        None => rows = pool.fetch(&format!("{base} ORDER BY c.id"), &[]).await?,
        Some(ids) => {
            for chunk in ids.chunks(CHUNK) {
                let args: Vec<Val> = chunk.iter().map(|i| Val::from(*i)).collect();
                let list = in_list(chunk.len());
                rows.extend(
                    pool.fetch(
                        &format!("{base} AND (c.id IN ({list}) OR c.profile_id IN ({list})) ORDER BY c.id"),
                        &args,
                    )
                    .await?,
                );
            }
        }
    }
    let mut out: BTreeMap<i64, Contact> = BTreeMap::new();
    for r in rows {
        let profile = r.i64("profile")?;
        let id = r.i64("id")?;
        let c = out.entry(profile).or_insert(Contact {
            emails: Vec::new(),
            phones: Vec::new(),
            zone: None,
            locale: None,
            country: None,
            attributes: None,
        });
        if let Some(e) = r.opt_text("email")? {
            c.emails.push((id, e));
        }
        if let Some(p) = r.opt_text("phone")? {
            c.phones.push((id, p));
        }
        if c.zone.is_none() {
            c.zone = r.opt_text("time_zone")?;
        }
        if c.locale.is_none() {
            c.locale = r.opt_text("locale")?;
        }
        if c.country.is_none() {
            c.country = r.opt_text("country")?;
        }
        if c.attributes.is_none() {
            c.attributes = r.opt_text("attributes")?.filter(|a| a != "{}");
        }
    }
    Ok(out)
}

/// The active suppressions among `addresses` (every one with `None`): a page of the base asks
/// only about its own addresses, not for the whole list again.
pub(super) async fn suppressed_set(
    pool: &Pool,
    addresses: Option<&[&str]>,
) -> Result<HashSet<(String, String)>, StoreError> {
    let base = "SELECT channel, address FROM suppressions WHERE active = 1";
    let mut out = HashSet::new();
    let keep = |out: &mut HashSet<(String, String)>, rows: Vec<crate::db::DbRow>| {
        for r in rows {
            out.insert((r.text("channel")?, r.text("address")?));
        }
        Ok::<_, StoreError>(())
    };
    match addresses {
        None => keep(&mut out, pool.fetch(base, &[]).await?)?,
        Some(list) => {
            for chunk in list.chunks(CHUNK) {
                let args: Vec<Val> = chunk.iter().map(|a| Val::from(*a)).collect();
                // Both key columns constrained, so both backends seek the primary key; the
                // audience checks only these two channels.
                let sql = format!(
                    "{base} AND channel IN ('email', 'sms') AND address IN ({})",
                    in_list(chunk.len())
                );
                keep(&mut out, pool.fetch(&sql, &args).await?)?;
            }
        }
    }
    Ok(out)
}

/// One page of the whole base's audience rows: the profiles after `after`, at most `limit`.
pub(crate) async fn audience_page(
    pool: &Pool,
    now: Timestamp,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<AudienceEntry>, StoreError> {
    let ids: Vec<i64> = pool
        .fetch(
            "SELECT id FROM customers WHERE erased_at IS NULL AND COALESCE(profile_id, id) = id AND id > $1 ORDER BY id LIMIT $2",
            &[Val::from(after.unwrap_or(i64::MIN)), Val::from(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| r.i64("id"))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    audience_rows(pool, now, Some(&ids)).await
}

/// Audience rows of the given profile ids (all profiles with `None`), in profile id order.
pub(crate) async fn audience_rows(
    pool: &Pool,
    now: Timestamp,
    profiles: Option<&[i64]>,
) -> Result<Vec<AudienceEntry>, StoreError> {
    let contacts = contacts(pool, profiles).await?;
    let ids: Vec<i64> = contacts.keys().copied().collect();
    let filter = |col: &str, n: usize| format!("{col} IN ({})", in_list(n));
    let mut features: HashMap<i64, String> = HashMap::new();
    let mut scores: HashMap<i64, crate::db::DbRow> = HashMap::new();
    let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
    let chunks: Vec<Option<&[i64]>> = match profiles {
        None => vec![None],
        Some(_) => ids.chunks(CHUNK).map(Some).collect(),
    };
    for chunk in chunks {
        let (cond, args): (String, Vec<Val>) = match chunk {
            None => ("1 = 1".into(), vec![]),
            Some(c) => (
                filter("profile_id", c.len()),
                c.iter().map(|i| Val::from(*i)).collect(),
            ),
        };
        for r in pool
            .fetch(
                &format!("SELECT profile_id, data FROM profile_features WHERE {cond}"),
                &args,
            )
            .await?
        {
            features.insert(r.i64(0)?, r.text(1)?);
        }
        for r in pool
            .fetch(
                &format!("SELECT profile_id, stage, segment, rfm, p_alive, clv_minor, priority_minor, expected_90d, inactive_by FROM profile_scores WHERE {cond}"),
                &args,
            )
            .await?
        {
            scores.insert(r.i64(0)?, r);
        }
        for r in pool
            .fetch(
                &format!("SELECT profile_id, tag FROM contact_tags WHERE {cond} ORDER BY tag"),
                &args,
            )
            .await?
        {
            tags.entry(r.i64(0)?).or_default().push(r.text(1)?);
        }
    }
    let records: Vec<i64> = contacts
        .values()
        .flat_map(|c| c.emails.iter().chain(c.phones.iter()).map(|(id, _)| *id))
        .collect();
    // Consent is the address's, folded from every record that carries it.
    let consents = if profiles.is_some() {
        crate::consent::for_records(&mut &*pool, &records).await?
    } else {
        crate::consent::for_all(pool).await?
    };
    let addresses: Vec<&str> = contacts
        .values()
        .flat_map(|c| {
            c.emails
                .iter()
                .chain(c.phones.iter())
                .map(|(_, a)| a.as_str())
        })
        .collect();
    let suppressed = suppressed_set(pool, profiles.map(|_| addresses.as_slice())).await?;
    // The first address the rules allow, else the first address (for its status).
    let pick = |addresses: &[(i64, String)], channel: Channel, buyer: bool| {
        let allowed = addresses.iter().find(|(id, addr)| {
            winback_domain::Consent::allows_marketing_to(consents.for_record(*id, channel), buyer)
                && !suppressed.contains(&(channel.as_str().to_owned(), addr.clone()))
        });
        let shown = allowed.or(addresses.first());
        let status = shown
            .and_then(|(id, _)| consents.for_record(*id, channel))
            .map_or(ConsentStatus::None, |c| c.status);
        (allowed.is_some(), status)
    };
    let mut out = Vec::with_capacity(contacts.len());
    for (profile, c) in &contacts {
        let mut row = AudienceRow {
            profile_id: winback_domain::ProfileId::new(*profile),
            has_email: !c.emails.is_empty(),
            has_phone: !c.phones.is_empty(),
            locale: c.locale.clone(),
            country: c.country.clone(),
            subscription: "none".into(),
            ..AudienceRow::default()
        };
        if let Some(a) = &c.attributes {
            if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(a) {
                row.attributes = m;
            }
        }
        let mut first_order_at = None;
        if let Some(data) = features.get(profile) {
            let f: winback_domain::Features = serde_json::from_str(data)?;
            row.set_features(&f, now);
            first_order_at = f.first_order_at;
        }
        // A soft opt-in covers existing customers only (someone who bought from the shop).
        let buyer = row.orders > 0;
        let (email_ok, email_status) = pick(&c.emails, Channel::Email, buyer);
        let (sms_ok, sms_status) = pick(&c.phones, Channel::Sms, buyer);
        row.email_ok = email_ok;
        row.sms_ok = sms_ok;
        row.email_consent = email_status.as_str().to_owned();
        row.sms_consent = sms_status.as_str().to_owned();
        if let Some(s) = scores.get(profile) {
            row.stage = Some(s.text("stage")?);
            row.segment = s.opt_text("segment")?;
            row.rfm = s.opt_text("rfm")?;
            row.p_alive = s.opt_f64("p_alive")?;
            row.clv = s.opt_f64("clv_minor")?.map(|v| v / 100.0);
            row.priority = s.opt_f64("priority_minor")?.map(|v| v / 100.0);
            row.expected_90d = s.opt_f64("expected_90d")?;
            row.inactive_by = s
                .text("inactive_by")?
                .split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(t) = tags.get(profile) {
            row.tags = t.clone();
        }
        out.push(AudienceEntry {
            row,
            first_order_at,
            time_zone: c.zone.clone(),
        });
    }
    Ok(out)
}
