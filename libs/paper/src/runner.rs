//! One strategy driven by execution's reports, in the order the backtest
//! loop drives it: a report's fills and order changes are booked first (the
//! venue has done all of them by the time the strategy hears of any), then
//! the strategy is told of each in the venue's order, then, for a bar of one
//! of its symbols, it sees the bar. A runner drives a strategy on one symbol or
//! on several (a pair, a portfolio member: a bar of its instrument `k` is
//! shown as `on_bar(k, ..)`). What it sees of its account and orders is
//! mirrored from the reports: an exact ledger (the venue's own) opened with
//! the instance's capital and fed its fills, marked at the closes it saw,
//! and its orders moved through the same state machine as the venue's.
//!
//! What it asks for leaves as [`Out`]: tickets with deterministic client
//! order ids ([`crate::ids`]) and cancellations. Deterministic: the same
//! inputs give the same outputs, so the strategy service rebuilds a runner
//! after a restart by replaying its journal.
//!
//! A portfolio member's capital moves (the desk's rebalancing, its share of
//! borrow and financing, reported as `Update::Capital`) are booked on its
//! ledger as the desk books them on its sub-ledger. Not mirrored on a single
//! venue: borrow and financing accruals (the venue charges them to the
//! account, not to an instance), so a strategy that sizes by equity on a
//! short book sees its equity before those costs. One-cancels-other pairs
//! are refused (an error that stops the instance): the venue takes them only
//! as one request, which no ticket carries yet.

use std::collections::HashMap;

use grodt_core::{
    CoreError, Decimal, Fill, Instrument, Order, OrderEvent, OrderId, OrderRequest, OrderStatus,
    OrderUpdate, Quantity, Size, TimeInForce,
};
use grodt_portfolio::CapitalKind;
use grodt_sim::SimError;
use grodt_sim::ledger::{ExactLedger, Ledger};
use grodt_strategy_api::{
    AccountView, Command, Context, MarketView, OrderLog, Outbox, Strategy, Windows,
};

use crate::ids::{bracket_exit_ids, client_order_id};
use crate::{BracketLegs, OrderState, PaperError, PaperFill, Report, Ticket, Update};

/// What a runner asks of the venue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// A new order.
    Submit(Ticket),
    /// Cancel an order, by client order id.
    Cancel(String),
}

/// The account as the instance sees it.
struct Account {
    ledger: ExactLedger,
    marks: Vec<i64>,
}

impl AccountView for Account {
    fn cash(&self) -> Decimal {
        self.ledger.cash()
    }
    fn position_raw(&self, instrument: usize) -> i64 {
        self.ledger.position_raw(instrument)
    }
    fn equity(&self) -> Decimal {
        // As the backtest's venue does: only an overflow fails here.
        self.ledger
            .equity_decimal(&self.marks)
            .unwrap_or(Decimal::ZERO)
    }
}

/// A request made but not yet reported on by the venue.
#[derive(Clone, Copy, Debug)]
struct Pending {
    request: OrderRequest,
    ts: i64,
}

/// One strategy instance on its symbols.
pub struct Runner {
    instance_id: String,
    strategy: Box<dyn Strategy + Send>,
    instruments: Vec<Instrument>,
    windows: Windows,
    account: Account,
    orders: OrderLog,
    /// Where each order sits in `orders`: every update looks its order up,
    /// and a scan would grow with every order the instance ever placed.
    index: HashMap<OrderId, usize>,
    pending: HashMap<OrderId, Pending>,
    by_cid: HashMap<String, OrderId>,
    cids: HashMap<OrderId, String>,
    outbox: Outbox,
    commands: Vec<Command>,
    now: i64,
    started: bool,
    bars: u64,
    intents: u64,
    /// Open time of the last bar shown, per instrument.
    last_bar: Vec<Option<i64>>,
    last_bar_ts: Option<i64>,
    /// Orders adopted so far.
    adopted: u64,
}

/// First id of an adopted order: far above any id a strategy's outbox
/// hands out.
pub const ADOPTED: u64 = 1 << 62;

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("instance_id", &self.instance_id)
            .field("symbols", &self.symbols())
            .field("bars", &self.bars)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner of `strategy` (built for `traded`) for instance `instance_id`
    /// with `capital` of its own.
    pub fn new(
        instance_id: &str,
        strategy: Box<dyn Strategy + Send>,
        traded: Instrument,
        capital: Decimal,
    ) -> Self {
        Self::on_instruments(instance_id, strategy, vec![traded], capital)
    }

    /// A runner of `strategy` built for several instruments (a pair, a
    /// portfolio member): its instrument `k` is `traded[k]`, and a report's
    /// bar of `traded[k]`'s symbol is shown to it as `on_bar(k, ..)`.
    ///
    /// # Panics
    /// Never for a non-empty `traded`; an empty one is a caller's bug
    /// (a strategy needs an instrument).
    pub fn on_instruments(
        instance_id: &str,
        strategy: Box<dyn Strategy + Send>,
        traded: Vec<Instrument>,
        capital: Decimal,
    ) -> Self {
        assert!(!traded.is_empty(), "a runner needs an instrument");
        let instruments = traded;
        let n = instruments.len();
        let window = strategy.history_bars().max(1);
        Self {
            instance_id: instance_id.to_owned(),
            strategy,
            windows: Windows::new(n, window),
            account: Account {
                ledger: ExactLedger::open(capital, &instruments),
                marks: vec![0; n],
            },
            last_bar: vec![None; n],
            adopted: 0,
            instruments,
            orders: OrderLog::new(),
            index: HashMap::new(),
            pending: HashMap::new(),
            by_cid: HashMap::new(),
            cids: HashMap::new(),
            outbox: Outbox::new(0),
            commands: Vec::new(),
            now: 0,
            started: false,
            bars: 0,
            intents: 0,
            last_bar_ts: None,
        }
    }

    /// The (first) symbol traded.
    pub fn symbol(&self) -> &str {
        &self.instruments[0].id
    }

    /// Every symbol traded, in the strategy's instrument order.
    pub fn symbols(&self) -> Vec<&str> {
        self.instruments.iter().map(|i| i.id.as_str()).collect()
    }

    /// The strategy's index of `symbol`, if it trades it.
    fn local(&self, symbol: &str) -> Option<usize> {
        self.instruments.iter().position(|i| i.id == symbol)
    }

    /// Applies one report of execution: books what concerns this instance,
    /// tells the strategy, shows it the bar if it is of its symbol; returns
    /// what the strategy asks for. A bar of its symbol at or before the last
    /// one it saw is only booked (its updates), never shown twice.
    ///
    /// # Errors
    /// A report that contradicts the mirror, or a request paper trading
    /// cannot carry; the instance should stop.
    pub fn on_report(&mut self, report: &Report) -> Result<Vec<Out>, PaperError> {
        self.adopt(report);
        let mine: Vec<&Update> = report
            .updates
            .iter()
            .filter(|u| match u {
                Update::Fill(f) => self.by_cid.contains_key(&f.client_order_id),
                Update::Order(o) => self.by_cid.contains_key(&o.ticket.client_order_id),
                Update::Capital(c) => c.strategy_id == self.instance_id,
            })
            .collect();
        let bar = report.bar.as_ref().and_then(|(s, b)| {
            let k = self.local(s)?;
            self.last_bar[k].is_none_or(|t| b.ts > t).then_some((k, *b))
        });
        if let Some((_, b)) = bar {
            if !self.started {
                self.started = true;
                self.now = b.ts;
                self.callback(|s, c| s.on_start(c));
            }
            self.now = b.ts;
        }
        // Book everything first: the venue did all of it before telling.
        let mut told = Vec::with_capacity(mine.len());
        for u in &mine {
            if let Some(t) = self.book(u)? {
                told.push(t);
            }
        }
        let mut out = Vec::new();
        self.emit(&mut out)?;
        for t in told {
            match t {
                Told::Fill(fill) => self.callback(|s, c| s.on_fill(c, &fill)),
                Told::Order(update) => self.callback(|s, c| s.on_order(c, &update)),
            }
            self.emit(&mut out)?;
        }
        if let Some((k, b)) = bar {
            self.windows.push(k, b);
            self.account.marks[k] = b.close;
            self.last_bar[k] = Some(b.ts);
            self.last_bar_ts = Some(self.last_bar_ts.map_or(b.ts, |t| t.max(b.ts)));
            self.bars += 1;
            self.callback(|s, c| s.on_bar(c, k, &b));
            self.emit(&mut out)?;
        }
        Ok(out)
    }

    /// Orders the account made for this instance (a portfolio desk's close
    /// after a halt, an operator's order tagged with the instance) on one of
    /// its symbols: mirrored like its own, under ids its strategy never uses
    /// (from [`ADOPTED`]), so its positions follow the account's.
    fn adopt(&mut self, report: &Report) {
        for u in &report.updates {
            let Update::Order(o) = u else { continue };
            let cid = &o.ticket.client_order_id;
            if o.ticket.strategy_id != self.instance_id
                || o.parent.is_some()
                || self.by_cid.contains_key(cid)
                || self.local(&o.ticket.symbol).is_none()
            {
                continue;
            }
            let id = OrderId(ADOPTED + self.adopted);
            self.adopted += 1;
            self.by_cid.insert(cid.clone(), id);
            self.cids.insert(id, cid.clone());
        }
    }

    /// Risk refused an order this instance asked for: it ends `Rejected`
    /// with the reason, and the strategy is told.
    ///
    /// # Errors
    /// As [`Runner::on_report`].
    pub fn on_refused(
        &mut self,
        client_order_id: &str,
        reason: &str,
    ) -> Result<Vec<Out>, PaperError> {
        let Some(&id) = self.by_cid.get(client_order_id) else {
            return Ok(Vec::new());
        };
        let k = self.mirror(id, None)?;
        let order = &mut self.orders[k];
        if order.status().is_terminal() {
            return Ok(Vec::new());
        }
        order
            .reject(reason)
            .map_err(|e| inconsistent(client_order_id, &e))?;
        let update = OrderUpdate::of(order, self.now);
        // A refused bracket entry takes its exits with it, as at the venue.
        let exits: Vec<OrderId> = self
            .orders
            .iter()
            .filter(|o| o.parent == Some(id) && !o.status().is_terminal())
            .map(|o| o.id)
            .collect();
        for e in exits {
            let k = self.mirror(e, None)?;
            let _ = self.orders[k].apply(OrderEvent::Cancel);
        }
        let mut out = Vec::new();
        self.callback(|s, c| s.on_order(c, &update));
        self.emit(&mut out)?;
        Ok(out)
    }

    /// Cash of the instance's own ledger.
    pub fn cash(&self) -> Decimal {
        self.account.cash()
    }

    /// Equity at the last closes seen.
    pub fn equity(&self) -> Decimal {
        self.account.equity()
    }

    /// Signed position in the first symbol.
    pub fn position(&self) -> Decimal {
        let inst = &self.instruments[0];
        Quantity::from_raw(self.account.ledger.position_raw(0), inst.size_precision)
            .map_or(Decimal::ZERO, Quantity::to_decimal)
    }

    /// Signed position in each symbol, in the strategy's order.
    pub fn positions(&self) -> Vec<(String, Decimal)> {
        self.instruments
            .iter()
            .enumerate()
            .map(|(k, inst)| {
                let q =
                    Quantity::from_raw(self.account.ledger.position_raw(k), inst.size_precision)
                        .map_or(Decimal::ZERO, Quantity::to_decimal);
                (inst.id.clone(), q)
            })
            .collect()
    }

    /// The last close seen of the first symbol, if any.
    pub fn last_close(&self) -> Option<Decimal> {
        self.last_bar[0].map(|_| {
            grodt_core::Price::from_raw(self.account.marks[0], self.instruments[0].price_precision)
                .map_or(Decimal::ZERO, grodt_core::Price::to_decimal)
        })
    }

    /// The last close seen of each symbol, in the strategy's order (`None`
    /// before its first bar).
    pub fn last_closes(&self) -> Vec<Option<Decimal>> {
        self.instruments
            .iter()
            .zip(&self.last_bar)
            .zip(&self.account.marks)
            .map(|((inst, seen), &mark)| {
                seen.map(|_| {
                    grodt_core::Price::from_raw(mark, inst.price_precision)
                        .map_or(Decimal::ZERO, grodt_core::Price::to_decimal)
                })
            })
            .collect()
    }

    /// The symbol of one of its orders, by client order id.
    pub fn symbol_of(&self, client_order_id: &str) -> Option<&str> {
        let id = self.by_cid.get(client_order_id)?;
        let k = self
            .orders
            .iter()
            .find(|o| o.id == *id)
            .map(|o| o.request.instrument)
            .or_else(|| self.pending.get(id).map(|p| p.request.instrument))?;
        self.instruments.get(k).map(|i| i.id.as_str())
    }

    /// Orders of this instance, as it sees them.
    pub fn orders(&self) -> &[Order] {
        &self.orders
    }

    /// Client order ids of the orders it has not seen end.
    pub fn open_client_order_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .orders
            .iter()
            .filter(|o| !o.status().is_terminal())
            .filter_map(|o| self.cids.get(&o.id).cloned())
            .chain(
                self.pending
                    .keys()
                    .filter(|id| !self.index.contains_key(*id))
                    .filter_map(|id| self.cids.get(id).cloned()),
            )
            .collect();
        ids.sort();
        ids
    }

    /// Bars shown to the strategy.
    pub fn bars_processed(&self) -> u64 {
        self.bars
    }

    /// Orders asked for.
    pub fn intents_emitted(&self) -> u64 {
        self.intents
    }

    /// Open time of the last bar shown (ns).
    pub fn last_bar_ts(&self) -> Option<i64> {
        self.last_bar_ts
    }

    /// Orders that close every position now (market, whole position), for
    /// a stop with flatten; empty when flat.
    pub fn flatten(&mut self) -> Vec<Out> {
        let mut ctx = Context::new(
            self.now,
            &self.instruments,
            &self.windows,
            &self.account,
            &self.orders,
            &mut self.outbox,
        );
        for k in 0..self.instruments.len() {
            let pos = self.account.ledger.position_raw(k);
            if pos == 0 {
                continue;
            }
            let side = if pos > 0 {
                grodt_core::Side::Sell
            } else {
                grodt_core::Side::Buy
            };
            let req = OrderRequest::market(k, side, Size::ClosePosition);
            ctx.submit(req.with_tif(TimeInForce::Gtc));
        }
        let mut out = Vec::new();
        // Only Submit commands are in the outbox here; emit cannot fail on them.
        let _ = self.emit(&mut out);
        out
    }

    fn callback(&mut self, f: impl FnOnce(&mut dyn Strategy, &mut Context<'_>)) {
        let mut ctx = Context::new(
            self.now,
            &self.instruments,
            &self.windows as &dyn MarketView,
            &self.account,
            &self.orders,
            &mut self.outbox,
        );
        f(&mut *self.strategy, &mut ctx);
    }

    /// Turns the strategy's requests into outs, remembering each order.
    fn emit(&mut self, out: &mut Vec<Out>) -> Result<(), PaperError> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        self.outbox.take_into(&mut self.commands);
        let commands = std::mem::take(&mut self.commands);
        for cmd in &commands {
            match *cmd {
                Command::Submit(id, request) => {
                    let t = self.ticket(id, request, None)?;
                    out.push(Out::Submit(t));
                }
                Command::Bracket(e, tp, sl, br) => {
                    let t = self.ticket(
                        e,
                        br.entry,
                        Some(BracketLegs {
                            take_profit: br.take_profit,
                            stop_loss: br.stop_loss,
                        }),
                    )?;
                    let (tp_cid, sl_cid) = bracket_exit_ids(&t.client_order_id);
                    for (id, cid) in [(tp, tp_cid), (sl, sl_cid)] {
                        self.by_cid.insert(cid.clone(), id);
                        self.cids.insert(id, cid);
                    }
                    out.push(Out::Submit(t));
                }
                Command::Oco(..) => {
                    return Err(PaperError::Invalid {
                        field: "oco",
                        reason: "one-cancels-other pairs are not carried by paper trading yet"
                            .into(),
                    });
                }
                Command::Cancel(id) => {
                    if let Some(cid) = self.cids.get(&id) {
                        out.push(Out::Cancel(cid.clone()));
                    }
                }
            }
        }
        self.commands = commands;
        self.commands.clear();
        Ok(())
    }

    fn ticket(
        &mut self,
        id: OrderId,
        request: OrderRequest,
        bracket: Option<BracketLegs>,
    ) -> Result<Ticket, PaperError> {
        let symbol = self
            .instruments
            .get(request.instrument)
            .map(|i| i.id.clone())
            .ok_or_else(|| PaperError::Invalid {
                field: "instrument",
                reason: format!(
                    "order for instrument {} of a strategy on {}",
                    request.instrument,
                    self.instruments.len()
                ),
            })?;
        let cid = client_order_id(&self.instance_id, id);
        self.by_cid.insert(cid.clone(), id);
        self.cids.insert(id, cid.clone());
        self.pending.insert(
            id,
            Pending {
                request,
                ts: self.now,
            },
        );
        self.intents += 1;
        Ok(Ticket {
            client_order_id: cid,
            strategy_id: self.instance_id.clone(),
            symbol,
            side: request.side,
            size: request.size,
            kind: request.kind,
            tif: request.tif,
            bracket,
            decision_ts: self.now,
        })
    }

    /// The mirror order of `id`, created on first sight from its request (or,
    /// for a bracket exit, from the state the venue reported).
    fn mirror(&mut self, id: OrderId, state: Option<&OrderState>) -> Result<usize, PaperError> {
        if let Some(&k) = self.index.get(&id) {
            return Ok(k);
        }
        let cid = self.cids.get(&id).cloned().unwrap_or_default();
        let mut order = if let Some(p) = self.pending.remove(&id) {
            Order::new(id, p.request, p.ts)
        } else if let Some(s) = state {
            let k = self
                .local(&s.ticket.symbol)
                .ok_or_else(|| PaperError::Inconsistent {
                    client_order_id: cid.clone(),
                    reason: format!("an order on {}, not traded here", s.ticket.symbol),
                })?;
            let p = self.instruments[k].size_precision;
            let request = OrderRequest {
                instrument: k,
                side: s.ticket.side,
                size: Size::Fixed(Quantity::zero(p)),
                kind: s.ticket.kind,
                tif: s.ticket.tif,
            };
            let mut o = Order::new(id, request, s.created_ts);
            o.quantity = None;
            if let Some(parent) = s.parent.as_ref().and_then(|c| self.by_cid.get(c)) {
                o.parent = Some(*parent);
                let (tp, sl) = bracket_exit_ids(s.parent.as_deref().unwrap_or_default());
                let other = if s.ticket.client_order_id == tp {
                    sl
                } else {
                    tp
                };
                o.oco = self.by_cid.get(&other).copied();
            }
            o
        } else {
            return Err(PaperError::Inconsistent {
                client_order_id: cid,
                reason: "an update of an order this instance never asked for".into(),
            });
        };
        if let Some(s) = state {
            order.created_ts = s.created_ts;
        }
        self.orders.push(order);
        let k = self.orders.len() - 1;
        self.index.insert(id, k);
        Ok(k)
    }

    /// Books one update; returns what to tell the strategy (nothing for a
    /// capital move: its cash just changes, as in the portfolio backtest).
    fn book(&mut self, u: &Update) -> Result<Option<Told>, PaperError> {
        match u {
            Update::Capital(c) => {
                let ledger = &mut self.account.ledger;
                match c.kind {
                    CapitalKind::Transfer => ledger.transfer(c.amount),
                    CapitalKind::Borrow => ledger.charge_borrow(c.amount),
                    CapitalKind::Financing => ledger.charge_financing(c.amount),
                }
                .map_err(PaperError::Sim)?;
                Ok(None)
            }
            Update::Fill(f) => {
                let id = self.by_cid[&f.client_order_id];
                let fill = self.core_fill(id, f)?;
                self.account.ledger.apply_fill(&fill).map_err(|e| match e {
                    // An absurd price or quantity: the ledger refuses it.
                    e @ SimError::Core(CoreError::Overflow { .. }) => PaperError::Sim(e),
                    e => inconsistent(&f.client_order_id, &e),
                })?;
                Ok(Some(Told::Fill(fill)))
            }
            Update::Order(s) => {
                let cid = &s.ticket.client_order_id;
                let id = self.by_cid[cid];
                let k = self.mirror(id, Some(s))?;
                let instrument = self.orders[k].request.instrument;
                let p = self.instruments[instrument].size_precision;
                let filled = s.filled.rescale(p).map_err(|e| inconsistent(cid, &e))?;
                let quantity = s
                    .quantity
                    .map(|q| q.rescale(p))
                    .transpose()
                    .map_err(|e| inconsistent(cid, &e))?;
                advance(
                    &mut self.orders[k],
                    s.status,
                    filled,
                    quantity,
                    s.reason.as_deref(),
                )
                .map_err(|reason| PaperError::Inconsistent {
                    client_order_id: cid.clone(),
                    reason,
                })?;
                Ok(Some(Told::Order(OrderUpdate {
                    id,
                    instrument,
                    status: s.status,
                    ts: s.ts,
                    filled_raw: filled.raw(),
                })))
            }
        }
    }

    fn core_fill(&self, id: OrderId, f: &PaperFill) -> Result<Fill, PaperError> {
        let cid = &f.client_order_id;
        let k = self.local(&f.symbol).ok_or_else(|| {
            inconsistent(cid, &format!("a fill on {}, not traded here", f.symbol))
        })?;
        let inst = &self.instruments[k];
        let qty = f
            .qty
            .rescale(inst.size_precision)
            .map_err(|e| inconsistent(cid, &e))?;
        let price = f
            .price
            .rescale(inst.price_precision)
            .map_err(|e| inconsistent(cid, &e))?;
        Ok(Fill {
            seq: f.seq,
            order_id: id,
            instrument: k,
            ts: f.ts,
            side: f.side,
            qty,
            price,
            reference_price: price,
            commission: f.commission,
            rebate: f.rebate,
            slippage: f.slippage,
            liquidity: f.liquidity,
        })
    }
}

/// What the strategy is told, after everything is booked.
enum Told {
    Fill(Fill),
    Order(OrderUpdate),
}

fn inconsistent(cid: &str, e: &dyn std::fmt::Display) -> PaperError {
    PaperError::Inconsistent {
        client_order_id: cid.to_owned(),
        reason: e.to_string(),
    }
}

/// Moves a mirror order to the state the venue reported, through the same
/// transitions the venue's copy went through.
fn advance(
    order: &mut Order,
    to: OrderStatus,
    filled: Quantity,
    quantity: Option<Quantity>,
    reason: Option<&str>,
) -> Result<(), String> {
    use OrderStatus as S;
    if quantity.is_some() {
        order.quantity = quantity;
    }
    let step = |o: &mut Order, e: OrderEvent| o.apply(e).map(|_| ()).map_err(|e| e.to_string());
    if order.status() == S::New && to != S::New && to != S::Rejected && to != S::Cancelled {
        step(order, OrderEvent::Accept)?;
    }
    if order.status() == S::Accepted
        && order.request.kind.needs_trigger()
        && matches!(to, S::Triggered | S::PartiallyFilled | S::Filled)
    {
        step(order, OrderEvent::Trigger)?;
    }
    let more = filled.raw() - order.filled_raw();
    if more > 0 {
        let q = Quantity::from_raw(more, filled.precision()).map_err(|e| e.to_string())?;
        step(order, OrderEvent::Fill(q))?;
    }
    match to {
        S::Cancelled if order.status() != S::Cancelled => step(order, OrderEvent::Cancel)?,
        S::Expired if order.status() != S::Expired => step(order, OrderEvent::Expire)?,
        S::Rejected if order.status() != S::Rejected => order
            .reject(reason.unwrap_or("rejected by the venue"))
            .map_err(|e| e.to_string())?,
        _ => {}
    }
    if order.status() != to {
        return Err(format!("reported {to:?}, mirror is {:?}", order.status()));
    }
    if let (S::Cancelled | S::Expired, Some(r)) = (to, reason) {
        order.reject_reason = Some(r.to_owned());
    }
    Ok(())
}
