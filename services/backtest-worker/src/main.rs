//! `grodt-backtest-worker`: load configuration (exit 64 when it is bad), serve until SIGTERM.

fn main() -> std::process::ExitCode {
    grodt_kit::runner::run(
        grodt_backtest_worker::NAME,
        grodt_backtest_worker::defaults_with_settings(),
        grodt_backtest_worker::build_with_settings,
    )
}
