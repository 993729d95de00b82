//! `grodt backtest`: one backtest of a CSV file on this machine, through the
//! same code path as the backtest worker ([`grodt_backtest::run`]):
//! prints the metrics table and optionally writes the HTML report.
//!
//! The cost and fill flags speak the vocabulary of `backtest.proto`'s
//! `CostModel` and of the engine's `BacktestConfig`, one flag (or flag value)
//! per option:
//!
//! | flag | wire (`CostModel`) | engine |
//! |---|---|---|
//! | `--slippage bps=N` / `volume_share=F` / `spread_bps=N` | `slippage.fixed_bps` / `volume_share` / `spread` | `SlippageSpec::FixedBps` / `VolumeShare` / `HalfSpread` |
//! | `--fees per_share=X[,min=Y]` | `commission.per_share` | `CommissionSpec::PerShare` |
//! | `--fees per_share=X[,min=Y],max_fraction=F` | `per_share.maximum_fraction` | `PerShareCapped` |
//! | `--fees pct=F` (or `bps=N`) | `commission.percentage` | `Percentage` |
//! | `--fees pct=F,min=Y` (or `bps=N,min=Y`) | `percentage.minimum` | `PercentageWithMinimum` |
//! | `--fees tiered=FROM:RATE/FROM:RATE...` | `commission.tiered` | `TieredNotional` |
//! | `--fees tiered_per_share=FROM:RATE/...[,min=Y]` | `commission.tiered_per_share` | `TieredMonthly` |
//! | `--fees maker=F,taker=F` | `commission.maker_taker` | `MakerTaker` |
//! | `--latency fixed=DUR` / `uniform=DUR..DUR` / `lognormal=DUR,sigma=F[,max=DUR]` | `latency.fixed` / `uniform` / `random` | `LatencySpec::Fixed` / `Uniform` / `LogNormal` |
//! | `--limit-fill touch` | `fill.limit_fill_on_touch` | `LimitFill::Touch` |
//! | `--max-participation F` | `fill.max_volume_participation` | `max_participation` |
//! | `--fractional` | `fill.allow_fractional` | instrument size precision |
//! | `--fill-timing same-bar-close` | `fill.fill_at_decision_bar_close` | `FillTiming::SameBarClose` |
//! | `--no-margin-check` | `fill.disable_margin_check` | `enforce_margin = false` |
//! | `--borrow-rate F`, `--borrow-day-count` | `borrow.default_annual_rate`, `borrow.day_count` | `borrow_rate`, `borrow_day_count` |
//! | `--financing-rate F`, `--financing-day-count` | `financing.annual_rate`, `financing.day_count` | `financing_rate`, `financing_day_count` |
//! | `--cost-dp N` | `cost_decimal_places` | `cost_dp` |
//!
//! Durations (`DUR`) are a decimal number and a unit: `ns`, `us`, `ms`, `s`,
//! `min`, `h` (`250ms`, `1.5s`).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use grodt_analytics::{
    AssetClass, Breakdown, LabelClass, MetricsConfig, ReportInput, format_duration,
    infer_periods_per_year, render_html,
};
use grodt_backtest::run::{self, Outcome, RegimeLabel, RunError, RunSpec};
use grodt_core::Decimal;
use grodt_core::rounding::{RoundingMode, round_money};
use grodt_regimes::Regime;
use grodt_sim::cost_text;
use grodt_sim::{
    BacktestConfig, CommissionSpec, DayCount, FillTiming, LatencySpec, LimitFill, SlippageSpec,
};
use grodt_strategies::registry::{self, RegistryError};
use rust_decimal::prelude::ToPrimitive;

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
    #[arg(long, required_unless_present = "portfolio")]
    pub data: Option<PathBuf>,
    /// Strategy name (`grodt strategies` lists them with their parameters).
    #[arg(long, required_unless_present = "portfolio")]
    pub strategy: Option<String>,
    /// A portfolio file (TOML, docs/portfolio.md): several strategies on
    /// one account; data, costs and strategies come from the file.
    #[arg(long, conflicts_with_all = ["data", "strategy", "params", "fees", "slippage", "latency", "fractional", "max_participation"])]
    pub portfolio: Option<PathBuf>,
    /// A strategy parameter as name=value; repeat for several.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Starting cash.
    #[arg(long, default_value = "100000")]
    pub cash: String,
    /// Commission: pct=F or bps=N [,min=Y]; per_share=X[,min=Y][,max_fraction=F];
    /// tiered=FROM:RATE/FROM:RATE... (fraction by monthly notional);
    /// tiered_per_share=FROM:RATE/...[,min=Y] (per unit by monthly quantity);
    /// maker=F,taker=F.
    #[arg(long, visible_alias = "commission")]
    pub fees: Option<String>,
    /// Slippage: bps=N, volume_share=F (impact coefficient) or spread_bps=N.
    #[arg(long)]
    pub slippage: Option<String>,
    /// Latency: fixed=DUR, uniform=DUR..DUR or lognormal=MEDIAN,sigma=F[,max=DUR]
    /// (DUR like 250ms, 1.5s; random draws use --seed).
    #[arg(long)]
    pub latency: Option<String>,
    /// When a resting limit order fills: when traded through, or on touch.
    #[arg(long, value_enum, default_value_t = LimitFillFlag::TradeThrough)]
    pub limit_fill: LimitFillFlag,
    /// When a market order fills: the next bar's open, or the decision bar's close.
    #[arg(long, value_enum, default_value_t = FillTimingFlag::NextOpen)]
    pub fill_timing: FillTimingFlag,
    /// Maximum share of a bar's volume one order may take, in (0, 1]; the rest carries over.
    #[arg(long)]
    pub max_participation: Option<String>,
    /// Annual borrow rate on short notional.
    #[arg(long, default_value = "0")]
    pub borrow_rate: String,
    /// Day count of borrow accrual.
    #[arg(long, value_enum, default_value_t = DayCountFlag::Act360)]
    pub borrow_day_count: DayCountFlag,
    /// Annual financing rate on negative cash.
    #[arg(long, default_value = "0")]
    pub financing_rate: String,
    /// Day count of financing accrual.
    #[arg(long, value_enum, default_value_t = DayCountFlag::Act365)]
    pub financing_day_count: DayCountFlag,
    /// Accept fills whose initial margin would exceed equity.
    #[arg(long)]
    pub no_margin_check: bool,
    /// Decimal places costs are rounded up to (0..=18).
    #[arg(long, default_value_t = 8)]
    pub cost_dp: u32,
    /// Periods per year of the metrics; unset = inferred from the bars'
    /// spacing and --asset-class (daily equities 252, 1-minute crypto 525,600).
    #[arg(long)]
    pub periods_per_year: Option<f64>,
    /// Trading calendar used to infer the periods per year.
    #[arg(long, value_enum, default_value_t = AssetClassFlag::Equity)]
    pub asset_class: AssetClassFlag,
    /// Allow fractional quantities.
    #[arg(long)]
    pub fractional: bool,
    /// Seed of the run's random draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the self-contained HTML report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Skip the per-regime breakdown (by default every bar is labelled with
    /// grodt-regimes' default classifier and the metrics are shown by regime).
    #[arg(long)]
    pub no_regimes: bool,
}

/// `--limit-fill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LimitFillFlag {
    /// The price must trade through the limit.
    TradeThrough,
    /// Touching the limit fills.
    Touch,
}

/// `--fill-timing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FillTimingFlag {
    /// The next bar's open (plus latency).
    NextOpen,
    /// The decision bar's close (lookahead-prone; for parity with other libraries).
    SameBarClose,
}

/// `--borrow-day-count`, `--financing-day-count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DayCountFlag {
    /// Actual/360.
    Act360,
    /// Actual/365.
    Act365,
}

/// `--asset-class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AssetClassFlag {
    /// 252 days of 6.5 h.
    Equity,
    /// 365 days of 24 h.
    Crypto,
    /// 260 days of 24 h.
    Fx,
    /// 252 days of 23 h.
    Futures,
}

impl From<AssetClassFlag> for AssetClass {
    fn from(f: AssetClassFlag) -> Self {
        match f {
            AssetClassFlag::Equity => Self::Equity,
            AssetClassFlag::Crypto => Self::Crypto,
            AssetClassFlag::Fx => Self::Fx,
            AssetClassFlag::Futures => Self::Futures,
        }
    }
}

impl From<DayCountFlag> for DayCount {
    fn from(f: DayCountFlag) -> Self {
        match f {
            DayCountFlag::Act360 => Self::Act360,
            DayCountFlag::Act365 => Self::Act365,
        }
    }
}

pub(crate) fn usage(flag: &'static str, reason: impl Into<String>) -> BacktestError {
    BacktestError::Usage {
        flag,
        reason: reason.into(),
    }
}

fn key_values(flag: &'static str, text: &str) -> Result<BTreeMap<String, String>, BacktestError> {
    cost_text::key_values(text).map_err(|e| usage(flag, e.reason))
}

fn decimal(flag: &'static str, key: &str, text: &str) -> Result<Decimal, BacktestError> {
    cost_text::decimal(key, text).map_err(|e| usage(flag, e.reason))
}

/// Parses `--fees` (alias `--commission`); see the module docs for the forms.
///
/// # Errors
/// [`BacktestError::Usage`] naming `--fees` and the part at fault.
pub fn parse_fees(text: &str) -> Result<CommissionSpec, BacktestError> {
    cost_text::commission(text).map_err(|e| usage("--fees", e.reason))
}

/// Parses `--slippage`: `bps=N` (basis points, fractions allowed), `volume_share=F` (impact
/// coefficient) or `spread_bps=N` (full spread, half paid per fill).
///
/// # Errors
/// [`BacktestError::Usage`] naming `--slippage`.
pub fn parse_slippage(text: &str) -> Result<SlippageSpec, BacktestError> {
    cost_text::slippage(text).map_err(|e| usage("--slippage", e.reason))
}

/// Parses a duration: a non-negative decimal number and a unit (`ns`, `us`,
/// `ms`, `s`, `min`, `h`), exactly, to nanoseconds.
///
/// # Errors
/// [`BacktestError::Usage`] naming `flag`.
pub fn parse_duration(flag: &'static str, text: &str) -> Result<i64, BacktestError> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).ok_or_else(|| {
        usage(
            flag,
            format!("{text:?}: a duration needs a unit (ns, us, ms, s, min, h)"),
        )
    })?;
    let (number, unit) = t.split_at(split);
    let per: i64 = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(usage(
                flag,
                format!("{text:?}: unknown unit {unit:?} (ns, us, ms, s, min, h)"),
            ));
        }
    };
    let n = decimal(flag, "duration", number.trim())? * Decimal::from(per);
    if !n.fract().is_zero() {
        return Err(usage(
            flag,
            format!("{text:?} is not a whole number of nanoseconds"),
        ));
    }
    n.to_i64()
        .ok_or_else(|| usage(flag, format!("{text:?} is too long")))
}

/// Parses `--latency`: `fixed=DUR`, `uniform=DUR..DUR` or
/// `lognormal=MEDIAN,sigma=F[,max=DUR]`.
///
/// # Errors
/// [`BacktestError::Usage`] naming `--latency`.
pub fn parse_latency(text: &str) -> Result<LatencySpec, BacktestError> {
    const FLAG: &str = "--latency";
    let kv = key_values(FLAG, text)?;
    let keys: Vec<&str> = kv.keys().map(String::as_str).collect();
    match keys.as_slice() {
        ["fixed"] => Ok(LatencySpec::Fixed {
            nanos: parse_duration(FLAG, &kv["fixed"])?,
        }),
        ["uniform"] => {
            let (lo, hi) = kv["uniform"]
                .split_once("..")
                .ok_or_else(|| usage(FLAG, "uniform: expected MIN..MAX"))?;
            Ok(LatencySpec::Uniform {
                min: parse_duration(FLAG, lo)?,
                max: parse_duration(FLAG, hi)?,
            })
        }
        ["lognormal", "sigma"] | ["lognormal", "max", "sigma"] => Ok(LatencySpec::LogNormal {
            median: parse_duration(FLAG, &kv["lognormal"])?,
            sigma: decimal(FLAG, "sigma", &kv["sigma"])?,
            max: kv.get("max").map(|m| parse_duration(FLAG, m)).transpose()?,
        }),
        _ => Err(usage(
            FLAG,
            format!(
                "{text:?}: expected fixed=DUR, uniform=DUR..DUR or lognormal=DUR,sigma=F[,max=DUR]"
            ),
        )),
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
    let name = options
        .strategy
        .as_deref()
        .ok_or_else(|| usage("--strategy", "required (or --portfolio)"))?;
    let strategy = registry::parse(name, &params).map_err(RunError::from)?;
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
        latency: options
            .latency
            .as_deref()
            .map(parse_latency)
            .transpose()?
            .unwrap_or_default(),
        limit_fill: match options.limit_fill {
            LimitFillFlag::TradeThrough => LimitFill::TradeThrough,
            LimitFillFlag::Touch => LimitFill::Touch,
        },
        fill_timing: match options.fill_timing {
            FillTimingFlag::NextOpen => FillTiming::NextOpen,
            FillTimingFlag::SameBarClose => FillTiming::SameBarClose,
        },
        max_participation: options
            .max_participation
            .as_deref()
            .map(|p| decimal("--max-participation", "max-participation", p))
            .transpose()?,
        borrow_rate: decimal("--borrow-rate", "borrow-rate", &options.borrow_rate)?,
        borrow_day_count: options.borrow_day_count.into(),
        financing_rate: decimal(
            "--financing-rate",
            "financing-rate",
            &options.financing_rate,
        )?,
        financing_day_count: options.financing_day_count.into(),
        enforce_margin: !options.no_margin_check,
        cost_dp: options.cost_dp,
        trade_from: None,
    };
    config.validate().map_err(|e| {
        let flag = match &e {
            grodt_sim::SimError::InvalidConfig { field, .. } => flag_of(field),
            _ => "--fees",
        };
        usage(flag, e.to_string())
    })?;
    let class = AssetClass::from(options.asset_class);
    let metrics = MetricsConfig {
        periods_per_year: options.periods_per_year.unwrap_or(class.trading_days()),
        ..MetricsConfig::equities_daily()
    };
    metrics
        .validate()
        .map_err(|e| usage("--periods-per-year", e.to_string()))?;
    Ok(RunSpec {
        config,
        strategy,
        metrics,
        regimes: (!options.no_regimes).then(grodt_regimes::RegimeConfig::default),
    })
}

/// The flag of an engine config field, for usage errors.
fn flag_of(field: &str) -> &'static str {
    match field.split('.').next().unwrap_or(field) {
        "commission" => "--fees",
        "slippage" => "--slippage",
        "latency" => "--latency",
        "max_participation" => "--max-participation",
        "borrow_rate" => "--borrow-rate",
        "financing_rate" => "--financing-rate",
        "cost_dp" => "--cost-dp",
        "starting_cash" => "--cash",
        _ => "--fees",
    }
}

/// The metrics settings for bars at `bar_timestamps`: `--periods-per-year`
/// when given, else inferred from the bars' spacing and `--asset-class`.
pub fn metrics_for(options: &BacktestOptions, bar_timestamps: &[i64]) -> MetricsConfig {
    MetricsConfig {
        periods_per_year: options
            .periods_per_year
            .unwrap_or_else(|| infer_periods_per_year(bar_timestamps, options.asset_class.into())),
        ..MetricsConfig::equities_daily()
    }
}

/// Runs the backtest, prints the table to `out`, writes the report if asked.
///
/// # Errors
/// Bad flags, unreadable or invalid data, an engine refusal, an unwritable report.
pub fn execute(options: &BacktestOptions, out: &mut dyn Write) -> Result<Outcome, BacktestError> {
    let mut spec = spec(options)?;
    let data = options
        .data
        .as_deref()
        .ok_or_else(|| usage("--data", "required (or --portfolio)"))?;
    let symbol = data
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.split('_').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("DATA")
        .to_uppercase();
    let series = run::load_csv_series(data, &symbol, options.fractional)?;
    let ts: Vec<i64> = series.bars.iter().map(|b| b.ts).collect();
    spec.metrics = metrics_for(options, &ts);
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
    let mut words = vec![spec.strategy.name().to_owned()];
    words.extend(options.params.iter().cloned());
    let title = format!("{} on {}", words.join(" "), data.display());
    write_table(out, &title, &outcome, &spec.metrics, elapsed).map_err(io)?;
    write_regime_table(out, &outcome).map_err(io)?;
    if let Some(path) = &options.report {
        write_report(path, &title, &outcome)?;
        writeln!(out, "report written to {}", path.display()).map_err(io)?;
    }
    Ok(outcome)
}

/// The colour of a regime's bands in the report.
pub fn regime_color(label: RegimeLabel) -> &'static str {
    match label {
        RegimeLabel::Regime(Regime::TrendingUp) => "#2e7d32",
        RegimeLabel::Regime(Regime::TrendingDown) => "#c62828",
        RegimeLabel::Regime(Regime::Ranging) => "#1565c0",
        RegimeLabel::Regime(Regime::Transition) => "#f9a825",
        RegimeLabel::Regime(Regime::HighVolatility) => "#6a1b9a",
        RegimeLabel::WarmUp => "#9e9e9e",
    }
}

/// The HTML report: equity with regime bands and the per-regime table when
/// the run was broken down by regime.
pub fn report_html(title: &str, outcome: &Outcome) -> String {
    let classes: Vec<LabelClass<'_>> = outcome
        .regimes
        .iter()
        .flat_map(|b| &b.by_regime)
        .map(|(l, m)| LabelClass {
            name: l.name(),
            color: regime_color(*l),
            metrics: m,
        })
        .collect();
    let indices: Vec<usize> = outcome.regimes.as_ref().map_or_else(Vec::new, |b| {
        b.labels
            .iter()
            .map(|l| {
                b.by_regime
                    .iter()
                    .position(|(x, _)| x == l)
                    .unwrap_or(usize::MAX)
            })
            .collect()
    });
    render_html(&ReportInput {
        title,
        equity: &outcome.equity,
        trades: &outcome.closed_trades,
        metrics: &outcome.metrics,
        breakdown: outcome.regimes.as_ref().map(|_| Breakdown {
            title: "regime",
            classes: &classes,
            labels: &indices,
        }),
        parts: &[],
    })
}

/// The per-regime table (nothing when the run was not broken down).
fn write_regime_table(out: &mut dyn Write, o: &Outcome) -> std::io::Result<()> {
    let Some(b) = &o.regimes else {
        return Ok(());
    };
    writeln!(
        out,
        "by regime (regime in force at each bar's start, grodt-regimes defaults; \
         trades, win rate and trade PnL: the trades entered in the regime)"
    )?;
    writeln!(
        out,
        "  {:<16} {:>7} {:>7} {:>9} {:>8} {:>9} {:>7} {:>8} {:>14}",
        "regime", "bars", "time", "return", "Sharpe", "max DD", "trades", "win rate", "trade PnL"
    )?;
    for (label, m) in &b.by_regime {
        writeln!(
            out,
            "  {:<16} {:>7} {:>7} {:>9} {:>8} {:>9} {:>7} {:>8} {:>14}",
            label.name(),
            m.periods,
            format!("{:.1}%", b.time_share(*label) * 100.0),
            pct(m.total_return),
            m.sharpe
                .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}")),
            pct(m.drawdown.max_drawdown),
            m.trades.count,
            m.trades.win_rate.map_or("n/a".into(), pct),
            format!("{:.2}", m.trades.net_pnl),
        )?;
    }
    Ok(())
}

fn write_report(path: &Path, title: &str, outcome: &Outcome) -> Result<(), BacktestError> {
    let html = report_html(title, outcome);
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

pub(crate) fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

pub(crate) fn ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"))
}

fn write_table(
    out: &mut dyn Write,
    title: &str,
    o: &Outcome,
    metrics: &MetricsConfig,
    elapsed: std::time::Duration,
) -> std::io::Result<()> {
    let m = &o.metrics;
    let r = &o.result;
    let c = &r.costs;
    let open = r.trades.iter().filter(|t| t.exit_ts.is_none()).count();
    // Refused orders are not errors of the run, but a run that trades nothing
    // because every order was refused must say so.
    let rejected: Vec<&grodt_core::Order> = r
        .orders
        .iter()
        .filter(|o| o.status() == grodt_core::OrderStatus::Rejected)
        .collect();
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
        ("orders rejected", rejected.len().to_string()),
        ("bars", r.bars.to_string()),
        (
            "periods per year",
            format!("{:.2}", metrics.periods_per_year),
        ),
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
        (
            "longest drawdown",
            #[allow(clippy::cast_precision_loss, reason = "a duration to print")]
            format_duration(m.drawdown.longest_duration_nanos as f64),
        ),
        ("VaR 95 (historical)", pct(tail.historical_95.var)),
        ("VaR 95 (normal)", normal(tail.normal_95, |v| v.var)),
        ("CVaR 95 (historical)", pct(tail.historical_95.cvar)),
        ("CVaR 95 (normal)", normal(tail.normal_95, |v| v.cvar)),
        ("VaR 99 (historical)", pct(tail.historical_99.var)),
        ("CVaR 99 (historical)", pct(tail.historical_99.cvar)),
        ("win rate", m.trades.win_rate.map_or("n/a".into(), pct)),
        ("profit factor", ratio(m.trades.profit_factor)),
        (
            "avg holding time",
            m.trades
                .avg_holding_nanos
                .map_or("n/a".into(), format_duration),
        ),
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
    if let Some(first) = rejected.first() {
        writeln!(
            out,
            "note: {} order(s) rejected; the first: {}",
            rejected.len(),
            first
                .reject_reason
                .as_deref()
                .unwrap_or("no reason recorded")
        )?;
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
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        options: BacktestOptions,
    }

    fn options(args: &[&str]) -> BacktestOptions {
        let mut argv = vec![
            "grodt-backtest",
            "--data",
            "x.csv",
            "--strategy",
            "sma_cross",
        ];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("flags parse").options
    }

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    /// Every cost and fill flag reaches the engine config.
    #[test]
    fn every_cost_and_fill_flag_reaches_the_config() {
        let o = options(&[
            "--fees",
            "per_share=0.005,min=1,max_fraction=0.01",
            "--slippage",
            "spread_bps=4",
            "--latency",
            "lognormal=50ms,sigma=0.5,max=2s",
            "--limit-fill",
            "touch",
            "--fill-timing",
            "same-bar-close",
            "--max-participation",
            "0.1",
            "--borrow-rate",
            "0.02",
            "--borrow-day-count",
            "act365",
            "--financing-rate",
            "0.04",
            "--financing-day-count",
            "act360",
            "--no-margin-check",
            "--cost-dp",
            "4",
            "--seed",
            "7",
            "--cash",
            "50000",
            "--periods-per-year",
            "12",
        ]);
        let c = spec(&o).unwrap().config;
        assert_eq!(
            c,
            BacktestConfig {
                starting_cash: d("50000"),
                seed: 7,
                fill_timing: FillTiming::SameBarClose,
                limit_fill: LimitFill::Touch,
                max_participation: Some(d("0.1")),
                slippage: SlippageSpec::HalfSpread {
                    spread_bps: Decimal::from(4)
                },
                commission: CommissionSpec::PerShareCapped {
                    rate: d("0.005"),
                    minimum: d("1"),
                    maximum_fraction: d("0.01"),
                },
                latency: LatencySpec::LogNormal {
                    median: 50_000_000,
                    sigma: d("0.5"),
                    max: Some(2_000_000_000),
                },
                borrow_rate: d("0.02"),
                borrow_day_count: DayCount::Act365,
                financing_rate: d("0.04"),
                financing_day_count: DayCount::Act360,
                enforce_margin: false,
                cost_dp: 4,
                trade_from: None,
            }
        );
        assert!((metrics_for(&o, &[0, 1]).periods_per_year - 12.0).abs() < f64::EPSILON);
        // No flags: the engine's defaults, exactly.
        let defaults = spec(&options(&[])).unwrap().config;
        assert_eq!(defaults, BacktestConfig::default());
    }

    #[test]
    fn every_commission_latency_and_slippage_form_parses() {
        let fees = [
            ("pct=0.001", CommissionSpec::Percentage { rate: d("0.001") }),
            (
                "bps=10,min=2.5",
                CommissionSpec::PercentageWithMinimum {
                    rate: d("0.001"),
                    minimum: d("2.5"),
                },
            ),
            (
                "pct=0.001,min=1",
                CommissionSpec::PercentageWithMinimum {
                    rate: d("0.001"),
                    minimum: d("1"),
                },
            ),
            (
                "per_share=0.005,max_fraction=0.01",
                CommissionSpec::PerShareCapped {
                    rate: d("0.005"),
                    minimum: Decimal::ZERO,
                    maximum_fraction: d("0.01"),
                },
            ),
            (
                "tiered=0:0.001/1000000:0.0005",
                CommissionSpec::TieredNotional {
                    tiers: vec![(d("0"), d("0.001")), (d("1000000"), d("0.0005"))],
                },
            ),
            (
                "tiered_per_share=0:0.0035/300000:0.002,min=0.35",
                CommissionSpec::TieredMonthly {
                    tiers: vec![(d("0"), d("0.0035")), (d("300000"), d("0.002"))],
                    minimum: d("0.35"),
                },
            ),
            (
                "maker=-0.0002,taker=0.0004",
                CommissionSpec::MakerTaker {
                    maker: d("-0.0002"),
                    taker: d("0.0004"),
                },
            ),
        ];
        for (text, expected) in fees {
            assert_eq!(parse_fees(text).unwrap(), expected, "{text}");
        }
        assert_eq!(
            parse_latency("fixed=1.5s").unwrap(),
            LatencySpec::Fixed {
                nanos: 1_500_000_000
            }
        );
        assert_eq!(
            parse_latency("uniform=100us..2ms").unwrap(),
            LatencySpec::Uniform {
                min: 100_000,
                max: 2_000_000
            }
        );
        assert_eq!(
            parse_latency("lognormal=1min,sigma=0").unwrap(),
            LatencySpec::LogNormal {
                median: 60_000_000_000,
                sigma: Decimal::ZERO,
                max: None
            }
        );
        assert_eq!(
            parse_slippage("volume_share=0.1").unwrap(),
            SlippageSpec::VolumeShare { price_impact: 0.1 }
        );
        assert_eq!(
            parse_slippage("spread_bps=6").unwrap(),
            SlippageSpec::HalfSpread {
                spread_bps: Decimal::from(6)
            }
        );
        for (bad, flag) in [
            ("tiered=5:0.001", "--fees"),
            ("tiered=0:0.001/0:0.002", "--fees"),
            ("per_share=1,max_fraction=-1", "--fees"),
        ] {
            let e = parse_fees(bad).and_then(|c| {
                BacktestConfig {
                    commission: c,
                    ..BacktestConfig::default()
                }
                .validate()
                .map_err(|e| usage("--fees", e.to_string()))
            });
            assert!(e.unwrap_err().to_string().starts_with(flag), "{bad}");
        }
        assert!(
            parse_latency("fixed=5")
                .unwrap_err()
                .to_string()
                .contains("unit")
        );
        assert!(parse_latency("fixed=1.5ns").is_err());
        assert!(parse_latency("lognormal=1s").is_err());
        let e = spec(&options(&["--latency", "lognormal=1s,sigma=1,max=1ms"])).unwrap_err();
        assert!(e.to_string().starts_with("--latency"), "{e}");
    }

    #[test]
    fn periods_per_year_follow_the_bars_unless_given() {
        const MIN: i64 = 60_000_000_000;
        let minutes: Vec<i64> = (0..100).map(|i| i * MIN).collect();
        let crypto = options(&["--asset-class", "crypto"]);
        assert!((metrics_for(&crypto, &minutes).periods_per_year - 525_600.0).abs() < 1e-9);
        let equity = options(&[]);
        assert!((metrics_for(&equity, &minutes).periods_per_year - 98_280.0).abs() < 1e-9);
        let days: Vec<i64> = (0..100).map(|i| i * 1_440 * MIN).collect();
        assert!((metrics_for(&equity, &days).periods_per_year - 252.0).abs() < 1e-12);
        let given = options(&["--periods-per-year", "365", "--asset-class", "fx"]);
        assert!((metrics_for(&given, &minutes).periods_per_year - 365.0).abs() < f64::EPSILON);
    }

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
            SlippageSpec::FixedBps {
                bps: Decimal::from(2)
            }
        );
        assert!(
            parse_slippage("bps=x")
                .unwrap_err()
                .to_string()
                .starts_with("--slippage")
        );
    }
}
