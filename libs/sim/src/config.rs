//! Backtest configuration: plain data (serde), so a CLI or a service can build it
//! from flags or a request; the cost models are built from it for each run.

use grodt_core::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::SimError;
use crate::models::{
    CommissionModel, FixedBps, FixedLatency, HalfSpread, LatencyModel, LogNormalLatency,
    MakerTaker, NoCommission, NoSlippage, PerShare, PerShareCapped, Percentage,
    PercentageWithMinimum, SlippageModel, TieredMonthly, TieredNotional, UniformLatency,
    VolumeShare,
};

/// When a market order decided on bar t fills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FillTiming {
    /// At the open of the first bar after the decision (plus latency). The default.
    #[default]
    NextOpen,
    /// At the close of the decision bar: the lookahead-prone convention of some
    /// libraries, kept only to reproduce their figures. Applies to market orders
    /// without latency; other orders still wait for the next bar.
    SameBarClose,
}

/// When a resting limit order counts as filled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitFill {
    /// The price must trade through the limit (strictly better). The default.
    #[default]
    TradeThrough,
    /// Touching the limit is enough.
    Touch,
}

/// Day count convention for annual rates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DayCount {
    /// Actual/365.
    #[default]
    Act365,
    /// Actual/360.
    Act360,
}

impl DayCount {
    /// Days in the year of this convention.
    pub fn days(self) -> Decimal {
        match self {
            Self::Act365 => Decimal::from(365),
            Self::Act360 => Decimal::from(360),
        }
    }
}

/// Slippage model choice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum SlippageSpec {
    /// None.
    #[default]
    None,
    /// Fixed basis points.
    FixedBps {
        /// Basis points (fractions allowed: 0..=10,000, at most 4 decimals).
        bps: Decimal,
    },
    /// Zipline volume-share impact.
    VolumeShare {
        /// Impact coefficient.
        price_impact: f64,
    },
    /// Half a bid-ask spread.
    HalfSpread {
        /// Full spread in basis points (fractions allowed, bounded like `FixedBps`).
        spread_bps: Decimal,
    },
}

/// Commission model choice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommissionSpec {
    /// None.
    #[default]
    None,
    /// Per share with a minimum.
    PerShare {
        /// Per unit.
        rate: Decimal,
        /// Minimum per fill.
        minimum: Decimal,
    },
    /// Fraction of notional.
    Percentage {
        /// Fraction.
        rate: Decimal,
    },
    /// Per-share rate tiered by monthly volume.
    TieredMonthly {
        /// `(tier start volume, rate)` ascending.
        tiers: Vec<(Decimal, Decimal)>,
        /// Minimum per fill.
        minimum: Decimal,
    },
    /// Per share with a minimum per fill and a cap as a fraction of notional
    /// (`min(max(qty * rate, minimum), maximum_fraction * notional)`).
    PerShareCapped {
        /// Per unit.
        rate: Decimal,
        /// Minimum per fill.
        minimum: Decimal,
        /// Maximum per fill as a fraction of notional.
        maximum_fraction: Decimal,
    },
    /// Fraction of notional with a minimum per fill.
    PercentageWithMinimum {
        /// Fraction.
        rate: Decimal,
        /// Minimum per fill.
        minimum: Decimal,
    },
    /// Fraction of notional tiered by the notional traded in the UTC calendar
    /// month of the bar time (reset at each month boundary).
    TieredNotional {
        /// `(tier start monthly notional, fraction)`; the first starts at 0, ascending.
        tiers: Vec<(Decimal, Decimal)>,
    },
    /// Maker/taker fractions of notional (negative maker = rebate).
    MakerTaker {
        /// Maker fraction.
        maker: Decimal,
        /// Taker fraction.
        taker: Decimal,
    },
}

/// Latency model choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LatencySpec {
    /// A fixed delay in nanoseconds.
    Fixed {
        /// Nanoseconds.
        nanos: i64,
    },
    /// A uniform random delay drawn with the run's seed.
    Uniform {
        /// Lower bound (ns).
        min: i64,
        /// Upper bound (ns).
        max: i64,
    },
    /// A log-normal random delay drawn with the run's seed:
    /// `median * exp(sigma * z)`, capped at `max`.
    LogNormal {
        /// Median (ns), > 0.
        median: i64,
        /// Sigma of the underlying normal, >= 0 (exact here, f64 in the draw).
        sigma: Decimal,
        /// Cap (ns), >= median; `None` = no cap.
        max: Option<i64>,
    },
}

impl Default for LatencySpec {
    fn default() -> Self {
        Self::Fixed { nanos: 0 }
    }
}

/// Everything that parameterises one run besides instruments, bars and strategy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BacktestConfig {
    /// Starting cash.
    pub starting_cash: Decimal,
    /// Seed of the run's RNG (random latency).
    pub seed: u64,
    /// Market order fill timing.
    pub fill_timing: FillTiming,
    /// Limit fill rule.
    pub limit_fill: LimitFill,
    /// Maximum fraction of a bar's volume one order may take; the rest carries to
    /// later bars. `None` fills any size.
    pub max_participation: Option<Decimal>,
    /// Slippage model.
    pub slippage: SlippageSpec,
    /// Commission model.
    pub commission: CommissionSpec,
    /// Latency model.
    pub latency: LatencySpec,
    /// Annual borrow rate on shorts for instruments without their own.
    pub borrow_rate: Decimal,
    /// Day count of borrow accrual.
    pub borrow_day_count: DayCount,
    /// Annual financing rate charged on negative cash (leverage).
    pub financing_rate: Decimal,
    /// Day count of financing accrual.
    pub financing_day_count: DayCount,
    /// Refuse fills whose initial margin would exceed equity.
    pub enforce_margin: bool,
    /// Decimal places costs (commission, borrow, financing) are rounded to, upward.
    pub cost_dp: u32,
    /// Warm-up: bars before this time (UTC ns) reach the strategy, so its
    /// indicators are warm when trading starts, but the venue refuses every
    /// order decided on them and the equity curve starts here. `None`: the
    /// run trades from its first bar.
    pub trade_from: Option<i64>,
}

impl Default for BacktestConfig {
    fn default() -> Self {
        Self {
            starting_cash: Decimal::from(100_000),
            seed: 0,
            fill_timing: FillTiming::NextOpen,
            limit_fill: LimitFill::TradeThrough,
            max_participation: None,
            slippage: SlippageSpec::None,
            commission: CommissionSpec::None,
            latency: LatencySpec::default(),
            borrow_rate: Decimal::ZERO,
            borrow_day_count: DayCount::Act360,
            financing_rate: Decimal::ZERO,
            financing_day_count: DayCount::Act365,
            enforce_margin: true,
            cost_dp: 8,
            trade_from: None,
        }
    }
}

/// The cost models of one run.
pub struct Models {
    /// Slippage.
    pub slippage: Box<dyn SlippageModel>,
    /// Commission.
    pub commission: Box<dyn CommissionModel>,
    /// Latency.
    pub latency: Box<dyn LatencyModel>,
}

impl BacktestConfig {
    /// Checks values; errors name the field.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |field: &'static str, reason: &str| {
            Err(SimError::InvalidConfig {
                field,
                reason: reason.into(),
            })
        };
        if self.starting_cash <= Decimal::ZERO {
            return bad("starting_cash", "must be positive");
        }
        let bps_ok =
            |b: Decimal| b >= Decimal::ZERO && b <= Decimal::from(10_000) && b.scale() <= 4;
        match self.slippage {
            SlippageSpec::FixedBps { bps } if !bps_ok(bps) => {
                return bad(
                    "slippage.bps",
                    "must be 0..=10000 basis points with at most 4 decimals",
                );
            }
            SlippageSpec::HalfSpread { spread_bps } if !bps_ok(spread_bps) => {
                return bad(
                    "slippage.spread_bps",
                    "must be 0..=10000 basis points with at most 4 decimals",
                );
            }
            _ => {}
        }
        if let Some(p) = self.max_participation
            && (p <= Decimal::ZERO || p > Decimal::ONE)
        {
            return bad("max_participation", "must be in (0, 1]");
        }
        if self.borrow_rate < Decimal::ZERO {
            return bad("borrow_rate", "must be non-negative");
        }
        if self.financing_rate < Decimal::ZERO {
            return bad("financing_rate", "must be non-negative");
        }
        if self.cost_dp > 18 {
            return bad("cost_dp", "must be at most 18");
        }
        match self.latency {
            LatencySpec::Fixed { nanos } if nanos < 0 => {
                return bad("latency", "must be non-negative");
            }
            LatencySpec::Uniform { min, max } if min < 0 || max < min => {
                return bad("latency", "need 0 <= min <= max");
            }
            LatencySpec::LogNormal { median, .. } if median <= 0 => {
                return bad("latency.median", "must be positive");
            }
            LatencySpec::LogNormal { sigma, .. }
                if sigma < Decimal::ZERO || sigma.to_f64().is_none_or(|s| !s.is_finite()) =>
            {
                return bad("latency.sigma", "must be finite and non-negative");
            }
            LatencySpec::LogNormal {
                median,
                max: Some(max),
                ..
            } if max < median => {
                return bad("latency.max", "must be at least the median");
            }
            _ => {}
        }
        if let SlippageSpec::VolumeShare { price_impact } = self.slippage
            && !(price_impact.is_finite() && price_impact >= 0.0)
        {
            return bad("slippage.price_impact", "must be finite and non-negative");
        }
        match &self.commission {
            CommissionSpec::PerShare { rate, minimum }
                if *rate < Decimal::ZERO || *minimum < Decimal::ZERO =>
            {
                return bad(
                    "commission",
                    "per-share rate and minimum must be non-negative",
                );
            }
            CommissionSpec::Percentage { rate } if *rate < Decimal::ZERO => {
                return bad("commission.rate", "must be non-negative");
            }
            CommissionSpec::TieredMonthly { tiers, minimum } => {
                if tiers.is_empty()
                    || tiers.iter().any(|t| t.1 < Decimal::ZERO)
                    || *minimum < Decimal::ZERO
                {
                    return bad(
                        "commission.tiers",
                        "need at least one tier and non-negative rates",
                    );
                }
                if tiers.windows(2).any(|w| w[1].0 <= w[0].0) {
                    return bad("commission.tiers", "tier starts must ascend");
                }
            }
            CommissionSpec::PerShareCapped {
                rate,
                minimum,
                maximum_fraction,
            } => {
                if *rate < Decimal::ZERO || *minimum < Decimal::ZERO {
                    return bad(
                        "commission",
                        "per-share rate and minimum must be non-negative",
                    );
                }
                if *maximum_fraction < Decimal::ZERO {
                    return bad("commission.maximum_fraction", "must be non-negative");
                }
            }
            CommissionSpec::PercentageWithMinimum { rate, minimum } => {
                if *rate < Decimal::ZERO {
                    return bad("commission.rate", "must be non-negative");
                }
                if *minimum < Decimal::ZERO {
                    return bad("commission.minimum", "must be non-negative");
                }
            }
            CommissionSpec::TieredNotional { tiers } => {
                if tiers.is_empty()
                    || tiers
                        .iter()
                        .any(|t| t.0 < Decimal::ZERO || t.1 < Decimal::ZERO)
                {
                    return bad(
                        "commission.tiers",
                        "need at least one tier and non-negative starts and rates",
                    );
                }
                if !tiers[0].0.is_zero() {
                    return bad("commission.tiers", "the first tier must start at 0");
                }
                if tiers.windows(2).any(|w| w[1].0 <= w[0].0) {
                    return bad("commission.tiers", "tier starts must ascend");
                }
            }
            CommissionSpec::MakerTaker { taker, .. } if *taker < Decimal::ZERO => {
                return bad("commission.taker", "must be non-negative");
            }
            _ => {}
        }
        Ok(())
    }

    /// Fresh model instances for a run (stateful models start clean every run).
    pub fn models(&self) -> Models {
        let slippage: Box<dyn SlippageModel> = match self.slippage {
            SlippageSpec::None => Box::new(NoSlippage),
            SlippageSpec::FixedBps { bps } => Box::new(FixedBps { bps }),
            SlippageSpec::VolumeShare { price_impact } => Box::new(VolumeShare { price_impact }),
            SlippageSpec::HalfSpread { spread_bps } => Box::new(HalfSpread { spread_bps }),
        };
        let commission: Box<dyn CommissionModel> = match &self.commission {
            CommissionSpec::None => Box::new(NoCommission),
            CommissionSpec::PerShare { rate, minimum } => Box::new(PerShare {
                rate: *rate,
                minimum: *minimum,
            }),
            CommissionSpec::Percentage { rate } => Box::new(Percentage { rate: *rate }),
            CommissionSpec::TieredMonthly { tiers, minimum } => {
                Box::new(TieredMonthly::new(tiers.clone(), *minimum))
            }
            CommissionSpec::PerShareCapped {
                rate,
                minimum,
                maximum_fraction,
            } => Box::new(PerShareCapped {
                rate: *rate,
                minimum: *minimum,
                maximum_fraction: *maximum_fraction,
            }),
            CommissionSpec::PercentageWithMinimum { rate, minimum } => {
                Box::new(PercentageWithMinimum {
                    rate: *rate,
                    minimum: *minimum,
                })
            }
            CommissionSpec::TieredNotional { tiers } => {
                Box::new(TieredNotional::new(tiers.clone()))
            }
            CommissionSpec::MakerTaker { maker, taker } => Box::new(MakerTaker {
                maker: *maker,
                taker: *taker,
            }),
        };
        let latency: Box<dyn LatencyModel> = match self.latency {
            LatencySpec::Fixed { nanos } => Box::new(FixedLatency { nanos }),
            LatencySpec::Uniform { min, max } => Box::new(UniformLatency { min, max }),
            LatencySpec::LogNormal { median, sigma, max } => Box::new(LogNormalLatency {
                median,
                // Validated finite; an unvalidated out-of-range sigma draws the median.
                sigma: sigma.to_f64().unwrap_or(0.0),
                max,
            }),
        };
        Models {
            slippage,
            commission,
            latency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let cases = [
            BacktestConfig {
                max_participation: Some(Decimal::new(15, 1)),
                ..BacktestConfig::default()
            },
            BacktestConfig {
                latency: LatencySpec::Uniform { min: 5, max: 1 },
                ..BacktestConfig::default()
            },
            BacktestConfig {
                commission: CommissionSpec::Percentage {
                    rate: Decimal::NEGATIVE_ONE,
                },
                ..BacktestConfig::default()
            },
            BacktestConfig {
                commission: CommissionSpec::TieredMonthly {
                    tiers: vec![(Decimal::TEN, Decimal::ONE), (Decimal::ONE, Decimal::ONE)],
                    minimum: Decimal::ZERO,
                },
                ..BacktestConfig::default()
            },
            BacktestConfig {
                slippage: SlippageSpec::VolumeShare {
                    price_impact: f64::NAN,
                },
                ..BacktestConfig::default()
            },
        ];
        let fields = [
            "max_participation",
            "latency",
            "commission.rate",
            "commission.tiers",
            "slippage.price_impact",
        ];
        for (c, f) in cases.iter().zip(fields) {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(f), "{e} should name {f}");
        }
        assert!(BacktestConfig::default().validate().is_ok());
    }

    #[test]
    fn new_cost_options_validate_naming_the_field() {
        let d = |t: &str| t.parse::<Decimal>().unwrap();
        let cases = [
            (
                LatencySpec::LogNormal {
                    median: 0,
                    sigma: d("0.5"),
                    max: None,
                },
                "latency.median",
            ),
            (
                LatencySpec::LogNormal {
                    median: 10,
                    sigma: d("-0.1"),
                    max: None,
                },
                "latency.sigma",
            ),
            (
                LatencySpec::LogNormal {
                    median: 10,
                    sigma: d("0.5"),
                    max: Some(9),
                },
                "latency.max",
            ),
        ];
        for (latency, field) in cases {
            let c = BacktestConfig {
                latency,
                ..BacktestConfig::default()
            };
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e} should name {field}");
        }
        let commissions = [
            (
                CommissionSpec::PerShareCapped {
                    rate: d("0.005"),
                    minimum: d("1"),
                    maximum_fraction: d("-0.01"),
                },
                "commission.maximum_fraction",
            ),
            (
                CommissionSpec::PercentageWithMinimum {
                    rate: d("0.001"),
                    minimum: d("-1"),
                },
                "commission.minimum",
            ),
            (
                CommissionSpec::TieredNotional {
                    tiers: vec![(d("10"), d("0.001"))],
                },
                "commission.tiers",
            ),
            (
                CommissionSpec::TieredNotional {
                    tiers: vec![(d("0"), d("0.001")), (d("0"), d("0.0005"))],
                },
                "commission.tiers",
            ),
            (
                CommissionSpec::TieredNotional { tiers: vec![] },
                "commission.tiers",
            ),
        ];
        for (commission, field) in commissions {
            let c = BacktestConfig {
                commission,
                ..BacktestConfig::default()
            };
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e} should name {field}");
        }
        let ok = BacktestConfig {
            commission: CommissionSpec::TieredNotional {
                tiers: vec![(d("0"), d("0.001")), (d("100000"), d("0.0005"))],
            },
            latency: LatencySpec::LogNormal {
                median: 5,
                sigma: d("0.25"),
                max: Some(5),
            },
            ..BacktestConfig::default()
        };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn every_new_spec_builds_its_model() {
        use crate::models::CommissionInput;
        use grodt_core::{Liquidity, Price, Quantity, Side};
        use rand::SeedableRng;
        let d = |t: &str| t.parse::<Decimal>().unwrap();
        let input = CommissionInput {
            side: Side::Buy,
            qty: Quantity::parse("100", 0).unwrap(),
            price: Price::parse("0.50", 2).unwrap(),
            notional: d("50"),
            liquidity: Liquidity::Taker,
            ts: 0,
        };
        let fee = |commission: CommissionSpec| {
            BacktestConfig {
                commission,
                ..BacktestConfig::default()
            }
            .models()
            .commission
            .charge(&input)
            .fee
        };
        assert_eq!(
            fee(CommissionSpec::PerShareCapped {
                rate: d("0.005"),
                minimum: d("1"),
                maximum_fraction: d("0.01"),
            }),
            d("0.5")
        );
        assert_eq!(
            fee(CommissionSpec::PercentageWithMinimum {
                rate: d("0.001"),
                minimum: d("0.35"),
            }),
            d("0.35")
        );
        assert_eq!(
            fee(CommissionSpec::TieredNotional {
                tiers: vec![(d("0"), d("0.002"))],
            }),
            d("0.1")
        );
        let mut latency = BacktestConfig {
            latency: LatencySpec::LogNormal {
                median: 1_000,
                sigma: Decimal::ZERO,
                max: None,
            },
            ..BacktestConfig::default()
        }
        .models()
        .latency;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        assert_eq!(latency.delay_ns(&mut rng), 1_000);
    }
}
