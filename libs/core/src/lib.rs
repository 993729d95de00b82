//! Domain types and rules of GRODT: instruments, fixed-point prices and quantities,
//! Decimal money, bars, orders and their state machine, fills, positions and the
//! portfolio ledger.
//!
//! Architecture invariant: no I/O and no async. This crate never depends on tokio,
//! tonic, prost, sqlx, redis or polars (checked by a test with `cargo tree`).
//! Prices and quantities are `i64` fixed-point; money is `rust_decimal::Decimal`;
//! no `f64` reaches the ledger.

pub mod bar;
pub mod csv_reader;
pub mod error;
pub mod fill;
pub mod fixed;
pub mod instrument;
pub mod ledger;
pub mod order;
pub mod position;
pub mod rounding;
pub mod time;

pub use bar::Bar;
pub use fill::{Fill, Liquidity};
pub use fixed::{Price, Quantity};
pub use instrument::{AssetClass, BorrowParams, Instrument, MarginParams};
pub use ledger::{CostTotals, Portfolio};
pub use order::{
    BracketRequest, Order, OrderEvent, OrderId, OrderKind, OrderRequest, OrderStatus, OrderUpdate,
    Side, Size, TimeInForce, TrailingOffset,
};
pub use position::Position;
pub use rounding::RoundingMode;
pub use rust_decimal::Decimal;

use error::{Classify, ErrorKind};

/// Errors of the domain core. Messages name the field, row or order at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// Text could not be parsed exactly.
    #[error("cannot parse {what} {text:?}: {reason}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// The text.
        text: String,
        /// Why it failed.
        reason: String,
    },
    /// A row of a data file is invalid.
    #[error("row {row}, column {column}: {reason}")]
    Row {
        /// 1-based row number (the header is row 1).
        row: usize,
        /// Column at fault.
        column: &'static str,
        /// Why.
        reason: String,
    },
    /// Two fixed-point values have different precisions where they must match.
    #[error("{what} precision mismatch: have {have}, want {want}")]
    Precision {
        /// Value kind.
        what: &'static str,
        /// Precision given.
        have: u8,
        /// Precision expected.
        want: u8,
    },
    /// Arithmetic left the representable range.
    #[error("{what} overflowed")]
    Overflow {
        /// Value kind.
        what: &'static str,
    },
    /// An instrument field, or a value checked against an instrument, is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidInstrument {
        /// Field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The order state machine refused an event.
    #[error("order {order}: illegal transition from {from:?} on {event:?}")]
    IllegalTransition {
        /// Order id.
        order: u64,
        /// State it was in.
        from: OrderStatus,
        /// Event refused.
        event: OrderEvent,
    },
    /// A fill larger than the remaining quantity.
    #[error("order {order}: fill {fill} exceeds remaining raw quantity {remaining}")]
    Overfill {
        /// Order id.
        order: u64,
        /// The fill quantity.
        fill: String,
        /// Raw remaining quantity.
        remaining: i64,
    },
    /// A ledger operation or invariant failed.
    #[error("ledger: {reason}")]
    Ledger {
        /// What went wrong.
        reason: String,
    },
}

impl Classify for CoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Parse { .. }
            | Self::Row { .. }
            | Self::Precision { .. }
            | Self::InvalidInstrument { .. } => ErrorKind::InvalidArgument,
            Self::IllegalTransition { .. } | Self::Overfill { .. } => ErrorKind::FailedPrecondition,
            Self::Overflow { .. } | Self::Ledger { .. } => ErrorKind::Internal,
        }
    }
}
