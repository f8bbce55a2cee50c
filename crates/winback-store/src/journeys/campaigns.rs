//! Campaigns and their versions, status, trigger cursors and shop-wide signals.

use super::*;

pub(crate) async fn apply_campaign(
    pool: &Pool,
    name: &str,
    file: &str,
    source: &str,
    now: Timestamp,
) -> Result<Applied, StoreError> {
    let sum = hex::encode(Sha256::digest(source.as_bytes()));
    let mut tx = pool.begin().await?;
    let existing = tx
        .fetch(
            "SELECT id, version FROM campaigns WHERE name = $1",
            &[Val::from(name)],
        )
        .await?;
    let applied = match existing.first() {
        None => {
            let id = tx
                .fetch(
                    "INSERT INTO campaigns (name, status, version, file, created_at, updated_at) VALUES ($1, 'draft', 1, $2, $3, $3) RETURNING id",
                    &[Val::from(name), Val::from(file), Val::from(now.as_micros())],
                )
                .await?[0]
                .i64(0)?;
            insert_version(&mut tx, id, 1, source, &sum, now).await?;
            Applied::Created(1)
        }
        Some(r) => {
            let (id, version) = (r.i64("id")?, r.i64("version")?);
            let current = tx
                .fetch(
                    "SELECT checksum FROM campaign_versions WHERE campaign_id = $1 AND version = $2",
                    &[Val::from(id), Val::from(version)],
                )
                .await?;
            if current.first().map(|r| r.text(0)).transpose()?.as_deref() == Some(sum.as_str()) {
                Applied::Unchanged(version)
            } else {
                insert_version(&mut tx, id, version + 1, source, &sum, now).await?;
                tx.execute(
                    "UPDATE campaigns SET version = $2, file = $3, updated_at = $4 WHERE id = $1",
                    &[
                        Val::from(id),
                        Val::from(version + 1),
                        Val::from(file),
                        Val::from(now.as_micros()),
                    ],
                )
                .await?;
                Applied::NewVersion(version + 1)
            }
        }
    };
    tx.commit().await?;
    Ok(applied)
}

pub(super) async fn insert_version(
    tx: &mut Tx,
    id: i64,
    version: i64,
    source: &str,
    sum: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO campaign_versions (campaign_id, version, source, checksum, applied_at) VALUES ($1, $2, $3, $4, $5)",
        &[
            Val::from(id),
            Val::from(version),
            Val::from(source),
            Val::from(sum),
            Val::from(now.as_micros()),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn campaigns(pool: &Pool) -> Result<Vec<CampaignRecord>, StoreError> {
    pool.fetch(
        "SELECT c.id, c.name, c.status, c.version, v.source, c.file FROM campaigns c \
         JOIN campaign_versions v ON v.campaign_id = c.id AND v.version = c.version ORDER BY c.name",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(CampaignRecord {
            id: winback_domain::CampaignId::new(r.i64("id")?),
            name: r.text("name")?,
            status: {
                let s = r.text("status")?;
                winback_engine::CampaignStatus::parse(&s)
                    .ok_or_else(|| StoreError::Data(format!("campaign with unknown status `{s}`")))?
            },
            version: r.i64("version")?,
            source: r.text("source")?,
            file: r.text("file")?,
        })
    })
    .collect()
}

pub(crate) async fn campaign_source(
    pool: &Pool,
    id: winback_domain::CampaignId,
    version: i64,
) -> Result<String, StoreError> {
    pool.fetch(
        "SELECT source FROM campaign_versions WHERE campaign_id = $1 AND version = $2",
        &[Val::from(id), Val::from(version)],
    )
    .await?
    .first()
    .map(|r| r.text(0))
    .transpose()?
    .ok_or_else(|| StoreError::Data(format!("campaign {id} has no version {version}")))
}

pub(crate) async fn set_campaign_status(
    pool: &Pool,
    name: &str,
    status: winback_engine::CampaignStatus,
    now: Timestamp,
) -> Result<bool, StoreError> {
    Ok(pool
        .execute(
            "UPDATE campaigns SET status = $2, updated_at = $3 WHERE name = $1",
            &[
                Val::from(name),
                Val::from(status.as_str()),
                Val::from(now.as_micros()),
            ],
        )
        .await?
        > 0)
}

pub(crate) async fn finish_campaign_if_done(
    pool: &Pool,
    id: winback_domain::CampaignId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    Ok(pool
        .execute(
            "UPDATE campaigns SET status = 'finished', updated_at = $2 WHERE id = $1 AND status = 'closing' \
             AND NOT EXISTS (SELECT 1 FROM enrolments e WHERE e.campaign_id = $1 AND e.state = 'active') \
             AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.campaign_id = $1 AND o.state IN ('pending', 'claimed', 'sending'))",
            &[Val::from(id), Val::from(now.as_micros())],
        )
        .await?
        > 0)
}

pub(crate) async fn trigger_cursor(
    pool: &Pool,
    id: winback_domain::CampaignId,
) -> Result<i64, StoreError> {
    Ok(pool
        .fetch(
            "SELECT trigger_cursor FROM campaigns WHERE id = $1",
            &[Val::from(id)],
        )
        .await?
        .first()
        .map(|r| r.i64(0))
        .transpose()?
        .unwrap_or(0))
}

pub(crate) async fn advance_cursor(
    pool: &Pool,
    id: winback_domain::CampaignId,
    cursor: i64,
) -> Result<(), StoreError> {
    pool.execute(
        "UPDATE campaigns SET trigger_cursor = $2 WHERE id = $1",
        &[Val::from(id), Val::from(cursor)],
    )
    .await?;
    Ok(())
}

/// Takes the trigger leases of all of `ids` until `now + lease_seconds`, or of none when
/// another worker holds any of them unexpired; returns the ids taken (leases this worker holds
/// are renewed). All or nothing because one scan of the base serves every campaign's audience:
/// two workers that split the campaigns between them would each scan the whole base (measured
/// with per-campaign leases: two workers' claims interleaved, and both scanned).
pub(crate) async fn claim_triggers(
    pool: &Pool,
    ids: &[winback_domain::CampaignId],
    worker: &str,
    now: Timestamp,
    lease_seconds: i64,
) -> Result<Vec<winback_domain::CampaignId>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    // One claimer at a time (SQLite's BEGIN IMMEDIATE already is): the check and the update
    // below are then one step.
    if tx.backend() == Backend::Postgres {
        tx.execute("SELECT pg_advisory_xact_lock(7310002)", &[])
            .await?;
    }
    let list = id_list(ids);
    let held_elsewhere = tx
        .fetch(
            &format!(
                "SELECT COUNT(*) FROM campaigns WHERE id IN ({list}) AND trigger_until > $1 AND trigger_owner <> $2"
            ),
            &[Val::from(now.as_micros()), Val::from(worker)],
        )
        .await?[0]
        .i64(0)?;
    if held_elsewhere > 0 {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    tx.execute(
        &format!(
            "UPDATE campaigns SET trigger_owner = $1, trigger_until = $2 WHERE id IN ({list})"
        ),
        &[
            Val::from(worker),
            Val::from(now.as_micros() + lease_seconds * 1_000_000),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(ids.to_vec())
}

/// `1, 2, 3`: campaign ids (numbers, never input text) for an `IN (…)`.
fn id_list(ids: &[winback_domain::CampaignId]) -> String {
    let list: Vec<String> = ids.iter().map(|id| id.get().to_string()).collect();
    list.join(", ")
}

/// Gives back the trigger leases `worker` holds on `ids`.
pub(crate) async fn release_triggers(
    pool: &Pool,
    ids: &[winback_domain::CampaignId],
    worker: &str,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    pool.execute(
        &format!(
            "UPDATE campaigns SET trigger_owner = NULL, trigger_until = NULL WHERE id IN ({}) AND trigger_owner = $1",
            id_list(ids)
        ),
        &[Val::from(worker)],
    )
    .await?;
    Ok(())
}

/// Inserts a shop-wide signal (`assortment_updated`).
pub(crate) async fn signal(pool: &Pool, name: &str, at: Timestamp) -> Result<(), StoreError> {
    pool.execute(
        "INSERT INTO shop_signals (name, at) VALUES ($1, $2)",
        &[Val::from(name), Val::from(at.as_micros())],
    )
    .await?;
    Ok(())
}
