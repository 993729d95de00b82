//! `grodt sweep`: a parameter grid of a sweep-capable strategy over one CSV,
//! run locally by grodt-sweep's kernels (every set in one pass over the bars,
//! the same trades as `grodt backtest`), with a progress bar; prints the best
//! sets by the chosen metric.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use grodt_backtest::run;
use grodt_core::Decimal;
use grodt_optimize::{Others, Params, Prior, Range, Space};
use grodt_sim::BacktestConfig;
use grodt_sweep::{Outcome, Series, Threads};
use rust_decimal::prelude::ToPrimitive;

use crate::backtest::{
    AssetClassFlag, BacktestError, money, parse_fees, parse_slippage, pct, ratio, usage,
};

/// The options of `grodt sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepOptions {
    /// Normalised CSV: timestamp,open,high,low,close,volume.
    #[arg(long)]
    pub data: PathBuf,
    /// A strategy with a sweep kernel (`sma_cross`).
    #[arg(long, default_value = "sma_cross")]
    pub strategy: String,
    /// A swept parameter: NAME=MIN..MAX[:STEP] (the schema's step when none)
    /// or NAME=A,B,C; repeat for several. Sets the strategy's constraints
    /// refuse (fast >= slow) are skipped.
    #[arg(long = "param", value_name = "SPEC", required = true)]
    pub params: Vec<String>,
    /// A parameter held fixed, NAME=VALUE.
    #[arg(long = "fixed", value_name = "NAME=VALUE")]
    pub fixed: Vec<String>,
    /// Starting cash.
    #[arg(long, default_value = "100000")]
    pub cash: String,
    /// Commission: bps=N or pct=F (the kernels model percentage fees).
    #[arg(long)]
    pub fees: Option<String>,
    /// Slippage: bps=N.
    #[arg(long)]
    pub slippage: Option<String>,
    /// Allow fractional quantities.
    #[arg(long)]
    pub fractional: bool,
    /// Trading calendar used to infer the periods per year.
    #[arg(long, value_enum, default_value_t = AssetClassFlag::Equity)]
    pub asset_class: AssetClassFlag,
    /// Rank by: sharpe, sortino, calmar, return, final, drawdown.
    #[arg(long, default_value = "sharpe")]
    pub rank: String,
    /// Rows of the table.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Run on the calling thread only (the results are the same).
    #[arg(long)]
    pub one_thread: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// One `--param` spec as a range of the optimizer's search spaces:
/// `NAME=MIN..MAX[:STEP]` (the schema's step when none) or `NAME=A,B,C`.
///
/// # Errors
/// A malformed spec, naming it.
pub fn range_of(spec: &str) -> Result<(String, Range), BacktestError> {
    let bad = |why: &str| usage("--param", format!("{spec:?}: {why}"));
    let (name, parts) = crate::param_spec::split(spec).map_err(bad)?;
    let range = match parts {
        crate::param_spec::Spec::Span { min, max, step } => {
            let num = |x: &str| {
                x.parse::<f64>()
                    .map_err(|_| bad("bounds and step must be numbers"))
            };
            Range::Linear {
                min: num(min)?,
                max: num(max)?,
                step: step.map(num).transpose()?,
                prior: Prior::default(),
            }
        }
        crate::param_spec::Spec::Values(values) => Range::Values { values },
    };
    Ok((name.to_owned(), range))
}

/// The valid points of the grid the specs describe, in grid order, and how
/// many points the strategy's constraints refused. The grid is the
/// optimizer's search space (`grodt_optimize::Space`): ranges checked
/// against the registry's schema, constraints skipped block by block.
///
/// # Errors
/// A malformed spec, a range the schema refuses, or a grid above 10
/// million points.
pub fn grid(
    strategy: &str,
    specs: &[String],
    fixed: &[String],
) -> Result<(Vec<Params>, u64), BacktestError> {
    let mut ranges = BTreeMap::new();
    for spec in specs {
        let (name, range) = range_of(spec)?;
        ranges.insert(name, range);
    }
    for f in fixed {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| usage("--fixed", format!("{f:?} is not NAME=VALUE")))?;
        ranges.insert(
            k.trim().to_owned(),
            Range::Fixed {
                value: v.trim().to_owned(),
            },
        );
    }
    let space = Space::new(strategy, &ranges, Others::Default)
        .map_err(|e| usage("--param", e.to_string()))?;
    let total = space
        .grid_len()
        .ok_or_else(|| usage("--param", "a grid needs discrete ranges"))?;
    if total > 10_000_000 {
        return Err(usage(
            "--param",
            format!("{total} sets; at most 10,000,000"),
        ));
    }
    let mut sets = Vec::new();
    let mut i = 0;
    while i < total {
        let p = space.grid_point(i);
        if let Some(next) = space.skip_invalid_block(i, &p) {
            i = next;
            continue;
        }
        if space.is_valid(&p) {
            sets.push(p);
        }
        i += 1;
    }
    let skipped = total - sets.len() as u64;
    Ok((sets, skipped))
}

fn key(o: &Outcome, rank: &str) -> f64 {
    let m = &o.metrics;
    let v = match rank {
        "sortino" => m.sortino,
        "calmar" => m.calmar,
        "return" => Some(m.total_return),
        "final" => o.final_equity.to_f64(),
        // Shallower drawdowns rank first (drawdowns are <= 0).
        "drawdown" => Some(m.max_drawdown),
        _ => m.sharpe,
    };
    v.filter(|x| x.is_finite()).unwrap_or(f64::NEG_INFINITY)
}

/// Runs the sweep, prints the table to `out`; returns the outcomes best first.
///
/// # Errors
/// Bad flags (named), unreadable data, a strategy or setting the kernels do
/// not model (named).
pub fn execute(o: &SweepOptions, out: &mut dyn Write) -> Result<Vec<Outcome>, BacktestError> {
    if !["sharpe", "sortino", "calmar", "return", "final", "drawdown"].contains(&o.rank.as_str()) {
        return Err(usage(
            "--rank",
            format!(
                "{:?}; valid: sharpe, sortino, calmar, return, final, drawdown",
                o.rank
            ),
        ));
    }
    let starting_cash: Decimal = o
        .cash
        .parse()
        .map_err(|_| usage("--cash", format!("{:?} is not a number", o.cash)))?;
    let config = BacktestConfig {
        starting_cash,
        commission: o
            .fees
            .as_deref()
            .map(parse_fees)
            .transpose()?
            .unwrap_or_default(),
        slippage: o
            .slippage
            .as_deref()
            .map(parse_slippage)
            .transpose()?
            .unwrap_or_default(),
        ..BacktestConfig::default()
    };
    grodt_sweep::check(&o.strategy, &config).map_err(|e| usage("--strategy", e.to_string()))?;
    let (sets, skipped) = grid(&o.strategy, &o.params, &o.fixed)?;
    if sets.is_empty() {
        return Err(usage("--param", "no parameter set the strategy accepts"));
    }
    let symbol = o
        .data
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.split('_').next())
        .unwrap_or("DATA")
        .to_uppercase();
    let series = run::load_csv_series(&o.data, &symbol, o.fractional)?;
    let ts: Vec<i64> = series.bars.iter().map(|b| b.ts).collect();
    let metrics = grodt_analytics::MetricsConfig {
        periods_per_year: grodt_analytics::infer_periods_per_year(&ts, o.asset_class.into()),
        ..grodt_analytics::MetricsConfig::equities_daily()
    };
    let kernel_series = Series::new(&series.instrument, &series.bars)
        .map_err(|e| usage("--data", e.to_string()))?;
    let bar = if o.no_progress || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(sets.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} sets [{bar:30}] {elapsed_precise} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    };
    let threads = if o.one_thread {
        Threads::One
    } else {
        Threads::All
    };
    let started = std::time::Instant::now();
    let mut outcomes = grodt_sweep::sweep_with_progress(
        &o.strategy,
        &kernel_series,
        &sets,
        &config,
        &metrics,
        threads,
        &mut |done| bar.set_position(done as u64),
    )
    .map_err(|e| usage("--param", e.to_string()))?;
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    outcomes.sort_by(|a, b| key(b, &o.rank).total_cmp(&key(a, &o.rank)));
    let io = |source| BacktestError::Io {
        path: "stdout".into(),
        source,
    };
    #[allow(clippy::cast_precision_loss, reason = "a throughput to print")]
    let rate = (sets.len() * series.bars.len()) as f64 / elapsed.max(1e-9);
    let mut text = format!(
        "{} on {}: {} sets swept ({skipped} refused by the strategy's constraints), {} bars, \
         {elapsed:.3} s, {rate:.3e} set-bars/s\nbest by {}\n",
        o.strategy,
        o.data.display(),
        sets.len(),
        series.bars.len(),
        o.rank,
    );
    let names: Vec<&String> = outcomes
        .first()
        .map(|x| x.params.keys().collect())
        .unwrap_or_default();
    text.push_str(&format!(
        "  {:<40} {:>15} {:>9} {:>8} {:>8} {:>9} {:>7}\n",
        "parameters", "final value", "return", "Sharpe", "Sortino", "max DD", "trades"
    ));
    for x in outcomes.iter().take(o.top) {
        let p: Vec<String> = names
            .iter()
            .filter(|n| !o.fixed.iter().any(|f| f.starts_with(&format!("{n}="))))
            .map(|n| format!("{n}={}", x.params[*n]))
            .collect();
        let m = &x.metrics;
        text.push_str(&format!(
            "  {:<40} {:>15} {:>9} {:>8} {:>8} {:>9} {:>7}\n",
            p.join(" "),
            money(x.final_equity),
            pct(m.total_return),
            ratio(m.sharpe),
            ratio(m.sortino),
            pct(m.max_drawdown),
            x.trades,
        ));
    }
    out.write_all(text.as_bytes()).map_err(io)?;
    Ok(outcomes)
}
