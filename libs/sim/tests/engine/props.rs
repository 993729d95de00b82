//! Properties over random bars, random orders and random cost models.

use grodt_core::{
    Bar, Decimal, Instrument, OrderKind, OrderRequest, Side, Size, TimeInForce, TrailingOffset,
};
use grodt_sim::models::{FixedBps, HalfSpread, SlippageInput, SlippageModel, VolumeShare};
use grodt_sim::{BacktestConfig, CommissionSpec, SlippageSpec, run_backtest};
use proptest::prelude::*;

use crate::helpers::{Action, Script, bar, p, q};

fn arb_bars() -> impl Strategy<Value = Vec<Bar>> {
    prop::collection::vec(
        (-300i64..300, 0i64..200, 0i64..200, -1i64..2, 0i64..5_000),
        5..60,
    )
    .prop_map(|steps| {
        let mut price = 10_000i64;
        steps
            .into_iter()
            .enumerate()
            .map(|(d, (mv, up, down, dir, vol))| {
                let open = price;
                let close = (price + mv).max(100);
                let high = open.max(close) + up;
                let low = (open.min(close) - down).max(50);
                price = close + dir * 10;
                bar(d as i64, open, high, low, close, vol)
            })
            .collect()
    })
}

fn arb_request() -> impl Strategy<Value = OrderRequest> {
    (
        any::<bool>(),
        1i64..300,
        0u8..6,
        -400i64..400,
        0u8..4,
        any::<bool>(),
    )
        .prop_map(|(buy, qty, kind, off, tif, all_in)| {
            let side = if buy { Side::Buy } else { Side::Sell };
            let size = if all_in {
                Size::EquityFraction(Decimal::new(5, 1))
            } else {
                q(qty)
            };
            let lvl = p((10_000 + off).max(100));
            let kind = match kind {
                0 => OrderKind::Market,
                1 => OrderKind::Limit { price: lvl },
                2 => OrderKind::Stop { trigger: lvl },
                3 => OrderKind::StopLimit {
                    trigger: lvl,
                    limit: p((10_000 + off / 2).max(100)),
                },
                4 => OrderKind::TrailingStop {
                    offset: TrailingOffset::Amount(p(off.abs().max(1))),
                },
                _ => OrderKind::TrailingStop {
                    offset: TrailingOffset::Percent(Decimal::new(2, 2)),
                },
            };
            let tif = [
                TimeInForce::Gtc,
                TimeInForce::Day,
                TimeInForce::Ioc,
                TimeInForce::Fok,
            ][tif as usize];
            OrderRequest {
                instrument: 0,
                side,
                size,
                kind,
                tif,
            }
        })
}

fn arb_config() -> impl Strategy<Value = BacktestConfig> {
    (0u8..4, 0u8..4, prop::option::of(1i64..10), 0u64..1000).prop_map(|(s, c, part, seed)| {
        BacktestConfig {
            seed,
            slippage: [
                SlippageSpec::None,
                SlippageSpec::FixedBps {
                    bps: Decimal::from(7),
                },
                SlippageSpec::VolumeShare { price_impact: 0.1 },
                SlippageSpec::HalfSpread {
                    spread_bps: Decimal::from(15),
                },
            ][s as usize]
                .clone(),
            commission: [
                CommissionSpec::None,
                CommissionSpec::PerShare {
                    rate: Decimal::new(5, 3),
                    minimum: Decimal::ONE,
                },
                CommissionSpec::Percentage {
                    rate: Decimal::new(1, 3),
                },
                CommissionSpec::MakerTaker {
                    maker: Decimal::new(-2, 4),
                    taker: Decimal::new(3, 4),
                },
            ][c as usize]
                .clone(),
            max_participation: part.map(|x| Decimal::new(x, 1)),
            borrow_rate: Decimal::new(5, 2),
            financing_rate: Decimal::new(4, 2),
            ..BacktestConfig::default()
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn accounting_holds_on_random_runs(bars in arb_bars(), orders in prop::collection::vec((0usize..50, arb_request()), 0..25), config in arb_config()) {
        let plan: Vec<_> = orders.into_iter().map(|(k, r)| (k, Action::Submit(r))).collect();
        let mut inst = Instrument::equity("X", 2, 0);
        inst.margin.initial = Decimal::new(5, 1);
        let mut s = Script { plan, ..Script::default() };
        let r = run_backtest(&config, &[inst], std::slice::from_ref(&bars), &mut s).unwrap();
        // cash + position value == equity at every bar, computed independently in the strategy,
        // and the recorded curve agrees (nothing fills after on_bar with next-open fills).
        prop_assert_eq!(s.equity_checks.len(), bars.len());
        for (n, (ts, reported, independent)) in s.equity_checks.iter().enumerate() {
            prop_assert_eq!(reported, independent);
            prop_assert_eq!(r.equity[n].ts, *ts);
            prop_assert_eq!(&r.equity[n].equity, reported);
        }
        prop_assert_eq!(r.last.cash + r.last.position_value, r.last.equity);
        // Position equals the sum of fills.
        let sum: i64 = r.fills.iter().map(|f| f.side.sign() * f.qty.raw()).sum();
        prop_assert_eq!(r.positions[0], sum);
        // Fees never negative; slippage never improves the price; limits never worse than the limit.
        for f in &r.fills {
            prop_assert!(f.commission >= Decimal::ZERO && f.rebate >= Decimal::ZERO && f.slippage >= Decimal::ZERO);
            match f.side {
                Side::Buy => prop_assert!(f.price >= f.reference_price),
                Side::Sell => prop_assert!(f.price <= f.reference_price),
            }
            let o = &r.orders[f.order_id.0 as usize];
            prop_assert!(f.ts > o.created_ts, "filled no earlier than the next bar");
            if let OrderKind::Limit { price } = o.request.kind {
                match f.side {
                    Side::Buy => prop_assert!(f.price <= price),
                    Side::Sell => prop_assert!(f.price >= price),
                }
            }
            let bar = bars.iter().find(|b| b.ts == f.ts).unwrap();
            if f.slippage.is_zero() {
                prop_assert!(f.price.raw() >= bar.low && f.price.raw() <= bar.high, "fill inside the bar's range");
            }
        }
        // Orders never overfill.
        for o in &r.orders {
            if let Some(qty) = o.quantity {
                prop_assert!(o.filled_raw() <= qty.raw());
            }
        }
        // The money identity: equity = start + trade PnL - fees + rebates - borrow - financing.
        let gross: Decimal = r.trades.iter().map(|t| t.gross_pnl).sum();
        let c = r.costs;
        prop_assert_eq!(r.last.equity, config.starting_cash + gross - c.commission + c.rebates - c.borrow - c.financing);
        let fees: Decimal = r.trades.iter().map(|t| t.fees).sum();
        prop_assert_eq!(fees, c.commission - c.rebates);
        for t in &r.trades {
            prop_assert!(t.mae <= Decimal::ZERO && t.mfe >= Decimal::ZERO);
        }
        // Deterministic bit for bit.
        let mut s2 = Script { plan: s.plan.clone(), ..Script::default() };
        let mut inst = Instrument::equity("X", 2, 0);
        inst.margin.initial = Decimal::new(5, 1);
        let r2 = run_backtest(&config, &[inst], &[bars], &mut s2).unwrap();
        prop_assert_eq!(r, r2);
    }

    #[test]
    fn slippage_models_never_improve_the_price(price in 1i64..10_000_000, tick in 1i64..50, share in 0.0f64..1.5, bps in 0u32..500, buy in any::<bool>()) {
        let mut inst = Instrument::equity("X", 2, 0);
        inst.tick_size = p(tick);
        let price = price - price % tick;
        let side = if buy { Side::Buy } else { Side::Sell };
        let input = SlippageInput { instrument: &inst, side, price_raw: price, qty_raw: 10, volume_share: share };
        let models: [Box<dyn SlippageModel>; 3] = [Box::new(FixedBps { bps: Decimal::from(bps) }), Box::new(VolumeShare { price_impact: 0.1 }), Box::new(HalfSpread { spread_bps: Decimal::from(bps) })];
        for m in &models {
            let out = m.apply(&input);
            prop_assert_eq!(out % tick, 0, "on tick");
            match side {
                Side::Buy => prop_assert!(out >= price),
                Side::Sell => prop_assert!(out <= price),
            }
        }
    }
}
