//! The crate's error type.

use grodt_core::error::{Classify, ErrorKind};
use grodt_sim::SimError;

/// Why the broker or a runner refused an input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PaperError {
    /// The symbol is not one of the configured instruments.
    #[error("unknown symbol {symbol:?}: not among the configured instruments")]
    UnknownSymbol {
        /// The symbol as received.
        symbol: String,
    },
    /// No order has this client order id.
    #[error("unknown order {client_order_id:?}")]
    UnknownOrder {
        /// The id as received.
        client_order_id: String,
    },
    /// The client order id is taken by an earlier order.
    #[error("order {client_order_id:?} exists already")]
    Duplicate {
        /// The id as received.
        client_order_id: String,
    },
    /// A bar at or before the symbol's last bar (a redelivery or a replay
    /// overlap); it changes nothing.
    #[error("bar of {symbol} at {ts} is not after the last one at {last}")]
    StaleBar {
        /// The symbol.
        symbol: String,
        /// The bar's open time (ns).
        ts: i64,
        /// The last bar's open time (ns).
        last: i64,
    },
    /// The portfolio is halted (its drawdown limit or a risk breaker): its
    /// strategies take no new orders, as in its backtest, where a halted
    /// strategy sees no more bars.
    #[error("the portfolio is halted: {reason}")]
    Halted {
        /// Why it halted.
        reason: String,
    },
    /// A field of an input is unusable (named).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The venue refused the input (a bad bar, an overflow).
    #[error(transparent)]
    Sim(#[from] SimError),
    /// The portfolio desk refused the input or its configuration.
    #[error(transparent)]
    Portfolio(#[from] grodt_portfolio::PortfolioError),
    /// A sum of the books around the venue (an order's average price, an
    /// instance's PnL) left the decimal range: an absurd price or quantity.
    #[error("{what} of {symbol} exceeds the decimal range")]
    Overflow {
        /// The quantity (`average fill price`, `realized PnL`, ...).
        what: &'static str,
        /// The instrument.
        symbol: String,
    },
    /// A report contradicts the runner's mirror of its orders (a bug or a
    /// report of another run).
    #[error("report inconsistent with order {client_order_id}: {reason}")]
    Inconsistent {
        /// The order.
        client_order_id: String,
        /// What did not fit.
        reason: String,
    },
}

impl Classify for PaperError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::UnknownSymbol { .. } | Self::Invalid { .. } => ErrorKind::InvalidArgument,
            Self::UnknownOrder { .. } => ErrorKind::NotFound,
            Self::Duplicate { .. } => ErrorKind::AlreadyExists,
            Self::StaleBar { .. } | Self::Halted { .. } => ErrorKind::FailedPrecondition,
            Self::Sim(e) => e.kind(),
            Self::Portfolio(e) => e.kind(),
            Self::Inconsistent { .. } | Self::Overflow { .. } => ErrorKind::Internal,
        }
    }
}
