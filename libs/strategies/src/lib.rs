//! Strategies (the SMA crossover reference, S1 trend, S2 mean reversion, S3
//! breakout, and the two-instrument market-neutral `pair`) written once against the `grodt-strategy-api` Strategy trait, used
//! by backtests, paper trading and the optimizer alike, and [`gate::Gated`], the
//! wrapper that lets a strategy open positions only in the regimes it declares.
//!
//! Architecture invariant: strategies see only what `grodt_strategy_api::Context`
//! gives them (a bounded window of bars up to the current one, positions, cash,
//! their orders); no I/O, no clock, and no dependency on the engine that runs them.

pub mod ema_cross;
pub mod gate;
pub mod pair;
pub mod registry;
pub mod s1;
pub mod s2;
pub mod s3;
pub mod sma_cross;

pub use ema_cross::{EmaCross, EmaCrossParams};
pub use gate::{GateConfig, GateStats, Gated, OnDisallowed};
pub use pair::{Hedge, Pair, PairParams};
pub use s1::{S1, S1Params};
pub use s2::{S2, S2Params};
pub use s3::{S3, S3Params};
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
