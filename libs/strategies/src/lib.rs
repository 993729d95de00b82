//! Reference strategies (SMA crossover, S1 trend) written once against the
//! `grodt-strategy-api` Strategy trait, used by backtests, paper trading and the
//! optimizer alike.
//!
//! Architecture invariant: strategies see only what `grodt_strategy_api::Context`
//! gives them (a bounded window of bars up to the current one, positions, cash,
//! their orders); no I/O, no clock, and no dependency on the engine that runs them.

pub mod registry;
pub mod s1;
pub mod sma_cross;

pub use s1::{S1, S1Params};
pub use sma_cross::{SmaCross, SmaCrossParams};

use grodt_core::error::{Classify, ErrorKind};

/// Errors building a strategy. Messages name the parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    /// A parameter is out of range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParam {
        /// Parameter name.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

impl Classify for StrategyError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}
