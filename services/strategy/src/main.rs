//! `grodt-strategy`: load configuration (exit 64 when it is bad), serve until SIGTERM.

fn main() -> std::process::ExitCode {
    grodt_kit::runner::run(
        grodt_strategy::NAME,
        grodt_strategy::defaults_with_settings(),
        grodt_strategy::build_with_settings,
    )
}
