//! Binance spot klines over HTTPS (`GET /api/v3/klines`): paging by `startTime`, each
//! request costing its documented weight from a 6000-per-minute budget, the
//! `X-MBX-USED-WEIGHT-1M` header and 429/418 `Retry-After` answers honoured by the
//! shared engine (`crate::venues::rest`). Payloads are read by the pure [`parse`] module.

pub mod parse;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::bars::Bars;
use crate::error::{DataError, Result};
use crate::venues::rest::{RateLimits, RestClient, RetryPolicy, Timer, Transport};
use crate::venues::{BoxFuture, Candle, CandleSource, FetchStats, Venue, candles_to_bars};

pub use parse::KlineEvent;

/// Binance spot's request weight per minute and IP.
pub const WEIGHT_LIMIT_1M: u32 = 6000;

/// Binance's weight of one klines request.
pub fn klines_weight(limit: u32) -> u32 {
    match limit {
        0..=99 => 1,
        100..=499 => 2,
        500..=1000 => 5,
        _ => 10,
    }
}

/// Settings of the Binance client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinanceOptions {
    pub retry: RetryPolicy,
    /// Klines per request, at most 1000.
    pub limit: u32,
    /// The weight budget per minute this client spends (at most the venue's).
    pub weight_limit_1m: u32,
}

impl Default for BinanceOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            limit: 1000,
            weight_limit_1m: WEIGHT_LIMIT_1M,
        }
    }
}

/// The client.
#[derive(Debug)]
pub struct BinanceClient {
    base_url: String,
    limit: u32,
    rest: RestClient,
}

impl BinanceClient {
    /// `base_url` like `https://api.binance.com` (no trailing path); `seed` drives the jitter.
    pub fn new(
        base_url: &str,
        options: BinanceOptions,
        seed: u64,
        transport: Arc<dyn Transport>,
        timer: Arc<dyn Timer>,
    ) -> Result<Self> {
        if options.limit == 0 || options.limit > 1000 {
            return Err(DataError::InvalidOption {
                field: "limit",
                reason: format!("{} not in 1..=1000", options.limit),
            });
        }
        let budget = NonZeroU32::new(options.weight_limit_1m).ok_or(DataError::InvalidOption {
            field: "weight_limit_1m",
            reason: "must be > 0".into(),
        })?;
        let limits = RateLimits {
            budget,
            per: Duration::from_secs(60),
            used_weight_header: Some(("x-mbx-used-weight-1m", options.weight_limit_1m)),
        };
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            limit: options.limit,
            rest: RestClient::new(
                Venue::Binance.name(),
                options.retry,
                limits,
                seed,
                transport,
                timer,
            )?,
        })
    }

    /// One page: klines with `start_ms <= openTime <= end_ms`, at most `limit`.
    pub async fn klines_page(
        &self,
        symbol: &str,
        interval: &str,
        start_ms: i64,
        end_ms: i64,
        stats: &mut FetchStats,
    ) -> Result<Vec<Candle>> {
        let url = format!(
            "{}/api/v3/klines?symbol={symbol}&interval={interval}&startTime={start_ms}&endTime={end_ms}&limit={}",
            self.base_url, self.limit
        );
        let weight = NonZeroU32::new(klines_weight(self.limit)).unwrap_or(NonZeroU32::MIN);
        let body = self.rest.get(&url, weight, stats).await?;
        let page = parse::klines(&url, &body)?;
        stats.pages += 1;
        Ok(page)
    }

    /// Every kline with `start_ms <= openTime <= end_ms`, paging by `startTime`.
    pub async fn fetch_klines(
        &self,
        symbol: &str,
        interval: &str,
        start_ms: i64,
        end_ms: i64,
        stats: &mut FetchStats,
    ) -> Result<Vec<Candle>> {
        let mut out: Vec<Candle> = Vec::new();
        let mut start = start_ms;
        while start <= end_ms {
            let page = self
                .klines_page(symbol, interval, start, end_ms, stats)
                .await?;
            let n = page.len();
            for k in page {
                if out.last().is_some_and(|l| k.open_time_ms <= l.open_time_ms) {
                    return Err(DataError::VenuePayload {
                        venue: Venue::Binance.name(),
                        url: self.base_url.clone(),
                        field: "openTime".into(),
                        reason: format!(
                            "page starts at {} inside the previous page",
                            k.open_time_ms
                        ),
                    });
                }
                out.push(k);
            }
            match out.last() {
                Some(l) if n as u32 == self.limit => start = l.open_time_ms + 1,
                _ => break,
            }
        }
        Ok(out)
    }

    /// Fetches and converts to fixed-point bars, the scales chosen from the data.
    pub async fn fetch_bars(
        &self,
        symbol: &str,
        interval: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<(Bars, FetchStats)> {
        let mut stats = FetchStats::default();
        let klines = self
            .fetch_klines(symbol, interval, start_ms, end_ms, &mut stats)
            .await?;
        Ok((candles_to_bars(&klines)?, stats))
    }
}

impl CandleSource for BinanceClient {
    fn venue(&self) -> Venue {
        Venue::Binance
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
        Box::pin(self.fetch_klines(symbol, timeframe, start_ms, end_ms, stats))
    }

    fn page_len(&self) -> usize {
        self.limit as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights() {
        assert_eq!(klines_weight(1000), 5);
        assert_eq!(klines_weight(100), 2);
        assert_eq!(klines_weight(99), 1);
    }
}
