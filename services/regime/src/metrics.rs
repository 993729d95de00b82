//! The regime service's own metrics (names in docs/metrics.md).

use grodt_kit::KitError;
use grodt_regimes::Regime;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts};

/// Counters, gauges and histograms of the bar consumer.
#[derive(Clone)]
pub struct RegimeMetrics {
    /// 1 for the regime in force of (symbol, timeframe), 0 for the others.
    pub current: IntGaugeVec,
    /// Decisions by regime in force.
    pub decisions: IntCounterVec,
    /// Regime changes by new regime.
    pub changes: IntCounterVec,
    /// Heartbeats published.
    pub heartbeats: IntCounter,
    /// Bars handled, by outcome.
    pub bars: IntCounterVec,
    /// `Classifier::on_bar` time of bars that were evaluated.
    pub evaluation: Histogram,
    /// One bar from delivery to durable (evaluation, store commit, publish).
    pub handling: Histogram,
    /// Entries of `grodt.bars.v1` not yet delivered to the group (XINFO GROUPS lag).
    pub lag: IntGaugeVec,
}

/// Bar outcomes counted by `grodt_regime_bars_total`.
pub const BAR_OUTCOMES: [&str; 5] = [
    "decided",
    "warming_up",
    "not_evaluated",
    "ignored",
    "rejected",
];

impl RegimeMetrics {
    /// Registers them on the service's registry.
    ///
    /// # Errors
    /// A name clash in the registry.
    pub fn register(metrics: &grodt_kit::Metrics) -> Result<Self, KitError> {
        let m = KitError::Metrics;
        let current = IntGaugeVec::new(
            Opts::new(
                metrics.name("current"),
                "1 for the regime in force of the symbol and timeframe, 0 for the others",
            ),
            &["symbol", "timeframe", "regime"],
        )
        .map_err(m)?;
        let decisions = IntCounterVec::new(
            Opts::new(
                metrics.name("decisions_total"),
                "classifier decisions (evaluations after warm-up), by regime in force",
            ),
            &["regime"],
        )
        .map_err(m)?;
        let changes = IntCounterVec::new(
            Opts::new(
                metrics.name("changes_total"),
                "regime changes, by new regime",
            ),
            &["regime"],
        )
        .map_err(m)?;
        let heartbeats = IntCounter::new(
            metrics.name("heartbeats_total"),
            "heartbeat regime events published",
        )
        .map_err(m)?;
        let bars = IntCounterVec::new(
            Opts::new(
                metrics.name("bars_total"),
                "bars consumed, by outcome: decided, warming_up, not_evaluated (same \
                 eval bucket), ignored (not after the last bar), rejected (invalid)",
            ),
            &["outcome"],
        )
        .map_err(m)?;
        let evaluation = Histogram::with_opts(
            HistogramOpts::new(
                metrics.name("evaluation_duration_seconds"),
                "classifier time of an evaluated bar",
            )
            .buckets(vec![1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01]),
        )
        .map_err(m)?;
        let handling = Histogram::with_opts(
            HistogramOpts::new(
                metrics.name("bar_handling_duration_seconds"),
                "one bar from delivery to durable: evaluation, store commit, publish",
            )
            .buckets(vec![
                1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
            ]),
        )
        .map_err(m)?;
        let lag = grodt_kit::lag::gauge(metrics)?;
        let r = metrics.registry();
        r.register(Box::new(current.clone())).map_err(m)?;
        r.register(Box::new(decisions.clone())).map_err(m)?;
        r.register(Box::new(changes.clone())).map_err(m)?;
        r.register(Box::new(heartbeats.clone())).map_err(m)?;
        r.register(Box::new(bars.clone())).map_err(m)?;
        r.register(Box::new(evaluation.clone())).map_err(m)?;
        r.register(Box::new(handling.clone())).map_err(m)?;
        for regime in Regime::ALL {
            decisions.with_label_values(&[regime.name()]);
            changes.with_label_values(&[regime.name()]);
        }
        for outcome in BAR_OUTCOMES {
            bars.with_label_values(&[outcome]);
        }
        Ok(Self {
            current,
            decisions,
            changes,
            heartbeats,
            bars,
            evaluation,
            handling,
            lag,
        })
    }

    /// Sets the regime in force of (symbol, timeframe).
    pub fn set_current(&self, symbol: &str, timeframe: &str, regime: Regime) {
        for r in Regime::ALL {
            self.current
                .with_label_values(&[symbol, timeframe, r.name()])
                .set(i64::from(r == regime));
        }
    }
}
