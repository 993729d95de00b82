//! The regimes and the rules that pick them.

use serde::{Deserialize, Serialize};

/// A market regime. Serialized with stable lowercase names (`trending_up`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// The rolling VWAP rises by at least `slope_trend` ATRs per bar.
    TrendingUp,
    /// The rolling VWAP falls by at least `slope_trend` ATRs per bar.
    TrendingDown,
    /// A flat VWAP without expanding volatility.
    Ranging,
    /// None of the above: a weak slope, or a flat one with volatility picking up.
    Transition,
    /// ATR high in its own history, or short-term volatility well above long-term.
    HighVolatility,
}

impl Regime {
    /// Every regime, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::TrendingUp,
        Self::TrendingDown,
        Self::Ranging,
        Self::Transition,
        Self::HighVolatility,
    ];

    /// The stable name (the serde name): `trending_up`, `trending_down`, `ranging`,
    /// `transition`, `high_volatility`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::TrendingUp => "trending_up",
            Self::TrendingDown => "trending_down",
            Self::Ranging => "ranging",
            Self::Transition => "transition",
            Self::HighVolatility => "high_volatility",
        }
    }
}

impl std::fmt::Display for Regime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which rule of the ordered rule list produced a candidate regime (docs/regimes.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// R1a: `atr_percentile >= atr_percentile_high`.
    AtrPercentileHigh,
    /// R1b: `vol_ratio >= vol_ratio_high`.
    VolRatioHigh,
    /// R2: `slope >= slope_trend`.
    SlopeUp,
    /// R3: `slope <= -slope_trend`.
    SlopeDown,
    /// R4: `|slope| < slope_flat` and `vol_ratio < vol_ratio_range`.
    Flat,
    /// R5: no rule above matched.
    Otherwise,
}

impl Rule {
    /// The regime this rule yields.
    pub const fn regime(self) -> Regime {
        match self {
            Self::AtrPercentileHigh | Self::VolRatioHigh => Regime::HighVolatility,
            Self::SlopeUp => Regime::TrendingUp,
            Self::SlopeDown => Regime::TrendingDown,
            Self::Flat => Regime::Ranging,
            Self::Otherwise => Regime::Transition,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_match_serde() {
        for r in Regime::ALL {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.name()));
            assert_eq!(serde_json::from_str::<Regime>(&json).unwrap(), r);
        }
        assert_eq!(Regime::HighVolatility.to_string(), "high_volatility");
        assert_eq!(
            serde_json::to_string(&Rule::AtrPercentileHigh).unwrap(),
            "\"atr_percentile_high\""
        );
    }
}
