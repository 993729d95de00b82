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

use grodt_strategies::{EmaCross, EmaCrossParams, S2, S2Params, S3, S3Params};

use crate::rules::{EmaInd, MAX_TABLE_CELLS, S2Ind, S3Ind};
use crate::{
    Rule, Series, SmaParams, SweepConfig, SweepError, SweepMetrics, Tally, Threads, Trace,
    run_rules, sma_tallies, trace_rule, trace_sma_tally, with_ctx,
};

/// The strategies with a sweep kernel (registry names).
pub const STRATEGIES: [&str; 4] = ["sma_cross", "ema_cross", "s2", "s3"];

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

/// A parameter set as its kernel takes it.
#[derive(Clone, Copy, Debug)]
enum Set {
    Sma(SmaParams),
    Ema(EmaCrossParams),
    S2(S2Params),
    S3(S3Params),
}

fn invalid(reason: impl std::fmt::Display) -> SweepError {
    SweepError::Invalid {
        field: "params",
        reason: reason.to_string(),
    }
}

/// A parameter set parsed by the registry (defaults filled in, bounds and
/// constraints checked, the strategy's own checks passed), as its kernel
/// takes it, and its fraction.
fn kernel_set(
    strategy: &str,
    params: &BTreeMap<String, String>,
) -> Result<(Set, Decimal), SweepError> {
    let c = registry::parse(strategy, params).map_err(invalid)?;
    let p = c.params();
    if p.get("on_disallowed") != Some(&Value::Choice("off")) {
        return Err(SweepError::Unsupported {
            field: "on_disallowed",
            reason: "regime gating needs the regime feed of the event engine".into(),
        });
    }
    let fraction = match p.get("fraction") {
        Some(Value::Decimal(d)) => *d,
        other => return Err(invalid(format!("fraction: {other:?} is not a decimal"))),
    };
    let set = match strategy {
        "ema_cross" => {
            let s = registry::ema_params(p).map_err(invalid)?;
            EmaCross::new(s).map_err(invalid)?;
            Set::Ema(s)
        }
        "s2" => {
            let s = registry::s2_params(p).map_err(invalid)?;
            S2::new(s).map_err(invalid)?;
            Set::S2(s)
        }
        "s3" => {
            let s = registry::s3_params(p).map_err(invalid)?;
            S3::new(s).map_err(invalid)?;
            Set::S3(s)
        }
        _ => Set::Sma(sma_set(p)?),
    };
    Ok((set, fraction))
}

fn sma_set(p: &registry::Resolved) -> Result<SmaParams, SweepError> {
    // The kernel models long-only and long-short, not short-only.
    if p.get("short_only") == Some(&Value::Bool(true)) {
        return Err(SweepError::Unsupported {
            field: "short_only",
            reason: "the sweep kernel has no short-only mode; run it on the event engine".into(),
        });
    }
    let period = |name: &'static str| match p.get(name) {
        Some(Value::Int(v)) => {
            u32::try_from(*v).map_err(|_| invalid(format!("{name} {v} is too large for the sweep")))
        }
        other => Err(invalid(format!("{name}: {other:?} is not an integer"))),
    };
    Ok(SmaParams {
        fast: period("fast")?,
        slow: period("slow")?,
        long_short: matches!(p.get("long_short"), Some(Value::Bool(true))),
    })
}

fn outcome(params: &BTreeMap<String, String>, t: Tally) -> Outcome {
    Outcome {
        params: params.clone(),
        final_equity: t.final_equity,
        trades: t.trades,
        closed_trades: t.closed_trades,
        fills: t.fills,
        rejected: t.rejected,
        metrics: t.metrics,
    }
}

fn sweep_config(
    config: &BacktestConfig,
    metrics: &MetricsConfig,
    fraction: Decimal,
) -> SweepConfig {
    SweepConfig {
        backtest: config.clone(),
        fraction,
        metrics: *metrics,
        ..SweepConfig::default()
    }
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
    sweep_in(
        strategy,
        series,
        params,
        (config, metrics),
        threads,
        progress,
        MAX_TABLE_CELLS,
    )
}

/// [`sweep_with_progress`] with the table kernels' memory bound in cells.
fn sweep_in(
    strategy: &str,
    series: &Series,
    params: &[BTreeMap<String, String>],
    (config, metrics): (&BacktestConfig, &MetricsConfig),
    threads: Threads,
    progress: &mut dyn FnMut(usize),
    cells: usize,
) -> Result<Vec<Outcome>, SweepError> {
    check(strategy, config)?;
    let sets = params
        .iter()
        .enumerate()
        .map(|(k, p)| {
            kernel_set(strategy, p).map_err(|e| match e {
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
    let mut emit = |k: usize, t: Tally| out[k] = Some(outcome(&params[k], t));
    for (fraction, idx) in by_fraction {
        let cfg = sweep_config(config, metrics, fraction);
        let mut step = |n: usize| {
            done += n;
            progress(done);
        };
        macro_rules! tables {
            ($kind:ident, $ind:ident) => {
                run_tables(
                    series,
                    &cfg,
                    &picked(&idx, &sets, |s| match s {
                        Set::$kind(p) => Some(p),
                        _ => None,
                    }),
                    ($ind::rows, $ind::build),
                    (threads, cells),
                    &mut emit,
                    &mut step,
                )?
            };
        }
        match sets[idx[0]].0 {
            Set::Sma(_) => {
                for chunk in idx.chunks(PROGRESS_CHUNK) {
                    let kernel_sets: Vec<SmaParams> = picked(chunk, &sets, |s| match s {
                        Set::Sma(p) => Some(p),
                        _ => None,
                    })
                    .into_iter()
                    .map(|(_, p)| p)
                    .collect();
                    let res = sma_tallies(series, &kernel_sets, &cfg, threads)?;
                    for (&k, t) in chunk.iter().zip(res) {
                        emit(k, t);
                    }
                    step(chunk.len());
                }
            }
            // The table kernels: the sets of one kind, their tables and rules.
            Set::Ema(_) => tables!(Ema, EmaInd),
            Set::S2(_) => tables!(S2, S2Ind),
            Set::S3(_) => tables!(S3, S3Ind),
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// The sets at `idx` of one kernel's kind, with their indices.
fn picked<P>(
    idx: &[usize],
    sets: &[(Set, Decimal)],
    kind: impl Fn(Set) -> Option<P>,
) -> Vec<(usize, P)> {
    idx.iter()
        .filter_map(|&k| kind(sets[k].0).map(|p| (k, p)))
        .collect()
}

/// Runs sets whose rules read per-window tables: in batches whose distinct
/// table rows fit `cells` values ([`MAX_TABLE_CELLS`]; sets sorted by their
/// rows, so sets sharing windows share a batch), each batch's tables built
/// once, its sets in chunks for progress.
fn run_tables<P: Copy, R: Rule>(
    series: &Series,
    cfg: &SweepConfig,
    sets: &[(usize, P)],
    (rows, build): (
        fn(&P) -> Vec<usize>,
        impl Fn(&Series, &[P]) -> Result<(R::Ind, Vec<R>), SweepError>,
    ),
    (threads, cells): (Threads, usize),
    emit: &mut impl FnMut(usize, Tally),
    step: &mut impl FnMut(usize),
) -> Result<(), SweepError>
where
    R::Ind: Sized,
{
    let mut order: Vec<&(usize, P)> = sets.iter().collect();
    order.sort_by_key(|(_, p)| rows(p));
    let budget = (cells / series.len().max(1)).max(2);
    let mut batches: Vec<Vec<&(usize, P)>> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for s in order {
        let mut with = seen.clone();
        with.extend(rows(&s.1));
        if with.len() > budget && !seen.is_empty() {
            batches.push(Vec::new());
            seen.clear();
            seen.extend(rows(&s.1));
        } else {
            seen = with;
        }
        match batches.last_mut() {
            Some(b) => b.push(s),
            None => batches.push(vec![s]),
        }
    }
    for batch in batches {
        let params: Vec<P> = batch.iter().map(|(_, p)| *p).collect();
        let (ind, rules) = build(series, &params)?;
        for (chunk, ks) in rules
            .chunks(PROGRESS_CHUNK)
            .zip(batch.chunks(PROGRESS_CHUNK))
        {
            let tallies = with_ctx(series, cfg, &ind, |cx| run_rules(cx, chunk, cfg, threads))?;
            for ((k, _), t) in ks.iter().zip(tallies) {
                emit(*k, t);
            }
            step(chunk.len());
        }
    }
    Ok(())
}

/// One parameter set of `strategy` through the kernel, recording every fill,
/// trade, refusal and equity point (the parity tests compare it with the
/// event engine's run of the registry's strategy).
///
/// # Errors
/// As [`sweep`].
pub fn trace(
    strategy: &str,
    series: &Series,
    params: &BTreeMap<String, String>,
    config: &BacktestConfig,
    metrics: &MetricsConfig,
) -> Result<(Outcome, Trace), SweepError> {
    check(strategy, config)?;
    let (set, fraction) = kernel_set(strategy, params)?;
    let cfg = sweep_config(config, metrics, fraction);
    let (tally, trace) = match set {
        Set::Sma(s) => trace_sma_tally(series, s, &cfg)?,
        Set::Ema(s) => {
            let (ind, rules) = EmaInd::build(series, &[s])?;
            with_ctx(series, &cfg, &ind, |cx| trace_rule(cx, rules[0], &cfg))?
        }
        Set::S2(s) => {
            let (ind, rules) = S2Ind::build(series, &[s])?;
            with_ctx(series, &cfg, &ind, |cx| trace_rule(cx, rules[0], &cfg))?
        }
        Set::S3(s) => {
            let (ind, rules) = S3Ind::build(series, &[s])?;
            with_ctx(series, &cfg, &ind, |cx| trace_rule(cx, rules[0], &cfg))?
        }
    };
    Ok((outcome(params, tally), trace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use grodt_core::{Bar, Instrument};

    /// A tight memory bound splits the table kernels' sets into batches
    /// (each building its own tables) with the same outcomes, in order.
    #[test]
    fn batches_under_a_memory_bound_give_the_same_outcomes() {
        let inst = Instrument::equity("X", 2, 0);
        let bars: Vec<Bar> = (0..600i64)
            .map(|k| {
                let c = 10_000 + (k * 7919 % 301) - 150 + k * 3;
                Bar {
                    ts: k * 60_000_000_000,
                    open: c - 5,
                    high: c + 20,
                    low: c - 25,
                    close: c,
                    volume: 1_000 + k * 37 % 900,
                }
            })
            .collect();
        let series = Series::new(&inst, &bars).unwrap();
        let text = |v: usize| v.to_string();
        let s3: Vec<BTreeMap<String, String>> = (1..=12)
            .flat_map(|e| {
                [(e, 3usize), (e, e + 1)].map(|(entry, exit)| {
                    BTreeMap::from([
                        ("entry_window".into(), text(entry)),
                        ("exit_window".into(), text(exit)),
                        ("volume_window".into(), text(entry % 5 + 1)),
                        ("volume_mult".into(), "0.5".into()),
                    ])
                })
            })
            .collect();
        let s2: Vec<BTreeMap<String, String>> = (1..=12)
            .map(|r| {
                BTreeMap::from([
                    ("period".into(), text(r % 7 + 2)),
                    ("rsi_period".into(), text(r)),
                    ("k".into(), "1".into()),
                    ("oversold".into(), "45".into()),
                    ("overbought".into(), "55".into()),
                ])
            })
            .collect();
        let c = BacktestConfig::default();
        let m = MetricsConfig::default();
        for (strategy, sets) in [("s3", &s3), ("s2", &s2)] {
            let run = |cells| {
                let mut calls = 0;
                let out = sweep_in(
                    strategy,
                    &series,
                    sets,
                    (&c, &m),
                    Threads::One,
                    &mut |_| calls += 1,
                    cells,
                )
                .unwrap();
                (out, calls)
            };
            let (whole, one_batch) = run(MAX_TABLE_CELLS);
            let (split, batches) = run(3 * bars.len());
            assert_eq!(whole, split, "{strategy}");
            assert!(
                batches >= 4 && one_batch == 1,
                "{strategy}: {one_batch} then {batches}"
            );
            assert!(whole.iter().zip(sets).all(|(o, p)| &o.params == p));
            assert!(
                whole.iter().map(|o| o.fills).sum::<u32>() > 20,
                "{strategy}"
            );
        }
    }
}
