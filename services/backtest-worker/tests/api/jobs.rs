//! Several replicas in one consumer group on one Redis stream: jobs split
//! between them, none lost, none run twice; a job a dropped consumer left
//! unacked is claimed by another; a redelivered job does not run again, and
//! its stored result is published again (results are at least once).

use std::collections::BTreeMap;
use std::time::Duration;

use grodt_backtest_worker::worker::{GROUP, JOBS_STREAM, RESULTS_STREAM, Worker};
use grodt_backtest_worker::{WorkerSettings, job_consumer};
use grodt_bus::{ConsumerName, GroupName, StartFrom, StreamName};
use grodt_proto::v1;
use grodt_store::RunStatus;
use prost::Message;

use crate::helpers::{Env, assert_golden, sma_spec};

pub async fn submit(worker: &Worker, backtest_id: &str, slow: u32) -> grodt_bus::Envelope {
    let mut spec = sma_spec();
    spec.params.insert("slow".into(), slow.to_string());
    let envelope = Worker::job_envelope(backtest_id, spec.clone());
    worker
        .create_run(
            grodt_backtest_worker::worker::run_id(backtest_id),
            backtest_id,
            &spec,
            Some(envelope.event_id),
        )
        .await
        .unwrap();
    worker.publish_job(&envelope).await.unwrap();
    envelope
}

/// Every result event on the results stream, by backtest id.
pub async fn results(env: &Env) -> BTreeMap<String, Vec<v1::BacktestResult>> {
    let stream = StreamName::parse(RESULTS_STREAM).unwrap();
    let group = GroupName::parse("test-reader").unwrap();
    env.bus
        .ensure_group(&stream, &group, StartFrom::Beginning)
        .await
        .unwrap();
    let me = ConsumerName::parse("reader").unwrap();
    let mut out: BTreeMap<String, Vec<v1::BacktestResult>> = BTreeMap::new();
    loop {
        let batch = env
            .bus
            .consume(&stream, &group, &me, 100, Duration::from_millis(10))
            .await
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        for d in batch {
            let e = v1::BacktestResultEvent::decode(d.envelope.payload.as_ref()).unwrap();
            let r = e.result.unwrap();
            out.entry(r.backtest_id.clone()).or_default().push(r);
        }
    }
}

pub fn settings(claim_idle_ms: u64) -> WorkerSettings {
    WorkerSettings {
        claim_idle_ms,
        ..WorkerSettings::default()
    }
}

#[tokio::test]
async fn two_replicas_split_the_jobs_with_none_lost_or_run_twice() {
    let env = Env::new().await;
    let (a, b) = (env.worker("worker-a"), env.worker("worker-b"));
    let mut ca = job_consumer(&a, "worker-a", &settings(60_000)).unwrap();
    let mut cb = job_consumer(&b, "worker-b", &settings(60_000)).unwrap();
    ca.ensure_group().await.unwrap();
    let ids: Vec<String> = (0..6).map(|i| format!("job-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        submit(&a, id, 20 + u32::try_from(i).unwrap()).await;
    }
    // Alternate the replicas, one job each per step (batch 1), until the stream is drained.
    let mut handled = 0;
    while handled < ids.len() {
        let ra = ca.step().await.unwrap();
        let rb = cb.step().await.unwrap();
        assert_eq!(ra.failed + rb.failed, 0);
        handled += ra.acked + rb.acked;
        assert!(
            ra.read + rb.read > 0 || handled == ids.len(),
            "a job went missing"
        );
    }
    let results = results(&env).await;
    assert_eq!(results.len(), ids.len(), "every job produced a result");
    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        let rs = &results[id];
        assert_eq!(rs.len(), 1, "{id} ran once");
        assert_eq!(
            rs[0].status,
            v1::BacktestStatus::Succeeded as i32,
            "{}",
            rs[0].error
        );
        *per_worker.entry(rs[0].worker.clone()).or_default() += 1;
        let run = env
            .db
            .store()
            .runs()
            .get(grodt_backtest_worker::worker::run_id(id))
            .await
            .unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
    }
    assert_eq!(per_worker.get("worker-a"), Some(&3), "{per_worker:?}");
    assert_eq!(per_worker.get("worker-b"), Some(&3), "{per_worker:?}");
}

#[tokio::test]
async fn a_job_left_unacked_by_a_dropped_consumer_is_claimed_and_redelivery_does_not_rerun() {
    let env = Env::new().await;
    let live = env.worker("worker-live");
    let mut consumer = job_consumer(&live, "worker-live", &settings(200)).unwrap();
    consumer.ensure_group().await.unwrap();
    let envelope = submit(&live, "orphan", 30).await;

    // A replica reads the job and dies before acking it.
    let stream = StreamName::parse(JOBS_STREAM).unwrap();
    let group = GroupName::parse(GROUP).unwrap();
    let taken = env
        .bus
        .consume(
            &stream,
            &group,
            &ConsumerName::parse("worker-dead").unwrap(),
            1,
            Duration::from_millis(100),
        )
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    drop(taken);

    // The live replica finds nothing new, then claims the stale entry once it is idle long enough.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut claimed = 0;
    while claimed == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the orphaned job was never claimed"
        );
        let report = consumer.step().await.unwrap();
        assert_eq!(report.read, 0, "nothing new was published");
        claimed += report.claimed;
        if claimed > 0 {
            assert_eq!(report.acked, 1, "claimed, run and acked");
        }
    }
    let run = env
        .db
        .store()
        .runs()
        .get(grodt_backtest_worker::worker::run_id("orphan"))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);

    // The same event delivered again (a producer retry, or a crash between
    // the commit and the result's publish): acked without running, and the
    // stored result is published again, so no result is ever lost.
    live.publish_job(&envelope).await.unwrap();
    let report = consumer.step().await.unwrap();
    assert_eq!((report.read, report.acked), (1, 1));
    let after = env
        .db
        .store()
        .runs()
        .get(grodt_backtest_worker::worker::run_id("orphan"))
        .await
        .unwrap();
    assert_eq!(after.updated_at, run.updated_at, "the job ran once");
    let results = results(&env).await;
    let orphan = &results["orphan"];
    assert_eq!(orphan.len(), 2, "the stored result, published again");
    assert_eq!(orphan[0].worker, "worker-live");
    assert_eq!(
        orphan[0], orphan[1],
        "the same result (same start and finish times): not a second run"
    );
    assert!(orphan[0].finished_at.is_some());
}

/// `BacktestJob.detail` is honoured: an optimization trial (no detail) stores
/// and publishes metrics, costs and the trade statistics only, as protobuf
/// bytes of a few hundred bytes; a job asking for every part stores them
/// all and GetResult returns them.
#[tokio::test]
async fn job_detail_decides_what_is_stored_and_trials_stay_small() {
    let env = Env::new().await;
    let worker = env.worker("worker-detail");
    let mut consumer = job_consumer(&worker, "worker-detail", &settings(60_000)).unwrap();
    consumer.ensure_group().await.unwrap();
    let trial = Worker::job_envelope_with(v1::BacktestJob {
        backtest_id: "trial-1".into(),
        spec: Some(sma_spec()),
        detail: None,
        optimization_id: "opt-1".into(),
        trial_id: "t-1".into(),
        submitted_at: None,
        sweep: None,
    });
    worker.publish_job(&trial).await.unwrap();
    // The full job goes through SubmitBacktest's envelope (every part kept).
    submit(&worker, "full-1", 30).await;
    let mut acked = 0;
    while acked < 2 {
        let report = consumer.step().await.unwrap();
        assert_eq!(report.failed, 0);
        acked += report.acked;
    }
    let runs = env.db.store().runs();
    let t = runs
        .get(grodt_backtest_worker::worker::run_id("trial-1"))
        .await
        .unwrap();
    let f = runs
        .get(grodt_backtest_worker::worker::run_id("full-1"))
        .await
        .unwrap();
    assert_eq!(
        (t.status, f.status),
        (RunStatus::Succeeded, RunStatus::Succeeded)
    );
    // Bytes columns, no hex text inside the JSON.
    for run in [&t, &f] {
        let text = serde_json::to_string(run.result.as_ref().unwrap()).unwrap();
        assert!(text.len() < 300, "small readable summary: {text}");
        assert!(run.request_pb.is_some());
        assert!(!run.request.to_string().contains("spec_pb"));
    }
    let t_pb = t.result_pb.as_deref().unwrap();
    let f_pb = f.result_pb.as_deref().unwrap();
    let trial_result = v1::BacktestResult::decode(t_pb).unwrap();
    assert_golden(&trial_result);
    assert!(trial_result.fills.is_empty() && trial_result.equity_curve.is_empty());
    assert!(trial_result.trades.is_empty());
    assert!(trial_result.metrics.as_ref().unwrap().win_rate > 0.0);
    let full_result = v1::BacktestResult::decode(f_pb).unwrap();
    assert_eq!(
        (
            full_result.fills.len(),
            full_result.equity_curve.len(),
            full_result.trades.len()
        ),
        (203, 5849, 102)
    );
    println!(
        "stored result_pb: trial {} bytes, full {} bytes",
        t_pb.len(),
        f_pb.len()
    );
    assert!(t_pb.len() < 2_000, "trial stores {} bytes", t_pb.len());
    assert!(
        f_pb.len() > 50 * t_pb.len(),
        "{} vs {}",
        f_pb.len(),
        t_pb.len()
    );

    // The published trial result is the same small message, with its trial ids.
    let published = results(&env).await;
    assert_eq!(published["trial-1"][0], trial_result);
    assert_eq!(published["full-1"][0], full_result);

    // GetResult returns the parts that were kept.
    let mut svc = env.spawn().await;
    let get = |id: &str| v1::GetResultRequest {
        backtest_id: id.into(),
        detail: Some(v1::ResultDetail {
            trades: true,
            fills: true,
            equity_curve: true,
        }),
    };
    let full = svc
        .client
        .get_result(get("full-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(full.result.unwrap().fills.len(), 203);
    let trial = svc
        .client
        .get_result(get("trial-1"))
        .await
        .unwrap()
        .into_inner();
    let trial = trial.result.unwrap();
    assert_golden(&trial);
    assert!(trial.fills.is_empty(), "a trial never kept its fills");
    svc.stop().await;
}

/// Runs stored before migration 0003 (hex protobuf inside the JSON, no byte
/// columns) are still read by GetResult.
#[tokio::test]
async fn results_stored_as_hex_before_the_byte_columns_are_still_read() {
    let env = Env::new().await;
    let worker = env.worker("worker-legacy");
    let hex = |b: Vec<u8>| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let spec = sma_spec();
    let result = v1::BacktestResult {
        backtest_id: "legacy".into(),
        spec: Some(spec.clone()),
        status: v1::BacktestStatus::Succeeded as i32,
        worker: "old".into(),
        ..v1::BacktestResult::default()
    };
    let id = grodt_backtest_worker::worker::run_id("legacy");
    let runs = env.db.store().runs();
    runs.create(
        grodt_store::RunKind::Backtest,
        id,
        &serde_json::json!({ "backtest_id": "legacy", "spec_pb": hex(spec.encode_to_vec()) }),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        worker.get("legacy").await.unwrap().spec,
        Some(spec),
        "the queued run's spec from the JSON hex"
    );
    runs.set_result(
        id,
        &serde_json::json!({ "status": "BACKTEST_STATUS_SUCCEEDED", "result_pb": hex(result.encode_to_vec()) }),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(worker.get("legacy").await.unwrap(), result);
}
