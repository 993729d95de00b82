//! Drawdowns: the underwater series, the maximum drawdown and how long it
//! lasted from peak to recovery.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::metrics::{EquityPoint, UnixNanos, check_points};

/// The deepest drawdown of a curve and the durations of drawdown episodes.
///
/// Indices count curve points: 0 is the starting value, `i` the value after
/// the `i`-th return. An episode runs from its peak to the first later point
/// back at or above the peak (its recovery), or to the last point if it never
/// recovered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrawdownStats {
    /// Deepest fall from a running peak, as a fraction in `[-1, 0]`.
    pub max_drawdown: f64,
    /// Point where the deepest drawdown's peak was set.
    pub peak_index: usize,
    /// Point at the bottom of the deepest drawdown.
    pub trough_index: usize,
    /// Point where the curve first regained that peak; `None` if it never did.
    pub recovery_index: Option<usize>,
    /// Periods from the deepest drawdown's peak to its recovery (or to the end).
    pub duration_periods: usize,
    /// Time from that peak to its recovery (or to the last point), in nanoseconds.
    pub duration_nanos: i64,
    /// Periods of the longest episode under water, deepest or not.
    pub longest_duration_periods: usize,
    /// Time of the longest episode under water, in nanoseconds.
    pub longest_duration_nanos: i64,
}

/// Drawdown at every point, `(v - running_max) / running_max`, from equity
/// values (no validation: meant for charts of an already checked curve).
pub fn drawdown_series(equity: &[f64]) -> Vec<f64> {
    let mut peak = f64::NEG_INFINITY;
    equity
        .iter()
        .map(|&v| {
            peak = peak.max(v);
            (v - peak) / peak
        })
        .collect()
}

/// Drawdown statistics of an equity curve (at least two points, positive,
/// strictly increasing timestamps).
pub fn drawdown_stats(equity: &[EquityPoint]) -> Result<DrawdownStats> {
    check_points(equity)?;
    let returns: Vec<f64> = equity
        .windows(2)
        .map(|w| w[1].equity / w[0].equity - 1.0)
        .collect();
    let ts: Vec<UnixNanos> = equity.iter().map(|p| p.ts).collect();
    Ok(from_returns(&returns, &ts))
}

/// Compounds `returns` from 1 (as empyrical does) and measures the result.
/// `ts` holds one timestamp per curve point, `returns.len() + 1` of them.
pub(crate) fn from_returns(returns: &[f64], ts: &[UnixNanos]) -> DrawdownStats {
    debug_assert_eq!(ts.len(), returns.len() + 1);
    let mut value = 1.0_f64;
    let mut peak = 1.0_f64;
    let mut peak_idx = 0usize;
    let mut under = false;
    let mut best = DrawdownStats {
        max_drawdown: 0.0,
        peak_index: 0,
        trough_index: 0,
        recovery_index: Some(0),
        duration_periods: 0,
        duration_nanos: 0,
        longest_duration_periods: 0,
        longest_duration_nanos: 0,
    };
    for (i, r) in returns.iter().enumerate() {
        let j = i + 1;
        value *= 1.0 + r;
        if value >= peak {
            if under {
                let periods = j - peak_idx;
                let nanos = ts[j] - ts[peak_idx];
                if best.peak_index == peak_idx && best.max_drawdown < 0.0 {
                    best.recovery_index = Some(j);
                    best.duration_periods = periods;
                    best.duration_nanos = nanos;
                }
                if periods > best.longest_duration_periods {
                    best.longest_duration_periods = periods;
                    best.longest_duration_nanos = nanos;
                }
                under = false;
            }
            peak = value;
            peak_idx = j;
        } else {
            under = true;
            let dd = (value - peak) / peak;
            if dd < best.max_drawdown {
                best.max_drawdown = dd;
                best.peak_index = peak_idx;
                best.trough_index = j;
                best.recovery_index = None;
            }
        }
    }
    let last = returns.len();
    if under {
        let periods = last - peak_idx;
        let nanos = ts[last] - ts[peak_idx];
        if best.recovery_index.is_none() {
            best.duration_periods = periods;
            best.duration_nanos = nanos;
        }
        if periods > best.longest_duration_periods {
            best.longest_duration_periods = periods;
            best.longest_duration_nanos = nanos;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[f64]) -> Vec<EquityPoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, &equity)| EquityPoint {
                ts: i as i64 * 10,
                equity,
            })
            .collect()
    }

    #[test]
    fn deepest_and_longest_episodes() {
        // Episode A: peak 100 at 1, trough 80 at 2, recovered at 4 (-20%, 3 periods).
        // Episode B: peak 120 at 5, trough 114 at 6, never recovers (-5%, 3 periods to end).
        let e = points(&[90.0, 100.0, 80.0, 95.0, 110.0, 120.0, 114.0, 115.0, 116.0]);
        let s = drawdown_stats(&e).unwrap();
        assert!((s.max_drawdown + 0.2).abs() < 1e-12, "{s:?}");
        assert_eq!((s.peak_index, s.trough_index), (1, 2));
        assert_eq!(s.recovery_index, Some(4));
        assert_eq!((s.duration_periods, s.duration_nanos), (3, 30));
        assert_eq!(s.longest_duration_periods, 3);
    }

    #[test]
    fn longest_episode_need_not_be_deepest() {
        let e = points(&[100.0, 70.0, 101.0, 99.0, 98.0, 99.5, 100.0, 100.5, 102.0]);
        let s = drawdown_stats(&e).unwrap();
        assert!((s.max_drawdown + 0.3).abs() < 1e-12);
        assert_eq!(s.duration_periods, 2);
        assert_eq!(s.recovery_index, Some(2));
        // 101 at index 2, regained at 8.
        assert_eq!(
            (s.longest_duration_periods, s.longest_duration_nanos),
            (6, 60)
        );
    }

    #[test]
    fn unrecovered_drawdown_runs_to_the_end() {
        let e = points(&[100.0, 120.0, 60.0, 90.0]);
        let s = drawdown_stats(&e).unwrap();
        assert!((s.max_drawdown + 0.5).abs() < 1e-12);
        assert_eq!(s.recovery_index, None);
        assert_eq!((s.duration_periods, s.duration_nanos), (2, 20));
    }

    #[test]
    fn no_drawdown() {
        let s = drawdown_stats(&points(&[1.0, 2.0, 2.0, 3.0])).unwrap();
        assert_eq!(s.max_drawdown, 0.0);
        assert_eq!(s.duration_periods, 0);
        assert_eq!(s.longest_duration_periods, 0);
    }

    #[test]
    fn series_is_relative_to_running_max() {
        let d = drawdown_series(&[100.0, 50.0, 200.0, 150.0]);
        assert_eq!(d, vec![0.0, -0.5, 0.0, -0.25]);
    }
}
