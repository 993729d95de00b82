//! Columnar OHLCV bars with fixed-point prices and volumes, and their polars form.

use polars::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::time::TimestampNs;

/// Column names of a bar frame. `ts` is `Datetime(ns, UTC)`; the others `Int64` fixed-point.
pub const COLUMNS: [&str; 6] = ["ts", "open", "high", "low", "close", "volume"];

/// Bars sorted by time. Prices are `value * 10^price_scale`, volumes `value * 10^volume_scale`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bars {
    pub price_scale: u8,
    pub volume_scale: u8,
    pub ts: Vec<TimestampNs>,
    pub open: Vec<i64>,
    pub high: Vec<i64>,
    pub low: Vec<i64>,
    pub close: Vec<i64>,
    pub volume: Vec<i64>,
}

impl Bars {
    pub fn with_scales(price_scale: u8, volume_scale: u8) -> Self {
        Self {
            price_scale,
            volume_scale,
            ..Self::default()
        }
    }

    /// Empty bars with room for `n` (each column allocated once).
    pub fn with_capacity(price_scale: u8, volume_scale: u8, n: usize) -> Self {
        Self {
            price_scale,
            volume_scale,
            ts: Vec::with_capacity(n),
            open: Vec::with_capacity(n),
            high: Vec::with_capacity(n),
            low: Vec::with_capacity(n),
            close: Vec::with_capacity(n),
            volume: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    pub fn push(&mut self, ts: TimestampNs, ohlcv: [i64; 5]) {
        self.ts.push(ts);
        self.open.push(ohlcv[0]);
        self.high.push(ohlcv[1]);
        self.low.push(ohlcv[2]);
        self.close.push(ohlcv[3]);
        self.volume.push(ohlcv[4]);
    }

    /// Content checksum (sha256, hex) over the scales and every value, independent of
    /// how the values are stored on disk.
    pub fn checksum(&self) -> String {
        let mut h = Sha256::new();
        h.update([self.price_scale, self.volume_scale]);
        h.update((self.len() as u64).to_le_bytes());
        for col in [
            &self.ts,
            &self.open,
            &self.high,
            &self.low,
            &self.close,
            &self.volume,
        ] {
            for v in col {
                h.update(v.to_le_bytes());
            }
        }
        hex::encode(h.finalize())
    }

    /// The polars frame (`ts` as UTC nanosecond datetimes).
    pub fn to_frame(&self) -> Result<DataFrame> {
        let ts = Series::new("ts".into(), &self.ts).cast(&DataType::Datetime(
            TimeUnit::Nanoseconds,
            Some(TimeZone::UTC),
        ))?;
        let cols = vec![
            ts.into_column(),
            Column::new("open".into(), &self.open),
            Column::new("high".into(), &self.high),
            Column::new("low".into(), &self.low),
            Column::new("close".into(), &self.close),
            Column::new("volume".into(), &self.volume),
        ];
        Ok(DataFrame::new(self.len(), cols)?)
    }

    /// Reads a bar frame back; fails if a column is missing, null or of another type.
    pub fn from_frame(df: &DataFrame, price_scale: u8, volume_scale: u8) -> Result<Self> {
        let col = |name: &str| -> Result<Vec<i64>> {
            let c = df.column(name)?;
            let c = match c.dtype() {
                DataType::Datetime(TimeUnit::Nanoseconds, _) => c.cast(&DataType::Int64)?,
                DataType::Int64 => c.clone(),
                other => {
                    return Err(DataError::Corrupt {
                        path: name.to_owned(),
                        reason: format!("column {name} has type {other}, expected Int64"),
                    });
                }
            };
            let ca = c.i64()?;
            if ca.null_count() > 0 {
                return Err(DataError::Corrupt {
                    path: name.to_owned(),
                    reason: format!("column {name} has {} nulls", ca.null_count()),
                });
            }
            Ok(ca.into_no_null_iter().collect())
        };
        Ok(Self {
            price_scale,
            volume_scale,
            ts: col("ts")?,
            open: col("open")?,
            high: col("high")?,
            low: col("low")?,
            close: col("close")?,
            volume: col("volume")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_checksum() {
        let mut b = Bars::with_scales(2, 3);
        b.push(1_000, [100, 110, 90, 105, 5_000]);
        b.push(2_000, [105, 120, 100, 119, 0]);
        let df = b.to_frame().unwrap();
        assert_eq!(df.height(), 2);
        let back = Bars::from_frame(&df, 2, 3).unwrap();
        assert_eq!(back, b);
        let mut c = b.clone();
        c.close[1] = 118;
        assert_ne!(c.checksum(), b.checksum());
        assert_eq!(b.clone().checksum(), b.checksum());
    }
}
