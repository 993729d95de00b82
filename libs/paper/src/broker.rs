//! The paper broker: the trading core's venue fed live inputs. It adds only
//! what a service needs around the venue: orders named by client order id and
//! symbol, order states with their average price, and a [`Report`] of what
//! each input did. Every price, fill and cost comes from the venue.

use std::collections::HashMap;

use grodt_core::{
    BracketRequest, Decimal, Instrument, Order, OrderId, OrderKind, OrderRequest, OrderStatus,
    Quantity, Size, TimeInForce,
};
use grodt_sim::config::{BacktestConfig, FillTiming};
use grodt_sim::venue::{Snapshot, Venue, VenueEvent};

use crate::ids::bracket_exit_ids;
use crate::{Input, OrderState, PaperError, PaperFill, Report, Ticket, Update};

/// Running fill totals of one order, for its average price.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FillSums {
    notional: Decimal,
    qty: Decimal,
}

impl FillSums {
    /// Adds a fill of `q` at `p`, all or nothing.
    ///
    /// # Errors
    /// A sum out of the decimal range, as [`PaperError::Overflow`] of `symbol`.
    pub(crate) fn add(&mut self, p: Decimal, q: Decimal, symbol: &str) -> Result<(), PaperError> {
        let overflow = |what| PaperError::Overflow {
            what,
            symbol: symbol.to_owned(),
        };
        let notional = p
            .checked_mul(q)
            .and_then(|n| self.notional.checked_add(n))
            .ok_or_else(|| overflow("notional filled of an order"))?;
        let qty = self
            .qty
            .checked_add(q)
            .ok_or_else(|| overflow("quantity filled of an order"))?;
        *self = Self { notional, qty };
        Ok(())
    }

    /// The volume-weighted average price, once anything filled.
    ///
    /// # Errors
    /// A quotient out of the decimal range.
    pub(crate) fn average(&self, symbol: &str) -> Result<Option<Decimal>, PaperError> {
        // A quotient of a notional by a quantity of the venue's fixed-point
        // grid (at least its smallest step).
        if self.qty.is_zero() {
            return Ok(None);
        }
        self.notional
            .checked_div(self.qty)
            .map(Some)
            .ok_or_else(|| PaperError::Overflow {
                what: "average fill price",
                symbol: symbol.to_owned(),
            })
    }
}

/// The venue and the books around it. Deterministic: the same inputs in the
/// same order give the same reports, which is what the journal relies on.
pub struct Broker {
    /// `None` while no instrument is configured: every bar and order is
    /// then of an unknown symbol, and the account is its starting cash.
    venue: Option<Venue>,
    starting_cash: Decimal,
    /// `tickets[k]` is the ticket of venue order `OrderId(k)`.
    tickets: Vec<Ticket>,
    parents: Vec<Option<String>>,
    states: Vec<OrderState>,
    sums: Vec<FillSums>,
    by_cid: HashMap<String, OrderId>,
    fills: Vec<PaperFill>,
    last_bar: Vec<Option<i64>>,
    started: bool,
    events: Vec<VenueEvent>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("orders", &self.tickets.len())
            .field("fills", &self.fills.len())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker over a fresh venue: `config` holds the starting cash and the
    /// fill, cost and latency models, as a backtest's does.
    ///
    /// # Errors
    /// A config or instrument the venue refuses, or a config that fills at
    /// the same bar's close (a backtest-only mode: live orders arrive after
    /// the bar closed), or a `trade_from` warm-up (a backtest setting).
    pub fn new(config: BacktestConfig, instruments: Vec<Instrument>) -> Result<Self, PaperError> {
        if config.fill_timing == FillTiming::SameBarClose {
            return Err(PaperError::Invalid {
                field: "fill_timing",
                reason: "same-bar-close fills cannot be traded live; use next-bar fills".into(),
            });
        }
        if config.trade_from.is_some() {
            return Err(PaperError::Invalid {
                field: "trade_from",
                reason:
                    "a live venue trades every bar it is fed; warm strategies up with warmup_bars"
                        .into(),
            });
        }
        let n = instruments.len();
        let starting_cash = config.starting_cash;
        let venue = if instruments.is_empty() {
            config.validate()?;
            None
        } else {
            Some(Venue::new(config, instruments)?)
        };
        Ok(Self {
            venue,
            starting_cash,
            tickets: Vec::new(),
            parents: Vec::new(),
            states: Vec::new(),
            sums: Vec::new(),
            by_cid: HashMap::new(),
            fills: Vec::new(),
            last_bar: vec![None; n],
            started: false,
            events: Vec::new(),
        })
    }

    /// Applies one input.
    ///
    /// # Errors
    /// An unknown symbol (bars) or order (cancel), a stale bar, a duplicate
    /// client order id, or what the venue refuses; a refused input changes
    /// nothing.
    pub fn apply(&mut self, input: &Input) -> Result<Report, PaperError> {
        match input {
            Input::Bar { symbol, bar } => {
                let i = self.index(symbol)?;
                if let Some(last) = self.last_bar[i]
                    && bar.ts <= last
                {
                    return Err(PaperError::StaleBar {
                        symbol: symbol.clone(),
                        ts: bar.ts,
                        last,
                    });
                }
                let first = !self.started;
                let venue = self.venue_mut()?;
                if first {
                    // As the backtest loop does before its first bar.
                    venue.accrue_to(bar.ts)?;
                }
                venue.on_bar(i, bar)?;
                self.started = true;
                self.last_bar[i] = Some(bar.ts);
                let updates = self.drain()?;
                Ok(Report {
                    bar: Some((symbol.clone(), *bar)),
                    updates,
                })
            }
            Input::Submit(ticket) => self.submit(ticket),
            Input::Cancel { client_order_id } => {
                let id =
                    *self
                        .by_cid
                        .get(client_order_id)
                        .ok_or_else(|| PaperError::UnknownOrder {
                            client_order_id: client_order_id.clone(),
                        })?;
                self.venue_mut()?.cancel(id)?;
                Ok(Report {
                    bar: None,
                    updates: self.drain()?,
                })
            }
        }
    }

    fn venue_mut(&mut self) -> Result<&mut Venue, PaperError> {
        // Reached only after `index` found the symbol, so a venue exists.
        self.venue.as_mut().ok_or_else(|| PaperError::Invalid {
            field: "instruments",
            reason: "none configured".into(),
        })
    }

    fn index(&self, symbol: &str) -> Result<usize, PaperError> {
        self.venue
            .as_ref()
            .and_then(|v| v.instrument_index(symbol))
            .ok_or_else(|| PaperError::UnknownSymbol {
                symbol: symbol.to_owned(),
            })
    }

    fn submit(&mut self, t: &Ticket) -> Result<Report, PaperError> {
        if self.by_cid.contains_key(&t.client_order_id) {
            return Err(PaperError::Duplicate {
                client_order_id: t.client_order_id.clone(),
            });
        }
        let i = self.index(&t.symbol)?;
        let request = OrderRequest {
            instrument: i,
            side: t.side,
            size: t.size,
            kind: t.kind,
            tif: t.tif,
        };
        let entry = self.register(t.clone(), None);
        match t.bracket {
            None => self.venue_mut()?.submit(entry, request)?,
            Some(legs) => {
                let (tp_cid, sl_cid) = bracket_exit_ids(&t.client_order_id);
                for cid in [&tp_cid, &sl_cid] {
                    if self.by_cid.contains_key(cid) {
                        return Err(PaperError::Duplicate {
                            client_order_id: cid.clone(),
                        });
                    }
                }
                // The exits as the venue makes them: the opposite side, for
                // the entry's filled quantity (resolved when it fills), GTC.
                let exit = |cid: String, kind: OrderKind| Ticket {
                    client_order_id: cid,
                    side: t.side.opposite(),
                    size: Size::ClosePosition,
                    kind,
                    tif: TimeInForce::Gtc,
                    bracket: None,
                    ..t.clone()
                };
                let tp = self.register(
                    exit(
                        tp_cid,
                        OrderKind::Limit {
                            price: legs.take_profit,
                        },
                    ),
                    Some(t.client_order_id.clone()),
                );
                let sl = self.register(
                    exit(
                        sl_cid,
                        OrderKind::Stop {
                            trigger: legs.stop_loss,
                        },
                    ),
                    Some(t.client_order_id.clone()),
                );
                self.venue_mut()?.submit_bracket(
                    entry,
                    tp,
                    sl,
                    BracketRequest {
                        entry: request,
                        take_profit: legs.take_profit,
                        stop_loss: legs.stop_loss,
                    },
                )?;
            }
        }
        Ok(Report {
            bar: None,
            updates: self.drain()?,
        })
    }

    /// Books a ticket under the next venue order id.
    fn register(&mut self, ticket: Ticket, parent: Option<String>) -> OrderId {
        let id = OrderId(self.tickets.len() as u64);
        self.by_cid.insert(ticket.client_order_id.clone(), id);
        self.states
            .push(OrderState::received(&ticket, parent.clone()));
        self.tickets.push(ticket);
        self.parents.push(parent);
        self.sums.push(FillSums::default());
        id
    }

    /// Turns the venue's new events into updates, in order, and books them.
    fn drain(&mut self) -> Result<Vec<Update>, PaperError> {
        let Some(venue) = self.venue.as_mut() else {
            return Ok(Vec::new());
        };
        venue.take_events_into(&mut self.events);
        let venue = &*venue;
        let events = std::mem::take(&mut self.events);
        let mut out = Vec::with_capacity(events.len());
        for ev in &events {
            match *ev {
                VenueEvent::Fill(seq) => {
                    let fill = venue.fill(seq).ok_or_else(|| PaperError::Inconsistent {
                        client_order_id: String::new(),
                        reason: format!("fill {seq} announced but missing"),
                    })?;
                    let k = fill.order_id.0 as usize;
                    let ticket = &self.tickets[k];
                    self.sums[k].add(
                        fill.price.to_decimal(),
                        fill.qty.to_decimal(),
                        &ticket.symbol,
                    )?;
                    let pf = PaperFill {
                        seq,
                        client_order_id: ticket.client_order_id.clone(),
                        strategy_id: ticket.strategy_id.clone(),
                        symbol: ticket.symbol.clone(),
                        side: fill.side,
                        qty: fill.qty,
                        price: fill.price,
                        commission: fill.commission,
                        rebate: fill.rebate,
                        slippage: fill.slippage,
                        liquidity: fill.liquidity,
                        ts: fill.ts,
                    };
                    self.fills.push(pf.clone());
                    out.push(Update::Fill(pf));
                }
                VenueEvent::Order(u) => {
                    let k = u.id.0 as usize;
                    let order = venue.order(u.id).ok_or_else(|| PaperError::Inconsistent {
                        client_order_id: self.tickets[k].client_order_id.clone(),
                        reason: "update of an order the venue does not hold".into(),
                    })?;
                    let avg = self.sums[k].average(&self.tickets[k].symbol)?;
                    let state = state_of(
                        &self.tickets[k],
                        order,
                        u.status,
                        u.filled_raw,
                        avg,
                        u.ts,
                        self.parents[k].clone(),
                        precision_of(venue, order),
                    )?;
                    self.states[k] = state.clone();
                    out.push(Update::Order(state));
                }
            }
        }
        self.events = events;
        self.events.clear();
        Ok(out)
    }

    /// Every order, oldest first.
    pub fn orders(&self) -> &[OrderState] {
        &self.states
    }

    /// The order of a client order id.
    pub fn order(&self, client_order_id: &str) -> Option<&OrderState> {
        self.by_cid
            .get(client_order_id)
            .map(|id| &self.states[id.0 as usize])
    }

    /// Every fill, oldest first.
    pub fn fills(&self) -> &[PaperFill] {
        &self.fills
    }

    /// Cash, equity, positions, open orders and costs, exact.
    ///
    /// # Errors
    /// A ledger overflow.
    pub fn snapshot(&self) -> Result<Snapshot, PaperError> {
        match &self.venue {
            Some(v) => Ok(v.snapshot()?),
            None => Ok(Snapshot {
                ts: 0,
                cash: self.starting_cash,
                equity: self.starting_cash,
                positions: Vec::new(),
                open_orders: Vec::new(),
                costs: grodt_core::CostTotals::default(),
            }),
        }
    }

    /// The venue's instruments.
    pub fn instruments(&self) -> &[Instrument] {
        self.venue.as_ref().map_or(&[], |v| v.instruments())
    }

    /// Open time (ns) of the latest bar of `symbol` the venue took.
    pub fn last_bar_ts(&self, symbol: &str) -> Option<i64> {
        self.venue
            .as_ref()
            .and_then(|v| v.instrument_index(symbol))
            .and_then(|i| self.last_bar[i])
    }

    /// Whether `ticket` comes too late for the bar after its decision: the
    /// venue already took a later bar of its symbol, so it fills a bar later
    /// than a backtest would (a replay faster than the pipeline; docs/paper.md).
    pub fn is_late(&self, ticket: &Ticket) -> bool {
        self.last_bar_ts(&ticket.symbol)
            .is_some_and(|last| last > ticket.decision_ts)
    }

    /// The venue's time (ns): its latest bar.
    pub fn now(&self) -> i64 {
        self.venue.as_ref().map_or(0, Venue::now)
    }
}

fn precision_of(venue: &Venue, o: &Order) -> u8 {
    venue
        .instruments()
        .get(o.request.instrument)
        .map_or(0, |i| i.size_precision)
}

#[allow(
    clippy::too_many_arguments,
    reason = "one flat constructor of a plain record"
)]
pub(crate) fn state_of(
    ticket: &Ticket,
    order: &Order,
    status: OrderStatus,
    filled_raw: i64,
    average_price: Option<Decimal>,
    ts: i64,
    parent: Option<String>,
    size_precision: u8,
) -> Result<OrderState, PaperError> {
    let reason = matches!(
        status,
        OrderStatus::Rejected | OrderStatus::Cancelled | OrderStatus::Expired
    )
    .then(|| order.reject_reason.clone())
    .flatten();
    Ok(OrderState {
        ticket: ticket.clone(),
        status,
        quantity: order.quantity,
        filled: Quantity::from_raw(filled_raw, size_precision).map_err(|e| {
            PaperError::Inconsistent {
                client_order_id: ticket.client_order_id.clone(),
                reason: e.to_string(),
            }
        })?,
        average_price,
        reason,
        parent,
        created_ts: order.created_ts,
        ts,
    })
}
