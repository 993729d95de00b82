//! `grodt-market-data`: the data catalog, CSV imports, aggregation, the frame
//! cache and the replay feed of bars.
//!
//! A thin shell over grodt-data (catalog, validation, aggregation, cache) and
//! grodt-dataset-meta (catalog metadata in the store): configuration -> the service kit -> serve.
//! Protobuf types stop at `grpc.rs`/`convert.rs`; polars work runs on
//! blocking threads. It must never hold domain logic of its own beyond
//! adapting those libraries, and never depends on other services.

mod config;
mod convert;
mod error;
mod fetch;
mod grpc;
mod live;
mod metrics;
mod replay;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use config::MarketDataConfig;
pub use error::MdError;
pub use grpc::MarketDataApi;
pub use replay::BARS_STREAM;

use grodt_data::Catalog;
use grodt_data::cache::FrameCache;
use grodt_kit::config::{self as kit_config, ConfigSource};
use grodt_kit::{CommonConfig, Config, GrpcServerBuilder, Infra, KitError, Metrics, Server};
use grodt_proto::v1::market_data_service_server::MarketDataServiceServer;
use tonic::server::NamedService;

/// The service's name in logs, metrics and configuration.
pub const NAME: &str = "market-data";

/// The fully-qualified gRPC service, as health and reflection name it.
pub const GRPC_SERVICE: &str = <MarketDataServiceServer<MarketDataApi> as NamedService>::NAME;

/// Catalog directory of the standalone service when `market_data.catalog_dir` is unset.
pub use grodt_dataset_meta::DEFAULT_CATALOG_DIR;

/// Built-in configuration defaults: the ports of docs/conventions.md.
pub fn defaults() -> Config<MarketDataConfig> {
    Config {
        common: CommonConfig::with_ports(50051, 9101),
        service: MarketDataConfig::default(),
    }
}

/// Binds the gRPC and HTTP listeners; the returned server runs with
/// `run_until_stopped`. `/readyz` follows the bus and the store.
pub async fn build(config: Config<MarketDataConfig>, infra: Infra) -> Result<Server, KitError> {
    let dir = config
        .service
        .catalog_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CATALOG_DIR));
    build_at(config, infra, dir).await
}

/// For `grodt up`: the common sections come from the runner (its ports), the
/// `[market_data]` section from `source`, and an unset catalog directory
/// defaults to `<data_dir>/catalog`.
pub async fn build_embedded(
    common: Config<()>,
    infra: Infra,
    source: ConfigSource,
    data_dir: PathBuf,
) -> Result<Server, KitError> {
    let own = kit_config::load(&source, &defaults())?;
    let dir = own
        .service
        .catalog_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("catalog"));
    let config = Config {
        common: common.common,
        service: own.service,
    };
    build_at(config, infra, dir).await
}

async fn build_at(
    config: Config<MarketDataConfig>,
    infra: Infra,
    dir: PathBuf,
) -> Result<Server, KitError> {
    let kit_metrics = Metrics::new(NAME, env!("CARGO_PKG_VERSION"))?;
    let metrics = Arc::new(metrics::MdMetrics::register(&kit_metrics)?);
    let meta = Arc::new(grodt_dataset_meta::StoreMetadata::new(
        infra.store.clone(),
        tokio::runtime::Handle::current(),
    ));
    let m: Arc<dyn grodt_data::MetadataStore> = meta.clone();
    let open_dir = dir.clone();
    // Opening removes leftovers of a crashed import: file I/O, off the executor.
    let catalog = tokio::task::spawn_blocking(move || Catalog::open(open_dir, m))
        .await
        .map_err(|e| KitError::Dependency {
            key: "market_data.catalog_dir",
            reason: e.to_string(),
        })?
        .map_err(|e| KitError::Dependency {
            key: "market_data.catalog_dir",
            reason: format!("{}: {e}", dir.display()),
        })?;
    let shared = Arc::new(grpc::Shared {
        catalog: Arc::new(catalog),
        meta,
        store: infra.store.clone(),
        bus: infra.bus.clone(),
        cache: Arc::new(FrameCache::new(config.service.cache_bytes)),
        metrics,
        config: config.service.clone(),
        replays: replay::Replays::default(),
        import_lock: Arc::new(Mutex::new(())),
        fetch_lock: Arc::new(tokio::sync::Mutex::new(())),
        feeds_stop: tokio::sync::watch::channel(false).0,
    });
    live::start(&shared, &dir).map_err(|e| KitError::Dependency {
        key: "market_data.feeds",
        reason: e.to_string(),
    })?;
    GrpcServerBuilder::for_service(
        NAME,
        GRPC_SERVICE,
        &config.common,
        &infra,
        grodt_proto::FILE_DESCRIPTOR_SET,
    )
    .metrics(kit_metrics)
    .add_service(MarketDataServiceServer::new(MarketDataApi { shared }))
    .bind()
    .await
}
