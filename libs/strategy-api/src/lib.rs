//! The strategy interface: the `Strategy` trait, the `Context` a strategy sees,
//! and the bounded bar windows a context is built from.
//!
//! Strategies depend on this crate and never on the engine that runs them: the
//! backtest loop (grodt-sim), the strategy service's live instances and the
//! optimizer's trials all drive the same trait through a [`Context`] that any
//! of them can build with [`Context::new`] from
//! - a [`MarketView`]: a bounded window of recent bars per instrument (for
//!   example [`Windows`], or a slice of a preloaded series);
//! - an [`AccountView`]: cash, positions and equity as the driver knows them;
//! - an [`OrderView`]: the strategy's orders and their states;
//! - an [`Outbox`]: where the strategy's requests wait until the driver applies
//!   them, and the allocator of the order ids the strategy chooses.
//!
//! Architecture invariant: no I/O, no clock, no engine. A strategy sees only bars
//! with timestamps <= now; nothing later is reachable from a context.
//!
//! ```
//! use grodt_core::{Bar, Decimal, Instrument, Order, OrderRequest, OrderUpdate, Side, Size};
//! use grodt_strategy_api::{AccountView, Context, Outbox, Strategy, Windows};
//!
//! struct BuyOnce;
//! impl Strategy for BuyOnce {
//!     fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, _bar: &Bar) {
//!         if ctx.position(instrument) == 0 && ctx.open_orders().count() == 0 {
//!             ctx.submit(OrderRequest::market(instrument, Side::Buy, Size::EquityFraction(Decimal::ONE)));
//!         }
//!     }
//! }
//!
//! struct Flat;
//! impl AccountView for Flat {
//!     fn cash(&self) -> Decimal { Decimal::from(1000) }
//!     fn position_raw(&self, _: usize) -> i64 { 0 }
//!     fn equity(&self) -> Decimal { Decimal::from(1000) }
//! }
//!
//! let spy = Instrument::equity("SPY", 2, 0);
//! let mut windows = Windows::new(1, 50);
//! windows.push(0, Bar { ts: 1, open: 100, high: 110, low: 90, close: 105, volume: 10 });
//! let orders: Vec<Order> = Vec::new();
//! let mut outbox = Outbox::new(0);
//! let bar = *windows.last(0).unwrap();
//! let instruments = [spy];
//! let mut ctx = Context::new(bar.ts, &instruments, &windows, &Flat, &orders, &mut outbox);
//! BuyOnce.on_bar(&mut ctx, 0, &bar);
//! assert_eq!(outbox.len(), 1);
//! ```

mod context;
mod window;

pub use context::{AccountView, Command, Context, MarketView, OrderLog, OrderView, Outbox};
pub use window::{BarWindow, Windows};

use grodt_core::{Bar, Fill, OrderUpdate};

/// Bars a context keeps per instrument unless the strategy asks for another
/// number with [`Strategy::history_bars`].
pub const DEFAULT_HISTORY_BARS: usize = 1024;

/// A trading strategy: the same code in backtests, paper trading and
/// optimization trials. Requests made through the context take effect after the
/// callback returns; an order decided on a bar fills no earlier than the next
/// bar of its instrument.
pub trait Strategy {
    /// Before the first bar.
    fn on_start(&mut self, _ctx: &mut Context<'_>) {}
    /// After each bar of `instrument` closed; `bar` is the last element of `ctx.history(instrument)`.
    fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, bar: &Bar);
    /// After each fill of one of its orders.
    fn on_fill(&mut self, _ctx: &mut Context<'_>, _fill: &Fill) {}
    /// After each change of one of its orders: accepted, triggered, partially
    /// filled, filled, cancelled, rejected or expired. Why a refused order was
    /// refused is `ctx.order(update.id)`'s `reject_reason`.
    fn on_order(&mut self, _ctx: &mut Context<'_>, _update: &OrderUpdate) {}
    /// After the last bar.
    fn on_stop(&mut self, _ctx: &mut Context<'_>) {}
    /// How many recent bars per instrument the strategy reads through
    /// `ctx.history`, and so how many a driver keeps per instrument. At least 1.
    /// (Indicator state a strategy keeps itself is not bounded by this.)
    fn history_bars(&self) -> usize {
        DEFAULT_HISTORY_BARS
    }
}

impl<S: Strategy + ?Sized> Strategy for Box<S> {
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        (**self).on_start(ctx);
    }
    fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, bar: &Bar) {
        (**self).on_bar(ctx, instrument, bar);
    }
    fn on_fill(&mut self, ctx: &mut Context<'_>, fill: &Fill) {
        (**self).on_fill(ctx, fill);
    }
    fn on_order(&mut self, ctx: &mut Context<'_>, update: &OrderUpdate) {
        (**self).on_order(ctx, update);
    }
    fn on_stop(&mut self, ctx: &mut Context<'_>) {
        (**self).on_stop(ctx);
    }
    fn history_bars(&self) -> usize {
        (**self).history_bars()
    }
}
