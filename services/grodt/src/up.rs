//! `grodt up`: all seven services in one process, on their own ports, with
//! the in-process event bus and an embedded SQLite store. Same contracts and
//! behaviour as the distributed deployment; nothing to install.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use grodt_bus::{BackPressure, InProcessBus};
use grodt_kit::config::{self, Config, ConfigError, ConfigSource};
use grodt_kit::{Infra, KitError, Server};
use grodt_store::Store;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Entries kept per stream by the in-process bus; twice the default
/// back-pressure backlog, as the bus requires.
const EMBEDDED_MAX_LEN: usize = 200_000;

type BuildFuture = Pin<Box<dyn Future<Output = Result<Server, KitError>> + Send>>;

/// Binds a service for the embedded runner: its config (the runner's ports),
/// the shared infrastructure, the configuration source (for a service's own
/// section) and the data directory (market-data and the backtest worker keep
/// their shared catalog under it; the others ignore both).
pub type Build = fn(Config<()>, Infra, ConfigSource, PathBuf) -> BuildFuture;

/// One of the seven services as the embedded runner sees it.
pub struct Member {
    /// The service's name (`market-data`, ...).
    pub name: &'static str,
    /// Its fully-qualified gRPC service (`grodt.v1.MarketDataService`).
    pub grpc_service: &'static str,
    /// Its built-in configuration, with its conventional ports.
    pub defaults: fn() -> Config<()>,
    /// Binds it against the given infrastructure.
    pub build: Build,
}

/// The seven services, in the order of docs/conventions.md.
pub fn members() -> [Member; 7] {
    [
        Member {
            name: grodt_market_data::NAME,
            grpc_service: grodt_market_data::GRPC_SERVICE,
            defaults: || Config {
                common: grodt_market_data::defaults().common,
                service: (),
            },
            build: |c, i, source, dir| {
                Box::pin(grodt_market_data::build_embedded(c, i, source, dir))
            },
        },
        Member {
            name: grodt_regime::NAME,
            grpc_service: grodt_regime::GRPC_SERVICE,
            defaults: grodt_regime::defaults,
            build: |c, i, source, dir| Box::pin(grodt_regime::build_embedded(c, i, source, dir)),
        },
        Member {
            name: grodt_strategy::NAME,
            grpc_service: grodt_strategy::GRPC_SERVICE,
            defaults: grodt_strategy::defaults,
            build: |c, i, source, _| Box::pin(grodt_strategy::build_embedded(c, i, source)),
        },
        Member {
            name: grodt_risk::NAME,
            grpc_service: grodt_risk::GRPC_SERVICE,
            defaults: grodt_risk::defaults,
            build: |c, i, source, _| Box::pin(grodt_risk::build_embedded(c, i, source)),
        },
        Member {
            name: grodt_execution::NAME,
            grpc_service: grodt_execution::GRPC_SERVICE,
            defaults: grodt_execution::defaults,
            build: |c, i, source, _| Box::pin(grodt_execution::build_embedded(c, i, source)),
        },
        Member {
            name: grodt_backtest_worker::NAME,
            grpc_service: grodt_backtest_worker::GRPC_SERVICE,
            defaults: grodt_backtest_worker::defaults,
            build: |c, i, source, dir| {
                Box::pin(grodt_backtest_worker::build_embedded(c, i, source, dir))
            },
        },
        Member {
            name: grodt_optimizer::NAME,
            grpc_service: grodt_optimizer::GRPC_SERVICE,
            defaults: grodt_optimizer::defaults,
            build: |c, i, source, _| Box::pin(grodt_optimizer::build_embedded(c, i, source)),
        },
    ]
}

/// Options of `grodt up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Holds the SQLite database (`grodt.sqlite`).
    pub data_dir: PathBuf,
    /// Bind every listener to port 0 instead of the conventional ports
    /// (tests, several instances on one machine).
    pub ephemeral_ports: bool,
    /// The address every listener binds (127.0.0.1 unless told otherwise: a
    /// laptop's services are not on the network by default).
    pub bind: IpAddr,
    /// Write the bound addresses here as JSON once every service listens.
    pub ports_file: Option<PathBuf>,
}

/// What can stop `grodt up`.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// A service's configuration is invalid (exit status 64).
    #[error("{service}: {source}")]
    Config {
        /// The service whose configuration failed.
        service: &'static str,
        /// What is wrong, naming the key.
        source: ConfigError,
    },
    /// The embedded store or bus could not be set up.
    #[error("embedded infrastructure: {0}")]
    Infra(String),
    /// A service failed to bind or while serving.
    #[error("{service}: {source}")]
    Service {
        /// The failing service.
        service: &'static str,
        /// Why.
        source: KitError,
    },
}

/// Loads every member's configuration. Ports come from each service's
/// defaults (port 0 with `ephemeral_ports`), the address from `bind`: one
/// `GRODT_GRPC__ADDR` cannot serve seven services, so the address overrides
/// are not read here; everything else layers as usual.
pub fn load_configs(
    source: &ConfigSource,
    ephemeral_ports: bool,
    bind: IpAddr,
) -> Result<Vec<(Member, Config<()>)>, UpError> {
    let mut source = source.clone();
    source
        .vars
        .retain(|k, _| !k.starts_with("GRODT_GRPC__") && !k.starts_with("GRODT_HTTP__"));
    let mut out = Vec::new();
    for member in members() {
        let mut cfg =
            config::load(&source, &(member.defaults)()).map_err(|source| UpError::Config {
                service: member.name,
                source,
            })?;
        for addr in [&mut cfg.common.grpc.addr, &mut cfg.common.http.addr] {
            *addr = SocketAddr::new(bind, if ephemeral_ports { 0 } else { addr.port() });
        }
        out.push((member, cfg));
    }
    Ok(out)
}

/// The embedded infrastructure: one in-process bus and one migrated SQLite
/// store shared by all services.
pub async fn embedded_infra(data_dir: &Path) -> Result<Infra, UpError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| UpError::Infra(format!("cannot create {}: {e}", data_dir.display())))?;
    let url = format!("sqlite://{}", data_dir.join("grodt.sqlite").display());
    let store = Store::connect(&url)
        .await
        .map_err(|e| UpError::Infra(format!("{url}: {e}")))?;
    store
        .migrate()
        .await
        .map_err(|e| UpError::Infra(format!("migrating {url}: {e}")))?;
    let bus = InProcessBus::new(BackPressure::default(), EMBEDDED_MAX_LEN)
        .map_err(|e| UpError::Infra(format!("in-process bus: {e}")))?;
    Ok(Infra {
        bus: Arc::new(bus),
        store,
    })
}

/// Binds all seven services; returns them with their addresses.
pub async fn bind_all(
    configs: Vec<(Member, Config<()>)>,
    infra: &Infra,
    source: &ConfigSource,
    data_dir: &Path,
) -> Result<Vec<(&'static str, Server)>, UpError> {
    let mut servers = Vec::new();
    for (member, cfg) in configs {
        let server = (member.build)(cfg, infra.clone(), source.clone(), data_dir.to_path_buf())
            .await
            .map_err(|source| UpError::Service {
                service: member.name,
                source,
            })?;
        servers.push((member.name, server));
    }
    Ok(servers)
}

/// Writes `{"<service>": {"grpc": addr, "http": addr}}`, atomically.
fn write_ports_file(path: &Path, servers: &[(&'static str, Server)]) -> std::io::Result<()> {
    let map: BTreeMap<&str, serde_json::Value> = servers
        .iter()
        .map(|(name, s)| {
            let addrs = serde_json::json!({
                "grpc": s.grpc_addr().to_string(),
                "http": s.http_addr().to_string(),
            });
            (*name, addrs)
        })
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&map).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

/// Runs until `shutdown` resolves or a service fails; then drains them all.
pub async fn run(
    options: UpOptions,
    source: ConfigSource,
    shutdown: impl Future<Output = ()>,
) -> Result<(), UpError> {
    let configs = load_configs(&source, options.ephemeral_ports, options.bind)?;
    let infra = embedded_infra(&options.data_dir).await?;
    let servers = bind_all(configs, &infra, &source, &options.data_dir).await?;

    for (name, server) in &servers {
        tracing::info!(service = name, grpc = %server.grpc_addr(), http = %server.http_addr(), "listening");
    }
    // The table goes to stdout in one piece, after the logs.
    println!(
        "grodt up: {} services, in-process bus, SQLite at {}",
        servers.len(),
        options.data_dir.join("grodt.sqlite").display()
    );
    for (name, server) in &servers {
        println!(
            "  {name:<16} grpc {:<22} http {}",
            server.grpc_addr(),
            server.http_addr()
        );
    }
    if let Some(path) = &options.ports_file {
        write_ports_file(path, &servers)
            .map_err(|e| UpError::Infra(format!("cannot write {}: {e}", path.display())))?;
    }
    println!("Ctrl-C (SIGINT) or SIGTERM stops and drains every service.");

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for (name, server) in servers {
        let mut rx = stop_rx.clone();
        tasks.spawn(async move {
            let stopped = async move {
                // A closed channel also means stop.
                let _ = rx.wait_for(|stop| *stop).await;
            };
            (name, server.run_until_stopped(stopped).await)
        });
    }

    let mut first_error = None;
    tokio::select! {
        () = shutdown => {}
        Some(joined) = tasks.join_next() => {
            // A service stopped by itself: that is a failure; stop the rest.
            first_error = Some(service_outcome(joined));
        }
    }
    let _ = stop_tx.send(true);
    while let Some(joined) = tasks.join_next().await {
        let outcome = service_outcome(joined);
        if first_error.is_none() {
            first_error = Some(outcome);
        }
    }
    infra.store.close().await;
    match first_error {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

fn service_outcome(
    joined: Result<(&'static str, Result<(), KitError>), tokio::task::JoinError>,
) -> Result<(), UpError> {
    match joined {
        Ok((_, Ok(()))) => Ok(()),
        Ok((service, Err(source))) => Err(UpError::Service { service, source }),
        Err(e) => Err(UpError::Infra(format!("a service task panicked: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_bind_the_given_address_on_the_conventional_ports() {
        let source = ConfigSource::default();
        let loopback: IpAddr = [127, 0, 0, 1].into();
        let configs = load_configs(&source, false, loopback).unwrap();
        assert_eq!(configs.len(), 7);
        for (member, cfg) in &configs {
            let defaults = (member.defaults)();
            for (addr, conventional) in [
                (cfg.common.grpc.addr, defaults.common.grpc.addr),
                (cfg.common.http.addr, defaults.common.http.addr),
            ] {
                assert_eq!(addr.ip(), loopback, "{} binds loopback", member.name);
                assert_eq!(addr.port(), conventional.port(), "{}", member.name);
            }
        }
        let every: IpAddr = [0, 0, 0, 0].into();
        for (_, cfg) in load_configs(&source, true, every).unwrap() {
            assert_eq!(cfg.common.grpc.addr, SocketAddr::new(every, 0));
        }
    }
}
