//! The whole life of a service process, so every service `main` is one call:
//! load config (exit 64 when bad), init telemetry, connect the bus and the
//! store, build, serve until SIGTERM/SIGINT, drain.

use std::future::Future;
use std::process::ExitCode;

use crate::config::{self, Config, ConfigSource, ServiceConfig};
use crate::{Infra, KitError, Server, shutdown_signal, telemetry};

/// Runs a service built by `build` from its configuration. Returns the exit
/// code for `main`: 0 after a clean drain, 1 when start-up or serving failed.
pub fn run<S, F, Fut>(service: &'static str, defaults: Config<S>, build: F) -> ExitCode
where
    S: ServiceConfig,
    F: FnOnce(Config<S>, Infra) -> Fut,
    Fut: Future<Output = Result<Server, KitError>>,
{
    let config = config::load_or_exit(&ConfigSource::from_process(), &defaults);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{service}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        let _telemetry = telemetry::init(service, &config.common.telemetry)?;
        let infra = Infra::connect(&config.common).await?;
        let server = build(config, infra).await?;
        tracing::info!(
            service,
            grpc = %server.grpc_addr(),
            http = %server.http_addr(),
            "listening"
        );
        server.run_until_stopped(shutdown_signal()).await?;
        tracing::info!(service, "stopped");
        Ok::<_, KitError>(())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{service}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Tells a service's background consumer to stop when the last handle is
/// dropped: the gRPC handlers hold one, so the consumer stops once the server
/// has drained and returned.
#[derive(Debug)]
pub struct StopOnDrop(pub tokio::sync::watch::Sender<bool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        // Nobody listening any more is fine: the consumer is gone already.
        let _ = self.0.send(true);
    }
}
