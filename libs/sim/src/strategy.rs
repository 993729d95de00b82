//! The Strategy trait and the context it sees: history up to the current bar,
//! positions, cash, orders, and an outbox for new orders. Nothing later than the
//! current bar is reachable from here, by construction.

use grodt_core::{Bar, BracketRequest, Decimal, Fill, Instrument, Order, OrderId, OrderRequest};

/// Read access to the accounting state, independent of the ledger back end.
pub trait LedgerView {
    /// Cash.
    fn cash(&self) -> Decimal;
    /// Signed raw position of an instrument.
    fn position_raw(&self, instrument: usize) -> i64;
    /// Equity at raw marks.
    fn equity_at(&self, marks: &[i64]) -> Decimal;
}

impl<L: crate::ledger::Ledger> LedgerView for L {
    fn cash(&self) -> Decimal {
        crate::ledger::Ledger::cash(self)
    }
    fn position_raw(&self, instrument: usize) -> i64 {
        crate::ledger::Ledger::position_raw(self, instrument)
    }
    fn equity_at(&self, marks: &[i64]) -> Decimal {
        self.equity_decimal(marks).unwrap_or(Decimal::ZERO)
    }
}

/// Requests a strategy makes; applied by the engine after the callback returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// A new order.
    Submit(OrderId, OrderRequest),
    /// A bracket: entry, take-profit and stop-loss ids.
    Bracket(OrderId, OrderId, OrderId, BracketRequest),
    /// Two orders that cancel each other.
    Oco(OrderId, OrderRequest, OrderId, OrderRequest),
    /// Cancel an order.
    Cancel(OrderId),
}

/// What a strategy callback sees.
pub struct Context<'a> {
    pub(crate) now: i64,
    pub(crate) instruments: &'a [Instrument],
    pub(crate) bars: &'a [Vec<Bar>],
    pub(crate) visible: &'a [usize],
    pub(crate) marks: &'a [i64],
    pub(crate) ledger: &'a dyn LedgerView,
    pub(crate) orders: &'a [Order],
    pub(crate) outbox: &'a mut Vec<Command>,
    pub(crate) next_id: &'a mut u64,
}

impl Context<'_> {
    /// Time of the current bar (UTC ns; the bar's open time).
    pub const fn now(&self) -> i64 {
        self.now
    }

    /// The instruments of the run.
    pub const fn instruments(&self) -> &[Instrument] {
        self.instruments
    }

    /// Bars of an instrument up to and including the current one (empty before its first bar).
    pub fn history(&self, instrument: usize) -> &[Bar] {
        match (self.bars.get(instrument), self.visible.get(instrument)) {
            (Some(b), Some(&n)) => &b[..n],
            _ => &[],
        }
    }

    /// Signed raw position (at the instrument's size precision).
    pub fn position(&self, instrument: usize) -> i64 {
        self.ledger.position_raw(instrument)
    }

    /// Cash.
    pub fn cash(&self) -> Decimal {
        self.ledger.cash()
    }

    /// Equity at the latest closes.
    pub fn equity(&self) -> Decimal {
        self.ledger.equity_at(self.marks)
    }

    /// An order submitted in an earlier callback.
    pub fn order(&self, id: OrderId) -> Option<&Order> {
        usize::try_from(id.0).ok().and_then(|i| self.orders.get(i))
    }

    /// Orders that can still fill (or wait for a bracket entry).
    pub fn open_orders(&self) -> impl Iterator<Item = &Order> {
        self.orders.iter().filter(|o| !o.status().is_terminal())
    }

    fn take_id(&mut self) -> OrderId {
        let id = OrderId(*self.next_id);
        *self.next_id += 1;
        id
    }

    /// Submits an order; it can fill no earlier than the next bar (plus latency).
    pub fn submit(&mut self, request: OrderRequest) -> OrderId {
        let id = self.take_id();
        self.outbox.push(Command::Submit(id, request));
        id
    }

    /// Submits a bracket; returns (entry, take-profit, stop-loss) ids.
    pub fn submit_bracket(&mut self, bracket: BracketRequest) -> (OrderId, OrderId, OrderId) {
        let (e, tp, sl) = (self.take_id(), self.take_id(), self.take_id());
        self.outbox.push(Command::Bracket(e, tp, sl, bracket));
        (e, tp, sl)
    }

    /// Submits two orders where a fill of one cancels the other.
    pub fn submit_oco(&mut self, a: OrderRequest, b: OrderRequest) -> (OrderId, OrderId) {
        let (ia, ib) = (self.take_id(), self.take_id());
        self.outbox.push(Command::Oco(ia, a, ib, b));
        (ia, ib)
    }

    /// Cancels an order (no effect if it is already terminal).
    pub fn cancel(&mut self, id: OrderId) {
        self.outbox.push(Command::Cancel(id));
    }
}

/// A trading strategy. The same trait drives backtests and (later) paper trading.
pub trait Strategy {
    /// Before the first bar.
    fn on_start(&mut self, _ctx: &mut Context<'_>) {}
    /// After each bar of `instrument` closed; `bar` is the last element of `ctx.history(instrument)`.
    fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, bar: &Bar);
    /// After each fill of one of its orders.
    fn on_fill(&mut self, _ctx: &mut Context<'_>, _fill: &Fill) {}
    /// After the last bar.
    fn on_stop(&mut self, _ctx: &mut Context<'_>) {}
}
