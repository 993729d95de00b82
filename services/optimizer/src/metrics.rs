//! The service's metrics (names and meanings in docs/metrics.md).

use grodt_kit::KitError;
use grodt_optimize::TrialState;
use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::engine::Run;

/// Progress of the runs and the trial flow.
#[derive(Clone)]
pub struct OptimizerMetrics {
    runs_active: IntGauge,
    planned: IntGaugeVec,
    completed: IntGaugeVec,
    best: GaugeVec,
    dispatched: IntCounter,
    results: IntCounterVec,
    ignored: IntCounter,
    /// Results not yet delivered to the optimizer's group.
    pub lag: IntGaugeVec,
    /// Run labels currently exported (to remove those of ended runs).
    exported: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl OptimizerMetrics {
    /// Registers them on the service's registry.
    ///
    /// # Errors
    /// A name clash in the registry.
    pub fn register(metrics: &grodt_kit::Metrics) -> Result<Self, KitError> {
        let m = KitError::Metrics;
        let runs_active = IntGauge::new(
            metrics.name("runs_active"),
            "optimization runs not finished",
        )
        .map_err(m)?;
        let planned = IntGaugeVec::new(
            Opts::new(metrics.name("trials_planned"), "trials a run will evaluate"),
            &["run"],
        )
        .map_err(m)?;
        let completed = IntGaugeVec::new(
            Opts::new(
                metrics.name("trials_completed"),
                "trials of a run with a result",
            ),
            &["run"],
        )
        .map_err(m)?;
        let best = GaugeVec::new(
            Opts::new(
                metrics.name("best_objective"),
                "best objective value of a run so far",
            ),
            &["run"],
        )
        .map_err(m)?;
        let dispatched = IntCounter::new(
            metrics.name("trials_dispatched_total"),
            "trial jobs published on grodt.backtest-jobs.v1",
        )
        .map_err(m)?;
        let results = IntCounterVec::new(
            Opts::new(
                metrics.name("trial_results_total"),
                "trial results recorded, by outcome",
            ),
            &["outcome"],
        )
        .map_err(m)?;
        let ignored = IntCounter::new(
            metrics.name("results_ignored_total"),
            "results of no queued trial (redeliveries, unknown runs)",
        )
        .map_err(m)?;
        let lag = grodt_kit::lag::gauge(metrics)?;
        let r = metrics.registry();
        r.register(Box::new(runs_active.clone())).map_err(m)?;
        r.register(Box::new(planned.clone())).map_err(m)?;
        r.register(Box::new(completed.clone())).map_err(m)?;
        r.register(Box::new(best.clone())).map_err(m)?;
        r.register(Box::new(dispatched.clone())).map_err(m)?;
        r.register(Box::new(results.clone())).map_err(m)?;
        r.register(Box::new(ignored.clone())).map_err(m)?;
        for outcome in ["succeeded", "failed"] {
            results.with_label_values(&[outcome]);
        }
        Ok(Self {
            runs_active,
            planned,
            completed,
            best,
            dispatched,
            results,
            ignored,
            lag,
            exported: std::sync::Arc::default(),
        })
    }

    /// Sets the run gauges from the state: running runs are exported,
    /// ended ones removed (their figures stay in GetOptimization).
    pub fn observe<'a>(&self, runs: impl Iterator<Item = &'a Run>) {
        let mut exported = self
            .exported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut now = std::collections::BTreeSet::new();
        for run in runs {
            if run.state().is_terminal() {
                continue;
            }
            let p = run.study.progress();
            let label = [run.id.as_str()];
            self.planned
                .with_label_values(&label)
                .set(i64::try_from(p.planned).unwrap_or(i64::MAX));
            self.completed
                .with_label_values(&label)
                .set(i64::try_from(p.succeeded + p.failed).unwrap_or(i64::MAX));
            if let Some(b) = p.best {
                self.best.with_label_values(&label).set(b * run.sign);
            }
            now.insert(run.id.clone());
        }
        for gone in exported.difference(&now) {
            let label = [gone.as_str()];
            let _ = self.planned.remove_label_values(&label);
            let _ = self.completed.remove_label_values(&label);
            let _ = self.best.remove_label_values(&label);
        }
        self.runs_active
            .set(i64::try_from(now.len()).unwrap_or(i64::MAX));
        *exported = now;
    }

    /// Jobs published.
    pub fn dispatched(&self, n: usize) {
        self.dispatched.inc_by(n as u64);
    }

    /// A trial's result was recorded.
    pub fn finished(&self, state: Option<TrialState>) {
        let outcome = match state {
            Some(TrialState::Succeeded) => "succeeded",
            _ => "failed",
        };
        self.results.with_label_values(&[outcome]).inc();
    }

    /// A result of no queued trial.
    pub fn ignored(&self) {
        self.ignored.inc();
    }
}
