//! Timestamp formats and time zones of source files, converted to UTC nanoseconds.
//!
//! Zones are fixed offsets, any IANA zone by name (chrono-tz's copy of the tz
//! database, e.g. `Europe/London`, `Asia/Tokyo`), or the built-in US
//! daylight-saving rule (Eastern, Central) kept for datasets recorded with it.

use chrono::format::{Parsed, StrftimeItems, parse};
use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc, Weekday,
};
use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch, UTC.
pub type TimestampNs = i64;

/// How the timestamp column is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeFormat {
    /// ISO 8601 / RFC 3339: `2024-01-01T23:01:00Z`, `...+02:00`, or without offset
    /// (then in the source zone); `T` or a space; optional seconds and fraction; a bare date.
    Iso8601,
    /// `YYYY-MM-DD HH:MM` in the source zone.
    DateTimeMinutes,
    /// `MM/DD/YYYY` (midnight in the source zone).
    UsDate,
    /// A chrono strftime pattern, e.g. `%Y-%m-%d %I-%p`; missing minutes/seconds are zero,
    /// a date-only pattern means midnight; an offset in the pattern wins over the source zone.
    Pattern(String),
    EpochSeconds,
    EpochMillis,
    EpochMicros,
    EpochNanos,
}

/// A US zone with the daylight-saving rules in force since 1987.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsZone {
    Eastern,
    Central,
}

/// The zone timestamps without an explicit offset are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Zone {
    /// A fixed offset east of UTC in seconds (0 = UTC).
    Fixed(i32),
    /// A US zone with daylight saving.
    Us(UsZone),
    /// An IANA zone by name, with its whole history of offsets.
    Named(chrono_tz::Tz),
}

impl std::str::FromStr for Zone {
    type Err = TimeError;

    /// `UTC`/`Z`/empty, a fixed offset `+05:30`/`-0400`, or any IANA zone name
    /// (`America/New_York`, `Europe/Berlin`, ...).
    fn from_str(name: &str) -> Result<Self, TimeError> {
        let n = name.trim();
        if n.is_empty() || n.eq_ignore_ascii_case("utc") || n == "Z" || n == "Etc/UTC" {
            return Ok(Zone::UTC);
        }
        if let Some(off) = parse_offset(n) {
            return Ok(Zone::Fixed(off));
        }
        n.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
            TimeError(format!(
                "{n:?} is not UTC, an offset like +02:00 or an IANA time zone name (e.g. America/New_York)"
            ))
        })
    }
}

/// `+HH:MM`, `-HHMM` or `+HH` east of UTC, in seconds.
fn parse_offset(t: &str) -> Option<i32> {
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !(digits.len() == 2 || digits.len() == 4) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = if digits.len() == 4 {
        digits[2..].parse().ok()?
    } else {
        0
    };
    (h <= 23 && m <= 59).then_some(sign * (h * 3600 + m * 60))
}

impl Zone {
    pub const UTC: Zone = Zone::Fixed(0);

    /// Offset east of UTC, in seconds, in force at the UTC instant `utc`.
    pub fn offset_at_utc(self, utc: NaiveDateTime) -> i32 {
        match self {
            Zone::Fixed(s) => s,
            Zone::Named(tz) => tz.offset_from_utc_datetime(&utc).fix().local_minus_utc(),
            Zone::Us(z) => {
                let std = z.standard_offset();
                let (start, end) = us_dst_bounds_utc(utc.year(), std);
                if utc >= start && utc < end {
                    std + 3600
                } else {
                    std
                }
            }
        }
    }

    /// The UTC instant of a local wall-clock time. In the autumn overlap the
    /// earlier (daylight) instant is taken; a time in the spring gap does not exist.
    pub fn local_to_utc(self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        match self {
            Zone::Fixed(s) => Some(local - Duration::seconds(i64::from(s))),
            // The earlier instant of an overlap, as for the US rule; none in a gap.
            Zone::Named(tz) => tz
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.naive_utc()),
            Zone::Us(z) => {
                let std = z.standard_offset();
                for off in [std + 3600, std] {
                    let utc = local - Duration::seconds(i64::from(off));
                    if self.offset_at_utc(utc) == off {
                        return Some(utc);
                    }
                }
                None
            }
        }
    }

    /// The local wall-clock time of a UTC instant.
    pub fn utc_to_local(self, utc: NaiveDateTime) -> NaiveDateTime {
        utc + Duration::seconds(i64::from(self.offset_at_utc(utc)))
    }
}

impl UsZone {
    fn standard_offset(self) -> i32 {
        match self {
            UsZone::Eastern => -5 * 3600,
            UsZone::Central => -6 * 3600,
        }
    }
}

fn nth_weekday(year: i32, month: u32, wd: Weekday, n: u8) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, wd, n).unwrap_or(NaiveDate::MIN)
}

fn last_weekday(year: i32, month: u32, wd: Weekday) -> NaiveDate {
    let first_next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }
    .unwrap_or(NaiveDate::MIN);
    let mut d = first_next.pred_opt().unwrap_or(NaiveDate::MIN);
    while d.weekday() != wd {
        d = d.pred_opt().unwrap_or(NaiveDate::MIN);
    }
    d
}

/// Daylight saving starts at 02:00 standard time and ends at 02:00 daylight time (01:00 standard).
fn us_dst_bounds_utc(year: i32, std_offset: i32) -> (NaiveDateTime, NaiveDateTime) {
    let (start, end) = if year >= 2007 {
        (
            nth_weekday(year, 3, Weekday::Sun, 2),
            nth_weekday(year, 11, Weekday::Sun, 1),
        )
    } else {
        (
            nth_weekday(year, 4, Weekday::Sun, 1),
            last_weekday(year, 10, Weekday::Sun),
        )
    };
    let two = |d: NaiveDate| d.and_hms_opt(2, 0, 0).unwrap_or_default();
    let std = Duration::seconds(i64::from(std_offset));
    (two(start) - std, two(end) - std - Duration::hours(1))
}

/// Why one timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError(pub String);

/// Parses one timestamp cell into UTC nanoseconds.
pub fn parse_timestamp(
    text: &str,
    format: &TimeFormat,
    zone: Zone,
) -> Result<TimestampNs, TimeError> {
    let t = text.trim();
    let bad = |why: &str| TimeError(format!("{t:?} is not a valid timestamp ({why})"));
    let epoch = |mul: i64| -> Result<TimestampNs, TimeError> {
        t.parse::<i64>()
            .map_err(|_| bad("not an integer"))?
            .checked_mul(mul)
            .ok_or_else(|| bad("out of range"))
    };
    let local = |naive: NaiveDateTime| -> Result<TimestampNs, TimeError> {
        let utc = zone
            .local_to_utc(naive)
            .ok_or_else(|| bad("local time skipped by daylight saving"))?;
        to_ns(utc).ok_or_else(|| bad("out of range"))
    };
    match format {
        TimeFormat::EpochSeconds => epoch(1_000_000_000),
        TimeFormat::EpochMillis => epoch(1_000_000),
        TimeFormat::EpochMicros => epoch(1_000),
        TimeFormat::EpochNanos => epoch(1),
        TimeFormat::Iso8601 => {
            if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
                return dt
                    .with_timezone(&Utc)
                    .timestamp_nanos_opt()
                    .ok_or_else(|| bad("out of range"));
            }
            for p in [
                "%Y-%m-%dT%H:%M:%S%.f%:z",
                "%Y-%m-%d %H:%M:%S%.f%:z",
                "%Y-%m-%dT%H:%M%:z",
                "%Y-%m-%d %H:%M%:z",
                "%Y-%m-%dT%H:%M:%S%.fZ",
                "%Y-%m-%dT%H:%MZ",
            ] {
                if let Ok(dt) = DateTime::parse_from_str(t, p) {
                    return dt
                        .with_timezone(&Utc)
                        .timestamp_nanos_opt()
                        .ok_or_else(|| bad("out of range"));
                }
            }
            for p in [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
                "%Y-%m-%d %H:%M",
            ] {
                if let Ok(n) = NaiveDateTime::parse_from_str(t, p) {
                    return local(n);
                }
            }
            let d =
                NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| bad("expected ISO 8601"))?;
            local(d.and_hms_opt(0, 0, 0).unwrap_or_default())
        }
        TimeFormat::DateTimeMinutes => local(
            NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M")
                .map_err(|_| bad("expected YYYY-MM-DD HH:MM"))?,
        ),
        TimeFormat::UsDate => {
            let d =
                NaiveDate::parse_from_str(t, "%m/%d/%Y").map_err(|_| bad("expected MM/DD/YYYY"))?;
            local(d.and_hms_opt(0, 0, 0).unwrap_or_default())
        }
        TimeFormat::Pattern(p) => {
            let mut parsed = Parsed::new();
            parse(&mut parsed, t, StrftimeItems::new(p))
                .map_err(|e| bad(&format!("pattern {p}: {e}")))?;
            if parsed.hour_div_12().is_some() && parsed.minute().is_none() {
                parsed.set_minute(0).map_err(|e| bad(&e.to_string()))?;
            }
            let date = parsed
                .to_naive_date()
                .map_err(|e| bad(&format!("pattern {p}: {e}")))?;
            let time = if parsed.hour_div_12().is_some() {
                parsed
                    .to_naive_time()
                    .map_err(|e| bad(&format!("pattern {p}: {e}")))?
            } else {
                chrono::NaiveTime::MIN
            };
            let naive = date.and_time(time);
            match parsed.offset() {
                Some(off) => to_ns(naive - Duration::seconds(i64::from(off)))
                    .ok_or_else(|| bad("out of range")),
                None => local(naive),
            }
        }
    }
}

/// UTC nanoseconds of a naive UTC date-time.
pub fn to_ns(utc: NaiveDateTime) -> Option<TimestampNs> {
    utc.and_utc().timestamp_nanos_opt()
}

/// Naive UTC date-time of nanoseconds since the epoch.
pub fn from_ns(ns: TimestampNs) -> NaiveDateTime {
    Utc.timestamp_nanos(ns).naive_utc()
}

/// RFC 3339 UTC text with `Z`, seconds always, fraction only when non-zero.
pub fn format_ns(ns: TimestampNs) -> String {
    let dt = Utc.timestamp_nanos(ns);
    if ns.rem_euclid(1_000_000_000) == 0 {
        dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        dt.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    #[test]
    fn iso_variants() {
        let z = Zone::UTC;
        assert_eq!(
            parse_timestamp("2024-01-01T23:01:00Z", &TimeFormat::Iso8601, z),
            Ok(ns("2024-01-01T23:01:00Z"))
        );
        assert_eq!(
            parse_timestamp("2024-01-01T23:01:00+01:00", &TimeFormat::Iso8601, z),
            Ok(ns("2024-01-01T22:01:00Z"))
        );
        assert_eq!(
            parse_timestamp("2024-01-01 23:01", &TimeFormat::Iso8601, Zone::Fixed(3600)),
            Ok(ns("2024-01-01T22:01:00Z"))
        );
        assert_eq!(
            parse_timestamp("2024-01-01", &TimeFormat::Iso8601, z),
            Ok(ns("2024-01-01T00:00:00Z"))
        );
        assert!(parse_timestamp("01/02/2024", &TimeFormat::Iso8601, z).is_err());
    }

    #[test]
    fn other_formats() {
        let z = Zone::UTC;
        assert_eq!(
            parse_timestamp("2024-01-02 03:04", &TimeFormat::DateTimeMinutes, z),
            Ok(ns("2024-01-02T03:04:00Z"))
        );
        assert_eq!(
            parse_timestamp("01/02/2024", &TimeFormat::UsDate, z),
            Ok(ns("2024-01-02T00:00:00Z"))
        );
        let p = TimeFormat::Pattern("%Y-%m-%d %I-%p".into());
        assert_eq!(
            parse_timestamp("2019-10-17 09-AM", &p, z),
            Ok(ns("2019-10-17T09:00:00Z"))
        );
        assert_eq!(
            parse_timestamp("2017-07-01 12-PM", &p, z),
            Ok(ns("2017-07-01T12:00:00Z"))
        );
        assert_eq!(
            parse_timestamp("2017-07-01 12-AM", &p, z),
            Ok(ns("2017-07-01T00:00:00Z"))
        );
        assert_eq!(
            parse_timestamp("1704150060", &TimeFormat::EpochSeconds, z),
            Ok(ns("2024-01-01T23:01:00Z"))
        );
        assert_eq!(
            parse_timestamp("1704150060000", &TimeFormat::EpochMillis, z),
            Ok(ns("2024-01-01T23:01:00Z"))
        );
        assert_eq!(
            parse_timestamp("1704150060000000", &TimeFormat::EpochMicros, z),
            Ok(ns("2024-01-01T23:01:00Z"))
        );
        assert_eq!(
            parse_timestamp("1704150060000000000", &TimeFormat::EpochNanos, z),
            Ok(ns("2024-01-01T23:01:00Z"))
        );
    }

    #[test]
    fn any_iana_zone_by_name() {
        let f = TimeFormat::DateTimeMinutes;
        let zone = |n: &str| n.parse::<Zone>().unwrap();
        // London: GMT in January, BST (UTC+1) in July.
        let london = zone("Europe/London");
        assert_eq!(
            parse_timestamp("2024-01-15 08:00", &f, london),
            Ok(ns("2024-01-15T08:00:00Z"))
        );
        assert_eq!(
            parse_timestamp("2024-07-15 08:00", &f, london),
            Ok(ns("2024-07-15T07:00:00Z"))
        );
        // Tokyo, no daylight saving; Sydney's summer is in January (UTC+11).
        assert_eq!(
            parse_timestamp("2024-07-15 09:00", &f, zone("Asia/Tokyo")),
            Ok(ns("2024-07-15T00:00:00Z"))
        );
        assert_eq!(
            parse_timestamp("2024-01-15 10:00", &f, zone("Australia/Sydney")),
            Ok(ns("2024-01-14T23:00:00Z"))
        );
        // New York by name agrees with the built-in US rule, before and after 2007.
        let ny = zone("America/New_York");
        for t in [
            "2005-04-03 03:00",
            "2005-10-30 00:30",
            "2024-03-10 03:00",
            "2024-11-03 01:30",
        ] {
            assert_eq!(
                parse_timestamp(t, &f, ny),
                parse_timestamp(t, &f, Zone::Us(UsZone::Eastern)),
                "{t}"
            );
        }
        // A local time skipped by the spring change does not exist.
        assert!(parse_timestamp("2024-03-31 01:30", &f, london).is_err());
        assert_eq!(zone("+05:30"), Zone::Fixed(19_800));
        assert_eq!(zone("-0400"), Zone::Fixed(-14_400));
        assert_eq!(zone("utc"), Zone::UTC);
        let e = "Mars/Olympus".parse::<Zone>().unwrap_err();
        assert!(e.0.contains("IANA"), "{}", e.0);
    }

    #[test]
    fn us_daylight_saving() {
        let c = Zone::Us(UsZone::Central);
        // January: CST (UTC-6); July: CDT (UTC-5).
        assert_eq!(
            parse_timestamp("2024-01-15 17:00", &TimeFormat::DateTimeMinutes, c),
            Ok(ns("2024-01-15T23:00:00Z"))
        );
        assert_eq!(
            parse_timestamp("2024-07-15 17:00", &TimeFormat::DateTimeMinutes, c),
            Ok(ns("2024-07-15T22:00:00Z"))
        );
        // 2024-03-10 02:30 does not exist in Chicago.
        assert!(parse_timestamp("2024-03-10 02:30", &TimeFormat::DateTimeMinutes, c).is_err());
        // Pre-2007 rule: 2005-04-03 first Sunday of April.
        let e = Zone::Us(UsZone::Eastern);
        assert_eq!(
            parse_timestamp("2005-04-03 03:00", &TimeFormat::DateTimeMinutes, e),
            Ok(ns("2005-04-03T07:00:00Z"))
        );
        assert_eq!(
            parse_timestamp("2005-04-03 01:00", &TimeFormat::DateTimeMinutes, e),
            Ok(ns("2005-04-03T06:00:00Z"))
        );
    }
}
