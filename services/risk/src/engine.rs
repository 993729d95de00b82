//! The risk engine: one `grodt_risk_rules::RiskState` fed from
//! `grodt.order-intents.v1`, `grodt.fills.v1` and `grodt.bars.v1` (consumer
//! group `risk`) and from the operator commands of the gRPC API, journaled
//! in the store's journal (consumer `risk`).
//!
//! The persistence contract (docs/risk.md, "Recovery"): one tokio mutex
//! serializes inputs. For each input: look its source up in the journal (a
//! redelivery republishes the stored events under their ids and changes
//! nothing); else apply it to the in-memory state, append (input, events) to
//! the journal and commit, publish the events, and only then ack. A failed
//! commit marks the state stale: it is rebuilt from the journal before the
//! next input. At start the state is the replay of the whole journal.
//!
//! Journal encoding: the input is the JSON of [`Record`] (the fold's
//! `Input`, serde), the outputs are the JSON of a list of [`StoredEvent`]
//! (stream, event id, type, time, protobuf payload as hex).
//!
//! Sources (the journal's idempotency keys): `intent:<client_order_id>` (so a
//! second intent with the same client order id gets the first decision
//! again, whatever its event id), `fill:<fill_id>`, `bar:<event_id>`,
//! `cmd:<uuid>` for gRPC commands, `config:<uuid>` for configuration changes.

pub use grodt_kit::journal::{StoredEvent, event_id};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use grodt_bus::consumer::{BatchFailure, Handler, HandlerError};
use grodt_bus::{Delivery, EventBus};
use grodt_proto::topic::{self, Outgoing, Topic};
use grodt_proto::v1;
use grodt_risk_rules::{Input, Limits, Output, RiskState, Settings};
use grodt_store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard};
use tracing::Instrument;
use uuid::Uuid;

use crate::convert::{
    bar_from_proto, fill_from_proto, halt_to_proto, limits_to_proto, order_from_proto,
    ts_from_proto, violation_to_proto,
};
use crate::error::RiskSvcError;
use crate::metrics::{RiskMetrics, limit_label};

/// Order intents in.
pub const INTENTS_STREAM: &str = <v1::OrderIntentEvent as Topic>::STREAM;
/// Fills in.
pub const FILLS_STREAM: &str = <v1::FillEvent as Topic>::STREAM;
/// Bars in.
pub const BARS_STREAM: &str = <v1::BarEvent as Topic>::STREAM;
/// Approved orders out.
pub const ORDERS_STREAM: &str = <v1::OrderEvent as Topic>::STREAM;
/// Rejections, breaker trips, halts, limit changes out.
pub const RISK_EVENTS_STREAM: &str = <v1::RiskEvent as Topic>::STREAM;
/// The consumer group on the three input streams.
pub const GROUP: &str = "risk";
/// The consumer's name in the store's journal.
pub const JOURNAL: &str = "risk";
/// The metric label of commands.
const COMMAND: &str = "command";

/// One journaled input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// An input of the fold.
    Input {
        /// The input.
        input: Box<Input>,
    },
    /// An intent whose order is invalid: rejected without touching the state.
    InvalidIntent {
        /// Its client order id.
        client_order_id: String,
        /// The field at fault and why.
        reason: String,
    },
}

fn stored<T: Topic>(event: &T, id: Uuid, at_ns: i64) -> StoredEvent {
    let out = Outgoing::new(event);
    StoredEvent::new(out.stream(), out.event_type(), id, at_ns, &out.payload())
}

fn risk_event(kind: v1::RiskEventKind, message: String) -> v1::RiskEvent {
    v1::RiskEvent {
        kind: kind as i32,
        message,
        ..v1::RiskEvent::default()
    }
}

/// The intent behind a decision, to build its events.
pub struct IntentCtx<'a> {
    /// The order as the strategy sent it.
    pub spec: &'a v1::OrderSpec,
    /// The intent's envelope event id.
    pub intent_event_id: String,
    /// Its decision bar time.
    pub at_ns: i64,
}

/// The events of `outputs` (source `source`, time `at_ns`).
/// The time of a market input (a fill's or a bar's).
const fn market_ts(input: &Input) -> i64 {
    match input {
        Input::Fill { at_ns, .. } | Input::Bar { at_ns, .. } => *at_ns,
        _ => 0,
    }
}

fn events_of(
    source: &str,
    at_ns: i64,
    outputs: &[Output],
    intent: Option<&IntentCtx<'_>>,
) -> Vec<StoredEvent> {
    let mut events = Vec::new();
    for (i, o) in outputs.iter().enumerate() {
        let id = event_id(at_ns, &format!("risk:{source}:{i}"));
        match o {
            Output::Approved {
                client_order_id,
                reference_price,
            } => {
                let Some(ctx) = intent else { continue };
                let ev = v1::OrderEvent {
                    order: Some(ctx.spec.clone()),
                    intent_event_id: ctx.intent_event_id.clone(),
                    reference_price: reference_price.map(v1::Decimal::from),
                    decision_bar_time: Some(crate::convert::ts_to_proto(ctx.at_ns)),
                    cancel: None,
                };
                let id = event_id(ctx.at_ns, &format!("risk:order:{client_order_id}"));
                events.push(stored(&ev, id, ctx.at_ns));
            }
            // Built by `on_cancel`, which holds the cancellation.
            Output::CancelPassed { .. } => {}
            Output::Rejected {
                client_order_id,
                violations,
                ..
            } => {
                let Some(ctx) = intent else { continue };
                let mut ev = risk_event(
                    v1::RiskEventKind::OrderRejected,
                    violations
                        .iter()
                        .map(|v| format!("{}: {}", v.limit, v.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                ev.order = Some(ctx.spec.clone());
                ev.violations = violations.iter().map(violation_to_proto).collect();
                let id = event_id(ctx.at_ns, &format!("risk:rejected:{client_order_id}"));
                events.push(stored(&ev, id, ctx.at_ns));
            }
            Output::LimitsChanged { record, reason } => {
                let mut ev = risk_event(
                    v1::RiskEventKind::LimitsChanged,
                    format!(
                        "limits version {} set by {}: {reason}",
                        record.version, record.updated_by
                    ),
                );
                ev.limits = Some(limits_to_proto(record));
                events.push(stored(&ev, id, at_ns));
            }
            Output::BreakerTripped { halt } => {
                let mut ev = risk_event(
                    v1::RiskEventKind::CircuitBreakerTripped,
                    halt.reason.clone(),
                );
                ev.halt = Some(halt_to_proto(Some(halt)));
                events.push(stored(&ev, id, at_ns));
            }
            Output::Halted { halt } => {
                let mut ev = risk_event(
                    v1::RiskEventKind::Halted,
                    format!("halted by {}: {}", halt.by, halt.reason),
                );
                ev.halt = Some(halt_to_proto(Some(halt)));
                events.push(stored(&ev, id, at_ns));
            }
            Output::Resumed {
                lifted,
                reason,
                by,
                at_ns: when,
            } => {
                let mut ev = risk_event(
                    v1::RiskEventKind::Resumed,
                    format!(
                        "resumed by {by}: {reason} (lifted a halt by {}: {})",
                        lifted.by, lifted.reason
                    ),
                );
                // halted = false; cause = the cause lifted; reason/by/since = the resume's.
                let mut h = halt_to_proto(Some(lifted));
                h.halted = false;
                h.reason.clone_from(reason);
                h.by.clone_from(by);
                h.since = Some(crate::convert::ts_to_proto(*when));
                ev.halt = Some(h);
                events.push(stored(&ev, id, at_ns));
            }
            Output::LimitWarning {
                limit,
                limit_value,
                observed,
            } => {
                let message = format!("{limit}: {observed} is past 80% of the limit {limit_value}");
                let mut ev = risk_event(v1::RiskEventKind::LimitWarning, message.clone());
                ev.violations = vec![v1::RiskViolation {
                    limit: limit.clone(),
                    message,
                    limit_value: Some((*limit_value).into()),
                    observed_value: Some((*observed).into()),
                }];
                events.push(stored(&ev, id, at_ns));
            }
        }
    }
    events
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// The state and whether it must be rebuilt from the journal.
pub struct Core {
    /// The fold.
    pub state: RiskState,
    stale: bool,
    /// Journaled inputs whose events could not be published (the bus
    /// failed after the commit): published again before the next input, so
    /// a command's event (which no redelivery repeats) is not lost while the
    /// process lives.
    unpublished: Vec<String>,
}

/// The engine: the state behind one mutex, the store, the bus.
pub struct Engine {
    store: Store,
    bus: Arc<dyn EventBus>,
    metrics: RiskMetrics,
    core: Mutex<Core>,
}

impl Engine {
    /// An engine with an empty state; call [`Engine::recover`] before use.
    pub fn new(store: Store, bus: Arc<dyn EventBus>, metrics: RiskMetrics) -> Self {
        Self {
            store,
            bus,
            metrics,
            core: Mutex::new(Core {
                state: RiskState::default(),
                stale: true,
                unpublished: Vec::new(),
            }),
        }
    }

    /// The whole journal replayed into a fresh state.
    async fn replay(&self) -> Result<RiskState, RiskSvcError> {
        let mut state = RiskState::default();
        let (mut after, mut n) = (0i64, 0i64);
        loop {
            let page = self.store.journal().scan(JOURNAL, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in &page {
                let rec: Record = serde_json::from_slice(&e.input).map_err(|err| {
                    RiskSvcError::Corrupt(format!("journal entry {} ({}): {err}", e.seq, e.source))
                })?;
                if let Record::Input { input } = rec {
                    state.apply(&input);
                }
                n += 1;
            }
        }
        self.metrics.replayed.set(n);
        tracing::info!(entries = n, "risk state rebuilt from the journal");
        Ok(state)
    }

    /// The state, rebuilt first if a failure left it stale.
    ///
    /// # Errors
    /// The journal could not be read.
    pub async fn lock(&self) -> Result<MutexGuard<'_, Core>, RiskSvcError> {
        let mut core = self.core.lock().await;
        if core.stale {
            core.state = self.replay().await?;
            core.stale = false;
            self.metrics.observe(&core.state);
        }
        Ok(core)
    }

    /// Replays the journal, then journals the configuration if it differs
    /// from the state's (settings, and the initial limits while no SetLimits
    /// was applied).
    ///
    /// # Errors
    /// The store or the bus failed.
    pub async fn recover(
        &self,
        settings: Settings,
        limits: Option<Limits>,
    ) -> Result<(), RiskSvcError> {
        let mut core = self.lock().await?;
        let limits = limits.unwrap_or_default();
        let differs = *core.state.settings() != settings
            || (core.state.limits().version == 0 && core.state.limits().limits != limits);
        if differs {
            let input = Input::Configure {
                settings,
                limits: Some(limits),
            };
            let source = format!("config:{}", Uuid::now_v7());
            let at = now_ns();
            self.run(
                &mut core,
                &source,
                COMMAND,
                Record::Input {
                    input: Box::new(input),
                },
                |outs| Ok(events_of(&source, at, outs, None)),
            )
            .await?;
        }
        Ok(())
    }

    /// Applies one record under the lock: journal look-up, fold, journal
    /// append and commit, publish. Returns the outputs (empty for a redelivery).
    async fn run<F>(
        &self,
        core: &mut Core,
        source: &str,
        label: &str,
        rec: Record,
        build: F,
    ) -> Result<Vec<Output>, RiskSvcError>
    where
        F: FnOnce(&[Output]) -> Result<Vec<StoredEvent>, RiskSvcError>,
    {
        self.publish_unpublished(core).await?;
        if let Some(entry) = self.store.journal().get(JOURNAL, source).await? {
            self.republish(&entry.outputs).await?;
            self.metrics
                .inputs
                .with_label_values(&[label, "duplicate"])
                .inc();
            return Ok(Vec::new());
        }
        let outputs = match &rec {
            Record::Input { input } => core.state.apply(input),
            Record::InvalidIntent { .. } => Vec::new(),
        };
        // The state has moved: until the commit, any failure must rebuild it.
        let committed = async {
            let events = build(&outputs)?;
            let input =
                serde_json::to_vec(&rec).map_err(|e| RiskSvcError::Corrupt(e.to_string()))?;
            let out =
                serde_json::to_vec(&events).map_err(|e| RiskSvcError::Corrupt(e.to_string()))?;
            // One statement, committed on its own: one round trip.
            let seq = self
                .store
                .journal_append(JOURNAL, source, &input, &out)
                .await?;
            Ok::<_, RiskSvcError>((seq, events))
        }
        .await;
        let events = match committed {
            Ok((Some(_), events)) => events,
            Ok((None, _)) => {
                // Journaled by another writer meanwhile: its outcome stands.
                core.stale = true;
                if let Some(entry) = self.store.journal().get(JOURNAL, source).await? {
                    self.republish(&entry.outputs).await?;
                }
                return Ok(Vec::new());
            }
            Err(e) => {
                core.stale = true;
                return Err(e);
            }
        };
        self.metrics.journal_batch.observe(1.0);
        self.metrics
            .inputs
            .with_label_values(&[label, "applied"])
            .inc();
        self.count(&rec, &outputs);
        self.metrics.observe(&core.state);
        if let Err(e) = self.publish_all(&events).await {
            core.unpublished.push(source.to_owned());
            return Err(e);
        }
        Ok(outputs)
    }

    /// Publishes again the events of journaled inputs whose publication
    /// failed, before anything newer.
    async fn publish_unpublished(&self, core: &mut Core) -> Result<(), RiskSvcError> {
        while let Some(earlier) = core.unpublished.first().cloned() {
            if let Some(entry) = self.store.journal().get(JOURNAL, &earlier).await? {
                self.republish(&entry.outputs).await?;
            }
            core.unpublished.remove(0);
        }
        Ok(())
    }

    fn count(&self, rec: &Record, outputs: &[Output]) {
        if let Record::InvalidIntent { .. } = rec {
            self.metrics.checks.with_label_values(&["rejected"]).inc();
            self.metrics.violations.with_label_values(&["order"]).inc();
        }
        for o in outputs {
            match o {
                Output::Approved { .. } => {
                    self.metrics.checks.with_label_values(&["accepted"]).inc();
                }
                // Not a check: counted with the intents stream's inputs.
                Output::CancelPassed { .. } => {}
                Output::Rejected { violations, .. } => {
                    self.metrics.checks.with_label_values(&["rejected"]).inc();
                    for v in violations {
                        self.metrics
                            .violations
                            .with_label_values(&[&limit_label(&v.limit)])
                            .inc();
                    }
                }
                Output::BreakerTripped { halt } => {
                    if let grodt_risk_rules::HaltCause::Breaker(b) = halt.cause {
                        self.metrics.trips.with_label_values(&[b.name()]).inc();
                        tracing::warn!(breaker = b.name(), reason = %halt.reason, "circuit breaker tripped");
                    }
                }
                Output::LimitWarning { limit, .. } => {
                    self.metrics.warnings.with_label_values(&[limit]).inc();
                }
                Output::Halted { halt } => {
                    tracing::warn!(by = %halt.by, reason = %halt.reason, "trading halted");
                }
                Output::Resumed { by, reason, .. } => {
                    tracing::warn!(%by, %reason, "trading resumed");
                }
                Output::LimitsChanged { record, reason } => {
                    tracing::info!(version = record.version, by = %record.updated_by, %reason, "limits changed");
                }
            }
        }
    }

    async fn republish(&self, outputs: &[u8]) -> Result<(), RiskSvcError> {
        let events: Vec<StoredEvent> = serde_json::from_slice(outputs)
            .map_err(|e| RiskSvcError::Corrupt(format!("journaled outputs: {e}")))?;
        self.publish_all(&events).await
    }

    async fn publish_all<'a>(
        &self,
        events: impl IntoIterator<Item = &'a StoredEvent>,
    ) -> Result<(), RiskSvcError> {
        Ok(grodt_kit::journal::publish_all(&self.bus, events).await?)
    }

    /// A gRPC command: `decide` sees the state under the lock and returns the
    /// input to apply (None: nothing to do, e.g. Halt while halted); `reply`
    /// reads the state after it.
    ///
    /// # Errors
    /// `decide`'s error, or the store or the bus failed.
    pub async fn command<T>(
        &self,
        decide: impl FnOnce(&RiskState, i64) -> Result<Option<Input>, RiskSvcError>,
        reply: impl FnOnce(&RiskState) -> T,
    ) -> Result<T, RiskSvcError> {
        let mut core = self.lock().await?;
        let at = now_ns();
        if let Some(input) = decide(&core.state, at)? {
            let source = format!("cmd:{}", Uuid::now_v7());
            self.run(
                &mut core,
                &source,
                COMMAND,
                Record::Input {
                    input: Box::new(input),
                },
                |outs| Ok(events_of(&source, at, outs, None)),
            )
            .await?;
        }
        Ok(reply(&core.state))
    }

    /// Handles one order intent.
    async fn on_intent(&self, d: &Delivery) -> Result<(), RiskSvcError> {
        let label = INTENTS_STREAM;
        let event = match topic::decode::<v1::OrderIntentEvent>(
            &d.envelope.event_type,
            d.envelope.payload.as_ref(),
        ) {
            Ok(e) => e,
            Err(e) => return self.invalid(label, d, &format!("undecodable: {e}")),
        };
        if let Some(cancel) = &event.cancel {
            if event.order.is_some() {
                return self.invalid(label, d, "order and cancel: set one, not both");
            }
            return self.on_cancel(d, cancel, event.decision_bar_time).await;
        }
        let Some(spec) = event.order.as_ref() else {
            return self.invalid(label, d, "order: required");
        };
        if spec.client_order_id.is_empty() {
            return self.invalid(label, d, "order.client_order_id: required");
        }
        let source = format!("intent:{}", spec.client_order_id);
        let decided = ts_from_proto("decision_bar_time", event.decision_bar_time.as_ref());
        let at_ns = decided
            .as_ref()
            .copied()
            .unwrap_or_else(|_| d.envelope.occurred_at.timestamp_nanos_opt().unwrap_or(0));
        let rec = match decided.and_then(|at| Ok((order_from_proto(spec)?, at))) {
            Ok((order, at_ns)) => Record::Input {
                input: Box::new(Input::Intent { order, at_ns }),
            },
            Err(e) => Record::InvalidIntent {
                client_order_id: spec.client_order_id.clone(),
                reason: e.to_string(),
            },
        };
        let ctx = IntentCtx {
            spec,
            intent_event_id: d.envelope.event_id.to_string(),
            at_ns,
        };
        let invalid = match &rec {
            Record::InvalidIntent { reason, .. } => Some(reason.clone()),
            Record::Input { .. } => None,
        };
        let mut core = self.lock().await?;
        let outputs = self
            .run(&mut core, &source, label, rec, |outs| {
                if let Some(reason) = &invalid {
                    let v = grodt_risk_rules::Violation {
                        limit: "order".into(),
                        message: reason.clone(),
                        limit_value: None,
                        observed: None,
                    };
                    let outs = [Output::Rejected {
                        client_order_id: spec.client_order_id.clone(),
                        violations: vec![v],
                        reference_price: None,
                    }];
                    return Ok(events_of(&source, at_ns, &outs, Some(&ctx)));
                }
                Ok(events_of(&source, at_ns, outs, Some(&ctx)))
            })
            .await?;
        drop(core);
        if let Some(Output::Rejected { violations, .. }) = outputs.first() {
            tracing::info!(
                client_order_id = %spec.client_order_id,
                strategy_id = %spec.strategy_id,
                limits = ?violations.iter().map(|v| v.limit.as_str()).collect::<Vec<_>>(),
                "intent rejected"
            );
        }
        Ok(())
    }

    /// Passes a strategy's cancellation on to execution, on the orders
    /// stream behind the order it cancels; no limit or halt stops it.
    async fn on_cancel(
        &self,
        d: &Delivery,
        cancel: &v1::OrderCancel,
        decided: Option<prost_types::Timestamp>,
    ) -> Result<(), RiskSvcError> {
        let label = INTENTS_STREAM;
        let cid = &cancel.client_order_id;
        if cid.is_empty() || cid.len() > 64 {
            return self.invalid(label, d, "cancel.client_order_id: 1..64 chars required");
        }
        if cancel.symbol.is_empty() {
            return self.invalid(label, d, "cancel.symbol: required");
        }
        let at_ns = ts_from_proto("decision_bar_time", decided.as_ref())
            .unwrap_or_else(|_| d.envelope.occurred_at.timestamp_nanos_opt().unwrap_or(0));
        let source = format!("cancel:{cid}");
        let rec = Record::Input {
            input: Box::new(Input::Cancel {
                client_order_id: cid.clone(),
                at_ns,
            }),
        };
        let intent_event_id = d.envelope.event_id.to_string();
        let mut core = self.lock().await?;
        self.run(&mut core, &source, label, rec, |outs| {
            let passed = outs
                .iter()
                .any(|o| matches!(o, Output::CancelPassed { .. }));
            let ev = v1::OrderEvent {
                order: None,
                intent_event_id: intent_event_id.clone(),
                reference_price: None,
                decision_bar_time: decided,
                cancel: Some(cancel.clone()),
            };
            let id = event_id(at_ns, &format!("risk:cancel:{cid}"));
            Ok(if passed {
                vec![stored(&ev, id, at_ns)]
            } else {
                Vec::new()
            })
        })
        .await?;
        Ok(())
    }

    async fn on_fill(&self, d: &Delivery) -> Result<(), RiskSvcError> {
        match self.market_input(Kind::Fills, d) {
            Some((source, input)) => self.market(&source, FILLS_STREAM, input).await,
            None => Ok(()),
        }
    }

    async fn on_bar(&self, d: &Delivery) -> Result<(), RiskSvcError> {
        match self.market_input(Kind::Bars, d) {
            Some((source, input)) => self.market(&source, BARS_STREAM, input).await,
            None => Ok(()),
        }
    }

    /// A fill or bar delivery as a journal source and a fold input; `None`
    /// for one that cannot be applied (logged and counted as invalid).
    fn market_input(&self, kind: Kind, d: &Delivery) -> Option<(String, Input)> {
        let (env, payload) = (&d.envelope.event_type, d.envelope.payload.as_ref());
        if kind == Kind::Fills {
            let label = FILLS_STREAM;
            let event = match topic::decode::<v1::FillEvent>(env, payload) {
                Ok(e) => e,
                Err(e) => return self.invalid_none(label, d, &format!("undecodable: {e}")),
            };
            let Some(fill) = event.fill.as_ref() else {
                return self.invalid_none(label, d, "fill: required");
            };
            let input = match fill_from_proto(fill) {
                Ok(i) => i,
                Err(e) => return self.invalid_none(label, d, &e.to_string()),
            };
            let source = if fill.fill_id.is_empty() {
                format!("fill-event:{}", d.envelope.event_id)
            } else {
                format!("fill:{}", fill.fill_id)
            };
            return Some((source, input));
        }
        let label = BARS_STREAM;
        let event = match topic::decode::<v1::BarEvent>(env, payload) {
            Ok(e) => e,
            Err(e) => return self.invalid_none(label, d, &format!("undecodable: {e}")),
        };
        let Some(bar) = event.bar.as_ref() else {
            return self.invalid_none(label, d, "bar: required");
        };
        match bar_from_proto(bar) {
            Ok(i) => Some((format!("bar:{}", d.envelope.event_id), i)),
            Err(e) => self.invalid_none(label, d, &e.to_string()),
        }
    }

    fn invalid_none<T>(&self, label: &str, d: &Delivery, why: &str) -> Option<T> {
        let _ = self.invalid(label, d, why);
        None
    }

    async fn market(&self, source: &str, label: &str, input: Input) -> Result<(), RiskSvcError> {
        let at_ns = market_ts(&input);
        let mut core = self.lock().await?;
        self.run(
            &mut core,
            source,
            label,
            Record::Input {
                input: Box::new(input),
            },
            |outs| Ok(events_of(source, at_ns, outs, None)),
        )
        .await?;
        Ok(())
    }

    /// Bars or fills read together, in stream order, with **one commit**
    /// for all (group commit): one journal look-up for the batch, each new
    /// input folded in order (staged), then all journaled in one
    /// transaction, then their events published in order. A journaled input
    /// (a redelivery) first flushes what is staged, so the journal keeps the
    /// order of the fold. The same effects, events and ids as one at a time
    /// ([`Engine::market`]); at most one `fdatasync` per batch.
    ///
    /// # Errors
    /// `(k, error)`: inputs before `k` are done; the one at `k` failed, and
    /// it and those behind it must be handled again (the state is rebuilt
    /// first if the fold moved past what was committed).
    pub async fn on_market_batch(
        &self,
        kind: Kind,
        ds: &[Delivery],
    ) -> Result<(), (usize, RiskSvcError)> {
        let label = if kind == Kind::Fills {
            FILLS_STREAM
        } else {
            BARS_STREAM
        };
        let inputs: Vec<Option<(String, Input)>> =
            ds.iter().map(|d| self.market_input(kind, d)).collect();
        let mut core = self.lock().await.map_err(|e| (0, e))?;
        self.publish_unpublished(&mut core)
            .await
            .map_err(|e| (0, e))?;
        let sources: Vec<String> = inputs.iter().flatten().map(|(s, _)| s.clone()).collect();
        let mut journaled = grodt_kit::journal::journaled_among(&self.store, JOURNAL, &sources)
            .await
            .map_err(|e| (0, RiskSvcError::from(e)))?;
        let mut staged = Vec::new();
        for (k, (d, input)) in ds.iter().zip(inputs).enumerate() {
            let Some((source, input)) = input else {
                continue;
            };
            let span = input_span(kind, d);
            // A second delivery of a source this batch staged: as one at a
            // time, it finds that one journaled and republishes it.
            let entry = if staged.iter().any(|s: &StagedRecord| s.source == source) {
                self.flush(&mut core, &mut staged).await?;
                self.store
                    .journal()
                    .get(JOURNAL, &source)
                    .await
                    .map_err(|e| (k, RiskSvcError::from(e)))?
            } else {
                journaled.remove(&source)
            };
            if let Some(entry) = entry {
                self.flush(&mut core, &mut staged).await?;
                self.republish(&entry.outputs)
                    .instrument(span)
                    .await
                    .map_err(|e| (k, e))?;
                self.metrics
                    .inputs
                    .with_label_values(&[label, "duplicate"])
                    .inc();
                continue;
            }
            let at_ns = market_ts(&input);
            let outputs = core.state.apply(&input);
            let record = Record::Input {
                input: Box::new(input),
            };
            let events = events_of(&source, at_ns, &outputs, None);
            staged.push(StagedRecord {
                at: k,
                source,
                label,
                record,
                outputs,
                events,
            });
        }
        self.flush(&mut core, &mut staged).await
    }

    /// Journals every staged record in one transaction, then counts and
    /// publishes each in order. Empties `staged`.
    ///
    /// # Errors
    /// `(k, error)`, `k` the batch index of the first record not done:
    /// nothing committed, or not as folded (the state is stale: rebuilt
    /// before the next input); or, `k` the first of the batch, its events
    /// not all published (they are published again before the next input).
    async fn flush(
        &self,
        core: &mut Core,
        staged: &mut Vec<StagedRecord>,
    ) -> Result<(), (usize, RiskSvcError)> {
        let Some(first) = staged.first().map(|s| s.at) else {
            return Ok(());
        };
        let batch = std::mem::take(staged);
        let entries: Vec<_> = batch
            .iter()
            .map(|s| (s.source.as_str(), &s.record, &s.events))
            .collect();
        if let Err(e) = grodt_kit::journal::append_batch(&self.store, JOURNAL, &entries).await {
            // Nothing committed, or not as folded (another writer's entry
            // stands; the retry finds it journaled and republishes it).
            core.stale = true;
            return Err((first, e.into()));
        }
        self.metrics
            .journal_batch
            .observe(f64::from(u32::try_from(batch.len()).unwrap_or(u32::MAX)));
        for s in &batch {
            self.metrics
                .inputs
                .with_label_values(&[s.label, "applied"])
                .inc();
            self.count(&s.record, &s.outputs);
        }
        self.metrics.observe(&core.state);
        // Every staged record's events in one round trip, in journal order
        // (each carries the trace it was made in).
        let events = batch.iter().flat_map(|s| &s.events);
        if let Err(e) = self.publish_all(events).await {
            core.unpublished
                .extend(batch.iter().map(|s| s.source.clone()));
            return Err((first, e));
        }
        Ok(())
    }

    /// An event that cannot be applied: logged, counted, acked (always `Ok`).
    fn invalid(&self, label: &str, d: &Delivery, why: &str) -> Result<(), RiskSvcError> {
        tracing::warn!(stream = label, event_id = %d.envelope.event_id, reason = why, "event ignored");
        self.metrics
            .inputs
            .with_label_values(&[label, "invalid"])
            .inc();
        Ok(())
    }

    /// Sets the consumer-lag gauges every `every` until `stop` turns true.
    pub async fn watch_lag(&self, every: Duration, stop: tokio::sync::watch::Receiver<bool>) {
        let streams = [INTENTS_STREAM, FILLS_STREAM, BARS_STREAM];
        grodt_kit::lag::watch(&*self.bus, &streams, GROUP, &self.metrics.lag, every, stop).await;
    }
}

/// Which stream a [`StreamHandler`] consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `grodt.order-intents.v1`.
    Intents,
    /// `grodt.fills.v1`.
    Fills,
    /// `grodt.bars.v1`.
    Bars,
}

/// A market input of a batch folded into the state, waiting for the batch's commit.
struct StagedRecord {
    /// Its index in the batch.
    at: usize,
    source: String,
    label: &'static str,
    record: Record,
    outputs: Vec<Output>,
    events: Vec<StoredEvent>,
}

/// The span handling one event of `kind`, parented on the envelope's trace context.
fn input_span(kind: Kind, delivery: &Delivery) -> tracing::Span {
    let name = match kind {
        Kind::Intents => "risk.intent",
        Kind::Fills => "risk.fill",
        Kind::Bars => "risk.bar",
    };
    let span = tracing::info_span!(
        "risk.input",
        otel.name = name,
        event_id = %delivery.envelope.event_id,
        delivery = delivery.delivery_count
    );
    grodt_kit::telemetry::follow_envelope(&span, &delivery.envelope);
    span
}

/// The consumer-group handler of one input stream: one span per event,
/// parented on the envelope's trace context.
pub struct StreamHandler(pub Arc<Engine>, pub Kind);

#[async_trait]
impl Handler for StreamHandler {
    /// Bars and fills in one commit ([`Engine::on_market_batch`]); intents
    /// one at a time.
    async fn handle_batch(&self, deliveries: &[Delivery]) -> Result<(), BatchFailure> {
        if self.1 == Kind::Intents || deliveries.len() < 2 {
            for (done, d) in deliveries.iter().enumerate() {
                self.handle(d)
                    .await
                    .map_err(|error| BatchFailure { done, error })?;
            }
            return Ok(());
        }
        let started = Instant::now();
        let result = self.0.on_market_batch(self.1, deliveries).await;
        let took = started.elapsed().as_secs_f64();
        for _ in deliveries {
            self.0.metrics.handling.observe(took);
        }
        result.map_err(|(done, e)| BatchFailure {
            done,
            error: Box::new(e),
        })
    }

    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let span = input_span(self.1, delivery);
        let started = Instant::now();
        let engine = &self.0;
        let result = async {
            match self.1 {
                Kind::Intents => engine.on_intent(delivery).await,
                Kind::Fills => engine.on_fill(delivery).await,
                Kind::Bars => engine.on_bar(delivery).await,
            }
        }
        .instrument(span)
        .await;
        engine
            .metrics
            .handling
            .observe(started.elapsed().as_secs_f64());
        result.map_err(|e| Box::new(e) as HandlerError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_record_round_trips_exactly() {
        use grodt_risk_rules::{Order, Side, Size};
        let d = |t: &str| t.parse::<rust_decimal::Decimal>().unwrap();
        let rec = Record::Input {
            input: Box::new(Input::Intent {
                order: Order {
                    client_order_id: "c-1".into(),
                    strategy_id: "s".into(),
                    symbol: "SPY".into(),
                    side: Side::Sell,
                    size: Size::EquityFraction(d("0.2500")),
                    limit_price: Some(d("123456789.123456789")),
                },
                at_ns: -86_400_000_000_001,
            }),
        };
        let bytes = serde_json::to_vec(&rec).unwrap();
        let back: Record = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, rec);
        let Record::Input { input } = back else {
            panic!("an input")
        };
        let Input::Intent { order, .. } = *input else {
            panic!("an intent")
        };
        // The scale is kept (0.2500, not 0.25).
        assert_eq!(format!("{:?}", order.size), "EquityFraction(0.2500)");
    }

    #[test]
    fn event_ids_are_deterministic_uuid_v7() {
        let a = event_id(1_700_000_000_000_000_000, "risk:order:abc");
        assert_eq!(a, event_id(1_700_000_000_000_000_000, "risk:order:abc"));
        assert_ne!(a, event_id(1_700_000_000_000_000_000, "risk:order:abd"));
        assert_eq!(a.get_version_num(), 7);
        assert_eq!(event_id(-5, "x").get_version_num(), 7);
    }
}
