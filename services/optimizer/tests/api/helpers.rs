//! The optimizer on port 0 against its own database and bus, and a stand-in
//! for the backtest workers: it takes jobs off `grodt.backtest-jobs.v1` and
//! answers each with metrics that are a fixed function of the trial's
//! parameters, so the best trial of a study is known in advance; a sweep job
//! (a slice of sets) is answered with one such outcome per set. (The real
//! workers run in the end-to-end test of the `grodt` crate.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grodt_bus::{
    BackPressure, ConsumerName, EventBus, GroupName, InProcessBus, RedisBus, RedisBusConfig,
    StartFrom, StreamName,
};
use grodt_kit::{Infra, KitError};
use grodt_optimizer::{OptimizerSettings, build_with_settings, defaults_with_settings};
use grodt_proto::topic::{self, Outgoing, Topic};
use grodt_proto::v1;
use grodt_proto::v1::optimizer_service_client::OptimizerServiceClient;
use grodt_store::testing::TestDb;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub fn redis_url() -> String {
    std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The stand-in metrics of a parameter set: Sharpe peaks at fast 10, slow 40;
/// trade counts vary so a trade filter fails some trials.
pub fn sharpe_of(fast: i64, slow: i64) -> f64 {
    2.0 - (fast - 10).abs() as f64 / 10.0 - (slow - 40).abs() as f64 / 40.0
}

pub fn trades_of(fast: i64, slow: i64) -> u32 {
    u32::try_from((fast + slow) % 7).unwrap()
}

fn param(params: &std::collections::HashMap<String, String>, name: &str) -> i64 {
    params[name].parse().unwrap()
}

/// The stand-in's metrics of a parameter set: equity 100000 growing by
/// 0.01 * fast; on a noisy copy (price noise with seed `n`), Sharpe lower by
/// 0.01 * (n % 10), final equity by 100 * (n % 10).
fn metrics_of(
    params: &std::collections::HashMap<String, String>,
    noise: Option<&v1::PriceNoise>,
) -> v1::Metrics {
    let (f, sl) = (param(params, "fast"), param(params, "slow"));
    let k = noise.map_or(0, |n| n.seed % 10) as i64;
    let dec = |v: i64| {
        Some(v1::Decimal {
            value: v.to_string(),
        })
    };
    v1::Metrics {
        sharpe: sharpe_of(f, sl) - 0.01 * k as f64,
        sortino: f64::NAN,
        calmar: f64::NAN,
        total_return: 0.01 * f as f64,
        max_drawdown: -0.1,
        closed_trade_count: trades_of(f, sl),
        initial_equity: dec(100_000),
        final_equity: dec(100_000 + 1000 * f - 100 * k),
        ..v1::Metrics::default()
    }
}

/// A grid request over sma_cross: fast 5..=25 step 5, slow 20..=60 step 10,
/// sweep jobs of 3 sets, 4 jobs in flight.
pub fn grid_request(id: &str) -> v1::StartOptimizationRequest {
    let range = |name: &str, min, max, step| v1::ParameterRange {
        name: name.into(),
        range: Some(v1::parameter_range::Range::Integer(v1::IntegerRange {
            min,
            max,
            step,
        })),
    };
    v1::StartOptimizationRequest {
        optimization_id: id.into(),
        base: Some(v1::BacktestSpec {
            dataset_ids: vec!["csv/SPY/1d".into()],
            strategy_name: "sma_cross".into(),
            initial_cash: Some(v1::Decimal {
                value: "100000".into(),
            }),
            ..v1::BacktestSpec::default()
        }),
        space: vec![range("fast", 5, 25, 5), range("slow", 20, 60, 10)],
        method: v1::SearchMethod::Grid as i32,
        objective: Some(v1::Objective {
            metric: "sharpe".into(),
            direction: v1::ObjectiveDirection::Maximize as i32,
            min_trades: 1,
        }),
        max_trials: 100,
        batch_size: 4,
        seed: 7,
        // sma_cross has a sweep kernel: its trials go out as sweep jobs, of
        // 3 sets here so a study takes several.
        sweep_slice: 3,
        ..v1::StartOptimizationRequest::default()
    }
}

pub const DAY: i64 = 86_400_000_000_000;
/// 2000-01-01T00:00:00Z, ns.
pub const Y2000: i64 = 946_684_800_000_000_000;

pub fn at(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns / 1_000_000_000,
        nanos: 0,
    }
}

/// The grid over 600 days from 2000-01-01, in 3 rolling folds of 75% in
/// sample: trains [0, 300), [100, 400), [200, 500) days, tests the 100 days
/// after each.
pub fn wf_request(id: &str) -> v1::StartOptimizationRequest {
    let mut req = grid_request(id);
    req.base.as_mut().unwrap().range = Some(v1::TimeRange {
        start: Some(at(Y2000)),
        end: Some(at(Y2000 + 600 * DAY)),
    });
    req.walk_forward = Some(v1::WalkForwardSettings {
        folds: 3,
        in_sample_fraction: 0.75,
        anchored: false,
        ..v1::WalkForwardSettings::default()
    });
    req
}

/// Valid points of [`grid_request`]'s grid and the best of them.
pub fn grid_points() -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for f in (5..=25).step_by(5) {
        for s in (20..=60).step_by(10) {
            if f < s {
                out.push((f, s));
            }
        }
    }
    out
}

pub fn grid_best() -> (i64, i64, f64) {
    grid_points()
        .into_iter()
        .filter(|&(f, s)| trades_of(f, s) >= 1)
        .map(|(f, s)| (f, s, sharpe_of(f, s)))
        .fold(
            (0, 0, f64::NEG_INFINITY),
            |b, x| if x.2 > b.2 { x } else { b },
        )
}

/// What the stand-in worker saw.
#[derive(Default)]
pub struct Seen {
    /// Trials delivered: (event id, backtest id, trial id), one per set of
    /// a sweep job.
    pub jobs: Vec<(uuid::Uuid, String, String)>,
    /// Sweep job deliveries: how many sets each held.
    pub slices: Vec<usize>,
    /// Every trial delivered: (optimization id, trial id, the spec's range
    /// as ns, or None for the datasets' bounds, its parameters).
    pub runs: Vec<Delivered>,
    /// The price noise (sigma, seed) of every job that asked for it.
    pub noise: Vec<(f64, u64)>,
    /// The warm-up bars of every job that asked for some: (trial id, bars).
    pub warmup: Vec<(String, u32)>,
}

/// One trial delivered: (optimization id, trial id, the spec's range as ns
/// or None for the datasets' bounds, its parameters).
pub type Delivered = (String, String, Option<(i64, i64)>, BTreeMap<String, String>);

fn range_ns(spec: &v1::BacktestSpec) -> Option<(i64, i64)> {
    let r = spec.range.as_ref()?;
    let ns = |t: &prost_types::Timestamp| t.seconds * 1_000_000_000 + i64::from(t.nanos);
    Some((ns(r.start.as_ref()?), ns(r.end.as_ref()?)))
}

/// The stand-in worker: answers jobs until dropped. `hold` (when set)
/// makes it stop answering (jobs stay unread) until cleared.
pub struct Worker {
    pub seen: Arc<Mutex<Seen>>,
    pub hold: Arc<std::sync::atomic::AtomicBool>,
    /// When non-zero: `hold` is set once this many distinct trials were answered.
    pause_at: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Seen {
    fn distinct_trials(&self) -> usize {
        self.jobs
            .iter()
            .map(|j| &j.2)
            .collect::<BTreeSet<_>>()
            .len()
    }
}

impl Worker {
    /// Answers until `n` distinct trials were answered (0: without end),
    /// then holds: a study cannot finish behind a test's back.
    pub fn pause_at(&self, n: usize) {
        self.pause_at.store(n, std::sync::atomic::Ordering::SeqCst);
        self.hold.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Starts answering, or (`held`) waits until `hold` is cleared.
    pub async fn start(bus: Arc<dyn EventBus>, held: bool) -> Self {
        let jobs = StreamName::parse(<v1::BacktestJob as Topic>::STREAM).unwrap();
        let group = GroupName::parse("backtest-worker").unwrap();
        bus.ensure_group(&jobs, &group, StartFrom::Beginning)
            .await
            .expect("worker group");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let hold = Arc::new(std::sync::atomic::AtomicBool::new(held));
        let pause_at = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, h, pause) = (seen.clone(), hold.clone(), pause_at.clone());
        let task = tokio::spawn(async move {
            let me = ConsumerName::parse("stand-in").unwrap();
            loop {
                let p = pause.load(std::sync::atomic::Ordering::SeqCst);
                if p > 0 && s.lock().unwrap().distinct_trials() >= p {
                    h.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                if h.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                let Ok(got) = bus
                    .consume(&jobs, &group, &me, 1, Duration::from_millis(50))
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                for d in got {
                    let job = topic::decode::<v1::BacktestJob>(
                        &d.envelope.event_type,
                        d.envelope.payload.as_ref(),
                    )
                    .expect("a job");
                    if let Some(slice) = &job.sweep {
                        {
                            let mut seen = s.lock().unwrap();
                            seen.slices.push(slice.sets.len());
                            let range = job.spec.as_ref().and_then(range_ns);
                            for set in &slice.sets {
                                seen.jobs.push((
                                    d.envelope.event_id,
                                    job.backtest_id.clone(),
                                    set.trial_id.clone(),
                                ));
                                seen.runs.push((
                                    job.optimization_id.clone(),
                                    set.trial_id.clone(),
                                    range,
                                    set.params.clone().into_iter().collect(),
                                ));
                            }
                        }
                        let result = v1::BacktestResult {
                            backtest_id: job.backtest_id.clone(),
                            status: v1::BacktestStatus::Succeeded as i32,
                            sweep_results: slice
                                .sets
                                .iter()
                                .map(|set| v1::SweepSetResult {
                                    params: set.params.clone(),
                                    status: v1::BacktestStatus::Succeeded as i32,
                                    metrics: Some(metrics_of(
                                        &set.params,
                                        job.spec.as_ref().and_then(|x| x.price_noise.as_ref()),
                                    )),
                                    path: "sweep".into(),
                                    ..v1::SweepSetResult::default()
                                })
                                .collect(),
                            ..v1::BacktestResult::default()
                        };
                        let ev = v1::BacktestResultEvent {
                            result: Some(result),
                            optimization_id: job.optimization_id,
                            trial_id: job.trial_id,
                            trial_ids: slice.sets.iter().map(|x| x.trial_id.clone()).collect(),
                        };
                        publish(bus.as_ref(), &ev).await;
                        bus.ack(&jobs, &group, &[d.entry_id]).await.expect("ack");
                        continue;
                    }
                    let spec = job.spec.clone().unwrap();
                    {
                        let mut seen = s.lock().unwrap();
                        seen.jobs.push((
                            d.envelope.event_id,
                            job.backtest_id.clone(),
                            job.trial_id.clone(),
                        ));
                        seen.runs.push((
                            job.optimization_id.clone(),
                            job.trial_id.clone(),
                            range_ns(&spec),
                            spec.params.clone().into_iter().collect(),
                        ));
                        if let Some(n) = &spec.price_noise {
                            seen.noise.push((n.sigma, n.seed));
                        }
                        if spec.warmup_bars > 0 {
                            seen.warmup.push((job.trial_id.clone(), spec.warmup_bars));
                        }
                    }
                    let mut metrics = metrics_of(&spec.params, spec.price_noise.as_ref());
                    if job.trial_id.starts_with("wf-val-") {
                        // Validation windows reverse the in-sample order:
                        // the weakest candidate does best there.
                        metrics.sharpe = -metrics.sharpe;
                    }
                    let mut result = v1::BacktestResult {
                        backtest_id: job.backtest_id.clone(),
                        status: v1::BacktestStatus::Succeeded as i32,
                        metrics: Some(metrics),
                        ..v1::BacktestResult::default()
                    };
                    if job.detail.is_some_and(|d| d.trades) {
                        // The detailed run of Monte Carlo: trades whose net
                        // PnL sums to +300 on 100000, and their equity curve.
                        let pnls = [400, -250, 300, -500, 350];
                        let dec = |v: i64| {
                            Some(v1::Decimal {
                                value: v.to_string(),
                            })
                        };
                        result.trades = pnls
                            .iter()
                            .map(|&p| v1::Trade {
                                gross_pnl: dec(p),
                                costs: dec(0),
                                ..v1::Trade::default()
                            })
                            .collect();
                        let mut equity = 100_000;
                        result.equity_curve = std::iter::once(equity)
                            .chain(pnls.iter().map(|p| {
                                equity += p;
                                equity
                            }))
                            .map(|e| v1::EquityPoint {
                                equity: dec(e),
                                ..v1::EquityPoint::default()
                            })
                            .collect();
                        if let Some(m) = result.metrics.as_mut() {
                            m.initial_equity = dec(100_000);
                        }
                    }
                    if job.detail.is_some_and(|d| d.equity_curve && !d.trades) {
                        // A walk-forward out-of-sample run: three marks over
                        // its range, rising by the total return 0.01 * fast.
                        let (a, b) = range_ns(&spec).expect("an out-of-sample range");
                        let f = param(&spec.params, "fast");
                        result.equity_curve =
                            [(a, 0), (a + (b - a) / 2, 500 * f), (b - 1, 1000 * f)]
                                .into_iter()
                                .map(|(t, gain)| v1::EquityPoint {
                                    timestamp: Some(prost_types::Timestamp {
                                        seconds: t.div_euclid(1_000_000_000),
                                        nanos: i32::try_from(t.rem_euclid(1_000_000_000)).unwrap(),
                                    }),
                                    equity: Some(v1::Decimal {
                                        value: (100_000 + gain).to_string(),
                                    }),
                                    ..v1::EquityPoint::default()
                                })
                                .collect();
                    }
                    let ev = v1::BacktestResultEvent {
                        result: Some(result),
                        optimization_id: job.optimization_id,
                        trial_id: job.trial_id,
                        trial_ids: Vec::new(),
                    };
                    publish(bus.as_ref(), &ev).await;
                    bus.ack(&jobs, &group, &[d.entry_id]).await.expect("ack");
                }
            }
        });
        Self {
            seen,
            hold,
            pause_at,
            task,
        }
    }

    /// Sweep job deliveries: how many sets each held.
    pub fn slices(&self) -> Vec<usize> {
        self.seen.lock().unwrap().slices.clone()
    }

    /// The price noise (sigma, seed) of every job that asked for it.
    pub fn noise(&self) -> Vec<(f64, u64)> {
        self.seen.lock().unwrap().noise.clone()
    }

    /// The warm-up bars of every job that asked for some: (trial id, bars).
    pub fn warmup(&self) -> Vec<(String, u32)> {
        self.seen.lock().unwrap().warmup.clone()
    }

    /// Every trial delivered: (optimization id, trial id, range, parameters).
    pub fn runs(&self) -> Vec<Delivered> {
        self.seen.lock().unwrap().runs.clone()
    }

    /// Job deliveries per trial id (a sweep job delivers each of its sets).
    pub fn per_trial(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (_, _, t) in &self.seen.lock().unwrap().jobs {
            *out.entry(t.clone()).or_default() += 1;
        }
        out
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
        let prefix = format!("test-opt-{}:", uuid::Uuid::now_v7().simple());
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

    /// The whole service on port 0 (claims after 500 ms).
    pub async fn spawn(&self) -> Spawned {
        let mut config = defaults_with_settings();
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        config.common.grpc.addr = any;
        config.common.http.addr = any;
        config.service = OptimizerSettings {
            claim_idle_ms: 500,
            ..OptimizerSettings::default()
        };
        let server = build_with_settings(config, self.infra())
            .await
            .expect("service binds");
        let (grpc, http) = (server.grpc_addr(), server.http_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Spawned {
            client: client(grpc).await,
            http,
            stop,
            task,
        }
    }
}

pub async fn client(grpc: SocketAddr) -> OptimizerServiceClient<Channel> {
    OptimizerServiceClient::new(
        Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .expect("connects"),
    )
}

pub struct Spawned {
    pub client: OptimizerServiceClient<Channel>,
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

/// Polls GetOptimization until `done` or `secs` pass.
pub async fn until(
    client: &mut OptimizerServiceClient<Channel>,
    id: &str,
    secs: u64,
    done: impl Fn(&v1::Optimization) -> bool,
) -> v1::Optimization {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let o = client
            .get_optimization(v1::GetOptimizationRequest {
                optimization_id: id.into(),
                top_n: 1000,
            })
            .await
            .expect("GetOptimization")
            .into_inner()
            .optimization
            .unwrap();
        if done(&o) {
            return o;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; last state {:?} progress {:?}",
            o.state,
            o.progress
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
