//! The simulated venue: working orders, every fill and cost rule, the ledger and
//! trade tracking, driven one event at a time from outside.
//!
//! A driver submits and cancels orders under ids it chooses, feeds bars one at a
//! time ([`Venue::on_bar`]), accrues borrow and financing up to a time, and reads
//! what each step caused from [`Venue::events`]: fills and every order-status
//! change. The backtest loop ([`crate::run_backtest`]) is one such driver; the
//! paper broker is another, so backtest and paper fills cannot drift apart.
//!
//! "Fills no earlier than the next bar" is keyed on a per-instrument bar
//! counter: an order accepted after the venue saw `n` bars of its instrument
//! can fill from that instrument's bar `n + 1` on (and not before its latency
//! has elapsed in bar time).
//!
//! Per bar with no working orders the venue does integer work only: a bar check,
//! a raw-integer mark and a counter. Decimal arithmetic happens at fills and day changes.

use std::collections::HashMap;

use grodt_core::fixed::notional;
use grodt_core::rounding::{
    RoundingMode, round_money, round_price, round_quantity, round_raw_to_increment,
};
use grodt_core::time::day_index;
use grodt_core::{
    Bar, BracketRequest, CostTotals, Decimal, Fill, Instrument, Liquidity, Order, OrderEvent,
    OrderId, OrderKind, OrderRequest, OrderStatus, OrderUpdate, Price, Quantity, Side, Size,
    TimeInForce, TrailingOffset,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::SimError;
use crate::config::{BacktestConfig, FillTiming, LimitFill, Models};
use crate::ledger::{ExactLedger, Ledger, Mark, signed_value};
use crate::models::{CommissionInput, SlippageInput};
use crate::path::{Hit, Reach, first_reach, path_of};
pub use crate::trades::Trade;
use crate::trades::TradeBook;

/// Equity at one timestamp (after every bar with that timestamp was processed).
/// Kept to two fields so a million-bar curve stays small (24 bytes a point exact).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EquityPoint<V> {
    /// Timestamp (UTC ns).
    pub ts: i64,
    /// Cash plus the market value of every position at the latest closes.
    pub equity: V,
}

/// Everything a run produced.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BacktestResult<V = Decimal> {
    /// One point per distinct timestamp.
    pub equity: Vec<EquityPoint<V>>,
    /// Every fill, in order.
    pub fills: Vec<Fill>,
    /// Round trips, in order of entry; an open one last per instrument.
    pub trades: Vec<Trade>,
    /// Every order with its final state (index = order id).
    pub orders: Vec<Order>,
    /// Itemised costs.
    pub costs: CostTotals,
    /// Final signed raw positions.
    pub positions: Vec<i64>,
    /// Final cash, position value and equity.
    pub last: Mark<V>,
    /// Bars processed.
    pub bars: u64,
}

/// What a venue step caused, in the order it happened. Small and `Copy`: a
/// fill is read with [`Venue::fill`], a refusal's reason with [`Venue::reason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum VenueEvent {
    /// A fill, by its sequence number (the order's update follows it).
    Fill(u64),
    /// A change of an order's state.
    Order(OrderUpdate),
}

/// A position in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PositionSnapshot {
    /// Instrument symbol.
    pub symbol: String,
    /// Signed quantity.
    pub quantity: Decimal,
    /// The latest close it is marked at (`None` before the instrument's first bar).
    pub mark: Option<Price>,
    /// Signed market value at the mark.
    pub value: Decimal,
}

/// The venue's state at one moment, exact.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    /// The venue's time (UTC ns): the latest bar or accrual.
    pub ts: i64,
    /// Cash.
    pub cash: Decimal,
    /// Cash plus every position at its mark.
    pub equity: Decimal,
    /// Non-flat positions, by symbol.
    pub positions: Vec<PositionSnapshot>,
    /// Orders that can still fill or wait for a bracket entry.
    pub open_orders: Vec<Order>,
    /// Itemised costs so far.
    pub costs: CostTotals,
}

/// Checks one bar of `inst` (its `index`-th) against the previous one's time.
#[inline]
pub(crate) fn check_bar(
    inst: &Instrument,
    index: usize,
    prev_ts: Option<i64>,
    b: &Bar,
) -> Result<(), SimError> {
    let tick = inst.tick_size.raw();
    if b.check().is_ok()
        && prev_ts.is_none_or(|p| b.ts > p)
        && (tick <= 1
            || [b.open, b.high, b.low, b.close]
                .iter()
                .all(|p| p % tick == 0))
    {
        return Ok(());
    }
    Err(bar_error(inst, index, prev_ts, b))
}

/// Why [`check_bar`] refused a bar (the rare path, kept out of line).
#[cold]
#[inline(never)]
fn bar_error(inst: &Instrument, index: usize, prev_ts: Option<i64>, b: &Bar) -> SimError {
    let reason = match b.check() {
        Err(r) => r,
        Ok(()) if prev_ts.is_some_and(|p| b.ts <= p) => "timestamp not after the previous bar",
        Ok(()) => "price not on the tick",
    };
    SimError::InvalidBar {
        instrument: inst.id.clone(),
        index,
        reason: reason.into(),
    }
}

/// Checks a venue's instruments: at least one, each valid, ids unique.
pub(crate) fn check_instruments(instruments: &[Instrument]) -> Result<(), SimError> {
    if instruments.is_empty() {
        return Err(SimError::InvalidConfig {
            field: "instruments",
            reason: "none given".into(),
        });
    }
    for (i, inst) in instruments.iter().enumerate() {
        inst.validate()?;
        if instruments[..i].iter().any(|o| o.id == inst.id) {
            return Err(SimError::InvalidConfig {
                field: "instruments",
                reason: format!("duplicate id {}", inst.id),
            });
        }
    }
    Ok(())
}

/// A working order's engine-side state.
#[derive(Clone, Copy, Debug)]
struct Working {
    order: usize,
    instrument: usize,
    /// May fill only on bars of its instrument with counter > this (None: any bar).
    after_bar: Option<usize>,
    /// And only on bars with ts >= this (latency).
    active_ts: i64,
    /// For DAY orders: the UTC day of the first eligible bar.
    day: Option<i64>,
    /// Trailing stop: best price seen and current trigger.
    trail_extreme: i64,
    trail_level: i64,
}

/// The simulated venue. `L` is the ledger back end: exact by default, `F64Ledger`
/// for benchmarks.
pub struct Venue<L: Ledger = ExactLedger> {
    config: BacktestConfig,
    models: Models,
    instruments: Vec<Instrument>,
    rng: ChaCha8Rng,
    ledger: L,
    orders: Vec<Order>,
    /// Every order before this index is terminal (and stays so): where
    /// [`Venue::open_orders`] starts, so a strategy asking for its open
    /// orders on every bar does not scan the whole history.
    open_from: usize,
    /// Ids that are not their order's index (ids a caller chose freely).
    sparse_ids: HashMap<OrderId, usize>,
    children: Vec<[Option<usize>; 2]>,
    working: Vec<Working>,
    fills: Vec<Fill>,
    trades: TradeBook,
    marks: Vec<i64>,
    /// Bars fed per instrument: the "next bar" counter.
    seen: Vec<usize>,
    /// Time of each instrument's latest bar fed through [`Venue::on_bar`]
    /// (`i64::MIN` before its first).
    last_ts: Vec<i64>,
    /// The bar fed last, kept only in the same-bar-close mode (its close fills).
    close_bar: Option<Bar>,
    /// `config.fill_timing == SameBarClose`, read once per bar.
    close_mode: bool,
    /// The instrument of the bar fed last (kept in the same-bar-close mode only).
    current: Option<usize>,
    last_day: Option<i64>,
    next_day_ts: i64,
    now: i64,
    bars_done: u64,
    scratch_marks: Vec<i64>,
    cands: Vec<(i64, usize, usize, i64, bool)>,
    same_close: Vec<usize>,
    events: Vec<VenueEvent>,
}

impl<L: Ledger> Venue<L> {
    /// A venue with the config's cost models and the exact or f64 ledger.
    ///
    /// # Errors
    /// An invalid config or instrument list, naming the field.
    pub fn new(config: BacktestConfig, instruments: Vec<Instrument>) -> Result<Self, SimError> {
        let models = config.models();
        Self::with_models(config, models, instruments)
    }

    /// A venue with explicit cost models.
    ///
    /// # Errors
    /// An invalid config or instrument list, naming the field.
    pub fn with_models(
        config: BacktestConfig,
        models: Models,
        instruments: Vec<Instrument>,
    ) -> Result<Self, SimError> {
        config.validate()?;
        check_instruments(&instruments)?;
        Ok(Self::unchecked(config, models, instruments, 0))
    }

    /// `expected_bars` sizes the buffers (a backtest knows its series).
    pub(crate) fn unchecked(
        config: BacktestConfig,
        models: Models,
        instruments: Vec<Instrument>,
        expected_bars: usize,
    ) -> Self {
        let n = instruments.len();
        // Room for a fill every 8 bars, capped so huge runs do not reserve gigabytes.
        let reserve = (expected_bars / 8).min(1 << 20);
        let close_mode = config.fill_timing == FillTiming::SameBarClose;
        Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            ledger: L::open(config.starting_cash, &instruments),
            config,
            models,
            instruments,
            // Reserved, not touched: untouched capacity costs no memory, and an
            // active strategy then never copies these while they grow.
            orders: Vec::with_capacity(reserve),
            open_from: 0,
            sparse_ids: HashMap::new(),
            children: Vec::with_capacity(reserve),
            working: Vec::new(),
            fills: Vec::with_capacity(reserve),
            trades: TradeBook::new(n, reserve / 2),
            marks: vec![0; n],
            seen: vec![0; n],
            last_ts: vec![i64::MIN; n],
            close_bar: None,
            close_mode,
            current: None,
            last_day: None,
            next_day_ts: i64::MIN,
            now: i64::MIN,
            bars_done: 0,
            scratch_marks: vec![0; n],
            cands: Vec::new(),
            same_close: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The instruments; order requests and fills refer to them by index.
    pub fn instruments(&self) -> &[Instrument] {
        &self.instruments
    }

    /// The index of the instrument named `symbol`.
    pub fn instrument_index(&self, symbol: &str) -> Option<usize> {
        self.instruments.iter().position(|i| i.id == symbol)
    }

    /// The venue's time: the latest bar fed or accrual (`i64::MIN` before either).
    pub const fn now(&self) -> i64 {
        self.now
    }

    /// What the steps since the last [`Venue::clear_events`] caused, in order.
    pub fn events(&self) -> &[VenueEvent] {
        &self.events
    }

    /// Whether any event waits.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Forgets the events read so far.
    pub fn clear_events(&mut self) {
        self.events.clear();
    }

    /// Moves the waiting events into `into` (cleared first), keeping both
    /// buffers' capacity.
    pub fn take_events_into(&mut self, into: &mut Vec<VenueEvent>) {
        into.clear();
        std::mem::swap(&mut self.events, into);
    }

    /// An order by the id its submitter chose.
    pub fn order(&self, id: OrderId) -> Option<&Order> {
        self.lookup(id).map(|i| &self.orders[i])
    }

    /// Every order so far, in submission order.
    pub fn orders(&self) -> &[Order] {
        &self.orders
    }

    /// Orders that can still fill or wait for a bracket entry, in submission
    /// order (the non-terminal ones of [`Venue::orders`]).
    pub fn open_orders(&self) -> impl Iterator<Item = &Order> {
        self.orders[self.open_from..]
            .iter()
            .filter(|o| !o.status().is_terminal())
    }

    /// Every fill so far.
    pub fn fills(&self) -> &[Fill] {
        &self.fills
    }

    /// Bars fed so far, all instruments.
    pub const fn bars_fed(&self) -> u64 {
        self.bars_done
    }

    /// Bars fed so far of one instrument.
    pub fn bars_seen(&self, instrument: usize) -> usize {
        self.seen.get(instrument).copied().unwrap_or(0)
    }

    /// Cash.
    pub fn cash(&self) -> Decimal {
        self.ledger.cash()
    }

    /// Signed raw position of an instrument.
    pub fn position_raw(&self, instrument: usize) -> i64 {
        self.ledger.position_raw(instrument)
    }

    /// Equity at the latest closes, in the ledger's number type.
    ///
    /// # Errors
    /// A ledger overflow.
    pub fn equity(&self) -> Result<L::Value, SimError> {
        self.ledger.equity(&self.marks)
    }

    /// Equity at the latest closes, exact.
    ///
    /// # Errors
    /// A ledger overflow.
    pub fn equity_decimal(&self) -> Result<Decimal, SimError> {
        self.ledger.equity_decimal(&self.marks)
    }

    /// Cash, positions, equity, open orders and costs now.
    ///
    /// # Errors
    /// A ledger overflow.
    pub fn snapshot(&self) -> Result<Snapshot, SimError> {
        let mut positions = Vec::new();
        for (i, inst) in self.instruments.iter().enumerate() {
            let q = self.ledger.position_raw(i);
            if q == 0 {
                continue;
            }
            let mark = (self.seen[i] > 0)
                .then(|| Price::from_raw(self.marks[i], inst.price_precision))
                .transpose()?;
            positions.push(PositionSnapshot {
                symbol: inst.id.clone(),
                quantity: Decimal::new(q, u32::from(inst.size_precision)),
                mark,
                value: signed_value(inst, q, self.marks[i])?,
            });
        }
        Ok(Snapshot {
            ts: self.now,
            cash: self.ledger.cash(),
            equity: self.ledger.equity_decimal(&self.marks)?,
            positions,
            open_orders: self.open_orders().cloned().collect(),
            costs: self.ledger.costs(),
        })
    }

    fn lookup(&self, id: OrderId) -> Option<usize> {
        match usize::try_from(id.0).ok() {
            Some(i) if self.orders.get(i).is_some_and(|o| o.id == id) => Some(i),
            _ => self.sparse_ids.get(&id).copied(),
        }
    }

    /// Applies an order event and records the change; `reason` says why the
    /// venue refused it (a rejection, or the cancel of a partly filled rest).
    fn transition(
        &mut self,
        o: usize,
        event: OrderEvent,
        reason: Option<String>,
    ) -> Result<(), SimError> {
        let order = &mut self.orders[o];
        order.apply(event)?;
        if reason.is_some() {
            order.reject_reason = reason;
        }
        self.push_change(o, self.now);
        Ok(())
    }

    #[inline]
    fn push_change(&mut self, o: usize, ts: i64) {
        self.events
            .push(VenueEvent::Order(OrderUpdate::of(&self.orders[o], ts)));
    }

    /// A fill by its sequence number.
    pub fn fill(&self, seq: u64) -> Option<&Fill> {
        usize::try_from(seq).ok().and_then(|i| self.fills.get(i))
    }

    /// Why the venue refused an order (rejected it, or cancelled the rest of a
    /// partly filled one), if it did.
    pub fn reason(&self, id: OrderId) -> Option<&str> {
        self.order(id).and_then(|o| o.reject_reason.as_deref())
    }

    /// Moves the venue's clock to `ts` and charges borrow on shorts and financing
    /// on negative cash for every calendar day begun since the last accrual.
    /// Feeding a bar does this too; a driver calls it to accrue over days without bars.
    ///
    /// # Errors
    /// `ts` before the venue's time, or a ledger overflow.
    pub fn accrue_to(&mut self, ts: i64) -> Result<(), SimError> {
        if ts < self.now {
            return Err(SimError::TimeWentBack { now: self.now, ts });
        }
        self.now = ts;
        self.accrue(ts)
    }

    /// Submits an order under the id the caller chose. A request the venue
    /// refuses (unknown instrument, quantity or price off its grid...) becomes a
    /// `Rejected` order with the reason, reported in the events like any change.
    ///
    /// # Errors
    /// The id is already taken.
    pub fn submit(&mut self, id: OrderId, req: OrderRequest) -> Result<(), SimError> {
        self.check_new_id(id)?;
        self.create(id, req, true)?;
        Ok(())
    }

    /// Submits a bracket: the entry now; a take-profit limit and a stop-loss stop,
    /// which go live for the entry's filled quantity from the bar after it fills
    /// and cancel each other.
    ///
    /// # Errors
    /// One of the ids is already taken.
    pub fn submit_bracket(
        &mut self,
        entry_id: OrderId,
        take_profit_id: OrderId,
        stop_loss_id: OrderId,
        br: BracketRequest,
    ) -> Result<(), SimError> {
        for id in [entry_id, take_profit_id, stop_loss_id] {
            self.check_new_id(id)?;
        }
        if entry_id == take_profit_id || entry_id == stop_loss_id || take_profit_id == stop_loss_id
        {
            return Err(SimError::DuplicateOrder { id: entry_id.0 });
        }
        let entry = self.create(entry_id, br.entry, true)?;
        let exit_side = br.entry.side.opposite();
        let size = Size::Fixed(Quantity::zero(
            self.instruments
                .get(br.entry.instrument)
                .map_or(0, |i| i.size_precision),
        ));
        let tp_req = OrderRequest {
            instrument: br.entry.instrument,
            side: exit_side,
            size,
            kind: OrderKind::Limit {
                price: br.take_profit,
            },
            tif: TimeInForce::Gtc,
        };
        let sl_req = OrderRequest {
            instrument: br.entry.instrument,
            side: exit_side,
            size,
            kind: OrderKind::Stop {
                trigger: br.stop_loss,
            },
            tif: TimeInForce::Gtc,
        };
        let t = self.create(take_profit_id, tp_req, false)?;
        let s = self.create(stop_loss_id, sl_req, false)?;
        for (x, other) in [(t, stop_loss_id), (s, take_profit_id)] {
            self.orders[x].parent = Some(entry_id);
            self.orders[x].oco = Some(other);
            self.orders[x].quantity = None;
        }
        self.children[entry] = [Some(t), Some(s)];
        if self.orders[entry].status() == OrderStatus::Rejected {
            for c in [t, s] {
                if self.orders[c].status() == OrderStatus::New {
                    self.transition(c, OrderEvent::Cancel, None)?;
                }
            }
        }
        Ok(())
    }

    /// Submits two orders where a fill of one cancels the other.
    ///
    /// # Errors
    /// One of the ids is already taken.
    pub fn submit_oco(
        &mut self,
        a_id: OrderId,
        a: OrderRequest,
        b_id: OrderId,
        b: OrderRequest,
    ) -> Result<(), SimError> {
        self.check_new_id(a_id)?;
        self.check_new_id(b_id)?;
        if a_id == b_id {
            return Err(SimError::DuplicateOrder { id: a_id.0 });
        }
        let x = self.create(a_id, a, true)?;
        let y = self.create(b_id, b, true)?;
        self.orders[x].oco = Some(b_id);
        self.orders[y].oco = Some(a_id);
        Ok(())
    }

    /// Cancels an order and, if it never filled, its bracket exits. An order
    /// already terminal is left as it is (cancelling is idempotent).
    ///
    /// # Errors
    /// No order has this id.
    pub fn cancel(&mut self, id: OrderId) -> Result<(), SimError> {
        let idx = self.lookup(id).ok_or(SimError::UnknownOrder { id: id.0 })?;
        let status = self.orders[idx].status();
        if status.is_working() || status == OrderStatus::New {
            self.transition(idx, OrderEvent::Cancel, None)?;
            self.cancel_children_if_unfilled(idx)?;
            self.retain_working();
        }
        Ok(())
    }

    fn check_new_id(&self, id: OrderId) -> Result<(), SimError> {
        if self.lookup(id).is_some() {
            return Err(SimError::DuplicateOrder { id: id.0 });
        }
        Ok(())
    }

    fn retain_working(&mut self) {
        let orders = &self.orders;
        self.working
            .retain(|w| orders[w.order].status().is_working());
        // Terminal is final, so the prefix of terminal orders only grows.
        while self
            .orders
            .get(self.open_from)
            .is_some_and(|o| o.status().is_terminal())
        {
            self.open_from += 1;
        }
    }

    /// Feeds one bar of `instrument`: fills working orders against it along the
    /// intrabar path, then marks the instrument at the close. The fills and
    /// order changes it caused are appended to [`Venue::events`].
    ///
    /// # Errors
    /// An unknown instrument, a bar that is malformed, off the tick or not after
    /// the instrument's previous bar, a bar before the venue's time; a ledger
    /// overflow. A refused bar changes nothing.
    pub fn on_bar(&mut self, instrument: usize, bar: &Bar) -> Result<(), SimError> {
        let inst = self
            .instruments
            .get(instrument)
            .ok_or_else(|| SimError::UnknownInstrument {
                instrument: instrument.to_string(),
            })?;
        let prev = self.last_ts[instrument];
        check_bar(
            inst,
            self.seen[instrument],
            (prev != i64::MIN).then_some(prev),
            bar,
        )?;
        if bar.ts < self.now {
            return Err(SimError::TimeWentBack {
                now: self.now,
                ts: bar.ts,
            });
        }
        self.last_ts[instrument] = bar.ts;
        self.on_bar_unchecked(instrument, bar)
    }

    /// [`Venue::on_bar`] by symbol.
    ///
    /// # Errors
    /// As [`Venue::on_bar`]; an unknown symbol.
    pub fn on_bar_of(&mut self, symbol: &str, bar: &Bar) -> Result<(), SimError> {
        let i = self
            .instrument_index(symbol)
            .ok_or_else(|| SimError::UnknownInstrument {
                instrument: symbol.to_string(),
            })?;
        self.on_bar(i, bar)
    }

    /// The bar step, for a driver that checked the bar and time itself
    /// (`run_backtest`, which checks every series first and never mixes this
    /// with [`Venue::on_bar`] on one venue).
    #[inline]
    pub(crate) fn on_bar_unchecked(&mut self, i: usize, bar: &Bar) -> Result<(), SimError> {
        if bar.ts != self.now {
            self.now = bar.ts;
            self.accrue(bar.ts)?;
        }
        let k = self.seen[i];
        if self.close_mode {
            self.current = Some(i);
            self.close_bar = Some(*bar);
        }
        if !self.working.is_empty() {
            self.process_orders(i, k, bar)?;
        }
        self.trades.on_bar(i, k, bar);
        self.marks[i] = bar.close;
        self.seen[i] = k + 1;
        self.bars_done += 1;
        Ok(())
    }

    /// Whether market orders wait to fill at the close of the bar fed last
    /// ([`FillTiming::SameBarClose`]).
    pub fn has_close_fills(&self) -> bool {
        !self.same_close.is_empty()
    }

    /// With [`FillTiming::SameBarClose`]: fills the market orders submitted since
    /// the last bar of their instrument at that bar's close (the cheat-on-close
    /// mode of some backtesters; never with latency).
    ///
    /// # Errors
    /// A ledger overflow.
    pub fn fill_at_close(&mut self) -> Result<(), SimError> {
        if self.same_close.is_empty() {
            return Ok(());
        }
        let list = std::mem::take(&mut self.same_close);
        for &o in &list {
            let i = self.orders[o].request.instrument;
            // Queued only while the bar fed last is this instrument's.
            if let Some(bar) = self.close_bar
                && self.current == Some(i)
                && self.orders[o].status().is_working()
            {
                self.execute(o, i, self.seen[i] - 1, &bar, bar.close, Liquidity::Taker)?;
            }
        }
        self.same_close = list;
        self.same_close.clear();
        self.retain_working();
        Ok(())
    }

    /// Closes the books: open trades are reported as open at their last mark.
    ///
    /// # Errors
    /// A ledger overflow.
    pub fn finish(
        self,
        equity: Vec<EquityPoint<L::Value>>,
    ) -> Result<BacktestResult<L::Value>, SimError> {
        let trades = self
            .trades
            .finish(&self.instruments, &self.seen, &self.marks)?;
        let last = self.ledger.mark(&self.marks)?;
        Ok(BacktestResult {
            positions: (0..self.instruments.len())
                .map(|i| self.ledger.position_raw(i))
                .collect(),
            costs: self.ledger.costs(),
            equity,
            fills: self.fills,
            trades,
            orders: self.orders,
            last,
            bars: self.bars_done,
        })
    }

    /// Borrow on shorts and financing on negative cash, per calendar day elapsed.
    #[inline]
    fn accrue(&mut self, ts: i64) -> Result<(), SimError> {
        // Most timestamps fall inside the current day: one comparison, inlined.
        if ts < self.next_day_ts {
            return Ok(());
        }
        self.accrue_new_day(ts)
    }

    #[inline(never)]
    fn accrue_new_day(&mut self, ts: i64) -> Result<(), SimError> {
        let day = day_index(ts);
        self.next_day_ts = (day + 1).saturating_mul(grodt_core::time::NANOS_PER_DAY);
        let Some(last) = self.last_day else {
            self.last_day = Some(day);
            return Ok(());
        };
        if day <= last {
            return Ok(());
        }
        self.last_day = Some(day);
        let days = Decimal::from(day - last);
        let dp = self.config.cost_dp;
        if self.ledger.any_short() {
            for (i, inst) in self.instruments.iter().enumerate() {
                let q = self.ledger.position_raw(i);
                if q >= 0 {
                    continue;
                }
                let value = -signed_value(inst, q, self.marks[i])?;
                let rate = inst.borrow.annual_rate.unwrap_or(self.config.borrow_rate);
                let fee = round_money(
                    value * rate * days / self.config.borrow_day_count.days(),
                    dp,
                    RoundingMode::Ceil,
                );
                if fee > Decimal::ZERO {
                    self.ledger.charge_borrow(fee)?;
                }
            }
        }
        if self.config.financing_rate > Decimal::ZERO && self.ledger.cash_negative() {
            let owed = -self.ledger.cash();
            let fee = round_money(
                owed * self.config.financing_rate * days / self.config.financing_day_count.days(),
                dp,
                RoundingMode::Ceil,
            );
            if fee > Decimal::ZERO {
                self.ledger.charge_financing(fee)?;
            }
        }
        Ok(())
    }

    fn validate_request(&self, r: &OrderRequest, exit: bool) -> Result<(), String> {
        let inst = self
            .instruments
            .get(r.instrument)
            .ok_or_else(|| format!("instrument index {} does not exist", r.instrument))?;
        match r.size {
            // A bracket exit's quantity is the entry's filled quantity, set when it fills.
            Size::Fixed(_) if exit => {}
            Size::Fixed(q) => inst.check_quantity(q).map_err(|e| e.to_string())?,
            Size::EquityFraction(f) if f <= Decimal::ZERO => {
                return Err(format!("size fraction {f} must be positive"));
            }
            _ => {}
        }
        let check = |p: Price| inst.check_price(p).map_err(|e| e.to_string());
        match r.kind {
            OrderKind::Market => {}
            OrderKind::Limit { price } => check(price)?,
            OrderKind::Stop { trigger } => check(trigger)?,
            OrderKind::StopLimit { trigger, limit } => {
                check(trigger)?;
                check(limit)?;
            }
            OrderKind::TrailingStop { offset } => match offset {
                TrailingOffset::Amount(a) if a.raw() <= 0 => {
                    return Err("trailing amount must be positive".into());
                }
                TrailingOffset::Amount(a) => check(a)?,
                TrailingOffset::Percent(p) if p <= Decimal::ZERO || p >= Decimal::ONE => {
                    return Err("trailing percent must be in (0, 1)".into());
                }
                TrailingOffset::Percent(_) => {}
            },
        }
        Ok(())
    }

    /// Creates an order; `live` says whether it works now (false for bracket exits).
    fn create(&mut self, id: OrderId, req: OrderRequest, live: bool) -> Result<usize, SimError> {
        let idx = self.orders.len();
        if usize::try_from(id.0).ok() != Some(idx) {
            self.sparse_ids.insert(id, idx);
        }
        self.orders.push(Order::new(id, req, self.now));
        self.children.push([None, None]);
        if self.config.trade_from.is_some_and(|t| self.now < t) {
            let reason = "warm-up: no orders before trade_from".to_owned();
            self.transition(idx, OrderEvent::Reject, Some(reason))?;
            return Ok(idx);
        }
        if let Err(reason) = self.validate_request(&req, !live) {
            self.transition(idx, OrderEvent::Reject, Some(reason))?;
            return Ok(idx);
        }
        if live {
            // Not before the instrument's next bar: the counter of bars seen so far.
            let after = self
                .seen
                .get(req.instrument)
                .and_then(|&n| n.checked_sub(1));
            let close_ok = self.current == Some(req.instrument);
            self.activate(idx, after, close_ok)?;
        }
        Ok(idx)
    }

    /// Accepts an order and makes it work on bars of its instrument with a
    /// counter above `after_bar`, once its latency elapsed.
    fn activate(
        &mut self,
        idx: usize,
        after_bar: Option<usize>,
        close_ok: bool,
    ) -> Result<(), SimError> {
        self.transition(idx, OrderEvent::Accept, None)?;
        let req = self.orders[idx].request;
        let delay = self.models.latency.delay_ns(&mut self.rng);
        let mut w = Working {
            order: idx,
            instrument: req.instrument,
            after_bar,
            active_ts: self.now.saturating_add(delay),
            day: None,
            trail_extreme: 0,
            trail_level: 0,
        };
        if let OrderKind::TrailingStop { offset } = req.kind {
            let base = self.marks[req.instrument];
            w.trail_extreme = base;
            w.trail_level = self.trail_level(req.instrument, req.side, base, offset)?;
        }
        if self.config.fill_timing == FillTiming::SameBarClose
            && req.kind == OrderKind::Market
            && delay == 0
            && close_ok
        {
            self.same_close.push(idx);
        }
        self.working.push(w);
        Ok(())
    }

    fn trail_level(
        &self,
        i: usize,
        side: Side,
        extreme: i64,
        offset: TrailingOffset,
    ) -> Result<i64, SimError> {
        let inst = &self.instruments[i];
        let off = match offset {
            TrailingOffset::Amount(a) => a.raw(),
            TrailingOffset::Percent(p) => {
                let e = Price::from_raw(extreme, inst.price_precision)?.to_decimal();
                round_price(inst, e * p, RoundingMode::Ceil)?.raw()
            }
        };
        // A sell stop trails below the high, a buy stop above the low.
        let level = match side {
            Side::Sell => extreme - off,
            Side::Buy => extreme + off,
        };
        let mode = if side == Side::Sell {
            RoundingMode::Floor
        } else {
            RoundingMode::Ceil
        };
        Ok(round_raw_to_increment(level, inst.tick_size.raw(), mode)?)
    }

    fn cancel_children_if_unfilled(&mut self, idx: usize) -> Result<(), SimError> {
        if self.orders[idx].filled_raw() == 0 {
            for c in self.children[idx].into_iter().flatten() {
                if !self.orders[c].status().is_terminal() {
                    self.transition(c, OrderEvent::Cancel, None)?;
                }
            }
        }
        Ok(())
    }

    /// Whether a working order may act on bar `k` of instrument `i` at `ts`:
    /// its instrument, after the bar it was decided on, past its latency, still working.
    #[inline]
    fn eligible(&self, w: &Working, i: usize, k: usize, ts: i64) -> bool {
        w.instrument == i
            && w.after_bar.is_none_or(|a| k > a)
            && ts >= w.active_ts
            && self.orders[w.order].status().is_working()
    }

    fn process_orders(&mut self, i: usize, k: usize, bar: &Bar) -> Result<(), SimError> {
        let path = path_of(bar);
        let strict = self.config.limit_fill == LimitFill::TradeThrough;
        let day = day_index(bar.ts);
        self.cands.clear();
        for wi in 0..self.working.len() {
            let w = self.working[wi];
            let o = w.order;
            if !self.eligible(&w, i, k, bar.ts) {
                continue;
            }
            let req = self.orders[o].request;
            if req.tif == TimeInForce::Day {
                match w.day {
                    None => self.working[wi].day = Some(day),
                    Some(d) if d != day => {
                        self.transition(o, OrderEvent::Expire, None)?;
                        self.cancel_children_if_unfilled(o)?;
                        continue;
                    }
                    Some(_) => {}
                }
            }
            let (toward, away) = match req.side {
                Side::Buy => (Reach::Down, Reach::Up),
                Side::Sell => (Reach::Up, Reach::Down),
            };
            let triggered = self.orders[o].status() != OrderStatus::Accepted;
            let hit: Option<(Hit, bool)> = match req.kind {
                OrderKind::Market => Some((
                    Hit {
                        dist: 0,
                        price: bar.open,
                    },
                    false,
                )),
                OrderKind::Limit { price } => {
                    first_reach(&path, 0, price.raw(), toward, strict).map(|h| (h, true))
                }
                OrderKind::Stop { .. } | OrderKind::TrailingStop { .. } => {
                    if triggered {
                        Some((
                            Hit {
                                dist: 0,
                                price: bar.open,
                            },
                            false,
                        ))
                    } else {
                        let level = match req.kind {
                            OrderKind::Stop { trigger } => trigger.raw(),
                            _ => w.trail_level,
                        };
                        let t = first_reach(&path, 0, level, away, false);
                        if t.is_some() {
                            self.transition(o, OrderEvent::Trigger, None)?;
                        }
                        t.map(|h| (h, false))
                    }
                }
                OrderKind::StopLimit { trigger, limit } => {
                    let start = if triggered {
                        Some(0)
                    } else {
                        let t = first_reach(&path, 0, trigger.raw(), away, false);
                        if t.is_some() {
                            self.transition(o, OrderEvent::Trigger, None)?;
                        }
                        t.map(|h| h.dist)
                    };
                    start
                        .and_then(|s| first_reach(&path, s, limit.raw(), toward, strict))
                        .map(|h| (h, true))
                }
            };
            if let Some((h, maker)) = hit {
                self.cands.push((h.dist, o, wi, h.price, maker));
            }
        }
        if !self.cands.is_empty() {
            let mut cands = std::mem::take(&mut self.cands);
            cands.sort_unstable_by_key(|c| (c.0, c.1));
            for &(_, o, _, price, maker) in &cands {
                if self.orders[o].status().is_working() {
                    let liq = if maker {
                        Liquidity::Maker
                    } else {
                        Liquidity::Taker
                    };
                    self.execute(o, i, k, bar, price, liq)?;
                }
            }
            self.cands = cands;
        }
        // IOC and FOK live for one eligible bar; trailing stops follow the bar's extreme.
        for wi in 0..self.working.len() {
            let w = self.working[wi];
            let o = w.order;
            if !self.eligible(&w, i, k, bar.ts) {
                continue;
            }
            let req = self.orders[o].request;
            if matches!(req.tif, TimeInForce::Ioc | TimeInForce::Fok) {
                self.transition(o, OrderEvent::Cancel, None)?;
                self.cancel_children_if_unfilled(o)?;
                continue;
            }
            if let OrderKind::TrailingStop { offset } = req.kind
                && self.orders[o].status() == OrderStatus::Accepted
            {
                let ext = match req.side {
                    Side::Sell => w.trail_extreme.max(bar.high),
                    Side::Buy => w.trail_extreme.min(bar.low),
                };
                let level = self.trail_level(i, req.side, ext, offset)?;
                let wm = &mut self.working[wi];
                wm.trail_extreme = ext;
                wm.trail_level = match req.side {
                    Side::Sell => wm.trail_level.max(level),
                    Side::Buy => wm.trail_level.min(level),
                };
            }
        }
        self.retain_working();
        Ok(())
    }

    fn refuse(&mut self, o: usize, reason: String) -> Result<(), SimError> {
        if self.orders[o].status() == OrderStatus::PartiallyFilled {
            self.transition(o, OrderEvent::Cancel, Some(reason))?;
        } else {
            self.transition(o, OrderEvent::Reject, Some(reason))?;
        }
        self.cancel_children_if_unfilled(o)
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one fill, step by step; splitting hides the order of checks"
    )]
    fn execute(
        &mut self,
        o: usize,
        i: usize,
        k: usize,
        bar: &Bar,
        ref_raw: i64,
        liq: Liquidity,
    ) -> Result<(), SimError> {
        let inst = &self.instruments[i];
        let req = self.orders[o].request;
        let side = req.side;
        let pos = self.ledger.position_raw(i);
        let taker = liq == Liquidity::Taker;
        let slip = |share: f64, qty_raw: i64, models: &Models| -> i64 {
            if !taker {
                return ref_raw;
            }
            let p = models.slippage.apply(&SlippageInput {
                instrument: inst,
                side,
                price_raw: ref_raw,
                qty_raw,
                volume_share: share,
            });
            // Never better than the reference price.
            match side {
                Side::Buy => p.max(ref_raw),
                Side::Sell => p.min(ref_raw),
            }
        };
        if self.orders[o].quantity.is_none() {
            let q = match req.size {
                Size::Fixed(q) => q,
                Size::ClosePosition => {
                    if pos == 0 || pos.signum() == side.sign() {
                        return self
                            .refuse(o, format!("close-position {side:?} with position {pos}"));
                    }
                    Quantity::from_raw(pos.abs(), inst.size_precision)?
                }
                Size::EquityFraction(f) => {
                    let px = slip(0.0, 0, &self.models);
                    self.scratch_marks.copy_from_slice(&self.marks);
                    self.scratch_marks[i] = px;
                    let equity = self.ledger.equity_decimal(&self.scratch_marks)?;
                    let price = Price::from_raw(px, inst.price_precision)?.to_decimal();
                    if price <= Decimal::ZERO || equity <= Decimal::ZERO {
                        return self
                            .refuse(o, "no equity or non-positive price to size against".into());
                    }
                    let Ok(target) =
                        round_quantity(inst, scale_by(equity, f) / price, RoundingMode::TowardZero)
                    else {
                        return self.refuse(
                            o,
                            format!("size {f} of equity {equity} at {price} is out of range"),
                        );
                    };
                    if target.raw() <= 0 || target < inst.min_quantity {
                        return self
                            .refuse(o, format!("size resolves to {target}, below the minimum"));
                    }
                    target
                }
            };
            self.orders[o].quantity = Some(q);
        }
        let remaining = self.orders[o].remaining_raw();
        let mut fill_raw = remaining;
        if let Some(rate) = self.config.max_participation {
            let cap = round_quantity(
                inst,
                Decimal::new(bar.volume, u32::from(inst.size_precision)) * rate,
                RoundingMode::Floor,
            )?;
            fill_raw = fill_raw.min(cap.raw());
        }
        if req.tif == TimeInForce::Fok && fill_raw < remaining {
            self.transition(o, OrderEvent::Cancel, None)?;
            return self.cancel_children_if_unfilled(o);
        }
        if fill_raw <= 0 {
            return Ok(());
        }
        #[allow(
            clippy::cast_precision_loss,
            reason = "volume share only sizes a slippage model"
        )]
        let share = if bar.volume > 0 {
            fill_raw as f64 / bar.volume as f64
        } else {
            0.0
        };
        let price_raw = slip(share, fill_raw, &self.models);
        let new_pos = pos + side.sign() * fill_raw;
        if new_pos < 0 && !inst.borrow.shortable {
            return self.refuse(o, format!("{} is not shortable", inst.id));
        }
        let qty = Quantity::from_raw(fill_raw, inst.size_precision)?;
        let price = Price::from_raw(price_raw, inst.price_precision)?;
        let fill_notional = notional(qty, price, inst.multiplier)?;
        let charge = self.models.commission.charge(&CommissionInput {
            side,
            qty,
            price,
            notional: fill_notional,
            liquidity: liq,
            ts: bar.ts,
        });
        let fee = round_cost(charge.fee, self.config.cost_dp, RoundingMode::Ceil);
        let rebate = round_cost(charge.rebate, self.config.cost_dp, RoundingMode::Floor);
        if self.config.enforce_margin && new_pos.abs() > pos.abs() {
            self.scratch_marks.copy_from_slice(&self.marks);
            self.scratch_marks[i] = price_raw;
            let equity = self.ledger.equity_decimal(&self.scratch_marks)? - fee + rebate;
            let mut required = Decimal::ZERO;
            for (j, ij) in self.instruments.iter().enumerate() {
                let q = if j == i {
                    new_pos
                } else {
                    self.ledger.position_raw(j)
                };
                if q != 0 {
                    required += scale_by(
                        signed_value(ij, q, self.scratch_marks[j])?.abs(),
                        ij.margin.initial,
                    );
                }
            }
            if required > equity {
                return self.refuse(
                    o,
                    format!("insufficient margin: need {required}, equity {equity}"),
                );
            }
        }
        let slippage = notional(
            qty,
            Price::from_raw((price_raw - ref_raw).abs(), inst.price_precision)?,
            inst.multiplier,
        )?;
        let fill = Fill {
            seq: self.fills.len() as u64,
            order_id: self.orders[o].id,
            instrument: i,
            ts: bar.ts,
            side,
            qty,
            price,
            reference_price: Price::from_raw(ref_raw, inst.price_precision)?,
            commission: fee,
            rebate,
            slippage,
            liquidity: liq,
        };
        self.ledger.apply_fill(&fill)?;
        self.orders[o].apply(OrderEvent::Fill(qty))?;
        self.trades.on_fill(
            &self.instruments[i],
            &fill,
            pos,
            k,
            fill_notional,
            self.config.cost_dp,
        )?;
        self.events.push(VenueEvent::Fill(fill.seq));
        self.fills.push(fill);
        self.push_change(o, bar.ts);
        if let Some(other) = self.orders[o].oco
            && let Some(x) = self.lookup(other)
            && !self.orders[x].status().is_terminal()
        {
            self.transition(x, OrderEvent::Cancel, None)?;
        }
        let filled = Quantity::from_raw(
            self.orders[o].filled_raw(),
            self.instruments[i].size_precision,
        )?;
        for c in self.children[o].into_iter().flatten() {
            match self.orders[c].status() {
                OrderStatus::New => {
                    self.orders[c].quantity = Some(filled);
                    // Exits go live from the bar after the entry's fill.
                    let saved = self.now;
                    self.now = bar.ts;
                    self.activate(c, Some(k), false)?;
                    self.now = saved;
                }
                OrderStatus::Accepted => self.orders[c].quantity = Some(filled),
                _ => {}
            }
        }
        Ok(())
    }
}

/// A cost, never negative, rounded to `dp` places; the common exact zero of a
/// model without costs is returned as it is (what rounding it would give).
#[inline]
fn round_cost(x: Decimal, dp: u32, mode: RoundingMode) -> Decimal {
    if x.is_zero() && x.scale() == 0 && x.is_sign_positive() {
        return x;
    }
    round_money(x.max(Decimal::ZERO), dp, mode)
}

/// `x * k`, skipping the multiplication for the common `k == 1`.
#[inline]
fn scale_by(x: Decimal, k: Decimal) -> Decimal {
    if k == Decimal::ONE { x } else { x * k }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_venue_can_move_to_a_service_task() {
        fn is_send<T: Send>() {}
        is_send::<Venue>();
        is_send::<Venue<crate::F64Ledger>>();
    }

    #[test]
    fn round_cost_is_round_money_of_the_non_negative_part() {
        for (x, dp) in [
            (Decimal::ZERO, 2),
            (Decimal::new(0, 3), 2),
            (Decimal::new(1, 3), 2),
            (Decimal::new(-5, 1), 2),
            (Decimal::new(12_345, 4), 2),
            (Decimal::new(7, 0), 0),
        ] {
            for mode in [RoundingMode::Ceil, RoundingMode::Floor] {
                let slow = round_money(x.max(Decimal::ZERO), dp, mode);
                let fast = round_cost(x, dp, mode);
                assert_eq!(fast, slow, "{x} at {dp}");
                assert_eq!(fast.to_string(), slow.to_string(), "same scale for {x}");
            }
        }
    }
}
