//! The portfolio backtest: several strategies on one simulated venue and one
//! account, each with a sub-ledger of its own.
//!
//! The [`Desk`] sits between the strategies and the venue. Each strategy sees
//! only its sub-ledger (its allocated capital, cash, positions, fees), its own
//! orders and its own instruments, through the same `Context` as in a
//! single-strategy backtest. What it asks for goes to the desk:
//!
//! 1. A market order decided on bar t of an instrument waits for that
//!    instrument's next bar. Then, before the venue sees the bar, the desk
//!    resolves every waiting order's size against its strategy's sub-ledger at
//!    the bar's open (as the venue sizes an equity fraction at the fill), cuts
//!    or refuses what the strategy's allocation cannot carry, what the risk
//!    rules reject and what the portfolio limits forbid, and nets what is
//!    left per instrument: the offsetting quantity is crossed between the
//!    strategies at the open (no venue, no commission), and one net order
//!    goes to the venue.
//! 2. The venue fills the net order exactly as it fills any order; its fills
//!    are allocated back to the contributing strategies pro rata to the
//!    quantity step, commissions and rebates to the cent ([`crate::netting`]).
//! 3. Each strategy is told its fills and order changes, then sees the bar.
//!
//! After each timestamp the desk marks every sub-ledger, checks the
//! portfolio drawdown limit and the risk rules' breakers (a breach or a trip
//! flattens and halts every strategy) and,
//! when the schedule says so, moves capital between sub-ledgers towards the
//! allocator's target weights.
//!
//! Invariants (checked by [`Desk::check_books`], and by property tests after
//! every timestamp): the venue's cash is the sum of the sub-ledgers' cash and
//! the unallocated reserve; the venue's position in every instrument is the
//! sum of the strategies' positions.
//!
//! The risk service's rules: with `Plan::risk` set, the desk holds a
//! `grodt_risk_rules::RiskState` and feeds it as the risk service is fed:
//! every resolved order as an intent (after the member's allocation check,
//! before the desk's own limits; a rejection refuses the order with the
//! violations as the reason), every fill booked to a member (crosses
//! included, so the fold's positions are the account's) and every bar. A
//! breaker the fold trips halts the portfolio at the end of the timestamp as
//! the drawdown limit does. Time is bar time, there are no operator
//! commands (a trip halts for the rest of the run); docs/portfolio.md.
//!
//! Market orders are netted. Limit, stop and stop-limit orders of a fixed
//! size go to the venue as they are, one venue order each (never netted),
//! when their instrument's next bar comes, at the time they were decided,
//! after the same allocation and limit checks at their limit or trigger
//! price; the venue's trigger, limit and expiry rules apply, and cancels
//! pass through. A bracket goes to the venue as one (its entry sized like
//! any order of its kind; the venue activates the exits on the fill and
//! cancels one when the other fills). Refused with the reason (the strategy
//! is told): resting orders sized by equity or to close the position (the
//! venue sizes those at the fill, against the whole account), trailing
//! stops and one-cancels-other pairs.

use std::collections::HashMap;

use grodt_core::fixed::notional;
use grodt_core::rounding::{RoundingMode, decimal_text, round_money, round_quantity};
use grodt_core::{
    Bar, CostTotals, Decimal, Fill, Instrument, Liquidity, Order, OrderEvent, OrderId, OrderKind,
    OrderRequest, OrderStatus, OrderUpdate, Price, Quantity, Side, Size,
};
use grodt_risk_rules::{HaltCause, Input, Output, RiskState, Settings};
use grodt_sim::config::{BacktestConfig, FillTiming, LatencySpec, Models};
use grodt_sim::ledger::{ExactLedger, Ledger};
use grodt_sim::models::{CommissionInput, SlippageInput};
use grodt_sim::trades::{Trade, TradeBook};
use grodt_sim::{EquityPoint, Venue, VenueEvent};
use grodt_strategy_api::{AccountView, Command, Context, OrderLog, Outbox, Strategy, Windows};
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;

use crate::PortfolioError;
use crate::allocation::{Allocator, Schedule};
use crate::netting::{self, Contribution, Execution, Key};
use crate::stats;

/// One strategy instance of a portfolio.
pub struct Member {
    /// Its name in results (unique in the portfolio).
    pub id: String,
    /// The strategy, built for `instruments` (its instrument `k` is the
    /// portfolio's instrument `instruments[k]`).
    pub strategy: Box<dyn Strategy + Send>,
    /// Indices into the portfolio's instruments, in the strategy's order.
    pub instruments: Vec<usize>,
    /// Gross exposure the strategy may hold per unit of its own equity
    /// (1 = no leverage).
    pub max_leverage: Decimal,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id)
            .field("instruments", &self.instruments)
            .finish_non_exhaustive()
    }
}

/// Limits on the whole book, checked on every order before it is netted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortfolioLimits {
    /// Σ |position value| / account equity.
    pub max_gross_leverage: Option<Decimal>,
    /// |Σ signed position value| / account equity.
    pub max_net_leverage: Option<Decimal>,
    /// |position value of one instrument, all strategies together| / account equity.
    pub max_asset_exposure: Option<Decimal>,
    /// A drawdown of account equity from its peak (0.2 = 20%) that flattens and
    /// halts every strategy.
    pub max_drawdown: Option<Decimal>,
}

/// How a portfolio is run, besides its members.
#[derive(Debug)]
pub struct Plan {
    /// Target weights per member (in member order).
    pub allocator: Allocator,
    /// When capital moves towards the target weights.
    pub schedule: Schedule,
    /// Whole-book limits.
    pub limits: PortfolioLimits,
    /// The risk service's limits, run by the desk's own `RiskState` on every
    /// order, fill and bar; `None` = the risk rules are off.
    pub risk: Option<grodt_risk_rules::Limits>,
    /// Net orders across strategies (off: every order goes to the venue alone,
    /// the baseline that shows what netting saves).
    pub netting: bool,
    /// Volatility target of the allocation (per-period σ of the weighted
    /// strategy returns) with the leverage it may reach; `None` = off.
    pub vol_target: Option<(Decimal, Decimal)>,
    /// Correlation-aware sizing: (threshold, strength); `None` = off.
    pub correlation_cut: Option<(Decimal, Decimal)>,
    /// Returns the allocator and overlays look back on (0 = all).
    pub lookback: usize,
}

/// What netting did over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NettingStats {
    /// Orders that reached the desk's netting step.
    pub orders: u64,
    /// Orders sent to the venue (net orders, or every order without netting).
    pub venue_orders: u64,
    /// Instrument-bars on which orders of more than one strategy met.
    pub groups_shared: u64,
    /// Quantity crossed between strategies, per instrument (raw).
    pub crossed_raw: Vec<i64>,
    /// Commission the orders would have paid each on its own at the fill
    /// prices, minus what was paid.
    pub commission_saved: Decimal,
}

/// A member's results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberResult {
    /// The member.
    pub id: String,
    /// Portfolio instrument indices it traded (its instrument `k` is `instruments[k]`).
    pub instruments: Vec<usize>,
    /// Its sub-ledger's equity after every timestamp of the run (capital
    /// moved in or out by rebalancing included).
    pub equity: Vec<EquityPoint<Decimal>>,
    /// Its performance net of capital moves: its initial capital grown by
    /// its per-period returns (each period's return excludes that period's
    /// transfers). Metrics of a strategy are computed on this curve.
    pub growth: Vec<EquityPoint<Decimal>>,
    /// Fills allocated to it (instrument = its own index), crosses included.
    pub fills: Vec<Fill>,
    /// Its round trips (instrument = its own index).
    pub trades: Vec<Trade>,
    /// Its orders, final states (index = its order id).
    pub orders: Vec<Order>,
    /// Its costs.
    pub costs: CostTotals,
    /// Final signed raw positions (its instruments).
    pub positions: Vec<i64>,
    /// Capital it started with.
    pub initial: Decimal,
    /// Capital moved in (positive) or out (negative) by rebalancing.
    pub transferred: Decimal,
    /// Whether a halt (the drawdown limit or a risk breaker) stopped it.
    pub halted: bool,
}

/// One rebalance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rebalance {
    /// When (end of this timestamp).
    pub ts: i64,
    /// Target weights (reserve = 1 - Σ).
    pub target: Vec<Decimal>,
    /// Capital moved into each member (negative: out).
    pub moved: Vec<Decimal>,
}

/// A portfolio run's results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PortfolioResult {
    /// The account: the venue's own result (its fills are the net orders').
    pub account: grodt_sim::BacktestResult<Decimal>,
    /// Per member, in member order.
    pub members: Vec<MemberResult>,
    /// Capital never allocated or taken back by an overlay, at the end.
    pub reserve: Decimal,
    /// Rebalances in order.
    pub rebalances: Vec<Rebalance>,
    /// Netting.
    pub netting: NettingStats,
    /// Orders refused by the desk, with the member and reason.
    pub refusals: Vec<Refusal>,
    /// When the drawdown limit or a risk breaker halted trading, if one did.
    pub halted_at: Option<i64>,
    /// Why trading was halted (the limit, or the risk breaker and what tripped it).
    pub halt_reason: Option<String>,
    /// Correlation matrix of the members' per-period returns.
    pub correlation: Vec<Vec<Decimal>>,
    /// Σ wᵢσᵢ / σ_p of the members' returns at their average weights.
    pub diversification_ratio: Option<Decimal>,
}

/// What moved a member's cash other than its fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapitalKind {
    /// Rebalancing moved capital in (positive) or out (negative).
    Transfer,
    /// Its share of the account's borrow fee (charged, positive).
    Borrow,
    /// Its share of the account's financing (charged, positive).
    Financing,
}

/// A change of a member's cash outside its fills, as the desk made it
/// (recorded only when asked for: [`Desk::record_capital_moves`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapitalMove {
    /// The member (index).
    pub member: usize,
    /// What it was.
    pub kind: CapitalKind,
    /// The amount (a transfer's sign is its direction; charges are positive).
    pub amount: Decimal,
    /// When (ns).
    pub ts: i64,
}

/// An order the desk refused, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// When.
    pub ts: i64,
    /// The member.
    pub member: String,
    /// Its order id.
    pub order: u64,
    /// Why.
    pub reason: String,
}

/// The sub-ledger as a strategy sees it.
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
        // As the venue does: only an overflow fails here.
        self.ledger
            .equity_decimal(&self.marks)
            .unwrap_or(Decimal::ZERO)
    }
}

/// What a member is told after a step.
enum Told {
    Fill(Fill),
    Order(OrderUpdate),
}

struct Book {
    id: String,
    strategy: Box<dyn Strategy + Send>,
    /// Local instrument k -> portfolio index.
    map: Vec<usize>,
    instruments: Vec<Instrument>,
    max_leverage: Decimal,
    account: Account,
    windows: Windows,
    orders: OrderLog,
    outbox: Outbox,
    commands: Vec<Command>,
    trades: TradeBook,
    seen: Vec<usize>,
    fills: Vec<Fill>,
    equity: Vec<EquityPoint<Decimal>>,
    told: Vec<Told>,
    initial: Decimal,
    transferred: Decimal,
    halted: bool,
    started: bool,
    /// Equity at the end of the previous timestamp, after transfers.
    last_equity: Decimal,
}

impl Book {
    fn local(&self, i: usize) -> Option<usize> {
        self.map.iter().position(|&j| j == i)
    }

    fn equity(&self) -> Result<Decimal, PortfolioError> {
        Ok(self.account.ledger.equity_decimal(&self.account.marks)?)
    }

    fn order_mut(&mut self, id: OrderId) -> Option<&mut Order> {
        let k = usize::try_from(id.0).ok()?;
        self.orders.get_mut(k).filter(|o| o.id == id)
    }

    fn callback(&mut self, now: i64, f: impl FnOnce(&mut dyn Strategy, &mut Context<'_>)) {
        let mut ctx = Context::new(
            now,
            &self.instruments,
            &self.windows,
            &self.account,
            &self.orders,
            &mut self.outbox,
        );
        f(&mut *self.strategy, &mut ctx);
    }

    /// Changes an order's state and queues the update for the strategy.
    fn change(
        &mut self,
        id: OrderId,
        event: OrderEvent,
        reason: Option<&str>,
        ts: i64,
    ) -> Result<(), PortfolioError> {
        let Some(order) = self.order_mut(id) else {
            return Ok(());
        };
        if order.status().is_terminal() {
            return Ok(());
        }
        match event {
            OrderEvent::Reject => order.reject(reason.unwrap_or("rejected"))?,
            e => {
                order.apply(e)?;
                if let (Some(r), OrderEvent::Cancel) = (reason, e) {
                    order.reject_reason = Some(r.to_owned());
                }
            }
        }
        let update = OrderUpdate::of(order, ts);
        self.told.push(Told::Order(update));
        Ok(())
    }
}

/// A market order waiting for its instrument's next bar.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    member: usize,
    order: OrderId,
}

/// A venue order of the desk and the members' orders behind it.
struct Route {
    execution: Execution,
    instrument: usize,
}

/// The desk: one venue, one account, several strategies.
pub struct Desk {
    config: BacktestConfig,
    venue: Venue<ExactLedger>,
    models: Models,
    instruments: Vec<Instrument>,
    books: Vec<Book>,
    waiting: Vec<Vec<Waiting>>,
    routes: HashMap<OrderId, Route>,
    next_venue_id: u64,
    plan: Plan,
    cost_dp: u32,
    reserve: Decimal,
    peak: Decimal,
    halted_at: Option<i64>,
    halt_reason: Option<String>,
    /// The risk service's rules, when the plan has `[risk]` limits.
    risk: Option<RiskState>,
    /// A breaker of `risk` tripped: the halt's reason, acted on at the end of
    /// the timestamp (as the drawdown limit).
    tripped: Option<String>,
    /// Fills fed to `risk` so far (makes fill ids unique).
    risk_fills: u64,
    last_rebalance: Option<i64>,
    rebalances: Vec<Rebalance>,
    netting: NettingStats,
    refusals: Vec<Refusal>,
    account_equity: Vec<EquityPoint<Decimal>>,
    events: Vec<VenueEvent>,
    now: i64,
    weight_sums: Vec<Decimal>,
    weight_count: u64,
    /// The account's borrow and financing charged so far.
    accrued: (Decimal, Decimal),
    /// Each member's per-period returns net of transfers, whole run so far
    /// (the allocator's input: each method reads its own lookback).
    history: Vec<Vec<Decimal>>,
    /// Capital moves not yet taken, when recorded (a live broker reports
    /// them to the members' runners; a backtest has no use for them).
    moves: Option<Vec<CapitalMove>>,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desk")
            .field("members", &self.books.len())
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PortfolioError {
    PortfolioError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl Desk {
    /// A desk over `instruments` with `config.starting_cash` split by the
    /// allocator's initial weights (what it gives with no returns yet).
    ///
    /// # Errors
    /// A config the desk cannot honour (fills at the same bar's close, latency),
    /// a member naming an unknown instrument, duplicate member ids, or an
    /// allocation error.
    pub fn new(
        config: &BacktestConfig,
        instruments: Vec<Instrument>,
        members: Vec<Member>,
        mut plan: Plan,
    ) -> Result<Self, PortfolioError> {
        config.validate()?;
        if config.fill_timing != FillTiming::NextOpen {
            return Err(PortfolioError::Unsupported {
                field: "fill_timing",
                reason: "a portfolio fills market orders at the next open (orders are netted before the bar)".into(),
            });
        }
        if config.latency != (LatencySpec::Fixed { nanos: 0 }) {
            return Err(PortfolioError::Unsupported {
                field: "latency",
                reason: "a portfolio routes orders without latency so far".into(),
            });
        }
        if members.is_empty() {
            return Err(invalid(
                "members",
                "a portfolio needs at least one strategy",
            ));
        }
        for (n, m) in members.iter().enumerate() {
            if members[..n].iter().any(|o| o.id == m.id) {
                return Err(invalid(
                    "members",
                    format!("duplicate strategy id {:?}", m.id),
                ));
            }
            if m.instruments.is_empty() {
                return Err(invalid("members", format!("{} trades no instrument", m.id)));
            }
            if let Some(&bad) = m.instruments.iter().find(|&&i| i >= instruments.len()) {
                return Err(invalid(
                    "members",
                    format!("{} names instrument {bad} of {}", m.id, instruments.len()),
                ));
            }
            if m.max_leverage <= Decimal::ZERO {
                return Err(invalid(
                    "max_leverage",
                    format!("{}: must be positive, got {}", m.id, m.max_leverage),
                ));
            }
        }
        let venue = Venue::new(config.clone(), instruments.clone())?;
        let risk = match &plan.risk {
            Some(limits) => {
                limits.validate().map_err(PortfolioError::RiskLimits)?;
                // Configured as the risk service configures itself: its
                // settings (the account's capital) and the initial limits.
                let settings = Settings {
                    initial_equity: config.starting_cash,
                    ..Settings::default()
                };
                let mut state = RiskState::new(settings.clone());
                state.apply(&Input::Configure {
                    settings,
                    limits: Some(limits.clone()),
                });
                Some(state)
            }
            None => None,
        };
        let n = members.len();
        let capital = config.starting_cash;
        let shares = opening_shares(&mut plan, n, capital, config.cost_dp)?;
        let reserve = capital - shares.iter().copied().sum::<Decimal>();
        let books = members
            .into_iter()
            .zip(&shares)
            .map(|(m, &cash)| {
                let insts: Vec<Instrument> = m
                    .instruments
                    .iter()
                    .map(|&i| instruments[i].clone())
                    .collect();
                let k = insts.len();
                let window = m.strategy.history_bars().max(1);
                Book {
                    id: m.id,
                    strategy: m.strategy,
                    map: m.instruments,
                    account: Account {
                        ledger: ExactLedger::open(cash, &insts),
                        marks: vec![0; k],
                    },
                    windows: Windows::new(k, window),
                    instruments: insts,
                    max_leverage: m.max_leverage,
                    orders: OrderLog::new(),
                    outbox: Outbox::new(0),
                    commands: Vec::new(),
                    trades: TradeBook::new(k, 64),
                    seen: vec![0; k],
                    fills: Vec::new(),
                    equity: Vec::new(),
                    told: Vec::new(),
                    initial: cash,
                    transferred: Decimal::ZERO,
                    halted: false,
                    started: false,
                    last_equity: cash,
                }
            })
            .collect();
        let ni = instruments.len();
        Ok(Self {
            config: config.clone(),
            models: config.models(),
            venue,
            waiting: vec![Vec::new(); ni],
            routes: HashMap::new(),
            next_venue_id: 0,
            cost_dp: config.cost_dp,
            reserve,
            peak: capital,
            halted_at: None,
            halt_reason: None,
            risk,
            tripped: None,
            risk_fills: 0,
            last_rebalance: None,
            rebalances: Vec::new(),
            netting: NettingStats {
                crossed_raw: vec![0; ni],
                ..NettingStats::default()
            },
            refusals: Vec::new(),
            account_equity: Vec::new(),
            events: Vec::new(),
            now: i64::MIN,
            weight_sums: vec![Decimal::ZERO; n],
            weight_count: 0,
            accrued: (Decimal::ZERO, Decimal::ZERO),
            history: vec![Vec::new(); n],
            moves: None,
            instruments,
            books,
            plan,
        })
    }

    /// Feeds one bar of portfolio instrument `i` (bars in time order across
    /// instruments; call [`Desk::end_of_timestamp`] after the last bar of each
    /// timestamp).
    ///
    /// # Errors
    /// A bad bar (named by the venue), or a broken book (a bug: the books no
    /// longer add up).
    pub fn on_bar(&mut self, i: usize, bar: &Bar) -> Result<(), PortfolioError> {
        self.now = bar.ts;
        for b in 0..self.books.len() {
            if !self.books[b].started {
                self.books[b].started = true;
                self.books[b].callback(bar.ts, |s, c| s.on_start(c));
                self.collect(b, bar.ts)?;
            }
        }
        // A new day's borrow and financing first, as the venue charges them
        // before it fills (and sizes) anything on the bar.
        // Resting orders reach the venue at the time they were decided, as in
        // a single backtest (a DAY order's day is that of its first bar).
        self.send_waiting(i, bar, true)?;
        let cash_before = self.venue.cash();
        self.venue.accrue_to(bar.ts)?;
        let accrued = cash_before - self.venue.cash();
        if !accrued.is_zero() {
            self.allocate_accrual(accrued)?;
        }
        self.send_waiting(i, bar, false)?;
        let cash_before = self.venue.cash();
        self.venue.on_bar(i, bar)?;
        let mut fill_cash = Decimal::ZERO;
        self.venue.take_events_into(&mut self.events);
        let events = std::mem::take(&mut self.events);
        for ev in &events {
            match ev {
                VenueEvent::Fill(seq) => {
                    if let Some(fill) = self.venue.fill(*seq).cloned() {
                        fill_cash += cash_effect(&self.instruments[fill.instrument], &fill)?;
                        self.allocate_fill(&fill, bar)?;
                    }
                }
                VenueEvent::Order(update) => self.on_venue_update(update)?,
            }
        }
        self.events = events;
        // Borrow and financing the venue charged the account on a new day.
        let accrued = cash_before + fill_cash - self.venue.cash();
        if !accrued.is_zero() {
            self.allocate_accrual(accrued)?;
        }
        if self.risk.is_some() {
            let inst = &self.instruments[i];
            let input = Input::Bar {
                symbol: inst.id.clone(),
                close: Price::from_raw(bar.close, inst.price_precision)?.to_decimal(),
                at_ns: bar.ts,
            };
            self.feed_risk(&input);
        }
        for b in 0..self.books.len() {
            let Some(k) = self.books[b].local(i) else {
                continue;
            };
            let book = &mut self.books[b];
            book.trades.on_bar(k, book.seen[k], bar);
            book.seen[k] += 1;
            book.account.marks[k] = bar.close;
            book.windows.push(k, *bar);
        }
        for b in 0..self.books.len() {
            self.tell(b)?;
            let Some(k) = self.books[b].local(i) else {
                continue;
            };
            if self.books[b].halted {
                continue;
            }
            self.books[b].callback(bar.ts, |s, c| s.on_bar(c, k, bar));
            self.collect(b, bar.ts)?;
        }
        Ok(())
    }

    /// Marks every sub-ledger at `ts`, records returns, checks the drawdown
    /// limit and rebalances when due.
    ///
    /// # Errors
    /// A ledger overflow or an allocation error.
    pub fn end_of_timestamp(&mut self, ts: i64) -> Result<(), PortfolioError> {
        let account = self.venue.equity_decimal()?;
        self.account_equity.push(EquityPoint {
            ts,
            equity: account,
        });
        for (book, history) in self.books.iter_mut().zip(&mut self.history) {
            let e = book.equity()?;
            book.equity.push(EquityPoint { ts, equity: e });
            let r = if book.last_equity > Decimal::ZERO {
                e / book.last_equity - Decimal::ONE
            } else {
                Decimal::ZERO
            };
            history.push(r);
            book.last_equity = e;
        }
        self.peak = self.peak.max(account);
        if self.halted_at.is_none()
            && let Some(limit) = self.plan.limits.max_drawdown
            && self.peak > Decimal::ZERO
            && (self.peak - account) / self.peak > limit
        {
            let reason = format!(
                "portfolio drawdown limit: equity {account} from peak {}",
                self.peak
            );
            self.halt(ts, reason)?;
        }
        if self.halted_at.is_none()
            && let Some(reason) = self.tripped.take()
        {
            self.halt(ts, reason)?;
        }
        let current = self.weights()?;
        for (s, w) in self.weight_sums.iter_mut().zip(&current) {
            *s += *w;
        }
        self.weight_count += 1;
        if self.halted_at.is_none() {
            // Calendar schedules do not read the weights: the target is
            // computed only when one is due (drift needs it every time).
            let calendar = !matches!(self.plan.schedule, Schedule::Drift { .. });
            if calendar && !self.plan.schedule.due(self.last_rebalance, ts, &[], &[]) {
                return Ok(());
            }
            let window = self.window();
            let target = overlay_with(&mut self.plan, &self.history, &window)?;
            if calendar
                || self
                    .plan
                    .schedule
                    .due(self.last_rebalance, ts, &current, &target)
            {
                self.rebalance(ts, &target)?;
                self.last_rebalance = Some(ts);
            }
        }
        Ok(())
    }

    /// Checks that the sub-ledgers and the reserve add up to the account, in
    /// cash and in every position, and that the risk rules (when on) hold
    /// the account's position in every instrument.
    ///
    /// # Errors
    /// [`PortfolioError::Books`] naming what does not add up.
    pub fn check_books(&self) -> Result<(), PortfolioError> {
        let cash: Decimal = self
            .books
            .iter()
            .map(|b| b.account.ledger.cash())
            .sum::<Decimal>()
            + self.reserve;
        if cash != self.venue.cash() {
            return Err(PortfolioError::Books {
                what: format!(
                    "cash: sub-ledgers and reserve {cash}, account {}",
                    self.venue.cash()
                ),
            });
        }
        for i in 0..self.instruments.len() {
            let sum: i64 = self
                .books
                .iter()
                .filter_map(|b| b.local(i).map(|k| b.account.ledger.position_raw(k)))
                .sum();
            if sum != self.venue.position_raw(i) {
                return Err(PortfolioError::Books {
                    what: format!(
                        "{}: strategies hold {sum}, account {}",
                        self.instruments[i].id,
                        self.venue.position_raw(i)
                    ),
                });
            }
            if let Some(risk) = &self.risk {
                let inst = &self.instruments[i];
                let account = Quantity::from_raw(self.venue.position_raw(i), inst.size_precision)?;
                let fold = risk.position(&inst.id);
                if fold != account.to_decimal() {
                    return Err(PortfolioError::Books {
                        what: format!("{}: the risk rules hold {fold}, account {account}", inst.id),
                    });
                }
            }
        }
        Ok(())
    }

    /// The account's signed raw position in portfolio instrument `i` (the
    /// sum of the members' positions; 0 for an unknown instrument).
    pub fn account_position_raw(&self, i: usize) -> i64 {
        if i < self.instruments.len() {
            self.venue.position_raw(i)
        } else {
            0
        }
    }

    /// Sub-ledger equity of each member now.
    ///
    /// # Errors
    /// A ledger overflow.
    pub fn member_equity(&self) -> Result<Vec<Decimal>, PortfolioError> {
        self.books.iter().map(Book::equity).collect()
    }

    /// Capital not allocated to any member.
    pub fn reserve(&self) -> Decimal {
        self.reserve
    }

    /// The risk service's rules as the desk has fed them (`None` without
    /// `[risk]` limits in the plan).
    pub fn risk(&self) -> Option<&RiskState> {
        self.risk.as_ref()
    }

    /// Ends the run: every strategy's `on_stop`, then the results.
    ///
    /// # Errors
    /// A ledger overflow.
    pub fn finish(mut self) -> Result<PortfolioResult, PortfolioError> {
        let now = self.now;
        for b in &mut self.books {
            b.callback(now, |s, c| s.on_stop(c));
        }
        let returns = std::mem::take(&mut self.history);
        let correlation = stats::correlation(&returns).unwrap_or_default();
        let avg: Vec<Decimal> = if self.weight_count == 0 {
            vec![Decimal::ZERO; self.books.len()]
        } else {
            let n = Decimal::from(self.weight_count);
            self.weight_sums.iter().map(|s| *s / n).collect()
        };
        let diversification_ratio = stats::covariance(&returns)
            .ok()
            .and_then(|c| stats::diversification_ratio(&avg, &c));
        let members = self
            .books
            .into_iter()
            .zip(&returns)
            .map(|(b, history)| {
                let positions = (0..b.instruments.len())
                    .map(|k| b.account.ledger.position_raw(k))
                    .collect();
                let costs = b.account.ledger.costs();
                let trades = b.trades.finish(&b.instruments, &b.seen, &b.account.marks)?;
                let mut level = b.initial;
                let growth = b
                    .equity
                    .iter()
                    .zip(history)
                    .map(|(p, r)| {
                        // Rounded each step so the mantissa stays bounded over long runs.
                        level = (level * (Decimal::ONE + *r)).round_dp(10);
                        EquityPoint {
                            ts: p.ts,
                            equity: level,
                        }
                    })
                    .collect();
                Ok(MemberResult {
                    id: b.id,
                    instruments: b.map,
                    growth,
                    equity: b.equity,
                    fills: b.fills,
                    trades,
                    orders: b.orders.into_vec(),
                    costs,
                    positions,
                    initial: b.initial,
                    transferred: b.transferred,
                    halted: b.halted,
                })
            })
            .collect::<Result<Vec<_>, PortfolioError>>()?;
        let account = self.venue.finish(self.account_equity)?;
        Ok(PortfolioResult {
            account,
            members,
            reserve: self.reserve,
            rebalances: self.rebalances,
            netting: self.netting,
            refusals: self.refusals,
            halted_at: self.halted_at,
            halt_reason: self.halt_reason,
            correlation,
            diversification_ratio,
        })
    }

    /// Lets member `b` act now, outside its strategy's callbacks: `f` gets the
    /// member's `Context` (its sub-ledger, orders and instruments, as its
    /// strategy sees them) at the desk's current time, and whatever it submits
    /// or cancels is taken at once, as a strategy's requests in a callback
    /// are. This is how a broker drives a member whose strategy runs
    /// elsewhere (grodt-paper's portfolio broker turns tickets into these).
    ///
    /// # Errors
    /// [`PortfolioError::Invalid`] for an unknown member; a broken book.
    pub fn act<R>(
        &mut self,
        b: usize,
        f: impl FnOnce(&mut Context<'_>) -> R,
    ) -> Result<R, PortfolioError> {
        if b >= self.books.len() {
            return Err(invalid(
                "member",
                format!("{b} of {} members", self.books.len()),
            ));
        }
        let now = self.now;
        let mut out = None;
        self.books[b].callback(now, |_, c| out = Some(f(c)));
        self.collect(b, now)?;
        // The callback always runs, so `out` is set.
        out.ok_or_else(|| invalid("member", "the action did not run"))
    }

    /// The account as the venue holds it: cash, equity, positions, open
    /// (net) orders and costs.
    ///
    /// # Errors
    /// A ledger overflow.
    pub fn account_snapshot(&self) -> Result<grodt_sim::venue::Snapshot, PortfolioError> {
        Ok(self.venue.snapshot()?)
    }

    /// From now on, records every change of a member's cash outside its
    /// fills (rebalancing transfers, its share of borrow and financing), to
    /// be taken with [`Desk::take_capital_moves`].
    pub fn record_capital_moves(&mut self) {
        self.moves.get_or_insert_with(Vec::new);
    }

    /// The capital moves recorded since the last call, in order.
    pub fn take_capital_moves(&mut self) -> Vec<CapitalMove> {
        self.moves.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The time of the last bar fed (`i64::MIN` before the first).
    pub fn now(&self) -> i64 {
        self.now
    }

    /// The members' ids, in member order.
    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.books.iter().map(|b| b.id.as_str())
    }

    /// Portfolio instrument indices member `b` trades, in its strategy's
    /// order (empty for an unknown member).
    pub fn member_instruments(&self, b: usize) -> &[usize] {
        self.books.get(b).map_or(&[], |book| book.map.as_slice())
    }

    /// Whether a halt has stopped the portfolio (the drawdown limit or a
    /// risk breaker), and why.
    pub fn halt_reason(&self) -> Option<&str> {
        self.halt_reason.as_deref()
    }

    /// Each member's share of the members' and reserve's total equity.
    fn weights(&self) -> Result<Vec<Decimal>, PortfolioError> {
        let eq = self.member_equity()?;
        let total: Decimal = eq.iter().copied().sum::<Decimal>() + self.reserve;
        Ok(if total > Decimal::ZERO {
            eq.iter().map(|e| *e / total).collect()
        } else {
            vec![Decimal::ZERO; eq.len()]
        })
    }

    /// The members' recent returns, aligned, for the overlays.
    fn window(&self) -> Vec<Vec<Decimal>> {
        let lb = self.plan.lookback;
        self.history
            .iter()
            .map(|r| {
                let from = if lb == 0 {
                    0
                } else {
                    r.len().saturating_sub(lb)
                };
                r[from..].to_vec()
            })
            .collect()
    }

    /// Takes a member's requests: market orders wait for their instrument's
    /// next bar; anything else is rejected with the reason.
    fn collect(&mut self, b: usize, ts: i64) -> Result<(), PortfolioError> {
        loop {
            let book = &mut self.books[b];
            if book.outbox.is_empty() {
                return Ok(());
            }
            book.outbox.take_into(&mut book.commands);
            let commands = std::mem::take(&mut book.commands);
            for cmd in &commands {
                self.request(b, cmd, ts)?;
            }
            self.books[b].commands = commands;
            self.tell(b)?;
        }
    }

    fn request(&mut self, b: usize, cmd: &Command, ts: i64) -> Result<(), PortfolioError> {
        let book = &mut self.books[b];
        match *cmd {
            Command::Submit(id, req) => {
                let mut order = Order::new(id, req, ts);
                let why = if book.halted && req.size != Size::ClosePosition {
                    Some("the portfolio is halted")
                } else if req.instrument >= book.instruments.len() {
                    Some("unknown instrument")
                } else if matches!(req.kind, OrderKind::TrailingStop { .. }) {
                    Some("trailing stops are not routed by the portfolio desk yet")
                } else if req.kind != OrderKind::Market && !matches!(req.size, Size::Fixed(_)) {
                    // The venue sizes these at the fill against the account;
                    // a shared account cannot size them for one strategy.
                    Some("a resting (limit or stop) order in a portfolio needs a fixed size")
                } else {
                    None
                };
                if let Some(reason) = why {
                    order.reject(reason)?;
                    book.told.push(Told::Order(OrderUpdate::of(&order, ts)));
                    push_order(book, order);
                    self.refusals.push(Refusal {
                        ts,
                        member: book.id.clone(),
                        order: id.0,
                        reason: reason.into(),
                    });
                    return Ok(());
                }
                order.apply(OrderEvent::Accept)?;
                book.told.push(Told::Order(OrderUpdate::of(&order, ts)));
                let i = book.map[req.instrument];
                push_order(book, order);
                self.waiting[i].push(Waiting {
                    member: b,
                    order: id,
                });
            }
            Command::Bracket(e, tp, sl, br) => {
                // The entry as any order; the exits wait (New) for its fill,
                // as the venue keeps them.
                let req = br.entry;
                let why = if book.halted {
                    Some("the portfolio is halted")
                } else if req.instrument >= book.instruments.len() {
                    Some("unknown instrument")
                } else if matches!(req.kind, OrderKind::TrailingStop { .. }) {
                    Some("trailing stops are not routed by the portfolio desk yet")
                } else if req.kind != OrderKind::Market && !matches!(req.size, Size::Fixed(_)) {
                    Some("a resting (limit or stop) order in a portfolio needs a fixed size")
                } else {
                    None
                };
                let exit_side = req.side.opposite();
                let exit = |kind: OrderKind| OrderRequest {
                    instrument: req.instrument,
                    side: exit_side,
                    size: Size::Fixed(Quantity::zero(0)),
                    kind,
                    tif: grodt_core::TimeInForce::Gtc,
                };
                let mut entry = Order::new(e, req, ts);
                let mut exits = [
                    Order::new(
                        tp,
                        exit(OrderKind::Limit {
                            price: br.take_profit,
                        }),
                        ts,
                    ),
                    Order::new(
                        sl,
                        exit(OrderKind::Stop {
                            trigger: br.stop_loss,
                        }),
                        ts,
                    ),
                ];
                for (x, other) in exits.iter_mut().zip([sl, tp]) {
                    x.parent = Some(e);
                    x.oco = Some(other);
                    x.quantity = None;
                }
                if let Some(reason) = why {
                    entry.reject(reason)?;
                    book.told.push(Told::Order(OrderUpdate::of(&entry, ts)));
                    push_order(book, entry);
                    for mut x in exits {
                        x.apply(OrderEvent::Cancel)?;
                        book.told.push(Told::Order(OrderUpdate::of(&x, ts)));
                        push_order(book, x);
                    }
                    self.refusals.push(Refusal {
                        ts,
                        member: book.id.clone(),
                        order: e.0,
                        reason: reason.into(),
                    });
                    return Ok(());
                }
                entry.apply(OrderEvent::Accept)?;
                book.told.push(Told::Order(OrderUpdate::of(&entry, ts)));
                let i = book.map[req.instrument];
                push_order(book, entry);
                for x in exits {
                    push_order(book, x);
                }
                self.waiting[i].push(Waiting {
                    member: b,
                    order: e,
                });
            }
            Command::Oco(a, ra, c, rc) => {
                for (id, r) in [(a, ra), (c, rc)] {
                    let mut order = Order::new(id, r, ts);
                    order.reject(
                        "brackets and one-cancels-other orders are not routed by the portfolio desk yet",
                    )?;
                    book.told.push(Told::Order(OrderUpdate::of(&order, ts)));
                    push_order(book, order);
                }
            }
            Command::Cancel(id) => {
                // A waiting order can still be withdrawn; one already netted
                // into a venue order cannot (it fills at this bar's open).
                let waiting = book.map.iter().any(|&i| {
                    self.waiting[i]
                        .iter()
                        .any(|w| w.member == b && w.order == id)
                });
                if waiting {
                    for w in &mut self.waiting {
                        w.retain(|x| !(x.member == b && x.order == id));
                    }
                    book.change(
                        id,
                        OrderEvent::Cancel,
                        Some("cancelled by the strategy"),
                        ts,
                    )?;
                } else if let Some(vid) = self.resting(b, id) {
                    // A resting order at the venue: cancelled there, the
                    // strategy told now, as in a single backtest.
                    match self.venue.cancel(vid) {
                        Ok(()) | Err(grodt_sim::SimError::UnknownOrder { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                    self.drain()?;
                }
            }
        }
        Ok(())
    }

    /// The venue id of a member's order resting at the venue, if any.
    fn resting(&self, member: usize, order: OrderId) -> Option<OrderId> {
        self.routes.iter().find_map(|(vid, r)| {
            let legs = &r.execution.plan().legs;
            (legs.len() == 1 && legs[0].member == member && legs[0].order == order.0)
                .then_some(*vid)
        })
    }

    /// The take-profit and stop-loss of a member's bracket entry, if it is one.
    fn exits_of(&self, member: usize, entry: OrderId) -> Option<(Order, Order)> {
        let book = &self.books[member];
        let mut exits = book.orders.iter().filter(|o| o.parent == Some(entry));
        let (a, b) = (exits.next()?, exits.next()?);
        let tp = if matches!(a.request.kind, OrderKind::Limit { .. }) {
            (a, b)
        } else {
            (b, a)
        };
        Some((tp.0.clone(), tp.1.clone()))
    }

    /// A bracket goes to the venue as one, its entry sized `qty`: the venue
    /// activates the exits on the entry's fill and cancels one when the
    /// other fills, as in a single backtest.
    fn send_bracket(
        &mut self,
        w: &Waiting,
        i: usize,
        qty: i64,
        entry: OrderRequest,
        tp: Order,
        sl: Order,
    ) -> Result<(), PortfolioError> {
        let inst = &self.instruments[i];
        let step = inst.size_step.raw().max(1);
        let q = Quantity::from_raw(qty, inst.size_precision)?;
        let price = |k: OrderKind| match k {
            OrderKind::Limit { price } => Some(price),
            OrderKind::Stop { trigger } => Some(trigger),
            _ => None,
        };
        let (Some(take_profit), Some(stop_loss)) = (price(tp.request.kind), price(sl.request.kind))
        else {
            return Ok(());
        };
        let ids: Vec<OrderId> = (0..3).map(|k| OrderId(self.next_venue_id + k)).collect();
        self.next_venue_id += 3;
        self.venue.submit_bracket(
            ids[0],
            ids[1],
            ids[2],
            grodt_core::BracketRequest {
                entry: OrderRequest {
                    instrument: i,
                    size: Size::Fixed(q),
                    ..entry
                },
                take_profit: take_profit.rescale(inst.price_precision)?,
                stop_loss: stop_loss.rescale(inst.price_precision)?,
            },
        )?;
        self.netting.orders += 1;
        self.netting.venue_orders += 3;
        for (vid, (order, side)) in ids.iter().zip([
            (w.order, entry.side),
            (tp.id, tp.request.side),
            (sl.id, sl.request.side),
        ]) {
            let one = Contribution {
                member: w.member,
                order: order.0,
                side,
                qty_raw: qty,
                key: Key::Market,
            };
            self.routes.insert(
                *vid,
                Route {
                    execution: Execution::new(netting::plan(&[one], step)?, step, self.cost_dp)?,
                    instrument: i,
                },
            );
        }
        Ok(())
    }

    /// The quantity of a member's order behind venue order `vid` follows the
    /// venue's (a bracket exit's is set when the entry fills).
    fn sync_quantity(&mut self, vid: OrderId) -> Result<(), PortfolioError> {
        let Some(route) = self.routes.get(&vid) else {
            return Ok(());
        };
        let legs = &route.execution.plan().legs;
        if legs.len() != 1 {
            return Ok(());
        }
        let (member, order) = (legs[0].member, OrderId(legs[0].order));
        let Some(q) = self.venue.order(vid).and_then(|o| o.quantity) else {
            return Ok(());
        };
        if let Some(o) = self.books[member].order_mut(order) {
            o.quantity = Some(q);
        }
        Ok(())
    }

    /// A member's stop order triggered at the venue.
    fn trigger(&mut self, member: usize, order: OrderId, ts: i64) -> Result<(), PortfolioError> {
        let book = &mut self.books[member];
        if book
            .order_mut(order)
            .is_some_and(|o| o.status() == OrderStatus::Accepted && o.request.kind.needs_trigger())
        {
            book.change(order, OrderEvent::Trigger, None, ts)?;
        }
        Ok(())
    }

    /// Handles what the venue did outside a bar (a cancellation).
    fn drain(&mut self) -> Result<(), PortfolioError> {
        if !self.venue.has_events() {
            return Ok(());
        }
        let mut events = Vec::new();
        self.venue.take_events_into(&mut events);
        for ev in &events {
            if let VenueEvent::Order(update) = ev {
                self.on_venue_update(update)?;
            }
        }
        Ok(())
    }

    /// Resolves, checks and nets the orders waiting for instrument `i`, then
    /// crosses what offsets and sends the rest to the venue.
    fn send_waiting(&mut self, i: usize, bar: &Bar, resting: bool) -> Result<(), PortfolioError> {
        if self.waiting[i].is_empty() {
            return Ok(());
        }
        let (waiting, rest): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting[i])
            .into_iter()
            .partition(|w| {
                let market =
                    self.books[w.member].orders[idx(w.order)].request.kind == OrderKind::Market;
                market != resting
            });
        self.waiting[i] = rest;
        if waiting.is_empty() {
            return Ok(());
        }
        let inst = self.instruments[i].clone();
        let ts = bar.ts;
        // The price an equity fraction is sized at: the open after a
        // zero-quantity slippage, as the venue sizes it.
        let mut contributions: Vec<Contribution> = Vec::with_capacity(waiting.len());
        // The account's position in i as the checks accumulate.
        let mut account_pos = self.venue.position_raw(i);
        let mut batch = HashMap::new();
        for w in &waiting {
            let Some(qty) = self.resolve(w, i, bar, account_pos, &mut batch)? else {
                continue;
            };
            let request = self.books[w.member].orders[idx(w.order)].request;
            let side = request.side;
            account_pos += side.sign() * qty;
            if let Some((tp, sl)) = self.exits_of(w.member, w.order) {
                self.send_bracket(w, i, qty, request, tp, sl)?;
                continue;
            }
            if request.kind != OrderKind::Market {
                // Resting orders go to the venue as they are, one each: the
                // venue's trigger, limit and expiry rules, never netted.
                let one = Contribution {
                    member: w.member,
                    order: w.order.0,
                    side,
                    qty_raw: qty,
                    key: Key::Market,
                };
                let plan = netting::plan(&[one], inst.size_step.raw().max(1))?;
                let id = OrderId(self.next_venue_id);
                self.next_venue_id += 1;
                let q = Quantity::from_raw(qty, inst.size_precision)?;
                self.venue.submit(
                    id,
                    OrderRequest {
                        instrument: i,
                        size: Size::Fixed(q),
                        ..request
                    },
                )?;
                self.netting.orders += 1;
                self.netting.venue_orders += 1;
                self.routes.insert(
                    id,
                    Route {
                        execution: Execution::new(plan, inst.size_step.raw().max(1), self.cost_dp)?,
                        instrument: i,
                    },
                );
                continue;
            }
            contributions.push(Contribution {
                member: w.member,
                order: w.order.0,
                side,
                qty_raw: qty,
                key: Key::Market,
            });
        }
        if contributions.is_empty() {
            return Ok(());
        }
        self.netting.orders += contributions.len() as u64;
        let members: std::collections::BTreeSet<usize> =
            contributions.iter().map(|c| c.member).collect();
        if members.len() > 1 {
            self.netting.groups_shared += 1;
        }
        let step = inst.size_step.raw().max(1);
        let groups: Vec<Vec<Contribution>> = if self.plan.netting {
            vec![contributions]
        } else {
            contributions.into_iter().map(|c| vec![c]).collect()
        };
        for group in groups {
            let plan = netting::plan(&group, step)?;
            // Crossed at the open: no venue, no commission.
            for a in netting::internal_crosses(&plan) {
                let leg = plan
                    .legs
                    .iter()
                    .find(|l| l.member == a.member && l.order == a.order)
                    .map(|l| l.side)
                    .unwrap_or(Side::Buy);
                self.book_fill(
                    a.member,
                    OrderId(a.order),
                    i,
                    leg,
                    a.qty_raw,
                    bar.open,
                    None,
                    ts,
                )?;
                self.netting.crossed_raw[i] += a.qty_raw;
            }
            if self.plan.netting && plan.legs.len() > 1 {
                let price = Price::from_raw(bar.open, inst.price_precision)?;
                let charge = |q: i64, _p: i64| self.commission_of(&inst, q, price, ts);
                let s = netting::savings(&plan, bar.open, charge);
                // Estimated at the open: what the legs alone would have paid
                // minus what the net order pays.
                self.netting.commission_saved += s.saved();
            }
            let Some(side) = plan.net_side else {
                continue;
            };
            let net = plan.net_raw;
            let id = OrderId(self.next_venue_id);
            self.next_venue_id += 1;
            let qty = Quantity::from_raw(net, inst.size_precision)?;
            self.venue
                .submit(id, OrderRequest::market(i, side, Size::Fixed(qty)))?;
            self.netting.venue_orders += 1;
            self.routes.insert(
                id,
                Route {
                    execution: Execution::new(plan, step, self.cost_dp)?,
                    instrument: i,
                },
            );
        }
        Ok(())
    }

    /// A waiting order's quantity (raw, > 0), after the member's allocation
    /// and the portfolio limits; `None` when it is refused (the member is told).
    fn resolve(
        &mut self,
        w: &Waiting,
        i: usize,
        bar: &Bar,
        account_pos: i64,
        batch: &mut HashMap<usize, (i64, Decimal)>,
    ) -> Result<Option<i64>, PortfolioError> {
        let inst = &self.instruments[i];
        let book = &self.books[w.member];
        let k = book.local(i).unwrap_or(0);
        let order = &book.orders[idx(w.order)];
        let side = order.request.side;
        // The member's earlier orders of this bar count as filled at the
        // sizing price, as the venue fills one order before sizing the next.
        let (moved, fees) = batch.get(&w.member).copied().unwrap_or_default();
        let pos = book.account.ledger.position_raw(k) + moved;
        // A market order is sized at the open after a zero-quantity slippage,
        // as the venue sizes it; a resting order at its limit (or trigger).
        let market = order.request.kind == OrderKind::Market;
        let slipped = match order.request.kind {
            OrderKind::Limit { price } | OrderKind::StopLimit { limit: price, .. } => {
                price.rescale(inst.price_precision)?.raw()
            }
            OrderKind::Stop { trigger } => trigger.rescale(inst.price_precision)?.raw(),
            _ => {
                let p = self.models.slippage.apply(&SlippageInput {
                    instrument: inst,
                    side,
                    price_raw: bar.open,
                    qty_raw: 0,
                    volume_share: 0.0,
                });
                match side {
                    Side::Buy => p.max(bar.open),
                    Side::Sell => p.min(bar.open),
                }
            }
        };
        let mut marks = book.account.marks.clone();
        marks[k] = slipped;
        let equity = book.account.ledger.equity_decimal(&marks)? - fees;
        let price = Price::from_raw(slipped, inst.price_precision)?.to_decimal();
        let asked = match order.request.size {
            Size::Fixed(q) => Ok(q.rescale(inst.size_precision)?.raw()),
            Size::ClosePosition => {
                if pos == 0 || pos.signum() == side.sign() {
                    Err(format!("close-position {side:?} with position {pos}"))
                } else {
                    Ok(pos.abs())
                }
            }
            Size::EquityFraction(f) => {
                if price <= Decimal::ZERO || equity <= Decimal::ZERO {
                    Err("no equity or non-positive price to size against".into())
                } else {
                    match round_quantity(inst, equity * f / price, RoundingMode::TowardZero) {
                        Ok(q) if q.raw() > 0 && q >= inst.min_quantity => Ok(q.raw()),
                        Ok(q) => Err(format!("size resolves to {q}, below the minimum")),
                        Err(_) => Err(format!(
                            "size {f} of equity {equity} at {price} is out of range"
                        )),
                    }
                }
            }
        };
        let asked = match asked {
            Ok(q) => q,
            Err(reason) => return self.refuse(w, reason, bar.ts).map(|()| None),
        };
        // The member's allocation: the venue's own margin rule (initial
        // margin of every position after the order, at the sizing price for
        // this instrument and the last closes for the others) applied to its
        // sub-ledger, whose equity less the order's commission, times
        // max_leverage, must carry it. Orders that do not add exposure pass.
        let allowed = asked;
        let new_pos = pos + side.sign() * allowed;
        if new_pos.abs() > pos.abs() {
            let fee = self.commission_of(
                inst,
                allowed,
                Price::from_raw(slipped, inst.price_precision)?,
                bar.ts,
            );
            let carried = book.max_leverage * (equity - fee);
            let mut required = Decimal::ZERO;
            for (j, ij) in book.instruments.iter().enumerate() {
                let (q, mark) = if j == k {
                    (new_pos, slipped)
                } else {
                    (book.account.ledger.position_raw(j), book.account.marks[j])
                };
                required += value(ij, q, mark)?.abs() * ij.margin.initial;
            }
            if required > carried {
                let reason = format!(
                    "exceeds its allocation: needs margin {}, its equity {} carries {}",
                    required.round_dp(2),
                    (equity - fee).round_dp(2),
                    carried.round_dp(2)
                );
                return self.refuse(w, reason, bar.ts).map(|()| None);
            }
        }
        // The risk service's rules, then the desk's own limits. A halt's
        // closing orders pass both: each only reduces its member's position,
        // though one member's close may, until the others' fill, widen the
        // account's (a short's cover after a long's sale in the same symbol).
        let breach = if self.halted_at.is_some() {
            None
        } else {
            self.breach(i, side, allowed, account_pos, slipped)?
        };
        if let Some(reason) = self.risk_check(w, i, side, allowed, bar.ts, breach.is_some())? {
            return self.refuse(w, reason, bar.ts).map(|()| None);
        }
        if let Some(reason) = breach {
            return self.refuse(w, reason, bar.ts).map(|()| None);
        }
        let inst = &self.instruments[i];
        let q = Quantity::from_raw(allowed, inst.size_precision)?;
        let fee = self.commission_of(
            inst,
            allowed,
            Price::from_raw(slipped, inst.price_precision)?,
            bar.ts,
        );
        if market {
            let entry = batch.entry(w.member).or_default();
            entry.0 += side.sign() * allowed;
            entry.1 += fee;
        }
        if let Some(o) = self.books[w.member].order_mut(w.order) {
            o.quantity = Some(q);
        }
        Ok(Some(allowed))
    }

    /// The portfolio limit an order of `qty` would break, if any (orders that
    /// only reduce the account's exposure in `i` always pass).
    fn breach(
        &self,
        i: usize,
        side: Side,
        qty: i64,
        account_pos: i64,
        price_raw: i64,
    ) -> Result<Option<String>, PortfolioError> {
        let l = &self.plan.limits;
        if l.max_gross_leverage.is_none()
            && l.max_net_leverage.is_none()
            && l.max_asset_exposure.is_none()
        {
            return Ok(None);
        }
        let after = account_pos + side.sign() * qty;
        if after.abs() <= account_pos.abs() && after.signum() * account_pos.signum() >= 0 {
            return Ok(None);
        }
        let mut marks: Vec<i64> = (0..self.instruments.len())
            .map(|j| self.venue_mark(j))
            .collect();
        marks[i] = price_raw;
        let mut gross = Decimal::ZERO;
        let mut net = Decimal::ZERO;
        let mut asset = Decimal::ZERO;
        for (j, inst) in self.instruments.iter().enumerate() {
            let p = if j == i {
                after
            } else {
                self.venue.position_raw(j)
            };
            let v = value(inst, p, marks[j])?;
            gross += v.abs();
            net += v;
            if j == i {
                asset = v.abs();
            }
        }
        let equity = self.venue.equity_decimal()?;
        if equity <= Decimal::ZERO {
            return Ok(Some("account equity is not positive".into()));
        }
        let id = &self.instruments[i].id;
        if let Some(max) = l.max_gross_leverage
            && gross / equity > max
        {
            return Ok(Some(format!(
                "portfolio gross leverage would be {} > {max}",
                decimal_text(gross / equity, 4)
            )));
        }
        if let Some(max) = l.max_net_leverage
            && net.abs() / equity > max
        {
            return Ok(Some(format!(
                "portfolio net leverage would be {} > {max}",
                decimal_text(net.abs() / equity, 4)
            )));
        }
        if let Some(max) = l.max_asset_exposure
            && asset / equity > max
        {
            return Ok(Some(format!(
                "exposure to {id} across strategies would be {} of equity > {max}",
                decimal_text(asset / equity, 4)
            )));
        }
        Ok(None)
    }

    /// The risk fold's decision on a member's order of `qty` raw units,
    /// resolved at `ts`: `Some(reason)` refuses it. The order goes to the
    /// fold as the risk service receives an intent. One the desk's own limits
    /// refuse anyway (`doomed`) goes to the fold only if the fold rejects it
    /// too: an approval would leave a quantity pending in the fold for an
    /// order that is never sent. The closing orders of a halt are not put to
    /// the fold (halted, it would refuse them); their fills are fed.
    fn risk_check(
        &mut self,
        w: &Waiting,
        i: usize,
        side: Side,
        qty: i64,
        ts: i64,
        doomed: bool,
    ) -> Result<Option<String>, PortfolioError> {
        let Some(risk) = &self.risk else {
            return Ok(None);
        };
        if self.halted_at.is_some() {
            return Ok(None);
        }
        let inst = &self.instruments[i];
        let id = &self.books[w.member].id;
        let order = grodt_risk_rules::Order {
            client_order_id: client_order_id(id, w.order),
            strategy_id: id.clone(),
            symbol: inst.id.clone(),
            side: risk_side(side),
            size: grodt_risk_rules::Size::Quantity(
                Quantity::from_raw(qty, inst.size_precision)?.to_decimal(),
            ),
            limit_price: None,
        };
        if doomed && risk.check(&order, None, ts).approved() {
            return Ok(None);
        }
        let out = self.feed_risk(&Input::Intent { order, at_ns: ts });
        for o in out {
            if let Output::Rejected { violations, .. } = o {
                let why: Vec<String> = violations
                    .iter()
                    .map(|v| format!("{}: {}", v.limit, v.message))
                    .collect();
                return Ok(Some(format!("risk: {}", why.join("; "))));
            }
        }
        Ok(None)
    }

    /// Feeds the risk fold one input; a breaker trip is kept to halt the
    /// portfolio at the end of the timestamp.
    fn feed_risk(&mut self, input: &Input) -> Vec<Output> {
        let Some(risk) = &mut self.risk else {
            return Vec::new();
        };
        let out = risk.apply(input);
        for o in &out {
            if let Output::BreakerTripped { halt } = o
                && self.tripped.is_none()
            {
                let name = match halt.cause {
                    HaltCause::Breaker(b) => b.name(),
                    HaltCause::Manual => "manual",
                };
                self.tripped = Some(format!("risk breaker {name} tripped: {}", halt.reason));
            }
        }
        out
    }

    fn venue_mark(&self, j: usize) -> i64 {
        // The venue's marks are its last closes; read through a snapshot-free
        // path: the books of any member trading j hold the same close.
        self.books
            .iter()
            .find_map(|b| b.local(j).map(|k| b.account.marks[k]))
            .unwrap_or(0)
    }

    fn refuse(&mut self, w: &Waiting, reason: String, ts: i64) -> Result<(), PortfolioError> {
        let book = &mut self.books[w.member];
        book.change(w.order, OrderEvent::Reject, Some(&reason), ts)?;
        // A refused bracket entry takes its exits with it, as at the venue.
        let exits: Vec<OrderId> = book
            .orders
            .iter()
            .filter(|o| o.parent == Some(w.order) && !o.status().is_terminal())
            .map(|o| o.id)
            .collect();
        for x in exits {
            book.change(x, OrderEvent::Cancel, None, ts)?;
        }
        self.refusals.push(Refusal {
            ts,
            member: book.id.clone(),
            order: w.order.0,
            reason,
        });
        Ok(())
    }

    fn commission_of(&self, inst: &Instrument, q: i64, price: Price, ts: i64) -> Decimal {
        let Ok(qty) = Quantity::from_raw(q, inst.size_precision) else {
            return Decimal::ZERO;
        };
        let Ok(n) = notional(qty, price, inst.multiplier) else {
            return Decimal::ZERO;
        };
        // A fresh model: the estimate must not move the run's own tier counters.
        let mut model = self.models_commission();
        let c = model.charge(&CommissionInput {
            side: Side::Buy,
            qty,
            price,
            notional: n,
            liquidity: Liquidity::Taker,
            ts,
        });
        round_money(c.fee, self.cost_dp, RoundingMode::Ceil)
    }

    fn models_commission(&self) -> Box<dyn grodt_sim::models::CommissionModel> {
        self.config.models().commission
    }

    /// Books an allocated (or crossed) fill in a member's sub-ledger and order.
    #[allow(
        clippy::too_many_arguments,
        reason = "one fill's fields, named at the call"
    )]
    fn book_fill(
        &mut self,
        b: usize,
        order: OrderId,
        i: usize,
        side: Side,
        qty_raw: i64,
        price_raw: i64,
        venue_fill: Option<(&Fill, [Decimal; 3])>,
        ts: i64,
    ) -> Result<(), PortfolioError> {
        let inst = &self.instruments[i];
        let book = &mut self.books[b];
        let k = book.local(i).unwrap_or(0);
        let pos = book.account.ledger.position_raw(k);
        let qty = Quantity::from_raw(qty_raw, inst.size_precision)?;
        let price = Price::from_raw(price_raw, inst.price_precision)?;
        // A cross has no venue sequence number, costs nothing and slips nothing.
        let (seq, [commission, rebate, slippage], liquidity, reference) = match venue_fill {
            Some((f, costs)) => (f.seq, costs, f.liquidity, f.reference_price),
            None => (u64::MAX, [Decimal::ZERO; 3], Liquidity::Maker, price),
        };
        let fill = Fill {
            seq,
            order_id: order,
            instrument: k,
            ts,
            side,
            qty,
            price,
            reference_price: reference,
            commission,
            rebate,
            slippage,
            liquidity,
        };
        book.account.ledger.apply_fill(&fill)?;
        let n = notional(qty, price, inst.multiplier)?;
        book.trades
            .on_fill(inst, &fill, pos, book.seen[k], n, self.cost_dp)?;
        if book
            .order_mut(order)
            .is_some_and(|o| o.status() == OrderStatus::Accepted && o.request.kind.needs_trigger())
        {
            book.change(order, OrderEvent::Trigger, None, ts)?;
        }
        book.fills.push(fill.clone());
        book.told.push(Told::Fill(fill));
        book.change(order, OrderEvent::Fill(qty), None, ts)?;
        if self.risk.is_some() {
            // Every fill the member books, crosses included, so that the
            // fold's positions are the account's.
            let member = self.books[b].id.clone();
            let client = client_order_id(&member, order);
            let venue_seq = venue_fill.map_or_else(|| "x".to_owned(), |(f, _)| f.seq.to_string());
            self.risk_fills += 1;
            let input = Input::Fill {
                fill_id: format!("{client}-{venue_seq}-{}", self.risk_fills),
                client_order_id: client,
                strategy_id: member,
                symbol: self.instruments[i].id.clone(),
                side: risk_side(side),
                quantity: qty.to_decimal(),
                price: price.to_decimal(),
                commission: commission - rebate,
                at_ns: ts,
            };
            self.feed_risk(&input);
        }
        Ok(())
    }

    /// Allocates a venue fill of a desk order to the members behind it.
    fn allocate_fill(&mut self, fill: &Fill, bar: &Bar) -> Result<(), PortfolioError> {
        self.sync_quantity(fill.order_id)?;
        let Some(route) = self.routes.get_mut(&fill.order_id) else {
            return Err(PortfolioError::Books {
                what: format!(
                    "a fill of venue order {} the desk never sent",
                    fill.order_id.0
                ),
            });
        };
        let allocations = route
            .execution
            .on_fill(fill.seq, fill.qty.raw(), fill.commission)?;
        let i = route.instrument;
        let weights: Vec<i64> = allocations.iter().map(|a| a.qty_raw).collect();
        let split = |x: Decimal| -> Result<Vec<Decimal>, PortfolioError> {
            Ok(if x.is_zero() {
                vec![Decimal::ZERO; weights.len()]
            } else {
                netting::allocate_money(x, &weights, self.cost_dp)?
            })
        };
        let rebates = split(fill.rebate)?;
        let slippages = split(fill.slippage)?;
        let sides: Vec<Side> = allocations
            .iter()
            .map(|a| {
                route
                    .execution
                    .plan()
                    .legs
                    .iter()
                    .find(|l| l.member == a.member && l.order == a.order)
                    .map_or(fill.side, |l| l.side)
            })
            .collect();
        for (((a, r), sl), side) in allocations.iter().zip(rebates).zip(slippages).zip(sides) {
            self.book_fill(
                a.member,
                OrderId(a.order),
                i,
                side,
                a.qty_raw,
                fill.price.raw(),
                Some((fill, [a.commission, r, sl])),
                bar.ts,
            )?;
        }
        Ok(())
    }

    /// A desk order ended without filling in full: the members' orders behind
    /// it end the same way for what is left of them.
    fn on_venue_update(&mut self, update: &OrderUpdate) -> Result<(), PortfolioError> {
        let event = match update.status {
            OrderStatus::Rejected => OrderEvent::Reject,
            OrderStatus::Cancelled => OrderEvent::Cancel,
            OrderStatus::Expired => OrderEvent::Expire,
            OrderStatus::Filled => {
                self.routes.remove(&update.id);
                return Ok(());
            }
            OrderStatus::Accepted => {
                // A bracket exit goes live when its entry fills.
                self.sync_quantity(update.id)?;
                if let Some(route) = self.routes.get(&update.id)
                    && let [leg] = route.execution.plan().legs.as_slice()
                {
                    let (m, o) = (leg.member, OrderId(leg.order));
                    let book = &mut self.books[m];
                    if book
                        .order_mut(o)
                        .is_some_and(|x| x.status() == OrderStatus::New)
                    {
                        book.change(o, OrderEvent::Accept, None, update.ts)?;
                    }
                }
                return Ok(());
            }
            OrderStatus::Triggered => {
                if let Some(route) = self.routes.get(&update.id) {
                    let legs: Vec<(usize, u64)> = route
                        .execution
                        .plan()
                        .legs
                        .iter()
                        .map(|l| (l.member, l.order))
                        .collect();
                    for (m, o) in legs {
                        self.trigger(m, OrderId(o), update.ts)?;
                    }
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        let Some(route) = self.routes.remove(&update.id) else {
            return Ok(());
        };
        let reason = self.venue.reason(update.id).map_or_else(
            || format!("{:?} by the venue", update.status),
            str::to_owned,
        );
        let remaining = route.execution.remaining().to_vec();
        for (leg, rest) in route.execution.plan().legs.iter().zip(remaining) {
            if rest > 0 {
                let reason = format!("{reason} (netted order)");
                let event = if event == OrderEvent::Reject
                    && self.books[leg.member].orders[idx(OrderId(leg.order))].filled_raw() > 0
                {
                    OrderEvent::Cancel
                } else {
                    event
                };
                self.books[leg.member].change(
                    OrderId(leg.order),
                    event,
                    Some(&reason),
                    update.ts,
                )?;
            }
        }
        Ok(())
    }

    /// Borrow and financing the venue charged the account on a new day:
    /// borrow split over the members by the value of their shorts, financing
    /// by their negative cash (each by its gross exposure when none has any).
    fn allocate_accrual(&mut self, accrued: Decimal) -> Result<(), PortfolioError> {
        let costs = self.venue.snapshot()?.costs;
        let borrow = costs.borrow - self.accrued.0;
        let financing = costs.financing - self.accrued.1;
        self.accrued = (costs.borrow, costs.financing);
        if borrow + financing != accrued {
            return Err(PortfolioError::Books {
                what: format!(
                    "the account's cash moved {accrued} outside fills, its borrow and financing {}",
                    borrow + financing
                ),
            });
        }
        let mut shorts = Vec::with_capacity(self.books.len());
        let mut negative = Vec::with_capacity(self.books.len());
        let mut gross = Vec::with_capacity(self.books.len());
        let units = |d: Decimal| d.trunc().to_i64().unwrap_or(i64::MAX);
        for b in &self.books {
            let (mut s, mut g) = (Decimal::ZERO, Decimal::ZERO);
            for (k, inst) in b.instruments.iter().enumerate() {
                let v = value(inst, b.account.ledger.position_raw(k), b.account.marks[k])?;
                g += v.abs();
                if v < Decimal::ZERO {
                    s -= v;
                }
            }
            shorts.push(units(s));
            negative.push(units((-b.account.ledger.cash()).max(Decimal::ZERO)));
            gross.push(units(g));
        }
        let split = |total: Decimal, w: &[i64]| -> Result<Vec<Decimal>, PortfolioError> {
            if total.is_zero() {
                return Ok(vec![Decimal::ZERO; w.len()]);
            }
            let w = if w.iter().any(|x| *x > 0) {
                w.to_vec()
            } else if gross.iter().any(|x| *x > 0) {
                gross.clone()
            } else {
                vec![1; w.len()]
            };
            Ok(netting::allocate_money(total, &w, self.cost_dp)?)
        };
        let b_shares = split(borrow, &shorts)?;
        let f_shares = split(financing, &negative)?;
        let now = self.now;
        for (member, ((book, bs), fs)) in self
            .books
            .iter_mut()
            .zip(b_shares)
            .zip(f_shares)
            .enumerate()
        {
            if bs > Decimal::ZERO {
                book.account.ledger.charge_borrow(bs)?;
            }
            if fs > Decimal::ZERO {
                book.account.ledger.charge_financing(fs)?;
            }
            if let Some(m) = &mut self.moves {
                for (kind, amount) in [(CapitalKind::Borrow, bs), (CapitalKind::Financing, fs)] {
                    if amount > Decimal::ZERO {
                        m.push(CapitalMove {
                            member,
                            kind,
                            amount,
                            ts: now,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Tells a member what happened to it, in order; requests it makes in
    /// those callbacks are collected.
    fn tell(&mut self, b: usize) -> Result<(), PortfolioError> {
        loop {
            let told = std::mem::take(&mut self.books[b].told);
            if told.is_empty() {
                return Ok(());
            }
            let now = self.now;
            for t in &told {
                match t {
                    Told::Fill(f) => self.books[b].callback(now, |s, c| s.on_fill(c, f)),
                    Told::Order(u) => self.books[b].callback(now, |s, c| s.on_order(c, u)),
                }
            }
            let book = &mut self.books[b];
            if !book.outbox.is_empty() {
                book.outbox.take_into(&mut book.commands);
                let commands = std::mem::take(&mut book.commands);
                for cmd in &commands {
                    self.request(b, cmd, now)?;
                }
                self.books[b].commands = commands;
            }
        }
    }

    /// The drawdown limit or a risk breaker: every waiting order is
    /// withdrawn, every position closed at the next bar, no strategy sees
    /// another bar.
    fn halt(&mut self, ts: i64, reason: String) -> Result<(), PortfolioError> {
        self.halted_at = Some(ts);
        self.halt_reason = Some(reason.clone());
        for i in 0..self.waiting.len() {
            for w in std::mem::take(&mut self.waiting[i]) {
                self.books[w.member].change(w.order, OrderEvent::Cancel, Some(&reason), ts)?;
            }
        }
        // Resting orders at the venue are cancelled there.
        let mut resting: Vec<OrderId> = self.routes.keys().copied().collect();
        resting.sort_unstable();
        for vid in resting {
            match self.venue.cancel(vid) {
                Ok(()) | Err(grodt_sim::SimError::UnknownOrder { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.drain()?;
        for b in 0..self.books.len() {
            let book = &mut self.books[b];
            book.halted = true;
            // Closing orders go through the outbox, so the strategy's ids are
            // never reused; a halted member may only close.
            let mut ctx = Context::new(
                ts,
                &book.instruments,
                &book.windows,
                &book.account,
                &book.orders,
                &mut book.outbox,
            );
            for k in 0..ctx.instruments().len() {
                let pos = ctx.position(k);
                if pos != 0 {
                    let side = if pos > 0 { Side::Sell } else { Side::Buy };
                    ctx.submit(OrderRequest::market(k, side, Size::ClosePosition));
                }
            }
            self.collect(b, ts)?;
        }
        Ok(())
    }

    /// Moves free capital between members (and the reserve) towards `target`.
    fn rebalance(&mut self, ts: i64, target: &[Decimal]) -> Result<(), PortfolioError> {
        let equity = self.member_equity()?;
        let total: Decimal = equity.iter().copied().sum::<Decimal>() + self.reserve;
        let dp = self.cost_dp;
        let n = self.books.len();
        // What each member could give: capital not backing its positions.
        let mut free = Vec::with_capacity(n);
        for (b, e) in self.books.iter().zip(&equity) {
            let mut gross = Decimal::ZERO;
            for (k, inst) in b.instruments.iter().enumerate() {
                gross += value(inst, b.account.ledger.position_raw(k), b.account.marks[k])?.abs();
            }
            let f = (*e - gross / b.max_leverage).min(b.account.ledger.cash());
            free.push(f.max(Decimal::ZERO));
        }
        let mut give = vec![Decimal::ZERO; n];
        let mut want = vec![Decimal::ZERO; n];
        for k in 0..n {
            let delta = round_money(target[k] * total - equity[k], dp, RoundingMode::TowardZero);
            if delta < Decimal::ZERO {
                give[k] = (-delta).min(free[k]);
            } else {
                want[k] = delta;
            }
        }
        let reserve_target = total - target.iter().copied().sum::<Decimal>() * total;
        let reserve_delta =
            round_money(reserve_target - self.reserve, dp, RoundingMode::TowardZero);
        let reserve_give = if reserve_delta < Decimal::ZERO {
            (-reserve_delta).min(self.reserve.max(Decimal::ZERO))
        } else {
            Decimal::ZERO
        };
        let reserve_want = reserve_delta.max(Decimal::ZERO);
        let supply: Decimal = give.iter().copied().sum::<Decimal>() + reserve_give;
        let demand: Decimal = want.iter().copied().sum::<Decimal>() + reserve_want;
        let moved_total = supply.min(demand);
        if moved_total <= Decimal::ZERO {
            return Ok(());
        }
        let units = |d: Decimal| -> i64 {
            (d * Decimal::from(10i64.pow(dp.min(12))))
                .trunc()
                .to_i64()
                .unwrap_or(0)
        };
        let mut givers: Vec<i64> = give.iter().map(|g| units(*g)).collect();
        givers.push(units(reserve_give));
        let mut takers: Vec<i64> = want.iter().map(|g| units(*g)).collect();
        takers.push(units(reserve_want));
        let out = netting::allocate_money(moved_total, &givers, dp)?;
        let into = netting::allocate_money(moved_total, &takers, dp)?;
        let mut moved = vec![Decimal::ZERO; n];
        for k in 0..n {
            let d = into[k] - out[k];
            if !d.is_zero() {
                self.books[k].account.ledger.transfer(d)?;
                if let Some(m) = &mut self.moves {
                    m.push(CapitalMove {
                        member: k,
                        kind: CapitalKind::Transfer,
                        amount: d,
                        ts,
                    });
                }
                self.books[k].transferred += d;
                // Returns are measured net of transfers.
                self.books[k].last_equity += d;
            }
            moved[k] = d;
        }
        self.reserve += into[n] - out[n];
        self.rebalances.push(Rebalance {
            ts,
            target: target.to_vec(),
            moved,
        });
        Ok(())
    }
}

/// The allocator's weights after the overlays, for the returns seen so far.
/// The capital each of `members` opens with: `capital` split by the plan's
/// initial weights (what the allocator and overlays give with no returns
/// yet), each share rounded down to `cost_dp` places; what is left is the
/// reserve. The desk opens its sub-ledgers with exactly these, so a live
/// member's runner opens with the same (the strategy service reads them
/// from the portfolio file).
///
/// # Errors
/// An allocation error.
pub fn opening_shares(
    plan: &mut Plan,
    members: usize,
    capital: Decimal,
    cost_dp: u32,
) -> Result<Vec<Decimal>, PortfolioError> {
    let empty: Vec<Vec<Decimal>> = vec![Vec::new(); members];
    let weights = overlay(plan, &empty)?;
    Ok(weights
        .iter()
        .map(|w| round_money(capital * w, cost_dp, RoundingMode::Floor))
        .collect())
}

fn overlay(plan: &mut Plan, returns: &[Vec<Decimal>]) -> Result<Vec<Decimal>, PortfolioError> {
    overlay_with(plan, returns, returns)
}

/// The allocator reads the whole history (each method keeps its own
/// lookback and the drawdown method its state across calls); the overlays
/// read the recent `returns` window.
fn overlay_with(
    plan: &mut Plan,
    history: &[Vec<Decimal>],
    returns: &[Vec<Decimal>],
) -> Result<Vec<Decimal>, PortfolioError> {
    let mut w = plan.allocator.target(history)?;
    let enough = returns.iter().all(|r| r.len() >= 2);
    if enough {
        if let Some((threshold, strength)) = plan.correlation_cut {
            let corr = stats::correlation(returns)?;
            w = crate::allocation::correlation_cut(&w, &corr, threshold, strength)?;
        }
        if let Some((target, max_leverage)) = plan.vol_target {
            let cov = stats::covariance(returns)?;
            w = crate::allocation::vol_target(&w, &cov, target, max_leverage)?;
            // Capital is not borrowed for members: the weights never exceed one.
            let sum: Decimal = w.iter().copied().sum();
            if sum > Decimal::ONE {
                w = w.iter().map(|x| *x / sum).collect();
            }
        }
    }
    Ok(w)
}

fn push_order(book: &mut Book, order: Order) {
    // Ids come from the member's outbox, dense from 0: index = id.
    book.orders.put(idx(order.id), order);
}

/// The client order id a member's order has at the risk fold.
fn client_order_id(member: &str, order: OrderId) -> String {
    format!("{member}-{}", order.0)
}

fn risk_side(side: Side) -> grodt_risk_rules::Side {
    match side {
        Side::Buy => grodt_risk_rules::Side::Buy,
        Side::Sell => grodt_risk_rules::Side::Sell,
    }
}

fn idx(id: OrderId) -> usize {
    usize::try_from(id.0).unwrap_or(usize::MAX)
}

/// Signed value of `raw` units of `inst` at a raw price.
fn value(inst: &Instrument, raw: i64, price_raw: i64) -> Result<Decimal, PortfolioError> {
    if raw == 0 {
        return Ok(Decimal::ZERO);
    }
    let q = Quantity::from_raw(raw.abs(), inst.size_precision)?;
    let p = Price::from_raw(price_raw, inst.price_precision)?;
    let v = notional(q, p, inst.multiplier)?;
    Ok(if raw < 0 { -v } else { v })
}

/// The cash a fill moved at the venue.
fn cash_effect(inst: &Instrument, fill: &Fill) -> Result<Decimal, PortfolioError> {
    let n = notional(fill.qty, fill.price, inst.multiplier)?;
    let signed = if fill.side == Side::Buy { -n } else { n };
    Ok(signed - fill.commission + fill.rebate)
}

/// Runs a portfolio over preloaded bars (`bars[i]` of `instruments[i]`,
/// strictly increasing in time): bars merged by time, every timestamp ended.
///
/// # Errors
/// As [`Desk::new`] and [`Desk::on_bar`].
pub fn run_portfolio(
    config: &BacktestConfig,
    instruments: &[Instrument],
    bars: &[Vec<Bar>],
    members: Vec<Member>,
    plan: Plan,
) -> Result<PortfolioResult, PortfolioError> {
    if bars.len() != instruments.len() {
        return Err(invalid(
            "bars",
            format!(
                "{} bar series for {} instruments",
                bars.len(),
                instruments.len()
            ),
        ));
    }
    let mut desk = Desk::new(config, instruments.to_vec(), members, plan)?;
    let mut cursor = vec![0usize; bars.len()];
    loop {
        let mut ts = i64::MAX;
        for (s, &k) in bars.iter().zip(&cursor) {
            if let Some(b) = s.get(k) {
                ts = ts.min(b.ts);
            }
        }
        if ts == i64::MAX {
            break;
        }
        for (i, s) in bars.iter().enumerate() {
            if let Some(b) = s.get(cursor[i])
                && b.ts == ts
            {
                desk.on_bar(i, b)?;
                cursor[i] += 1;
            }
        }
        desk.end_of_timestamp(ts)?;
    }
    desk.finish()
}
