//! Dates and times as shops export them. Accepted, in order:
//! RFC 3339 / ISO 8601 with an offset (`2024-03-01T10:00:00Z`, `2024-03-01 10:00:00+01:00`),
//! Shopify's `2024-03-01 10:00:00 +0100`, ISO dates and times without offset (read in the
//! configured zone), compact `20240301`, `2024/03/01`, day-month-year with dots (`01.03.2024`),
//! slashed or dashed dates whose day/month order is configured or evident (`25/03/2024`), and
//! English month names (`1 Mar 2024`, `March 1, 2024`). `03/04/2024` without a configured order is
//! refused as ambiguous.

use jiff::{civil, tz::TimeZone};
use winback_domain::Timestamp;

/// How to read `03/04/2024`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DateOrder {
    /// Day, month, year (Europe).
    Dmy,
    /// Month, day, year (United States).
    Mdy,
}

/// Parses dates in one file's conventions.
#[derive(Debug, Clone)]
pub struct DateParser {
    tz: TimeZone,
    order: Option<DateOrder>,
    format: Option<String>,
}

impl DateParser {
    /// A parser reading offset-less times in `tz`, with an optional day/month order and an
    /// optional explicit `strftime` format that takes precedence.
    pub fn new(tz: TimeZone, order: Option<DateOrder>, format: Option<String>) -> Self {
        Self { tz, order, format }
    }

    /// Parses one value.
    pub fn parse(&self, raw: &str) -> Result<Timestamp, String> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("empty date".into());
        }
        let ts = self.parse_inner(s)?;
        let year = ts.date_utc().year();
        if !(1900..=2200).contains(&year) {
            return Err(format!("`{s}` is out of range (year {year})"));
        }
        Ok(ts)
    }

    fn zoned(&self, dt: civil::DateTime) -> Result<Timestamp, String> {
        self.tz
            .to_ambiguous_zoned(dt)
            .compatible()
            .map(|z| Timestamp::new(z.timestamp()))
            .map_err(|e| e.to_string())
    }

    fn parse_inner(&self, s: &str) -> Result<Timestamp, String> {
        if let Some(fmt) = &self.format {
            if fmt.contains("%z") || fmt.contains("%:z") || fmt.contains("%Q") {
                return jiff::Timestamp::strptime(fmt, s)
                    .map(Timestamp::new)
                    .map_err(|e| format!("`{s}` does not match format `{fmt}`: {e}"));
            }
            if let Ok(dt) = civil::DateTime::strptime(fmt, s) {
                return self.zoned(dt);
            }
            return civil::Date::strptime(fmt, s)
                .map_err(|e| format!("`{s}` does not match format `{fmt}`: {e}"))
                .and_then(|d| self.zoned(d.to_datetime(civil::Time::midnight())));
        }
        let b = s.as_bytes();
        // ISO forms start with a four-digit year and a dash.
        if b.len() >= 10 && b[4] == b'-' && b[..4].iter().all(u8::is_ascii_digit) {
            // A well-formed date far outside the range is out of range, not "not a date"
            // (9999-12-31T23:59:59Z is valid ISO 8601 but past what a timestamp holds).
            let year: i32 = s[..4].parse().unwrap_or(0);
            if !(1900..=2200).contains(&year)
                && s.get(..10)
                    .is_some_and(|d| d.parse::<civil::Date>().is_ok())
            {
                return Err(format!(
                    "`{s}` is out of range (year {year}; winback takes dates from 1900 to 2200)"
                ));
            }
            if let Ok(t) = s.parse::<jiff::Timestamp>() {
                return Ok(Timestamp::new(t));
            }
            if let Ok(t) = jiff::Timestamp::strptime("%Y-%m-%d %H:%M:%S %z", s) {
                return Ok(Timestamp::new(t));
            }
            if let Ok(dt) = s.parse::<civil::DateTime>() {
                return self.zoned(dt);
            }
            if let Ok(d) = s.parse::<civil::Date>() {
                return self.zoned(d.to_datetime(civil::Time::midnight()));
            }
            return Err(format!("`{s}` is not a valid ISO 8601 date or time"));
        }
        if b.len() == 8 && b.iter().all(u8::is_ascii_digit) {
            return civil::Date::strptime("%Y%m%d", s)
                .map_err(|e| format!("`{s}` is not a YYYYMMDD date: {e}"))
                .and_then(|d| self.zoned(d.to_datetime(civil::Time::midnight())));
        }
        if let Some(r) = self.numeric_date(s) {
            return r;
        }
        for fmt in [
            "%d %b %Y",
            "%d %B %Y",
            "%b %d, %Y",
            "%B %d, %Y",
            "%d %b %Y %H:%M",
            "%d %B %Y %H:%M",
        ] {
            if let Ok(dt) = civil::DateTime::strptime(fmt, s) {
                return self.zoned(dt);
            }
            if let Ok(d) = civil::Date::strptime(fmt, s) {
                return self.zoned(d.to_datetime(civil::Time::midnight()));
            }
        }
        Err(format!(
            "`{s}` is not a date winback understands (use ISO 8601, e.g. 2024-03-01 or 2024-03-01T10:00:00Z)"
        ))
    }

    /// `d/m/Y`, `m/d/Y`, `d-m-Y`, `d.m.Y`, `Y/m/d`, each with an optional ` HH:MM[:SS]`.
    fn numeric_date(&self, s: &str) -> Option<Result<Timestamp, String>> {
        let (date_part, time_part) = match s.split_once([' ', 'T']) {
            Some((d, t)) => (d, Some(t.trim())),
            None => (s, None),
        };
        let sep = date_part.chars().find(|c| matches!(c, '/' | '-' | '.'))?;
        let parts: Vec<&str> = date_part.split(sep).collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()))
        {
            return None;
        }
        let nums: Vec<i32> = parts.iter().filter_map(|p| p.parse().ok()).collect();
        if nums.len() != 3 {
            return None;
        }
        let (y, m, d) = if parts[0].len() == 4 {
            (nums[0], nums[1], nums[2])
        } else if parts[2].len() == 4 {
            let (a, b) = (nums[0], nums[1]);
            let order = if sep == '.' {
                Some(DateOrder::Dmy) // dotted dates are day-first wherever they are written
            } else if let Some(o) = self.order {
                Some(o)
            } else if a > 12 {
                Some(DateOrder::Dmy)
            } else if b > 12 || a == b {
                Some(DateOrder::Mdy)
            } else {
                None
            };
            match order {
                Some(DateOrder::Dmy) => (nums[2], b, a),
                Some(DateOrder::Mdy) => (nums[2], a, b),
                None => {
                    return Some(Err(format!(
                        "`{s}` is ambiguous: day/month or month/day? Set date_order = \"dmy\" or \"mdy\""
                    )));
                }
            }
        } else {
            return Some(Err(format!("`{s}` needs a four-digit year")));
        };
        let date = match civil::Date::new(y as i16, m as i8, d as i8) {
            Ok(d) => d,
            Err(e) => return Some(Err(format!("`{s}` is not a calendar date: {e}"))),
        };
        let time = match time_part {
            None => civil::Time::midnight(),
            Some(t) => match civil::Time::strptime("%H:%M:%S", t)
                .or_else(|_| civil::Time::strptime("%H:%M", t))
            {
                Ok(t) => t,
                Err(_) => {
                    return Some(Err(format!("`{s}` has a time winback does not understand")));
                }
            },
        };
        Some(self.zoned(date.to_datetime(time)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(order: Option<DateOrder>) -> DateParser {
        DateParser::new(TimeZone::get("Europe/Amsterdam").unwrap(), order, None)
    }
    fn iso(s: &str) -> String {
        p(None).parse(s).unwrap().to_string()
    }

    #[test]
    fn far_dates_are_out_of_range_not_unreadable() {
        let p = DateParser::new(TimeZone::UTC, None, None);
        for raw in ["9999-12-31T23:59:59Z", "9999-12-31", "1066-10-14"] {
            let e = p.parse(raw).unwrap_err();
            assert!(e.contains("out of range"), "{raw}: {e}");
        }
        assert!(
            p.parse("2024-13-01")
                .unwrap_err()
                .contains("not a valid ISO 8601")
        );
    }

    #[test]
    fn iso_forms_and_shopify() {
        assert_eq!(iso("2024-03-01T10:00:00Z"), "2024-03-01T10:00:00Z");
        assert_eq!(iso("2024-03-01 10:00:00+01:00"), "2024-03-01T09:00:00Z");
        assert_eq!(iso("2024-03-01 10:00:00 +0100"), "2024-03-01T09:00:00Z");
        // Offset-less values are read in the configured zone (CET in March, CEST in July).
        assert_eq!(iso("2024-03-01"), "2024-02-29T23:00:00Z");
        assert_eq!(iso("2024-07-01 12:30"), "2024-07-01T10:30:00Z");
        assert_eq!(iso("20240301"), "2024-02-29T23:00:00Z");
        assert_eq!(iso("2024/03/01"), "2024-02-29T23:00:00Z");
        assert_eq!(iso("1 Mar 2024"), "2024-02-29T23:00:00Z");
        assert_eq!(iso("March 1, 2024"), "2024-02-29T23:00:00Z");
    }

    #[test]
    fn day_month_order_is_never_guessed() {
        assert_eq!(iso("25/03/2024"), "2024-03-24T23:00:00Z");
        assert_eq!(iso("03/25/2024"), "2024-03-24T23:00:00Z");
        assert_eq!(iso("01.03.2024 08:15"), "2024-03-01T07:15:00Z");
        assert_eq!(iso("04/04/2024"), "2024-04-03T22:00:00Z");
        let err = p(None).parse("03/04/2024").unwrap_err();
        assert!(err.contains("ambiguous"), "{err}");
        assert_eq!(
            p(Some(DateOrder::Dmy))
                .parse("03/04/2024")
                .unwrap()
                .to_string(),
            "2024-04-02T22:00:00Z"
        );
        assert_eq!(
            p(Some(DateOrder::Mdy))
                .parse("03/04/2024")
                .unwrap()
                .to_string(),
            "2024-03-03T23:00:00Z"
        );
    }

    #[test]
    fn refuses_nonsense_and_out_of_range() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "31/02/2024",
            "0202-01-01",
            "1/2/24",
            "2024-03-01T25:00:00Z",
        ] {
            assert!(p(Some(DateOrder::Dmy)).parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn explicit_formats_win() {
        let parser = DateParser::new(TimeZone::UTC, None, Some("%d-%m-%Y %H.%M".into()));
        assert_eq!(
            parser.parse("03-04-2024 10.30").unwrap().to_string(),
            "2024-04-03T10:30:00Z"
        );
        assert!(parser.parse("2024-04-03").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "[0-9a-zA-Z/:. +-]{0,30}") {
            let _ = p(None).parse(&s);
        }

        #[test]
        fn iso_dates_round_trip(y in 1990i16..2100, m in 1i8..=12, d in 1i8..=28) {
            let s = format!("{y:04}-{m:02}-{d:02}T00:00:00Z");
            prop_assert_eq!(iso(&s), s);
        }
    }
}
