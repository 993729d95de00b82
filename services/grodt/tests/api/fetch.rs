//! `grodt data fetch` end to end: a spawned `grodt up` whose market-data is pointed
//! (by environment) at a local mock Coinbase over TLS, trusted through
//! `ca_file` (verification stays on), serving the real Coinbase hourly sample in
//! the venue's format. A first fetch stores part of a range, a second one resumes
//! where the catalog ends, and `grodt data show` reports the whole dataset.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use grodt_data::venues::testing::{MockExchange, MockRow, TestPki, serve_https};
use tokio::process::Command;

const GRODT: &str = env!("CARGO_BIN_EXE_grodt");
const HOUR: i64 = 3_600_000;

fn grodt(config_dir: &Path, envs: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(GRODT);
    for (key, _) in std::env::vars() {
        if key.starts_with("GRODT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("GRODT_CONFIG_DIR", config_dir)
        .env("GRODT_TELEMETRY__LOG_LEVEL", "warn")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples")
        .join(name)
}

/// The hourly sample (CryptoDataDownload raw: banner, newest first, `09-AM` stamps)
/// from 2019-01-01 on, oldest first, with the base-currency volume.
fn coinbase_2019() -> Vec<MockRow> {
    let text = std::fs::read_to_string(sample("coinbase_btcusd_1h_raw.csv")).expect("sample");
    let mut rows: Vec<MockRow> = text
        .lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let t =
                chrono::NaiveDateTime::parse_from_str(&format!("{}:00", f[0]), "%Y-%m-%d %I-%p:%M")
                    .expect("stamp");
            (t.date() >= chrono::NaiveDate::from_ymd_opt(2019, 1, 1).expect("date")).then(|| {
                MockRow {
                    open_ms: t.and_utc().timestamp_millis(),
                    fields: [f[2], f[3], f[4], f[5], f[6]].map(str::to_owned),
                }
            })
        })
        .collect();
    rows.reverse();
    rows
}

async fn fetch(dir: &Path, addr: &str, from: &str, to: &str) -> Output {
    tokio::time::timeout(
        Duration::from_secs(120),
        grodt(dir, &[])
            .args([
                "data", "fetch", "coinbase", "BTC-USD", "1h", from, to, "--addr", addr,
            ])
            .output(),
    )
    .await
    .expect("grodt data fetch finishes within 120 s")
    .expect("run grodt data fetch")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_backfills_and_resumes_from_a_tls_venue() {
    let pki = TestPki::new();
    let rows = coinbase_2019();
    let mock = MockExchange::new("BTC-USD", HOUR, rows.clone(), vec![]);
    let base = serve_https(&pki, mock.router()).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let ports = dir.path().join("ports.json");
    let data_dir = dir.path().join("data");
    let envs = [
        (
            "GRODT_MARKET_DATA__VENUES__COINBASE__BASE_URL",
            base.clone(),
        ),
        (
            "GRODT_MARKET_DATA__VENUES__COINBASE__CA_FILE",
            pki.ca_file.display().to_string(),
        ),
        (
            "GRODT_MARKET_DATA__VENUES__COINBASE__PAGES_PER_COMMIT",
            "2".to_owned(),
        ),
    ];
    let mut child = grodt(dir.path(), &envs)
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
        .expect("addr")
        .to_owned();

    // January 2019: 744 hours, three windows of 300, committed after two.
    let out = fetch(dir.path(), &addr, "2019-01-01", "2019-02-01").await;
    assert!(out.status.success(), "fetch: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let jan = rows
        .iter()
        .filter(|r| r.open_ms < 1_548_979_200_000)
        .count();
    assert!(stdout.contains(&format!("rows       {jan}")), "{stdout}");
    assert!(stdout.contains("symbol     BTC-USD"), "{stdout}");
    assert!(
        stdout.contains("range      2019-01-01 00:00:00"),
        "{stdout}"
    );
    let progress = text(&out.stderr);
    assert_eq!(progress.matches("committed").count(), 2, "{progress}");
    assert!(data_dir.join("catalog/coinbase/BTC-USD/1h").is_dir());
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("dataset    "))
        .expect("dataset line")
        .trim()
        .to_owned();

    // Through March: only February and March are asked for, starting right after
    // the last stored hour.
    let asked = mock.log.lock().expect("log").len();
    let out = fetch(dir.path(), &addr, "2019-01-01", "2019-04-01").await;
    assert!(out.status.success(), "fetch: {}", text(&out.stderr));
    let log = mock.log.lock().expect("log")[asked..].to_vec();
    let last_jan = rows
        .iter()
        .filter(|r| r.open_ms < 1_548_979_200_000)
        .map(|r| r.open_ms)
        .max()
        .expect("jan");
    let next = chrono::DateTime::from_timestamp_millis(last_jan + HOUR).expect("ts");
    assert!(
        log[0].contains(&format!("start={}", next.format("%Y-%m-%dT%H:%M:%SZ"))),
        "resumes after the last stored hour: {log:?}"
    );
    let q1 = rows
        .iter()
        .filter(|r| r.open_ms < 1_554_076_800_000)
        .count();
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("dataset    {id}")),
        "same dataset: {stdout}"
    );
    assert!(stdout.contains(&format!("rows       {q1}")), "{stdout}");

    let out = tokio::time::timeout(
        Duration::from_secs(60),
        grodt(dir.path(), &[])
            .args(["data", "show", &id, "--addr", &addr])
            .output(),
    )
    .await
    .expect("show in time")
    .expect("run show");
    let shown = text(&out.stdout);
    assert!(shown.contains(&format!("quality    read {q1}")), "{shown}");
    assert!(
        shown.contains("source     coinbase https://localhost:"),
        "{shown}"
    );

    // A symbol the venue does not know: the venue's message, a non-zero exit.
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        grodt(dir.path(), &[])
            .args([
                "data",
                "fetch",
                "coinbase",
                "BTC-EUR",
                "1h",
                "2019-01-01",
                "2019-01-02",
                "--addr",
                &addr,
            ])
            .output(),
    )
    .await
    .expect("in time")
    .expect("run");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("HTTP 404") && err.contains("NotFound"),
        "{err}"
    );
    let _ = child.kill().await;
}
