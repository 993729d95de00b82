//! `grodt-regime`: load configuration (exit 64 when it is bad), serve until SIGTERM.

fn main() -> std::process::ExitCode {
    grodt_kit::runner::run(
        grodt_regime::NAME,
        grodt_regime::defaults_with_settings(),
        grodt_regime::build_with_settings,
    )
}
