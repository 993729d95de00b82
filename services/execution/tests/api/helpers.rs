//! The execution service on port 0 against its own database and bus, the
//! SPY daily sample as `BarEvent`s, `OrderEvent`s as risk publishes them,
//! readers of the report and fill streams, and the reference: an in-process
//! `grodt_paper::broker::Broker` fed the same inputs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grodt_bus::{
    BackPressure, ConsumerName, EventBus, GroupName, InProcessBus, RedisBus, RedisBusConfig,
    StartFrom, StreamName,
};
use grodt_core::bar::parse_csv;
use grodt_core::{Bar, Decimal, Instrument};
use grodt_execution::engine::JOURNAL;
use grodt_execution::{ExecutionSettings, build_with_settings, defaults_with_settings};
use grodt_kit::{Infra, KitError};
use grodt_paper::broker::Broker;
use grodt_paper::instruments::InstrumentSpec;
use grodt_paper::{Input, Ticket};
use grodt_proto::topic::{self, Outgoing, Topic};
use grodt_proto::v1;
use grodt_proto::v1::execution_service_client::ExecutionServiceClient;
use grodt_sim::config::{BacktestConfig, CommissionSpec, SlippageSpec};
use grodt_store::testing::TestDb;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// SPY's price precision in the sample.
pub const SPY_PRECISION: u8 = 4;

pub fn redis_url() -> String {
    std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn spy() -> Instrument {
    Instrument::equity("SPY", SPY_PRECISION, 0)
}

/// The SPY daily sample, 1998-2021.
pub fn spy_bars() -> Vec<Bar> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/samples/spy_1d_1998-2021.csv");
    let text = std::fs::read_to_string(&path).expect("sample file");
    parse_csv(&text, &spy()).expect("sample parses")
}

/// The venue of the tests: per-share commissions and slippage, so costs show.
pub fn venue() -> BacktestConfig {
    BacktestConfig {
        starting_cash: Decimal::from(100_000),
        commission: CommissionSpec::PerShare {
            rate: Decimal::new(5, 3),
            minimum: Decimal::ONE,
        },
        slippage: SlippageSpec::FixedBps {
            bps: Decimal::from(2),
        },
        ..BacktestConfig::default()
    }
}

pub fn settings() -> ExecutionSettings {
    let mut s = ExecutionSettings {
        venue: venue(),
        claim_idle_ms: 1000,
        ..ExecutionSettings::default()
    };
    s.instruments.symbols.insert(
        "SPY".into(),
        InstrumentSpec {
            price_precision: SPY_PRECISION,
            size_precision: 0,
        },
    );
    s
}

fn fixed(raw: i64, scale: u8) -> String {
    Decimal::new(raw, u32::from(scale)).to_string()
}

/// A domain bar on the wire.
pub fn to_proto(symbol: &str, b: &Bar) -> v1::Bar {
    let d = |raw: i64, s: u8| {
        Some(v1::Decimal {
            value: fixed(raw, s),
        })
    };
    v1::Bar {
        symbol: symbol.to_owned(),
        timeframe: v1::Timeframe::Day1 as i32,
        timestamp: Some(grodt_execution::convert::ts_to_proto(b.ts)),
        open: d(b.open, SPY_PRECISION),
        high: d(b.high, SPY_PRECISION),
        low: d(b.low, SPY_PRECISION),
        close: d(b.close, SPY_PRECISION),
        volume: d(b.volume, 0),
    }
}

pub fn stream(name: &str) -> StreamName {
    StreamName::parse(name).unwrap()
}

async fn publish<T: Topic>(bus: &dyn EventBus, event: &T, at_ns: i64) -> uuid::Uuid {
    let out = Outgoing::new(event);
    let envelope = grodt_bus::Envelope::new(
        out.event_type(),
        chrono::DateTime::from_timestamp_nanos(at_ns),
        out.payload(),
    );
    bus.publish(&stream(T::STREAM), &envelope)
        .await
        .expect("publish");
    envelope.event_id
}

/// Publishes `bars` of `symbol` as `BarEvent`s, in order.
pub async fn publish_bars(bus: &dyn EventBus, symbol: &str, bars: &[Bar]) {
    for b in bars {
        let event = v1::BarEvent {
            bar: Some(to_proto(symbol, b)),
            dataset_id: String::new(),
            replay_id: "test".into(),
        };
        publish(bus, &event, b.ts).await;
    }
}

/// The envelope of an approved order as risk publishes it.
pub fn order_envelope(spec: &v1::OrderSpec) -> grodt_bus::Envelope {
    let event = v1::OrderEvent {
        order: Some(spec.clone()),
        intent_event_id: String::new(),
        reference_price: None,
        decision_bar_time: None,
        cancel: None,
    };
    let out = Outgoing::new(&event);
    grodt_bus::Envelope::new(
        out.event_type(),
        chrono::DateTime::from_timestamp_nanos(0),
        out.payload(),
    )
}

/// Publishes an approved order as risk does; returns its event id.
pub async fn publish_order(bus: &dyn EventBus, spec: &v1::OrderSpec) -> uuid::Uuid {
    let event = v1::OrderEvent {
        order: Some(spec.clone()),
        intent_event_id: String::new(),
        reference_price: None,
        decision_bar_time: None,
        cancel: None,
    };
    publish(bus, &event, 0).await
}

/// The envelope of a strategy's cancellation of `cid` as risk passes it on,
/// decided on the bar at `decided_ns`.
pub fn cancel_envelope(cid: &str, decided_ns: i64) -> grodt_bus::Envelope {
    let event = v1::OrderEvent {
        order: None,
        intent_event_id: String::new(),
        reference_price: None,
        decision_bar_time: Some(prost_types::Timestamp {
            seconds: decided_ns.div_euclid(1_000_000_000),
            nanos: i32::try_from(decided_ns.rem_euclid(1_000_000_000)).unwrap(),
        }),
        cancel: Some(v1::OrderCancel {
            client_order_id: cid.into(),
            strategy_id: "s-buy".into(),
            symbol: "SPY".into(),
        }),
    };
    let out = Outgoing::new(&event);
    grodt_bus::Envelope::new(
        out.event_type(),
        chrono::DateTime::from_timestamp_nanos(decided_ns),
        out.payload(),
    )
}

/// A GTC limit (or an IOC market when `price` is None) order of SPY.
pub fn order(cid: &str, buy: bool, qty: u32, price: Option<i64>) -> v1::OrderSpec {
    v1::OrderSpec {
        client_order_id: cid.into(),
        strategy_id: if buy { "s-buy".into() } else { "s-sell".into() },
        symbol: "SPY".into(),
        side: if buy { v1::Side::Buy } else { v1::Side::Sell } as i32,
        order_type: if price.is_some() {
            v1::OrderType::Limit
        } else {
            v1::OrderType::Market
        } as i32,
        size: Some(v1::order_spec::Size::Quantity(v1::Decimal {
            value: qty.to_string(),
        })),
        limit_price: price.map(|p| v1::Decimal {
            value: fixed(p, SPY_PRECISION),
        }),
        time_in_force: if price.is_some() {
            v1::TimeInForce::Gtc
        } else {
            v1::TimeInForce::Ioc
        } as i32,
        ..Default::default()
    }
}

/// `n` orders around `base` (a raw price): limit buys below it and limit
/// sells above it at steps of 0.5 %, a market buy every tenth.
pub fn ladder(prefix: &str, n: usize, base: i64) -> Vec<v1::OrderSpec> {
    (0..n)
        .map(|k| {
            let cid = format!("{prefix}-{k}");
            let step = i64::try_from(k / 2 + 1).unwrap();
            if k % 10 == 9 {
                order(&cid, true, 5, None)
            } else if k % 2 == 0 {
                order(&cid, true, 10, Some(base - base * step / 200))
            } else {
                order(&cid, false, 10, Some(base + base * step / 200))
            }
        })
        .collect()
}

/// The reference: a broker fed `specs` (all before any bar, as the tests
/// publish them) then `bars`.
pub fn reference(specs: &[v1::OrderSpec], bars: &[Bar]) -> Broker {
    let inst = spy();
    let mut broker = Broker::new(venue(), vec![inst.clone()]).unwrap();
    for s in specs {
        if s.symbol != "SPY" {
            continue;
        }
        let ts = broker
            .last_bar_ts(&s.symbol)
            .unwrap_or_else(|| broker.now())
            .max(0);
        let t: Ticket =
            grodt_execution::convert::ticket_from_spec(s, Some(&inst), ts).expect("valid spec");
        broker.apply(&Input::Submit(t)).expect("submits");
    }
    for b in bars {
        broker
            .apply(&Input::Bar {
                symbol: "SPY".into(),
                bar: *b,
            })
            .expect("bar");
    }
    broker
}

/// A reader of one stream from its beginning (its own group).
pub struct Reader {
    bus: Arc<dyn EventBus>,
    stream: StreamName,
    group: GroupName,
}

/// One event as read, with its envelope's event id.
#[derive(Debug, Clone)]
pub struct Read<T> {
    pub event_id: uuid::Uuid,
    pub event: T,
}

impl Reader {
    pub async fn new(bus: Arc<dyn EventBus>, name: &str) -> Self {
        let group = GroupName::parse("test-reader").unwrap();
        bus.ensure_group(&stream(name), &group, StartFrom::Beginning)
            .await
            .expect("reader group");
        Self {
            bus,
            stream: stream(name),
            group,
        }
    }

    /// Everything published since the last call (reads until empty).
    pub async fn drain<T: Topic>(&self) -> Vec<Read<T>> {
        let me = ConsumerName::parse("reader").unwrap();
        let mut out = Vec::new();
        loop {
            let got = self
                .bus
                .consume(
                    &self.stream,
                    &self.group,
                    &me,
                    500,
                    Duration::from_millis(100),
                )
                .await
                .expect("consume");
            if got.is_empty() {
                return out;
            }
            let ids: Vec<_> = got.iter().map(|d| d.entry_id).collect();
            for d in got {
                let event = topic::decode::<T>(&d.envelope.event_type, d.envelope.payload.as_ref())
                    .expect("decodes");
                out.push(Read {
                    event_id: d.envelope.event_id,
                    event,
                });
            }
            self.bus
                .ack(&self.stream, &self.group, &ids)
                .await
                .expect("ack");
        }
    }
}

/// Journal entries of the service.
pub async fn journaled(store: &grodt_store::Store) -> u64 {
    store.journal().count(JOURNAL).await.expect("count")
}

/// Waits until the journal holds `n` entries.
pub async fn wait_journal(store: &grodt_store::Store, n: u64, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let have = journaled(store).await;
        if have >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{have} of {n} inputs journaled after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A database and a bus: Postgres + Redis (a fresh key prefix), or SQLite +
/// the in-process bus.
pub struct Env {
    pub db: TestDb,
    pub bus: Arc<dyn EventBus>,
    pub prefix: String,
}

impl Env {
    pub async fn redis() -> Self {
        let db = TestDb::postgres().await;
        let prefix = format!("test-exec-{}:", uuid::Uuid::now_v7().simple());
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
    pub async fn spawn(&self, settings: ExecutionSettings) -> Spawned {
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
        let client = ExecutionServiceClient::new(
            Channel::from_shared(format!("http://{grpc}"))
                .unwrap()
                .connect()
                .await
                .expect("connects"),
        )
        .max_decoding_message_size(64 << 20);
        Spawned {
            client,
            http,
            stop,
            task,
        }
    }
}

pub struct Spawned {
    pub client: ExecutionServiceClient<Channel>,
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

    /// Every order, newest first, through ListOrders pages of `page_size`.
    pub async fn all_orders(&mut self, page_size: u32) -> Vec<v1::Order> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .client
                .list_orders(v1::ListOrdersRequest {
                    page: Some(v1::PageRequest {
                        page_size,
                        page_token: token.clone(),
                    }),
                    ..Default::default()
                })
                .await
                .expect("ListOrders")
                .into_inner();
            out.extend(page.orders);
            token = page.page.map(|p| p.next_page_token).unwrap_or_default();
            if token.is_empty() {
                return out;
            }
        }
    }

    pub async fn account(&mut self) -> v1::GetAccountResponse {
        self.client
            .get_account(v1::GetAccountRequest {})
            .await
            .expect("GetAccount")
            .into_inner()
    }
}

pub fn d(x: Option<&v1::Decimal>) -> Decimal {
    x.map(|d| d.value.parse().expect("decimal"))
        .unwrap_or_default()
}

pub fn ns(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
}
