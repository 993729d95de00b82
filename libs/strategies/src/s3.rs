//! S3: Donchian channel breakout with volume confirmation.
//!
//! On each close, once every window is full (the `entry_window` and `exit_window`
//! bars before the current one, and the `volume_window` volumes before it):
//! - flat: go long when the close is strictly above the highest high of the
//!   previous `entry_window` bars **and** the bar's volume is strictly above
//!   `volume_mult` times the mean volume of the previous `volume_window` bars; with
//!   `allow_short`, go short when the close is strictly below the lowest low of the
//!   previous `entry_window` bars with the same volume confirmation;
//! - long: exit when the close is strictly below the lowest low of the previous
//!   `exit_window` bars; short: exit when it is strictly above their highest high.
//!
//! The channels exclude the current bar (a close can never exceed its own bar's
//! high). Entries are market orders sized when they fill (`fraction` of equity at
//! the next open); exits close the whole position. Prices are compared exactly
//! (raw integers); the volume test is `volume * volume_window > volume_mult *
//! sum(volumes)` in f64 over exact integer sums.

use grodt_core::{Bar, Decimal, OrderRequest, Side, Size};
use grodt_indicators::{HighestRaw, LowestRaw, SmaRaw};
use grodt_strategy_api::{Context, Strategy};

use crate::StrategyError;
use crate::s2::Signal;

/// Parameters of [`S3`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct S3Params {
    /// Bars whose highest high (lowest low) a close must break to enter.
    pub entry_window: usize,
    /// Bars whose lowest low (highest high) a close must break to exit.
    pub exit_window: usize,
    /// Bars of the volume average.
    pub volume_window: usize,
    /// The entry bar's volume must exceed this multiple of the average.
    pub volume_mult: f64,
    /// Fraction of equity per entry.
    pub fraction: Decimal,
    /// Also trade the short side.
    pub allow_short: bool,
    /// Instrument index traded.
    pub instrument: usize,
}

impl Default for S3Params {
    fn default() -> Self {
        Self {
            entry_window: 20,
            exit_window: 10,
            volume_window: 20,
            volume_mult: 1.2,
            fraction: Decimal::ONE,
            allow_short: false,
            instrument: 0,
        }
    }
}

/// The channels as they stood before the current bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Prior {
    entry_high: i64,
    entry_low: i64,
    exit_high: i64,
    exit_low: i64,
    volume_sum: i128,
}

/// The S3 breakout strategy.
#[derive(Clone, Debug)]
pub struct S3 {
    params: S3Params,
    entry_high: HighestRaw,
    entry_low: LowestRaw,
    exit_high: HighestRaw,
    exit_low: LowestRaw,
    volume: SmaRaw,
}

impl S3 {
    /// Builds the strategy.
    pub fn new(params: S3Params) -> Result<Self, StrategyError> {
        let bad = |name, reason: &str| StrategyError::InvalidParam {
            name,
            reason: reason.into(),
        };
        for (name, v) in [
            ("entry_window", params.entry_window),
            ("exit_window", params.exit_window),
            ("volume_window", params.volume_window),
        ] {
            if v == 0 {
                return Err(bad(name, "must be positive"));
            }
        }
        if !(params.volume_mult.is_finite() && params.volume_mult >= 0.0) {
            return Err(bad("volume_mult", "must be a non-negative number"));
        }
        if params.fraction <= Decimal::ZERO {
            return Err(bad("fraction", "must be positive"));
        }
        Ok(Self {
            params,
            entry_high: HighestRaw::new(params.entry_window),
            entry_low: LowestRaw::new(params.entry_window),
            exit_high: HighestRaw::new(params.exit_window),
            exit_low: LowestRaw::new(params.exit_window),
            volume: SmaRaw::new(params.volume_window),
        })
    }

    fn prior(&self) -> Option<Prior> {
        Some(Prior {
            entry_high: self.entry_high.value()?,
            entry_low: self.entry_low.value()?,
            exit_high: self.exit_high.value()?,
            exit_low: self.exit_low.value()?,
            volume_sum: self.volume.sum()?,
        })
    }

    /// Decides on one bar for a position of sign `pos`, then adds the bar to the
    /// windows (so the channels always exclude the bar being decided on).
    #[allow(clippy::cast_precision_loss, reason = "volume ratio test")]
    pub fn step(&mut self, bar: &Bar, pos: i64) -> Signal {
        let signal = self.prior().map_or(Signal::None, |w| {
            let p = &self.params;
            let loud =
                bar.volume as f64 * p.volume_window as f64 > p.volume_mult * w.volume_sum as f64;
            match pos.signum() {
                0 if loud && bar.close > w.entry_high => Signal::Long,
                0 if p.allow_short && loud && bar.close < w.entry_low => Signal::Short,
                1 if bar.close < w.exit_low => Signal::Exit,
                -1 if bar.close > w.exit_high => Signal::Exit,
                _ => Signal::None,
            }
        });
        self.entry_high.update(bar.high);
        self.entry_low.update(bar.low);
        self.exit_high.update(bar.high);
        self.exit_low.update(bar.low);
        self.volume.update(bar.volume);
        signal
    }
}

impl Strategy for S3 {
    /// Streaming indicators only.
    fn history_bars(&self) -> usize {
        1
    }

    fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, bar: &Bar) {
        let i = self.params.instrument;
        if instrument != i {
            return;
        }
        let pos = ctx.position(i);
        let signal = self.step(bar, pos);
        if ctx.open_orders().any(|o| o.request.instrument == i) {
            return;
        }
        let entry = Size::EquityFraction(self.params.fraction);
        match signal {
            Signal::None => {}
            Signal::Long => {
                ctx.submit(OrderRequest::market(i, Side::Buy, entry));
            }
            Signal::Short => {
                ctx.submit(OrderRequest::market(i, Side::Sell, entry));
            }
            Signal::Exit => {
                let side = if pos > 0 { Side::Sell } else { Side::Buy };
                ctx.submit(OrderRequest::market(i, side, Size::ClosePosition));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(high: i64, low: i64, close: i64, volume: i64) -> Bar {
        Bar {
            ts: 0,
            open: close,
            high,
            low,
            close,
            volume,
        }
    }

    fn s3(allow_short: bool) -> S3 {
        S3::new(S3Params {
            entry_window: 3,
            exit_window: 2,
            volume_window: 3,
            volume_mult: 1.5,
            allow_short,
            ..S3Params::default()
        })
        .unwrap()
    }

    #[test]
    fn refuses_bad_parameters_by_name() {
        let e = S3::new(S3Params {
            exit_window: 0,
            ..S3Params::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("exit_window"), "{e}");
        let e = S3::new(S3Params {
            volume_mult: f64::NAN,
            ..S3Params::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("volume_mult"), "{e}");
    }

    #[test]
    fn breakout_needs_a_new_high_and_loud_volume() {
        let mut s = s3(false);
        for _ in 0..3 {
            assert_eq!(s.step(&bar(105, 95, 100, 100), 0), Signal::None);
        }
        // Above the prior high 105 but volume 150 is not above 1.5 * 100.
        assert_eq!(s.step(&bar(107, 100, 106, 150), 0), Signal::None);
        // A new high, but volume 170 is not above 1.5 * mean(100, 100, 150) = 175.
        assert_eq!(s.step(&bar(108, 100, 108, 170), 0), Signal::None);
        // Close 108 equals the prior high 108: no breakout even with volume.
        assert_eq!(s.step(&bar(108, 100, 108, 1_000), 0), Signal::None);
        assert_eq!(s.step(&bar(112, 100, 109, 1_000), 0), Signal::Long);
    }

    #[test]
    fn long_exits_below_the_prior_exit_window_low() {
        let mut s = s3(false);
        for b in [
            bar(105, 95, 100, 100),
            bar(105, 97, 100, 100),
            bar(105, 98, 100, 100),
        ] {
            s.step(&b, 1);
        }
        // prior 2 lows: 97, 98 -> 97; a close at 97 holds, 96 exits.
        assert_eq!(s.step(&bar(100, 90, 97, 100), 1), Signal::None);
        // prior 2 lows now 98, 90 -> 90.
        assert_eq!(s.step(&bar(100, 89, 91, 100), 1), Signal::None);
        assert_eq!(s.step(&bar(100, 80, 88, 100), 1), Signal::Exit);
    }

    #[test]
    fn short_breakouts_only_when_allowed() {
        for allow in [false, true] {
            let mut s = s3(allow);
            for _ in 0..3 {
                s.step(&bar(105, 95, 100, 100), 0);
            }
            let want = if allow { Signal::Short } else { Signal::None };
            assert_eq!(s.step(&bar(100, 90, 94, 200), 0), want);
            if allow {
                // short exits above the prior 2 highs (105, 100 -> 105)
                assert_eq!(s.step(&bar(106, 95, 105, 100), -1), Signal::None);
                // prior 2 highs 100, 106 -> 106
                assert_eq!(s.step(&bar(108, 95, 107, 100), -1), Signal::Exit);
            }
        }
    }
}
