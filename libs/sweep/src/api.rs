//! One entry point for callers that speak the strategy registry's language
//! (the optimizer, the backtest worker's sweep jobs, `grodt sweep`): a
//! strategy name and parameter sets as `name -> text` maps, exactly as
//! `grodt_strategies::registry::parse` takes them.

use std::collections::BTreeMap;

use grodt_analytics::MetricsConfig;
use grodt_core::Decimal;
use grodt_sim::BacktestConfig;
use grodt_strategies::registry::{self, Value};
use serde::{Deserialize, Serialize};

use crate::{Series, SmaParams, SweepConfig, SweepError, SweepMetrics, Threads, sweep_sma};

/// The strategies with a sweep kernel (registry names).
pub const STRATEGIES: [&str; 1] = ["sma_cross"];

/// Parameter sets handed to the kernel per call when progress is reported.
const PROGRESS_CHUNK: usize = crate::GROUP * 8;

/// One parameter set's result, with the set as it was given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The parameter set (registry names and texts), as passed in.
    pub params: BTreeMap<String, String>,
    /// Exact equity at the last close.
    pub final_equity: Decimal,
    /// Round trips, an open one at the end included (the engine's `trades.len()`).
    pub trades: u32,
    /// Closed round trips.
    pub closed_trades: u32,
    /// Fills.
    pub fills: u32,
    /// Orders the venue refused.
    pub rejected: u32,
    /// The optimizer's ranking metrics.
    pub metrics: SweepMetrics,
}

/// Whether `strategy` has a sweep kernel and `config` holds only settings it
/// models (see [`check`] for the reason when not).
pub fn supports(strategy: &str, config: &BacktestConfig) -> bool {
    check(strategy, config).is_ok()
}

/// Why `strategy` with `config` cannot be swept, if it cannot: an unknown or
/// kernel-less strategy, or an engine setting the kernels do not model
/// (fills other than at the next open, a participation cap, latency, borrow or
/// financing, slippage other than none or fixed bps, commission other than
/// none or a percentage).
///
/// # Errors
/// [`SweepError::Unsupported`] naming the strategy or the setting.
pub fn check(strategy: &str, config: &BacktestConfig) -> Result<(), SweepError> {
    if !STRATEGIES.contains(&strategy) {
        return Err(SweepError::Unsupported {
            field: "strategy",
            reason: format!(
                "{strategy:?} has no sweep kernel (kernels: {})",
                STRATEGIES.join(", ")
            ),
        });
    }
    let sweep = SweepConfig {
        backtest: config.clone(),
        ..SweepConfig::default()
    };
    crate::Costs::of(&sweep, &grodt_core::Instrument::equity("X", 2, 0)).map(|_| ())
}

/// A parameter set parsed by the registry (defaults filled in, bounds and
/// constraints checked), as the kernel takes it, and its fraction.
fn sma_set(params: &BTreeMap<String, String>) -> Result<(SmaParams, Decimal), SweepError> {
    let c = registry::parse("sma_cross", params).map_err(|e| SweepError::Invalid {
        field: "params",
        reason: e.to_string(),
    })?;
    let p = c.params();
    if p.get("on_disallowed") != Some(&Value::Choice("off")) {
        return Err(SweepError::Unsupported {
            field: "on_disallowed",
            reason: "regime gating needs the regime feed of the event engine".into(),
        });
    }
    // The kernel models long-only and long-short, not short-only.
    if p.get("short_only") == Some(&Value::Bool(true)) {
        return Err(SweepError::Unsupported {
            field: "short_only",
            reason: "the sweep kernel has no short-only mode; run it on the event engine".into(),
        });
    }
    let period = |name: &'static str| match p.get(name) {
        Some(Value::Int(v)) => u32::try_from(*v).map_err(|_| SweepError::Invalid {
            field: "params",
            reason: format!("{name} {v} is too large for the sweep"),
        }),
        other => Err(SweepError::Invalid {
            field: "params",
            reason: format!("{name}: {other:?} is not an integer"),
        }),
    };
    let long_short = matches!(p.get("long_short"), Some(Value::Bool(true)));
    let fraction = match p.get("fraction") {
        Some(Value::Decimal(d)) => *d,
        other => {
            return Err(SweepError::Invalid {
                field: "params",
                reason: format!("fraction: {other:?} is not a decimal"),
            });
        }
    };
    Ok((
        SmaParams {
            fast: period("fast")?,
            slow: period("slow")?,
            long_short,
        },
        fraction,
    ))
}

/// Evaluates every parameter set of `strategy` over `series` with the engine
/// settings `config` (the same trades as `grodt_sim::run_backtest` with the
/// registry's strategy): one outcome per set, in the order of `params`,
/// identical whatever `threads`.
///
/// # Errors
/// [`SweepError::Unsupported`] when [`check`] refuses, [`SweepError::Invalid`]
/// naming the first set the registry refuses.
pub fn sweep(
    strategy: &str,
    series: &Series,
    params: &[BTreeMap<String, String>],
    config: &BacktestConfig,
    metrics: &MetricsConfig,
    threads: Threads,
) -> Result<Vec<Outcome>, SweepError> {
    sweep_with_progress(
        strategy,
        series,
        params,
        config,
        metrics,
        threads,
        &mut |_| {},
    )
}

/// [`sweep`], calling `progress` with the number of sets done so far (in
/// chunks of a few hundred sets; the results are the same).
///
/// # Errors
/// As [`sweep`].
pub fn sweep_with_progress(
    strategy: &str,
    series: &Series,
    params: &[BTreeMap<String, String>],
    config: &BacktestConfig,
    metrics: &MetricsConfig,
    threads: Threads,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Outcome>, SweepError> {
    check(strategy, config)?;
    let sets = params
        .iter()
        .enumerate()
        .map(|(k, p)| {
            sma_set(p).map_err(|e| match e {
                SweepError::Invalid { field, reason } => SweepError::Invalid {
                    field,
                    reason: format!("set {k}: {reason}"),
                },
                other => other,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Sets sharing a fraction run together (the fraction is the sweep's).
    let mut by_fraction: BTreeMap<Decimal, Vec<usize>> = BTreeMap::new();
    for (k, (_, f)) in sets.iter().enumerate() {
        by_fraction.entry(*f).or_default().push(k);
    }
    let mut out: Vec<Option<Outcome>> = vec![None; sets.len()];
    let mut done = 0;
    for (fraction, idx) in by_fraction {
        let cfg = SweepConfig {
            backtest: config.clone(),
            fraction,
            metrics: *metrics,
            ..SweepConfig::default()
        };
        for chunk in idx.chunks(PROGRESS_CHUNK) {
            let kernel_sets: Vec<SmaParams> = chunk.iter().map(|&k| sets[k].0).collect();
            let res = sweep_sma(series, &kernel_sets, &cfg, threads)?;
            for (&k, r) in chunk.iter().zip(res) {
                out[k] = Some(Outcome {
                    params: params[k].clone(),
                    final_equity: r.final_equity,
                    trades: r.trades,
                    closed_trades: r.closed_trades,
                    fills: r.fills,
                    rejected: r.rejected,
                    metrics: r.metrics,
                });
            }
            done += chunk.len();
            progress(done);
        }
    }
    Ok(out.into_iter().flatten().collect())
}
