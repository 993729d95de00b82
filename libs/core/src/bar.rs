//! OHLCV bars with raw fixed-point fields, so the per-bar hot path is integer only.

use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::csv_reader::Records;
use crate::fixed::{Price, Quantity, parse_raw_bytes};
use crate::instrument::Instrument;
use crate::time::{parse_timestamp, parse_utc_fast};

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
/// header is row 1) and the column. Built on [`crate::csv_reader`], the reader
/// grodt-data's importer uses too.
pub fn parse_csv(text: &str, inst: &Instrument) -> Result<Vec<Bar>, CoreError> {
    parse_csv_bytes(text.as_bytes(), inst)
}

/// [`parse_csv`] over bytes; a row costs no allocation.
pub fn parse_csv_bytes(bytes: &[u8], inst: &Instrument) -> Result<Vec<Bar>, CoreError> {
    const HEADER: [&str; 6] = ["timestamp", "open", "high", "low", "close", "volume"];
    let mut records = Records::new(bytes, b',', 0);
    let header_ok = match records.next_record()? {
        Some((1, h)) => {
            h.len() == 6
                && h.iter()
                    .zip(HEADER)
                    .all(|(c, n)| c.trim_ascii() == n.as_bytes())
        }
        Some(_) | None => false,
    };
    if !header_ok {
        let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        return Err(CoreError::Row {
            row: 1,
            column: "header",
            reason: format!(
                "unexpected header {:?}",
                String::from_utf8_lossy(first.trim_ascii())
            ),
        });
    }
    let mut bars = Vec::with_capacity(bytes.len() / 48);
    let (pp, sp) = (inst.price_precision, inst.size_precision);
    while let Some((line, rec)) = records.next_record()? {
        let row = usize::try_from(line).unwrap_or(usize::MAX);
        if rec.len() != 6 {
            return Err(CoreError::Row {
                row,
                column: "*",
                reason: format!("expected 6 columns, got {}", rec.len()),
            });
        }
        let wrap = |column: &'static str| {
            move |e: CoreError| CoreError::Row {
                row,
                column,
                reason: e.to_string(),
            }
        };
        let ts = match parse_utc_fast(rec[0].trim_ascii()) {
            Some(ts) => ts,
            None => {
                parse_timestamp(&String::from_utf8_lossy(&rec[0])).map_err(wrap("timestamp"))?
            }
        };
        let bar = Bar {
            ts,
            open: parse_raw_bytes(&rec[1], pp, "price").map_err(wrap("open"))?,
            high: parse_raw_bytes(&rec[2], pp, "price").map_err(wrap("high"))?,
            low: parse_raw_bytes(&rec[3], pp, "price").map_err(wrap("low"))?,
            close: parse_raw_bytes(&rec[4], pp, "price").map_err(wrap("close"))?,
            volume: parse_raw_bytes(&rec[5], sp, "quantity").map_err(wrap("volume"))?,
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

    #[test]
    fn names_row_and_column_of_each_fault() {
        let inst = Instrument::equity("SPY", 2, 0);
        let head = "timestamp,open,high,low,close,volume\n";
        let good = "1998-01-02T00:00:00Z,97.31,97.53,96.53,97.36,2150000\n";
        let err = |body: &str| {
            parse_csv(&format!("{head}{good}\n{body}"), &inst)
                .unwrap_err()
                .to_string()
        };
        // Row numbers are the file's lines: the blank line 3 counts.
        let e = err("1998-01-05T00:00:00Z,97.84,98.44,96.78\n");
        assert_eq!(e, "row 4, column *: expected 6 columns, got 4");
        let e = err("1998-01-05,97.84,98.44,96.78,97.75,x\n");
        assert!(
            e.starts_with("row 4, column volume:") && e.contains("\"x\""),
            "{e}"
        );
        let e = err("1998-02-30X,97.84,98.44,96.78,97.75,1\n");
        assert!(e.starts_with("row 4, column timestamp:"), "{e}");
        let e = err("1998-01-02T00:00:00Z,97.84,98.44,96.78,97.75,1\n");
        assert_eq!(e, "row 4, column timestamp: not after the previous row");
        let e = err("1998-01-05T00:00:00Z,97.84,98.44,96.78,97.75,-1\n");
        assert_eq!(e, "row 4, column ohlc: negative volume");
        let e = parse_csv("date,open,high,low,close,volume\n", &inst)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("row 1, column header:"), "{e}");
        // Quoted cells and CRLF line ends read like plain ones.
        let crlf = format!(
            "{}\"1998-01-02T00:00:00Z\",\"97.31\",97.53,96.53,97.36,2150000\r\n",
            head.replace('\n', "\r\n")
        );
        assert_eq!(parse_csv(&crlf, &inst).unwrap()[0].open, 9731);
    }
}
