//! Replays: a dataset's bars published onto `grodt.bars.v1` as fast as the
//! bus takes them, or paced at N times real time on tokio's clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grodt_bus::{Envelope, EventBus, StreamName};
use grodt_data::Bars;
use grodt_proto::topic::{Outgoing, Topic, stream_of};
use grodt_proto::v1;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::convert::{bar, ts_to_proto};
use crate::error::MdError;
use crate::metrics::MdMetrics;

/// Finished replays kept for status queries; older ones are forgotten.
const KEEP_FINISHED: usize = 1000;

/// The stream replays publish to (the stream of `BarEvent`, from grodt-proto's topic table).
pub const BARS_STREAM: &str = <v1::BarEvent as Topic>::STREAM;

/// Where a replay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Completed,
    Stopped,
    Failed,
}

/// A replay's progress, as StartReplay/StopReplay report it.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub replay_id: String,
    pub dataset_id: String,
    pub state: State,
    pub speed: f64,
    pub published: u64,
    pub total: u64,
    pub last_bar_ns: Option<i64>,
    pub started_at_ns: i64,
    pub error: String,
}

impl Status {
    pub fn to_proto(&self) -> v1::ReplayStatus {
        let Status {
            replay_id,
            dataset_id,
            state,
            speed,
            published,
            total,
            last_bar_ns,
            started_at_ns,
            error,
        } = self;
        v1::ReplayStatus {
            replay_id: replay_id.clone(),
            dataset_id: dataset_id.clone(),
            state: match state {
                State::Running => v1::ReplayState::Running,
                State::Completed => v1::ReplayState::Completed,
                State::Stopped => v1::ReplayState::Stopped,
                State::Failed => v1::ReplayState::Failed,
            } as i32,
            speed: *speed,
            bars_published: *published,
            bars_total: *total,
            last_bar_time: last_bar_ns.map(ts_to_proto),
            started_at: Some(ts_to_proto(*started_at_ns)),
            error: error.clone(),
        }
    }
}

struct Replay {
    status: Mutex<Status>,
    stop: watch::Sender<bool>,
}

/// What a replay publishes.
pub struct Job {
    pub replay_id: String,
    pub dataset_id: String,
    pub symbol: String,
    pub timeframe: v1::Timeframe,
    pub bars: Bars,
    pub speed: f64,
    pub started_at_ns: i64,
    pub yield_every: u32,
}

/// Every replay this process started, running or finished.
#[derive(Default)]
pub struct Replays {
    all: Mutex<HashMap<String, Arc<Replay>>>,
}

impl std::fmt::Debug for Replays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replays").finish_non_exhaustive()
    }
}

fn poisoned<T>(_: T) -> MdError {
    MdError::Internal("replay registry lock poisoned".into())
}

impl Replays {
    /// The status of `replay_id` if it exists (for idempotent starts).
    pub fn status(&self, replay_id: &str) -> Result<Option<Status>, MdError> {
        let all = self.all.lock().map_err(poisoned)?;
        Ok(all
            .get(replay_id)
            .and_then(|r| r.status.lock().ok().map(|s| s.clone())))
    }

    /// Refuses a second running replay of `dataset_id`.
    pub fn check_free(&self, dataset_id: &str) -> Result<(), MdError> {
        let all = self.all.lock().map_err(poisoned)?;
        for r in all.values() {
            let s = r.status.lock().map_err(poisoned)?;
            if s.dataset_id == dataset_id && s.state == State::Running {
                return Err(MdError::Precondition(format!(
                    "dataset_id: dataset {dataset_id} is being replayed by {}; stop it first",
                    s.replay_id
                )));
            }
        }
        Ok(())
    }

    /// Starts publishing `job` in a background task; returns its first status.
    pub fn start(
        &self,
        job: Job,
        bus: Arc<dyn EventBus>,
        metrics: Arc<MdMetrics>,
    ) -> Result<Status, MdError> {
        let status = Status {
            replay_id: job.replay_id.clone(),
            dataset_id: job.dataset_id.clone(),
            state: State::Running,
            speed: job.speed,
            published: 0,
            total: job.bars.len() as u64,
            last_bar_ns: None,
            started_at_ns: job.started_at_ns,
            error: String::new(),
        };
        let (stop, stopped) = watch::channel(false);
        let replay = Arc::new(Replay {
            status: Mutex::new(status.clone()),
            stop,
        });
        {
            let mut all = self.all.lock().map_err(poisoned)?;
            // Checked again under the lock: two concurrent starts of one dataset.
            for r in all.values() {
                let s = r.status.lock().map_err(poisoned)?;
                if s.dataset_id == job.dataset_id && s.state == State::Running {
                    return Err(MdError::Precondition(format!(
                        "dataset_id: dataset {} is being replayed by {}; stop it first",
                        job.dataset_id, s.replay_id
                    )));
                }
            }
            all.insert(job.replay_id.clone(), replay.clone());
            forget_oldest_finished(&mut all);
        }
        let span =
            tracing::info_span!("replay", replay_id = %job.replay_id, dataset_id = %job.dataset_id);
        tokio::spawn(
            async move {
                let outcome = publish_all(&job, &*bus, &metrics, &replay, stopped).await;
                if let Ok(mut s) = replay.status.lock() {
                    match outcome {
                        Ok(true) => s.state = State::Completed,
                        Ok(false) => s.state = State::Stopped,
                        Err(e) => {
                            tracing::warn!(error = %e, "replay failed");
                            s.state = State::Failed;
                            s.error = e.to_string();
                        }
                    }
                }
            }
            .instrument(span),
        );
        Ok(status)
    }

    /// Stops a replay; a finished one just reports its final status.
    pub fn stop(&self, replay_id: &str) -> Result<Status, MdError> {
        let replay = self
            .all
            .lock()
            .map_err(poisoned)?
            .get(replay_id)
            .cloned()
            .ok_or_else(|| MdError::NotFound {
                what: "replay",
                id: replay_id.to_owned(),
            })?;
        let mut s = replay.status.lock().map_err(poisoned)?;
        if s.state == State::Running {
            // The task sees the flag before its next bar; the state is final now.
            let _ = replay.stop.send(true);
            s.state = State::Stopped;
        }
        Ok(s.clone())
    }
}

fn forget_oldest_finished(all: &mut HashMap<String, Arc<Replay>>) {
    let mut finished: Vec<(i64, String)> = all
        .iter()
        .filter_map(|(id, r)| {
            let s = r.status.lock().ok()?;
            (s.state != State::Running).then(|| (s.started_at_ns, id.clone()))
        })
        .collect();
    if finished.len() <= KEEP_FINISHED {
        return;
    }
    finished.sort();
    for (_, id) in &finished[..finished.len() - KEEP_FINISHED] {
        all.remove(id);
    }
}

/// Publishes one `BarEvent` on `stream` (replays and the live feed alike), stamped
/// with the bar's time and the current trace, under `event_id` when given
/// (a fresh id otherwise: a replay's bars are new events each time).
pub(crate) async fn publish_bar(
    bus: &dyn EventBus,
    stream: &StreamName,
    event: &v1::BarEvent,
    bar_ns: i64,
    event_id: Option<uuid::Uuid>,
) -> Result<(), MdError> {
    let occurred_at = chrono::DateTime::from_timestamp_nanos(bar_ns);
    let (traceparent, tracestate) = match grodt_kit::telemetry::current_traceparent() {
        Some((p, s)) => (Some(p), (!s.is_empty()).then_some(s)),
        None => (None, None),
    };
    let out = Outgoing::new(event);
    let mut envelope = Envelope::new(out.event_type(), occurred_at, out.payload())
        .with_trace(traceparent, tracestate);
    if let Some(id) = event_id {
        envelope.event_id = id;
    }
    bus.publish(stream, &envelope)
        .await
        .map_err(|e| MdError::Bus(e.to_string()))?;
    Ok(())
}

/// Publishes every bar in order; `Ok(false)` when stopped early.
async fn publish_all(
    job: &Job,
    bus: &dyn EventBus,
    metrics: &MdMetrics,
    replay: &Replay,
    mut stopped: watch::Receiver<bool>,
) -> Result<bool, MdError> {
    let stream =
        StreamName::parse(stream_of::<v1::BarEvent>()).map_err(|e| MdError::Bus(e.to_string()))?;
    let start = Instant::now();
    let first_ts = job.bars.ts.first().copied().unwrap_or(0);
    let published = metrics.bars_published.with_label_values(&[&job.symbol]);
    for i in 0..job.bars.len() {
        if *stopped.borrow() {
            return Ok(false);
        }
        let due = if job.speed > 0.0 {
            let offset = (job.bars.ts[i] - first_ts) as f64 / 1e9 / job.speed;
            let due = start + Duration::from_secs_f64(offset.max(0.0));
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                _ = stopped.wait_for(|s| *s) => return Ok(false),
            }
            Some(due)
        } else {
            None
        };
        let event = v1::BarEvent {
            bar: Some(bar(&job.bars, i, &job.symbol, job.timeframe)),
            dataset_id: job.dataset_id.clone(),
            replay_id: job.replay_id.clone(),
        };
        // Each bar is the root of its own trace (down to the fills it
        // leads to), linked to the replay's span.
        let span = tracing::info_span!(
            parent: None,
            "market_data.bar",
            symbol = %job.symbol,
            bar_ts = job.bars.ts[i],
            replay_id = %job.replay_id
        );
        grodt_kit::telemetry::link_to_current(&span);
        publish_bar(bus, &stream, &event, job.bars.ts[i], None)
            .instrument(span)
            .await?;
        published.inc();
        metrics.replay_lag.set(match due {
            Some(due) => Instant::now().saturating_duration_since(due).as_secs_f64(),
            None => 0.0,
        });
        if let Ok(mut s) = replay.status.lock() {
            if s.state != State::Running {
                return Ok(false);
            }
            s.published += 1;
            s.last_bar_ns = Some(job.bars.ts[i]);
        }
        if (i + 1) % job.yield_every as usize == 0 {
            tokio::task::yield_now().await;
        }
    }
    Ok(true)
}
