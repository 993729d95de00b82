//! Performance analytics for backtests and live accounts: returns, CAGR,
//! volatility, Sharpe, Sortino, Calmar, drawdowns and their durations,
//! VaR/CVaR (historical and parametric normal), trade statistics with MAE and
//! MFE, exposure, turnover, a breakdown of every metric by a label series
//! (per-regime performance), periods per year inferred from the bars' spacing
//! and the asset class ([`annualise`]), and self-contained HTML reports of a
//! backtest ([`report`]) and of an optimization ([`optreport`]).
//!
//! Definitions follow empyrical/quantstats/numpy and are held to them by
//! golden tests on real data (`tests/golden`); docs/metrics-definitions.md
//! states each formula.
//!
//! Architecture invariant: pure functions over plain `f64` series and plain
//! structs ([`EquityPoint`], [`Trade`]). No I/O, no clock, no randomness, and
//! no dependency on the domain or engine crates (grodt-core, grodt-sim): the
//! engine converts its exact types into these at the boundary. Statistics are
//! `f64` by design; nothing here ever feeds a ledger.

pub mod annualise;
pub mod drawdown;
pub mod error;
pub mod metrics;
pub mod optreport;
pub mod report;
pub mod returns;
pub mod risk;
pub mod stats;
pub mod trades;

pub use annualise::{
    AssetClass, format_duration, infer_periods_per_year, median_spacing_nanos, periods_per_year,
};
pub use drawdown::{DrawdownStats, drawdown_series, drawdown_stats};
pub use error::{AnalyticsError, Result};
pub use metrics::{
    EquityPoint, Metrics, MetricsConfig, PerformanceInput, UnixNanos, breakdown, compute, exposure,
};
pub use report::{Breakdown, LabelClass, Part, ReportInput, escape_html, render_html};
pub use returns::{
    annual_volatility, cagr, downside_deviation, log_returns, sharpe, simple_returns, sortino,
    total_return,
};
pub use risk::{
    TailRisk, VarCvar, cvar_historical, cvar_normal, tail_risk, var_historical, var_normal,
};
pub use stats::{norm_pdf, norm_ppf, percentile};
pub use trades::{ExcursionSummary, Side, Trade, TradeStats, trade_stats, validate_trades};
