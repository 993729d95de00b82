//! The smallest service built from the kit: health and reflection only.
//!
//! `cargo run -p grodt-kit --example kit_demo`, then
//! `grpcurl -plaintext 127.0.0.1:50099 list`, `curl 127.0.0.1:9199/metrics`;
//! Ctrl-C or SIGTERM drains and exits.

use grodt_kit::config::{self, CommonConfig, Config, ConfigSource};
use grodt_kit::{GrpcServerBuilder, shutdown_signal, telemetry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let defaults = Config {
        common: CommonConfig::with_ports(50099, 9199),
        service: (),
    };
    let config = config::load_or_exit(&ConfigSource::from_process(), &defaults);
    let _telemetry = telemetry::init("kit-demo", &config.common.telemetry)?;

    let server = GrpcServerBuilder::new("kit-demo", &config.common)
        .reflection(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .bind()
        .await?;
    tracing::info!(grpc = %server.grpc_addr(), http = %server.http_addr(), "listening");
    server.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}
