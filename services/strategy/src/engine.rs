//! The engine: the [`State`] fold behind one mutex, fed from
//! `grodt.execution-reports.v1`, `grodt.risk-events.v1` and
//! `grodt.regimes.v1` (consumer group `strategy`) and from the gRPC
//! commands, journaled in the store's journal (consumer `strategy`).
//!
//! For each input: look its source up in the journal (a redelivery
//! republishes the stored intents under their ids and changes nothing);
//! else apply it to the state, append (input, outputs) to the journal and
//! commit, publish the intents, and only then ack. A failed commit marks the
//! state stale: it is rebuilt from the journal before the next input. At
//! start the state is the replay of the whole journal.
//!
//! Order: execution's reports are the strategies' clock, so they must be
//! applied in stream order. A single consumer reads them in order; after a
//! crash, or after a report whose handling failed, the pending reports are
//! drained first, oldest first (`claim_stale` with no idle time, which
//! follows the pending list in id order), before any newer report.
//!
//! Sources: `report:<event id>`, `risk:<event id>`, `regime:<event id>`,
//! `deploy:<instance>`, `cmd:<instance>:<n>` (n = the instance's command
//! count, so the same command sequence gets the same sources).

pub use grodt_kit::journal::{StoredEvent, event_id};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use grodt_bus::consumer::{BatchFailure, Handler, HandlerError};
use grodt_bus::{ConsumerName, Delivery, EventBus, GroupName, StreamName};
use grodt_paper::instruments::Instruments;
use grodt_proto::topic::{self, Outgoing, Topic};
use grodt_proto::v1;
use grodt_store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard};
use tracing::Instrument;
use uuid::Uuid;

use crate::convert::{report_from_proto, side_name, ticket_to_spec, ts_to_proto};
use crate::error::StrategySvcError;
use crate::metrics::StrategyMetrics;
use crate::state::{Output, Record, State};

/// Execution reports in.
pub const REPORTS_STREAM: &str = <v1::ExecutionReportEvent as Topic>::STREAM;
/// Risk events in (ORDER_REJECTED is used).
pub const RISK_STREAM: &str = <v1::RiskEvent as Topic>::STREAM;
/// Regime changes in.
pub const REGIMES_STREAM: &str = <v1::RegimeEvent as Topic>::STREAM;
/// Order intents out.
pub const INTENTS_STREAM: &str = <v1::OrderIntentEvent as Topic>::STREAM;
/// The consumer group on the input streams.
pub const GROUP: &str = "strategy";
/// The consumer's name in the store's journal.
pub const JOURNAL: &str = "strategy";
const COMMAND: &str = "command";

/// The envelope id of the intent of `client_order_id`.
#[must_use]
pub fn intent_event_id(client_order_id: &str, decision_ts: i64) -> Uuid {
    event_id(decision_ts, &format!("strategy:intent:{client_order_id}"))
}

/// What one input produced, as journaled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Intents (orders and cancellations) to publish.
    pub events: Vec<StoredEvent>,
    /// Cancellations decided: `(instance, client order id)`, also among
    /// `events` (kept for the record and for journals written before
    /// cancellations travelled as events).
    #[serde(default)]
    pub cancels: Vec<(String, String)>,
}

/// The envelope id of the cancellation of `client_order_id`: one per order,
/// so a second decision to cancel it is the same event.
#[must_use]
pub fn cancel_event_id(client_order_id: &str, at_ns: i64) -> Uuid {
    event_id(at_ns, &format!("strategy:cancel:{client_order_id}"))
}

fn stored_event<T: Topic>(event: &T, id: Uuid, at_ns: i64) -> StoredEvent {
    let out = Outgoing::new(event);
    StoredEvent::new(out.stream(), out.event_type(), id, at_ns, &out.payload())
}

fn stored(outputs: &[Output]) -> Stored {
    let mut s = Stored::default();
    for o in outputs {
        match o {
            Output::Intent(t) => {
                let ev = v1::OrderIntentEvent {
                    order: Some(ticket_to_spec(t)),
                    decision_bar_time: Some(ts_to_proto(t.decision_ts)),
                    reason: format!("strategy instance {}", t.strategy_id),
                    cancel: None,
                };
                let id = intent_event_id(&t.client_order_id, t.decision_ts);
                s.events.push(stored_event(&ev, id, t.decision_ts));
            }
            Output::Cancel {
                instance_id,
                client_order_id,
                symbol,
                decision_ts,
                at_ns,
            } => {
                let ev = v1::OrderIntentEvent {
                    order: None,
                    decision_bar_time: decision_ts.map(ts_to_proto),
                    reason: format!("strategy instance {instance_id} cancels"),
                    cancel: Some(v1::OrderCancel {
                        client_order_id: client_order_id.clone(),
                        strategy_id: instance_id.clone(),
                        symbol: symbol.clone(),
                    }),
                };
                let id = cancel_event_id(client_order_id, *at_ns);
                s.events.push(stored_event(&ev, id, *at_ns));
                s.cancels
                    .push((instance_id.clone(), client_order_id.clone()));
            }
        }
    }
    s
}

fn stream(name: &str) -> Result<StreamName, StrategySvcError> {
    Ok(StreamName::parse(name)?)
}

/// Wall-clock ns, for command records only (journaled with them).
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// A record of a batch folded into the state, waiting for the batch's commit.
struct StagedRecord {
    /// Its index in the batch.
    at: usize,
    source: String,
    label: &'static str,
    record: Record,
    outputs: Vec<Output>,
    stored: Stored,
}

/// The state and whether it must be rebuilt from the journal.
pub struct Core {
    /// The fold.
    pub state: State,
    stale: bool,
    /// Journaled inputs whose intents could not be published: published
    /// again before the next input.
    unpublished: Vec<String>,
}

/// The engine: the state behind one mutex, the store, the bus.
pub struct Engine {
    store: Store,
    bus: Arc<dyn EventBus>,
    metrics: StrategyMetrics,
    instruments: Instruments,
    consumer: ConsumerName,
    core: Mutex<Core>,
    drain: AtomicBool,
}

impl Engine {
    /// An engine with an empty state; call [`Engine::lock`] (which replays
    /// the journal) before use.
    pub fn new(
        store: Store,
        bus: Arc<dyn EventBus>,
        metrics: StrategyMetrics,
        instruments: Instruments,
        consumer: ConsumerName,
    ) -> Self {
        Self {
            store,
            bus,
            metrics,
            core: Mutex::new(Core {
                state: State::new(instruments.clone()),
                stale: true,
                unpublished: Vec::new(),
            }),
            instruments,
            consumer,
            drain: AtomicBool::new(true),
        }
    }

    /// The instruments.
    pub const fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    /// The metrics.
    pub const fn metrics(&self) -> &StrategyMetrics {
        &self.metrics
    }

    async fn replay(&self) -> Result<State, StrategySvcError> {
        let started = Instant::now();
        let mut state = State::new(self.instruments.clone());
        let (mut after, mut n) = (0i64, 0i64);
        loop {
            let page = self.store.journal().scan(JOURNAL, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in &page {
                let rec: Record = serde_json::from_slice(&e.input).map_err(|err| {
                    StrategySvcError::Corrupt(format!(
                        "journal entry {} ({}): {err}",
                        e.seq, e.source
                    ))
                })?;
                state.apply(&rec);
                n += 1;
            }
        }
        let ms = started.elapsed().as_millis();
        self.metrics.replayed.set(n);
        self.metrics
            .replay_ms
            .set(i64::try_from(ms).unwrap_or(i64::MAX));
        tracing::info!(
            entries = n,
            instances = state.instances.len(),
            ms,
            "strategy state rebuilt from the journal"
        );
        Ok(state)
    }

    /// The state, rebuilt first if a failure left it stale (or at start).
    ///
    /// # Errors
    /// The journal could not be read.
    pub async fn lock(&self) -> Result<MutexGuard<'_, Core>, StrategySvcError> {
        let mut core = self.core.lock().await;
        if core.stale {
            core.state = self.replay().await?;
            core.stale = false;
            self.metrics.observe(&core.state);
        }
        Ok(core)
    }

    /// Applies one record under the lock: journal look-up, fold, journal
    /// append and commit, publish. Returns the outputs (empty for a
    /// redelivery).
    async fn run(
        &self,
        core: &mut Core,
        source: &str,
        label: &str,
        rec: &Record,
    ) -> Result<Vec<Output>, StrategySvcError> {
        self.publish_unpublished(core).await?;
        if let Some(entry) = self.store.journal().get(JOURNAL, source).await? {
            self.republish(&entry.outputs).await?;
            self.metrics
                .inputs
                .with_label_values(&[label, "duplicate"])
                .inc();
            return Ok(Vec::new());
        }
        let outputs = core.state.apply(rec);
        // The state has moved: until the commit, any failure must rebuild it.
        let committed = async {
            let s = stored(&outputs);
            let input =
                serde_json::to_vec(rec).map_err(|e| StrategySvcError::Corrupt(e.to_string()))?;
            let out =
                serde_json::to_vec(&s).map_err(|e| StrategySvcError::Corrupt(e.to_string()))?;
            // One statement, committed on its own: one round trip.
            let seq = self
                .store
                .journal_append(JOURNAL, source, &input, &out)
                .await?;
            Ok::<_, StrategySvcError>((seq, s))
        }
        .await;
        let s = match committed {
            Ok((Some(_), s)) => s,
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
        self.count(rec, &outputs);
        self.metrics.observe(&core.state);
        if let Err(e) = self.publish_all(&s.events).await {
            core.unpublished.push(source.to_owned());
            return Err(e);
        }
        Ok(outputs)
    }

    /// Publishes again the intents of journaled inputs whose publication
    /// failed, before anything newer.
    async fn publish_unpublished(&self, core: &mut Core) -> Result<(), StrategySvcError> {
        while let Some(earlier) = core.unpublished.first().cloned() {
            if let Some(entry) = self.store.journal().get(JOURNAL, &earlier).await? {
                self.republish(&entry.outputs).await?;
            }
            core.unpublished.remove(0);
        }
        Ok(())
    }

    /// Reports read together, in stream order, with **one commit** for all
    /// (group commit): one journal look-up for the batch, each new report
    /// folded in order (staged), then all of them journaled in one
    /// transaction, then their intents published in order. A journaled
    /// report (a redelivery) first flushes what is staged, so the journal
    /// keeps the order of the fold. The same effects, intents and ids as one
    /// report at a time ([`Engine::run`]); at most one `fdatasync` per batch.
    ///
    /// # Errors
    /// `(k, error)`: reports before `k` are done; the one at `k` failed, and
    /// it and those behind it must be handled again (the state is rebuilt
    /// first if the fold moved past what was committed).
    pub async fn on_reports(&self, ds: &[Delivery]) -> Result<(), (usize, StrategySvcError)> {
        let label = REPORTS_STREAM;
        let mut core = self.lock().await.map_err(|e| (0, e))?;
        self.publish_unpublished(&mut core)
            .await
            .map_err(|e| (0, e))?;
        let sources: Vec<String> = ds
            .iter()
            .map(|d| format!("report:{}", d.envelope.event_id))
            .collect();
        let mut journaled = grodt_kit::journal::journaled_among(&self.store, JOURNAL, &sources)
            .await
            .map_err(|e| (0, StrategySvcError::from(e)))?;
        let mut staged = Vec::new();
        for (k, (d, source)) in ds.iter().zip(sources).enumerate() {
            let span = input_span(Kind::Reports, d);
            let event = match topic::decode::<v1::ExecutionReportEvent>(
                &d.envelope.event_type,
                d.envelope.payload.as_ref(),
            ) {
                Ok(e) => e,
                Err(e) => {
                    let _ = self.invalid(label, d, &format!("undecodable: {e}"));
                    continue;
                }
            };
            let (report, timeframe) = match report_from_proto(&event, &self.instruments) {
                Ok(r) => r,
                Err(e) => {
                    let _ = self.invalid(label, d, &e.to_string());
                    continue;
                }
            };
            // A second delivery of a source this batch staged: as one at a
            // time, it finds that one journaled and republishes it.
            let entry = if staged.iter().any(|s: &StagedRecord| s.source == source) {
                self.flush(&mut core, &mut staged).await?;
                self.store
                    .journal()
                    .get(JOURNAL, &source)
                    .await
                    .map_err(|e| (k, StrategySvcError::from(e)))?
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
            let rec = Record::Report { report, timeframe };
            // The intents carry the report's trace: stored in its span.
            let (outputs, stored) = {
                let _in = span.enter();
                let outputs = core.state.apply(&rec);
                let s = stored(&outputs);
                (outputs, s)
            };
            staged.push(StagedRecord {
                at: k,
                source,
                label,
                record: rec,
                outputs,
                stored,
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
    /// before the next input); or, `k` the first of the batch, its intents
    /// not all published (they are published again before the next input).
    async fn flush(
        &self,
        core: &mut Core,
        staged: &mut Vec<StagedRecord>,
    ) -> Result<(), (usize, StrategySvcError)> {
        let Some(first) = staged.first().map(|s| s.at) else {
            return Ok(());
        };
        let batch = std::mem::take(staged);
        let entries: Vec<_> = batch
            .iter()
            .map(|s| (s.source.as_str(), &s.record, &s.stored))
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
        let events = batch.iter().flat_map(|s| &s.stored.events);
        if let Err(e) = self.publish_all(events).await {
            core.unpublished
                .extend(batch.iter().map(|s| s.source.clone()));
            return Err((first, e));
        }
        Ok(())
    }

    fn count(&self, rec: &Record, outputs: &[Output]) {
        if let Record::Refused { instance_id, .. } = rec {
            self.metrics
                .rejections
                .with_label_values(&[instance_id])
                .inc();
        }
        for o in outputs {
            match o {
                Output::Intent(t) => {
                    self.metrics
                        .intents
                        .with_label_values(&[&t.strategy_id, side_name(t.side)])
                        .inc();
                }
                Output::Cancel {
                    instance_id,
                    client_order_id,
                    ..
                } => {
                    self.metrics.cancels.with_label_values(&[instance_id]).inc();
                    tracing::info!(instance = %instance_id, %client_order_id,
                        "cancellation sent on its way to execution");
                }
            }
        }
    }

    async fn republish(&self, outputs: &[u8]) -> Result<(), StrategySvcError> {
        let s: Stored = serde_json::from_slice(outputs)
            .map_err(|e| StrategySvcError::Corrupt(format!("journaled outputs: {e}")))?;
        self.publish_all(&s.events).await
    }

    async fn publish_all<'a>(
        &self,
        events: impl IntoIterator<Item = &'a StoredEvent>,
    ) -> Result<(), StrategySvcError> {
        Ok(grodt_kit::journal::publish_all(&self.bus, events).await?)
    }

    /// A gRPC (or configuration) command: `decide` sees the state under the
    /// lock and returns the record to journal with its source (None: nothing
    /// to change); `reply` reads the state after it.
    ///
    /// # Errors
    /// `decide`'s error, or the store or the bus failed.
    pub async fn command<T>(
        &self,
        decide: impl FnOnce(&State, i64) -> Result<Option<(String, Record)>, StrategySvcError>,
        reply: impl FnOnce(&State) -> Result<T, StrategySvcError>,
    ) -> Result<T, StrategySvcError> {
        let mut core = self.lock().await?;
        if let Some((source, rec)) = decide(&core.state, now_ns())? {
            self.run(&mut core, &source, COMMAND, &rec).await?;
        }
        reply(&core.state)
    }

    /// Reads the state.
    ///
    /// # Errors
    /// The journal could not be read (a rebuild was due).
    pub async fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T, StrategySvcError> {
        let core = self.lock().await?;
        Ok(f(&core.state))
    }

    async fn on_report(&self, d: &Delivery) -> Result<(), StrategySvcError> {
        let label = REPORTS_STREAM;
        let event = match topic::decode::<v1::ExecutionReportEvent>(
            &d.envelope.event_type,
            d.envelope.payload.as_ref(),
        ) {
            Ok(e) => e,
            Err(e) => return self.invalid(label, d, &format!("undecodable: {e}")),
        };
        let (report, timeframe) = match report_from_proto(&event, &self.instruments) {
            Ok(r) => r,
            Err(e) => return self.invalid(label, d, &e.to_string()),
        };
        let source = format!("report:{}", d.envelope.event_id);
        let mut core = self.lock().await?;
        self.run(
            &mut core,
            &source,
            label,
            &Record::Report { report, timeframe },
        )
        .await?;
        Ok(())
    }

    async fn on_risk(&self, d: &Delivery) -> Result<(), StrategySvcError> {
        let label = RISK_STREAM;
        let event = match topic::decode::<v1::RiskEvent>(
            &d.envelope.event_type,
            d.envelope.payload.as_ref(),
        ) {
            Ok(e) => e,
            Err(e) => return self.invalid(label, d, &format!("undecodable: {e}")),
        };
        if event.kind != v1::RiskEventKind::OrderRejected as i32 {
            return Ok(());
        }
        let Some(order) = event.order.as_ref() else {
            return self.invalid(label, d, "order: required on ORDER_REJECTED");
        };
        let rec = Record::Refused {
            instance_id: order.strategy_id.clone(),
            client_order_id: order.client_order_id.clone(),
            reason: event.message.clone(),
        };
        let mut core = self.lock().await?;
        if !core.state.instances.contains_key(&order.strategy_id) {
            // Not one of ours (a manual order or another service's).
            return Ok(());
        }
        let source = format!("risk:{}", d.envelope.event_id);
        self.run(&mut core, &source, label, &rec).await?;
        Ok(())
    }

    async fn on_regime(&self, d: &Delivery) -> Result<(), StrategySvcError> {
        let label = REGIMES_STREAM;
        let event = match topic::decode::<v1::RegimeEvent>(
            &d.envelope.event_type,
            d.envelope.payload.as_ref(),
        ) {
            Ok(e) => e,
            Err(e) => return self.invalid(label, d, &format!("undecodable: {e}")),
        };
        let Some(state) = event.state.as_ref() else {
            return self.invalid(label, d, "state: required");
        };
        let rec = Record::Regime {
            symbol: state.symbol.clone(),
            timeframe: state.timeframe,
            regime: state.regime,
        };
        let mut core = self.lock().await?;
        let known = core
            .state
            .regimes
            .get(&(state.symbol.clone(), state.timeframe))
            == Some(&state.regime);
        if known {
            // A heartbeat or a repeat changes nothing: not journaled.
            return Ok(());
        }
        let source = format!("regime:{}", d.envelope.event_id);
        self.run(&mut core, &source, label, &rec).await?;
        Ok(())
    }

    /// An event that cannot be applied: logged, counted, acked (always `Ok`).
    fn invalid(&self, label: &str, d: &Delivery, why: &str) -> Result<(), StrategySvcError> {
        tracing::warn!(stream = label, event_id = %d.envelope.event_id, reason = why, "event ignored");
        self.metrics
            .inputs
            .with_label_values(&[label, "invalid"])
            .inc();
        Ok(())
    }

    /// Applies every pending report of the group, oldest first (any
    /// consumer's, idle or not), acking each; then newer reports may follow.
    ///
    /// # Errors
    /// A report could not be applied (it stays pending; the drain is tried
    /// again with the next report).
    pub async fn drain_reports(&self) -> Result<usize, StrategySvcError> {
        let (s, g) = (stream(REPORTS_STREAM)?, GroupName::parse(GROUP)?);
        let mut n = 0;
        loop {
            let batch = self
                .bus
                .claim_stale(&s, &g, &self.consumer, Duration::ZERO, 64)
                .await?;
            if batch.is_empty() {
                break;
            }
            for d in &batch {
                // Each report in its own trace: the intents it decides
                // continue that report's trace, not the trace of whichever
                // delivery (or start-up) set off the drain.
                self.on_report(d)
                    .instrument(input_span(Kind::Reports, d))
                    .await?;
                self.bus.ack(&s, &g, &[d.entry_id]).await?;
                n += 1;
            }
        }
        self.drain.store(false, Ordering::SeqCst);
        if n > 0 {
            tracing::info!(reports = n, "pending execution reports applied in order");
        }
        Ok(n)
    }
}

impl Engine {
    /// Sets the consumer-lag gauges every `every` until `stop` turns true.
    pub async fn watch_lag(&self, every: Duration, stop: tokio::sync::watch::Receiver<bool>) {
        let streams = [REPORTS_STREAM, RISK_STREAM, REGIMES_STREAM];
        grodt_kit::lag::watch(&*self.bus, &streams, GROUP, &self.metrics.lag, every, stop).await;
    }
}

/// Which stream a [`StreamHandler`] consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `grodt.execution-reports.v1`.
    Reports,
    /// `grodt.risk-events.v1`.
    Risk,
    /// `grodt.regimes.v1`.
    Regimes,
}

/// The span handling one event of `kind`, parented on the envelope's trace context.
fn input_span(kind: Kind, delivery: &Delivery) -> tracing::Span {
    let name = match kind {
        Kind::Reports => "strategy.report",
        Kind::Risk => "strategy.risk_event",
        Kind::Regimes => "strategy.regime",
    };
    let span = tracing::info_span!(
        "strategy.input",
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
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let span = input_span(self.1, delivery);
        let started = Instant::now();
        let engine = &self.0;
        let result = async {
            match self.1 {
                Kind::Reports => {
                    if engine.drain.load(Ordering::SeqCst) {
                        // This delivery is pending too: the drain applies it in order.
                        return engine.drain_reports().await.map(|_| ());
                    }
                    let r = engine.on_report(delivery).await;
                    if r.is_err() {
                        engine.drain.store(true, Ordering::SeqCst);
                    }
                    r
                }
                Kind::Risk => engine.on_risk(delivery).await,
                Kind::Regimes => engine.on_regime(delivery).await,
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

    /// Reports in one commit ([`Engine::on_reports`]); the other streams one
    /// event at a time.
    async fn handle_batch(&self, deliveries: &[Delivery]) -> Result<(), BatchFailure> {
        let engine = &self.0;
        if self.1 != Kind::Reports || deliveries.len() < 2 || engine.drain.load(Ordering::SeqCst) {
            for (done, d) in deliveries.iter().enumerate() {
                self.handle(d)
                    .await
                    .map_err(|error| BatchFailure { done, error })?;
            }
            return Ok(());
        }
        let started = Instant::now();
        let result = engine.on_reports(deliveries).await;
        if result.is_err() {
            // What is left is applied in order by the drain.
            engine.drain.store(true, Ordering::SeqCst);
        }
        let took = started.elapsed().as_secs_f64();
        for _ in deliveries {
            engine.metrics.handling.observe(took);
        }
        result.map_err(|(done, e)| BatchFailure {
            done,
            error: Box::new(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_ids_are_deterministic() {
        let a = intent_event_id("sma-1-3", 1_700_000_000_000_000_000);
        assert_eq!(a, intent_event_id("sma-1-3", 1_700_000_000_000_000_000));
        assert_ne!(a, intent_event_id("sma-1-4", 1_700_000_000_000_000_000));
        assert_eq!(a.get_version_num(), 7);
    }

    #[test]
    fn a_cancellation_is_an_intent_event_with_cancel_set() {
        let out = stored(&[Output::Cancel {
            instance_id: "sma-1".into(),
            client_order_id: "sma-1-3".into(),
            symbol: "SPY".into(),
            decision_ts: Some(1_700_000_000_000_000_000),
            at_ns: 1_700_000_000_000_000_000,
        }]);
        assert_eq!(out.cancels, [("sma-1".to_owned(), "sma-1-3".to_owned())]);
        let [e] = &out.events[..] else {
            panic!("one event: {out:?}")
        };
        assert_eq!(e.stream, <v1::OrderIntentEvent as Topic>::STREAM);
        assert_eq!(
            e.event_id,
            cancel_event_id("sma-1-3", 1_700_000_000_000_000_000)
        );
        assert_ne!(
            e.event_id,
            intent_event_id("sma-1-3", 1_700_000_000_000_000_000),
            "not the order's own intent id"
        );
        let env = e.envelope().unwrap();
        let ev: v1::OrderIntentEvent =
            topic::decode(&env.event_type, env.payload.as_ref()).unwrap();
        assert_eq!(ev.order, None);
        assert_eq!(
            ev.cancel,
            Some(v1::OrderCancel {
                client_order_id: "sma-1-3".into(),
                strategy_id: "sma-1".into(),
                symbol: "SPY".into(),
            })
        );
        assert_eq!(
            ev.decision_bar_time,
            Some(ts_to_proto(1_700_000_000_000_000_000))
        );
        // An operator's Stop: no decision bar (never counted late).
        let stop = stored(&[Output::Cancel {
            instance_id: "sma-1".into(),
            client_order_id: "sma-1-3".into(),
            symbol: "SPY".into(),
            decision_ts: None,
            at_ns: 5,
        }]);
        let env = stop.events[0].envelope().unwrap();
        let ev: v1::OrderIntentEvent =
            topic::decode(&env.event_type, env.payload.as_ref()).unwrap();
        assert_eq!(ev.decision_bar_time, None);
    }
}
