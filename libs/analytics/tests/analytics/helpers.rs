//! Loading the golden files.

use std::path::PathBuf;

use grodt_analytics::{EquityPoint, Side, Trade};

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// `YYYY-MM-DDT00:00:00Z` to Unix nanoseconds (the golden files hold only
/// whole UTC days; anything else is a broken fixture).
pub fn parse_day(text: &str) -> i64 {
    let date = text
        .strip_suffix("T00:00:00Z")
        .unwrap_or_else(|| panic!("not a UTC day: {text}"));
    let mut parts = date
        .split('-')
        .map(|p| p.parse::<i64>().expect("numeric date"));
    let (y, m, d) = (
        parts.next().expect("year"),
        parts.next().expect("month"),
        parts.next().expect("day"),
    );
    // Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400 * 1_000_000_000
}

/// Calendar year (UTC) of a Unix-nanosecond timestamp.
pub fn year_of(ts: i64) -> i64 {
    // Hinnant's civil_from_days, year only.
    let z = ts.div_euclid(86_400 * 1_000_000_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    yoe + era * 400 + i64::from(mp >= 10)
}

pub struct Golden {
    pub equity: Vec<EquityPoint>,
    pub positions: Vec<f64>,
    pub trades: Vec<Trade>,
    pub metrics: serde_json::Value,
}

pub fn load() -> Golden {
    let dir = golden_dir();
    let text = std::fs::read_to_string(dir.join("spy_sma_equity.csv")).expect("equity csv");
    let mut equity = Vec::new();
    let mut positions = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 3, "bad row {line}");
        equity.push(EquityPoint {
            ts: parse_day(f[0]),
            equity: f[1].parse().expect("equity"),
        });
        positions.push(f[2].parse().expect("position"));
    }
    let text = std::fs::read_to_string(dir.join("spy_sma_trades.csv")).expect("trades csv");
    let trades = text
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 10, "bad row {line}");
            let num = |i: usize| f[i].parse::<f64>().expect("number");
            Trade {
                entry_ts: parse_day(f[0]),
                exit_ts: parse_day(f[1]),
                side: match f[2] {
                    "long" => Side::Long,
                    "short" => Side::Short,
                    other => panic!("side {other}"),
                },
                qty: num(3),
                entry_price: num(4),
                exit_price: num(5),
                pnl: num(6),
                fees: num(7),
                mae: num(8),
                mfe: num(9),
            }
        })
        .collect();
    let metrics = serde_json::from_str(
        &std::fs::read_to_string(dir.join("spy_sma_metrics.json")).expect("metrics json"),
    )
    .expect("metrics parse");
    Golden {
        equity,
        positions,
        trades,
        metrics,
    }
}

/// `|a - b| <= rel * max(|a|, |b|)`.
#[track_caller]
pub fn assert_rel(name: &str, got: f64, want: f64, rel: f64) {
    let scale = got.abs().max(want.abs());
    assert!(
        (got - want).abs() <= rel * scale,
        "{name}: got {got:e}, reference {want:e}, relative error {:e}",
        (got - want).abs() / scale
    );
}
