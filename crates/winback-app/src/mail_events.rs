//! Applying what email providers report back, whatever the door it came through: the generic
//! ESP webhook, Amazon SES notifications, bounce and complaint mail (DSN and ARF) posted to
//! `/v1/webhooks/dsn` or read from a mailbox by `winback bounces import`. One function, so a
//! bounce suppresses, counts and records the same way from every source.

use std::collections::HashMap;

use winback_channels::reports::{Report, Verdict};
use winback_domain::{BounceKind, EmailAddress, EventKind, EventRecord, ExternalId, Timestamp};
use winback_store::{SqlStore, StoreError};

/// One validated notice about an email message.
#[derive(Debug, Clone)]
pub struct MailEvent {
    /// The source's id for this notice (a retried webhook or a re-read mailbox is a no-op).
    pub id: String,
    /// The recipient.
    pub email: EmailAddress,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
    /// A bounce caused by the sender (policy, reputation, content): recorded against the
    /// message, never counted toward the recipient's suppression.
    pub about_sender: bool,
    /// The customer the message went to, when the notice named a known message.
    pub customer: Option<String>,
}

/// What applying notices did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// Events stored against a customer.
    pub events: u64,
    /// Notices seen before (by source id): nothing applied again.
    pub duplicates: u64,
    /// Notices about an address that is no customer's (still suppressed when they say so).
    pub unknown_recipients: u64,
    /// Addresses suppressed (hard bounces, complaints, a fourth soft bounce).
    pub suppressed: u64,
}

/// Suppresses, counts and stores `list`. Hard bounces and complaints suppress the address at
/// once, whether or not it is a customer's; a soft bounce about the recipient counts toward
/// the fourth that suppresses; a bounce caused by the sender suppresses nobody.
pub async fn apply(
    store: &SqlStore,
    now: Timestamp,
    list: Vec<MailEvent>,
) -> Result<Applied, StoreError> {
    let mut report = Applied::default();
    let keys: Vec<String> = list.iter().map(|e| format!("id:esp:{}", e.id)).collect();
    let seen = store.stored_event_keys(&keys).await?;
    let mut events = Vec::new();
    for (e, key) in list.into_iter().zip(keys) {
        if seen.contains(&key) {
            report.duplicates += 1;
            continue;
        }
        let email = &e.email;
        // Suppression first and regardless of whether the address is a known customer: an
        // address that bounced must never be mailed, even after a later import adds it.
        match &e.kind {
            EventKind::EmailBounced {
                bounce: BounceKind::Hard,
                ..
            } if !e.about_sender => {
                store
                    .suppress("email", email.as_str(), "hard_bounce", now)
                    .await?;
                report.suppressed += 1;
            }
            EventKind::EmailBounced { .. } if !e.about_sender => {
                let fourth = store.soft_bounce("email", email.as_str(), now).await?;
                report.suppressed += u64::from(fourth);
            }
            EventKind::EmailComplained { .. } => {
                store
                    .suppress("email", email.as_str(), "complaint", now)
                    .await?;
                report.suppressed += 1;
            }
            _ => {}
        }
        let customer = match e.customer {
            Some(c) => Some(c),
            None => store
                .customer_by_email_key(email.match_key())
                .await?
                .map(|(_, external)| external),
        };
        match customer {
            Some(external) => events.push(EventRecord {
                source_id: Some(
                    ExternalId::parse(&format!("esp:{}", e.id))
                        .map_err(|err| StoreError::Data(format!("notice id `{}`: {err}", e.id)))?,
                ),
                customer: ExternalId::parse(&external)
                    .map_err(|err| StoreError::Data(format!("customer `{external}`: {err}")))?,
                at: e.at,
                kind: e.kind,
            }),
            None => report.unknown_recipients += 1,
        }
    }
    if !events.is_empty() {
        let mut session = store.begin_import(now).await?;
        session.insert_events(&events).await?;
        let counts = session.commit().await?;
        report.events = counts.events;
        report.duplicates += counts.duplicate_events;
    }
    Ok(report)
}

/// What reading bounce and complaint mail found, beside what applying it did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReportsRead {
    /// Reports read (DSN and ARF).
    pub reports: u64,
    /// Recipients by verdict (`hard`, `soft`, `sender`, `complaint`, `informational`).
    pub verdicts: std::collections::BTreeMap<String, u64>,
    /// Recipients whose message was found (by VERP tag or Message-ID).
    pub matched_messages: u64,
    /// Recipients a report did not name and whose message was not found: nothing applied.
    pub unnamed: u64,
}

/// Turns parsed reports into notices: each recipient with a verdict that acts becomes one
/// event, against the message the report names (VERP tag first, then the enclosed Message-ID).
pub async fn from_reports(
    store: &SqlStore,
    now: Timestamp,
    reports: &[(String, Report)],
) -> Result<(Vec<MailEvent>, ReportsRead), StoreError> {
    let mut out = Vec::new();
    let mut read = ReportsRead::default();
    let mut messages: HashMap<String, Option<winback_store::responses::MessageRef>> =
        HashMap::new();
    for (origin, r) in reports {
        read.reports += 1;
        let at = r
            .date
            .as_deref()
            .and_then(|d| d.parse::<jiff::Timestamp>().ok())
            .map(Timestamp::new)
            .filter(|t| *t <= now)
            .unwrap_or(now);
        // The report's own Message-ID (else where it was read from), hashed: ids stay short
        // and free of characters an id may not hold.
        let id_base = {
            use sha2::{Digest, Sha256};
            let source = r.report_id.clone().unwrap_or_else(|| origin.clone());
            hex::encode(&Sha256::digest(source.as_bytes())[..12])
        };
        for (n, rcpt) in r.recipients.iter().enumerate() {
            let verdict = match rcpt.verdict {
                Verdict::Hard => "hard",
                Verdict::Soft => "soft",
                Verdict::Sender => "sender",
                Verdict::Complaint => "complaint",
                Verdict::Informational => "informational",
            };
            *read.verdicts.entry(verdict.to_owned()).or_default() += 1;
            if rcpt.verdict == Verdict::Informational {
                continue;
            }
            let prefix = r.verp_tag.clone().or_else(|| {
                r.original_message_id
                    .as_deref()
                    .and_then(|m| m.strip_prefix("wb."))
                    .and_then(|m| m.split('@').next())
                    .map(str::to_owned)
            });
            let message = match &prefix {
                Some(p) => match messages.get(p) {
                    Some(m) => m.clone(),
                    None => {
                        let m = store.message_by_digest(p, rcpt.address.as_deref()).await?;
                        messages.insert(p.clone(), m.clone());
                        m
                    }
                },
                None => None,
            };
            let address = rcpt
                .address
                .clone()
                .or_else(|| message.as_ref().and_then(|m| m.recipient.clone()));
            let Some(email) = address.as_deref().and_then(|a| EmailAddress::parse(a).ok()) else {
                read.unnamed += 1;
                continue;
            };
            // A report about another address than the message went to (a forwarding
            // mailbox) is about that message all the same, but only the named address is
            // suppressed.
            if message.is_some() {
                read.matched_messages += 1;
            }
            let message_id = message.as_ref().map(|m| m.key.clone());
            let kind = match rcpt.verdict {
                Verdict::Complaint => EventKind::EmailComplained { message_id },
                Verdict::Hard => EventKind::EmailBounced {
                    bounce: BounceKind::Hard,
                    message_id,
                    diagnostic: rcpt.diagnostic.clone().or(rcpt.status.clone()),
                },
                _ => EventKind::EmailBounced {
                    bounce: BounceKind::Soft,
                    message_id,
                    diagnostic: rcpt.diagnostic.clone().or(rcpt.status.clone()),
                },
            };
            out.push(MailEvent {
                id: format!("{}:{id_base}:{n}", r.kind),
                email,
                at,
                kind,
                about_sender: rcpt.verdict == Verdict::Sender,
                customer: message.map(|m| m.customer),
            });
        }
    }
    Ok((out, read))
}
