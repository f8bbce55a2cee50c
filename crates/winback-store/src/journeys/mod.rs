//! The engine's storage: campaigns and versions, enrolments, the outbox, tags, suppressions,
//! offers, exports and the deliverability ramp ([`winback_engine::JourneyStore`]), one module
//! per concern: campaigns, audience, enrolment, steps, outbox, exits and the report's read model.
//!
//! Exactly-once rests on four rules kept here:
//! - a plan's state change and its outbox rows commit in one transaction, and only while the
//!   claim's fencing token is still the enrolment's (a worker whose lease expired cannot apply);
//! - every message has a unique idempotency key, so a repeated plan inserts nothing twice;
//! - a message is marked `sending` (committed) before the transport is called; a `sending` row
//!   whose lease expires is `in_doubt`, never resent;
//! - send-time checks run in the transaction that marks `sending`, under a lock on the contact
//!   (PostgreSQL: the profile's customer row; SQLite: the database write lock). A batch checks
//!   at most one message per contact and address; the next waits for the first's outcome.

mod audience;
mod campaigns;
mod enrolment;
mod exits;
mod outbox;
mod read_model;
mod steps;

pub(crate) use audience::*;
pub(crate) use campaigns::*;
pub(crate) use enrolment::*;
pub(crate) use exits::*;
pub use outbox::*;
pub use read_model::*;
pub(crate) use steps::*;

use std::collections::{BTreeMap, HashMap, HashSet};

use sha2::{Digest, Sha256};
use winback_domain::{Channel, ConsentStatus, EventKind, Timestamp};
use winback_engine::audience::{AudienceRow, JourneyFacts};
use winback_engine::journey::{Admission, Effect, Enrolment, EntryHistory, Next, Plan, Snapshot};
use winback_engine::policy::{self, Decision, ProviderStats, RampState, SendContext};
use winback_engine::ports::{
    Applied, AudienceEntry, CampaignRecord, Candidate, ClaimedEnrolment, ClaimedMessage, Dispatch,
    EngineError, MessageChannel, OfferView, Prepared, Reaped, SendOutcome, TriggerBatch,
    TriggerEvent,
};

use crate::StoreError;
use crate::db::{Backend, Pool, Tx, Val, in_list, values_list};
use crate::queries::ts;

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        EngineError::Store(Box::new(e))
    }
}

pub(super) const PROFILE: &str = "COALESCE(c.profile_id, c.id)";
// Records of one profile are matched with `(c.id = P OR c.profile_id = P)`, which both
// databases answer from the primary key and the profile index; `COALESCE(…) = P` would scan
// every customer. The two agree because a profile's id is its smallest record's id.
/// Rows per multi-row statement (parameters stay far below both databases' limits).
pub(super) const CHUNK: usize = 400;

/// Reads the rows keyed by an `IN` list of `keys` (chunked under both databases' parameter
/// limits), `sql` holding `{ids}` where the list goes.
pub(super) async fn fetch_in<K: Clone + Into<Val>>(
    tx: &mut Tx,
    sql: &str,
    keys: &[K],
) -> Result<Vec<crate::db::DbRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let args: Vec<Val> = chunk.iter().cloned().map(Into::into).collect();
        out.extend(
            tx.fetch(&sql.replace("{ids}", &in_list(chunk.len())), &args)
                .await?,
        );
    }
    Ok(out)
}
