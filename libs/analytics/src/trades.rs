//! Closed-trade statistics: win rate, profit factor, averages, expectancy,
//! holding time and MAE/MFE summaries.

use serde::{Deserialize, Serialize};

use crate::error::{AnalyticsError, Result};
use crate::metrics::UnixNanos;
use crate::stats::sum_iter;

/// Direction of a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// Bought first, sold to close.
    Long,
    /// Sold first, bought back to close.
    Short,
}

/// One closed round trip, in plain numbers: the engine converts its exact
/// types into this at the boundary (statistics are f64 by design).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    /// Entry fill time, Unix nanoseconds UTC.
    pub entry_ts: UnixNanos,
    /// Exit fill time, Unix nanoseconds UTC; not before `entry_ts`.
    pub exit_ts: UnixNanos,
    /// Long or short.
    pub side: Side,
    /// Quantity traded, positive.
    pub qty: f64,
    /// Average entry price.
    pub entry_price: f64,
    /// Average exit price.
    pub exit_price: f64,
    /// Realised PnL net of fees (a win is `pnl > 0`).
    pub pnl: f64,
    /// Fees paid on entry and exit, non-negative (already inside `pnl`).
    pub fees: f64,
    /// Maximum adverse excursion: the worst unrealised PnL while open, <= 0.
    pub mae: f64,
    /// Maximum favourable excursion: the best unrealised PnL while open, >= 0.
    pub mfe: f64,
}

impl Trade {
    /// Notional turned over by this round trip: entry plus exit value.
    pub fn traded_notional(&self) -> f64 {
        self.qty * (self.entry_price.abs() + self.exit_price.abs())
    }
}

/// Checks every trade; errors name the trade's index and field.
pub fn validate_trades(trades: &[Trade]) -> Result<()> {
    for (index, t) in trades.iter().enumerate() {
        let bad = |field, reason| {
            Err(AnalyticsError::InvalidTrade {
                index,
                field,
                reason,
            })
        };
        let fields = [
            ("qty", t.qty),
            ("entry_price", t.entry_price),
            ("exit_price", t.exit_price),
            ("pnl", t.pnl),
            ("fees", t.fees),
            ("mae", t.mae),
            ("mfe", t.mfe),
        ];
        if let Some((field, _)) = fields.iter().find(|(_, v)| !v.is_finite()) {
            return bad(field, "not finite");
        }
        if t.qty <= 0.0 {
            return bad("qty", "must be positive");
        }
        if t.exit_ts < t.entry_ts {
            return bad("exit_ts", "before entry_ts");
        }
        if t.fees < 0.0 {
            return bad("fees", "must not be negative");
        }
        if t.mae > 0.0 {
            return bad("mae", "must be <= 0 (the worst unrealised PnL)");
        }
        if t.mfe < 0.0 {
            return bad("mfe", "must be >= 0 (the best unrealised PnL)");
        }
    }
    Ok(())
}

/// Distribution summary of one excursion measure over the trades.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExcursionSummary {
    /// Mean.
    pub mean: f64,
    /// Median (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl ExcursionSummary {
    fn of(values: &mut [f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Self {
            mean: sum_iter(values.iter().copied()) / n as f64,
            median,
            min: values[0],
            max: values[n - 1],
        })
    }
}

/// Statistics of a list of closed trades. Undefined figures (an average of
/// nothing, a profit factor without losses) are `None`, never NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeStats {
    /// Number of trades.
    pub count: usize,
    /// Long trades.
    pub long_count: usize,
    /// Short trades.
    pub short_count: usize,
    /// Trades with `pnl > 0`.
    pub wins: usize,
    /// Trades with `pnl < 0`.
    pub losses: usize,
    /// `wins / count`.
    pub win_rate: Option<f64>,
    /// Sum of winning PnL.
    pub gross_profit: f64,
    /// Sum of losing PnL (<= 0).
    pub gross_loss: f64,
    /// Sum of all PnL.
    pub net_pnl: f64,
    /// Sum of fees.
    pub total_fees: f64,
    /// `gross_profit / |gross_loss|`.
    pub profit_factor: Option<f64>,
    /// Mean PnL of the winners.
    pub avg_win: Option<f64>,
    /// Mean PnL of the losers (negative).
    pub avg_loss: Option<f64>,
    /// Mean PnL per trade (= win rate x avg win + loss rate x avg loss).
    pub expectancy: Option<f64>,
    /// Best trade PnL.
    pub largest_win: Option<f64>,
    /// Worst trade PnL.
    pub largest_loss: Option<f64>,
    /// Mean time from entry to exit, nanoseconds.
    pub avg_holding_nanos: Option<f64>,
    /// Sum of [`Trade::traded_notional`].
    pub traded_notional: f64,
    /// Maximum adverse excursion over the trades.
    pub mae: Option<ExcursionSummary>,
    /// Maximum favourable excursion over the trades.
    pub mfe: Option<ExcursionSummary>,
}

/// Statistics of `trades` (validated first).
pub fn trade_stats(trades: &[Trade]) -> Result<TradeStats> {
    validate_trades(trades)?;
    Ok(trade_stats_unchecked(trades.iter()))
}

pub(crate) fn trade_stats_unchecked<'a>(
    trades: impl Iterator<Item = &'a Trade> + Clone,
) -> TradeStats {
    let count = trades.clone().count();
    let wins: Vec<f64> = trades.clone().map(|t| t.pnl).filter(|&p| p > 0.0).collect();
    let losses: Vec<f64> = trades.clone().map(|t| t.pnl).filter(|&p| p < 0.0).collect();
    let gross_profit = sum_iter(wins.iter().copied());
    let gross_loss = sum_iter(losses.iter().copied());
    let net_pnl = sum_iter(trades.clone().map(|t| t.pnl));
    let n = count as f64;
    let avg = |total: f64, k: usize| (k > 0).then(|| total / k as f64);
    let mut mae: Vec<f64> = trades.clone().map(|t| t.mae).collect();
    let mut mfe: Vec<f64> = trades.clone().map(|t| t.mfe).collect();
    TradeStats {
        count,
        long_count: trades.clone().filter(|t| t.side == Side::Long).count(),
        short_count: trades.clone().filter(|t| t.side == Side::Short).count(),
        wins: wins.len(),
        losses: losses.len(),
        win_rate: (count > 0).then(|| wins.len() as f64 / n),
        gross_profit,
        gross_loss,
        net_pnl,
        total_fees: sum_iter(trades.clone().map(|t| t.fees)),
        profit_factor: (gross_loss < 0.0).then(|| gross_profit / -gross_loss),
        avg_win: avg(gross_profit, wins.len()),
        avg_loss: avg(gross_loss, losses.len()),
        expectancy: avg(net_pnl, count),
        largest_win: trades.clone().map(|t| t.pnl).reduce(f64::max),
        largest_loss: trades.clone().map(|t| t.pnl).reduce(f64::min),
        avg_holding_nanos: avg(
            sum_iter(trades.clone().map(|t| (t.exit_ts - t.entry_ts) as f64)),
            count,
        ),
        traded_notional: sum_iter(trades.clone().map(Trade::traded_notional)),
        mae: ExcursionSummary::of(&mut mae),
        mfe: ExcursionSummary::of(&mut mfe),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(pnl: f64, mae: f64, mfe: f64, side: Side) -> Trade {
        Trade {
            entry_ts: 0,
            exit_ts: 100,
            side,
            qty: 10.0,
            entry_price: 50.0,
            exit_price: 50.0 + pnl / 10.0,
            pnl,
            fees: 1.0,
            mae,
            mfe,
        }
    }

    #[test]
    fn hand_computed_stats() {
        let trades = [
            trade(100.0, -20.0, 150.0, Side::Long),
            trade(-50.0, -80.0, 10.0, Side::Long),
            trade(30.0, -5.0, 40.0, Side::Short),
            trade(-10.0, -15.0, 0.0, Side::Short),
            trade(0.0, -1.0, 2.0, Side::Long),
        ];
        let s = trade_stats(&trades).unwrap();
        assert_eq!((s.count, s.wins, s.losses), (5, 2, 2));
        assert_eq!((s.long_count, s.short_count), (3, 2));
        assert_eq!(s.win_rate, Some(0.4));
        assert_eq!(
            (s.gross_profit, s.gross_loss, s.net_pnl),
            (130.0, -60.0, 70.0)
        );
        assert_eq!(s.profit_factor, Some(130.0 / 60.0));
        assert_eq!((s.avg_win, s.avg_loss), (Some(65.0), Some(-30.0)));
        assert_eq!(s.expectancy, Some(14.0));
        assert_eq!((s.largest_win, s.largest_loss), (Some(100.0), Some(-50.0)));
        assert_eq!(s.total_fees, 5.0);
        assert_eq!(s.avg_holding_nanos, Some(100.0));
        let mae = s.mae.unwrap();
        assert_eq!((mae.min, mae.median, mae.max), (-80.0, -15.0, -1.0));
        assert!((mae.mean + 24.2).abs() < 1e-12);
        let mfe = s.mfe.unwrap();
        assert_eq!((mfe.min, mfe.median, mfe.max), (0.0, 10.0, 150.0));
        // 10 * (50 + 60) + 10 * (50 + 45) + 10 * (50 + 53) + 10 * (50 + 49) + 10 * 100
        assert!((s.traded_notional - 5070.0).abs() < 1e-9);
    }

    #[test]
    fn no_trades_no_ratios() {
        let s = trade_stats(&[]).unwrap();
        assert_eq!(s.count, 0);
        assert_eq!(s.win_rate, None);
        assert_eq!(s.profit_factor, None);
        assert_eq!(s.mae, None);
    }

    #[test]
    fn only_winners_has_no_profit_factor() {
        let s = trade_stats(&[trade(5.0, 0.0, 6.0, Side::Long)]).unwrap();
        assert_eq!(s.profit_factor, None);
        assert_eq!(s.avg_loss, None);
        assert_eq!(s.win_rate, Some(1.0));
    }

    #[test]
    fn invalid_trades_are_named() {
        let mut t = trade(1.0, -1.0, 2.0, Side::Long);
        t.exit_ts = -1;
        let err = trade_stats(&[trade(1.0, -1.0, 1.0, Side::Long), t]).unwrap_err();
        assert_eq!(err.to_string(), "trades[1].exit_ts: before entry_ts");
        let mut t = trade(1.0, -1.0, 2.0, Side::Long);
        t.mae = 3.0;
        assert!(matches!(
            validate_trades(&[t]),
            Err(AnalyticsError::InvalidTrade {
                index: 0,
                field: "mae",
                ..
            })
        ));
        let mut t = trade(1.0, -1.0, 2.0, Side::Long);
        t.fees = f64::NAN;
        assert!(matches!(
            validate_trades(&[t]),
            Err(AnalyticsError::InvalidTrade {
                field: "fees",
                reason: "not finite",
                ..
            })
        ));
    }
}
