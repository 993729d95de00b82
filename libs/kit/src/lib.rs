//! Service kit shared by every GRODT service: layered config, telemetry, the
//! HTTP `/metrics` `/healthz` `/readyz` listener, gRPC health and reflection,
//! tower middleware, graceful shutdown and the single error-to-Status mapping.
//!
//! A service's `main` is: [`config::load`] (exit 64 on error), [`telemetry::init`],
//! [`GrpcServerBuilder`] with its tonic services, `bind`, then
//! `run_until_stopped(shutdown_signal())`.
//!
//! Architecture invariant: the kit knows no service contract. It never depends
//! on grodt-proto (services hand it their descriptor bytes and tonic services)
//! and takes only `ErrorKind`/`Classify` from grodt-core.

pub mod alloc;
pub mod auth;
pub mod config;
pub mod grpc;
pub mod http;
pub mod infra;
pub mod journal;
pub mod lag;
pub mod metrics;
pub mod runner;
pub mod status;
pub mod telemetry;

pub use config::{CommonConfig, Config, ConfigError, ConfigSource, Secret, ServiceConfig};
pub use grpc::{GrpcServerBuilder, Server, shutdown_signal};
pub use http::{Readiness, ReadinessCheck};
pub use infra::Infra;
pub use metrics::Metrics;
pub use status::{to_status, unimplemented};
pub use telemetry::{TelemetryGuard, TraceContextInterceptor};

use grodt_core::error::{Classify, ErrorKind};

/// Everything the kit can fail at; messages name the key or listener at fault.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// Configuration could not be loaded or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("{key}: cannot bind {addr}: {source}")]
    Bind {
        /// The config key holding the address.
        key: &'static str,
        /// The address that was asked for.
        addr: std::net::SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// Logging or trace export could not be set up.
    #[error("telemetry: {0}")]
    Telemetry(String),
    /// A metric could not be created or rendered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A reflection descriptor set is malformed.
    #[error("reflection descriptor set: {0}")]
    Reflection(String),
    /// A dependency (Redis, the database) could not be reached or set up.
    #[error("{key}: {reason}")]
    Dependency {
        /// The config key of the dependency.
        key: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A listener failed while serving.
    #[error("serving: {0}")]
    Serve(String),
}

impl Classify for KitError {
    fn kind(&self) -> ErrorKind {
        match self {
            KitError::Config(_) => ErrorKind::InvalidArgument,
            KitError::Bind { .. } | KitError::Serve(_) | KitError::Dependency { .. } => {
                ErrorKind::Unavailable
            }
            KitError::Telemetry(_) | KitError::Metrics(_) | KitError::Reflection(_) => {
                ErrorKind::Internal
            }
        }
    }
}
