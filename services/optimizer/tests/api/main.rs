//! API tests of the optimizer: the service on port 0 against its own
//! database and bus (SQLite + the in-process bus, and Postgres + Redis),
//! with a stand-in for the workers: a grid study runs every valid point once
//! and finds the best; StreamProgress follows it to the end; bad requests
//! name their field; genetic and Bayesian studies run distinct trials within
//! their budget; Start is idempotent by id; Cancel stops new trials and
//! drains; a restart mid-study resumes it with no trial lost or run twice;
//! walk-forward runs search each fold on its in-sample window only and trade
//! the best on the window after; and the binary killed with SIGKILL
//! mid-study and mid walk-forward (restart.rs).

mod helpers;
mod restart;

use std::collections::{BTreeMap, BTreeSet};

use grodt_proto::v1;
use tonic::Code;

use helpers::{DAY, Env, Worker, Y2000, grid_best, grid_points, grid_request, until, wf_request};

fn succeeded(o: &v1::Optimization) -> bool {
    o.state == v1::OptimizationState::Succeeded as i32
}

/// The study's trials as (fast, slow) pairs.
fn pairs(o: &v1::Optimization) -> BTreeSet<(i64, i64)> {
    o.top_trials
        .iter()
        .map(|t| {
            (
                t.params["fast"].parse().unwrap(),
                t.params["slow"].parse().unwrap(),
            )
        })
        .collect()
}

async fn grid_study_runs_every_point_once_and_finds_the_best(env: Env, per_trial_jobs: bool) {
    let worker = Worker::start(env.bus.clone(), false).await;
    let mut svc = env.spawn().await;
    let mut request = grid_request("grid-1");
    request.per_trial_jobs = per_trial_jobs;
    let started = svc
        .client
        .start_optimization(request)
        .await
        .expect("StartOptimization")
        .into_inner()
        .optimization
        .unwrap();
    assert_eq!(started.optimization_id, "grid-1");
    let planned = grid_points().len() as u32;
    assert_eq!(started.progress.unwrap().trials_total, planned);
    let done = until(&mut svc.client, "grid-1", 30, succeeded).await;
    let p = done.progress.unwrap();
    assert_eq!(p.trials_total, planned);
    assert_eq!(p.trials_queued, 0);
    let (bf, bs, want) = grid_best();
    assert_eq!(p.best_objective, want);
    let failed = grid_points()
        .into_iter()
        .filter(|&(f, s)| helpers::trades_of(f, s) < 1)
        .count() as u32;
    assert_eq!(
        p.trials_failed, failed,
        "the trade filter fails trials without trades"
    );
    assert_eq!(p.trials_succeeded + p.trials_failed, planned);
    // top_trials: succeeded ones, best first.
    let best = &done.top_trials[0];
    assert_eq!(
        (best.params["fast"].as_str(), best.params["slow"].as_str()),
        (bf.to_string().as_str(), bs.to_string().as_str())
    );
    // A sweep job's trials carry the slice's id, a per-trial job its own.
    let prefix = if per_trial_jobs { "t-" } else { "s-" };
    assert!(
        done.top_trials
            .iter()
            .all(|t| t.backtest_id.starts_with(prefix)),
        "{prefix}"
    );
    assert!(best.metrics.is_some());
    assert!(
        done.top_trials
            .windows(2)
            .all(|w| w[0].objective_value >= w[1].objective_value)
    );
    assert_eq!(done.top_trials.len() as u32, p.trials_succeeded);
    assert!(done.finished_at.is_some());
    // The landscape: one heatmap of fast x slow around the best, its cells
    // the stand-in's objective (NaN where fast >= slow or a trial failed),
    // and a recommended set whose neighbourhood was tried.
    assert_eq!(done.heatmaps.len(), 1);
    let h = &done.heatmaps[0];
    assert_eq!(
        (h.x_parameter.as_str(), h.y_parameter.as_str()),
        ("fast", "slow")
    );
    assert_eq!(h.x_values, ["5", "10", "15", "20", "25"]);
    assert_eq!(h.y_values, ["20", "30", "40", "50", "60"]);
    for (j, y) in h.y_values.iter().enumerate() {
        for (i, x) in h.x_values.iter().enumerate() {
            let (f, s): (i64, i64) = (x.parse().unwrap(), y.parse().unwrap());
            let v = h.values[j * h.x_values.len() + i];
            if f < s && helpers::trades_of(f, s) >= 1 {
                assert_eq!(v, helpers::sharpe_of(f, s), "({f}, {s})");
            } else {
                assert!(v.is_nan(), "({f}, {s}): {v}");
            }
        }
    }
    let r = done.recommendation.as_ref().expect("a recommendation");
    assert!(r.neighbours >= 1);
    assert!(r.objective_value <= want);
    let (rf, rs): (i64, i64) = (
        r.params["fast"].parse().unwrap(),
        r.params["slow"].parse().unwrap(),
    );
    assert_eq!(r.objective_value, helpers::sharpe_of(rf, rs));
    assert_eq!(r.is_best, (rf, rs) == (bf, bs));
    // Every valid point dispatched exactly once.
    let per_trial = worker.per_trial();
    assert_eq!(per_trial.len() as u32, planned);
    assert!(per_trial.values().all(|&n| n == 1), "{per_trial:?}");
    let slices = worker.slices();
    if per_trial_jobs {
        assert!(slices.is_empty(), "no sweep job: {slices:?}");
    } else {
        // 23 points in jobs of at most 3 sets: 7 of 3 and one of 2.
        assert_eq!(slices.iter().sum::<usize>() as u32, planned);
        assert!(slices.iter().all(|&n| (1..=3).contains(&n)), "{slices:?}");
        assert_eq!(slices.len(), (planned as usize).div_ceil(3), "{slices:?}");
    }
    let metrics = svc.metrics().await;
    assert!(
        metrics.contains(&format!(
            "grodt_optimizer_trials_dispatched_total {planned}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("grodt_optimizer_runs_active 0"));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_study_embedded() {
    grid_study_runs_every_point_once_and_finds_the_best(Env::embedded().await, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_study_over_redis_and_postgres() {
    grid_study_runs_every_point_once_and_finds_the_best(Env::redis().await, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_study_with_per_trial_jobs() {
    grid_study_runs_every_point_once_and_finds_the_best(Env::embedded().await, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_progress_follows_a_study_to_its_end() {
    let env = Env::embedded().await;
    let worker = Worker::start(env.bus.clone(), true).await;
    let mut svc = env.spawn().await;
    svc.client
        .start_optimization(grid_request("s-1"))
        .await
        .expect("StartOptimization");
    let mut stream = svc
        .client
        .stream_progress(v1::StreamProgressRequest {
            optimization_id: "s-1".into(),
        })
        .await
        .expect("StreamProgress")
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.trial.is_none(), "the current state comes first");
    assert_eq!(first.state, v1::OptimizationState::Running as i32);
    // The held worker has taken nothing: the 4 sweep jobs in flight wait on
    // the stream; no pace yet, so no ETA.
    let p0 = first.progress.unwrap();
    assert_eq!((p0.jobs_waiting, p0.workers_busy), (4, 0));
    assert!(p0.eta_seconds.is_nan());
    worker
        .hold
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let mut trials = BTreeSet::new();
    let mut last = first;
    while let Some(m) = stream.message().await.expect("stream") {
        if let Some(t) = &m.trial {
            assert!(trials.insert(t.trial_id.clone()), "each trial once");
            assert_ne!(t.state, v1::TrialState::Queued as i32);
        }
        last = m;
    }
    assert_eq!(last.state, v1::OptimizationState::Succeeded as i32);
    assert_eq!(trials.len(), grid_points().len(), "one update per trial");
    assert_eq!(last.best.unwrap().objective_value, grid_best().2);
    let missing = svc
        .client
        .stream_progress(v1::StreamProgressRequest {
            optimization_id: "nope".into(),
        })
        .await
        .expect_err("unknown id");
    assert_eq!(missing.code(), Code::NotFound);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_naming_the_field_and_leave_no_run() {
    let env = Env::embedded().await;
    let mut svc = env.spawn().await;
    let mut bad = grid_request("bad-1");
    bad.space[0].range = Some(v1::parameter_range::Range::Integer(v1::IntegerRange {
        min: 5,
        max: 1,
        step: 1,
    }));
    let e = svc
        .client
        .start_optimization(bad)
        .await
        .expect_err("max < min");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("space[0].integer.max"),
        "{}",
        e.message()
    );
    let mut big = grid_request("bad-2");
    big.max_trials = 3;
    let e = svc
        .client
        .start_optimization(big)
        .await
        .expect_err("grid > max_trials");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("max_trials"), "{}", e.message());
    let mut id = grid_request("no spaces allowed");
    id.max_trials = 100;
    let e = svc.client.start_optimization(id).await.expect_err("bad id");
    assert!(
        e.message().starts_with("optimization_id"),
        "{}",
        e.message()
    );
    let mut wf = grid_request("bad-3");
    wf.walk_forward = Some(v1::WalkForwardSettings {
        folds: 3,
        in_sample_fraction: 0.7,
        anchored: false,
        ..v1::WalkForwardSettings::default()
    });
    let e = svc
        .client
        .start_optimization(wf)
        .await
        .expect_err("walk-forward without a range to split");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("base.range"), "{}", e.message());
    let list = svc
        .client
        .list_optimizations(v1::ListOptimizationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        list.optimizations.is_empty(),
        "no refused request left a run"
    );
    let e = svc
        .client
        .get_optimization(v1::GetOptimizationRequest {
            optimization_id: "bad-1".into(),
            top_n: 0,
        })
        .await
        .expect_err("never started");
    assert_eq!(e.code(), Code::NotFound);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_is_idempotent_by_id_and_refuses_another_request_under_it() {
    let env = Env::embedded().await;
    let worker = Worker::start(env.bus.clone(), true).await;
    let mut svc = env.spawn().await;
    let a = svc
        .client
        .start_optimization(grid_request("same"))
        .await
        .unwrap()
        .into_inner();
    let b = svc
        .client
        .start_optimization(grid_request("same"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        a.optimization.unwrap().created_at,
        b.optimization.unwrap().created_at
    );
    let mut other = grid_request("same");
    other.seed = 8;
    let e = svc
        .client
        .start_optimization(other)
        .await
        .expect_err("different request");
    assert_eq!(e.code(), Code::AlreadyExists);
    // A server-assigned id.
    let c = svc
        .client
        .start_optimization(grid_request(""))
        .await
        .unwrap()
        .into_inner()
        .optimization
        .unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(&c.optimization_id)
            .unwrap()
            .get_version_num(),
        7
    );
    worker
        .hold
        .store(false, std::sync::atomic::Ordering::SeqCst);
    until(&mut svc.client, "same", 30, succeeded).await;
    until(&mut svc.client, &c.optimization_id, 30, succeeded).await;
    // The two studies ran the same grid: equal specs, equal backtest ids.
    let ids = |o: &v1::Optimization| -> BTreeSet<String> {
        o.top_trials.iter().map(|t| t.backtest_id.clone()).collect()
    };
    let s1 = until(&mut svc.client, "same", 1, succeeded).await;
    let s2 = until(&mut svc.client, &c.optimization_id, 1, succeeded).await;
    assert_eq!(ids(&s1), ids(&s2));
    assert_eq!(pairs(&s1), pairs(&s2));
    let list = svc
        .client
        .list_optimizations(v1::ListOptimizationsRequest {
            state: v1::OptimizationState::Succeeded as i32,
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.optimizations.len(), 1);
    assert_eq!(
        list.optimizations[0].optimization_id, c.optimization_id,
        "newest first"
    );
    let next = svc
        .client
        .list_optimizations(v1::ListOptimizationsRequest {
            state: v1::OptimizationState::Succeeded as i32,
            page_size: 1,
            page_token: list.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.optimizations[0].optimization_id, "same");
    assert!(next.next_page_token.is_empty());
    svc.stop().await;
}

/// A batch left 0 is sized to the workers live when the run starts (here
/// three consumers read the jobs stream): a Bayesian study
/// suggests one trial per live worker, a grid keeps at least the default
/// in flight; progress reports the live count. Over Redis, where liveness
/// comes from the bus's presence stamps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_left_0_is_sized_to_the_live_workers() {
    use grodt_bus::{ConsumerName, GroupName, StreamName};
    let env = Env::redis().await;
    let _worker = Worker::start(env.bus.clone(), true).await;
    let jobs = StreamName::parse("grodt.backtest-jobs.v1").unwrap();
    let group = GroupName::parse("backtest-worker").unwrap();
    for name in ["w-1", "w-2", "w-3"] {
        env.bus
            .consume(
                &jobs,
                &group,
                &ConsumerName::parse(name).unwrap(),
                1,
                std::time::Duration::ZERO,
            )
            .await
            .expect("a worker's read");
    }
    let mut svc = env.spawn().await;
    let mut bayes = grid_request("auto-bo");
    (bayes.method, bayes.batch_size, bayes.per_trial_jobs) =
        (v1::SearchMethod::Bayesian as i32, 0, true);
    let started = svc
        .client
        .start_optimization(bayes)
        .await
        .unwrap()
        .into_inner()
        .optimization
        .unwrap();
    let p = started.progress.unwrap();
    assert_eq!(p.trials_queued, 3, "one suggestion per live worker");
    let got = svc
        .client
        .get_optimization(v1::GetOptimizationRequest {
            optimization_id: "auto-bo".into(),
            top_n: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .optimization
        .unwrap();
    assert_eq!(got.progress.unwrap().workers_live, 3);
    let mut grid = grid_request("auto-grid");
    (grid.batch_size, grid.per_trial_jobs) = (0, true);
    let started = svc
        .client
        .start_optimization(grid)
        .await
        .unwrap()
        .into_inner()
        .optimization
        .unwrap();
    let p = started.progress.unwrap();
    assert_eq!(
        p.trials_queued, p.trials_total,
        "the default batch (64) holds the whole grid"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_new_trials_and_drains_those_in_flight() {
    let env = Env::embedded().await;
    let worker = Worker::start(env.bus.clone(), true).await;
    let mut svc = env.spawn().await;
    svc.client
        .start_optimization(grid_request("c-1"))
        .await
        .unwrap();
    let cancelled = svc
        .client
        .cancel_optimization(v1::CancelOptimizationRequest {
            optimization_id: "c-1".into(),
            reason: "wrong dataset".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .optimization
        .unwrap();
    assert_eq!(cancelled.state, v1::OptimizationState::Cancelled as i32);
    assert_eq!(cancelled.reason, "wrong dataset");
    let in_flight = cancelled.progress.unwrap().trials_queued;
    assert_eq!(in_flight, 4 * 3, "batch_size sweep jobs of 3 sets were out");
    worker
        .hold
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let drained = until(&mut svc.client, "c-1", 30, |o| {
        o.progress.as_ref().is_some_and(|p| p.trials_queued == 0)
    })
    .await;
    let p = drained.progress.unwrap();
    assert_eq!(
        p.trials_succeeded + p.trials_failed,
        in_flight,
        "in-flight trials recorded"
    );
    assert_eq!(drained.state, v1::OptimizationState::Cancelled as i32);
    assert_eq!(
        worker.per_trial().len() as u32,
        in_flight,
        "no trial after the cancel"
    );
    let again = svc
        .client
        .cancel_optimization(v1::CancelOptimizationRequest {
            optimization_id: "c-1".into(),
            reason: String::new(),
        })
        .await
        .expect_err("cancelled already");
    assert_eq!(again.code(), Code::FailedPrecondition);
    let unknown = svc
        .client
        .cancel_optimization(v1::CancelOptimizationRequest {
            optimization_id: "nope".into(),
            reason: String::new(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_study_resumes_it_with_no_trial_lost_or_run_twice() {
    let env = Env::redis().await;
    let worker = Worker::start(env.bus.clone(), false).await;
    let mut svc = env.spawn().await;
    let mut req = grid_request("r-1");
    req.batch_size = 2;
    svc.client.start_optimization(req).await.unwrap();
    until(&mut svc.client, "r-1", 30, |o| {
        o.progress
            .as_ref()
            .is_some_and(|p| p.trials_succeeded + p.trials_failed >= 5)
    })
    .await;
    svc.stop().await;
    // The results consumer ends after the server (it finishes the result in
    // hand): let it, so two engines never write at once (one writer, as
    // deployed: Recreate, one replica).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut svc = env.spawn().await;
    let done = until(&mut svc.client, "r-1", 30, succeeded).await;
    assert_eq!(done.progress.unwrap().best_objective, grid_best().2);
    assert_eq!(
        pairs(&done).len() as u32,
        done.progress.unwrap().trials_succeeded
    );
    let per_trial = worker.per_trial();
    assert_eq!(per_trial.len(), grid_points().len(), "no trial lost");
    assert!(
        per_trial.values().all(|&n| n == 1),
        "none run twice: {per_trial:?}"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genetic_and_bayesian_studies_run_distinct_trials_within_their_budget() {
    let env = Env::embedded().await;
    let worker = Worker::start(env.bus.clone(), false).await;
    let mut svc = env.spawn().await;
    let runs = [
        (
            "ga-1",
            v1::SearchMethod::Genetic,
            Some(v1::GeneticSettings {
                population_size: 6,
                mutation_rate: 0.3,
                crossover_rate: 0.9,
                elite: 1,
            }),
        ),
        ("bo-1", v1::SearchMethod::Bayesian, None),
    ];
    for (id, method, genetic) in runs {
        let mut req = grid_request(id);
        req.method = method as i32;
        req.genetic = genetic;
        req.max_trials = 14;
        svc.client.start_optimization(req).await.expect(id);
        let done = until(&mut svc.client, id, 60, |o| {
            o.state != v1::OptimizationState::Running as i32
        })
        .await;
        assert_eq!(
            done.state,
            v1::OptimizationState::Succeeded as i32,
            "{id}: {}",
            done.reason
        );
        let p = done.progress.unwrap();
        let ran = p.trials_succeeded + p.trials_failed;
        assert!((1..=14).contains(&ran), "{id}: {ran} trials");
        // Distinct parameter sets, each inside the grid's lattice and fast < slow.
        let sets = pairs(&done);
        assert_eq!(sets.len() as u32, p.trials_succeeded, "{id}: distinct");
        assert!(
            sets.iter()
                .all(|&(f, s)| f < s && f % 5 == 0 && s % 10 == 0),
            "{id}: {sets:?}"
        );
        assert!(p.best_objective <= grid_best().2);
    }
    let per_trial = worker.per_trial();
    assert!(
        per_trial.values().all(|&n| n <= 2),
        "two studies share trial ids, each once"
    );
    let bad = {
        let mut r = grid_request("ga-bad");
        r.method = v1::SearchMethod::Genetic as i32;
        r.genetic = Some(v1::GeneticSettings {
            population_size: 2,
            ..v1::GeneticSettings::default()
        });
        svc.client
            .start_optimization(r)
            .await
            .expect_err("population 2")
    };
    assert!(
        bad.message().starts_with("genetic.population_size"),
        "{}",
        bad.message()
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitivity_runs_the_neighbours_of_the_best_and_reports_them() {
    let env = Env::embedded().await;
    let worker = Worker::start(env.bus.clone(), false).await;
    let mut svc = env.spawn().await;
    let mut req = grid_request("sens-1");
    req.method = v1::SearchMethod::Random as i32;
    req.max_trials = 5;
    req.sensitivity = true;
    svc.client.start_optimization(req).await.expect("start");
    let done = until(&mut svc.client, "sens-1", 30, succeeded).await;
    let points = &done.sensitivity;
    let params: BTreeSet<&str> = points.iter().map(|p| p.parameter.as_str()).collect();
    assert_eq!(params, BTreeSet::from(["fast", "slow"]));
    let centre: Vec<_> = points.iter().filter(|p| p.offset == 0).collect();
    assert_eq!(centre.len(), 2, "the best itself, once per parameter");
    assert_eq!(centre[0].objective_value, centre[1].objective_value);
    for p in points.iter().filter(|p| p.offset != 0) {
        assert!(p.offset.abs() <= 2);
        let (f, s) = if p.parameter == "fast" {
            (
                p.value.parse::<i64>().unwrap(),
                centre
                    .iter()
                    .find(|c| c.parameter == "slow")
                    .unwrap()
                    .value
                    .parse()
                    .unwrap(),
            )
        } else {
            (
                centre
                    .iter()
                    .find(|c| c.parameter == "fast")
                    .unwrap()
                    .value
                    .parse()
                    .unwrap(),
                p.value.parse::<i64>().unwrap(),
            )
        };
        // The stand-in's objective at that point (failed points: too few trades).
        if helpers::trades_of(f, s) >= 1 {
            assert_eq!(p.objective_value, helpers::sharpe_of(f, s), "{p:?}");
        } else {
            assert!(p.objective_value.is_nan());
        }
    }
    let p = done.progress.unwrap();
    assert!(
        p.trials_succeeded + p.trials_failed > 5,
        "neighbours ran beyond the 5 searched"
    );
    assert!(worker.per_trial().values().all(|&n| n == 1));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monte_carlo_of_the_best_trial_runs_after_the_search() {
    let env = Env::embedded().await;
    let worker = Worker::start(env.bus.clone(), false).await;
    let mut svc = env.spawn().await;
    let mut req = grid_request("mc-1");
    req.monte_carlo = Some(v1::MonteCarloSettings {
        simulations: 500,
        method: v1::MonteCarloMethod::TradeShuffle as i32,
        ..v1::MonteCarloSettings::default()
    });
    svc.client.start_optimization(req).await.expect("start");
    let done = until(&mut svc.client, "mc-1", 30, succeeded).await;
    let mc = done
        .monte_carlo
        .expect("the analysis is there once the run succeeded");
    assert!(mc.error.is_empty(), "{}", mc.error);
    assert_eq!(mc.simulations, 500);
    // Shuffling keeps the sum: every percentile is 100000 + 300.
    for d in [
        &mc.final_equity_p5,
        &mc.final_equity_p50,
        &mc.final_equity_p95,
    ] {
        assert_eq!(d.as_ref().unwrap().value, "100300.00");
    }
    assert!(
        mc.max_drawdown_p5 <= mc.max_drawdown_p50 && mc.max_drawdown_p50 <= mc.max_drawdown_p95
    );
    // The worst order loses 750 from the start.
    assert!(mc.max_drawdown_p5 >= -0.0075 - 1e-12, "{mc:?}");
    assert_eq!(mc.probability_of_loss, 0.0);
    // The detailed run is one more job, under its own backtest id.
    assert_eq!(worker.per_trial().get("monte-carlo"), Some(&1));
    let mut bad = grid_request("mc-2");
    bad.monte_carlo = Some(v1::MonteCarloSettings {
        simulations: 10,
        method: 0,
        ..v1::MonteCarloSettings::default()
    });
    let e = svc
        .client
        .start_optimization(bad)
        .await
        .expect_err("10 simulations");
    assert!(
        e.message().starts_with("monte_carlo.simulations"),
        "{}",
        e.message()
    );
    svc.stop().await;
}

fn ns_of(t: &Option<prost_types::Timestamp>) -> i64 {
    let t = t.as_ref().unwrap();
    t.seconds * 1_000_000_000 + i64::from(t.nanos)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walk_forward_searches_each_fold_in_sample_and_trades_its_best_out_of_sample() {
    let env = Env::embedded().await;
    let worker = Worker::start(env.bus.clone(), false).await;
    let mut svc = env.spawn().await;
    let started = svc
        .client
        .start_optimization(wf_request("wf-1"))
        .await
        .expect("StartOptimization")
        .into_inner()
        .optimization
        .unwrap();
    assert_eq!(started.walk_forward.unwrap().folds.len(), 3);
    let done = until(&mut svc.client, "wf-1", 30, succeeded).await;
    let wf = done.walk_forward.clone().expect("walk_forward");
    let (bf, bs, best) = grid_best();
    let windows = [(0, 300, 400), (100, 400, 500), (200, 500, 600)];
    for (f, (a, b, c)) in wf.folds.iter().zip(windows) {
        let is = f.in_sample.as_ref().unwrap();
        let oos = f.out_of_sample.as_ref().unwrap();
        assert_eq!(
            (
                ns_of(&is.start),
                ns_of(&is.end),
                ns_of(&oos.start),
                ns_of(&oos.end)
            ),
            (
                Y2000 + a * DAY,
                Y2000 + b * DAY,
                Y2000 + b * DAY,
                Y2000 + c * DAY
            ),
            "fold {}",
            f.fold
        );
        assert_eq!(f.search_optimization_id, format!("wf-1-f{}", f.fold));
        assert_eq!(
            (f.params["fast"].as_str(), f.params["slow"].as_str()),
            (bf.to_string().as_str(), bs.to_string().as_str()),
            "the in-sample best"
        );
        assert_eq!(f.in_sample_objective, best);
        // The stand-in's metrics depend on the parameters only.
        assert_eq!(f.out_of_sample_objective, best);
        assert_eq!(f.decay, 0.0);
        assert!(f.error.is_empty());
        assert!(f.out_of_sample_metrics.is_some());
    }
    assert_eq!(wf.efficiency, 1.0);
    // Each fold gains 0.01 * fast = 10%: 1.1^3 chained.
    let m = wf.out_of_sample_metrics.as_ref().unwrap();
    assert!((m.total_return - 0.331).abs() < 1e-12, "{}", m.total_return);
    assert_eq!(m.final_equity.as_ref().unwrap().value, "133100.00");
    assert_eq!(
        wf.stitched_equity.len(),
        3 + 2 + 2,
        "folds chained at their joins"
    );
    let fast = wf.stability.iter().find(|s| s.parameter == "fast").unwrap();
    assert_eq!(
        (
            fast.modal_value.as_str(),
            fast.modal_share,
            fast.coefficient_of_variation
        ),
        (bf.to_string().as_str(), 1.0, 0.0)
    );

    // No bar of a test window reached a search: every trial of fold k's
    // study ran on its in-sample window, and only the chosen parameters
    // ran on the out-of-sample window.
    let runs = worker.runs();
    for (k, (a, b, c)) in windows.iter().enumerate() {
        let search = format!("wf-1-f{k}");
        let trials: Vec<_> = runs.iter().filter(|r| r.0 == search).collect();
        assert_eq!(
            trials.len(),
            grid_points().len(),
            "fold {k} searched the grid"
        );
        assert!(
            trials
                .iter()
                .all(|r| r.2 == Some((Y2000 + a * DAY, Y2000 + b * DAY))),
            "fold {k}: in-sample range only"
        );
        let oos: Vec<_> = runs
            .iter()
            .filter(|r| r.0 == "wf-1" && r.1 == format!("wf-oos-{k}"))
            .collect();
        assert_eq!(oos.len(), 1, "one out-of-sample run of fold {k}");
        assert_eq!(oos[0].2, Some((Y2000 + b * DAY, Y2000 + c * DAY)));
        assert_eq!(oos[0].3["fast"], bf.to_string());
    }
    assert_eq!(runs.len(), 3 * grid_points().len() + 3);
    // Only the test runs are warmed up, by the chosen slow window plus one
    // (the bars before the window: history at test time, not a look ahead).
    let warm = worker.warmup();
    let slow: u32 = runs
        .iter()
        .find(|r| r.1 == "wf-oos-0")
        .map(|r| r.3["slow"].parse().unwrap())
        .unwrap();
    assert_eq!(
        warm,
        (0..3)
            .map(|k| (format!("wf-oos-{k}"), slow + 1))
            .collect::<Vec<_>>()
    );

    // Each fold's study is a study of its own; the list holds all four.
    let fold = until(&mut svc.client, "wf-1-f2", 5, succeeded).await;
    assert_eq!(fold.progress.unwrap().best_objective, best);
    let p = done.progress.unwrap();
    assert_eq!(p.trials_total, 3 * grid_points().len() as u32 + 3);
    assert_eq!(p.trials_queued, 0);
    assert_eq!(p.best_objective, best, "the mean out-of-sample objective");
    let list = svc
        .client
        .list_optimizations(v1::ListOptimizationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: BTreeSet<String> = list
        .optimizations
        .iter()
        .map(|o| o.optimization_id.clone())
        .collect();
    assert!(
        ["wf-1", "wf-1-f0", "wf-1-f1", "wf-1-f2"]
            .iter()
            .all(|id| ids.contains(*id)),
        "{ids:?}"
    );
    let again = svc
        .client
        .cancel_optimization(v1::CancelOptimizationRequest {
            optimization_id: "wf-1".into(),
            reason: String::new(),
        })
        .await
        .expect_err("finished");
    assert_eq!(again.code(), Code::FailedPrecondition);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_walk_forward_requests_name_their_field() {
    let env = Env::embedded().await;
    let mut svc = env.spawn().await;
    type Change = Box<dyn Fn(&mut v1::StartOptimizationRequest)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "base.range",
            Box::new(|r| r.base.as_mut().unwrap().range = None),
        ),
        (
            "walk_forward.folds",
            Box::new(|r| r.walk_forward.as_mut().unwrap().folds = 1),
        ),
        (
            "walk_forward.in_sample_fraction",
            Box::new(|r| r.walk_forward.as_mut().unwrap().in_sample_fraction = 1.0),
        ),
        (
            "monte_carlo",
            Box::new(|r| {
                r.monte_carlo = Some(v1::MonteCarloSettings {
                    simulations: 500,
                    method: 0,
                    ..v1::MonteCarloSettings::default()
                });
            }),
        ),
        ("sensitivity", Box::new(|r| r.sensitivity = true)),
        ("space", Box::new(|r| r.space.clear())),
        (
            "walk_forward.validation_fraction",
            Box::new(|r| r.walk_forward.as_mut().unwrap().validation_fraction = 0.25),
        ),
        (
            "walk_forward.validation_candidates",
            Box::new(|r| r.walk_forward.as_mut().unwrap().validation_candidates = 51),
        ),
        (
            // Explicit lengths with a fraction set.
            "walk_forward.in_sample_fraction",
            Box::new(|r| r.walk_forward.as_mut().unwrap().test_seconds = 86_400),
        ),
        (
            "walk_forward.step_seconds",
            Box::new(|r| {
                let w = r.walk_forward.as_mut().unwrap();
                (w.in_sample_fraction, w.folds) = (0.0, 0);
                (w.train_seconds, w.test_seconds, w.step_seconds) =
                    (86_400 * 100, 86_400 * 50, 86_400);
            }),
        ),
        (
            "base.range",
            Box::new(|r| {
                let w = r.walk_forward.as_mut().unwrap();
                (w.in_sample_fraction, w.folds) = (0.0, 0);
                (w.train_seconds, w.test_seconds) = (86_400 * 500, 86_400 * 200);
            }),
        ),
    ];
    for (field, change) in cases {
        let mut r = wf_request("wf-bad");
        change(&mut r);
        let e = svc.client.start_optimization(r).await.expect_err(field);
        assert_eq!(e.code(), Code::InvalidArgument, "{field}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    let e = svc
        .client
        .get_optimization(v1::GetOptimizationRequest {
            optimization_id: "wf-bad".into(),
            top_n: 0,
        })
        .await
        .expect_err("nothing journaled");
    assert_eq!(e.code(), Code::NotFound);
    svc.stop().await;
}

/// Explicit windows with a validation window: each fold's three best
/// in-sample trials run on its validation window (warmed up, after its
/// training, before its test) and the one that does best there is traded;
/// the stand-in reverses the in-sample order on validation windows, so the
/// weakest candidate wins every fold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_window_trades_the_candidate_that_did_best_there() {
    let env = Env::embedded().await;
    let worker = Worker::start(env.bus.clone(), false).await;
    let mut svc = env.spawn().await;
    let mut req = wf_request("wf-v");
    req.walk_forward = Some(v1::WalkForwardSettings {
        train_seconds: 200 * 86_400,
        validation_seconds: 50 * 86_400,
        test_seconds: 100 * 86_400,
        validation_candidates: 3,
        ..v1::WalkForwardSettings::default()
    });
    svc.client
        .start_optimization(req)
        .await
        .expect("StartOptimization");
    let done = until(&mut svc.client, "wf-v", 30, succeeded).await;
    let wf = done.walk_forward.clone().expect("walk_forward");
    // 600 days hold tests at 250, 350 and 450 days (train 200, validation 50).
    assert_eq!(wf.folds.len(), 3);
    let runs = worker.runs();
    for (f, t) in wf.folds.iter().zip([250, 350, 450]) {
        let k = f.fold;
        let v = f.validation.as_ref().expect("a validation window");
        assert_eq!(
            (
                ns_of(&f.in_sample.as_ref().unwrap().start),
                ns_of(&f.in_sample.as_ref().unwrap().end)
            ),
            (Y2000 + (t - 250) * DAY, Y2000 + (t - 50) * DAY),
            "fold {k} trains before its validation window"
        );
        assert_eq!(
            (ns_of(&v.start), ns_of(&v.end)),
            (Y2000 + (t - 50) * DAY, Y2000 + t * DAY),
            "fold {k}"
        );
        let study = svc
            .client
            .get_optimization(v1::GetOptimizationRequest {
                optimization_id: format!("wf-v-f{k}"),
                top_n: 3,
            })
            .await
            .unwrap()
            .into_inner()
            .optimization
            .unwrap();
        let top = &study.top_trials;
        assert_eq!(top.len(), 3);
        let vals: Vec<_> = runs
            .iter()
            .filter(|r| r.0 == "wf-v" && r.1.starts_with(&format!("wf-val-{k}-")))
            .collect();
        assert_eq!(vals.len(), 3, "fold {k}: one validation run per candidate");
        for (r, trial) in top.iter().enumerate() {
            let run = vals
                .iter()
                .find(|x| x.1 == format!("wf-val-{k}-{r}"))
                .expect("candidate's run");
            assert_eq!(run.2, Some((Y2000 + (t - 50) * DAY, Y2000 + t * DAY)));
            let want: BTreeMap<String, String> = trial.params.clone().into_iter().collect();
            assert_eq!(run.3, want, "fold {k} candidate {r}");
        }
        // Best on validation = weakest in sample (ties: the better rank),
        // never the in-sample best here.
        let weakest = top
            .iter()
            .map(|t| t.objective_value)
            .fold(f64::INFINITY, f64::min);
        let rank = top
            .iter()
            .position(|t| t.objective_value == weakest)
            .unwrap();
        assert!(rank > 0, "fold {k}: validation changes the choice");
        assert_eq!(
            f.chosen_rank as usize, rank,
            "fold {k}: the best on validation"
        );
        let third: BTreeMap<String, String> = top[rank].params.clone().into_iter().collect();
        let traded: BTreeMap<String, String> = f.params.clone().into_iter().collect();
        assert_eq!(traded, third);
        assert_eq!(f.in_sample_objective, weakest);
        assert_eq!(f.validation_objective, -weakest);
        let oos = runs
            .iter()
            .find(|r| r.1 == format!("wf-oos-{k}"))
            .expect("the test run");
        assert_eq!(oos.2, Some((Y2000 + t * DAY, Y2000 + (t + 100) * DAY)));
        assert_eq!(oos.3, third);
    }
    // Validation runs are warmed up as test runs are.
    let warm = worker.warmup();
    assert_eq!(warm.len(), 3 * 3 + 3);
    assert!(warm.iter().all(|(_, bars)| *bars > 1));
    let p = done.progress.unwrap();
    assert_eq!(p.trials_total, 3 * grid_points().len() as u32 + 3 * 3 + 3);
    assert_eq!(p.trials_succeeded + p.trials_failed, p.trials_total);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_walk_forward_runs_every_trial_and_fold_once() {
    let env = Env::redis().await;
    let worker = Worker::start(env.bus.clone(), false).await;
    let mut svc = env.spawn().await;
    let mut req = wf_request("wf-r");
    req.batch_size = 1;
    req.sweep_slice = 2;
    svc.client.start_optimization(req.clone()).await.unwrap();
    // The same with a validation window (5 candidates per fold).
    req.optimization_id = "wf-rv".into();
    let w = req.walk_forward.as_mut().unwrap();
    (w.in_sample_fraction, w.validation_fraction) = (0.65, 0.1);
    svc.client.start_optimization(req).await.unwrap();
    until(&mut svc.client, "wf-r", 30, |o| {
        o.progress
            .as_ref()
            .is_some_and(|p| p.trials_succeeded + p.trials_failed >= 20)
    })
    .await;
    svc.stop().await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut svc = env.spawn().await;
    let done = until(&mut svc.client, "wf-r", 60, succeeded).await;
    let wf = done.walk_forward.unwrap();
    assert!(
        wf.folds
            .iter()
            .all(|f| f.error.is_empty() && !f.params.is_empty())
    );
    assert_eq!(wf.efficiency, 1.0);
    let validated = until(&mut svc.client, "wf-rv", 60, succeeded).await;
    assert!(
        validated
            .walk_forward
            .unwrap()
            .folds
            .iter()
            .all(|f| f.error.is_empty() && f.validation.is_some() && !f.params.is_empty())
    );
    let mut per: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for r in worker.runs() {
        *per.entry((r.0, r.1)).or_default() += 1;
    }
    assert_eq!(
        per.len(),
        2 * (3 * grid_points().len() + 3) + 3 * 5,
        "no trial, validation run or fold lost"
    );
    assert!(per.values().all(|&n| n == 1), "none run twice: {per:?}");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_noise_reruns_the_best_trial_on_noisy_copies_of_the_data() {
    let env = Env::embedded().await;
    let worker = Worker::start(env.bus.clone(), false).await;
    let mut svc = env.spawn().await;
    let mut req = grid_request("pn-1");
    req.monte_carlo = Some(v1::MonteCarloSettings {
        simulations: 20,
        method: v1::MonteCarloMethod::PriceNoise as i32,
        noise_sigma: 0.005,
    });
    svc.client.start_optimization(req).await.expect("start");
    let done = until(&mut svc.client, "pn-1", 30, succeeded).await;
    let mc = done.monte_carlo.expect("the analysis");
    assert!(mc.error.is_empty(), "{}", mc.error);
    assert_eq!(mc.method, v1::MonteCarloMethod::PriceNoise as i32);
    assert_eq!(mc.simulations, 20);
    let (bf, bs, best) = grid_best();
    assert_eq!(mc.objective_observed, best);
    assert_eq!(mc.objective_scored, 20);
    // The stand-in takes 0.01 * (seed % 10) off the Sharpe of a noisy run;
    // seeds 8..=27 hold every remainder twice: the median (10th of 20,
    // nearest rank) is best - 0.05, the 5th percentile best - 0.09.
    assert!((mc.objective_degradation - 0.05).abs() < 1e-9, "{mc:?}");
    assert!((mc.objective_p5 - (best - 0.09)).abs() < 1e-9);
    assert!((mc.objective_p95 - best).abs() < 1e-9);
    assert_eq!(mc.objective_observed_percentile, 1.0);
    assert!(mc.probability_of_loss == 0.0);
    // One job per noisy run, each once, the best's parameters with its seed.
    let runs: Vec<_> = worker
        .runs()
        .into_iter()
        .filter(|r| r.0 == "pn-1" && r.1.starts_with("noise-"))
        .collect();
    assert_eq!(runs.len(), 20);
    let ids: BTreeSet<&String> = runs.iter().map(|r| &r.1).collect();
    assert_eq!(ids.len(), 20, "each noisy run once");
    assert!(
        runs.iter()
            .all(|r| r.3["fast"] == bf.to_string() && r.3["slow"] == bs.to_string())
    );
    let noise = worker.noise();
    assert_eq!(noise.len(), 20);
    assert!(noise.iter().all(|(sigma, _)| *sigma == 0.005));
    let seeds: BTreeSet<u64> = noise.iter().map(|(_, seed)| *seed).collect();
    assert_eq!(seeds, (8..=27).collect());
    for (field, settings) in [
        (
            "monte_carlo.noise_sigma",
            v1::MonteCarloSettings {
                simulations: 20,
                method: v1::MonteCarloMethod::PriceNoise as i32,
                noise_sigma: 0.7,
            },
        ),
        (
            "monte_carlo.simulations",
            v1::MonteCarloSettings {
                simulations: 1,
                method: v1::MonteCarloMethod::PriceNoise as i32,
                noise_sigma: 0.0,
            },
        ),
    ] {
        let mut bad = grid_request("pn-bad");
        bad.monte_carlo = Some(settings);
        let e = svc.client.start_optimization(bad).await.expect_err(field);
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    svc.stop().await;
}
