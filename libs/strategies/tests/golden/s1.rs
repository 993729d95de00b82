//! S1 on real and synthetic data: brackets around every entry, exits at the
//! bracket levels, one position at a time.

use grodt_core::time::NANOS_PER_DAY;
use grodt_core::{Bar, Instrument, OrderKind, OrderStatus, Side};
use grodt_sim::{BacktestConfig, BacktestResult, run_backtest};
use grodt_strategies::{S1, S1Params};

use crate::sma_parity::spy;

fn run_s1(inst: &Instrument, bars: Vec<Bar>, params: S1Params) -> BacktestResult {
    let mut s = S1::new(params, inst.price_precision, inst.size_precision).unwrap();
    run_backtest(
        &BacktestConfig::default(),
        std::slice::from_ref(inst),
        &[bars],
        &mut s,
    )
    .unwrap()
}

#[test]
fn every_spy_entry_is_bracketed_and_exits_at_a_bracket_level() {
    let (inst, bars) = spy(0);
    for allow_short in [false, true] {
        let r = run_s1(
            &inst,
            bars.clone(),
            S1Params {
                allow_short,
                ..S1Params::default()
            },
        );
        assert!(
            r.trades.len() > 20,
            "S1 trades on 23 years of SPY: {}",
            r.trades.len()
        );
        let mut pos = 0i64;
        for f in &r.fills {
            let o = &r.orders[f.order_id.0 as usize];
            match o.parent {
                None => {
                    assert_eq!(pos, 0, "entries only when flat");
                    assert_eq!(o.request.kind, OrderKind::Market);
                }
                Some(parent) => {
                    let entry = &r.orders[parent.0 as usize];
                    assert_eq!(entry.status(), OrderStatus::Filled);
                    assert_eq!(
                        f.qty.raw(),
                        entry.filled_raw(),
                        "exit closes the whole entry"
                    );
                    let level = match o.request.kind {
                        OrderKind::Limit { price } => price,
                        OrderKind::Stop { trigger } => trigger,
                        k => panic!("unexpected exit kind {k:?}"),
                    };
                    // At the level, or at a worse open on a gap for the stop, a better one for the target.
                    let gap_ok = f.price == f.reference_price
                        && bars.iter().any(|b| b.ts == f.ts && b.open == f.price.raw());
                    assert!(
                        f.price == level || gap_ok,
                        "exit at {} vs level {level}",
                        f.price
                    );
                    let sibling = &r.orders[o.oco.unwrap().0 as usize];
                    assert_eq!(sibling.status(), OrderStatus::Cancelled);
                }
            }
            pos += f.side.sign() * f.qty.raw();
        }
        if !allow_short {
            assert!(
                r.fills
                    .iter()
                    .all(|f| f.side == Side::Sell
                        || r.orders[f.order_id.0 as usize].parent.is_none())
            );
            assert!(r.positions[0] >= 0);
        }
    }
}

#[test]
fn a_steady_uptrend_is_bought_and_the_target_taken() {
    let inst = Instrument::equity("UP", 2, 0);
    // +0.5% a day with a 1% range: the trend filters pass, the 2-ATR target is reached.
    let mut price = 10_000i64;
    let bars: Vec<Bar> = (0..120)
        .map(|d| {
            let open = price;
            let close = price + price / 200;
            price = close;
            Bar {
                ts: d * NANOS_PER_DAY,
                open,
                high: close + close / 200,
                low: open - open / 200,
                close,
                volume: 1_000,
            }
        })
        .collect();
    let r = run_s1(&inst, bars, S1Params::default());
    assert!(!r.trades.is_empty());
    let t = &r.trades[0];
    assert_eq!(t.direction, Side::Buy);
    assert!(
        t.exit_ts.is_some() && t.gross_pnl > grodt_core::Decimal::ZERO,
        "{t:?}"
    );
    let exit = r.fills.iter().find(|f| f.side == Side::Sell).unwrap();
    assert!(
        matches!(
            r.orders[exit.order_id.0 as usize].request.kind,
            OrderKind::Limit { .. }
        ),
        "the take-profit closed it"
    );
}
