//! Opens and clicks are written in batches by one background task.
//!
//! A tracking redirect must answer in milliseconds at tens of thousands of requests a second;
//! one database transaction per click cannot (SQLite has one writer). Handlers hand the event to
//! this writer and answer at once; the writer stores up to [`MAX_BATCH`] events per transaction
//! and at most [`MAX_WAIT`] after the first one arrived. The trade-off is explicit: a crash loses
//! the engagement of the last few milliseconds, never a subscription change: unsubscribes,
//! preferences and survey answers are written before their response.
//!
//! [`Engagement::flush`] waits until everything handed over is stored; `winback serve` calls it
//! after the last request on shutdown.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use winback_domain::{Clock, EventRecord};
use winback_store::SqlStore;

/// Events per transaction at most.
pub const MAX_BATCH: usize = 2_000;
/// How long the first event of a batch waits for company.
pub const MAX_WAIT: Duration = Duration::from_millis(20);

enum Msg {
    Event(EventRecord),
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
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(Msg::Event(e)) => batch.push(e),
                Some(Msg::Flush(ack)) => {
                    acks.push(ack);
                    break;
                }
                None => {}
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => next = Some(m),
                Ok(None) | Err(_) => break,
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
