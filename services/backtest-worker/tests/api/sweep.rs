//! Sweep jobs: a slice of parameter sets evaluated in one pass by
//! grodt-sweep's kernel answers every set as its own trial job would (final
//! equity to the cent, counts, and the ranking metrics), a set the registry
//! refuses fails alone, a spec no kernel models runs set by set on the event
//! engine with every metric, and a redelivered sweep job is answered from
//! the store without running again.

use grodt_backtest_worker::job_consumer;
use grodt_backtest_worker::worker::{Worker, run_id};
use grodt_proto::v1;
use grodt_store::RunStatus;

use crate::helpers::{Env, sma_spec};
use crate::jobs::{results, settings};

fn set(trial: &str, fast: u32, slow: u32) -> v1::SweepSet {
    v1::SweepSet {
        trial_id: trial.into(),
        params: [("fast", fast), ("slow", slow)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_string()))
            .collect(),
    }
}

fn sweep_job(id: &str, base: v1::BacktestSpec, sets: Vec<v1::SweepSet>) -> v1::BacktestJob {
    v1::BacktestJob {
        backtest_id: id.into(),
        spec: Some(base),
        optimization_id: "opt-s".into(),
        sweep: Some(v1::SweepSlice { sets }),
        ..v1::BacktestJob::default()
    }
}

fn trial_job(id: &str, base: &v1::BacktestSpec, s: &v1::SweepSet) -> v1::BacktestJob {
    let mut spec = base.clone();
    spec.params.extend(s.params.clone());
    v1::BacktestJob {
        backtest_id: id.into(),
        spec: Some(spec),
        optimization_id: "opt-t".into(),
        trial_id: s.trial_id.clone(),
        ..v1::BacktestJob::default()
    }
}

/// Floats equal to 1e-9 relative, or both NaN.
fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The sweep set's metrics agree with the trial job's on everything a
/// kernel computes.
fn assert_same(what: &str, sweep: &v1::Metrics, trial: &v1::Metrics) {
    assert_eq!(
        sweep.final_equity, trial.final_equity,
        "{what}: final equity"
    );
    assert_eq!(sweep.net_profit, trial.net_profit, "{what}: net profit");
    assert_eq!(
        (
            sweep.trade_count,
            sweep.closed_trade_count,
            sweep.fill_count,
            sweep.bar_count
        ),
        (
            trial.trade_count,
            trial.closed_trade_count,
            trial.fill_count,
            trial.bar_count
        ),
        "{what}: counts"
    );
    for (name, a, b) in [
        ("total_return", sweep.total_return, trial.total_return),
        ("cagr", sweep.cagr, trial.cagr),
        ("sharpe", sweep.sharpe, trial.sharpe),
        ("sortino", sweep.sortino, trial.sortino),
        ("max_drawdown", sweep.max_drawdown, trial.max_drawdown),
        ("calmar", sweep.calmar, trial.calmar),
        ("win_rate", sweep.win_rate, trial.win_rate),
        ("profit_factor", sweep.profit_factor, trial.profit_factor),
    ] {
        assert!(close(a, b), "{what}: {name} {a} vs {b}");
    }
}

async fn drain(worker: &Worker, n: usize) {
    let mut consumer = job_consumer(worker, "worker-sweep", &settings(60_000)).unwrap();
    consumer.ensure_group().await.unwrap();
    let mut acked = 0;
    while acked < n {
        let report = consumer.step().await.unwrap();
        assert_eq!(report.failed, 0);
        acked += report.acked;
    }
}

#[tokio::test]
async fn a_sweep_job_answers_every_set_as_its_own_trial_job_would() {
    let env = Env::new().await;
    let worker = env.worker("worker-sweep");
    let mut base = sma_spec();
    base.params.clear();
    let sets = vec![
        set("0", 10, 30),
        set("1", 5, 20),
        set("2", 20, 50),
        set("3", 30, 10), // fast >= slow: the registry refuses it
        set("4", 15, 100),
    ];
    worker
        .publish_job(&Worker::job_envelope_with(sweep_job(
            "s-slice",
            base.clone(),
            sets.clone(),
        )))
        .await
        .unwrap();
    for s in &sets {
        worker
            .publish_job(&Worker::job_envelope_with(trial_job(
                &format!("t-{}", s.trial_id),
                &base,
                s,
            )))
            .await
            .unwrap();
    }
    drain(&worker, 1 + sets.len()).await;

    let published = results(&env).await;
    let slice = &published["s-slice"];
    assert_eq!(slice.len(), 1);
    let slice = &slice[0];
    assert_eq!(
        slice.status,
        v1::BacktestStatus::Succeeded as i32,
        "{}",
        slice.error
    );
    assert!(slice.metrics.is_none(), "a slice has per-set metrics only");
    assert!(slice.engine_version.starts_with("grodt-sweep"));
    assert_eq!(slice.sweep_results.len(), sets.len());
    for (s, r) in sets.iter().zip(&slice.sweep_results) {
        assert_eq!(r.params, s.params, "results in the job's order");
        let trial = &published[&format!("t-{}", s.trial_id)][0];
        if s.trial_id == "3" {
            assert_eq!(r.status, v1::BacktestStatus::Failed as i32);
            assert!(r.error.contains("fast"), "names the parameter: {}", r.error);
            assert_eq!(trial.status, v1::BacktestStatus::Failed as i32);
            continue;
        }
        assert_eq!(
            r.status,
            v1::BacktestStatus::Succeeded as i32,
            "{}",
            r.error
        );
        assert_eq!(r.path, "sweep");
        assert_same(
            &format!("set {}", s.trial_id),
            r.metrics.as_ref().unwrap(),
            trial.metrics.as_ref().unwrap(),
        );
    }
    // The golden SPY run (fast 10, slow 30) is the first set.
    let first = slice.sweep_results[0].metrics.as_ref().unwrap();
    assert_eq!(first.final_equity.as_ref().unwrap().value, "182091.18");

    // Stored under the slice's id like any run.
    let run = env.db.store().runs().get(run_id("s-slice")).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_spec_no_kernel_models_runs_set_by_set_on_the_engine() {
    let env = Env::new().await;
    let worker = env.worker("worker-sweep");
    let mut base = sma_spec();
    base.params.clear();
    // A volume participation cap: the kernel models fills in full only.
    base.costs = Some(v1::CostModel {
        fill: Some(v1::FillModel {
            max_volume_participation: Some(v1::Decimal {
                value: "0.5".into(),
            }),
            ..v1::FillModel::default()
        }),
        ..v1::CostModel::default()
    });
    let sets = vec![set("0", 10, 30), set("1", 5, 20)];
    worker
        .publish_job(&Worker::job_envelope_with(sweep_job(
            "s-engine",
            base.clone(),
            sets.clone(),
        )))
        .await
        .unwrap();
    for s in &sets {
        worker
            .publish_job(&Worker::job_envelope_with(trial_job(
                &format!("t-{}", s.trial_id),
                &base,
                s,
            )))
            .await
            .unwrap();
    }
    drain(&worker, 1 + sets.len()).await;
    let published = results(&env).await;
    let slice = &published["s-engine"][0];
    assert_eq!(
        slice.status,
        v1::BacktestStatus::Succeeded as i32,
        "{}",
        slice.error
    );
    for (s, r) in sets.iter().zip(&slice.sweep_results) {
        assert_eq!(r.path, "engine");
        let trial = &published[&format!("t-{}", s.trial_id)][0];
        // Every metric, not only the ranking ones.
        assert_eq!(
            r.metrics.as_ref(),
            trial.metrics.as_ref(),
            "set {}",
            s.trial_id
        );
    }
}

#[tokio::test]
async fn a_redelivered_sweep_job_is_answered_from_the_store() {
    let env = Env::new().await;
    let worker = env.worker("worker-sweep");
    let mut base = sma_spec();
    base.params.clear();
    let job = sweep_job("s-again", base, vec![set("7", 10, 30), set("8", 5, 20)]);
    let envelope = Worker::job_envelope_with(job.clone());
    worker.publish_job(&envelope).await.unwrap();
    drain(&worker, 1).await;
    let run = env.db.store().runs().get(run_id("s-again")).await.unwrap();
    // The same event again (a redelivery after a crash between commit and
    // ack), and the same slice under a new event (another study).
    worker.publish_job(&envelope).await.unwrap();
    worker
        .publish_job(&Worker::job_envelope_with(job))
        .await
        .unwrap();
    drain(&worker, 2).await;
    let after = env.db.store().runs().get(run_id("s-again")).await.unwrap();
    assert_eq!(after.updated_at, run.updated_at, "ran once");
    let published = results(&env).await;
    let again = &published["s-again"];
    assert_eq!(
        again.len(),
        3,
        "the stored result, published for each delivery"
    );
    assert!(
        again.iter().all(|r| r == &again[0]),
        "the same result each time"
    );
    assert_eq!(again[0].sweep_results.len(), 2);
}
