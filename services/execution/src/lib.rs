//! `grodt-execution`: the order lifecycle, the paper broker, positions, the account and reconciliation.
//!
//! A thin shell: configuration -> the service kit -> serve. Domain logic lives
//! in the libraries; protobuf types stop at `grpc.rs`.

mod grpc;

pub use grpc::ExecutionApi;

use grodt_kit::{CommonConfig, Config, GrpcServerBuilder, Infra, KitError, Server};
use grodt_proto::v1::execution_service_server::ExecutionServiceServer;
use tonic::server::NamedService;

/// The service's name in logs, metrics and configuration.
pub const NAME: &str = "execution";

/// The fully-qualified gRPC service, as health and reflection name it.
pub const GRPC_SERVICE: &str = <ExecutionServiceServer<ExecutionApi> as NamedService>::NAME;

/// Built-in configuration defaults: the ports of docs/conventions.md.
pub fn defaults() -> Config<()> {
    Config {
        common: CommonConfig::with_ports(50055, 9105),
        service: (),
    }
}

/// Binds the gRPC and HTTP listeners; the returned server runs with
/// `run_until_stopped`. `/readyz` follows the bus and the store.
pub async fn build(config: Config<()>, infra: Infra) -> Result<Server, KitError> {
    GrpcServerBuilder::for_service(
        NAME,
        GRPC_SERVICE,
        &config.common,
        &infra,
        grodt_proto::FILE_DESCRIPTOR_SET,
    )
    .add_service(ExecutionServiceServer::new(ExecutionApi))
    .bind()
    .await
}
