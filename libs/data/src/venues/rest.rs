//! The REST engine every venue adapter shares: one GET with a per-request budget
//! from a `governor` limiter (the venue's request weight per minute, or requests per
//! second), retries of transient failures (5xx, timeouts, broken connections) after
//! exponential `backon` delays with seeded jitter, 429/418 answered by waiting their
//! `Retry-After`, a venue's used-weight header honoured by waiting for the next
//! minute, and every other failure a typed [`DataError`].
//!
//! Time goes through [`Timer`] (the limiter's clock too), so tests record the waits
//! instead of sleeping; the HTTP client is a [`Transport`] (`super::tls` in production).

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use bytes::Bytes;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::error::{DataError, Result};

/// Boxed future, to keep the traits object-safe without async-trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A response: status, headers, the whole body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why no response came back.
#[derive(Debug)]
pub enum TransportFailure {
    Timeout(Duration),
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

/// Sends one GET.
pub trait Transport: Send + Sync {
    fn get<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<HttpResponse, TransportFailure>>;
}

/// A monotonic clock and a way to wait on it: tokio's in production; tests advance a
/// virtual clock when asked to wait.
pub trait Timer: Send + Sync {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;
    fn pause(&self, d: Duration) -> BoxFuture<'_, ()>;
}

/// tokio's clock and timer.
#[derive(Debug, Clone, Copy)]
pub struct TokioTimer {
    origin: tokio::time::Instant,
}

impl Default for TokioTimer {
    fn default() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Timer for TokioTimer {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn pause(&self, d: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The limiter's clock is the [`Timer`]'s, so a test's virtual waits refill it.
#[derive(Clone)]
struct TimerClock(Arc<dyn Timer>);

impl Clock for TimerClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.0.now())
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TimerClock, NoOpMiddleware<Nanos>>;

/// Retry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, rate-limit answers included.
    pub max_attempts: u32,
    /// First retry delay; each next one doubles, up to `max_delay`, plus up to as much jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// A venue's request budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Cells the client may spend per `per` (Binance: 6000 weight per minute).
    pub budget: NonZeroU32,
    pub per: Duration,
    /// A response header with the weight the venue has counted this minute, and its limit.
    pub used_weight_header: Option<(&'static str, u32)>,
}

/// Counters of one fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchStats {
    pub requests: u32,
    pub pages: u32,
    /// 429 and 418 answers.
    pub rate_limited: u32,
    /// 5xx answers, timeouts, broken connections.
    pub transient_failures: u32,
    /// Waits because the venue's used-weight header neared its limit.
    pub weight_waits: u32,
    /// Waits of our own limiter.
    pub limiter_waits: u32,
    /// Every wait, in order.
    pub paused: Vec<Duration>,
}

/// The engine: one venue, one limiter, one transport.
pub struct RestClient {
    venue: &'static str,
    policy: RetryPolicy,
    limits: RateLimits,
    limiter: Limiter,
    transport: Arc<dyn Transport>,
    timer: Arc<dyn Timer>,
    seed: u64,
    calls: AtomicU64,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("venue", &self.venue)
            .field("policy", &self.policy)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

enum Attempt {
    Done(Bytes),
    Retry {
        /// The venue said how long (Retry-After).
        wait: Option<Duration>,
        why: String,
        rate_limited: bool,
    },
}

impl RestClient {
    /// `seed` drives the retry jitter (each request draws from its own seeded sequence).
    pub fn new(
        venue: &'static str,
        policy: RetryPolicy,
        limits: RateLimits,
        seed: u64,
        transport: Arc<dyn Transport>,
        timer: Arc<dyn Timer>,
    ) -> Result<Self> {
        if policy.max_attempts == 0 {
            return Err(DataError::InvalidOption {
                field: "max_attempts",
                reason: "must be at least 1".into(),
            });
        }
        let quota = Quota::with_period(limits.per / limits.budget.get())
            .ok_or_else(|| DataError::InvalidOption {
                field: "rate_limit",
                reason: format!("{} per {:?} is not a rate", limits.budget, limits.per),
            })?
            .allow_burst(limits.budget);
        Ok(Self {
            venue,
            limiter: RateLimiter::direct_with_clock(quota, TimerClock(timer.clone())),
            policy,
            limits,
            transport,
            timer,
            seed,
            calls: AtomicU64::new(0),
        })
    }

    pub fn venue(&self) -> &'static str {
        self.venue
    }

    /// The retry delays of one request: exponential from `base_delay`, capped, with
    /// jitter of up to the delay again, from a sequence seeded by the client and the call.
    fn delays(&self) -> backon::ExponentialBackoff {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        backon::ExponentialBuilder::new()
            .with_min_delay(self.policy.base_delay)
            .with_max_delay(self.policy.max_delay)
            .without_max_times()
            .with_jitter()
            .with_jitter_seed(self.seed ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .build()
    }

    async fn take_budget(&self, weight: NonZeroU32, stats: &mut FetchStats) -> Result<()> {
        loop {
            match self.limiter.check_n(weight) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(not_until)) => {
                    let wait = not_until.wait_time_from(Nanos::from(self.timer.now()));
                    stats.limiter_waits += 1;
                    stats.paused.push(wait);
                    self.timer.pause(wait).await;
                }
                Err(e) => {
                    return Err(DataError::InvalidOption {
                        field: "rate_limit",
                        reason: format!(
                            "a request of weight {weight} exceeds the budget {}: {e}",
                            self.limits.budget
                        ),
                    });
                }
            }
        }
    }

    fn classify(&self, url: &str, resp: HttpResponse) -> Result<Attempt> {
        match resp.status {
            200..=299 => Ok(Attempt::Done(resp.body)),
            429 | 418 => {
                let (_, msg) = super::error_message(&resp.body);
                Ok(Attempt::Retry {
                    wait: retry_after(resp.header("retry-after"), resp.header("date")),
                    why: format!("HTTP {}: {msg}", resp.status),
                    rate_limited: true,
                })
            }
            500..=599 => {
                let (_, msg) = super::error_message(&resp.body);
                Ok(Attempt::Retry {
                    wait: None,
                    why: format!("HTTP {}: {msg}", resp.status),
                    rate_limited: false,
                })
            }
            status => {
                let (code, message) = super::error_message(&resp.body);
                Err(DataError::VenueStatus {
                    venue: self.venue,
                    url: url.to_owned(),
                    status,
                    code,
                    message,
                })
            }
        }
    }

    /// GETs `url` (costing `weight` of the budget) until it succeeds, fails for good,
    /// or the attempts run out; returns the body of the 2xx answer.
    pub async fn get(
        &self,
        url: &str,
        weight: NonZeroU32,
        stats: &mut FetchStats,
    ) -> Result<Bytes> {
        let mut delays = self.delays();
        let mut last = String::new();
        for attempt in 0..self.policy.max_attempts {
            self.take_budget(weight, stats).await?;
            stats.requests += 1;
            let outcome = match self.transport.get(url).await {
                Ok(resp) => {
                    let used = self.limits.used_weight_header.and_then(|(h, limit)| {
                        Some((resp.header(h)?.trim().parse::<u32>().ok()?, limit))
                    });
                    let date = resp.header("date").map(str::to_owned);
                    let outcome = self.classify(url, resp)?;
                    if let (Attempt::Done(_), Some((used, limit))) = (&outcome, used)
                        && used.saturating_add(weight.get()) > limit
                    {
                        // The venue counts weight from every client of this IP: wait for its next minute.
                        let wait = until_next_minute(date.as_deref());
                        stats.weight_waits += 1;
                        stats.paused.push(wait);
                        self.timer.pause(wait).await;
                    }
                    outcome
                }
                Err(TransportFailure::Timeout(after)) => Attempt::Retry {
                    wait: None,
                    why: DataError::VenueTimeout {
                        venue: self.venue,
                        url: url.to_owned(),
                        after,
                    }
                    .to_string(),
                    rate_limited: false,
                },
                Err(TransportFailure::Failed(source)) => Attempt::Retry {
                    wait: None,
                    why: with_causes(&DataError::VenueTransport {
                        venue: self.venue,
                        url: url.to_owned(),
                        source,
                    }),
                    rate_limited: false,
                },
            };
            match outcome {
                Attempt::Done(body) => return Ok(body),
                Attempt::Retry {
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
                        let backoff = delays.next().unwrap_or(self.policy.max_delay);
                        let d = wait.unwrap_or(backoff);
                        stats.paused.push(d);
                        self.timer.pause(d).await;
                    }
                }
            }
        }
        Err(DataError::ExchangeExhausted {
            url: url.to_owned(),
            attempts: self.policy.max_attempts,
            last,
        })
    }
}

/// An error and its causes on one line ("client error (Connect): invalid peer certificate: UnknownIssuer").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

/// `Retry-After` as seconds or as an HTTP date (against the response's `Date`).
fn retry_after(value: Option<&str>, date: Option<&str>) -> Option<Duration> {
    let v = value?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let now = chrono::DateTime::parse_from_rfc2822(date?.trim()).ok()?;
    (at - now).to_std().ok()
}

/// Seconds to the next minute by the server's `Date` (RFC 2822), plus one; a full minute without it.
pub fn until_next_minute(date: Option<&str>) -> Duration {
    use chrono::Timelike;
    match date.and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok()) {
        Some(d) => Duration::from_secs(u64::from(60 - d.second()) + 1),
        None => Duration::from_secs(61),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_as_seconds_or_date() {
        assert_eq!(retry_after(Some(" 3 "), None), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(
                Some("Sun, 22 Nov 2026 01:03:10 GMT"),
                Some("Sun, 22 Nov 2026 01:02:45 GMT")
            ),
            Some(Duration::from_secs(25))
        );
        assert_eq!(retry_after(Some("soon"), None), None);
        assert_eq!(
            until_next_minute(Some("Sun, 22 Nov 2026 01:02:45 GMT")),
            Duration::from_secs(16)
        );
        assert_eq!(until_next_minute(None), Duration::from_secs(61));
    }
}
