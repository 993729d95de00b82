//! `grodt`: the operator CLI and the all-in-one runner. Parses arguments and
//! dispatches to the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tonic_health::pb::health_check_response::ServingStatus;

#[derive(Parser)]
#[command(
    name = "grodt",
    version,
    about = "GRODT operator CLI and all-in-one runner"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 only when ADDR's gRPC health check answers SERVING.
    Health {
        /// host:port of the gRPC server.
        addr: String,
        /// Fully-qualified service name (e.g. grodt.v1.RiskService); empty for the whole server.
        #[arg(default_value = "")]
        service: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Health {
            addr,
            service,
            timeout_ms,
        } => match grodt::health::check(&addr, &service, Duration::from_millis(timeout_ms)).await {
            Ok(ServingStatus::Serving) => {
                println!("SERVING");
                ExitCode::SUCCESS
            }
            Ok(status) => {
                println!("{}", status.as_str_name());
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("grodt health: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}
