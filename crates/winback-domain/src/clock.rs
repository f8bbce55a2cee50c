use std::{
    fmt,
    sync::{Arc, Mutex},
};

/// The shop's calendar: `None` is UTC. Set once from the configuration's
/// `default_time_zone` by the binary (a process serves one shop); read by every day count.
static SHOP_ZONE: std::sync::RwLock<Option<jiff::tz::TimeZone>> = std::sync::RwLock::new(None);

/// Days are counted in `tz` from now on (the configuration's `default_time_zone`).
pub fn set_shop_time_zone(tz: jiff::tz::TimeZone) {
    let utc = tz.to_offset(jiff::Timestamp::UNIX_EPOCH).seconds() == 0
        && tz.iana_name().is_none_or(|n| n == "UTC" || n == "Etc/UTC");
    *SHOP_ZONE.write().unwrap_or_else(|e| e.into_inner()) = (!utc).then_some(tz);
}

/// The shop zone's UTC offset at `t`, in seconds (0 for UTC, without a lookup).
fn shop_offset_seconds(t: jiff::Timestamp) -> i64 {
    match SHOP_ZONE.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(tz) => i64::from(tz.to_offset(t).seconds()),
        None => 0,
    }
}

/// An instant in UTC with microsecond precision: what the store keeps and the clock returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(jiff::Timestamp);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp(jiff::Timestamp::UNIX_EPOCH);

    /// Wraps a jiff timestamp, truncated to whole microseconds so that it round-trips the store.
    pub fn new(ts: jiff::Timestamp) -> Self {
        let micros = ts.as_microsecond();
        Self::from_micros(micros).unwrap_or(Self(ts))
    }
    /// Microseconds since the Unix epoch, as stored.
    pub fn as_micros(self) -> i64 {
        self.0.as_microsecond()
    }
    /// Reads a stored value. `None` when out of jiff's range (years −9999..=9999).
    pub fn from_micros(micros: i64) -> Option<Self> {
        jiff::Timestamp::from_microsecond(micros).ok().map(Self)
    }
    /// The jiff timestamp, for calendar arithmetic in a contact's time zone.
    pub fn jiff(self) -> jiff::Timestamp {
        self.0
    }
    /// Microseconds in a day.
    pub const DAY_MICROS: i64 = 86_400_000_000;
    /// Whole days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Self) -> i64 {
        (later.as_micros() - self.as_micros()).div_euclid(Self::DAY_MICROS)
    }
    /// Fractional days from `self` to `later`.
    pub fn fractional_days_until(self, later: Self) -> f64 {
        (later.as_micros() - self.as_micros()) as f64 / Self::DAY_MICROS as f64
    }
    /// The calendar day this falls on in the shop's time zone ([`set_shop_time_zone`]), as
    /// days since 1970-01-01: purchase days, recency, intervals, model histories and cohort
    /// windows are counted by it. A date-only order of 1 May in Amsterdam (stored at local
    /// midnight, 30 April 22:00 UTC) is on 1 May, not the day before.
    pub fn day_number(self) -> i64 {
        let offset = shop_offset_seconds(self.0);
        (self.as_micros() + offset * 1_000_000).div_euclid(Self::DAY_MICROS)
    }
    /// The calendar date in the shop's time zone, for printing dates a person reads.
    pub fn date_local(self) -> jiff::civil::Date {
        match SHOP_ZONE.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(tz) => self.0.to_zoned(tz.clone()).date(),
            None => self.date_utc(),
        }
    }
    /// Local midnight of `date` in the shop's time zone.
    pub fn local_midnight(date: jiff::civil::Date) -> Option<Self> {
        let tz = SHOP_ZONE
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or(jiff::tz::TimeZone::UTC);
        date.to_zoned(tz).ok().map(|z| Self::new(z.timestamp()))
    }
    /// `self` plus a signed number of seconds, saturating at jiff's range.
    pub fn plus_seconds(self, seconds: i64) -> Self {
        let span = jiff::SignedDuration::from_secs(seconds);
        Self(self.0.checked_add(span).unwrap_or(if seconds < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        }))
    }
    /// The UTC calendar date, `YYYY-MM-DD`.
    pub fn date_utc(self) -> jiff::civil::Date {
        self.0.to_zoned(jiff::tz::TimeZone::UTC).date()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        jiff::Timestamp::deserialize(d).map(Self::new)
    }
}

/// Where "now" comes from. Journeys span months, so every component reads time through a clock
/// that tests and the simulator can move by hand.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::new(jiff::Timestamp::now())
    }
}

/// The wall clock, shifted: it starts at a given instant and runs at real speed from there.
/// `WINBACK_NOW` gives the CLI one, for reproducible runs and tests on dated data.
#[derive(Debug, Clone, Copy)]
pub struct ShiftedClock {
    offset_micros: i64,
}

impl ShiftedClock {
    /// A clock that reads `start` now.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            offset_micros: start.as_micros() - SystemClock.now().as_micros(),
        }
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        let real = SystemClock.now();
        Timestamp::from_micros(real.as_micros() + self.offset_micros).unwrap_or(real)
    }
}

/// A clock that only moves when told to; clones share one time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<Timestamp>>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }
    /// Moves the clock forward (or back, for a negative amount) by `seconds`.
    pub fn advance_seconds(&self, seconds: i64) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t = t.plus_seconds(seconds);
    }
    /// Moves the clock forward by whole days.
    pub fn advance_days(&self, days: i64) {
        self.advance_seconds(days * 86_400);
    }
    /// Sets the clock.
    pub fn set(&self, to: Timestamp) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let start = Timestamp::new("2024-01-01T00:00:00Z".parse().unwrap());
        let c = ManualClock::new(start);
        let c2 = c.clone();
        assert_eq!(c.now(), start);
        c.advance_days(14);
        assert_eq!(start.days_until(c2.now()), 14);
    }

    #[test]
    fn micros_round_trip_and_truncate() {
        let t: jiff::Timestamp = "2024-03-01T12:00:00.123456789Z".parse().unwrap();
        let ts = Timestamp::new(t);
        assert_eq!(Timestamp::from_micros(ts.as_micros()), Some(ts));
        assert_eq!(ts.as_micros() % 1_000_000, 123_456);
    }
}
