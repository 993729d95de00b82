//! `grodt-paper`: the paper-trading core that the execution and strategy
//! services share, with no I/O and no clock of its own.
//!
//! The live pipeline is a chain of deterministic state machines, each fed
//! one input at a time and journaled (grodt-store's journal), so a restart
//! rebuilds any of them exactly by replaying its inputs:
//!
//! - [`broker::Broker`] is the execution side: the trading core's simulated
//!   venue (`grodt_sim::venue::Venue`, the same fill, cost, latency and
//!   partial-fill rules as a backtest) driven by bars and by orders named by
//!   client order id; every input yields a [`Report`] of what the venue did.
//! - [`desk::PortfolioBroker`] is the execution side of a portfolio: the
//!   portfolio desk (grodt-portfolio: sub-ledgers, allocation, limits,
//!   netting, rebalancing) fed the same inputs, each member's tickets named
//!   by its `strategy_id`, reporting to each member under its own client
//!   order ids.
//! - [`runner::Runner`] is the strategy side: one registered strategy driven
//!   by execution's reports (the bar, and the fills and order changes the
//!   venue made on it) in the order the backtest loop drives it, with views
//!   of its own orders, position and cash mirrored from those reports, and
//!   the orders it wants as [`Ticket`]s with deterministic client order ids.
//!
//! Fed the same bars, a broker and a runner exchanging tickets and reports
//! make the same fills as `grodt_sim::backtest::run_backtest` (the parity
//! tests below and in the services hold them to it). docs/paper.md is the
//! contract.

pub mod account;
pub mod broker;
pub mod desk;
mod error;
pub mod ids;
pub mod instruments;
pub mod runner;
mod ticket;

pub use account::PaperAccount;
pub use error::PaperError;
pub use ticket::{
    BracketLegs, CapitalUpdate, Input, OrderState, PaperFill, Report, Ticket, Update,
};
