//! The kernels of the table strategies: the EMA crossover, S2 (Bollinger mean
//! reversion with an RSI filter) and S3 (Donchian breakout with volume
//! confirmation), as lane rules over indicators computed once per sweep.
//!
//! Each rule decides exactly as the strategy's own `step` does
//! (`grodt_strategies::s2::S2::step`, `s3::S3::step`), on the same numbers:
//! - S2: the band position from integer prefix sums of the closes and of their
//!   squares (the window sums `BollingerRaw` keeps), compared through
//!   `BandPosition` itself; the RSI series of each distinct period computed
//!   once by `grodt_indicators::Rsi` on the same f64 closes.
//! - EMA crossover: one f64 EMA series per distinct period, computed once by
//!   `grodt_indicators::Ema` on the same f64 raw closes as `EmaCross`, the
//!   crossing decided on their difference as `EmaCross::signal` decides it.
//! - S3: the prior highest high and lowest low of each distinct window
//!   computed once by `HighestRaw` / `LowestRaw` (the channel excludes the bar
//!   decided on), the prior volume sum from an integer prefix sum, and the
//!   volume test in the strategy's f64 expression.
//!
//! Order codes: [`ENTER_LONG`], [`ENTER_SHORT`] (sized at the next open as
//! any entry) and [`EXIT`] (the whole position).

use std::collections::BTreeMap;

use grodt_core::Side;
use grodt_indicators::{BandPosition, Ema, HighestRaw, LowestRaw, Rsi};
use grodt_strategies::{EmaCrossParams, S2Params, S3Params};

use crate::{NONE, Rule, Series, SweepError, cross_orders, crossing};

/// Enter long at the next open.
const ENTER_LONG: i8 = 1;
/// Enter short at the next open.
const ENTER_SHORT: i8 = -1;
/// Close the whole position at the next open.
const EXIT: i8 = 3;

/// What the entry and exit codes send: an exit closes, an entry opens.
fn entry_exit_orders(sig: i8, pos: i64) -> (bool, Option<Side>) {
    match sig {
        ENTER_LONG => (false, Some(Side::Buy)),
        ENTER_SHORT => (false, Some(Side::Sell)),
        _ => (pos != 0, None),
    }
}

/// Distinct values, each with its table index.
fn index_of(values: impl IntoIterator<Item = usize>) -> BTreeMap<usize, u32> {
    let mut m: BTreeMap<usize, u32> = values.into_iter().map(|v| (v, 0)).collect();
    for (k, v) in m.values_mut().enumerate() {
        *v = u32::try_from(k).unwrap_or(u32::MAX);
    }
    m
}

/// Table rows (one per distinct window, one value per bar) a batch may build:
/// with the bars' count this bounds the memory of one batch's indicators.
pub(crate) const MAX_TABLE_CELLS: usize = 32 << 20;

/// The indicators S2's rules share.
pub(crate) struct S2Ind {
    /// `sq[t]` = close[0]^2 + ... + close[t - 1]^2 (raw; the sums of the
    /// closes are the series' prefix).
    sq: Vec<i128>,
    /// One RSI series per distinct period (NaN before it is warm).
    rsi: Vec<Vec<f64>>,
}

/// One S2 parameter set as a lane rule.
#[derive(Clone, Copy, Debug)]
pub(crate) struct S2Rule {
    period: usize,
    n: i128,
    k: f64,
    rsi: u32,
    oversold: f64,
    overbought: f64,
    allow_short: bool,
}

impl S2Ind {
    /// The indicators for `sets` and their rules, in order.
    ///
    /// # Errors
    /// [`SweepError::Unsupported`] when the squares of the closes could leave
    /// `i128` (raw prices far beyond any market's).
    pub(crate) fn build(
        series: &Series,
        sets: &[S2Params],
    ) -> Result<(Self, Vec<S2Rule>), SweepError> {
        let max_period = sets.iter().map(|s| s.period).max().unwrap_or(2);
        let m = series.max_abs_close;
        let n = i128::try_from(series.len().max(max_period)).unwrap_or(i128::MAX);
        // The window sums, squared, and the series' sum of squares stay inside i128.
        let fits = m
            .checked_mul(m)
            .and_then(|m2| m2.checked_mul(n))
            .is_some_and(|x| x < 1i128 << 125)
            && i128::try_from(max_period)
                .ok()
                .and_then(|p| p.checked_mul(m))
                .is_some_and(|x| x < 1i128 << 62);
        if !fits {
            return Err(SweepError::Unsupported {
                field: "bars",
                reason: "prices too large for the Bollinger kernel's exact sums".into(),
            });
        }
        let mut sq = Vec::with_capacity(series.len() + 1);
        let mut acc = 0i128;
        sq.push(acc);
        for &c in &series.close {
            acc += i128::from(c) * i128::from(c);
            sq.push(acc);
        }
        let periods = index_of(sets.iter().map(|s| s.rsi_period));
        let rsi = periods
            .keys()
            .map(|&p| {
                let mut r = Rsi::new(p);
                #[allow(clippy::cast_precision_loss, reason = "S2 feeds its RSI the same f64")]
                series
                    .close
                    .iter()
                    .map(|&c| r.update(c as f64).unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        let rules = sets
            .iter()
            .map(|s| S2Rule {
                period: s.period,
                n: i128::try_from(s.period).unwrap_or(i128::MAX),
                k: s.k,
                rsi: periods[&s.rsi_period],
                oversold: s.oversold,
                overbought: s.overbought,
                allow_short: s.allow_short,
            })
            .collect();
        Ok((Self { sq, rsi }, rules))
    }

    /// The distinct RSI periods of `set` (its table rows).
    pub(crate) fn rows(set: &S2Params) -> Vec<usize> {
        vec![set.rsi_period]
    }
}

impl Rule for S2Rule {
    type Ind = S2Ind;

    #[inline(always)]
    fn decide(&mut self, ind: &S2Ind, series: &Series, t: usize, pos: i64) -> i8 {
        if t + 1 < self.period {
            return 0;
        }
        let rsi = ind.rsi[self.rsi as usize][t];
        if rsi.is_nan() {
            return 0;
        }
        let (hi, lo) = (t + 1, t + 1 - self.period);
        let sum = series.prefix[hi] - series.prefix[lo];
        let sumsq = ind.sq[hi] - ind.sq[lo];
        let b = BandPosition {
            dev: self.n * i128::from(series.close[t]) - sum,
            var_n2: (self.n * sumsq - sum * sum).max(0),
        };
        match pos.signum() {
            0 if b.below_lower(self.k) && rsi < self.oversold => ENTER_LONG,
            0 if self.allow_short && b.above_upper(self.k) && rsi > self.overbought => ENTER_SHORT,
            1 if b.dev >= 0 || rsi > self.overbought => EXIT,
            -1 if b.dev <= 0 || rsi < self.oversold => EXIT,
            _ => 0,
        }
    }

    fn orders(&self, sig: i8, pos: i64) -> (bool, Option<Side>) {
        entry_exit_orders(sig, pos)
    }
}

/// The indicators S3's rules share.
pub(crate) struct S3Ind {
    /// Per distinct window: the highest high of the `w` bars before bar `t`.
    high: Vec<Vec<i64>>,
    /// Per distinct window: the lowest low of the `w` bars before bar `t`.
    low: Vec<Vec<i64>>,
    /// `vol[t]` = volume[0] + ... + volume[t - 1].
    vol: Vec<i128>,
}

/// One S3 parameter set as a lane rule.
#[derive(Clone, Copy, Debug)]
pub(crate) struct S3Rule {
    entry: u32,
    exit: u32,
    volume_window: usize,
    volume_window_f: f64,
    volume_mult: f64,
    /// Bars before every window is full.
    warm: usize,
    allow_short: bool,
}

impl S3Ind {
    /// The indicators for `sets` and their rules, in order (infallible; a
    /// `Result` as every table kernel's build).
    pub(crate) fn build(
        series: &Series,
        sets: &[S3Params],
    ) -> Result<(Self, Vec<S3Rule>), SweepError> {
        let windows = index_of(sets.iter().flat_map(|s| [s.entry_window, s.exit_window]));
        let (mut high, mut low) = (Vec::new(), Vec::new());
        for &w in windows.keys() {
            let (mut h, mut l) = (HighestRaw::new(w), LowestRaw::new(w));
            let (mut hv, mut lv) = (
                Vec::with_capacity(series.len()),
                Vec::with_capacity(series.len()),
            );
            for t in 0..series.len() {
                // The value before the bar is added: the channel excludes it.
                hv.push(h.value().unwrap_or(i64::MAX));
                lv.push(l.value().unwrap_or(i64::MIN));
                h.update(series.high[t]);
                l.update(series.low[t]);
            }
            high.push(hv);
            low.push(lv);
        }
        let mut vol = Vec::with_capacity(series.len() + 1);
        let mut acc = 0i128;
        vol.push(acc);
        for &v in &series.volume {
            acc += i128::from(v);
            vol.push(acc);
        }
        #[allow(clippy::cast_precision_loss, reason = "S3's volume test is f64")]
        let rules = sets
            .iter()
            .map(|s| S3Rule {
                entry: windows[&s.entry_window],
                exit: windows[&s.exit_window],
                volume_window: s.volume_window,
                volume_window_f: s.volume_window as f64,
                volume_mult: s.volume_mult,
                warm: s.entry_window.max(s.exit_window).max(s.volume_window),
                allow_short: s.allow_short,
            })
            .collect();
        Ok((Self { high, low, vol }, rules))
    }

    /// The distinct channel windows of `set` (its table rows).
    pub(crate) fn rows(set: &S3Params) -> Vec<usize> {
        vec![set.entry_window, set.exit_window]
    }
}

impl Rule for S3Rule {
    type Ind = S3Ind;

    #[inline(always)]
    fn decide(&mut self, ind: &S3Ind, series: &Series, t: usize, pos: i64) -> i8 {
        if t < self.warm {
            return 0;
        }
        let close = series.close[t];
        match pos.signum() {
            0 => {
                let sum = ind.vol[t] - ind.vol[t - self.volume_window];
                #[allow(clippy::cast_precision_loss, reason = "S3's volume test is f64")]
                let loud =
                    series.volume[t] as f64 * self.volume_window_f > self.volume_mult * sum as f64;
                if !loud {
                    0
                } else if close > ind.high[self.entry as usize][t] {
                    ENTER_LONG
                } else if self.allow_short && close < ind.low[self.entry as usize][t] {
                    ENTER_SHORT
                } else {
                    0
                }
            }
            1 if close < ind.low[self.exit as usize][t] => EXIT,
            -1 if close > ind.high[self.exit as usize][t] => EXIT,
            _ => 0,
        }
    }

    fn orders(&self, sig: i8, pos: i64) -> (bool, Option<Side>) {
        entry_exit_orders(sig, pos)
    }
}

/// The indicators the EMA crossover's rules share.
pub(crate) struct EmaInd {
    /// One EMA series per distinct period (NaN before it is warm).
    ema: Vec<Vec<f64>>,
}

/// One EMA-crossover parameter set as a lane rule.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EmaRule {
    fast: u32,
    slow: u32,
    slow_period: usize,
    /// The last non-zero sign of the difference (`NONE` before the first).
    last: i8,
    long_short: bool,
}

impl EmaInd {
    /// The indicators for `sets` and their rules, in order.
    pub(crate) fn build(
        series: &Series,
        sets: &[EmaCrossParams],
    ) -> Result<(Self, Vec<EmaRule>), SweepError> {
        let periods = index_of(sets.iter().flat_map(|s| [s.fast, s.slow]));
        let ema = periods
            .keys()
            .map(|&p| {
                let mut e = Ema::new(p);
                #[allow(
                    clippy::cast_precision_loss,
                    reason = "EmaCross averages the same f64 raw closes"
                )]
                series
                    .close
                    .iter()
                    .map(|&c| e.update(c as f64).unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        let rules = sets
            .iter()
            .map(|s| EmaRule {
                fast: periods[&s.fast],
                slow: periods[&s.slow],
                slow_period: s.slow,
                last: NONE,
                long_short: s.long_short,
            })
            .collect();
        Ok((Self { ema }, rules))
    }

    /// The distinct periods of `set` (its table rows).
    pub(crate) fn rows(set: &EmaCrossParams) -> Vec<usize> {
        vec![set.fast, set.slow]
    }
}

impl Rule for EmaRule {
    type Ind = EmaInd;

    #[inline(always)]
    fn decide(&mut self, ind: &EmaInd, _: &Series, t: usize, pos: i64) -> i8 {
        // Both averages are warm once the slow one is (fast < slow).
        if t + 1 < self.slow_period {
            return 0;
        }
        let d = ind.ema[self.fast as usize][t] - ind.ema[self.slow as usize][t];
        crossing(
            &mut self.last,
            i8::from(d > 0.0) - i8::from(d < 0.0),
            pos,
            self.long_short,
        )
    }

    fn orders(&self, sig: i8, pos: i64) -> (bool, Option<Side>) {
        cross_orders(sig, pos, self.long_short)
    }
}
