//! Wallet passes: what a journey's `wallet` step issued, the devices that added each pass
//! (PassKit registrations), and which of them still have to be told about a change.
//!
//! One pass per campaign and person (`wallet_passes.serial`); a later wallet step updates it and
//! counts the change in `version`. A registration remembers the version its device was last
//! told about (`pushed_version`): a push is due while it is behind, and is recorded only after
//! APNs accepted it, so each change reaches each device once (a crash between the two sends one
//! push again, which a device answers by asking for the pass once more).

use winback_domain::Timestamp;

use crate::{
    StoreError,
    db::{Pool, Val},
    queries::ts,
};

/// A pass as the store holds it, with its offer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredPass {
    /// Serial number.
    pub serial: String,
    /// Campaign name.
    pub campaign: String,
    /// The holder.
    pub profile_id: i64,
    /// `coupon` or `store_card`.
    pub style: String,
    /// The offer code it carries.
    pub offer_code: Option<String>,
    /// The offer in words.
    pub offer: Option<String>,
    /// When the offer expires.
    pub expires_at: Option<Timestamp>,
    /// The code was used or revoked: the pass shows as void.
    pub voided: bool,
    /// Changes so far (1: as issued).
    pub version: i64,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A push to send: tell `device` (its `push_token`) that pass `serial` is at `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuePush {
    /// Device library identifier.
    pub device: String,
    /// Pass serial.
    pub serial: String,
    /// APNs token.
    pub push_token: String,
    /// The pass version the push announces.
    pub version: i64,
}

/// A campaign's passes, as the report counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WalletCounts {
    /// Passes issued.
    pub issued: i64,
    /// Passes added to a wallet (at least one device registered).
    pub added: i64,
    /// Updates sent to passes (changes after issue).
    pub updated: i64,
    /// Passes removed from every wallet that had them.
    pub removed: i64,
    /// Passes whose code was used in an order.
    pub redeemed: i64,
}

/// The columns [`stored`] reads.
const PASS_COLUMNS: &str = "SELECT w.serial, c.name AS campaign, w.profile_id, w.style, w.offer_code, w.version, w.updated_at, \
                                   o.description, o.expires_at, o.state \
                            FROM wallet_passes w JOIN campaigns c ON c.id = w.campaign_id LEFT JOIN offers o ON o.code = w.offer_code";

/// A pass from a row of [`PASS_COLUMNS`].
fn stored(r: &crate::db::DbRow) -> Result<StoredPass, StoreError> {
    Ok(StoredPass {
        serial: r.text("serial")?,
        campaign: r.text("campaign")?,
        profile_id: r.i64("profile_id")?,
        style: r.text("style")?,
        offer_code: r.opt_text("offer_code")?,
        offer: r.opt_text("description")?,
        expires_at: r.opt_i64("expires_at")?.map(ts).transpose()?,
        voided: r
            .opt_text("state")?
            .is_some_and(|s| s == "redeemed" || s == "revoked"),
        version: r.i64("version")?,
        updated_at: ts(r.i64("updated_at")?)?,
    })
}

/// The pass with this serial.
pub(crate) async fn pass(pool: &Pool, serial: &str) -> Result<Option<StoredPass>, StoreError> {
    pool.fetch(
        &format!("{PASS_COLUMNS} WHERE w.serial = $1"),
        &[Val::from(serial)],
    )
    .await?
    .first()
    .map(stored)
    .transpose()
}

/// Registers `device` for updates of pass `serial`. `None`: no such pass; `Some(true)`: a new
/// registration (the pass was added to this device); `Some(false)`: known already (the token
/// is updated).
pub(crate) async fn register(
    pool: &Pool,
    device: &str,
    serial: &str,
    push_token: &str,
    now: Timestamp,
) -> Result<Option<bool>, StoreError> {
    let mut tx = pool.begin().await?;
    let version = tx
        .fetch(
            "SELECT version FROM wallet_passes WHERE serial = $1",
            &[Val::from(serial)],
        )
        .await?;
    let Some(version) = version.first().map(|r| r.i64(0)).transpose()? else {
        tx.rollback().await?;
        return Ok(None);
    };
    let known = tx
        .fetch(
            "SELECT unregistered_at FROM wallet_registrations WHERE device = $1 AND serial = $2",
            &[Val::from(device), Val::from(serial)],
        )
        .await?;
    let new = known
        .first()
        .map(|r| r.opt_i64(0))
        .transpose()?
        .is_none_or(|gone| gone.is_some());
    // The device fetches the pass as it is now, so it is up to date at registration.
    tx.execute(
        "INSERT INTO wallet_registrations (device, serial, push_token, registered_at, unregistered_at, pushed_version) \
         VALUES ($1, $2, $3, $4, NULL, $5) \
         ON CONFLICT (device, serial) DO UPDATE SET push_token = excluded.push_token, unregistered_at = NULL, \
           registered_at = CASE WHEN wallet_registrations.unregistered_at IS NULL THEN wallet_registrations.registered_at ELSE excluded.registered_at END, \
           pushed_version = CASE WHEN wallet_registrations.unregistered_at IS NULL THEN wallet_registrations.pushed_version ELSE excluded.pushed_version END",
        &[
            Val::from(device),
            Val::from(serial),
            Val::from(push_token),
            Val::from(now.as_micros()),
            Val::from(version),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(new))
}

/// Unregisters `device` from pass `serial` (removed from that wallet). `false`: not registered.
pub(crate) async fn unregister(
    pool: &Pool,
    device: &str,
    serial: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    Ok(pool
        .execute(
            "UPDATE wallet_registrations SET unregistered_at = $3 WHERE device = $1 AND serial = $2 AND unregistered_at IS NULL",
            &[Val::from(device), Val::from(serial), Val::from(now.as_micros())],
        )
        .await?
        > 0)
}

/// The serials of passes registered on `device` that changed after `since` (micros; `None`:
/// all), and the newest change among them (the next `passesUpdatedSince` tag).
pub(crate) async fn updated_since(
    pool: &Pool,
    device: &str,
    since: Option<i64>,
) -> Result<(Vec<String>, Option<i64>), StoreError> {
    let rows = pool
        .fetch(
            "SELECT w.serial, w.updated_at FROM wallet_registrations r JOIN wallet_passes w ON w.serial = r.serial \
             WHERE r.device = $1 AND r.unregistered_at IS NULL AND w.updated_at > $2 ORDER BY w.serial",
            &[Val::from(device), Val::from(since.unwrap_or(-1))],
        )
        .await?;
    let mut last = None;
    let mut serials = Vec::with_capacity(rows.len());
    for r in &rows {
        serials.push(r.text(0)?);
        last = last.max(Some(r.i64(1)?));
    }
    Ok((serials, last))
}

/// Pushes due: active registrations behind their pass's version.
pub(crate) async fn pushes_due(pool: &Pool, limit: usize) -> Result<Vec<DuePush>, StoreError> {
    pool.fetch(
        "SELECT r.device, r.serial, r.push_token, w.version FROM wallet_registrations r JOIN wallet_passes w ON w.serial = r.serial \
         WHERE r.unregistered_at IS NULL AND r.pushed_version < w.version ORDER BY w.updated_at, r.device LIMIT $1",
        &[Val::from(limit as i64)],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(DuePush {
            device: r.text(0)?,
            serial: r.text(1)?,
            push_token: r.text(2)?,
            version: r.i64(3)?,
        })
    })
    .collect()
}

/// Records that `push` was accepted (never moving a registration back).
pub(crate) async fn pushed(pool: &Pool, push: &DuePush) -> Result<(), StoreError> {
    pool.execute(
        "UPDATE wallet_registrations SET pushed_version = $3 WHERE device = $1 AND serial = $2 AND pushed_version < $3",
        &[
            Val::from(push.device.as_str()),
            Val::from(push.serial.as_str()),
            Val::from(push.version),
        ],
    )
    .await?;
    Ok(())
}

/// A campaign's pass counts for passes issued in `[from, until)`.
pub(crate) async fn counts(
    pool: &Pool,
    campaign_id: i64,
    from: Timestamp,
    until: Timestamp,
) -> Result<WalletCounts, StoreError> {
    let r = pool
        .fetch(
            "SELECT COUNT(*) AS issued, \
               CAST(COALESCE(SUM(w.version - 1), 0) AS BIGINT) AS updated, \
               CAST(COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM wallet_registrations r WHERE r.serial = w.serial) THEN 1 ELSE 0 END), 0) AS BIGINT) AS added, \
               CAST(COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM wallet_registrations r WHERE r.serial = w.serial) \
                                       AND NOT EXISTS (SELECT 1 FROM wallet_registrations r WHERE r.serial = w.serial AND r.unregistered_at IS NULL) THEN 1 ELSE 0 END), 0) AS BIGINT) AS removed, \
               CAST(COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM offers o WHERE o.code = w.offer_code AND o.used > 0) THEN 1 ELSE 0 END), 0) AS BIGINT) AS redeemed \
             FROM wallet_passes w WHERE w.campaign_id = $1 AND w.issued_at >= $2 AND w.issued_at < $3",
            &[Val::from(campaign_id), Val::from(from.as_micros()), Val::from(until.as_micros())],
        )
        .await?;
    let r = &r[0];
    Ok(WalletCounts {
        issued: r.i64("issued")?,
        added: r.i64("added")?,
        updated: r.i64("updated")?,
        removed: r.i64("removed")?,
        redeemed: r.i64("redeemed")?,
    })
}

/// One campaign arm's passes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WalletTally {
    /// Campaign name.
    pub campaign: String,
    /// Variant.
    pub variant: String,
    /// Passes issued.
    pub issued: i64,
    /// Added to a wallet.
    pub added: i64,
    /// Updates after issue.
    pub updated: i64,
}

/// Every campaign arm's passes.
pub(crate) async fn tallies(pool: &Pool) -> Result<Vec<WalletTally>, StoreError> {
    pool.fetch(
        "SELECT c.name, w.variant, COUNT(*) AS issued, \
           CAST(SUM(CASE WHEN EXISTS (SELECT 1 FROM wallet_registrations r WHERE r.serial = w.serial) THEN 1 ELSE 0 END) AS BIGINT) AS added, \
           CAST(SUM(w.version - 1) AS BIGINT) AS updated \
         FROM wallet_passes w JOIN campaigns c ON c.id = w.campaign_id GROUP BY c.name, w.variant ORDER BY c.name, w.variant",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(WalletTally {
            campaign: r.text(0)?,
            variant: r.text(1)?,
            issued: r.i64("issued")?,
            added: r.i64("added")?,
            updated: r.i64("updated")?,
        })
    })
    .collect()
}

/// Passes whose Google Wallet object is behind their version (created or changed since), in
/// one read.
pub(crate) async fn google_due(pool: &Pool, limit: usize) -> Result<Vec<StoredPass>, StoreError> {
    pool.fetch(
        &format!(
            "{PASS_COLUMNS} WHERE w.google_version < w.version ORDER BY w.updated_at, w.serial LIMIT $1"
        ),
        &[Val::from(limit as i64)],
    )
    .await?
    .iter()
    .map(stored)
    .collect()
}

/// Records that the pass's Google object shows `version` (never moving it back).
pub(crate) async fn google_synced(
    pool: &Pool,
    serial: &str,
    version: i64,
) -> Result<(), StoreError> {
    pool.execute(
        "UPDATE wallet_passes SET google_version = $2 WHERE serial = $1 AND google_version < $2",
        &[Val::from(serial), Val::from(version)],
    )
    .await?;
    Ok(())
}
