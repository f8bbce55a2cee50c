//! What follows every ingest, whatever its door (a CLI import, the `/v1` API, a webhook): the
//! identities of the records it touched resolved, and the touched profiles' features
//! recomputed. The CLI runs it right after an import; the worker's schedule runs it within
//! `refresh_seconds` of any other ingest. One function, so both do the same.

use anyhow::Result;
use winback_domain::Timestamp;
use winback_identity::IdentityRules;
use winback_store::{ResolutionStats, SqlStore, Store};

use crate::scoring::{Refresh, refresh_features};

/// What [`after_ingest`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settled {
    /// The resolution, when resolving is on.
    pub resolution: Option<ResolutionStats>,
    /// The features refresh.
    pub features: Refresh,
}

/// Resolves identities over the store with `rules` and saves the result.
pub async fn resolve(
    store: &SqlStore,
    rules: &IdentityRules,
    now: Timestamp,
) -> Result<ResolutionStats> {
    let ids = store.identifiers().await?;
    let resolution = winback_identity::resolve(rules, &ids);
    Ok(store.save_resolution(&resolution, now).await?)
}

/// Resolves identities (when `rules` is given: `[identity] auto_resolve`), then recomputes the
/// features of the profiles ingests touched since the last refresh.
pub async fn after_ingest(
    store: &SqlStore,
    rules: Option<&IdentityRules>,
    now: Timestamp,
) -> Result<Settled> {
    let resolution = match rules {
        Some(r) => Some(resolve(store, r, now).await?),
        None => None,
    };
    let features = refresh_features(store, now).await?;
    Ok(Settled {
        resolution,
        features,
    })
}
