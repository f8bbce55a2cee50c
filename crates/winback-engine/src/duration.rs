//! Durations and local times as campaign files write them: `"7d"`, `"2w 3d"`, `"36h"`,
//! `"09:00"`, `"09:00-20:00"`.
//!
//! Hand-written because the format is tiny and its errors must name what is wrong in the
//! marketer's terms; jiff's friendly format accepts calendar units (months) whose length depends
//! on a date, which a wait measured from an enrolment cannot honour exactly.

use std::fmt;

/// A span of whole seconds, at least one second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(i64);

impl Duration {
    /// Parses `"30d"`, `"2w"`, `"12h"`, `"45m"`, `"90s"` or several of them: `"1w 3d"`.
    /// Months are refused: their length varies; write days.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.trim();
        if text.is_empty() {
            return Err("empty duration; write e.g. \"7d\", \"12h\" or \"2w\"".into());
        }
        let mut total: i64 = 0;
        let mut number = String::new();
        for ch in text.chars() {
            if ch.is_ascii_digit() {
                number.push(ch);
                continue;
            }
            if ch.is_whitespace() {
                if number.is_empty() {
                    continue;
                }
                return Err(format!("`{raw}`: `{number}` has no unit (s, m, h, d or w)"));
            }
            let unit = match ch {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                'd' => 86_400,
                'w' => 604_800,
                'M' | 'y' => {
                    return Err(format!(
                        "`{raw}`: months and years vary in length; write days, e.g. \"90d\""
                    ));
                }
                other => return Err(format!("`{raw}`: unknown unit `{other}` (s, m, h, d or w)")),
            };
            if number.is_empty() {
                return Err(format!("`{raw}`: unit `{ch}` without a number"));
            }
            let n: i64 = number
                .parse()
                .map_err(|_| format!("`{raw}`: `{number}` is too large"))?;
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("`{raw}` is too long"))?;
            number.clear();
        }
        if !number.is_empty() {
            return Err(format!("`{raw}`: `{number}` has no unit (s, m, h, d or w)"));
        }
        if total <= 0 {
            return Err(format!("`{raw}` must be longer than zero"));
        }
        Ok(Self(total))
    }

    /// A duration of `seconds` (at least one).
    pub fn from_seconds(seconds: i64) -> Option<Self> {
        (seconds > 0).then_some(Self(seconds))
    }

    /// Whole seconds.
    pub fn seconds(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s % 604_800 == 0 {
            write!(f, "{}w", s / 604_800)
        } else if s % 86_400 == 0 {
            write!(f, "{}d", s / 86_400)
        } else if s % 3_600 == 0 {
            write!(f, "{}h", s / 3_600)
        } else if s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

/// A wall-clock time of day, to the minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime {
    minute_of_day: u16,
}

impl LocalTime {
    /// Parses `"HH:MM"` (24-hour).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = || format!("`{raw}` is not a time of day; write \"HH:MM\", e.g. \"09:30\"");
        let (h, m) = raw.trim().split_once(':').ok_or_else(bad)?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(Self {
            minute_of_day: h * 60 + m,
        })
    }

    /// `hour:minute`; `None` when out of range.
    pub fn hm(hour: u8, minute: u8) -> Option<Self> {
        (hour < 24 && minute < 60).then_some(Self {
            minute_of_day: u16::from(hour) * 60 + u16::from(minute),
        })
    }

    /// Minutes since midnight.
    pub fn minute_of_day(self) -> u16 {
        self.minute_of_day
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}",
            self.minute_of_day / 60,
            self.minute_of_day % 60
        )
    }
}

/// A daily window of local time, `start` inclusive, `end` exclusive. A window whose end is
/// before its start wraps midnight (`"21:00-08:00"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalWindow {
    /// Opens.
    pub start: LocalTime,
    /// Closes.
    pub end: LocalTime,
}

impl LocalWindow {
    /// Parses `"09:00-20:00"`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (a, b) = raw
            .split_once('-')
            .ok_or_else(|| format!("`{raw}` is not a window; write \"HH:MM-HH:MM\""))?;
        let start = LocalTime::parse(a)?;
        let end = LocalTime::parse(b)?;
        if start == end {
            return Err(format!("`{raw}` opens and closes at the same time"));
        }
        Ok(Self { start, end })
    }

    /// Whether `minute_of_day` falls inside.
    pub fn contains(self, minute_of_day: u16) -> bool {
        let (s, e) = (self.start.minute_of_day, self.end.minute_of_day);
        if s < e {
            (s..e).contains(&minute_of_day)
        } else {
            minute_of_day >= s || minute_of_day < e
        }
    }

    /// Minutes in the window.
    pub fn length_minutes(self) -> u16 {
        let (s, e) = (self.start.minute_of_day, self.end.minute_of_day);
        if s < e { e - s } else { 1440 - s + e }
    }
}

impl fmt::Display for LocalWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_units_and_sums() {
        assert_eq!(Duration::parse("7d").unwrap().seconds(), 7 * 86_400);
        assert_eq!(Duration::parse("1w 3d").unwrap().seconds(), 10 * 86_400);
        assert_eq!(Duration::parse("36h").unwrap().to_string(), "36h");
        assert_eq!(Duration::parse("90d").unwrap().to_string(), "90d");
        assert!(Duration::parse("3M").unwrap_err().contains("days"));
        assert!(Duration::parse("7").unwrap_err().contains("no unit"));
        assert!(Duration::parse("0d").is_err());
        assert!(Duration::parse("5x").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn windows_wrap_midnight() {
        let quiet = LocalWindow::parse("21:00-08:00").unwrap();
        assert!(quiet.contains(22 * 60));
        assert!(quiet.contains(7 * 60 + 59));
        assert!(!quiet.contains(8 * 60));
        assert_eq!(quiet.length_minutes(), 11 * 60);
        let day = LocalWindow::parse("09:00-20:00").unwrap();
        assert!(day.contains(9 * 60) && !day.contains(20 * 60));
        assert!(LocalTime::parse("24:00").is_err());
        assert!(LocalTime::parse("9:5").is_err());
    }
}
