//! Coinbase Exchange candles over HTTPS (`GET /products/{id}/candles?granularity=&start=&end=`):
//! at most 300 candles per request, so a range is asked for in windows of 300
//! intervals; public endpoints allow 10 requests per second per IP. Payloads are read
//! by the pure [`parse`] module.

pub mod parse;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{DataError, Result};
use crate::time::format_ns;
use crate::venues::rest::{RateLimits, RestClient, RetryPolicy, Timer, Transport};
use crate::venues::{BoxFuture, Candle, CandleSource, FetchStats, Venue, timeframe_ms};

/// Candles per request the API answers at most.
pub const MAX_CANDLES: i64 = 300;

/// Public requests per second the client spends.
pub const REQUESTS_PER_SECOND: u32 = 10;

/// Granularity (seconds) of a timeframe label; Coinbase has 1m 5m 15m 1h 6h 1d.
pub fn granularity(timeframe: &str) -> Result<i64> {
    match timeframe {
        "1m" | "5m" | "15m" | "1h" | "6h" | "1d" => Ok(timeframe_ms(timeframe)? / 1000),
        other => Err(DataError::InvalidOption {
            field: "timeframe",
            reason: format!("{other:?}: Coinbase candles come in 1m 5m 15m 1h 6h 1d"),
        }),
    }
}

/// The client.
#[derive(Debug)]
pub struct CoinbaseClient {
    base_url: String,
    rest: RestClient,
}

impl CoinbaseClient {
    /// `base_url` like `https://api.exchange.coinbase.com`; `seed` drives the jitter.
    pub fn new(
        base_url: &str,
        retry: RetryPolicy,
        seed: u64,
        transport: Arc<dyn Transport>,
        timer: Arc<dyn Timer>,
    ) -> Result<Self> {
        let limits = RateLimits {
            budget: NonZeroU32::new(REQUESTS_PER_SECOND).unwrap_or(NonZeroU32::MIN),
            per: Duration::from_secs(1),
            used_weight_header: None,
        };
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            rest: RestClient::new(
                Venue::Coinbase.name(),
                retry,
                limits,
                seed,
                transport,
                timer,
            )?,
        })
    }

    /// One window: candles with `start_ms <= time <= end_ms`, at most 300 intervals apart.
    pub async fn candles_page(
        &self,
        product: &str,
        granularity_s: i64,
        start_ms: i64,
        end_ms: i64,
        stats: &mut FetchStats,
    ) -> Result<Vec<Candle>> {
        let iso = |ms: i64| format_ns(ms * 1_000_000);
        let url = format!(
            "{}/products/{product}/candles?granularity={granularity_s}&start={}&end={}",
            self.base_url,
            iso(start_ms),
            iso(end_ms)
        );
        let body = self.rest.get(&url, NonZeroU32::MIN, stats).await?;
        let mut page = parse::candles(&url, &body)?;
        // The API rounds the window out to whole buckets; keep exactly what was asked.
        page.retain(|c| c.open_time_ms >= start_ms && c.open_time_ms <= end_ms);
        stats.pages += 1;
        Ok(page)
    }

    /// Every candle with `start_ms <= time <= end_ms`, oldest first, window by window.
    pub async fn fetch_candles(
        &self,
        product: &str,
        timeframe: &str,
        start_ms: i64,
        end_ms: i64,
        stats: &mut FetchStats,
    ) -> Result<Vec<Candle>> {
        let g = granularity(timeframe)?;
        let step = g * 1000;
        // Windows start on bucket boundaries so that each bucket is asked for once.
        let mut start = start_ms.div_euclid(step) * step;
        if start < start_ms {
            start += step;
        }
        let mut out: Vec<Candle> = Vec::new();
        while start <= end_ms {
            let end = (start + (MAX_CANDLES - 1) * step).min(end_ms);
            let page = self.candles_page(product, g, start, end, stats).await?;
            out.extend(page);
            start += MAX_CANDLES * step;
        }
        Ok(out)
    }
}

impl CandleSource for CoinbaseClient {
    fn venue(&self) -> Venue {
        Venue::Coinbase
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn candles<'a>(
        &'a self,
        symbol: &'a str,
        timeframe: &'a str,
        start_ms: i64,
        end_ms: i64,
        stats: &'a mut FetchStats,
    ) -> BoxFuture<'a, Result<Vec<Candle>>> {
        Box::pin(self.fetch_candles(symbol, timeframe, start_ms, end_ms, stats))
    }

    fn page_len(&self) -> usize {
        MAX_CANDLES as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularities() {
        assert_eq!(granularity("1h").unwrap(), 3600);
        assert_eq!(granularity("1d").unwrap(), 86_400);
        let e = granularity("4h").unwrap_err();
        assert!(e.to_string().contains("timeframe"), "{e}");
    }
}
