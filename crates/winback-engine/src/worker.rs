//! The worker: scheduling (audience, event and date triggers), stepping due enrolments into
//! the outbox, and dispatching the outbox through a [`Transport`] with send-time policies.
//!
//! Every pass reads the time from the injected [`Clock`] once, so a test can "advance 14 days,
//! run until idle, assert one email". Nothing here sleeps; the CLI's `winback worker` loops
//! [`Engine::run_once`] with a poll interval.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use jiff::tz::TimeZone;
use winback_domain::Clock;

use crate::audience::Evaluator;

/// Profiles whose audience rows a scan of the whole base holds at once: a million rows with
/// their features are gigabytes; 20,000 are tens of megabytes and one round trip per page.
pub const AUDIENCE_PAGE: usize = 20_000;
use crate::definition::{Action, Allocation, Campaign, Trigger};
use crate::journey::{self, Admission, Plan};
use crate::policy::{self, Decision, PolicySettings};
use crate::ports::{
    Candidate, ClaimedEnrolment, ClaimedMessage, EngineError, JourneyStore, Prepared, SendOutcome,
    Transport,
};

/// Messages prepared, delivered and recorded together: two transactions per chunk instead of
/// two per message. A crash between a chunk's prepare and its outcomes leaves at most this many
/// messages `in_doubt` (never resent), and a chunk's deliveries stay well inside a lease.
pub const SEND_CHUNK: usize = 100;

/// How long a worker holds a campaign's trigger lease: well past the longest evaluation
/// measured (the audience scan of a million customers took 56–90 s), so that a slow scan keeps
/// its lease, and short enough that a worker that died holding it delays the campaign's
/// entries by minutes, not hours.
pub const TRIGGER_LEASE_SECONDS: i64 = 900;

/// The `every`-long bucket (counted from the Unix epoch, in UTC) that `at` (microseconds) falls
/// in. An audience's entry keys name it, so a contact enters at most once per bucket.
fn audience_bucket(at: i64, every_seconds: i64) -> i64 {
    at.div_euclid(every_seconds.max(1) * 1_000_000)
}

/// An audience trigger last evaluated at `last` (0: never) is due at `now` when `now` is in a
/// later bucket: once per bucket, at the first pass after it begins. Counting `every` from the
/// last evaluation instead let the evaluation drift later by each pass's start, so a daily
/// audience evaluated at 00:01 was not due at 00:00 the next day and waited a whole day, and
/// two workers evaluated it a minute apart (measured at 200,000 customers, session 18).
fn audience_due(last: i64, now: i64, every_seconds: i64) -> bool {
    last == 0 || audience_bucket(now, every_seconds) > audience_bucket(last, every_seconds)
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Send-time policies.
    pub policy: PolicySettings,
    /// Key for offer codes.
    pub secret: Vec<u8>,
    /// Lease length for claims.
    pub lease_seconds: i64,
    /// Claims per batch.
    pub batch: usize,
    /// This worker's name (for leases and logs).
    pub worker_id: String,
    /// Date triggers also fire for dates this many days back (a worker that was down).
    pub date_grace_days: i64,
    /// Deliveries in flight at once (an SMTP relay's round trips are most of a send: match the
    /// relay's connection pool).
    pub send_concurrency: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            policy: PolicySettings::default(),
            secret: b"winback-development-secret".to_vec(),
            lease_seconds: 60,
            batch: 500,
            worker_id: format!("worker-{}", std::process::id()),
            date_grace_days: 2,
            send_concurrency: 4,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Contacts enrolled (treated).
    pub enrolled: u64,
    /// Contacts enrolled into the holdout.
    pub held_out: u64,
    /// Enrolments advanced.
    pub advanced: u64,
    /// Journey steps executed.
    pub steps: u64,
    /// Messages delivered.
    pub sent: u64,
    /// Messages deferred by a policy.
    pub deferred: u64,
    /// Messages dropped by a policy.
    pub dropped: u64,
    /// The dropped messages by reason.
    pub drops: crate::policy::DropCounts,
    /// Delivery failures (bounces included).
    pub failed: u64,
    /// Of those, failures of the relay or provider itself (it is paused; nobody suppressed).
    pub transport_failures: u64,
    /// Claims released after an expired lease.
    pub released: u64,
    /// Sends found in doubt.
    pub in_doubt: u64,
    /// Journeys ended by an order, unsubscribe or complaint.
    pub exited: u64,
}

impl PassStats {
    /// Whether the pass did anything that may enable more work.
    pub fn busy(&self) -> bool {
        self.enrolled
            + self.held_out
            + self.advanced
            + self.sent
            + self.dropped
            + self.failed
            + self.released
            + self.exited
            > 0
    }

    /// Adds another pass's counts.
    pub fn add(&mut self, o: &PassStats) {
        self.enrolled += o.enrolled;
        self.held_out += o.held_out;
        self.advanced += o.advanced;
        self.steps += o.steps;
        self.sent += o.sent;
        self.deferred += o.deferred;
        self.dropped += o.dropped;
        self.drops.add(&o.drops);
        self.failed += o.failed;
        self.transport_failures += o.transport_failures;
        self.released += o.released;
        self.in_doubt += o.in_doubt;
        self.exited += o.exited;
    }
}

/// The engine over a store, a transport and a clock.
pub struct Engine<'a, S, T> {
    store: &'a S,
    transport: &'a T,
    clock: &'a dyn Clock,
    settings: EngineSettings,
    cache: Mutex<HashMap<(winback_domain::CampaignId, i64), Arc<Campaign>>>,
    /// Where a pass's dispatch time went, for the `winback::worker` log line.
    dispatch_phases: Mutex<DispatchPhases>,
}

/// Wall time of a pass's dispatch by part (measured, not read from the injected clock: these
/// say how long the machine took, not what time it is in the journey).
#[derive(Debug, Default, Clone, Copy)]
struct DispatchPhases {
    claim: std::time::Duration,
    prepare: std::time::Duration,
    deliver: std::time::Duration,
    finish: std::time::Duration,
}

impl<'a, S: JourneyStore, T: Transport> Engine<'a, S, T> {
    /// An engine.
    pub fn new(
        store: &'a S,
        transport: &'a T,
        clock: &'a dyn Clock,
        settings: EngineSettings,
    ) -> Self {
        Self {
            store,
            transport,
            clock,
            settings,
            cache: Mutex::new(HashMap::new()),
            dispatch_phases: Mutex::new(DispatchPhases::default()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    async fn campaign(
        &self,
        id: winback_domain::CampaignId,
        version: i64,
    ) -> Result<Arc<Campaign>, EngineError> {
        if let Some(c) = self.cache.lock().expect("cache lock").get(&(id, version)) {
            return Ok(c.clone());
        }
        let source = self.store.campaign_source(id, version).await?;
        let c = Campaign::parse(&format!("campaign {id} v{version}"), &source)
            .map_err(|e| EngineError::Campaign(id.to_string(), e.to_string()))?;
        let c = Arc::new(c);
        self.cache
            .lock()
            .expect("cache lock")
            .insert((id, version), c.clone());
        Ok(c)
    }

    /// One pass: recover leases, schedule, step, dispatch.
    pub async fn run_once(&self) -> Result<PassStats, EngineError> {
        let mut stats = PassStats::default();
        let start = std::time::Instant::now();
        let reaped = self.store.reap(self.clock.now()).await?;
        stats.exited = self.store.process_exits(self.clock.now()).await?;
        stats.released = reaped.released;
        stats.in_doubt = reaped.in_doubt;
        let exits = start.elapsed();
        let start = std::time::Instant::now();
        stats.add(&self.schedule().await?);
        let schedule = start.elapsed();
        let start = std::time::Instant::now();
        // Waits whose event has come become due now; once per pass, not per batch.
        self.store.wake_waiting(self.clock.now()).await?;
        loop {
            let s = self.step_due().await?;
            stats.add(&s);
            if s.advanced == 0 {
                break;
            }
        }
        let step = start.elapsed();
        let start = std::time::Instant::now();
        *self.dispatch_phases.lock().expect("phases lock") = DispatchPhases::default();
        loop {
            let s = self.dispatch_due().await?;
            stats.add(&s);
            if s.sent + s.dropped + s.failed + s.deferred == 0 {
                break;
            }
        }
        let d = *self.dispatch_phases.lock().expect("phases lock");
        tracing::info!(
            target: "winback::worker",
            exits_s = exits.as_secs_f64(),
            schedule_s = schedule.as_secs_f64(),
            step_s = step.as_secs_f64(),
            dispatch_s = start.elapsed().as_secs_f64(),
            claim_s = d.claim.as_secs_f64(),
            prepare_s = d.prepare.as_secs_f64(),
            deliver_s = d.deliver.as_secs_f64(),
            outcomes_s = d.finish.as_secs_f64(),
            sent = stats.sent,
            dropped = stats.dropped,
            deferred = stats.deferred,
            "engine pass"
        );
        Ok(stats)
    }

    /// Passes until one does nothing new (at most `max_passes`).
    pub async fn run_until_idle(&self, max_passes: usize) -> Result<PassStats, EngineError> {
        let mut total = PassStats::default();
        for _ in 0..max_passes.max(1) {
            let s = self.run_once().await?;
            total.add(&s);
            if !s.busy() {
                break;
            }
        }
        Ok(total)
    }

    /// Evaluates triggers of active campaigns and enrols who qualifies. Audience and date
    /// triggers that are due read the whole base once, a page of [`AUDIENCE_PAGE`] profiles at
    /// a time, for all of them together; event triggers read only the rows of the profiles
    /// their events name. A pass holds one page and the candidates, never the whole base.
    ///
    /// Of several workers, one evaluates the triggers at a time: the schedule takes the active
    /// campaigns' trigger leases first, all or none ([`TRIGGER_LEASE_SECONDS`]), so two workers
    /// never scan the base at once.
    pub async fn schedule(&self) -> Result<PassStats, EngineError> {
        let now = self.clock.now();
        let mut active = Vec::new();
        for rec in self.store.campaigns().await? {
            if rec.status == crate::CampaignStatus::Active {
                let c = self.campaign(rec.id, rec.version).await?;
                active.push((rec, c));
            }
        }
        if active.is_empty() {
            return Ok(PassStats::default());
        }
        let ids: Vec<winback_domain::CampaignId> = active.iter().map(|(rec, _)| rec.id).collect();
        let worker = &self.settings.worker_id;
        let held = self
            .store
            .claim_triggers(&ids, worker, now, TRIGGER_LEASE_SECONDS)
            .await?;
        active.retain(|(rec, _)| held.contains(&rec.id));
        // Whether the cursors say a campaign is due is read after taking its lease: a worker
        // that read them before another worker's evaluation ended would evaluate it again.
        let stats = self.evaluate_triggers(now, active).await;
        // Given back whether the evaluation went through or not (a worker that dies holding
        // leases leaves them to expire).
        self.store.release_triggers(&held, worker).await?;
        stats
    }

    /// [`Engine::schedule`] for the campaigns whose trigger leases this worker holds.
    async fn evaluate_triggers(
        &self,
        now: winback_domain::Timestamp,
        active: Vec<(crate::ports::CampaignRecord, Arc<Campaign>)>,
    ) -> Result<PassStats, EngineError> {
        let today = now.day_number();
        let mut stats = PassStats::default();
        // Which campaigns scan the base this pass.
        let mut scans: Vec<bool> = Vec::with_capacity(active.len());
        for (rec, c) in &active {
            let due = match &c.trigger {
                Trigger::Audience { every } => {
                    let last = self.store.trigger_cursor(rec.id).await?;
                    audience_due(last, now.as_micros(), every.seconds())
                }
                // Dates are checked once per day (the cursor holds the day number).
                Trigger::Date { .. } => self.store.trigger_cursor(rec.id).await? < today,
                Trigger::Event { .. } => false,
            };
            scans.push(due);
        }
        let mut found: Vec<Vec<Candidate>> = vec![Vec::new(); active.len()];
        // Where the schedule's time goes (`WINBACK_LOG=winback::worker=info`): reading the
        // base's pages, matching them, then the event triggers and enrolling the candidates.
        let (mut read, mut matching) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        if scans.iter().any(|s| *s) {
            let ev = Evaluator::new();
            let mut after = None;
            loop {
                let t = std::time::Instant::now();
                let page = self.store.audience_page(now, after, AUDIENCE_PAGE).await?;
                read += t.elapsed();
                let t = std::time::Instant::now();
                let Some(last) = page.last() else {
                    break;
                };
                after = Some(last.row.profile_id);
                for (i, (_, c)) in active.iter().enumerate() {
                    if !scans[i] {
                        continue;
                    }
                    match &c.trigger {
                        Trigger::Audience { every } => {
                            let audience = c.audience.as_ref().expect("checked on load");
                            let hits = audience.evaluate_parallel(&page, 2);
                            let bucket = audience_bucket(now.as_micros(), every.seconds());
                            found[i].extend(hits.matched.into_iter().map(|p| Candidate {
                                profile_id: p,
                                trigger_key: format!("audience:{bucket}"),
                                start: now,
                            }));
                        }
                        Trigger::Date { .. } => {
                            for e in &page {
                                let zone = e
                                    .time_zone
                                    .as_deref()
                                    .and_then(|z| TimeZone::get(z).ok())
                                    .unwrap_or(TimeZone::UTC);
                                if let Some((key, start)) = journey::date_entry(
                                    c,
                                    &e.row,
                                    e.first_order_at,
                                    &zone,
                                    now,
                                    self.settings.date_grace_days,
                                ) {
                                    if c.audience
                                        .as_ref()
                                        .is_none_or(|a| a.matches(&ev, &e.row, None) == Ok(true))
                                    {
                                        found[i].push(Candidate {
                                            profile_id: e.row.profile_id,
                                            trigger_key: format!("date:{key}"),
                                            start,
                                        });
                                    }
                                }
                            }
                        }
                        Trigger::Event { .. } => {}
                    }
                }
                matching += t.elapsed();
                if page.len() < AUDIENCE_PAGE {
                    break;
                }
            }
        }
        let candidates_found: usize = found.iter().map(Vec::len).sum();
        let t = std::time::Instant::now();
        for (i, (rec, c)) in active.into_iter().enumerate() {
            let mut candidates = std::mem::take(&mut found[i]);
            match &c.trigger {
                Trigger::Audience { .. } => {
                    if !scans[i] {
                        continue;
                    }
                    self.store.advance_cursor(rec.id, now.as_micros()).await?;
                }
                Trigger::Date { .. } => {
                    if !scans[i] {
                        continue;
                    }
                    self.store.advance_cursor(rec.id, today).await?;
                }
                Trigger::Event { event } => {
                    let label = event.label();
                    let batch = self.store.trigger_events(rec.id, &label, 10_000).await?;
                    let Some(last) = batch.cursor else {
                        continue;
                    };
                    // Old events (a history import, a backlog) do not start journeys.
                    let oldest = now.plus_seconds(-c.policy.max_late.seconds());
                    let wanted: Vec<_> = batch
                        .events
                        .into_iter()
                        .filter(|e| e.at >= oldest)
                        .collect();
                    if let (Some(aud), false) = (&c.audience, wanted.is_empty()) {
                        let rows = self
                            .rows_of(now, wanted.iter().map(|e| e.profile_id))
                            .await?;
                        let by_id: HashMap<
                            winback_domain::ProfileId,
                            &crate::audience::AudienceRow,
                        > = rows.iter().map(|e| (e.row.profile_id, &e.row)).collect();
                        let ev = Evaluator::new();
                        candidates.extend(
                            wanted
                                .into_iter()
                                .filter(|e| {
                                    by_id
                                        .get(&e.profile_id)
                                        .is_some_and(|r| aud.matches(&ev, r, None) == Ok(true))
                                })
                                .map(|e| Candidate {
                                    profile_id: e.profile_id,
                                    trigger_key: e.key,
                                    start: now,
                                }),
                        );
                    } else {
                        candidates.extend(wanted.into_iter().map(|e| Candidate {
                            profile_id: e.profile_id,
                            trigger_key: e.key,
                            start: now,
                        }));
                    }
                    self.store.advance_cursor(rec.id, last).await?;
                }
            }
            // Soft opt-ins cover similar products only: a campaign that markets something else
            // (`similar_products = false`) reaches explicit opt-ins alone.
            if !c.similar_products && !candidates.is_empty() {
                let rows = self
                    .rows_of(now, candidates.iter().map(|k| k.profile_id))
                    .await?;
                let soft: std::collections::HashSet<winback_domain::ProfileId> = rows
                    .iter()
                    .filter(|e| {
                        e.row.email_consent == "soft_opt_in" || e.row.sms_consent == "soft_opt_in"
                    })
                    .map(|e| e.row.profile_id)
                    .collect();
                candidates.retain(|k| !soft.contains(&k.profile_id));
            }
            if candidates.is_empty() {
                continue;
            }
            let variants: Vec<String> = c
                .experiment
                .variants
                .iter()
                .map(|(v, _)| v.clone())
                .collect();
            let arms = if c.experiment.allocation == Allocation::Thompson {
                self.store
                    .arm_stats(rec.id, &variants, c.conversion_window.seconds())
                    .await?
            } else {
                Vec::new()
            };
            let campaign = c.clone();
            let admit = move |cand: &Candidate, h: &journey::EntryHistory| -> Admission {
                journey::admit(&campaign, cand.profile_id, h, &arms, cand.start, now)
            };
            for chunk in candidates.chunks(5_000) {
                let (entered, held) = self
                    .store
                    .enrol(rec.id, rec.version, c.exclusive, chunk, now, &admit)
                    .await?;
                stats.enrolled += entered;
                stats.held_out += held;
            }
        }
        tracing::info!(
            target: "winback::worker",
            audience_pages_s = read.as_secs_f64(),
            audience_match_s = matching.as_secs_f64(),
            enrol_s = t.elapsed().as_secs_f64(),
            candidates = candidates_found,
            "schedule"
        );
        Ok(stats)
    }

    /// Audience rows of `profiles` (each once), read a page at a time.
    async fn rows_of(
        &self,
        now: winback_domain::Timestamp,
        profiles: impl Iterator<Item = winback_domain::ProfileId>,
    ) -> Result<Vec<crate::ports::AudienceEntry>, EngineError> {
        let mut ids: Vec<winback_domain::ProfileId> = profiles.collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(AUDIENCE_PAGE) {
            rows.extend(self.store.audience_rows_of(now, chunk).await?);
        }
        Ok(rows)
    }

    /// Claims one batch of due enrolments and advances each.
    pub async fn step_due(&self) -> Result<PassStats, EngineError> {
        let now = self.clock.now();
        let claimed = self
            .store
            .claim_due(
                &self.settings.worker_id,
                now,
                self.settings.lease_seconds,
                self.settings.batch,
            )
            .await?;
        if claimed.is_empty() {
            return Ok(PassStats::default());
        }
        let mut campaigns = BTreeMap::new();
        for c in &claimed {
            if let std::collections::btree_map::Entry::Vacant(v) =
                campaigns.entry((c.campaign_id, c.version))
            {
                v.insert(self.campaign(c.campaign_id, c.version).await?);
            }
        }
        let full: Vec<bool> = claimed
            .iter()
            .map(|c| needs_full(&campaigns[&(c.campaign_id, c.version)], c))
            .collect();
        let snaps = self.store.snapshots(&claimed, &full, now).await?;
        let plans: Vec<(ClaimedEnrolment, Plan)> = {
            let eval = Evaluator::new();
            claimed
                .into_iter()
                .zip(snaps)
                .map(|(c, s)| {
                    let campaign = &campaigns[&(c.campaign_id, c.version)];
                    let plan = journey::advance(
                        campaign,
                        &c.enrolment,
                        &s,
                        now,
                        &self.settings.secret,
                        &eval,
                    );
                    (c, plan)
                })
                .collect()
        };
        let steps: u64 = plans.iter().map(|(_, p)| u64::from(p.steps_run)).sum();
        let applied = self.store.apply_plans(&plans, now).await?;
        for (id, _) in campaigns.keys() {
            self.store.finish_campaign_if_done(*id, now).await?;
        }
        Ok(PassStats {
            advanced: applied,
            steps,
            ..PassStats::default()
        })
    }

    /// Claims one batch of due messages, applies the send-time policies and delivers, a chunk
    /// of [`SEND_CHUNK`] at a time: the chunk's checks and decisions in one transaction, its
    /// deliveries, then its outcomes in one more.
    pub async fn dispatch_due(&self) -> Result<PassStats, EngineError> {
        let now = self.clock.now();
        let mut phases = DispatchPhases::default();
        let start = std::time::Instant::now();
        let claimed = self
            .store
            .claim_messages(
                &self.settings.worker_id,
                now,
                self.settings.lease_seconds,
                self.settings.batch,
            )
            .await?;
        phases.claim += start.elapsed();
        let mut stats = PassStats::default();
        if claimed.is_empty() {
            self.add_phases(&phases);
            return Ok(stats);
        }
        // Each campaign's own send window applies on top of the global one.
        let mut windows = HashMap::new();
        for rec in self.store.campaigns().await? {
            if claimed.iter().any(|m| m.campaign_id == rec.id) {
                let c = self.campaign(rec.id, rec.version).await?;
                windows.insert(rec.id, c.policy.send_window);
            }
        }
        let ramp_settings = self.settings.policy.ramp;
        let ramp = move |state: Option<policy::RampState>, provider: &str, stats| {
            let state = state.unwrap_or_else(|| policy::RampState::new(provider, &ramp_settings));
            policy::ramp_after_attempt(state, stats, &ramp_settings)
        };
        let policy = &self.settings.policy;
        let decide = |m: &ClaimedMessage, ctx: &policy::SendContext| {
            let mut ctx = ctx.clone();
            ctx.campaign_window = windows.get(&m.campaign_id).copied().flatten();
            policy::decide(&ctx, policy)
        };
        let mut queue: VecDeque<ClaimedMessage> = claimed.into();
        while !queue.is_empty() {
            let chunk: Vec<ClaimedMessage> = queue.drain(..queue.len().min(SEND_CHUNK)).collect();
            let start = std::time::Instant::now();
            let prepared = self
                .store
                .prepare_sends(
                    &chunk,
                    self.clock.now(),
                    self.settings.lease_seconds,
                    &decide,
                )
                .await?;
            phases.prepare += start.elapsed();
            let mut later = Vec::new();
            let mut to_deliver = Vec::new();
            for (m, p) in chunk.into_iter().zip(prepared) {
                match p {
                    Prepared::Lost => {}
                    Prepared::Later => later.push(m),
                    Prepared::Decided(Decision::Send, d) => {
                        to_deliver.push((m, d.expect("a send decision carries the message")));
                    }
                    Prepared::Decided(Decision::Defer { .. }, _) => stats.deferred += 1,
                    Prepared::Decided(Decision::Drop(reason), _) => {
                        stats.dropped += 1;
                        stats.drops.count(&reason);
                    }
                }
            }
            // Held back behind an earlier message to the same contact: first in the next chunk.
            for m in later.into_iter().rev() {
                queue.push_front(m);
            }
            let start = std::time::Instant::now();
            // After the relay or provider itself failed, the rest of the chunk is not
            // attempted: it goes back to pending, and the channel's pause defers it. So is
            // what a slow relay (or a domain's rate limit) has not reached by half the lease:
            // its `sending` rows must be recorded before the lease ends, or another worker's
            // reaper would call them in doubt.
            // The chunk's first delivery always goes, so every chunk makes progress.
            let halted = std::sync::atomic::AtomicBool::new(false);
            let started = std::sync::atomic::AtomicUsize::new(0);
            let budget = std::time::Duration::from_secs(
                u64::try_from(self.settings.lease_seconds / 2).unwrap_or(0),
            );
            let outcomes: Vec<(ClaimedMessage, Option<SendOutcome>)> =
                futures_util::stream::iter(to_deliver)
                    .map(|(m, d)| {
                        let (halted, started) = (&halted, &started);
                        async move {
                            let late = started.load(std::sync::atomic::Ordering::SeqCst) > 0
                                && start.elapsed() > budget;
                            if halted.load(std::sync::atomic::Ordering::SeqCst) || late {
                                return (m, None);
                            }
                            started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let outcome = self.transport.deliver(&d).await;
                            if matches!(outcome, SendOutcome::TransportFailure(_)) {
                                halted.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                            (m, Some(outcome))
                        }
                    })
                    .buffered(self.settings.send_concurrency.max(1))
                    .collect()
                    .await;
            for (_, outcome) in &outcomes {
                match outcome {
                    None => stats.deferred += 1,
                    Some(SendOutcome::Sent { .. }) => stats.sent += 1,
                    Some(SendOutcome::TransportFailure(_)) => {
                        stats.failed += 1;
                        stats.transport_failures += 1;
                    }
                    Some(_) => stats.failed += 1,
                }
            }
            phases.deliver += start.elapsed();
            let start = std::time::Instant::now();
            self.store
                .finish_sends(&outcomes, self.clock.now(), &ramp)
                .await?;
            phases.finish += start.elapsed();
        }
        self.add_phases(&phases);
        Ok(stats)
    }

    fn add_phases(&self, p: &DispatchPhases) {
        let mut d = self.dispatch_phases.lock().expect("phases lock");
        d.claim += p.claim;
        d.prepare += p.prepare;
        d.deliver += p.deliver;
        d.finish += p.finish;
    }
}

/// Whether advancing this enrolment may evaluate a branch (which needs the audience row and the
/// journey facts): a walk from the current step to the next wait.
fn needs_full(c: &Campaign, e: &ClaimedEnrolment) -> bool {
    let mut i = e.enrolment.step;
    let mut first = true;
    for _ in 0..=c.steps.len() {
        let Some(s) = c.steps.get(i) else {
            return false;
        };
        match &s.action {
            Action::Branch { .. } => return true,
            // The wait ends here; its timeout exit may lead to a branch.
            Action::Wait {
                on_timeout: Some(t),
                ..
            } if first && e.enrolment.resume && Some(*t) != s.next && reaches_branch(c, *t) => {
                return true;
            }
            Action::Wait { .. } if first && e.enrolment.resume => {}
            Action::Wait { .. } => return false,
            _ => {}
        }
        first = false;
        match s.next {
            Some(j) => i = j,
            None => return false,
        }
    }
    false
}

fn reaches_branch(c: &Campaign, mut i: usize) -> bool {
    for _ in 0..=c.steps.len() {
        let Some(s) = c.steps.get(i) else {
            return false;
        };
        match &s.action {
            Action::Branch { .. } => return true,
            Action::Wait { .. } => return false,
            _ => {}
        }
        match s.next {
            Some(j) => i = j,
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn a_daily_audience_is_due_at_the_first_pass_of_each_utc_day() {
        let day = 86_400;
        let evaluated = 20_000 * 24 * HOUR + 60_000_000; // 00:01 on day 20,000
        assert!(!audience_due(evaluated, evaluated + 23 * HOUR, day));
        // 00:00:01 the next day: less than 24 hours later, yet a new day.
        assert!(audience_due(evaluated, 20_001 * 24 * HOUR + 1_000_000, day));
        assert!(audience_due(0, evaluated, day), "never evaluated");
    }

    proptest! {
        /// Passes at any times, each evaluating what is due: every bucket a pass fell in is
        /// evaluated exactly once, at its first pass.
        #[test]
        fn each_bucket_is_evaluated_once(
            every in 1i64..200_000,
            mut passes in proptest::collection::vec(1i64..10_000_000_000_000, 1..60),
        ) {
            passes.sort_unstable();
            let mut last = 0;
            let mut evaluated = Vec::new();
            for now in &passes {
                if audience_due(last, *now, every) {
                    evaluated.push(audience_bucket(*now, every));
                    last = *now;
                }
            }
            let mut buckets: Vec<i64> = passes.iter().map(|t| audience_bucket(*t, every)).collect();
            buckets.dedup();
            prop_assert_eq!(evaluated, buckets);
        }
    }
}
