//! `grodt`: the operator CLI and the all-in-one runner. Parses arguments and
//! dispatches to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use grodt::up::{UpError, UpOptions};
use grodt_kit::config::{self, CommonConfig, Config, ConfigSource};
use tonic_health::pb::health_check_response::ServingStatus;

/// sysexits' EX_CONFIG: the configuration is bad.
const EXIT_CONFIG: u8 = 64;

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
    /// Run all seven services in this process: in-process bus, SQLite store.
    Up {
        /// Directory for the embedded SQLite database.
        #[arg(long, default_value = ".grodt")]
        data_dir: PathBuf,
        /// Bind every listener to port 0 (a free port) instead of the conventional ports.
        #[arg(long)]
        ephemeral_ports: bool,
        /// The address every listener binds: loopback unless told otherwise
        /// (0.0.0.0 listens on every interface).
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        /// Write the bound addresses as JSON to this file once all listen.
        #[arg(long)]
        ports_file: Option<PathBuf>,
    },
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
        /// Call over TLS, trusting the PEM CA certificates of this file
        /// (for a server with [grpc.tls]).
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// The name the server's certificate must carry (default: the host of ADDR).
        #[arg(long, requires = "tls_ca")]
        tls_domain: Option<String>,
    },
    /// The market-data catalog: import CSV files, list and show datasets.
    Data {
        /// gRPC address of market-data.
        #[arg(long, global = true, default_value = "127.0.0.1:50051")]
        addr: String,
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Backtest a strategy on a CSV file; prints the metrics table.
    Backtest(grodt::backtest::BacktestOptions),
    /// Sweep a parameter grid of a sweep-capable strategy over a CSV file in
    /// one pass (the same trades as backtest); prints the best sets.
    Sweep(grodt::sweep::SweepOptions),
    /// Paper-trade a strategy on a replay of a CSV file through the embedded
    /// services; prints the fills and the account and fails unless they
    /// equal a backtest of the same bars.
    Paper(grodt::paper::PaperOptions),
    /// Run a parameter study on a running optimizer: a progress bar while it
    /// runs, then its best trials as a table.
    Optimize(grodt::optimize::OptimizeOptions),
    /// The regime classifier: `accuracy` grades it against ex-post labels.
    Regimes {
        #[command(subcommand)]
        command: RegimesCommand,
    },
    /// List the strategies with their parameters (type, default, bounds, step, constraints).
    Strategies {
        /// Print the registry's schema as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one service as its own process, exactly as its own binary does
    /// (configuration from config/ and GRODT_* variables, Redis and
    /// Postgres): market-data, regime, strategy, risk, execution,
    /// backtest-worker or optimizer.
    Serve {
        /// The service's name.
        service: String,
    },
    /// Benchmarks (measurements, never tests; docs/performance.md).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Apply database migrations to `database.url` (GRODT_DATABASE__URL).
    Migrate {
        /// Overrides the configured database URL.
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Bar-to-fill and bar-to-order latency of the live pipeline over Redis
    /// and Postgres, beside a bare relay chain of as many hops.
    Latency(grodt::bench::LatencyOptions),
}

#[derive(Subcommand)]
enum RegimesCommand {
    /// Accuracy and confusion matrix of the classifier against the ex-post
    /// labels (docs/regimes.md, "Accuracy"), one per file.
    Accuracy(grodt::regimes::AccuracyOptions),
}

#[derive(Subcommand)]
enum DataCommand {
    /// Import a CSV file (a path the server can read, or --upload it).
    Import(Box<grodt::data::ImportArgs>),
    /// List datasets, newest first.
    Ls,
    /// One dataset with its quality report.
    Show {
        /// The dataset id (as `ls` prints it).
        dataset: String,
    },
    /// Backfill a dataset from an exchange (binance, coinbase) over HTTPS; resumes where the catalog ends.
    Fetch(grodt::data::FetchArgs),
}

/// Huge pages for large blocks: a one-shot backtest's file, rows, columns and
/// curves fault a sixth less of its wall time in (grodt-kit::alloc).
#[global_allocator]
static ALLOC: grodt_kit::alloc::HugePages = grodt_kit::alloc::HugePages;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve { service } = &cli.command {
        // Each service's runner builds its own runtime, as its binary does.
        return serve(service);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("grodt: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Up {
                data_dir,
                ephemeral_ports,
                bind,
                ports_file,
            } => {
                up(UpOptions {
                    data_dir,
                    ephemeral_ports,
                    bind,
                    ports_file,
                })
                .await
            }
            Command::Health {
                addr,
                service,
                timeout_ms,
                tls_ca,
                tls_domain,
            } => {
                let tls = tls_ca.map(|ca_file| grodt::health::HealthTls {
                    ca_file,
                    domain: tls_domain,
                });
                health(&addr, &service, Duration::from_millis(timeout_ms), tls).await
            }
            Command::Migrate { database_url } => migrate(database_url).await,
            Command::Data { addr, command } => data(&addr, command).await,
            // CPU-bound on this (the main) thread, which blocks no executor worker.
            Command::Serve { .. } => ExitCode::FAILURE,
            Command::Bench {
                command: BenchCommand::Latency(options),
            } => match grodt::bench::latency(&options).await {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("grodt bench latency: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Backtest(options) => backtest(&options),
            Command::Sweep(options) => {
                match grodt::sweep::execute(&options, &mut std::io::stdout().lock()) {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("grodt sweep: {e}");
                        ExitCode::from(if e.is_usage() { 2 } else { 1 })
                    }
                }
            }
            Command::Paper(options) => match grodt::paper::command(&options).await {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("grodt paper: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Optimize(options) => match grodt::optimize::command(&options).await {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("grodt optimize: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Strategies { json } => strategies(json),
            Command::Regimes {
                command: RegimesCommand::Accuracy(options),
            } => regimes_accuracy(&options),
        }
    })
}

fn backtest(options: &grodt::backtest::BacktestOptions) -> ExitCode {
    let out = &mut std::io::stdout().lock();
    let done = match &options.portfolio {
        Some(file) => grodt::portfolio::execute(file, options, out).map(|_| ()),
        None => grodt::backtest::execute(options, out).map(|_| ()),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grodt backtest: {e}");
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
    }
}

fn regimes_accuracy(options: &grodt::regimes::AccuracyOptions) -> ExitCode {
    match grodt::regimes::execute(options, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grodt regimes accuracy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn strategies(json: bool) -> ExitCode {
    match grodt::strategies::render(json) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("grodt strategies: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn up(options: UpOptions) -> ExitCode {
    let source = ConfigSource::from_process();
    // Logs follow the first service's telemetry section; all share one process.
    let telemetry = match grodt::up::load_configs(&source, options.ephemeral_ports, options.bind) {
        Ok(configs) => configs[0].1.common.telemetry.clone(),
        Err(e) => return up_failed(&e),
    };
    let _guard = match grodt_kit::telemetry::init("grodt", &telemetry) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("grodt up: {e}");
            return ExitCode::FAILURE;
        }
    };
    match grodt::up::run(options, source, grodt_kit::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => up_failed(&e),
    }
}

fn up_failed(e: &UpError) -> ExitCode {
    eprintln!("grodt up: {e}");
    match e {
        UpError::Config { .. } => ExitCode::from(EXIT_CONFIG),
        _ => ExitCode::FAILURE,
    }
}

async fn health(
    addr: &str,
    service: &str,
    timeout: Duration,
    tls: Option<grodt::health::HealthTls>,
) -> ExitCode {
    match grodt::health::check_with(addr, service, timeout, tls.as_ref()).await {
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
    }
}

async fn migrate(database_url: Option<String>) -> ExitCode {
    let url = match database_url {
        Some(url) => url,
        None => {
            let defaults = Config {
                common: CommonConfig::with_ports(0, 0),
                service: (),
            };
            match config::load(&ConfigSource::from_process(), &defaults) {
                Ok(c) => c.common.database.url.expose().clone(),
                Err(e) => {
                    eprintln!("grodt migrate: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
    };
    match grodt::migrate::run(&url).await {
        Ok(backend) => {
            println!("migrated ({backend})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("grodt migrate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn data(addr: &str, command: DataCommand) -> ExitCode {
    let outcome = match command {
        DataCommand::Import(args) => grodt::data::import(addr, &args).await,
        DataCommand::Ls => grodt::data::ls(addr).await,
        DataCommand::Show { dataset } => grodt::data::show(addr, &dataset).await,
        DataCommand::Fetch(args) => grodt::data::fetch(addr, &args).await,
    };
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("grodt data: {e}");
            match e {
                grodt::data::DataCliError::Usage { .. } => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// `grodt serve NAME`: one service, as its own binary runs it.
fn serve(service: &str) -> ExitCode {
    use grodt_kit::runner::run;
    match service {
        "market-data" => run(
            grodt_market_data::NAME,
            grodt_market_data::defaults(),
            grodt_market_data::build,
        ),
        "regime" => run(
            grodt_regime::NAME,
            grodt_regime::defaults_with_settings(),
            grodt_regime::build_with_settings,
        ),
        "strategy" => run(
            grodt_strategy::NAME,
            grodt_strategy::defaults_with_settings(),
            grodt_strategy::build_with_settings,
        ),
        "risk" => run(
            grodt_risk::NAME,
            grodt_risk::defaults_with_settings(),
            grodt_risk::build_with_settings,
        ),
        "execution" => run(
            grodt_execution::NAME,
            grodt_execution::defaults_with_settings(),
            grodt_execution::build_with_settings,
        ),
        "backtest-worker" => run(
            grodt_backtest_worker::NAME,
            grodt_backtest_worker::defaults_with_settings(),
            grodt_backtest_worker::build_with_settings,
        ),
        "optimizer" => run(
            grodt_optimizer::NAME,
            grodt_optimizer::defaults_with_settings(),
            grodt_optimizer::build_with_settings,
        ),
        other => {
            eprintln!(
                "grodt serve: unknown service {other:?}: one of market-data, regime, strategy, risk, execution, backtest-worker, optimizer"
            );
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
