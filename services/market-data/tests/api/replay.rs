//! Replays onto `grodt.bars.v1` against real Redis, read back by a consumer group.

use std::sync::Arc;
use std::time::Duration;

use grodt_bus::{
    ConsumerName, EventBus, GroupName, RedisBus, RedisBusConfig, StartFrom, StreamName,
};
use grodt_market_data::{BARS_STREAM, MarketDataConfig};
use grodt_proto::v1;
use prost::Message;
use tonic::Code;

use crate::helpers::{daily_spec, dec, import, rfc3339, sample, spawn_app_with};

fn redis_url() -> String {
    std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn redis_bus(prefix: &str) -> Arc<dyn EventBus> {
    let bus = RedisBus::connect(RedisBusConfig::new(redis_url(), prefix))
        .await
        .unwrap_or_else(|e| panic!("Redis at {} must be running: {e}", redis_url()));
    Arc::new(bus)
}

async fn wait_state(
    app: &mut crate::helpers::App,
    dataset_id: &str,
    replay_id: &str,
    state: v1::ReplayState,
) -> v1::ReplayStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        // Starting a known replay id of the same dataset only reports its status.
        let s = app
            .client
            .start_replay(v1::StartReplayRequest {
                dataset_id: dataset_id.into(),
                replay_id: replay_id.into(),
                ..Default::default()
            })
            .await
            .expect("status")
            .into_inner()
            .status
            .expect("status");
        if s.state == state as i32 {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replay {replay_id} not {state:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_publishes_every_bar_in_order_to_a_consumer_group() {
    let prefix = format!("test-md-{}:", uuid::Uuid::now_v7().simple());
    let bus = redis_bus(&prefix).await;
    let mut app = spawn_app_with(bus.clone(), MarketDataConfig::default()).await;

    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("spy60.csv");
    let text = std::fs::read_to_string(sample("spy_1d_1998-2021.csv")).expect("read");
    let lines: Vec<&str> = text.lines().take(61).collect();
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let ds = import(&mut app, &path, daily_spec("SPY"))
        .await
        .dataset
        .expect("stored");

    let stream = StreamName::parse(BARS_STREAM).expect("stream");
    let group = GroupName::parse("replay-test").expect("group");
    let consumer = ConsumerName::parse("c1").expect("consumer");
    bus.ensure_group(&stream, &group, StartFrom::Beginning)
        .await
        .expect("group");

    let started = app
        .client
        .start_replay(v1::StartReplayRequest {
            dataset_id: ds.dataset_id.clone(),
            replay_id: "r-fast".into(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(started.bars_total, 60);

    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while events.len() < 60 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "got {}",
            events.len()
        );
        let got = bus
            .consume(&stream, &group, &consumer, 100, Duration::from_millis(500))
            .await
            .expect("consume");
        let ids: Vec<_> = got.iter().map(|d| d.entry_id).collect();
        for d in got {
            assert_eq!(d.envelope.event_type, "grodt.v1.BarEvent");
            events.push(v1::BarEvent::decode(d.envelope.payload).expect("BarEvent"));
        }
        bus.ack(&stream, &group, &ids).await.expect("ack");
    }
    for (event, line) in events.iter().zip(&lines[1..]) {
        assert_eq!(event.dataset_id, ds.dataset_id);
        assert_eq!(event.replay_id, "r-fast");
        let bar = event.bar.as_ref().expect("bar");
        let got = [
            rfc3339(&bar.timestamp),
            dec(&bar.open).to_owned(),
            dec(&bar.high).to_owned(),
            dec(&bar.low).to_owned(),
            dec(&bar.close).to_owned(),
            dec(&bar.volume).to_owned(),
        ]
        .join(",");
        assert_eq!(&got, line);
    }
    let done = wait_state(
        &mut app,
        &ds.dataset_id,
        "r-fast",
        v1::ReplayState::Completed,
    )
    .await;
    assert_eq!(done.bars_published, 60);

    // Real time for daily bars: still running when a second one is asked for.
    let slow = app
        .client
        .start_replay(v1::StartReplayRequest {
            dataset_id: ds.dataset_id.clone(),
            replay_id: "r-slow".into(),
            speed: 1.0,
            ..Default::default()
        })
        .await
        .expect("start slow")
        .into_inner();
    assert_eq!(
        slow.status.expect("status").state,
        v1::ReplayState::Running as i32
    );
    let err = app
        .client
        .start_replay(v1::StartReplayRequest {
            dataset_id: ds.dataset_id.clone(),
            replay_id: "r-other".into(),
            ..Default::default()
        })
        .await
        .expect_err("one per dataset");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("r-slow"), "{}", err.message());
    let stopped = app
        .client
        .stop_replay(v1::StopReplayRequest {
            replay_id: "r-slow".into(),
        })
        .await
        .expect("stop")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(stopped.state, v1::ReplayState::Stopped as i32);
    assert!(stopped.bars_published < 60);
    let err = app
        .client
        .stop_replay(v1::StopReplayRequest {
            replay_id: "never".into(),
        })
        .await
        .expect_err("unknown replay");
    assert_eq!(err.code(), Code::NotFound);

    let (_, body) = crate::helpers::http_get(app.http, "/metrics").await;
    assert!(
        crate::helpers::metric(
            &body,
            "grodt_market_data_bars_published_total{symbol=\"SPY\"}"
        )
        .is_some_and(|n| n >= 60.0),
        "{body}"
    );
    app.stop().await;
}

/// Paced: 50 trading days a second; every bar arrives, in order, and the
/// replay completes on its own with the lag gauge exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_replay_completes_in_order() {
    let bus =
        grodt_bus::InProcessBus::new(grodt_bus::BackPressure::default(), 200_000).expect("bus");
    let bus: Arc<dyn EventBus> = Arc::new(bus);
    let mut app = spawn_app_with(bus.clone(), MarketDataConfig::default()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("spy10.csv");
    let text = std::fs::read_to_string(sample("spy_1d_1998-2021.csv")).expect("read");
    let lines: Vec<&str> = text.lines().take(11).collect();
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let ds = import(&mut app, &path, daily_spec("SPY"))
        .await
        .dataset
        .expect("stored");
    let stream = StreamName::parse(BARS_STREAM).expect("stream");
    let group = GroupName::parse("paced").expect("group");
    let consumer = ConsumerName::parse("c1").expect("consumer");
    bus.ensure_group(&stream, &group, StartFrom::Beginning)
        .await
        .expect("group");
    app.client
        .start_replay(v1::StartReplayRequest {
            dataset_id: ds.dataset_id.clone(),
            speed: 86_400.0 * 50.0,
            replay_id: "paced".into(),
            ..Default::default()
        })
        .await
        .expect("start");
    let done = wait_state(
        &mut app,
        &ds.dataset_id,
        "paced",
        v1::ReplayState::Completed,
    )
    .await;
    assert_eq!((done.bars_published, done.bars_total), (10, 10));
    let got = bus
        .consume(&stream, &group, &consumer, 100, Duration::from_millis(500))
        .await
        .expect("consume");
    let times: Vec<String> = got
        .iter()
        .map(|d| {
            let e = v1::BarEvent::decode(d.envelope.payload.clone()).expect("BarEvent");
            rfc3339(&e.bar.expect("bar").timestamp)
        })
        .collect();
    let want: Vec<String> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().expect("ts").to_owned())
        .collect();
    assert_eq!(times, want);
    let (_, body) = crate::helpers::http_get(app.http, "/metrics").await;
    assert!(
        crate::helpers::metric(&body, "grodt_market_data_replay_lag_seconds").is_some(),
        "{body}"
    );
    app.stop().await;
}
