//! `grodt-optimizer`: optimization runs (studies) over the backtest workers.
//!
//! Code map: the search and the study state machine are the pure
//! `grodt-optimize` library; `engine` keeps every run behind one mutex,
//! journals each input (start, trial result, cancel, jobs published) in the
//! store's journal with the jobs it produced, publishes trials on
//! `grodt.backtest-jobs.v1`, consumes `grodt.backtest-results.v1` (group
//! `optimizer`), and rebuilds the runs from the journal at start; `grpc`
//! holds the handlers and the run -> wire conversion; `convert` the request
//! checks and the other protobuf <-> domain conversions; `error` the one
//! error enum; `metrics` the service's metrics. docs/optimization.md is the
//! contract.

pub mod convert;
pub mod engine;
mod error;
mod grpc;
pub mod metrics;
pub mod walkforward;

pub use error::OptimizerError;
pub use grpc::OptimizerApi;

use std::sync::Arc;
use std::time::Duration;

use grodt_bus::consumer::{Consumer, ConsumerConfig};
use grodt_bus::{ConsumerName, GroupName, StreamName};
use grodt_kit::config::{self as kit_config, ConfigError, ConfigSource, ServiceConfig};
use grodt_kit::{CommonConfig, Config, GrpcServerBuilder, Infra, KitError, Metrics, Server};
use grodt_proto::v1::optimizer_service_server::OptimizerServiceServer;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::server::NamedService;

use crate::engine::{Engine, GROUP, RESULTS_STREAM, ResultHandler};

/// The service's name in logs, metrics and configuration.
pub const NAME: &str = "optimizer";

/// The fully-qualified gRPC service, as health and reflection name it.
pub const GRPC_SERVICE: &str = <OptimizerServiceServer<OptimizerApi> as NamedService>::NAME;

/// The `[optimizer]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSettings {
    /// This instance's consumer name; empty = `optimizer-<pid>-<uuid>`.
    pub consumer_name: String,
    /// How long a result may sit unacked before it is taken over.
    pub claim_idle_ms: u64,
}

impl Default for OptimizerSettings {
    fn default() -> Self {
        Self {
            consumer_name: String::new(),
            claim_idle_ms: 30_000,
        }
    }
}

impl ServiceConfig for OptimizerSettings {
    const SECTION: Option<&'static str> = Some("optimizer");

    fn validate(&self) -> Result<(), ConfigError> {
        if self.claim_idle_ms == 0 {
            return Err(ConfigError::invalid(
                "optimizer.claim_idle_ms",
                "must be positive",
            ));
        }
        if !self.consumer_name.is_empty() && ConsumerName::parse(&self.consumer_name).is_err() {
            return Err(ConfigError::invalid(
                "optimizer.consumer_name",
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
        common: CommonConfig::with_ports(50057, 9107),
        service: (),
    }
}

/// Built-in defaults with the `[optimizer]` section, for the service binary.
pub fn defaults_with_settings() -> Config<OptimizerSettings> {
    Config {
        common: CommonConfig::with_ports(50057, 9107),
        service: OptimizerSettings::default(),
    }
}

/// `build` with the default `[optimizer]` settings.
pub async fn build(config: Config<()>, infra: Infra) -> Result<Server, KitError> {
    build_with_settings(
        Config {
            common: config.common,
            service: OptimizerSettings::default(),
        },
        infra,
    )
    .await
}

/// For `grodt up` and `grodt serve`: the common sections come from the
/// runner, `[optimizer]` from `source`.
pub async fn build_embedded(
    config: Config<()>,
    infra: Infra,
    source: ConfigSource,
) -> Result<Server, KitError> {
    let own = kit_config::load(&source, &defaults_with_settings())?;
    build_with_settings(
        Config {
            common: config.common,
            service: own.service,
        },
        infra,
    )
    .await
}

/// Rebuilds the runs from the journal (publishing jobs a crash left
/// unpublished), binds the gRPC and HTTP listeners and starts the results
/// consumer; the returned server runs with `run_until_stopped`, and the
/// consumer stops with it. `/readyz` follows the bus and the store.
pub async fn build_with_settings(
    config: Config<OptimizerSettings>,
    infra: Infra,
) -> Result<Server, KitError> {
    let metrics = Metrics::new(NAME, env!("CARGO_PKG_VERSION"))?;
    let s = &config.service;
    let own = metrics::OptimizerMetrics::register(&metrics)?;
    let engine = Arc::new(Engine::new(infra.store.clone(), infra.bus.clone(), own));
    engine.recover().await.map_err(|e| KitError::Dependency {
        key: "database.url",
        reason: format!("rebuilding the optimizations from the journal: {e}"),
    })?;
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
        key: "optimizer.consumer_name",
        reason: e.to_string(),
    };
    let mut cc = ConsumerConfig::new(
        StreamName::parse(RESULTS_STREAM).map_err(bad)?,
        GroupName::parse(GROUP).map_err(bad)?,
        ConsumerName::parse(&instance).map_err(bad)?,
    );
    cc.min_idle = Duration::from_millis(s.claim_idle_ms);
    cc.claim_every = Duration::from_millis(s.claim_idle_ms.min(5_000));
    let consumer = Consumer::new(
        infra.bus.clone(),
        Arc::new(ResultHandler(engine.clone())),
        cc,
    );
    consumer
        .ensure_group()
        .await
        .map_err(|e| KitError::Dependency {
            key: "redis.url",
            reason: e.to_string(),
        })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = Arc::new(grodt_kit::runner::StopOnDrop(stop_tx));
    let server = GrpcServerBuilder::for_service(
        NAME,
        GRPC_SERVICE,
        &config.common,
        &infra,
        grodt_proto::FILE_DESCRIPTOR_SET,
    )
    .metrics(metrics)
    .add_service(OptimizerServiceServer::new(OptimizerApi::new(
        engine.clone(),
        stop,
    )))
    .bind()
    .await?;
    let (watcher, lag_stop) = (engine.clone(), stop_rx.clone());
    tokio::spawn(async move { watcher.watch_lag(Duration::from_secs(5), lag_stop).await });
    let mut stop_rx = stop_rx;
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        if let Err(e) = consumer.run(stopped).await {
            tracing::error!(error = %e, "optimizer consumer stopped");
        }
    });
    Ok(server)
}
