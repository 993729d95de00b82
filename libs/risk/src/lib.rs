//! `grodt-risk-rules`: the risk service's domain, pure (no I/O, no clock).
//!
//! - [`Limits`]: the limits in force (every one optional), validated field by
//!   field; [`LimitsRecord`] adds the compare-and-set version.
//! - [`RiskState`]: the deterministic fold of the service's inputs
//!   ([`Input`]: order intents, fills, bars, and the operator commands
//!   SetLimits / Halt / Resume / Configure). [`RiskState::apply`] returns the
//!   [`Output`]s an input produced (the decision on an intent, breaker trips,
//!   halt and resume, limit changes, warnings); [`RiskState::check`] is the
//!   pre-trade check without a state change (CheckOrder). Approved orders
//!   count towards the position limits until their fills arrive (or a TTL
//!   of bar time passes), so a burst of orders on one bar cannot pass a
//!   limit together.
//! - Circuit breakers ([`Breaker`]): drawdown from the peak, daily loss since
//!   the UTC day start, portfolio order rate, reject rate, and accounting
//!   (the book left the decimal range); any trip halts trading until an
//!   operator resumes ([`HaltCause`]).
//! - [`checked`]: overflow-checked `Decimal` arithmetic. `rust_decimal`'s
//!   operators panic out of range; the fold never uses them on values that
//!   come from its inputs: an overflow rejects the intent being checked
//!   ([`ARITHMETIC_OVERFLOW`]) or, while booking a fill or a bar, trips
//!   [`Breaker::Accounting`].
//! - [`stats`]: one-day historical VaR of the current positions and the
//!   correlation of per-strategy daily PnL (f64 statistics, reported as
//!   rounded `Decimal`).
//!
//! Time inside the fold comes only from the inputs (bar, fill and intent
//! timestamps): replaying the same inputs rebuilds the same state and the
//! same outputs. Money is `rust_decimal::Decimal`, never f64. The rules are
//! documented in docs/risk.md.

pub mod checked;
mod limits;
mod state;
pub mod stats;

pub use checked::Overflow;
pub use limits::{Limits, LimitsError, LimitsRecord, SymbolLimits};
pub use state::{
    ARITHMETIC_OVERFLOW, Breaker, BreakerSettings, Check, Halt, HaltCause, Input, Order, Output,
    RiskState, Settings, Side, Size, Snapshot, SymbolExposure, Violation, WARNING_FRACTION,
};

/// Nanoseconds in a UTC day.
pub const NANOS_PER_DAY: i64 = 86_400_000_000_000;
/// Nanoseconds in a minute (the order-rate window).
pub const NANOS_PER_MINUTE: i64 = 60_000_000_000;
