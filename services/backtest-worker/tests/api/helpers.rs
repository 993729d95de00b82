//! A worker on port 0 against a fresh Postgres database, a per-test Redis key
//! prefix and a temporary catalog seeded with the SPY sample.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use grodt_backtest::{CacheLimits, SeriesCache};
use grodt_backtest_worker::worker::{Worker, WorkerMetrics};
use grodt_backtest_worker::{WorkerSettings, build_with_catalog, defaults_with_settings};
use grodt_bus::{EventBus, RedisBus, RedisBusConfig};
use grodt_data::Catalog;
use grodt_data::calendar::Calendar;
use grodt_data::catalog::{ImportRequest, Partitioning};
use grodt_data::import::CsvOptions;
use grodt_data::meta::{DatasetId, InMemoryMetadata};
use grodt_data::validate::ValidationOptions;
use grodt_kit::{Infra, KitError};
use grodt_proto::v1;
use grodt_proto::v1::backtest_service_client::BacktestServiceClient;
use grodt_store::testing::TestDb;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The dataset id of the seeded SPY sample.
pub const SPY: &str = "lean/SPY/1d";

/// 2026-11-22T00:00:00Z: the injected "now" of imports.
const NOW: i64 = 1_795_305_600_000_000_000;

pub fn redis_url() -> String {
    std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A temporary catalog holding SPY daily, imported through grodt-data's import API.
pub fn seeded_catalog() -> (tempfile::TempDir, Arc<Catalog>) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(
        dir.path().join("catalog"),
        Arc::new(InMemoryMetadata::new()),
    )
    .expect("catalog opens");
    catalog
        .import_csv(&ImportRequest {
            path: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../data/samples/spy_1d_1998-2021.csv"),
            id: DatasetId::new("lean", "SPY", "1d").unwrap(),
            source_description: "QuantConnect/Lean sample".into(),
            csv: CsvOptions::default(),
            validation: ValidationOptions {
                calendar: Calendar::UsEquityDaily,
                ..ValidationOptions::new(NOW)
            },
            partitioning: Partitioning::Year,
            replace: false,
            imported_at: NOW,
        })
        .expect("SPY imports");
    (dir, Arc::new(catalog))
}

/// Postgres (fresh database) and Redis under a fresh key prefix.
pub struct Env {
    pub db: TestDb,
    pub bus: Arc<dyn EventBus>,
    pub catalog: Arc<Catalog>,
    /// Holds the catalog's files (`catalog/` inside).
    pub dir: tempfile::TempDir,
}

impl Env {
    pub async fn new() -> Self {
        let db = TestDb::postgres().await;
        let prefix = format!("test-bt-{}:", uuid::Uuid::now_v7().simple());
        let bus = RedisBus::connect(RedisBusConfig::new(redis_url(), prefix))
            .await
            .unwrap_or_else(|e| panic!("Redis must be running at {}: {e}", redis_url()));
        let (dir, catalog) = seeded_catalog();
        Self {
            db,
            bus: Arc::new(bus),
            catalog,
            dir,
        }
    }

    pub fn infra(&self) -> Infra {
        Infra {
            bus: self.bus.clone(),
            store: self.db.store().clone(),
        }
    }

    /// A worker value (no server) named `instance`, for driving consumers by hand.
    pub fn worker(&self, instance: &str) -> Worker {
        let metrics = grodt_kit::Metrics::new("backtest-worker", "test").unwrap();
        Worker {
            catalog: self.catalog.clone(),
            cache: Arc::new(SeriesCache::new(CacheLimits::default())),
            store: self.db.store().clone(),
            bus: self.bus.clone(),
            instance: instance.to_owned(),
            metrics: WorkerMetrics::register(&metrics).unwrap(),
        }
    }

    /// The whole service on port 0.
    pub async fn spawn(&self) -> Spawned {
        let mut config = defaults_with_settings();
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        config.common.grpc.addr = any;
        config.common.http.addr = any;
        config.service = WorkerSettings {
            claim_idle_ms: 60_000,
            ..WorkerSettings::default()
        };
        let server = build_with_catalog(config, self.infra(), self.catalog.clone())
            .await
            .expect("worker binds");
        let (grpc, http) = (server.grpc_addr(), server.http_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let client = BacktestServiceClient::new(
            Channel::from_shared(format!("http://{grpc}"))
                .unwrap()
                .connect()
                .await
                .expect("connects"),
        );
        Spawned {
            client,
            http,
            stop,
            task,
        }
    }
}

pub struct Spawned {
    pub client: BacktestServiceClient<Channel>,
    pub http: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), KitError>>,
}

impl Spawned {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("stops within 15 s")
            .expect("no panic")
            .expect("clean stop");
    }
}

pub fn dec(text: &str) -> Option<v1::Decimal> {
    Some(v1::Decimal {
        value: text.to_owned(),
    })
}

/// SMA(10/30) on SPY with 100,000 cash and no costs: the golden run.
pub fn sma_spec() -> v1::BacktestSpec {
    v1::BacktestSpec {
        dataset_ids: vec![SPY.to_owned()],
        strategy_name: "sma_cross".into(),
        params: [("fast", "10"), ("slow", "30")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        initial_cash: dec("100000"),
        ..v1::BacktestSpec::default()
    }
}

pub fn assert_golden(result: &v1::BacktestResult) {
    assert_eq!(
        result.status,
        v1::BacktestStatus::Succeeded as i32,
        "{}",
        result.error
    );
    let m = result.metrics.as_ref().expect("metrics");
    assert_eq!(m.final_equity.as_ref().unwrap().value, "182091.18");
    assert_eq!(m.trade_count, 102);
    assert_eq!(m.closed_trade_count, 101);
    assert_eq!(m.fill_count, 203);
    assert_eq!(m.bar_count, 5849);
    assert!((m.sharpe - 0.284_920).abs() < 1e-6, "sharpe {}", m.sharpe);
    assert_eq!(
        result.costs.as_ref().unwrap().total.as_ref().unwrap().value,
        "0"
    );
}

/// Polls `check` every 20 ms until it returns `Some`, failing after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
