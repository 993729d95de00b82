//! S1: trend following on VWAP slope and EMA alignment, entered with a bracket.
//!
//! On each close, when flat and with no entry working: go long if the rolling
//! VWAP rose over the last `slope_lookback` bars and `close > fast EMA > slow EMA`
//! (short on the mirror image if `allow_short`). The entry is a market order sized
//! at the next open (`fraction` of equity) inside a bracket whose take-profit and
//! stop-loss sit `tp_atr` and `sl_atr` ATRs from the signal close, rounded to the
//! tick away from the entry for the stop and toward it for the target. The engine
//! makes the exits live once the entry fills; whichever the price path reaches
//! first closes the trade and cancels the other.

use grodt_core::rounding::{RoundingMode, pow10_f64, round_raw_to_increment};
use grodt_core::{Bar, BracketRequest, Decimal, OrderId, OrderRequest, Price, Side, Size};
use grodt_indicators::{Atr, Ema, RollingVwap};
use grodt_strategy_api::{Context, Strategy};

use crate::StrategyError;

/// Parameters of [`S1`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct S1Params {
    /// Rolling VWAP window (bars).
    pub vwap_period: usize,
    /// Bars over which the VWAP slope is measured.
    pub slope_lookback: usize,
    /// Fast EMA period.
    pub ema_fast: usize,
    /// Slow EMA period.
    pub ema_slow: usize,
    /// ATR period.
    pub atr_period: usize,
    /// Take-profit distance in ATRs.
    pub tp_atr: f64,
    /// Stop-loss distance in ATRs.
    pub sl_atr: f64,
    /// Fraction of equity per entry.
    pub fraction: Decimal,
    /// Also trade the short side.
    pub allow_short: bool,
    /// Instrument index traded.
    pub instrument: usize,
}

impl Default for S1Params {
    fn default() -> Self {
        Self {
            vwap_period: 20,
            slope_lookback: 5,
            ema_fast: 20,
            ema_slow: 50,
            atr_period: 14,
            tp_atr: 2.0,
            sl_atr: 1.0,
            fraction: Decimal::ONE,
            allow_short: false,
            instrument: 0,
        }
    }
}

/// The S1 strategy.
#[derive(Clone, Debug)]
pub struct S1 {
    params: S1Params,
    vwap: RollingVwap,
    fast: Ema,
    slow: Ema,
    atr: Atr,
    vwap_hist: Vec<f64>,
    hist_head: usize,
    seen: usize,
    entry: Option<OrderId>,
    scale: f64,
    size_scale: f64,
}

impl S1 {
    /// Builds the strategy; precisions are the traded instrument's.
    pub fn new(
        params: S1Params,
        price_precision: u8,
        size_precision: u8,
    ) -> Result<Self, StrategyError> {
        let bad = |name, reason: &str| {
            Err(StrategyError::InvalidParam {
                name,
                reason: reason.into(),
            })
        };
        if params.vwap_period == 0 || params.slope_lookback == 0 || params.atr_period == 0 {
            return bad("vwap_period/slope_lookback/atr_period", "must be positive");
        }
        if params.ema_fast == 0 || params.ema_fast >= params.ema_slow {
            return bad("ema_fast", "must be positive and below ema_slow");
        }
        if !(params.tp_atr.is_finite()
            && params.tp_atr > 0.0
            && params.sl_atr.is_finite()
            && params.sl_atr > 0.0)
        {
            return bad("tp_atr/sl_atr", "must be positive");
        }
        if params.fraction <= Decimal::ZERO {
            return bad("fraction", "must be positive");
        }
        Ok(Self {
            params,
            vwap: RollingVwap::new(params.vwap_period),
            fast: Ema::new(params.ema_fast),
            slow: Ema::new(params.ema_slow),
            atr: Atr::new(params.atr_period),
            vwap_hist: vec![f64::NAN; params.slope_lookback + 1],
            hist_head: 0,
            seen: 0,
            entry: None,
            scale: pow10_f64(price_precision),
            size_scale: pow10_f64(size_precision),
        })
    }

    /// Slope of the VWAP over the lookback, once known.
    fn push_vwap(&mut self, v: Option<f64>) -> Option<f64> {
        let n = self.vwap_hist.len();
        self.vwap_hist[self.hist_head] = v.unwrap_or(f64::NAN);
        self.hist_head = (self.hist_head + 1) % n;
        // After the write, the head points at the oldest value (lookback bars ago).
        let old = self.vwap_hist[self.hist_head];
        let slope = v? - old;
        slope.is_finite().then_some(slope)
    }

    #[allow(
        clippy::cast_possible_truncation,
        reason = "price levels are far inside i64 once scaled"
    )]
    fn level(&self, ctx: &Context<'_>, x: f64, mode: RoundingMode) -> Option<Price> {
        let inst = &ctx.instruments()[self.params.instrument];
        let raw = match mode {
            RoundingMode::Floor => (x * self.scale).floor(),
            _ => (x * self.scale).ceil(),
        };
        if !raw.is_finite() || raw <= 0.0 {
            return None;
        }
        let raw = round_raw_to_increment(raw as i64, inst.tick_size.raw(), mode).ok()?;
        Price::from_raw(raw, inst.price_precision).ok()
    }
}

impl Strategy for S1 {
    /// Streaming indicators only: the context's window need hold just the current bar.
    fn history_bars(&self) -> usize {
        1
    }

    #[allow(clippy::cast_precision_loss, reason = "indicator inputs")]
    fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, bar: &Bar) {
        let i = self.params.instrument;
        if instrument != i {
            return;
        }
        let (h, l, c) = (
            bar.high as f64 / self.scale,
            bar.low as f64 / self.scale,
            bar.close as f64 / self.scale,
        );
        let v = self
            .vwap
            .update(h, l, c, bar.volume as f64 / self.size_scale);
        let slope = self.push_vwap(v);
        let fast = self.fast.update(c);
        let slow = self.slow.update(c);
        let atr = self.atr.update(h, l, c);
        self.seen += 1;
        // Busy while the entry works or its position (and so its exits) is open.
        if let Some(e) = self.entry {
            let working = ctx.order(e).is_some_and(|o| !o.status().is_terminal());
            if working || ctx.position(i) != 0 {
                return;
            }
            self.entry = None;
        }
        if ctx.position(i) != 0 {
            return;
        }
        let (Some(slope), Some(fast), Some(slow), Some(atr)) = (slope, fast, slow, atr) else {
            return;
        };
        let long = slope > 0.0 && c > fast && fast > slow;
        let short = self.params.allow_short && slope < 0.0 && c < fast && fast < slow;
        let (side, tp, sl) = if long {
            (
                Side::Buy,
                self.level(ctx, c + self.params.tp_atr * atr, RoundingMode::Floor),
                self.level(ctx, c - self.params.sl_atr * atr, RoundingMode::Floor),
            )
        } else if short {
            (
                Side::Sell,
                self.level(ctx, c - self.params.tp_atr * atr, RoundingMode::Ceil),
                self.level(ctx, c + self.params.sl_atr * atr, RoundingMode::Ceil),
            )
        } else {
            return;
        };
        let (Some(take_profit), Some(stop_loss)) = (tp, sl) else {
            return;
        };
        let entry = OrderRequest::market(i, side, Size::EquityFraction(self.params.fraction));
        let (e, _, _) = ctx.submit_bracket(BracketRequest {
            entry,
            take_profit,
            stop_loss,
        });
        self.entry = Some(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters_by_name() {
        let e = S1::new(
            S1Params {
                ema_fast: 60,
                ..S1Params::default()
            },
            2,
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("ema_fast"), "{e}");
        let e = S1::new(
            S1Params {
                sl_atr: -1.0,
                ..S1Params::default()
            },
            2,
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("sl_atr"), "{e}");
    }

    #[test]
    fn vwap_slope_compares_with_lookback_bars_ago() {
        let mut s = S1::new(
            S1Params {
                slope_lookback: 2,
                ..S1Params::default()
            },
            2,
            0,
        )
        .unwrap();
        assert_eq!(s.push_vwap(Some(1.0)), None);
        assert_eq!(s.push_vwap(Some(2.0)), None);
        assert_eq!(s.push_vwap(Some(4.0)), Some(3.0));
        assert_eq!(s.push_vwap(Some(3.0)), Some(1.0));
        assert_eq!(s.push_vwap(None), None);
    }
}
