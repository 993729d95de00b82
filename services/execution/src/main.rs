//! `grodt-execution`: load configuration (exit 64 when it is bad), serve until SIGTERM.

fn main() -> std::process::ExitCode {
    grodt_kit::runner::run(
        grodt_execution::NAME,
        grodt_execution::defaults_with_settings(),
        grodt_execution::build_with_settings,
    )
}
