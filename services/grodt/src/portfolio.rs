//! `grodt backtest --portfolio FILE`: several strategies on one account from
//! a portfolio file (docs/portfolio.md). Prints the portfolio's metrics, each
//! strategy's, what netting saved and the correlation of the strategies'
//! returns; writes the HTML report with every strategy's equity if asked.

use std::io::Write;
use std::path::Path;

use grodt_analytics::{Part, ReportInput, render_html};
use grodt_backtest::portfolio::{PortfolioOutcome, load_portfolio_series, run_portfolio};
use grodt_backtest::run::RunError;
use grodt_portfolio::file::PortfolioFile;
use grodt_sim::{BacktestConfig, LimitFill};

use crate::backtest::{
    BacktestError, BacktestOptions, LimitFillFlag, metrics_for, money, pct, ratio, usage,
};

/// Line colours of the strategies in the report, in file order.
const COLORS: [&str; 8] = [
    "#2e7d32", "#c62828", "#1565c0", "#f9a825", "#6a1b9a", "#00838f", "#ef6c00", "#5d4037",
];

/// The engine config of a portfolio file: its costs, the run flags of
/// `options` that the file does not set.
///
/// # Errors
/// A cost the file spells wrongly (named as `[costs] fees` and so on).
pub fn config_of(
    file: &PortfolioFile,
    options: &BacktestOptions,
) -> Result<BacktestConfig, BacktestError> {
    let base = file.engine_config().map_err(|e| match e {
        grodt_portfolio::PortfolioError::Invalid { field, reason } => usage(field, reason),
        other => usage("[costs]", other.to_string()),
    })?;
    let config = BacktestConfig {
        seed: options.seed,
        limit_fill: match options.limit_fill {
            LimitFillFlag::TradeThrough => LimitFill::TradeThrough,
            LimitFillFlag::Touch => LimitFill::Touch,
        },
        borrow_day_count: options.borrow_day_count.into(),
        financing_day_count: options.financing_day_count.into(),
        enforce_margin: !options.no_margin_check,
        cost_dp: options.cost_dp,
        ..base
    };
    config
        .validate()
        .map_err(|e| usage("[costs]", e.to_string()))?;
    Ok(config)
}

/// Runs the portfolio file, prints the tables to `out`, writes the report.
///
/// # Errors
/// An unreadable or invalid file (named), data or strategies it names that
/// cannot be used, an engine refusal, an unwritable report.
pub fn execute(
    path: &Path,
    options: &BacktestOptions,
    out: &mut dyn Write,
) -> Result<PortfolioOutcome, BacktestError> {
    let text = std::fs::read_to_string(path).map_err(|source| BacktestError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let file = PortfolioFile::parse(&text).map_err(RunError::from)?;
    let config = config_of(&file, options)?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let series = load_portfolio_series(&file, base)?;
    let ts = grodt_backtest::portfolio::timestamps(&series);
    let metrics = metrics_for(options, &ts);
    let started = std::time::Instant::now();
    let outcome = run_portfolio(&file, &config, &series, &metrics)?;
    let elapsed = started.elapsed();
    let title = file
        .name
        .clone()
        .unwrap_or_else(|| format!("portfolio {}", path.display()));
    let io = |source| BacktestError::Io {
        path: "stdout".into(),
        source,
    };
    write_tables(out, &title, &outcome, elapsed).map_err(io)?;
    if let Some(report) = &options.report {
        std::fs::write(report, report_html(&title, &outcome)).map_err(|source| {
            BacktestError::Io {
                path: report.display().to_string(),
                source,
            }
        })?;
        writeln!(out, "report written to {}", report.display()).map_err(io)?;
    }
    Ok(outcome)
}

/// The report: the portfolio's page with every strategy's equity and metrics.
pub fn report_html(title: &str, o: &PortfolioOutcome) -> String {
    let names: Vec<String> = o
        .members
        .iter()
        .map(|m| format!("{} ({} on {})", m.id, m.strategy, m.symbols.join("/")))
        .collect();
    let parts: Vec<Part<'_>> = o
        .members
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(k, (m, name))| Part {
            name,
            color: COLORS[k % COLORS.len()],
            equity: &m.equity,
            metrics: &m.metrics,
        })
        .collect();
    let mut trades: Vec<grodt_analytics::Trade> = o
        .members
        .iter()
        .flat_map(|m| m.closed_trades.iter().cloned())
        .collect();
    trades.sort_by_key(|t| (t.entry_ts, t.exit_ts));
    render_html(&ReportInput {
        title,
        equity: &o.equity,
        trades: &trades,
        metrics: &o.metrics,
        breakdown: None,
        parts: &parts,
    })
}

fn write_tables(
    out: &mut dyn Write,
    title: &str,
    o: &PortfolioOutcome,
    elapsed: std::time::Duration,
) -> std::io::Result<()> {
    let r = &o.result;
    let m = &o.metrics;
    let c = &r.account.costs;
    let n = &r.netting;
    writeln!(out, "{title}")?;
    let rows: Vec<(&str, String)> = vec![
        ("final value", money(r.account.last.equity)),
        ("total return", pct(m.total_return)),
        ("CAGR", pct(m.cagr)),
        (
            "annual volatility",
            m.annual_volatility.map_or("n/a".into(), pct),
        ),
        ("Sharpe", ratio(m.sharpe)),
        ("Sortino", ratio(m.sortino)),
        ("max drawdown", pct(m.drawdown.max_drawdown)),
        (
            "diversification ratio",
            r.diversification_ratio
                .map_or("n/a".into(), |d| format!("{:.3}", d.round_dp(3))),
        ),
        ("commission", money(c.commission)),
        ("slippage", money(c.slippage)),
        ("borrow + financing", money(c.borrow + c.financing)),
        ("orders (strategies)", n.orders.to_string()),
        ("orders (venue)", n.venue_orders.to_string()),
        ("commission saved", money(n.commission_saved)),
        ("rebalances", r.rebalances.len().to_string()),
        ("orders refused", r.refusals.len().to_string()),
        ("unallocated", money(r.reserve)),
        (
            "halted",
            r.halted_at
                .map_or("no".into(), grodt_core::time::format_date),
        ),
        ("run time", format!("{:.3} s", elapsed.as_secs_f64())),
    ];
    for (name, value) in rows {
        writeln!(out, "  {name:<22} {value:>24}")?;
    }
    writeln!(
        out,
        "  per strategy (return, CAGR, Sharpe, max DD: net of capital moved by rebalancing)"
    )?;
    writeln!(
        out,
        "  {:<10} {:<9} {:>13} {:>13} {:>9} {:>8} {:>7} {:>8} {:>7} {:>8} {:>11}",
        "strategy",
        "symbols",
        "final equity",
        "capital moved",
        "return",
        "CAGR",
        "Sharpe",
        "max DD",
        "trades",
        "win rate",
        "commission"
    )?;
    for (mo, mr) in o.members.iter().zip(&r.members) {
        let mm = &mo.metrics;
        writeln!(
            out,
            "  {:<10} {:<9} {:>13} {:>13} {:>9} {:>8} {:>7} {:>8} {:>7} {:>8} {:>11}",
            mo.id,
            mo.symbols.join("/"),
            money(mr.equity.last().map_or(mr.initial, |p| p.equity)),
            money(mr.transferred),
            pct(mm.total_return),
            pct(mm.cagr),
            ratio(mm.sharpe),
            pct(mm.drawdown.max_drawdown),
            mm.trades.count,
            mm.trades.win_rate.map_or("n/a".into(), pct),
            money(mr.costs.commission),
        )?;
    }
    if r.correlation.len() > 1 {
        writeln!(out, "  correlation of strategy returns")?;
        for (row, mo) in r.correlation.iter().zip(&o.members) {
            let cells: Vec<String> = row
                .iter()
                .map(|x| format!("{:>7}", format!("{:.3}", x.round_dp(3))))
                .collect();
            writeln!(out, "    {:<14} {}", mo.id, cells.join(" "))?;
        }
    }
    if let Some(why) = &r.halt_reason {
        writeln!(out, "note: trading halted: {why}")?;
    }
    if let Some(first) = r.refusals.first() {
        writeln!(
            out,
            "note: {} order(s) refused; the first: {} order {}: {}",
            r.refusals.len(),
            first.member,
            first.order,
            first.reason
        )?;
    }
    Ok(())
}
