//! Coinbase Exchange payloads to candles, pure: the body of
//! `GET /products/{id}/candles`, an array of `[time, low, high, open, close, volume]`
//! (time in epoch seconds, the rest JSON numbers), newest first.

use crate::error::{DataError, Result};
use crate::venues::{Candle, decimal_text};

const VENUE: &str = "coinbase";

/// The candles of one response, oldest first.
pub fn candles(url: &str, body: &[u8]) -> Result<Vec<Candle>> {
    let bad = |field: String, reason: String| DataError::VenuePayload {
        venue: VENUE,
        url: url.to_owned(),
        field,
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad("body".into(), format!("not JSON: {e}")))?;
    let arr = v
        .as_array()
        .ok_or_else(|| bad("body".into(), "not a JSON array".into()))?;
    let mut out: Vec<Candle> = Vec::with_capacity(arr.len());
    for (i, c) in arr.iter().enumerate() {
        let f = c
            .as_array()
            .filter(|f| f.len() == 6)
            .ok_or_else(|| bad(format!("candle {i}"), "not an array of 6 fields".into()))?;
        let num = |j: usize, name: &str| {
            decimal_text(&f[j])
                .ok_or_else(|| bad(format!("candle {i} {name}"), "not a number".into()))
        };
        let time = f[0]
            .as_i64()
            .ok_or_else(|| bad(format!("candle {i} time"), "not an integer".into()))?;
        if out.last().is_some_and(|l| l.open_time_ms <= time * 1000) {
            return Err(bad(
                format!("candle {i} time"),
                format!("{time} is not older than the candle before (newest first)"),
            ));
        }
        out.push(Candle {
            open_time_ms: time * 1000,
            low: num(1, "low")?,
            high: num(2, "high")?,
            open: num(3, "open")?,
            close: num(4, "close")?,
            volume: num(5, "volume")?,
        });
    }
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_newest_first_and_keeps_decimals() {
        let body = br#"[[1415398800, 0.32, 4.2, 0.35, 4.2, 12.3],[1415398740, 0.3, 0.4, 0.31, 0.33, 1.5e-5]]"#;
        let c = candles("u", body).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].open_time_ms, 1_415_398_740_000);
        assert_eq!(
            (c[0].open.as_str(), c[0].volume.as_str()),
            ("0.31", "0.000015")
        );
        assert_eq!(
            (c[1].low.as_str(), c[1].high.as_str(), c[1].open.as_str()),
            ("0.32", "4.2", "0.35")
        );
    }

    #[test]
    fn bad_payloads_name_the_field() {
        let e = candles("u", br#"{"message":"NotFound"}"#).unwrap_err();
        assert!(e.to_string().contains("not a JSON array"), "{e}");
        let e = candles("u", br#"[[1, 1, 2, 1, 1]]"#).unwrap_err();
        assert!(e.to_string().contains("candle 0"), "{e}");
        let e = candles("u", br#"[[60, 1, 2, 1, 1, "x"],[120, 1, 2, 1, 1, 1]]"#).unwrap_err();
        assert!(e.to_string().contains("candle 1 time"), "{e}");
        let e = candles("u", br#"[[60, 1, 2, null, 1, 1]]"#).unwrap_err();
        assert!(e.to_string().contains("candle 0 open"), "{e}");
    }
}
