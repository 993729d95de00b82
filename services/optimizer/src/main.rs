//! `grodt-optimizer`: load configuration (exit 64 when it is bad), serve until SIGTERM.

fn main() -> std::process::ExitCode {
    grodt_kit::runner::run(
        grodt_optimizer::NAME,
        grodt_optimizer::defaults_with_settings(),
        grodt_optimizer::build_with_settings,
    )
}
