//! Temporal isolation: a strategy whose every decision depends on everything it
//! can see decides exactly the same up to bar t when every bar after t changes.

use std::hash::{DefaultHasher, Hash, Hasher};

use grodt_core::{Bar, Decimal, Instrument, OrderRequest, Side};
use grodt_sim::{
    BacktestConfig, BacktestResult, Context, ExactLedger, F64Ledger, Strategy, run_backtest,
    run_backtest_with,
};
use proptest::prelude::*;

use crate::helpers::{bar, p, q};

/// Hashes all it can see and trades on the hash.
#[derive(Default)]
struct Nosy {
    log: Vec<(i64, u64)>,
}

impl Strategy for Nosy {
    fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, bar: &Bar) {
        let mut h = DefaultHasher::new();
        for i in 0..ctx.instruments().len() {
            ctx.history(i).hash(&mut h);
            ctx.position(i).hash(&mut h);
        }
        ctx.cash().hash(&mut h);
        ctx.equity().hash(&mut h);
        ctx.open_orders().count().hash(&mut h);
        let x = h.finish();
        self.log.push((ctx.now(), x));
        let side = if x & 1 == 0 { Side::Buy } else { Side::Sell };
        match x % 5 {
            0 => {
                ctx.submit(OrderRequest::market(
                    instrument,
                    side,
                    q(1 + (x >> 8) as i64 % 20),
                ));
            }
            1 => {
                let off = (x >> 16) as i64 % 200;
                let px = if side == Side::Buy {
                    bar.close - off
                } else {
                    bar.close + off
                };
                ctx.submit(OrderRequest::limit(instrument, side, q(5), p(px.max(1))));
            }
            _ => {}
        }
    }
}

fn walk(seed: u64, n: usize) -> Vec<Bar> {
    let mut x = seed | 1;
    let mut price = 10_000i64;
    (0..n)
        .map(|d| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let open = price;
            let close = (open + (x % 201) as i64 - 100).max(200);
            price = close;
            bar(
                d as i64,
                open,
                open.max(close) + (x >> 20) as i64 % 50,
                open.min(close) - (x >> 30) as i64 % 50,
                close,
                100 + (x >> 40) as i64 % 1_000,
            )
        })
        .collect()
}

fn run(bars: &[Bar]) -> (BacktestResult, Vec<(i64, u64)>) {
    let mut s = Nosy::default();
    let r = run_backtest(
        &BacktestConfig::default(),
        &[Instrument::equity("X", 2, 0)],
        &[bars.to_vec()],
        &mut s,
    )
    .unwrap();
    (r, s.log)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn changing_bars_after_t_changes_nothing_up_to_t(seed in any::<u64>(), poison in any::<u64>(), t in 0usize..79) {
        let bars = walk(seed, 80);
        let mut dirty = bars.clone();
        let other = walk(poison, 80);
        for k in t + 1..80 {
            dirty[k] = Bar { ts: bars[k].ts, ..other[k] };
        }
        let (a, la) = run(&bars);
        let (b, lb) = run(&dirty);
        let cut = bars[t].ts;
        prop_assert_eq!(&la[..=t], &lb[..=t], "decisions up to t");
        prop_assert!(la[t + 1..] != lb[t + 1..] || bars[t + 1..] == dirty[t + 1..], "the poison is visible after t");
        let upto = |r: &BacktestResult| r.orders.iter().filter(|o| o.created_ts <= cut).cloned().map(|mut o| { o.quantity = None; (o.id, o.request) }).collect::<Vec<_>>();
        prop_assert_eq!(upto(&a), upto(&b));
        let fills = |r: &BacktestResult| r.fills.iter().filter(|f| f.ts <= cut).cloned().collect::<Vec<_>>();
        prop_assert_eq!(fills(&a), fills(&b));
        prop_assert_eq!(&a.equity[..=t], &b.equity[..=t]);
    }
}

#[test]
fn the_f64_benchmark_ledger_tracks_the_exact_one() {
    let bars = walk(42, 20_000);
    let inst = [Instrument::equity("X", 2, 0)];
    let config = BacktestConfig::default();
    let params = grodt_strategies::SmaCrossParams {
        long_short: true,
        ..Default::default()
    };
    let mut s = grodt_strategies::SmaCross::new(params).unwrap();
    let exact = run_backtest_with::<ExactLedger>(
        &config,
        config.models(),
        &inst,
        std::slice::from_ref(&bars),
        &mut s,
    )
    .unwrap();
    let mut s = grodt_strategies::SmaCross::new(params).unwrap();
    let approx =
        run_backtest_with::<F64Ledger>(&config, config.models(), &inst, &[bars], &mut s).unwrap();
    assert!(exact.fills.len() > 500);
    assert_eq!(exact.fills.len(), approx.fills.len());
    let e: f64 = exact.last.equity.try_into().unwrap();
    assert!(
        (e - approx.last.equity).abs() < 1e-4,
        "{e} vs {}",
        approx.last.equity
    );
    assert!(exact.last.equity > Decimal::ZERO);
}
