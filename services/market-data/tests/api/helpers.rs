//! Spawning the service and building requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use grodt_bus::{BackPressure, EventBus, InProcessBus};
use grodt_kit::{Infra, KitError};
use grodt_market_data::MarketDataConfig;
use grodt_proto::v1;
use grodt_proto::v1::market_data_service_client::MarketDataServiceClient;
use grodt_store::testing::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A running service with everything it owns.
pub struct App {
    pub http: SocketAddr,
    pub client: MarketDataServiceClient<Channel>,
    pub catalog: tempfile::TempDir,
    _db: TestDb,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), KitError>>,
}

impl App {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("stops within 15 s")
            .expect("task")
            .expect("clean stop");
    }
}

/// The service on an in-process bus.
pub async fn spawn_app() -> App {
    let bus = InProcessBus::new(BackPressure::default(), 200_000).expect("bus");
    spawn_app_with(Arc::new(bus), MarketDataConfig::default()).await
}

/// The service on `bus` with `service` settings (its catalog dir is replaced
/// by a fresh one), on its own SQLite database.
pub async fn spawn_app_with(bus: Arc<dyn EventBus>, service: MarketDataConfig) -> App {
    spawn_app_on(bus, service, TestDb::sqlite().await).await
}

/// As [`spawn_app_with`], on the given database.
pub async fn spawn_app_on(bus: Arc<dyn EventBus>, service: MarketDataConfig, db: TestDb) -> App {
    let catalog = tempfile::tempdir().expect("catalog dir");
    let mut config = grodt_market_data::defaults();
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    config.common.grpc.addr = any;
    config.common.http.addr = any;
    config.service = MarketDataConfig {
        catalog_dir: Some(catalog.path().to_path_buf()),
        ..service
    };
    let infra = Infra {
        bus,
        store: db.store().clone(),
    };
    let server = grodt_market_data::build(config, infra)
        .await
        .expect("build market-data");
    let (grpc, http) = (server.grpc_addr(), server.http_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{grpc}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    App {
        http,
        client: MarketDataServiceClient::new(channel),
        catalog,
        _db: db,
        stop,
        task,
    }
}

pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples")
        .join(name)
        .canonicalize()
        .unwrap_or_else(|e| panic!("sample {name}: {e}"))
}

pub fn col(name: &str) -> Option<v1::ColumnRef> {
    Some(v1::ColumnRef {
        column: Some(v1::column_ref::Column::Name(name.into())),
    })
}

pub fn mapping(ts: &str, volume: &str) -> v1::ColumnMapping {
    v1::ColumnMapping {
        timestamp: col(ts),
        open: col("open"),
        high: col("high"),
        low: col("low"),
        close: col("close"),
        volume: col(volume),
    }
}

pub fn instrument(symbol: &str, asset: v1::AssetClass) -> v1::Instrument {
    v1::Instrument {
        symbol: symbol.into(),
        venue: "TEST".into(),
        asset_class: asset as i32,
        price_precision: 4,
        quantity_step: Some(v1::Decimal { value: "1".into() }),
        min_quantity: Some(v1::Decimal { value: "1".into() }),
        quote_currency: "USD".into(),
        ..Default::default()
    }
}

/// Spec of a normalised daily file.
pub fn daily_spec(symbol: &str) -> v1::ImportSpec {
    v1::ImportSpec {
        instrument: Some(instrument(symbol, v1::AssetClass::Etf)),
        timeframe: v1::Timeframe::Day1 as i32,
        source: "quantconnect".into(),
        dataset_name: String::new(),
        csv: Some(v1::CsvOptions {
            mapping: Some(mapping("timestamp", "volume")),
            has_header: true,
            ..Default::default()
        }),
        idempotent: false,
    }
}

pub async fn import(app: &mut App, path: &Path, spec: v1::ImportSpec) -> v1::ImportCsvResponse {
    app.client
        .import_csv(v1::ImportCsvRequest {
            path: path.display().to_string(),
            spec: Some(spec),
        })
        .await
        .unwrap_or_else(|s| panic!("import {}: {s:?}", path.display()))
        .into_inner()
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a wire timestamp.
pub fn rfc3339(ts: &Option<prost_types::Timestamp>) -> String {
    let ts = ts.as_ref().expect("timestamp");
    chrono::DateTime::from_timestamp(ts.seconds, ts.nanos as u32)
        .expect("in range")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn dec(d: &Option<v1::Decimal>) -> &str {
    &d.as_ref().expect("decimal").value
}

/// All bars of a GetBars stream.
pub async fn get_bars(app: &mut App, req: v1::GetBarsRequest) -> Vec<Vec<v1::Bar>> {
    let mut stream = app
        .client
        .get_bars(req)
        .await
        .expect("get_bars")
        .into_inner();
    let mut batches = Vec::new();
    while let Some(batch) = stream.message().await.expect("stream") {
        batches.push(batch.bars);
    }
    batches
}

/// Plain HTTP GET; (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .expect("HTTP response within 10 s")
        .expect("read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of a metric sample line `name{labels} value` (or `name value`).
pub fn metric(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .parse()
            .ok()
    })
}

/// The data lines of a normalised CSV file.
pub fn rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .expect("read sample")
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}
