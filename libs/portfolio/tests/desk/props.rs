//! Properties over random portfolios: the sub-ledgers always add up to the
//! account, and netting never changes a position nor raises the commission.

use grodt_core::{Decimal, Instrument, Side, Size};
use grodt_sim::{BacktestConfig, CommissionSpec};
use proptest::prelude::*;

use grodt_portfolio::allocation::{Allocator, Method, Schedule};

use crate::helpers::{Script, Step, bars, fixed, member, plan, run_checked};

fn weights(n: usize) -> Vec<Decimal> {
    let mut w = vec![Decimal::ONE / Decimal::from(n); n];
    let rest: Decimal = w[1..].iter().copied().sum();
    w[0] = Decimal::ONE - rest;
    w
}

fn steps(fractions: bool) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0usize..12, 0usize..2, any::<bool>(), 0u8..4, 1i64..300),
        0..8,
    )
    .prop_map(move |v| {
        v.into_iter()
            .map(|(bar, instrument, buy, kind, q)| Step {
                bar,
                instrument,
                side: if buy { Side::Buy } else { Side::Sell },
                size: match kind {
                    0 | 1 => fixed(q),
                    2 => Size::ClosePosition,
                    _ if fractions => Size::EquityFraction(Decimal::new(q % 100 + 1, 3)),
                    _ => fixed(q),
                },
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn books_add_up_whatever_the_orders(
        scripts in prop::collection::vec(steps(true), 2..5),
        rate in 0i64..50,
        netting in any::<bool>(),
        method in 0u8..4,
        overlays in any::<bool>(),
    ) {
        let insts = [Instrument::equity("A", 4, 0), Instrument::equity("B", 4, 0)];
        let a: Vec<i64> = (0..16).map(|k| 1_000_000 + 7_000 * ((k * 5) % 7)).collect();
        let b: Vec<i64> = (0..16).map(|k| 500_000 + 3_000 * ((k * 3) % 5)).collect();
        let config = BacktestConfig {
            starting_cash: Decimal::from(100_000),
            commission: CommissionSpec::PerShare { rate: Decimal::new(rate, 3), minimum: Decimal::ONE },
            slippage: grodt_sim::SlippageSpec::FixedBps { bps: Decimal::from(rate % 7) },
            // Shorts pay borrow and leveraged members financing, daily: the
            // accruals must land in the sub-ledgers to the cent.
            borrow_rate: Decimal::new(rate % 9, 2),
            financing_rate: Decimal::new(rate % 5, 2),
            ..BacktestConfig::default()
        };
        let n = scripts.len();
        // Every other member rests its fixed-size orders at the venue.
        let members = scripts.iter().enumerate().map(|(k, s)| {
            let script = if k % 2 == 1 { Script::resting(s.clone()) } else { Script::new(s.clone()) };
            member(&format!("m{k}"), script, vec![0, 1])
        }).collect();
        // run_checked asserts the books after every bar and timestamp.
        // Capital moves every day (and overlays leave some unallocated): the
        // transfers must keep the books adding up too.
        let mut p = plan(n, weights(n), netting);
        p.schedule = Schedule::Daily;
        p.lookback = 5;
        p.allocator = match method {
            0 => Allocator::new(Method::InverseVolatility { lookback: 5 }, Vec::new(), n).unwrap(),
            1 => Allocator::new(Method::Performance { lookback: 5 }, Vec::new(), n).unwrap(),
            2 => Allocator::new(
                Method::Drawdown { threshold: Decimal::new(1, 2), cut: Decimal::ZERO, recover: Decimal::new(5, 3), base: None },
                Vec::new(),
                n,
            ).unwrap(),
            _ => p.allocator,
        };
        if overlays {
            p.vol_target = Some((Decimal::new(1, 3), Decimal::ONE));
            p.correlation_cut = Some((Decimal::new(3, 1), Decimal::ONE));
        }
        let r = run_checked(&config, &insts, &[bars(&a), bars(&b)], members, p);
        // Capital is only moved, never made: what was allocated, moved and
        // left unallocated adds up to the starting cash.
        let initial: Decimal = r.members.iter().map(|m| m.initial).sum();
        let moved: Decimal = r.members.iter().map(|m| m.transferred).sum();
        prop_assert_eq!(initial + moved + r.reserve, config.starting_cash);
        let sum: Decimal = r.members.iter().map(|m| m.costs.commission).sum();
        prop_assert_eq!(sum, r.account.costs.commission);
        let borrow: Decimal = r.members.iter().map(|m| m.costs.borrow + m.costs.financing).sum();
        prop_assert_eq!(borrow, r.account.costs.borrow + r.account.costs.financing);
    }

    /// Sizes that do not depend on equity (which netting's savings raise).
    #[test]
    fn netting_changes_no_position_and_never_costs_more(
        scripts in prop::collection::vec(steps(false), 2..5),
        rate in 0i64..50,
        minimum in 0i64..3,
    ) {
        let insts = [Instrument::equity("A", 4, 0), Instrument::equity("B", 4, 0)];
        let a: Vec<i64> = (0..16).map(|k| 1_000_000 + 7_000 * ((k * 5) % 7)).collect();
        let b: Vec<i64> = (0..16).map(|k| 500_000 + 3_000 * ((k * 3) % 5)).collect();
        let series = [bars(&a), bars(&b)];
        let config = BacktestConfig {
            starting_cash: Decimal::from(1_000_000),
            commission: CommissionSpec::PerShare { rate: Decimal::new(rate, 3), minimum: Decimal::from(minimum) },
            ..BacktestConfig::default()
        };
        let n = scripts.len();
        let w = weights(n);
        let run = |netting: bool| {
            let members = scripts.iter().enumerate().map(|(k, s)| {
                member(&format!("m{k}"), Script::new(s.clone()), vec![0, 1])
            }).collect();
            // run_checked asserts the books after every bar and timestamp.
            run_checked(&config, &insts, &series, members, plan(n, w.clone(), netting))
        };
        let netted = run(true);
        let alone = run(false);
        for (x, y) in netted.members.iter().zip(&alone.members) {
            prop_assert_eq!(&x.positions, &y.positions);
        }
        prop_assert_eq!(&netted.account.positions, &alone.account.positions);
        prop_assert!(netted.account.costs.commission <= alone.account.costs.commission,
            "netted {} > alone {}", netted.account.costs.commission, alone.account.costs.commission);
    }
}
