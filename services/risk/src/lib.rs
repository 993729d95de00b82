//! `grodt-risk`: pre-trade limits, circuit breakers, manual halt and the exposure/VaR snapshot.
//!
//! A thin shell: configuration -> the service kit -> serve. Domain logic lives
//! in the libraries; protobuf types stop at `grpc.rs`.

mod grpc;

pub use grpc::RiskApi;

use grodt_kit::{CommonConfig, Config, GrpcServerBuilder, Infra, KitError, Server};
use grodt_proto::v1::risk_service_server::RiskServiceServer;
use tonic::server::NamedService;

/// The service's name in logs, metrics and configuration.
pub const NAME: &str = "risk";

/// The fully-qualified gRPC service, as health and reflection name it.
pub const GRPC_SERVICE: &str = <RiskServiceServer<RiskApi> as NamedService>::NAME;

/// Built-in configuration defaults: the ports of docs/conventions.md.
pub fn defaults() -> Config<()> {
    Config {
        common: CommonConfig::with_ports(50054, 9104),
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
    .add_service(RiskServiceServer::new(RiskApi))
    .bind()
    .await
}
