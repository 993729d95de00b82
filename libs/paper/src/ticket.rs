//! What passes between the services, as domain values: orders by client
//! order id and symbol ([`Ticket`]), the broker's inputs ([`Input`]) and what
//! each input did ([`Report`]). The services convert these to and from the
//! protobuf events in one place each.

use grodt_core::{
    Bar, Decimal, Liquidity, OrderKind, OrderStatus, Price, Quantity, Side, Size, TimeInForce,
};
use serde::{Deserialize, Serialize};

/// Take-profit and stop-loss levels of a bracket entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BracketLegs {
    /// Take-profit limit price.
    pub take_profit: Price,
    /// Stop-loss trigger price.
    pub stop_loss: Price,
}

/// An order as a service hands it on: named by its client order id (the
/// idempotency key everywhere downstream) and symbol, not by an index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// 1..64 chars of `[A-Za-z0-9_-]`; unique per account.
    pub client_order_id: String,
    /// The strategy instance that decided it; empty for a manual order.
    pub strategy_id: String,
    /// The instrument.
    pub symbol: String,
    /// Buy or sell.
    pub side: Side,
    /// How much.
    pub size: Size,
    /// Order type and its prices.
    pub kind: OrderKind,
    /// Time in force.
    pub tif: TimeInForce,
    /// Exits that go live once the entry fills.
    pub bracket: Option<BracketLegs>,
    /// Open time (ns) of the bar the decision was made on.
    pub decision_ts: i64,
}

/// One input of the broker, in the order it is applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// A closed bar of a symbol.
    Bar {
        /// The instrument.
        symbol: String,
        /// The bar (prices at the instrument's precision).
        bar: Bar,
    },
    /// A new order (idempotent by client order id).
    Submit(Ticket),
    /// A cancellation request.
    Cancel {
        /// The order.
        client_order_id: String,
    },
}

/// An order as the broker tracks it, after a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    /// The order as submitted (a bracket exit: its own ticket, derived from
    /// the entry's).
    pub ticket: Ticket,
    /// The state after the change.
    pub status: OrderStatus,
    /// Total quantity, once resolved (at submission for a fixed size, at the
    /// first fill otherwise).
    pub quantity: Option<Quantity>,
    /// Quantity filled so far.
    pub filled: Quantity,
    /// Volume-weighted average fill price, once filled at all.
    pub average_price: Option<Decimal>,
    /// Why it was rejected, cancelled or expired, if the venue said.
    pub reason: Option<String>,
    /// Client order id of the bracket entry this order is an exit of.
    pub parent: Option<String>,
    /// When it was accepted by the venue (ns, the venue's time).
    pub created_ts: i64,
    /// Time of this change (ns, the venue's time).
    pub ts: i64,
}

impl OrderState {
    /// A ticket as received, before the venue (or the desk) took it: NEW,
    /// nothing filled, at its decision time.
    pub fn received(ticket: &Ticket, parent: Option<String>) -> Self {
        Self {
            ticket: ticket.clone(),
            status: OrderStatus::New,
            quantity: None,
            filled: Quantity::zero(0),
            average_price: None,
            reason: None,
            parent,
            created_ts: ticket.decision_ts,
            ts: ticket.decision_ts,
        }
    }
}

/// One fill, named by client order id and symbol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaperFill {
    /// The venue's fill sequence number (0-based, increasing): with the
    /// journal replayed it is the same on every rebuild, so ids derived from
    /// it are stable.
    pub seq: u64,
    /// The order.
    pub client_order_id: String,
    /// Its strategy instance (empty for manual orders).
    pub strategy_id: String,
    /// The instrument.
    pub symbol: String,
    /// Buy or sell.
    pub side: Side,
    /// Quantity filled.
    pub qty: Quantity,
    /// Execution price, after slippage.
    pub price: Price,
    /// Commission charged (>= 0).
    pub commission: Decimal,
    /// Maker rebate received (>= 0).
    pub rebate: Decimal,
    /// Cost of slippage (>= 0).
    pub slippage: Decimal,
    /// Maker or taker.
    pub liquidity: Liquidity,
    /// Time of the bar it filled in (ns).
    pub ts: i64,
}

/// Cash the account moved into or out of a portfolio member's sub-ledger
/// outside its fills (the desk's rebalancing, its share of borrow and
/// financing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapitalUpdate {
    /// The member.
    pub strategy_id: String,
    /// What moved it.
    pub kind: grodt_portfolio::CapitalKind,
    /// A transfer's sign is its direction; charges are positive.
    pub amount: Decimal,
    /// When (ns).
    pub ts: i64,
}

/// One thing the venue did, in the venue's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Update {
    /// A fill.
    Fill(PaperFill),
    /// An order's state after a change.
    Order(OrderState),
    /// A portfolio member's cash moved outside its fills.
    Capital(CapitalUpdate),
}

/// What one input did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The bar applied (`None` for an order or a cancellation).
    pub bar: Option<(String, Bar)>,
    /// Fills and order changes, in the venue's order.
    pub updates: Vec<Update>,
}
