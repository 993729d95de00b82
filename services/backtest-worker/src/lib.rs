//! `grodt-backtest-worker`: backtests, synchronous (`RunBacktest`) and as jobs
//! from the shared `grodt.backtest-jobs.v1` consumer group (`SubmitBacktest`,
//! `GetResult`), on the engine and strategies of the libraries.
//!
//! Code map: the backtest itself (dataset -> bars -> engine -> result, and
//! the bounded cache of loaded series) is the `grodt-backtest` library, also
//! used by `grodt backtest`; [`convert`] turns protobuf into it (strategy
//! parameters through `grodt_strategies::registry`); `worker` loads datasets
//! from the Parquet catalog through the series cache, records runs in the
//! store and handles jobs; `grpc` holds the handlers. Architecture invariant: protobuf types stop at `convert`/`grpc`;
//! the engine runs in `spawn_blocking`, never on the async executor.

pub mod convert;
mod grpc;
pub mod worker;

pub use grpc::BacktestApi;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use grodt_backtest::{CacheLimits, SeriesCache};
use grodt_bus::consumer::{Consumer, ConsumerConfig};
use grodt_bus::{ConsumerName, GroupName, StreamName};
use grodt_data::{Catalog, MetadataStore};
use grodt_dataset_meta::StoreMetadata;
use grodt_kit::config::{self as kit_config, ConfigError, ConfigSource, ServiceConfig};
use grodt_kit::{CommonConfig, Config, GrpcServerBuilder, Infra, KitError, Metrics, Server};
use grodt_proto::v1::backtest_service_server::BacktestServiceServer;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::server::NamedService;

use crate::worker::{GROUP, JOBS_STREAM, JobHandler, Worker, WorkerMetrics};

/// The service's name in logs, metrics and configuration.
pub const NAME: &str = "backtest-worker";

/// The fully-qualified gRPC service, as health and reflection name it.
pub const GRPC_SERVICE: &str = <BacktestServiceServer<BacktestApi> as NamedService>::NAME;

/// The `[backtest_worker]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// The Parquet catalog directory shared with market-data.
    pub catalog_dir: PathBuf,
    /// How long a job may sit unacked, its lease not renewed, before another
    /// replica takes it over. A live worker renews the lease on the job it
    /// runs every third of this, so it need not exceed the longest backtest:
    /// it bounds how long a killed worker's job waits.
    pub claim_idle_ms: u64,
    /// This replica's consumer name; empty = `backtest-worker-<pid>-<uuid>`.
    pub consumer_name: String,
    /// Most series the per-process cache of loaded datasets keeps (0 = no cache).
    pub series_cache_entries: usize,
    /// Most bars that cache keeps over all series (about 48 bytes a bar).
    pub series_cache_bars: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            // `grodt up`'s default data dir plus `catalog`, where market-data writes.
            catalog_dir: PathBuf::from(grodt_dataset_meta::DEFAULT_CATALOG_DIR),
            claim_idle_ms: 15_000,
            consumer_name: String::new(),
            series_cache_entries: CacheLimits::default().max_entries,
            series_cache_bars: CacheLimits::default().max_bars,
        }
    }
}

impl ServiceConfig for WorkerSettings {
    const SECTION: Option<&'static str> = Some("backtest_worker");

    fn validate(&self) -> Result<(), ConfigError> {
        if self.catalog_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "backtest_worker.catalog_dir",
                "must not be empty",
            ));
        }
        if self.claim_idle_ms == 0 {
            return Err(ConfigError::invalid(
                "backtest_worker.claim_idle_ms",
                "must be positive",
            ));
        }
        if !self.consumer_name.is_empty() && ConsumerName::parse(&self.consumer_name).is_err() {
            return Err(ConfigError::invalid(
                "backtest_worker.consumer_name",
                "not a valid consumer name",
            ));
        }
        Ok(())
    }
}

/// Built-in configuration defaults for the embedded runner (no own section).
pub fn defaults() -> Config<()> {
    Config {
        common: CommonConfig::with_ports(50056, 9106),
        service: (),
    }
}

/// Built-in defaults with the `[backtest_worker]` section, for the service binary.
pub fn defaults_with_settings() -> Config<WorkerSettings> {
    Config {
        common: CommonConfig::with_ports(50056, 9106),
        service: WorkerSettings::default(),
    }
}

/// `build` for `grodt up`, whose members take no own section: default settings.
pub async fn build(config: Config<()>, infra: Infra) -> Result<Server, KitError> {
    build_with_settings(
        Config {
            common: config.common,
            service: WorkerSettings::default(),
        },
        infra,
    )
    .await
}

/// For `grodt up`: the common sections come from the runner (its ports),
/// `[backtest_worker]` from `source`, and the catalog is market-data's,
/// `<data_dir>/catalog`.
pub async fn build_embedded(
    common: Config<()>,
    infra: Infra,
    source: ConfigSource,
    data_dir: PathBuf,
) -> Result<Server, KitError> {
    let own = kit_config::load(&source, &defaults_with_settings())?;
    let config = Config {
        common: common.common,
        service: WorkerSettings {
            catalog_dir: data_dir.join("catalog"),
            ..own.service
        },
    };
    build_with_settings(config, infra).await
}

/// Opens the catalog at `catalog_dir` over the store's dataset metadata (the
/// same records market-data writes, so every imported dataset can be
/// backtested) and builds the service.
pub async fn build_with_settings(
    config: Config<WorkerSettings>,
    infra: Infra,
) -> Result<Server, KitError> {
    let meta: Arc<dyn MetadataStore> = Arc::new(StoreMetadata::new(
        infra.store.clone(),
        tokio::runtime::Handle::current(),
    ));
    let dir = config.service.catalog_dir.clone();
    // Opening reads the directory and the metadata store (which blocks): off the executor.
    let catalog = tokio::task::spawn_blocking(move || Catalog::open(&dir, meta))
        .await
        .map_err(|e| KitError::Dependency {
            key: "backtest_worker.catalog_dir",
            reason: e.to_string(),
        })?
        .map_err(|e| KitError::Dependency {
            key: "backtest_worker.catalog_dir",
            reason: e.to_string(),
        })?;
    build_with_catalog(config, infra, Arc::new(catalog)).await
}

/// Binds the gRPC and HTTP listeners and starts the job consumer; the returned
/// server runs with `run_until_stopped`, and the consumer stops with it.
/// `/readyz` follows the bus and the store.
pub async fn build_with_catalog(
    config: Config<WorkerSettings>,
    infra: Infra,
    catalog: Arc<Catalog>,
) -> Result<Server, KitError> {
    let metrics = Metrics::new(NAME, env!("CARGO_PKG_VERSION"))?;
    let worker_metrics = WorkerMetrics::register(&metrics)?;
    let instance = if config.service.consumer_name.is_empty() {
        format!(
            "{NAME}-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        )
    } else {
        config.service.consumer_name.clone()
    };
    let worker = Worker {
        catalog,
        cache: Arc::new(SeriesCache::new(CacheLimits {
            max_entries: config.service.series_cache_entries,
            max_bars: config.service.series_cache_bars,
        })),
        store: infra.store.clone(),
        bus: infra.bus.clone(),
        instance: instance.clone(),
        metrics: worker_metrics,
    };
    let lag = worker.metrics.lag.clone();
    let consumer = job_consumer(&worker, &instance, &config.service)?;
    consumer
        .ensure_group()
        .await
        .map_err(|e| KitError::Dependency {
            key: "redis.url",
            reason: e.to_string(),
        })?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let stop = Arc::new(grodt_kit::runner::StopOnDrop(stop_tx));
    let server = GrpcServerBuilder::for_service(
        NAME,
        GRPC_SERVICE,
        &config.common,
        &infra,
        grodt_proto::FILE_DESCRIPTOR_SET,
    )
    .metrics(metrics)
    .add_service(BacktestServiceServer::new(BacktestApi::new(worker, stop)))
    .bind()
    .await?;
    let (bus, lag, lag_stop) = (infra.bus.clone(), lag, stop_rx.clone());
    tokio::spawn(async move {
        grodt_kit::lag::watch(
            &*bus,
            &[JOBS_STREAM],
            GROUP,
            &lag,
            Duration::from_secs(5),
            lag_stop,
        )
        .await;
    });
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        if let Err(e) = consumer.run(stopped).await {
            tracing::error!(error = %e, "backtest job consumer stopped");
        }
    });
    Ok(server)
}

/// The consumer-group loop of one replica over the jobs stream.
///
/// # Errors
/// A consumer name the bus refuses.
pub fn job_consumer(
    worker: &Worker,
    instance: &str,
    settings: &WorkerSettings,
) -> Result<Consumer, KitError> {
    let bad = |e: grodt_bus::BusError| KitError::Dependency {
        key: "backtest_worker.consumer_name",
        reason: e.to_string(),
    };
    let mut config = ConsumerConfig::new(
        StreamName::parse(JOBS_STREAM).map_err(bad)?,
        GroupName::parse(GROUP).map_err(bad)?,
        ConsumerName::parse(instance).map_err(bad)?,
    );
    // One backtest at a time per replica: scale out with replicas, not batches.
    config.batch = 1;
    config.min_idle = Duration::from_millis(settings.claim_idle_ms);
    config.claim_every = Duration::from_millis(settings.claim_idle_ms.min(5_000));
    config.renew_every = Some(Duration::from_millis((settings.claim_idle_ms / 3).max(1)));
    Ok(Consumer::new(
        worker.bus.clone(),
        Arc::new(JobHandler(worker.clone())),
        config,
    ))
}
