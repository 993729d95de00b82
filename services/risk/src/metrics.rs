//! The risk service's own metrics (names in docs/metrics.md).

use grodt_kit::KitError;
use grodt_risk_rules::{Breaker, RiskState};
use prometheus::{GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use rust_decimal::prelude::ToPrimitive;

/// Counters and gauges of the risk service.
#[derive(Clone)]
pub struct RiskMetrics {
    /// Intent decisions, by `decision` (accepted, rejected).
    pub checks: IntCounterVec,
    /// Violations in rejected intents, by `limit` (symbol keys left out).
    pub violations: IntCounterVec,
    /// Breaker trips, by `breaker`.
    pub trips: IntCounterVec,
    /// 1 while that breaker is tripped.
    pub tripped: IntGaugeVec,
    /// 1 while trading is halted (by hand or by a breaker).
    pub halted: IntGauge,
    /// LIMIT_WARNING events, by `limit`.
    pub warnings: IntCounterVec,
    /// Inputs handled, by `stream` and `outcome` (applied, duplicate, invalid).
    pub inputs: IntCounterVec,
    /// One input from delivery to published.
    pub handling: Histogram,
    /// Inputs journaled per commit (group commit: a batch read together).
    pub journal_batch: Histogram,
    /// Account gauges, by `account`: equity, peak, drawdown, limits, exposures.
    pub equity: GaugeVec,
    /// Highest equity seen.
    pub peak: GaugeVec,
    /// Drawdown from the peak, 0..1.
    pub drawdown: GaugeVec,
    /// Configured max drawdown, 0..1 (no series while no limit is set).
    pub drawdown_limit: GaugeVec,
    /// Equity change since the UTC day start.
    pub daily_pnl: GaugeVec,
    /// Sum of absolute notionals.
    pub gross: GaugeVec,
    /// Sum of signed notionals.
    pub net: GaugeVec,
    /// Consumer-group lag per stream.
    pub lag: IntGaugeVec,
    /// Journal entries replayed at start.
    pub replayed: IntGauge,
    account: String,
}

/// The stream label values of `grodt_risk_inputs_total`.
pub const STREAMS: [&str; 4] = [
    "grodt.order-intents.v1",
    "grodt.fills.v1",
    "grodt.bars.v1",
    "command",
];

impl RiskMetrics {
    /// Registers them on the service's registry; `account` labels the account gauges.
    ///
    /// # Errors
    /// A name clash in the registry.
    pub fn register(metrics: &grodt_kit::Metrics, account: &str) -> Result<Self, KitError> {
        let m = KitError::Metrics;
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(metrics.name(name), help), labels).map_err(m)
        };
        let gauge = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(metrics.name(name), help), &["account"]).map_err(m)
        };
        let checks = counter(
            "order_checks_total",
            "order intents decided, by decision (accepted, rejected)",
            &["decision"],
        )?;
        let violations = counter(
            "violations_total",
            "limit violations in rejected intents, by limit (RiskLimits field; halt; \
             reference_price; symbol_limits.<field> without the symbol)",
            &["limit"],
        )?;
        let trips = counter(
            "breaker_trips_total",
            "circuit breaker trips, by breaker",
            &["breaker"],
        )?;
        let tripped = IntGaugeVec::new(
            Opts::new(
                metrics.name("circuit_breaker_tripped"),
                "1 while that breaker is tripped (until Resume)",
            ),
            &["breaker"],
        )
        .map_err(m)?;
        let halted = IntGauge::new(
            metrics.name("halted"),
            "1 while trading is halted (by hand or by a breaker)",
        )
        .map_err(m)?;
        let warnings = counter(
            "limit_warnings_total",
            "LIMIT_WARNING events (a value past 80% of its limit), by limit",
            &["limit"],
        )?;
        let inputs = counter(
            "inputs_total",
            "inputs handled, by stream (or command) and outcome: applied, duplicate \
             (journaled before: outputs republished), invalid",
            &["stream", "outcome"],
        )?;
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
        let equity = gauge(
            "equity",
            "initial equity + fills' cash flows + positions at the last price",
        )?;
        let peak = gauge("peak_equity", "highest equity seen")?;
        let drawdown = gauge("drawdown_ratio", "drawdown from the equity peak, 0..1")?;
        let drawdown_limit = gauge(
            "drawdown_limit_ratio",
            "configured max drawdown, 0..1 (absent while no limit is set)",
        )?;
        let daily_pnl = gauge("daily_pnl", "equity change since the UTC day start")?;
        let gross = gauge("gross_exposure", "sum of absolute position notionals")?;
        let net = gauge("net_exposure", "sum of signed position notionals")?;
        let lag = grodt_kit::lag::gauge(metrics)?;
        let replayed = IntGauge::new(
            metrics.name("journal_replayed_entries"),
            "journal entries replayed into the state at start or after a failed commit",
        )
        .map_err(m)?;
        let r = metrics.registry();
        r.register(Box::new(checks.clone())).map_err(m)?;
        r.register(Box::new(violations.clone())).map_err(m)?;
        r.register(Box::new(trips.clone())).map_err(m)?;
        r.register(Box::new(tripped.clone())).map_err(m)?;
        r.register(Box::new(halted.clone())).map_err(m)?;
        r.register(Box::new(warnings.clone())).map_err(m)?;
        r.register(Box::new(inputs.clone())).map_err(m)?;
        r.register(Box::new(handling.clone())).map_err(m)?;
        for g in [
            &equity,
            &peak,
            &drawdown,
            &drawdown_limit,
            &daily_pnl,
            &gross,
            &net,
        ] {
            r.register(Box::new(g.clone())).map_err(m)?;
        }
        r.register(Box::new(replayed.clone())).map_err(m)?;
        for d in ["accepted", "rejected"] {
            checks.with_label_values(&[d]);
        }
        for b in Breaker::ALL {
            trips.with_label_values(&[b.name()]);
            tripped.with_label_values(&[b.name()]);
        }
        for s in STREAMS {
            for o in ["applied", "duplicate", "invalid"] {
                inputs.with_label_values(&[s, o]);
            }
        }
        Ok(Self {
            checks,
            violations,
            trips,
            tripped,
            halted,
            warnings,
            inputs,
            handling,
            journal_batch,
            equity,
            peak,
            drawdown,
            drawdown_limit,
            daily_pnl,
            gross,
            net,
            lag,
            replayed,
            account: account.to_owned(),
        })
    }

    /// Sets the gauges from the state.
    pub fn observe(&self, state: &RiskState) {
        let a = [self.account.as_str()];
        let f = |d: rust_decimal::Decimal| d.to_f64().unwrap_or(f64::NAN);
        let s = state.snapshot_light();
        self.equity.with_label_values(&a).set(f(s.equity));
        self.peak.with_label_values(&a).set(f(s.peak_equity));
        self.drawdown.with_label_values(&a).set(-f(s.drawdown));
        self.daily_pnl.with_label_values(&a).set(f(s.daily_pnl));
        self.gross.with_label_values(&a).set(f(s.gross_exposure));
        self.net.with_label_values(&a).set(f(s.net_exposure));
        match state.limits().limits.max_drawdown {
            Some(l) => self.drawdown_limit.with_label_values(&a).set(f(l)),
            None => {
                let _ = self.drawdown_limit.remove_label_values(&a);
            }
        }
        self.halted.set(i64::from(state.halt().is_some()));
        let tripped = state.tripped();
        for b in Breaker::ALL {
            self.tripped
                .with_label_values(&[b.name()])
                .set(i64::from(tripped == Some(b)));
        }
    }
}

/// The `limit` label of a violation: `symbol_limits[SPY].x` -> `symbol_limits.x`.
#[must_use]
pub fn limit_label(limit: &str) -> String {
    match (limit.find('['), limit.find("].")) {
        (Some(a), Some(b)) if a < b => format!("{}.{}", &limit[..a], &limit[b + 2..]),
        _ => limit.to_owned(),
    }
}
