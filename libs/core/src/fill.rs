//! Fills: an execution of (part of) an order, with every cost itemised.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::fixed::{Price, Quantity};
use crate::order::{OrderId, Side};

/// Whether the fill added or took liquidity (drives maker/taker commissions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Liquidity {
    /// A resting order that was traded against.
    Maker,
    /// An order that crossed the book.
    Taker,
}

/// One execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// Sequence number within the run (0-based).
    pub seq: u64,
    /// The order filled.
    pub order_id: OrderId,
    /// Instrument index.
    pub instrument: usize,
    /// Time of the bar the fill happened in (UTC ns).
    pub ts: i64,
    /// Buy or sell.
    pub side: Side,
    /// Quantity filled.
    pub qty: Quantity,
    /// Execution price, after slippage.
    pub price: Price,
    /// The price before slippage (open, limit or stop level).
    pub reference_price: Price,
    /// Commission charged (never negative).
    pub commission: Decimal,
    /// Maker rebate received (never negative).
    pub rebate: Decimal,
    /// Cost of slippage, `|price - reference_price| * qty * multiplier` (never negative).
    pub slippage: Decimal,
    /// Maker or taker.
    pub liquidity: Liquidity,
}
