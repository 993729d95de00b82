//! `grodt-execution`: the order lifecycle, the paper broker, positions, the
//! account and reconciliation.
//!
//! # A journaled state machine
//!
//! The service's state is one `grodt_paper::broker::Broker` (the trading
//! core's venue: every fill, cost and ledger rule of a backtest) and a few
//! books beside it (orders refused before the venue, the creation order of
//! orders, the latest close per symbol), all behind one
//! `tokio::sync::Mutex`. The state is the fold of its **inputs**, applied
//! one at a time in the order they are journaled:
//!
//! - a bar (`grodt.bars.v1`, consumer group `execution`; journal source:
//!   the envelope's event id),
//! - an order approved by risk (`grodt.orders.v1`; source: the event id),
//!   or submitted by an operator (SubmitOrder; source `submit:<client order id>`),
//! - a cancellation (CancelOrder; source `cancel:<client order id>:<n>`,
//!   `n` counting that order's cancellations),
//! - an order refused before the venue (an unknown symbol), journaled as
//!   such so a replay needs neither the configuration of the day nor the
//!   broker to refuse it again.
//!
//! For each input, under the mutex:
//!
//! 1. **Republish.** If the store's journal holds the source already (a
//!    redelivery, a retried command), the outputs stored with it are
//!    published again, under the same event ids, and the input is acked.
//! 2. **Apply and journal.** Otherwise the input is applied to the broker
//!    and, in one transaction, appended to the journal with its **outputs**
//!    (the broker's `Report`: the bar, the fills and order changes in the
//!    venue's order); then the events are published and the input acked.
//! 3. **Outputs.** One `ExecutionReportEvent` per input on
//!    `grodt.execution-reports.v1` (also for a bar that changed nothing: it
//!    is the strategy service's clock), its `sequence` the journal seq; one
//!    `FillEvent` per fill on `grodt.fills.v1`. Every id is derived from what
//!    caused it (`convert`: the report's from the journal source, the fill's
//!    and its event's from the venue's fill sequence, the order's from its
//!    client order id), so a republished event is the same event and
//!    consumers drop it by id.
//! 4. **Rebuild.** At start the whole journal is replayed into a fresh
//!    broker (checking each replayed report against the journaled one); if
//!    a commit fails, or the broker may hold a half-applied input, the state
//!    is marked dirty and rebuilt the same way before the next input. A
//!    symbol covered only by `instruments.default` joins the broker when
//!    first seen, by a rebuild with it appended (the broker's instrument
//!    order is: listed symbols, then the others in order of first
//!    appearance in the journal, so every rebuild gets the same broker).
//!
//! **Group commit.** Bars read together from the bus (a consumer that fell
//! behind reads up to 64) are applied in order and journaled in **one**
//! transaction, then their events published in order and the batch acked
//! (`Engine::on_bars`): the same effects, events and ids as one bar at a
//! time, at one `fdatasync` per batch instead of one per bar. A redelivered
//! bar or a rebuild (a symbol first seen) in the middle first commits what
//! is staged; a failed commit fails the bars from the first staged one on
//! (they are handled again after the rebuild). Orders stay one at a time.
//!
//! **Publication order.** If the bus fails after an input's commit, its
//! source is kept (`State::unpublished`) and its events are published again
//! before any other input is handled, by either consumer or a command: the
//! reports stream keeps the journal's order (an order's acceptance before
//! the bar that fills it) across an outage (tests/api/ordering.rs).
//!
//! A kill -9 at any point loses nothing: before the commit the input is
//! redelivered (this service's pending entries are handled first on
//! restart) and applied once; after it, its outputs are republished.
//! Inputs that change nothing are acked without a report: a bar not after
//! its symbol's last one (stale: a redelivery or a replay overlap), a bar of
//! an unknown symbol, an order whose client order id exists (the same order:
//! a no-op; a different one: logged as an error).
//!
//! The service is a single writer: one instance per account (a second one
//! would apply inputs the first never saw to a broker of its own).
//!
//! After the rebuild at start (and every minute) `reconcile` recomputes the
//! cash and positions from the fills and compares them with the ledger; the
//! report is logged as one JSON line and its number of breaks exported as
//! `grodt_execution_reconciliation_breaks`.
//!
//! Every order event (submitted, accepted, triggered, filled, cancelled,
//! rejected, expired, and each fill) is logged as one structured line with
//! target `audit`. Orders carry no secrets; the service logs no request
//! metadata.
//!
//! Code map: `engine` (the state, the journal, the consumers), `grpc` (the
//! handlers), `convert` (every protobuf conversion and the derived ids),
//! `reconcile` (pure), `metrics`, `error` (one error type, one mapping to
//! `Status`).

pub mod convert;
pub mod engine;
mod error;
mod grpc;
pub mod metrics;
pub mod reconcile;

pub use error::ExecError;
pub use grpc::ExecutionApi;

use std::sync::Arc;
use std::time::Duration;

use grodt_bus::consumer::{Consumer, ConsumerConfig};
use grodt_bus::{ConsumerName, GroupName, StreamName};
use grodt_kit::config::{self as kit_config, ConfigError, ConfigSource, ServiceConfig};
use grodt_kit::{CommonConfig, Config, GrpcServerBuilder, Infra, KitError, Metrics, Server};
use grodt_paper::PaperError;
use grodt_paper::instruments::Instruments;
use grodt_proto::v1::execution_service_server::ExecutionServiceServer;
use grodt_sim::SimError;
use grodt_sim::config::{BacktestConfig, FillTiming};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::server::NamedService;

use crate::engine::{BARS_STREAM, Engine, EngineSettings, GROUP, InputHandler, ORDERS_STREAM};

/// The service's name in logs, metrics and configuration.
pub const NAME: &str = "execution";

/// The fully-qualified gRPC service, as health and reflection name it.
pub const GRPC_SERVICE: &str = <ExecutionServiceServer<ExecutionApi> as NamedService>::NAME;

/// The `[execution]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutionSettings {
    /// `[execution.instruments]`: the symbols traded and their grids
    /// (`symbols.<SYMBOL>` with `price_precision`, `size_precision`, and an
    /// optional `default`); the same as the strategy service's.
    pub instruments: Instruments,
    /// `[execution.venue]`: the venue's starting cash and its fill, cost,
    /// latency and margin models, as a backtest's (`grodt_sim`'s
    /// `BacktestConfig`; `fill_timing` must stay `NextOpen`).
    pub venue: BacktestConfig,
    /// The paper account's id (GetAccount).
    pub account_id: String,
    /// The account's currency, ISO 4217 (GetAccount).
    pub currency: String,
    /// This instance's consumer name; empty = `execution-<pid>-<uuid>`.
    pub consumer_name: String,
    /// How long an entry may sit unacked before it is taken over.
    pub claim_idle_ms: u64,
    /// A portfolio file (docs/portfolio.md) the account runs: its members'
    /// orders (their `strategy_id` is the member id) go through the
    /// portfolio desk: sub-ledgers, allocation, rebalancing, whole-book
    /// limits, netting. The venue's models and cash stay `[execution.venue]`
    /// (its `starting_cash` must be the file's `cash`); the file's symbols
    /// must be among the instruments. Unset = one venue, independent
    /// instances.
    pub portfolio: Option<std::path::PathBuf>,
}

impl ExecutionSettings {
    /// The configured portfolio file, read and checked against the venue
    /// and the instruments.
    ///
    /// # Errors
    /// `execution.portfolio` named with what is wrong.
    pub fn portfolio_file(
        &self,
    ) -> Result<Option<grodt_portfolio::file::PortfolioFile>, ConfigError> {
        let Some(path) = &self.portfolio else {
            return Ok(None);
        };
        let bad = |e: String| ConfigError::invalid("execution.portfolio", e);
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("{shown}: {e}")))?;
        let file = grodt_portfolio::file::PortfolioFile::parse(&text)
            .map_err(|e| bad(format!("{shown}: {e}")))?;
        file.plan().map_err(|e| bad(format!("{shown}: {e}")))?;
        if file.cash != self.venue.starting_cash {
            return Err(bad(format!(
                "{shown}: its cash {} is not execution.venue.starting_cash {}",
                file.cash, self.venue.starting_cash
            )));
        }
        for s in file.symbols() {
            self.instruments
                .resolve(s)
                .map_err(|e| bad(format!("{shown}: {e}")))?;
        }
        // The desk trades on the venue's costs; the file's backtest on its
        // own [costs]. Different ones would make paper differ from the
        // backtest without a word, so the start refuses them.
        let costs = file
            .engine_config()
            .map_err(|e| bad(format!("{shown}: {e}")))?;
        let v = &self.venue;
        // The first field that differs.
        let differing = differs("commission", &v.commission, &costs.commission)
            .or_else(|| differs("slippage", &v.slippage, &costs.slippage))
            .or_else(|| differs("borrow_rate", &v.borrow_rate, &costs.borrow_rate))
            .or_else(|| differs("financing_rate", &v.financing_rate, &costs.financing_rate))
            .or_else(|| {
                differs(
                    "max_participation",
                    &v.max_participation,
                    &costs.max_participation,
                )
            });
        if let Some((field, values)) = differing {
            return Err(ConfigError::invalid(
                format!("execution.venue.{field}"),
                format!(
                    "differs from the [costs] of {shown} (venue {values} in the file): the \
                     portfolio's paper fills would not equal its backtest"
                ),
            ));
        }
        Ok(Some(file))
    }
}

/// `field` with both values (the venue's first) when they differ.
fn differs<T: PartialEq + std::fmt::Debug>(
    field: &'static str,
    venue: &T,
    file: &T,
) -> Option<(&'static str, String)> {
    (venue != file).then(|| (field, format!("{venue:?} against {file:?}")))
}

impl Default for ExecutionSettings {
    fn default() -> Self {
        Self {
            instruments: Instruments::default(),
            venue: BacktestConfig::default(),
            account_id: "paper".into(),
            currency: "USD".into(),
            consumer_name: String::new(),
            claim_idle_ms: 30_000,
            portfolio: None,
        }
    }
}

impl ServiceConfig for ExecutionSettings {
    const SECTION: Option<&'static str> = Some("execution");

    fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = self.instruments.validate() {
            return Err(match e {
                PaperError::Invalid { field, reason } => {
                    ConfigError::invalid(format!("execution.{field}"), reason)
                }
                other => ConfigError::invalid("execution.instruments", other),
            });
        }
        if let Err(e) = self.venue.validate() {
            return Err(match e {
                SimError::InvalidConfig { field, reason } => {
                    ConfigError::invalid(format!("execution.venue.{field}"), reason)
                }
                other => ConfigError::invalid("execution.venue", other),
            });
        }
        if self.venue.fill_timing == FillTiming::SameBarClose {
            return Err(ConfigError::invalid(
                "execution.venue.fill_timing",
                "same-bar-close fills cannot be traded live; use NextOpen",
            ));
        }
        if self.account_id.is_empty() || self.account_id.len() > 64 {
            return Err(ConfigError::invalid(
                "execution.account_id",
                "must be 1..64 chars",
            ));
        }
        let c = &self.currency;
        if !(3..=8).contains(&c.len()) || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ConfigError::invalid(
                "execution.currency",
                "3..8 uppercase letters (ISO 4217)",
            ));
        }
        self.portfolio_file()?;
        if self.claim_idle_ms == 0 {
            return Err(ConfigError::invalid(
                "execution.claim_idle_ms",
                "must be positive",
            ));
        }
        if !self.consumer_name.is_empty() && ConsumerName::parse(&self.consumer_name).is_err() {
            return Err(ConfigError::invalid(
                "execution.consumer_name",
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
        common: CommonConfig::with_ports(50055, 9105),
        service: (),
    }
}

/// Built-in defaults with the `[execution]` section, for the service binary.
pub fn defaults_with_settings() -> Config<ExecutionSettings> {
    Config {
        common: CommonConfig::with_ports(50055, 9105),
        service: ExecutionSettings::default(),
    }
}

/// `build` with the default `[execution]` settings.
pub async fn build(config: Config<()>, infra: Infra) -> Result<Server, KitError> {
    build_with_settings(
        Config {
            common: config.common,
            service: ExecutionSettings::default(),
        },
        infra,
    )
    .await
}

/// For `grodt up`: the common sections come from the runner (its ports),
/// `[execution]` from `source`.
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

fn dependency(key: &'static str) -> impl Fn(ExecError) -> KitError {
    move |e| KitError::Dependency {
        key,
        reason: e.to_string(),
    }
}

/// Replays the journal into the broker, reconciles, binds the gRPC and
/// HTTP listeners and starts the two consumers (after handling the entries
/// left pending by an earlier life); the returned server runs with
/// `run_until_stopped`, and the consumers stop with it. `/readyz` follows
/// the bus and the store.
pub async fn build_with_settings(
    config: Config<ExecutionSettings>,
    infra: Infra,
) -> Result<Server, KitError> {
    let metrics = Metrics::new(NAME, env!("CARGO_PKG_VERSION"))?;
    let s = &config.service;
    let own = metrics::ExecMetrics::register(&metrics, &s.account_id)?;
    let engine = Engine::start(
        infra.store.clone(),
        infra.bus.clone(),
        EngineSettings {
            venue: s.venue.clone(),
            instruments: s.instruments.clone(),
            portfolio: s.portfolio_file().map_err(KitError::Config)?,
        },
        own,
    )
    .await
    .map_err(dependency("database.url"))?;
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
        key: "execution.consumer_name",
        reason: e.to_string(),
    };
    let consumer_name = ConsumerName::parse(&instance).map_err(bad)?;
    let mut consumers = Vec::new();
    for name in [ORDERS_STREAM, BARS_STREAM] {
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
            Arc::new(InputHandler(engine.clone())),
            cc,
        );
        consumer
            .ensure_group()
            .await
            .map_err(|e| KitError::Dependency {
                key: "redis.url",
                reason: e.to_string(),
            })?;
        consumers.push((name, consumer));
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
    .add_service(ExecutionServiceServer::new(ExecutionApi::new(
        engine.clone(),
        s.account_id.clone(),
        s.currency.clone(),
        stop,
    )))
    .bind()
    .await?;
    let (watcher, watch_stop) = (engine.clone(), stop_rx.clone());
    tokio::spawn(async move { watcher.watch(Duration::from_secs(5), watch_stop).await });
    tokio::spawn(async move {
        // Orders first: an order left pending was decided before the bars
        // left pending after it.
        for name in [ORDERS_STREAM, BARS_STREAM] {
            match engine.recover_pending(name, &consumer_name).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    stream = name,
                    entries = n,
                    "handled entries left pending by an earlier consumer"
                ),
                Err(e) => {
                    tracing::warn!(stream = name, error = %e, "recovering pending entries failed")
                }
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (name, consumer) in consumers {
            let mut rx = stop_rx.clone();
            tasks.spawn(async move {
                let stopped = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                if let Err(e) = consumer.run(stopped).await {
                    tracing::error!(stream = name, error = %e, "execution consumer stopped");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_the_key() {
        let ok = ExecutionSettings::default();
        ok.validate().unwrap();
        let mut s = ok.clone();
        s.venue.starting_cash = grodt_core::Decimal::ZERO;
        assert_eq!(
            s.validate().unwrap_err().key(),
            "execution.venue.starting_cash"
        );
        let mut s = ok.clone();
        s.venue.fill_timing = FillTiming::SameBarClose;
        assert_eq!(
            s.validate().unwrap_err().key(),
            "execution.venue.fill_timing"
        );
        let mut s = ok.clone();
        s.claim_idle_ms = 0;
        assert_eq!(s.validate().unwrap_err().key(), "execution.claim_idle_ms");
        let mut s = ok.clone();
        s.currency = "usd".into();
        assert_eq!(s.validate().unwrap_err().key(), "execution.currency");
        let mut s = ok;
        s.instruments.default = Some(grodt_paper::instruments::InstrumentSpec {
            price_precision: 12,
            size_precision: 0,
        });
        assert!(
            s.validate()
                .unwrap_err()
                .key()
                .starts_with("execution.instruments")
        );
    }

    #[test]
    fn the_section_loads_from_toml_with_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("base.toml"),
            "[execution.venue]\nstarting_cash = \"25000\"\n\n\
             [execution.instruments.symbols.SPY]\nprice_precision = 2\nsize_precision = 0\n",
        )
        .unwrap();
        let source = ConfigSource {
            dir: dir.path().to_path_buf(),
            vars: [(
                "GRODT_EXECUTION__CLAIM_IDLE_MS".to_owned(),
                "1000".to_owned(),
            )]
            .into_iter()
            .collect(),
        };
        let c = kit_config::load(&source, &defaults_with_settings()).unwrap();
        assert_eq!(
            c.service.venue.starting_cash,
            grodt_core::Decimal::from(25_000)
        );
        assert_eq!(c.service.claim_idle_ms, 1000);
        assert_eq!(c.service.instruments.symbols["SPY"].price_precision, 2);
    }
}
