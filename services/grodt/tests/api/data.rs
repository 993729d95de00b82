//! `grodt data import|ls|show` as processes against a spawned
//! `grodt up --ephemeral-ports`: readable output, the catalog under
//! --data-dir, and non-zero exits carrying the server's message.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

const GRODT: &str = env!("CARGO_BIN_EXE_grodt");

fn grodt(config_dir: &Path) -> Command {
    let mut cmd = Command::new(GRODT);
    for (key, _) in std::env::vars() {
        if key.starts_with("GRODT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("GRODT_CONFIG_DIR", config_dir)
        .env("GRODT_TELEMETRY__LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples")
        .join(name)
}

async fn run(dir: &Path, addr: &str, args: &[&str]) -> Output {
    tokio::time::timeout(
        Duration::from_secs(60),
        grodt(dir)
            .arg("data")
            .args(args)
            .args(["--addr", addr])
            .output(),
    )
    .await
    .expect("grodt data finishes within 60 s")
    .expect("run grodt data")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn import_ls_show_against_grodt_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = dir.path().join("ports.json");
    let data_dir = dir.path().join("data");
    let mut child = grodt(dir.path())
        .args(["up", "--ephemeral-ports", "--data-dir"])
        .arg(&data_dir)
        .arg("--ports-file")
        .arg(&ports)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn grodt up");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let map: serde_json::Value = loop {
        if let Ok(t) = std::fs::read_to_string(&ports) {
            break serde_json::from_str(&t).expect("ports JSON");
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "grodt up exited"
        );
        assert!(tokio::time::Instant::now() < deadline, "no ports file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let addr = map["market-data"]["grpc"]
        .as_str()
        .expect("market-data addr")
        .to_owned();
    let spy = sample("spy_1d_1998-2021.csv");
    let spy = spy.to_str().expect("utf-8 path");

    let out = run(
        dir.path(),
        &addr,
        &["import", spy, "--source", "quantconnect"],
    )
    .await;
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("rows       5849"), "{stdout}");
    assert!(stdout.contains("symbol     SPY"), "{stdout}");
    assert!(stdout.contains("errors 0"), "{stdout}");
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("dataset    "))
        .expect("dataset line")
        .trim()
        .to_owned();
    assert!(
        data_dir.join("catalog/quantconnect/SPY/1d").is_dir(),
        "catalog under --data-dir"
    );

    let out = run(dir.path(), &addr, &["ls"]).await;
    assert!(out.status.success(), "ls: {}", text(&out.stderr));
    let listing = text(&out.stdout);
    let row = listing
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{listing}"));
    assert!(
        row.contains("quantconnect/SPY/1d") && row.contains("5849"),
        "{row}"
    );
    assert!(row.contains("1998-01-02 00:00:00"), "{row}");

    let out = run(dir.path(), &addr, &["show", &id]).await;
    assert!(out.status.success(), "show: {}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains(&format!("dataset    {id}")), "{shown}");
    assert!(shown.contains("quality    read 5849"), "{shown}");

    // What market-data imported is backtestable by the id it returned: the
    // worker reads the same catalog and metadata. Import, then backtest.
    use grodt_proto::v1;
    let worker = map["backtest-worker"]["grpc"]
        .as_str()
        .expect("backtest-worker addr");
    let mut client =
        v1::backtest_service_client::BacktestServiceClient::connect(format!("http://{worker}"))
            .await
            .expect("connect to backtest-worker");
    let spec = v1::BacktestSpec {
        dataset_ids: vec![id.clone()],
        strategy_name: "sma_cross".into(),
        params: [("fast", "10"), ("slow", "30")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        initial_cash: Some(v1::Decimal {
            value: "100000".into(),
        }),
        ..v1::BacktestSpec::default()
    };
    let result = client
        .run_backtest(v1::RunBacktestRequest {
            spec: Some(spec),
            ..v1::RunBacktestRequest::default()
        })
        .await
        .expect("RunBacktest on the imported dataset")
        .into_inner()
        .result
        .expect("a result");
    assert_eq!(
        result.status,
        v1::BacktestStatus::Succeeded as i32,
        "{}",
        result.error
    );
    let m = result.metrics.expect("metrics");
    assert_eq!(m.final_equity.expect("final equity").value, "182091.18");
    assert_eq!((m.trade_count, m.fill_count), (102, 203));
    let unknown = client
        .run_backtest(v1::RunBacktestRequest {
            spec: Some(v1::BacktestSpec {
                dataset_ids: vec![uuid_like_unknown()],
                strategy_name: "sma_cross".into(),
                initial_cash: Some(v1::Decimal {
                    value: "100000".into(),
                }),
                ..v1::BacktestSpec::default()
            }),
            ..v1::RunBacktestRequest::default()
        })
        .await
        .expect_err("unknown dataset");
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    assert!(
        unknown.message().contains("spec.dataset_ids[0]"),
        "{unknown:?}"
    );

    // Streamed instead of read by path: the client's file name is the provenance.
    let out = run(
        dir.path(),
        &addr,
        &[
            "import",
            spy,
            "--upload",
            "--symbol",
            "SPYUP",
            "--source",
            "quantconnect",
        ],
    )
    .await;
    assert!(out.status.success(), "upload: {}", text(&out.stderr));
    let uploaded = text(&out.stdout);
    assert!(uploaded.contains("rows       5849"), "{uploaded}");
    assert!(
        uploaded.contains("original   spy_1d_1998-2021.csv (sha256 "),
        "{uploaded}"
    );

    // The raw Coinbase file: banner skipped, its defects listed.
    let coinbase = sample("coinbase_btcusd_1h_raw.csv");
    let out = run(
        dir.path(),
        &addr,
        &[
            "import",
            coinbase.to_str().expect("utf-8"),
            "--source",
            "coinbase",
            "--symbol",
            "BTCUSD",
            "--timeframe",
            "1h",
            "--asset-class",
            "crypto",
            "--skip-lines",
            "1",
            "--mapping",
            "ts=date,volume=volume_btc",
            "--time-format",
            "%Y-%m-%d %I-%p",
        ],
    )
    .await;
    assert!(out.status.success(), "coinbase: {}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("temporal.unsorted"), "{report}");
    assert!(report.contains("16901 16903 16905 16907 16909"), "{report}");
    assert!(report.contains("temporal.duplicate_row"), "{report}");

    // Errors: non-zero with the server's message.
    let out = run(
        dir.path(),
        &addr,
        &[
            "import",
            spy,
            "--symbol",
            "SPY2",
            "--mapping",
            "close=closing_price",
        ],
    )
    .await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("InvalidArgument") || err.contains("invalid"),
        "{err}"
    );
    assert!(err.contains("closing_price"), "{err}");

    let unknown = "0190b8a0-0000-7000-8000-000000000000";
    let out = run(dir.path(), &addr, &["show", unknown]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );

    let pid = child.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert!(status.success(), "{status}");
}

/// A well-formed dataset id no import produced.
fn uuid_like_unknown() -> String {
    "01890000-0000-7000-8000-000000000000".to_owned()
}
