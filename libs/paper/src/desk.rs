//! The portfolio broker: the portfolio desk (`grodt_portfolio::Desk`, the
//! same sub-ledgers, allocation, limits, netting and rebalancing as a
//! portfolio backtest) fed live inputs, for a portfolio whose strategies run
//! elsewhere (the strategy service's runners, one per member).
//!
//! It speaks the paper broker's language: [`Input`]s in (bars, and tickets
//! and cancellations named by client order id), a [`Report`] out per input.
//! A ticket's `strategy_id` names the member; what the desk does for that
//! member (its order accepted, refused with the reason, its share of a net
//! fill, a cross with another member, a cancellation) is reported under the
//! member's client order ids, so a member's runner mirrors its sub-ledger
//! from the reports as a single runner mirrors its account.
//!
//! How the desk is driven: each member's seat in the desk is an [`Ear`], a
//! strategy that only records what the desk tells it; a ticket is handed to
//! the desk through `Desk::act` as the member's own request. A timestamp
//! ends (marks, the drawdown limit, rebalancing) when the first bar of a
//! later one arrives, before that bar is applied, which is where the
//! backtest loop ends it relative to every input of the stream; the last
//! one ends in [`PortfolioBroker::finish`].
//!
//! The closing orders of a halt are the desk's own: they are reported to the
//! member under `<member>-desk-<n>` client order ids, which its runner
//! adopts, so its positions close with the sub-ledger's.
//!
//! Cash the desk moves in or out of a member's sub-ledger outside its fills
//! (rebalancing, its share of borrow and financing) is reported to it as
//! [`Update::Capital`], first in the report of the input that moved it, so a
//! runner's mirrored cash and equity are its sub-ledger's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use grodt_core::{
    Bar, BracketRequest, Decimal, Fill, Instrument, Order, OrderId, OrderKind, OrderRequest,
    OrderUpdate, Size, TimeInForce,
};
use grodt_portfolio::{Desk, Member, Plan, PortfolioResult};
use grodt_sim::config::BacktestConfig;
use grodt_strategy_api::{Context, Strategy};

use crate::broker::{FillSums, state_of};
use crate::ids::{bracket_exit_ids, client_order_id};
use crate::{CapitalUpdate, Input, OrderState, PaperError, PaperFill, Report, Ticket, Update};

/// What the desk told a member, in its order.
#[derive(Clone, Debug)]
enum Heard {
    Fill(Fill),
    /// The update and the order as it stood when told.
    Order(OrderUpdate, Option<Order>),
}

/// A member's seat in the desk: records what the desk tells the member's
/// strategy, decides nothing (the member's runner decides, elsewhere).
struct Ear(Arc<Mutex<Vec<Heard>>>);

impl Ear {
    fn hear(&self, h: Heard) {
        // Only this broker's thread ever holds the lock.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(h);
    }
}

impl Strategy for Ear {
    fn on_bar(&mut self, _ctx: &mut Context<'_>, _instrument: usize, _bar: &Bar) {}
    fn on_fill(&mut self, _ctx: &mut Context<'_>, fill: &Fill) {
        self.hear(Heard::Fill(fill.clone()));
    }
    fn on_order(&mut self, ctx: &mut Context<'_>, update: &OrderUpdate) {
        self.hear(Heard::Order(*update, ctx.order(update.id).cloned()));
    }
}

/// One member as the broker sees it.
struct Seat {
    id: String,
    /// The member's instrument `k` is `instruments[k]`.
    instruments: Vec<Instrument>,
    heard: Arc<Mutex<Vec<Heard>>>,
    /// The member's orders by its own order id.
    tickets: HashMap<OrderId, Ticket>,
    parents: HashMap<OrderId, String>,
    sums: HashMap<OrderId, FillSums>,
}

/// A member of a portfolio to be run live: its id (the `strategy_id` of its
/// tickets), the portfolio instruments it trades (indices, in its
/// strategy's order) and its leverage cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seating {
    /// The member's id.
    pub id: String,
    /// Indices into the portfolio's instruments.
    pub instruments: Vec<usize>,
    /// Gross exposure per unit of its own equity.
    pub max_leverage: Decimal,
}

/// The desk and the books around it. Deterministic: the same inputs in the
/// same order give the same reports (the journal relies on it).
pub struct PortfolioBroker {
    desk: Desk,
    instruments: Vec<Instrument>,
    seats: Vec<Seat>,
    by_cid: HashMap<String, (usize, OrderId)>,
    /// Every member order's latest state, in the order they were taken.
    states: Vec<OrderState>,
    /// Client order id -> index in `states`.
    state_at: HashMap<String, usize>,
    /// Every fill booked to a member, in order.
    fills: Vec<PaperFill>,
    last_bar: Vec<Option<i64>>,
    /// The latest bar time fed to the desk.
    latest: Option<i64>,
    /// Whether `latest`'s timestamp has not been ended yet.
    open: bool,
}

impl std::fmt::Debug for PortfolioBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortfolioBroker")
            .field("members", &self.seats.len())
            .field("fills", &self.fills.len())
            .finish_non_exhaustive()
    }
}

impl PortfolioBroker {
    /// A broker over a fresh desk: `config` holds the account's cash and the
    /// venue's models, `plan` the allocation, limits and netting, as a
    /// portfolio backtest's.
    ///
    /// # Errors
    /// What the desk refuses (named), or a config of a backtest-only mode
    /// (as the paper broker).
    pub fn new(
        config: &BacktestConfig,
        instruments: Vec<Instrument>,
        members: Vec<Seating>,
        plan: Plan,
    ) -> Result<Self, PaperError> {
        if config.trade_from.is_some() {
            return Err(PaperError::Invalid {
                field: "trade_from",
                reason:
                    "a live venue trades every bar it is fed; warm strategies up with warmup_bars"
                        .into(),
            });
        }
        let mut seats = Vec::with_capacity(members.len());
        let mut desk_members = Vec::with_capacity(members.len());
        for m in members {
            let heard = Arc::new(Mutex::new(Vec::new()));
            let insts = m
                .instruments
                .iter()
                .map(|&i| {
                    instruments
                        .get(i)
                        .cloned()
                        .ok_or_else(|| PaperError::Invalid {
                            field: "members",
                            reason: format!(
                                "{} names instrument {i} of {}",
                                m.id,
                                instruments.len()
                            ),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            seats.push(Seat {
                id: m.id.clone(),
                instruments: insts,
                heard: Arc::clone(&heard),
                tickets: HashMap::new(),
                parents: HashMap::new(),
                sums: HashMap::new(),
            });
            desk_members.push(Member {
                id: m.id,
                strategy: Box::new(Ear(heard)),
                instruments: m.instruments,
                max_leverage: m.max_leverage,
            });
        }
        let n = instruments.len();
        let mut desk = Desk::new(config, instruments.clone(), desk_members, plan)?;
        desk.record_capital_moves();
        Ok(Self {
            desk,
            instruments,
            seats,
            by_cid: HashMap::new(),
            states: Vec::new(),
            state_at: HashMap::new(),
            fills: Vec::new(),
            last_bar: vec![None; n],
            latest: None,
            open: false,
        })
    }

    /// Applies one input.
    ///
    /// # Errors
    /// An unknown symbol, member or order, a stale bar (at or before its
    /// symbol's last one, or before the timestamp being fed), a duplicate
    /// client order id, a ticket after a halt ([`PaperError::Halted`]: the
    /// member's runner should treat it as refused), or what the desk
    /// refuses; a refused input changes nothing.
    pub fn apply(&mut self, input: &Input) -> Result<Report, PaperError> {
        match input {
            Input::Bar { symbol, bar } => {
                let i = self.index(symbol)?;
                // Bars reach the desk in time order across instruments: one
                // before the latest fed, or a second one of its symbol at a
                // time, is late.
                let stale = match (self.latest, self.last_bar[i]) {
                    (Some(l), _) if bar.ts < l => Some(l),
                    (_, Some(l)) if bar.ts <= l => Some(l),
                    _ => None,
                };
                if let Some(last) = stale {
                    return Err(PaperError::StaleBar {
                        symbol: symbol.clone(),
                        ts: bar.ts,
                        last,
                    });
                }
                if self.open
                    && let Some(t) = self.latest
                    && bar.ts > t
                {
                    self.open = false;
                    self.desk.end_of_timestamp(t)?;
                }
                self.desk.on_bar(i, bar)?;
                self.open = true;
                self.latest = Some(bar.ts);
                self.last_bar[i] = Some(bar.ts);
                Ok(Report {
                    bar: Some((symbol.clone(), *bar)),
                    updates: self.drain()?,
                })
            }
            Input::Submit(ticket) => self.submit(ticket),
            Input::Cancel { client_order_id } => {
                let &(b, id) =
                    self.by_cid
                        .get(client_order_id)
                        .ok_or_else(|| PaperError::UnknownOrder {
                            client_order_id: client_order_id.clone(),
                        })?;
                self.desk.act(b, |c| c.cancel(id))?;
                Ok(Report {
                    bar: None,
                    updates: self.drain()?,
                })
            }
        }
    }

    /// Ends the timestamp being fed and returns the portfolio's results, as
    /// a backtest over the same bars reports them.
    ///
    /// # Errors
    /// A ledger overflow.
    pub fn finish(mut self) -> Result<PortfolioResult, PaperError> {
        if self.open
            && let Some(t) = self.latest
        {
            self.desk.end_of_timestamp(t)?;
        }
        Ok(self.desk.finish()?)
    }

    /// The desk (sub-ledgers, reserve, risk state) as it stands.
    pub fn desk(&self) -> &Desk {
        &self.desk
    }

    /// Every member order, oldest first, as last reported.
    pub fn orders(&self) -> &[OrderState] {
        &self.states
    }

    /// A member order by client order id.
    pub fn order(&self, client_order_id: &str) -> Option<&OrderState> {
        self.state_at.get(client_order_id).map(|&k| &self.states[k])
    }

    /// Every fill booked to a member (its share of a net fill, or a cross),
    /// oldest first: folded, they make the account's positions.
    pub fn fills(&self) -> &[PaperFill] {
        &self.fills
    }

    /// The account: cash, equity, positions, open net orders and costs.
    ///
    /// # Errors
    /// A ledger overflow.
    pub fn snapshot(&self) -> Result<grodt_sim::venue::Snapshot, PaperError> {
        Ok(self.desk.account_snapshot()?)
    }

    /// The portfolio's instruments.
    pub fn instruments(&self) -> &[Instrument] {
        &self.instruments
    }

    /// Open time (ns) of the latest bar of `symbol` taken.
    pub fn last_bar_ts(&self, symbol: &str) -> Option<i64> {
        self.index(symbol).ok().and_then(|i| self.last_bar[i])
    }

    /// Whether `ticket` comes after a later bar of its symbol (it fills a
    /// bar late; docs/paper.md).
    pub fn is_late(&self, ticket: &Ticket) -> bool {
        self.last_bar_ts(&ticket.symbol)
            .is_some_and(|last| last > ticket.decision_ts)
    }

    /// The desk's time (ns): its latest bar (0 before the first).
    pub fn now(&self) -> i64 {
        self.latest.unwrap_or(0)
    }

    fn index(&self, symbol: &str) -> Result<usize, PaperError> {
        self.instruments
            .iter()
            .position(|i| i.id == symbol)
            .ok_or_else(|| PaperError::UnknownSymbol {
                symbol: symbol.to_owned(),
            })
    }

    fn submit(&mut self, t: &Ticket) -> Result<Report, PaperError> {
        let cids = match t.bracket {
            None => vec![t.client_order_id.clone()],
            Some(_) => {
                let (tp, sl) = bracket_exit_ids(&t.client_order_id);
                vec![t.client_order_id.clone(), tp, sl]
            }
        };
        if let Some(reason) = self.desk.halt_reason() {
            // In the backtest a halted strategy sees no more bars, so it
            // decides nothing more; here its runner may, and the desk must
            // not book what the backtest never saw.
            return Err(PaperError::Halted {
                reason: reason.to_owned(),
            });
        }
        if let Some(taken) = cids.iter().find(|c| self.by_cid.contains_key(*c)) {
            return Err(PaperError::Duplicate {
                client_order_id: taken.clone(),
            });
        }
        let b = self
            .seats
            .iter()
            .position(|s| s.id == t.strategy_id)
            .ok_or_else(|| PaperError::Invalid {
                field: "strategy_id",
                reason: format!("{:?} is not a member of the portfolio", t.strategy_id),
            })?;
        let seat = &self.seats[b];
        let k = seat
            .instruments
            .iter()
            .position(|i| i.id == t.symbol)
            .ok_or_else(|| PaperError::Invalid {
                field: "symbol",
                reason: format!("member {} does not trade {}", seat.id, t.symbol),
            })?;
        let request = OrderRequest {
            instrument: k,
            side: t.side,
            size: t.size,
            kind: t.kind,
            tif: t.tif,
        };
        let ids: Vec<OrderId> = match t.bracket {
            None => vec![self.desk.act(b, |c| c.submit(request))?],
            Some(legs) => {
                let (e, tp, sl) = self.desk.act(b, |c| {
                    c.submit_bracket(BracketRequest {
                        entry: request,
                        take_profit: legs.take_profit,
                        stop_loss: legs.stop_loss,
                    })
                })?;
                vec![e, tp, sl]
            }
        };
        // The exits as the venue makes them: the opposite side, for the
        // entry's filled quantity, GTC.
        let exit = |cid: &str, kind: OrderKind| Ticket {
            client_order_id: cid.to_owned(),
            side: t.side.opposite(),
            size: Size::ClosePosition,
            kind,
            tif: TimeInForce::Gtc,
            bracket: None,
            ..t.clone()
        };
        let seat = &mut self.seats[b];
        for (n, (id, cid)) in ids.iter().zip(&cids).enumerate() {
            let ticket = match (n, t.bracket) {
                (1, Some(legs)) => exit(
                    cid,
                    OrderKind::Limit {
                        price: legs.take_profit,
                    },
                ),
                (2, Some(legs)) => exit(
                    cid,
                    OrderKind::Stop {
                        trigger: legs.stop_loss,
                    },
                ),
                _ => t.clone(),
            };
            let parent = (n > 0).then(|| t.client_order_id.clone());
            if let Some(p) = &parent {
                seat.parents.insert(*id, p.clone());
            }
            self.state_at.insert(cid.clone(), self.states.len());
            self.states.push(OrderState::received(&ticket, parent));
            seat.tickets.insert(*id, ticket);
            self.by_cid.insert(cid.clone(), (b, *id));
        }
        Ok(Report {
            bar: None,
            updates: self.drain()?,
        })
    }

    /// Turns what every member heard into updates, member by member, each
    /// in the desk's order.
    fn drain(&mut self) -> Result<Vec<Update>, PaperError> {
        // Capital first: the desk moves it before anything fills (accruals at
        // a new day's bar, rebalancing at the end of the previous timestamp).
        let mut out: Vec<Update> = self
            .desk
            .take_capital_moves()
            .into_iter()
            .map(|m| {
                Update::Capital(CapitalUpdate {
                    strategy_id: self.seats[m.member].id.clone(),
                    kind: m.kind,
                    amount: m.amount,
                    ts: m.ts,
                })
            })
            .collect();
        for (b, seat) in self.seats.iter_mut().enumerate() {
            let heard =
                std::mem::take(&mut *seat.heard.lock().unwrap_or_else(PoisonError::into_inner));
            for h in heard {
                match h {
                    Heard::Fill(f) => {
                        let Some(ticket) = seat.tickets.get(&f.order_id) else {
                            // Every order is named when accepted, before it fills.
                            continue;
                        };
                        let inst = &seat.instruments[f.instrument];
                        seat.sums.entry(f.order_id).or_default().add(
                            f.price.to_decimal(),
                            f.qty.to_decimal(),
                            &inst.id,
                        )?;
                        let fill = PaperFill {
                            seq: self.fills.len() as u64,
                            client_order_id: ticket.client_order_id.clone(),
                            strategy_id: seat.id.clone(),
                            symbol: inst.id.clone(),
                            side: f.side,
                            qty: f.qty,
                            price: f.price,
                            commission: f.commission,
                            rebate: f.rebate,
                            slippage: f.slippage,
                            liquidity: f.liquidity,
                            ts: f.ts,
                        };
                        self.fills.push(fill.clone());
                        out.push(Update::Fill(fill));
                    }
                    Heard::Order(u, order) => {
                        let Some(order) = order else { continue };
                        if !seat.tickets.contains_key(&u.id) {
                            // The desk's own order for the member (a halt's
                            // close): named and reported like the member's, so
                            // its runner books the close.
                            let ticket = Ticket {
                                client_order_id: client_order_id(
                                    &format!("{}-desk", seat.id),
                                    u.id,
                                ),
                                strategy_id: seat.id.clone(),
                                symbol: seat.instruments[u.instrument].id.clone(),
                                side: order.request.side,
                                size: order.request.size,
                                kind: order.request.kind,
                                tif: order.request.tif,
                                bracket: None,
                                decision_ts: order.created_ts,
                            };
                            self.state_at
                                .insert(ticket.client_order_id.clone(), self.states.len());
                            self.states.push(OrderState::received(&ticket, None));
                            self.by_cid
                                .insert(ticket.client_order_id.clone(), (b, u.id));
                            seat.tickets.insert(u.id, ticket);
                        }
                        let Some(ticket) = seat.tickets.get(&u.id) else {
                            continue;
                        };
                        let inst = &seat.instruments[u.instrument];
                        let average_price = seat
                            .sums
                            .get(&u.id)
                            .copied()
                            .unwrap_or_default()
                            .average(&inst.id)?;
                        // Before the desk's first bar its clock reads
                        // i64::MIN: such an order is dated by its ticket.
                        let mut order = order;
                        if order.created_ts == i64::MIN {
                            order.created_ts = ticket.decision_ts;
                        }
                        let ts = if u.ts == i64::MIN {
                            ticket.decision_ts
                        } else {
                            u.ts
                        };
                        let state = state_of(
                            ticket,
                            &order,
                            u.status,
                            u.filled_raw,
                            average_price,
                            ts,
                            seat.parents.get(&u.id).cloned(),
                            inst.size_precision,
                        )?;
                        if let Some(&k) = self.state_at.get(&ticket.client_order_id) {
                            self.states[k] = state.clone();
                        }
                        out.push(Update::Order(state));
                    }
                }
            }
        }
        Ok(out)
    }
}
