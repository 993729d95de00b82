//! Exchange venues: the shared REST engine (`rest`: retries, rate limits, typed
//! errors), the HTTPS transport (`tls`), the candle type every venue's parse module
//! produces, and the backfill of a venue's candles into the catalog (`backfill`).
//!
//! Each venue keeps its payload parsing in a pure `parse` module (bytes in,
//! [`Candle`]s out) so that the I/O around it stays thin: `crate::binance`,
//! [`coinbase`].

pub mod backfill;
pub mod coinbase;
pub mod live;
pub mod rest;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

use crate::bars::Bars;
use crate::error::{DataError, Result};
use crate::fixed::{MAX_SCALE, parse_fixed, significant_decimals};

pub use rest::{BoxFuture, FetchStats};

/// One candle as the venue sent it, numbers still as decimal text (exact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candle {
    pub open_time_ms: i64,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
}

/// The venues with an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Venue {
    Binance,
    Coinbase,
}

impl Venue {
    pub const ALL: [Venue; 2] = [Venue::Binance, Venue::Coinbase];

    /// Lower-case name: the catalog source and the config key.
    pub fn name(self) -> &'static str {
        match self {
            Venue::Binance => "binance",
            Venue::Coinbase => "coinbase",
        }
    }

    /// Where the public market-data API lives.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Venue::Binance => "https://api.binance.com",
            Venue::Coinbase => "https://api.exchange.coinbase.com",
        }
    }

    pub fn parse(name: &str) -> Result<Venue> {
        Venue::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| DataError::InvalidOption {
                field: "venue",
                reason: format!("{name:?} is not one of binance, coinbase"),
            })
    }
}

/// Milliseconds of a timeframe label (`1m 5m 15m 30m 1h 4h 6h 1d 1w`); months are not fixed.
pub fn timeframe_ms(label: &str) -> Result<i64> {
    const MIN: i64 = 60_000;
    Ok(match label {
        "1m" => MIN,
        "5m" => 5 * MIN,
        "15m" => 15 * MIN,
        "30m" => 30 * MIN,
        "1h" => 60 * MIN,
        "4h" => 240 * MIN,
        "6h" => 360 * MIN,
        "1d" => 1440 * MIN,
        "1w" => 7 * 1440 * MIN,
        other => {
            return Err(DataError::InvalidOption {
                field: "timeframe",
                reason: format!("{other:?} is not one of 1m 5m 15m 30m 1h 4h 6h 1d 1w"),
            });
        }
    })
}

/// A venue's candles over REST, as the backfill and the live feed's gap fill use them.
pub trait CandleSource: Send + Sync {
    fn venue(&self) -> Venue;
    /// The base URL requests go to (for provenance).
    fn base_url(&self) -> &str;
    /// Every candle with `start_ms <= open time <= end_ms`, ascending, each once; pages
    /// as the venue requires.
    fn candles<'a>(
        &'a self,
        symbol: &'a str,
        timeframe: &'a str,
        start_ms: i64,
        end_ms: i64,
        stats: &'a mut FetchStats,
    ) -> BoxFuture<'a, Result<Vec<Candle>>>;
    /// Candles one request returns at most.
    fn page_len(&self) -> usize;
}

/// Converts candles to bars labelled by open time; scales are the most decimals seen
/// (trailing zeros ignored), capped at the catalog's maximum.
pub fn candles_to_bars(candles: &[Candle]) -> Result<Bars> {
    let dec = |s: &str| significant_decimals(s).unwrap_or(0);
    let ps = candles
        .iter()
        .flat_map(|k| [&k.open, &k.high, &k.low, &k.close])
        .map(|s| dec(s))
        .max()
        .unwrap_or(0)
        .min(MAX_SCALE);
    let vs = candles
        .iter()
        .map(|k| dec(&k.volume))
        .max()
        .unwrap_or(0)
        .min(MAX_SCALE);
    let mut bars = Bars::with_scales(ps, vs);
    for k in candles {
        let p = |s: &str, scale: u8, what: &str| {
            parse_fixed(s, scale).map_err(|e| DataError::InvalidOption {
                field: "candle",
                reason: format!("open time {} ms: {what} {s:?}: {e}", k.open_time_ms),
            })
        };
        bars.push(
            k.open_time_ms * 1_000_000,
            [
                p(&k.open, ps, "open")?,
                p(&k.high, ps, "high")?,
                p(&k.low, ps, "low")?,
                p(&k.close, ps, "close")?,
                p(&k.volume, vs, "volume")?,
            ],
        );
    }
    Ok(bars)
}

/// `bars` with prices and volumes at (larger or equal) scales `ps` and `vs`.
pub fn rescale(bars: &Bars, ps: u8, vs: u8) -> Result<Bars> {
    if ps < bars.price_scale || vs < bars.volume_scale {
        return Err(DataError::InvalidOption {
            field: "scale",
            reason: format!(
                "cannot lower scales {}/{} to {ps}/{vs}",
                bars.price_scale, bars.volume_scale
            ),
        });
    }
    let fp = 10i64.pow(u32::from(ps - bars.price_scale));
    let fv = 10i64.pow(u32::from(vs - bars.volume_scale));
    let mut out = Bars::with_scales(ps, vs);
    for i in 0..bars.len() {
        let m = |v: i64, f: i64| {
            v.checked_mul(f).ok_or_else(|| DataError::InvalidOption {
                field: "scale",
                reason: format!("value {v} overflows at scale {ps}/{vs}"),
            })
        };
        out.push(
            bars.ts[i],
            [
                m(bars.open[i], fp)?,
                m(bars.high[i], fp)?,
                m(bars.low[i], fp)?,
                m(bars.close[i], fp)?,
                m(bars.volume[i], fv)?,
            ],
        );
    }
    Ok(out)
}

/// A JSON number or string as decimal text. Numbers print as serde_json writes
/// them, the shortest text that reads back to the same double: for prices a venue
/// wrote with up to 15 significant digits that is exactly the text it wrote.
pub(crate) fn decimal_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(plain_decimal(&n.to_string())),
        _ => None,
    }
}

/// `1.5e-5` -> `0.000015`: the shortest form of a double may use an exponent.
fn plain_decimal(s: &str) -> String {
    let Some((mantissa, exp)) = s.split_once(['e', 'E']) else {
        return s.to_owned();
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return s.to_owned();
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    // Position of the decimal point within `digits` after shifting.
    let point = int.len() as i32 + exp;
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    };
    format!("{sign}{body}")
}

/// The message and code of a venue's JSON error body (`{"code":-1121,"msg":".."}`,
/// `{"message":".."}`), else the body text itself, shortened.
pub(crate) fn error_message(body: &[u8]) -> (Option<i64>, String) {
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(body) {
        let msg = o
            .get("msg")
            .or_else(|| o.get("message"))
            .and_then(|m| m.as_str())
            .map(str::to_owned);
        if let Some(msg) = msg {
            return (o.get("code").and_then(serde_json::Value::as_i64), msg);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let short: String = text.chars().take(200).collect();
    (None, short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_give_code_and_message() {
        assert_eq!(
            error_message(br#"{"code":-1121,"msg":"Invalid symbol."}"#),
            (Some(-1121), "Invalid symbol.".into())
        );
        assert_eq!(
            error_message(br#"{"message":"NotFound"}"#),
            (None, "NotFound".into())
        );
        assert_eq!(
            error_message(b" Bad Gateway \n"),
            (None, "Bad Gateway".into())
        );
    }

    #[test]
    fn numbers_keep_their_decimal_text() {
        let v: serde_json::Value = serde_json::from_str("[0.1, 117352.12, 4, \"5.50\"]").unwrap();
        let t: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| decimal_text(x).unwrap())
            .collect();
        assert_eq!(t, ["0.1", "117352.12", "4", "5.50"]);
        assert_eq!(plain_decimal("1.5e-5"), "0.000015");
        assert_eq!(plain_decimal("-2e3"), "-2000");
        assert_eq!(plain_decimal("1.25e1"), "12.5");
    }

    #[test]
    fn rescale_multiplies_and_refuses_to_lower() {
        let mut b = Bars::with_scales(1, 0);
        b.push(0, [15, 16, 14, 15, 3]);
        let r = rescale(&b, 3, 2).unwrap();
        assert_eq!((r.open[0], r.volume[0]), (1500, 300));
        assert!(rescale(&r, 1, 0).is_err());
        assert_eq!(timeframe_ms("1h").unwrap(), 3_600_000);
        assert!(timeframe_ms("1M").is_err());
        assert_eq!(Venue::parse("Coinbase").unwrap(), Venue::Coinbase);
        assert!(Venue::parse("kraken").is_err());
    }
}
