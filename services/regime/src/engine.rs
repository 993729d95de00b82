//! The bar consumer: one `grodt_regimes::Classifier` per (symbol, timeframe),
//! fed from `grodt.bars.v1` in the `regime` consumer group; regime changes
//! (and heartbeats) published on `grodt.regimes.v1`.
//!
//! The persistence contract (docs/regimes.md, "The regime service"): for each
//! bar, the classifier state after it, the regime change it caused (if any)
//! and the bar's processed mark commit in one transaction; the bar is acked
//! only after that commit and the publish. A redelivered bar finds its mark
//! and changes nothing (its change, if any, is published again under the same
//! event id); a bar whose handling failed blocks the later bars of its symbol
//! until it succeeds, so no bar is skipped by the classifier's "not after the
//! last bar" rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use grodt_bus::consumer::{Handler, HandlerError};
use grodt_bus::{ConsumerName, Delivery, EntryId, EventBus, GroupName, StreamName};
use grodt_proto::topic::{self, Outgoing, Topic};
use grodt_proto::v1;
use grodt_regimes::{Classifier, Decision, RegimeConfig};
use grodt_store::{NewRegimeChange, Store};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

use crate::convert::{
    bar_from_proto, bar_scales, decision_to_state, regime_to_proto, timeframe_label,
};
use crate::error::RegimeSvcError;
use crate::metrics::RegimeMetrics;

/// The stream bars arrive on (the stream of `BarEvent`, from grodt-proto's topic table).
pub const BARS_STREAM: &str = <v1::BarEvent as Topic>::STREAM;
/// The stream regime events are published on (the stream of `RegimeEvent`).
pub const REGIMES_STREAM: &str = <v1::RegimeEvent as Topic>::STREAM;
/// The consumer group (and the processed-events consumer name).
pub const GROUP: &str = "regime";

/// What the consumer needs from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// The classifier of every new (symbol, timeframe).
    pub classifier: RegimeConfig,
    /// Decimal places prices are read at (bars with more are rejected).
    pub price_precision: u8,
    /// Decimal places volumes are read at (bars with more are rejected).
    pub volume_precision: u8,
    /// Publish a heartbeat when a decision without a change comes at least
    /// this many minutes of bar time after the last event of the symbol; 0 = never.
    pub heartbeat_minutes: u32,
}

/// What is stored per (symbol, timeframe) (`regime_states.state`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persisted {
    /// The classifier, whole (grodt-regimes' persistence contract), kept
    /// as its JSON text: its exact `i128` sums do not fit a JSON value's
    /// 64-bit numbers.
    #[serde(with = "json_text")]
    pub classifier: Classifier,
    /// Decimal places of the raw prices the classifier holds.
    pub price_precision: u8,
    /// Decimal places of the raw volumes the classifier holds.
    pub volume_precision: u8,
    /// Bar time the regime in force began (its first decision).
    pub since_ns: Option<i64>,
    /// The last decision.
    pub last: Option<Decision>,
    /// Bar time of the last event published for this key (change or heartbeat).
    pub announced_ns: Option<i64>,
    /// Bars taken (not ignored).
    pub bars: u64,
}

impl Persisted {
    fn new(s: &EngineSettings) -> Result<Self, RegimeSvcError> {
        Ok(Self {
            classifier: Classifier::new(s.classifier.clone(), s.price_precision)
                .map_err(|e| crate::convert::config_error("regime.classifier", &e))?,
            price_precision: s.price_precision,
            volume_precision: s.volume_precision,
            since_ns: None,
            last: None,
            announced_ns: None,
            bars: 0,
        })
    }

    /// Reads a stored state.
    ///
    /// # Errors
    /// A state this build cannot read (Internal).
    pub fn from_json(v: &serde_json::Value) -> Result<Self, RegimeSvcError> {
        serde_json::from_value(v.clone())
            .map_err(|e| RegimeSvcError::Corrupt(format!("stored regime state: {e}")))
    }
}

/// A value stored as the text of its JSON form (exact for `i128`).
mod json_text {
    use serde::de::{DeserializeOwned, Error as _};
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        serde_json::to_string(v)
            .map_err(S::Error::custom)?
            .serialize(s)
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(D::Error::custom)
    }
}

type Key = (String, String);

/// The consumer's state: the classifiers in memory (a cache of the store),
/// and the keys whose handling failed.
pub struct Engine {
    /// Classifier states, changes and processed marks.
    pub store: Store,
    /// Bars in, regimes out.
    pub bus: Arc<dyn EventBus>,
    settings: EngineSettings,
    metrics: RegimeMetrics,
    slots: tokio::sync::Mutex<HashMap<Key, Persisted>>,
    /// Key -> the entry whose handling failed; later entries of the key wait.
    blocked: Mutex<HashMap<Key, EntryId>>,
}

/// What one bar did, for the log and the metrics.
enum Outcome {
    Decided,
    WarmingUp,
    NotEvaluated,
    Ignored,
}

impl Outcome {
    const fn label(&self) -> &'static str {
        match self {
            Self::Decided => "decided",
            Self::WarmingUp => "warming_up",
            Self::NotEvaluated => "not_evaluated",
            Self::Ignored => "ignored",
        }
    }
}

fn stream(name: &str) -> Result<StreamName, RegimeSvcError> {
    StreamName::parse(name).map_err(RegimeSvcError::from)
}

impl Engine {
    /// A consumer over `store` and `bus`.
    pub fn new(
        store: Store,
        bus: Arc<dyn EventBus>,
        settings: EngineSettings,
        metrics: RegimeMetrics,
    ) -> Self {
        Self {
            store,
            bus,
            settings,
            metrics,
            slots: tokio::sync::Mutex::new(HashMap::new()),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    fn is_blocked(&self, key: &Key, entry: EntryId) -> bool {
        self.blocked
            .lock()
            .map(|b| b.get(key).is_some_and(|at| entry > *at))
            .unwrap_or(false)
    }

    fn set_blocked(&self, key: &Key, entry: EntryId, failed: bool) {
        if let Ok(mut b) = self.blocked.lock() {
            if failed {
                let at = b.entry(key.clone()).or_insert(entry);
                *at = (*at).min(entry);
            } else if b.get(key) == Some(&entry) {
                b.remove(key);
            }
        }
    }

    /// Handles one delivery of `grodt.bars.v1`.
    ///
    /// # Errors
    /// The store or the bus failed (the entry stays pending), or an earlier
    /// bar of the same key is still pending after a failure.
    pub async fn handle(&self, delivery: &Delivery) -> Result<(), RegimeSvcError> {
        let started = Instant::now();
        let event_id = delivery.envelope.event_id.to_string();
        let event = match topic::decode::<v1::BarEvent>(
            &delivery.envelope.event_type,
            delivery.envelope.payload.as_ref(),
        ) {
            Ok(e) => e,
            Err(e) => return self.reject(&event_id, &format!("undecodable: {e}")).await,
        };
        let Some(bar) = event.bar else {
            return self.reject(&event_id, "bar: required").await;
        };
        let tf = v1::Timeframe::try_from(bar.timeframe)
            .ok()
            .and_then(timeframe_label);
        let (symbol, Some(tf)) = (bar.symbol.clone(), tf) else {
            return self
                .reject(&event_id, "bar.timeframe: unspecified or unknown")
                .await;
        };
        if symbol.is_empty() {
            return self.reject(&event_id, "bar.symbol: required").await;
        }
        let key = (symbol, tf.to_owned());
        if self.is_blocked(&key, delivery.entry_id) {
            return Err(RegimeSvcError::Precondition(format!(
                "an earlier bar of {} {} is pending; this one waits for it",
                key.0, key.1
            )));
        }
        let result = self.apply(&key, &bar, &event_id).await;
        self.set_blocked(&key, delivery.entry_id, result.is_err());
        self.metrics
            .handling
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Marks an invalid bar processed (so it is acked, never retried) and logs it.
    async fn reject(&self, event_id: &str, why: &str) -> Result<(), RegimeSvcError> {
        tracing::warn!(event_id, reason = why, "bar rejected");
        self.metrics.bars.with_label_values(&["rejected"]).inc();
        self.store
            .processed_events()
            .mark_processed(GROUP, event_id)
            .await?;
        Ok(())
    }

    async fn load(&self, key: &Key) -> Result<Persisted, RegimeSvcError> {
        match self.store.regimes().get_state(&key.0, &key.1).await? {
            Some(row) => Persisted::from_json(&row.state),
            None => Persisted::new(&self.settings),
        }
    }

    async fn apply(&self, key: &Key, bar: &v1::Bar, event_id: &str) -> Result<(), RegimeSvcError> {
        let mut slots = self.slots.lock().await;
        let slot = match slots.get(key) {
            Some(s) => s.clone(),
            None => {
                let s = self.load(key).await?;
                slots.insert(key.clone(), s.clone());
                s
            }
        };
        let scales_ok = bar_scales("bar", bar).and_then(|(p, v)| {
            if p > slot.price_precision || v > slot.volume_precision {
                Err(RegimeSvcError::invalid(
                    "bar",
                    format!(
                        "written with {p} price / {v} volume decimals; the service reads \
                         {} / {} (regime.price_precision, regime.volume_precision)",
                        slot.price_precision, slot.volume_precision
                    ),
                ))
            } else {
                Ok(())
            }
        });
        let domain = match scales_ok
            .and_then(|()| bar_from_proto("bar", bar, slot.price_precision, slot.volume_precision))
        {
            Ok(b) => b,
            Err(e) => {
                drop(slots);
                return self.reject(event_id, &e.to_string()).await;
            }
        };
        let mut next = slot.clone();
        let ignored = slot.classifier.last_ts().is_some_and(|t| domain.ts <= t);
        let clock = Instant::now();
        let decision = next.classifier.on_bar(&domain);
        let eval_secs = clock.elapsed().as_secs_f64();
        let outcome = match (&decision, ignored) {
            (_, true) => Outcome::Ignored,
            (Some(_), false) => Outcome::Decided,
            (None, false) if next.classifier.decisions() == 0 => Outcome::WarmingUp,
            (None, false) => Outcome::NotEvaluated,
        };
        if !ignored {
            next.bars += 1;
        }
        let mut change: Option<NewRegimeChange> = None;
        let mut heartbeat = false;
        if let Some(d) = &decision {
            self.metrics.evaluation.observe(eval_secs);
            if d.changed {
                next.since_ns = Some(d.ts);
                next.announced_ns = Some(d.ts);
                change = Some(NewRegimeChange {
                    symbol: key.0.clone(),
                    timeframe: key.1.clone(),
                    ts_ns: d.ts,
                    regime: d.regime.name().to_owned(),
                    previous: slot.last.as_ref().map(|l| l.regime.name().to_owned()),
                    event_id: Uuid::now_v7(),
                    source_event_id: event_id.to_owned(),
                    decision: serde_json::to_value(d)
                        .map_err(|e| RegimeSvcError::Corrupt(e.to_string()))?,
                });
            } else if self.settings.heartbeat_minutes > 0 {
                let every = i64::from(self.settings.heartbeat_minutes) * 60_000_000_000;
                let last = next.announced_ns.or(next.since_ns).unwrap_or(d.ts);
                if d.ts.saturating_sub(last) >= every {
                    heartbeat = true;
                    next.announced_ns = Some(d.ts);
                }
            }
            next.last = Some(*d);
        }
        let committed = if ignored {
            self.store
                .processed_events()
                .mark_processed(GROUP, event_id)
                .await?
                .then_some(())
        } else {
            let state =
                serde_json::to_value(&next).map_err(|e| RegimeSvcError::Corrupt(e.to_string()))?;
            let regime = next.last.as_ref().map(|d| d.regime.name());
            let (sym, tf, ch) = (key.0.clone(), key.1.clone(), change.clone());
            self.store
                .process_once(GROUP, event_id, move |tx| {
                    Box::pin(async move {
                        tx.put_regime_state(&sym, &tf, regime, &state).await?;
                        if let Some(c) = &ch {
                            tx.add_regime_change(c).await?;
                        }
                        Ok::<_, grodt_store::StoreError>(())
                    })
                })
                .await?
        };
        if committed.is_none() {
            // Handled by an earlier life of this service: the store is the
            // truth; publish the change it recorded again (same event id).
            slots.remove(key);
            drop(slots);
            tracing::debug!(event_id, "bar already processed");
            if let Some(c) = self.store.regimes().change_of_source(event_id).await? {
                self.publish_change(&c.data).await?;
            }
            return Ok(());
        }
        slots.insert(key.clone(), next.clone());
        drop(slots);
        self.metrics
            .bars
            .with_label_values(&[outcome.label()])
            .inc();
        if let Some(d) = &decision {
            self.record(key, d, eval_secs);
        }
        if let Some(c) = &change {
            self.publish_change(c).await?;
        } else if heartbeat && let (Some(d), Some(since)) = (&decision, next.since_ns) {
            let event = v1::RegimeEvent {
                state: Some(decision_to_state(&key.0, &key.1, d, since)),
                previous: regime_to_proto(d.regime) as i32,
                heartbeat: true,
            };
            self.publish(&event, Uuid::now_v7(), d.ts).await?;
            self.metrics.heartbeats.inc();
        }
        Ok(())
    }

    /// Logs a decision with its inputs and updates the metrics.
    fn record(&self, key: &Key, d: &Decision, eval_secs: f64) {
        let i = &d.inputs;
        tracing::info!(
            symbol = %key.0,
            timeframe = %key.1,
            bar_ts = d.ts,
            seq = d.seq,
            regime = d.regime.name(),
            changed = d.changed,
            held = d.held,
            candidate = d.candidate.name(),
            rule = ?d.rule,
            slope = i.slope,
            atr_percentile = i.atr_percentile,
            vol_ratio = i.vol_ratio,
            vol_short = i.vol_short,
            vol_long = i.vol_long,
            atr_rel = i.atr_rel,
            vwap = i.vwap,
            close = %i.close,
            slope_trend = d.thresholds.slope_trend,
            slope_flat = d.thresholds.slope_flat,
            atr_percentile_high = d.thresholds.atr_percentile_high,
            vol_ratio_high = d.thresholds.vol_ratio_high,
            vol_ratio_range = d.thresholds.vol_ratio_range,
            eval_us = eval_secs * 1e6,
            "regime decision"
        );
        self.metrics
            .decisions
            .with_label_values(&[d.regime.name()])
            .inc();
        if d.changed {
            self.metrics
                .changes
                .with_label_values(&[d.regime.name()])
                .inc();
        }
        self.metrics.set_current(&key.0, &key.1, d.regime);
    }

    /// Publishes a recorded change under its recorded event id.
    async fn publish_change(&self, c: &NewRegimeChange) -> Result<(), RegimeSvcError> {
        let d: Decision = serde_json::from_value(c.decision.clone())
            .map_err(|e| RegimeSvcError::Corrupt(format!("stored decision: {e}")))?;
        let previous = c
            .previous
            .as_deref()
            .and_then(crate::convert::regime_from_name)
            .map_or(v1::Regime::Unspecified, regime_to_proto);
        let event = v1::RegimeEvent {
            state: Some(decision_to_state(&c.symbol, &c.timeframe, &d, c.ts_ns)),
            previous: previous as i32,
            heartbeat: false,
        };
        self.publish(&event, c.event_id, c.ts_ns).await
    }

    async fn publish(
        &self,
        event: &v1::RegimeEvent,
        event_id: Uuid,
        bar_ts: i64,
    ) -> Result<(), RegimeSvcError> {
        let out = Outgoing::new(event);
        let to = stream(out.stream())?;
        let envelope =
            grodt_kit::journal::traced_envelope(out.event_type(), event_id, bar_ts, out.payload());
        self.bus.publish(&to, &envelope).await?;
        Ok(())
    }

    /// Sets the consumer-lag gauge of the bars stream from the bus, every
    /// `every` until `stop` turns true.
    pub async fn watch_lag(&self, every: Duration, stop: tokio::sync::watch::Receiver<bool>) {
        let streams = [BARS_STREAM];
        grodt_kit::lag::watch(&*self.bus, &streams, GROUP, &self.metrics.lag, every, stop).await;
    }

    /// Handles, in stream order, every entry of the group still pending
    /// (delivered to a consumer that died, this service's earlier life
    /// included) before new bars are read, so no later bar overtakes them.
    /// Stops at the first failure (the consumer loop retries it later).
    ///
    /// # Errors
    /// The bus failed.
    pub async fn recover_pending(&self, consumer: &ConsumerName) -> Result<u64, RegimeSvcError> {
        let (bars, group) = (stream(BARS_STREAM)?, GroupName::parse(GROUP)?);
        self.bus
            .ensure_group(&bars, &group, grodt_bus::StartFrom::Beginning)
            .await?;
        let mut handled = 0u64;
        loop {
            let pending = self
                .bus
                .claim_stale(&bars, &group, consumer, Duration::ZERO, 64)
                .await?;
            if pending.is_empty() {
                return Ok(handled);
            }
            for d in &pending {
                // In the bar's trace, as the consumer would have handled it.
                if let Err(e) = self.handle(d).instrument(bar_span(d)).await {
                    tracing::warn!(entry_id = %d.entry_id, error = %e,
                        "recovering a pending bar failed; the consumer retries it");
                    return Ok(handled);
                }
                self.bus.ack(&bars, &group, &[d.entry_id]).await?;
                handled += 1;
            }
        }
    }
}

/// The span handling one bar, parented on the envelope's trace context.
fn bar_span(delivery: &Delivery) -> tracing::Span {
    let span = tracing::info_span!(
        "regime.bar",
        event_id = %delivery.envelope.event_id,
        delivery = delivery.delivery_count
    );
    grodt_kit::telemetry::follow_envelope(&span, &delivery.envelope);
    span
}

/// The consumer-group handler: one span per bar, parented on the envelope's trace context.
pub struct BarHandler(pub Arc<Engine>);

#[async_trait]
impl Handler for BarHandler {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        self.0
            .handle(delivery)
            .instrument(bar_span(delivery))
            .await
            .map_err(|e| Box::new(e) as HandlerError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_with_sums_beyond_64_bits_round_trips_through_a_json_value() {
        let settings = EngineSettings {
            classifier: RegimeConfig::default(),
            price_precision: 9,
            volume_precision: 9,
            heartbeat_minutes: 0,
        };
        let mut p = Persisted::new(&settings).unwrap();
        let big = 4_000_000_000_000_000_000i64; // 4e9 at 9 decimals
        for i in 0..30 {
            p.classifier.on_bar(&grodt_core::Bar {
                ts: i * 86_400_000_000_000,
                open: big,
                high: big + 1,
                low: big - 1,
                close: big,
                volume: 9_000_000_000_000_000_000,
            });
        }
        let v = serde_json::to_value(&p).expect("serializes");
        assert_eq!(Persisted::from_json(&v).unwrap(), p);
    }
}
