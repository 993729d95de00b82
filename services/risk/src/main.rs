//! `grodt-risk`: load configuration (exit 64 when it is bad), serve until SIGTERM.

fn main() -> std::process::ExitCode {
    grodt_kit::runner::run(grodt_risk::NAME, grodt_risk::defaults(), grodt_risk::build)
}
