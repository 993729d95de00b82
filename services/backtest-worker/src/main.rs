//! `grodt-backtest-worker`: load configuration (exit 64 when it is bad), serve until SIGTERM.

/// Huge pages for large blocks: the worker holds whole datasets and sweep
/// arrays (grodt-kit::alloc).
#[global_allocator]
static ALLOC: grodt_kit::alloc::HugePages = grodt_kit::alloc::HugePages;

fn main() -> std::process::ExitCode {
    grodt_kit::runner::run(
        grodt_backtest_worker::NAME,
        grodt_backtest_worker::defaults_with_settings(),
        grodt_backtest_worker::build_with_settings,
    )
}
