//! `grodt`: the operator CLI and the all-in-one runner.
//!
//! The binary (`src/main.rs`) only parses arguments and dispatches here, so
//! every command is callable from tests. `up` runs the seven services
//! embedded; `health` is what container health checks call; `migrate` owns
//! the database schema in distributed mode; `backtest` runs one backtest
//! of a CSV file through the worker's code path.

pub mod backtest;
pub mod health;
pub mod migrate;
pub mod up;
