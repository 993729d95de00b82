//! Optimization end to end in the distributed mode: market-data, the
//! optimizer and two backtest workers as `grodt serve` processes over Redis
//! and Postgres, SPY daily imported with `grodt data import`. A grid study
//! runs on the real workers while one worker is killed with SIGKILL mid-study:
//! its job is taken over once its lease lapses (the worker renews it while it
//! runs, so the claim timeout is short), the study ends with every trial
//! recorded once, and the best trial's metrics equal a RunBacktest of the
//! same spec. Counts and times are printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use grodt_bus::{
    ConsumerName, EventBus, GroupName, RedisBus, RedisBusConfig, StartFrom, StreamName,
};
use grodt_proto::topic::{Topic, decode};
use grodt_proto::v1;
use grodt_proto::v1::backtest_service_client::BacktestServiceClient;
use grodt_proto::v1::optimizer_service_client::OptimizerServiceClient;
use grodt_store::testing::TestDb;
use tonic::transport::Channel;

use crate::cluster::{Cluster, Proc, free_port, redis_url};

const MARKET_DATA: usize = 0;
const OPTIMIZER: usize = 1;
const WORKER_A: usize = 2;
const WORKER_B: usize = 3;

async fn channel(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .expect("connects")
}

fn proc(name: &'static str, label: &str) -> Proc {
    Proc {
        name,
        label: label.to_owned(),
        grpc: free_port(),
        http: free_port(),
        child: None,
        starts: 0,
    }
}

/// The grid of the end-to-end studies: sma_cross fast 5..30:5, slow
/// 20..120:20 on SPY daily, by Sharpe; one backtest job per trial, or sweep
/// jobs of `slice` sets.
fn request(id: &str, slice: Option<u32>) -> v1::StartOptimizationRequest {
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
            dataset_ids: vec!["quantconnect/SPY/1d".into()],
            strategy_name: "sma_cross".into(),
            initial_cash: Some(v1::Decimal {
                value: "100000".into(),
            }),
            ..v1::BacktestSpec::default()
        }),
        space: vec![range("fast", 5, 30, 5), range("slow", 20, 120, 20)],
        method: v1::SearchMethod::Grid as i32,
        objective: Some(v1::Objective {
            metric: "sharpe".into(),
            direction: v1::ObjectiveDirection::Maximize as i32,
            min_trades: 1,
        }),
        max_trials: 100,
        batch_size: 4,
        seed: 1,
        per_trial_jobs: slice.is_none(),
        sweep_slice: slice.unwrap_or(0),
        ..v1::StartOptimizationRequest::default()
    }
}

fn finished(o: &v1::Optimization) -> u32 {
    o.progress
        .as_ref()
        .map_or(0, |p| p.trials_succeeded + p.trials_failed)
}

async fn get(c: &mut OptimizerServiceClient<Channel>, id: &str) -> v1::Optimization {
    c.get_optimization(v1::GetOptimizationRequest {
        optimization_id: id.into(),
        top_n: 1000,
    })
    .await
    .expect("GetOptimization")
    .into_inner()
    .optimization
    .unwrap()
}

/// market-data, the optimizer and two workers as `grodt serve` processes
/// over Redis and Postgres, SPY daily imported, and a group of the test's
/// own on the results stream.
struct Setup {
    _db: TestDb,
    dir: tempfile::TempDir,
    cluster: Cluster,
    bus: std::sync::Arc<dyn EventBus>,
    results: StreamName,
    group: GroupName,
}

async fn setup() -> Setup {
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog");
    std::fs::write(
        dir.path().join("base.toml"),
        format!(
            "[market_data]\ncatalog_dir = {c:?}\n\
             [backtest_worker]\ncatalog_dir = {c:?}\nclaim_idle_ms = 1500\n\
             [optimizer]\nclaim_idle_ms = 1000\n",
            c = catalog.to_str().unwrap()
        ),
    )
    .unwrap();
    let prefix = format!("test-opt-e2e-{}:", uuid::Uuid::now_v7().simple());
    let mut cluster = Cluster {
        config_dir: dir.path().to_path_buf(),
        prefix: prefix.clone(),
        redis_url: redis_url(),
        db_url: db.url().to_owned(),
        procs: vec![
            proc("market-data", "market-data"),
            proc("optimizer", "optimizer"),
            proc("backtest-worker", "worker-a"),
            proc("backtest-worker", "worker-b"),
        ],
        env: Vec::new(),
    };
    for k in 0..cluster.procs.len() {
        cluster.start(k);
    }
    for k in 0..cluster.procs.len() {
        cluster.wait_serving(k).await;
    }
    let spy = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples/spy_1d_1998-2021.csv");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grodt"))
        .env("GRODT_CONFIG_DIR", dir.path())
        .args(["data", "import"])
        .arg(&spy)
        .args(["--source", "quantconnect", "--addr"])
        .arg(format!("127.0.0.1:{}", cluster.procs[MARKET_DATA].grpc))
        .output()
        .expect("grodt data import runs");
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every result published, read by a group of the test's own.
    let bus: std::sync::Arc<dyn EventBus> = std::sync::Arc::new(
        RedisBus::connect(RedisBusConfig::new(redis_url(), prefix))
            .await
            .expect("Redis"),
    );
    let results = StreamName::parse(<v1::BacktestResultEvent as Topic>::STREAM).unwrap();
    let group = GroupName::parse("test-reader").unwrap();
    bus.ensure_group(&results, &group, StartFrom::Beginning)
        .await
        .unwrap();
    Setup {
        _db: db,
        dir,
        cluster,
        bus,
        results,
        group,
    }
}

/// Every result event on the stream not read yet.
async fn drain_results(s: &Setup) -> Vec<v1::BacktestResultEvent> {
    let me = ConsumerName::parse("reader").unwrap();
    let mut out = Vec::new();
    loop {
        let got = s
            .bus
            .consume(&s.results, &s.group, &me, 500, Duration::from_millis(200))
            .await
            .unwrap();
        if got.is_empty() {
            return out;
        }
        for d in got {
            out.push(decode(&d.envelope.event_type, d.envelope.payload.as_ref()).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_study_on_two_real_workers_survives_one_killed_mid_study() {
    let mut s = setup().await;
    let mut opt = OptimizerServiceClient::new(channel(s.cluster.procs[OPTIMIZER].grpc).await);
    let t0 = Instant::now();
    let started = opt
        .start_optimization(request("e2e-grid", None))
        .await
        .expect("StartOptimization")
        .into_inner()
        .optimization
        .unwrap();
    let planned = started.progress.unwrap().trials_total;
    assert_eq!(planned, 33, "6 fast x 6 slow values, fast < slow");

    // Kill worker a once a quarter of the trials are done and it has
    // finished one of them itself (a kill before its first job would prove
    // nothing; on a fast machine the other worker can take the first ones).
    let deadline = Instant::now() + Duration::from_secs(120);
    let a_http: std::net::SocketAddr = ([127, 0, 0, 1], s.cluster.procs[WORKER_A].http).into();
    loop {
        let done = finished(&get(&mut opt, "e2e-grid").await) >= planned / 4;
        let (_, metrics) = crate::helpers::http_get(a_http, "/metrics").await;
        let a_jobs = metrics
            .lines()
            .find(|l| l.starts_with("grodt_backtest_worker_jobs_total{outcome=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if done && a_jobs >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no progress, or worker a took no job ({a_jobs})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.cluster.kill(WORKER_A);
    let killed_at = Instant::now();
    let done = loop {
        let o = get(&mut opt, "e2e-grid").await;
        if o.state != v1::OptimizationState::Running as i32 {
            break o;
        }
        assert!(
            Instant::now() < deadline,
            "study did not end: {:?}",
            o.progress
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (total, after_kill) = (t0.elapsed(), killed_at.elapsed());
    assert_eq!(
        done.state,
        v1::OptimizationState::Succeeded as i32,
        "{}",
        done.reason
    );
    let p = done.progress.unwrap();
    assert_eq!(
        p.trials_succeeded + p.trials_failed,
        planned,
        "every trial recorded"
    );
    assert_eq!(p.trials_queued, 0);

    // Results per backtest: each trial's backtest answered; count repeats.
    let mut per_backtest: BTreeMap<String, usize> = BTreeMap::new();
    let mut workers: BTreeMap<String, usize> = BTreeMap::new();
    for e in drain_results(&s).await {
        let r = e.result.unwrap();
        *per_backtest.entry(r.backtest_id).or_default() += 1;
        *workers.entry(r.worker).or_default() += 1;
    }
    let repeats: usize = per_backtest.values().map(|n| n - 1).sum();
    eprintln!(
        "{planned} trials in {:.2} s ({:.2} s after worker a was killed); results per worker {workers:?}; \
         {} backtests answered, {repeats} repeated results",
        total.as_secs_f64(),
        after_kill.as_secs_f64(),
        per_backtest.len()
    );
    assert_eq!(per_backtest.len() as u32, planned, "one backtest per trial");
    assert!(
        repeats <= 1,
        "at most the killed worker's job answered twice"
    );
    assert!(workers.len() >= 2, "both workers took jobs: {workers:?}");

    // The best trial's metrics equal an independent run of its spec.
    let best = &done.top_trials[0];
    let mut spec = request("e2e-grid", None).base.unwrap();
    spec.params = best.params.clone();
    let mut bt = BacktestServiceClient::new(channel(s.cluster.procs[WORKER_B].grpc).await);
    let again = bt
        .run_backtest(v1::RunBacktestRequest {
            spec: Some(spec),
            detail: None,
        })
        .await
        .expect("RunBacktest")
        .into_inner();
    let m = again.result.unwrap().metrics.unwrap();
    assert_eq!(m.sharpe, best.objective_value);
    assert_eq!(m.final_equity, best.metrics.as_ref().unwrap().final_equity);
    assert!(
        done.top_trials
            .iter()
            .all(|t| t.objective_value <= best.objective_value)
    );

    // `grodt optimize` on a sub-grid (one sweep job: sma_cross has a
    // kernel); the table ranks its trials as the study above did.
    let cli = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_grodt"))
            .env("GRODT_CONFIG_DIR", s.dir.path())
            .args(["optimize", "--addr"])
            .arg(format!("127.0.0.1:{}", s.cluster.procs[OPTIMIZER].grpc))
            .args([
                "--dataset",
                "quantconnect/SPY/1d",
                "--strategy",
                "sma_cross",
            ])
            .args(["--min-trades", "1", "--top", "3", "--no-progress"])
            .args(extra)
            .output()
            .expect("grodt optimize runs")
    };
    let report = s.dir.path().join("grid.html");
    let out = cli(&[
        "--param",
        "fast=5..15:5",
        "--param",
        "slow=20..40:20",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("OPTIMIZATION_STATE_SUCCEEDED  trials 6"),
        "{stdout}"
    );
    let rows: Vec<&str> = stdout
        .lines()
        .skip(2)
        .filter(|l| !l.starts_with("recommended"))
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(
        stdout.contains("recommended (stable region"),
        "the landscape's recommendation: {stdout}"
    );
    let sub_best = done
        .top_trials
        .iter()
        .find(|t| {
            let f: i64 = t.params["fast"].parse().unwrap();
            let s: i64 = t.params["slow"].parse().unwrap();
            f <= 15 && s <= 40
        })
        .unwrap();
    assert!(
        rows[0].contains(&format!(
            "fast={} slow={}",
            sub_best.params["fast"], sub_best.params["slow"]
        )),
        "the sub-grid's best is the study's best of those points: {stdout}"
    );
    // The HTML report: convergence over the 6 trials, the fast x slow
    // heatmap (3 x 2 cells), the best trials.
    let html = std::fs::read_to_string(&report).expect("the report is written");
    assert!(html.contains("id=\"convergence\""), "convergence curve");
    assert_eq!(
        html.matches("class=\"cell\"").count(),
        6,
        "3 x 2 heatmap cells"
    );
    assert_eq!(
        html.matches("class=\"best\"").count(),
        1,
        "the best outlined"
    );
    assert!(html.contains("id=\"top\""));
    assert!(html.contains("id=\"recommendation\""));
    let out = cli(&["--param", "fast=5..x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--param"));
}

/// The done-when of the sweep path: a grid study of a sweep-capable strategy
/// goes out as sweep jobs (slices of sets, answered by one result each) and
/// finds the same best parameters, with the same metrics for every trial, as
/// the same study with one job per trial, on real workers; a worker killed
/// with SIGKILL mid-study costs no trial and runs none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_study_finds_what_per_trial_jobs_find_and_survives_a_killed_worker() {
    let mut s = setup().await;
    let mut opt = OptimizerServiceClient::new(channel(s.cluster.procs[OPTIMIZER].grpc).await);
    let watcher = opt.clone();
    let until_done = |id: &'static str| {
        let mut c = watcher.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                let o = get(&mut c, id).await;
                if o.state != v1::OptimizationState::Running as i32 {
                    assert_eq!(
                        o.state,
                        v1::OptimizationState::Succeeded as i32,
                        "{id}: {}",
                        o.reason
                    );
                    return o;
                }
                assert!(
                    Instant::now() < deadline,
                    "{id} did not end: {:?}",
                    o.progress
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // Sweep jobs of 4 sets, 2 in flight (batch_size 2): 33 trials, 9 jobs.
    let mut sweep = request("e2e-sweep", Some(4));
    sweep.batch_size = 2;
    let t0 = Instant::now();
    let started = opt
        .start_optimization(sweep)
        .await
        .expect("StartOptimization")
        .into_inner()
        .optimization
        .unwrap();
    let planned = started.progress.unwrap().trials_total;
    assert_eq!(planned, 33);
    // Kill worker a once the first slice is recorded.
    let deadline = Instant::now() + Duration::from_secs(120);
    while finished(&get(&mut opt, "e2e-sweep").await) < 4 {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.cluster.kill(WORKER_A);
    let swept = until_done("e2e-sweep").await;
    let sweep_secs = t0.elapsed().as_secs_f64();
    let p = swept.progress.unwrap();
    assert_eq!(p.trials_succeeded + p.trials_failed, planned);
    let events = drain_results(&s).await;
    let mut per_trial: BTreeMap<String, usize> = BTreeMap::new();
    let mut slices: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        assert_eq!(e.optimization_id, "e2e-sweep");
        let r = e.result.as_ref().unwrap();
        assert!(r.backtest_id.starts_with("s-"), "a sweep job's result");
        assert_eq!(r.sweep_results.len(), e.trial_ids.len());
        assert!(
            r.sweep_results.iter().all(|x| x.path == "sweep"),
            "the kernel evaluated every set"
        );
        *slices.entry(r.backtest_id.clone()).or_default() += 1;
        for t in &e.trial_ids {
            *per_trial.entry(t.clone()).or_default() += 1;
        }
    }
    let repeated: usize = slices.values().map(|n| n - 1).sum();
    eprintln!(
        "sweep study: {planned} trials in {} sweep jobs, {sweep_secs:.2} s, worker a killed after the first; \
         {repeated} slice results repeated",
        slices.len()
    );
    assert_eq!(slices.len(), 9, "33 trials in jobs of at most 4 sets");
    assert_eq!(per_trial.len() as u32, planned, "no trial lost");
    assert!(
        repeated <= 1,
        "at most the killed worker's slice answered twice"
    );

    // The same study, one job per trial, on the surviving worker.
    let t1 = Instant::now();
    opt.start_optimization(request("e2e-trials", None))
        .await
        .expect("StartOptimization");
    let trials = until_done("e2e-trials").await;
    let trial_secs = t1.elapsed().as_secs_f64();
    eprintln!("per-trial study: {planned} trials, {trial_secs:.2} s");
    let key = |t: &v1::Trial| (t.params["fast"].clone(), t.params["slow"].clone());
    let (a, b) = (&swept.top_trials[0], &trials.top_trials[0]);
    assert_eq!(key(a), key(b), "the same best parameters");
    assert!((a.objective_value - b.objective_value).abs() < 1e-9);
    let by_params: BTreeMap<_, _> = trials.top_trials.iter().map(|t| (key(t), t)).collect();
    assert_eq!(swept.top_trials.len(), trials.top_trials.len());
    for t in &swept.top_trials {
        let other = by_params[&key(t)];
        let (m, n) = (t.metrics.as_ref().unwrap(), other.metrics.as_ref().unwrap());
        assert_eq!(m.final_equity, n.final_equity, "{:?}", key(t));
        assert_eq!(m.closed_trade_count, n.closed_trade_count, "{:?}", key(t));
        assert!(
            (t.objective_value - other.objective_value).abs() < 1e-9,
            "{:?}",
            key(t)
        );
    }
    assert_eq!(
        swept.progress.unwrap().trials_failed,
        trials.progress.unwrap().trials_failed
    );
}

fn date_ts(day: &str) -> prost_types::Timestamp {
    let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
    prost_types::Timestamp {
        seconds: d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp(),
        nanos: 0,
    }
}

fn wf_request(id: &str, dataset: &str) -> v1::StartOptimizationRequest {
    let mut r = request(id, Some(64));
    let base = r.base.as_mut().unwrap();
    base.dataset_ids = vec![dataset.into()];
    base.range = Some(v1::TimeRange {
        start: Some(date_ts("2004-01-01")),
        end: Some(date_ts("2020-01-01")),
    });
    r.walk_forward = Some(v1::WalkForwardSettings {
        folds: 3,
        in_sample_fraction: 0.6,
        anchored: false,
        ..v1::WalkForwardSettings::default()
    });
    r
}

/// Walk-forward on real workers and real data, and the proof that no bar
/// of a fold's test window influences its choice: the same run on a copy of
/// SPY whose bars in fold 1's test window are altered (every price of a bar
/// scaled by one factor, so each bar stays a valid bar) chooses the same
/// parameters with the same in-sample objective in folds 0 and 1, while
/// fold 1's out-of-sample result changes (the alteration is real). Later
/// folds train on that window and may differ. `grodt optimize
/// --walk-forward` prints the folds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walk_forward_choices_ignore_their_test_windows_on_real_data() {
    let s = setup().await;
    let mut opt = OptimizerServiceClient::new(channel(s.cluster.procs[OPTIMIZER].grpc).await);
    let until_done = |c: &OptimizerServiceClient<Channel>, id: &'static str| {
        let mut c = c.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                let o = get(&mut c, id).await;
                if o.state != v1::OptimizationState::Running as i32 {
                    assert_eq!(
                        o.state,
                        v1::OptimizationState::Succeeded as i32,
                        "{id}: {}",
                        o.reason
                    );
                    return o;
                }
                assert!(
                    Instant::now() < deadline,
                    "{id} did not end: {:?}",
                    o.progress
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    opt.start_optimization(wf_request("wf-spy", "quantconnect/SPY/1d"))
        .await
        .expect("StartOptimization");
    let spy = until_done(&opt, "wf-spy").await;
    let wf = spy.walk_forward.clone().unwrap();
    assert_eq!(wf.folds.len(), 3);
    for f in &wf.folds {
        assert!(f.error.is_empty(), "fold {}: {}", f.fold, f.error);
        eprintln!(
            "SPY walk-forward fold {}: {:?} in-sample Sharpe {:.4}, out-of-sample Sharpe {:.4}, return {:.4}",
            f.fold,
            f.params,
            f.in_sample_objective,
            f.out_of_sample_objective,
            f.out_of_sample_metrics.as_ref().unwrap().total_return
        );
    }
    let m = wf.out_of_sample_metrics.clone().unwrap();
    eprintln!(
        "SPY walk-forward stitched: return {:.4}, Sharpe {:.4}, max dd {:.4}, efficiency {:.4}, {} points",
        m.total_return,
        m.sharpe,
        m.max_drawdown,
        wf.efficiency,
        wf.stitched_equity.len()
    );
    assert!(
        wf.stitched_equity.len() > 500,
        "three test windows of daily bars"
    );

    // SPYX: SPY with fold 1's test window altered.
    let oos = wf.folds[1].out_of_sample.unwrap();
    let (a, b) = (oos.start.unwrap().seconds, oos.end.unwrap().seconds);
    let csv = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/samples/spy_1d_1998-2021.csv"),
    )
    .unwrap();
    let mut out = String::new();
    let mut altered = 0;
    for (i, line) in csv.lines().enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let t = chrono::DateTime::parse_from_rfc3339(cells[0]).map(|d| d.timestamp());
        match t {
            Ok(t) if (a..b).contains(&t) => {
                let k = 1.0 + 0.08 * (i as f64 * 0.7).sin();
                let p = |x: &str| format!("{:.2}", x.parse::<f64>().unwrap() * k);
                out.push_str(&format!(
                    "{},{},{},{},{},{}\n",
                    cells[0],
                    p(cells[1]),
                    p(cells[2]),
                    p(cells[3]),
                    p(cells[4]),
                    cells[5]
                ));
                altered += 1;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert!(altered > 200, "{altered} bars altered");
    let spyx = s.dir.path().join("spyx_1d_1998-2021.csv");
    std::fs::write(&spyx, out).unwrap();
    let imported = std::process::Command::new(env!("CARGO_BIN_EXE_grodt"))
        .env("GRODT_CONFIG_DIR", s.dir.path())
        .args(["data", "import"])
        .arg(&spyx)
        .args(["--source", "quantconnect", "--symbol", "SPYX", "--addr"])
        .arg(format!("127.0.0.1:{}", s.cluster.procs[MARKET_DATA].grpc))
        .output()
        .expect("grodt data import runs");
    assert!(
        imported.status.success(),
        "import: {}",
        String::from_utf8_lossy(&imported.stderr)
    );
    opt.start_optimization(wf_request("wf-spyx", "quantconnect/SPYX/1d"))
        .await
        .expect("StartOptimization");
    let spyx = until_done(&opt, "wf-spyx").await;
    let alt = spyx.walk_forward.unwrap();
    for k in 0..=1 {
        let (x, y) = (&wf.folds[k], &alt.folds[k]);
        assert_eq!(x.in_sample, y.in_sample, "fold {k}: same windows");
        assert_eq!(x.params, y.params, "fold {k}: the same choice");
        assert_eq!(
            x.in_sample_objective, y.in_sample_objective,
            "fold {k}: the same in-sample figure"
        );
    }
    assert_eq!(
        wf.folds[0].out_of_sample_metrics, alt.folds[0].out_of_sample_metrics,
        "fold 0 trades before the altered window"
    );
    assert_ne!(
        wf.folds[1]
            .out_of_sample_metrics
            .as_ref()
            .unwrap()
            .final_equity,
        alt.folds[1]
            .out_of_sample_metrics
            .as_ref()
            .unwrap()
            .final_equity,
        "the alteration changed fold 1's test result"
    );

    // The CLI prints the folds and the stitched figures.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_grodt"))
        .env("GRODT_CONFIG_DIR", s.dir.path())
        .args(["optimize", "--addr"])
        .arg(format!("127.0.0.1:{}", s.cluster.procs[OPTIMIZER].grpc))
        .args([
            "--dataset",
            "quantconnect/SPY/1d",
            "--strategy",
            "sma_cross",
            "--param",
            "fast=5..30:5",
            "--param",
            "slow=20..120:20",
            "--min-trades",
            "1",
            "--from",
            "2004-01-01",
            "--to",
            "2020-01-01",
            "--walk-forward",
            "3",
            "--in-sample",
            "0.6",
            "--no-progress",
            "--report",
        ])
        .arg(s.dir.path().join("wf.html"))
        .output()
        .expect("grodt optimize runs");
    let stdout = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(stdout.contains("3 folds"), "{stdout}");
    assert!(stdout.contains("out of sample, stitched"), "{stdout}");
    assert!(stdout.contains("stability of fast"), "{stdout}");
    eprintln!("{stdout}");
    let html = std::fs::read_to_string(s.dir.path().join("wf.html")).expect("report");
    assert!(html.contains("id=\"folds\""), "walk-forward folds");
    assert!(
        html.contains("id=\"stitched-equity\""),
        "stitched equity chart"
    );
    assert!(html.matches("<tr><td>").count() >= 3, "the folds' rows");
}
