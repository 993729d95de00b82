//! `BacktestConfig::trade_from`: bars before it warm the strategy up without
//! trading, and from there the run trades as the full history would.

use std::path::PathBuf;

use grodt_core::bar::parse_csv;
use grodt_core::{Decimal, Instrument, OrderStatus, Side};
use grodt_sim::{BacktestConfig, run_backtest};
use grodt_strategies::{SmaCross, SmaCrossParams};

#[test]
fn warm_up_bars_trade_nothing_and_leave_the_strategy_where_the_full_run_is() {
    let inst = Instrument::equity("SPY", 4, 0);
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/samples/spy_1d_1998-2021.csv");
    let bars = parse_csv(&std::fs::read_to_string(path).unwrap(), &inst).unwrap();
    let params = SmaCrossParams {
        fast: 10,
        slow: 50,
        ..SmaCrossParams::default()
    };
    let run = |config: &BacktestConfig, bars: &[grodt_core::Bar]| {
        let mut s = SmaCross::new(params).unwrap();
        run_backtest(
            config,
            std::slice::from_ref(&inst),
            &[bars.to_vec()],
            &mut s,
        )
        .unwrap()
    };
    let full = run(&BacktestConfig::default(), &bars);
    // A start where the full run is flat: the bar after its 20th sale.
    let sale = full
        .fills
        .iter()
        .filter(|f| f.side == Side::Sell)
        .nth(20)
        .unwrap();
    let k = bars.iter().position(|b| b.ts > sale.ts).unwrap();
    let start = bars[k].ts;
    let warm = BacktestConfig {
        trade_from: Some(start),
        ..BacktestConfig::default()
    };
    // 60 warm-up bars (more than the slow window), then the rest.
    let w = run(&warm, &bars[k - 60..]);
    // Nothing traded before the start; the curve starts there at the cash.
    assert!(w.fills.iter().all(|f| f.ts >= start));
    assert_eq!(w.equity[0].ts, start);
    assert_eq!(w.equity[0].equity, Decimal::from(100_000));
    assert_eq!(w.equity.len(), bars.len() - k);
    // Orders decided on warm-up bars were refused with the reason.
    let refused: Vec<_> = w
        .orders
        .iter()
        .filter(|o| o.status() == OrderStatus::Rejected)
        .collect();
    assert!(refused.iter().all(|o| o.created_ts < start));
    // From the start it trades when and as the full run does.
    let times = |r: &grodt_sim::BacktestResult| -> Vec<(i64, Side)> {
        r.fills
            .iter()
            .filter(|f| f.ts >= start)
            .map(|f| (f.ts, f.side))
            .collect()
    };
    assert!(w.fills.len() > 20, "{}", w.fills.len());
    assert_eq!(times(&w), times(&full));
    // A cold start at the same bar misses what the warm one catches: its
    // first trade waits for the slow average to fill.
    let cold = run(&BacktestConfig::default(), &bars[k..]);
    assert!(cold.fills[0].ts > w.fills[0].ts);
}
