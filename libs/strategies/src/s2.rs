//! S2: mean reversion on Bollinger bands with an RSI filter.
//!
//! On each close, once the bands (`period` closes) and the RSI (`rsi_period + 1`
//! closes) are both warm:
//! - flat: go long when the close is strictly below the lower band
//!   (`mean - k * sd`, population standard deviation) **and** `RSI < oversold`;
//!   with `allow_short`, go short on the mirror image (close above the upper band
//!   and `RSI > overbought`);
//! - long: exit when the close is at or above the middle band (the mean) **or**
//!   `RSI > overbought`; short: exit when the close is at or below the middle band
//!   or `RSI < oversold`.
//!
//! Entries are market orders sized when they fill (`fraction` of equity at the
//! next open, as `sma_cross`); exits close the whole position. The comparisons of
//! the close with the bands are made on exact integer sums of the raw closes
//! (`BollingerRaw`); the RSI is f64 (Wilder's smoothing).

use grodt_core::{Bar, Decimal, OrderRequest, Side, Size};
use grodt_indicators::{BollingerRaw, Rsi};
use grodt_strategy_api::{Context, Strategy};

use crate::StrategyError;

/// Parameters of [`S2`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct S2Params {
    /// Bollinger period (bars).
    pub period: usize,
    /// Band width in population standard deviations.
    pub k: f64,
    /// RSI period (bars).
    pub rsi_period: usize,
    /// RSI level below which a long may enter (and a short exits).
    pub oversold: f64,
    /// RSI level above which a short may enter (and a long exits).
    pub overbought: f64,
    /// Fraction of equity per entry.
    pub fraction: Decimal,
    /// Also trade the short side.
    pub allow_short: bool,
    /// Instrument index traded.
    pub instrument: usize,
}

impl Default for S2Params {
    fn default() -> Self {
        Self {
            period: 20,
            k: 2.0,
            rsi_period: 14,
            oversold: 30.0,
            overbought: 70.0,
            fraction: Decimal::ONE,
            allow_short: false,
            instrument: 0,
        }
    }
}

/// The S2 mean-reversion strategy.
#[derive(Clone, Debug)]
pub struct S2 {
    params: S2Params,
    bands: BollingerRaw,
    rsi: Rsi,
}

/// What S2 decides on one close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Nothing to do.
    None,
    /// Enter long.
    Long,
    /// Enter short.
    Short,
    /// Close the position.
    Exit,
}

impl S2 {
    /// Builds the strategy.
    pub fn new(params: S2Params) -> Result<Self, StrategyError> {
        let bad = |name, reason: &str| StrategyError::InvalidParam {
            name,
            reason: reason.into(),
        };
        if params.period < 2 {
            return Err(bad("period", "must be at least 2"));
        }
        if params.rsi_period == 0 {
            return Err(bad("rsi_period", "must be positive"));
        }
        if !(params.k.is_finite() && params.k > 0.0) {
            return Err(bad("k", "must be a positive number"));
        }
        if !(0.0..=100.0).contains(&params.oversold) || !(0.0..=100.0).contains(&params.overbought)
        {
            return Err(bad("oversold", "RSI levels must lie in 0..100"));
        }
        if params.oversold >= params.overbought {
            return Err(bad("oversold", "must be below overbought"));
        }
        if params.fraction <= Decimal::ZERO {
            return Err(bad("fraction", "must be positive"));
        }
        Ok(Self {
            params,
            bands: BollingerRaw::new(params.period),
            rsi: Rsi::new(params.rsi_period),
        })
    }

    /// Feeds one close (raw) and decides for a position of sign `pos`.
    #[allow(clippy::cast_precision_loss, reason = "RSI input; a ratio, scale-free")]
    pub fn step(&mut self, close_raw: i64, pos: i64) -> Signal {
        self.bands.update(close_raw);
        let rsi = self.rsi.update(close_raw as f64);
        let (Some(b), Some(rsi)) = (self.bands.position(close_raw), rsi) else {
            return Signal::None;
        };
        let p = &self.params;
        match pos.signum() {
            0 if b.below_lower(p.k) && rsi < p.oversold => Signal::Long,
            0 if p.allow_short && b.above_upper(p.k) && rsi > p.overbought => Signal::Short,
            1 if b.dev >= 0 || rsi > p.overbought => Signal::Exit,
            -1 if b.dev <= 0 || rsi < p.oversold => Signal::Exit,
            _ => Signal::None,
        }
    }
}

impl Strategy for S2 {
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
        let signal = self.step(bar.close, pos);
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

    fn s2(period: usize, rsi_period: usize, allow_short: bool) -> S2 {
        S2::new(S2Params {
            period,
            k: 1.0,
            rsi_period,
            allow_short,
            ..S2Params::default()
        })
        .unwrap()
    }

    #[test]
    fn refuses_bad_parameters_by_name() {
        for (p, name) in [
            (
                S2Params {
                    period: 1,
                    ..S2Params::default()
                },
                "period",
            ),
            (
                S2Params {
                    oversold: 80.0,
                    ..S2Params::default()
                },
                "oversold",
            ),
            (
                S2Params {
                    k: 0.0,
                    ..S2Params::default()
                },
                "k",
            ),
            (
                S2Params {
                    fraction: Decimal::ZERO,
                    ..S2Params::default()
                },
                "fraction",
            ),
        ] {
            let e = S2::new(p).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn enters_below_the_lower_band_when_oversold_and_exits_at_the_mean() {
        let mut s = s2(4, 2, false);
        // Warm-up: nothing before both indicators are ready.
        assert_eq!(s.step(100, 0), Signal::None);
        assert_eq!(s.step(100, 0), Signal::None);
        assert_eq!(s.step(100, 0), Signal::None);
        // window [100,100,100,90]: mean 97.5, sd ~4.33, lower ~93.2; RSI 0.
        assert_eq!(s.step(90, 0), Signal::Long);
        // Holding long: a close still below the mean with a low RSI holds.
        assert_eq!(s.step(89, 1), Signal::None);
        // window [100,90,89,96]: mean 93.75; 96 >= mean -> exit.
        assert_eq!(s.step(96, 1), Signal::Exit);
    }

    #[test]
    fn rsi_filter_blocks_an_entry_that_is_not_oversold() {
        // Closes 100,110,120,105,100: the last is below the lower band (k = 1:
        // window [110,120,105,100], mean 108.75, sd 7.395, lower 101.35) and
        // RSI(2) = 100 - 100 / (1 + 2.5 / 6.25) = 28.57 (moves +10, +10, -15, -5).
        for (oversold, want) in [(20.0, Signal::None), (30.0, Signal::Long)] {
            let mut s = S2::new(S2Params {
                period: 4,
                k: 1.0,
                rsi_period: 2,
                oversold,
                ..S2Params::default()
            })
            .unwrap();
            for x in [100, 110, 120, 105] {
                assert_eq!(s.step(x, 0), Signal::None);
            }
            assert_eq!(s.step(100, 0), want, "oversold {oversold}");
        }
    }

    #[test]
    fn short_side_only_when_allowed() {
        for allow in [false, true] {
            let mut s = s2(4, 2, allow);
            for x in [100, 100, 100] {
                s.step(x, 0);
            }
            let want = if allow { Signal::Short } else { Signal::None };
            assert_eq!(s.step(110, 0), want);
            // A short exits at or below the mean.
            if allow {
                assert_eq!(s.step(101, -1), Signal::Exit);
            }
        }
    }
}
