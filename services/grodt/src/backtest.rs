//! `grodt backtest`: one backtest of a CSV file on this machine, through the
//! same code path as the backtest worker ([`grodt_backtest::run`]):
//! prints the metrics table and optionally writes the HTML report.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use grodt_analytics::{MetricsConfig, ReportInput, render_html};
use grodt_backtest::run::{self, Outcome, RunError, RunSpec};
use grodt_core::Decimal;
use grodt_core::rounding::{RoundingMode, round_money};
use grodt_sim::{BacktestConfig, CommissionSpec, SlippageSpec};
use grodt_strategies::registry::{self, RegistryError};

/// Runs with at least this many bars show a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BARS: u64 = 200_000;

/// What can go wrong; the CLI exits 2 for [`BacktestError::Usage`], 1 otherwise.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// A flag's value is invalid (names the flag).
    #[error("{flag}: {reason}")]
    Usage {
        /// The flag at fault.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// The strategy, its parameters, the data or the engine refused the run.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The report or the table could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl BacktestError {
    /// Bad flags are usage errors (status 2), like clap's own.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Usage { .. }
                | Self::Run(RunError::Params(
                    RegistryError::UnknownStrategy { .. }
                        | RegistryError::UnknownParam { .. }
                        | RegistryError::BadValue { .. }
                        | RegistryError::OutOfBounds { .. }
                ))
        )
    }
}

/// The options of `grodt backtest` (parsed by clap in `main`).
#[derive(Debug, Clone, clap::Args)]
pub struct BacktestOptions {
    /// Normalised CSV: timestamp,open,high,low,close,volume.
    #[arg(long)]
    pub data: PathBuf,
    /// Strategy name (`grodt strategies` lists them with their parameters).
    #[arg(long)]
    pub strategy: String,
    /// A strategy parameter as name=value; repeat for several.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Starting cash.
    #[arg(long, default_value = "100000")]
    pub cash: String,
    /// Commission: bps=N, pct=F or per_share=X[,min=Y].
    #[arg(long)]
    pub fees: Option<String>,
    /// Slippage: bps=N.
    #[arg(long)]
    pub slippage: Option<String>,
    /// Periods per year of the metrics (252 equities, 365 crypto).
    #[arg(long, default_value_t = 252.0)]
    pub periods_per_year: f64,
    /// Allow fractional quantities.
    #[arg(long)]
    pub fractional: bool,
    /// Seed of the run's random draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the self-contained HTML report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

fn usage(flag: &'static str, reason: impl Into<String>) -> BacktestError {
    BacktestError::Usage {
        flag,
        reason: reason.into(),
    }
}

fn key_values(flag: &'static str, text: &str) -> Result<BTreeMap<String, String>, BacktestError> {
    let mut out = BTreeMap::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| usage(flag, format!("{part:?} is not name=value")))?;
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

fn decimal(flag: &'static str, key: &str, text: &str) -> Result<Decimal, BacktestError> {
    let d = Decimal::from_str(text)
        .map_err(|_| usage(flag, format!("{key}={text:?} is not a decimal number")))?;
    if d.is_sign_negative() {
        return Err(usage(flag, format!("{key}={text} must not be negative")));
    }
    Ok(d)
}

/// Parses `--fees`: `bps=N` (percentage of notional), `pct=F` (fraction of
/// notional) or `per_share=X[,min=Y]`.
///
/// # Errors
/// [`BacktestError::Usage`] naming `--fees` and the part at fault.
pub fn parse_fees(text: &str) -> Result<CommissionSpec, BacktestError> {
    const FLAG: &str = "--fees";
    let kv = key_values(FLAG, text)?;
    let keys: Vec<&str> = kv.keys().map(String::as_str).collect();
    match keys.as_slice() {
        ["bps"] => Ok(CommissionSpec::Percentage {
            rate: decimal(FLAG, "bps", &kv["bps"])? / Decimal::from(10_000),
        }),
        ["pct"] => Ok(CommissionSpec::Percentage {
            rate: decimal(FLAG, "pct", &kv["pct"])?,
        }),
        ["per_share"] | ["min", "per_share"] => Ok(CommissionSpec::PerShare {
            rate: decimal(FLAG, "per_share", &kv["per_share"])?,
            minimum: kv
                .get("min")
                .map(|m| decimal(FLAG, "min", m))
                .transpose()?
                .unwrap_or(Decimal::ZERO),
        }),
        _ => Err(usage(
            FLAG,
            format!("{text:?}: expected bps=N, pct=F or per_share=X[,min=Y]"),
        )),
    }
}

/// Parses `--slippage bps=N` (whole basis points).
///
/// # Errors
/// [`BacktestError::Usage`] naming `--slippage`.
pub fn parse_slippage(text: &str) -> Result<SlippageSpec, BacktestError> {
    const FLAG: &str = "--slippage";
    let kv = key_values(FLAG, text)?;
    match (kv.len(), kv.get("bps")) {
        (1, Some(bps)) => Ok(SlippageSpec::FixedBps {
            bps: bps
                .parse()
                .map_err(|_| usage(FLAG, format!("bps={bps:?} is not a whole number")))?,
        }),
        _ => Err(usage(FLAG, format!("{text:?}: expected bps=N"))),
    }
}

/// Turns the options into what the shared run path takes.
///
/// # Errors
/// Any flag that does not parse, naming it.
pub fn spec(options: &BacktestOptions) -> Result<RunSpec, BacktestError> {
    let mut params = BTreeMap::new();
    for p in &options.params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| usage("--param", format!("{p:?} is not name=value")))?;
        params.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let strategy = registry::parse(&options.strategy, &params).map_err(RunError::from)?;
    let starting_cash = decimal("--cash", "cash", &options.cash)?;
    if starting_cash.is_zero() {
        return Err(usage("--cash", "must be positive"));
    }
    let config = BacktestConfig {
        starting_cash,
        seed: options.seed,
        commission: options
            .fees
            .as_deref()
            .map(parse_fees)
            .transpose()?
            .unwrap_or_default(),
        slippage: options
            .slippage
            .as_deref()
            .map(parse_slippage)
            .transpose()?
            .unwrap_or_default(),
        ..BacktestConfig::default()
    };
    let metrics = MetricsConfig {
        periods_per_year: options.periods_per_year,
        ..MetricsConfig::equities_daily()
    };
    metrics
        .validate()
        .map_err(|e| usage("--periods-per-year", e.to_string()))?;
    Ok(RunSpec {
        config,
        strategy,
        metrics,
    })
}

/// Runs the backtest, prints the table to `out`, writes the report if asked.
///
/// # Errors
/// Bad flags, unreadable or invalid data, an engine refusal, an unwritable report.
pub fn execute(options: &BacktestOptions, out: &mut dyn Write) -> Result<Outcome, BacktestError> {
    let spec = spec(options)?;
    let bars = run::load_csv(&options.data)?;
    let symbol = options
        .data
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.split('_').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("DATA")
        .to_uppercase();
    let series = run::series_from_bars(&symbol, &bars, options.fractional)?;
    let total = series.bars.len() as u64;
    let mut bar = ProgressBar::new(
        total,
        std::io::stderr().is_terminal() && total >= PROGRESS_MIN_BARS,
    );
    let started = std::time::Instant::now();
    let outcome = run::run(&spec, &[series], &mut |done| bar.update(done))?;
    bar.finish();
    let elapsed = started.elapsed();
    let io = |source| BacktestError::Io {
        path: "stdout".into(),
        source,
    };
    let title = format!(
        "{} {} on {}",
        spec.strategy.name(),
        options.params.join(" "),
        options.data.display()
    );
    write_table(out, &title, &outcome, elapsed).map_err(io)?;
    if let Some(path) = &options.report {
        write_report(path, &title, &outcome)?;
        writeln!(out, "report written to {}", path.display()).map_err(io)?;
    }
    Ok(outcome)
}

fn write_report(path: &Path, title: &str, outcome: &Outcome) -> Result<(), BacktestError> {
    let html = render_html(&ReportInput {
        title,
        equity: &outcome.equity,
        trades: &outcome.closed_trades,
        metrics: &outcome.metrics,
    });
    std::fs::write(path, html).map_err(|source| BacktestError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// `1234567.891` -> `1,234,567.89` (cents, half-even).
pub fn money(d: Decimal) -> String {
    let d = round_money(d, 2, RoundingMode::HalfEven);
    let text = format!("{:.2}", d.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, "00"));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if d.is_sign_negative() && !d.is_zero() {
        "-"
    } else {
        ""
    };
    format!("{sign}{grouped}.{frac}")
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"))
}

fn write_table(
    out: &mut dyn Write,
    title: &str,
    o: &Outcome,
    elapsed: std::time::Duration,
) -> std::io::Result<()> {
    let m = &o.metrics;
    let r = &o.result;
    let c = &r.costs;
    let open = r.trades.iter().filter(|t| t.exit_ts.is_none()).count();
    let tail = &m.tail;
    let normal = |v: Option<grodt_analytics::VarCvar>, f: fn(&grodt_analytics::VarCvar) -> f64| {
        v.as_ref().map_or_else(|| "n/a".to_owned(), |v| pct(f(v)))
    };
    let rows: Vec<(&str, String)> = vec![
        ("final value", money(r.last.equity)),
        (
            "trades",
            format!(
                "{} ({} closed, {open} open)",
                r.trades.len(),
                r.trades.len() - open
            ),
        ),
        ("fills", r.fills.len().to_string()),
        ("bars", r.bars.to_string()),
        ("total return", pct(m.total_return)),
        ("CAGR", pct(m.cagr)),
        (
            "annual volatility",
            m.annual_volatility.map_or("n/a".into(), pct),
        ),
        ("Sharpe", ratio(m.sharpe)),
        ("Sortino", ratio(m.sortino)),
        ("Calmar", ratio(m.calmar)),
        ("max drawdown", pct(m.drawdown.max_drawdown)),
        ("VaR 95 (historical)", pct(tail.historical_95.var)),
        ("VaR 95 (normal)", normal(tail.normal_95, |v| v.var)),
        ("CVaR 95 (historical)", pct(tail.historical_95.cvar)),
        ("CVaR 95 (normal)", normal(tail.normal_95, |v| v.cvar)),
        ("VaR 99 (historical)", pct(tail.historical_99.var)),
        ("CVaR 99 (historical)", pct(tail.historical_99.cvar)),
        ("win rate", m.trades.win_rate.map_or("n/a".into(), pct)),
        ("profit factor", ratio(m.trades.profit_factor)),
        ("exposure", m.exposure.map_or("n/a".into(), pct)),
        ("commission", money(c.commission)),
        ("rebates", money(c.rebates)),
        ("slippage", money(c.slippage)),
        ("borrow", money(c.borrow)),
        ("financing", money(c.financing)),
        (
            "total costs",
            money(c.commission - c.rebates + c.slippage + c.borrow + c.financing),
        ),
        ("run time", format!("{:.3} s", elapsed.as_secs_f64())),
    ];
    writeln!(out, "{title}")?;
    for (name, value) in rows {
        writeln!(out, "  {name:<22} {value:>24}")?;
    }
    Ok(())
}

/// A one-line progress bar on stderr, drawn only when enabled (a terminal and a long run).
struct ProgressBar {
    total: u64,
    enabled: bool,
    last_pct: u64,
}

impl ProgressBar {
    fn new(total: u64, enabled: bool) -> Self {
        Self {
            total: total.max(1),
            enabled,
            last_pct: u64::MAX,
        }
    }

    fn update(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let pct = done.min(self.total) * 100 / self.total;
        if pct == self.last_pct {
            return;
        }
        self.last_pct = pct;
        let filled = usize::try_from(pct / 2).unwrap_or(50);
        eprint!(
            "\r[{}{}] {pct:>3}% {done}/{} bars",
            "#".repeat(filled),
            " ".repeat(50 - filled),
            self.total
        );
    }

    fn finish(&self) {
        if self.enabled {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_thousands_and_rounds_to_cents() {
        assert_eq!(money(Decimal::new(18_209_118, 2)), "182,091.18");
        assert_eq!(money(Decimal::new(-12_345_678, 4)), "-1,234.57");
        assert_eq!(money(Decimal::ZERO), "0.00");
        assert_eq!(money(Decimal::new(999, 0)), "999.00");
    }

    #[test]
    fn fee_and_slippage_specs_parse_or_name_the_flag() {
        assert_eq!(
            parse_fees("bps=5").unwrap(),
            CommissionSpec::Percentage {
                rate: Decimal::new(5, 4)
            }
        );
        assert_eq!(
            parse_fees("per_share=0.005,min=1").unwrap(),
            CommissionSpec::PerShare {
                rate: Decimal::new(5, 3),
                minimum: Decimal::ONE
            }
        );
        assert!(
            parse_fees("flat=3")
                .unwrap_err()
                .to_string()
                .starts_with("--fees")
        );
        assert!(
            parse_fees("bps=-1")
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
        assert_eq!(
            parse_slippage("bps=2").unwrap(),
            SlippageSpec::FixedBps { bps: 2 }
        );
        assert!(
            parse_slippage("bps=x")
                .unwrap_err()
                .to_string()
                .starts_with("--slippage")
        );
    }
}
