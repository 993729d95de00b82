//! `grodt`: the operator CLI and the all-in-one runner.
//!
//! The binary (`src/main.rs`) only parses arguments and dispatches here, so
//! every command is callable from tests.

pub mod health;
