//! Cost and fill models, each a trait with the named implementations. Models
//! return exact tick prices and Decimal money; any f64 inside a model only decides
//! a size of adjustment that is then rounded against the trader.

use grodt_core::rounding::{RoundingMode, div_round, round_raw_to_increment};
use grodt_core::time::month_index;
use grodt_core::{Decimal, Instrument, Liquidity, Price, Quantity, Side};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// What a slippage model sees about one fill.
#[derive(Clone, Copy, Debug)]
pub struct SlippageInput<'a> {
    /// The instrument.
    pub instrument: &'a Instrument,
    /// Buy or sell.
    pub side: Side,
    /// Price before slippage (raw, on tick).
    pub price_raw: i64,
    /// Quantity of this fill (raw).
    pub qty_raw: i64,
    /// Fill quantity / bar volume (0 when the bar has no volume).
    pub volume_share: f64,
}

/// Moves a fill price against the trader. Implementations must never improve it;
/// the engine also clamps, and property tests check the implementations.
pub trait SlippageModel: Send {
    /// The executed raw price (on tick): `>= price` for buys, `<= price` for sells.
    fn apply(&self, input: &SlippageInput<'_>) -> i64;
}

/// Adds `offset_raw` against the trader, rounded outward to the tick.
fn against(input: &SlippageInput<'_>, offset_raw: i128) -> i64 {
    let tick = input.instrument.tick_size.raw();
    let off = i64::try_from(offset_raw.max(0)).unwrap_or(i64::MAX / 4);
    match input.side {
        Side::Buy => round_raw_to_increment(
            input.price_raw.saturating_add(off),
            tick,
            RoundingMode::Ceil,
        )
        .unwrap_or(input.price_raw),
        Side::Sell => round_raw_to_increment(
            input.price_raw.saturating_sub(off),
            tick,
            RoundingMode::Floor,
        )
        .unwrap_or(input.price_raw),
    }
}

/// No slippage.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSlippage;

impl SlippageModel for NoSlippage {
    fn apply(&self, input: &SlippageInput<'_>) -> i64 {
        input.price_raw
    }
}

/// A fixed number of basis points of the price, rounded up to the tick.
#[derive(Clone, Copy, Debug)]
pub struct FixedBps {
    /// Basis points (1 bp = 0.01%).
    pub bps: u32,
}

impl SlippageModel for FixedBps {
    fn apply(&self, input: &SlippageInput<'_>) -> i64 {
        let off = div_round(
            i128::from(input.price_raw.abs()) * i128::from(self.bps),
            10_000,
            RoundingMode::Ceil,
        );
        against(input, off)
    }
}

/// Zipline's volume-share impact: `price_impact * share²` of the price, where
/// share is the fill's fraction of the bar volume.
#[derive(Clone, Copy, Debug)]
pub struct VolumeShare {
    /// Impact coefficient (zipline default 0.1).
    pub price_impact: f64,
}

impl SlippageModel for VolumeShare {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        reason = "model size only; result is rounded to the tick against the trader"
    )]
    fn apply(&self, input: &SlippageInput<'_>) -> i64 {
        let share = input.volume_share.clamp(0.0, 1.0);
        let frac = (self.price_impact * share * share).max(0.0);
        let off = (input.price_raw.abs() as f64 * frac).ceil();
        against(input, if off.is_finite() { off as i128 } else { 0 })
    }
}

/// Half of a quoted bid-ask spread, in basis points of the price.
#[derive(Clone, Copy, Debug)]
pub struct HalfSpread {
    /// Full spread in basis points.
    pub spread_bps: u32,
}

impl SlippageModel for HalfSpread {
    fn apply(&self, input: &SlippageInput<'_>) -> i64 {
        let off = div_round(
            i128::from(input.price_raw.abs()) * i128::from(self.spread_bps),
            20_000,
            RoundingMode::Ceil,
        );
        against(input, off)
    }
}

/// What a commission model sees about one fill.
#[derive(Clone, Copy, Debug)]
pub struct CommissionInput {
    /// Buy or sell.
    pub side: Side,
    /// Quantity.
    pub qty: Quantity,
    /// Execution price.
    pub price: Price,
    /// Exact notional.
    pub notional: Decimal,
    /// Maker or taker.
    pub liquidity: Liquidity,
    /// Fill time (UTC ns), for monthly tiers.
    pub ts: i64,
}

/// A commission and a rebate, both never negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Charge {
    /// Paid.
    pub fee: Decimal,
    /// Received.
    pub rebate: Decimal,
}

/// Commission schedule. `&mut self` lets a model keep running volume (tiers).
pub trait CommissionModel: Send {
    /// The charge for one fill.
    fn charge(&mut self, input: &CommissionInput) -> Charge;
}

/// No commission.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCommission;

impl CommissionModel for NoCommission {
    fn charge(&mut self, _: &CommissionInput) -> Charge {
        Charge::default()
    }
}

/// A rate per share (unit of quantity) with a minimum per fill.
#[derive(Clone, Copy, Debug)]
pub struct PerShare {
    /// Money per unit.
    pub rate: Decimal,
    /// Minimum per fill.
    pub minimum: Decimal,
}

impl CommissionModel for PerShare {
    fn charge(&mut self, i: &CommissionInput) -> Charge {
        Charge {
            fee: (i.qty.to_decimal() * self.rate)
                .max(self.minimum)
                .max(Decimal::ZERO),
            rebate: Decimal::ZERO,
        }
    }
}

/// A fraction of notional (0.001 = 10 bps).
#[derive(Clone, Copy, Debug)]
pub struct Percentage {
    /// Fraction of notional.
    pub rate: Decimal,
}

impl CommissionModel for Percentage {
    fn charge(&mut self, i: &CommissionInput) -> Charge {
        Charge {
            fee: (i.notional.abs() * self.rate).max(Decimal::ZERO),
            rebate: Decimal::ZERO,
        }
    }
}

/// Per-share rate set by the volume already traded this calendar month (UTC):
/// `tiers` are `(monthly volume at which the tier starts, rate)` in ascending order.
#[derive(Clone, Debug)]
pub struct TieredMonthly {
    /// Tier starts and per-share rates, ascending by start.
    pub tiers: Vec<(Decimal, Decimal)>,
    /// Minimum per fill.
    pub minimum: Decimal,
    month: i64,
    volume: Decimal,
}

impl TieredMonthly {
    /// A tiered schedule; the first tier should start at 0.
    pub fn new(tiers: Vec<(Decimal, Decimal)>, minimum: Decimal) -> Self {
        Self {
            tiers,
            minimum,
            month: i64::MIN,
            volume: Decimal::ZERO,
        }
    }
}

impl CommissionModel for TieredMonthly {
    fn charge(&mut self, i: &CommissionInput) -> Charge {
        let m = month_index(i.ts);
        if m != self.month {
            self.month = m;
            self.volume = Decimal::ZERO;
        }
        let rate = self
            .tiers
            .iter()
            .rev()
            .find(|(start, _)| self.volume >= *start)
            .map_or(Decimal::ZERO, |t| t.1);
        self.volume += i.qty.to_decimal();
        Charge {
            fee: (i.qty.to_decimal() * rate)
                .max(self.minimum)
                .max(Decimal::ZERO),
            rebate: Decimal::ZERO,
        }
    }
}

/// Maker/taker fractions of notional; a negative maker rate is a rebate.
#[derive(Clone, Copy, Debug)]
pub struct MakerTaker {
    /// Maker fraction (negative = rebate).
    pub maker: Decimal,
    /// Taker fraction.
    pub taker: Decimal,
}

impl CommissionModel for MakerTaker {
    fn charge(&mut self, i: &CommissionInput) -> Charge {
        let rate = match i.liquidity {
            Liquidity::Maker => self.maker,
            Liquidity::Taker => self.taker,
        };
        let amount = i.notional.abs() * rate;
        if amount >= Decimal::ZERO {
            Charge {
                fee: amount,
                rebate: Decimal::ZERO,
            }
        } else {
            Charge {
                fee: Decimal::ZERO,
                rebate: -amount,
            }
        }
    }
}

/// Delay between a decision and the earliest bar its order may fill on.
pub trait LatencyModel: Send {
    /// Delay in nanoseconds (>= 0), drawing from the run's seeded RNG if random.
    fn delay_ns(&mut self, rng: &mut ChaCha8Rng) -> i64;
}

/// A fixed delay.
#[derive(Clone, Copy, Debug, Default)]
pub struct FixedLatency {
    /// Nanoseconds.
    pub nanos: i64,
}

impl LatencyModel for FixedLatency {
    fn delay_ns(&mut self, _: &mut ChaCha8Rng) -> i64 {
        self.nanos.max(0)
    }
}

/// A delay drawn uniformly from `min..=max` nanoseconds with the run's seeded RNG.
#[derive(Clone, Copy, Debug)]
pub struct UniformLatency {
    /// Lower bound (ns).
    pub min: i64,
    /// Upper bound (ns).
    pub max: i64,
}

impl LatencyModel for UniformLatency {
    fn delay_ns(&mut self, rng: &mut ChaCha8Rng) -> i64 {
        let (lo, hi) = (self.min.max(0), self.max.max(self.min.max(0)));
        rng.random_range(lo..=hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(inst: &Instrument, side: Side, price_raw: i64, share: f64) -> SlippageInput<'_> {
        SlippageInput {
            instrument: inst,
            side,
            price_raw,
            qty_raw: 100,
            volume_share: share,
        }
    }

    #[test]
    fn slippage_goes_against_the_trader_on_tick() {
        let mut inst = Instrument::equity("X", 2, 0);
        inst.tick_size = Price::parse("0.05", 2).unwrap();
        let m = FixedBps { bps: 10 };
        assert_eq!(m.apply(&input(&inst, Side::Buy, 10_000, 0.0)), 10_010);
        assert_eq!(m.apply(&input(&inst, Side::Sell, 10_000, 0.0)), 9_990);
        assert_eq!(m.apply(&input(&inst, Side::Buy, 10_005, 0.0)), 10_020);
        let h = HalfSpread { spread_bps: 10 };
        assert_eq!(h.apply(&input(&inst, Side::Sell, 10_000, 0.0)), 9_995);
        let v = VolumeShare { price_impact: 0.1 };
        assert_eq!(v.apply(&input(&inst, Side::Buy, 10_000, 0.5)), 10_250);
    }

    #[test]
    fn commissions_schedules() {
        let ci = |qty: &str, liq| CommissionInput {
            side: Side::Buy,
            qty: Quantity::parse(qty, 0).unwrap(),
            price: Price::parse("10", 2).unwrap(),
            notional: Quantity::parse(qty, 0).unwrap().to_decimal() * Decimal::TEN,
            liquidity: liq,
            ts: 0,
        };
        let mut ps = PerShare {
            rate: Decimal::new(5, 3),
            minimum: Decimal::ONE,
        };
        assert_eq!(ps.charge(&ci("100", Liquidity::Taker)).fee, Decimal::ONE);
        assert_eq!(
            ps.charge(&ci("1000", Liquidity::Taker)).fee,
            Decimal::new(5, 0)
        );
        let mut mt = MakerTaker {
            maker: Decimal::new(-2, 4),
            taker: Decimal::new(3, 4),
        };
        assert_eq!(
            mt.charge(&ci("1000", Liquidity::Maker)),
            Charge {
                fee: Decimal::ZERO,
                rebate: Decimal::new(2, 0)
            }
        );
        assert_eq!(
            mt.charge(&ci("1000", Liquidity::Taker)).fee,
            Decimal::new(3, 0)
        );
        let mut t = TieredMonthly::new(
            vec![
                (Decimal::ZERO, Decimal::new(1, 2)),
                (Decimal::from(1000), Decimal::new(5, 3)),
            ],
            Decimal::ZERO,
        );
        assert_eq!(t.charge(&ci("1000", Liquidity::Taker)).fee, Decimal::TEN);
        assert_eq!(
            t.charge(&ci("1000", Liquidity::Taker)).fee,
            Decimal::new(5, 0)
        );
        let mut next_month = ci("1000", Liquidity::Taker);
        next_month.ts = 40 * grodt_core::time::NANOS_PER_DAY;
        assert_eq!(t.charge(&next_month).fee, Decimal::TEN);
    }
}
