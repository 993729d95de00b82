//! A portfolio file run end to end: its CSV files loaded, its strategies
//! built through the registry, the desk run (grodt-portfolio), and the
//! metrics of every strategy and of the whole computed the way a single
//! backtest's are. Used by `grodt backtest --portfolio`.

use std::path::Path;

use grodt_analytics as analytics;
use grodt_core::{Decimal, Instrument};
use grodt_portfolio::file::PortfolioFile;
use grodt_portfolio::{Member, PortfolioResult};
use grodt_sim::BacktestConfig;
use grodt_strategies::registry;

use crate::run::{
    RunError, Series, analytics_equity, analytics_trades, gross_units_at, load_csv_series,
};

/// One strategy's outcome inside the portfolio.
#[derive(Debug, Clone)]
pub struct MemberOutcome {
    /// Its id in the file.
    pub id: String,
    /// Registered strategy name.
    pub strategy: String,
    /// Symbols it traded.
    pub symbols: Vec<String>,
    /// Metrics of its performance net of capital moves (its growth curve
    /// and its trades).
    pub metrics: analytics::Metrics,
    /// Its growth curve: initial capital grown by its returns, net of
    /// rebalancing transfers.
    pub equity: Vec<analytics::EquityPoint>,
    /// Its closed trades.
    pub closed_trades: Vec<analytics::Trade>,
}

/// A portfolio run's outcome.
#[derive(Debug, Clone)]
pub struct PortfolioOutcome {
    /// Everything the desk produced.
    pub result: PortfolioResult,
    /// Metrics of the account (trades: every strategy's together).
    pub metrics: analytics::Metrics,
    /// The account's equity curve.
    pub equity: Vec<analytics::EquityPoint>,
    /// Per strategy, in file order.
    pub members: Vec<MemberOutcome>,
}

/// Loads the file's CSVs (relative paths from `base`), one series per
/// `[data]` symbol in the file's order.
///
/// # Errors
/// A file that cannot be read or parsed, named.
pub fn load_portfolio_series(file: &PortfolioFile, base: &Path) -> Result<Vec<Series>, RunError> {
    file.data
        .iter()
        .map(|(symbol, path)| load_csv_series(&base.join(path), symbol, file.costs.fractional))
        .collect()
}

/// Every distinct bar time of `series`, in order (the portfolio's timestamps).
pub fn timestamps(series: &[Series]) -> Vec<i64> {
    let mut ts: Vec<i64> = series
        .iter()
        .flat_map(|s| s.bars.iter().map(|b| b.ts))
        .collect();
    ts.sort_unstable();
    ts.dedup();
    ts
}

/// Runs the portfolio over `series` (in `[data]` order).
///
/// # Errors
/// A strategy or parameter the registry refuses (named with the strategy
/// id), a plan the allocator refuses, an engine refusal, too few bars.
pub fn run_portfolio(
    file: &PortfolioFile,
    config: &BacktestConfig,
    series: &[Series],
    metrics: &analytics::MetricsConfig,
) -> Result<PortfolioOutcome, RunError> {
    let symbols = file.symbols();
    let instruments: Vec<Instrument> = series.iter().map(|s| s.instrument.clone()).collect();
    let mut members = Vec::with_capacity(file.strategies.len());
    for entry in &file.strategies {
        let member_error = |source| RunError::Member {
            id: entry.id.clone(),
            source,
        };
        let configured = registry::parse(&entry.name, &entry.param_text()).map_err(member_error)?;
        let idx: Vec<usize> = entry
            .symbols
            .iter()
            .map(|s| symbols.iter().position(|x| x == s).unwrap_or(usize::MAX))
            .collect();
        let insts: Vec<Instrument> = idx
            .iter()
            .filter_map(|&i| instruments.get(i).cloned())
            .collect();
        let strategy = configured.build_on(&insts).map_err(member_error)?;
        members.push(Member {
            id: entry.id.clone(),
            strategy,
            instruments: idx,
            max_leverage: entry.max_leverage.unwrap_or(Decimal::ONE),
        });
    }
    let plan = file.plan()?;
    let bars: Vec<_> = series.iter().map(|s| s.bars.clone()).collect();
    let result = grodt_portfolio::run_portfolio(config, &instruments, &bars, members, plan)?;
    let compute =
        |equity: &[analytics::EquityPoint], positions: &[f64], trades: &[analytics::Trade]| {
            analytics::compute(
                &analytics::PerformanceInput {
                    equity,
                    positions: Some(positions),
                    trades,
                },
                metrics,
            )
        };
    let mut all_trades = Vec::new();
    let mut outcomes = Vec::with_capacity(result.members.len());
    for (m, entry) in result.members.iter().zip(&file.strategies) {
        let equity = analytics_equity(&m.growth);
        let closed_trades = analytics_trades(&m.trades);
        let positions = gross_units_at(&m.equity, &m.fills);
        let member_metrics = compute(&equity, &positions, &closed_trades)?;
        all_trades.extend(closed_trades.iter().cloned());
        outcomes.push(MemberOutcome {
            id: m.id.clone(),
            strategy: entry.name.clone(),
            symbols: entry.symbols.clone(),
            metrics: member_metrics,
            equity,
            closed_trades,
        });
    }
    all_trades.sort_by_key(|t| (t.exit_ts, t.entry_ts));
    let equity = analytics_equity(&result.account.equity);
    let positions = gross_units_at(&result.account.equity, &result.account.fills);
    let account_metrics = compute(&equity, &positions, &all_trades)?;
    Ok(PortfolioOutcome {
        result,
        metrics: account_metrics,
        equity,
        members: outcomes,
    })
}
