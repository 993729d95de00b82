//! Statistics of strategy return series in exact `Decimal`: mean, sample
//! variance and standard deviation (ddof 1), the covariance and correlation
//! matrices, portfolio variance and the diversification ratio.
//!
//! A return series is one strategy's per-period returns as fractions
//! (`0.01` = +1 %); several series are aligned (the same periods, the same
//! length). Square roots use [`sqrt`], a Newton iteration in `Decimal` that
//! always terminates (no panic on any input).

use grodt_core::Decimal;

/// Errors of the statistics functions; each names what is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// The return series do not all have the same length.
    #[error("return series {series} has {len} returns, series 0 has {expected}")]
    Ragged {
        /// Index of the series at fault.
        series: usize,
        /// Its length.
        len: usize,
        /// The length of series 0.
        expected: usize,
    },
    /// Fewer than two observations: a sample (ddof 1) statistic is undefined.
    #[error("{len} returns per series: a sample statistic needs at least 2")]
    TooShort {
        /// Observations available.
        len: usize,
    },
    /// A vector or matrix does not have the dimension the others imply.
    #[error("{field} has length {len}, expected {expected}")]
    Dimension {
        /// The argument at fault (`weights`, `cov`, `cov row`).
        field: &'static str,
        /// Its length.
        len: usize,
        /// The length expected.
        expected: usize,
    },
    /// A value left the range of `Decimal` (absurdly large returns).
    #[error("decimal overflow computing {what}")]
    Overflow {
        /// The quantity being computed.
        what: &'static str,
    },
}

/// Most Newton steps [`sqrt`] takes; from the start used (`max(x, 1)`) every
/// `Decimal` converges in far fewer (about 100 for the largest).
const SQRT_MAX_STEPS: usize = 400;

/// Square root of a non-negative `Decimal` (`None` for a negative one).
///
/// Newton's iteration `y ← (y + x/y)/2` from `y = max(x, 1)`, which is at or
/// above `√x`, so the iterates decrease; it stops at the first step that does
/// not decrease (rounding has been reached). Unlike
/// `MathematicalOps::sqrt` it cannot oscillate between two neighbours.
pub fn sqrt(x: Decimal) -> Option<Decimal> {
    if x.is_sign_negative() && !x.is_zero() {
        return None;
    }
    if x.is_zero() {
        return Some(Decimal::ZERO);
    }
    let mut y = if x > Decimal::ONE { x } else { Decimal::ONE };
    for _ in 0..SQRT_MAX_STEPS {
        // Halves first: `y + x/y` overflows near `Decimal::MAX`.
        let next = (y / Decimal::TWO).checked_add(x.checked_div(y)? / Decimal::TWO)?;
        if next >= y {
            return Some(y);
        }
        y = next;
    }
    Some(y)
}

/// Arithmetic mean; `None` for an empty series or on overflow.
pub fn mean(xs: &[Decimal]) -> Option<Decimal> {
    if xs.is_empty() {
        return None;
    }
    let mut sum = Decimal::ZERO;
    for &x in xs {
        sum = sum.checked_add(x)?;
    }
    sum.checked_div(Decimal::from(xs.len()))
}

/// Sample variance, `Σ (x − mean)² / (n − 1)`; `None` with fewer than two
/// values or on overflow.
pub fn variance(xs: &[Decimal]) -> Option<Decimal> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    let mut ss = Decimal::ZERO;
    for &x in xs {
        let d = x.checked_sub(m)?;
        ss = ss.checked_add(d.checked_mul(d)?)?;
    }
    ss.checked_div(Decimal::from(xs.len() - 1))
}

/// Sample standard deviation (ddof 1), `√variance`; `None` with fewer than
/// two values or on overflow.
pub fn std_dev(xs: &[Decimal]) -> Option<Decimal> {
    sqrt(variance(xs)?)
}

/// Checks that the series are aligned and returns their common length.
fn common_len(returns: &[Vec<Decimal>]) -> Result<usize, StatsError> {
    let expected = returns.first().map_or(0, Vec::len);
    for (series, r) in returns.iter().enumerate() {
        if r.len() != expected {
            return Err(StatsError::Ragged {
                series,
                len: r.len(),
                expected,
            });
        }
    }
    Ok(expected)
}

/// Sample covariance matrix (ddof 1) of aligned return series:
/// `Σ_ij = Σ_t (r_it − r̄_i)(r_jt − r̄_j) / (T − 1)`.
///
/// `returns[i]` is series i. Errors: series of different lengths
/// ([`StatsError::Ragged`]), fewer than two periods
/// ([`StatsError::TooShort`]), overflow. No series gives an empty matrix.
pub fn covariance(returns: &[Vec<Decimal>]) -> Result<Vec<Vec<Decimal>>, StatsError> {
    let t = common_len(returns)?;
    if returns.is_empty() {
        return Ok(Vec::new());
    }
    if t < 2 {
        return Err(StatsError::TooShort { len: t });
    }
    let overflow = || StatsError::Overflow { what: "covariance" };
    let mut dev = Vec::with_capacity(returns.len());
    for r in returns {
        let m = mean(r).ok_or_else(overflow)?;
        let d: Option<Vec<Decimal>> = r.iter().map(|&x| x.checked_sub(m)).collect();
        dev.push(d.ok_or_else(overflow)?);
    }
    let n = returns.len();
    let denom = Decimal::from(t - 1);
    let mut cov = vec![vec![Decimal::ZERO; n]; n];
    for i in 0..n {
        for j in i..n {
            let mut s = Decimal::ZERO;
            for (a, b) in dev[i].iter().zip(&dev[j]) {
                s = a
                    .checked_mul(*b)
                    .and_then(|p| s.checked_add(p))
                    .ok_or_else(overflow)?;
            }
            let c = s.checked_div(denom).ok_or_else(overflow)?;
            cov[i][j] = c;
            cov[j][i] = c;
        }
    }
    Ok(cov)
}

/// Checks that `cov` is an `n × n` matrix.
fn check_square(cov: &[Vec<Decimal>], n: usize) -> Result<(), StatsError> {
    if cov.len() != n {
        return Err(StatsError::Dimension {
            field: "cov",
            len: cov.len(),
            expected: n,
        });
    }
    for row in cov {
        if row.len() != n {
            return Err(StatsError::Dimension {
                field: "cov row",
                len: row.len(),
                expected: n,
            });
        }
    }
    Ok(())
}

/// Correlation matrix from a covariance matrix: `ρ_ij = Σ_ij / (σ_i σ_j)`,
/// 1 on the diagonal, clamped to `[−1, 1]` (rounding of the square root).
///
/// A zero-variance series (a constant return) has no defined correlation; it
/// gets 0 off the diagonal (it moves with nothing) and 1 on it. Errors if
/// `cov` is not square.
pub fn correlation_from_covariance(cov: &[Vec<Decimal>]) -> Result<Vec<Vec<Decimal>>, StatsError> {
    let n = cov.len();
    check_square(cov, n)?;
    let overflow = || StatsError::Overflow {
        what: "correlation",
    };
    let mut corr = vec![vec![Decimal::ZERO; n]; n];
    for i in 0..n {
        corr[i][i] = Decimal::ONE;
        for j in (i + 1)..n {
            let (vi, vj) = (cov[i][i], cov[j][j]);
            let rho = if vi <= Decimal::ZERO || vj <= Decimal::ZERO {
                Decimal::ZERO
            } else {
                // Equal variances need no square root: exact ±1 for a series
                // and its negative or a copy.
                let denom = if vi == vj {
                    vi
                } else {
                    vi.checked_mul(vj).and_then(sqrt).ok_or_else(overflow)?
                };
                cov[i][j]
                    .checked_div(denom)
                    .ok_or_else(overflow)?
                    .clamp(Decimal::NEGATIVE_ONE, Decimal::ONE)
            };
            corr[i][j] = rho;
            corr[j][i] = rho;
        }
    }
    Ok(corr)
}

/// Correlation matrix of aligned return series (sample, ddof 1); see
/// [`correlation_from_covariance`] for the zero-variance rule and
/// [`covariance`] for the errors.
pub fn correlation(returns: &[Vec<Decimal>]) -> Result<Vec<Vec<Decimal>>, StatsError> {
    correlation_from_covariance(&covariance(returns)?)
}

/// Portfolio variance `wᵀΣw`. Errors on mismatched dimensions or overflow.
pub fn portfolio_variance(
    weights: &[Decimal],
    cov: &[Vec<Decimal>],
) -> Result<Decimal, StatsError> {
    check_square(cov, weights.len())?;
    let overflow = || StatsError::Overflow {
        what: "portfolio variance",
    };
    let mut v = Decimal::ZERO;
    for (wi, row) in weights.iter().zip(cov) {
        let mut s = Decimal::ZERO;
        for (wj, c) in weights.iter().zip(row) {
            s = wj
                .checked_mul(*c)
                .and_then(|p| s.checked_add(p))
                .ok_or_else(overflow)?;
        }
        v = wi
            .checked_mul(s)
            .and_then(|p| v.checked_add(p))
            .ok_or_else(overflow)?;
    }
    Ok(v)
}

/// Diversification ratio `Σ_i w_i σ_i / √(wᵀΣw)` with `σ_i = √Σ_ii`: 1 for a
/// single strategy or perfectly correlated ones, `√N` for N uncorrelated
/// equal-volatility strategies at equal weight.
///
/// `None` when the denominator is 0 (no risk, e.g. all weights 0), when the
/// dimensions do not match, or on overflow.
pub fn diversification_ratio(weights: &[Decimal], cov: &[Vec<Decimal>]) -> Option<Decimal> {
    let var = portfolio_variance(weights, cov).ok()?;
    if var <= Decimal::ZERO {
        return None;
    }
    let denom = sqrt(var)?;
    if denom.is_zero() {
        return None;
    }
    let mut num = Decimal::ZERO;
    for (i, w) in weights.iter().enumerate() {
        let sigma = sqrt(cov[i][i].max(Decimal::ZERO))?;
        num = num.checked_add(w.checked_mul(sigma)?)?;
    }
    num.checked_div(denom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn close(a: Decimal, b: Decimal, tol: Decimal) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn sqrt_known_values() {
        assert_eq!(sqrt(dec!(4)), Some(dec!(2)));
        assert_eq!(sqrt(dec!(0.0001)), Some(dec!(0.01)));
        assert_eq!(sqrt(Decimal::ZERO), Some(Decimal::ZERO));
        assert_eq!(sqrt(dec!(-1)), None);
        let r2 = sqrt(Decimal::TWO).unwrap_or_default();
        assert!(close(r2 * r2, Decimal::TWO, dec!(1e-26)));
        // Extremes terminate.
        assert!(sqrt(Decimal::MAX).is_some());
        assert!(sqrt(Decimal::new(1, 28)).is_some());
    }

    #[test]
    fn mean_variance_std() {
        let xs = [dec!(0.02), dec!(0.0)];
        assert_eq!(mean(&xs), Some(dec!(0.01)));
        assert_eq!(variance(&xs), Some(dec!(0.0002)));
        assert_eq!(variance(&xs[..1]), None);
        assert_eq!(mean(&[]), None);
        let s = std_dev(&[dec!(1), dec!(3)]).unwrap_or_default();
        assert!(close(
            s,
            sqrt(Decimal::TWO).unwrap_or_default(),
            dec!(1e-27)
        ));
    }

    #[test]
    fn covariance_and_errors() {
        let a = vec![dec!(0.01), dec!(-0.01), dec!(0.01), dec!(-0.01)];
        let b = vec![dec!(0.02), dec!(0.02), dec!(-0.02), dec!(-0.02)];
        let cov = covariance(&[a.clone(), b.clone()]).unwrap_or_default();
        assert_eq!(cov[0][1], Decimal::ZERO);
        assert_eq!(cov[1][0], Decimal::ZERO);
        assert_eq!(cov[0][0], variance(&a).unwrap_or_default());
        assert_eq!(
            covariance(&[a.clone(), vec![dec!(1)]]),
            Err(StatsError::Ragged {
                series: 1,
                len: 1,
                expected: 4
            })
        );
        assert_eq!(
            covariance(&[vec![dec!(1)]]),
            Err(StatsError::TooShort { len: 1 })
        );
        assert_eq!(covariance(&[]), Ok(Vec::new()));
    }

    #[test]
    fn correlation_of_negative_is_minus_one() {
        let a = vec![dec!(0.01), dec!(-0.03), dec!(0.02), dec!(0.005)];
        let b: Vec<Decimal> = a.iter().map(|x| -*x).collect();
        let corr = correlation(&[a.clone(), b, a]).unwrap_or_default();
        assert_eq!(corr[0][1], Decimal::NEGATIVE_ONE);
        assert_eq!(corr[0][2], Decimal::ONE);
        assert_eq!(corr[1][1], Decimal::ONE);
    }

    #[test]
    fn correlation_zero_variance_is_zero() {
        let a = vec![dec!(0.01), dec!(-0.03), dec!(0.02)];
        let c = vec![dec!(0.01); 3];
        let corr = correlation(&[a, c]).unwrap_or_default();
        assert_eq!(corr[0][1], Decimal::ZERO);
        assert_eq!(corr[1][1], Decimal::ONE);
    }

    #[test]
    fn diversification_ratio_uncorrelated_equal_vol_is_sqrt2() {
        let a = vec![dec!(0.01), dec!(-0.01), dec!(0.01), dec!(-0.01)];
        let b = vec![dec!(0.01), dec!(0.01), dec!(-0.01), dec!(-0.01)];
        let cov = covariance(&[a, b]).unwrap_or_default();
        let dr = diversification_ratio(&[dec!(0.5), dec!(0.5)], &cov).unwrap_or_default();
        assert!(close(
            dr,
            sqrt(Decimal::TWO).unwrap_or_default(),
            dec!(1e-20)
        ));
        assert_eq!(
            diversification_ratio(&[Decimal::ZERO, Decimal::ZERO], &cov),
            None
        );
        assert_eq!(diversification_ratio(&[Decimal::ONE], &cov), None);
    }

    #[test]
    fn diversification_ratio_single_is_one() {
        let cov = vec![vec![dec!(0.0004)]];
        assert_eq!(
            diversification_ratio(&[Decimal::ONE], &cov),
            Some(Decimal::ONE)
        );
    }
}
