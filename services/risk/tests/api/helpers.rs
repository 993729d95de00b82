//! The risk service on port 0 against its own database and bus, publishers
//! of intents, fills and bars, and readers of `grodt.orders.v1` and
//! `grodt.risk-events.v1`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grodt_bus::{
    BackPressure, ConsumerName, EventBus, GroupName, InProcessBus, RedisBus, RedisBusConfig,
    StartFrom, StreamName,
};
use grodt_kit::{Infra, KitError};
use grodt_proto::topic::{self, Outgoing, Topic};
use grodt_proto::v1;
use grodt_proto::v1::risk_service_client::RiskServiceClient;
use grodt_risk::{RiskSettings, build_with_settings, defaults_with_settings};
use grodt_store::testing::TestDb;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub const DAY: i64 = 86_400_000_000_000;
/// 2024-01-02T00:00Z
pub const T0: i64 = 19_724 * DAY;

pub fn redis_url() -> String {
    std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn ts(ns: i64) -> prost_types::Timestamp {
    grodt_risk::convert::ts_to_proto(ns)
}

pub fn d(s: &str) -> Option<v1::Decimal> {
    Some(v1::Decimal { value: s.into() })
}

/// A market order of `qty` for strategy `s1`.
pub fn spec(coid: &str, symbol: &str, side: v1::Side, qty: &str) -> v1::OrderSpec {
    v1::OrderSpec {
        client_order_id: coid.into(),
        strategy_id: "s1".into(),
        symbol: symbol.into(),
        side: side as i32,
        order_type: v1::OrderType::Market as i32,
        size: Some(v1::order_spec::Size::Quantity(v1::Decimal {
            value: qty.into(),
        })),
        time_in_force: v1::TimeInForce::Day as i32,
        ..v1::OrderSpec::default()
    }
}

pub fn intent(order: v1::OrderSpec, at_ns: i64) -> v1::OrderIntentEvent {
    v1::OrderIntentEvent {
        order: Some(order),
        decision_bar_time: Some(ts(at_ns)),
        reason: "test".into(),
        cancel: None,
    }
}

/// A strategy's cancellation of `coid`, decided on the bar at `at_ns`.
pub fn cancel_intent(coid: &str, symbol: &str, at_ns: i64) -> v1::OrderIntentEvent {
    v1::OrderIntentEvent {
        order: None,
        decision_bar_time: Some(ts(at_ns)),
        reason: "test".into(),
        cancel: Some(v1::OrderCancel {
            client_order_id: coid.into(),
            strategy_id: "s1".into(),
            symbol: symbol.into(),
        }),
    }
}

pub fn bar(symbol: &str, close: &str, at_ns: i64) -> v1::BarEvent {
    v1::BarEvent {
        bar: Some(v1::Bar {
            symbol: symbol.into(),
            timeframe: v1::Timeframe::Day1 as i32,
            timestamp: Some(ts(at_ns)),
            open: d(close),
            high: d(close),
            low: d(close),
            close: d(close),
            volume: d("1000"),
        }),
        dataset_id: String::new(),
        replay_id: "test".into(),
    }
}

pub fn fill(
    id: &str,
    symbol: &str,
    side: v1::Side,
    qty: &str,
    price: &str,
    at_ns: i64,
) -> v1::FillEvent {
    v1::FillEvent {
        fill: Some(v1::Fill {
            fill_id: id.into(),
            order_id: format!("o-{id}"),
            client_order_id: format!("c-{id}"),
            strategy_id: "s1".into(),
            symbol: symbol.into(),
            side: side as i32,
            quantity: d(qty),
            price: d(price),
            commission: d("0"),
            slippage: d("0"),
            liquidity: v1::LiquiditySide::Taker as i32,
            filled_at: Some(ts(at_ns)),
        }),
        order: None,
    }
}

/// Publishes `event` on its stream; returns the envelope's event id.
pub async fn publish<T: Topic>(bus: &dyn EventBus, event: &T) -> uuid::Uuid {
    let out = Outgoing::new(event);
    let to = StreamName::parse(out.stream()).unwrap();
    let envelope = grodt_bus::Envelope::new(out.event_type(), chrono::Utc::now(), out.payload());
    let id = envelope.event_id;
    bus.publish(&to, &envelope).await.expect("publish");
    id
}

/// Publishes `event` again under a given event id (a redelivery).
pub async fn publish_as<T: Topic>(bus: &dyn EventBus, event: &T, id: uuid::Uuid) {
    let out = Outgoing::new(event);
    let to = StreamName::parse(out.stream()).unwrap();
    let mut envelope =
        grodt_bus::Envelope::new(out.event_type(), chrono::Utc::now(), out.payload());
    envelope.event_id = id;
    bus.publish(&to, &envelope).await.expect("publish");
}

/// A reader of one stream from its beginning (its own group).
pub struct Reader<T> {
    bus: Arc<dyn EventBus>,
    stream: StreamName,
    group: GroupName,
    pub seen: Vec<(uuid::Uuid, T)>,
}

impl<T: Topic> Reader<T> {
    pub async fn new(bus: Arc<dyn EventBus>) -> Self {
        let stream = StreamName::parse(T::STREAM).unwrap();
        let group = GroupName::parse("test-reader").unwrap();
        bus.ensure_group(&stream, &group, StartFrom::Beginning)
            .await
            .expect("reader group");
        Self {
            bus,
            stream,
            group,
            seen: Vec::new(),
        }
    }

    /// Reads what is there now (until a read comes back empty).
    pub async fn drain(&mut self) {
        let me = ConsumerName::parse("reader").unwrap();
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
                return;
            }
            let ids: Vec<_> = got.iter().map(|d| d.entry_id).collect();
            for d in got {
                let e = topic::decode::<T>(&d.envelope.event_type, d.envelope.payload.as_ref())
                    .expect("decodes");
                self.seen.push((d.envelope.event_id, e));
            }
            self.bus
                .ack(&self.stream, &self.group, &ids)
                .await
                .expect("ack");
        }
    }

    /// Reads until `done(seen)` or `secs` pass (then panics with `what`).
    pub async fn until(
        &mut self,
        what: &str,
        secs: u64,
        done: impl Fn(&[(uuid::Uuid, T)]) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            self.drain().await;
            if done(&self.seen) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn rejected_coid(e: &v1::RiskEvent) -> Option<&str> {
    (e.kind == v1::RiskEventKind::OrderRejected as i32)
        .then(|| e.order.as_ref().map(|o| o.client_order_id.as_str()))
        .flatten()
}

pub fn limits_of(e: &v1::RiskEvent) -> Vec<&str> {
    e.violations.iter().map(|v| v.limit.as_str()).collect()
}

pub fn order_coid(e: &v1::OrderEvent) -> &str {
    e.order.as_ref().map_or("", |o| o.client_order_id.as_str())
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
        let prefix = format!("test-risk-{}:", uuid::Uuid::now_v7().simple());
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

    /// The whole service on port 0 with `settings` (claims after 500 ms).
    pub async fn spawn(&self, mut settings: RiskSettings) -> Spawned {
        let mut config = defaults_with_settings();
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        config.common.grpc.addr = any;
        config.common.http.addr = any;
        settings.claim_idle_ms = 500;
        config.service = settings;
        let server = build_with_settings(config, self.infra())
            .await
            .expect("service binds");
        let (grpc, http) = (server.grpc_addr(), server.http_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let client = RiskServiceClient::new(
            Channel::from_shared(format!("http://{grpc}"))
                .unwrap()
                .connect()
                .await
                .expect("connects"),
        );
        Spawned {
            client,
            http,
            stop,
            task,
        }
    }
}

pub struct Spawned {
    pub client: RiskServiceClient<Channel>,
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

    /// Waits until the snapshot satisfies `done`.
    pub async fn snapshot_until(
        &mut self,
        what: &str,
        done: impl Fn(&v1::GetSnapshotResponse) -> bool,
    ) -> v1::GetSnapshotResponse {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self
                .client
                .get_snapshot(v1::GetSnapshotRequest {})
                .await
                .expect("GetSnapshot")
                .into_inner();
            if done(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn set_limits(&mut self, limits: v1::RiskLimits) -> v1::RiskLimits {
        let v = self
            .client
            .get_limits(v1::GetLimitsRequest {})
            .await
            .unwrap()
            .into_inner()
            .limits
            .unwrap()
            .version;
        self.client
            .set_limits(v1::SetLimitsRequest {
                limits: Some(limits),
                expected_version: v,
                updated_by: "test".into(),
                reason: "test".into(),
            })
            .await
            .expect("SetLimits")
            .into_inner()
            .limits
            .unwrap()
    }
}

/// The first line of `/metrics` text that starts with `series`, its value.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
