//! Binance-style klines over REST (`GET /api/v3/klines`): paging by `startTime`,
//! rate limits honoured (429/418 with `Retry-After`, `X-MBX-USED-WEIGHT-1M`), transient
//! failures (5xx, timeouts, broken connections) retried with exponential backoff and
//! full jitter from a seeded RNG. Waiting goes through [`Pause`] so tests need not sleep.
//!
//! The built-in transport speaks plain HTTP/1.1 over hyper (already in the tree through
//! tonic/axum), which is what the local mock and an HTTP proxy need; a TLS transport
//! plugs in through [`Transport`] without touching the paging and retry logic.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::bars::Bars;
use crate::error::{DataError, Result};
use crate::fixed::{MAX_SCALE, parse_fixed, significant_decimals};

/// Boxed future, to keep the traits object-safe without async-trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A response: status, the headers the client reads, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub retry_after: Option<String>,
    pub used_weight_1m: Option<String>,
    /// The server's `Date` header (used to wait for the next rate-limit minute).
    pub date: Option<String>,
    pub body: Bytes,
}

/// A failure below HTTP: refused, reset, timed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError(pub String);

/// Sends one GET.
pub trait Transport: Send + Sync {
    fn get<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<HttpResponse, TransportError>>;
}

/// Waits; production sleeps on the tokio timer, tests record and return at once.
pub trait Pause: Send + Sync {
    fn pause(&self, d: Duration) -> BoxFuture<'_, ()>;
}

/// Sleeps on the tokio timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioPause;

impl Pause for TokioPause {
    fn pause(&self, d: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Plain HTTP/1.1 over hyper, one connection per request, with a per-request timeout.
#[derive(Debug, Clone)]
pub struct HyperTransport {
    pub timeout: Duration,
}

impl Transport for HyperTransport {
    fn get<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<HttpResponse, TransportError>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, http_get(url)).await {
                Ok(r) => r,
                Err(_) => Err(TransportError(format!(
                    "timed out after {:?}",
                    self.timeout
                ))),
            }
        })
    }
}

async fn http_get(url: &str) -> Result<HttpResponse, TransportError> {
    let err = |e: &dyn std::fmt::Display| TransportError(e.to_string());
    let uri: http::Uri = url.parse().map_err(|e| err(&e))?;
    if uri.scheme_str() != Some("http") {
        return Err(TransportError(format!(
            "{url}: only http:// is built in; plug a TLS Transport for https"
        )));
    }
    let host = uri
        .host()
        .ok_or_else(|| TransportError(format!("{url}: no host")))?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| err(&e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| err(&e))?;
    let driver = tokio::spawn(conn);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let req = http::Request::get(uri)
        .header(http::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| err(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| err(&e))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| err(&e))?.to_bytes();
    driver.abort();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Ok(HttpResponse {
        status: parts.status.as_u16(),
        retry_after: header("retry-after"),
        used_weight_1m: header("x-mbx-used-weight-1m"),
        date: header("date"),
        body,
    })
}

/// Retry and rate-limit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per page, rate-limit waits included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Request weight allowed per minute (Binance spot: 6000).
    pub weight_limit_1m: u32,
    /// Klines per request, at most 1000.
    pub limit: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            weight_limit_1m: 6000,
            limit: 1000,
        }
    }
}

/// Binance's weight of one klines request.
pub fn klines_weight(limit: u32) -> u32 {
    match limit {
        0..=99 => 1,
        100..=499 => 2,
        500..=1000 => 5,
        _ => 10,
    }
}

/// One kline as sent, numbers still as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kline {
    pub open_time_ms: i64,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
    pub close_time_ms: i64,
}

/// Counters of one fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchStats {
    pub requests: u32,
    pub pages: u32,
    pub rate_limited: u32,
    pub transient_failures: u32,
    pub weight_waits: u32,
    pub paused: Vec<Duration>,
}

/// The client.
pub struct BinanceClient {
    base_url: String,
    policy: RetryPolicy,
    transport: Arc<dyn Transport>,
    pause: Arc<dyn Pause>,
    rng: Mutex<ChaCha8Rng>,
}

impl std::fmt::Debug for BinanceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinanceClient")
            .field("base_url", &self.base_url)
            .field("policy", &self.policy)
            .finish()
    }
}

enum Outcome {
    Page(Vec<Kline>, Option<u32>, Option<String>),
    Retry {
        wait: Option<Duration>,
        why: String,
        rate_limited: bool,
    },
}

impl BinanceClient {
    /// `base_url` like `http://127.0.0.1:8080` (no trailing path); `seed` drives the jitter.
    pub fn new(
        base_url: &str,
        policy: RetryPolicy,
        seed: u64,
        transport: Arc<dyn Transport>,
        pause: Arc<dyn Pause>,
    ) -> Result<Self> {
        if policy.limit == 0 || policy.limit > 1000 {
            return Err(DataError::InvalidOption {
                field: "limit",
                reason: format!("{} not in 1..=1000", policy.limit),
            });
        }
        if policy.max_attempts == 0 {
            return Err(DataError::InvalidOption {
                field: "max_attempts",
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            policy,
            transport,
            pause,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .policy
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.policy.max_delay);
        let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        let jitter = match self.rng.lock() {
            Ok(mut r) => r.random_range(0..=ms),
            Err(_) => ms,
        };
        Duration::from_millis(jitter)
    }

    fn classify(&self, url: &str, resp: Result<HttpResponse, TransportError>) -> Result<Outcome> {
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                return Ok(Outcome::Retry {
                    wait: None,
                    why: e.0,
                    rate_limited: false,
                });
            }
        };
        let body = String::from_utf8_lossy(&resp.body);
        match resp.status {
            200 => {
                let weight = resp
                    .used_weight_1m
                    .as_deref()
                    .and_then(|w| w.trim().parse().ok());
                Ok(Outcome::Page(
                    parse_klines(url, &resp.body)?,
                    weight,
                    resp.date,
                ))
            }
            429 | 418 => {
                let wait = resp
                    .retry_after
                    .as_deref()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Ok(Outcome::Retry {
                    wait,
                    why: format!("HTTP {} {}", resp.status, body.trim()),
                    rate_limited: true,
                })
            }
            500..=599 => Ok(Outcome::Retry {
                wait: None,
                why: format!("HTTP {} {}", resp.status, body.trim()),
                rate_limited: false,
            }),
            s => Err(DataError::Exchange {
                url: url.to_owned(),
                reason: format!("HTTP {s}: {}", body.trim()),
            }),
        }
    }

    /// One page: klines with `start_ms <= openTime <= end_ms`, retried as needed.
    pub async fn klines_page(
        &self,
        symbol: &str,
        interval: &str,
        start_ms: i64,
        end_ms: i64,
        stats: &mut FetchStats,
    ) -> Result<Vec<Kline>> {
        let url = format!(
            "{}/api/v3/klines?symbol={symbol}&interval={interval}&startTime={start_ms}&endTime={end_ms}&limit={}",
            self.base_url, self.policy.limit
        );
        let mut last = String::new();
        for attempt in 0..self.policy.max_attempts {
            stats.requests += 1;
            let resp = self.transport.get(&url).await;
            match self.classify(&url, resp)? {
                Outcome::Page(page, weight, date) => {
                    if let Some(used) = weight
                        && used + klines_weight(self.policy.limit) > self.policy.weight_limit_1m
                    {
                        let wait = until_next_minute(date.as_deref());
                        stats.weight_waits += 1;
                        stats.paused.push(wait);
                        self.pause.pause(wait).await;
                    }
                    stats.pages += 1;
                    return Ok(page);
                }
                Outcome::Retry {
                    wait,
                    why,
                    rate_limited,
                } => {
                    if rate_limited {
                        stats.rate_limited += 1;
                    } else {
                        stats.transient_failures += 1;
                    }
                    last = why;
                    if attempt + 1 < self.policy.max_attempts {
                        let d = wait.unwrap_or_else(|| self.backoff(attempt));
                        stats.paused.push(d);
                        self.pause.pause(d).await;
                    }
                }
            }
        }
        Err(DataError::ExchangeExhausted {
            url,
            attempts: self.policy.max_attempts,
            last,
        })
    }

    /// Every kline with `start_ms <= openTime <= end_ms`, paging by `startTime`.
    pub async fn fetch_klines(
        &self,
        symbol: &str,
        interval: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<(Vec<Kline>, FetchStats)> {
        let mut stats = FetchStats::default();
        let mut out: Vec<Kline> = Vec::new();
        let mut start = start_ms;
        while start <= end_ms {
            let page = self
                .klines_page(symbol, interval, start, end_ms, &mut stats)
                .await?;
            let n = page.len();
            for k in page {
                if out.last().is_some_and(|l| k.open_time_ms <= l.open_time_ms) {
                    return Err(DataError::Exchange {
                        url: self.base_url.clone(),
                        reason: format!("klines out of order at openTime {}", k.open_time_ms),
                    });
                }
                out.push(k);
            }
            match out.last() {
                Some(l) if n as u32 == self.policy.limit => start = l.open_time_ms + 1,
                _ => break,
            }
        }
        Ok((out, stats))
    }

    /// Fetches and converts to fixed-point bars, the scales chosen from the data.
    pub async fn fetch_bars(
        &self,
        symbol: &str,
        interval: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<(Bars, FetchStats)> {
        let (klines, stats) = self
            .fetch_klines(symbol, interval, start_ms, end_ms)
            .await?;
        Ok((klines_to_bars(&klines)?, stats))
    }
}

/// Seconds to the next minute by the server's `Date` (RFC 2822), plus one; a full minute without it.
fn until_next_minute(date: Option<&str>) -> Duration {
    use chrono::Timelike;
    match date.and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok()) {
        Some(d) => Duration::from_secs(u64::from(60 - d.second()) + 1),
        None => Duration::from_secs(61),
    }
}

/// Parses the JSON array of arrays Binance sends.
pub fn parse_klines(url: &str, body: &[u8]) -> Result<Vec<Kline>> {
    let bad = |reason: String| DataError::Exchange {
        url: url.to_owned(),
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let arr = v
        .as_array()
        .ok_or_else(|| bad("body is not a JSON array".into()))?;
    arr.iter()
        .enumerate()
        .map(|(i, k)| {
            let f = k
                .as_array()
                .filter(|f| f.len() >= 7)
                .ok_or_else(|| bad(format!("kline {i}: not an array of at least 7 fields")))?;
            let int = |j: usize| {
                f[j].as_i64()
                    .ok_or_else(|| bad(format!("kline {i} field {j}: not an integer")))
            };
            let text = |j: usize| {
                f[j].as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("kline {i} field {j}: not a string")))
            };
            Ok(Kline {
                open_time_ms: int(0)?,
                open: text(1)?,
                high: text(2)?,
                low: text(3)?,
                close: text(4)?,
                volume: text(5)?,
                close_time_ms: int(6)?,
            })
        })
        .collect()
}

/// Converts klines to bars labelled by open time; scales are the most significant decimals seen.
pub fn klines_to_bars(klines: &[Kline]) -> Result<Bars> {
    let dec = |s: &str| significant_decimals(s).unwrap_or(0);
    let ps = klines
        .iter()
        .flat_map(|k| [&k.open, &k.high, &k.low, &k.close])
        .map(|s| dec(s))
        .max()
        .unwrap_or(0)
        .min(MAX_SCALE);
    let vs = klines
        .iter()
        .map(|k| dec(&k.volume))
        .max()
        .unwrap_or(0)
        .min(MAX_SCALE);
    let mut bars = Bars::with_scales(ps, vs);
    for k in klines {
        let p = |s: &str, scale: u8, what: &str| {
            parse_fixed(s, scale).map_err(|e| DataError::Exchange {
                url: String::new(),
                reason: format!("kline {}: {what} {s:?}: {e}", k.open_time_ms),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binance_format() {
        let body = br#"[[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100","148976.11427815",1499644799999,"2434.19055334",308,"1756.87402397","28.46694368","0"]]"#;
        let k = parse_klines("u", body).unwrap();
        assert_eq!(k[0].open_time_ms, 1_499_040_000_000);
        assert_eq!(k[0].close, "0.01577100");
        let b = klines_to_bars(&k).unwrap();
        assert_eq!((b.price_scale, b.volume_scale), (7, 8));
        assert_eq!(b.high[0], 8_000_000);
        assert!(parse_klines("u", b"{\"code\":-1121}").is_err());
    }

    #[test]
    fn weights_and_minute_wait() {
        assert_eq!(klines_weight(1000), 5);
        assert_eq!(klines_weight(100), 2);
        assert_eq!(
            until_next_minute(Some("Sun, 22 Nov 2026 01:02:45 GMT")),
            Duration::from_secs(16)
        );
        assert_eq!(until_next_minute(None), Duration::from_secs(61));
    }

    #[test]
    fn backoff_is_seeded_jittered_and_capped() {
        let mk = |seed| {
            BinanceClient::new(
                "http://127.0.0.1:1",
                RetryPolicy::default(),
                seed,
                Arc::new(HyperTransport {
                    timeout: Duration::from_secs(1),
                }),
                Arc::new(TokioPause),
            )
            .unwrap()
        };
        let (a, b, c) = (mk(1), mk(1), mk(2));
        let sa: Vec<Duration> = (0..12).map(|i| a.backoff(i)).collect();
        let sb: Vec<Duration> = (0..12).map(|i| b.backoff(i)).collect();
        let sc: Vec<Duration> = (0..12).map(|i| c.backoff(i)).collect();
        assert_eq!(sa, sb);
        assert_ne!(sa, sc);
        for (i, d) in sa.iter().enumerate() {
            let cap = Duration::from_millis(250 * (1u64 << i)).min(Duration::from_secs(30));
            assert!(*d <= cap, "attempt {i}: {d:?} > {cap:?}");
        }
        assert!(
            BinanceClient::new(
                "http://x",
                RetryPolicy {
                    limit: 1001,
                    ..RetryPolicy::default()
                },
                0,
                Arc::new(HyperTransport {
                    timeout: Duration::from_secs(1)
                }),
                Arc::new(TokioPause)
            )
            .is_err()
        );
    }
}
