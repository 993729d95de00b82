//! Orders: types, time in force, contingencies, and the order state machine.
//!
//! ```text
//! New ──accept──> Accepted ──trigger──> Triggered
//!  │                 │  \                  │
//! reject          fill   cancel/expire/reject
//!  v                 v       v             v
//! Rejected   PartiallyFilled ──fill──> Filled      (Cancelled, Expired, Rejected, Filled are terminal)
//! ```
//! Stop, stop-limit and trailing-stop orders must be triggered before they fill.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::fixed::{Price, Quantity};

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// Buy (increase a long, reduce a short).
    Buy,
    /// Sell (reduce a long, increase a short).
    Sell,
}

impl Side {
    /// +1 for buy, -1 for sell.
    pub const fn sign(self) -> i64 {
        match self {
            Self::Buy => 1,
            Self::Sell => -1,
        }
    }

    /// The other side.
    pub const fn opposite(self) -> Self {
        match self {
            Self::Buy => Self::Sell,
            Self::Sell => Self::Buy,
        }
    }
}

/// Identifier of an order, unique within a backtest or session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderId(pub u64);

/// Trailing distance of a trailing stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrailingOffset {
    /// A fixed price distance.
    Amount(Price),
    /// A fraction of the extreme price (0.05 = 5%).
    Percent(Decimal),
}

/// What kind of order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderKind {
    /// Fill at the next available price.
    Market,
    /// Fill at `price` or better.
    Limit {
        /// Limit price.
        price: Price,
    },
    /// Becomes a market order once the price reaches `trigger`.
    Stop {
        /// Trigger price.
        trigger: Price,
    },
    /// Becomes a limit order at `limit` once the price reaches `trigger`.
    StopLimit {
        /// Trigger price.
        trigger: Price,
        /// Limit price after the trigger.
        limit: Price,
    },
    /// A stop whose trigger follows the best price by `offset`.
    TrailingStop {
        /// Trailing distance.
        offset: TrailingOffset,
    },
}

impl OrderKind {
    /// Whether the order waits for a trigger before it can fill.
    pub const fn needs_trigger(&self) -> bool {
        matches!(
            self,
            Self::Stop { .. } | Self::StopLimit { .. } | Self::TrailingStop { .. }
        )
    }
}

/// How long an order lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeInForce {
    /// Good till cancelled.
    Gtc,
    /// Expires at the end of the UTC day it became active on.
    Day,
    /// Immediate or cancel: fill what can fill on the first eligible bar, cancel the rest.
    Ioc,
    /// Fill or kill: fill completely on the first eligible bar or cancel.
    Fok,
}

/// How much to trade; sizes other than `Fixed` are resolved when the order first fills,
/// against the fill price (e.g. all-in on the next bar's open).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Size {
    /// An explicit quantity.
    Fixed(Quantity),
    /// `fraction * equity / fill price`, rounded down to the step.
    EquityFraction(Decimal),
    /// The whole current position (the side must reduce it).
    ClosePosition,
}

/// What a strategy asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    /// Index of the instrument in the backtest's instrument list.
    pub instrument: usize,
    /// Buy or sell.
    pub side: Side,
    /// How much.
    pub size: Size,
    /// Order type.
    pub kind: OrderKind,
    /// Time in force.
    pub tif: TimeInForce,
}

impl OrderRequest {
    /// A GTC market order.
    pub const fn market(instrument: usize, side: Side, size: Size) -> Self {
        Self {
            instrument,
            side,
            size,
            kind: OrderKind::Market,
            tif: TimeInForce::Gtc,
        }
    }

    /// A GTC limit order.
    pub const fn limit(instrument: usize, side: Side, size: Size, price: Price) -> Self {
        Self {
            instrument,
            side,
            size,
            kind: OrderKind::Limit { price },
            tif: TimeInForce::Gtc,
        }
    }

    /// A GTC stop order.
    pub const fn stop(instrument: usize, side: Side, size: Size, trigger: Price) -> Self {
        Self {
            instrument,
            side,
            size,
            kind: OrderKind::Stop { trigger },
            tif: TimeInForce::Gtc,
        }
    }

    /// The same request with another time in force.
    #[must_use]
    pub const fn with_tif(mut self, tif: TimeInForce) -> Self {
        self.tif = tif;
        self
    }
}

/// An entry with a take-profit (limit) and a stop-loss (stop); the exits become
/// live only once the entry fills, for the filled quantity, and cancel each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BracketRequest {
    /// The entry order.
    pub entry: OrderRequest,
    /// Take-profit limit price.
    pub take_profit: Price,
    /// Stop-loss trigger price.
    pub stop_loss: Price,
}

/// Lifecycle state of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Created, not yet accepted (also: a bracket exit waiting for its entry).
    New,
    /// Accepted and working.
    Accepted,
    /// A stop condition was met; now working as market or limit.
    Triggered,
    /// Some but not all quantity filled.
    PartiallyFilled,
    /// Completely filled (terminal).
    Filled,
    /// Cancelled (terminal).
    Cancelled,
    /// Refused (terminal).
    Rejected,
    /// Time in force ran out (terminal).
    Expired,
}

impl OrderStatus {
    /// Whether no further transition is possible.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Filled | Self::Cancelled | Self::Rejected | Self::Expired
        )
    }

    /// Whether the order can still fill.
    pub const fn is_working(self) -> bool {
        matches!(
            self,
            Self::Accepted | Self::Triggered | Self::PartiallyFilled
        )
    }
}

/// Something that happens to an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEvent {
    /// Accepted by the venue or engine.
    Accept,
    /// Refused.
    Reject,
    /// Stop condition met.
    Trigger,
    /// A fill of the given quantity.
    Fill(Quantity),
    /// Cancelled.
    Cancel,
    /// Time in force elapsed.
    Expire,
}

/// An order and its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Identifier.
    pub id: OrderId,
    /// What was asked.
    pub request: OrderRequest,
    /// Current state.
    status: OrderStatus,
    /// Total quantity, known once resolved (at submission for `Size::Fixed`, else at first fill).
    pub quantity: Option<Quantity>,
    /// Raw filled quantity at the instrument's size precision.
    filled_raw: i64,
    /// The entry of a bracket this order is an exit of.
    pub parent: Option<OrderId>,
    /// The other order of an OCO pair.
    pub oco: Option<OrderId>,
    /// Decision time (UTC ns).
    pub created_ts: i64,
    /// Why the venue refused it, if it did: rejected, or the rest of a partly
    /// filled order cancelled.
    pub reject_reason: Option<String>,
}

impl Order {
    /// A new order in state `New`.
    pub fn new(id: OrderId, request: OrderRequest, created_ts: i64) -> Self {
        let quantity = match request.size {
            Size::Fixed(q) => Some(q),
            _ => None,
        };
        Self {
            id,
            request,
            status: OrderStatus::New,
            quantity,
            filled_raw: 0,
            parent: None,
            oco: None,
            created_ts,
            reject_reason: None,
        }
    }

    /// Current state.
    pub const fn status(&self) -> OrderStatus {
        self.status
    }

    /// Raw quantity filled so far.
    pub const fn filled_raw(&self) -> i64 {
        self.filled_raw
    }

    /// Raw quantity still to fill (0 if unresolved).
    pub fn remaining_raw(&self) -> i64 {
        self.quantity.map_or(0, |q| q.raw() - self.filled_raw)
    }

    /// Applies an event, refusing illegal transitions with `CoreError::IllegalTransition`.
    pub fn apply(&mut self, event: OrderEvent) -> Result<OrderStatus, CoreError> {
        use OrderStatus as S;
        let illegal = |s: &Self| CoreError::IllegalTransition {
            order: s.id.0,
            from: s.status,
            event,
        };
        let next = match (self.status, event) {
            (S::New, OrderEvent::Accept) => S::Accepted,
            (S::New | S::Accepted | S::Triggered, OrderEvent::Reject) => S::Rejected,
            (S::Accepted, OrderEvent::Trigger) if self.request.kind.needs_trigger() => S::Triggered,
            (S::New | S::Accepted | S::Triggered | S::PartiallyFilled, OrderEvent::Cancel) => {
                S::Cancelled
            }
            (S::Accepted | S::Triggered | S::PartiallyFilled, OrderEvent::Expire) => S::Expired,
            (S::Accepted, OrderEvent::Fill(_)) if self.request.kind.needs_trigger() => {
                return Err(illegal(self));
            }
            (S::Accepted | S::Triggered | S::PartiallyFilled, OrderEvent::Fill(q)) => {
                let total = self.quantity.ok_or_else(|| illegal(self))?;
                if q.raw() <= 0
                    || q.precision() != total.precision()
                    || q.raw() > total.raw() - self.filled_raw
                {
                    return Err(CoreError::Overfill {
                        order: self.id.0,
                        fill: q.to_string(),
                        remaining: self.remaining_raw(),
                    });
                }
                self.filled_raw += q.raw();
                if self.filled_raw == total.raw() {
                    S::Filled
                } else {
                    S::PartiallyFilled
                }
            }
            _ => return Err(illegal(self)),
        };
        self.status = next;
        Ok(next)
    }

    /// Records a rejection with its reason.
    pub fn reject(&mut self, reason: impl Into<String>) -> Result<(), CoreError> {
        self.apply(OrderEvent::Reject)?;
        self.reject_reason = Some(reason.into());
        Ok(())
    }
}

/// A change of an order's state as a venue reports it: every transition
/// (accepted, triggered, partially filled, filled, cancelled, rejected, expired)
/// and every fill's progress, so the owner of an order never waits on one that
/// was refused. Small and `Copy`; why a refused order was refused is on the
/// order itself (`Order::reject_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderUpdate {
    /// The order (the id its submitter chose).
    pub id: OrderId,
    /// Instrument index, as in the order's request.
    pub instrument: usize,
    /// The state after the change.
    pub status: OrderStatus,
    /// Time of the change (UTC ns): the bar's or the submission's time.
    pub ts: i64,
    /// Raw quantity filled by then.
    pub filled_raw: i64,
}

impl OrderUpdate {
    /// The update describing `order` as it is now.
    pub const fn of(order: &Order, ts: i64) -> Self {
        Self {
            id: order.id,
            instrument: order.request.instrument,
            status: order.status,
            ts,
            filled_raw: order.filled_raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(kind: OrderKind) -> Order {
        let q = Quantity::parse("10", 0).unwrap();
        let mut r = OrderRequest::market(0, Side::Buy, Size::Fixed(q));
        r.kind = kind;
        Order::new(OrderId(1), r, 0)
    }

    #[test]
    fn happy_path_with_partial_fills() {
        let mut o = order(OrderKind::Market);
        assert_eq!(o.apply(OrderEvent::Accept).unwrap(), OrderStatus::Accepted);
        let four = Quantity::parse("4", 0).unwrap();
        let six = Quantity::parse("6", 0).unwrap();
        assert_eq!(
            o.apply(OrderEvent::Fill(four)).unwrap(),
            OrderStatus::PartiallyFilled
        );
        assert_eq!(o.apply(OrderEvent::Fill(six)).unwrap(), OrderStatus::Filled);
        assert!(matches!(
            o.apply(OrderEvent::Cancel),
            Err(CoreError::IllegalTransition { .. })
        ));
    }

    #[test]
    fn stops_fill_only_after_trigger_and_overfill_is_refused() {
        let t = Price::parse("1", 0).unwrap();
        let mut o = order(OrderKind::Stop { trigger: t });
        o.apply(OrderEvent::Accept).unwrap();
        let q = Quantity::parse("10", 0).unwrap();
        assert!(o.apply(OrderEvent::Fill(q)).is_err());
        o.apply(OrderEvent::Trigger).unwrap();
        assert!(
            o.apply(OrderEvent::Fill(Quantity::parse("11", 0).unwrap()))
                .is_err()
        );
        assert_eq!(o.apply(OrderEvent::Fill(q)).unwrap(), OrderStatus::Filled);
    }

    #[test]
    fn terminal_states_refuse_everything() {
        let events = [
            OrderEvent::Accept,
            OrderEvent::Reject,
            OrderEvent::Trigger,
            OrderEvent::Cancel,
            OrderEvent::Expire,
        ];
        let mut o = order(OrderKind::Market);
        o.apply(OrderEvent::Accept).unwrap();
        o.apply(OrderEvent::Cancel).unwrap();
        for e in events {
            assert!(o.apply(e).is_err(), "{e:?}");
        }
        let mut o = order(OrderKind::Market);
        assert!(
            o.apply(OrderEvent::Trigger).is_err(),
            "a market order is never triggered"
        );
        assert!(
            o.apply(OrderEvent::Expire).is_err(),
            "a New order cannot expire"
        );
    }
}
