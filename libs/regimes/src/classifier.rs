//! The streaming classifier and its decisions.

use std::collections::VecDeque;

use grodt_core::fixed::MAX_PRECISION;
use grodt_core::{Bar, Price};
use grodt_indicators::{AtrRaw, RollingVwapRaw};
use serde::{Deserialize, Serialize};

use crate::config::{RegimeConfig, RegimeError, Thresholds};
use crate::dwell::Dwell;
use crate::regime::{Regime, Rule};

/// Nanoseconds in a minute.
const MINUTE_NS: i64 = 60_000_000_000;

/// The measured inputs of one evaluation (all scale-free except `close`/`vwap`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    /// VWAP slope in ATRs per bar: `(vwap_t - vwap_{t-L}) / (L * atr_t)`, 0 when the ATR is 0.
    pub slope: f64,
    /// Mid-rank of `atr / close` among the last `atr_rank_window` evaluations, in 0..1.
    pub atr_percentile: f64,
    /// Short over long realized volatility; 1 when the long one is 0.
    pub vol_ratio: f64,
    /// Realized volatility (root mean square log return per bar) over `vol_short` returns.
    pub vol_short: f64,
    /// Realized volatility over `vol_long` returns.
    pub vol_long: f64,
    /// ATR relative to the close.
    pub atr_rel: f64,
    /// The rolling VWAP, in price units.
    pub vwap: f64,
    /// The close of the evaluated bar.
    pub close: Price,
}

/// One evaluation after warm-up: the regime in force, the rule's candidate, and
/// everything that decided them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Open time of the evaluated bar (UTC ns).
    pub ts: i64,
    /// 1-based number of this decision in the classifier's life (survives a restore).
    pub seq: u64,
    /// The regime in force after this evaluation (after confirmation and dwell).
    pub regime: Regime,
    /// Whether `regime` differs from the previous decision's (true on the first).
    pub changed: bool,
    /// Evaluations `regime` has been in force, this one included.
    pub held: u32,
    /// What the rules gave at this evaluation.
    pub candidate: Regime,
    /// The rule that gave `candidate`.
    pub rule: Rule,
    /// The measured inputs.
    pub inputs: Inputs,
    /// The thresholds the rules compared them with.
    pub thresholds: Thresholds,
}

/// The ordered rule list (docs/regimes.md): the first rule that matches wins.
pub fn decide(slope: f64, atr_percentile: f64, vol_ratio: f64, t: &Thresholds) -> Rule {
    if atr_percentile >= t.atr_percentile_high {
        Rule::AtrPercentileHigh
    } else if vol_ratio >= t.vol_ratio_high {
        Rule::VolRatioHigh
    } else if slope >= t.slope_trend {
        Rule::SlopeUp
    } else if slope <= -t.slope_trend {
        Rule::SlopeDown
    } else if slope.abs() < t.slope_flat && vol_ratio < t.vol_ratio_range {
        Rule::Flat
    } else {
        Rule::Otherwise
    }
}

/// Everything the classifier holds, as persisted. Integers only (besides the
/// config), so it serializes and restores exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct State {
    config: RegimeConfig,
    price_precision: u8,
    /// Open time of the last bar taken; bars at or before it are ignored.
    last_ts: Option<i64>,
    /// The `eval_minutes` bucket of the last evaluation.
    last_bucket: Option<i64>,
    /// Decisions made so far.
    decisions: u64,
    vwap: RollingVwapRaw,
    /// VWAP fractions of the last `slope_lag + 1` bars, oldest first.
    vwap_hist: VecDeque<(i128, i128)>,
    atr: AtrRaw,
    /// The last `vol_long + 1` closes, oldest first.
    closes: VecDeque<i64>,
    /// The log returns of consecutive `closes` (one fewer), oldest first:
    /// each computed once when its close arrives instead of at every
    /// evaluation. Derived from `closes`, so not serialized: rebuilt on restore.
    #[serde(skip)]
    rets: VecDeque<f64>,
    /// `(ATR window sum, close)` at the last `atr_rank_window` evaluations, oldest first.
    atr_hist: VecDeque<(i128, i64)>,
    /// `atr / |close|` of each `atr_hist` entry in f64 (NaN where the exact
    /// products could leave i128), so most rank comparisons skip the exact
    /// cross products. Derived from `atr_hist`: not serialized, rebuilt on restore.
    #[serde(skip)]
    atr_ratio: VecDeque<f64>,
    dwell: Dwell,
}

/// The streaming regime classifier of one instrument. Feed it bars in time order
/// with [`Classifier::on_bar`]; serialize it (serde) to persist it, deserialize to
/// restore it (the restored state is checked).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "State", into = "State")]
pub struct Classifier {
    s: State,
}

impl TryFrom<State> for Classifier {
    type Error = RegimeError;

    fn try_from(s: State) -> Result<Self, RegimeError> {
        s.config.validate()?;
        check_precision(s.price_precision)?;
        let c = &s.config;
        let bad = |what: &str| Err(RegimeError::InvalidState(what.to_string()));
        if s.vwap.period() != c.vwap_window || s.atr.period() != c.atr_period {
            return bad("indicator periods differ from the config");
        }
        if s.vwap_hist.len() > c.slope_lag + 1
            || s.closes.len() > c.vol_long + 1
            || s.atr_hist.len() > c.atr_rank_window
        {
            return bad("a history is longer than its window");
        }
        if s.last_bucket.is_some() != s.last_ts.is_some() {
            return bad("last_bucket and last_ts disagree");
        }
        let mut s = s;
        s.atr_ratio = s.atr_hist.iter().map(|&(a, c)| atr_ratio(a, c)).collect();
        s.rets = s
            .closes
            .iter()
            .zip(s.closes.iter().skip(1))
            .map(|(&a, &b)| log_return(a, b))
            .collect();
        Ok(Self { s })
    }
}

impl From<Classifier> for State {
    fn from(c: Classifier) -> Self {
        c.s
    }
}

/// Below this, the rank's cross products of ATR sums and closes cannot leave
/// i128 (2^62 x 2^62 = 2^124), so the f64 ratios order them truly.
const RATIO_BOUND: u128 = 1 << 62;

/// `atr / max(|close|, 1)` in f64, NaN when the operands are too large for
/// the fast comparison.
#[allow(
    clippy::cast_precision_loss,
    reason = "a fast path checked against a margin"
)]
fn atr_ratio(atr: i128, close: i64) -> f64 {
    let c = u128::from(close.unsigned_abs().max(1));
    if atr.unsigned_abs() < RATIO_BOUND && c < RATIO_BOUND {
        atr as f64 / c as f64
    } else {
        f64::NAN
    }
}

/// `ln(b / a)` of two raw closes, 0 when either is not positive.
#[allow(clippy::cast_precision_loss, reason = "a ratio of raw closes")]
fn log_return(a: i64, b: i64) -> f64 {
    if a > 0 && b > 0 {
        (b as f64 / a as f64).ln()
    } else {
        0.0
    }
}

fn check_precision(p: u8) -> Result<(), RegimeError> {
    if p > MAX_PRECISION {
        return Err(RegimeError::InvalidConfig {
            field: "price_precision",
            reason: format!("{p} is above {MAX_PRECISION}"),
        });
    }
    Ok(())
}

fn push_capped<T>(q: &mut VecDeque<T>, x: T, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(x);
}

#[allow(clippy::cast_precision_loss, reason = "f64 views of exact integers")]
fn ratio(num: i128, den: i128) -> f64 {
    num as f64 / den as f64
}

impl Classifier {
    /// A fresh classifier for prices at `price_precision` (used only to report the
    /// close and the VWAP in price units: every rule input is a ratio).
    pub fn new(config: RegimeConfig, price_precision: u8) -> Result<Self, RegimeError> {
        config.validate()?;
        check_precision(price_precision)?;
        Ok(Self {
            s: State {
                vwap: RollingVwapRaw::new(config.vwap_window),
                vwap_hist: VecDeque::with_capacity(config.slope_lag + 1),
                atr: AtrRaw::new(config.atr_period),
                closes: VecDeque::with_capacity(config.vol_long + 1),
                rets: VecDeque::with_capacity(config.vol_long),
                atr_hist: VecDeque::with_capacity(config.atr_rank_window),
                atr_ratio: VecDeque::with_capacity(config.atr_rank_window),
                config,
                price_precision,
                last_ts: None,
                last_bucket: None,
                decisions: 0,
                dwell: Dwell::default(),
            },
        })
    }

    /// The configuration.
    pub const fn config(&self) -> &RegimeConfig {
        &self.s.config
    }

    /// The regime in force, once warmed up.
    pub const fn current(&self) -> Option<Regime> {
        self.s.dwell.current()
    }

    /// Open time of the last bar taken.
    pub const fn last_ts(&self) -> Option<i64> {
        self.s.last_ts
    }

    /// Decisions made so far (the `seq` of the last one).
    pub const fn decisions(&self) -> u64 {
        self.s.decisions
    }

    /// Takes one bar. Returns a decision when the bar is evaluated (the first bar
    /// of a new `eval_minutes` bucket) and the windows are full. A bar whose `ts`
    /// is not after the last bar's is ignored (redelivery after a restart) and
    /// returns `None`. O(1) per bar, plus O(`atr_rank_window` + `vol_long`) per
    /// evaluation.
    pub fn on_bar(&mut self, bar: &Bar) -> Option<Decision> {
        let s = &mut self.s;
        if s.last_ts.is_some_and(|t| bar.ts <= t) {
            return None;
        }
        s.last_ts = Some(bar.ts);
        let c = &s.config;
        if let Some(f) = s.vwap.update(bar.high, bar.low, bar.close, bar.volume) {
            push_capped(&mut s.vwap_hist, f, c.slope_lag + 1);
        }
        let atr = s.atr.update(bar.high, bar.low, bar.close);
        if let Some(&prev) = s.closes.back() {
            push_capped(&mut s.rets, log_return(prev, bar.close), c.vol_long);
        }
        push_capped(&mut s.closes, bar.close, c.vol_long + 1);
        let bucket = bar.ts.div_euclid(i64::from(c.eval_minutes) * MINUTE_NS);
        if s.last_bucket == Some(bucket) {
            return None;
        }
        s.last_bucket = Some(bucket);
        let atr = atr?;
        push_capped(&mut s.atr_hist, (atr, bar.close), c.atr_rank_window);
        push_capped(
            &mut s.atr_ratio,
            atr_ratio(atr, bar.close),
            c.atr_rank_window,
        );
        if s.vwap_hist.len() <= c.slope_lag
            || s.closes.len() <= c.vol_long
            || s.atr_hist.len() < c.atr_rank_window
        {
            return None;
        }
        let inputs = self.inputs(bar, atr);
        let s = &mut self.s;
        let thresholds = s.config.thresholds();
        let rule = decide(
            inputs.slope,
            inputs.atr_percentile,
            inputs.vol_ratio,
            &thresholds,
        );
        let candidate = rule.regime();
        let (regime, changed) = s
            .dwell
            .step(candidate, s.config.confirm, s.config.min_dwell);
        s.decisions += 1;
        Some(Decision {
            ts: bar.ts,
            seq: s.decisions,
            regime,
            changed,
            held: s.dwell.held(),
            candidate,
            rule,
            inputs,
            thresholds,
        })
    }

    /// The inputs at an evaluated bar, from full windows.
    #[allow(
        clippy::cast_precision_loss,
        reason = "f64 statistics of exact integers"
    )]
    fn inputs(&self, bar: &Bar, atr_sum: i128) -> Inputs {
        let s = &self.s;
        let c = &s.config;
        let scale = 10f64.powi(i32::from(s.price_precision));
        // Slope: VWAP now against VWAP `slope_lag` bars ago, in ATRs per bar.
        let (nn, dn) = s.vwap_hist[s.vwap_hist.len() - 1];
        let (nt, dt) = s.vwap_hist[0];
        let (vwap_now, vwap_then) = (ratio(nn, dn), ratio(nt, dt));
        let atr = ratio(atr_sum, c.atr_period as i128);
        let slope = if atr_sum > 0 {
            (vwap_now - vwap_then) / (c.slope_lag as f64 * atr)
        } else {
            0.0
        };
        // ATR percentile: mid-rank of atr/|close|, compared exactly by cross products.
        let close_abs = i128::from(bar.close.unsigned_abs().max(1));
        let now = atr_ratio(atr_sum, bar.close);
        let (mut below, mut equal) = (0usize, 0usize);
        for (&(a, cl), &r) in s.atr_hist.iter().zip(&s.atr_ratio) {
            // Two f64 ratios farther apart than 1e-12 relative (each is within
            // 4e-16 of its true value) are in their true order, which is the
            // exact cross products' order below RATIO_BOUND; closer ones, and
            // NaN, take the exact path.
            if (r - now).abs() > 1e-12 * r.abs().max(now.abs()) {
                if r < now {
                    below += 1;
                }
                continue;
            }
            let lhs = a.saturating_mul(close_abs);
            let rhs = atr_sum.saturating_mul(i128::from(cl.unsigned_abs().max(1)));
            match lhs.cmp(&rhs) {
                std::cmp::Ordering::Less => below += 1,
                std::cmp::Ordering::Equal => equal += 1,
                std::cmp::Ordering::Greater => {}
            }
        }
        let atr_percentile = (below as f64 + 0.5 * equal as f64) / s.atr_hist.len() as f64;
        // Realized volatility: RMS of log returns over the short and long windows.
        // The same returns summed in the same order as when each was
        // recomputed here: the figures are bit for bit the same.
        let n = s.closes.len();
        let (mut sum_long, mut sum_short) = (0.0f64, 0.0f64);
        for (i, &r) in s.rets.iter().enumerate() {
            sum_long += r * r;
            if i + 1 + c.vol_short >= n {
                sum_short += r * r;
            }
        }
        let vol_short = (sum_short / c.vol_short as f64).sqrt();
        let vol_long = (sum_long / c.vol_long as f64).sqrt();
        let vol_ratio = if vol_long > 0.0 {
            vol_short / vol_long
        } else {
            1.0
        };
        Inputs {
            slope,
            atr_percentile,
            vol_ratio,
            vol_short,
            vol_long,
            atr_rel: atr / close_abs as f64,
            vwap: vwap_now / scale,
            close: Price::from_raw(bar.close, s.price_precision)
                .unwrap_or_else(|_| Price::zero(s.price_precision)),
        }
    }
}

/// Classifies a whole series with a fresh [`Classifier`]: the decisions of
/// `on_bar` over `bars` in order.
pub fn classify(
    config: RegimeConfig,
    price_precision: u8,
    bars: &[Bar],
) -> Result<Vec<Decision>, RegimeError> {
    let mut c = Classifier::new(config, price_precision)?;
    Ok(bars.iter().filter_map(|b| c.on_bar(b)).collect())
}

/// The regime in force at every bar of `bars` (same length): the last
/// decision's regime at or before the bar, carried between evaluations;
/// `None` before the first decision (warm-up). Runs [`classify`]'s classifier.
///
/// # Errors
/// An invalid `config` or precision.
pub fn regime_per_bar(
    config: RegimeConfig,
    price_precision: u8,
    bars: &[Bar],
) -> Result<Vec<Option<Regime>>, RegimeError> {
    let mut c = Classifier::new(config, price_precision)?;
    let mut now = None;
    Ok(bars
        .iter()
        .map(|b| {
            if let Some(d) = c.on_bar(b) {
                now = Some(d.regime);
            }
            now
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> RegimeConfig {
        RegimeConfig {
            vwap_window: 3,
            slope_lag: 2,
            atr_period: 3,
            atr_rank_window: 4,
            vol_short: 2,
            vol_long: 4,
            confirm: 1,
            min_dwell: 1,
            ..RegimeConfig::default()
        }
    }

    fn bar(ts: i64, close: i64) -> Bar {
        Bar {
            ts,
            open: close,
            high: close + 2,
            low: close - 2,
            close,
            volume: 10,
        }
    }

    /// The volatility ratio from the cached returns and the ATR percentile
    /// from the cached ratios are bit for bit the former code's (returns
    /// recomputed from the closes, every rank comparison by exact cross
    /// products), on a series with zero, negative and flat closes and
    /// through a restore.
    #[test]
    #[allow(clippy::cast_precision_loss, reason = "the former code, verbatim")]
    fn cached_returns_give_the_recomputed_volatility_exactly() {
        let config = RegimeConfig {
            vol_short: 3,
            vol_long: 7,
            ..small()
        };
        let mut c = Classifier::new(config.clone(), 2).unwrap();
        let (mut checked, mut ties) = (0, 0);
        for k in 0..400i64 {
            let close = match k % 97 {
                13 => 0,
                41 => -5,
                // Flat stretches: equal ATR ratios, the exact path's ties.
                60..=75 => 1_000,
                _ => 1_000 + (k * 7_919 % 211) - 100,
            };
            if k == 200 {
                let text = serde_json::to_string(&c).unwrap();
                c = serde_json::from_str(&text).unwrap();
            }
            let Some(d) = c.on_bar(&bar(k * 60_000_000_000 * 5, close)) else {
                continue;
            };
            let closes = &c.s.closes;
            let n = closes.len();
            let (mut long, mut short) = (0.0f64, 0.0f64);
            for (i, w) in closes.iter().zip(closes.iter().skip(1)).enumerate() {
                let (a, b) = (*w.0, *w.1);
                let r = if a > 0 && b > 0 {
                    (b as f64 / a as f64).ln()
                } else {
                    0.0
                };
                long += r * r;
                if i + 1 + config.vol_short >= n {
                    short += r * r;
                }
            }
            let (vs, vl) = (
                (short / config.vol_short as f64).sqrt(),
                (long / config.vol_long as f64).sqrt(),
            );
            let want = if vl > 0.0 { vs / vl } else { 1.0 };
            assert_eq!(d.inputs.vol_ratio.to_bits(), want.to_bits(), "bar {k}");
            // The ATR percentile by exact cross products only (the former code).
            let &(atr_sum, close) = c.s.atr_hist.back().unwrap();
            let close_abs = i128::from(close.unsigned_abs().max(1));
            let (mut below, mut equal) = (0usize, 0usize);
            for &(a, cl) in &c.s.atr_hist {
                let lhs = a.saturating_mul(close_abs);
                let rhs = atr_sum.saturating_mul(i128::from(cl.unsigned_abs().max(1)));
                match lhs.cmp(&rhs) {
                    std::cmp::Ordering::Less => below += 1,
                    std::cmp::Ordering::Equal => equal += 1,
                    std::cmp::Ordering::Greater => {}
                }
            }
            let want = (below as f64 + 0.5 * equal as f64) / c.s.atr_hist.len() as f64;
            assert_eq!(d.inputs.atr_percentile.to_bits(), want.to_bits(), "bar {k}");
            ties += usize::from(equal > 1);
            checked += 1;
        }
        assert!(
            checked > 300 && ties > 10,
            "{checked} checked, {ties} with ties"
        );
    }

    #[test]
    fn the_rule_list_is_ordered() {
        let t = RegimeConfig::default().thresholds();
        assert_eq!(decide(1.0, 0.95, 1.0, &t), Rule::AtrPercentileHigh);
        assert_eq!(decide(1.0, 0.5, 2.0, &t), Rule::VolRatioHigh);
        assert_eq!(decide(0.08, 0.5, 1.0, &t), Rule::SlopeUp);
        assert_eq!(decide(-0.08, 0.5, 1.0, &t), Rule::SlopeDown);
        assert_eq!(decide(0.0, 0.5, 1.0, &t), Rule::Flat);
        assert_eq!(decide(0.0, 0.5, 1.3, &t), Rule::Otherwise);
        assert_eq!(decide(0.05, 0.5, 1.0, &t), Rule::Otherwise);
    }

    #[test]
    fn warm_up_then_one_decision_per_bucket() {
        let day = 24 * 60 * MINUTE_NS;
        // Daily bars: every bar is evaluated once warm.
        let daily: Vec<Bar> = (0..20).map(|i| bar(i * day, 1_000 + i)).collect();
        let d = classify(small(), 2, &daily).unwrap();
        // closes need vol_long + 1 = 5 bars; the ATR exists from bar 3 and needs
        // 4 evaluations: the first decision is at bar index 5.
        assert_eq!(d.len(), 15);
        assert_eq!(d[0].ts, 5 * day);
        assert_eq!(d[0].seq, 1);
        assert!(d[0].changed);
        // 1-minute bars: one decision per 5-minute bucket, at its first bar.
        let minutes: Vec<Bar> = (0..100)
            .map(|i| bar(i * MINUTE_NS, 1_000 + i % 7))
            .collect();
        let d = classify(small(), 2, &minutes).unwrap();
        assert!(d.iter().all(|x| x.ts % (5 * MINUTE_NS) == 0));
        assert!(d.windows(2).all(|w| w[1].ts - w[0].ts == 5 * MINUTE_NS));
        // the ATR exists from minute 2, evaluations at 5, 10, 15, 20 fill its history
        assert_eq!(d[0].ts, 20 * MINUTE_NS);
    }

    #[test]
    fn redelivered_bars_are_ignored() {
        let day = 24 * 60 * MINUTE_NS;
        let bars: Vec<Bar> = (0..12).map(|i| bar(i * day, 1_000 + i * i)).collect();
        let once = classify(small(), 2, &bars).unwrap();
        let mut c = Classifier::new(small(), 2).unwrap();
        let mut twice = Vec::new();
        for (i, b) in bars.iter().enumerate() {
            twice.extend(c.on_bar(b));
            // replay the bar and its predecessor: nothing happens
            assert!(c.on_bar(b).is_none());
            assert!(c.on_bar(&bars[i.saturating_sub(1)]).is_none());
        }
        assert_eq!(once, twice);
    }

    #[test]
    fn inputs_follow_the_formulas() {
        let day = 24 * 60 * MINUTE_NS;
        // closes rise by 1 per bar, range 4, true range 4 (|h - pc| = 3 < 4): ATR 4.
        let bars: Vec<Bar> = (0..8).map(|i| bar(i * day, 1_000 + i)).collect();
        let d = classify(small(), 2, &bars).unwrap();
        let last = d.last().unwrap();
        // VWAP moves 1 per bar: slope = 2 / (2 * 4)
        assert!((last.inputs.slope - 0.25).abs() < 1e-12, "{last:?}");
        // the VWAP of closes 10.05, 10.06, 10.07 (typical price = close here)
        assert!((last.inputs.vwap - 10.06).abs() < 1e-9, "{last:?}");
        // ATR/close falls as the close rises: the current one ranks lowest of 4 (mid-rank 0.5/4)
        assert!((last.inputs.atr_percentile - 0.125).abs() < 1e-12);
        assert_eq!(last.rule, Rule::SlopeUp);
        assert_eq!(last.regime, Regime::TrendingUp);
        assert_eq!(last.inputs.close.to_string(), "10.07");
    }

    #[test]
    fn a_bad_precision_or_state_is_refused() {
        assert!(matches!(
            Classifier::new(small(), 10),
            Err(RegimeError::InvalidConfig {
                field: "price_precision",
                ..
            })
        ));
        let c = Classifier::new(small(), 2).unwrap();
        let mut v = serde_json::to_value(&c).unwrap();
        v["config"]["atr_period"] = serde_json::json!(5);
        assert!(serde_json::from_value::<Classifier>(v).is_err());
        let mut v = serde_json::to_value(&c).unwrap();
        v["closes"] = serde_json::json!([1, 2, 3, 4, 5, 6, 7]);
        assert!(serde_json::from_value::<Classifier>(v).is_err());
    }
}
