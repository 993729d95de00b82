//! `grodt-portfolio`: several strategies on one account, pure (no I/O, no
//! clock of its own).
//!
//! - [`allocation`]: how capital is split between strategies (fixed weights,
//!   recent performance, risk parity, Kelly, drawdown-based), bounded per
//!   strategy and summing to one, on a rebalance schedule; exact `Decimal`.
//! - [`netting`]: orders of several strategies on one symbol at one decision
//!   time become one net order; its fills are allocated back pro rata to the
//!   quantity step, so no strategy's resulting position changes.
//! - [`backtest`]: the portfolio backtest, several strategies on one
//!   venue and one account with a sub-ledger each ([`Desk`]).
//! - [`file`]: the portfolio file (TOML) and the plan it describes.
//! - [`stats`]: the correlation matrix of strategy returns and the
//!   diversification ratio.
//!
//! docs/portfolio.md is the contract: every formula is written there.

pub mod allocation;
pub mod backtest;
mod error;
pub mod file;
pub mod netting;
pub mod stats;

pub use backtest::{
    CapitalKind, CapitalMove, Desk, Member, MemberResult, Plan, PortfolioLimits, PortfolioResult,
    opening_shares, run_portfolio,
};
pub use error::PortfolioError;
