//! The regime service on port 0 against its own database and bus, the SPY
//! daily sample as bars and as `BarEvent`s, and readers of `grodt.regimes.v1`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grodt_bus::{
    BackPressure, ConsumerName, EventBus, GroupName, InProcessBus, RedisBus, RedisBusConfig,
    StartFrom, StreamName,
};
use grodt_core::bar::parse_csv;
use grodt_core::{Bar, Instrument};
use grodt_kit::{Infra, KitError};
use grodt_proto::topic::{self, Outgoing};
use grodt_proto::v1;
use grodt_proto::v1::regime_service_client::RegimeServiceClient;
use grodt_regime::engine::{BARS_STREAM, Persisted, REGIMES_STREAM};
use grodt_regime::{RegimeSettings, build_with_settings, defaults_with_settings};
use grodt_regimes::{Decision, RegimeConfig};
use grodt_store::testing::TestDb;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// SPY's price precision in the sample (Lean daily equity: 4 decimals).
pub const SPY_PRECISION: u8 = 4;

pub fn redis_url() -> String {
    std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The SPY daily sample, 1998-2021 (5,849 bars).
pub fn spy_bars() -> Vec<Bar> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/samples/spy_1d_1998-2021.csv");
    let text = std::fs::read_to_string(&path).expect("sample file");
    parse_csv(&text, &Instrument::equity("SPY", SPY_PRECISION, 0)).expect("sample parses")
}

/// What the library gives over the same bars: the reference.
pub fn expected(bars: &[Bar]) -> Vec<Decision> {
    grodt_regimes::classify(RegimeConfig::default(), SPY_PRECISION, bars).expect("classifies")
}

fn fixed(raw: i64, scale: u8) -> String {
    let pow = 10i64.pow(u32::from(scale));
    let (int, frac) = (raw / pow, raw % pow);
    if frac == 0 {
        return int.to_string();
    }
    let f = format!("{frac:0width$}", width = usize::from(scale));
    format!("{int}.{}", f.trim_end_matches('0'))
}

/// A domain bar on the wire, its decimals written as market-data writes them.
pub fn to_proto(symbol: &str, b: &Bar) -> v1::Bar {
    let d = |raw: i64, s: u8| {
        Some(v1::Decimal {
            value: fixed(raw, s),
        })
    };
    v1::Bar {
        symbol: symbol.to_owned(),
        timeframe: v1::Timeframe::Day1 as i32,
        timestamp: Some(grodt_regime::convert::ts_to_proto(b.ts)),
        open: d(b.open, SPY_PRECISION),
        high: d(b.high, SPY_PRECISION),
        low: d(b.low, SPY_PRECISION),
        close: d(b.close, SPY_PRECISION),
        volume: d(b.volume, 0),
    }
}

pub fn bars_stream() -> StreamName {
    StreamName::parse(BARS_STREAM).unwrap()
}

pub fn regimes_stream() -> StreamName {
    StreamName::parse(REGIMES_STREAM).unwrap()
}

/// Publishes `bars` of `symbol` as `BarEvent`s, in order.
pub async fn publish_bars(bus: &dyn EventBus, symbol: &str, bars: &[Bar]) {
    let stream = bars_stream();
    for b in bars {
        let event = v1::BarEvent {
            bar: Some(to_proto(symbol, b)),
            dataset_id: String::new(),
            replay_id: "test".into(),
        };
        let out = Outgoing::new(&event);
        let envelope = grodt_bus::Envelope::new(
            out.event_type(),
            chrono::DateTime::from_timestamp_nanos(b.ts),
            out.payload(),
        );
        bus.publish(&stream, &envelope).await.expect("publish bar");
    }
}

/// A reader of `grodt.regimes.v1` from its beginning (its own group).
pub struct RegimeReader {
    bus: Arc<dyn EventBus>,
    group: GroupName,
}

/// One regime event as read, with its envelope's event id.
#[derive(Debug, Clone)]
pub struct Read {
    pub event_id: uuid::Uuid,
    pub event: v1::RegimeEvent,
}

impl RegimeReader {
    pub async fn new(bus: Arc<dyn EventBus>) -> Self {
        let group = GroupName::parse("test-reader").unwrap();
        bus.ensure_group(&regimes_stream(), &group, StartFrom::Beginning)
            .await
            .expect("reader group");
        Self { bus, group }
    }

    /// Everything published so far (reads until a read comes back empty).
    pub async fn drain(&self) -> Vec<Read> {
        let me = ConsumerName::parse("reader").unwrap();
        let mut out = Vec::new();
        loop {
            let got = self
                .bus
                .consume(
                    &regimes_stream(),
                    &self.group,
                    &me,
                    500,
                    Duration::from_millis(200),
                )
                .await
                .expect("consume regimes");
            if got.is_empty() {
                return out;
            }
            let ids: Vec<_> = got.iter().map(|d| d.entry_id).collect();
            for d in got {
                let event = topic::decode::<v1::RegimeEvent>(
                    &d.envelope.event_type,
                    d.envelope.payload.as_ref(),
                )
                .expect("a RegimeEvent");
                out.push(Read {
                    event_id: d.envelope.event_id,
                    event,
                });
            }
            self.bus
                .ack(&regimes_stream(), &self.group, &ids)
                .await
                .expect("ack");
        }
    }
}

pub fn ts_of(s: &v1::RegimeState) -> i64 {
    let t = s.as_of.as_ref().expect("as_of");
    t.seconds * 1_000_000_000 + i64::from(t.nanos)
}

/// (bar time, regime, previous) of the changes the library decided.
pub fn expected_changes(decisions: &[Decision]) -> Vec<(i64, i32, i32)> {
    let mut prev = v1::Regime::Unspecified as i32;
    let mut out = Vec::new();
    for d in decisions.iter().filter(|d| d.changed) {
        let r = grodt_regime::convert::regime_to_proto(d.regime) as i32;
        out.push((d.ts, r, prev));
        prev = r;
    }
    out
}

/// (bar time, regime, previous) of change events (heartbeats left out).
pub fn published_changes(reads: &[Read]) -> Vec<(i64, i32, i32)> {
    reads
        .iter()
        .filter(|r| !r.event.heartbeat)
        .map(|r| {
            let s = r.event.state.as_ref().expect("state");
            (ts_of(s), s.regime, r.event.previous)
        })
        .collect()
}

/// The stored state of SPY 1d, if any.
pub async fn stored(store: &grodt_store::Store, symbol: &str) -> Option<Persisted> {
    store
        .regimes()
        .get_state(symbol, "1d")
        .await
        .expect("get state")
        .map(|row| Persisted::from_json(&row.state).expect("stored state reads"))
}

/// Waits until the stored state of `symbol` has taken `bars` bars.
pub async fn wait_for_bars(store: &grodt_store::Store, symbol: &str, bars: u64, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let n = stored(store, symbol).await.map_or(0, |p| p.bars);
        if n >= bars {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {bars} bars handled after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A database and a bus: Postgres + Redis (a fresh key prefix), or SQLite +
/// the in-process bus (the embedded pair of `grodt up`).
pub struct Env {
    pub db: TestDb,
    pub bus: Arc<dyn EventBus>,
    pub prefix: String,
}

impl Env {
    pub async fn redis() -> Self {
        let db = TestDb::postgres().await;
        let prefix = format!("test-regime-{}:", uuid::Uuid::now_v7().simple());
        let bus = RedisBus::connect(RedisBusConfig::new(redis_url(), prefix.clone()))
            .await
            .unwrap_or_else(|e| panic!("Redis must be running at {}: {e}", redis_url()));
        Self {
            db,
            bus: Arc::new(bus),
            prefix,
        }
    }

    pub async fn embedded() -> Self {
        let db = TestDb::sqlite().await;
        let bus = InProcessBus::new(BackPressure::default(), 200_000).expect("bus");
        Self {
            db,
            bus: Arc::new(bus),
            prefix: String::new(),
        }
    }

    pub fn infra(&self) -> Infra {
        Infra {
            bus: self.bus.clone(),
            store: self.db.store().clone(),
        }
    }

    /// The whole service on port 0 with `settings`.
    pub async fn spawn(&self, settings: RegimeSettings) -> Spawned {
        let mut config = defaults_with_settings();
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        config.common.grpc.addr = any;
        config.common.http.addr = any;
        config.service = settings;
        let server = build_with_settings(config, self.infra())
            .await
            .expect("service binds");
        let (grpc, http) = (server.grpc_addr(), server.http_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let client = RegimeServiceClient::new(
            Channel::from_shared(format!("http://{grpc}"))
                .unwrap()
                .connect()
                .await
                .expect("connects"),
        )
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
        Spawned {
            client,
            http,
            stop,
            task,
        }
    }
}

pub struct Spawned {
    pub client: RegimeServiceClient<Channel>,
    pub http: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), KitError>>,
}

impl Spawned {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("stops within 15 s")
            .expect("no panic")
            .expect("clean stop");
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.http).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }
}
