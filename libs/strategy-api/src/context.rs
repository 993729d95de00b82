//! What a strategy callback sees and how its requests leave it.

use grodt_core::{Bar, BracketRequest, Decimal, Instrument, Order, OrderId, OrderRequest};

/// Recent bars per instrument, up to and including the current one.
pub trait MarketView {
    /// Bars of `instrument` up to and including the latest one the driver fed,
    /// oldest first; a bounded window, empty before the instrument's first bar.
    fn history(&self, instrument: usize) -> &[Bar];
}

/// The account as the driver knows it.
pub trait AccountView {
    /// Cash.
    fn cash(&self) -> Decimal;
    /// Signed raw position of an instrument (at its size precision).
    fn position_raw(&self, instrument: usize) -> i64;
    /// Cash plus the value of every position at the latest closes.
    fn equity(&self) -> Decimal;
}

/// The strategy's orders.
pub trait OrderView {
    /// An order by the id the strategy chose.
    fn order(&self, id: OrderId) -> Option<&Order>;
    /// Orders that can still fill (or wait for a bracket entry).
    fn open_orders(&self) -> Box<dyn Iterator<Item = &Order> + '_>;
}

/// A driver's record of a strategy's orders, in submission order, that
/// remembers where the non-terminal ones start: asking for the open orders on
/// every bar then costs the open ones, not the whole history (a strategy that
/// checks them each bar would otherwise make a run quadratic in its orders).
///
/// Reads go through the slice (`Deref`); in-place changes (`DerefMut`) must
/// follow the order state machine, which never leaves a terminal state.
#[derive(Clone, Debug, Default)]
pub struct OrderLog {
    orders: Vec<Order>,
    /// Every order before this index is terminal (so stays terminal).
    open_from: std::cell::Cell<usize>,
}

impl OrderLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an order.
    pub fn push(&mut self, order: Order) {
        self.orders.push(order);
    }

    /// Puts `order` at index `k` (its dense id): appended when `k` is the
    /// next index, replacing the one there otherwise.
    pub fn put(&mut self, k: usize, order: Order) {
        match self.orders.get_mut(k) {
            Some(slot) => {
                *slot = order;
                self.open_from.set(self.open_from.get().min(k));
            }
            None => self.orders.push(order),
        }
    }

    /// The orders, for a result.
    pub fn into_vec(self) -> Vec<Order> {
        self.orders
    }
}

impl std::ops::Deref for OrderLog {
    type Target = [Order];
    fn deref(&self) -> &[Order] {
        &self.orders
    }
}

impl std::ops::DerefMut for OrderLog {
    fn deref_mut(&mut self) -> &mut [Order] {
        &mut self.orders
    }
}

impl OrderView for OrderLog {
    fn order(&self, id: OrderId) -> Option<&Order> {
        self.orders.order(id)
    }

    fn open_orders(&self) -> Box<dyn Iterator<Item = &Order> + '_> {
        let mut from = self.open_from.get();
        while self
            .orders
            .get(from)
            .is_some_and(|o| o.status().is_terminal())
        {
            from += 1;
        }
        self.open_from.set(from);
        Box::new(
            self.orders[from..]
                .iter()
                .filter(|o| !o.status().is_terminal()),
        )
    }
}

impl OrderView for Vec<Order> {
    fn order(&self, id: OrderId) -> Option<&Order> {
        // Ids are dense from 0 when a driver allocates them in order: try the
        // index first, then search.
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.get(i))
            .filter(|o| o.id == id)
            .or_else(|| self.iter().find(|o| o.id == id))
    }

    fn open_orders(&self) -> Box<dyn Iterator<Item = &Order> + '_> {
        Box::new(self.iter().filter(|o| !o.status().is_terminal()))
    }
}

/// Requests a strategy makes; the driver applies them after the callback returns.
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

/// The strategy's pending requests and the next order id it will use. A driver
/// that must survive restarts persists `next_id` with the strategy's state, so
/// ids are never reused.
#[derive(Clone, Debug, Default)]
pub struct Outbox {
    commands: Vec<Command>,
    next_id: u64,
}

impl Outbox {
    /// An empty outbox whose first order id is `first_id`.
    pub const fn new(first_id: u64) -> Self {
        Self {
            commands: Vec::new(),
            next_id: first_id,
        }
    }

    /// The id the next order will get.
    pub const fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Whether no request waits.
    pub const fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Number of waiting requests.
    pub const fn len(&self) -> usize {
        self.commands.len()
    }

    /// The waiting requests, oldest first.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    /// Moves the waiting requests into `into` (cleared first), keeping both
    /// buffers' capacity so a driver allocates nothing per bar.
    pub fn take_into(&mut self, into: &mut Vec<Command>) {
        into.clear();
        std::mem::swap(&mut self.commands, into);
    }

    /// A mark: the number of waiting requests now. Requests made after it are
    /// [`Outbox::since`] the mark.
    pub const fn mark(&self) -> usize {
        self.commands.len()
    }

    /// The requests made since `mark` (empty if `mark` is past the end).
    pub fn since(&self, mark: usize) -> &[Command] {
        self.commands.get(mark..).unwrap_or(&[])
    }

    /// Withdraws the requests made since `mark` for which `keep` is false, as if
    /// they had never been made (requests before the mark are untouched, the
    /// order of the others is kept). The ids they took are not reused, so a
    /// withdrawn order is simply never seen by the driver: `Context::order` never
    /// finds it and no update about it ever arrives. Returns how many were
    /// withdrawn.
    pub fn withdraw_since(&mut self, mark: usize, mut keep: impl FnMut(&Command) -> bool) -> usize {
        let Some(tail) = self.commands.get(mark..) else {
            return 0;
        };
        let before = tail.len();
        let kept: Vec<Command> = tail.iter().copied().filter(|c| keep(c)).collect();
        let withdrawn = before - kept.len();
        self.commands.truncate(mark);
        self.commands.extend(kept);
        withdrawn
    }

    fn take_id(&mut self) -> OrderId {
        let id = OrderId(self.next_id);
        self.next_id += 1;
        id
    }
}

/// What a strategy callback sees: the time, the instruments, a bounded window of
/// recent bars, the account, its orders, and an outbox for new requests.
/// Nothing later than the current bar is reachable from here, by construction.
pub struct Context<'a> {
    now: i64,
    instruments: &'a [Instrument],
    market: &'a dyn MarketView,
    account: &'a dyn AccountView,
    orders: &'a dyn OrderView,
    outbox: &'a mut Outbox,
}

impl<'a> Context<'a> {
    /// A context over the driver's views. `now` is the current bar's time (UTC ns).
    pub fn new(
        now: i64,
        instruments: &'a [Instrument],
        market: &'a dyn MarketView,
        account: &'a dyn AccountView,
        orders: &'a dyn OrderView,
        outbox: &'a mut Outbox,
    ) -> Self {
        Self {
            now,
            instruments,
            market,
            account,
            orders,
            outbox,
        }
    }

    /// Time of the current bar (UTC ns; the bar's open time).
    pub const fn now(&self) -> i64 {
        self.now
    }

    /// The instruments, in the order their indices refer to.
    pub const fn instruments(&self) -> &[Instrument] {
        self.instruments
    }

    /// The index of the instrument named `symbol`.
    pub fn instrument_index(&self, symbol: &str) -> Option<usize> {
        self.instruments.iter().position(|i| i.id == symbol)
    }

    /// Recent bars of an instrument up to and including the current one, oldest
    /// first (a bounded window; empty before its first bar).
    pub fn history(&self, instrument: usize) -> &[Bar] {
        self.market.history(instrument)
    }

    /// Signed raw position (at the instrument's size precision).
    pub fn position(&self, instrument: usize) -> i64 {
        self.account.position_raw(instrument)
    }

    /// Cash.
    pub fn cash(&self) -> Decimal {
        self.account.cash()
    }

    /// Equity at the latest closes.
    pub fn equity(&self) -> Decimal {
        self.account.equity()
    }

    /// An order submitted in an earlier callback.
    pub fn order(&self, id: OrderId) -> Option<&Order> {
        self.orders.order(id)
    }

    /// Orders that can still fill (or wait for a bracket entry).
    pub fn open_orders(&self) -> impl Iterator<Item = &Order> {
        self.orders.open_orders()
    }

    /// Submits an order; it can fill no earlier than the next bar (plus latency).
    pub fn submit(&mut self, request: OrderRequest) -> OrderId {
        let id = self.outbox.take_id();
        self.outbox.commands.push(Command::Submit(id, request));
        id
    }

    /// Submits a bracket; returns (entry, take-profit, stop-loss) ids.
    pub fn submit_bracket(&mut self, bracket: BracketRequest) -> (OrderId, OrderId, OrderId) {
        let (e, tp, sl) = (
            self.outbox.take_id(),
            self.outbox.take_id(),
            self.outbox.take_id(),
        );
        self.outbox
            .commands
            .push(Command::Bracket(e, tp, sl, bracket));
        (e, tp, sl)
    }

    /// Submits two orders where a fill of one cancels the other.
    pub fn submit_oco(&mut self, a: OrderRequest, b: OrderRequest) -> (OrderId, OrderId) {
        let (ia, ib) = (self.outbox.take_id(), self.outbox.take_id());
        self.outbox.commands.push(Command::Oco(ia, a, ib, b));
        (ia, ib)
    }

    /// Cancels an order (no effect if it is already terminal).
    pub fn cancel(&mut self, id: OrderId) {
        self.outbox.commands.push(Command::Cancel(id));
    }

    /// A mark in this callback's requests (see [`Outbox::mark`]); a wrapper
    /// strategy takes one before calling the strategy it wraps.
    pub const fn mark(&self) -> usize {
        self.outbox.mark()
    }

    /// The requests made since `mark`, oldest first.
    pub fn requests_since(&self, mark: usize) -> &[Command] {
        self.outbox.since(mark)
    }

    /// Withdraws the requests made since `mark` that `keep` refuses (see
    /// [`Outbox::withdraw_since`]); returns how many.
    pub fn withdraw_since(&mut self, mark: usize, keep: impl FnMut(&Command) -> bool) -> usize {
        self.outbox.withdraw_since(mark, keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grodt_core::{Bar, Side, Size};

    struct Flat;
    impl AccountView for Flat {
        fn cash(&self) -> Decimal {
            Decimal::ONE
        }
        fn position_raw(&self, _: usize) -> i64 {
            0
        }
        fn equity(&self) -> Decimal {
            Decimal::ONE
        }
    }

    struct NoBars;
    impl MarketView for NoBars {
        fn history(&self, _: usize) -> &[Bar] {
            &[]
        }
    }

    #[test]
    fn requests_since_a_mark_can_be_read_and_withdrawn() {
        let orders: Vec<Order> = Vec::new();
        let mut outbox = Outbox::new(7);
        let instruments = [];
        let mut ctx = Context::new(0, &instruments, &NoBars, &Flat, &orders, &mut outbox);
        let buy = OrderRequest::market(0, Side::Buy, Size::EquityFraction(Decimal::ONE));
        let sell = OrderRequest::market(0, Side::Sell, Size::ClosePosition);
        let before = ctx.submit(buy);
        let mark = ctx.mark();
        assert_eq!(mark, 1);
        assert!(ctx.requests_since(mark).is_empty());
        let a = ctx.submit(buy);
        let b = ctx.submit(sell);
        ctx.cancel(before);
        assert_eq!(
            ctx.requests_since(mark),
            [
                Command::Submit(a, buy),
                Command::Submit(b, sell),
                Command::Cancel(before)
            ]
        );
        let n = ctx.withdraw_since(
            mark,
            |c| !matches!(c, Command::Submit(_, r) if r.side == Side::Buy),
        );
        assert_eq!(n, 1);
        // Requests before the mark stay; the rest keep their order; ids are not reused.
        assert_eq!(
            outbox.commands(),
            [
                Command::Submit(OrderId(7), buy),
                Command::Submit(b, sell),
                Command::Cancel(before)
            ]
        );
        assert_eq!(outbox.next_id(), 10);
        assert!(outbox.since(99).is_empty());
        assert_eq!(outbox.withdraw_since(99, |_| false), 0);
        assert_eq!(outbox.withdraw_since(0, |_| false), 3);
        assert!(outbox.is_empty());
    }

    /// The log's open orders are always the history's non-terminal ones, as
    /// orders end in any order, new ones arrive, and one is replaced.
    #[test]
    fn an_order_log_lists_what_a_full_scan_lists() {
        let order = |k: u64| {
            Order::new(
                OrderId(k),
                OrderRequest::market(0, Side::Buy, Size::ClosePosition),
                0,
            )
        };
        let mut log = OrderLog::new();
        let mut all: Vec<Order> = Vec::new();
        let open = |v: &dyn OrderView| v.open_orders().map(|o| o.id.0).collect::<Vec<_>>();
        for k in 0..12u64 {
            log.push(order(k));
            all.push(order(k));
            // End every order but each third one, a few bars after it came.
            if k >= 2 && (k - 2) % 3 != 0 {
                let j = usize::try_from(k - 2).unwrap();
                for v in [&mut log[j], &mut all[j]] {
                    v.apply(grodt_core::OrderEvent::Accept).unwrap();
                    v.apply(grodt_core::OrderEvent::Cancel).unwrap();
                }
            }
            assert_eq!(open(&log), open(&all), "after order {k}");
        }
        assert_eq!(open(&log), [0, 3, 6, 9, 10, 11]);
        // Orders 1 and 2 are behind the start of the open ones; replacing one
        // of them with a live order brings it back.
        log[0].apply(grodt_core::OrderEvent::Reject).unwrap();
        assert_eq!(open(&log), [3, 6, 9, 10, 11]);
        log.put(1, order(1));
        log.put(12, order(12));
        assert_eq!(open(&log), [1, 3, 6, 9, 10, 11, 12]);
        assert_eq!(log.order(OrderId(12)).map(|o| o.id), Some(OrderId(12)));
        assert_eq!(log.into_vec().len(), 13);
    }
}
