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
///
/// On a thread of its own that sleeps with the OS's high-resolution timer:
/// tokio's timer rounds a wake-up up to its next millisecond tick, which
/// published every bar 0-1 ms after it was due and added that to every
/// figure of both chains (a harness delay, not the system's).
pub fn produce(
    bus: Arc<dyn EventBus>,
    stream: StreamName,
    schedule: Schedule,
    count: u64,
    make: impl Fn(u64) -> Envelope + Send + 'static,
) -> tokio::task::JoinHandle<Result<(), grodt_bus::BusError>> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        for k in 0..count {
            let wait = schedule.due(k).saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            runtime.block_on(bus.publish(&stream, &make(k)))?;
        }
        Ok(())
    })
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
    let producer = produce(bus.clone(), streams[0].clone(), schedule, count, |k| {
        Envelope::new(
            "grodt.v1.BenchRelay",
            chrono::Utc::now(),
            k.to_le_bytes().to_vec(),
        )
    });
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

/// Options of `grodt bench latency`.
#[derive(Debug, Clone, clap::Args)]
pub struct LatencyOptions {
    /// Redis (loopback); every run uses its own key prefix.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Postgres server (the run creates and drops its own database).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub database_url: String,
    /// Bars per second, open loop.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u32,
    /// Seconds of bars.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Leading seconds left out of the figures (connections, caches).
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Only the bare relay chain (no services).
    #[arg(long)]
    pub relay_only: bool,
}

/// Hops of the pipeline's decision path: bars -> execution -> report ->
/// strategy -> intent -> risk -> order -> execution -> report.
pub const PIPELINE_HOPS: usize = 4;

/// Runs the benchmark and renders its report.
///
/// # Errors
/// Setup failures, or a chain that lost bars.
pub async fn latency(o: &LatencyOptions) -> Result<String, BenchError> {
    let mut out = format!(
        "latency at {} bars/s for {} s (first {} s left out), loopback Redis\n",
        o.rate, o.seconds, o.warmup
    );
    // A chain of each length the pipeline is measured over: the fill's one
    // hop and the order's four.
    let relay1 = relay(&o.redis_url, 1, o.rate, o.seconds, o.warmup).await?;
    out.push_str(&format!(
        "  relay chain, 1 hop (read, publish, ack):            {}\n",
        relay1.render()
    ));
    let relay = relay(&o.redis_url, PIPELINE_HOPS, o.rate, o.seconds, o.warmup).await?;
    out.push_str(&format!(
        "  relay chain, {PIPELINE_HOPS} hops (read, publish, ack):   {}\n",
        relay.render()
    ));
    if !o.relay_only {
        let p = pipeline::run(o).await?;
        out.push_str(&format!(
            "  pipeline, bar -> its fill published (1 hop):        {}\n",
            p.bar_to_fill.render()
        ));
        if (p.bar_to_fill.n as u64) < p.expected || (p.bar_to_order.n as u64) < p.expected {
            out.push_str(&format!(
                "  (the pipeline fell behind the rate: {} fills and {} orders of {} measured within 30 s of the last bar)\n",
                p.bar_to_fill.n, p.bar_to_order.n, p.expected
            ));
        }
        out.push_str(&format!(
            "  pipeline, bar -> its order on the venue ({PIPELINE_HOPS} hops): {}\n",
            p.bar_to_order.render()
        ));
        let ratio = |a: u64, b: u64| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        out.push_str(&format!(
            "  bar -> fill / relay 1 hop: p50 {:.2}x, p99 {:.2}x, p99.9 {:.2}x\n",
            ratio(p.bar_to_fill.p50, relay1.p50),
            ratio(p.bar_to_fill.p99, relay1.p99),
            ratio(p.bar_to_fill.p999, relay1.p999)
        ));
        out.push_str(&format!(
            "  bar -> order / relay {PIPELINE_HOPS} hops: p50 {:.2}x, p99 {:.2}x, p99.9 {:.2}x\n",
            ratio(p.bar_to_order.p50, relay.p50),
            ratio(p.bar_to_order.p99, relay.p99),
            ratio(p.bar_to_order.p999, relay.p999)
        ));
    }
    Ok(out)
}

/// The pipeline chain: execution, strategy and risk in this process over
/// Redis (a fresh key prefix) and Postgres (a fresh database).
mod pipeline {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use async_trait::async_trait;
    use grodt_bus::consumer::{Handler, HandlerError};
    use grodt_bus::{Delivery, Envelope, StreamName};
    use grodt_core::Decimal;
    use grodt_kit::{Infra, Server};
    use grodt_paper::instruments::{InstrumentSpec, Instruments};
    use grodt_proto::topic::{self, Outgoing, Topic};
    use grodt_proto::v1;
    use tokio::sync::{mpsc, watch};

    use super::{BenchError, LatencyOptions, Percentiles, Schedule, consumer, name, produce};

    /// The two figures of the pipeline.
    pub struct Figures {
        /// Bars published, and fills and orders expected after the warm-up.
        pub expected: u64,
        /// Bar due -> the fill it caused published.
        pub bar_to_fill: Percentiles,
        /// Bar due -> the order decided on it accepted by the venue.
        pub bar_to_order: Percentiles,
    }

    const SYMBOL: &str = "LAT";
    /// 2024-01-01T00:00:00Z; bar k opens k minutes later.
    const BASE_NS: i64 = 1_704_067_200_000_000_000;
    const MINUTE_NS: i64 = 60_000_000_000;

    fn bar_index(ts: Option<&prost_types::Timestamp>) -> Option<u64> {
        let t = ts?;
        let ns = t.seconds.checked_mul(1_000_000_000)? + i64::from(t.nanos);
        u64::try_from((ns - BASE_NS) / MINUTE_NS).ok()
    }

    /// A zigzag: closes alternate 100.00 and 101.00, so an SMA(1)/SMA(2)
    /// crossover turns on every bar and the strategy orders on every bar;
    /// every bar opens at 100.50, so each round trip (in and out at the
    /// open) neither makes nor loses money and the account stays the same
    /// size however long the run (a profitable zigzag compounds until the
    /// money overflows).
    fn bar(k: u64) -> Envelope {
        let up = k % 2 == 1;
        let (open, close) = if up {
            ("100.5", "101")
        } else {
            ("100.5", "100")
        };
        let d = |v: &str| Some(v1::Decimal { value: v.into() });
        let ts_ns = BASE_NS + i64::try_from(k).unwrap_or(i64::MAX / MINUTE_NS) * MINUTE_NS;
        let event = v1::BarEvent {
            bar: Some(v1::Bar {
                symbol: SYMBOL.into(),
                timeframe: v1::Timeframe::Minute1 as i32,
                timestamp: Some(prost_types::Timestamp {
                    seconds: ts_ns.div_euclid(1_000_000_000),
                    nanos: 0,
                }),
                open: d(open),
                high: d("101.5"),
                low: d("99.5"),
                close: d(close),
                volume: d("1000"),
            }),
            dataset_id: String::new(),
            replay_id: "bench".into(),
        };
        let out = Outgoing::new(&event);
        Envelope::new(out.event_type(), chrono::Utc::now(), out.payload())
    }

    /// Which bar a fill or an accepted order belongs to.
    enum Sample {
        Fill(u64),
        Order(u64),
    }

    struct Watch {
        tx: mpsc::UnboundedSender<(Sample, Instant)>,
    }

    #[async_trait]
    impl Handler for Watch {
        async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
            let now = Instant::now();
            let ty = &d.envelope.event_type;
            let payload = d.envelope.payload.as_ref();
            if let Ok(f) = topic::decode::<v1::FillEvent>(ty, payload) {
                // The fill happened in bar k: it was published once bar k arrived.
                if let Some(k) = f
                    .fill
                    .as_ref()
                    .and_then(|f| bar_index(f.filled_at.as_ref()))
                {
                    let _ = self.tx.send((Sample::Fill(k), now));
                }
            } else if let Ok(r) = topic::decode::<v1::ExecutionReportEvent>(ty, payload)
                && r.bar.is_none()
            {
                for u in &r.updates {
                    if let Some(v1::execution_update::Update::Order(o)) = &u.update
                        && o.status == v1::OrderStatus::Accepted as i32
                        && let Some(k) = bar_index(o.created_at.as_ref())
                    {
                        let _ = self.tx.send((Sample::Order(k), now));
                    }
                }
            }
            Ok(())
        }
    }

    fn local(mut common: grodt_kit::CommonConfig) -> grodt_kit::CommonConfig {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        common.grpc.addr = any;
        common.http.addr = any;
        common
    }

    async fn servers(infra: &Infra) -> Result<Vec<Server>, BenchError> {
        let setup = |e: grodt_kit::KitError| BenchError::Setup(e.to_string());
        let mut instruments = Instruments::default();
        instruments.symbols.insert(
            SYMBOL.into(),
            InstrumentSpec {
                price_precision: 2,
                size_precision: 0,
            },
        );
        let capital = Decimal::from(100_000_i64);
        let mut exec = grodt_execution::defaults_with_settings();
        exec.common = local(exec.common);
        exec.service.instruments = instruments.clone();
        exec.service.venue.starting_cash = capital;
        let mut strat = grodt_strategy::defaults_with_settings();
        strat.common = local(strat.common);
        strat.service.instruments = instruments;
        strat.service.instances = vec![grodt_strategy::InstanceConfig {
            instance_id: "bench".into(),
            strategy_name: "sma_cross".into(),
            params: BTreeMap::from([
                ("fast".to_owned(), "1".to_owned()),
                ("slow".to_owned(), "2".to_owned()),
            ]),
            symbols: vec![SYMBOL.into()],
            timeframe: "1m".into(),
            allowed_regimes: Vec::new(),
            capital,
            start: true,
        }];
        let mut risk = grodt_risk::defaults_with_settings();
        risk.common = local(risk.common);
        risk.service.initial_equity = capital;
        // A position cap, as any live account has. Without one, a chain that
        // falls behind the rate stacks all-in entries (the strategy decides
        // its next one before it sees the last one's fill), the leverage
        // compounds on the zigzag, and within seconds a Decimal product in
        // the risk service overflows and panics (a defect of its own, see
        // docs/performance.md): the run would then measure nothing.
        risk.service.limits = Some(
            serde_json::from_value(serde_json::json!({ "max_position_notional": "250000" }))
                .map_err(|e| BenchError::Setup(format!("risk limits: {e}")))?,
        );
        let servers = vec![
            grodt_execution::build_with_settings(exec, infra.clone())
                .await
                .map_err(setup)?,
            grodt_risk::build_with_settings(risk, infra.clone())
                .await
                .map_err(setup)?,
            grodt_strategy::build_with_settings(strat, infra.clone())
                .await
                .map_err(setup)?,
        ];
        Ok(servers)
    }

    /// Runs the pipeline chain.
    pub async fn run(o: &LatencyOptions) -> Result<Figures, BenchError> {
        let db = grodt_store::testing::TestDb::postgres_at(&o.database_url).await;
        let prefix = format!("bench-pipe-{}:", uuid::Uuid::now_v7().simple());
        let bus = super::redis(&o.redis_url, &prefix).await?;
        let infra = Infra {
            bus: bus.clone(),
            store: db.store().clone(),
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for stream in [
            <v1::FillEvent as Topic>::STREAM,
            <v1::ExecutionReportEvent as Topic>::STREAM,
        ] {
            let stream = name(StreamName::parse, stream)?;
            let c = consumer(
                bus.clone(),
                Arc::new(Watch { tx: tx.clone() }),
                &stream,
                &format!("bench-{}", stream.as_str().replace('.', "-")),
            )?;
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
        for server in servers(&infra).await? {
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let _ = server
                    .run_until_stopped(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            }));
        }
        // Let the consumers create their groups before the first bar.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let count = u64::from(o.rate) * o.seconds;
        let schedule = Schedule::new(o.rate);
        let bars = name(StreamName::parse, <v1::BarEvent as Topic>::STREAM)?;
        let producer = produce(bus.clone(), bars, schedule, count, bar);
        let skip = u64::from(o.rate) * o.warmup;
        let (mut fills, mut orders) = (Vec::new(), Vec::new());
        let (mut last_fill, mut last_order) = (0u64, 0u64);
        let deadline = schedule.due(count) + Duration::from_secs(30);
        // Bar 0 orders nothing (no crossover yet), bar count-1's order never fills.
        while last_fill + 1 < count || last_order + 1 < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some((sample, at))) => {
                    let (k, into, last) = match sample {
                        Sample::Fill(k) => (k, &mut fills, &mut last_fill),
                        Sample::Order(k) => (k, &mut orders, &mut last_order),
                    };
                    *last = (*last).max(k);
                    if k >= skip {
                        into.push(
                            u64::try_from(
                                at.saturating_duration_since(schedule.due(k)).as_micros(),
                            )
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
        // A chain slower than the rate falls behind; what it did measure is
        // still reported, with how much of it there is.
        // Bar 0 decides nothing (no crossover yet) and the last bar's order
        // never fills: two bars short of one sample per bar.
        let want = count.saturating_sub(skip).saturating_sub(2);
        Ok(Figures {
            expected: want,
            bar_to_fill: Percentiles::of(fills),
            bar_to_order: Percentiles::of(orders),
        })
    }
}
