//! `grodt-regime`: per-symbol market regime state (trending up/down, ranging,
//! transition, high volatility), classified from `grodt.bars.v1` and
//! published on `grodt.regimes.v1` when it changes.
//!
//! Code map: the classifier is the pure `grodt-regimes` library; `engine`
//! is the bar consumer (one classifier per symbol and timeframe, state and
//! change history in the store, committed with the bar's processed mark);
//! `grpc` holds the handlers (GetRegime and GetRegimeHistory read the store,
//! Classify is stateless); `convert` is every protobuf <-> domain conversion;
//! `metrics` the service's own metrics. docs/regimes.md, "The regime
//! service", is the contract.

pub mod catalog;
pub mod convert;
pub mod engine;
mod error;
mod grpc;
pub mod metrics;

pub use error::RegimeSvcError;
pub use grpc::{RegimeApi, classify, classify_request};

use std::sync::Arc;
use std::time::Duration;

use grodt_bus::consumer::{Consumer, ConsumerConfig};
use grodt_bus::{ConsumerName, GroupName, StreamName};
use grodt_kit::config::{self as kit_config, ConfigError, ConfigSource, ServiceConfig};
use grodt_kit::{CommonConfig, Config, GrpcServerBuilder, Infra, KitError, Metrics, Server};
use grodt_proto::v1::regime_service_server::RegimeServiceServer;
use grodt_regimes::{RegimeConfig, RegimeError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::server::NamedService;

use crate::engine::{BARS_STREAM, BarHandler, Engine, EngineSettings, GROUP};

/// The service's name in logs, metrics and configuration.
pub const NAME: &str = "regime";

/// The fully-qualified gRPC service, as health and reflection name it.
pub const GRPC_SERVICE: &str = <RegimeServiceServer<RegimeApi> as NamedService>::NAME;

/// The `[regime]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegimeSettings {
    /// `[regime.classifier]`: grodt-regimes' `RegimeConfig` (docs/regimes.md),
    /// used for every (symbol, timeframe) first seen; a stored classifier
    /// keeps the config it was created with.
    pub classifier: RegimeConfig,
    /// Decimal places bar prices are read at, 0..=9 (a bar written with
    /// more is rejected). Fixed per symbol when its first bar arrives.
    pub price_precision: u8,
    /// Decimal places bar volumes are read at, 0..=9.
    pub volume_precision: u8,
    /// Heartbeat period in minutes of bar time: a decision without a change
    /// that comes at least this long after the symbol's last published event
    /// is published with `heartbeat = true`. 0 = no heartbeats.
    pub heartbeat_minutes: u32,
    /// This instance's consumer name; empty = `regime-<pid>-<uuid>`.
    pub consumer_name: String,
    /// How long a bar may sit unacked before it is taken over.
    pub claim_idle_ms: u64,
    /// market-data's Parquet catalog, read (never written) by Classify by
    /// dataset id; opened on the first such call.
    pub catalog_dir: std::path::PathBuf,
}

impl Default for RegimeSettings {
    fn default() -> Self {
        Self {
            classifier: RegimeConfig::default(),
            price_precision: 8,
            volume_precision: 8,
            heartbeat_minutes: 60,
            consumer_name: String::new(),
            claim_idle_ms: 30_000,
            catalog_dir: std::path::PathBuf::from(grodt_dataset_meta::DEFAULT_CATALOG_DIR),
        }
    }
}

impl ServiceConfig for RegimeSettings {
    const SECTION: Option<&'static str> = Some("regime");

    fn validate(&self) -> Result<(), ConfigError> {
        if let Err(RegimeError::InvalidConfig { field, reason }) = self.classifier.validate() {
            return Err(ConfigError::invalid(
                format!("regime.classifier.{field}"),
                reason,
            ));
        }
        for (key, p) in [
            ("regime.price_precision", self.price_precision),
            ("regime.volume_precision", self.volume_precision),
        ] {
            if p > grodt_core::fixed::MAX_PRECISION {
                return Err(ConfigError::invalid(key, "must be at most 9"));
            }
        }
        if self.claim_idle_ms == 0 {
            return Err(ConfigError::invalid(
                "regime.claim_idle_ms",
                "must be positive",
            ));
        }
        if !self.consumer_name.is_empty() && ConsumerName::parse(&self.consumer_name).is_err() {
            return Err(ConfigError::invalid(
                "regime.consumer_name",
                "not a valid consumer name",
            ));
        }
        Ok(())
    }
}

/// Built-in configuration defaults for the embedded runner (no own section):
/// the ports of docs/conventions.md.
pub fn defaults() -> Config<()> {
    Config {
        common: CommonConfig::with_ports(50052, 9102),
        service: (),
    }
}

/// Built-in defaults with the `[regime]` section, for the service binary.
pub fn defaults_with_settings() -> Config<RegimeSettings> {
    Config {
        common: CommonConfig::with_ports(50052, 9102),
        service: RegimeSettings::default(),
    }
}

/// `build` with the default `[regime]` settings.
pub async fn build(config: Config<()>, infra: Infra) -> Result<Server, KitError> {
    build_with_settings(
        Config {
            common: config.common,
            service: RegimeSettings::default(),
        },
        infra,
    )
    .await
}

/// For `grodt up`: the common sections come from the runner (its ports),
/// `[regime]` from `source`, and the catalog is market-data's,
/// `<data_dir>/catalog`.
pub async fn build_embedded(
    config: Config<()>,
    infra: Infra,
    source: ConfigSource,
    data_dir: std::path::PathBuf,
) -> Result<Server, KitError> {
    let own = kit_config::load(&source, &defaults_with_settings())?;
    build_with_settings(
        Config {
            common: config.common,
            service: RegimeSettings {
                catalog_dir: data_dir.join("catalog"),
                ..own.service
            },
        },
        infra,
    )
    .await
}

/// Binds the gRPC and HTTP listeners and starts the bar consumer (after
/// handling the bars left pending by an earlier life); the returned server
/// runs with `run_until_stopped`, and the consumer stops with it. `/readyz`
/// follows the bus and the store.
pub async fn build_with_settings(
    config: Config<RegimeSettings>,
    infra: Infra,
) -> Result<Server, KitError> {
    let metrics = Metrics::new(NAME, env!("CARGO_PKG_VERSION"))?;
    let own = metrics::RegimeMetrics::register(&metrics)?;
    let s = &config.service;
    let engine = Arc::new(Engine::new(
        infra.store.clone(),
        infra.bus.clone(),
        EngineSettings {
            classifier: s.classifier.clone(),
            price_precision: s.price_precision,
            volume_precision: s.volume_precision,
            heartbeat_minutes: s.heartbeat_minutes,
        },
        own,
    ));
    let instance = if s.consumer_name.is_empty() {
        format!(
            "{NAME}-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        )
    } else {
        s.consumer_name.clone()
    };
    let bad = |e: grodt_bus::BusError| KitError::Dependency {
        key: "regime.consumer_name",
        reason: e.to_string(),
    };
    let consumer_name = ConsumerName::parse(&instance).map_err(bad)?;
    let mut cc = ConsumerConfig::new(
        StreamName::parse(BARS_STREAM).map_err(bad)?,
        GroupName::parse(GROUP).map_err(bad)?,
        consumer_name.clone(),
    );
    cc.min_idle = Duration::from_millis(s.claim_idle_ms);
    cc.claim_every = Duration::from_millis(s.claim_idle_ms.min(5_000));
    // Regimes are a fold of the bars: a failed bar is retried before any
    // bar behind it.
    cc.ordered = true;
    let consumer = Consumer::new(infra.bus.clone(), Arc::new(BarHandler(engine.clone())), cc);
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
    .add_service(RegimeServiceServer::new(RegimeApi::new(
        infra.store.clone(),
        Arc::new(catalog::CatalogSlot::new(
            s.catalog_dir.clone(),
            infra.store.clone(),
        )),
        stop,
    )))
    .bind()
    .await?;
    let (watcher, lag_stop) = (engine.clone(), stop_rx.clone());
    tokio::spawn(async move { watcher.watch_lag(Duration::from_secs(5), lag_stop).await });
    tokio::spawn(async move {
        match engine.recover_pending(&consumer_name).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(bars = n, "handled bars left pending by an earlier consumer"),
            Err(e) => tracing::warn!(error = %e, "recovering pending bars failed"),
        }
        let stopped = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        if let Err(e) = consumer.run(stopped).await {
            tracing::error!(error = %e, "regime bar consumer stopped");
        }
    });
    Ok(server)
}
