//! The strategy service on port 0 against its own database and bus, and the
//! execution side played in the test with a real `grodt_paper::broker::Broker`:
//! every input goes to the broker, its report is published on
//! `grodt.execution-reports.v1`, and the intents the service publishes for
//! it go back to the broker, until the pipeline is quiet.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grodt_bus::{
    BackPressure, ConsumerName, EventBus, GroupName, InProcessBus, RedisBus, RedisBusConfig,
    StartFrom, StreamName,
};
use grodt_core::{Bar, Decimal, Instrument};
use grodt_kit::{Infra, KitError};
use grodt_paper::broker::Broker;
use grodt_paper::desk::PortfolioBroker;
use grodt_paper::instruments::{InstrumentSpec, Instruments};
use grodt_paper::runner::{Out, Runner};
use grodt_paper::{Input, PaperError, Report, Ticket};
use grodt_proto::topic::{self, Outgoing, Topic};
use grodt_proto::v1;
use grodt_proto::v1::strategy_service_client::StrategyServiceClient;
use grodt_sim::config::{BacktestConfig, CommissionSpec, SlippageSpec};
use grodt_store::Store;
use grodt_store::testing::TestDb;
use grodt_strategy::engine::{JOURNAL, Stored};
use grodt_strategy::{StrategySettings, build_with_settings, defaults_with_settings};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub const INSTANCE: &str = "sma-1";

pub fn redis_url() -> String {
    std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The SPY daily sample: its instrument (precisions from the file) and bars.
pub fn spy() -> (Instrument, Vec<Bar>) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/samples/spy_1d_1998-2021.csv");
    let raw = grodt_backtest::load_csv(&path).expect("sample loads");
    let s = grodt_backtest::series_from_bars("SPY", &raw, false).expect("series");
    (s.instrument, s.bars)
}

pub fn instruments(inst: &Instrument) -> Instruments {
    instruments_of(std::slice::from_ref(inst))
}

/// The symbol grids of `insts`, as the service's configuration names them.
pub fn instruments_of(insts: &[Instrument]) -> Instruments {
    let mut i = Instruments::default();
    for inst in insts {
        i.symbols.insert(
            inst.id.clone(),
            InstrumentSpec {
                price_precision: inst.price_precision,
                size_precision: inst.size_precision,
            },
        );
    }
    i
}

/// Per-share commissions and slippage, 100,000 of cash (the parity tests' costs).
pub fn costly() -> BacktestConfig {
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

pub fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn sma_params() -> BTreeMap<String, String> {
    params(&[("fast", "10"), ("slow", "30")])
}

/// A DeployRequest of an sma_cross instance on SPY with 100,000.
pub fn deploy_request(id: &str, start: bool) -> v1::DeployRequest {
    v1::DeployRequest {
        instance_id: id.into(),
        strategy_name: "sma_cross".into(),
        params: sma_params().into_iter().collect(),
        symbols: vec!["SPY".into()],
        timeframe: v1::Timeframe::Day1 as i32,
        allowed_regimes: Vec::new(),
        capital: Some(v1::Decimal {
            value: "100000".into(),
        }),
        start,
    }
}

/// The unfaulted paper run in process (broker + runner, no service): the
/// broker and every client order id the runner asked for, in order.
pub fn in_process(
    config: &BacktestConfig,
    inst: &Instrument,
    bars: &[Bar],
    kv: &BTreeMap<String, String>,
) -> (Broker, Vec<String>) {
    let mut broker = Broker::new(config.clone(), vec![inst.clone()]).expect("broker");
    let built = grodt_strategies::registry::build("sma_cross", kv, inst).expect("strategy");
    let mut runner = Runner::new(INSTANCE, built, inst.clone(), config.starting_cash);
    let mut cids = Vec::new();
    for b in bars {
        let mut queue = VecDeque::from([Input::Bar {
            symbol: inst.id.clone(),
            bar: *b,
        }]);
        while let Some(input) = queue.pop_front() {
            let report = broker.apply(&input).expect("broker applies");
            for out in runner.on_report(&report).expect("runner applies") {
                queue.push_back(match out {
                    Out::Submit(t) => {
                        cids.push(t.client_order_id.clone());
                        Input::Submit(t)
                    }
                    Out::Cancel(c) => Input::Cancel { client_order_id: c },
                });
            }
        }
    }
    (broker, cids)
}

/// Publishes `event` under `id` (a fresh one when None); returns the id.
pub async fn publish<T: Topic>(
    bus: &dyn EventBus,
    event: &T,
    id: Option<uuid::Uuid>,
) -> uuid::Uuid {
    let out = Outgoing::new(event);
    let to = StreamName::parse(out.stream()).unwrap();
    let mut envelope =
        grodt_bus::Envelope::new(out.event_type(), chrono::Utc::now(), out.payload());
    if let Some(id) = id {
        envelope.event_id = id;
    }
    let id = envelope.event_id;
    bus.publish(&to, &envelope).await.expect("publish");
    id
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
                .consume(&self.stream, &self.group, &me, 500, Duration::ZERO)
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
}

pub fn intent_cid(e: &v1::OrderIntentEvent) -> &str {
    e.order.as_ref().map_or("", |o| o.client_order_id.as_str())
}

/// What the test's execution side applies inputs with: the paper broker,
/// or the portfolio broker (the desk).
pub trait Apply {
    fn apply(&mut self, input: &Input) -> Result<Report, PaperError>;
}

impl Apply for Broker {
    fn apply(&mut self, input: &Input) -> Result<Report, PaperError> {
        Broker::apply(self, input)
    }
}

impl Apply for PortfolioBroker {
    fn apply(&mut self, input: &Input) -> Result<Report, PaperError> {
        PortfolioBroker::apply(self, input)
    }
}

/// The execution side, played in the test with a real broker.
pub struct Exec<B = Broker> {
    pub broker: B,
    pub instruments: Instruments,
    pub insts: Vec<Instrument>,
    pub intents: Reader<v1::OrderIntentEvent>,
    bus: Arc<dyn EventBus>,
    store: Store,
    /// Client order ids handed to the broker.
    pub submitted: HashSet<String>,
    /// Cancellations the service sent, each once, in order.
    pub cancels: Vec<String>,
    /// Of those, the ones not yet handed to the broker.
    unsent_cancels: Vec<String>,
    /// Reports published.
    pub reports: u64,
    /// How long to wait for the service's answer to one report.
    pub patience: Duration,
    /// Time spent waiting for the journal entries, and for the intents.
    pub waited: (Duration, Duration),
}

impl Exec<Broker> {
    pub async fn new(env: &Env, config: &BacktestConfig, inst: &Instrument) -> Self {
        let broker = Broker::new(config.clone(), vec![inst.clone()]).expect("broker");
        Self::over(env, broker, vec![inst.clone()]).await
    }
}

impl<B: Apply> Exec<B> {
    /// The execution side over `broker`, trading `insts`.
    pub async fn over(env: &Env, broker: B, insts: Vec<Instrument>) -> Self {
        Self {
            broker,
            instruments: instruments_of(&insts),
            insts,
            intents: Reader::new(env.bus.clone()).await,
            bus: env.bus.clone(),
            store: env.db.store().clone(),
            submitted: HashSet::new(),
            cancels: Vec::new(),
            unsent_cancels: Vec::new(),
            reports: 0,
            patience: Duration::from_secs(10),
            waited: (Duration::ZERO, Duration::ZERO),
        }
    }

    /// Publishes the report of `input` and waits until the service journaled
    /// it and its intents are on the stream; returns those intents (as
    /// tickets, each once).
    pub async fn step(&mut self, input: &Input) -> Vec<Ticket> {
        let report = self.broker.apply(input).expect("the broker applies");
        self.publish_report(&report, None).await
    }

    /// Publishes `report` (under `id`) and waits for the service's answer.
    pub async fn publish_report(&mut self, report: &Report, id: Option<uuid::Uuid>) -> Vec<Ticket> {
        let id = self.send(report, id).await;
        self.answer(id).await
    }

    /// Publishes `report` (under `id`, else a fresh id); returns the id.
    pub async fn send(&mut self, report: &Report, id: Option<uuid::Uuid>) -> uuid::Uuid {
        let wire = grodt_strategy::convert::report_to_proto(
            report,
            &self.instruments,
            v1::Timeframe::Day1 as i32,
        )
        .expect("report converts");
        self.reports += 1;
        publish(&*self.bus, &wire, id).await
    }

    /// Waits until the service journaled report `id` and published its
    /// intents; returns them as tickets, each once.
    pub async fn answer(&mut self, id: uuid::Uuid) -> Vec<Ticket> {
        let source = format!("report:{id}");
        let t0 = Instant::now();
        let deadline = Instant::now() + self.patience;
        let entry = loop {
            if let Ok(Some(e)) = self.store.journal().get(JOURNAL, &source).await {
                break e;
            }
            assert!(
                Instant::now() < deadline,
                "report {id} not journaled in time"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let t1 = Instant::now();
        self.waited.0 += t1 - t0;
        let stored: Stored = serde_json::from_slice(&entry.outputs).expect("outputs decode");
        let want: HashSet<uuid::Uuid> = stored.events.iter().map(|e| e.event_id).collect();
        loop {
            self.intents.drain().await;
            let seen: HashSet<uuid::Uuid> = self.intents.seen.iter().map(|(i, _)| *i).collect();
            if want.is_subset(&seen) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "intents of {id} not published in time"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.waited.1 += t1.elapsed();
        let mut out = Vec::new();
        for (eid, ev) in &self.intents.seen {
            if !want.contains(eid) {
                continue;
            }
            if let Some(c) = &ev.cancel {
                if !self.cancels.contains(&c.client_order_id) {
                    self.cancels.push(c.client_order_id.clone());
                    self.unsent_cancels.push(c.client_order_id.clone());
                }
                continue;
            }
            let spec = ev.order.as_ref().expect("an order or a cancellation");
            if out
                .iter()
                .any(|t: &Ticket| t.client_order_id == spec.client_order_id)
            {
                continue;
            }
            let decided = grodt_strategy::convert::ts_from_proto(
                "decision_bar_time",
                ev.decision_bar_time.as_ref(),
            )
            .expect("a decision time");
            let inst = self
                .insts
                .iter()
                .find(|i| i.id == spec.symbol)
                .expect("an intent of a traded symbol");
            out.push(
                grodt_strategy::convert::spec_to_ticket(spec, inst, decided)
                    .expect("the intent converts"),
            );
        }
        out
    }

    /// One input and everything it leads to (intents submitted to the
    /// broker once each, their reports published, and so on).
    pub async fn run(&mut self, input: Input) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let tickets = self.step(&input).await;
            self.submit_all(tickets, &mut queue);
        }
    }

    /// Queues the tickets the broker has not seen, then the cancellations
    /// read since the last call (the order the stream carries them in).
    pub fn submit_all(&mut self, tickets: Vec<Ticket>, queue: &mut VecDeque<Input>) {
        for t in tickets {
            if self.submitted.insert(t.client_order_id.clone()) {
                queue.push_back(Input::Submit(t));
            }
        }
        for client_order_id in self.unsent_cancels.drain(..) {
            queue.push_back(Input::Cancel { client_order_id });
        }
    }

    /// Continues with `tickets` (the answer to an input) to quiet.
    pub async fn follow(&mut self, tickets: Vec<Ticket>) {
        let mut queue = VecDeque::new();
        self.submit_all(tickets, &mut queue);
        while let Some(input) = queue.pop_front() {
            let tickets = self.step(&input).await;
            self.submit_all(tickets, &mut queue);
        }
    }

    /// Bar `b` of the (first) instrument and everything it leads to.
    pub async fn bar(&mut self, b: &Bar) {
        let symbol = self.insts[0].id.clone();
        self.run(Input::Bar { symbol, bar: *b }).await;
    }

    /// Bar `b` of `symbol` and everything it leads to.
    pub async fn bar_of(&mut self, symbol: &str, b: &Bar) {
        self.run(Input::Bar {
            symbol: symbol.to_owned(),
            bar: *b,
        })
        .await;
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
        let prefix = format!("test-strategy-{}:", uuid::Uuid::now_v7().simple());
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

    pub async fn journaled(&self) -> u64 {
        self.db
            .store()
            .journal()
            .count(JOURNAL)
            .await
            .expect("count")
    }

    /// The whole service on port 0 with `settings` (claims after 500 ms).
    pub async fn spawn(&self, mut settings: StrategySettings) -> Spawned {
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
        let client = StrategyServiceClient::new(
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

/// Settings with the instrument of `inst`.
pub fn settings(inst: &Instrument) -> StrategySettings {
    StrategySettings {
        instruments: instruments(inst),
        ..StrategySettings::default()
    }
}

pub struct Spawned {
    pub client: StrategyServiceClient<Channel>,
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

    pub async fn state(&mut self, id: &str) -> v1::StrategyInstance {
        self.client
            .get_state(v1::GetStateRequest {
                instance_id: id.into(),
            })
            .await
            .expect("GetState")
            .into_inner()
            .instance
            .expect("an instance")
    }
}

/// The first line of `/metrics` text that starts with `series`, its value.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub fn dec(d: Option<&v1::Decimal>) -> Decimal {
    d.map_or(Decimal::ZERO, |d| d.value.parse().expect("a decimal"))
}
