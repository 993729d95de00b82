//! The trading core's simulation: a [`Venue`] that owns working orders, every
//! fill and cost rule (fill/slippage/commission/latency/borrow/financing models),
//! the exact ledger and trade tracking, driven one event at a time; and
//! [`run_backtest`], the thin loop that feeds it preloaded bars and drives a
//! strategy. The paper broker drives the same venue with live bars.
//!
//! Strategies are written against `grodt-strategy-api` (re-exported here as
//! [`Strategy`] and [`Context`]) and never depend on this crate.
//!
//! Architecture invariant: no network, database or wall clock; time and randomness come in from outside
//! (bar timestamps and the seed in [`BacktestConfig`]). Same inputs and seed give the same result, bit for bit.
//!
//! ```no_run
//! use grodt_core::{Instrument, bar::parse_csv};
//! use grodt_sim::{BacktestConfig, Context, Strategy, run_backtest};
//! # struct Noop;
//! # impl Strategy for Noop { fn on_bar(&mut self, _: &mut Context<'_>, _: usize, _: &grodt_core::Bar) {} }
//! let spy = Instrument::equity("SPY", 2, 0);
//! let bars = parse_csv(&std::fs::read_to_string("spy.csv").unwrap(), &spy).unwrap();
//! let result = run_backtest(&BacktestConfig::default(), &[spy], &[bars], &mut Noop).unwrap();
//! println!("final equity {}", result.last.equity);
//! ```
//!
//! Fill rules: an order decided on bar t of an instrument fills no earlier than that
//! instrument's next bar and no earlier than t + latency. Market orders fill at that
//! bar's open; limits, stops, stop-limits and trailing stops fill where the bar's
//! intrabar path (see [`path`]) reaches them. Slippage applies to taker fills
//! (market, stop, trailing stop), never improves a price, and limit fills are at
//! the limit or better. Bracket exits go live from the bar after their entry's fill.

pub mod backtest;
pub mod config;
pub mod cost_text;
pub mod ledger;
pub mod models;
pub mod path;
pub mod trades;
pub mod venue;

pub use backtest::{run_backtest, run_backtest_with};
pub use config::{
    BacktestConfig, CommissionSpec, DayCount, FillTiming, LatencySpec, LimitFill, Models,
    SlippageSpec,
};
pub use grodt_strategy_api::{
    AccountView, BarWindow, Command, Context, MarketView, OrderView, Outbox, Strategy, Windows,
};
pub use ledger::{ExactLedger, F64Ledger, Ledger, Mark};
pub use venue::{
    BacktestResult, EquityPoint, PositionSnapshot, Snapshot, Trade, Venue, VenueEvent,
};

use grodt_core::CoreError;
use grodt_core::error::{Classify, ErrorKind};

/// Errors of a backtest run. Messages name the field, instrument or bar at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// A configuration value is invalid.
    #[error("invalid config {field}: {reason}")]
    InvalidConfig {
        /// Field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// An input bar is invalid.
    #[error("instrument {instrument}, bar {index}: {reason}")]
    InvalidBar {
        /// Instrument id.
        instrument: String,
        /// 0-based bar index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A bar or accrual dated before the venue's time.
    #[error("time went back: venue is at {now}, got {ts}")]
    TimeWentBack {
        /// The venue's time (UTC ns).
        now: i64,
        /// The time given (UTC ns).
        ts: i64,
    },
    /// An order id the caller chose is already taken.
    #[error("order id {id} is already used")]
    DuplicateOrder {
        /// The id.
        id: u64,
    },
    /// No order has this id.
    #[error("no order with id {id}")]
    UnknownOrder {
        /// The id.
        id: u64,
    },
    /// No instrument with this symbol or index.
    #[error("unknown instrument {instrument}")]
    UnknownInstrument {
        /// The symbol or index given.
        instrument: String,
    },
    /// A domain rule was broken (bad instrument, illegal order transition, ledger invariant).
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl Classify for SimError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidConfig { .. }
            | Self::InvalidBar { .. }
            | Self::UnknownInstrument { .. } => ErrorKind::InvalidArgument,
            Self::TimeWentBack { .. } => ErrorKind::FailedPrecondition,
            Self::DuplicateOrder { .. } => ErrorKind::AlreadyExists,
            Self::UnknownOrder { .. } => ErrorKind::NotFound,
            Self::Core(e) => e.kind(),
        }
    }
}
