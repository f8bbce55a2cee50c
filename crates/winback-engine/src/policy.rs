//! Send-time policies: consent and suppression, exits, the global frequency cap, quiet hours and
//! send windows in the contact's zone (SMS only 08:00–21:00 local), the deliverability ramp and
//! its circuit breaker. All pure: the store hands over a [`SendContext`] read in the same
//! transaction that records the [`Decision`].

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use winback_domain::{Channel, Timestamp};

use crate::duration::{Duration, LocalTime, LocalWindow};

/// A frequency cap: at most `max` marketing messages on `channel` per `per` days, across every
/// campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cap {
    /// Channel.
    pub channel: Channel,
    /// Messages allowed.
    pub max: u32,
    /// Window in days (1 = per day, 7 = per week).
    pub per_days: u32,
}

/// The deliverability ramp and breaker thresholds (seed 001: widen in steps of at most 10%).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RampSettings {
    /// Share of email-inactive addresses admitted at first.
    pub start_share: f64,
    /// How much the share widens per step (at most 0.10).
    pub step: f64,
    /// Attempts needed, at the current share, before widening; also the breaker's window.
    pub min_attempts: u32,
    /// Hard-bounce rate at or above which the provider pauses.
    pub max_hard_bounce_rate: f64,
    /// Complaint rate at or above which the provider pauses.
    pub max_complaint_rate: f64,
}

impl Default for RampSettings {
    fn default() -> Self {
        Self {
            start_share: 0.10,
            step: 0.10,
            min_attempts: 500,
            max_hard_bounce_rate: 0.02,
            max_complaint_rate: 0.001,
        }
    }
}

/// Global send-time settings (`[policy]` in `winback.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySettings {
    /// Local window in which marketing messages may leave.
    pub send_window: LocalWindow,
    /// The time zone of contacts without one.
    pub default_zone: String,
    /// Caps, per channel.
    pub caps: Vec<Cap>,
    /// The ramp.
    pub ramp: RampSettings,
    /// A message not sendable within this long after it was queued is dropped as expired.
    pub max_defer: Duration,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            send_window: LocalWindow::parse("09:00-20:00").expect("valid"),
            default_zone: "UTC".into(),
            caps: vec![
                Cap {
                    channel: Channel::Email,
                    max: 1,
                    per_days: 1,
                },
                Cap {
                    channel: Channel::Email,
                    max: 3,
                    per_days: 7,
                },
                Cap {
                    channel: Channel::Sms,
                    max: 1,
                    per_days: 7,
                },
            ],
            ramp: RampSettings::default(),
            max_defer: Duration::from_seconds(7 * 86_400).expect("positive"),
        }
    }
}

/// The legal SMS window: 08:00–21:00 in the contact's zone.
pub fn sms_window() -> LocalWindow {
    LocalWindow {
        start: LocalTime::hm(8, 0).expect("valid"),
        end: LocalTime::hm(21, 0).expect("valid"),
    }
}

/// When customer service may call a contact, in the contact's zone (`[policy.calls]`). The
/// default is the Dutch telemarketing code's: weekdays 09:00–21:00, Saturdays 10:00–16:00, never
/// on Sundays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallHours {
    /// Monday to Friday.
    pub weekdays: LocalWindow,
    /// Saturday (`None`: no calls).
    pub saturday: Option<LocalWindow>,
    /// Sunday (`None`: no calls).
    pub sunday: Option<LocalWindow>,
}

impl Default for CallHours {
    fn default() -> Self {
        Self {
            weekdays: LocalWindow::parse("09:00-21:00").expect("valid"),
            saturday: Some(LocalWindow::parse("10:00-16:00").expect("valid")),
            sunday: None,
        }
    }
}

impl CallHours {
    /// The window on a day of the week.
    pub fn on(&self, day: jiff::civil::Weekday) -> Option<LocalWindow> {
        use jiff::civil::Weekday::*;
        match day {
            Saturday => self.saturday,
            Sunday => self.sunday,
            _ => Some(self.weekdays),
        }
    }

    /// The first instant from `now` on at which a call may be made in `zone`; `None` when no
    /// day of the coming week has a window. Windows are taken as within one day (a window that
    /// wraps midnight is read as ending at midnight).
    pub fn next_open(&self, now: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let local = now.jiff().to_zoned(zone.clone());
        let minute = (local.hour() as u16) * 60 + local.minute() as u16;
        let mut date = local.date();
        for offset in 0..8 {
            if let Some(w) = self.on(date.weekday()) {
                let (s, e) = (w.start.minute_of_day(), w.end.minute_of_day());
                let e = if e > s { e } else { 1440 };
                let from = if offset == 0 { minute.max(s) } else { s };
                if from < e {
                    if offset == 0 && minute >= s {
                        return Some(now);
                    }
                    let at = date
                        .at((from / 60) as i8, (from % 60) as i8, 0, 0)
                        .to_zoned(zone.clone())
                        .ok()?;
                    return Some(Timestamp::new(at.timestamp()));
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

/// Where a mailbox provider's ramp stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RampState {
    /// Provider name (see [`mailbox_provider`]).
    pub provider: String,
    /// Share of email-inactive contacts admitted.
    pub share: f64,
    /// Attempts counted since the share last changed.
    pub attempts_at_share: u64,
    /// Paused by the breaker, with the reason.
    pub paused: Option<String>,
}

impl RampState {
    /// A new provider's state.
    pub fn new(provider: &str, settings: &RampSettings) -> Self {
        Self {
            provider: provider.to_owned(),
            share: settings.start_share.clamp(0.0, 1.0),
            attempts_at_share: 0,
            paused: None,
        }
    }
}

/// Outcomes of the last attempts to one provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderStats {
    /// Attempts in the window (the last `min_attempts` or more).
    pub attempts: u64,
    /// Of them, hard bounces.
    pub hard_bounces: u64,
    /// Of them, spam complaints.
    pub complaints: u64,
}

/// Moves the ramp after an attempt: trips the breaker when a rate crosses its threshold over
/// at least `min_attempts` attempts, else widens by `step` once `min_attempts` attempts have
/// gone out at the current share.
pub fn ramp_after_attempt(
    mut state: RampState,
    stats: ProviderStats,
    settings: &RampSettings,
) -> RampState {
    state.attempts_at_share += 1;
    if state.paused.is_some() {
        return state;
    }
    if stats.attempts >= u64::from(settings.min_attempts) {
        let hb = stats.hard_bounces as f64 / stats.attempts as f64;
        let cr = stats.complaints as f64 / stats.attempts as f64;
        if hb >= settings.max_hard_bounce_rate {
            state.paused = Some(format!(
                "hard bounces {:.2}% of the last {} attempts (limit {:.2}%)",
                hb * 100.0,
                stats.attempts,
                settings.max_hard_bounce_rate * 100.0
            ));
            return state;
        }
        if cr >= settings.max_complaint_rate {
            state.paused = Some(format!(
                "complaints {:.3}% of the last {} attempts (limit {:.3}%)",
                cr * 100.0,
                stats.attempts,
                settings.max_complaint_rate * 100.0
            ));
            return state;
        }
    }
    if state.share < 1.0 && state.attempts_at_share >= u64::from(settings.min_attempts) {
        state.share = (state.share + settings.step.min(0.10)).min(1.0);
        state.attempts_at_share = 0;
    }
    state
}

/// The mailbox provider of an address's domain: the big consumer providers by name, otherwise
/// the domain itself.
pub fn mailbox_provider(email: &str) -> String {
    let domain = email
        .rsplit_once('@')
        .map_or(email, |(_, d)| d)
        .to_ascii_lowercase();
    let named = match domain.as_str() {
        "gmail.com" | "googlemail.com" => "google",
        "outlook.com" | "hotmail.com" | "live.com" | "msn.com" | "hotmail.nl" | "live.nl"
        | "outlook.nl" => "microsoft",
        "yahoo.com" | "ymail.com" | "yahoo.nl" | "aol.com" => "yahoo",
        "icloud.com" | "me.com" | "mac.com" => "apple",
        "wp.pl" | "o2.pl" | "onet.pl" | "interia.pl" => "poland-portals",
        "ziggo.nl" | "kpnmail.nl" | "planet.nl" | "home.nl" => "nl-isps",
        _ => return domain,
    };
    named.to_owned()
}

/// What the store knows at send time.
#[derive(Debug, Clone)]
pub struct SendContext {
    /// Now.
    pub now: Timestamp,
    /// Channel of the message.
    pub channel: Channel,
    /// The contact's zone, when known.
    pub time_zone: Option<String>,
    /// An address for the channel is known.
    pub has_address: bool,
    /// Consent in force allows marketing on the channel.
    pub consent_ok: bool,
    /// On the suppression list (hard bounce, complaint, STOP, erased).
    pub suppressed: bool,
    /// The address belongs to an erased person (it came back on another record).
    pub erased: bool,
    /// Why the enrolment is no longer active, when it is not.
    pub enrolment_ended: Option<String>,
    /// The message is a farewell (sunset) or a transactional confirmation: caps do not apply.
    pub exempt_from_caps: bool,
    /// When earlier marketing messages on this channel left, newest first (7 days or more).
    pub recent_sends: Vec<Timestamp>,
    /// The campaign's own send window.
    pub campaign_window: Option<LocalWindow>,
    /// When the message was queued.
    pub queued_at: Timestamp,
    /// The contact has no human email engagement in 180 days.
    pub email_inactive: bool,
    /// The contact's position in [0, 1) for ramp admission (sticky).
    pub ramp_position: f64,
    /// The mailbox provider of the address, for email.
    pub provider: Option<String>,
    /// The provider's ramp as stored; `None` for a provider not seen yet (it starts at the
    /// configured share).
    pub ramp: Option<RampState>,
    /// The contact's own cap from the preference centre ("fewer emails", seed 004), checked
    /// beside the global caps.
    pub personal_cap: Option<Cap>,
    /// The channel's transport (the SMTP relay, the SMS provider) is paused after failing about
    /// itself: until when, and why. Sends wait for it; nobody is suppressed.
    pub transport_pause: Option<(Timestamp, String)>,
}

/// How long a transport is paused after its `failures`-th failure in a row: 15 minutes, then an
/// hour, then four hours (the soft-bounce retry schedule, so a relay outage and a full mailbox
/// are retried alike).
pub fn transport_backoff_seconds(failures: i64) -> i64 {
    match failures {
        ..=1 => 15 * 60,
        2 => 60 * 60,
        _ => 4 * 60 * 60,
    }
}

/// The cap a contact who chose "fewer emails" gets: one marketing email per two weeks.
pub const LOW_FREQUENCY_CAP: Cap = Cap {
    channel: Channel::Email,
    max: 1,
    per_days: 14,
};

/// Why a message will never be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// No address for the channel.
    NoAddress,
    /// No consent on the channel.
    NoConsent,
    /// Suppressed.
    Suppressed,
    /// The journey ended (order, unsubscribe, complaint, …).
    JourneyEnded(String),
    /// The address belongs to a person who was erased.
    Erased,
    /// Held back by a frequency cap until it was too late to send.
    Capped,
    /// Could not be sent in time (send windows, the deliverability ramp, a paused provider).
    Expired,
}

/// Dropped messages counted by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// No address for the channel.
    pub no_address: u64,
    /// No consent in force for the address.
    pub no_consent: u64,
    /// Suppressed.
    pub suppressed: u64,
    /// An erased person's address.
    pub erased: u64,
    /// The journey had ended.
    pub journey_ended: u64,
    /// Held back by a frequency cap too long.
    pub cap: u64,
    /// Not sendable in time.
    pub expired: u64,
}

impl DropCounts {
    /// Counts one drop.
    pub fn count(&mut self, reason: &DropReason) {
        *match reason {
            DropReason::NoAddress => &mut self.no_address,
            DropReason::NoConsent => &mut self.no_consent,
            DropReason::Suppressed => &mut self.suppressed,
            DropReason::Erased => &mut self.erased,
            DropReason::JourneyEnded(_) => &mut self.journey_ended,
            DropReason::Capped => &mut self.cap,
            DropReason::Expired => &mut self.expired,
        } += 1;
    }

    /// Adds another tally.
    pub fn add(&mut self, o: &DropCounts) {
        for (a, b) in self.fields_mut().into_iter().zip(o.fields()) {
            *a += b;
        }
    }

    fn fields(&self) -> [u64; 7] {
        [
            self.no_consent,
            self.suppressed,
            self.erased,
            self.expired,
            self.cap,
            self.no_address,
            self.journey_ended,
        ]
    }

    fn fields_mut(&mut self) -> [&mut u64; 7] {
        [
            &mut self.no_consent,
            &mut self.suppressed,
            &mut self.erased,
            &mut self.expired,
            &mut self.cap,
            &mut self.no_address,
            &mut self.journey_ended,
        ]
    }

    /// The non-zero reasons in words, e.g. "12 no consent, 3 suppressed".
    pub fn describe(&self) -> String {
        const NAMES: [&str; 7] = [
            "no consent",
            "suppressed",
            "erased",
            "expired",
            "cap",
            "no address",
            "journey ended",
        ];
        NAMES
            .iter()
            .zip(self.fields())
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{n} {name}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl DropReason {
    /// Stored text.
    pub fn label(&self) -> String {
        match self {
            Self::NoAddress => "no_address".into(),
            Self::NoConsent => "no_consent".into(),
            Self::Suppressed => "suppressed".into(),
            Self::JourneyEnded(r) => format!("journey_ended:{r}"),
            Self::Erased => "erased".into(),
            Self::Capped => "cap".into(),
            Self::Expired => "expired".into(),
        }
    }
}

/// What to do with a claimed message now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send it.
    Send,
    /// Not yet: try again at `until`.
    Defer {
        /// When.
        until: Timestamp,
        /// Why, for the log.
        reason: String,
    },
    /// Never.
    Drop(DropReason),
}

/// Retries of a message that soft-bounced or failed (at 15 minutes, an hour and four hours).
pub const RETRIES: i64 = 3;

/// Soft bounces of one address, counted across messages and retries, at sending and in later
/// reports (DSNs, ESP webhooks) alike, at which the address is suppressed: as many as one
/// message's first attempt and its three retries.
pub const SOFT_BOUNCES_SUPPRESS: i64 = RETRIES + 1;

/// Seconds until a message whose `attempt`-th attempt (from 1) soft-bounced or failed is tried
/// again: 15 minutes, then an hour, then four; `None` once its retries are spent.
pub fn retry_after_seconds(attempt: i64) -> Option<i64> {
    (attempt <= RETRIES).then(|| 15 * 60 * 4i64.pow((attempt.max(1) - 1) as u32))
}

/// Whether an address with `count` soft bounces is suppressed.
pub fn soft_bounces_suppress(count: i64) -> bool {
    count >= SOFT_BOUNCES_SUPPRESS
}

/// Decides one message. Hard rules (address, consent, suppression, exit) come first; then the
/// ones that only delay (window, cap, ramp); a message delayed past `max_defer` expires.
pub fn decide(ctx: &SendContext, settings: &PolicySettings) -> Decision {
    if let Some(reason) = &ctx.enrolment_ended {
        return Decision::Drop(DropReason::JourneyEnded(reason.clone()));
    }
    if !ctx.has_address {
        return Decision::Drop(DropReason::NoAddress);
    }
    if ctx.erased {
        return Decision::Drop(DropReason::Erased);
    }
    if ctx.suppressed {
        return Decision::Drop(DropReason::Suppressed);
    }
    if !ctx.consent_ok {
        return Decision::Drop(DropReason::NoConsent);
    }
    let deadline = ctx.queued_at.plus_seconds(settings.max_defer.seconds());
    let defer = |until: Timestamp, reason: String| {
        if until > deadline {
            Decision::Drop(DropReason::Expired)
        } else {
            Decision::Defer { until, reason }
        }
    };
    if let Some((until, why)) = &ctx.transport_pause {
        if *until > ctx.now {
            return defer(
                *until,
                format!("the {} transport is paused: {why}", ctx.channel),
            );
        }
    }
    let zone = ctx
        .time_zone
        .as_deref()
        .and_then(|z| TimeZone::get(z).ok())
        .or_else(|| TimeZone::get(&settings.default_zone).ok())
        .unwrap_or(TimeZone::UTC);
    let mut windows = vec![ctx.campaign_window.unwrap_or(settings.send_window)];
    if ctx.channel == Channel::Sms {
        windows.push(sms_window());
    }
    if let Some(open) = next_open(ctx.now, &zone, &windows) {
        if open > ctx.now {
            return defer(
                open,
                "outside the send window in the contact's time zone".into(),
            );
        }
    }
    if !ctx.exempt_from_caps {
        for cap in settings
            .caps
            .iter()
            .chain(ctx.personal_cap.iter())
            .filter(|c| c.channel == ctx.channel)
        {
            let since = ctx.now.plus_seconds(-i64::from(cap.per_days) * 86_400);
            let mut within: Vec<Timestamp> = ctx
                .recent_sends
                .iter()
                .copied()
                .filter(|t| *t > since)
                .collect();
            if within.len() >= cap.max as usize {
                within.sort();
                // Frees when the oldest counted send leaves the window.
                let idx = within.len() - cap.max as usize;
                let frees = within[idx].plus_seconds(i64::from(cap.per_days) * 86_400 + 1);
                if frees > deadline {
                    return Decision::Drop(DropReason::Capped);
                }
                return defer(
                    frees,
                    format!(
                        "frequency cap: {} {} per {} day(s)",
                        cap.max, cap.channel, cap.per_days
                    ),
                );
            }
        }
    }
    if ctx.channel == Channel::Email && ctx.email_inactive {
        let ramp = ctx.ramp.clone().or_else(|| {
            ctx.provider
                .as_deref()
                .map(|p| RampState::new(p, &settings.ramp))
        });
        if let Some(ramp) = &ramp {
            if let Some(why) = &ramp.paused {
                return defer(
                    ctx.now.plus_seconds(6 * 3_600),
                    format!("{} paused by the breaker: {why}", ramp.provider),
                );
            }
            if ctx.ramp_position >= ramp.share {
                return defer(
                    ctx.now.plus_seconds(86_400),
                    format!(
                        "deliverability ramp: {} admits {:.0}% of inactive addresses",
                        ramp.provider,
                        ramp.share * 100.0
                    ),
                );
            }
        }
    }
    Decision::Send
}

/// The first instant at or after `now` inside every window (in `zone`); `None` when the
/// windows never overlap.
pub fn next_open(now: Timestamp, zone: &TimeZone, windows: &[LocalWindow]) -> Option<Timestamp> {
    let mut t = now;
    // Each pass jumps to the next opening of a window that is closed; a few passes settle.
    for _ in 0..8 {
        let local = t.jiff().to_zoned(zone.clone());
        let minute = (local.hour() as u16) * 60 + local.minute() as u16;
        let closed = windows.iter().find(|w| !w.contains(minute));
        let Some(w) = closed else {
            return Some(t);
        };
        let start = w.start.minute_of_day();
        let date = local.date();
        let day = if minute < start {
            date
        } else {
            date.tomorrow().ok()?
        };
        let at = day
            .at((start / 60) as i8, (start % 60) as i8, 0, 0)
            .to_zoned(zone.clone())
            .ok()?;
        t = Timestamp::new(at.timestamp());
    }
    None
}

/// The instant of local time `at` on the first day, from `after` on, when it has not passed.
pub fn next_local_time(after: Timestamp, zone: &TimeZone, at: LocalTime) -> Timestamp {
    let local = after.jiff().to_zoned(zone.clone());
    let m = at.minute_of_day();
    let mk = |d: jiff::civil::Date| {
        d.at((m / 60) as i8, (m % 60) as i8, 0, 0)
            .to_zoned(zone.clone())
            .map(|z| Timestamp::new(z.timestamp()))
    };
    match mk(local.date()) {
        Ok(t) if t >= after => t,
        _ => local
            .date()
            .tomorrow()
            .ok()
            .and_then(|d| mk(d).ok())
            .unwrap_or(after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::new(s.parse().unwrap())
    }

    #[test]
    fn calls_keep_to_the_telemarketing_hours_in_the_contacts_zone() {
        let h = CallHours::default();
        let ams = TimeZone::get("Europe/Amsterdam").unwrap();
        let next = |now: &str| h.next_open(ts(now), &ams).unwrap();
        // Tuesday 2026-06-30, 10:00 CEST: open now.
        assert_eq!(next("2026-06-30T08:00:00Z"), ts("2026-06-30T08:00:00Z"));
        // Tuesday 07:30 CEST: at 09:00.
        assert_eq!(next("2026-06-30T05:30:00Z"), ts("2026-06-30T07:00:00Z"));
        // Tuesday 21:30 CEST: Wednesday 09:00.
        assert_eq!(next("2026-06-30T19:30:00Z"), ts("2026-07-01T07:00:00Z"));
        // Saturday 2026-07-04 09:00 CEST: at 10:00; 17:00: Monday 09:00 (no Sunday calls).
        assert_eq!(next("2026-07-04T07:00:00Z"), ts("2026-07-04T08:00:00Z"));
        assert_eq!(next("2026-07-04T15:00:00Z"), ts("2026-07-06T07:00:00Z"));
        // The same instant in Warsaw and in New York: the contact's own clock decides.
        let nyc = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            h.next_open(ts("2026-06-30T12:00:00Z"), &nyc).unwrap(),
            ts("2026-06-30T13:00:00Z"),
            "08:00 in New York: at 09:00 there"
        );
        let never = CallHours {
            saturday: None,
            sunday: None,
            weekdays: h.weekdays,
        };
        assert_eq!(
            never.next_open(ts("2026-07-04T08:00:00Z"), &ams).unwrap(),
            ts("2026-07-06T07:00:00Z")
        );
    }

    fn ctx(now: &str) -> SendContext {
        SendContext {
            now: ts(now),
            channel: Channel::Email,
            time_zone: Some("Europe/Amsterdam".into()),
            has_address: true,
            consent_ok: true,
            suppressed: false,
            erased: false,
            transport_pause: None,
            enrolment_ended: None,
            exempt_from_caps: false,
            recent_sends: vec![],
            campaign_window: None,
            queued_at: ts(now),
            email_inactive: false,
            ramp_position: 0.5,
            provider: None,
            ramp: None,
            personal_cap: None,
        }
    }

    #[test]
    fn hard_rules_drop() {
        let s = PolicySettings::default();
        let mut c = ctx("2026-03-02T10:00:00Z");
        assert_eq!(decide(&c, &s), Decision::Send);
        c.consent_ok = false;
        assert_eq!(decide(&c, &s), Decision::Drop(DropReason::NoConsent));
        c.suppressed = true;
        assert_eq!(decide(&c, &s), Decision::Drop(DropReason::Suppressed));
        c.enrolment_ended = Some("purchased".into());
        assert_eq!(
            decide(&c, &s),
            Decision::Drop(DropReason::JourneyEnded("purchased".into()))
        );
    }

    #[test]
    fn quiet_hours_follow_the_contacts_zone() {
        let s = PolicySettings::default();
        // 06:30 UTC is 07:30 in Amsterdam (winter): wait until 09:00 local = 08:00 UTC.
        let c = ctx("2026-03-02T06:30:00Z");
        match decide(&c, &s) {
            Decision::Defer { until, .. } => assert_eq!(until, ts("2026-03-02T08:00:00Z")),
            other => panic!("{other:?}"),
        }
        // 20:30 in Tokyo: tomorrow 09:00 Tokyo = 00:00 UTC.
        let mut c = ctx("2026-03-02T11:30:00Z");
        c.time_zone = Some("Asia/Tokyo".into());
        match decide(&c, &s) {
            Decision::Defer { until, .. } => assert_eq!(until, ts("2026-03-03T00:00:00Z")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sms_never_leaves_outside_8_to_21_local_even_with_a_wider_window() {
        let s = PolicySettings {
            send_window: LocalWindow::parse("06:00-23:00").unwrap(),
            ..PolicySettings::default()
        };
        let mut c = ctx("2026-07-01T05:30:00Z"); // 07:30 CEST
        c.channel = Channel::Sms;
        match decide(&c, &s) {
            Decision::Defer { until, .. } => assert_eq!(until, ts("2026-07-01T06:00:00Z")),
            other => panic!("{other:?}"),
        }
        let mut late = ctx("2026-07-01T19:30:00Z"); // 21:30 CEST
        late.channel = Channel::Sms;
        match decide(&late, &s) {
            Decision::Defer { until, .. } => assert_eq!(until, ts("2026-07-02T06:00:00Z")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn caps_count_every_campaign_and_say_when_they_free() {
        let s = PolicySettings::default();
        let mut c = ctx("2026-03-05T10:00:00Z");
        c.recent_sends = vec![ts("2026-03-04T12:00:00Z")];
        match decide(&c, &s) {
            Decision::Defer { until, reason } => {
                assert_eq!(until, ts("2026-03-05T12:00:01Z"));
                assert!(reason.contains("1 email per 1 day"));
            }
            other => panic!("{other:?}"),
        }
        c.recent_sends = vec![
            ts("2026-03-01T10:00:00Z"),
            ts("2026-03-02T10:00:00Z"),
            ts("2026-03-03T10:00:00Z"),
        ];
        match decide(&c, &s) {
            Decision::Defer { until, .. } => assert_eq!(until, ts("2026-03-08T10:00:01Z")),
            other => panic!("{other:?}"),
        }
        c.exempt_from_caps = true;
        assert_eq!(decide(&c, &s), Decision::Send);
    }

    #[test]
    fn fewer_emails_is_a_personal_cap_of_one_per_two_weeks() {
        let s = PolicySettings::default();
        let mut c = ctx("2026-03-12T10:00:00Z");
        c.recent_sends = vec![ts("2026-03-02T10:00:00Z")];
        assert_eq!(decide(&c, &s), Decision::Send, "global caps allow it");
        c.personal_cap = Some(LOW_FREQUENCY_CAP);
        match decide(&c, &s) {
            Decision::Defer { until, reason } => {
                assert_eq!(until, ts("2026-03-16T10:00:01Z"));
                assert!(reason.contains("per 14 day"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deferral_past_the_limit_expires() {
        let s = PolicySettings::default();
        let mut c = ctx("2026-03-05T10:00:00Z");
        c.queued_at = ts("2026-02-20T10:00:00Z");
        c.recent_sends = vec![ts("2026-03-05T09:00:00Z")];
        // Held back by the cap past the deadline: dropped, and the reason says it was the cap.
        assert_eq!(decide(&c, &s), Decision::Drop(DropReason::Capped));
        // Outside the window past the deadline: expired.
        let mut c = ctx("2026-03-05T23:00:00Z");
        c.queued_at = ts("2026-02-20T10:00:00Z");
        assert_eq!(decide(&c, &s), Decision::Drop(DropReason::Expired));
    }

    #[test]
    fn ramp_admits_a_share_of_inactive_addresses_and_widens_in_steps_of_ten_percent() {
        let rs = RampSettings::default();
        let s = PolicySettings::default();
        let mut state = RampState::new("google", &rs);
        let mut c = ctx("2026-03-05T10:00:00Z");
        c.email_inactive = true;
        c.ramp = Some(state.clone());
        c.ramp_position = 0.15;
        assert!(matches!(decide(&c, &s), Decision::Defer { .. }));
        c.ramp_position = 0.05;
        assert_eq!(decide(&c, &s), Decision::Send);
        let healthy = ProviderStats {
            attempts: 600,
            hard_bounces: 6,
            complaints: 0,
        };
        for _ in 0..499 {
            state = ramp_after_attempt(state, healthy, &rs);
        }
        assert_eq!(state.share, 0.10);
        state = ramp_after_attempt(state, healthy, &rs);
        assert!((state.share - 0.20).abs() < 1e-12);
        let bouncing = ProviderStats {
            attempts: 600,
            hard_bounces: 12,
            complaints: 0,
        };
        state = ramp_after_attempt(state, bouncing, &rs);
        assert!(
            state
                .paused
                .as_deref()
                .unwrap()
                .contains("hard bounces 2.00%")
        );
        let complaining = ProviderStats {
            attempts: 1_000,
            hard_bounces: 0,
            complaints: 1,
        };
        let fresh = ramp_after_attempt(RampState::new("yahoo", &rs), complaining, &rs);
        assert!(fresh.paused.is_some());
        // Under 500 attempts the breaker cannot judge.
        let few = ProviderStats {
            attempts: 100,
            hard_bounces: 50,
            complaints: 5,
        };
        assert!(
            ramp_after_attempt(RampState::new("x", &rs), few, &rs)
                .paused
                .is_none()
        );
        c.ramp = Some(state);
        assert!(
            matches!(decide(&c, &s), Decision::Defer { reason, .. } if reason.contains("breaker"))
        );
    }

    #[test]
    fn providers_group_consumer_domains() {
        assert_eq!(mailbox_provider("a@GMail.com"), "google");
        assert_eq!(mailbox_provider("a@hotmail.nl"), "microsoft");
        assert_eq!(mailbox_provider("a@shop.example"), "shop.example");
    }

    #[test]
    fn a_failed_message_is_retried_three_times_and_the_fourth_soft_bounce_suppresses() {
        let waits: Vec<Option<i64>> = (1..=4).map(retry_after_seconds).collect();
        assert_eq!(waits, [Some(900), Some(3_600), Some(14_400), None]);
        assert!(!soft_bounces_suppress(3));
        assert!(soft_bounces_suppress(4));
    }
}
