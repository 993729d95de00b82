//! Lookahead: poisoning every bar after t changes nothing decided at or before t.

use grodt_core::Bar;
use grodt_sim::{BacktestConfig, FillTiming, run_backtest};
use grodt_strategies::{SmaCross, SmaCrossParams};

use crate::sma_parity::spy;

fn poisoned(bars: &[Bar], t: usize, salt: i64) -> Vec<Bar> {
    let mut out = bars.to_vec();
    for (n, b) in out.iter_mut().enumerate().skip(t + 1) {
        // Different but valid bars: prices between 50 and 150 with 10% ranges.
        let base = 500_000 + (n as i64 * 7919 + salt * 104_729).rem_euclid(1_000_000);
        let close = if (n as i64 + salt) % 3 == 0 {
            base - base / 20
        } else {
            base + base / 20
        };
        *b = Bar {
            ts: b.ts,
            open: base,
            high: base + base / 10,
            low: base - base / 10,
            close,
            volume: 1,
        };
    }
    out
}

#[test]
fn poisoning_the_future_changes_nothing_decided_before() {
    let (inst, bars) = spy(0);
    let config = BacktestConfig {
        fill_timing: FillTiming::NextOpen,
        ..BacktestConfig::default()
    };
    let run = |b: Vec<Bar>| {
        let mut s = SmaCross::new(SmaCrossParams {
            long_short: true,
            ..SmaCrossParams::default()
        })
        .unwrap();
        run_backtest(&config, std::slice::from_ref(&inst), &[b], &mut s).unwrap()
    };
    let clean = run(bars.clone());
    for (salt, t) in [(1, 40), (2, 500), (3, 2_000), (4, 4_321), (5, 5_800)] {
        let dirty = run(poisoned(&bars, t, salt));
        let cut = bars[t].ts;
        // Orders decided at or before t, and everything filled at or before t, are identical.
        let decided = |r: &grodt_sim::BacktestResult| {
            r.orders
                .iter()
                .filter(|o| o.created_ts <= cut)
                .map(|o| (o.id, o.request, o.created_ts))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            decided(&clean),
            decided(&dirty),
            "orders decided up to bar {t}"
        );
        let filled = |r: &grodt_sim::BacktestResult| {
            r.fills
                .iter()
                .filter(|f| f.ts <= cut)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(filled(&clean), filled(&dirty), "fills up to bar {t}");
        assert_eq!(
            clean.equity[..=t],
            dirty.equity[..=t],
            "equity up to bar {t}"
        );
        // And the poison did reach the run afterwards.
        assert_ne!(
            clean.equity[t + 1..],
            dirty.equity[t + 1..],
            "poison after {t} has an effect"
        );
    }
}
