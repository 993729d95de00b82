//! `grodt`: the operator CLI and the all-in-one runner.
//!
//! The binary (`src/main.rs`) only parses arguments and dispatches here, so
//! every command is callable from tests. `up` runs the seven services
//! embedded; `data` talks to market-data's catalog; `health` is what container health checks call; `migrate` owns
//! the database schema in distributed mode.

pub mod data;
pub mod health;
pub mod migrate;
pub mod up;
