//! Properties of the exact arithmetic: positions equal the sum of fills, the
//! ledger identity holds after any fill sequence, rounding conserves money.

use grodt_core::fixed::notional;
use grodt_core::rounding::{allocate, div_round, round_money};
use grodt_core::{
    Decimal, Fill, Liquidity, OrderId, Portfolio, Price, Quantity, RoundingMode, Side,
};
use proptest::prelude::*;

fn arb_fill() -> impl Strategy<Value = (bool, i64, i64, i64)> {
    (any::<bool>(), 1i64..5_000, 1i64..1_000_000, 0i64..500)
}

proptest! {
    #[test]
    fn position_is_the_sum_of_fills_and_identity_holds(fills in prop::collection::vec(arb_fill(), 1..60), mark in 1i64..1_000_000) {
        let mut pf = Portfolio::new(Decimal::new(1_000_000, 0), &[(2, 1)]);
        let mut sum = 0i64;
        let mut flows = Decimal::ZERO;
        for (i, (buy, qty, price, fee)) in fills.iter().copied().enumerate() {
            let side = if buy { Side::Buy } else { Side::Sell };
            let qty = Quantity::from_raw(qty, 2).unwrap();
            let price = Price::from_raw(price, 2).unwrap();
            let f = Fill { seq: i as u64, order_id: OrderId(i as u64), instrument: 0, ts: 0, side, qty, price,
                reference_price: price, commission: Decimal::new(fee, 2), rebate: Decimal::ZERO,
                slippage: Decimal::ZERO, liquidity: Liquidity::Taker };
            pf.apply_fill(&f).unwrap();
            sum += side.sign() * qty.raw();
            flows -= Decimal::from(side.sign()) * notional(qty, price, 1).unwrap() + Decimal::new(fee, 2);
            prop_assert_eq!(pf.position(0).unwrap().qty_raw, sum);
            let m = Price::from_raw(mark, 2).unwrap();
            prop_assert!(pf.check_invariants(&[m]).is_ok());
            let (cash, pv, eq) = pf.mark(&[mark], &[2]).unwrap();
            prop_assert_eq!(cash + pv, eq);
        }
        prop_assert_eq!(pf.cash(), Decimal::new(1_000_000, 0) + flows);
    }

    #[test]
    fn a_fill_at_the_mark_without_fees_leaves_equity_unchanged(pre in 0i64..10_000, qty in 1i64..10_000, price in 1i64..10_000_000, buy in any::<bool>()) {
        let mut pf = Portfolio::new(Decimal::new(50_000, 0), &[(3, 1)]);
        let p = Price::from_raw(price, 4).unwrap();
        let mk = |seq, side, q| Fill { seq, order_id: OrderId(seq), instrument: 0, ts: 0, side, qty: Quantity::from_raw(q, 3).unwrap(),
            price: p, reference_price: p, commission: Decimal::ZERO, rebate: Decimal::ZERO, slippage: Decimal::ZERO, liquidity: Liquidity::Maker };
        if pre > 0 { pf.apply_fill(&mk(0, Side::Buy, pre)).unwrap(); }
        let before = pf.mark(&[price], &[4]).unwrap().2;
        pf.apply_fill(&mk(1, if buy { Side::Buy } else { Side::Sell }, qty)).unwrap();
        prop_assert_eq!(pf.mark(&[price], &[4]).unwrap().2, before);
    }

    #[test]
    fn allocation_never_creates_or_destroys_money(cents in -10_000_000i64..10_000_000, extra in 0u32..4, weights in prop::collection::vec(0u64..1000, 1..8)) {
        let total = Decimal::new(cents, 2 + extra);
        let parts = allocate(total, &weights, 2);
        prop_assert_eq!(parts.iter().copied().sum::<Decimal>(), total);
    }

    #[test]
    fn rounding_brackets_the_value(m in -1_000_000_000i64..1_000_000_000, scale in 0u32..8, dp in 0u32..4) {
        let v = Decimal::new(m, scale);
        let lo = round_money(v, dp, RoundingMode::Floor);
        let hi = round_money(v, dp, RoundingMode::Ceil);
        prop_assert!(lo <= v && v <= hi);
        prop_assert!(hi - lo <= Decimal::new(1, dp));
        for mode in [RoundingMode::HalfEven, RoundingMode::HalfAwayFromZero, RoundingMode::TowardZero, RoundingMode::AwayFromZero] {
            let r = round_money(v, dp, mode);
            prop_assert!(r == lo || r == hi);
        }
    }

    #[test]
    fn integer_division_rounding_is_consistent(num in -1_000_000_000i128..1_000_000_000, den in 1i128..100_000) {
        let f = div_round(num, den, RoundingMode::Floor);
        let c = div_round(num, den, RoundingMode::Ceil);
        prop_assert!(f * den <= num && num <= c * den);
        prop_assert!(c - f <= 1);
        let h = div_round(num, den, RoundingMode::HalfEven);
        prop_assert!(h == f || h == c);
        prop_assert!((num - h * den).abs() * 2 <= den);
    }
}
