//! The engine: the paper broker behind one mutex, fed by the two bus
//! consumers (`grodt.orders.v1`, `grodt.bars.v1`, group `execution`) and by
//! the gRPC commands, each input journaled with what it produced (see the
//! crate doc for the contract).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use grodt_bus::consumer::{BatchFailure, Handler, HandlerError};
use grodt_bus::{ConsumerName, Delivery, Envelope, EventBus, GroupName, StreamName};
use grodt_core::{Decimal, Instrument, OrderStatus, Position, Price, Quantity, Size};
use grodt_kit::journal::current_trace as trace_context;
use grodt_paper::broker::Broker;
use grodt_paper::desk::{PortfolioBroker, Seating};
use grodt_paper::instruments::Instruments;
use grodt_paper::{Input, OrderState, PaperAccount, PaperError, Report, Ticket, Update};
use grodt_portfolio::file::PortfolioFile;
use grodt_proto::topic::{self, Outgoing, Topic};
use grodt_proto::v1;
use grodt_sim::config::BacktestConfig;
use grodt_store::{JournalEntry, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard, broadcast};
use tracing::Instrument as _;

use crate::convert::{
    self, bar_to_proto, fill_event_id, fill_to_proto, order_id, order_to_proto, report_event_id,
    same_order, status_name, ticket_from_spec, update_to_proto,
};
use crate::error::ExecError;
use crate::metrics::ExecMetrics;
use crate::reconcile::{Reconciliation, reconcile};

/// Orders approved by risk arrive here.
pub const ORDERS_STREAM: &str = <v1::OrderEvent as Topic>::STREAM;
/// Bars arrive here.
pub const BARS_STREAM: &str = <v1::BarEvent as Topic>::STREAM;
/// One report per input goes here.
pub const REPORTS_STREAM: &str = <v1::ExecutionReportEvent as Topic>::STREAM;
/// One event per fill goes here.
pub const FILLS_STREAM: &str = <v1::FillEvent as Topic>::STREAM;
/// The consumer group of both streams.
pub const GROUP: &str = "execution";
/// The journal's consumer name.
pub const JOURNAL: &str = "execution";

/// Journal entries read per page when replaying.
const PAGE: u32 = 1000;

/// A journaled input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Journaled {
    /// An input the broker applied.
    Input(Input),
    /// An order refused before the venue (an unknown symbol, or a request
    /// the venue could not take), kept so a replay knows it exactly.
    Refused {
        /// The order as received.
        ticket: Ticket,
        /// Why.
        reason: String,
    },
}

/// What an input produced, journaled with it; the events are derived from
/// it (with the entry's `seq`) on first publication and on every republish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outputs {
    /// The venue's time of the input (a bar: its open time), ns.
    pub at_ns: i64,
    /// What the venue did.
    pub report: Report,
    /// The bar's timeframe on the wire (bars only).
    pub timeframe: i32,
    /// Copied from the bar event.
    pub dataset_id: String,
    /// Copied from the bar event.
    pub replay_id: String,
    /// W3C `traceparent` of the span that journaled the input: an order's
    /// fills are published in the trace of the input that placed it (the
    /// decision's), which comes from here after a restart. Absent in entries
    /// written before it was kept, and for inputs outside a trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C `tracestate` with it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// A bar delivery of a batch: its journal source, the decoded event (or
/// why it could not be decoded) and the span it is handled in.
#[derive(Debug, Clone)]
pub struct BarInput {
    /// The envelope's event id.
    pub source: String,
    /// The event, or why it is not one.
    pub event: Result<v1::BarEvent, String>,
    /// The delivery's span (its trace).
    pub span: tracing::Span,
}

/// An input of a batch applied to the state, waiting for the batch's commit.
struct Staged {
    /// Its index in the batch.
    at: usize,
    source: String,
    journaled: Journaled,
    outputs: Outputs,
    span: tracing::Span,
}

/// A trace context as envelopes carry it: `(traceparent, tracestate)`.
type TraceContext = (String, Option<String>);

/// What the engine needs from the configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The venue's models and starting cash.
    pub venue: BacktestConfig,
    /// The symbols it trades.
    pub instruments: Instruments,
    /// A portfolio the account runs (docs/portfolio.md): its members'
    /// orders go through the desk (sub-ledgers, allocation, limits,
    /// netting); `None` = one venue for independent instances.
    pub portfolio: Option<PortfolioFile>,
}

impl EngineSettings {
    /// The paper account over `symbols`: the portfolio desk over the
    /// file's symbols when a portfolio is configured, else one venue.
    ///
    /// # Errors
    /// What the venue or the desk refuses (named).
    fn account(&self, symbols: &mut Vec<String>) -> Result<PaperAccount, ExecError> {
        let Some(file) = &self.portfolio else {
            let instruments: Vec<Instrument> = symbols
                .iter()
                .map(|s| self.instruments.resolve(s))
                .collect::<Result<_, _>>()?;
            return Ok(Broker::new(self.venue.clone(), instruments)?.into());
        };
        let names = file.symbols();
        *symbols = names.iter().map(|s| (*s).to_owned()).collect();
        let instruments: Vec<Instrument> = names
            .iter()
            .map(|s| self.instruments.resolve(s))
            .collect::<Result<_, _>>()?;
        let seatings = file
            .strategies
            .iter()
            .map(|e| Seating {
                id: e.id.clone(),
                instruments: e
                    .symbols
                    .iter()
                    .filter_map(|s| names.iter().position(|x| x == s))
                    .collect(),
                max_leverage: e.max_leverage.unwrap_or(Decimal::ONE),
            })
            .collect();
        let plan = file.plan().map_err(PaperError::from)?;
        Ok(PortfolioBroker::new(&self.venue, instruments, seatings, plan)?.into())
    }
}

/// The broker and the books the service keeps beside it; all of it is the
/// fold of the journal.
pub struct State {
    /// The venue (one, or a portfolio's desk).
    pub broker: PaperAccount,
    /// The broker's instruments, in the order it was built with.
    pub symbols: Vec<String>,
    /// Orders refused before the venue, by client order id.
    pub refused: HashMap<String, OrderState>,
    /// Client order ids in creation order.
    pub created: Vec<String>,
    /// Order id (text) -> client order id.
    pub by_order_id: HashMap<String, String>,
    /// Cancellations journaled per client order id (for the next source key).
    pub cancels: HashMap<String, u32>,
    /// Latest close per symbol.
    pub marks: HashMap<String, Price>,
    /// The account's positions folded from its fills (realized PnL, average
    /// price), kept as fills come.
    pub positions: BTreeMap<String, Position>,
    /// The trace each order was placed in (of the input that created it),
    /// by client order id: its fills continue that trace.
    pub order_traces: HashMap<String, TraceContext>,
    /// Journal position of the last input applied.
    pub last_seq: i64,
    /// Replayed inputs whose report differed from the journaled one.
    pub divergences: u64,
    /// A commit failed or the broker may hold a half-applied input: rebuild
    /// from the journal before the next input.
    pub dirty: bool,
    /// Journaled inputs whose events could not all be published (the bus
    /// failed after the commit), in journal order: published again before
    /// any other input is handled, so the reports stream keeps the journal's
    /// order (an order's acceptance before the bar that fills it) across an
    /// outage, whichever consumer comes back first. Not part of the fold:
    /// kept across a rebuild.
    pub unpublished: Vec<String>,
}

impl State {
    fn new(broker: PaperAccount, symbols: Vec<String>) -> Self {
        Self {
            broker,
            symbols,
            refused: HashMap::new(),
            created: Vec::new(),
            by_order_id: HashMap::new(),
            cancels: HashMap::new(),
            marks: HashMap::new(),
            positions: BTreeMap::new(),
            order_traces: HashMap::new(),
            last_seq: 0,
            divergences: 0,
            dirty: false,
            unpublished: Vec::new(),
        }
    }

    /// An order by client order id (the venue's, or a refused one).
    pub fn order(&self, cid: &str) -> Option<&OrderState> {
        self.broker.order(cid).or_else(|| self.refused.get(cid))
    }

    /// Keeps the trace an order was placed in (a submit journaled with one).
    fn remember_trace(&mut self, j: &Journaled, o: &Outputs) {
        let (Journaled::Input(Input::Submit(t)) | Journaled::Refused { ticket: t, .. }) = j else {
            return;
        };
        if let Some(p) = &o.traceparent {
            self.order_traces
                .insert(t.client_order_id.clone(), (p.clone(), o.tracestate.clone()));
        }
    }

    /// The trace an order was placed in: its own, else (a bracket exit the
    /// venue created) its parent's.
    pub fn order_trace(&self, cid: &str) -> Option<&TraceContext> {
        self.order_traces.get(cid).or_else(|| {
            self.order(cid)
                .and_then(|st| st.parent.as_deref())
                .and_then(|p| self.order_traces.get(p))
        })
    }

    fn track(&mut self, st: &OrderState) {
        let cid = st.ticket.client_order_id.clone();
        self.by_order_id.insert(
            order_id(&cid, st.ticket.decision_ts).to_string(),
            cid.clone(),
        );
        self.created.push(cid);
    }

    /// Applies one journaled input: the broker for `Input`, the refused
    /// book for `Refused`. The one path of live inputs and replays.
    ///
    /// # Errors
    /// What the broker refused (nothing changed, except a refused submit:
    /// the caller marks the state dirty).
    pub fn apply(&mut self, j: &Journaled) -> Result<Report, PaperError> {
        match j {
            Journaled::Input(input) => {
                let before = self.broker.orders().len();
                let report = self.broker.apply(input)?;
                let new: Vec<OrderState> = self.broker.orders()[before..].to_vec();
                for st in &new {
                    self.track(st);
                }
                match input {
                    Input::Bar { symbol, bar } => {
                        if let Some(inst) =
                            self.broker.instruments().iter().find(|i| &i.id == symbol)
                            && let Ok(p) = Price::from_raw(bar.close, inst.price_precision)
                        {
                            self.marks.insert(symbol.clone(), p);
                        }
                    }
                    Input::Cancel { client_order_id } => {
                        *self.cancels.entry(client_order_id.clone()).or_default() += 1;
                    }
                    Input::Submit(_) => {}
                }
                for u in &report.updates {
                    if let Update::Fill(f) = u {
                        self.book_fill(f);
                    }
                }
                Ok(report)
            }
            Journaled::Refused { ticket, reason } => {
                let st = refused_state(ticket, reason);
                self.track(&st);
                self.refused
                    .insert(ticket.client_order_id.clone(), st.clone());
                Ok(Report {
                    bar: None,
                    updates: vec![Update::Order(st)],
                })
            }
        }
    }

    fn book_fill(&mut self, f: &grodt_paper::PaperFill) {
        let pos = match self.positions.get_mut(&f.symbol) {
            Some(p) => p,
            None => {
                let (precision, multiplier) = self
                    .broker
                    .instruments()
                    .iter()
                    .find(|i| i.id == f.symbol)
                    .map_or((f.qty.precision(), 1), |i| (i.size_precision, i.multiplier));
                self.positions
                    .entry(f.symbol.clone())
                    .or_insert_with(|| Position::flat(precision, multiplier))
            }
        };
        if let Err(e) = pos.apply(f.side, f.qty, f.price) {
            // The venue booked the same fill on its ledger; reconciliation reports the break.
            tracing::error!(fill_seq = f.seq, error = %e, "fill not booked on the position view");
        }
    }

    /// Realized and unrealized PnL of the account's positions (at the marks).
    ///
    /// # Errors
    /// A position's PnL or a sum is out of the decimal range (absurd prices
    /// or quantities): named, never replaced by a default.
    pub fn pnl(&self) -> Result<(Decimal, Decimal), PaperError> {
        let mut realized = Decimal::ZERO;
        let mut unrealized = Decimal::ZERO;
        for (s, p) in &self.positions {
            let overflow = |what| PaperError::Overflow {
                what,
                symbol: s.clone(),
            };
            realized = realized
                .checked_add(p.realized_pnl)
                .ok_or_else(|| overflow("realized PnL"))?;
            if let Some(m) = self.marks.get(s) {
                let u = p
                    .unrealized_pnl(*m)
                    .map_err(|_| overflow("unrealized PnL"))?;
                unrealized = unrealized
                    .checked_add(u)
                    .ok_or_else(|| overflow("unrealized PnL"))?;
            }
        }
        Ok((realized, unrealized))
    }

    /// The decision time given to an order that reached the venue without
    /// one (SubmitOrder, or an `OrderEvent` without `decision_bar_time`):
    /// the latest bar of its symbol, else the venue's time.
    pub fn arrival_ts(&self, symbol: &str) -> i64 {
        self.broker
            .last_bar_ts(symbol)
            .unwrap_or_else(|| self.broker.now())
            .max(0)
    }
}

/// A REJECTED order that never reached the venue.
fn refused_state(t: &Ticket, reason: &str) -> OrderState {
    let precision = match t.size {
        Size::Fixed(q) => q.precision(),
        _ => 0,
    };
    OrderState {
        ticket: t.clone(),
        status: OrderStatus::Rejected,
        quantity: match t.size {
            Size::Fixed(q) => Some(q),
            _ => None,
        },
        filled: Quantity::zero(precision),
        average_price: None,
        reason: Some(reason.to_owned()),
        parent: None,
        created_ts: t.decision_ts,
        ts: t.decision_ts,
    }
}

fn symbols_of(j: &Journaled) -> Option<&str> {
    match j {
        Journaled::Input(Input::Bar { symbol, .. }) => Some(symbol),
        Journaled::Input(Input::Submit(t)) => Some(&t.symbol),
        _ => None,
    }
}

/// Whether no bar of `bars` can be in the journal, so the batch needs no
/// look-up: the state folds the whole journal (clean, with nothing left to
/// publish; a writer that journaled behind its back is caught by the
/// append, `AppendBatchError::Taken`) and every bar comes after its symbol's
/// last bar there, which a journaled bar cannot (applying one moves the
/// last bar to it). A redelivered bar is at or before that last bar, so it
/// is looked up and republished as before.
fn all_unseen(state: &State, bars: &[BarInput]) -> bool {
    if state.dirty || !state.unpublished.is_empty() {
        return false;
    }
    bars.iter().enumerate().all(|(k, input)| {
        let Ok(event) = &input.event else {
            return false;
        };
        let Some(b) = event.bar.as_ref() else {
            return false;
        };
        let ts = b
            .timestamp
            .as_ref()
            .and_then(|t| convert::ts_from_proto("bar.timestamp", t).ok());
        let last = state.broker.last_bar_ts(&b.symbol);
        matches!((ts, last), (Some(ts), Some(last)) if ts > last)
            && !bars[..k].iter().any(|o| o.source == input.source)
    })
}

fn decode_entry(e: &JournalEntry) -> Result<(Journaled, Outputs), ExecError> {
    let j = serde_json::from_slice(&e.input)
        .map_err(|err| ExecError::Corrupt(format!("journal entry {}: input: {err}", e.seq)))?;
    let o = serde_json::from_slice(&e.outputs)
        .map_err(|err| ExecError::Corrupt(format!("journal entry {}: outputs: {err}", e.seq)))?;
    Ok((j, o))
}

/// A fill as sent to `StreamFills` subscribers: the venue's sequence and the wire fill.
pub type LiveFill = (u64, v1::Fill);

/// What one input came to.
#[derive(Debug)]
pub enum Outcome {
    /// Applied now, journaled at `seq`.
    Applied(i64),
    /// Found in the journal at `seq`: its outputs were published again.
    Republished(i64),
    /// Acked without a report (the metric reason).
    Dropped(&'static str),
}

/// The engine.
pub struct Engine {
    store: Store,
    bus: Arc<dyn EventBus>,
    settings: EngineSettings,
    metrics: ExecMetrics,
    state: Mutex<State>,
    fills_tx: broadcast::Sender<LiveFill>,
}

fn stream(name: &str) -> Result<StreamName, ExecError> {
    StreamName::parse(name).map_err(ExecError::from)
}

impl Engine {
    /// Builds the broker from the whole journal (replay), then reconciles.
    ///
    /// # Errors
    /// The store failed, the venue config is refused, or the journal cannot
    /// be read by this build.
    pub async fn start(
        store: Store,
        bus: Arc<dyn EventBus>,
        settings: EngineSettings,
        metrics: ExecMetrics,
    ) -> Result<Arc<Self>, ExecError> {
        let state = Self::rebuild_from(&store, &settings, &metrics, None).await?;
        let (fills_tx, _) = broadcast::channel(4096);
        let engine = Arc::new(Self {
            store,
            bus,
            settings,
            metrics,
            state: Mutex::new(state),
            fills_tx,
        });
        engine.reconcile_and_report("start").await;
        engine.refresh_gauges().await;
        Ok(engine)
    }

    /// The engine's state, locked (the gRPC reads).
    pub async fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().await
    }

    /// The instruments config.
    pub const fn instruments(&self) -> &Instruments {
        &self.settings.instruments
    }

    /// The venue config.
    pub const fn venue(&self) -> &BacktestConfig {
        &self.settings.venue
    }

    /// Live fills.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveFill> {
        self.fills_tx.subscribe()
    }

    /// A fresh state: the broker over the listed symbols and those the
    /// journal names (in order of first appearance), plus `extra`, fed
    /// every journaled input in order.
    async fn rebuild_from(
        store: &Store,
        settings: &EngineSettings,
        metrics: &ExecMetrics,
        extra: Option<&str>,
    ) -> Result<State, ExecError> {
        let started = Instant::now();
        let mut entries = Vec::new();
        let mut after = 0i64;
        loop {
            let page = store.journal().scan(JOURNAL, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in &page {
                let (j, o) = decode_entry(e)?;
                entries.push((e.seq, j, o));
            }
            if page.len() < PAGE as usize {
                break;
            }
        }
        let mut symbols: Vec<String> = settings.instruments.symbols.keys().cloned().collect();
        let named = entries
            .iter()
            .filter_map(|(_, j, _)| symbols_of(j))
            .chain(extra);
        for s in named {
            if !symbols.iter().any(|x| x == s) && settings.instruments.resolve(s).is_ok() {
                symbols.push(s.to_owned());
            }
        }
        let broker = settings.account(&mut symbols)?;
        let mut state = State::new(broker, symbols);
        for (seq, j, o) in &entries {
            match state.apply(j) {
                Ok(report) if report == o.report => {}
                Ok(_) => {
                    state.divergences += 1;
                    tracing::error!(
                        seq,
                        "replayed input made a report other than the journaled one"
                    );
                }
                Err(e) => {
                    state.divergences += 1;
                    tracing::error!(seq, error = %e, "replayed input refused by the broker");
                }
            }
            state.remember_trace(j, o);
            state.last_seq = *seq;
        }
        let secs = started.elapsed().as_secs_f64();
        metrics
            .replay_entries
            .set(i64::try_from(entries.len()).unwrap_or(i64::MAX));
        metrics.replay_seconds.set(secs);
        tracing::info!(
            entries = entries.len(),
            instruments = state.symbols.len(),
            orders = state.created.len(),
            fills = state.broker.fills().len(),
            divergences = state.divergences,
            seconds = secs,
            "execution state rebuilt from the journal"
        );
        Ok(state)
    }

    async fn rebuild(&self, state: &mut State, extra: Option<&str>) -> Result<(), ExecError> {
        let fresh = Self::rebuild_from(&self.store, &self.settings, &self.metrics, extra).await?;
        let unpublished = std::mem::take(&mut state.unpublished);
        *state = fresh;
        state.unpublished = unpublished;
        self.metrics.rebuilds.inc();
        Ok(())
    }

    /// Before any input: rebuilds a dirty state, then publishes the events
    /// of journaled inputs whose publication failed, oldest first.
    async fn ready(&self, state: &mut State) -> Result<(), ExecError> {
        if state.dirty {
            self.rebuild(state, None).await?;
        }
        while let Some(source) = state.unpublished.first().cloned() {
            if let Some(entry) = self.store.journal().get(JOURNAL, &source).await? {
                let (_, o) = decode_entry(&entry)?;
                let ev = events(entry.seq, &o, state);
                self.publish(&source, o.at_ns, ev).await?;
            }
            state.unpublished.remove(0);
        }
        Ok(())
    }

    /// Rebuilds a dirty state; then, if the journal holds `source`,
    /// publishes its outputs again.
    async fn prelude(&self, state: &mut State, source: &str) -> Result<Option<Outcome>, ExecError> {
        self.ready(state).await?;
        if let Some(entry) = self.store.journal().get(JOURNAL, source).await? {
            let (_, o) = decode_entry(&entry)?;
            let ev = events(entry.seq, &o, state);
            self.publish(source, o.at_ns, ev).await?;
            self.metrics.republished.inc();
            tracing::debug!(
                source,
                seq = entry.seq,
                "input already journaled: republished"
            );
            return Ok(Some(Outcome::Republished(entry.seq)));
        }
        Ok(None)
    }

    /// Makes sure the broker trades `symbol` (a symbol covered by the
    /// instruments' default, first seen now: rebuild with it).
    async fn ensure_symbol(&self, state: &mut State, symbol: &str) -> Result<(), ExecError> {
        // A portfolio's symbols are its file's, fixed: nothing joins.
        if self.settings.portfolio.is_none() && !state.symbols.iter().any(|s| s == symbol) {
            self.rebuild(state, Some(symbol)).await?;
        }
        Ok(())
    }

    /// Applies `j` (already checked), journals it with its outputs, then
    /// publishes; books metrics and the audit log.
    async fn commit(
        &self,
        state: &mut State,
        source: &str,
        j: Journaled,
        meta: (i32, String, String),
    ) -> Result<i64, ExecError> {
        let report = match state.apply(&j) {
            Ok(r) => r,
            Err(e) => {
                state.dirty = true;
                return Err(e.into());
            }
        };
        self.commit_applied(state, source, j, report, meta).await
    }

    /// Equity, PnL and open positions of the account.
    fn account_gauges(&self, state: &State) {
        let Ok(snap) = state.broker.snapshot() else {
            return;
        };
        let Ok((realized, unrealized)) = state.pnl() else {
            return;
        };
        let a = [self.metrics.account.as_str()];
        self.metrics
            .equity
            .with_label_values(&a)
            .set(decimal_f64(snap.equity));
        self.metrics
            .realized
            .with_label_values(&a)
            .set(decimal_f64(realized));
        self.metrics
            .unrealized
            .with_label_values(&a)
            .set(decimal_f64(unrealized));
        self.metrics
            .open_positions
            .with_label_values(&a)
            .set(i64::try_from(snap.positions.len()).unwrap_or(i64::MAX));
    }

    /// Metrics and the audit log of a newly journaled input.
    fn book(&self, j: &Journaled, o: &Outputs) {
        let kind = match j {
            Journaled::Input(Input::Bar { .. }) => "bar",
            Journaled::Input(Input::Submit(_)) => "order",
            Journaled::Input(Input::Cancel { .. }) => "cancel",
            Journaled::Refused { .. } => "rejected_order",
        };
        self.metrics.inputs.with_label_values(&[kind]).inc();
        match j {
            Journaled::Input(Input::Bar { bar, .. }) => {
                let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
                #[allow(
                    clippy::cast_precision_loss,
                    reason = "a lag in seconds for a gauge, not money"
                )]
                self.metrics
                    .bar_lag
                    .set(now.saturating_sub(bar.ts) as f64 / 1e9);
            }
            Journaled::Input(Input::Submit(t)) | Journaled::Refused { ticket: t, .. } => {
                audit_ticket(t, "submitted", None);
            }
            Journaled::Input(Input::Cancel { client_order_id }) => {
                tracing::info!(target: "audit", event = "cancel_requested",
                    client_order_id = %client_order_id, "order event");
            }
        }
        for u in &o.report.updates {
            match u {
                Update::Fill(f) => {
                    self.metrics
                        .fills
                        .with_label_values(&[convert::side_name(f.side)])
                        .inc();
                    // The venue's ledger booked this notional: in range, but
                    // checked all the same (a metric is no reason to panic).
                    if let Some(notional) = f.price.to_decimal().checked_mul(f.qty.to_decimal()) {
                        self.metrics.fill_notional.inc_by(decimal_f64(notional));
                    }
                    tracing::info!(target: "audit", event = "fill",
                        client_order_id = %f.client_order_id, strategy_id = %f.strategy_id,
                        symbol = %f.symbol, side = convert::side_name(f.side),
                        qty = %f.qty.to_decimal(), price = %f.price.to_decimal(),
                        commission = %f.commission, fill_seq = f.seq, "order event");
                }
                Update::Order(st) => {
                    self.metrics
                        .orders
                        .with_label_values(&[status_name(st.status)])
                        .inc();
                    audit_ticket(&st.ticket, status_name(st.status), st.reason.as_deref());
                }
                Update::Capital(c) => {
                    tracing::info!(target: "audit", event = "capital",
                        strategy_id = %c.strategy_id, kind = ?c.kind, amount = %c.amount,
                        "portfolio capital move");
                }
            }
        }
    }

    /// Publishes the events of one journal entry: its report in the
    /// current span (the input's trace), then each fill in an
    /// `execution.fill` span in the trace its order was placed in, linked
    /// to the input that filled it (docs/operations.md, "Traces"). One
    /// round trip for all of them ([`EventBus::publish_batch`]).
    async fn publish(&self, source: &str, at_ns: i64, events: Events) -> Result<(), ExecError> {
        let mut out = Outbox::default();
        self.outbox(&mut out, source, at_ns, events)?;
        self.send(out).await
    }

    /// Adds the envelopes of one journal entry's events to `out`, each with
    /// the trace context [`Engine::publish`] describes.
    fn outbox(
        &self,
        out: &mut Outbox,
        source: &str,
        at_ns: i64,
        (report, fills): Events,
    ) -> Result<(), ExecError> {
        out.items
            .push(envelope(&report, report_event_id(source, at_ns), at_ns)?);
        for FillOut {
            seq,
            ts,
            event,
            trace,
        } in fills
        {
            let span = fill_span(&event, trace.as_ref());
            let item = span.in_scope(|| envelope(&event, fill_event_id(seq, ts), ts))?;
            out.items.push(item);
            if let Some(f) = event.fill {
                out.fills.push((seq, f));
            }
        }
        Ok(())
    }

    /// Publishes `out` in one batch, then hands its fills to `StreamFills`.
    async fn send(&self, out: Outbox) -> Result<(), ExecError> {
        self.bus.publish_batch(&out.items).await?;
        for f in out.fills {
            let _ = self.fills_tx.send(f);
        }
        Ok(())
    }

    /// One bar from the bus ([`Engine::on_bars`] with one).
    ///
    /// # Errors
    /// The store or the bus failed (the bar is retried).
    pub async fn on_bar(&self, source: &str, event: &v1::BarEvent) -> Result<Outcome, ExecError> {
        let bar = BarInput {
            source: source.to_owned(),
            event: Ok(event.clone()),
            span: tracing::Span::current(),
        };
        match self.on_bars(std::slice::from_ref(&bar)).await {
            Ok(mut outcomes) => Ok(outcomes.pop().unwrap_or(Outcome::Dropped("invalid_bar"))),
            Err((_, e)) => Err(e),
        }
    }

    /// Bars read together from the bus, in stream order, with **one commit**
    /// for all of them (group commit): one journal look-up for the batch,
    /// each new bar applied to the broker in order (staged), then every
    /// staged bar journaled in one transaction, then their events published
    /// in order. A journaled bar (a redelivery) or one that needs a rebuild
    /// (a symbol first seen) first flushes what is staged, so the journal
    /// keeps the order of application. The same effects, events and ids as
    /// one bar at a time; at most one `fdatasync` per batch.
    ///
    /// # Errors
    /// `(k, error)`: bars before `k` are done (journaled and published);
    /// the one at `k` failed and it and those behind it must be handled
    /// again (the state is rebuilt from the journal first).
    pub async fn on_bars(&self, bars: &[BarInput]) -> Result<Vec<Outcome>, (usize, ExecError)> {
        let mut state = self.state.lock().await;
        self.ready(&mut state).await.map_err(|e| (0, e))?;
        let mut journaled = if all_unseen(&state, bars) {
            // None of them can be in the journal: no look-up round trip.
            HashMap::new()
        } else {
            let sources: Vec<String> = bars.iter().map(|b| b.source.clone()).collect();
            grodt_kit::journal::journaled_among(&self.store, JOURNAL, &sources)
                .await
                .map_err(|e| (0, ExecError::from(e)))?
        };
        let mut staged: Vec<Staged> = Vec::new();
        let mut outcomes = Vec::with_capacity(bars.len());
        for (k, input) in bars.iter().enumerate() {
            // A second delivery of a source this batch staged: as one at a
            // time, it finds that one journaled and republishes it.
            let entry = if staged.iter().any(|s| s.source == input.source) {
                self.flush(&mut state, &mut staged, &mut outcomes).await?;
                self.store
                    .journal()
                    .get(JOURNAL, &input.source)
                    .await
                    .map_err(|e| (k, ExecError::from(e)))?
            } else {
                journaled.remove(&input.source)
            };
            if let Some(entry) = entry {
                self.flush(&mut state, &mut staged, &mut outcomes).await?;
                let (_, o) = decode_entry(&entry).map_err(|e| (k, e))?;
                // Built before the await: the state is not `Sync`.
                let ev = events(entry.seq, &o, &state);
                self.publish(&input.source, o.at_ns, ev)
                    .instrument(input.span.clone())
                    .await
                    .map_err(|e| (k, e))?;
                self.metrics.republished.inc();
                tracing::debug!(parent: &input.span, source = %input.source, seq = entry.seq,
                    "input already journaled: republished");
                outcomes.push(Outcome::Republished(entry.seq));
                continue;
            }
            let out = self
                .stage_bar(&mut state, &mut staged, &mut outcomes, k, input)
                .await?;
            // A staged bar's seq is set when it is committed.
            outcomes.push(out.unwrap_or(Outcome::Applied(0)));
        }
        self.flush(&mut state, &mut staged, &mut outcomes).await?;
        Ok(outcomes)
    }

    /// Checks and applies one bar of a batch; `Some` if it was dropped,
    /// `None` if it is staged for the batch's commit.
    async fn stage_bar(
        &self,
        state: &mut State,
        staged: &mut Vec<Staged>,
        outcomes: &mut [Outcome],
        k: usize,
        input: &BarInput,
    ) -> Result<Option<Outcome>, (usize, ExecError)> {
        let source = input.source.as_str();
        let event = match &input.event {
            Ok(e) => e,
            Err(why) => return Ok(Some(self.drop_input("invalid_bar", source, why))),
        };
        let Some(b) = event.bar.as_ref() else {
            return Ok(Some(self.drop_input("invalid_bar", source, "no bar")));
        };
        let inst = match self.settings.instruments.resolve(&b.symbol) {
            Ok(i) => i,
            Err(e) => {
                return Ok(Some(self.drop_input(
                    "unknown_symbol_bar",
                    source,
                    &e.to_string(),
                )));
            }
        };
        // A portfolio trades its file's symbols only: another symbol's bar
        // never joins the desk (no rebuild for it).
        if let Some(file) = &self.settings.portfolio
            && !file.symbols().contains(&b.symbol.as_str())
        {
            return Ok(Some(self.drop_input(
                "unknown_symbol_bar",
                source,
                "not a symbol of the portfolio",
            )));
        }
        let bar = match convert::bar_from_proto(b, &inst) {
            Ok(bar) => bar,
            Err(e) => return Ok(Some(self.drop_input("invalid_bar", source, &e.to_string()))),
        };
        if state.dirty || !state.symbols.contains(&b.symbol) {
            // A rebuild replays the journal: what is staged goes there first.
            self.flush(state, staged, outcomes).await?;
            if state.dirty {
                self.rebuild(state, None).await.map_err(|e| (k, e))?;
            }
            self.ensure_symbol(state, &b.symbol)
                .await
                .map_err(|e| (k, e))?;
        }
        if let Some(last) = state.broker.last_bar_ts(&b.symbol)
            && bar.ts <= last
        {
            return Ok(Some(self.drop_input(
                "stale_bar",
                source,
                "not after the symbol's last bar",
            )));
        }
        let j = Journaled::Input(Input::Bar {
            symbol: b.symbol.clone(),
            bar,
        });
        // A bar the venue refuses changes nothing (Broker::apply): dropped.
        let report = match state.apply(&j) {
            Ok(r) => r,
            Err(PaperError::StaleBar { .. }) => {
                return Ok(Some(self.drop_input(
                    "stale_bar",
                    source,
                    "not after the last bar",
                )));
            }
            Err(e) => {
                // The venue refuses a bad bar before it changes anything; an
                // error of the books around it (a fill sum out of the decimal
                // range) comes after: rebuild from the journal before the
                // next input (staged bars are flushed first).
                if matches!(
                    e,
                    PaperError::Overflow { .. } | PaperError::Inconsistent { .. }
                ) {
                    state.dirty = true;
                }
                return Ok(Some(self.drop_input("invalid_bar", source, &e.to_string())));
            }
        };
        let (traceparent, tracestate) = {
            let _in = input.span.enter();
            trace_context()
        };
        let outputs = Outputs {
            at_ns: bar.ts,
            report,
            timeframe: b.timeframe,
            dataset_id: event.dataset_id.clone(),
            replay_id: event.replay_id.clone(),
            traceparent,
            tracestate,
        };
        staged.push(Staged {
            at: k,
            source: source.to_owned(),
            journaled: j,
            outputs,
            span: input.span.clone(),
        });
        Ok(None)
    }

    /// Journals every staged input in one transaction, then books and
    /// publishes each in order, and sets its outcome (by its batch index:
    /// `outcomes` holds one per input before it) to its seq. Empties
    /// `staged`.
    ///
    /// # Errors
    /// `(k, error)` with `k` the batch index of the first input not done:
    /// nothing committed (the state is dirty: rebuilt before the next
    /// input), or an input's events not all published (it and those after
    /// it are found journaled when retried, and republished).
    async fn flush(
        &self,
        state: &mut State,
        staged: &mut Vec<Staged>,
        outcomes: &mut [Outcome],
    ) -> Result<(), (usize, ExecError)> {
        let Some(first) = staged.first().map(|s| s.at) else {
            return Ok(());
        };
        let batch = std::mem::take(staged);
        let entries: Vec<_> = batch
            .iter()
            .map(|s| (s.source.as_str(), &s.journaled, &s.outputs))
            .collect();
        let done = match grodt_kit::journal::append_batch(&self.store, JOURNAL, &entries).await {
            Ok(seqs) => seqs,
            Err(e) => {
                state.dirty = true;
                return Err((first, e.into()));
            }
        };
        self.metrics
            .journal_batch
            .observe(f64::from(u32::try_from(batch.len()).unwrap_or(u32::MAX)));
        for (s, seq) in batch.iter().zip(&done) {
            if let Some(o) = outcomes.get_mut(s.at) {
                *o = Outcome::Applied(*seq);
            }
            state.last_seq = *seq;
            state.remember_trace(&s.journaled, &s.outputs);
            self.book(&s.journaled, &s.outputs);
        }
        self.account_gauges(state);
        // Every staged input's events in one round trip, in journal order.
        let mut out = Outbox::default();
        let built = batch.iter().zip(&done).try_for_each(|(s, seq)| {
            let ev = events(*seq, &s.outputs, state);
            s.span
                .in_scope(|| self.outbox(&mut out, &s.source, s.outputs.at_ns, ev))
        });
        if let Err(e) = match built {
            Ok(()) => self.send(out).await,
            Err(e) => Err(e),
        } {
            state
                .unpublished
                .extend(batch.iter().map(|s| s.source.clone()));
            return Err((first, e));
        }
        Ok(())
    }

    /// Journals an input `state.apply` already applied (its `report`).
    async fn commit_applied(
        &self,
        state: &mut State,
        source: &str,
        j: Journaled,
        report: Report,
        meta: (i32, String, String),
    ) -> Result<i64, ExecError> {
        let at_ns = match &j {
            Journaled::Input(Input::Bar { bar, .. }) => bar.ts,
            Journaled::Input(Input::Submit(t)) | Journaled::Refused { ticket: t, .. } => {
                t.decision_ts
            }
            Journaled::Input(Input::Cancel { .. }) => state.broker.now(),
        };
        let (traceparent, tracestate) = trace_context();
        let outputs = Outputs {
            at_ns,
            report,
            timeframe: meta.0,
            dataset_id: meta.1,
            replay_id: meta.2,
            traceparent,
            tracestate,
        };
        let input = serde_json::to_vec(&j).map_err(|e| ExecError::Corrupt(e.to_string()))?;
        let out = serde_json::to_vec(&outputs).map_err(|e| ExecError::Corrupt(e.to_string()))?;
        let appended = async {
            // One statement, committed on its own: one round trip.
            let seq = self
                .store
                .journal_append(JOURNAL, source, &input, &out)
                .await?;
            Ok::<_, ExecError>(seq)
        }
        .await;
        let seq = match appended {
            Ok(Some(seq)) => seq,
            Ok(None) => {
                state.dirty = true;
                return Err(ExecError::Corrupt(format!(
                    "input {source} was journaled by another process meanwhile"
                )));
            }
            Err(e) => {
                state.dirty = true;
                return Err(e);
            }
        };
        self.metrics.journal_batch.observe(1.0);
        state.last_seq = seq;
        state.remember_trace(&j, &outputs);
        self.book(&j, &outputs);
        self.account_gauges(state);
        let ev = events(seq, &outputs, state);
        if let Err(e) = self.publish(source, outputs.at_ns, ev).await {
            state.unpublished.push(source.to_owned());
            return Err(e);
        }
        Ok(seq)
    }

    fn drop_input(&self, reason: &'static str, source: &str, why: &str) -> Outcome {
        self.metrics.dropped.with_label_values(&[reason]).inc();
        if reason == "stale_bar" {
            tracing::debug!(source, reason, why, "input dropped");
        } else {
            tracing::warn!(source, reason, why, "input dropped");
        }
        Outcome::Dropped(reason)
    }

    /// A new order: from the bus (`strict` false: a duplicate client order
    /// id is dropped) or from SubmitOrder (`strict`: a different order under
    /// a taken id is ALREADY_EXISTS). Returns the order after it.
    ///
    /// # Errors
    /// A taken id (strict), the store or the bus failed.
    pub async fn submit(
        &self,
        source: &str,
        spec: &v1::OrderSpec,
        strict: bool,
        decided_ns: Option<i64>,
    ) -> Result<(Outcome, Option<OrderState>), ExecError> {
        let mut state = self.state.lock().await;
        let inst = self.settings.instruments.resolve(&spec.symbol).ok();
        if let Some(done) = self.prelude(&mut state, source).await? {
            let st = state.order(&spec.client_order_id).cloned();
            if strict
                && let Some(existing) = &st
                && ticket_from_spec(spec, inst.as_ref(), existing.ticket.decision_ts)
                    .is_ok_and(|t| !same_order(&existing.ticket, &t))
            {
                return Err(ExecError::AlreadyExists(format!(
                    "order.client_order_id: {} is taken by a different order",
                    spec.client_order_id
                )));
            }
            return Ok((done, st));
        }
        if inst.is_some() {
            self.ensure_symbol(&mut state, &spec.symbol).await?;
        }
        // The strategy's decision bar (from risk's OrderEvent) when given:
        // an order that arrives after a later bar of its symbol is late.
        let decision_ts = decided_ns.unwrap_or_else(|| state.arrival_ts(&spec.symbol));
        let ticket = match ticket_from_spec(spec, inst.as_ref(), decision_ts) {
            Ok(t) => t,
            Err(e) if strict => return Err(e),
            Err(e) => {
                return Ok((
                    self.drop_input("invalid_order", source, &e.to_string()),
                    None,
                ));
            }
        };
        if let Some(existing) = state.order(&ticket.client_order_id) {
            let existing = existing.clone();
            if same_order(&existing.ticket, &ticket) {
                if strict {
                    return Ok((Outcome::Dropped("duplicate_order"), Some(existing)));
                }
                return Ok((
                    self.drop_input("duplicate_order", source, "the same order again"),
                    Some(existing),
                ));
            }
            if strict {
                return Err(ExecError::AlreadyExists(format!(
                    "order.client_order_id: {} is taken by a different order",
                    ticket.client_order_id
                )));
            }
            tracing::error!(source, client_order_id = %ticket.client_order_id,
                "a different order under a taken client order id: dropped");
            return Ok((
                self.drop_input("duplicate_order", source, "a different order, same id"),
                Some(existing),
            ));
        }
        if strict && inst.is_none() {
            return Err(ExecError::invalid(
                "order.symbol",
                format!(
                    "unknown symbol {:?}: not among the configured instruments",
                    spec.symbol
                ),
            ));
        }
        if let Some(bracket_cid) = ticket.bracket.map(|_| {
            let (tp, sl) = grodt_paper::ids::bracket_exit_ids(&ticket.client_order_id);
            [tp, sl]
        }) && bracket_cid
            .iter()
            .any(|c| state.order(c).is_some() || c.len() > 64)
        {
            let reason =
                "the bracket exits' client order ids (<id>-tp, <id>-sl) are taken or too long";
            if strict {
                return Err(ExecError::invalid("order.client_order_id", reason));
            }
            let j = Journaled::Refused {
                ticket,
                reason: reason.into(),
            };
            let seq = self
                .commit(&mut state, source, j, (0, String::new(), String::new()))
                .await?;
            let st = state.order(&spec.client_order_id).cloned();
            return Ok((Outcome::Applied(seq), st));
        }
        let j = if inst.is_none() {
            Journaled::Refused {
                reason: format!(
                    "unknown symbol {:?}: not among the configured instruments",
                    ticket.symbol
                ),
                ticket,
            }
        } else {
            if state.broker.is_late(&ticket) {
                self.metrics.late_orders.inc();
            }
            let j = Journaled::Input(Input::Submit(ticket.clone()));
            match state.apply(&j) {
                Ok(report) => {
                    let seq = self
                        .commit_applied(
                            &mut state,
                            source,
                            j,
                            report,
                            (0, String::new(), String::new()),
                        )
                        .await?;
                    let st = state.order(&spec.client_order_id).cloned();
                    return Ok((Outcome::Applied(seq), st));
                }
                Err(e) => {
                    // The broker may hold part of it: start clean, refuse it.
                    // What both brokers refuse before changing anything (a
                    // duplicate, an unknown symbol or member, a halted
                    // portfolio) needs no rebuild: after a halt every ticket
                    // is refused, and a replay each would be O(journal).
                    if !matches!(
                        e,
                        PaperError::Duplicate { .. }
                            | PaperError::UnknownSymbol { .. }
                            | PaperError::Invalid { .. }
                            | PaperError::Halted { .. }
                    ) {
                        self.rebuild(&mut state, None).await?;
                    }
                    Journaled::Refused {
                        reason: e.to_string(),
                        ticket,
                    }
                }
            }
        };
        let seq = self
            .commit(&mut state, source, j, (0, String::new(), String::new()))
            .await?;
        let st = state.order(&spec.client_order_id).cloned();
        Ok((Outcome::Applied(seq), st))
    }

    /// CancelOrder: the order after the cancellation.
    ///
    /// # Errors
    /// NOT_FOUND, FAILED_PRECONDITION for an order in a final state; the
    /// store or the bus failed.
    pub async fn cancel(&self, cid_or_id: OrderKey) -> Result<OrderState, ExecError> {
        let mut state = self.state.lock().await;
        self.ready(&mut state).await?;
        let cid = match cid_or_id {
            OrderKey::ClientOrderId(c) => c,
            OrderKey::OrderId(id) => state
                .by_order_id
                .get(&id)
                .cloned()
                .ok_or_else(|| ExecError::NotFound(format!("order {id} not found")))?,
        };
        let st = state
            .order(&cid)
            .cloned()
            .ok_or_else(|| ExecError::NotFound(format!("order {cid} not found")))?;
        if st.status.is_terminal() {
            return Err(ExecError::Precondition(format!(
                "order {cid} is {}: nothing to cancel",
                status_name(st.status)
            )));
        }
        let n = state.cancels.get(&cid).copied().unwrap_or(0) + 1;
        let source = format!("cancel:{cid}:{n}");
        let j = Journaled::Input(Input::Cancel {
            client_order_id: cid.clone(),
        });
        self.commit(&mut state, &source, j, (0, String::new(), String::new()))
            .await?;
        state
            .order(&cid)
            .cloned()
            .ok_or_else(|| ExecError::Corrupt(format!("order {cid} vanished")))
    }

    /// A strategy's cancellation from the orders stream (behind the order it
    /// cancels), journaled under its event id so a redelivery changes
    /// nothing. Cancelling an order already final is a no-op, as at the
    /// backtest's venue; one that comes after a later bar of its symbol is
    /// counted as late, like an order (docs/paper.md).
    ///
    /// # Errors
    /// The store or the bus failed (the entry stays pending and is retried).
    pub async fn cancel_from_bus(
        &self,
        source: &str,
        cancel: &v1::OrderCancel,
        decided_ns: Option<i64>,
    ) -> Result<Outcome, ExecError> {
        let mut state = self.state.lock().await;
        if let Some(done) = self.prelude(&mut state, source).await? {
            return Ok(done);
        }
        let cid = &cancel.client_order_id;
        let Some(st) = state.order(cid) else {
            return Ok(self.drop_input(
                "cancel_of_unknown_order",
                source,
                &format!("no order {cid}"),
            ));
        };
        if st.status.is_terminal() {
            return Ok(self.drop_input(
                "cancel_of_final_order",
                source,
                &format!("order {cid} is {}", status_name(st.status)),
            ));
        }
        let symbol = st.ticket.symbol.clone();
        if decided_ns.is_some_and(|d| {
            state
                .broker
                .last_bar_ts(&symbol)
                .is_some_and(|last| last > d)
        }) {
            self.metrics.late_orders.inc();
        }
        let j = Journaled::Input(Input::Cancel {
            client_order_id: cid.clone(),
        });
        let seq = self
            .commit(&mut state, source, j, (0, String::new(), String::new()))
            .await?;
        Ok(Outcome::Applied(seq))
    }

    /// The account gauges after a (re)build.
    pub async fn refresh_gauges(&self) {
        let state = self.state.lock().await;
        self.account_gauges(&state);
    }

    /// Reconciles the ledger against the fills, logs the report as one
    /// JSON line and sets `grodt_execution_reconciliation_breaks`.
    pub async fn reconcile_and_report(&self, when: &str) -> Option<Reconciliation> {
        let state = self.state.lock().await;
        let divergences = state.divergences;
        match reconcile(&state.broker, self.settings.venue.starting_cash) {
            Ok(r) => {
                let breaks = r.breaks.len() as u64 + divergences;
                self.metrics
                    .reconciliation_breaks
                    .set(i64::try_from(breaks).unwrap_or(i64::MAX));
                let json = serde_json::to_string(&r).unwrap_or_default();
                if breaks == 0 {
                    tracing::info!(target: "reconciliation", when, breaks, replay_divergences = divergences,
                        report = %json, "reconciliation: ledger and fills agree");
                } else {
                    tracing::error!(target: "reconciliation", when, breaks, replay_divergences = divergences,
                        report = %json, "reconciliation: BREAKS between the ledger and the fills");
                }
                Some(r)
            }
            Err(e) => {
                self.metrics.reconciliation_breaks.set(1);
                tracing::error!(target: "reconciliation", when, error = %e, "reconciliation failed");
                None
            }
        }
    }

    /// Sets the consumer-lag gauges every `every` until `stop` turns true.
    pub async fn watch(&self, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticks = 0u64;
        loop {
            grodt_kit::lag::record(
                &*self.bus,
                &[ORDERS_STREAM, BARS_STREAM],
                GROUP,
                &self.metrics.lag,
            )
            .await;
            ticks += 1;
            if ticks.is_multiple_of(12) {
                self.reconcile_and_report("periodic").await;
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Handles one delivery of either stream.
    ///
    /// # Errors
    /// The store or the bus failed (the entry stays pending and is retried).
    pub async fn handle(&self, d: &Delivery) -> Result<Outcome, ExecError> {
        let started = Instant::now();
        let source = d.envelope.event_id.to_string();
        let ty = &d.envelope.event_type;
        let out = if *ty == type_name::<v1::BarEvent>() {
            match topic::decode::<v1::BarEvent>(ty, d.envelope.payload.as_ref()) {
                Ok(ev) => self.on_bar(&source, &ev).await?,
                Err(e) => self.drop_input("invalid_bar", &source, &e.to_string()),
            }
        } else {
            match topic::decode::<v1::OrderEvent>(ty, d.envelope.payload.as_ref()) {
                Ok(ev) => {
                    let decided = ev
                        .decision_bar_time
                        .as_ref()
                        .map(|t| t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos));
                    match (ev.order.as_ref(), ev.cancel.as_ref()) {
                        (Some(spec), None) => self.submit(&source, spec, false, decided).await?.0,
                        (None, Some(c)) => self.cancel_from_bus(&source, c, decided).await?,
                        (None, None) => self.drop_input("invalid_order", &source, "no order"),
                        (Some(_), Some(_)) => self.drop_input(
                            "invalid_order",
                            &source,
                            "order and cancel: set one, not both",
                        ),
                    }
                }
                Err(e) => self.drop_input("invalid_order", &source, &e.to_string()),
            }
        };
        self.metrics
            .handling
            .observe(started.elapsed().as_secs_f64());
        Ok(out)
    }

    /// Handles, in stream order, every entry of the group still pending on
    /// `name` (left by an earlier life) before new entries are read.
    ///
    /// # Errors
    /// The bus failed.
    pub async fn recover_pending(
        &self,
        name: &str,
        consumer: &ConsumerName,
    ) -> Result<u64, ExecError> {
        let (s, group) = (stream(name)?, GroupName::parse(GROUP)?);
        self.bus
            .ensure_group(&s, &group, grodt_bus::StartFrom::Beginning)
            .await?;
        let mut handled = 0u64;
        loop {
            let pending = self
                .bus
                .claim_stale(&s, &group, consumer, Duration::ZERO, 64)
                .await?;
            if pending.is_empty() {
                return Ok(handled);
            }
            for d in &pending {
                // In the input's trace, as the consumer would have handled it.
                if let Err(e) = self.handle(d).instrument(input_span(d)).await {
                    tracing::warn!(entry_id = %d.entry_id, error = %e,
                        "recovering a pending entry failed; the consumer retries it");
                    return Ok(handled);
                }
                self.bus.ack(&s, &group, &[d.entry_id]).await?;
                handled += 1;
            }
        }
    }
}

fn type_name<T: Topic>() -> String {
    T::full_name()
}

/// Envelopes to publish in one batch, and the fills among them for
/// `StreamFills` once they are out.
#[derive(Default)]
struct Outbox {
    items: Vec<(StreamName, Envelope)>,
    fills: Vec<LiveFill>,
}

/// The envelope of `event` on its stream, with the event id `id` and the
/// current span's trace context.
fn envelope<T: Topic>(
    event: &T,
    id: uuid::Uuid,
    at_ns: i64,
) -> Result<(StreamName, Envelope), ExecError> {
    let out = Outgoing::new(event);
    let to = stream(out.stream())?;
    let envelope = grodt_kit::journal::traced_envelope(out.event_type(), id, at_ns, out.payload());
    Ok((to, envelope))
}

/// One fill event to publish.
struct FillOut {
    /// The venue's fill sequence.
    seq: u64,
    /// The fill's time, ns.
    ts: i64,
    event: v1::FillEvent,
    /// The trace its order was placed in, if known.
    trace: Option<TraceContext>,
}

/// A report and its fill events.
type Events = (v1::ExecutionReportEvent, Vec<FillOut>);

/// The span publishing one fill: in the trace its order was placed in (so
/// one trace runs from the bar that decided the order to its fill),
/// linked to the span current now (the input that filled it, e.g. the next
/// bar, in that bar's trace). Without a known trace: under the current span.
fn fill_span(event: &v1::FillEvent, trace: Option<&TraceContext>) -> tracing::Span {
    let (fill_id, cid) = event.fill.as_ref().map_or(("", ""), |f| {
        (f.fill_id.as_str(), f.client_order_id.as_str())
    });
    let span = tracing::info_span!("execution.fill", fill_id, client_order_id = cid);
    if let Some((parent, state)) = trace {
        grodt_kit::telemetry::continue_trace(&span, parent, state.as_deref().unwrap_or(""));
    }
    span
}

/// The events of one journal entry: its report, and one [`FillOut`] per
/// fill. Built without awaiting: the state is not `Sync`.
fn events(seq: i64, o: &Outputs, state: &State) -> Events {
    let decision = |cid: &str| state.order(cid).map_or(0, |s| s.ticket.decision_ts);
    let bar = o.report.bar.as_ref().and_then(|(symbol, b)| {
        state
            .broker
            .instruments()
            .iter()
            .find(|i| &i.id == symbol)
            .map(|inst| bar_to_proto(symbol, b, inst, o.timeframe))
    });
    let report = v1::ExecutionReportEvent {
        bar,
        updates: o
            .report
            .updates
            .iter()
            .map(|u| update_to_proto(u, decision))
            .collect(),
        sequence: u64::try_from(seq).unwrap_or(0),
        dataset_id: o.dataset_id.clone(),
        replay_id: o.replay_id.clone(),
    };
    let updates = &o.report.updates;
    let mut fills = Vec::new();
    for (k, u) in updates.iter().enumerate() {
        let Update::Fill(f) = u else { continue };
        // The order's state after this fill: the next update of it.
        let after = updates[k + 1..].iter().find_map(|x| match x {
            Update::Order(st) if st.ticket.client_order_id == f.client_order_id => Some(st),
            _ => None,
        });
        let event = v1::FillEvent {
            fill: Some(fill_to_proto(f, decision(&f.client_order_id))),
            order: after.map(order_to_proto),
        };
        fills.push(FillOut {
            seq: f.seq,
            ts: f.ts,
            event,
            trace: state.order_trace(&f.client_order_id).cloned(),
        });
    }
    (report, fills)
}

/// An order named by its server id or its client order id.
#[derive(Debug, Clone)]
pub enum OrderKey {
    /// `Order.order_id`.
    OrderId(String),
    /// `OrderSpec.client_order_id`.
    ClientOrderId(String),
}

fn audit_ticket(t: &Ticket, status: &str, reason: Option<&str>) {
    tracing::info!(target: "audit",
        event = "order",
        client_order_id = %t.client_order_id,
        strategy_id = %t.strategy_id,
        symbol = %t.symbol,
        side = convert::side_name(t.side),
        qty = %convert::size_label(t.size),
        price = %convert::price_label(t.kind),
        status,
        reason = reason.unwrap_or(""),
        "order event");
}

#[allow(
    clippy::cast_precision_loss,
    reason = "a metric (fill notional counter), never a ledger value"
)]
fn decimal_f64(d: grodt_core::Decimal) -> f64 {
    use std::str::FromStr;
    f64::from_str(&d.to_string()).unwrap_or(0.0)
}

/// The span handling one input, parented on the envelope's trace context.
fn input_span(delivery: &Delivery) -> tracing::Span {
    let span = tracing::info_span!(
        "execution.input",
        event_id = %delivery.envelope.event_id,
        event_type = %delivery.envelope.event_type,
        delivery = delivery.delivery_count
    );
    grodt_kit::telemetry::follow_envelope(&span, &delivery.envelope);
    span
}

/// The consumer-group handler of both streams: one span per input,
/// parented on the envelope's trace context.
pub struct InputHandler(pub Arc<Engine>);

#[async_trait]
impl Handler for InputHandler {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        self.0
            .handle(delivery)
            .instrument(input_span(delivery))
            .await
            .map(|_| ())
            .map_err(|e| Box::new(e) as HandlerError)
    }

    /// Bars in one commit ([`Engine::on_bars`]); orders one at a time.
    async fn handle_batch(&self, deliveries: &[Delivery]) -> Result<(), BatchFailure> {
        let bar_type = type_name::<v1::BarEvent>();
        if deliveries.len() < 2 || deliveries.iter().any(|d| d.envelope.event_type != bar_type) {
            for (done, d) in deliveries.iter().enumerate() {
                self.handle(d)
                    .await
                    .map_err(|error| BatchFailure { done, error })?;
            }
            return Ok(());
        }
        let started = Instant::now();
        let bars: Vec<BarInput> = deliveries
            .iter()
            .map(|d| BarInput {
                source: d.envelope.event_id.to_string(),
                event: topic::decode::<v1::BarEvent>(
                    &d.envelope.event_type,
                    d.envelope.payload.as_ref(),
                )
                .map_err(|e| e.to_string()),
                span: input_span(d),
            })
            .collect();
        let result = self.0.on_bars(&bars).await;
        let took = started.elapsed().as_secs_f64();
        for _ in 0..deliveries.len() {
            self.0.metrics.handling.observe(took);
        }
        result.map(|_| ()).map_err(|(done, e)| BatchFailure {
            done,
            error: Box::new(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grodt_core::{Bar, OrderKind, Side, TimeInForce};

    fn ticket(cid: &str, side: Side, qty: i64, kind: OrderKind) -> Ticket {
        Ticket {
            client_order_id: cid.into(),
            strategy_id: String::new(),
            symbol: "SPY".into(),
            side,
            size: Size::Fixed(Quantity::from_raw(qty, 0).unwrap()),
            kind,
            tif: TimeInForce::Gtc,
            bracket: None,
            decision_ts: 0,
        }
    }

    fn inputs() -> Vec<Journaled> {
        let mut out = vec![
            Journaled::Input(Input::Submit(ticket(
                "a",
                Side::Buy,
                10,
                OrderKind::Limit {
                    price: Price::from_raw(9_900, 2).unwrap(),
                },
            ))),
            Journaled::Refused {
                ticket: ticket("b", Side::Buy, 1, OrderKind::Market),
                reason: "unknown symbol".into(),
            },
        ];
        for i in 0..40i64 {
            let close = 10_000 + (i % 7 - 3) * 60;
            out.push(Journaled::Input(Input::Bar {
                symbol: "SPY".into(),
                bar: Bar {
                    ts: (i + 1) * 86_400_000_000_000,
                    open: close,
                    high: close + 80,
                    low: close - 80,
                    close,
                    volume: 1_000_000,
                },
            }));
            if i == 20 {
                out.push(Journaled::Input(Input::Submit(ticket(
                    "c",
                    Side::Sell,
                    4,
                    OrderKind::Limit {
                        price: Price::from_raw(10_100, 2).unwrap(),
                    },
                ))));
            }
        }
        out
    }

    fn run(instruments: Vec<Instrument>) -> State {
        let symbols = instruments.iter().map(|i| i.id.clone()).collect();
        let broker = Broker::new(BacktestConfig::default(), instruments).unwrap();
        let mut state = State::new(broker.into(), symbols);
        for j in inputs() {
            state.apply(&j).unwrap();
        }
        state
    }

    /// The rebuild that adds a symbol of the default grids relies on this:
    /// an instrument that gets no input changes nothing for the others.
    #[test]
    fn an_instrument_without_inputs_changes_nothing() {
        let one = run(vec![Instrument::equity("SPY", 2, 0)]);
        let two = run(vec![
            Instrument::equity("SPY", 2, 0),
            Instrument::equity("AAA", 2, 0),
        ]);
        assert!(one.broker.fills().len() >= 2, "{:?}", one.broker.fills());
        assert_eq!(one.broker.fills(), two.broker.fills());
        assert_eq!(one.broker.orders(), two.broker.orders());
        assert_eq!(
            one.broker.snapshot().unwrap().equity,
            two.broker.snapshot().unwrap().equity
        );
        assert_eq!(one.created, ["a", "b", "c"]);
        assert_eq!(one.refused["b"].status, OrderStatus::Rejected);
        assert_eq!(one.positions, two.positions);
    }

    fn bar_input(source: &str, symbol: &str, day: i64) -> BarInput {
        BarInput {
            source: source.into(),
            event: Ok(v1::BarEvent {
                bar: Some(v1::Bar {
                    symbol: symbol.into(),
                    timestamp: Some(prost_types::Timestamp {
                        seconds: day * 86_400,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            span: tracing::Span::none(),
        }
    }

    /// The look-up is skipped only for bars the journal cannot hold: after
    /// their symbol's last bar, on a state that folds the whole journal.
    #[test]
    fn only_bars_after_the_last_skip_the_journal_look_up() {
        let mut state = run(vec![
            Instrument::equity("SPY", 2, 0),
            Instrument::equity("AAA", 2, 0),
        ]);
        // The last SPY bar is day 40; AAA has none.
        let new = [bar_input("e41", "SPY", 41), bar_input("e42", "SPY", 42)];
        assert!(all_unseen(&state, &new));
        assert!(
            !all_unseen(&state, &[bar_input("e40", "SPY", 40)]),
            "a redelivery"
        );
        assert!(!all_unseen(&state, &[bar_input("e39", "SPY", 39)]));
        assert!(
            !all_unseen(&state, &[bar_input("a1", "AAA", 41)]),
            "no last bar"
        );
        assert!(
            !all_unseen(&state, &[bar_input("x", "XYZ", 41)]),
            "unknown symbol"
        );
        assert!(
            !all_unseen(
                &state,
                &[bar_input("e41", "SPY", 41), bar_input("e41", "SPY", 42)]
            ),
            "a source twice"
        );
        let mut bad = bar_input("e43", "SPY", 43);
        bad.event = Err("undecodable".into());
        assert!(!all_unseen(&state, &[new[0].clone(), bad]));
        state.unpublished.push("e40".into());
        assert!(!all_unseen(&state, &new), "events left to publish");
        state.unpublished.clear();
        state.dirty = true;
        assert!(!all_unseen(&state, &new), "a state to rebuild");
    }

    #[test]
    fn an_order_keeps_the_trace_it_was_placed_in() {
        let mut state = run(vec![Instrument::equity("SPY", 2, 0)]);
        let outputs = |traceparent: Option<&str>| Outputs {
            at_ns: 0,
            report: Report {
                bar: None,
                updates: Vec::new(),
            },
            timeframe: 0,
            dataset_id: String::new(),
            replay_id: String::new(),
            traceparent: traceparent.map(str::to_owned),
            tracestate: None,
        };
        let placed = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let all = inputs();
        state.remember_trace(&all[0], &outputs(Some(placed)));
        state.remember_trace(&all[1], &outputs(None));
        // A bar is no order: nothing kept.
        state.remember_trace(&all[2], &outputs(Some("00-other")));
        assert_eq!(
            state.order_trace("a"),
            Some(&(placed.to_owned(), None)),
            "its fills continue the trace of the submit"
        );
        assert_eq!(state.order_trace("b"), None, "journaled without a trace");
        assert_eq!(state.order_traces.len(), 1);
        // An old journal entry (no trace fields) still decodes.
        let mut json = serde_json::to_value(outputs(None)).unwrap();
        assert!(json.get("traceparent").is_none());
        json.as_object_mut().unwrap().remove("tracestate");
        assert_eq!(
            serde_json::from_value::<Outputs>(json).unwrap(),
            outputs(None)
        );
    }

    /// Absurd prices and quantities, with and without margin enforcement
    /// and with a starting cash near the top of the decimal range: the
    /// venue refuses what it cannot book (a bar whose mark-to-market
    /// overflows is an error, so the service refuses the input; an order
    /// past the margin is rejected), and nothing on the way (the broker's
    /// sums, the position view, the PnL, the reconciliation) panics.
    #[test]
    fn absurd_prices_and_quantities_are_refused_without_a_panic() {
        let huge = i64::MAX / 2;
        for (cash, margin) in [
            (Decimal::from(100_000), true),
            (Decimal::from(100_000), false),
            (Decimal::MAX / Decimal::TWO, false),
        ] {
            let config = BacktestConfig {
                starting_cash: cash,
                enforce_margin: margin,
                ..BacktestConfig::default()
            };
            let broker = Broker::new(config, vec![Instrument::equity("SPY", 2, 0)]).unwrap();
            let mut state = State::new(broker.into(), vec!["SPY".into()]);
            let bar = |k: i64, close: i64| {
                Journaled::Input(Input::Bar {
                    symbol: "SPY".into(),
                    bar: Bar {
                        ts: k * 86_400_000_000_000,
                        open: close,
                        high: close,
                        low: close,
                        close,
                        volume: i64::MAX,
                    },
                })
            };
            let submit = |cid: &str, side: Side, qty: i64| {
                Journaled::Input(Input::Submit(ticket(cid, side, qty, OrderKind::Market)))
            };
            let inputs = [
                (bar(1, 10_000), true),
                (submit("a", Side::Buy, huge), true),
                (bar(2, huge), false),
                (submit("b", Side::Sell, huge), true),
                (bar(3, 1), true),
                (submit("c", Side::Buy, i64::MAX), true),
                (bar(4, huge), false),
                (bar(5, i64::MAX), false),
            ];
            for (k, (j, ok)) in inputs.iter().enumerate() {
                match state.apply(j) {
                    Ok(_) => assert!(ok, "{cash} {margin}: input {k} accepted"),
                    Err(e) => {
                        assert!(!ok, "{cash} {margin}: input {k} refused: {e}");
                        assert_eq!(e.to_string(), "notional overflowed");
                    }
                }
            }
            let orders = state.broker.orders();
            if margin {
                assert!(
                    orders[..2]
                        .iter()
                        .all(|o| o.status == OrderStatus::Rejected)
                );
            }
            assert!(state.pnl().is_ok());
            let r = crate::reconcile::reconcile(&state.broker, cash).unwrap();
            assert!(r.breaks.is_empty(), "{:?}", r.breaks);
        }
    }

    /// The PnL sums are checked: an overflow is an error naming it.
    #[test]
    fn a_pnl_sum_out_of_range_is_an_error_not_a_panic() {
        let broker = Broker::new(
            BacktestConfig::default(),
            vec![
                Instrument::equity("SPY", 2, 0),
                Instrument::equity("QQQ", 2, 0),
            ],
        )
        .unwrap();
        let mut state = State::new(broker.into(), vec!["SPY".into(), "QQQ".into()]);
        for s in ["QQQ", "SPY"] {
            let mut p = Position::flat(0, 1);
            p.realized_pnl = Decimal::MAX;
            state.positions.insert(s.into(), p);
        }
        assert_eq!(
            state.pnl().unwrap_err().to_string(),
            "realized PnL of SPY exceeds the decimal range"
        );
    }

    #[test]
    fn journal_records_round_trip_as_json() {
        for j in inputs() {
            let bytes = serde_json::to_vec(&j).unwrap();
            assert_eq!(serde_json::from_slice::<Journaled>(&bytes).unwrap(), j);
        }
    }
}
