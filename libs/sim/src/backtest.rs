//! The backtest loop: a thin driver that merges the instruments' preloaded bars
//! by time, feeds each bar to the [`Venue`], tells the strategy what the venue
//! did (fills, order changes), shows it the bar through a [`Context`] over a
//! bounded window of the series, and hands its requests back to the venue.
//! Every fill and cost rule lives in the venue; nothing here decides a price.

use grodt_core::{Bar, Decimal, Instrument, Order, OrderId};
use grodt_strategy_api::{AccountView, Command, Context, MarketView, OrderView, Outbox, Strategy};

use crate::SimError;
use crate::config::{BacktestConfig, Models};
use crate::ledger::{ExactLedger, Ledger};
use crate::venue::{BacktestResult, EquityPoint, Venue, VenueEvent, check_bar, check_instruments};

/// Runs a backtest with the exact ledger.
///
/// `bars[i]` are the bars of `instruments[i]`, strictly increasing in time. The
/// strategy sees one bar at a time; orders it submits on bar t fill no earlier than
/// the instrument's next bar (plus latency).
///
/// # Errors
/// An invalid config, instrument or bar (named), or a ledger overflow.
pub fn run_backtest(
    config: &BacktestConfig,
    instruments: &[Instrument],
    bars: &[impl AsRef<[Bar]>],
    strategy: &mut dyn Strategy,
) -> Result<BacktestResult<Decimal>, SimError> {
    run_backtest_with::<ExactLedger>(config, config.models(), instruments, bars, strategy)
}

/// Runs a backtest with explicit cost models and ledger back end (custom models,
/// or the f64 ledger for benchmarks). The series are borrowed (`Vec<Bar>` or
/// `&[Bar]`): a caller holding them elsewhere need not copy them.
///
/// # Errors
/// As [`run_backtest`].
pub fn run_backtest_with<L: Ledger>(
    config: &BacktestConfig,
    models: Models,
    instruments: &[Instrument],
    bars: &[impl AsRef<[Bar]>],
    strategy: &mut dyn Strategy,
) -> Result<BacktestResult<L::Value>, SimError> {
    config.validate()?;
    let bars: Vec<&[Bar]> = bars.iter().map(AsRef::as_ref).collect();
    let bars = bars.as_slice();
    validate_inputs(instruments, bars)?;
    let total: usize = bars.iter().map(|b| b.len()).sum();
    let venue = Venue::<L>::unchecked(config.clone(), models, instruments.to_vec(), total);
    let mut run = Loop {
        venue,
        series: Series {
            bars,
            visible: vec![0; instruments.len()],
            window: strategy.history_bars().max(1),
        },
        outbox: Outbox::new(0),
        commands: Vec::new(),
        events: Vec::new(),
        trade_from: config.trade_from,
    };
    let n = instruments.len();
    let mut equity = Vec::with_capacity(if n == 1 { total } else { total / n + 1 });
    run.run(strategy, &mut equity)?;
    run.venue.finish(equity)
}

/// Checks every series before the run, so a bad bar is reported with its
/// instrument and index and the run does not start.
fn validate_inputs(instruments: &[Instrument], bars: &[&[Bar]]) -> Result<(), SimError> {
    check_instruments(instruments)?;
    if instruments.len() != bars.len() {
        return Err(SimError::InvalidConfig {
            field: "bars",
            reason: format!(
                "{} bar series for {} instruments",
                bars.len(),
                instruments.len()
            ),
        });
    }
    for (inst, series) in instruments.iter().zip(bars) {
        let mut prev = None;
        for (k, b) in series.iter().enumerate() {
            check_bar(inst, k, prev, b)?;
            prev = Some(b.ts);
        }
    }
    Ok(())
}

/// The strategy's window onto the preloaded series: the last `window` bars up
/// to the latest one fed, never the whole series.
struct Series<'a> {
    bars: &'a [&'a [Bar]],
    visible: Vec<usize>,
    window: usize,
}

impl MarketView for Series<'_> {
    fn history(&self, instrument: usize) -> &[Bar] {
        match (self.bars.get(instrument), self.visible.get(instrument)) {
            (Some(b), Some(&n)) => &b[n.saturating_sub(self.window)..n],
            _ => &[],
        }
    }
}

impl<L: Ledger> AccountView for Venue<L> {
    fn cash(&self) -> Decimal {
        Venue::cash(self)
    }
    fn position_raw(&self, instrument: usize) -> i64 {
        Venue::position_raw(self, instrument)
    }
    fn equity(&self) -> Decimal {
        // Only an overflow fails here; a strategy then sees no equity to size against.
        self.equity_decimal().unwrap_or(Decimal::ZERO)
    }
}

impl<L: Ledger> OrderView for Venue<L> {
    fn order(&self, id: OrderId) -> Option<&Order> {
        Venue::order(self, id)
    }
    fn open_orders(&self) -> Box<dyn Iterator<Item = &Order> + '_> {
        Box::new(Venue::open_orders(self))
    }
}

struct Loop<'a, L: Ledger> {
    venue: Venue<L>,
    series: Series<'a>,
    outbox: Outbox,
    /// Reused buffers: the loop allocates nothing per bar.
    commands: Vec<Command>,
    events: Vec<VenueEvent>,
    /// [`BacktestConfig::trade_from`].
    trade_from: Option<i64>,
}

impl<L: Ledger> Loop<'_, L> {
    fn run(
        &mut self,
        strategy: &mut dyn Strategy,
        equity: &mut Vec<EquityPoint<L::Value>>,
    ) -> Result<(), SimError> {
        let bars = self.series.bars;
        let start = bars
            .iter()
            .filter_map(|b| b.first())
            .map(|b| b.ts)
            .min()
            .unwrap_or(0);
        self.venue.accrue_to(start)?;
        self.callback(strategy, |s, c| s.on_start(c));
        self.settle(strategy)?;
        loop {
            // Next timestamp: the smallest head among the series.
            // The series' visible counts are the cursor: bars fed so far.
            let mut ts = i64::MAX;
            for (series, &k) in bars.iter().zip(&self.series.visible) {
                if let Some(b) = series.get(k) {
                    ts = ts.min(b.ts);
                }
            }
            if ts == i64::MAX {
                break;
            }
            for (i, series) in bars.iter().enumerate() {
                let k = self.series.visible[i];
                let Some(bar) = series.get(k) else {
                    continue;
                };
                if bar.ts != ts {
                    continue;
                }
                self.venue.on_bar_unchecked(i, bar)?;
                self.series.visible[i] = k + 1;
                if self.venue.has_events() {
                    self.settle(strategy)?;
                }
                self.callback(strategy, |s, c| s.on_bar(c, i, bar));
                if !self.outbox.is_empty() {
                    self.settle(strategy)?;
                    if self.venue.has_close_fills() {
                        self.venue.fill_at_close()?;
                        self.settle(strategy)?;
                    }
                }
            }
            // Warm-up bars fed the strategy; the curve starts with trading.
            if self.trade_from.is_none_or(|t| ts >= t) {
                equity.push(EquityPoint {
                    ts,
                    equity: self.venue.equity()?,
                });
            }
        }
        self.callback(strategy, |s, c| s.on_stop(c));
        Ok(())
    }

    fn callback(
        &mut self,
        strategy: &mut dyn Strategy,
        f: impl FnOnce(&mut dyn Strategy, &mut Context<'_>),
    ) {
        f(
            strategy,
            &mut context(&self.venue, &self.series, &mut self.outbox),
        );
    }

    /// Tells the strategy one thing the venue did.
    fn tell(&mut self, strategy: &mut dyn Strategy, ev: &VenueEvent) {
        let venue = &self.venue;
        let mut ctx = context(venue, &self.series, &mut self.outbox);
        match ev {
            VenueEvent::Fill(seq) => {
                if let Some(fill) = venue.fill(*seq) {
                    strategy.on_fill(&mut ctx, fill);
                }
            }
            VenueEvent::Order(update) => strategy.on_order(&mut ctx, update),
        }
    }

    /// Hands the strategy's requests to the venue and tells the strategy what
    /// happened, until neither side has anything left.
    fn settle(&mut self, strategy: &mut dyn Strategy) -> Result<(), SimError> {
        loop {
            if !self.outbox.is_empty() {
                self.outbox.take_into(&mut self.commands);
                for cmd in &self.commands {
                    apply(&mut self.venue, cmd)?;
                }
            }
            if !self.venue.has_events() {
                return Ok(());
            }
            self.venue.take_events_into(&mut self.events);
            let events = std::mem::take(&mut self.events);
            for ev in &events {
                self.tell(strategy, ev);
                if !self.outbox.is_empty() {
                    self.outbox.take_into(&mut self.commands);
                    for cmd in &self.commands {
                        apply(&mut self.venue, cmd)?;
                    }
                }
            }
            self.events = events;
        }
    }
}

/// The strategy's context over the venue (account and orders), the window
/// onto the series and the outbox.
fn context<'s, L: Ledger>(
    venue: &'s Venue<L>,
    series: &'s Series<'_>,
    outbox: &'s mut Outbox,
) -> Context<'s> {
    Context::new(
        venue.now(),
        venue.instruments(),
        series,
        venue,
        venue,
        outbox,
    )
}

/// One strategy request to the venue. Cancelling an id the venue does not know
/// is a no-op for a strategy, as cancelling a terminal order is.
fn apply<L: Ledger>(venue: &mut Venue<L>, cmd: &Command) -> Result<(), SimError> {
    match *cmd {
        Command::Submit(id, req) => venue.submit(id, req),
        Command::Bracket(e, tp, sl, br) => venue.submit_bracket(e, tp, sl, br),
        Command::Oco(a_id, a, b_id, b) => venue.submit_oco(a_id, a, b_id, b),
        Command::Cancel(id) => match venue.cancel(id) {
            Err(SimError::UnknownOrder { .. }) => Ok(()),
            other => other,
        },
    }
}
