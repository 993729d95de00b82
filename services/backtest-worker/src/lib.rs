//! `grodt-backtest-worker`: backtests: synchronous runs and jobs from the shared `grodt.backtest-jobs.v1` consumer group.
//!
//! A thin shell: configuration -> the service kit -> serve. Domain logic lives
//! in the libraries; protobuf types stop at `grpc.rs`.

mod grpc;
pub mod run;

pub use grpc::BacktestApi;

use grodt_kit::{CommonConfig, Config, GrpcServerBuilder, Infra, KitError, Server};
use grodt_proto::v1::backtest_service_server::BacktestServiceServer;
use tonic::server::NamedService;

/// The service's name in logs, metrics and configuration.
pub const NAME: &str = "backtest-worker";

/// The fully-qualified gRPC service, as health and reflection name it.
pub const GRPC_SERVICE: &str = <BacktestServiceServer<BacktestApi> as NamedService>::NAME;

/// Built-in configuration defaults: the ports of docs/conventions.md.
pub fn defaults() -> Config<()> {
    Config {
        common: CommonConfig::with_ports(50056, 9106),
        service: (),
    }
}

/// Binds the gRPC and HTTP listeners; the returned server runs with
/// `run_until_stopped`. `/readyz` follows the bus and the store.
pub async fn build(config: Config<()>, infra: Infra) -> Result<Server, KitError> {
    GrpcServerBuilder::new(NAME, &config.common)
        .version(env!("CARGO_PKG_VERSION"))
        .reflection(grodt_proto::FILE_DESCRIPTOR_SET)
        .infra(&infra)
        .health_service(GRPC_SERVICE)
        .add_service(BacktestServiceServer::new(BacktestApi))
        .bind()
        .await
}
