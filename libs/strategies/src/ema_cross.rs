//! EMA crossover: [`crate::SmaCross`]'s rules on exponential averages.
//!
//! On each close: when the fast EMA crosses above the slow one, go long (the
//! `fraction` of equity, sized at the next open); when it crosses below,
//! close the long and, long-short, go short. "Crosses" is backtrader's
//! `CrossOver`, as `sma_cross`: the previous non-zero difference had the other
//! sign and the current one is strictly past zero.
//!
//! The averages are `grodt_indicators::Ema` (alpha `2 / (period + 1)`, seeded
//! with the simple mean of the first `period` values, backtrader's and
//! TA-Lib's definition) over the raw fixed-point closes as f64 (exact below
//! 2^53), so the decision does not depend on the instrument's precision. An
//! EMA is not a ratio of integers, so unlike the SMA a tie is a tie of two
//! f64 values; the sweep kernel computes the very same f64 series, so both
//! decide every bar alike.

use grodt_core::{Bar, Decimal};
use grodt_indicators::Ema;
use grodt_strategy_api::{Context, Strategy};

use crate::StrategyError;
use crate::sma_cross::{CrossOver, cross_orders};

/// Parameters of [`EmaCross`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EmaCrossParams {
    /// Fast EMA period.
    pub fast: usize,
    /// Slow EMA period.
    pub slow: usize,
    /// Also go short on a downward cross.
    pub long_short: bool,
    /// Fraction of equity per entry (1 = all-in).
    pub fraction: Decimal,
    /// Instrument index traded.
    pub instrument: usize,
}

impl Default for EmaCrossParams {
    fn default() -> Self {
        Self {
            fast: 12,
            slow: 26,
            long_short: false,
            fraction: Decimal::ONE,
            instrument: 0,
        }
    }
}

/// The EMA crossover strategy.
#[derive(Clone, Debug)]
pub struct EmaCross {
    params: EmaCrossParams,
    fast: Ema,
    slow: Ema,
    cross: CrossOver,
}

impl EmaCross {
    /// Builds the strategy.
    pub fn new(params: EmaCrossParams) -> Result<Self, StrategyError> {
        if params.fast == 0 || params.fast >= params.slow {
            return Err(StrategyError::InvalidParam {
                name: "fast",
                reason: format!(
                    "need 0 < fast < slow, got fast {} slow {}",
                    params.fast, params.slow
                ),
            });
        }
        if params.fraction <= Decimal::ZERO {
            return Err(StrategyError::InvalidParam {
                name: "fraction",
                reason: "must be positive".into(),
            });
        }
        Ok(Self {
            params,
            fast: Ema::new(params.fast),
            slow: Ema::new(params.slow),
            cross: CrossOver::default(),
        })
    }

    /// +1 on an upward cross, -1 on a downward cross, 0 otherwise.
    #[allow(
        clippy::cast_precision_loss,
        reason = "raw closes below 2^53 are exact in f64"
    )]
    pub fn signal(&mut self, close_raw: i64) -> i32 {
        let x = close_raw as f64;
        let (f, s) = (self.fast.update(x), self.slow.update(x));
        let (Some(f), Some(s)) = (f, s) else { return 0 };
        let d = f - s;
        self.cross.step(i8::from(d > 0.0) - i8::from(d < 0.0))
    }
}

impl Strategy for EmaCross {
    /// Streaming indicators only.
    fn history_bars(&self) -> usize {
        1
    }

    fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, bar: &Bar) {
        let i = self.params.instrument;
        if instrument != i {
            return;
        }
        let signal = self.signal(bar.close);
        if signal != 0 {
            cross_orders(
                ctx,
                i,
                signal,
                self.params.fraction,
                (self.params.long_short, false),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters_by_name() {
        for (p, name) in [
            (
                EmaCrossParams {
                    fast: 30,
                    slow: 10,
                    ..EmaCrossParams::default()
                },
                "fast",
            ),
            (
                EmaCrossParams {
                    fraction: Decimal::ZERO,
                    ..EmaCrossParams::default()
                },
                "fraction",
            ),
        ] {
            let e = EmaCross::new(p).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn crossings_follow_the_last_nonzero_difference() {
        // fast 1 is the close itself; slow 3 seeds with the mean of the first
        // three closes (10) then moves by alpha 0.5.
        let mut s = EmaCross::new(EmaCrossParams {
            fast: 1,
            slow: 3,
            ..EmaCrossParams::default()
        })
        .unwrap();
        let signals: Vec<i32> = [10, 10, 10, 8, 8, 12, 9]
            .iter()
            .map(|&x| s.signal(x))
            .collect();
        // slow: 10 (seed, diff 0), 9 (diff -1), 8.5 (diff -0.5), 10.25 (diff
        // +1.75: up), 9.625 (diff -0.625: down).
        assert_eq!(signals, [0, 0, 0, 0, 0, 1, -1]);
    }
}
