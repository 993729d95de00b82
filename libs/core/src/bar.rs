//! OHLCV bars with raw fixed-point fields, so the per-bar hot path is integer only.

use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::fixed::{Price, Quantity, parse_raw};
use crate::instrument::Instrument;
use crate::time::parse_timestamp;

/// One bar. `open..close` are raw integers at the instrument's price precision,
/// `volume` at its size precision; `ts` is the bar's open time in UTC nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bar {
    /// Bar open time, UTC nanoseconds since the epoch.
    pub ts: i64,
    /// Raw open price.
    pub open: i64,
    /// Raw high price.
    pub high: i64,
    /// Raw low price.
    pub low: i64,
    /// Raw close price.
    pub close: i64,
    /// Raw volume.
    pub volume: i64,
}

impl Bar {
    /// The open as a Price at `precision`.
    pub fn open_price(&self, precision: u8) -> Price {
        Price::from_raw(self.open, precision).unwrap_or(Price::zero(0))
    }

    /// The close as a Price at `precision`.
    pub fn close_price(&self, precision: u8) -> Price {
        Price::from_raw(self.close, precision).unwrap_or(Price::zero(0))
    }

    /// The volume as a Quantity at `precision`.
    pub fn volume_quantity(&self, precision: u8) -> Quantity {
        Quantity::from_raw(self.volume, precision).unwrap_or(Quantity::zero(0))
    }

    /// Checks `low <= open, close <= high`, `low > 0` is not required (spreads), volume >= 0.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.low > self.high {
            return Err("low above high");
        }
        if self.open < self.low || self.open > self.high {
            return Err("open outside low..high");
        }
        if self.close < self.low || self.close > self.high {
            return Err("close outside low..high");
        }
        if self.volume < 0 {
            return Err("negative volume");
        }
        Ok(())
    }
}

/// Parses the normalised CSV text (`timestamp,open,high,low,close,volume`, header
/// first) into bars at the instrument's precisions. Errors name the row (1-based,
/// header is row 1) and the column.
pub fn parse_csv(text: &str, inst: &Instrument) -> Result<Vec<Bar>, CoreError> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("").trim();
    if header != "timestamp,open,high,low,close,volume" {
        return Err(CoreError::Row {
            row: 1,
            column: "header",
            reason: format!("unexpected header {header:?}"),
        });
    }
    let mut bars = Vec::with_capacity(text.len() / 48);
    for (i, line) in lines.enumerate() {
        let row = i + 2;
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() != 6 {
            return Err(CoreError::Row {
                row,
                column: "*",
                reason: format!("expected 6 columns, got {}", cols.len()),
            });
        }
        let wrap = |column: &'static str| {
            move |e: CoreError| CoreError::Row {
                row,
                column,
                reason: e.to_string(),
            }
        };
        let pp = inst.price_precision;
        let bar = Bar {
            ts: parse_timestamp(cols[0]).map_err(wrap("timestamp"))?,
            open: parse_raw(cols[1], pp, "price").map_err(wrap("open"))?,
            high: parse_raw(cols[2], pp, "price").map_err(wrap("high"))?,
            low: parse_raw(cols[3], pp, "price").map_err(wrap("low"))?,
            close: parse_raw(cols[4], pp, "price").map_err(wrap("close"))?,
            volume: parse_raw(cols[5], inst.size_precision, "quantity").map_err(wrap("volume"))?,
        };
        bar.check().map_err(|r| CoreError::Row {
            row,
            column: "ohlc",
            reason: r.into(),
        })?;
        if let Some(prev) = bars.last().map(|b: &Bar| b.ts)
            && bar.ts <= prev
        {
            return Err(CoreError::Row {
                row,
                column: "timestamp",
                reason: "not after the previous row".into(),
            });
        }
        bars.push(bar);
    }
    Ok(bars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_and_names_the_bad_one() {
        let inst = Instrument::equity("SPY", 2, 0);
        let ok = "timestamp,open,high,low,close,volume\n1998-01-02T00:00:00Z,97.31,97.53,96.53,97.36,2150000\n";
        let bars = parse_csv(ok, &inst).unwrap();
        assert_eq!(bars[0].open, 9731);
        assert_eq!(bars[0].volume, 2_150_000);
        let bad = format!("{ok}1998-01-05T00:00:00Z,97.84,98.44,96.78,99.75,1\n");
        let e = parse_csv(&bad, &inst).unwrap_err().to_string();
        assert!(e.contains("row 3") && e.contains("ohlc"), "{e}");
        let bad = format!("{ok}1998-01-05T00:00:00Z,97.845,98.44,96.78,97.75,1\n");
        let e = parse_csv(&bad, &inst).unwrap_err().to_string();
        assert!(e.contains("row 3") && e.contains("open"), "{e}");
    }
}
