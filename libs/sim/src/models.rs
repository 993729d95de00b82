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
    /// Basis points (1 bp = 0.01%), fractions allowed (`BacktestConfig::validate`
    /// bounds them to 0..=10,000 with at most 4 decimals).
    pub bps: Decimal,
}

/// `ceil(|price_raw| * bps / (per * 10^scale))`, exact in i128: `bps` has at
/// most 4 decimals and 10,000 bps (validated), so its mantissa stays below 1e8.
fn bps_offset(price_raw: i64, bps: Decimal, per: i128) -> i128 {
    let scale = 10_i128.pow(bps.scale());
    div_round(
        i128::from(price_raw.abs()) * bps.mantissa(),
        per * scale,
        RoundingMode::Ceil,
    )
}

impl SlippageModel for FixedBps {
    fn apply(&self, input: &SlippageInput<'_>) -> i64 {
        against(input, bps_offset(input.price_raw, self.bps, 10_000))
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
    /// Full spread in basis points, fractions allowed (bounded like [`FixedBps`]).
    pub spread_bps: Decimal,
}

impl SlippageModel for HalfSpread {
    fn apply(&self, input: &SlippageInput<'_>) -> i64 {
        against(input, bps_offset(input.price_raw, self.spread_bps, 20_000))
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

/// A rate per share with a minimum per fill and a cap as a fraction of the fill's
/// notional (Interactive Brokers' fixed schedule):
/// `min(max(qty * rate, minimum), maximum_fraction * |notional|)`. The cap wins
/// over the minimum, as the broker's does for very cheap fills.
#[derive(Clone, Copy, Debug)]
pub struct PerShareCapped {
    /// Money per unit.
    pub rate: Decimal,
    /// Minimum per fill.
    pub minimum: Decimal,
    /// Maximum per fill as a fraction of notional (0.01 = 1%).
    pub maximum_fraction: Decimal,
}

impl CommissionModel for PerShareCapped {
    fn charge(&mut self, i: &CommissionInput) -> Charge {
        let cap = i.notional.abs() * self.maximum_fraction;
        Charge {
            fee: (i.qty.to_decimal() * self.rate)
                .max(self.minimum)
                .min(cap)
                .max(Decimal::ZERO),
            rebate: Decimal::ZERO,
        }
    }
}

/// A fraction of notional with a minimum per fill: `max(|notional| * rate, minimum)`.
#[derive(Clone, Copy, Debug)]
pub struct PercentageWithMinimum {
    /// Fraction of notional.
    pub rate: Decimal,
    /// Minimum per fill.
    pub minimum: Decimal,
}

impl CommissionModel for PercentageWithMinimum {
    fn charge(&mut self, i: &CommissionInput) -> Charge {
        Charge {
            fee: (i.notional.abs() * self.rate)
                .max(self.minimum)
                .max(Decimal::ZERO),
            rebate: Decimal::ZERO,
        }
    }
}

/// A fraction of notional set by the notional already traded this calendar month:
/// `tiers` are `(monthly notional at which the tier starts, fraction)`, ascending.
/// The month is the UTC calendar month of the fill's bar time; the running
/// notional starts again at 0 on the first fill of each month. A fill is charged
/// wholly at the tier reached before it (it is not split across a threshold).
#[derive(Clone, Debug)]
pub struct TieredNotional {
    /// Tier starts (monthly notional) and fractions of notional, ascending by start.
    pub tiers: Vec<(Decimal, Decimal)>,
    month: i64,
    notional: Decimal,
}

impl TieredNotional {
    /// A tiered schedule; the first tier should start at 0 (below it the rate is 0).
    pub fn new(tiers: Vec<(Decimal, Decimal)>) -> Self {
        Self {
            tiers,
            month: i64::MIN,
            notional: Decimal::ZERO,
        }
    }

    /// Notional traded so far in the current month.
    pub fn monthly_notional(&self) -> Decimal {
        self.notional
    }
}

impl CommissionModel for TieredNotional {
    fn charge(&mut self, i: &CommissionInput) -> Charge {
        let m = month_index(i.ts);
        if m != self.month {
            self.month = m;
            self.notional = Decimal::ZERO;
        }
        let rate = self
            .tiers
            .iter()
            .rev()
            .find(|(start, _)| self.notional >= *start)
            .map_or(Decimal::ZERO, |t| t.1);
        let notional = i.notional.abs();
        self.notional += notional;
        Charge {
            fee: (notional * rate).max(Decimal::ZERO),
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

/// A log-normal delay: `median * exp(sigma * z)` with `z` standard normal, drawn
/// from the run's seeded RNG (Box-Muller, two uniform draws per order), rounded
/// to the nanosecond and capped at `max` when given. `sigma = 0` gives the median.
#[derive(Clone, Copy, Debug)]
pub struct LogNormalLatency {
    /// Median delay (ns), > 0.
    pub median: i64,
    /// Sigma of the underlying normal, >= 0.
    pub sigma: f64,
    /// Cap (ns), `>= median`; `None` = no cap.
    pub max: Option<i64>,
}

impl LatencyModel for LogNormalLatency {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        reason = "a delay size in ns; rounded and clamped to [0, max]"
    )]
    fn delay_ns(&mut self, rng: &mut ChaCha8Rng) -> i64 {
        // u1 in (0, 1] so ln(u1) is finite; u2 in [0, 1).
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let draw = (self.median.max(0) as f64 * (self.sigma * z).exp()).round();
        let cap = self.max.unwrap_or(i64::MAX);
        // `as` saturates: an infinite draw becomes i64::MAX, then the cap.
        (draw as i64).clamp(0, cap.max(0))
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
        let m = FixedBps {
            bps: Decimal::from(10),
        };
        assert_eq!(m.apply(&input(&inst, Side::Buy, 10_000, 0.0)), 10_010);
        assert_eq!(m.apply(&input(&inst, Side::Sell, 10_000, 0.0)), 9_990);
        assert_eq!(m.apply(&input(&inst, Side::Buy, 10_005, 0.0)), 10_020);
        let h = HalfSpread {
            spread_bps: Decimal::from(10),
        };
        assert_eq!(h.apply(&input(&inst, Side::Sell, 10_000, 0.0)), 9_995);
        let v = VolumeShare { price_impact: 0.1 };
        assert_eq!(v.apply(&input(&inst, Side::Buy, 10_000, 0.5)), 10_250);
    }

    #[test]
    fn fractional_basis_points_are_exact() {
        let inst = Instrument::equity("X", 4, 0);
        // 2.5 bps of 100.0000 is 0.0250: exactly 250 raw, no rounding.
        let m = FixedBps {
            bps: Decimal::new(25, 1),
        };
        assert_eq!(m.apply(&input(&inst, Side::Buy, 1_000_000, 0.0)), 1_000_250);
        assert_eq!(m.apply(&input(&inst, Side::Sell, 1_000_000, 0.0)), 999_750);
        // 0.0001 bps of 100.0000 is 0.000001: ceiled to 1 raw, against the trader.
        let tiny = FixedBps {
            bps: Decimal::new(1, 4),
        };
        assert_eq!(
            tiny.apply(&input(&inst, Side::Buy, 1_000_000, 0.0)),
            1_000_001
        );
        // Half of a 1.5 bps spread is 0.75 bps: 0.0075 of 100.
        let h = HalfSpread {
            spread_bps: Decimal::new(15, 1),
        };
        assert_eq!(h.apply(&input(&inst, Side::Buy, 1_000_000, 0.0)), 1_000_075);
    }

    fn fill(qty: &str, price: &str, ts: i64) -> CommissionInput {
        let qty = Quantity::parse(qty, 0).unwrap();
        let price = Price::parse(price, 2).unwrap();
        CommissionInput {
            side: Side::Buy,
            qty,
            price,
            notional: qty.to_decimal() * price.to_decimal(),
            liquidity: Liquidity::Taker,
            ts,
        }
    }

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn per_share_capped_applies_minimum_then_cap() {
        let mut m = PerShareCapped {
            rate: d("0.005"),
            minimum: d("1"),
            maximum_fraction: d("0.01"),
        };
        // 1000 x 0.005 = 5.00, above the minimum, below 1% of 50,000.
        assert_eq!(m.charge(&fill("1000", "50", 0)).fee, d("5.000"));
        // 100 x 0.005 = 0.50 -> minimum 1.00 (cap 1% of 5,000 = 50).
        assert_eq!(m.charge(&fill("100", "50", 0)).fee, d("1"));
        // 100 shares at 0.50: minimum 1.00 but capped at 1% of 50 = 0.50.
        assert_eq!(m.charge(&fill("100", "0.5", 0)).fee, d("0.50"));
        // 10,000 shares at 0.20: 50.00 per share, capped at 1% of 2,000 = 20.
        assert_eq!(m.charge(&fill("10000", "0.2", 0)).fee, d("20.00"));
        assert_eq!(m.charge(&fill("10000", "0.2", 0)).rebate, Decimal::ZERO);
    }

    #[test]
    fn percentage_with_minimum_charges_at_least_the_minimum() {
        let mut m = PercentageWithMinimum {
            rate: d("0.001"),
            minimum: d("2.5"),
        };
        // 10 bps of 10,000 = 10.
        assert_eq!(m.charge(&fill("100", "100", 0)).fee, d("10.000"));
        // 10 bps of 1,000 = 1 -> minimum 2.5.
        assert_eq!(m.charge(&fill("10", "100", 0)).fee, d("2.5"));
        // A sell has the same absolute notional.
        let mut sell = fill("10", "100", 0);
        sell.side = Side::Sell;
        sell.notional = -sell.notional;
        assert_eq!(m.charge(&sell).fee, d("2.5"));
    }

    #[test]
    fn tiered_notional_steps_down_and_resets_each_utc_month() {
        use grodt_core::time::parse_timestamp;
        let mut m = TieredNotional::new(vec![
            (d("0"), d("0.001")),
            (d("100000"), d("0.0005")),
            (d("1000000"), d("0.0002")),
        ]);
        let jan = parse_timestamp("2024-01-15T10:00:00Z").unwrap();
        let jan_last = parse_timestamp("2024-01-31T23:59:59Z").unwrap();
        let feb = parse_timestamp("2024-02-01T00:00:00Z").unwrap();
        // 0 traded: first tier, 10 bps of 60,000 = 60.
        assert_eq!(m.charge(&fill("600", "100", jan)).fee, d("60.000"));
        // 60,000 traded: still first tier (the fill is not split), 10 bps of 60,000.
        assert_eq!(m.charge(&fill("600", "100", jan)).fee, d("60.000"));
        // 120,000 traded: second tier, 5 bps of 60,000 = 30.
        assert_eq!(m.charge(&fill("600", "100", jan_last)).fee, d("30.0000"));
        assert_eq!(m.monthly_notional(), d("180000"));
        // The first bar of February starts again at the first tier.
        assert_eq!(m.charge(&fill("600", "100", feb)).fee, d("60.000"));
        assert_eq!(m.monthly_notional(), d("60000"));
        // A big month reaches the third tier.
        let mut big = TieredNotional::new(m.tiers.clone());
        assert_eq!(big.charge(&fill("20000", "100", feb)).fee, d("2000.000"));
        assert_eq!(big.charge(&fill("100", "100", feb)).fee, d("2.0000"));
    }

    #[test]
    fn log_normal_latency_is_seeded_capped_and_centred_on_the_median() {
        use rand::SeedableRng;
        let mut m = LogNormalLatency {
            median: 50_000_000,
            sigma: 0.5,
            max: Some(200_000_000),
        };
        let draws = |m: &mut LogNormalLatency, seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..2001).map(|_| m.delay_ns(&mut rng)).collect::<Vec<_>>()
        };
        let a = draws(&mut m, 7);
        assert_eq!(a, draws(&mut m, 7), "same seed, same draws");
        assert_ne!(a, draws(&mut m, 8), "another seed, other draws");
        assert!(a.iter().all(|&x| (0..=200_000_000).contains(&x)));
        assert!(a.contains(&200_000_000), "some draws reach the cap");
        let mut sorted = a.clone();
        sorted.sort_unstable();
        let median = sorted[1000];
        assert!(
            (45_000_000..=55_000_000).contains(&median),
            "sample median {median} near 50 ms"
        );
        // sigma 0: exactly the median, whatever the draw.
        let mut fixed = LogNormalLatency {
            median: 1_234_567,
            sigma: 0.0,
            max: None,
        };
        assert!(draws(&mut fixed, 1).iter().all(|&x| x == 1_234_567));
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
