//! Aggregation to a coarser timeframe with polars, lazily: open=first, high=max,
//! low=min, close=last, volume=sum, windows aligned to UTC or shifted to a session start.
//! Input bars are labelled by their open time; so are the output bars.

use chrono::Datelike;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::bars::Bars;
use crate::error::{DataError, Result};
use crate::time::{TimestampNs, from_ns};

const MINUTE: i64 = 60_000_000_000;

/// Target timeframes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Timeframe {
    M1,
    M5,
    M15,
    H1,
    H4,
    D1,
    /// Weeks start on Monday.
    W1,
    /// Calendar months.
    Mo1,
}

impl Timeframe {
    pub const ALL: [Timeframe; 8] = [
        Timeframe::M1,
        Timeframe::M5,
        Timeframe::M15,
        Timeframe::H1,
        Timeframe::H4,
        Timeframe::D1,
        Timeframe::W1,
        Timeframe::Mo1,
    ];

    /// Catalog label: `1m 5m 15m 1h 4h 1d 1w 1M`.
    pub fn label(self) -> &'static str {
        match self {
            Timeframe::M1 => "1m",
            Timeframe::M5 => "5m",
            Timeframe::M15 => "15m",
            Timeframe::H1 => "1h",
            Timeframe::H4 => "4h",
            Timeframe::D1 => "1d",
            Timeframe::W1 => "1w",
            Timeframe::Mo1 => "1M",
        }
    }

    pub fn parse(label: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.label() == label)
            .ok_or_else(|| DataError::InvalidOption {
                field: "timeframe",
                reason: format!("{label:?} is not one of 1m 5m 15m 1h 4h 1d 1w 1M"),
            })
    }

    fn polars_every(self) -> &'static str {
        match self {
            Timeframe::M1 => "1m",
            Timeframe::M5 => "5m",
            Timeframe::M15 => "15m",
            Timeframe::H1 => "1h",
            Timeframe::H4 => "4h",
            Timeframe::D1 => "1d",
            Timeframe::W1 => "1w",
            Timeframe::Mo1 => "1mo",
        }
    }

    /// Fixed length in nanoseconds; `None` for months.
    pub fn nanos(self) -> Option<i64> {
        Some(match self {
            Timeframe::M1 => MINUTE,
            Timeframe::M5 => 5 * MINUTE,
            Timeframe::M15 => 15 * MINUTE,
            Timeframe::H1 => 60 * MINUTE,
            Timeframe::H4 => 240 * MINUTE,
            Timeframe::D1 => 1440 * MINUTE,
            Timeframe::W1 => 7 * 1440 * MINUTE,
            Timeframe::Mo1 => return None,
        })
    }
}

/// Where windows start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Alignment {
    /// Windows start at UTC boundaries (midnight, Monday, first of month).
    #[default]
    Utc,
    /// Windows start this many nanoseconds after the UTC boundary, e.g. 23:00 UTC for a
    /// CME day that opens 17:00 US Central in winter.
    SessionOffset(i64),
}

/// Aggregated bars, how many input bars each holds, and the empty windows between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregated {
    pub bars: Bars,
    pub counts: Vec<u32>,
    /// (last window before, first window after, number of empty windows between).
    pub gaps: Vec<(TimestampNs, TimestampNs, u64)>,
}

/// The lazy plan: a frame of bars (ts, open, high, low, close, volume) to the target timeframe.
pub fn aggregate_lazy(lf: LazyFrame, target: Timeframe, align: Alignment) -> LazyFrame {
    let offset = match align {
        Alignment::Utc => 0,
        Alignment::SessionOffset(o) => o,
    };
    let dt = DataType::Datetime(TimeUnit::Nanoseconds, Some(TimeZone::UTC));
    let shifted = (col("ts").cast(DataType::Int64) - lit(offset)).cast(dt.clone());
    let bucket = (shifted
        .dt()
        .truncate(lit(target.polars_every()))
        .cast(DataType::Int64)
        + lit(offset))
    .cast(dt)
    .alias("bucket");
    lf.sort(["ts"], SortMultipleOptions::default())
        .with_column(bucket)
        .group_by_stable([col("bucket")])
        .agg([
            col("open").first(),
            col("high").max(),
            col("low").min(),
            col("close").last(),
            col("volume").sum(),
            col("ts").count().cast(DataType::UInt32).alias("count"),
        ])
        .rename(["bucket"], ["ts"], true)
}

/// Aggregates bars (sorted, labelled by open time) to `target`.
pub fn aggregate(bars: &Bars, target: Timeframe, align: Alignment) -> Result<Aggregated> {
    let df = aggregate_lazy(bars.to_frame()?.lazy(), target, align).collect()?;
    let out = Bars::from_frame(&df, bars.price_scale, bars.volume_scale)?;
    let counts: Vec<u32> = df.column("count")?.u32()?.into_no_null_iter().collect();
    let offset = match align {
        Alignment::Utc => 0,
        Alignment::SessionOffset(o) => o,
    };
    let gaps = out
        .ts
        .windows(2)
        .filter_map(|w| {
            let empty = windows_between(w[0] - offset, w[1] - offset, target);
            (empty > 0).then_some((w[0], w[1], empty))
        })
        .collect();
    Ok(Aggregated {
        bars: out,
        counts,
        gaps,
    })
}

fn windows_between(a: TimestampNs, b: TimestampNs, target: Timeframe) -> u64 {
    match target.nanos() {
        Some(n) => ((b - a) / n).saturating_sub(1) as u64,
        None => {
            let (x, y) = (from_ns(a), from_ns(b));
            let months = (y.year() - x.year()) * 12 + y.month() as i32 - x.month() as i32;
            months.saturating_sub(1).max(0) as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ns(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    #[test]
    fn five_minutes_ohlcv() {
        let mut b = Bars::with_scales(2, 0);
        let t0 = ns("2024-01-01T00:00:00Z");
        for (i, (o, h, l, c, v)) in [
            (10, 12, 9, 11, 1),
            (11, 15, 10, 14, 2),
            (14, 14, 8, 9, 3),
            (9, 10, 9, 10, 4),
            (10, 11, 10, 11, 5),
            (11, 13, 11, 12, 6),
        ]
        .into_iter()
        .enumerate()
        {
            b.push(t0 + i as i64 * MINUTE, [o, h, l, c, v]);
        }
        // A gap: the next bar is 20 minutes later.
        b.push(t0 + 20 * MINUTE, [12, 12, 12, 12, 7]);
        let a = aggregate(&b, Timeframe::M5, Alignment::Utc).unwrap();
        assert_eq!(a.bars.ts, vec![t0, t0 + 5 * MINUTE, t0 + 20 * MINUTE]);
        assert_eq!(a.bars.open, vec![10, 11, 12]);
        assert_eq!(a.bars.high, vec![15, 13, 12]);
        assert_eq!(a.bars.low, vec![8, 11, 12]);
        assert_eq!(a.bars.close, vec![11, 12, 12]);
        assert_eq!(a.bars.volume, vec![15, 6, 7]);
        assert_eq!(a.counts, vec![5, 1, 1]);
        assert_eq!(a.gaps, vec![(t0 + 5 * MINUTE, t0 + 20 * MINUTE, 2)]);
    }

    #[test]
    fn weeks_months_and_session_offset() {
        let mut b = Bars::with_scales(0, 0);
        // Wednesday 2024-01-03 .. Tuesday 2024-02-06, one bar a day at noon.
        let t0 = ns("2024-01-03T12:00:00Z");
        for d in 0..35 {
            b.push(t0 + d * 1440 * MINUTE, [1, 1, 1, 1, 1]);
        }
        let w = aggregate(&b, Timeframe::W1, Alignment::Utc).unwrap();
        assert_eq!(w.bars.ts[0], ns("2024-01-01T00:00:00Z"));
        assert_eq!(w.bars.ts[1], ns("2024-01-08T00:00:00Z"));
        assert_eq!(w.counts[0], 5);
        let m = aggregate(&b, Timeframe::Mo1, Alignment::Utc).unwrap();
        assert_eq!(
            m.bars.ts,
            vec![ns("2024-01-01T00:00:00Z"), ns("2024-02-01T00:00:00Z")]
        );
        assert_eq!(m.counts, vec![29, 6]);
        // Session days starting 23:00 UTC: the noon bar belongs to the day opened the evening before.
        let s = aggregate(
            &b,
            Timeframe::D1,
            Alignment::SessionOffset(23 * 60 * MINUTE),
        )
        .unwrap();
        assert_eq!(s.bars.ts[0], ns("2024-01-02T23:00:00Z"));
        assert!(s.gaps.is_empty());
    }

    fn arb_minutes() -> impl Strategy<Value = Bars> {
        prop::collection::vec(
            (
                1u8..4,
                1i64..1000,
                0i64..50,
                0i64..50,
                0i64..100,
                0i64..10_000,
            ),
            1..400,
        )
        .prop_map(|rows| {
            let mut b = Bars::with_scales(2, 3);
            // Start on a Sunday 22:00 so that hours, days and weeks are crossed.
            let mut t = 1_704_664_800_000_000_000i64;
            for (step, base, up, down, c, v) in rows {
                t += i64::from(step) * MINUTE * if step == 3 { 97 } else { 1 };
                let close = (base - down + c % (up + down + 1)).max(0);
                b.push(t, [base, base + up, base - down, close.min(base + up), v]);
            }
            b
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn invariants_hold(b in arb_minutes()) {
            for tf in [Timeframe::M5, Timeframe::M15, Timeframe::H1, Timeframe::H4, Timeframe::D1, Timeframe::W1, Timeframe::Mo1] {
                let a = aggregate(&b, tf, Alignment::Utc).unwrap();
                prop_assert_eq!(a.bars.volume.iter().sum::<i64>(), b.volume.iter().sum::<i64>());
                prop_assert_eq!(a.counts.iter().map(|&c| c as usize).sum::<usize>(), b.len());
                let mut j = 0;
                for (k, &n) in a.counts.iter().enumerate() {
                    let window = j..j + n as usize;
                    prop_assert_eq!(a.bars.open[k], b.open[window.start]);
                    prop_assert_eq!(a.bars.close[k], b.close[window.end - 1]);
                    for i in window.clone() {
                        prop_assert!(a.bars.high[k] >= b.high[i]);
                        prop_assert!(a.bars.low[k] <= b.low[i]);
                        prop_assert!(b.ts[i] >= a.bars.ts[k]);
                    }
                    j = window.end;
                }
                // Output count = number of distinct windows (1970-01-05 is the first Monday).
                if let Some(n) = tf.nanos() {
                    let origin = if tf == Timeframe::W1 { 4 * 1440 * MINUTE } else { 0 };
                    let mut starts: Vec<i64> = b.ts.iter().map(|t| t - (t - origin).rem_euclid(n)).collect();
                    starts.dedup();
                    prop_assert_eq!(&starts, &a.bars.ts);
                }
            }
            for (fine, coarse) in [(Timeframe::M5, Timeframe::M15), (Timeframe::H1, Timeframe::H4), (Timeframe::D1, Timeframe::W1), (Timeframe::D1, Timeframe::Mo1)] {
                let step = aggregate(&aggregate(&b, fine, Alignment::Utc).unwrap().bars, coarse, Alignment::Utc).unwrap();
                let direct = aggregate(&b, coarse, Alignment::Utc).unwrap();
                prop_assert_eq!(step.bars, direct.bars);
            }
        }
    }
}
