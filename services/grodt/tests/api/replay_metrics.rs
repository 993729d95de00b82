//! Every panel of the trading dashboard and every trading alert is backed by
//! a series the services really export during a replay (issue 10): `grodt up`
//! as a real process (the seven services embedded), a drawdown limit
//! configured, sma_cross deployed on SPY, the last bars of the SPY sample
//! imported into market-data and replayed through regime, strategy, risk and
//! execution; then every `/metrics` endpoint is scraped live and
//! `scripts/deploy-tools/check-metric-names.py` runs with the trading
//! dashboard and the trading alerts strict: a name they use that no scrape
//! shows fails the test (planned names are not accepted there). scripts/test
//! checks the other artifacts against an idle scrape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use grodt_proto::v1;
use grodt_proto::v1::execution_service_client::ExecutionServiceClient;
use grodt_proto::v1::market_data_service_client::MarketDataServiceClient;
use grodt_proto::v1::strategy_service_client::StrategyServiceClient;
use tokio::process::Command;
use tonic::transport::Channel;

// More than the regime classifier's warm-up (an ATR rank over 250 bars), so
// `grodt_regime_current` has series.
const BARS: usize = 400;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

fn ts(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: i32::try_from(ns.rem_euclid(1_000_000_000)).unwrap(),
    }
}

async fn scrape(url: &str) -> String {
    let addr: std::net::SocketAddr = url.parse().unwrap();
    crate::helpers::http_get(addr, "/metrics").await.1
}

fn write_config(dir: &Path, inst: &grodt_core::Instrument) {
    crate::fault::write_config(dir, inst);
    let base = dir.join("base.toml");
    let mut text = std::fs::read_to_string(&base).unwrap();
    // A drawdown limit, so the drawdown alert's limit series exists.
    text.push_str("\n[risk.limits]\nmax_drawdown = \"0.5\"\n");
    std::fs::write(base, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trading_dashboard_and_alerts_are_backed_by_series_exported_during_a_replay() {
    let data = repo().join("data/samples/spy_1d_1998-2021.csv");
    let raw = grodt_backtest::load_csv(&data).expect("sample");
    let series = grodt_backtest::series_from_bars("SPY", &raw, false).expect("series");
    let bars = &series.bars[series.bars.len() - BARS..];
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &series.instrument);
    let ports = dir.path().join("ports.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_grodt"));
    for (key, _) in std::env::vars() {
        if key.starts_with("GRODT_") {
            cmd.env_remove(key);
        }
    }
    let log = std::fs::File::create(dir.path().join("up.log")).unwrap();
    let mut up = cmd
        .env("GRODT_CONFIG_DIR", dir.path())
        .env("GRODT_TELEMETRY__LOG_LEVEL", "warn")
        .args(["up", "--ephemeral-ports", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--ports-file")
        .arg(&ports)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn grodt up");
    let deadline = Instant::now() + Duration::from_secs(60);
    let map: BTreeMap<String, BTreeMap<String, String>> = loop {
        if let Ok(text) = std::fs::read_to_string(&ports)
            && let Ok(m) = serde_json::from_str(&text)
        {
            break m;
        }
        if let Some(status) = up.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
            panic!("grodt up exited with {status}:\n{log}");
        }
        assert!(Instant::now() < deadline, "grodt up wrote no ports file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let addr = |svc: &str, kind: &str| {
        map.get(svc)
            .and_then(|a| a.get(kind))
            .unwrap_or_else(|| panic!("{svc} {kind} in {map:?}"))
            .clone()
    };
    let mut strategy = StrategyServiceClient::new(channel(&addr("strategy", "grpc")).await);
    let mut market = MarketDataServiceClient::new(channel(&addr("market-data", "grpc")).await);
    let mut execution = ExecutionServiceClient::new(channel(&addr("execution", "grpc")).await);

    strategy
        .deploy(v1::DeployRequest {
            instance_id: "replay-metrics".into(),
            strategy_name: "sma_cross".into(),
            params: [("fast", "5"), ("slow", "20")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
            symbols: vec!["SPY".into()],
            timeframe: v1::Timeframe::Day1 as i32,
            allowed_regimes: Vec::new(),
            capital: Some(v1::Decimal {
                value: "100000".into(),
            }),
            start: true,
        })
        .await
        .expect("Deploy");
    let spec = grodt::data::import_spec(&grodt::data::ImportArgs {
        symbol: Some("SPY".into()),
        asset_class: Some("equity".into()),
        ..grodt::data::ImportArgs::of(data.clone())
    })
    .expect("import spec");
    let dataset = market
        .import_csv(v1::ImportCsvRequest {
            path: std::path::absolute(&data).unwrap().display().to_string(),
            spec: Some(spec),
        })
        .await
        .expect("ImportCsv")
        .into_inner()
        .dataset
        .expect("a dataset");
    // 30 ms a bar: a pace the pipeline keeps, so the instance sees them all.
    market
        .start_replay(v1::StartReplayRequest {
            dataset_id: dataset.dataset_id,
            range: Some(v1::TimeRange {
                start: Some(ts(bars[0].ts)),
                end: Some(ts(bars[BARS - 1].ts + 1)),
            }),
            speed: 86_400.0 * 1_000.0 / 30.0,
            replay_id: String::new(),
        })
        .await
        .expect("StartReplay");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = strategy
            .get_state(v1::GetStateRequest {
                instance_id: "replay-metrics".into(),
            })
            .await
            .expect("GetState")
            .into_inner()
            .instance
            .unwrap_or_default();
        let fills = execution
            .list_orders(v1::ListOrdersRequest::default())
            .await
            .expect("ListOrders")
            .into_inner()
            .orders
            .iter()
            .filter(|o| o.status == v1::OrderStatus::Filled as i32)
            .count();
        if st.bars_processed >= BARS as u64 && fills > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replay not through the pipeline: {} of {BARS} bars, {fills} filled orders",
            st.bars_processed
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let urls: Vec<String> = map
        .values()
        .map(|a| format!("http://{}/metrics", a["http"]))
        .collect();
    // The scrape the checker makes is live; this one shows it in the log.
    let risk = scrape(&addr("risk", "http")).await;
    assert!(
        risk.contains("grodt_risk_drawdown_limit_ratio{account=\"paper\"} 0.5"),
        "{risk}"
    );
    let root = repo();
    let out = std::process::Command::new("python3")
        .current_dir(&root)
        .arg("scripts/deploy-tools/check-metric-names.py")
        .arg("--scrape")
        .args(&urls)
        .args([
            "--planned",
            "deploy/metrics-planned.txt",
            "--metrics-doc",
            "docs/metrics.md",
            "--strict",
            "deploy/grafana/dashboards/trading.json",
            "deploy/prometheus/rules/trading-alerts.yml",
            // The consumer-lag series the trading panels and alerts record.
            "deploy/prometheus/rules/bus-recording.yml",
        ])
        .output()
        .expect("python3 runs (scripts/test needs it for the deploy checks too)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "the trading dashboard or alerts use a name no service exported during the replay:\n{text}"
    );
    assert!(text.contains("trading.json"), "{text}");
    up.start_kill().ok();
    let _ = up.wait().await;
}
