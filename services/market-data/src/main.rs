//! `grodt-market-data`: load configuration (exit 64 when it is bad), serve until SIGTERM.

fn main() -> std::process::ExitCode {
    grodt_kit::runner::run(
        grodt_market_data::NAME,
        grodt_market_data::defaults(),
        grodt_market_data::build,
    )
}
