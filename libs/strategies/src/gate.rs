//! Regime gating: [`Gated`] wraps any strategy and lets it open positions only
//! while the regime in force is one it may trade in.
//!
//! The wrapper owns a `grodt_regimes::Classifier` fed the same bars of the traded
//! instrument as the strategy (so a backtest needs no precomputed regime series,
//! and the live strategy service runs the very same code), and on every bar:
//!
//! 1. feeds the bar to the classifier; a decision updates the regime in force
//!    (the classifier's own confirmation and minimum dwell apply);
//! 2. calls the wrapped strategy on every bar, whatever the regime, so its
//!    indicators stay warm;
//! 3. while the regime is **disallowed** (not in `allowed`, or not known yet
//!    during the classifier's warm-up unless `trade_before_first_decision`):
//!    - withdraws the strategy's new entry requests on the traded instrument made
//!      in that callback: a market/limit/stop order that is not an exit, every
//!      bracket, and an OCO pair unless both legs are exits (an exit is a
//!      `Size::ClosePosition` order, or a fixed quantity on the side that reduces
//!      the position by at most its size); exits and cancels always pass;
//!    - cancels the strategy's working entry orders of the instrument (a resting
//!      entry could otherwise fill in a disallowed regime);
//!    - with [`OnDisallowed::Close`] also, while a position is open, cancels every
//!      working order of the instrument (the exits of a bracket included, so none
//!      can reopen a position) and submits one market `ClosePosition` order (not
//!      again while it works, nor when the strategy itself submitted one), which
//!      fills at the next bar's open; with [`OnDisallowed::Hold`] the position is
//!      kept and left to the strategy's own exits.
//!
//! Fills and order updates are passed through unchanged, and requests the strategy
//! makes in those callbacks are gated the same way. A withdrawn request never
//! reaches the driver: its id is skipped, `ctx.order(id)` finds nothing and no
//! update arrives, as for an order the strategy never made. With every regime
//! allowed and `trade_before_first_decision`, the wrapper changes nothing.

use grodt_core::{Bar, Fill, OrderId, OrderRequest, OrderUpdate, Side, Size};
use grodt_regimes::{Classifier, Regime, RegimeConfig, RegimeError};
use grodt_strategy_api::{Command, Context, Strategy};

/// What gating does with an open position when the regime turns disallowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDisallowed {
    /// Keep the position (the strategy's exits still work); block new entries.
    Hold,
    /// Close the position with a market order at the next bar; block new entries.
    Close,
}

/// How a strategy is gated.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GateConfig {
    /// Regimes in which the strategy may open positions.
    pub allowed: Vec<Regime>,
    /// What happens to an open position in a disallowed regime.
    pub on_disallowed: OnDisallowed,
    /// The classifier's configuration.
    pub regime: RegimeConfig,
    /// The instrument whose bars are classified and whose orders are gated.
    pub instrument: usize,
    /// Whether entries pass before the classifier's first decision (its warm-up).
    /// `false` in every registry-built strategy: an unknown regime is not allowed.
    pub trade_before_first_decision: bool,
}

impl GateConfig {
    /// Gating to `allowed` with `on_disallowed`, the default classifier, on
    /// instrument 0, blocking entries during the classifier's warm-up.
    pub fn new(allowed: Vec<Regime>, on_disallowed: OnDisallowed) -> Self {
        Self {
            allowed,
            on_disallowed,
            regime: RegimeConfig::default(),
            instrument: 0,
            trade_before_first_decision: false,
        }
    }
}

/// What gating did over a run, for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateStats {
    /// Bars of the traded instrument seen in a disallowed regime.
    pub disallowed_bars: u64,
    /// Entry requests withdrawn.
    pub withdrawn: u64,
    /// Working entry orders cancelled.
    pub cancelled: u64,
    /// Close orders submitted by the gate.
    pub closes: u64,
}

/// A strategy gated by the regime in force (module docs have the rule).
#[derive(Debug)]
pub struct Gated<S> {
    inner: S,
    config: GateConfig,
    classifier: Classifier,
    regime: Option<Regime>,
    closing: Option<OrderId>,
    stats: GateStats,
}

impl<S: Strategy> Gated<S> {
    /// Wraps `inner`. `price_precision` is the traded instrument's (used by the
    /// classifier only to report prices).
    ///
    /// # Errors
    /// The classifier's configuration error, naming the field.
    pub fn new(inner: S, config: GateConfig, price_precision: u8) -> Result<Self, RegimeError> {
        let classifier = Classifier::new(config.regime.clone(), price_precision)?;
        Ok(Self {
            inner,
            config,
            classifier,
            regime: None,
            closing: None,
            stats: GateStats::default(),
        })
    }

    /// The wrapped strategy.
    pub const fn inner(&self) -> &S {
        &self.inner
    }

    /// The gate's configuration.
    pub const fn config(&self) -> &GateConfig {
        &self.config
    }

    /// The regime in force (None during the classifier's warm-up).
    pub const fn regime(&self) -> Option<Regime> {
        self.regime
    }

    /// What the gate did so far.
    pub const fn stats(&self) -> GateStats {
        self.stats
    }

    /// Whether the strategy may open positions now.
    pub fn allowed(&self) -> bool {
        self.regime
            .map_or(self.config.trade_before_first_decision, |r| {
                self.config.allowed.contains(&r)
            })
    }

    /// Withdraws the entries made since `mark` and cancels working entries.
    fn block_entries(&mut self, ctx: &mut Context<'_>, mark: usize) {
        let i = self.config.instrument;
        let pos = ctx.position(i);
        let n = ctx.withdraw_since(mark, |c| match c {
            Command::Submit(_, r) => r.instrument != i || is_exit(r, pos),
            Command::Bracket(_, _, _, b) => b.entry.instrument != i,
            Command::Oco(_, a, _, b) => {
                (a.instrument != i || is_exit(a, pos)) && (b.instrument != i || is_exit(b, pos))
            }
            Command::Cancel(_) => true,
        });
        self.stats.withdrawn += n as u64;
        let entries: Vec<OrderId> = ctx
            .open_orders()
            .filter(|o| {
                o.request.instrument == i && o.parent.is_none() && !is_exit(&o.request, pos)
            })
            .map(|o| o.id)
            .collect();
        for id in entries {
            if !ctx.requests_since(0).contains(&Command::Cancel(id)) {
                ctx.cancel(id);
                self.stats.cancelled += 1;
            }
        }
    }

    /// Submits a close of the instrument's position (once), cancelling its working orders.
    fn close_position(&mut self, ctx: &mut Context<'_>) {
        let i = self.config.instrument;
        let pos = ctx.position(i);
        if pos == 0 {
            return;
        }
        let closing = |r: &OrderRequest| r.instrument == i && r.size == Size::ClosePosition;
        let ours_working = self
            .closing
            .and_then(|id| ctx.order(id))
            .is_some_and(|o| !o.status().is_terminal());
        let theirs = ctx.open_orders().any(|o| closing(&o.request))
            || ctx
                .requests_since(0)
                .iter()
                .any(|c| matches!(c, Command::Submit(_, r) if closing(r)));
        if ours_working || theirs {
            return;
        }
        let working: Vec<OrderId> = ctx
            .open_orders()
            .filter(|o| o.request.instrument == i)
            .map(|o| o.id)
            .collect();
        for id in working {
            if !ctx.requests_since(0).contains(&Command::Cancel(id)) {
                ctx.cancel(id);
            }
        }
        let side = if pos > 0 { Side::Sell } else { Side::Buy };
        self.closing = Some(ctx.submit(OrderRequest::market(i, side, Size::ClosePosition)));
        self.stats.closes += 1;
    }

    fn gate(&mut self, ctx: &mut Context<'_>, mark: usize) {
        if self.allowed() {
            return;
        }
        self.block_entries(ctx, mark);
    }
}

/// Whether `r` only reduces a position of raw size `pos`.
fn is_exit(r: &OrderRequest, pos: i64) -> bool {
    let reducing = match r.side {
        Side::Sell => pos > 0,
        Side::Buy => pos < 0,
    };
    match r.size {
        Size::ClosePosition => true,
        Size::Fixed(q) => reducing && q.raw() <= pos.abs(),
        Size::EquityFraction(_) => false,
    }
}

impl<S: Strategy> Strategy for Gated<S> {
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        let mark = ctx.mark();
        self.inner.on_start(ctx);
        self.gate(ctx, mark);
    }

    fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, bar: &Bar) {
        if instrument == self.config.instrument
            && let Some(d) = self.classifier.on_bar(bar)
        {
            self.regime = Some(d.regime);
        }
        let mark = ctx.mark();
        self.inner.on_bar(ctx, instrument, bar);
        if instrument != self.config.instrument || self.allowed() {
            return;
        }
        self.stats.disallowed_bars += 1;
        self.block_entries(ctx, mark);
        if self.config.on_disallowed == OnDisallowed::Close {
            self.close_position(ctx);
        }
    }

    fn on_fill(&mut self, ctx: &mut Context<'_>, fill: &Fill) {
        let mark = ctx.mark();
        self.inner.on_fill(ctx, fill);
        self.gate(ctx, mark);
    }

    fn on_order(&mut self, ctx: &mut Context<'_>, update: &OrderUpdate) {
        let mark = ctx.mark();
        self.inner.on_order(ctx, update);
        self.gate(ctx, mark);
    }

    fn on_stop(&mut self, ctx: &mut Context<'_>) {
        self.inner.on_stop(ctx);
    }

    fn history_bars(&self) -> usize {
        self.inner.history_bars()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grodt_core::{BracketRequest, Decimal, Instrument, Order, Price, Quantity};
    use grodt_strategy_api::{AccountView, Outbox, Windows};

    struct Account(i64);
    impl AccountView for Account {
        fn cash(&self) -> Decimal {
            Decimal::from(1_000)
        }
        fn position_raw(&self, _: usize) -> i64 {
            self.0
        }
        fn equity(&self) -> Decimal {
            Decimal::from(1_000)
        }
    }

    /// Makes a fixed list of requests on every bar.
    struct Script(Vec<Command>);
    impl Strategy for Script {
        fn on_bar(&mut self, ctx: &mut Context<'_>, _: usize, _: &Bar) {
            for c in self.0.clone() {
                match c {
                    Command::Submit(_, r) => {
                        ctx.submit(r);
                    }
                    Command::Bracket(_, _, _, b) => {
                        ctx.submit_bracket(b);
                    }
                    Command::Oco(_, a, _, b) => {
                        ctx.submit_oco(a, b);
                    }
                    Command::Cancel(id) => ctx.cancel(id),
                }
            }
        }
    }

    fn qty(n: i64) -> Size {
        Size::Fixed(Quantity::from_raw(n, 0).unwrap())
    }

    fn market(i: usize, side: Side, size: Size) -> OrderRequest {
        OrderRequest::market(i, side, size)
    }

    /// One bar through a gate that is in warm-up (so disallowed), holding `pos`,
    /// with `orders` working; returns the requests that reach the driver.
    fn step(script: Vec<Command>, rule: OnDisallowed, pos: i64, orders: &[Order]) -> Vec<Command> {
        let mut g = Gated::new(
            Script(script),
            GateConfig::new(vec![Regime::Ranging], rule),
            2,
        )
        .unwrap();
        assert!(!g.allowed(), "unknown regime during warm-up is not allowed");
        let instruments = [Instrument::equity("A", 2, 0), Instrument::equity("B", 2, 0)];
        let mut windows = Windows::new(2, 4);
        let bar = Bar {
            ts: 1,
            open: 100,
            high: 100,
            low: 100,
            close: 100,
            volume: 1,
        };
        windows.push(0, bar);
        let orders = orders.to_vec();
        let mut outbox = Outbox::new(100);
        let account = Account(pos);
        let mut ctx = Context::new(1, &instruments, &windows, &account, &orders, &mut outbox);
        g.on_bar(&mut ctx, 0, &bar);
        outbox.commands().to_vec()
    }

    #[test]
    fn entries_are_withdrawn_and_exits_pass() {
        let buy_all = market(0, Side::Buy, Size::EquityFraction(Decimal::ONE));
        let close = market(0, Side::Sell, Size::ClosePosition);
        let sell_5 = market(0, Side::Sell, qty(5));
        let sell_20 = market(0, Side::Sell, qty(20));
        let other = market(1, Side::Buy, qty(3));
        let bracket = BracketRequest {
            entry: buy_all,
            take_profit: Price::from_raw(110, 2).unwrap(),
            stop_loss: Price::from_raw(90, 2).unwrap(),
        };
        let limit_sell =
            OrderRequest::limit(0, Side::Sell, qty(10), Price::from_raw(120, 2).unwrap());
        let script = vec![
            Command::Submit(OrderId(0), buy_all),
            Command::Submit(OrderId(0), close),
            Command::Submit(OrderId(0), sell_5),
            Command::Submit(OrderId(0), sell_20),
            Command::Submit(OrderId(0), other),
            Command::Bracket(OrderId(0), OrderId(0), OrderId(0), bracket),
            Command::Oco(OrderId(0), limit_sell, OrderId(0), sell_5),
            Command::Oco(OrderId(0), limit_sell, OrderId(0), buy_all),
            Command::Cancel(OrderId(7)),
        ];
        // Long 10: the close, a 5-share sell, the other instrument's order, the
        // OCO of two exits and the cancel pass; the rest are entries.
        let out = step(script, OnDisallowed::Hold, 10, &[]);
        assert_eq!(
            out,
            [
                Command::Submit(OrderId(101), close),
                Command::Submit(OrderId(102), sell_5),
                Command::Submit(OrderId(104), other),
                Command::Oco(OrderId(108), limit_sell, OrderId(109), sell_5),
                Command::Cancel(OrderId(7)),
            ]
        );
    }

    #[test]
    fn close_cancels_working_orders_and_flattens_once() {
        let mut entry = Order::new(
            OrderId(1),
            market(0, Side::Buy, Size::EquityFraction(Decimal::ONE)),
            0,
        );
        entry.parent = None;
        let stop = {
            let mut o = Order::new(
                OrderId(2),
                OrderRequest::stop(0, Side::Sell, qty(10), Price::from_raw(90, 2).unwrap()),
                0,
            );
            o.parent = Some(OrderId(0));
            o
        };
        let orders = [
            Order::new(OrderId(0), market(0, Side::Buy, qty(10)), 0),
            entry,
            stop,
        ];
        // Hold: the working entry is cancelled, the bracket's stop stays, nothing closes.
        let hold = step(vec![], OnDisallowed::Hold, 10, &orders);
        assert_eq!(
            hold,
            [Command::Cancel(OrderId(0)), Command::Cancel(OrderId(1))]
        );
        // Close: every working order of the instrument is cancelled and one close submitted.
        let close = step(vec![], OnDisallowed::Close, 10, &orders);
        assert_eq!(
            close,
            [
                Command::Cancel(OrderId(0)),
                Command::Cancel(OrderId(1)),
                Command::Cancel(OrderId(2)),
                Command::Submit(OrderId(100), market(0, Side::Sell, Size::ClosePosition)),
            ]
        );
        // Flat: nothing to close. Short: the close buys.
        assert!(step(vec![], OnDisallowed::Close, 0, &[]).is_empty());
        assert_eq!(
            step(vec![], OnDisallowed::Close, -4, &[]),
            [Command::Submit(
                OrderId(100),
                market(0, Side::Buy, Size::ClosePosition)
            )]
        );
        // The strategy's own close is enough: the gate adds none.
        let own = market(0, Side::Sell, Size::ClosePosition);
        assert_eq!(
            step(
                vec![Command::Submit(OrderId(0), own)],
                OnDisallowed::Close,
                10,
                &[]
            ),
            [Command::Submit(OrderId(100), own)]
        );
    }
}
