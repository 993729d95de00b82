//! `grodt`: the operator CLI and the all-in-one runner.
//!
//! The binary (`src/main.rs`) only parses arguments and dispatches here, so
//! every command is callable from tests. `up` runs the seven services
//! embedded; `data` talks to market-data's catalog; `backtest` runs one
//! backtest of a CSV file through the runner library (`grodt-backtest`);
//! `strategies` lists the strategy registry's schemas; `regimes accuracy`
//! grades the regime classifier against ex-post labels; `health` is what
//! container health checks call; `migrate` owns the database schema in
//! distributed mode.

pub mod backtest;
pub mod bench;
pub mod data;
pub mod health;
pub mod migrate;
pub mod optimize;
pub mod paper;
pub mod paper_portfolio;
pub mod param_spec;
pub mod portfolio;
pub mod regimes;
pub mod strategies;
pub mod sweep;
pub mod up;
