//! Ex-post regime labels and the classifier's accuracy against them.
//!
//! The ex-post rule looks at what happened over the `horizon` bars *after*
//! bar `t` (it sees the future, so it can only grade, never trade). It shares
//! no code with the classifier: plain `f64` closes, its own measures, its own
//! thresholds, fixed before the classifier was graded (docs/regimes.md,
//! "Accuracy"). With `c` the closes and `H` the horizon, over `t..=t+H`:
//!
//! - forward return `R_t = ln(c_{t+H} / c_t)`;
//! - efficiency ratio `ER_t = |c_{t+H} - c_t| / sum_{i=t+1..t+H} |c_i - c_{i-1}|`
//!   (0 when the path has no length);
//! - forward realized volatility `RV_t = sqrt(mean of r_i^2)`,
//!   `r_i = ln(c_i / c_{i-1})`, `i = t+1..t+H`.
//!
//! The label is the first that matches:
//!
//! 1. `high_volatility`: `RV_t` at or above the series' `high_vol_quantile`
//!    (0.9: top decile) of all forward RVs **and** at least `high_vol_vs_median`
//!    (1.5) times their median (so a series of uniform volatility has none);
//! 2. `trending_up` / `trending_down`: `ER_t >= trend_efficiency` (0.4) and
//!    `R_t > 0` / `R_t < 0`;
//! 3. `ranging`: `ER_t < range_efficiency` (0.2);
//! 4. `transition`: otherwise.
//!
//! A random walk's 20-bar efficiency ratio is about `1/sqrt(20) = 0.22` on
//! average, so `ranging` is a path that goes nowhere, a trend one that covers
//! at least 40% of its length in one direction.

use serde::{Deserialize, Serialize};

use crate::regime::Regime;

/// The ex-post labelling rule's parameters (defaults in the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExPostRule {
    /// Forward window, in bars.
    pub horizon: usize,
    /// Minimum efficiency ratio of a trend.
    pub trend_efficiency: f64,
    /// Efficiency ratio below which the window is ranging.
    pub range_efficiency: f64,
    /// Quantile of the forward RVs at or above which a window is volatile.
    pub high_vol_quantile: f64,
    /// A volatile window's RV is also at least this multiple of the median RV.
    pub high_vol_vs_median: f64,
}

impl Default for ExPostRule {
    fn default() -> Self {
        Self {
            horizon: 20,
            trend_efficiency: 0.4,
            range_efficiency: 0.2,
            high_vol_quantile: 0.9,
            high_vol_vs_median: 1.5,
        }
    }
}

impl ExPostRule {
    /// Checks every field; the error names it.
    ///
    /// # Errors
    /// The field at fault and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.horizon < 2 {
            return Err("horizon: must be at least 2 bars".into());
        }
        if !(self.range_efficiency > 0.0
            && self.range_efficiency <= self.trend_efficiency
            && self.trend_efficiency <= 1.0)
        {
            return Err("range_efficiency, trend_efficiency: need 0 < range <= trend <= 1".into());
        }
        if !(self.high_vol_quantile > 0.0 && self.high_vol_quantile < 1.0) {
            return Err("high_vol_quantile: must be in (0, 1)".into());
        }
        if !(self.high_vol_vs_median.is_finite() && self.high_vol_vs_median >= 1.0) {
            return Err("high_vol_vs_median: must be finite and >= 1".into());
        }
        Ok(())
    }
}

/// What the forward window of one bar measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forward {
    /// `ln(c_{t+H} / c_t)`.
    pub ret: f64,
    /// Net move over path length, in `0..=1`.
    pub efficiency: f64,
    /// Root mean square log return per bar.
    pub realized_vol: f64,
}

fn log_return(a: f64, b: f64) -> f64 {
    if a > 0.0 && b > 0.0 {
        (b / a).ln()
    } else {
        0.0
    }
}

/// The forward window of bar `t`: `None` when fewer than `h` bars follow it.
pub fn forward(closes: &[f64], t: usize, h: usize) -> Option<Forward> {
    let w = closes.get(t..=t.checked_add(h)?)?;
    let mut path = 0.0;
    let mut sq = 0.0;
    for p in w.windows(2) {
        path += (p[1] - p[0]).abs();
        let r = log_return(p[0], p[1]);
        sq += r * r;
    }
    let net = w[h] - w[0];
    #[allow(clippy::cast_precision_loss, reason = "a window length")]
    let n = h as f64;
    Some(Forward {
        ret: log_return(w[0], w[h]),
        efficiency: if path > 0.0 {
            (net.abs() / path).min(1.0)
        } else {
            0.0
        },
        realized_vol: (sq / n).sqrt(),
    })
}

/// Linear-interpolation quantile of sorted values (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "an index")]
    let pos = q * (sorted.len() - 1) as f64;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "0 <= pos < len"
    )]
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    #[allow(clippy::cast_precision_loss, reason = "an index")]
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// The ex-post label of every bar: `labels[t]` for `t` with a full forward
/// window, `None` for the last `horizon` bars. The volatility thresholds come
/// from the whole series' forward RVs.
///
/// # Errors
/// An invalid rule (the field named).
pub fn label(closes: &[f64], rule: &ExPostRule) -> Result<Vec<Option<Regime>>, String> {
    rule.validate()?;
    let h = rule.horizon;
    let fwd: Vec<Option<Forward>> = (0..closes.len()).map(|t| forward(closes, t, h)).collect();
    let mut rvs: Vec<f64> = fwd.iter().flatten().map(|f| f.realized_vol).collect();
    if rvs.is_empty() {
        return Ok(vec![None; closes.len()]);
    }
    rvs.sort_by(f64::total_cmp);
    let high = quantile(&rvs, rule.high_vol_quantile);
    let median = quantile(&rvs, 0.5);
    let vol_floor = high.max(median * rule.high_vol_vs_median);
    Ok(fwd
        .iter()
        .map(|f| {
            f.map(|f| {
                if f.realized_vol > 0.0 && f.realized_vol >= vol_floor {
                    Regime::HighVolatility
                } else if f.efficiency >= rule.trend_efficiency && f.ret > 0.0 {
                    Regime::TrendingUp
                } else if f.efficiency >= rule.trend_efficiency && f.ret < 0.0 {
                    Regime::TrendingDown
                } else if f.efficiency < rule.range_efficiency {
                    Regime::Ranging
                } else {
                    Regime::Transition
                }
            })
        })
        .collect())
}

fn index(r: Regime) -> usize {
    match r {
        Regime::TrendingUp => 0,
        Regime::TrendingDown => 1,
        Regime::Ranging => 2,
        Regime::Transition => 3,
        Regime::HighVolatility => 4,
    }
}

/// Counts of (ex-post label, classifier regime) pairs: rows are the ex-post
/// labels ("truth"), columns the classifier's regimes, both in [`Regime::ALL`] order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// `counts[truth][predicted]`.
    pub counts: [[u64; 5]; 5],
}

impl Confusion {
    /// Counts one pair.
    pub fn add(&mut self, truth: Regime, predicted: Regime) {
        self.counts[index(truth)][index(predicted)] += 1;
    }

    /// The pairs counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Pairs that agree (the diagonal).
    pub fn agreed(&self) -> u64 {
        (0..5).map(|i| self.counts[i][i]).sum()
    }

    #[allow(clippy::cast_precision_loss, reason = "a ratio of counts")]
    fn ratio(a: u64, b: u64) -> Option<f64> {
        (b > 0).then(|| a as f64 / b as f64)
    }

    /// Share of pairs that agree; `None` when empty.
    pub fn accuracy(&self) -> Option<f64> {
        Self::ratio(self.agreed(), self.total())
    }

    /// Pairs whose ex-post label is `r`.
    pub fn truth_count(&self, r: Regime) -> u64 {
        self.counts[index(r)].iter().sum()
    }

    /// Pairs the classifier put in `r`.
    pub fn predicted_count(&self, r: Regime) -> u64 {
        self.counts.iter().map(|row| row[index(r)]).sum()
    }

    /// Of the bars labelled `r` ex post, the share the classifier called `r`.
    pub fn recall(&self, r: Regime) -> Option<f64> {
        Self::ratio(self.counts[index(r)][index(r)], self.truth_count(r))
    }

    /// Of the bars the classifier called `r`, the share labelled `r` ex post.
    pub fn precision(&self, r: Regime) -> Option<f64> {
        Self::ratio(self.counts[index(r)][index(r)], self.predicted_count(r))
    }

    /// Agreement expected by chance from the two marginal distributions:
    /// `sum_r p_truth(r) * p_predicted(r)`.
    pub fn chance_agreement(&self) -> Option<f64> {
        let n = self.total();
        #[allow(clippy::cast_precision_loss, reason = "counts")]
        (n > 0).then(|| {
            let n = n as f64;
            Regime::ALL
                .iter()
                .map(|&r| self.truth_count(r) as f64 / n * (self.predicted_count(r) as f64 / n))
                .sum()
        })
    }

    /// Cohen's kappa: `(accuracy - chance) / (1 - chance)`.
    pub fn kappa(&self) -> Option<f64> {
        let (a, c) = (self.accuracy()?, self.chance_agreement()?);
        (c < 1.0).then(|| (a - c) / (1.0 - c))
    }

    /// Accuracy of always answering the most frequent ex-post label.
    pub fn majority_baseline(&self) -> Option<f64> {
        let best = Regime::ALL
            .iter()
            .map(|&r| self.truth_count(r))
            .max()
            .unwrap_or(0);
        Self::ratio(best, self.total())
    }
}

/// The classifier graded against the ex-post labels of one series.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    /// Bars in the series.
    pub bars: usize,
    /// The classifier's decisions (evaluations after warm-up).
    pub decisions: usize,
    /// Decisions with a full forward window (the graded ones).
    pub graded: usize,
    /// Ex-post label against the regime in force (after confirmation and dwell).
    pub in_force: Confusion,
    /// Ex-post label against the rules' raw candidate (before confirmation and dwell).
    pub candidate: Confusion,
    /// Diagnostic, not the accuracy: the regime in force at `t` against the
    /// same rule applied to the window that *ends* at `t` (bars `t-H..=t`),
    /// i.e. how well it describes the recent past rather than what follows.
    pub trailing: Confusion,
}

/// Runs the classifier over `bars` and grades each decision at bar `t` against
/// the ex-post label of bar `t` (what the next `rule.horizon` bars did).
///
/// # Errors
/// An invalid classifier config or ex-post rule.
pub fn grade(
    config: crate::RegimeConfig,
    price_precision: u8,
    bars: &[grodt_core::Bar],
    rule: &ExPostRule,
) -> Result<Grade, String> {
    #[allow(clippy::cast_precision_loss, reason = "raw prices as f64 ratios")]
    let closes: Vec<f64> = bars.iter().map(|b| b.close as f64).collect();
    let labels = label(&closes, rule)?;
    let mut c = crate::Classifier::new(config, price_precision).map_err(|e| e.to_string())?;
    let mut g = Grade {
        bars: bars.len(),
        ..Grade::default()
    };
    for (t, (bar, truth)) in bars.iter().zip(&labels).enumerate() {
        let Some(d) = c.on_bar(bar) else { continue };
        g.decisions += 1;
        if let Some(truth) = *truth {
            g.graded += 1;
            g.in_force.add(truth, d.regime);
            g.candidate.add(truth, d.candidate);
        }
        if let Some(past) = t.checked_sub(rule.horizon).and_then(|i| labels[i]) {
            g.trailing.add(past, d.regime);
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_measures_a_known_window() {
        // 100 -> 110 -> 105 -> 120: net 20, path 10 + 5 + 15 = 30.
        let f = forward(&[100.0, 110.0, 105.0, 120.0, 1.0], 0, 3).unwrap();
        assert!((f.efficiency - 20.0 / 30.0).abs() < 1e-12);
        assert!((f.ret - (1.2f64).ln()).abs() < 1e-12);
        let r = [
            (1.1f64).ln(),
            (105.0f64 / 110.0).ln(),
            (120.0f64 / 105.0).ln(),
        ];
        let rv = (r.iter().map(|x| x * x).sum::<f64>() / 3.0).sqrt();
        assert!((f.realized_vol - rv).abs() < 1e-12);
        assert!(forward(&[1.0, 2.0, 3.0], 1, 2).is_none());
        assert_eq!(forward(&[5.0; 4], 0, 3).unwrap().efficiency, 0.0);
    }

    #[test]
    fn quantile_interpolates() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((quantile(&v, 0.5) - 3.0).abs() < 1e-12);
        assert!((quantile(&v, 0.9) - 4.6).abs() < 1e-12);
        assert!((quantile(&v, 0.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_rules_are_refused_naming_the_field() {
        let bad = ExPostRule {
            horizon: 1,
            ..ExPostRule::default()
        };
        assert!(label(&[1.0; 10], &bad).unwrap_err().starts_with("horizon"));
        let bad = ExPostRule {
            range_efficiency: 0.5,
            ..ExPostRule::default()
        };
        assert!(label(&[1.0; 10], &bad).unwrap_err().contains("range"));
    }
}
