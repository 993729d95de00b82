//! `grodt-risk`: pre-trade limits, circuit breakers, manual halt and the
//! exposure/VaR snapshot.
//!
//! Code map: the rules are the pure `grodt-risk-rules` library (a
//! deterministic fold of intents, fills, bars and operator commands);
//! `engine` runs it behind one mutex, consumes `grodt.order-intents.v1`,
//! `grodt.fills.v1` and `grodt.bars.v1` (group `risk`), journals every input
//! with the events it produced in the store's journal (bars and fills read
//! together in one transaction: group commit, `Engine::on_market_batch`;
//! intents one at a time), publishes approved
//! orders on `grodt.orders.v1` and everything else on `grodt.risk-events.v1`,
//! and rebuilds the state from the journal at start; `grpc` holds the
//! handlers; `convert` is every protobuf <-> domain conversion; `error` the
//! one error enum and its status mapping; `metrics` the service's metrics.
//! docs/risk.md is the contract.

pub mod convert;
pub mod engine;
mod error;
mod grpc;
pub mod metrics;

pub use error::{RiskSvcError, to_status};
pub use grpc::RiskApi;

use std::sync::Arc;
use std::time::Duration;

use grodt_bus::consumer::{Consumer, ConsumerConfig};
use grodt_bus::{ConsumerName, GroupName, StreamName};
use grodt_kit::config::{self as kit_config, ConfigError, ConfigSource, ServiceConfig};
use grodt_kit::{CommonConfig, Config, GrpcServerBuilder, Infra, KitError, Metrics, Server};
use grodt_proto::v1::risk_service_server::RiskServiceServer;
use grodt_risk_rules::{BreakerSettings, Limits, Settings};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::server::NamedService;

use crate::engine::{
    BARS_STREAM, Engine, FILLS_STREAM, GROUP, INTENTS_STREAM, Kind, StreamHandler,
};

/// The service's name in logs, metrics and configuration.
pub const NAME: &str = "risk";

/// The fully-qualified gRPC service, as health and reflection name it.
pub const GRPC_SERVICE: &str = <RiskServiceServer<RiskApi> as NamedService>::NAME;

/// The `[risk]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskSettings {
    /// The `account` label of the account gauges.
    pub account: String,
    /// Starting capital: equity before any fill (write it as a quoted decimal).
    pub initial_equity: Decimal,
    /// Days of daily returns the historical VaR uses (1..=2000).
    pub var_window_days: u32,
    /// Minutes (of bar time) an approved order counts towards the position
    /// and exposure limits until its fills arrive; 0 = not counted.
    pub pending_ttl_minutes: u32,
    /// `[risk.breakers]`: the order-rate and reject-rate breakers (off by default).
    pub breakers: BreakerSettings,
    /// `[risk.limits]`: initial limits, applied while no SetLimits has been
    /// applied (fields as in `RiskLimits`; decimals quoted).
    pub limits: Option<Limits>,
    /// This instance's consumer name; empty = `risk-<pid>-<uuid>`.
    pub consumer_name: String,
    /// How long an input may sit unacked before it is taken over.
    pub claim_idle_ms: u64,
}

impl Default for RiskSettings {
    fn default() -> Self {
        Self {
            account: "paper".into(),
            initial_equity: Decimal::from(100_000),
            var_window_days: 250,
            pending_ttl_minutes: 1440,
            breakers: BreakerSettings::default(),
            limits: None,
            consumer_name: String::new(),
            claim_idle_ms: 30_000,
        }
    }
}

impl ServiceConfig for RiskSettings {
    const SECTION: Option<&'static str> = Some("risk");

    fn validate(&self) -> Result<(), ConfigError> {
        if self.initial_equity <= Decimal::ZERO {
            return Err(ConfigError::invalid("risk.initial_equity", "must be > 0"));
        }
        if !(1..=2000).contains(&self.var_window_days) {
            return Err(ConfigError::invalid(
                "risk.var_window_days",
                "must be in 1..=2000",
            ));
        }
        let b = &self.breakers;
        if b.reject_threshold > 0 && b.reject_window < b.reject_threshold {
            return Err(ConfigError::invalid(
                "risk.breakers.reject_window",
                "must be >= reject_threshold",
            ));
        }
        if let Some(l) = &self.limits
            && let Err(e) = l.validate()
        {
            return Err(ConfigError::invalid(
                format!("risk.limits.{}", e.field),
                e.reason,
            ));
        }
        if self.claim_idle_ms == 0 {
            return Err(ConfigError::invalid(
                "risk.claim_idle_ms",
                "must be positive",
            ));
        }
        if self.account.is_empty() {
            return Err(ConfigError::invalid("risk.account", "required"));
        }
        if !self.consumer_name.is_empty() && ConsumerName::parse(&self.consumer_name).is_err() {
            return Err(ConfigError::invalid(
                "risk.consumer_name",
                "not a valid consumer name",
            ));
        }
        Ok(())
    }
}

impl RiskSettings {
    /// The fold's settings.
    #[must_use]
    pub fn fold(&self) -> Settings {
        Settings {
            initial_equity: self.initial_equity,
            breakers: self.breakers.clone(),
            var_window_days: self.var_window_days,
            pending_ttl_minutes: self.pending_ttl_minutes,
        }
    }
}

/// Built-in configuration defaults for the embedded runner (no own section):
/// the ports of docs/conventions.md.
pub fn defaults() -> Config<()> {
    Config {
        common: CommonConfig::with_ports(50054, 9104),
        service: (),
    }
}

/// Built-in defaults with the `[risk]` section, for the service binary.
pub fn defaults_with_settings() -> Config<RiskSettings> {
    Config {
        common: CommonConfig::with_ports(50054, 9104),
        service: RiskSettings::default(),
    }
}

/// `build` with the default `[risk]` settings.
pub async fn build(config: Config<()>, infra: Infra) -> Result<Server, KitError> {
    build_with_settings(
        Config {
            common: config.common,
            service: RiskSettings::default(),
        },
        infra,
    )
    .await
}

/// For `grodt up`: the common sections come from the runner (its ports),
/// `[risk]` from `source`.
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

/// Rebuilds the state from the journal, binds the gRPC and HTTP listeners
/// and starts the three consumers; the returned server runs with
/// `run_until_stopped`, and the consumers stop with it. `/readyz` follows
/// the bus and the store.
pub async fn build_with_settings(
    config: Config<RiskSettings>,
    infra: Infra,
) -> Result<Server, KitError> {
    let metrics = Metrics::new(NAME, env!("CARGO_PKG_VERSION"))?;
    let s = &config.service;
    let own = metrics::RiskMetrics::register(&metrics, &s.account)?;
    let engine = Arc::new(Engine::new(infra.store.clone(), infra.bus.clone(), own));
    engine
        .recover(s.fold(), s.limits.clone())
        .await
        .map_err(|e| KitError::Dependency {
            key: "database.url",
            reason: format!("rebuilding the risk state from the journal: {e}"),
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
        key: "risk.consumer_name",
        reason: e.to_string(),
    };
    let consumer_name = ConsumerName::parse(&instance).map_err(bad)?;
    let mut consumers = Vec::new();
    for (name, kind) in [
        (INTENTS_STREAM, Kind::Intents),
        (FILLS_STREAM, Kind::Fills),
        (BARS_STREAM, Kind::Bars),
    ] {
        let mut cc = ConsumerConfig::new(
            StreamName::parse(name).map_err(bad)?,
            GroupName::parse(GROUP).map_err(bad)?,
            consumer_name.clone(),
        );
        cc.min_idle = Duration::from_millis(s.claim_idle_ms);
        cc.claim_every = Duration::from_millis(s.claim_idle_ms.min(5_000));
        // The state is a fold of each stream: a failed input is retried
        // before any input behind it (an outage must not reorder bars).
        cc.ordered = true;
        let consumer = Consumer::new(
            infra.bus.clone(),
            Arc::new(StreamHandler(engine.clone(), kind)),
            cc,
        );
        consumer
            .ensure_group()
            .await
            .map_err(|e| KitError::Dependency {
                key: "redis.url",
                reason: e.to_string(),
            })?;
        consumers.push(consumer);
    }
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
    .add_service(RiskServiceServer::new(RiskApi::new(engine.clone(), stop)))
    .bind()
    .await?;
    let (watcher, lag_stop) = (engine.clone(), stop_rx.clone());
    tokio::spawn(async move { watcher.watch_lag(Duration::from_secs(5), lag_stop).await });
    for consumer in consumers {
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            if let Err(e) = consumer.run(stopped).await {
                tracing::error!(error = %e, "risk consumer stopped");
            }
        });
    }
    Ok(server)
}
