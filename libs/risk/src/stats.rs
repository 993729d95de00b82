//! Statistics of the snapshot: one-day historical VaR and the correlation of
//! per-strategy daily PnL. Computed in f64 (statistics, not ledgers) and
//! reported as `Decimal` rounded to cents.
//!
//! VaR method (docs/risk.md): for each symbol held, the daily returns of its
//! last close per UTC day (`c_d / c_prev - 1`, consecutive recorded days);
//! the days common to every held symbol, the latest `window` of them; one
//! scenario per day, `sum(notional_i * r_i,d)` with today's signed notionals;
//! VaR at level `q` is minus the `ceil(n * (1 - q))`-th smallest scenario,
//! floored at 0. No history (fewer than one common day) gives 0.

use std::collections::{BTreeMap, VecDeque};

use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};

/// The VaR of a portfolio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Var {
    /// 95% one-day VaR, a positive loss amount (2 dp).
    pub var_95: Decimal,
    /// 99% one-day VaR.
    pub var_99: Decimal,
    /// Scenarios (days) used.
    pub days: usize,
}

/// `a / b` as f64 (0 when `b` is 0).
#[must_use]
pub fn ratio(a: Decimal, b: Decimal) -> f64 {
    if b.is_zero() {
        return 0.0;
    }
    a.to_f64().unwrap_or(0.0) / b.to_f64().unwrap_or(f64::NAN)
}

fn to_money(x: f64) -> Decimal {
    Decimal::from_f64(x)
        .unwrap_or_default()
        .round_dp(2)
        .max(Decimal::ZERO)
}

/// Daily returns by day of one close series (`(day, close)`, oldest first).
fn returns(closes: &VecDeque<(i64, Decimal)>) -> BTreeMap<i64, f64> {
    closes
        .iter()
        .zip(closes.iter().skip(1))
        .filter_map(|((_, a), (d, b))| {
            let (a, b) = (a.to_f64()?, b.to_f64()?);
            (a > 0.0).then(|| (*d, b / a - 1.0))
        })
        .collect()
}

/// The k-th smallest (1-based) scenario as a loss: `-sorted[k-1]`, with
/// `k = ceil(n * tail_pct / 100)` in integers (`tail_pct` 5 for the 95% VaR).
fn quantile_loss(sorted: &[f64], tail_pct: usize) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let k = (n * tail_pct).div_ceil(100).max(1);
    -sorted[k.min(n) - 1]
}

/// One-day historical VaR of holdings `(signed notional, daily closes)` over
/// the latest `window` common days.
#[must_use]
pub fn historical_var(holdings: &[(Decimal, &VecDeque<(i64, Decimal)>)], window: usize) -> Var {
    if holdings.is_empty() || window == 0 {
        return Var::default();
    }
    let series: Vec<(f64, BTreeMap<i64, f64>)> = holdings
        .iter()
        .map(|(n, c)| (n.to_f64().unwrap_or(0.0), returns(c)))
        .collect();
    let mut days: Vec<i64> = series[0]
        .1
        .keys()
        .copied()
        .filter(|d| series.iter().all(|(_, r)| r.contains_key(d)))
        .collect();
    if days.len() > window {
        days.drain(..days.len() - window);
    }
    let mut scenarios: Vec<f64> = days
        .iter()
        .map(|d| series.iter().map(|(n, r)| n * r[d]).sum())
        .collect();
    scenarios.sort_by(f64::total_cmp);
    Var {
        var_95: to_money(quantile_loss(&scenarios, 5)),
        var_99: to_money(quantile_loss(&scenarios, 1)),
        days: scenarios.len(),
    }
}

/// Pearson correlation of `a` and `b`; `None` with fewer than 3 points or no variance.
#[must_use]
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len().min(b.len());
    if n < 3 {
        return None;
    }
    #[allow(clippy::cast_precision_loss, reason = "n is a count of days")]
    let nf = n as f64;
    let (ma, mb) = (
        a[..n].iter().sum::<f64>() / nf,
        b[..n].iter().sum::<f64>() / nf,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (x, y) = (a[i] - ma, b[i] - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// Correlation of daily PnL changes (end-of-day equity contribution
/// differences) of every pair of strategies over their common days.
/// Correlation is scale-free, so PnL changes correlate as returns on any
/// fixed capital would.
#[must_use]
pub fn pnl_correlations(
    strategies: &[(&String, &VecDeque<(i64, Decimal)>)],
) -> Vec<(String, String, f64)> {
    let changes: Vec<(&String, BTreeMap<i64, f64>)> = strategies
        .iter()
        .map(|(s, e)| {
            let m = e
                .iter()
                .zip(e.iter().skip(1))
                .filter_map(|((_, a), (d, b))| Some((*d, b.checked_sub(*a)?.to_f64()?)))
                .collect();
            (*s, m)
        })
        .collect();
    let mut out = Vec::new();
    for (i, (sa, ca)) in changes.iter().enumerate() {
        for (sb, cb) in &changes[i + 1..] {
            let (mut xa, mut xb) = (Vec::new(), Vec::new());
            for (d, x) in ca {
                if let Some(y) = cb.get(d) {
                    xa.push(*x);
                    xb.push(*y);
                }
            }
            if let Some(c) = pearson(&xa, &xb) {
                out.push(((*sa).clone(), (*sb).clone(), c));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn var_is_the_ceil_quantile_of_scenario_losses() {
        // 101 closes -> 100 returns: day i return = (i - 50) / 1000.
        let mut closes = VecDeque::new();
        let mut c = dec!(100);
        closes.push_back((0, c));
        for i in 1..=100i64 {
            c *= Decimal::ONE + Decimal::new(i - 51, 3);
            closes.push_back((i, c));
        }
        let v = historical_var(&[(dec!(10000), &closes)], 250);
        assert_eq!(v.days, 100);
        // sorted returns -0.050 .. 0.049; 95%: 5th smallest = -0.046 -> 460.
        assert_eq!(v.var_95, dec!(460.00));
        // 99%: 1st smallest = -0.050 -> 500.
        assert_eq!(v.var_99, dec!(500.00));
        // A short position loses on the up days.
        let s = historical_var(&[(dec!(-10000), &closes)], 250);
        assert_eq!(s.var_99, dec!(490.00));
        // The window keeps the latest days only.
        assert_eq!(historical_var(&[(dec!(10000), &closes)], 10).days, 10);
    }

    #[test]
    fn correlation_of_opposite_pnl_is_minus_one() {
        let a: VecDeque<(i64, Decimal)> =
            [(0, dec!(0)), (1, dec!(10)), (2, dec!(5)), (3, dec!(20))]
                .into_iter()
                .collect();
        let b: VecDeque<(i64, Decimal)> = a.iter().map(|(d, x)| (*d, -*x)).collect();
        let (na, nb) = ("a".to_owned(), "b".to_owned());
        let c = pnl_correlations(&[(&na, &a), (&nb, &b)]);
        assert_eq!(c.len(), 1);
        assert!((c[0].2 + 1.0).abs() < 1e-12, "{c:?}");
    }
}
