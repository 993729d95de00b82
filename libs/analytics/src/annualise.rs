//! Periods per year from the bars themselves, and durations in the unit that fits.
//!
//! Annualisation needs the number of bars in a year. It follows from the
//! bars' median spacing and the trading calendar of the asset class:
//!
//! | class     | trading days / year | session      |
//! |-----------|---------------------|--------------|
//! | Equity    | 252                 | 6.5 h        |
//! | Crypto    | 365                 | 24 h         |
//! | Fx        | 260 (52 x 5)        | 24 h         |
//! | Futures   | 252                 | 23 h (Globex)|
//!
//! With `s` the median spacing between consecutive bar timestamps:
//! - intraday (`s < 20 h`): `days * max(1, session / s)` (1-minute equities:
//!   252 x 390 = 98,280; 1-minute crypto: 365 x 1,440 = 525,600);
//! - daily to multi-day (`20 h <= s < 6 d`): `days * 1 d / s` (daily: 252,
//!   365, 260, 252);
//! - weekly and longer (`s >= 6 d`): `365.25 d / s` (weekly: 52.18, monthly: ~12).
//!
//! The median, not the mean, so weekends, holidays and overnight gaps do not
//! stretch the spacing. Pure: no clock, no I/O.

use serde::{Deserialize, Serialize};

const NANOS_PER_HOUR: f64 = 3_600e9;
const NANOS_PER_DAY: f64 = 86_400e9;

/// The trading calendar used to annualise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum AssetClass {
    /// Shares, ETFs, indices: 252 days of 6.5 h.
    #[default]
    Equity,
    /// Traded around the clock: 365 days of 24 h.
    Crypto,
    /// Spot FX, 24 h on weekdays: 260 days of 24 h.
    Fx,
    /// Exchange futures on an electronic session: 252 days of 23 h.
    Futures,
}

impl AssetClass {
    /// Trading days in a year.
    pub const fn trading_days(self) -> f64 {
        match self {
            Self::Equity | Self::Futures => 252.0,
            Self::Crypto => 365.0,
            Self::Fx => 260.0,
        }
    }

    /// Length of one trading day's session, in hours.
    pub const fn session_hours(self) -> f64 {
        match self {
            Self::Equity => 6.5,
            Self::Crypto | Self::Fx => 24.0,
            Self::Futures => 23.0,
        }
    }
}

/// Median spacing (ns) between consecutive timestamps, ignoring non-positive
/// steps; the upper median for an even count. `None` with fewer than two
/// distinct ascending timestamps.
pub fn median_spacing_nanos(ts: &[i64]) -> Option<i64> {
    let mut steps: Vec<i64> = ts
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .filter(|d| *d > 0)
        .collect();
    if steps.is_empty() {
        return None;
    }
    let mid = steps.len() / 2;
    let (_, m, _) = steps.select_nth_unstable(mid);
    Some(*m)
}

/// Periods per year of bars `spacing_nanos` apart in `class`'s calendar (see the
/// module docs); the class's daily figure when the spacing is not positive.
#[allow(
    clippy::cast_precision_loss,
    reason = "a spacing in ns is far below 2^53 for any bar size that matters"
)]
pub fn periods_per_year(spacing_nanos: i64, class: AssetClass) -> f64 {
    let days = class.trading_days();
    if spacing_nanos <= 0 {
        return days;
    }
    let s = spacing_nanos as f64;
    if s < 20.0 * NANOS_PER_HOUR {
        days * (class.session_hours() * NANOS_PER_HOUR / s).max(1.0)
    } else if s < 6.0 * NANOS_PER_DAY {
        days * NANOS_PER_DAY / s
    } else {
        365.25 * NANOS_PER_DAY / s
    }
}

/// Periods per year of a series with these bar timestamps (ascending): from
/// their median spacing, or the class's daily figure with fewer than two bars.
pub fn infer_periods_per_year(ts: &[i64], class: AssetClass) -> f64 {
    median_spacing_nanos(ts).map_or(class.trading_days(), |s| periods_per_year(s, class))
}

/// A duration in the unit that fits: seconds below a minute, minutes below an
/// hour, hours below a day, days beyond; one decimal, dropped when it is 0
/// (`90 s` -> `1.5 min`, `5 h`, `3.2 d`, `45 s`). `n/a` when not finite.
pub fn format_duration(nanos: f64) -> String {
    if !nanos.is_finite() {
        return "n/a".to_owned();
    }
    let sign = if nanos < 0.0 { "-" } else { "" };
    let n = nanos.abs();
    let (value, unit) = if n < 60e9 {
        (n / 1e9, "s")
    } else if n < NANOS_PER_HOUR {
        (n / 60e9, "min")
    } else if n < NANOS_PER_DAY {
        (n / NANOS_PER_HOUR, "h")
    } else {
        (n / NANOS_PER_DAY, "d")
    };
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{sign}{text} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::EquityPoint;
    use crate::{MetricsConfig, PerformanceInput, compute};

    const MIN: i64 = 60_000_000_000;
    const DAY: i64 = 86_400_000_000_000;

    #[test]
    fn one_minute_crypto_quarter_annualises_its_32_percent_properly() {
        // A quarter (90 days) of 1-minute bars, growing geometrically by 32%.
        let n = 90 * 1_440;
        let step = 1.32_f64.powf(1.0 / n as f64);
        let equity: Vec<EquityPoint> = (0..=n)
            .map(|i| EquityPoint {
                ts: i as i64 * MIN,
                equity: 100_000.0 * step.powi(i),
            })
            .collect();
        let ts: Vec<i64> = equity.iter().map(|p| p.ts).collect();
        let p = infer_periods_per_year(&ts, AssetClass::Crypto);
        assert!((p - 525_600.0).abs() < 1e-9, "{p}");
        let input = PerformanceInput {
            equity: &equity,
            trades: &[],
            positions: None,
        };
        let right = compute(
            &input,
            &MetricsConfig {
                periods_per_year: p,
                ..MetricsConfig::crypto_daily()
            },
        )
        .unwrap();
        // 1.32^(365/90) - 1 = 2.0834...: the true annualisation of +32% a quarter.
        let truth = 1.32_f64.powf(365.0 / 90.0) - 1.0;
        assert!((right.total_return - 0.32).abs() < 1e-9);
        assert!(
            (right.cagr - truth).abs() < 1e-6,
            "{} vs {truth}",
            right.cagr
        );
        // What the old default of 252 periods printed: 0.05%.
        let wrong = compute(&input, &MetricsConfig::equities_daily()).unwrap();
        assert!(wrong.cagr < 0.0006, "{}", wrong.cagr);
    }

    #[test]
    fn daily_equities_keep_252_despite_weekends() {
        // Weekdays only: Mon..Fri, then a 3-day gap over the weekend.
        let ts: Vec<i64> = (0..500_i64)
            .filter(|d| d % 7 < 5)
            .map(|d| d * DAY + 16 * 3_600_000_000_000)
            .collect();
        assert_eq!(median_spacing_nanos(&ts), Some(DAY));
        assert!((infer_periods_per_year(&ts, AssetClass::Equity) - 252.0).abs() < 1e-12);
        assert!((infer_periods_per_year(&ts, AssetClass::Futures) - 252.0).abs() < 1e-12);
        assert!((infer_periods_per_year(&ts, AssetClass::Fx) - 260.0).abs() < 1e-12);
    }

    #[test]
    fn intraday_weekly_and_degenerate_spacings() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.max(1.0);
        // 1-minute equities: 390 bars a session.
        assert!(close(
            periods_per_year(MIN, AssetClass::Equity),
            252.0 * 390.0
        ));
        // Hourly crypto and FX, 5-minute futures.
        assert!(close(
            periods_per_year(60 * MIN, AssetClass::Crypto),
            8_760.0
        ));
        assert!(close(periods_per_year(60 * MIN, AssetClass::Fx), 6_240.0));
        assert!(close(
            periods_per_year(5 * MIN, AssetClass::Futures),
            252.0 * 276.0
        ));
        // 8-hour equity bars: at least one per day.
        assert!(close(
            periods_per_year(8 * 60 * MIN, AssetClass::Equity),
            252.0
        ));
        // Daily crypto, weekly anything.
        assert!(close(periods_per_year(DAY, AssetClass::Crypto), 365.0));
        assert!(close(
            periods_per_year(7 * DAY, AssetClass::Equity),
            365.25 / 7.0
        ));
        // Fewer than two bars or no spacing: the class's daily figure.
        assert!(close(
            infer_periods_per_year(&[5], AssetClass::Crypto),
            365.0
        ));
        assert!(close(
            infer_periods_per_year(&[5, 5, 5], AssetClass::Equity),
            252.0
        ));
        assert_eq!(median_spacing_nanos(&[0, 10, 20, 1_000]), Some(10));
    }

    #[test]
    fn durations_print_in_the_unit_that_fits() {
        let cases = [
            (0.0, "0 s"),
            (45e9, "45 s"),
            (90e9, "1.5 min"),
            (30.0 * 60e9, "30 min"),
            (5.0 * 3_600e9, "5 h"),
            (3.2 * 86_400e9, "3.2 d"),
            (86_400e9, "1 d"),
            (-90e9, "-1.5 min"),
            (f64::NAN, "n/a"),
        ];
        for (nanos, text) in cases {
            assert_eq!(format_duration(nanos), text, "{nanos}");
        }
    }
}
