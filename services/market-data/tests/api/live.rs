//! The live feed end to end: market-data with `[market_data.feeds]` on, subscribed to
//! a local WSS server replaying Binance kline messages that drops the connection
//! mid-stream and resumes past a hole, with the mock REST venue filling it; every
//! bar arrives on `grodt.bars.v1` (real Redis, a consumer group) once and in order,
//! and the feed metrics count it. Then the service is stopped and a new one started
//! on the same feed state: the stream repeats two bars and skips two, and the bus
//! gets exactly the bars after the last one published, the missed ones over REST.

use std::sync::Arc;
use std::time::Duration;

use grodt_bus::{
    ConsumerName, EventBus, GroupName, RedisBus, RedisBusConfig, StartFrom, StreamName,
};
use grodt_data::venues::testing::{
    MockExchange, MockRow, TestPki, kline_message, rows_from_csv, serve_https, serve_wss,
};
use grodt_market_data::{BARS_STREAM, MarketDataConfig};
use grodt_proto::v1;
use prost::Message;

use crate::helpers::{dec, http_get, metric, rfc3339, sample, spawn_app_with};

const MINUTE: i64 = 60_000;

fn msgs(rows: &[MockRow], idx: &[usize]) -> Vec<String> {
    idx.iter()
        .flat_map(|&i| {
            [false, true].map(|closed| kline_message("BTCUSDT", "1m", MINUTE, &rows[i], closed))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_bars_reach_the_bus_once_in_order_across_a_drop_a_hole_and_a_restart() {
    let text =
        std::fs::read_to_string(sample("btcusdt_1m_2025-05-20_2025-08-18.csv")).expect("read");
    let head: Vec<&str> = text.lines().take(17).collect();
    let rows = rows_from_csv(&(head.join("\n") + "\n"));
    let pki = TestPki::new();
    let rest = MockExchange::new("BTCUSDT", MINUTE, rows.clone(), vec![]);
    let rest_url = serve_https(&pki, rest.router()).await;
    let ws_url = serve_wss(
        &pki,
        vec![msgs(&rows, &[0, 1, 2, 3]), msgs(&rows, &[3, 8, 9, 10, 11])],
    )
    .await;

    let prefix = format!("test-md-live-{}:", uuid::Uuid::now_v7().simple());
    let url =
        std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let bus: Arc<dyn EventBus> = Arc::new(
        RedisBus::connect(RedisBusConfig::new(url.clone(), &prefix))
            .await
            .unwrap_or_else(|e| panic!("Redis at {url} must be running: {e}")),
    );
    let stream = StreamName::parse(BARS_STREAM).expect("stream");
    let group = GroupName::parse("live-test").expect("group");
    let consumer = ConsumerName::parse("c1").expect("consumer");
    bus.ensure_group(&stream, &group, StartFrom::Beginning)
        .await
        .expect("group");

    let state = tempfile::tempdir().expect("state dir");
    let mut config = MarketDataConfig::default();
    config.venues.binance.base_url = Some(rest_url);
    config.venues.binance.ca_file = Some(pki.ca_file.clone());
    config.feeds.enabled = true;
    config.feeds.ws_url = Some(ws_url);
    config.feeds.ca_file = Some(pki.ca_file.clone());
    config.feeds.symbols = vec!["BTCUSDT".into()];
    config.feeds.reconnect_min_ms = 10;
    config.feeds.reconnect_max_ms = 50;
    config.feeds.state_dir = Some(state.path().to_path_buf());

    let consume = |n: usize| {
        let (bus, stream, group, consumer) =
            (bus.clone(), stream.clone(), group.clone(), consumer.clone());
        async move {
            let mut events = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while events.len() < n {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "got {}",
                    events.len()
                );
                let got = bus
                    .consume(&stream, &group, &consumer, 100, Duration::from_millis(200))
                    .await
                    .expect("consume");
                let ids: Vec<_> = got.iter().map(|d| d.entry_id).collect();
                for d in got {
                    events.push(v1::BarEvent::decode(d.envelope.payload).expect("BarEvent"));
                }
                bus.ack(&stream, &group, &ids).await.expect("ack");
            }
            // Nothing more arrives: no bar twice.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let more = bus
                .consume(&stream, &group, &consumer, 100, Duration::from_millis(200))
                .await
                .expect("consume");
            assert!(more.is_empty(), "{} extra bars", more.len());
            events
        }
    };

    let app = spawn_app_with(bus.clone(), config.clone()).await;
    let mut events = consume(12).await;
    let (code, body) = http_get(app.http, "/metrics").await;
    assert_eq!(code, 200);
    let m = |name: &str| metric(&body, name);
    assert_eq!(m("grodt_market_data_feed_gap_bars_total"), Some(4.0));
    assert_eq!(m("grodt_market_data_feed_duplicates_total"), Some(1.0));
    assert_eq!(m("grodt_market_data_feed_messages_total"), Some(18.0));
    assert!(m("grodt_market_data_feed_reconnects_total").unwrap_or(0.0) >= 1.0);
    assert!(m("grodt_market_data_feed_lag_seconds").is_some());
    assert_eq!(rest.calls(), 1);
    app.stop().await;

    // A new service on the same feed state: 10 and 11 again, then 14 and 15.
    config.feeds.ws_url = Some(serve_wss(&pki, vec![msgs(&rows, &[10, 11, 14, 15])]).await);
    let app = spawn_app_with(bus.clone(), config).await;
    events.extend(consume(4).await);
    let (_, body) = http_get(app.http, "/metrics").await;
    assert_eq!(
        metric(&body, "grodt_market_data_feed_duplicates_total"),
        Some(2.0)
    );
    assert_eq!(
        metric(&body, "grodt_market_data_feed_gap_bars_total"),
        Some(2.0)
    );
    assert_eq!(rest.calls(), 2);
    app.stop().await;

    assert_eq!(events.len(), 16);
    for (e, line) in events.iter().zip(&head[1..]) {
        let bar = e.bar.as_ref().expect("bar");
        assert_eq!(bar.symbol, "BTCUSDT");
        assert_eq!(bar.timeframe, v1::Timeframe::Minute1 as i32);
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
}
