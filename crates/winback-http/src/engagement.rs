//! Opens and clicks are written in batches by one background task.
//!
//! A tracking redirect must answer in milliseconds at tens of thousands of requests a second;
//! one database transaction per click cannot (SQLite has one writer). Handlers hand the event to
//! this writer and answer at once; the writer stores up to [`MAX_BATCH`] events per transaction
//! and at most [`MAX_WAIT`] after the first one arrived. The trade-off is explicit: a crash loses
//! the engagement of the last few milliseconds, never a subscription change: unsubscribes,
//! preferences and survey answers are written before their response.
//!
//! A click is handed over by its message key alone ([`MessageEvent`]): the writer looks each
//! batch's messages up in one query, so a redirect reads nothing from the store. A message the
//! store no longer finds (its person erased) records nothing.
//!
//! [`Engagement::flush`] waits until everything handed over is stored; `winback serve` calls it
//! after the last request on shutdown.

use std::time::Duration;

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};
use winback_domain::{Clock, EventKind, EventRecord, ExternalId, Timestamp};
use winback_store::SqlStore;

/// Events per transaction at most.
pub const MAX_BATCH: usize = 2_000;
/// How long the first event of a batch waits for company.
pub const MAX_WAIT: Duration = Duration::from_millis(20);

/// An event of a message's contact, named by the message's key: the writer finds the contact.
#[derive(Debug, Clone)]
pub struct MessageEvent {
    /// The message's idempotency key (from a verified tracking token).
    pub message: String,
    /// The event's source id (its natural key).
    pub source_id: String,
    /// What happened.
    pub kind: EventKind,
    /// When.
    pub at: Timestamp,
}

enum Msg {
    Event(EventRecord),
    OfMessage(MessageEvent),
    Flush(oneshot::Sender<()>),
}

/// The handle handlers use.
#[derive(Debug, Clone)]
pub struct Engagement {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Event(e) => write!(f, "Event({})", e.kind.type_name()),
            Msg::OfMessage(e) => write!(f, "OfMessage({})", e.kind.type_name()),
            Msg::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl Engagement {
    /// Starts the writer on the current runtime.
    pub fn start(store: SqlStore, clock: std::sync::Arc<dyn Clock>) -> Self {
        // Bounded: when the database falls behind, handlers wait instead of memory growing.
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(rx, store, clock));
        Self { tx }
    }

    /// Hands an event to the writer.
    pub async fn record(&self, event: EventRecord) {
        if self.tx.send(Msg::Event(event)).await.is_err() {
            tracing::error!("engagement writer stopped; an event was not stored");
        }
    }

    /// Hands an event of a message's contact to the writer, which looks the message up.
    pub async fn record_for_message(&self, event: MessageEvent) {
        if self.tx.send(Msg::OfMessage(event)).await.is_err() {
            tracing::error!("engagement writer stopped; an event was not stored");
        }
    }

    /// Waits until every event handed over before this call is stored.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn writer(mut rx: mpsc::Receiver<Msg>, store: SqlStore, clock: std::sync::Arc<dyn Clock>) {
    let mut batch: Vec<EventRecord> = Vec::with_capacity(MAX_BATCH);
    let mut of_messages: Vec<MessageEvent> = Vec::new();
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(Msg::Event(e)) => batch.push(e),
                Some(Msg::OfMessage(e)) => of_messages.push(e),
                Some(Msg::Flush(ack)) => {
                    acks.push(ack);
                    break;
                }
                None => {}
            }
            if batch.len() + of_messages.len() >= MAX_BATCH {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => next = Some(m),
                Ok(None) | Err(_) => break,
            }
        }
        if !of_messages.is_empty() {
            let pending = std::mem::take(&mut of_messages);
            let n = pending.len();
            match contacts_of(&store, pending).await {
                Ok(found) => batch.extend(found),
                Err(e) => tracing::error!(
                    "{n} engagement events not stored: their messages could not be read: {e}"
                ),
            }
        }
        if !batch.is_empty() {
            if let Err(e) = store_batch(&store, clock.now(), &batch).await {
                tracing::error!("{} engagement events not stored: {e}", batch.len());
            }
            batch.clear();
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// The events of `of_messages` whose message the store finds, each against its contact; the
/// rest (an erased person's messages) are counted and left out.
async fn contacts_of(
    store: &SqlStore,
    of_messages: Vec<MessageEvent>,
) -> Result<Vec<EventRecord>, winback_store::StoreError> {
    let mut keys: Vec<&str> = of_messages.iter().map(|e| e.message.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let customers: HashMap<String, String> = store.message_customers(&keys).await?;
    let mut out = Vec::with_capacity(of_messages.len());
    for e in of_messages {
        let Some(customer) = customers.get(&e.message) else {
            metrics::counter!("winback_tracking_unknown_message_total").increment(1);
            tracing::debug!("no stored message {}: its event is not recorded", e.message);
            continue;
        };
        match (ExternalId::parse(&e.source_id), ExternalId::parse(customer)) {
            (Ok(source_id), Ok(customer)) => out.push(EventRecord {
                source_id: Some(source_id),
                customer,
                at: e.at,
                kind: e.kind,
            }),
            (Err(err), _) | (_, Err(err)) => {
                tracing::error!("an event of message {} not stored: {err}", e.message);
            }
        }
    }
    Ok(out)
}

async fn store_batch(
    store: &SqlStore,
    now: winback_domain::Timestamp,
    batch: &[EventRecord],
) -> Result<(), winback_store::StoreError> {
    let mut session = store.begin_import(now).await?;
    session.insert_events(batch).await?;
    let counts = session.commit().await?;
    metrics::counter!("winback_tracking_events_total").increment(counts.events);
    metrics::histogram!("winback_tracking_batch_size").record(batch.len() as f64);
    Ok(())
}
