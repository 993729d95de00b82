//! Binance payloads to candles, pure: the klines array of arrays of
//! `GET /api/v3/klines` and the `kline` event of the `<symbol>@kline_<interval>`
//! WebSocket stream.

use crate::error::{DataError, Result};
use crate::venues::Candle;

const VENUE: &str = "binance";

fn bad(url: &str, field: String, reason: impl Into<String>) -> DataError {
    DataError::VenuePayload {
        venue: VENUE,
        url: url.to_owned(),
        field,
        reason: reason.into(),
    }
}

/// The body of `GET /api/v3/klines`: `[[openTime, "open", "high", "low", "close",
/// "volume", closeTime, ...], ...]`, ascending by open time.
pub fn klines(url: &str, body: &[u8]) -> Result<Vec<Candle>> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| bad(url, "body".into(), format!("not JSON: {e}")))?;
    let arr = v
        .as_array()
        .ok_or_else(|| bad(url, "body".into(), "not a JSON array"))?;
    let mut out: Vec<Candle> = Vec::with_capacity(arr.len());
    for (i, k) in arr.iter().enumerate() {
        let f = k.as_array().filter(|f| f.len() >= 7).ok_or_else(|| {
            bad(
                url,
                format!("kline {i}"),
                "not an array of at least 7 fields",
            )
        })?;
        let text = |j: usize, name: &str| {
            f[j].as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(url, format!("kline {i} {name}"), "not a string"))
        };
        let open_time_ms = f[0]
            .as_i64()
            .ok_or_else(|| bad(url, format!("kline {i} openTime"), "not an integer"))?;
        if out.last().is_some_and(|l| l.open_time_ms >= open_time_ms) {
            return Err(bad(
                url,
                format!("kline {i} openTime"),
                format!("{open_time_ms} does not follow the previous kline"),
            ));
        }
        out.push(Candle {
            open_time_ms,
            open: text(1, "open")?,
            high: text(2, "high")?,
            low: text(3, "low")?,
            close: text(4, "close")?,
            volume: text(5, "volume")?,
        });
    }
    Ok(out)
}

/// One kline event of the WebSocket stream (raw `{"e":"kline",...}` or wrapped in a
/// combined stream's `{"stream":..,"data":{..}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KlineEvent {
    /// Event time, ms.
    pub event_time_ms: i64,
    pub symbol: String,
    pub interval: String,
    pub candle: Candle,
    /// Close time of the kline, ms (open time + interval - 1).
    pub close_time_ms: i64,
    /// `x`: the kline is final; only closed klines become bars.
    pub closed: bool,
}

/// Parses a stream message; `Ok(None)` for messages that are not kline events
/// (subscription answers and the like).
pub fn kline_event(text: &str) -> Result<Option<KlineEvent>> {
    let src = "websocket";
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad(src, "message".into(), format!("not JSON: {e}")))?;
    let v = v.get("data").unwrap_or(&v);
    if v.get("e").and_then(|e| e.as_str()) != Some("kline") {
        return Ok(None);
    }
    let k = v.get("k").ok_or_else(|| bad(src, "k".into(), "missing"))?;
    let int = |o: &serde_json::Value, name: &str| {
        o.get(name)
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| bad(src, format!("k.{name}"), "missing or not an integer"))
    };
    let text = |name: &str| {
        k.get(name)
            .and_then(|s| s.as_str())
            .map(str::to_owned)
            .ok_or_else(|| bad(src, format!("k.{name}"), "missing or not a string"))
    };
    Ok(Some(KlineEvent {
        event_time_ms: int(v, "E")?,
        symbol: text("s")?,
        interval: text("i")?,
        close_time_ms: int(k, "T")?,
        closed: k
            .get("x")
            .and_then(serde_json::Value::as_bool)
            .ok_or_else(|| bad(src, "k.x".into(), "missing or not a boolean"))?,
        candle: Candle {
            open_time_ms: int(k, "t")?,
            open: text("o")?,
            high: text("h")?,
            low: text("l")?,
            close: text("c")?,
            volume: text("v")?,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_klines_example() {
        let body = br#"[[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100","148976.11427815",1499644799999,"2434.19055334",308,"1756.87402397","28.46694368","0"]]"#;
        let k = klines("u", body).unwrap();
        assert_eq!(k[0].open_time_ms, 1_499_040_000_000);
        assert_eq!(k[0].close, "0.01577100");
        let b = crate::venues::candles_to_bars(&k).unwrap();
        assert_eq!((b.price_scale, b.volume_scale), (7, 8));
        assert_eq!(b.high[0], 8_000_000);
    }

    #[test]
    fn bad_payloads_name_the_field() {
        let e = klines("u", br#"{"code":-1121}"#).unwrap_err();
        assert!(e.to_string().contains("not a JSON array"), "{e}");
        let e = klines("u", br#"[[1,"1","2","0.5",1.5,"3",2]]"#).unwrap_err();
        assert!(e.to_string().contains("kline 0 close"), "{e}");
        let e = klines(
            "u",
            b"[[2,\"1\",\"1\",\"1\",\"1\",\"1\",3],[1,\"1\",\"1\",\"1\",\"1\",\"1\",2]]",
        )
        .unwrap_err();
        assert!(e.to_string().contains("kline 1 openTime"), "{e}");
        assert!(klines("u", b"[[1,\"1\"").is_err());
    }

    #[test]
    fn parses_the_documented_stream_event() {
        let msg = r#"{"e":"kline","E":1672515782136,"s":"BNBBTC","k":{"t":1672515780000,"T":1672515839999,"s":"BNBBTC","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}"#;
        let e = kline_event(msg).unwrap().unwrap();
        assert_eq!(e.candle.open_time_ms, 1_672_515_780_000);
        assert_eq!(
            (e.symbol.as_str(), e.interval.as_str(), e.closed),
            ("BNBBTC", "1m", false)
        );
        assert_eq!(e.candle.high, "0.0025");
        let wrapped = format!(r#"{{"stream":"bnbbtc@kline_1m","data":{msg}}}"#);
        assert_eq!(kline_event(&wrapped).unwrap().unwrap(), e);
        assert_eq!(kline_event(r#"{"result":null,"id":1}"#).unwrap(), None);
        let e = kline_event(r#"{"e":"kline","E":1,"k":{"t":1,"s":"X","i":"1m"}}"#).unwrap_err();
        assert!(e.to_string().contains("k.T"), "{e}");
    }
}
