//! The live feed killed with SIGKILL: the `grodt-market-data` binary, fed by
//! a local WSS kline stream, is killed with kill -9 after bars reached the
//! bus and started again on the same feed state with a stream that repeats
//! bars and skips some; every bar reaches `grodt.bars.v1` (real Redis, a
//! consumer group), the skipped ones over REST, and the test counts what was
//! lost (none may be) and repeated (at most the one bar published before its
//! state was written, under the same event id, so consumers drop it).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use grodt_bus::{
    ConsumerName, EventBus, GroupName, RedisBus, RedisBusConfig, StartFrom, StreamName,
};
use grodt_data::venues::testing::{
    MockExchange, MockRow, TestPki, kline_message, rows_from_csv, serve_https, serve_wss,
};
use grodt_market_data::BARS_STREAM;
use grodt_proto::v1;
use grodt_store::testing::TestDb;
use prost::Message;

use crate::helpers::{rfc3339, sample};

const MINUTE: i64 = 60_000;

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn msgs(rows: &[MockRow], idx: impl IntoIterator<Item = usize>) -> Vec<String> {
    idx.into_iter()
        .flat_map(|i| {
            [false, true].map(|closed| kline_message("BTCUSDT", "1m", MINUTE, &rows[i], closed))
        })
        .collect()
}

/// The service binary on `ws_url`, its configuration in `dir/base.toml`.
fn start(dir: &std::path::Path, life: usize, ws_url: &str, rest_url: &str, env: &Env) -> Service {
    let ca = env.pki.ca_file.display();
    let toml = format!(
        "[market_data]\ncatalog_dir = \"{catalog}\"\n\
         [market_data.venues.binance]\nbase_url = \"{rest_url}\"\nca_file = \"{ca}\"\n\
         [market_data.feeds]\nenabled = true\nws_url = \"{ws_url}\"\nca_file = \"{ca}\"\n\
         symbols = [\"BTCUSDT\"]\nreconnect_min_ms = 10\nreconnect_max_ms = 50\n\
         state_dir = \"{state}\"\n",
        catalog = dir.join("catalog").display(),
        state = dir.join("feed-state").display(),
    );
    std::fs::write(dir.join("base.toml"), toml).expect("config");
    let log = std::fs::File::create(dir.join(format!("service-{life}.log"))).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_grodt-market-data"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GRODT_CONFIG_DIR", dir)
        .env("GRODT_GRPC__ADDR", "127.0.0.1:0")
        .env("GRODT_HTTP__ADDR", "127.0.0.1:0")
        .env("GRODT_TELEMETRY__LOG_FORMAT", "json")
        .env("GRODT_REDIS__URL", &env.redis_url)
        .env("GRODT_REDIS__KEY_PREFIX", &env.prefix)
        .env("GRODT_DATABASE__URL", env.db.url())
        .stdout(Stdio::from(log))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the market-data binary starts");
    Service(child)
}

struct Env {
    pki: TestPki,
    db: TestDb,
    redis_url: String,
    prefix: String,
    bus: Arc<dyn EventBus>,
}

/// Reads the bars stream until `want` distinct bar times arrived (or 30 s
/// passed), acking each; returns every bar read, repeats included.
async fn read_until(env: &Env, seen: &mut Vec<(v1::BarEvent, uuid::Uuid)>, want: usize) {
    let stream = StreamName::parse(BARS_STREAM).expect("stream");
    let group = GroupName::parse("kill-test").expect("group");
    let consumer = ConsumerName::parse("c1").expect("consumer");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let distinct = |seen: &Vec<(v1::BarEvent, uuid::Uuid)>| {
        seen.iter()
            .map(|(e, _)| rfc3339(&e.bar.as_ref().expect("bar").timestamp))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    while distinct(seen) < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {want} bars arrived",
            distinct(seen)
        );
        let got = env
            .bus
            .consume(&stream, &group, &consumer, 100, Duration::from_millis(200))
            .await
            .expect("consume");
        let ids: Vec<_> = got.iter().map(|d| d.entry_id).collect();
        for d in got {
            let id = d.envelope.event_id;
            seen.push((
                v1::BarEvent::decode(d.envelope.payload).expect("BarEvent"),
                id,
            ));
        }
        env.bus.ack(&stream, &group, &ids).await.expect("ack");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_live_feed_loses_no_bar() {
    let text =
        std::fs::read_to_string(sample("btcusdt_1m_2025-05-20_2025-08-18.csv")).expect("read");
    let head: Vec<&str> = text.lines().take(15).collect();
    let rows = rows_from_csv(&(head.join("\n") + "\n"));
    assert_eq!(rows.len(), 14);
    let pki = TestPki::new();
    let rest = MockExchange::new("BTCUSDT", MINUTE, rows.clone(), vec![]);
    let rest_url = serve_https(&pki, rest.router()).await;
    let redis_url =
        std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("test-md-kill-{}:", uuid::Uuid::now_v7().simple());
    let bus: Arc<dyn EventBus> = Arc::new(
        RedisBus::connect(RedisBusConfig::new(redis_url.clone(), &prefix))
            .await
            .unwrap_or_else(|e| panic!("Redis at {redis_url} must be running: {e}")),
    );
    bus.ensure_group(
        &StreamName::parse(BARS_STREAM).unwrap(),
        &GroupName::parse("kill-test").unwrap(),
        StartFrom::Beginning,
    )
    .await
    .expect("group");
    let env = Env {
        pki,
        db: TestDb::postgres().await,
        redis_url,
        prefix,
        bus,
    };
    let dir = tempfile::tempdir().expect("dir");

    // First life: bars 0..=7 on the stream; killed once five reached the bus.
    let ws = serve_wss(&env.pki, vec![msgs(&rows, 0..=7)]).await;
    let mut service = start(dir.path(), 0, &ws, &rest_url, &env);
    let mut seen = Vec::new();
    read_until(&env, &mut seen, 5).await;
    service.0.kill().expect("kill -9");
    service.0.wait().expect("reaped");
    let before = seen.len();

    // Second life on the same state: the stream repeats 6 and 7, skips 8..=11
    // (fetched over REST) and goes on with 12 and 13.
    let ws = serve_wss(&env.pki, vec![msgs(&rows, [6, 7, 12, 13])]).await;
    let _service = start(dir.path(), 1, &ws, &rest_url, &env);
    read_until(&env, &mut seen, 14).await;
    // Nothing more arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stream = StreamName::parse(BARS_STREAM).unwrap();
    let group = GroupName::parse("kill-test").unwrap();
    let more = env
        .bus
        .consume(
            &stream,
            &group,
            &ConsumerName::parse("c1").unwrap(),
            100,
            Duration::from_millis(200),
        )
        .await
        .expect("consume");

    assert!(more.is_empty(), "{} bars after the last", more.len());
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids: BTreeMap<String, std::collections::BTreeSet<uuid::Uuid>> = BTreeMap::new();
    for (e, id) in &seen {
        let t = rfc3339(&e.bar.as_ref().expect("bar").timestamp);
        *per.entry(t.clone()).or_default() += 1;
        ids.entry(t).or_default().insert(*id);
    }
    // A bar published twice is one event: consumers drop the second by id.
    assert!(
        ids.values().all(|set| set.len() == 1),
        "one event id per bar: {ids:?}"
    );
    let repeated: usize = per.values().map(|&n| n - 1).sum();
    let expected: Vec<String> = head[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect();
    let lost = expected.iter().filter(|t| !per.contains_key(*t)).count();
    eprintln!(
        "live feed kill -9 after {before} bars read: {} bars of 14 on the bus, {lost} lost, \
         {repeated} repeated, {} REST backfills",
        per.len(),
        rest.calls()
    );
    assert_eq!(lost, 0, "no bar lost");
    assert_eq!(per.len(), 14, "no bar the venue does not have");
    assert!(repeated <= 1, "{repeated} bars repeated");
    assert!(rest.calls() >= 1, "the hole came over REST");
}
