//! The classifier's configuration: windows, thresholds, cadence and dwell.

use grodt_core::error::{Classify, ErrorKind};
use serde::{Deserialize, Serialize};

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegimeError {
    /// A configuration field is out of range.
    #[error("invalid regime config: {field}: {reason}")]
    InvalidConfig {
        /// The field at fault (its serde name).
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A persisted classifier state is inconsistent and cannot be restored.
    #[error("invalid regime classifier state: {0}")]
    InvalidState(String),
}

impl Classify for RegimeError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidConfig { .. } => ErrorKind::InvalidArgument,
            Self::InvalidState(_) => ErrorKind::FailedPrecondition,
        }
    }
}

/// Largest window accepted, so a bad config cannot allocate without bound.
pub const MAX_WINDOW: usize = 1_000_000;

/// Largest evaluation interval accepted (a year of minutes), so the bucket width
/// in nanoseconds cannot overflow.
pub const MAX_EVAL_MINUTES: u32 = 525_600;

/// The classifier's configuration. Windows count bars, except `atr_rank_window`
/// which counts evaluations; `confirm` and `min_dwell` count evaluations. Every
/// field has a default (`#[serde(default)]`), so a partial config is completed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegimeConfig {
    /// Evaluate once per `eval_minutes` bucket of bar time (`floor(ts / N min)`):
    /// at the first bar of each new bucket. Bars `N` minutes apart or more (daily)
    /// are each evaluated. At most a year (525,600). Default 5.
    pub eval_minutes: u32,
    /// Bars in the rolling VWAP. Default 20.
    pub vwap_window: usize,
    /// Bars between the two VWAPs whose difference is the slope. Default 10.
    pub slope_lag: usize,
    /// Bars in the ATR (simple average of true ranges). Default 14.
    pub atr_period: usize,
    /// Evaluations in the history the ATR percentile ranks against (the current
    /// one included). Default 250 (a year of daily bars).
    pub atr_rank_window: usize,
    /// Log returns in the short realized volatility. Default 10.
    pub vol_short: usize,
    /// Log returns in the long realized volatility (> `vol_short`). Default 100.
    pub vol_long: usize,
    /// R1a: HighVolatility if the ATR percentile (0..1) is at least this. In (0.5, 1]. Default 0.90.
    pub atr_percentile_high: f64,
    /// R1b: HighVolatility if the volatility ratio is at least this. Above 1. Default 1.8.
    pub vol_ratio_high: f64,
    /// R2/R3: TrendingUp/Down if the slope (ATRs per bar) is at least this /
    /// at most minus this. Positive. Default 0.08.
    pub slope_trend: f64,
    /// R4: Ranging needs `|slope|` below this. In (0, `slope_trend`]. Default 0.04.
    pub slope_flat: f64,
    /// R4: Ranging needs the volatility ratio below this. In (1, `vol_ratio_high`]. Default 1.25.
    pub vol_ratio_range: f64,
    /// A new candidate regime must come out of the rules on this many consecutive
    /// evaluations before it replaces the current one. At least 1. Default 2.
    pub confirm: u32,
    /// A regime stays in force for at least this many evaluations. At least 1. Default 3.
    pub min_dwell: u32,
}

impl Default for RegimeConfig {
    fn default() -> Self {
        Self {
            eval_minutes: 5,
            vwap_window: 20,
            slope_lag: 10,
            atr_period: 14,
            atr_rank_window: 250,
            vol_short: 10,
            vol_long: 100,
            atr_percentile_high: 0.90,
            vol_ratio_high: 1.8,
            slope_trend: 0.08,
            slope_flat: 0.04,
            vol_ratio_range: 1.25,
            confirm: 2,
            min_dwell: 3,
        }
    }
}

/// The thresholds a decision was taken with (a copy of the config's).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// R1a threshold on the ATR percentile.
    pub atr_percentile_high: f64,
    /// R1b threshold on the volatility ratio.
    pub vol_ratio_high: f64,
    /// R2/R3 threshold on the slope.
    pub slope_trend: f64,
    /// R4 bound on `|slope|`.
    pub slope_flat: f64,
    /// R4 bound on the volatility ratio.
    pub vol_ratio_range: f64,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> RegimeError {
    RegimeError::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

impl RegimeConfig {
    /// The thresholds part of the config.
    pub const fn thresholds(&self) -> Thresholds {
        Thresholds {
            atr_percentile_high: self.atr_percentile_high,
            vol_ratio_high: self.vol_ratio_high,
            slope_trend: self.slope_trend,
            slope_flat: self.slope_flat,
            vol_ratio_range: self.vol_ratio_range,
        }
    }

    /// Checks every field; the error names the first field at fault.
    pub fn validate(&self) -> Result<(), RegimeError> {
        if self.eval_minutes == 0 || self.eval_minutes > MAX_EVAL_MINUTES {
            return Err(invalid(
                "eval_minutes",
                format!("{} is outside 1..={MAX_EVAL_MINUTES}", self.eval_minutes),
            ));
        }
        for (field, v, min) in [
            ("vwap_window", self.vwap_window, 1),
            ("slope_lag", self.slope_lag, 1),
            ("atr_period", self.atr_period, 1),
            ("atr_rank_window", self.atr_rank_window, 2),
            ("vol_short", self.vol_short, 1),
            ("vol_long", self.vol_long, 2),
        ] {
            if v < min || v > MAX_WINDOW {
                return Err(invalid(
                    field,
                    format!("{v} is outside {min}..={MAX_WINDOW}"),
                ));
            }
        }
        if self.vol_long <= self.vol_short {
            return Err(invalid(
                "vol_long",
                format!("{} must exceed vol_short {}", self.vol_long, self.vol_short),
            ));
        }
        let p = self.atr_percentile_high;
        if !(p.is_finite() && p > 0.5 && p <= 1.0) {
            return Err(invalid(
                "atr_percentile_high",
                format!("{p} is outside (0.5, 1]"),
            ));
        }
        let r = self.vol_ratio_high;
        if !(r.is_finite() && r > 1.0) {
            return Err(invalid(
                "vol_ratio_high",
                format!("{r} must be finite and above 1"),
            ));
        }
        let s = self.slope_trend;
        if !(s.is_finite() && s > 0.0) {
            return Err(invalid(
                "slope_trend",
                format!("{s} must be finite and positive"),
            ));
        }
        let f = self.slope_flat;
        if !(f.is_finite() && f > 0.0 && f <= s) {
            return Err(invalid(
                "slope_flat",
                format!("{f} is outside (0, slope_trend {s}]"),
            ));
        }
        let q = self.vol_ratio_range;
        if !(q.is_finite() && q > 1.0 && q <= r) {
            return Err(invalid(
                "vol_ratio_range",
                format!("{q} is outside (1, vol_ratio_high {r}]"),
            ));
        }
        if self.confirm == 0 {
            return Err(invalid("confirm", "must be at least 1"));
        }
        if self.min_dwell == 0 {
            return Err(invalid("min_dwell", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        RegimeConfig::default().validate().unwrap();
    }

    type Edit = Box<dyn Fn(&mut RegimeConfig)>;

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(&str, Edit)> = vec![
            ("eval_minutes", Box::new(|c| c.eval_minutes = 0)),
            ("eval_minutes", Box::new(|c| c.eval_minutes = u32::MAX)),
            ("vwap_window", Box::new(|c| c.vwap_window = 0)),
            ("slope_lag", Box::new(|c| c.slope_lag = 0)),
            ("atr_period", Box::new(|c| c.atr_period = MAX_WINDOW + 1)),
            ("atr_rank_window", Box::new(|c| c.atr_rank_window = 1)),
            ("vol_short", Box::new(|c| c.vol_short = 0)),
            ("vol_long", Box::new(|c| c.vol_long = c.vol_short)),
            (
                "atr_percentile_high",
                Box::new(|c| c.atr_percentile_high = 0.5),
            ),
            (
                "atr_percentile_high",
                Box::new(|c| c.atr_percentile_high = f64::NAN),
            ),
            ("vol_ratio_high", Box::new(|c| c.vol_ratio_high = 1.0)),
            ("slope_trend", Box::new(|c| c.slope_trend = 0.0)),
            (
                "slope_flat",
                Box::new(|c| c.slope_flat = c.slope_trend * 2.0),
            ),
            (
                "vol_ratio_range",
                Box::new(|c| c.vol_ratio_range = c.vol_ratio_high + 0.1),
            ),
            ("confirm", Box::new(|c| c.confirm = 0)),
            ("min_dwell", Box::new(|c| c.min_dwell = 0)),
        ];
        for (field, edit) in cases {
            let mut c = RegimeConfig::default();
            edit(&mut c);
            let e = c.validate().unwrap_err();
            assert!(
                matches!(&e, RegimeError::InvalidConfig { field: f, .. } if *f == field),
                "{field}: {e}"
            );
            assert!(e.to_string().contains(field));
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        }
    }

    #[test]
    fn a_partial_config_takes_the_defaults_and_unknown_fields_are_refused() {
        let c: RegimeConfig = serde_json::from_str(r#"{"eval_minutes": 15}"#).unwrap();
        assert_eq!(c.eval_minutes, 15);
        assert_eq!(c.vwap_window, RegimeConfig::default().vwap_window);
        assert!(serde_json::from_str::<RegimeConfig>(r#"{"eval_minute": 15}"#).is_err());
    }
}
