//! Civil-calendar helpers over UTC nanosecond timestamps (no clock is read here).

use crate::CoreError;

/// Nanoseconds per day.
pub const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// Days since 1970-01-01 of a UTC nanosecond timestamp.
pub fn day_index(ts: i64) -> i64 {
    ts.div_euclid(NANOS_PER_DAY)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date (year, month, day) of a day index.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` of a timestamp.
pub fn format_date(ts: i64) -> String {
    let (y, m, d) = civil_from_days(day_index(ts));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Year and month of a timestamp, as `year * 12 + month - 1` (a month index).
pub fn month_index(ts: i64) -> i64 {
    let (y, m, _) = civil_from_days(day_index(ts));
    y * 12 + i64::from(m) - 1
}

/// Days in a month of the proleptic Gregorian calendar.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// The common shapes of a bar file's timestamp, read straight from bytes with no
/// allocation: `YYYY-MM-DDTHH:MM:SSZ` (a space for `T` too) and `YYYY-MM-DD`.
/// `None` for anything else, including impossible dates, so the caller can fall
/// back to a full parser that explains the fault.
pub fn parse_utc_fast(b: &[u8]) -> Option<i64> {
    fn digits(b: &[u8]) -> Option<i64> {
        b.iter().try_fold(0i64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    }
    if !(b.len() == 10 || b.len() == 20) || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&b[0..4])?;
    let m = u32::try_from(digits(&b[5..7])?).ok()?;
    let d = u32::try_from(digits(&b[8..10])?).ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    let day = days_from_civil(y, m, d) * NANOS_PER_DAY;
    if b.len() == 10 {
        return Some(day);
    }
    if !(b[10] == b'T' || b[10] == b' ') || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let (h, mi, s) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    Some(day + ((h * 60 + mi) * 60 + s) * 1_000_000_000)
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS[.fff]Z` or with `+00:00` into UTC nanoseconds.
pub fn parse_timestamp(text: &str) -> Result<i64, CoreError> {
    let bad = |reason: &str| CoreError::Parse {
        what: "timestamp",
        text: text.into(),
        reason: reason.into(),
    };
    let t = text.trim();
    if let Some(ns) = parse_utc_fast(t.as_bytes()) {
        return Ok(ns);
    }
    let num = |s: &str| -> Result<i64, CoreError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected digits"));
        }
        s.parse::<i64>().map_err(|_| bad("expected digits"))
    };
    if t.len() < 10 || t.as_bytes()[4] != b'-' || t.as_bytes()[7] != b'-' {
        return Err(bad("expected YYYY-MM-DD"));
    }
    let y = num(&t[0..4])?;
    let mo = u32::try_from(num(&t[5..7])?).map_err(|_| bad("month"))?;
    let d = u32::try_from(num(&t[8..10])?).map_err(|_| bad("day"))?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad("month or day out of range"));
    }
    let mut nanos = days_from_civil(y, mo, d) * NANOS_PER_DAY;
    let rest = &t[10..];
    if rest.is_empty() {
        return Ok(nanos);
    }
    let rest = rest
        .strip_prefix('T')
        .or_else(|| rest.strip_prefix(' '))
        .ok_or_else(|| bad("expected T"))?;
    let rest = rest
        .strip_suffix('Z')
        .or_else(|| rest.strip_suffix("+00:00"))
        .ok_or_else(|| bad("only UTC (Z or +00:00) is accepted"))?;
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let parts: Vec<&str> = hms.split(':').collect();
    if parts.len() != 3 {
        return Err(bad("expected HH:MM:SS"));
    }
    let (h, mi, s) = (num(parts[0])?, num(parts[1])?, num(parts[2])?);
    if h > 23 || mi > 59 || s > 60 {
        return Err(bad("time out of range"));
    }
    nanos += ((h * 60 + mi) * 60 + s) * 1_000_000_000;
    if !frac.is_empty() {
        if frac.len() > 9 {
            return Err(bad("more than 9 fractional digits"));
        }
        let f = num(frac)?;
        nanos += f * 10i64.pow(9 - u32::try_from(frac.len()).unwrap_or(9));
    }
    Ok(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_dates() {
        for z in [-800_000, -1, 0, 1, 10_000, 18_000, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        let ts = parse_timestamp("1998-05-14T00:00:00Z").unwrap();
        assert_eq!(format_date(ts), "1998-05-14");
        assert_eq!(
            parse_timestamp("2021-03-31").unwrap(),
            parse_timestamp("2021-03-31T00:00:00+00:00").unwrap()
        );
        assert_eq!(
            parse_timestamp("1970-01-01T00:00:01.5Z").unwrap(),
            1_500_000_000
        );
        assert!(parse_timestamp("2021-13-01").is_err());
        assert_eq!(
            parse_utc_fast(b"2025-05-20T00:01:00Z"),
            Some(parse_timestamp("2025-05-20T00:01:00.000+00:00").unwrap())
        );
        assert_eq!(
            parse_utc_fast(b"2024-02-29 23:59:59Z"),
            Some(parse_timestamp("2024-02-29T23:59:59Z").unwrap())
        );
        assert_eq!(parse_utc_fast(b"2023-02-29"), None);
        assert_eq!(parse_utc_fast(b"2023-04-31T00:00:00Z"), None);
        assert_eq!(parse_utc_fast(b"2023-04-01T24:00:00Z"), None);
        assert_eq!(parse_utc_fast(b"2023-04-01T00:00:00+"), None);
        assert!(parse_timestamp("2021-01-01T00:00:00+02:00").is_err());
    }
}
