//! The event-driven loop: merges the instruments' bars by time, fills working
//! orders against each new bar along the intrabar path, calls the strategy, books
//! costs, and marks the ledger once per timestamp.
//!
//! Per bar with no working orders the engine does integer work only: an indicator
//! update in the strategy, a raw-integer mark of the ledger and one push of an
//! equity point. Decimal arithmetic happens at fills and day changes.

use grodt_core::fixed::notional;
use grodt_core::rounding::{
    RoundingMode, allocate, round_money, round_price, round_quantity, round_raw_to_increment,
};
use grodt_core::time::day_index;
use grodt_core::{
    Bar, CostTotals, Decimal, Fill, Instrument, Liquidity, Order, OrderEvent, OrderId, OrderKind,
    OrderRequest, OrderStatus, Price, Quantity, Side, Size, TimeInForce, TrailingOffset,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::SimError;
use crate::config::{BacktestConfig, FillTiming, LimitFill, Models};
use crate::ledger::{ExactLedger, Ledger, Mark, signed_value};
use crate::models::{CommissionInput, SlippageInput};
use crate::path::{Hit, Reach, first_reach, path_of};
use crate::strategy::{Command, Context, Strategy};

/// Equity at one timestamp (after every bar with that timestamp was processed).
/// Kept to two fields so a million-bar curve stays small (24 bytes a point exact).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EquityPoint<V> {
    /// Timestamp (UTC ns).
    pub ts: i64,
    /// Cash plus the market value of every position at the latest closes.
    pub equity: V,
}

/// A round trip: from flat to flat (or to the end of the run) in one instrument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Trade {
    /// Instrument index.
    pub instrument: usize,
    /// `Buy` for a long trade, `Sell` for a short one.
    pub direction: Side,
    /// Time of the first fill.
    pub entry_ts: i64,
    /// Time of the closing fill; `None` while open at the end of the run.
    pub exit_ts: Option<i64>,
    /// Largest absolute quantity held.
    pub peak_quantity: Decimal,
    /// Volume-weighted entry price.
    pub entry_price: Decimal,
    /// Volume-weighted exit price (of the quantity closed so far).
    pub exit_price: Option<Decimal>,
    /// Gross PnL: realised for closed trades, realised plus unrealised at the last close for open ones.
    pub gross_pnl: Decimal,
    /// Commissions minus rebates attributed to the trade.
    pub fees: Decimal,
    /// `gross_pnl - fees`.
    pub net_pnl: Decimal,
    /// Maximum adverse excursion (<= 0): worst unrealised PnL, from the extremes of
    /// the bars between entry and exit and the fill prices, at the peak quantity.
    pub mae: Decimal,
    /// Maximum favourable excursion (>= 0), same basis.
    pub mfe: Decimal,
    /// Number of fills.
    pub fills: u32,
    /// Bars of the instrument from the entry bar to the exit bar inclusive.
    pub bars_held: u64,
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

/// Runs a backtest with the exact ledger.
///
/// `bars[i]` are the bars of `instruments[i]`, strictly increasing in time. The
/// strategy sees one bar at a time; orders it submits on bar t fill no earlier than
/// the instrument's next bar (plus latency).
pub fn run_backtest(
    config: &BacktestConfig,
    instruments: &[Instrument],
    bars: &[Vec<Bar>],
    strategy: &mut dyn Strategy,
) -> Result<BacktestResult<Decimal>, SimError> {
    run_backtest_with::<ExactLedger>(config, config.models(), instruments, bars, strategy)
}

/// Runs a backtest with explicit cost models and ledger back end (custom models,
/// or the f64 ledger for benchmarks).
pub fn run_backtest_with<L: Ledger>(
    config: &BacktestConfig,
    models: Models,
    instruments: &[Instrument],
    bars: &[Vec<Bar>],
    strategy: &mut dyn Strategy,
) -> Result<BacktestResult<L::Value>, SimError> {
    config.validate()?;
    validate_inputs(instruments, bars)?;
    let mut engine = Engine::<L>::new(config, models, instruments, bars);
    engine.run(strategy)?;
    engine.finish()
}

fn validate_inputs(instruments: &[Instrument], bars: &[Vec<Bar>]) -> Result<(), SimError> {
    if instruments.is_empty() {
        return Err(SimError::InvalidConfig {
            field: "instruments",
            reason: "none given".into(),
        });
    }
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
    for (i, inst) in instruments.iter().enumerate() {
        inst.validate()?;
        if instruments[..i].iter().any(|o| o.id == inst.id) {
            return Err(SimError::InvalidConfig {
                field: "instruments",
                reason: format!("duplicate id {}", inst.id),
            });
        }
        let tick = inst.tick_size.raw();
        let mut prev = i64::MIN;
        for (k, b) in bars[i].iter().enumerate() {
            let bad = |reason: &str| SimError::InvalidBar {
                instrument: inst.id.clone(),
                index: k,
                reason: reason.into(),
            };
            b.check().map_err(bad)?;
            if b.ts <= prev {
                return Err(bad("timestamp not after the previous bar"));
            }
            if tick > 1
                && [b.open, b.high, b.low, b.close]
                    .iter()
                    .any(|p| p % tick != 0)
            {
                return Err(bad("price not on the tick"));
            }
            prev = b.ts;
        }
    }
    Ok(())
}

/// A working order's engine-side state.
#[derive(Clone, Copy, Debug)]
struct Working {
    order: usize,
    instrument: usize,
    /// May fill only on bars with index > this (None: any bar).
    after_bar: Option<usize>,
    /// And only on bars with ts >= this (latency).
    active_ts: i64,
    /// For DAY orders: the UTC day of the first eligible bar.
    day: Option<i64>,
    /// Trailing stop: best price seen and current trigger.
    trail_extreme: i64,
    trail_level: i64,
}

#[derive(Clone, Debug)]
struct OpenTrade {
    direction: Side,
    entry_ts: i64,
    entry_bar: usize,
    peak_raw: i64,
    entry_qty_raw: i64,
    entry_notional: Decimal,
    exit_qty_raw: i64,
    exit_notional: Decimal,
    fees: Decimal,
    low: i64,
    high: i64,
    fills: u32,
}

struct Engine<'a, L: Ledger> {
    config: &'a BacktestConfig,
    models: Models,
    instruments: &'a [Instrument],
    bars: &'a [Vec<Bar>],
    rng: ChaCha8Rng,
    ledger: L,
    orders: Vec<Order>,
    children: Vec<[Option<usize>; 2]>,
    working: Vec<Working>,
    fills: Vec<Fill>,
    trades: Vec<Trade>,
    open_trades: Vec<Option<OpenTrade>>,
    equity: Vec<EquityPoint<L::Value>>,
    marks: Vec<i64>,
    cursor: Vec<usize>,
    visible: Vec<usize>,
    outbox: Vec<Command>,
    next_id: u64,
    last_day: Option<i64>,
    next_day_ts: i64,
    now: i64,
    bars_done: u64,
    scratch_marks: Vec<i64>,
    cands: Vec<(i64, usize, usize, i64, bool)>,
    new_fills: Vec<usize>,
    same_close: Vec<usize>,
}

impl<'a, L: Ledger> Engine<'a, L> {
    fn new(
        config: &'a BacktestConfig,
        models: Models,
        instruments: &'a [Instrument],
        bars: &'a [Vec<Bar>],
    ) -> Self {
        let n = instruments.len();
        let total: usize = bars.iter().map(Vec::len).sum();
        Self {
            config,
            models,
            instruments,
            bars,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            ledger: L::open(config.starting_cash, instruments),
            orders: Vec::new(),
            children: Vec::new(),
            working: Vec::new(),
            fills: Vec::new(),
            trades: Vec::new(),
            open_trades: vec![None; n],
            equity: Vec::with_capacity(if n == 1 { total } else { total / n + 1 }),
            marks: vec![0; n],
            cursor: vec![0; n],
            visible: vec![0; n],
            outbox: Vec::new(),
            next_id: 0,
            last_day: None,
            next_day_ts: i64::MIN,
            now: i64::MIN,
            bars_done: 0,
            scratch_marks: vec![0; n],
            cands: Vec::new(),
            new_fills: Vec::new(),
            same_close: Vec::new(),
        }
    }

    fn run(&mut self, strategy: &mut dyn Strategy) -> Result<(), SimError> {
        self.now = self
            .bars
            .iter()
            .filter_map(|b| b.first())
            .map(|b| b.ts)
            .min()
            .unwrap_or(0);
        self.callback(strategy, |s, c| s.on_start(c));
        self.apply_commands(None)?;
        let n = self.instruments.len();
        loop {
            // Next timestamp: the smallest head among the series.
            let mut ts = i64::MAX;
            for i in 0..n {
                if let Some(b) = self.bars[i].get(self.cursor[i]) {
                    ts = ts.min(b.ts);
                }
            }
            if ts == i64::MAX {
                break;
            }
            self.now = ts;
            self.accrue(ts)?;
            for i in 0..n {
                let k = self.cursor[i];
                let Some(bar) = self.bars[i].get(k) else {
                    continue;
                };
                if bar.ts != ts {
                    continue;
                }
                self.on_instrument_bar(strategy, i, k, bar)?;
                self.cursor[i] = k + 1;
                self.bars_done += 1;
            }
            let equity = self.ledger.equity(&self.marks)?;
            self.equity.push(EquityPoint { ts, equity });
        }
        self.callback(strategy, |s, c| s.on_stop(c));
        Ok(())
    }

    #[inline]
    fn on_instrument_bar(
        &mut self,
        strategy: &mut dyn Strategy,
        i: usize,
        k: usize,
        bar: &'a Bar,
    ) -> Result<(), SimError> {
        if !self.working.is_empty() {
            self.process_orders(i, k, bar)?;
            if !self.new_fills.is_empty() {
                let fills = std::mem::take(&mut self.new_fills);
                for &f in &fills {
                    let fill = self.fills[f].clone();
                    self.callback(strategy, |s, c| s.on_fill(c, &fill));
                    self.apply_commands(Some((i, k.wrapping_sub(1))))?;
                }
                self.new_fills = fills;
                self.new_fills.clear();
            }
        }
        if let Some(t) = self.open_trades[i].as_mut()
            && k > t.entry_bar
        {
            t.low = t.low.min(bar.low);
            t.high = t.high.max(bar.high);
        }
        self.marks[i] = bar.close;
        self.visible[i] = k + 1;
        self.callback(strategy, |s, c| s.on_bar(c, i, bar));
        if !self.outbox.is_empty() {
            self.apply_commands(Some((i, k)))?;
            if !self.same_close.is_empty() {
                let list = std::mem::take(&mut self.same_close);
                for &o in &list {
                    if self.orders[o].status().is_working() {
                        self.execute(o, i, k, bar, bar.close, Liquidity::Taker)?;
                    }
                }
                self.same_close = list;
                self.same_close.clear();
                self.working
                    .retain(|w| self.orders[w.order].status().is_working());
                if !self.new_fills.is_empty() {
                    let fills = std::mem::take(&mut self.new_fills);
                    for &f in &fills {
                        let fill = self.fills[f].clone();
                        self.callback(strategy, |s, c| s.on_fill(c, &fill));
                        self.apply_commands(Some((i, k)))?;
                    }
                    self.new_fills = fills;
                    self.new_fills.clear();
                }
            }
        }
        Ok(())
    }

    fn callback(
        &mut self,
        strategy: &mut dyn Strategy,
        f: impl FnOnce(&mut dyn Strategy, &mut Context<'_>),
    ) {
        let mut ctx = Context {
            now: self.now,
            instruments: self.instruments,
            bars: self.bars,
            visible: &self.visible,
            marks: &self.marks,
            ledger: &self.ledger,
            orders: &self.orders,
            outbox: &mut self.outbox,
            next_id: &mut self.next_id,
        };
        f(strategy, &mut ctx);
    }

    /// Borrow on shorts and financing on negative cash, per calendar day elapsed.
    fn accrue(&mut self, ts: i64) -> Result<(), SimError> {
        // Most timestamps fall inside the current day: one comparison.
        if ts < self.next_day_ts {
            return Ok(());
        }
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
            .ok_or_else(|| format!("instrument {} does not exist", r.instrument))?;
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

    /// Creates an order; `working` says whether it is live now (false for bracket exits).
    fn create(
        &mut self,
        id: OrderId,
        req: OrderRequest,
        live: bool,
        decided: Option<(usize, usize)>,
    ) -> Result<usize, SimError> {
        let idx = self.orders.len();
        debug_assert_eq!(
            usize::try_from(id.0).ok(),
            Some(idx),
            "order ids are indices"
        );
        let mut order = Order::new(id, req, self.now);
        self.children.push([None, None]);
        if let Err(reason) = self.validate_request(&req, !live) {
            order.reject(reason)?;
            self.orders.push(order);
            return Ok(idx);
        }
        self.orders.push(order);
        if live {
            self.activate(idx, decided)?;
        }
        Ok(idx)
    }

    fn activate(&mut self, idx: usize, decided: Option<(usize, usize)>) -> Result<(), SimError> {
        self.orders[idx].apply(OrderEvent::Accept)?;
        let req = self.orders[idx].request;
        let delay = self.models.latency.delay_ns(&mut self.rng);
        let after_bar = match decided {
            Some((i, k)) if i == req.instrument => Some(k),
            // Decided on another instrument's bar at this timestamp: not before that instrument's next bar.
            _ if self.visible[req.instrument] > 0 => Some(self.visible[req.instrument] - 1),
            _ => None,
        };
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
            && decided.is_some_and(|(i, _)| i == req.instrument)
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

    fn apply_commands(&mut self, decided: Option<(usize, usize)>) -> Result<(), SimError> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        let cmds = std::mem::take(&mut self.outbox);
        for cmd in &cmds {
            match *cmd {
                Command::Submit(id, req) => {
                    self.create(id, req, true, decided)?;
                }
                Command::Oco(ia, a, ib, b) => {
                    let x = self.create(ia, a, true, decided)?;
                    let y = self.create(ib, b, true, decided)?;
                    self.orders[x].oco = Some(ib);
                    self.orders[y].oco = Some(ia);
                }
                Command::Bracket(e, tp, sl, br) => {
                    let entry = self.create(e, br.entry, true, decided)?;
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
                    let t = self.create(tp, tp_req, false, decided)?;
                    let s = self.create(sl, sl_req, false, decided)?;
                    for (x, other) in [(t, sl), (s, tp)] {
                        self.orders[x].parent = Some(e);
                        self.orders[x].oco = Some(other);
                        self.orders[x].quantity = None;
                    }
                    self.children[entry] = [Some(t), Some(s)];
                    if self.orders[entry].status() == OrderStatus::Rejected {
                        for c in [t, s] {
                            if self.orders[c].status() == OrderStatus::New {
                                self.orders[c].apply(OrderEvent::Cancel)?;
                            }
                        }
                    }
                }
                Command::Cancel(id) => {
                    if let Some(o) = usize::try_from(id.0)
                        .ok()
                        .and_then(|i| self.orders.get_mut(i))
                        && (o.status().is_working() || o.status() == OrderStatus::New)
                    {
                        o.apply(OrderEvent::Cancel)?;
                        let idx = usize::try_from(id.0).unwrap_or(usize::MAX);
                        self.cancel_children_if_unfilled(idx)?;
                    }
                }
            }
        }
        self.outbox = cmds;
        self.outbox.clear();
        self.working
            .retain(|w| self.orders[w.order].status().is_working());
        Ok(())
    }

    fn cancel_children_if_unfilled(&mut self, idx: usize) -> Result<(), SimError> {
        if self.orders[idx].filled_raw() == 0 {
            for c in self.children[idx].into_iter().flatten() {
                if !self.orders[c].status().is_terminal() {
                    self.orders[c].apply(OrderEvent::Cancel)?;
                }
            }
        }
        Ok(())
    }

    fn process_orders(&mut self, i: usize, k: usize, bar: &Bar) -> Result<(), SimError> {
        let path = path_of(bar);
        let strict = self.config.limit_fill == LimitFill::TradeThrough;
        let day = day_index(bar.ts);
        self.cands.clear();
        for wi in 0..self.working.len() {
            let w = self.working[wi];
            if w.instrument != i || w.after_bar.is_some_and(|a| k <= a) || bar.ts < w.active_ts {
                continue;
            }
            let o = w.order;
            if !self.orders[o].status().is_working() {
                continue;
            }
            let req = self.orders[o].request;
            if req.tif == TimeInForce::Day {
                match w.day {
                    None => self.working[wi].day = Some(day),
                    Some(d) if d != day => {
                        self.orders[o].apply(OrderEvent::Expire)?;
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
                            self.orders[o].apply(OrderEvent::Trigger)?;
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
                            self.orders[o].apply(OrderEvent::Trigger)?;
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
            if w.instrument != i || w.after_bar.is_some_and(|a| k <= a) || bar.ts < w.active_ts {
                continue;
            }
            let o = w.order;
            if !self.orders[o].status().is_working() {
                continue;
            }
            let req = self.orders[o].request;
            if matches!(req.tif, TimeInForce::Ioc | TimeInForce::Fok) {
                self.orders[o].apply(OrderEvent::Cancel)?;
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
        self.working
            .retain(|w| self.orders[w.order].status().is_working());
        Ok(())
    }

    fn refuse(&mut self, o: usize, reason: String) -> Result<(), SimError> {
        if self.orders[o].status() == OrderStatus::PartiallyFilled {
            self.orders[o].apply(OrderEvent::Cancel)?;
        } else {
            self.orders[o].reject(reason)?;
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
                        round_quantity(inst, equity * f / price, RoundingMode::TowardZero)
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
            self.orders[o].apply(OrderEvent::Cancel)?;
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
        let fee = round_money(
            charge.fee.max(Decimal::ZERO),
            self.config.cost_dp,
            RoundingMode::Ceil,
        );
        let rebate = round_money(
            charge.rebate.max(Decimal::ZERO),
            self.config.cost_dp,
            RoundingMode::Floor,
        );
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
                    required +=
                        signed_value(ij, q, self.scratch_marks[j])?.abs() * ij.margin.initial;
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
        self.track_trade(&fill, pos, k, fill_notional)?;
        self.new_fills.push(self.fills.len());
        self.fills.push(fill);
        if let Some(other) = self.orders[o].oco
            && let Some(x) = usize::try_from(other.0).ok()
            && !self.orders[x].status().is_terminal()
        {
            self.orders[x].apply(OrderEvent::Cancel)?;
        }
        let filled = Quantity::from_raw(self.orders[o].filled_raw(), inst.size_precision)?;
        for c in self.children[o].into_iter().flatten() {
            match self.orders[c].status() {
                OrderStatus::New => {
                    self.orders[c].quantity = Some(filled);
                    // Exits go live from the bar after the entry's fill.
                    let saved = self.now;
                    self.now = bar.ts;
                    self.activate(c, Some((i, k)))?;
                    self.now = saved;
                    if let Some(w) = self.working.last_mut() {
                        w.after_bar = Some(k);
                    }
                }
                OrderStatus::Accepted => self.orders[c].quantity = Some(filled),
                _ => {}
            }
        }
        Ok(())
    }

    fn track_trade(
        &mut self,
        fill: &Fill,
        pos_before: i64,
        k: usize,
        fill_notional: Decimal,
    ) -> Result<(), SimError> {
        let i = fill.instrument;
        let inst = &self.instruments[i];
        let signed = fill.side.sign() * fill.qty.raw();
        let price = fill.price.raw();
        let net_fee = fill.commission - fill.rebate;
        let opening_same = pos_before == 0 || pos_before.signum() == signed.signum();
        if opening_same {
            let t = self.open_trades[i].get_or_insert(OpenTrade {
                direction: fill.side,
                entry_ts: fill.ts,
                entry_bar: k,
                peak_raw: 0,
                entry_qty_raw: 0,
                entry_notional: Decimal::ZERO,
                exit_qty_raw: 0,
                exit_notional: Decimal::ZERO,
                fees: Decimal::ZERO,
                low: price,
                high: price,
                fills: 0,
            });
            t.entry_qty_raw += fill.qty.raw();
            t.entry_notional += fill_notional;
            t.peak_raw = t.peak_raw.max((pos_before + signed).abs());
            t.fees += net_fee;
            t.low = t.low.min(price);
            t.high = t.high.max(price);
            t.fills += 1;
            return Ok(());
        }
        let closing = fill.qty.raw().min(pos_before.abs());
        let rest = fill.qty.raw() - closing;
        // A flip splits the fee by quantity without creating or losing a unit.
        let fees = if rest == 0 {
            [net_fee, Decimal::ZERO]
        } else {
            let v = allocate(
                net_fee,
                &[closing.unsigned_abs(), rest.unsigned_abs()],
                self.config.cost_dp,
            );
            [v[0], v[1]]
        };
        let closing_notional = notional(
            Quantity::from_raw(closing, inst.size_precision)?,
            fill.price,
            inst.multiplier,
        )?;
        if let Some(t) = self.open_trades[i].as_mut() {
            t.exit_qty_raw += closing;
            t.exit_notional += closing_notional;
            t.fees += fees[0];
            t.low = t.low.min(price);
            t.high = t.high.max(price);
            t.fills += 1;
        }
        if closing == pos_before.abs() {
            if let Some(t) = self.open_trades[i].take() {
                let trade = self.close_trade(i, t, Some(fill.ts), k, None)?;
                self.trades.push(trade);
            }
            if rest > 0 {
                let rest_notional = notional(
                    Quantity::from_raw(rest, inst.size_precision)?,
                    fill.price,
                    inst.multiplier,
                )?;
                self.open_trades[i] = Some(OpenTrade {
                    direction: fill.side,
                    entry_ts: fill.ts,
                    entry_bar: k,
                    peak_raw: rest,
                    entry_qty_raw: rest,
                    entry_notional: rest_notional,
                    exit_qty_raw: 0,
                    exit_notional: Decimal::ZERO,
                    fees: fees[1],
                    low: price,
                    high: price,
                    fills: 1,
                });
            }
        }
        Ok(())
    }

    fn close_trade(
        &self,
        i: usize,
        t: OpenTrade,
        exit_ts: Option<i64>,
        k: usize,
        mark: Option<i64>,
    ) -> Result<Trade, SimError> {
        let inst = &self.instruments[i];
        let sp = u32::from(inst.size_precision);
        let entry_qty = Decimal::new(t.entry_qty_raw, sp);
        let mult = Decimal::from(inst.multiplier);
        let entry_price = t.entry_notional / (entry_qty * mult);
        let exit_price = (t.exit_qty_raw > 0)
            .then(|| t.exit_notional / (Decimal::new(t.exit_qty_raw, sp) * mult));
        let dir = Decimal::from(t.direction.sign());
        // Gross = signed (exit proceeds - entry cost) + open remainder at the mark.
        let open_raw = t.entry_qty_raw - t.exit_qty_raw;
        let mut gross = dir * (t.exit_notional - t.entry_notional);
        if open_raw > 0 {
            let m = mark.unwrap_or(self.marks[i]);
            gross += dir * signed_value(inst, open_raw, m)?;
        }
        let peak = Decimal::new(t.peak_raw, sp);
        let pp = u32::from(inst.price_precision);
        let lo = Decimal::new(t.low, pp);
        let hi = Decimal::new(t.high, pp);
        let (worst, best) = if t.direction == Side::Buy {
            (lo, hi)
        } else {
            (hi, lo)
        };
        let mae = (dir * (worst - entry_price) * peak * mult).min(Decimal::ZERO);
        let mfe = (dir * (best - entry_price) * peak * mult).max(Decimal::ZERO);
        Ok(Trade {
            instrument: i,
            direction: t.direction,
            entry_ts: t.entry_ts,
            exit_ts,
            peak_quantity: peak,
            entry_price,
            exit_price,
            gross_pnl: gross,
            fees: t.fees,
            net_pnl: gross - t.fees,
            mae,
            mfe,
            fills: t.fills,
            bars_held: (k - t.entry_bar + 1) as u64,
        })
    }

    fn finish(mut self) -> Result<BacktestResult<L::Value>, SimError> {
        for i in 0..self.instruments.len() {
            if let Some(t) = self.open_trades[i].take() {
                let last = self.bars[i].len().saturating_sub(1);
                let trade = self.close_trade(i, t, None, last, None)?;
                self.trades.push(trade);
            }
        }
        let last = self.ledger.mark(&self.marks)?;
        Ok(BacktestResult {
            positions: (0..self.instruments.len())
                .map(|i| self.ledger.position_raw(i))
                .collect(),
            costs: self.ledger.costs(),
            equity: self.equity,
            fills: self.fills,
            trades: self.trades,
            orders: self.orders,
            last,
            bars: self.bars_done,
        })
    }
}
