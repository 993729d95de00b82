//! The execution service's own metrics (names in docs/metrics.md). Every
//! labelled metric gets its series at start, so a scrape of an idle service
//! already shows them.

use grodt_kit::KitError;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts,
};

use crate::convert::{STATUSES, status_name};

/// Kinds of input counted by `grodt_execution_inputs_total`.
pub const INPUT_KINDS: [&str; 4] = ["bar", "order", "cancel", "rejected_order"];

/// Why an input was dropped without a report (`grodt_execution_inputs_dropped_total`).
pub const DROP_REASONS: [&str; 7] = [
    "stale_bar",
    "unknown_symbol_bar",
    "invalid_bar",
    "invalid_order",
    "duplicate_order",
    "cancel_of_unknown_order",
    "cancel_of_final_order",
];

/// Counters, gauges and histograms of the engine.
#[derive(Clone)]
pub struct ExecMetrics {
    /// Order state changes, by the status entered.
    pub orders: IntCounterVec,
    /// Fills, by side.
    pub fills: IntCounterVec,
    /// Σ |price × quantity| of fills (f64: a metric, not a ledger).
    pub fill_notional: prometheus::Counter,
    /// Inputs applied and journaled, by kind.
    pub inputs: IntCounterVec,
    /// Inputs acked without a report, by reason.
    pub dropped: IntCounterVec,
    /// Inputs found in the journal (redeliveries): their outputs published again.
    pub republished: IntCounter,
    /// Entries replayed from the journal at the last (re)build.
    pub replay_entries: IntGauge,
    /// Duration of the last (re)build.
    pub replay_seconds: Gauge,
    /// Rebuilds after a failed commit (or a new instrument).
    pub rebuilds: IntCounter,
    /// Breaks of the last reconciliation (0 = ledger and fills agree).
    pub reconciliation_breaks: IntGauge,
    /// Wall clock minus the open time of the latest bar applied, seconds.
    pub bar_lag: Gauge,
    /// Orders that reached the venue after a later bar of their symbol.
    pub late_orders: IntCounter,
    /// Cash + marked positions, by account.
    pub equity: GaugeVec,
    /// Realized PnL since the account opened (gross of costs), by account.
    pub realized: GaugeVec,
    /// Open positions marked at the last bar, by account.
    pub unrealized: GaugeVec,
    /// Instruments with a non-zero position, by account.
    pub open_positions: IntGaugeVec,
    /// One input from delivery to durable and published.
    pub handling: Histogram,
    /// Inputs journaled per commit (group commit: a batch read together).
    pub journal_batch: Histogram,
    /// Entries of a consumed stream not yet delivered to the group.
    pub lag: IntGaugeVec,
    /// The account label.
    pub account: String,
}

impl ExecMetrics {
    /// Registers them on the service's registry.
    ///
    /// # Errors
    /// A name clash in the registry.
    pub fn register(metrics: &grodt_kit::Metrics, account: &str) -> Result<Self, KitError> {
        let m = KitError::Metrics;
        let orders = IntCounterVec::new(
            Opts::new(
                metrics.name("orders_total"),
                "order state changes, by the status entered (an order refused before the \
                 venue counts as rejected)",
            ),
            &["status"],
        )
        .map_err(m)?;
        let fills = IntCounterVec::new(
            Opts::new(metrics.name("fills_total"), "fills booked, by side"),
            &["side"],
        )
        .map_err(m)?;
        let fill_notional = prometheus::Counter::new(
            metrics.name("fill_notional_total"),
            "sum of price x quantity of fills, in the quote currency",
        )
        .map_err(m)?;
        let inputs = IntCounterVec::new(
            Opts::new(
                metrics.name("inputs_total"),
                "inputs applied and journaled, by kind: bar, order, cancel, rejected_order \
                 (an order refused before the venue)",
            ),
            &["kind"],
        )
        .map_err(m)?;
        let dropped = IntCounterVec::new(
            Opts::new(
                metrics.name("inputs_dropped_total"),
                "inputs acked without a report, by reason: stale_bar (not after the \
                 symbol's last bar), unknown_symbol_bar, invalid_bar, invalid_order, \
                 duplicate_order (a client order id seen before), cancel_of_unknown_order, \
                 cancel_of_final_order (a strategy cancelled an order already filled)",
            ),
            &["reason"],
        )
        .map_err(m)?;
        let republished = IntCounter::new(
            metrics.name("republished_total"),
            "redelivered inputs found in the journal: their outputs published again \
             under the same event ids",
        )
        .map_err(m)?;
        let replay_entries = IntGauge::new(
            metrics.name("journal_replay_entries"),
            "journal entries replayed into the broker at the last (re)build",
        )
        .map_err(m)?;
        let replay_seconds = Gauge::new(
            metrics.name("journal_replay_seconds"),
            "duration of the last journal replay",
        )
        .map_err(m)?;
        let rebuilds = IntCounter::new(
            metrics.name("rebuilds_total"),
            "broker rebuilds from the journal after start (a failed commit, a new instrument)",
        )
        .map_err(m)?;
        let reconciliation_breaks = IntGauge::new(
            metrics.name("reconciliation_breaks"),
            "differences found by the last reconciliation of the ledger against the fills \
             (0 = consistent)",
        )
        .map_err(m)?;
        let bar_lag = Gauge::new(
            metrics.name("last_bar_lag_seconds"),
            "wall clock minus the open time of the latest bar applied",
        )
        .map_err(m)?;
        let late_orders = IntCounter::new(
            metrics.name("late_orders_total"),
            "orders and strategy cancellations that reached the venue after a later bar of \
             their symbol (they act a bar later than a backtest would)",
        )
        .map_err(m)?;
        let account_gauge = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(metrics.name(name), help), &["account"]).map_err(m)
        };
        let equity = account_gauge(
            "account_equity",
            "cash + positions marked at the last bar, in the account currency",
        )?;
        let realized = account_gauge(
            "realized_pnl",
            "realized PnL since the account opened (gross of costs), account currency",
        )?;
        let unrealized = account_gauge(
            "unrealized_pnl",
            "open positions marked to the last bar, account currency",
        )?;
        let open_positions = IntGaugeVec::new(
            Opts::new(
                metrics.name("open_positions"),
                "instruments with a non-zero position",
            ),
            &["account"],
        )
        .map_err(m)?;
        let handling = Histogram::with_opts(
            HistogramOpts::new(
                metrics.name("input_handling_duration_seconds"),
                "one input from delivery to durable and published: broker, journal commit, publish",
            )
            .buckets(vec![
                1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
            ]),
        )
        .map_err(m)?;
        let journal_batch = metrics.journal_batch()?;
        let lag = grodt_kit::lag::gauge(metrics)?;
        let r = metrics.registry();
        r.register(Box::new(orders.clone())).map_err(m)?;
        r.register(Box::new(fills.clone())).map_err(m)?;
        r.register(Box::new(fill_notional.clone())).map_err(m)?;
        r.register(Box::new(inputs.clone())).map_err(m)?;
        r.register(Box::new(dropped.clone())).map_err(m)?;
        r.register(Box::new(republished.clone())).map_err(m)?;
        r.register(Box::new(replay_entries.clone())).map_err(m)?;
        r.register(Box::new(replay_seconds.clone())).map_err(m)?;
        r.register(Box::new(rebuilds.clone())).map_err(m)?;
        r.register(Box::new(reconciliation_breaks.clone()))
            .map_err(m)?;
        r.register(Box::new(bar_lag.clone())).map_err(m)?;
        r.register(Box::new(late_orders.clone())).map_err(m)?;
        r.register(Box::new(handling.clone())).map_err(m)?;
        r.register(Box::new(equity.clone())).map_err(m)?;
        r.register(Box::new(realized.clone())).map_err(m)?;
        r.register(Box::new(unrealized.clone())).map_err(m)?;
        r.register(Box::new(open_positions.clone())).map_err(m)?;
        equity.with_label_values(&[account]);
        realized.with_label_values(&[account]);
        unrealized.with_label_values(&[account]);
        open_positions.with_label_values(&[account]);
        for side in ["buy", "sell"] {
            fills.with_label_values(&[side]);
        }
        for s in STATUSES {
            orders.with_label_values(&[status_name(s)]);
        }
        for k in INPUT_KINDS {
            inputs.with_label_values(&[k]);
        }
        for d in DROP_REASONS {
            dropped.with_label_values(&[d]);
        }
        for stream in [crate::engine::ORDERS_STREAM, crate::engine::BARS_STREAM] {
            lag.with_label_values(&[stream, crate::engine::GROUP]);
        }
        Ok(Self {
            orders,
            fills,
            fill_notional,
            inputs,
            dropped,
            republished,
            replay_entries,
            replay_seconds,
            rebuilds,
            reconciliation_breaks,
            bar_lag,
            late_orders,
            equity,
            realized,
            unrealized,
            open_positions,
            handling,
            journal_batch,
            lag,
            account: account.to_owned(),
        })
    }
}
