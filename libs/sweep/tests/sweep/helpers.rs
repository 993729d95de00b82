//! Samples, the engine run of one parameter set, and the comparison.

use std::collections::BTreeMap;
use std::path::PathBuf;

use grodt_analytics as analytics;
use grodt_analytics::MetricsConfig;
use grodt_core::bar::parse_csv;
use grodt_core::{Bar, Decimal, Instrument, OrderStatus, Side};
use grodt_sim::{BacktestConfig, BacktestResult, run_backtest};
use grodt_strategies::registry;
use grodt_strategies::{SmaCross, SmaCrossParams};
use grodt_sweep::{Outcome, Series, SmaOutcome, SmaParams, SweepConfig, Trace, trace_sma};

pub fn sample(file: &str, inst: &Instrument) -> Vec<Bar> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples")
        .join(file);
    let text = std::fs::read_to_string(path).expect("sample data present");
    parse_csv(&text, inst).expect("sample parses")
}

pub fn spy() -> (Instrument, Vec<Bar>) {
    let inst = Instrument::equity("SPY", 4, 0);
    let bars = sample("spy_1d_1998-2021.csv", &inst);
    (inst, bars)
}

pub fn btc() -> (Instrument, Vec<Bar>) {
    let inst = Instrument::equity("BTCUSDT", 2, 8);
    let bars = sample("btcusdt_1m_2025-05-20_2025-08-18.csv", &inst);
    (inst, bars)
}

/// A sample of the grid fast 5..50 step 5, slow 10..200 step 10, fast < slow:
/// every `every`-th set, long-only and long-short alternating.
pub fn grid_sample(every: usize) -> Vec<SmaParams> {
    let grid = SmaParams::grid((5..=50).step_by(5), (10..=200).step_by(10), false);
    grid.iter()
        .step_by(every)
        .enumerate()
        .map(|(k, p)| SmaParams {
            long_short: k % 2 == 1,
            ..*p
        })
        .collect()
}

pub fn engine(
    inst: &Instrument,
    bars: &[Bar],
    p: SmaParams,
    config: &SweepConfig,
) -> BacktestResult {
    let mut s = SmaCross::new(SmaCrossParams {
        fast: p.fast as usize,
        slow: p.slow as usize,
        long_short: p.long_short,
        fraction: config.fraction,
        instrument: 0,
        short_only: false,
    })
    .expect("valid parameters");
    run_backtest(
        &config.backtest,
        std::slice::from_ref(inst),
        &[bars.to_vec()],
        &mut s,
    )
    .expect("engine runs")
}

/// The sweep's trace of `p` equals the engine's run: every fill (time, side,
/// quantity, price, commission), every closed trade (times, quantity, prices,
/// net PnL), the refusals, the trade count and the exact final equity.
/// Returns the outcome, the trace and the engine's result.
pub fn assert_parity(
    series: &Series,
    bars: &[Bar],
    p: SmaParams,
    config: &SweepConfig,
) -> (SmaOutcome, Trace, BacktestResult) {
    let inst = series.instrument();
    let (out, trace) = trace_sma(series, p, config).expect("sweep runs");
    let r = engine(inst, bars, p, config);
    let what = format!("{p:?}");
    let counts = (out.trades, out.fills, out.rejected, out.final_equity);
    assert_same_run(&what, &trace, &r, counts);
    (out, trace, r)
}

/// [`assert_parity`] for any strategy with a kernel, by registry name: the
/// kernel's trace (`grodt_sweep::trace`) against the engine's run of the
/// registry's strategy built from the same parameters.
pub fn assert_registry_parity(
    strategy: &str,
    series: &Series,
    bars: &[Bar],
    params: &BTreeMap<String, String>,
    config: &BacktestConfig,
) -> (Outcome, Trace, BacktestResult) {
    let inst = series.instrument();
    let metrics = MetricsConfig::default();
    let (out, trace) =
        grodt_sweep::trace(strategy, series, params, config, &metrics).expect("sweep runs");
    let mut s = registry::parse(strategy, params)
        .expect("valid parameters")
        .build(inst)
        .expect("strategy builds");
    let r = run_backtest(
        config,
        std::slice::from_ref(inst),
        &[bars.to_vec()],
        &mut *s,
    )
    .expect("engine runs");
    let what = format!("{strategy} {params:?}");
    let counts = (out.trades, out.fills, out.rejected, out.final_equity);
    assert_same_run(&what, &trace, &r, counts);
    (out, trace, r)
}

/// Every fill, closed trade and refusal of the trace is the engine's, and
/// the outcome's counts (trades, fills, refusals) and exact final equity too.
fn assert_same_run(
    what: &str,
    trace: &Trace,
    r: &BacktestResult,
    (trades, fills, rejected, final_equity): (u32, u32, u32, Decimal),
) {
    assert_eq!(trades as usize, r.trades.len(), "{what}: trade count");
    assert_eq!(fills as usize, r.fills.len(), "{what}");
    assert_eq!(rejected as usize, trace.rejected.len(), "{what}: refusals");
    assert_eq!(final_equity, r.last.equity, "{what}: final equity");
    let fills: Vec<_> = r
        .fills
        .iter()
        .map(|f| (f.ts, f.side, f.qty, f.price, f.commission))
        .collect();
    let swept: Vec<_> = trace
        .fills
        .iter()
        .map(|f| (f.ts, f.side, f.qty, f.price, f.commission))
        .collect();
    assert_eq!(swept.len(), fills.len(), "{what}: fill count");
    for (k, (a, b)) in swept.iter().zip(&fills).enumerate() {
        assert_eq!(a, b, "{what}: fill {k}");
    }
    let closed: Vec<_> = r
        .trades
        .iter()
        .filter_map(|t| {
            Some((
                t.direction,
                t.entry_ts,
                t.exit_ts?,
                t.peak_quantity,
                t.entry_price,
                t.exit_price?,
                t.net_pnl,
            ))
        })
        .collect();
    let swept_trades: Vec<_> = trace
        .trades
        .iter()
        .map(|t| {
            (
                t.direction,
                t.entry_ts,
                t.exit_ts,
                t.qty.to_decimal(),
                t.entry_price.to_decimal(),
                t.exit_price.to_decimal(),
                t.net_pnl,
            )
        })
        .collect();
    assert_eq!(swept_trades, closed, "{what}: closed trades");
    // The engine stamps an order with its decision time (the previous bar), the
    // sweep a refusal with the bar it would have filled on: compare sides in order.
    let rejected: Vec<Side> = r
        .orders
        .iter()
        .filter(|o| o.status() == OrderStatus::Rejected)
        .map(|o| o.request.side)
        .collect();
    let swept_rejected: Vec<Side> = trace.rejected.iter().map(|&(_, s)| s).collect();
    assert_eq!(swept_rejected, rejected, "{what}: refusals");
}

/// grodt-analytics' metrics of the engine's curve and closed trades (as the
/// backtest runner builds them).
pub fn engine_metrics(r: &BacktestResult, config: &SweepConfig) -> analytics::Metrics {
    let f = |d: Decimal| -> f64 {
        use rust_decimal::prelude::ToPrimitive;
        d.to_f64().unwrap_or(f64::NAN)
    };
    let equity: Vec<analytics::EquityPoint> = r
        .equity
        .iter()
        .map(|p| analytics::EquityPoint {
            ts: p.ts,
            equity: f(p.equity),
        })
        .collect();
    let trades: Vec<analytics::Trade> = r
        .trades
        .iter()
        .filter_map(|t| {
            Some(analytics::Trade {
                entry_ts: t.entry_ts,
                exit_ts: t.exit_ts?,
                side: match t.direction {
                    Side::Buy => analytics::Side::Long,
                    Side::Sell => analytics::Side::Short,
                },
                qty: f(t.peak_quantity),
                entry_price: f(t.entry_price),
                exit_price: t.exit_price.map_or(f64::NAN, f),
                pnl: f(t.net_pnl),
                fees: f(t.fees.max(Decimal::ZERO)),
                mae: f(t.mae),
                mfe: f(t.mfe),
            })
        })
        .collect();
    analytics::compute(
        &analytics::PerformanceInput {
            equity: &equity,
            positions: None,
            trades: &trades,
        },
        &config.metrics,
    )
    .expect("metrics")
}

pub fn close(a: f64, b: f64, what: &str) {
    let tol = 1e-9 * a.abs().max(b.abs()).max(1e-3);
    assert!((a - b).abs() <= tol, "{what}: sweep {a} engine {b}");
}

pub fn close_opt(a: Option<f64>, b: Option<f64>, what: &str) {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b, what),
        (None, None) => {}
        _ => panic!("{what}: sweep {a:?} engine {b:?}"),
    }
}

/// The sweep's metrics equal analytics' of the engine's curve within 1e-9.
pub fn assert_metrics(out: &SmaOutcome, r: &BacktestResult, config: &SweepConfig) {
    let m = engine_metrics(r, config);
    let s = &out.metrics;
    let p = out.params;
    close(
        s.total_return,
        m.total_return,
        &format!("{p:?} total return"),
    );
    close(s.cagr, m.cagr, &format!("{p:?} cagr"));
    close_opt(s.sharpe, m.sharpe, &format!("{p:?} sharpe"));
    close_opt(s.sortino, m.sortino, &format!("{p:?} sortino"));
    close(
        s.max_drawdown,
        m.drawdown.max_drawdown,
        &format!("{p:?} max drawdown"),
    );
    close_opt(s.calmar, m.calmar, &format!("{p:?} calmar"));
    close_opt(s.win_rate, m.trades.win_rate, &format!("{p:?} win rate"));
    close_opt(
        s.profit_factor,
        m.trades.profit_factor,
        &format!("{p:?} profit factor"),
    );
}
