//! The service binary killed with SIGKILL (kill -9) twice mid-study, over
//! Redis and Postgres: the study resumes from the journal and ends with
//! every trial recorded once; job deliveries per trial are counted (a job
//! published again after a kill is a duplicate delivery, absorbed by the
//! workers' idempotence, and reported). A walk-forward run killed once
//! mid-run likewise loses and repeats no trial and no test run, and a
//! price-noise analysis killed mid-way records every noisy run once.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use grodt_proto::v1;

use crate::helpers::{
    Env, Worker, client, grid_best, grid_points, grid_request, redis_url, until, wf_request,
};

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    grodt_store::testing::service_port()
}

fn start(env: &Env, dir: &std::path::Path, n: usize, grpc: u16) -> Service {
    let log = std::fs::File::create(dir.join(format!("service-{n}.log"))).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_grodt-optimizer"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GRODT_CONFIG_DIR", dir)
        .env("GRODT_GRPC__ADDR", format!("127.0.0.1:{grpc}"))
        .env("GRODT_HTTP__ADDR", "127.0.0.1:0")
        .env("GRODT_TELEMETRY__LOG_FORMAT", "json")
        .env("GRODT_TELEMETRY__LOG_LEVEL", "info")
        .env("GRODT_REDIS__URL", redis_url())
        .env("GRODT_REDIS__KEY_PREFIX", &env.prefix)
        .env("GRODT_DATABASE__URL", env.db.url())
        .env("GRODT_OPTIMIZER__CLAIM_IDLE_MS", "700")
        .stdout(Stdio::from(log))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the optimizer binary starts");
    Service(child)
}

async fn connect(
    grpc: u16,
) -> grodt_proto::v1::optimizer_service_client::OptimizerServiceClient<tonic::transport::Channel> {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], grpc).into();
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return client(addr).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the optimizer did not listen on {addr}");
}

fn finished(o: &v1::Optimization) -> u32 {
    o.progress
        .as_ref()
        .map_or(0, |p| p.trials_succeeded + p.trials_failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_study_resumes_it_with_every_trial_recorded_once() {
    let env = Env::redis().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let worker = Worker::start(env.bus.clone(), false).await;
    let grpc = free_port();
    let planned = grid_points().len() as u32;
    let mut req = grid_request("kill-1");
    req.batch_size = 2;
    // Sweep jobs of one set: results come one trial at a time, so both
    // kills land mid-study.
    req.sweep_slice = 1;

    let mut service = start(&env, dir.path(), 0, grpc);
    let mut c = connect(grpc).await;
    let mut killed_at = Vec::new();
    for (life, after) in [(1, planned / 3), (2, 2 * planned / 3)] {
        // The stand-in stops answering at `after` trials, so the kill lands
        // mid-study however fast the rest would go.
        worker.pause_at(after as usize);
        if life == 1 {
            c.start_optimization(req.clone())
                .await
                .expect("StartOptimization");
        }
        let o = until(&mut c, "kill-1", 30, |o| finished(o) >= after).await;
        service.0.kill().expect("kill -9");
        service.0.wait().expect("reaped");
        killed_at.push(finished(&o));
        service = start(&env, dir.path(), life, grpc);
        c = connect(grpc).await;
    }
    worker.pause_at(0);
    // Idempotent after the restarts too: the same request finds the same run.
    c.start_optimization(req)
        .await
        .expect("same request, same run");
    let done = until(&mut c, "kill-1", 60, |o| {
        o.state == v1::OptimizationState::Succeeded as i32
    })
    .await;
    let p = done.progress.unwrap();
    let per_trial = worker.per_trial();
    let duplicates: usize = per_trial.values().map(|&n| n - 1).sum();
    let missing = planned as usize - per_trial.len();
    eprintln!(
        "kill -9 after {killed_at:?} of {planned} trials; job deliveries: {} distinct trials, \
         {duplicates} duplicate deliveries, {missing} trials never dispatched",
        per_trial.len()
    );
    assert_eq!(killed_at.len(), 2);
    assert!(
        killed_at[0] < planned && killed_at[1] < planned,
        "both kills mid-study"
    );
    assert_eq!(missing, 0, "no trial lost");
    assert_eq!(p.trials_total, planned);
    assert_eq!(
        p.trials_succeeded + p.trials_failed,
        planned,
        "every trial recorded once"
    );
    assert_eq!(p.trials_queued, 0);
    assert_eq!(p.best_objective, grid_best().2);
    // At most the two jobs in flight at each kill can be published again.
    assert!(duplicates <= 2 * 2, "{duplicates} duplicate job deliveries");
}

/// The binary killed with SIGKILL once its walk-forward run is under way:
/// after the restart every fold's study finishes, every fold trades once out
/// of sample, and no trial or test run is delivered twice or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_walk_forward_loses_and_repeats_nothing() {
    let env = Env::redis().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let worker = Worker::start(env.bus.clone(), false).await;
    let grpc = free_port();
    let mut req = wf_request("wf-kill");
    req.batch_size = 1;
    req.sweep_slice = 1;
    // With a validation window: five candidates per fold run on it first.
    let w = req.walk_forward.as_mut().unwrap();
    (w.in_sample_fraction, w.validation_fraction) = (0.65, 0.1);
    let mut service = start(&env, dir.path(), 0, grpc);
    let mut c = connect(grpc).await;
    worker.pause_at(25);
    c.start_optimization(req).await.expect("StartOptimization");
    let o = until(&mut c, "wf-kill", 30, |o| finished(o) >= 25).await;
    service.0.kill().expect("kill -9");
    service.0.wait().expect("reaped");
    let killed_at = finished(&o);
    let _service = start(&env, dir.path(), 1, grpc);
    worker.pause_at(0);
    let mut c = connect(grpc).await;
    let done = until(&mut c, "wf-kill", 60, |o| {
        o.state == v1::OptimizationState::Succeeded as i32
    })
    .await;
    let total = 3 * grid_points().len() + 3 * 5 + 3;
    let mut per: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for r in worker.runs() {
        *per.entry((r.0, r.1)).or_default() += 1;
    }
    let duplicates: usize = per.values().map(|&n| n - 1).sum();
    eprintln!(
        "walk-forward kill -9 after {killed_at} of {total} trials, validation and test runs; \
         {} delivered, {duplicates} duplicate deliveries, {} lost",
        per.len(),
        total - per.len()
    );
    assert!((killed_at as usize) < total, "killed mid-run");
    assert_eq!(per.len(), total, "no trial or test run lost");
    // The one job in flight at the kill may be published again.
    assert!(duplicates <= 1, "{duplicates} duplicate deliveries");
    let wf = done.walk_forward.unwrap();
    assert!(
        wf.folds
            .iter()
            .all(|f| f.error.is_empty() && f.validation.is_some())
    );
    assert_eq!(wf.efficiency, 1.0);
    let p = done.progress.unwrap();
    assert_eq!(p.trials_succeeded + p.trials_failed, total as u32);
}

/// Price-noise Monte Carlo killed with SIGKILL while its noisy re-runs are
/// out: after the restart every one of the 20 noisy copies is recorded once
/// and the analysis equals an undisturbed run's (the stand-in's figures are
/// a function of the seed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_price_noise_records_every_noisy_run_once() {
    let env = Env::redis().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let worker = Worker::start(env.bus.clone(), false).await;
    let grpc = free_port();
    let mut req = grid_request("pn-kill");
    req.batch_size = 2;
    req.monte_carlo = Some(v1::MonteCarloSettings {
        simulations: 20,
        method: v1::MonteCarloMethod::PriceNoise as i32,
        noise_sigma: 0.005,
    });
    let mut service = start(&env, dir.path(), 0, grpc);
    let mut c = connect(grpc).await;
    // The grid's trials, then 8 of the noisy runs; then the stand-in holds.
    let grid = worker_trials_of_grid(&worker, &mut c, req).await;
    worker.pause_at(grid + 8);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !worker.hold.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "the stand-in paused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed at once: results it was answered may not be journaled yet.
    service.0.kill().expect("kill -9");
    service.0.wait().expect("reaped");
    let noisy_before = noisy(&worker).len();
    let _service = start(&env, dir.path(), 1, grpc);
    let mut c = connect(grpc).await;
    worker.pause_at(0);
    let done = until(&mut c, "pn-kill", 60, |o| {
        o.state == v1::OptimizationState::Succeeded as i32
            && o.monte_carlo
                .as_ref()
                .is_some_and(|m| m.objective_scored > 0)
    })
    .await;
    let runs = noisy(&worker);
    let duplicates: usize = runs.values().map(|&n| n - 1).sum();
    eprintln!(
        "price noise: kill -9 after {noisy_before} of 20 noisy runs answered; {} delivered, \
         {duplicates} duplicate deliveries, {} lost",
        runs.len(),
        20 - runs.len()
    );
    assert!((1..20).contains(&noisy_before), "killed mid-analysis");
    assert_eq!(runs.len(), 20, "no noisy run lost");
    assert!(duplicates <= 2, "{duplicates} duplicate deliveries");
    let mc = done.monte_carlo.unwrap();
    assert!(mc.error.is_empty(), "{}", mc.error);
    assert_eq!(mc.objective_scored, 20, "each noisy run counted once");
    let (_, _, best) = grid_best();
    assert_eq!(mc.objective_observed, best);
    assert!((mc.objective_degradation - 0.05).abs() < 1e-9, "{mc:?}");
}

/// Starts `req` and waits until its grid is answered: the stand-in's count
/// of distinct trials then.
async fn worker_trials_of_grid(
    worker: &Worker,
    c: &mut grodt_proto::v1::optimizer_service_client::OptimizerServiceClient<
        tonic::transport::Channel,
    >,
    req: v1::StartOptimizationRequest,
) -> usize {
    let grid = grid_points().len();
    worker.pause_at(grid);
    c.start_optimization(req).await.expect("StartOptimization");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while worker.per_trial().len() < grid {
        assert!(
            std::time::Instant::now() < deadline,
            "the grid was answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    grid
}

/// Deliveries per noisy run.
fn noisy(worker: &Worker) -> std::collections::BTreeMap<String, usize> {
    worker
        .per_trial()
        .into_iter()
        .filter(|(t, _)| t.starts_with("noise-"))
        .collect()
}
