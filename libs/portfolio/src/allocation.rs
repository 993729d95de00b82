//! Capital allocation among N strategies behind one interface, in exact
//! `Decimal` (no `f64`).
//!
//! - [`Method`]: how raw weights come from the strategies' return series
//!   (fixed, recent performance, inverse volatility, equal risk
//!   contribution, fractional Kelly, drawdown switch-off).
//! - [`Bounds`] and [`apply_bounds`]: per-strategy minimum and maximum
//!   weight, water-filled so the weights sum to exactly `Decimal::ONE`,
//!   rounded to [`WEIGHT_DP`] decimal places.
//! - [`Allocator`]: the one entry point: method, bounds, state (the drawdown
//!   switch's hysteresis) and the fallbacks for short histories.
//! - Overlays [`vol_target`] and [`correlation_cut`]: cross-strategy risk
//!   applied after the allocation; they may leave part of the capital
//!   unallocated (held as cash) or, for `vol_target`, lever it.
//! - [`Schedule`]: when to rebalance (never, daily, weekly, monthly, on
//!   drift), from UTC nanosecond timestamps.
//!
//! Returns are per-period fractions (`0.01` = +1 %); `returns[i]` is strategy
//! i's series, all series aligned (same periods, same length).
//! docs/portfolio.md ("Allocation") gives every formula.

use grodt_core::Decimal;
use grodt_core::time::{day_index, month_index};
use rust_decimal::RoundingStrategy;
use serde::{Deserialize, Serialize};

use crate::stats::{self, StatsError};

/// Decimal places of every weight an allocation returns: weights are rounded
/// to this and the rounding residue is put on the largest weight with room,
/// so the sum is exactly one.
pub const WEIGHT_DP: u32 = 12;

/// Convergence tolerance of the equal-risk-contribution iteration: it stops
/// when every risk contribution is within this relative distance of the
/// common target (`|RC_i / b − 1| ≤ ERC_TOLERANCE`).
pub const ERC_TOLERANCE: Decimal = Decimal::from_parts(1, 0, 0, false, 12);

/// Most sweeps of the equal-risk-contribution iteration before
/// [`AllocationError::NoConvergence`].
pub const ERC_MAX_ITERATIONS: usize = 10_000;

/// Errors of allocation; each names the field or strategy at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// An allocation needs at least one strategy.
    #[error("n_strategies is 0: an allocation needs at least one strategy")]
    NoStrategies,
    /// A vector does not have the length the number of strategies implies.
    #[error("{field} has length {len}, expected {expected}")]
    Length {
        /// The argument at fault (`weights`, `bounds`, `returns`,
        /// `returns[i]`, `current`, `corr`, `cov`).
        field: &'static str,
        /// Its length.
        len: usize,
        /// The length expected.
        expected: usize,
    },
    /// A weight is negative.
    #[error("{field}[{index}] is negative: {value}")]
    NegativeWeight {
        /// The argument (`weights`, `base`).
        field: &'static str,
        /// The strategy.
        index: usize,
        /// The value.
        value: Decimal,
    },
    /// All weights are zero: they cannot be normalised.
    #[error("{field} are all zero: nothing to normalise")]
    AllZero {
        /// The argument (`weights`, `base`).
        field: &'static str,
    },
    /// A method or overlay parameter is out of its range.
    #[error("{field}: {reason}")]
    InvalidParameter {
        /// The parameter (`lookback`, `fraction`, `cap`, `threshold`, ...).
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// One strategy's bounds are invalid.
    #[error("bounds[{index}]: {reason}")]
    InvalidBounds {
        /// The strategy.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// No weights within the bounds sum to one.
    #[error("infeasible bounds: sum of min {sum_min} > 1 or sum of max {sum_max} < 1")]
    InfeasibleBounds {
        /// `Σ min_i`.
        sum_min: Decimal,
        /// `Σ min(max_i, 1)`.
        sum_max: Decimal,
    },
    /// The equal-risk-contribution iteration did not converge (a singular
    /// covariance such as a series and its exact negative).
    #[error(
        "{method} did not converge in {iterations} iterations (largest relative risk-contribution error {residual})"
    )]
    NoConvergence {
        /// The method.
        method: &'static str,
        /// Iterations run.
        iterations: usize,
        /// The last residual.
        residual: Decimal,
    },
    /// A value left the range of `Decimal` (absurd returns or parameters).
    #[error("decimal overflow computing {what}")]
    Overflow {
        /// The quantity being computed.
        what: &'static str,
    },
    /// A statistic of the returns failed (ragged series).
    #[error(transparent)]
    Stats(#[from] StatsError),
}

/// How raw weights are computed from the strategies' return series. Reads
/// from TOML as `method = "risk_parity"`-style tables, e.g.
/// `method = "inverse_volatility"` and `lookback = 60`.
///
/// The windowed methods use the last `min(lookback, T)` returns of each
/// series; with fewer than two returns the [`Allocator`] uses equal weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Method {
    /// Fixed weights, normalised to sum 1 if they do not; all `>= 0`, not
    /// all zero, one per strategy.
    Fixed {
        /// One weight per strategy.
        weights: Vec<Decimal>,
    },
    /// Weight ∝ `max(0, mean / std)` of the last `lookback` returns (a
    /// Sharpe-like score); equal weights if no score is positive.
    Performance {
        /// Returns in the window (at least 2).
        lookback: usize,
    },
    /// Weight ∝ `1 / σ_i` (sample std, ddof 1, of the last `lookback`
    /// returns); a zero σ counts as the smallest positive σ seen, all zero
    /// gives equal weights.
    InverseVolatility {
        /// Returns in the window (at least 2).
        lookback: usize,
    },
    /// Equal risk contribution ("risk parity"): `w_i (Σw)_i` equal for every
    /// i, Σ the sample covariance of the last `lookback` returns.
    EqualRiskContribution {
        /// Returns in the window (at least 2).
        lookback: usize,
    },
    /// Fractional Kelly per strategy, `min(cap, fraction · max(0, mean_i /
    /// var_i))`, then normalised to sum 1 (equal weights if all zero).
    Kelly {
        /// Returns in the window (at least 2).
        lookback: usize,
        /// Kelly fraction (`0.5` = half Kelly), `>= 0`.
        fraction: Decimal,
        /// Largest fraction per strategy before normalising, `>= 0`.
        cap: Decimal,
    },
    /// Base weights (equal unless `base` is given); a strategy whose
    /// drawdown from its own equity peak exceeds `threshold` gets its weight
    /// multiplied by `cut` until its drawdown is back below `recover`; then
    /// normalised.
    Drawdown {
        /// Drawdown (a fraction of the peak, `0.2` = 20 %) above which a
        /// strategy is cut; in `(0, 1]`.
        threshold: Decimal,
        /// Multiplier of a cut strategy's weight, in `[0, 1]` (0 = off).
        cut: Decimal,
        /// Drawdown below which a cut strategy is restored; in
        /// `[0, threshold)` (hysteresis).
        recover: Decimal,
        /// Base weights (normalised like [`Method::Fixed`]); `None` = equal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<Vec<Decimal>>,
    },
}

/// Smallest and largest weight of one strategy. Both `>= 0`, `min <= max`,
/// at most [`WEIGHT_DP`] decimal places (so bounded weights are exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    /// Smallest weight.
    pub min: Decimal,
    /// Largest weight (values above 1 act as 1).
    pub max: Decimal,
}

impl Bounds {
    /// No constraint: `[0, 1]`.
    pub const UNBOUNDED: Bounds = Bounds {
        min: Decimal::ZERO,
        max: Decimal::ONE,
    };

    /// Validates one strategy's bounds.
    fn check(&self, index: usize) -> Result<(), AllocationError> {
        let bad = |reason: String| AllocationError::InvalidBounds { index, reason };
        if self.min.is_sign_negative() && !self.min.is_zero() {
            return Err(bad(format!("min {} is negative", self.min)));
        }
        if self.max < self.min {
            return Err(bad(format!("max {} is below min {}", self.max, self.min)));
        }
        for (name, v) in [("min", self.min), ("max", self.max)] {
            if v.normalize().scale() > WEIGHT_DP {
                return Err(bad(format!(
                    "{name} {v} has more than {WEIGHT_DP} decimal places"
                )));
            }
        }
        Ok(())
    }
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds::UNBOUNDED
    }
}

/// Equal weights `1/n` (unrounded; [`apply_bounds`] rounds).
pub fn equal_weights(n: usize) -> Vec<Decimal> {
    if n == 0 {
        return Vec::new();
    }
    vec![Decimal::ONE / Decimal::from(n); n]
}

/// Validates non-negative weights, not all zero, and divides them by their
/// sum.
pub fn normalise(
    weights: &[Decimal],
    field: &'static str,
) -> Result<Vec<Decimal>, AllocationError> {
    let mut sum = Decimal::ZERO;
    for (index, &value) in weights.iter().enumerate() {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(AllocationError::NegativeWeight {
                field,
                index,
                value,
            });
        }
        sum = sum
            .checked_add(value)
            .ok_or(AllocationError::Overflow { what: field })?;
    }
    if sum.is_zero() {
        return Err(AllocationError::AllZero { field });
    }
    Ok(weights.iter().map(|w| w / sum).collect())
}

/// Checks the bounds against the number of strategies and their
/// feasibility; returns them expanded to one per strategy. `bounds` may
/// hold zero (unbounded), one (the same for all) or `n` entries.
pub fn expand_bounds(bounds: &[Bounds], n: usize) -> Result<Vec<Bounds>, AllocationError> {
    let all = match bounds.len() {
        0 => vec![Bounds::UNBOUNDED; n],
        1 => vec![bounds[0]; n],
        len if len == n => bounds.to_vec(),
        len => {
            return Err(AllocationError::Length {
                field: "bounds",
                len,
                expected: n,
            });
        }
    };
    for (i, b) in all.iter().enumerate() {
        b.check(i)?;
    }
    let sum_min: Decimal = all.iter().map(|b| b.min).sum();
    let sum_max: Decimal = all.iter().map(|b| b.max.min(Decimal::ONE)).sum();
    if sum_min > Decimal::ONE || sum_max < Decimal::ONE {
        return Err(AllocationError::InfeasibleBounds { sum_min, sum_max });
    }
    Ok(all)
}

/// `clamp(λ r_i, lo_i, hi_i)`, saturating at `hi_i` when `λ r_i` overflows.
fn clamped(lambda: Decimal, r: Decimal, lo: Decimal, hi: Decimal) -> Decimal {
    lambda.checked_mul(r).unwrap_or(hi).clamp(lo, hi)
}

/// The values `clamp(λ r_i, lo_i, hi_i)` whose sum is `target`, for `r_i >=
/// 0`; the caller guarantees `Σ lo ≤ target ≤ Σ_{r>0} hi + Σ_{r=0} lo`.
///
/// The sum is continuous, piecewise linear and non-decreasing in λ with
/// breakpoints `lo_i/r_i`, `hi_i/r_i`: find the first breakpoint where it
/// reaches `target`, then solve the linear piece before it. This is the fixed
/// point of water-filling (clip, redistribute proportionally, repeat) found
/// directly, so it cannot cycle.
fn clamp_fill(r: &[Decimal], lo: &[Decimal], hi: &[Decimal], target: Decimal) -> Vec<Decimal> {
    let sum_at = |lambda: Decimal| -> Decimal {
        (0..r.len())
            .map(|i| clamped(lambda, r[i], lo[i], hi[i]))
            .sum()
    };
    let at = |lambda: Decimal| -> Vec<Decimal> {
        (0..r.len())
            .map(|i| clamped(lambda, r[i], lo[i], hi[i]))
            .collect()
    };
    let mut breaks: Vec<Decimal> = Vec::with_capacity(2 * r.len());
    for i in 0..r.len() {
        if r[i] > Decimal::ZERO {
            // An overflowing breakpoint lies beyond any λ the sum needs.
            breaks.extend(lo[i].checked_div(r[i]));
            breaks.extend(hi[i].checked_div(r[i]));
        }
    }
    breaks.sort();
    breaks.dedup();
    let mut prev = Decimal::ZERO;
    if sum_at(prev) >= target {
        return at(prev);
    }
    for &b in &breaks {
        let s = sum_at(b);
        if s == target {
            return at(b);
        }
        if s > target {
            // Linear on (prev, b): the active set is the one at its midpoint.
            let mid = prev / Decimal::TWO + b / Decimal::TWO;
            let mut fixed = Decimal::ZERO;
            let mut slope = Decimal::ZERO;
            for i in 0..r.len() {
                let v = mid.checked_mul(r[i]).unwrap_or(hi[i]);
                if r[i] > Decimal::ZERO && lo[i] < v && v < hi[i] {
                    slope += r[i];
                } else {
                    fixed += v.clamp(lo[i], hi[i]);
                }
            }
            let lambda = if slope.is_zero() {
                b
            } else {
                (target - fixed).checked_div(slope).unwrap_or(b)
            };
            return at(lambda.clamp(prev, b));
        }
        prev = b;
    }
    at(prev)
}

/// Applies per-strategy bounds to raw weights and makes them sum to exactly
/// `Decimal::ONE`.
///
/// Raw weights (non-negative, not all zero) are normalised, then each
/// becomes `clamp(λ raw_i, min_i, max_i)` with the one λ that makes the sum
/// 1: weights pushed past a bound are clipped and the excess or deficit is
/// spread over the unclipped ones in proportion to their raw weights
/// (water-filling). If even every positive raw weight at its max does not
/// reach 1, the strategies with raw weight 0 share the rest at one common
/// level `clamp(μ, min_i, max_i)`. Finally weights are rounded to
/// [`WEIGHT_DP`] places (half to even) and the residue is put on the largest
/// weight with room inside its bounds (several if needed), so `Σ w = 1`
/// exactly and `min_i ≤ w_i ≤ max_i`.
///
/// `bounds` may hold zero, one (for all) or `raw.len()` entries. Errors:
/// invalid or infeasible bounds (`Σ min > 1` or `Σ min(max, 1) < 1`),
/// negative or all-zero raw weights, wrong lengths.
pub fn apply_bounds(raw: &[Decimal], bounds: &[Bounds]) -> Result<Vec<Decimal>, AllocationError> {
    let n = raw.len();
    if n == 0 {
        return Err(AllocationError::NoStrategies);
    }
    let bounds = expand_bounds(bounds, n)?;
    let raw = normalise(raw, "weights")?;
    let lo: Vec<Decimal> = bounds.iter().map(|b| b.min).collect();
    let hi: Vec<Decimal> = bounds.iter().map(|b| b.max.min(Decimal::ONE)).collect();
    let positive: Vec<bool> = raw.iter().map(|w| *w > Decimal::ZERO).collect();
    let reach: Decimal = (0..n)
        .map(|i| if positive[i] { hi[i] } else { lo[i] })
        .sum();
    let w = if reach >= Decimal::ONE {
        clamp_fill(&raw, &lo, &hi, Decimal::ONE)
    } else {
        // Positive ones all at max; the zero-raw ones share the rest evenly.
        let ones: Vec<Decimal> = positive
            .iter()
            .map(|p| if *p { Decimal::ZERO } else { Decimal::ONE })
            .collect();
        let lo_z: Vec<Decimal> = (0..n)
            .map(|i| if positive[i] { hi[i] } else { lo[i] })
            .collect();
        clamp_fill(&ones, &lo_z, &hi, Decimal::ONE)
    };
    finish(w, &lo, &hi)
}

/// Rounds to [`WEIGHT_DP`], keeps each weight in `[lo, hi]` and puts the
/// residue `1 − Σw` on the largest weights with room.
fn finish(
    w: Vec<Decimal>,
    lo: &[Decimal],
    hi: &[Decimal],
) -> Result<Vec<Decimal>, AllocationError> {
    let mut w: Vec<Decimal> = w
        .into_iter()
        .enumerate()
        .map(|(i, x)| x.round_dp(WEIGHT_DP).clamp(lo[i], hi[i]))
        .collect();
    let mut residue = Decimal::ONE - w.iter().copied().sum::<Decimal>();
    let mut order: Vec<usize> = (0..w.len()).collect();
    // Largest first; ties to the lower index, so the result is deterministic.
    order.sort_by(|&a, &b| w[b].cmp(&w[a]).then(a.cmp(&b)));
    for i in order {
        if residue.is_zero() {
            break;
        }
        let room = if residue > Decimal::ZERO {
            hi[i] - w[i]
        } else {
            lo[i] - w[i]
        };
        let step = if residue > Decimal::ZERO {
            residue.min(room)
        } else {
            residue.max(room)
        };
        w[i] += step;
        residue -= step;
    }
    if !residue.is_zero() {
        return Err(AllocationError::InfeasibleBounds {
            sum_min: lo.iter().copied().sum(),
            sum_max: hi.iter().copied().sum(),
        });
    }
    Ok(w)
}

/// The last `min(lookback, T)` returns of each series.
fn windows(returns: &[Vec<Decimal>], lookback: usize) -> Vec<Vec<Decimal>> {
    returns
        .iter()
        .map(|r| r[r.len().saturating_sub(lookback)..].to_vec())
        .collect()
}

/// Raw weights of [`Method::Performance`] from windows of at least two
/// returns each: weight ∝ `max(0, mean_i / std_i)`.
///
/// A zero std with a positive mean is an unbounded score: the strategies
/// with such a score share the weight equally and the others get 0. If no
/// score is positive, equal weights. The result is normalised (sum 1 up to
/// `Decimal` rounding).
pub fn performance_weights(windows: &[Vec<Decimal>]) -> Result<Vec<Decimal>, AllocationError> {
    let n = windows.len();
    let mut scores = Vec::with_capacity(n);
    let mut unbounded = vec![false; n];
    for (i, r) in windows.iter().enumerate() {
        let (m, s) = mean_std(r, "performance score")?;
        let score = if m <= Decimal::ZERO {
            Decimal::ZERO
        } else if s.is_zero() {
            unbounded[i] = true;
            Decimal::ZERO
        } else {
            m.checked_div(s).ok_or(AllocationError::Overflow {
                what: "performance score",
            })?
        };
        scores.push(score);
    }
    if unbounded.iter().any(|u| *u) {
        let ones: Vec<Decimal> = unbounded
            .iter()
            .map(|u| if *u { Decimal::ONE } else { Decimal::ZERO })
            .collect();
        return normalise(&ones, "performance scores");
    }
    if scores.iter().all(|s| s.is_zero()) {
        return Ok(equal_weights(n));
    }
    normalise(&scores, "performance scores")
}

/// Mean and sample std of a window of at least two returns.
fn mean_std(r: &[Decimal], what: &'static str) -> Result<(Decimal, Decimal), AllocationError> {
    if r.len() < 2 {
        return Err(StatsError::TooShort { len: r.len() }.into());
    }
    let m = stats::mean(r).ok_or(AllocationError::Overflow { what })?;
    let s = stats::std_dev(r).ok_or(AllocationError::Overflow { what })?;
    Ok((m, s))
}

/// Raw weights of [`Method::InverseVolatility`] from windows of at least two
/// returns each: weight ∝ `1 / σ_i`.
///
/// A zero σ (a constant series) counts as the smallest positive σ among the
/// strategies (it is treated as the least risky, not as infinitely
/// attractive); if every σ is zero, equal weights.
pub fn inverse_volatility_weights(
    windows: &[Vec<Decimal>],
) -> Result<Vec<Decimal>, AllocationError> {
    let mut sigmas = Vec::with_capacity(windows.len());
    for r in windows {
        sigmas.push(mean_std(r, "volatility")?.1);
    }
    let Some(smallest) = sigmas.iter().copied().filter(|s| *s > Decimal::ZERO).min() else {
        return Ok(equal_weights(windows.len()));
    };
    let inv: Option<Vec<Decimal>> = sigmas
        .iter()
        .map(|s| Decimal::ONE.checked_div(if s.is_zero() { smallest } else { *s }))
        .collect();
    normalise(
        &inv.ok_or(AllocationError::Overflow {
            what: "inverse volatility",
        })?,
        "inverse volatilities",
    )
}

/// Equal-risk-contribution weights of a covariance matrix: `w_i (Σw)_i`
/// equal for every i, `Σ w = 1`.
///
/// Cyclical coordinate descent on `½ xᵀΣx − Σ b ln x_i` with `b = 1/n`
/// (its minimiser has `x_i (Σx)_i = b` for every i): for each i in turn,
/// `x_i ← (−c_i + √(c_i² + 4 Σ_ii b)) / (2 Σ_ii)` with `c_i = Σ_{j≠i} Σ_ij
/// x_j`, from `x_i = 1/√Σ_ii`; it stops when every `x_i (Σx)_i / b` is within
/// [`ERC_TOLERANCE`] of 1 and returns `x / Σx`. A zero variance is replaced
/// by the smallest positive one on the diagonal (as in
/// [`inverse_volatility_weights`]); all zero gives equal weights. Errors
/// with [`AllocationError::NoConvergence`] after [`ERC_MAX_ITERATIONS`]
/// sweeps (a singular matrix such as a series and its negative has no
/// solution) and on overflow. With a diagonal matrix this equals inverse
/// volatility.
pub fn equal_risk_contribution_weights(
    cov: &[Vec<Decimal>],
) -> Result<Vec<Decimal>, AllocationError> {
    let n = cov.len();
    if n == 0 {
        return Err(AllocationError::NoStrategies);
    }
    for row in cov {
        if row.len() != n {
            return Err(AllocationError::Length {
                field: "cov",
                len: row.len(),
                expected: n,
            });
        }
    }
    let Some(smallest) = (0..n)
        .map(|i| cov[i][i])
        .filter(|v| *v > Decimal::ZERO)
        .min()
    else {
        return Ok(equal_weights(n));
    };
    let mut cov = cov.to_vec();
    for (i, row) in cov.iter_mut().enumerate() {
        if row[i] <= Decimal::ZERO {
            row[i] = smallest;
        }
    }
    let overflow = || AllocationError::Overflow {
        what: "equal risk contribution",
    };
    let b = Decimal::ONE / Decimal::from(n);
    let four_b = b * Decimal::from(4);
    let mut x: Vec<Decimal> = Vec::with_capacity(n);
    for (i, row) in cov.iter().enumerate() {
        let s = stats::sqrt(row[i]).ok_or_else(overflow)?;
        x.push(Decimal::ONE.checked_div(s).ok_or_else(overflow)?);
    }
    let mut residual = Decimal::ZERO;
    let mut iterations = 0;
    while iterations < ERC_MAX_ITERATIONS {
        iterations += 1;
        for i in 0..n {
            let mut c = Decimal::ZERO;
            for (j, xj) in x.iter().enumerate() {
                if j != i {
                    c = cov[i][j]
                        .checked_mul(*xj)
                        .and_then(|p| c.checked_add(p))
                        .ok_or_else(overflow)?;
                }
            }
            let d = c
                .checked_mul(c)
                .and_then(|cc| {
                    four_b
                        .checked_mul(cov[i][i])
                        .and_then(|v| cc.checked_add(v))
                })
                .and_then(stats::sqrt)
                .ok_or_else(overflow)?;
            x[i] = (d - c)
                .checked_div(Decimal::TWO * cov[i][i])
                .ok_or_else(overflow)?;
        }
        residual = Decimal::ZERO;
        for i in 0..n {
            let mut s = Decimal::ZERO;
            for (j, xj) in x.iter().enumerate() {
                s = cov[i][j]
                    .checked_mul(*xj)
                    .and_then(|p| s.checked_add(p))
                    .ok_or_else(overflow)?;
            }
            let rc = x[i].checked_mul(s).ok_or_else(overflow)?;
            let e = (rc.checked_div(b).ok_or_else(overflow)? - Decimal::ONE).abs();
            residual = residual.max(e);
        }
        if residual <= ERC_TOLERANCE {
            // A non-positive x is no risk-parity solution (rounding on a
            // degenerate matrix); report it as not converged.
            if x.iter().any(|v| *v <= Decimal::ZERO) {
                break;
            }
            return normalise(&x, "risk parity weights");
        }
    }
    Err(AllocationError::NoConvergence {
        method: "equal_risk_contribution",
        iterations,
        residual,
    })
}

/// Per-strategy fractional Kelly fractions before normalising:
/// `f_i = min(cap, fraction · max(0, mean_i / var_i))` over windows of at
/// least two returns. A zero variance with a positive mean is an unbounded
/// Kelly fraction and gets `cap`; with a non-positive mean, 0.
pub fn kelly_fractions(
    windows: &[Vec<Decimal>],
    fraction: Decimal,
    cap: Decimal,
) -> Result<Vec<Decimal>, AllocationError> {
    let mut out = Vec::with_capacity(windows.len());
    for r in windows {
        if r.len() < 2 {
            return Err(StatsError::TooShort { len: r.len() }.into());
        }
        let overflow = AllocationError::Overflow { what: "kelly" };
        let m = stats::mean(r).ok_or(overflow.clone())?;
        let v = stats::variance(r).ok_or(overflow)?;
        let f = if m <= Decimal::ZERO {
            Decimal::ZERO
        } else if v.is_zero() {
            cap
        } else {
            // An overflowing fraction is beyond any cap.
            m.checked_div(v)
                .and_then(|k| k.checked_mul(fraction))
                .map_or(cap, |k| k.min(cap))
        };
        out.push(f);
    }
    Ok(out)
}

/// Raw weights of [`Method::Kelly`]: [`kelly_fractions`] normalised to sum
/// 1, equal weights if all are zero.
///
/// Normalising is what turns Kelly fractions into an allocation of the
/// capital given to the portfolio: the overall Kelly leverage is dropped
/// (use [`vol_target`] for the level of exposure), so `fraction` only
/// matters relative to `cap` (where the cap binds).
pub fn kelly_weights(
    windows: &[Vec<Decimal>],
    fraction: Decimal,
    cap: Decimal,
) -> Result<Vec<Decimal>, AllocationError> {
    let f = kelly_fractions(windows, fraction, cap)?;
    if f.iter().all(|x| x.is_zero()) {
        return Ok(equal_weights(windows.len()));
    }
    normalise(&f, "kelly fractions")
}

/// The drawdown switch's state: each strategy's equity relative to its own
/// peak (compounded returns, `Π (1 + r)`) and whether it is cut.
///
/// It consumes each return once ([`DrawdownState::update`]), so cutting and
/// restoring follow the whole path between two allocations, not only the
/// values at allocation times.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DrawdownState {
    /// Returns consumed per series.
    seen: usize,
    /// Equity / running peak per strategy, in `[0, 1]`.
    relative: Vec<Decimal>,
    /// Whether each strategy is cut.
    cut: Vec<bool>,
}

impl DrawdownState {
    /// A fresh state for `n` strategies: at their peaks, none cut.
    pub fn new(n: usize) -> Self {
        DrawdownState {
            seen: 0,
            relative: vec![Decimal::ONE; n],
            cut: vec![false; n],
        }
    }

    /// Consumes the returns not seen yet (series aligned, as passed to
    /// [`Allocator::target`]). Per period: `rel ← min(1, rel · max(0, 1 +
    /// r))`, drawdown `= 1 − rel`; a strategy is cut when its drawdown
    /// exceeds `threshold` and restored when it falls below `recover`. If
    /// the series are shorter than what was seen (a restarted history) or
    /// their number changed, the state starts over.
    pub fn update(&mut self, returns: &[Vec<Decimal>], threshold: Decimal, recover: Decimal) {
        let t = returns.first().map_or(0, Vec::len);
        if t < self.seen || returns.len() != self.relative.len() {
            *self = DrawdownState::new(returns.len());
        }
        for (i, r) in returns.iter().enumerate() {
            for &x in &r[self.seen.min(r.len())..] {
                let growth = (Decimal::ONE + x).max(Decimal::ZERO);
                let rel = self.relative[i]
                    .checked_mul(growth)
                    .unwrap_or(Decimal::ONE)
                    .min(Decimal::ONE);
                self.relative[i] = rel;
                let dd = Decimal::ONE - rel;
                if dd > threshold {
                    self.cut[i] = true;
                } else if dd < recover {
                    self.cut[i] = false;
                }
            }
        }
        self.seen = t;
    }

    /// Current drawdown of each strategy from its own peak (`0.2` = 20 %
    /// below the peak).
    pub fn drawdowns(&self) -> Vec<Decimal> {
        self.relative.iter().map(|r| Decimal::ONE - r).collect()
    }

    /// Whether each strategy is currently cut.
    pub fn is_cut(&self) -> &[bool] {
        &self.cut
    }

    /// Returns consumed per series.
    pub fn seen(&self) -> usize {
        self.seen
    }
}

/// Raw weights of [`Method::Drawdown`]: `base_i · (cut if cut_i else 1)`,
/// normalised. If every strategy is cut to zero the base weights are
/// returned (an allocation sums to one; holding cash is the overlays' job).
pub fn drawdown_weights(
    base: &[Decimal],
    state: &DrawdownState,
    cut: Decimal,
) -> Result<Vec<Decimal>, AllocationError> {
    let w: Vec<Decimal> = base
        .iter()
        .zip(state.is_cut())
        .map(|(b, c)| if *c { *b * cut } else { *b })
        .collect();
    if w.iter().all(|x| x.is_zero()) {
        return normalise(base, "base");
    }
    normalise(&w, "weights")
}

/// The one allocation entry point: a [`Method`], per-strategy [`Bounds`],
/// the number of strategies and the state of the drawdown switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocator {
    method: Method,
    bounds: Vec<Bounds>,
    n: usize,
    base: Vec<Decimal>,
    drawdown: DrawdownState,
}

/// Checks `lookback >= 2`.
fn check_lookback(lookback: usize) -> Result<(), AllocationError> {
    if lookback < 2 {
        return Err(AllocationError::InvalidParameter {
            field: "lookback",
            reason: format!("{lookback} is below 2 (a sample std needs two returns)"),
        });
    }
    Ok(())
}

/// An `InvalidParameter` error.
fn invalid(field: &'static str, reason: String) -> AllocationError {
    AllocationError::InvalidParameter { field, reason }
}

impl Allocator {
    /// Builds an allocator for `n_strategies` strategies. `bounds` holds
    /// zero (unbounded `[0, 1]`), one (the same for every strategy) or
    /// `n_strategies` entries.
    ///
    /// Validates everything up front: `n_strategies >= 1`; fixed and base
    /// weights one per strategy, `>= 0`, not all zero; `lookback >= 2`;
    /// Kelly `fraction >= 0`, `cap >= 0`; drawdown `0 < threshold <= 1`,
    /// `0 <= recover < threshold`, `0 <= cut <= 1`; bounds valid and
    /// feasible.
    pub fn new(
        method: Method,
        bounds: Vec<Bounds>,
        n_strategies: usize,
    ) -> Result<Self, AllocationError> {
        let n = n_strategies;
        if n == 0 {
            return Err(AllocationError::NoStrategies);
        }
        let bounds = expand_bounds(&bounds, n)?;
        let check_weights = |w: &[Decimal], field: &'static str| {
            if w.len() != n {
                return Err(AllocationError::Length {
                    field,
                    len: w.len(),
                    expected: n,
                });
            }
            normalise(w, field)
        };
        let mut base = equal_weights(n);
        match &method {
            Method::Fixed { weights } => base = check_weights(weights, "weights")?,
            Method::Performance { lookback }
            | Method::InverseVolatility { lookback }
            | Method::EqualRiskContribution { lookback } => check_lookback(*lookback)?,
            Method::Kelly {
                lookback,
                fraction,
                cap,
            } => {
                check_lookback(*lookback)?;
                if *fraction < Decimal::ZERO {
                    return Err(invalid("fraction", format!("{fraction} is negative")));
                }
                if *cap < Decimal::ZERO {
                    return Err(invalid("cap", format!("{cap} is negative")));
                }
            }
            Method::Drawdown {
                threshold,
                cut,
                recover,
                base: given,
            } => {
                if *threshold <= Decimal::ZERO || *threshold > Decimal::ONE {
                    return Err(invalid(
                        "threshold",
                        format!("{threshold} is not in (0, 1]"),
                    ));
                }
                if *recover < Decimal::ZERO || *recover >= *threshold {
                    return Err(invalid(
                        "recover",
                        format!("{recover} is not in [0, threshold {threshold})"),
                    ));
                }
                if *cut < Decimal::ZERO || *cut > Decimal::ONE {
                    return Err(invalid("cut", format!("{cut} is not in [0, 1]")));
                }
                if let Some(given) = given {
                    base = check_weights(given, "base")?;
                }
            }
        }
        Ok(Allocator {
            method,
            bounds,
            n,
            base,
            drawdown: DrawdownState::new(n),
        })
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The bounds, one per strategy.
    pub fn bounds(&self) -> &[Bounds] {
        &self.bounds
    }

    /// The number of strategies.
    pub fn n_strategies(&self) -> usize {
        self.n
    }

    /// The base weights (normalised): the fixed weights, the drawdown
    /// method's base, or equal weights. Used with fewer than two returns.
    pub fn base_weights(&self) -> &[Decimal] {
        &self.base
    }

    /// The drawdown switch's state (fresh unless the method is
    /// [`Method::Drawdown`]).
    pub fn drawdown_state(&self) -> &DrawdownState {
        &self.drawdown
    }

    /// Target weights from each strategy's return series so far:
    /// `returns[i]` is strategy i's per-period returns, all the same length.
    ///
    /// The method's raw weights, then [`apply_bounds`]: every weight within
    /// its bounds, [`WEIGHT_DP`] places, sum exactly `Decimal::ONE`. Windowed
    /// methods use the last `min(lookback, T)` returns; with `T < 2` they
    /// return the base (equal) weights within the bounds. Equal risk
    /// contribution with `T <= n` returns in the window (a necessarily
    /// singular covariance) uses only the variances, which is inverse
    /// volatility. The drawdown method consumes the new returns on every
    /// call, so call it with the full history each time.
    pub fn target(&mut self, returns: &[Vec<Decimal>]) -> Result<Vec<Decimal>, AllocationError> {
        if returns.len() != self.n {
            return Err(AllocationError::Length {
                field: "returns",
                len: returns.len(),
                expected: self.n,
            });
        }
        let t = returns.first().map_or(0, Vec::len);
        for r in returns {
            if r.len() != t {
                return Err(AllocationError::Length {
                    field: "returns[i]",
                    len: r.len(),
                    expected: t,
                });
            }
        }
        let raw = match &self.method {
            Method::Fixed { .. } => self.base.clone(),
            Method::Drawdown {
                threshold,
                cut,
                recover,
                ..
            } => {
                self.drawdown.update(returns, *threshold, *recover);
                drawdown_weights(&self.base, &self.drawdown, *cut)?
            }
            _ if t < 2 => self.base.clone(),
            Method::Performance { lookback } => performance_weights(&windows(returns, *lookback))?,
            Method::InverseVolatility { lookback } => {
                inverse_volatility_weights(&windows(returns, *lookback))?
            }
            Method::EqualRiskContribution { lookback } => {
                let w = windows(returns, *lookback);
                if w.first().map_or(0, Vec::len) <= self.n {
                    inverse_volatility_weights(&w)?
                } else {
                    equal_risk_contribution_weights(&stats::covariance(&w)?)?
                }
            }
            Method::Kelly {
                lookback,
                fraction,
                cap,
            } => kelly_weights(&windows(returns, *lookback), *fraction, *cap)?,
        };
        apply_bounds(&raw, &self.bounds)
    }
}

/// Checks non-negative weights and an `n × n` matrix.
fn check_overlay(
    weights: &[Decimal],
    matrix: &[Vec<Decimal>],
    field: &'static str,
) -> Result<(), AllocationError> {
    let n = weights.len();
    for (index, &value) in weights.iter().enumerate() {
        if value < Decimal::ZERO {
            return Err(AllocationError::NegativeWeight {
                field: "weights",
                index,
                value,
            });
        }
    }
    if matrix.len() != n {
        return Err(AllocationError::Length {
            field,
            len: matrix.len(),
            expected: n,
        });
    }
    for row in matrix {
        if row.len() != n {
            return Err(AllocationError::Length {
                field,
                len: row.len(),
                expected: n,
            });
        }
    }
    Ok(())
}

/// Volatility targeting overlay: every weight times `k = min(max_leverage,
/// target_vol / σ_p)`, `σ_p = √(wᵀΣw)`.
///
/// `cov` and `target_vol` are in the same per-period units as the returns
/// the covariance came from (a daily covariance needs a daily target, e.g.
/// annual 10 % / √252). `k < 1` leaves `1 − k Σw` as cash, `k > 1` levers.
/// With `σ_p = 0` (no risk), `k = max_leverage`. Outputs are rounded toward
/// zero to [`WEIGHT_DP`] places, so rounding never adds exposure: each
/// output is `>= 0` and their sum `<= max_leverage · Σ w`. Errors: negative
/// weights, `target_vol < 0`, `max_leverage < 0`, dimension mismatch,
/// overflow.
pub fn vol_target(
    weights: &[Decimal],
    cov: &[Vec<Decimal>],
    target_vol: Decimal,
    max_leverage: Decimal,
) -> Result<Vec<Decimal>, AllocationError> {
    check_overlay(weights, cov, "cov")?;
    if target_vol < Decimal::ZERO {
        return Err(invalid("target_vol", format!("{target_vol} is negative")));
    }
    if max_leverage < Decimal::ZERO {
        return Err(invalid(
            "max_leverage",
            format!("{max_leverage} is negative"),
        ));
    }
    let var = stats::portfolio_variance(weights, cov)?;
    let sigma = stats::sqrt(var.max(Decimal::ZERO)).ok_or(AllocationError::Overflow {
        what: "portfolio volatility",
    })?;
    let k = if sigma.is_zero() {
        max_leverage
    } else {
        // An overflowing ratio is above any leverage cap.
        target_vol
            .checked_div(sigma)
            .map_or(max_leverage, |k| k.min(max_leverage))
    };
    weights
        .iter()
        .map(|w| {
            w.checked_mul(k)
                .map(|x| x.round_dp_with_strategy(WEIGHT_DP, RoundingStrategy::ToZero))
                .ok_or(AllocationError::Overflow { what: "vol target" })
        })
        .collect()
}

/// Correlation overlay: strategies highly correlated with the others are
/// scaled down. For each i, `a_i = mean_{j≠i} max(0, ρ_ij − threshold)` and
/// `w_i ← w_i · max(0, 1 − strength · a_i / (1 − threshold))`.
///
/// `a_i / (1 − threshold)` is in `[0, 1]` (1 when i is perfectly correlated
/// with every other), so `strength = 1` removes a strategy perfectly
/// correlated with all the others and `strength = 0` changes nothing. The
/// freed weight is held as cash (not redistributed). With one strategy
/// nothing changes. Outputs are rounded toward zero to [`WEIGHT_DP`] places:
/// each is `>= 0` and `<=` its input. Errors: negative weights, `threshold`
/// not in `[−1, 1)`, `strength < 0`, dimension mismatch.
pub fn correlation_cut(
    weights: &[Decimal],
    corr: &[Vec<Decimal>],
    threshold: Decimal,
    strength: Decimal,
) -> Result<Vec<Decimal>, AllocationError> {
    check_overlay(weights, corr, "corr")?;
    if threshold < Decimal::NEGATIVE_ONE || threshold >= Decimal::ONE {
        return Err(invalid(
            "threshold",
            format!("{threshold} is not in [-1, 1)"),
        ));
    }
    if strength < Decimal::ZERO {
        return Err(invalid("strength", format!("{strength} is negative")));
    }
    let n = weights.len();
    if n < 2 {
        return Ok(weights.to_vec());
    }
    let overflow = || AllocationError::Overflow {
        what: "correlation cut",
    };
    let span = Decimal::ONE - threshold;
    let others = Decimal::from(n - 1);
    let mut out = Vec::with_capacity(n);
    for (i, w) in weights.iter().enumerate() {
        let excess: Decimal = (0..n)
            .filter(|j| *j != i)
            .map(|j| (corr[i][j] - threshold).max(Decimal::ZERO))
            .sum();
        let a = excess / others;
        let factor = strength
            .checked_mul(a)
            .and_then(|x| x.checked_div(span))
            .map(|x| (Decimal::ONE - x).max(Decimal::ZERO))
            .ok_or_else(overflow)?;
        let v = w.checked_mul(factor).ok_or_else(overflow)?;
        out.push(
            v.round_dp_with_strategy(WEIGHT_DP, RoundingStrategy::ToZero)
                .min(*w),
        );
    }
    Ok(out)
}

/// When to rebalance to the target weights. TOML: `schedule = "daily"` or
/// `schedule = { drift = { threshold = "0.05" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Only the first allocation.
    Never,
    /// On the first timestamp of each new UTC day.
    Daily,
    /// On the first timestamp of each new week (weeks start Monday 00:00
    /// UTC, as ISO weeks).
    Weekly,
    /// On the first timestamp of each new calendar month (UTC).
    Monthly,
    /// When any weight has drifted from its target by more than `threshold`.
    Drift {
        /// Largest tolerated `|current_i − target_i|` (absolute, `0.05` = 5
        /// points of weight).
        threshold: Decimal,
    },
}

/// Week index of a UTC nanosecond timestamp, weeks starting Monday: day 0
/// (1970-01-01) was a Thursday, so Monday 1969-12-29 starts week 0.
fn week_index(ts: i64) -> i64 {
    (day_index(ts) + 3).div_euclid(7)
}

impl Schedule {
    /// Whether a rebalance is due at `now_ts`, the last one having been at
    /// `last_ts` (`None`: never allocated, always due, even for `Never`).
    /// Timestamps are ns since the Unix epoch, UTC.
    ///
    /// Daily, weekly, monthly: due when `now_ts` is in a later UTC day, week
    /// (Monday start) or calendar month than `last_ts` (a clock going
    /// backwards is never due). Drift: due when any
    /// `|current_i − target_i| > threshold`, or when the lengths differ (the strategy set changed);
    /// timestamps are ignored.
    pub fn due(
        &self,
        last_ts: Option<i64>,
        now_ts: i64,
        current: &[Decimal],
        target: &[Decimal],
    ) -> bool {
        let Some(last) = last_ts else {
            return true;
        };
        match self {
            Schedule::Never => false,
            Schedule::Daily => day_index(now_ts) > day_index(last),
            Schedule::Weekly => week_index(now_ts) > week_index(last),
            Schedule::Monthly => month_index(now_ts) > month_index(last),
            Schedule::Drift { threshold } => {
                current.len() != target.len()
                    || current
                        .iter()
                        .zip(target)
                        .any(|(c, t)| (*c - *t).abs() > *threshold)
            }
        }
    }
}

#[cfg(test)]
mod tests;
