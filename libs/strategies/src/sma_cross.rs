//! SMA crossover, the parity reference strategy.
//!
//! On each close: when the fast SMA crosses above the slow one, go long all-in;
//! when it crosses below, close the long (and, long-short, go short all-in).
//! Short-only: a downward cross opens a short and an upward cross closes it;
//! no long is ever opened.
//! "Crosses" follows backtrader's `CrossOver`: the previous non-zero difference
//! had the other sign and the current difference is strictly past zero. The
//! averages are exact (integer sums of fixed-point closes), so ties are real ties. Orders are
//! sized when they fill (on the next bar's open), as the reference does.

use grodt_core::{Bar, Decimal, OrderRequest, Side, Size};
use grodt_indicators::SmaRaw;
use grodt_strategy_api::{Context, Strategy};

use crate::StrategyError;

/// Parameters of [`SmaCross`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SmaCrossParams {
    /// Fast SMA period.
    pub fast: usize,
    /// Slow SMA period.
    pub slow: usize,
    /// Also go short on a downward cross.
    pub long_short: bool,
    /// Fraction of equity per entry (1 = all-in).
    pub fraction: Decimal,
    /// Instrument index traded.
    pub instrument: usize,
    /// Trade only the short side: a downward cross opens a short, an upward
    /// cross closes it (not together with `long_short`).
    #[serde(default)]
    pub short_only: bool,
}

impl Default for SmaCrossParams {
    fn default() -> Self {
        Self {
            fast: 10,
            slow: 30,
            long_short: false,
            fraction: Decimal::ONE,
            instrument: 0,
            short_only: false,
        }
    }
}

/// The SMA crossover strategy.
#[derive(Clone, Debug)]
pub struct SmaCross {
    params: SmaCrossParams,
    fast: SmaRaw,
    slow: SmaRaw,
    cross: CrossOver,
}

/// backtrader's `CrossOver` on the sign of a difference of two averages: +1
/// when the previous non-zero sign was negative and this one is positive, -1
/// the other way, 0 otherwise (a zero difference keeps the last non-zero
/// sign). `SmaCross` and `EmaCross` both decide with it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CrossOver {
    last: Option<i8>,
}

impl CrossOver {
    /// The cross on a difference of sign `sign` (-1, 0, 1).
    pub(crate) fn step(&mut self, sign: i8) -> i32 {
        let prev = self.last;
        if sign != 0 || prev.is_none() {
            self.last = Some(sign);
        }
        match prev {
            Some(p) if p < 0 && sign > 0 => 1,
            Some(p) if p > 0 && sign < 0 => -1,
            _ => 0,
        }
    }
}

impl SmaCross {
    /// Builds the strategy. The crossover is decided on raw fixed-point closes, so it
    /// does not depend on the instrument's precision.
    pub fn new(params: SmaCrossParams) -> Result<Self, StrategyError> {
        if params.fast == 0 || params.slow == 0 {
            return Err(StrategyError::InvalidParam {
                name: "fast/slow",
                reason: "periods must be positive".into(),
            });
        }
        if params.fast >= params.slow {
            return Err(StrategyError::InvalidParam {
                name: "fast",
                reason: format!("fast {} must be below slow {}", params.fast, params.slow),
            });
        }
        if params.short_only && params.long_short {
            return Err(StrategyError::InvalidParam {
                name: "short_only",
                reason: "not together with long_short".into(),
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
            fast: SmaRaw::new(params.fast),
            slow: SmaRaw::new(params.slow),
            cross: CrossOver::default(),
        })
    }

    /// +1 on an upward cross, -1 on a downward cross, 0 otherwise. The averages
    /// are compared exactly: `fast - slow` has the sign of
    /// `sum_fast * slow - sum_slow * fast` over the raw integer closes.
    fn signal(&mut self, close_raw: i64) -> i32 {
        let (f, s) = (self.fast.update(close_raw), self.slow.update(close_raw));
        let (Some(f), Some(s)) = (f, s) else { return 0 };
        let d = f * self.slow.period() as i128 - s * self.fast.period() as i128;
        self.cross.step(i8::from(d > 0) - i8::from(d < 0))
    }
}

impl Strategy for SmaCross {
    /// Streaming indicators only: the context's window need hold just the current bar.
    fn history_bars(&self) -> usize {
        1
    }

    fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, bar: &Bar) {
        let i = self.params.instrument;
        if instrument != i {
            return;
        }
        let signal = self.signal(bar.close);
        if signal == 0 {
            return;
        }
        cross_orders(
            ctx,
            i,
            signal,
            self.params.fraction,
            (self.params.long_short, self.params.short_only),
        );
    }
}

/// The orders of a crossover signal (+1 up, -1 down) for the position held:
/// up covers a short and (unless short-only) goes long; down sells a long and
/// (long-short or short-only) goes short. Entries are sized at the fill.
pub(crate) fn cross_orders(
    ctx: &mut Context<'_>,
    i: usize,
    signal: i32,
    fraction: Decimal,
    (long_short, short_only): (bool, bool),
) {
    let pos = ctx.position(i);
    let entry = Size::EquityFraction(fraction);
    if signal > 0 {
        if pos < 0 {
            ctx.submit(OrderRequest::market(i, Side::Buy, Size::ClosePosition));
        }
        if pos <= 0 && !short_only {
            ctx.submit(OrderRequest::market(i, Side::Buy, entry));
        }
    } else {
        if pos > 0 {
            ctx.submit(OrderRequest::market(i, Side::Sell, Size::ClosePosition));
        }
        if (long_short || short_only) && pos >= 0 {
            ctx.submit(OrderRequest::market(i, Side::Sell, entry));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters_by_name() {
        let e = SmaCross::new(SmaCrossParams {
            fast: 30,
            slow: 10,
            ..SmaCrossParams::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("fast"), "{e}");
        let e = SmaCross::new(SmaCrossParams {
            fraction: Decimal::ZERO,
            ..SmaCrossParams::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("fraction"), "{e}");
    }

    #[test]
    fn crossings_follow_the_last_nonzero_difference() {
        let mut s = SmaCross::new(SmaCrossParams {
            fast: 1,
            slow: 2,
            ..SmaCrossParams::default()
        })
        .unwrap();
        // fast = x, slow = mean of the last two: diff sign = sign(x - previous x).
        let signals: Vec<i32> = [10, 9, 9, 9, 12, 12, 11]
            .iter()
            .map(|&x| s.signal(x))
            .collect();
        // 9 after 10: diff < 0 (seed, no signal); equal prices give 0 and keep the
        // last non-zero (negative) difference; 12 crosses up; 11 crosses down.
        assert_eq!(signals, [0, 0, 0, 0, 1, 0, -1]);
    }
}
