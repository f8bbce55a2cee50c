use std::{
    fmt,
    sync::{Arc, Mutex},
};

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
    /// The UTC day this falls on, as days since 1970-01-01: purchase days are counted by it.
    pub fn day_number(self) -> i64 {
        self.as_micros().div_euclid(Self::DAY_MICROS)
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
