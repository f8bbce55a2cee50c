//! The engine's ports: what it needs from storage ([`JourneyStore`]) and from a channel
//! ([`Transport`]). `winback-store` implements the first on SQLite and PostgreSQL;
//! `winback-channels` (and the file outbox here) implement the second. The engine never names
//! sqlx or lettre.

use std::future::Future;

use winback_domain::{CampaignId, EnrolmentId, MessageKey, ProfileId, Timestamp};

use crate::audience::AudienceRow;
use crate::experiment::ArmStats;
use crate::journey::{Admission, Enrolment, EntryHistory, Plan, Snapshot};
use crate::policy::{Decision, RampState, SendContext};

/// The channel a message goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageChannel {
    /// Email.
    Email,
    /// SMS.
    Sms,
    /// A signed HTTP call to the shop's system (a campaign's webhook step).
    Webhook,
}

impl MessageChannel {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Webhook => "webhook",
        }
    }

    /// Reads a stored name; `None` for one this version does not know.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "email" => Some(Self::Email),
            "sms" => Some(Self::Sms),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }

    /// The consent channel a marketing message on it needs; `None` for a webhook.
    pub fn consent(self) -> Option<winback_domain::Channel> {
        match self {
            Self::Email => Some(winback_domain::Channel::Email),
            Self::Sms => Some(winback_domain::Channel::Sms),
            Self::Webhook => None,
        }
    }
}

impl From<winback_domain::Channel> for MessageChannel {
    fn from(c: winback_domain::Channel) -> Self {
        match c {
            winback_domain::Channel::Email => Self::Email,
            winback_domain::Channel::Sms => Self::Sms,
        }
    }
}

impl std::fmt::Display for MessageChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a campaign is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Applied, not started: enrols nobody.
    Draft,
    /// Enrols and steps its journeys.
    Active,
    /// Enrols nobody and sends nothing until started again.
    Paused,
    /// Enrols nobody; the journeys under way run to their end.
    Closing,
    /// Closed, and every journey has ended.
    Finished,
}

impl CampaignStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Closing => "closing",
            Self::Finished => "finished",
        }
    }

    /// Reads a stored name; `None` for one this version does not know.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Draft,
            Self::Active,
            Self::Paused,
            Self::Closing,
            Self::Finished,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for CampaignStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored campaign and its current version.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignRecord {
    /// Id.
    pub id: CampaignId,
    /// Name.
    pub name: String,
    /// `draft`, `active`, `paused` or `finished`.
    pub status: CampaignStatus,
    /// Current version.
    pub version: i64,
    /// Source text of the current version.
    pub source: String,
    /// File it came from.
    pub file: String,
}

/// What applying a campaign file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// New campaign, version 1, in draft.
    Created(i64),
    /// A new version; running enrolments stay on theirs.
    NewVersion(i64),
    /// Same text as the current version.
    Unchanged(i64),
}

/// A contact who may enter.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Profile.
    pub profile_id: ProfileId,
    /// Unique per entry reason: the entry count for audiences, the event key for events, the
    /// year for dates. The store keeps (campaign, profile, key) unique, so a repeated scheduler
    /// pass cannot enrol twice.
    pub trigger_key: String,
    /// When the first step is due.
    pub start: Timestamp,
}

/// An event a trigger or a waiting step may react to.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerEvent {
    /// Cursor position (event id, or order id for orders).
    pub cursor: i64,
    /// Profile.
    pub profile_id: ProfileId,
    /// `order_placed`, a stored type, or `custom:NAME`.
    pub label: String,
    /// Unique key.
    pub key: String,
    /// When.
    pub at: Timestamp,
}

/// A claimed enrolment: the claim is valid while `fence` is the enrolment's fence and the lease
/// has not expired.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedEnrolment {
    /// Campaign id.
    pub campaign_id: CampaignId,
    /// Version the enrolment runs.
    pub version: i64,
    /// The enrolment.
    pub enrolment: Enrolment,
    /// Fencing token.
    pub fence: i64,
    /// When the current wait began (for `until_event`).
    pub waiting_since: Option<Timestamp>,
    /// The event the wait listens for.
    pub waiting_event: Option<String>,
}

/// A claimed outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedMessage {
    /// Row id.
    pub id: i64,
    /// Fencing token.
    pub fence: i64,
    /// Idempotency key.
    pub key: MessageKey,
    /// Channel.
    pub channel: MessageChannel,
    /// Campaign id.
    pub campaign_id: CampaignId,
    /// Enrolment id.
    pub enrolment_id: EnrolmentId,
    /// Profile.
    pub profile_id: ProfileId,
}

/// What the send-time checks made of one claimed message of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// The claim is no longer this worker's (its lease expired and the row moved on).
    Lost,
    /// An earlier message of the batch is for the same contact or address: left claimed, to be
    /// prepared after that one's outcome is recorded.
    Later,
    /// Decided and recorded; a `Send` carries what to deliver.
    Decided(Decision, Option<Box<Dispatch>>),
}

/// Everything a transport needs to deliver one message.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Dispatch {
    /// Idempotency key (also the Message-ID's local part).
    pub key: MessageKey,
    /// Channel.
    pub channel: MessageChannel,
    /// Address, number or URL.
    pub to: String,
    /// Campaign name.
    pub campaign: String,
    /// Step id.
    pub step: String,
    /// Variant.
    pub variant: String,
    /// Template.
    pub template: String,
    /// Subject.
    pub subject: Option<String>,
    /// Preheader.
    pub preheader: Option<String>,
    /// Sender name.
    pub sender_name: Option<String>,
    /// The contact's external id.
    pub customer: String,
    /// First name.
    pub first_name: Option<String>,
    /// Locale.
    pub locale: Option<String>,
    /// The latest offer of the enrolment.
    pub offer: Option<OfferView>,
    /// Products of the last order or abandoned cart.
    pub products: Vec<String>,
    /// The serial of the contact's wallet pass in this campaign, when a wallet step issued
    /// one: the message carries an add-to-wallet link.
    pub wallet_pass: Option<String>,
}

/// An offer as a message shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OfferView {
    /// Code.
    pub code: String,
    /// What it gives, with its amount, percent or product.
    #[serde(flatten)]
    pub kind: crate::definition::OfferKind,
    /// Currency of the amounts.
    pub currency: String,
    /// `"10.00 EUR off"`, as stored for the shop's code list; a message words the offer in its
    /// reader's language from the fields above.
    pub description: String,
    /// Valid until.
    pub expires_at: Timestamp,
    /// Minimum order in minor units.
    pub min_order_minor: i64,
}

/// How a delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted by the next hop.
    Sent {
        /// The provider's id, when it gives one.
        provider_id: Option<String>,
        /// The subject line as the recipient got it (rendered, in their language), for an
        /// email; kept on the message so a customer's timeline shows what was sent.
        subject: Option<String>,
    },
    /// The recipient does not exist (SMTP 5.1.x at RCPT, an SMS provider's "invalid number"):
    /// the address is suppressed at once.
    HardBounce(String),
    /// The recipient cannot take it now (mailbox full, busy, 4.x.x at RCPT): retried at 15
    /// minutes, 1 hour and 4 hours; the address is suppressed after the third failed retry.
    SoftBounce(String),
    /// The relay or provider failed about itself, not the recipient: connection, TLS, AUTH,
    /// policy or reputation at MAIL FROM, throttling (421, 4.7.x), a content rejection at DATA,
    /// an SMS provider's 401/403/429/5xx. The message is retried after the transport's pause,
    /// the transport is paused (a circuit breaker), and no recipient is ever suppressed.
    TransportFailure(String),
    /// This message failed in a way that says nothing about the address or the transport (it
    /// could not be rendered, no transport serves its channel): retried, then given up.
    Failed(String),
}

/// What happened in a crash-recovery pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Claims whose lease expired before the send began: released for another worker.
    pub released: u64,
    /// Sends whose lease expired after the send began: their fate is unknown, so they are
    /// `in_doubt`, counted and never resent.
    pub in_doubt: u64,
}

/// Storage for campaigns, enrolments and the outbox.
pub trait JourneyStore: Send + Sync {
    /// Stores a campaign file's text as the campaign's next version (checked by the caller).
    fn apply_campaign(
        &self,
        name: &str,
        file: &str,
        source: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Applied, EngineError>> + Send;
    /// Every campaign with its current version.
    fn campaigns(&self) -> impl Future<Output = Result<Vec<CampaignRecord>, EngineError>> + Send;
    /// The source text of one version.
    fn campaign_source(
        &self,
        campaign_id: CampaignId,
        version: i64,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// Sets a campaign's status.
    fn set_campaign_status(
        &self,
        name: &str,
        status: CampaignStatus,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, EngineError>> + Send;
    /// Marks active campaigns finished when every enrolment is terminal and the trigger cannot
    /// enrol more (`closed` campaigns: paused or with a one-shot trigger are the caller's call);
    /// returns how many were finished.
    fn finish_campaign_if_done(
        &self,
        campaign_id: CampaignId,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, EngineError>> + Send;

    /// Audience rows (with each profile's first order and zone) of at most `limit` profiles
    /// with ids after `after` (from the first when `None`), in profile id order: a scan of the
    /// whole base one page at a time, so a pass holds one page in memory.
    fn audience_page(
        &self,
        now: Timestamp,
        after: Option<ProfileId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AudienceEntry>, EngineError>> + Send;
    /// Audience rows of the given profiles (ids of profiles, not of merged-away records), in
    /// profile id order; unknown or erased ones have none.
    fn audience_rows_of(
        &self,
        now: Timestamp,
        profiles: &[ProfileId],
    ) -> impl Future<Output = Result<Vec<AudienceEntry>, EngineError>> + Send;
    /// Events (or orders, for `order_placed`) with `label` after the campaign's trigger
    /// cursor, oldest first, at most `limit`.
    fn trigger_events(
        &self,
        campaign_id: CampaignId,
        label: &str,
        limit: usize,
    ) -> impl Future<Output = Result<TriggerBatch, EngineError>> + Send;
    /// The campaign's trigger cursor: the last event or order consumed, or for audience
    /// triggers the time of the last evaluation (microseconds); 0 when never run.
    fn trigger_cursor(
        &self,
        campaign_id: CampaignId,
    ) -> impl Future<Output = Result<i64, EngineError>> + Send;
    /// Makes enrolments waiting for an event due now when their event has arrived (for the
    /// contact, or as a shop-wide signal). Returns how many woke.
    fn wake_waiting(&self, now: Timestamp)
    -> impl Future<Output = Result<u64, EngineError>> + Send;
    /// Takes the trigger leases of all of `campaigns` until `now + lease_seconds`, or of none
    /// when another worker holds any of them unexpired (leases `worker` holds are renewed);
    /// returns those taken. Of several workers, only the holder evaluates the triggers: one
    /// scan of the base serves all campaigns, so they are not split between workers.
    fn claim_triggers(
        &self,
        campaigns: &[CampaignId],
        worker: &str,
        now: Timestamp,
        lease_seconds: i64,
    ) -> impl Future<Output = Result<Vec<CampaignId>, EngineError>> + Send;
    /// Gives back the trigger leases `worker` holds on `campaigns`.
    fn release_triggers(
        &self,
        campaigns: &[CampaignId],
        worker: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Moves the campaign's trigger cursor.
    fn advance_cursor(
        &self,
        campaign_id: CampaignId,
        cursor: i64,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Enrols candidates in one transaction under the enrolment lock: reads each one's
    /// [`EntryHistory`], asks `admit`, inserts the admitted. Returns (entered, held out).
    fn enrol(
        &self,
        campaign_id: CampaignId,
        version: i64,
        exclusive: bool,
        candidates: &[Candidate],
        now: Timestamp,
        admit: &(dyn Fn(&Candidate, &EntryHistory) -> Admission + Sync),
    ) -> impl Future<Output = Result<(u64, u64), EngineError>> + Send;
    /// Enrolments and conversions per variant so far (Thompson sampling).
    fn arm_stats(
        &self,
        campaign_id: CampaignId,
        variants: &[String],
        window_seconds: i64,
    ) -> impl Future<Output = Result<Vec<ArmStats>, EngineError>> + Send;

    /// Claims up to `limit` due enrolments of active campaigns for `lease_seconds`.
    fn claim_due(
        &self,
        worker: &str,
        now: Timestamp,
        lease_seconds: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ClaimedEnrolment>, EngineError>> + Send;
    /// Snapshots of claimed enrolments; `full[i]` asks for the audience row and journey facts
    /// (branches), else only the zone and offers are read.
    fn snapshots(
        &self,
        claimed: &[ClaimedEnrolment],
        full: &[bool],
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<Snapshot>, EngineError>> + Send;
    /// Applies plans in one transaction; a plan whose fence no longer matches is skipped.
    /// Returns how many applied.
    fn apply_plans(
        &self,
        plans: &[(ClaimedEnrolment, Plan)],
        now: Timestamp,
    ) -> impl Future<Output = Result<u64, EngineError>> + Send;

    /// Claims up to `limit` due outbox rows for `lease_seconds`.
    fn claim_messages(
        &self,
        worker: &str,
        now: Timestamp,
        lease_seconds: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ClaimedMessage>, EngineError>> + Send;
    /// In one transaction that locks the contacts: reads the [`SendContext`] of each claimed
    /// message, asks `decide`, and records the decision (`sending`, deferred, or dropped).
    /// Answers each message in order: [`Prepared::Decided`] with what to deliver for `Send`,
    /// [`Prepared::Lost`] when its fence was lost, [`Prepared::Later`] when an earlier message
    /// of the batch has its contact or an address (prepare it again after that one's outcome).
    fn prepare_sends(
        &self,
        messages: &[ClaimedMessage],
        now: Timestamp,
        lease_seconds: i64,
        decide: &(dyn Fn(&ClaimedMessage, &SendContext) -> Decision + Sync),
    ) -> impl Future<Output = Result<Vec<Prepared>, EngineError>> + Send;
    /// Records the outcomes of delivery attempts in one transaction (suppressing on hard
    /// bounces, retrying soft ones), settles sunsets' unsubscribes, and moves the providers'
    /// ramps with `ramp`. `None`: the transport was never handed the message (it goes back to
    /// pending). Returns how many were recorded.
    fn finish_sends(
        &self,
        outcomes: &[(ClaimedMessage, Option<SendOutcome>)],
        now: Timestamp,
        ramp: &(dyn Fn(Option<RampState>, &str, crate::policy::ProviderStats) -> RampState + Sync),
    ) -> impl Future<Output = Result<u64, EngineError>> + Send;
    /// Ends active journeys of contacts who ordered, unsubscribed or complained since they
    /// entered (cancelling their pending messages in the same transaction), matches offer
    /// redemptions from imported orders' discount codes, and revokes single-use codes of
    /// journeys an order ended. Returns how many enrolments ended.
    fn process_exits(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = Result<u64, EngineError>> + Send;
    /// Recovers expired leases (see [`Reaped`]).
    fn reap(&self, now: Timestamp) -> impl Future<Output = Result<Reaped, EngineError>> + Send;
}

/// One profile for audience evaluation and date triggers.
#[derive(Debug, Clone, Default)]
pub struct AudienceEntry {
    /// The row.
    pub row: AudienceRow,
    /// First order.
    pub first_order_at: Option<Timestamp>,
    /// Zone.
    pub time_zone: Option<String>,
}

impl AsRef<AudienceRow> for AudienceEntry {
    fn as_ref(&self) -> &AudienceRow {
        &self.row
    }
}

/// Events after a campaign's cursor, and where the cursor goes once they are handled (past
/// events of other kinds too, so history is not rescanned).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriggerBatch {
    /// Matching events, oldest first.
    pub events: Vec<TriggerEvent>,
    /// The new cursor; `None` when there was nothing after the old one.
    pub cursor: Option<i64>,
}

/// A contact on an audience export, with what ads and print need.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AudienceMember {
    /// Profile.
    pub profile_id: ProfileId,
    /// Email (the first of the profile's records that has one).
    pub email: Option<String>,
    /// The profile's other distinct email addresses (merged records), for files that take
    /// several.
    pub other_emails: Vec<String>,
    /// Phone (E.164).
    pub phone: Option<String>,
    /// The profile's other distinct phone numbers.
    pub other_phones: Vec<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Street and number.
    pub address1: Option<String>,
    /// Second address line.
    pub address2: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// The newest unexpired offer code of the campaign for this contact (a personal code for
    /// print).
    pub code: Option<String>,
}

impl AudienceMember {
    /// The `n`th distinct email address (1-based).
    pub fn nth_email(&self, n: usize) -> Option<&str> {
        match n {
            0 => None,
            1 => self.email.as_deref(),
            n => self.other_emails.get(n - 2).map(String::as_str),
        }
    }

    /// The `n`th distinct phone number (1-based).
    pub fn nth_phone(&self, n: usize) -> Option<&str> {
        match n {
            0 => None,
            1 => self.phone.as_deref(),
            n => self.other_phones.get(n - 2).map(String::as_str),
        }
    }
}

/// The contacts of one destination's file, after the destination's legal basis, and how many
/// it left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AudienceFile {
    /// Who may go into the file.
    pub members: Vec<AudienceMember>,
    /// Added by the campaign's steps but objected to direct marketing since (always left out).
    pub objected: u64,
    /// Left out under a consent basis: no address with an explicit opt-in in force.
    pub no_consent: u64,
}

/// A delivery channel.
pub trait Transport: Send + Sync {
    /// Delivers one message. Must not return before the next hop accepted or refused it.
    fn deliver(&self, message: &Dispatch) -> impl Future<Output = SendOutcome> + Send;
}

/// Why the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Storage failed; the store's own error is the source (a full disk, a lost connection),
    /// so a caller can still tell them apart.
    #[error("the store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A stored campaign no longer parses (edited outside winback).
    #[error("campaign {0}: {1}")]
    Campaign(String, String),
    /// No such campaign.
    #[error("no campaign named `{0}`")]
    UnknownCampaign(String),
}
