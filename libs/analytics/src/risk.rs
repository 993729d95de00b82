//! Value at risk and conditional value at risk (expected shortfall), both as
//! returns: a loss is negative, so VaR 99 <= VaR 95.
//!
//! `tail` is the tail probability: 0.05 for 95 % confidence, 0.01 for 99 %.
//! It is taken directly rather than as `1 - confidence` so that 0.05 stays
//! exactly the number numpy is given.

use serde::{Deserialize, Serialize};

use crate::error::{AnalyticsError, Result};
use crate::returns::check_returns;
use crate::stats::{
    mean, norm_pdf, norm_ppf, percentile_at, percentile_in_place, std_dev, sum_map,
};

/// A VaR and the CVaR beyond it, for one tail probability and one method.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VarCvar {
    /// Value at risk, a per-period return.
    pub var: f64,
    /// Conditional value at risk (mean return in the tail), a per-period return.
    pub cvar: f64,
}

/// VaR and CVaR at 95 % and 99 %, historical and parametric normal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TailRisk {
    /// Historical, tail 0.05.
    pub historical_95: VarCvar,
    /// Historical, tail 0.01.
    pub historical_99: VarCvar,
    /// Normal with the sample mean and deviation, tail 0.05; `None` with
    /// fewer than two returns.
    pub normal_95: Option<VarCvar>,
    /// Normal, tail 0.01; `None` with fewer than two returns.
    pub normal_99: Option<VarCvar>,
}

fn check_tail(tail: f64) -> Result<()> {
    if !(tail > 0.0 && tail < 1.0) {
        return Err(AnalyticsError::InvalidParameter {
            name: "tail",
            reason: "must lie strictly between 0 and 1",
        });
    }
    Ok(())
}

/// Historical VaR: the `tail` percentile of the returns with numpy's linear
/// interpolation (empyrical's `value_at_risk`).
pub fn var_historical(returns: &[f64], tail: f64) -> Result<f64> {
    check_returns(returns, 1)?;
    check_tail(tail)?;
    Ok(percentile_in_place(&mut returns.to_vec(), tail))
}

/// Historical CVaR: the mean of the returns at or below the historical VaR.
pub fn cvar_historical(returns: &[f64], tail: f64) -> Result<f64> {
    let var = var_historical(returns, tail)?;
    Ok(mean_at_or_below(returns, var))
}

fn mean_at_or_below(returns: &[f64], var: f64) -> f64 {
    // The smallest return is always <= the interpolated percentile, so the
    // count is at least one.
    let count = returns.iter().filter(|&&r| r <= var).count();
    sum_map(returns, |r| if r <= var { r } else { 0.0 }) / count as f64
}

/// Parametric normal VaR: `mean + z(tail) * std` (ddof 1); `None` with
/// fewer than two returns.
pub fn var_normal(returns: &[f64], tail: f64) -> Result<Option<f64>> {
    check_returns(returns, 1)?;
    check_tail(tail)?;
    Ok(normal_unchecked(returns, tail).map(|v| v.var))
}

/// Parametric normal CVaR: `mean - std * pdf(z(tail)) / tail`; `None` with
/// fewer than two returns.
pub fn cvar_normal(returns: &[f64], tail: f64) -> Result<Option<f64>> {
    check_returns(returns, 1)?;
    check_tail(tail)?;
    Ok(normal_unchecked(returns, tail).map(|v| v.cvar))
}

fn normal_unchecked(returns: &[f64], tail: f64) -> Option<VarCvar> {
    let m = mean(returns)?;
    let s = std_dev(returns, 1)?;
    Some(normal_from_moments(m, s, tail))
}

fn normal_from_moments(m: f64, s: f64, tail: f64) -> VarCvar {
    let z = norm_ppf(tail);
    VarCvar {
        var: m + z * s,
        cvar: m - s * norm_pdf(z) / tail,
    }
}

/// All of [`TailRisk`] with one copy of the returns and one pass per level.
pub fn tail_risk(returns: &[f64]) -> Result<TailRisk> {
    check_returns(returns, 1)?;
    let moments = mean(returns).zip(std_dev(returns, 1));
    Ok(tail_risk_unchecked(returns, moments))
}

/// `moments` are the mean and sample deviation, when defined.
pub(crate) fn tail_risk_unchecked(returns: &[f64], moments: Option<(f64, f64)>) -> TailRisk {
    let mut scratch = returns.to_vec();
    let var99 = percentile_in_place(&mut scratch, 0.01);
    // The 1 % selection left everything above its rank to the right, and the
    // 5 % rank is never below it: select again only in that upper part.
    let n = returns.len();
    let lo99 = ((n - 1) as f64 * 0.01).floor() as usize;
    let var95 = percentile_at(&mut scratch[lo99..], (n - 1) as f64 * 0.05 - lo99 as f64);
    TailRisk {
        historical_95: VarCvar {
            var: var95,
            cvar: mean_at_or_below(returns, var95),
        },
        historical_99: VarCvar {
            var: var99,
            cvar: mean_at_or_below(returns, var99),
        },
        normal_95: moments.map(|(m, s)| normal_from_moments(m, s, 0.05)),
        normal_99: moments.map(|(m, s)| normal_from_moments(m, s, 0.01)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn historical_on_a_ladder() {
        // -0.10, -0.09, ..., 0.09 (20 values)
        let r: Vec<f64> = (0..20).map(|i| (i as f64 - 10.0) / 100.0).collect();
        // h = 19 * 0.05 = 0.95 -> -0.10 + 0.95 * 0.01
        let v = var_historical(&r, 0.05).unwrap();
        assert!((v + 0.0905).abs() < 1e-15, "{v}");
        assert_eq!(cvar_historical(&r, 0.05).unwrap(), -0.10);
        let t = tail_risk(&r).unwrap();
        assert_eq!(t.historical_95.var, v);
        assert!(t.historical_99.var <= t.historical_95.var);
        assert!(t.historical_99.cvar <= t.historical_99.var);
    }

    #[test]
    fn normal_uses_the_quantile_and_density() {
        let r = [0.01, -0.02, 0.03, 0.0];
        let m = 0.005;
        let s = (0.0013_f64 / 3.0).sqrt();
        let v = var_normal(&r, 0.05).unwrap().unwrap();
        assert!((v - (m - 1.6448536269514729 * s)).abs() < 1e-15);
        let c = cvar_normal(&r, 0.05).unwrap().unwrap();
        assert!((c - (m - s * 0.10313564037537128 / 0.05)).abs() < 1e-15);
        assert_eq!(var_normal(&[0.01], 0.05).unwrap(), None);
    }

    #[test]
    fn bad_tail_is_named() {
        assert!(matches!(
            var_historical(&[0.1], 0.0),
            Err(AnalyticsError::InvalidParameter { name: "tail", .. })
        ));
        assert!(matches!(
            cvar_normal(&[0.1, 0.2], 1.0),
            Err(AnalyticsError::InvalidParameter { name: "tail", .. })
        ));
    }
}
