//! `grodt bench latency`: the live pipeline's latency, measured (a
//! benchmark, never a test): an open-loop producer publishes bars at a fixed
//! rate on loopback Redis, and every latency is taken from the instant a bar
//! was *due* (not when the producer got round to it), so a stall shows in
//! the figures instead of slowing the producer (no coordinated omission).
//!
//! Two chains, side by side in one run:
//! - `pipeline`: execution, strategy and risk (built in this process over
//!   Redis and Postgres, their journals committed per input as in
//!   production) trading a zigzag series with an SMA(1)/SMA(2) crossover, so
//!   the strategy orders on every bar. Measured: bar due -> the fill it
//!   caused published (one hop: the order decided on the previous bar rests
//!   at the venue), and bar due -> the order decided on it accepted by the
//!   venue (four hops: bars -> execution -> report -> strategy -> intent ->
//!   risk -> order -> execution).
//! - `relay`: a bare chain of the same four hops over the same bus code
//!   (consumer groups, read, publish, ack) that does nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use grodt_bus::consumer::{Consumer, ConsumerConfig, Handler, HandlerError};
use grodt_bus::{
    ConsumerName, Delivery, Envelope, EventBus, GroupName, RedisBus, RedisBusConfig, StartFrom,
    StreamName,
};
use tokio::sync::{mpsc, watch};

/// Latency percentiles of one measurement, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// Samples after the warm-up.
    pub n: usize,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (microseconds).
    pub fn of(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let n = samples.len();
        let at = |q: f64| {
            if n == 0 {
                return 0;
            }
            // Nearest rank: the smallest value with at least q of the samples at or below it.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "a rank in 1..=n from a fraction of n"
            )]
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            samples[rank - 1]
        };
        Self {
            n,
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: samples.last().copied().unwrap_or(0),
        }
    }

    /// `p50 / p99 / p99.9 / max` in milliseconds, for the report.
    pub fn render(&self) -> String {
        let ms = |us: u64| format!("{:.3}", us as f64 / 1_000.0);
        format!(
            "n {:>7}  p50 {:>8} ms  p99 {:>8} ms  p99.9 {:>8} ms  max {:>8} ms",
            self.n,
            ms(self.p50),
            ms(self.p99),
            ms(self.p999),
            ms(self.max)
        )
    }
}

/// When bar `k` was due: the producer's schedule.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    period: Duration,
}

impl Schedule {
    /// Bars every `1 / rate` seconds from now (plus a short lead).
    pub fn new(rate: u32) -> Self {
        Self {
            start: Instant::now() + Duration::from_millis(200),
            period: Duration::from_secs(1) / rate.max(1),
        }
    }

    /// The instant bar `k` is due.
    pub fn due(&self, k: u64) -> Instant {
        self.start + self.period * u32::try_from(k).unwrap_or(u32::MAX)
    }

    /// Microseconds from bar `k`'s due instant to now.
    pub fn since_due(&self, k: u64) -> u64 {
        u64::try_from(
            Instant::now()
                .saturating_duration_since(self.due(k))
                .as_micros(),
        )
        .unwrap_or(u64::MAX)
    }
}

/// Publishes `make(k)` on `stream` at the schedule's instants for `count`
/// bars, open loop: a late publish does not move the next one's due time.
pub async fn produce(
    bus: Arc<dyn EventBus>,
    stream: StreamName,
    schedule: Schedule,
    count: u64,
    make: impl Fn(u64) -> Envelope,
) -> Result<(), grodt_bus::BusError> {
    for k in 0..count {
        tokio::time::sleep_until(schedule.due(k).into()).await;
        bus.publish(&stream, &make(k)).await?;
    }
    Ok(())
}

fn name<T>(
    parse: impl Fn(String) -> Result<T, grodt_bus::BusError>,
    text: &str,
) -> Result<T, BenchError> {
    parse(text.to_owned()).map_err(|e| BenchError::Setup(format!("{text}: {e}")))
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Redis, Postgres or a service could not be set up.
    #[error("setup: {0}")]
    Setup(String),
    /// The run lost samples (the chain stalled past the drain time).
    #[error("{0}")]
    Incomplete(String),
}

/// One relay hop: publishes what it reads on the next stream, then acks.
struct Relay {
    bus: Arc<dyn EventBus>,
    next: StreamName,
}

#[async_trait]
impl Handler for Relay {
    async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
        self.bus.publish(&self.next, &d.envelope).await?;
        Ok(())
    }
}

/// Hands every delivery's bar number to the measuring loop.
struct Observe {
    tx: mpsc::UnboundedSender<(u64, Instant)>,
}

#[async_trait]
impl Handler for Observe {
    async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
        let k = u64::from_le_bytes(
            d.envelope
                .payload
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; 8]),
        );
        let _ = self.tx.send((k, Instant::now()));
        Ok(())
    }
}

/// A consumer with the services' settings, but reading with a short block.
fn consumer(
    bus: Arc<dyn EventBus>,
    handler: Arc<dyn Handler>,
    stream: &StreamName,
    group: &str,
) -> Result<Consumer, BenchError> {
    let mut c = ConsumerConfig::new(
        stream.clone(),
        name(GroupName::parse, group)?,
        name(ConsumerName::parse, &format!("{group}-bench"))?,
    );
    c.start = StartFrom::New;
    Ok(Consumer::new(bus, handler, c))
}

/// Connects to Redis under a fresh key prefix.
///
/// # Errors
/// Redis unreachable.
pub async fn redis(url: &str, prefix: &str) -> Result<Arc<dyn EventBus>, BenchError> {
    let bus = RedisBus::connect(RedisBusConfig::new(url, prefix))
        .await
        .map_err(|e| BenchError::Setup(format!("Redis at {url}: {e}")))?;
    Ok(Arc::new(bus))
}

/// The bare relay chain: `hops` relays between `hops + 1` streams, bars at
/// `rate` per second for `seconds`; latency from a bar's due instant to its
/// arrival at the end of the chain, after `warmup` seconds.
///
/// # Errors
/// Redis unreachable, or bars lost.
pub async fn relay(
    redis_url: &str,
    hops: usize,
    rate: u32,
    seconds: u64,
    warmup: u64,
) -> Result<Percentiles, BenchError> {
    let prefix = format!("bench-relay-{}:", uuid::Uuid::now_v7().simple());
    let bus = redis(redis_url, &prefix).await?;
    let streams: Vec<StreamName> = (0..=hops)
        .map(|i| name(StreamName::parse, &format!("grodt.bench-relay-{i}.v1")))
        .collect::<Result<_, _>>()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for i in 0..=hops {
        let handler: Arc<dyn Handler> = if i < hops {
            Arc::new(Relay {
                bus: bus.clone(),
                next: streams[i + 1].clone(),
            })
        } else {
            Arc::new(Observe { tx: tx.clone() })
        };
        let c = consumer(bus.clone(), handler, &streams[i], &format!("relay{i}"))?;
        c.ensure_group()
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = c
                .run(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        }));
    }
    let count = u64::from(rate) * seconds;
    let schedule = Schedule::new(rate);
    let producer = tokio::spawn(produce(
        bus.clone(),
        streams[0].clone(),
        schedule,
        count,
        |k| {
            Envelope::new(
                "grodt.v1.BenchRelay",
                chrono::Utc::now(),
                k.to_le_bytes().to_vec(),
            )
        },
    ));
    let skip = u64::from(rate) * warmup;
    let mut samples = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut seen = 0u64;
    let deadline = schedule.due(count) + Duration::from_secs(10);
    while seen < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((k, at))) => {
                seen += 1;
                if k >= skip {
                    samples.push(
                        u64::try_from(at.saturating_duration_since(schedule.due(k)).as_micros())
                            .unwrap_or(u64::MAX),
                    );
                }
            }
            _ => break,
        }
    }
    let _ = stop_tx.send(true);
    let _ = producer.await;
    for t in tasks {
        let _ = t.await;
    }
    if seen < count {
        return Err(BenchError::Incomplete(format!(
            "relay: {seen} of {count} bars reached the end of the chain"
        )));
    }
    Ok(Percentiles::of(samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=1000).rev().collect());
        assert_eq!(
            (p.n, p.p50, p.p99, p.p999, p.max),
            (1000, 500, 990, 999, 1000)
        );
        let one = Percentiles::of(vec![7]);
        assert_eq!((one.p50, one.p999), (7, 7));
        assert_eq!(Percentiles::of(Vec::new()).n, 0);
    }
}
