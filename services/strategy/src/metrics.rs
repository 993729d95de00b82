//! The strategy service's own metrics (names in docs/metrics.md).

use grodt_kit::KitError;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::state::{State, Status};

/// Counters and gauges of the strategy service.
#[derive(Clone)]
pub struct StrategyMetrics {
    /// Instances by `state`.
    pub instances: IntGaugeVec,
    /// Inputs handled, by `stream` (or `command`) and `outcome`.
    pub inputs: IntCounterVec,
    /// Intents published, by `strategy` (instance id) and `side`.
    pub intents: IntCounterVec,
    /// Cancellations decided and sent on the intents stream, by `strategy`.
    pub cancels: IntCounterVec,
    /// Risk rejections received, by `strategy`.
    pub rejections: IntCounterVec,
    /// Bars shown to the strategy, by `strategy` (rebuilt totals).
    pub bars: IntGaugeVec,
    /// Consumer-group lag per input stream.
    pub lag: IntGaugeVec,
    /// One input from delivery to published.
    pub handling: Histogram,
    /// Inputs journaled per commit (group commit: a batch read together).
    pub journal_batch: Histogram,
    /// Journal entries replayed at start (or after a failed commit).
    pub replayed: IntGauge,
    /// Milliseconds the last replay took.
    pub replay_ms: IntGauge,
}

/// The stream label values of `grodt_strategy_inputs_total`.
pub const STREAMS: [&str; 4] = [
    "grodt.execution-reports.v1",
    "grodt.risk-events.v1",
    "grodt.regimes.v1",
    "command",
];

impl StrategyMetrics {
    /// Registers them on the service's registry.
    ///
    /// # Errors
    /// A name clash in the registry.
    pub fn register(metrics: &grodt_kit::Metrics) -> Result<Self, KitError> {
        let m = KitError::Metrics;
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(metrics.name(name), help), labels).map_err(m)
        };
        let instances = IntGaugeVec::new(
            Opts::new(
                metrics.name("instances"),
                "strategy instances by state (deployed, running, paused, stopped, failed)",
            ),
            &["state"],
        )
        .map_err(m)?;
        let inputs = counter(
            "inputs_total",
            "inputs handled, by stream (or command) and outcome: applied, duplicate \
             (journaled before: outputs republished), invalid",
            &["stream", "outcome"],
        )?;
        let intents = counter(
            "order_intents_total",
            "order intents published (first publication), by strategy instance and side",
            &["strategy", "side"],
        )?;
        let cancels = counter(
            "cancels_total",
            "cancellations decided by an instance and sent on the intents stream",
            &["strategy"],
        )?;
        let rejections = counter(
            "rejections_total",
            "ORDER_REJECTED risk events received for an instance's intents",
            &["strategy"],
        )?;
        let bars = IntGaugeVec::new(
            Opts::new(
                metrics.name("bars_processed"),
                "bars shown to the instance's strategy, over its symbols (rebuilt at start)",
            ),
            &["strategy"],
        )
        .map_err(m)?;
        let lag = grodt_kit::lag::gauge(metrics)?;
        let handling = Histogram::with_opts(
            HistogramOpts::new(
                metrics.name("input_handling_duration_seconds"),
                "one input from delivery to published: fold, journal commit, publish",
            )
            .buckets(vec![
                1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
            ]),
        )
        .map_err(m)?;
        let journal_batch = metrics.journal_batch()?;
        let replayed = IntGauge::new(
            metrics.name("journal_replayed_entries"),
            "journal entries replayed into the state at start or after a failed commit",
        )
        .map_err(m)?;
        let replay_ms = IntGauge::new(
            metrics.name("journal_replay_milliseconds"),
            "how long the last journal replay took",
        )
        .map_err(m)?;
        let r = metrics.registry();
        r.register(Box::new(instances.clone())).map_err(m)?;
        r.register(Box::new(inputs.clone())).map_err(m)?;
        r.register(Box::new(intents.clone())).map_err(m)?;
        r.register(Box::new(cancels.clone())).map_err(m)?;
        r.register(Box::new(rejections.clone())).map_err(m)?;
        r.register(Box::new(bars.clone())).map_err(m)?;
        r.register(Box::new(handling.clone())).map_err(m)?;
        r.register(Box::new(replayed.clone())).map_err(m)?;
        r.register(Box::new(replay_ms.clone())).map_err(m)?;
        for s in Status::ALL {
            instances.with_label_values(&[s.name()]);
        }
        for s in STREAMS {
            for o in ["applied", "duplicate", "invalid"] {
                inputs.with_label_values(&[s, o]);
            }
        }
        Ok(Self {
            instances,
            inputs,
            intents,
            cancels,
            rejections,
            bars,
            lag,
            handling,
            journal_batch,
            replayed,
            replay_ms,
        })
    }

    /// Sets the gauges from the state, and gives every instance its
    /// labelled series (so they exist at idle).
    pub fn observe(&self, state: &State) {
        for s in Status::ALL {
            let n = state.instances.values().filter(|i| i.status == s).count();
            self.instances
                .with_label_values(&[s.name()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for (id, i) in &state.instances {
            self.bars
                .with_label_values(&[id])
                .set(i64::try_from(i.bars_processed()).unwrap_or(i64::MAX));
            for side in ["buy", "sell"] {
                self.intents.with_label_values(&[id, side]);
            }
            self.cancels.with_label_values(&[id]);
            self.rejections.with_label_values(&[id]);
        }
    }
}
