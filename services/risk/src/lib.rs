//! `grodt-risk`: pre-trade limits, circuit breakers, manual halt and the exposure/VaR snapshot.
//!
//! A thin shell: configuration -> the service kit -> serve. Domain logic lives
//! in the libraries; protobuf types stop at `grpc.rs`.

mod grpc;

pub use grpc::RiskApi;

use grodt_kit::{CommonConfig, Config, GrpcServerBuilder, KitError, Server};
use grodt_proto::v1::risk_service_server::RiskServiceServer;
use tonic::server::NamedService;

/// The service's name in logs, metrics and configuration.
pub const NAME: &str = "risk";

/// Built-in configuration defaults: the ports of docs/conventions.md.
pub fn defaults() -> Config<()> {
    Config {
        common: CommonConfig::with_ports(50054, 9104),
        service: (),
    }
}

/// Binds the gRPC and HTTP listeners; the returned server runs with
/// `run_until_stopped`.
pub async fn build(config: Config<()>) -> Result<Server, KitError> {
    GrpcServerBuilder::new(NAME, &config.common)
        .version(env!("CARGO_PKG_VERSION"))
        .reflection(grodt_proto::FILE_DESCRIPTOR_SET)
        .health_service(<RiskServiceServer<RiskApi> as NamedService>::NAME)
        .add_service(RiskServiceServer::new(RiskApi))
        .bind()
        .await
}
