//! Returns and the return-based ratios (empyrical's definitions).
//!
//! Every function takes per-period simple returns unless its name says
//! otherwise; `periods_per_year` is 252 for equities, 365 for crypto.

use crate::error::{AnalyticsError, Result, check_finite, check_len};
use crate::stats::{mean, std_dev, sum_map};

/// Simple returns `e[i+1] / e[i] - 1` of an equity series (one fewer value).
pub fn simple_returns(equity: &[f64]) -> Result<Vec<f64>> {
    check_equity(equity)?;
    Ok(equity.windows(2).map(|w| w[1] / w[0] - 1.0).collect())
}

/// Log returns `ln(e[i+1] / e[i])` of an equity series (one fewer value).
pub fn log_returns(equity: &[f64]) -> Result<Vec<f64>> {
    check_equity(equity)?;
    Ok(equity.windows(2).map(|w| (w[1] / w[0]).ln()).collect())
}

pub(crate) fn check_equity(equity: &[f64]) -> Result<()> {
    check_len("equity", equity, 2)?;
    check_finite("equity", equity)?;
    if let Some(index) = equity.iter().position(|&v| v <= 0.0) {
        return Err(AnalyticsError::NonPositive {
            input: "equity",
            index,
            value: equity[index],
        });
    }
    Ok(())
}

pub(crate) fn check_returns(returns: &[f64], min: usize) -> Result<()> {
    check_len("returns", returns, min)?;
    check_finite("returns", returns)
}

pub(crate) fn check_periods_per_year(periods_per_year: f64) -> Result<()> {
    if !(periods_per_year.is_finite() && periods_per_year > 0.0) {
        return Err(AnalyticsError::InvalidParameter {
            name: "periods_per_year",
            reason: "must be finite and positive",
        });
    }
    Ok(())
}

/// Compounded return of the whole series, `prod(1 + r) - 1`.
pub fn total_return(returns: &[f64]) -> Result<f64> {
    check_returns(returns, 1)?;
    Ok(growth(returns) - 1.0)
}

pub(crate) fn growth(returns: &[f64]) -> f64 {
    returns.iter().fold(1.0, |acc, r| acc * (1.0 + r))
}

/// Compound annual growth rate: `growth ^ (periods_per_year / n) - 1`, where
/// `n` is the number of returns (empyrical's `annual_return`).
pub fn cagr(returns: &[f64], periods_per_year: f64) -> Result<f64> {
    check_returns(returns, 1)?;
    check_periods_per_year(periods_per_year)?;
    Ok(cagr_unchecked(
        growth(returns),
        returns.len(),
        periods_per_year,
    ))
}

pub(crate) fn cagr_unchecked(growth: f64, n: usize, periods_per_year: f64) -> f64 {
    if growth <= 0.0 {
        // Wiped out: there is no real root of a non-positive growth factor.
        return -1.0;
    }
    let years = n as f64 / periods_per_year;
    growth.powf(1.0 / years) - 1.0
}

/// Annualised volatility, `std(r, ddof=1) * sqrt(periods_per_year)`; `None`
/// with fewer than two returns.
pub fn annual_volatility(returns: &[f64], periods_per_year: f64) -> Result<Option<f64>> {
    check_returns(returns, 1)?;
    check_periods_per_year(periods_per_year)?;
    Ok(std_dev(returns, 1).map(|s| s * periods_per_year.sqrt()))
}

/// Sharpe ratio, `sqrt(P) * mean(r - rf) / std(r - rf, ddof=1)` with a
/// per-period risk-free rate; `None` when the deviation is zero or undefined.
pub fn sharpe(returns: &[f64], risk_free: f64, periods_per_year: f64) -> Result<Option<f64>> {
    check_returns(returns, 1)?;
    check_periods_per_year(periods_per_year)?;
    let m = mean(returns).unwrap_or(f64::NAN);
    Ok(sharpe_from_moments(
        m,
        std_dev(returns, 1),
        risk_free,
        periods_per_year,
    ))
}

/// Sharpe from the mean and sample deviation of the raw returns: a constant
/// shift by the risk-free rate leaves the deviation unchanged.
pub(crate) fn sharpe_from_moments(
    mean: f64,
    std: Option<f64>,
    risk_free: f64,
    periods_per_year: f64,
) -> Option<f64> {
    let s = std?;
    (s > 0.0).then(|| (mean - risk_free) / s * periods_per_year.sqrt())
}

/// Annualised downside deviation below `required_return` (empyrical's
/// `downside_risk`): `sqrt(mean(min(r - req, 0)^2)) * sqrt(P)`, the mean taken
/// over all periods, not only the losing ones.
pub fn downside_deviation(
    returns: &[f64],
    required_return: f64,
    periods_per_year: f64,
) -> Result<f64> {
    check_returns(returns, 1)?;
    check_periods_per_year(periods_per_year)?;
    Ok(downside_unchecked(
        returns,
        required_return,
        periods_per_year,
    ))
}

pub(crate) fn downside_unchecked(
    returns: &[f64],
    required_return: f64,
    periods_per_year: f64,
) -> f64 {
    let squares = sum_map(returns, |r| {
        let d = (r - required_return).min(0.0);
        d * d
    });
    (squares / returns.len() as f64).sqrt() * periods_per_year.sqrt()
}

/// Sortino ratio (empyrical): `mean(r - req) * P / downside_deviation`;
/// `None` when there is no downside.
pub fn sortino(
    returns: &[f64],
    required_return: f64,
    periods_per_year: f64,
) -> Result<Option<f64>> {
    check_returns(returns, 1)?;
    check_periods_per_year(periods_per_year)?;
    let m = mean(returns).unwrap_or(f64::NAN);
    Ok(sortino_unchecked(
        returns,
        m,
        required_return,
        periods_per_year,
    ))
}

pub(crate) fn sortino_unchecked(
    returns: &[f64],
    mean: f64,
    required_return: f64,
    periods_per_year: f64,
) -> Option<f64> {
    let dd = downside_unchecked(returns, required_return, periods_per_year);
    (dd > 0.0).then(|| (mean - required_return) * periods_per_year / dd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_of_equity() {
        let e = [100.0, 110.0, 99.0];
        let r = simple_returns(&e).unwrap();
        assert!((r[0] - 0.1).abs() < 1e-15 && (r[1] + 0.1).abs() < 1e-15);
        let l = log_returns(&e).unwrap();
        assert!((l.iter().sum::<f64>() - (0.99_f64).ln()).abs() < 1e-15);
        assert!((total_return(&r).unwrap() + 0.01).abs() < 1e-15);
    }

    #[test]
    fn equity_errors_name_the_input_and_index() {
        assert_eq!(
            simple_returns(&[1.0]),
            Err(AnalyticsError::TooShort {
                input: "equity",
                min: 2,
                actual: 1
            })
        );
        assert_eq!(
            simple_returns(&[1.0, f64::NAN]),
            Err(AnalyticsError::NonFinite {
                input: "equity",
                index: 1
            })
        );
        let err = log_returns(&[1.0, 2.0, 0.0]).unwrap_err();
        assert_eq!(err.to_string(), "equity[2]: equity must be positive, got 0");
        assert!(matches!(
            sharpe(&[], 0.0, 252.0),
            Err(AnalyticsError::TooShort {
                input: "returns",
                ..
            })
        ));
        assert!(matches!(
            cagr(&[0.1], 0.0),
            Err(AnalyticsError::InvalidParameter {
                name: "periods_per_year",
                ..
            })
        ));
    }

    #[test]
    fn cagr_over_exact_years() {
        // Doubling over 504 daily returns is sqrt(2) a year.
        let r = vec![2.0_f64.powf(1.0 / 504.0) - 1.0; 504];
        let c = cagr(&r, 252.0).unwrap();
        assert!((c - (2.0_f64.sqrt() - 1.0)).abs() < 1e-12, "{c}");
        // Crypto years are longer in periods: same path, smaller CAGR.
        assert!(cagr(&r, 365.0).unwrap() > c);
        assert_eq!(cagr(&[-1.0, 0.5], 252.0).unwrap(), -1.0);
    }

    #[test]
    fn ratios_hand_computed() {
        let r = [0.01, -0.02, 0.03, 0.0];
        // mean 0.005, sample std sqrt(0.00130/3)
        let std = (0.0013_f64 / 3.0).sqrt();
        let s = sharpe(&r, 0.0, 252.0).unwrap().unwrap();
        assert!((s - 0.005 / std * 252f64.sqrt()).abs() < 1e-12);
        let v = annual_volatility(&r, 252.0).unwrap().unwrap();
        assert!((v - std * 252f64.sqrt()).abs() < 1e-15);
        // downside: sqrt((0.02^2)/4) = 0.01 per period
        let dd = downside_deviation(&r, 0.0, 252.0).unwrap();
        assert!((dd - 0.01 * 252f64.sqrt()).abs() < 1e-15);
        let so = sortino(&r, 0.0, 252.0).unwrap().unwrap();
        assert!((so - 0.005 * 252.0 / dd).abs() < 1e-12);
        // Risk-free shifts the numerator only.
        let s_rf = sharpe(&r, 0.001, 252.0).unwrap().unwrap();
        assert!((s_rf - 0.004 / std * 252f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn undefined_ratios_are_none() {
        assert_eq!(sharpe(&[0.01, 0.01], 0.0, 252.0).unwrap(), None);
        assert_eq!(sharpe(&[0.01], 0.0, 252.0).unwrap(), None);
        assert_eq!(sortino(&[0.01, 0.02], 0.0, 252.0).unwrap(), None);
        assert_eq!(annual_volatility(&[0.01], 252.0).unwrap(), None);
    }
}
