//! The full metric set of one backtest, and the same set per label.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::drawdown::{self, DrawdownStats};
use crate::error::{AnalyticsError, Result};
use crate::returns::{cagr_unchecked, growth, sharpe_from_moments, sortino_unchecked};
use crate::risk::{TailRisk, tail_risk_unchecked};
use crate::stats::{mean, std_dev_around, sum_iter};
use crate::trades::{Trade, TradeStats, trade_stats_unchecked, validate_trades};

/// Nanoseconds since the Unix epoch, UTC.
pub type UnixNanos = i64;

/// One point of an equity curve: the account's value at `ts`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EquityPoint {
    /// Time of the mark, Unix nanoseconds UTC.
    pub ts: UnixNanos,
    /// Account equity (cash plus positions at market), positive.
    pub equity: f64,
}

/// How returns are annualised and judged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricsConfig {
    /// Periods in a year: 252 for daily equities, 365 for daily crypto.
    pub periods_per_year: f64,
    /// Risk-free rate per period, subtracted in the Sharpe ratio.
    pub risk_free: f64,
    /// Target return per period below which the Sortino ratio counts downside.
    pub required_return: f64,
}

impl MetricsConfig {
    /// Daily equities: 252 periods, risk-free 0, target 0.
    pub const fn equities_daily() -> Self {
        Self {
            periods_per_year: 252.0,
            risk_free: 0.0,
            required_return: 0.0,
        }
    }

    /// Daily crypto, traded every day: 365 periods, risk-free 0, target 0.
    pub const fn crypto_daily() -> Self {
        Self {
            periods_per_year: 365.0,
            risk_free: 0.0,
            required_return: 0.0,
        }
    }

    /// Sets the per-period risk-free rate from an annual one, compounding:
    /// `(1 + annual)^(1 / periods_per_year) - 1`.
    pub fn with_annual_risk_free(mut self, annual: f64) -> Self {
        self.risk_free = (1.0 + annual).powf(1.0 / self.periods_per_year) - 1.0;
        self
    }

    /// Checks every field; errors name it.
    pub fn validate(&self) -> Result<()> {
        if !(self.periods_per_year.is_finite() && self.periods_per_year > 0.0) {
            return Err(AnalyticsError::InvalidConfig {
                field: "periods_per_year",
                reason: "must be finite and positive",
            });
        }
        if !(self.risk_free.is_finite() && self.risk_free > -1.0) {
            return Err(AnalyticsError::InvalidConfig {
                field: "risk_free",
                reason: "must be finite and above -1",
            });
        }
        if !(self.required_return.is_finite() && self.required_return > -1.0) {
            return Err(AnalyticsError::InvalidConfig {
                field: "required_return",
                reason: "must be finite and above -1",
            });
        }
        Ok(())
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self::equities_daily()
    }
}

/// What a backtest hands to analytics.
#[derive(Debug, Clone, Copy)]
pub struct PerformanceInput<'a> {
    /// Equity marks, at least two, strictly increasing in time.
    pub equity: &'a [EquityPoint],
    /// Position held after each mark (same length as `equity`); period `i`,
    /// from mark `i` to mark `i + 1`, is in the market when `positions[i] != 0`.
    pub positions: Option<&'a [f64]>,
    /// Closed trades, in any order.
    pub trades: &'a [Trade],
}

/// Every metric of one series (or of the periods carrying one label).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of returns measured.
    pub periods: usize,
    /// Mean simple return per period.
    pub mean_return: f64,
    /// Compounded return.
    pub total_return: f64,
    /// Compound annual growth rate.
    pub cagr: f64,
    /// Annualised standard deviation of returns (ddof 1).
    pub annual_volatility: Option<f64>,
    /// Annualised Sharpe ratio.
    pub sharpe: Option<f64>,
    /// Annualised Sortino ratio.
    pub sortino: Option<f64>,
    /// CAGR over the absolute maximum drawdown.
    pub calmar: Option<f64>,
    /// Maximum drawdown and durations.
    pub drawdown: DrawdownStats,
    /// VaR and CVaR, 95 and 99, historical and normal.
    pub tail: TailRisk,
    /// Fraction of periods with a non-zero position; `None` without positions.
    pub exposure: Option<f64>,
    /// Annualised turnover: traded notional over mean equity, per year.
    pub turnover: f64,
    /// Statistics of the trades entered in these periods.
    pub trades: TradeStats,
}

/// Fraction of non-zero entries of a position series.
pub fn exposure(positions: &[f64]) -> Result<f64> {
    if positions.is_empty() {
        return Err(AnalyticsError::TooShort {
            input: "positions",
            min: 1,
            actual: 0,
        });
    }
    crate::error::check_finite("positions", positions)?;
    Ok(positions.iter().filter(|&&p| p != 0.0).count() as f64 / positions.len() as f64)
}

/// A selection of periods with what is measured over them.
struct Periods<'a> {
    returns: Vec<f64>,
    /// Curve times: the mark opening the first period, then each period's end.
    ts: Vec<UnixNanos>,
    /// Sum of the equity at the start of each period (for turnover).
    start_equity_sum: f64,
    /// Periods with a non-zero position, when positions were given.
    in_market: Option<usize>,
    trades: Vec<&'a Trade>,
}

impl Periods<'_> {
    fn measure(&self, config: &MetricsConfig) -> Metrics {
        let p = config.periods_per_year;
        let returns = &self.returns;
        let n = returns.len();
        let g = growth(returns);
        let cagr = cagr_unchecked(g, n, p);
        let drawdown = drawdown::from_returns(returns, &self.ts);
        let mean_return = mean(returns).unwrap_or(f64::NAN);
        let std = std_dev_around(returns, mean_return, 1);
        let trades = trade_stats_unchecked(self.trades.iter().copied());
        let mean_equity = self.start_equity_sum / n as f64;
        Metrics {
            periods: n,
            mean_return,
            total_return: g - 1.0,
            cagr,
            annual_volatility: std.map(|s| s * p.sqrt()),
            sharpe: sharpe_from_moments(mean_return, std, config.risk_free, p),
            sortino: sortino_unchecked(returns, mean_return, config.required_return, p),
            calmar: (drawdown.max_drawdown < 0.0).then(|| cagr / drawdown.max_drawdown.abs()),
            drawdown,
            tail: tail_risk_unchecked(returns, std.map(|s| (mean_return, s))),
            exposure: self.in_market.map(|k| k as f64 / n as f64),
            turnover: trades.traded_notional / mean_equity * p / n as f64,
            trades,
        }
    }
}

pub(crate) fn check_points(equity: &[EquityPoint]) -> Result<()> {
    if equity.len() < 2 {
        return Err(AnalyticsError::TooShort {
            input: "equity",
            min: 2,
            actual: equity.len(),
        });
    }
    for (index, p) in equity.iter().enumerate() {
        if !p.equity.is_finite() {
            return Err(AnalyticsError::NonFinite {
                input: "equity",
                index,
            });
        }
        if p.equity <= 0.0 {
            return Err(AnalyticsError::NonPositive {
                input: "equity",
                index,
                value: p.equity,
            });
        }
        if index > 0 && p.ts <= equity[index - 1].ts {
            return Err(AnalyticsError::Unordered {
                input: "equity",
                index,
            });
        }
    }
    Ok(())
}

fn validate(input: &PerformanceInput<'_>, config: &MetricsConfig) -> Result<()> {
    config.validate()?;
    check_points(input.equity)?;
    if let Some(pos) = input.positions {
        if pos.len() != input.equity.len() {
            return Err(AnalyticsError::LengthMismatch {
                input: "positions",
                against: "equity",
                expected: input.equity.len(),
                actual: pos.len(),
            });
        }
        crate::error::check_finite("positions", pos)?;
    }
    validate_trades(input.trades)
}

/// Index of the period a trade belongs to: the first whose end is at or after
/// its entry (a fill at a bar is inside the period that ends at that bar's
/// mark); entries before the first period go to it, after the last to the last.
fn period_of(equity: &[EquityPoint], entry_ts: UnixNanos) -> usize {
    equity[1..]
        .partition_point(|p| p.ts < entry_ts)
        .min(equity.len() - 2)
}

fn returns_of(equity: &[EquityPoint]) -> Vec<f64> {
    equity
        .windows(2)
        .map(|w| w[1].equity / w[0].equity - 1.0)
        .collect()
}

/// Every metric of a backtest's equity curve, positions and trades.
pub fn compute(input: &PerformanceInput<'_>, config: &MetricsConfig) -> Result<Metrics> {
    validate(input, config)?;
    let eq = input.equity;
    let n = eq.len() - 1;
    let periods = Periods {
        returns: returns_of(eq),
        ts: eq.iter().map(|p| p.ts).collect(),
        start_equity_sum: sum_iter(eq[..n].iter().map(|p| p.equity)),
        in_market: input
            .positions
            .map(|pos| pos[..n].iter().filter(|&&x| x != 0.0).count()),
        trades: input.trades.iter().collect(),
    };
    Ok(periods.measure(config))
}

/// Every metric per label. `labels[i]` labels period `i` (from mark `i` to
/// mark `i + 1`), so there is one label per return: `equity.len() - 1`.
///
/// Each label's periods are taken in order and measured as if they were one
/// series: returns compound from 1, drawdowns run across the gaps between
/// them, time durations are measured on the original clock, exposure uses
/// the positions of those periods, and a trade counts for the label of the
/// period it was entered in. With a single label the result equals
/// [`compute`].
pub fn breakdown<L: Ord + Clone>(
    input: &PerformanceInput<'_>,
    labels: &[L],
    config: &MetricsConfig,
) -> Result<BTreeMap<L, Metrics>> {
    validate(input, config)?;
    let eq = input.equity;
    let n = eq.len() - 1;
    if labels.len() != n {
        return Err(AnalyticsError::LengthMismatch {
            input: "labels",
            against: "returns",
            expected: n,
            actual: labels.len(),
        });
    }
    let returns = returns_of(eq);
    let mut groups: BTreeMap<&L, (Periods<'_>, Vec<f64>)> = BTreeMap::new();
    // Labels come in runs (a regime holds for many periods): one map look-up
    // per run, then the run's periods appended in order.
    let mut i = 0;
    while i < n {
        let label = &labels[i];
        let end = labels[i..]
            .iter()
            .position(|l| l != label)
            .map_or(n, |k| i + k);
        let (g, start_equity) = groups.entry(label).or_insert_with(|| {
            let periods = Periods {
                returns: Vec::new(),
                ts: vec![eq[i].ts],
                start_equity_sum: 0.0,
                in_market: input.positions.map(|_| 0),
                trades: Vec::new(),
            };
            (periods, Vec::new())
        });
        g.returns.extend_from_slice(&returns[i..end]);
        g.ts.extend(eq[i + 1..=end].iter().map(|p| p.ts));
        start_equity.extend(eq[i..end].iter().map(|p| p.equity));
        if let (Some(count), Some(pos)) = (g.in_market.as_mut(), input.positions) {
            *count += pos[i..end].iter().filter(|&&p| p != 0.0).count();
        }
        i = end;
    }
    for trade in input.trades {
        let label = &labels[period_of(eq, trade.entry_ts)];
        if let Some((g, _)) = groups.get_mut(label) {
            g.trades.push(trade);
        }
    }
    Ok(groups
        .into_iter()
        .map(|(label, (mut periods, start_equity))| {
            // Same summation order as `compute`, so one label equals the whole.
            periods.start_equity_sum = sum_iter(start_equity.iter().copied());
            (label.clone(), periods.measure(config))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trades::Side;

    fn curve(values: &[f64]) -> Vec<EquityPoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, &equity)| EquityPoint {
                ts: i as i64 * 1_000,
                equity,
            })
            .collect()
    }

    fn trade(entry_ts: i64, pnl: f64) -> Trade {
        Trade {
            entry_ts,
            exit_ts: entry_ts + 1_000,
            side: Side::Long,
            qty: 1.0,
            entry_price: 100.0,
            exit_price: 100.0 + pnl,
            pnl,
            fees: 0.0,
            mae: pnl.min(0.0),
            mfe: pnl.max(0.0),
        }
    }

    #[test]
    fn compute_assembles_the_parts() {
        let eq = curve(&[100.0, 110.0, 99.0, 120.0, 118.0]);
        let pos = [0.0, 1.0, 1.0, 0.0, 0.0];
        let trades = [trade(1_000, 10.0), trade(3_000, -2.0)];
        let input = PerformanceInput {
            equity: &eq,
            positions: Some(&pos),
            trades: &trades,
        };
        let m = compute(&input, &MetricsConfig::equities_daily()).unwrap();
        assert_eq!(m.periods, 4);
        assert!((m.total_return - 0.18).abs() < 1e-12);
        assert_eq!(m.exposure, Some(0.5));
        assert!((m.drawdown.max_drawdown + 0.1).abs() < 1e-12);
        assert_eq!(m.trades.count, 2);
        // notional 210 + 198 = 408; mean start equity (100+110+99+120)/4 = 107.25
        let expected = 408.0 / 107.25 * 252.0 / 4.0;
        assert!((m.turnover - expected).abs() < 1e-9);
        let cagr = m.cagr;
        assert!((m.calmar.unwrap() - cagr / 0.1).abs() < 1e-9);
    }

    #[test]
    fn breakdown_splits_periods_and_trades() {
        let eq = curve(&[100.0, 110.0, 99.0, 120.0, 118.0]);
        let pos = [0.0, 1.0, 1.0, 0.0, 0.0];
        // entered at mark 1 -> period 0; at mark 3 -> period 2
        let trades = [trade(1_000, 10.0), trade(3_000, -2.0)];
        let input = PerformanceInput {
            equity: &eq,
            positions: Some(&pos),
            trades: &trades,
        };
        let labels = ["up", "down", "up", "down"];
        let by = breakdown(&input, &labels, &MetricsConfig::default()).unwrap();
        assert_eq!(by.len(), 2);
        let up = &by["up"];
        assert_eq!(up.periods, 2);
        // +10% then +21.2121..%
        assert!((up.total_return - (1.1 * (120.0 / 99.0) - 1.0)).abs() < 1e-12);
        assert_eq!(up.exposure, Some(0.5));
        assert_eq!(up.trades.count, 2);
        let down = &by["down"];
        assert!((down.total_return - (0.9 * (118.0 / 120.0) - 1.0)).abs() < 1e-12);
        assert_eq!(down.trades.count, 0);
        assert_eq!(down.drawdown.recovery_index, None);
    }

    #[test]
    fn mismatches_name_the_input() {
        let eq = curve(&[100.0, 110.0, 99.0]);
        let pos = [0.0, 1.0];
        let input = PerformanceInput {
            equity: &eq,
            positions: Some(&pos),
            trades: &[],
        };
        let err = compute(&input, &MetricsConfig::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "positions: length 2 does not match equity (expected 3)"
        );
        let input = PerformanceInput {
            positions: None,
            ..input
        };
        let err = breakdown(&input, &["a"], &MetricsConfig::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "labels: length 1 does not match returns (expected 2)"
        );
        let mut eq2 = eq.clone();
        eq2[2].ts = eq2[1].ts;
        let input = PerformanceInput {
            equity: &eq2,
            positions: None,
            trades: &[],
        };
        assert_eq!(
            compute(&input, &MetricsConfig::default()),
            Err(AnalyticsError::Unordered {
                input: "equity",
                index: 2
            })
        );
        let bad = MetricsConfig {
            periods_per_year: 0.0,
            ..MetricsConfig::default()
        };
        let input = PerformanceInput {
            equity: &eq,
            positions: None,
            trades: &[],
        };
        assert!(matches!(
            compute(&input, &bad),
            Err(AnalyticsError::InvalidConfig {
                field: "periods_per_year",
                ..
            })
        ));
        assert!(matches!(
            compute(
                &PerformanceInput {
                    equity: &eq[..1],
                    positions: None,
                    trades: &[]
                },
                &MetricsConfig::default()
            ),
            Err(AnalyticsError::TooShort {
                input: "equity",
                ..
            })
        ));
        assert!(matches!(
            exposure(&[]),
            Err(AnalyticsError::TooShort {
                input: "positions",
                ..
            })
        ));
    }

    #[test]
    fn crypto_annualises_with_365() {
        let eq = curve(&[100.0, 101.0, 100.5, 102.0]);
        let input = PerformanceInput {
            equity: &eq,
            positions: None,
            trades: &[],
        };
        let a = compute(&input, &MetricsConfig::equities_daily()).unwrap();
        let b = compute(&input, &MetricsConfig::crypto_daily()).unwrap();
        let ratio = b.sharpe.unwrap() / a.sharpe.unwrap();
        assert!((ratio - (365.0_f64 / 252.0).sqrt()).abs() < 1e-12);
        assert!(b.cagr > a.cagr);
    }

    #[test]
    fn annual_risk_free_compounds_down() {
        let c = MetricsConfig::equities_daily().with_annual_risk_free(0.05);
        assert!(((1.0 + c.risk_free).powf(252.0) - 1.05).abs() < 1e-12);
    }
}
