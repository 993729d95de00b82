//! `grodt-risk`: load configuration (exit 64 when it is bad), serve until SIGTERM.

fn main() -> std::process::ExitCode {
    grodt_kit::runner::run(
        grodt_risk::NAME,
        grodt_risk::defaults_with_settings(),
        grodt_risk::build_with_settings,
    )
}
