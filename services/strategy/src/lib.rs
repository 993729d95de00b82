//! `grodt-strategy`: deployed strategy instances, their state, regime gating
//! and capital allocation.
//!
//! # Design
//!
//! **Reports are the clock.** An instance is one registered strategy
//! (`grodt_strategies::registry`) per symbol, each driven by a
//! `grodt_paper::runner::Runner`. Runners are fed execution's
//! `ExecutionReportEvent`s (`grodt.execution-reports.v1`): one per input the
//! paper venue applied, a bar with every fill and order change the venue
//! made on it, or what an order or cancellation did at once. A bar reaches a
//! strategy only after the venue has filled what that bar filled, which is
//! the backtest loop's order, so the same strategy on the same bars makes
//! the fills of `run_backtest` (tests/api/parity.rs). Bars do not come from
//! `grodt.bars.v1` directly for that reason. A report's bar is shown to an
//! instance only if it is RUNNING and the bar is of its timeframe; every
//! non-FAILED, started instance books its fills and order changes
//! (`state::Record::Report`).
//!
//! **Journal.** The service is a deterministic fold ([`state::State`]) of
//! its inputs: Deploy/Start/Pause/Stop commands, execution reports, risk
//! rejections (`RiskEvent` ORDER_REJECTED on `grodt.risk-events.v1`, handed
//! to `Runner::on_refused`) and regime changes (`grodt.regimes.v1`, shown in
//! the state). One tokio mutex serializes them; each is journaled (store
//! journal, consumer `strategy`) with the intents it produced in one
//! transaction, then the intents are published and the input acked. A
//! redelivered input republishes its stored intents; a restart replays the
//! journal, which rebuilds every runner exactly (indicators, mirrored
//! orders, ledgers). Time in the fold comes only from inputs (bar times; a
//! command's time is taken once and journaled with it). Reports read
//! together are journaled in one transaction (group commit,
//! `Engine::on_reports`): folded in order, committed at once, then their
//! intents published in order; the same effects and ids as one at a time.
//!
//! **Deterministic ids.** Client order ids are the runner's
//! (`<instance>-<n>`, `grodt_paper::ids`); an intent's envelope event id is
//! a UUID v7 derived from its client order id and decision bar time
//! ([`engine::intent_event_id`]), so a republished or re-decided intent is
//! the same event and downstream dedupes it.
//!
//! Code map: `state` (the fold, validation), `engine` (mutex, journal,
//! publish, consumers, the ordered drain of pending reports), `grpc`
//! (handlers), `convert` (every protobuf <-> domain conversion, including
//! [`convert::report_to_proto`] / [`convert::report_from_proto`]), `metrics`.
//! docs/strategies.md ("Deployed instances") is the contract.

pub mod convert;
pub mod engine;
mod error;
pub mod grpc;
pub mod metrics;
pub mod state;

pub use error::{StrategySvcError, to_status};
pub use grpc::StrategyApi;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use grodt_bus::consumer::{Consumer, ConsumerConfig};
use grodt_bus::{ConsumerName, GroupName, StreamName};
use grodt_kit::config::{self as kit_config, ConfigError, ConfigSource, ServiceConfig};
use grodt_kit::{CommonConfig, Config, GrpcServerBuilder, Infra, KitError, Metrics, Server};
use grodt_paper::instruments::Instruments;
use grodt_proto::v1::strategy_service_server::StrategyServiceServer;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::server::NamedService;

use crate::engine::{
    Engine, GROUP, Kind, REGIMES_STREAM, REPORTS_STREAM, RISK_STREAM, StreamHandler,
};
use crate::state::InstanceSpec;

/// The service's name in logs, metrics and configuration.
pub const NAME: &str = "strategy";

/// The fully-qualified gRPC service, as health and reflection name it.
pub const GRPC_SERVICE: &str = <StrategyServiceServer<StrategyApi> as NamedService>::NAME;

/// An instance deployed from configuration (`[[strategy.instances]]`), the
/// fields of `DeployRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// 1..64 chars of `[A-Za-z0-9_-]`.
    pub instance_id: String,
    /// A registry name.
    pub strategy_name: String,
    /// Parameters as text.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Symbols.
    pub symbols: Vec<String>,
    /// Bar length label: 1m 5m 15m 30m 1h 4h 1d 1w 1M.
    pub timeframe: String,
    /// Regime names (docs/regimes.md) in which entries are allowed; empty = all.
    #[serde(default)]
    pub allowed_regimes: Vec<String>,
    /// Capital (quoted decimal).
    pub capital: Decimal,
    /// Start at once when first deployed.
    #[serde(default)]
    pub start: bool,
}

impl InstanceConfig {
    /// As a spec.
    ///
    /// # Errors
    /// An unknown timeframe or regime name (named).
    pub fn spec(&self) -> Result<InstanceSpec, String> {
        let timeframe = convert::timeframe_from_label(&self.timeframe)
            .ok_or_else(|| format!("timeframe: unknown {:?}", self.timeframe))?;
        let allowed_regimes = self
            .allowed_regimes
            .iter()
            .map(|n| {
                grodt_regimes::Regime::ALL
                    .into_iter()
                    .find(|r| r.name() == n)
                    .map(|r| convert::regime_to_proto(r) as i32)
                    .ok_or_else(|| format!("allowed_regimes: unknown regime {n:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(InstanceSpec {
            instance_id: self.instance_id.clone(),
            strategy_name: self.strategy_name.clone(),
            params: self.params.clone(),
            symbols: self.symbols.clone(),
            timeframe: timeframe as i32,
            allowed_regimes,
            capital: self.capital,
        })
    }
}

/// A portfolio run from its file (`[strategy.portfolio]`, docs/portfolio.md):
/// every strategy of the file deployed as an instance (its id, registry
/// name, parameters and symbols) with the capital the portfolio desk opens
/// its sub-ledger with. Execution's portfolio broker (grodt-paper's
/// `desk::PortfolioBroker`) runs the allocation, limits and netting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortfolioConfig {
    /// The portfolio file, as `grodt backtest --portfolio` reads it.
    pub file: std::path::PathBuf,
    /// Bar length label of the bars the members trade: 1m ... 1M.
    pub timeframe: String,
    /// Start the members at once when first deployed.
    #[serde(default)]
    pub start: bool,
    /// Decimal places of money (the engine config's `cost_dp`), which the
    /// opening capital is rounded down to.
    #[serde(default = "default_cost_dp")]
    pub cost_dp: u32,
}

fn default_cost_dp() -> u32 {
    grodt_sim::config::BacktestConfig::default().cost_dp
}

impl PortfolioConfig {
    /// The members as configured instances, in file order.
    ///
    /// # Errors
    /// An unreadable or invalid file, or an allocation it cannot open
    /// with (named).
    pub fn instances(&self) -> Result<Vec<InstanceConfig>, String> {
        let path = self.file.display();
        let text = std::fs::read_to_string(&self.file).map_err(|e| format!("file {path}: {e}"))?;
        let file = grodt_portfolio::file::PortfolioFile::parse(&text)
            .map_err(|e| format!("file {path}: {e}"))?;
        let capital = file
            .opening_capital(self.cost_dp)
            .map_err(|e| format!("file {path}: {e}"))?;
        Ok(file
            .strategies
            .iter()
            .zip(capital)
            .map(|(e, capital)| InstanceConfig {
                instance_id: e.id.clone(),
                strategy_name: e.name.clone(),
                params: e.param_text(),
                symbols: e.symbols.clone(),
                timeframe: self.timeframe.clone(),
                allowed_regimes: Vec::new(),
                capital,
                start: self.start,
            })
            .collect())
    }
}

/// The `[strategy]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategySettings {
    /// Symbol grids (the same as execution's `[execution.instruments]`).
    pub instruments: Instruments,
    /// This instance's consumer name; empty = `strategy-<pid>-<uuid>`.
    pub consumer_name: String,
    /// How long a risk or regime event may sit unacked before it is taken
    /// over (reports are drained in order at start regardless).
    pub claim_idle_ms: u64,
    /// Instances deployed at start (idempotent by id).
    pub instances: Vec<InstanceConfig>,
    /// A portfolio whose strategies are deployed at start, after
    /// `instances` (idempotent by id).
    pub portfolio: Option<PortfolioConfig>,
}

impl Default for StrategySettings {
    fn default() -> Self {
        Self {
            instruments: Instruments::default(),
            consumer_name: String::new(),
            claim_idle_ms: 30_000,
            instances: Vec::new(),
            portfolio: None,
        }
    }
}

impl StrategySettings {
    /// Every instance to deploy at start with its config key: `instances`,
    /// then the portfolio's members.
    ///
    /// # Errors
    /// A portfolio file that cannot be read or used (named).
    pub fn configured_instances(&self) -> Result<Vec<(String, InstanceConfig)>, ConfigError> {
        let mut out: Vec<(String, InstanceConfig)> = self
            .instances
            .iter()
            .enumerate()
            .map(|(k, i)| (format!("strategy.instances[{k}]"), i.clone()))
            .collect();
        if let Some(p) = &self.portfolio {
            let members = p
                .instances()
                .map_err(|e| ConfigError::invalid("strategy.portfolio", e))?;
            out.extend(members.into_iter().map(|i| {
                (
                    format!("strategy.portfolio (strategy {:?})", i.instance_id),
                    i,
                )
            }));
        }
        Ok(out)
    }
}

impl ServiceConfig for StrategySettings {
    const SECTION: Option<&'static str> = Some("strategy");

    fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = self.instruments.validate() {
            return Err(ConfigError::invalid("strategy.instruments", e));
        }
        if self.claim_idle_ms == 0 {
            return Err(ConfigError::invalid(
                "strategy.claim_idle_ms",
                "must be positive",
            ));
        }
        if !self.consumer_name.is_empty() && ConsumerName::parse(&self.consumer_name).is_err() {
            return Err(ConfigError::invalid(
                "strategy.consumer_name",
                "not a valid consumer name",
            ));
        }
        for (key, i) in self.configured_instances()? {
            let spec = i.spec().map_err(|e| ConfigError::invalid(&key, e))?;
            spec.validate(&self.instruments)
                .map_err(|e| ConfigError::invalid(&key, e))?;
        }
        Ok(())
    }
}

/// Built-in configuration defaults for the embedded runner (no own section):
/// the ports of docs/conventions.md.
pub fn defaults() -> Config<()> {
    Config {
        common: CommonConfig::with_ports(50053, 9103),
        service: (),
    }
}

/// Built-in defaults with the `[strategy]` section, for the service binary.
pub fn defaults_with_settings() -> Config<StrategySettings> {
    Config {
        common: CommonConfig::with_ports(50053, 9103),
        service: StrategySettings::default(),
    }
}

/// `build` with the default `[strategy]` settings (no instruments: every
/// deployment is refused until some are configured).
pub async fn build(config: Config<()>, infra: Infra) -> Result<Server, KitError> {
    build_with_settings(
        Config {
            common: config.common,
            service: StrategySettings::default(),
        },
        infra,
    )
    .await
}

/// For `grodt up`: the common sections come from the runner (its ports),
/// `[strategy]` from `source`.
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

/// Rebuilds the state from the journal, applies any pending reports in
/// order, deploys the configured instances, binds the gRPC and HTTP listeners
/// and starts the consumers; the returned server runs with
/// `run_until_stopped`, and the consumers stop with it.
pub async fn build_with_settings(
    config: Config<StrategySettings>,
    infra: Infra,
) -> Result<Server, KitError> {
    let metrics = Metrics::new(NAME, env!("CARGO_PKG_VERSION"))?;
    let s = &config.service;
    let own = metrics::StrategyMetrics::register(&metrics)?;
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
        key: "strategy.consumer_name",
        reason: e.to_string(),
    };
    let consumer_name = ConsumerName::parse(&instance).map_err(bad)?;
    let engine = Arc::new(Engine::new(
        infra.store.clone(),
        infra.bus.clone(),
        own,
        s.instruments.clone(),
        consumer_name.clone(),
    ));
    let db = |e: StrategySvcError| KitError::Dependency {
        key: "database.url",
        reason: format!("rebuilding the strategy state from the journal: {e}"),
    };
    drop(engine.lock().await.map_err(db)?);
    let mut consumers = Vec::new();
    for (name, kind) in [
        (REPORTS_STREAM, Kind::Reports),
        (RISK_STREAM, Kind::Risk),
        (REGIMES_STREAM, Kind::Regimes),
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
    // Reports a dead predecessor left pending go first, in stream order.
    engine
        .drain_reports()
        .await
        .map_err(|e| KitError::Dependency {
            key: "redis.url",
            reason: format!("applying pending execution reports: {e}"),
        })?;
    // Then the configured instances (after what was pending before the restart).
    for (key, i) in s.configured_instances().map_err(KitError::Config)? {
        let spec = i
            .spec()
            .map_err(|e| KitError::Config(ConfigError::invalid(&key, e)))?;
        engine
            .command(
                |state, at| grpc::decide_deploy(state, spec, i.start, at),
                |_| Ok(()),
            )
            .await
            .map_err(|e| match e {
                StrategySvcError::Invalid { .. } | StrategySvcError::AlreadyExists(_) => {
                    KitError::Config(ConfigError::invalid(&key, e))
                }
                other => db(other),
            })?;
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
    .add_service(StrategyServiceServer::new(StrategyApi::new(
        engine.clone(),
        stop,
    )))
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
                tracing::error!(error = %e, "strategy consumer stopped");
            }
        });
    }
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_portfolio(file: &str) -> StrategySettings {
        StrategySettings {
            portfolio: Some(PortfolioConfig {
                file: file.into(),
                timeframe: "1d".into(),
                start: true,
                cost_dp: default_cost_dp(),
            }),
            ..StrategySettings::default()
        }
    }

    #[test]
    fn a_portfolio_file_that_cannot_be_read_or_traded_is_named() {
        let e = with_portfolio("/nonexistent/portfolio.toml")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("strategy.portfolio") && e.contains("/nonexistent/portfolio.toml"),
            "{e}"
        );
        // The example, with no instruments configured: the member and the
        // symbol are named.
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/portfolio.toml");
        let e = with_portfolio(example).validate().unwrap_err().to_string();
        assert!(e.contains("strategy \"trend\"") && e.contains("SPY"), "{e}");
    }

    #[test]
    fn the_example_portfolio_deploys_its_members_with_the_desks_opening_capital() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/portfolio.toml");
        let members = with_portfolio(example)
            .portfolio
            .unwrap()
            .instances()
            .unwrap();
        let ids: Vec<&str> = members.iter().map(|m| m.instance_id.as_str()).collect();
        assert_eq!(ids, ["trend", "short", "pair"]);
        assert_eq!(members[2].symbols, ["AAPL", "SPY"]);
        let total: Decimal = members.iter().map(|m| m.capital).sum();
        // Inverse volatility with no history yet: equal thirds of 300,000.
        assert!(total <= Decimal::from(300_000), "{total}");
        assert!(members.iter().all(|m| m.capital > Decimal::from(99_999)));
        assert!(members.iter().all(|m| m.start && m.timeframe == "1d"));
    }
}
