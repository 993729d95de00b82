//! A scripted strategy and bar builders.

use grodt_core::time::NANOS_PER_DAY;
use grodt_core::{
    Bar, BracketRequest, Decimal, Fill, Instrument, OrderId, OrderRequest, Price, Quantity, Size,
};
use grodt_sim::{BacktestConfig, BacktestResult, Context, Strategy, run_backtest};

/// What to do at a bar.
#[derive(Clone, Debug)]
pub enum Action {
    Submit(OrderRequest),
    Bracket(BracketRequest),
    Oco(OrderRequest, OrderRequest),
    Cancel(OrderId),
}

/// Performs actions at given bar indices of instrument 0 and records what it saw.
#[derive(Default)]
pub struct Script {
    pub plan: Vec<(usize, Action)>,
    pub fills: Vec<Fill>,
    pub ids: Vec<OrderId>,
    pub max_visible_ts: Vec<(i64, i64)>,
    /// (time, equity the context reports, cash + Σ position × close computed here).
    pub equity_checks: Vec<(i64, Decimal, Decimal)>,
}

impl Strategy for Script {
    fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, bar: &Bar) {
        let h = ctx.history(instrument);
        assert_eq!(
            h.last(),
            Some(bar),
            "the current bar is the last visible one"
        );
        self.max_visible_ts
            .push((ctx.now(), h.last().map_or(0, |b| b.ts)));
        let mut value = ctx.cash();
        for (i, inst) in ctx.instruments().iter().enumerate() {
            if let Some(last) = ctx.history(i).last() {
                let qty = Decimal::new(ctx.position(i), u32::from(inst.size_precision));
                let close = Decimal::new(last.close, u32::from(inst.price_precision));
                value += qty * close * Decimal::from(inst.multiplier);
            }
        }
        self.equity_checks.push((ctx.now(), ctx.equity(), value));
        if instrument != 0 {
            return;
        }
        let k = h.len() - 1;
        for (at, a) in self.plan.clone() {
            if at != k {
                continue;
            }
            match a {
                Action::Submit(r) => self.ids.push(ctx.submit(r)),
                Action::Bracket(b) => {
                    let (e, t, s) = ctx.submit_bracket(b);
                    self.ids.extend([e, t, s]);
                }
                Action::Oco(x, y) => {
                    let (a, b) = ctx.submit_oco(x, y);
                    self.ids.extend([a, b]);
                }
                Action::Cancel(id) => ctx.cancel(id),
            }
        }
    }

    fn on_fill(&mut self, _ctx: &mut Context<'_>, fill: &Fill) {
        self.fills.push(fill.clone());
    }
}

pub fn inst() -> Instrument {
    Instrument::equity("X", 2, 0)
}

/// A bar on day `d` with prices in cents.
pub fn bar(d: i64, o: i64, h: i64, l: i64, c: i64, v: i64) -> Bar {
    Bar {
        ts: d * NANOS_PER_DAY,
        open: o,
        high: h,
        low: l,
        close: c,
        volume: v,
    }
}

pub fn q(n: i64) -> Size {
    Size::Fixed(Quantity::from_raw(n, 0).unwrap())
}

pub fn p(cents: i64) -> Price {
    Price::from_raw(cents, 2).unwrap()
}

pub fn run(
    config: &BacktestConfig,
    bars: Vec<Bar>,
    plan: Vec<(usize, Action)>,
) -> (BacktestResult, Script) {
    let mut s = Script {
        plan,
        ..Script::default()
    };
    let r = run_backtest(config, &[inst()], &[bars], &mut s).unwrap();
    (r, s)
}

/// Flat 100.00 bars with volume 1000 for `n` days.
pub fn flat(n: i64) -> Vec<Bar> {
    (0..n)
        .map(|d| bar(d, 10_000, 10_000, 10_000, 10_000, 1_000))
        .collect()
}
