//! Pair: market-neutral mean reversion of the log-price spread of two instruments.
//!
//! Spread `s_t = ln(close_a) - β·ln(close_b)`; `β` is `hedge_ratio` (`hedge =
//! fixed`) or the OLS slope of `ln a` on `ln b` over the last `lookback`
//! timestamps (`hedge = rolling_ols`, recomputed each timestamp; the window's
//! spreads are all taken with the current `β`). `z_t = (s_t - mean) / sd` over
//! the last `lookback` spreads, the current one included, with the
//! **population** standard deviation (as S2's bands). Raw fixed-point closes
//! are used: `ln(raw) = ln(price) + const`, and the constant cancels in `z`.
//!
//! A decision is taken once per timestamp, when both instruments have a bar at
//! that timestamp: on the `on_bar` call (of either instrument) where the other
//! instrument's latest bar has the same time. A timestamp where one instrument
//! has no bar is skipped (nothing recorded, nothing decided).
//!
//! - Flat: `z > entry_z` → short a, long b; `z < -entry_z` → long a, short b.
//!   Each leg is a market order sized `EquityFraction(fraction / 2)` when it
//!   fills, so the legs are dollar-neutral at their fills (β only shapes the
//!   signal, not the sizes).
//! - Short spread (short a, long b): exit both legs when `z < exit_z`, stop when
//!   `z > stop_z`. Long spread: exit when `z > -exit_z`, stop when
//!   `z < -stop_z`. (This is `|z| < exit_z` / `|z| > stop_z` seen from the side
//!   held; it also exits when `z` jumps over the whole exit band in one step.)
//!   `stop_z = 0` turns the stop off. Exits are `ClosePosition` market orders
//!   for each leg that is not flat.
//! - A leg held alone (the other leg's entry was refused, e.g. by the venue's
//!   margin check) is closed at the next decision.
//! - After a stop (or such a broken entry) no new entry is taken until
//!   `|z| <= entry_z` again, so it does not re-enter at once on the same
//!   divergence.
//! - While any order of either leg is open, nothing is decided (fills pending).
//!
//! The z-score is f64 (a signal, not money); orders are exact.

use std::collections::VecDeque;

use grodt_core::{Bar, Decimal, OrderRequest, Side, Size};
use grodt_strategy_api::{Context, Strategy};

use crate::StrategyError;

/// How the hedge ratio β is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hedge {
    /// β = `hedge_ratio`.
    Fixed,
    /// β = OLS slope of `ln a` on `ln b` over the lookback.
    RollingOls,
}

/// Parameters of [`Pair`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairParams {
    /// Spreads in the z-score window (and log prices in the OLS window).
    pub lookback: usize,
    /// How β is chosen.
    pub hedge: Hedge,
    /// β when `hedge` is `Fixed`.
    pub hedge_ratio: f64,
    /// |z| above which a flat pair enters.
    pub entry_z: f64,
    /// |z| below which a position exits (reversion).
    pub exit_z: f64,
    /// |z| above which a position is stopped out; 0 = no stop.
    pub stop_z: f64,
    /// Fraction of equity for both legs together (each leg gets half).
    pub fraction: Decimal,
    /// Instrument index of leg a.
    pub a: usize,
    /// Instrument index of leg b.
    pub b: usize,
}

impl Default for PairParams {
    fn default() -> Self {
        Self {
            lookback: 60,
            hedge: Hedge::Fixed,
            hedge_ratio: 1.0,
            entry_z: 2.0,
            exit_z: 0.5,
            stop_z: 0.0,
            fraction: Decimal::ONE,
            a: 0,
            b: 1,
        }
    }
}

/// What one timestamp's decision found.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Decision {
    /// Not enough data, or a degenerate window.
    None,
    /// The z-score of the current spread.
    Z(f64),
}

/// A spread standard deviation at or below this is treated as zero (no signal).
const MIN_SD: f64 = 1e-12;

/// The pair strategy.
#[derive(Clone, Debug)]
pub struct Pair {
    params: PairParams,
    /// `(ln close_a, ln close_b)` of the last `lookback` common timestamps.
    logs: VecDeque<(f64, f64)>,
    /// The last timestamp decided (one decision per timestamp).
    last_ts: Option<i64>,
    /// False after a stop or a broken entry until |z| <= entry_z.
    armed: bool,
}

fn invalid(name: &'static str, reason: String) -> StrategyError {
    StrategyError::InvalidParam { name, reason }
}

impl Pair {
    /// Builds the strategy, refusing parameters out of range by name.
    pub fn new(params: PairParams) -> Result<Self, StrategyError> {
        let p = params;
        if p.lookback < 2 {
            return Err(invalid("lookback", format!("{} must be >= 2", p.lookback)));
        }
        if p.a == p.b {
            return Err(invalid("a/b", "the two legs must be distinct".into()));
        }
        if !(p.hedge_ratio.is_finite() && p.hedge_ratio > 0.0) {
            return Err(invalid(
                "hedge_ratio",
                format!("{} must be positive", p.hedge_ratio),
            ));
        }
        if !(p.entry_z.is_finite() && p.entry_z > 0.0) {
            return Err(invalid(
                "entry_z",
                format!("{} must be positive", p.entry_z),
            ));
        }
        if !(p.exit_z.is_finite() && p.exit_z >= 0.0 && p.exit_z < p.entry_z) {
            return Err(invalid(
                "exit_z",
                format!("{} must be >= 0 and below entry_z {}", p.exit_z, p.entry_z),
            ));
        }
        if !(p.stop_z == 0.0 || (p.stop_z.is_finite() && p.stop_z > p.entry_z)) {
            return Err(invalid(
                "stop_z",
                format!(
                    "{} must be 0 (off) or above entry_z {}",
                    p.stop_z, p.entry_z
                ),
            ));
        }
        if p.fraction <= Decimal::ZERO {
            return Err(invalid("fraction", "must be positive".into()));
        }
        Ok(Self {
            params,
            logs: VecDeque::with_capacity(p.lookback + 1),
            last_ts: None,
            armed: true,
        })
    }

    /// The parameters.
    pub const fn params(&self) -> &PairParams {
        &self.params
    }

    /// Records one common timestamp's closes (raw, positive) and returns the
    /// z-score of the current spread once the window is full.
    fn update(&mut self, close_a: i64, close_b: i64) -> Decision {
        #[expect(
            clippy::cast_precision_loss,
            reason = "a log of a price for a signal: f64 precision is ample"
        )]
        let (la, lb) = ((close_a as f64).ln(), (close_b as f64).ln());
        self.logs.push_back((la, lb));
        if self.logs.len() > self.params.lookback {
            self.logs.pop_front();
        }
        if self.logs.len() < self.params.lookback {
            return Decision::None;
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "a window length, far below 2^52"
        )]
        let n = self.logs.len() as f64;
        let beta = match self.params.hedge {
            Hedge::Fixed => self.params.hedge_ratio,
            Hedge::RollingOls => {
                let (ma, mb) = self
                    .logs
                    .iter()
                    .fold((0.0, 0.0), |(x, y), (a, b)| (x + a, y + b));
                let (ma, mb) = (ma / n, mb / n);
                let (cov, var) = self.logs.iter().fold((0.0, 0.0), |(c, v), (a, b)| {
                    (c + (a - ma) * (b - mb), v + (b - mb) * (b - mb))
                });
                if var <= MIN_SD * MIN_SD {
                    return Decision::None;
                }
                cov / var
            }
        };
        let spread = |(a, b): &(f64, f64)| a - beta * b;
        let mean = self.logs.iter().map(spread).sum::<f64>() / n;
        let var = self
            .logs
            .iter()
            .map(|x| (spread(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        let sd = var.sqrt();
        let Some(last) = self.logs.back() else {
            return Decision::None;
        };
        // A NaN sd (never expected: closes are positive) gives no signal either.
        if sd.is_nan() || sd <= MIN_SD {
            return Decision::None;
        }
        Decision::Z((spread(last) - mean) / sd)
    }
}

impl Strategy for Pair {
    /// The strategy keeps its own window of log closes: the context need hold
    /// just the latest bar of each leg.
    fn history_bars(&self) -> usize {
        1
    }

    fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, bar: &Bar) {
        let PairParams {
            a,
            b,
            entry_z,
            exit_z,
            stop_z,
            fraction,
            ..
        } = self.params;
        if instrument != a && instrument != b {
            return;
        }
        let (Some(ba), Some(bb)) = (ctx.history(a).last(), ctx.history(b).last()) else {
            return;
        };
        let (close_a, close_b) = (ba.close, bb.close);
        if ba.ts != bar.ts || bb.ts != bar.ts || self.last_ts == Some(bar.ts) {
            return;
        }
        self.last_ts = Some(bar.ts);
        if close_a <= 0 || close_b <= 0 {
            return;
        }
        let Decision::Z(z) = self.update(close_a, close_b) else {
            return;
        };
        if ctx
            .open_orders()
            .any(|o| o.request.instrument == a || o.request.instrument == b)
        {
            return;
        }
        let (pa, pb) = (ctx.position(a), ctx.position(b));
        if pa == 0 && pb == 0 {
            if z.abs() <= entry_z {
                self.armed = true;
            }
            if !self.armed {
                return;
            }
            let leg = Size::EquityFraction(fraction / Decimal::TWO);
            if z > entry_z {
                ctx.submit(OrderRequest::market(a, Side::Sell, leg));
                ctx.submit(OrderRequest::market(b, Side::Buy, leg));
            } else if z < -entry_z {
                ctx.submit(OrderRequest::market(a, Side::Buy, leg));
                ctx.submit(OrderRequest::market(b, Side::Sell, leg));
            }
            return;
        }
        // One leg alone (the other's entry was refused, e.g. by the margin
        // check): not a pair, so close it and wait for the next divergence.
        let orphan = pa == 0 || pb == 0;
        // The side held: short spread = short a (or, a leg missing, long b).
        let short_spread = pa < 0 || (pa == 0 && pb > 0);
        let zs = if short_spread { z } else { -z };
        let stop = stop_z > 0.0 && zs > stop_z;
        if zs < exit_z || stop || orphan {
            if stop || orphan {
                self.armed = false;
            }
            for (i, pos) in [(a, pa), (b, pb)] {
                if pos != 0 {
                    let side = if pos > 0 { Side::Sell } else { Side::Buy };
                    ctx.submit(OrderRequest::market(i, side, Size::ClosePosition));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(p: PairParams) -> Pair {
        Pair::new(p).unwrap()
    }

    #[test]
    fn refuses_bad_parameters_by_name() {
        let bad = [
            (
                PairParams {
                    lookback: 1,
                    ..PairParams::default()
                },
                "lookback",
            ),
            (
                PairParams {
                    exit_z: 2.0,
                    ..PairParams::default()
                },
                "exit_z",
            ),
            (
                PairParams {
                    stop_z: 1.5,
                    ..PairParams::default()
                },
                "stop_z",
            ),
            (
                PairParams {
                    fraction: Decimal::ZERO,
                    ..PairParams::default()
                },
                "fraction",
            ),
            (
                PairParams {
                    b: 0,
                    ..PairParams::default()
                },
                "a/b",
            ),
            (
                PairParams {
                    hedge_ratio: f64::NAN,
                    ..PairParams::default()
                },
                "hedge_ratio",
            ),
        ];
        for (p, name) in bad {
            let e = Pair::new(p).unwrap_err();
            assert!(e.to_string().contains(name), "{name}: {e}");
        }
        Pair::new(PairParams {
            stop_z: 3.0,
            ..PairParams::default()
        })
        .unwrap();
    }

    #[test]
    fn z_is_the_population_score_of_the_current_spread() {
        let mut s = pair(PairParams {
            lookback: 4,
            ..PairParams::default()
        });
        // b constant: spread = ln a + const; a = e^k gives spreads 0, 0, 0, 1.
        let e = std::f64::consts::E;
        #[expect(clippy::cast_possible_truncation, reason = "test prices")]
        let a = |x: f64| (1e6 * x).round() as i64;
        assert_eq!(s.update(a(1.0), 100), Decision::None);
        assert_eq!(s.update(a(1.0), 100), Decision::None);
        assert_eq!(s.update(a(1.0), 100), Decision::None);
        let Decision::Z(z) = s.update(a(e), 100) else {
            panic!("window full")
        };
        // mean 0.25, population sd sqrt(3/16): z = 0.75 / 0.4330 = sqrt(3).
        assert!((z - 3f64.sqrt()).abs() < 1e-6, "{z}");
        // A flat window gives no signal.
        let mut s = pair(PairParams {
            lookback: 2,
            ..PairParams::default()
        });
        s.update(5, 7);
        assert_eq!(s.update(5, 7), Decision::None);
    }

    struct Flat;
    impl grodt_strategy_api::AccountView for Flat {
        fn cash(&self) -> Decimal {
            Decimal::from(1000)
        }
        fn position_raw(&self, _: usize) -> i64 {
            0
        }
        fn equity(&self) -> Decimal {
            Decimal::from(1000)
        }
    }

    fn bar(ts: i64, close: i64) -> Bar {
        Bar {
            ts,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1,
        }
    }

    /// Calls `on_bar` for each `instrument` in turn over the same windows and
    /// returns the requests made.
    fn feed(
        s: &mut Pair,
        windows: &grodt_strategy_api::Windows,
        ts: i64,
        calls: &[usize],
    ) -> Vec<grodt_strategy_api::Command> {
        let instruments = [
            grodt_core::Instrument::equity("A", 2, 0),
            grodt_core::Instrument::equity("B", 2, 0),
        ];
        let orders: Vec<grodt_core::Order> = Vec::new();
        let mut outbox = grodt_strategy_api::Outbox::new(0);
        for &i in calls {
            let Some(b) = windows.last(i).copied() else {
                continue;
            };
            let mut ctx = Context::new(ts, &instruments, windows, &Flat, &orders, &mut outbox);
            s.on_bar(&mut ctx, i, &b);
        }
        outbox.commands().to_vec()
    }

    #[test]
    fn decides_once_per_timestamp_and_only_when_both_legs_have_it() {
        let mut s = pair(PairParams {
            lookback: 2,
            entry_z: 0.5,
            exit_z: 0.1,
            ..PairParams::default()
        });
        let mut w = grodt_strategy_api::Windows::new(2, 1);
        w.push(0, bar(1, 10_000));
        w.push(1, bar(1, 10_000));
        assert!(feed(&mut s, &w, 1, &[0, 1, 0, 1]).is_empty());
        // a's bar at ts 2 alone: b's latest is ts 1, nothing is decided.
        w.push(0, bar(2, 11_000));
        assert!(feed(&mut s, &w, 2, &[0]).is_empty());
        assert_eq!(s.logs.len(), 1);
        // Both at ts 2: z = +1 > 0.5, one decision however many calls.
        w.push(1, bar(2, 10_000));
        let cmds = feed(&mut s, &w, 2, &[1, 0, 1, 0]);
        let leg = Size::EquityFraction(Decimal::new(5, 1));
        let reqs: Vec<OrderRequest> = cmds
            .iter()
            .filter_map(|c| match c {
                grodt_strategy_api::Command::Submit(_, r) => Some(*r),
                _ => None,
            })
            .collect();
        assert_eq!(
            reqs,
            [
                OrderRequest::market(0, Side::Sell, leg),
                OrderRequest::market(1, Side::Buy, leg)
            ]
        );
        assert_eq!(cmds.len(), 2);
    }

    #[test]
    fn rolling_ols_removes_a_proportional_co_movement() {
        let mut s = pair(PairParams {
            lookback: 5,
            hedge: Hedge::RollingOls,
            ..PairParams::default()
        });
        // ln a = 2 ln b exactly (a = b^2) except the last point: β = 2 fits the
        // first four exactly, so the last spread stands out.
        let mut last = Decision::None;
        for (a, b) in [(100, 10), (144, 12), (196, 14), (256, 16), (330, 18)] {
            last = s.update(a, b);
        }
        let Decision::Z(z) = last else {
            panic!("window full")
        };
        assert!(z > 1.5, "{z}");
    }
}
