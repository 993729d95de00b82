//! Orders of several strategies on one instrument at one decision time.

use grodt_core::{Decimal, Side, Size};
use grodt_sim::{BacktestConfig, CommissionSpec};

use crate::helpers::{Script, Step, bars, dec, fixed, member, plan, run_checked};
use grodt_core::Instrument;

fn step(bar: usize, side: Side, size: Size) -> Step {
    Step {
        bar,
        instrument: 0,
        side,
        size,
    }
}

fn per_share() -> BacktestConfig {
    BacktestConfig {
        starting_cash: Decimal::from(300_000),
        commission: CommissionSpec::PerShare {
            rate: dec("0.01"),
            minimum: dec("1"),
        },
        ..BacktestConfig::default()
    }
}

#[test]
fn offsetting_orders_cross_and_only_the_net_reaches_the_venue() {
    let inst = Instrument::equity("XYZ", 4, 0);
    let series = bars(&[1_000_000, 1_010_000, 1_020_000, 1_030_000, 1_040_000]);
    let third = dec("0.3333");
    let r = run_checked(
        &per_share(),
        &[inst],
        &[series],
        vec![
            member(
                "a",
                Script::new(vec![step(1, Side::Buy, fixed(100))]),
                vec![0],
            ),
            member(
                "b",
                Script::new(vec![step(1, Side::Sell, fixed(60))]),
                vec![0],
            ),
            member(
                "c",
                Script::new(vec![step(1, Side::Buy, fixed(50))]),
                vec![0],
            ),
        ],
        plan(3, vec![third, third, third], true),
    );
    // One venue order of 90: 150 bought, 60 sold.
    assert_eq!(r.account.fills.len(), 1);
    assert_eq!(r.account.fills[0].qty.raw(), 90);
    assert_eq!(r.account.fills[0].side, Side::Buy);
    assert_eq!(r.account.positions, vec![90]);
    // Every strategy holds exactly what it asked for.
    let pos: Vec<i64> = r.members.iter().map(|m| m.positions[0]).collect();
    assert_eq!(pos, vec![100, -60, 50]);
    // The fill's commission (90 × 0.01 = 0.90, minimum 1) is split over the
    // quantities that reached the venue: a and c, pro rata.
    let fees: Vec<Decimal> = r.members.iter().map(|m| m.costs.commission).collect();
    assert_eq!(fees.iter().copied().sum::<Decimal>(), dec("1"));
    assert_eq!(fees[1], Decimal::ZERO, "b crossed entirely");
    // Alone: a 1.00, b 1.00 (minimum), c 1.00 (minimum) = 3.00; netted 1.00.
    assert_eq!(r.netting.commission_saved, dec("2"));
    assert_eq!(r.netting.crossed_raw, vec![120]);
    assert_eq!(r.netting.venue_orders, 1);
}

#[test]
fn without_netting_every_order_reaches_the_venue_and_positions_are_the_same() {
    let inst = Instrument::equity("XYZ", 4, 0);
    let series = bars(&[1_000_000, 1_010_000, 1_020_000, 1_030_000, 1_040_000]);
    let half = dec("0.5");
    let run = |netting: bool| {
        run_checked(
            &per_share(),
            std::slice::from_ref(&inst),
            std::slice::from_ref(&series),
            vec![
                member(
                    "long",
                    Script::new(vec![
                        step(1, Side::Buy, fixed(100)),
                        step(3, Side::Sell, Size::ClosePosition),
                    ]),
                    vec![0],
                ),
                member(
                    "short",
                    Script::new(vec![
                        step(1, Side::Sell, fixed(100)),
                        step(3, Side::Buy, Size::ClosePosition),
                    ]),
                    vec![0],
                ),
            ],
            plan(2, vec![half, half], netting),
        )
    };
    let netted = run(true);
    let alone = run(false);
    assert_eq!(alone.account.fills.len(), 4);
    assert!(
        netted.account.fills.is_empty(),
        "fully offsetting orders never reach the venue"
    );
    for (a, b) in netted.members.iter().zip(&alone.members) {
        assert_eq!(a.positions, b.positions);
        assert_eq!(a.trades.len(), b.trades.len());
    }
    assert_eq!(netted.account.costs.commission, Decimal::ZERO);
    assert_eq!(alone.account.costs.commission, dec("4"));
    assert_eq!(netted.netting.commission_saved, dec("4"));
}
