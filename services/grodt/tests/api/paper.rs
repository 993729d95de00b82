//! `grodt paper` end to end in the embedded mode: the last bars of the SPY
//! sample through execution, strategy and risk, fed in lockstep (exact
//! whatever the machine's load) and by market-data's timed replay; the paper
//! fills and final equity equal a backtest of the same bars.

use std::path::PathBuf;

use grodt::paper::{PaperOptions, run};

fn options(strategy: &str, params: &[&str], bars: usize) -> PaperOptions {
    PaperOptions {
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/samples/spy_1d_1998-2021.csv"),
        symbol: None,
        timeframe: None,
        strategy: strategy.into(),
        params: params.iter().map(|p| (*p).to_owned()).collect(),
        cash: "100000".parse().unwrap(),
        fractional: false,
        bars,
        bar_ms: 40,
        data_dir: Some(tempfile::tempdir().unwrap().keep()),
        timed: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_paper_run_equals_the_backtest_fill_for_fill() {
    let outcome = run(&options("sma_cross", &["fast=5", "slow=20"], 400))
        .await
        .expect("the paper run completes");
    let (differ, gap) = outcome.divergence();
    assert!(
        differ.is_empty() && gap.is_zero(),
        "paper differs from backtest:\n{}",
        outcome.render()
    );
    assert!(
        outcome.fills.len() >= 6,
        "a real number of fills: {}",
        outcome.render()
    );
    assert_eq!(outcome.bars, 400);
    assert_eq!(outcome.late_orders, 0, "lockstep: no order misses its bar");
}

/// market-data's timed replay, at a pace the pipeline keeps up with on an
/// idle machine; under load an order can miss its bar, which execution then
/// counts as late: a divergence is only acceptable when accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_replay_equals_the_backtest_or_counts_its_late_orders() {
    let mut o = options("sma_cross", &["fast=3", "slow=10"], 120);
    o.timed = true;
    o.bar_ms = 120;
    let outcome = run(&o).await.expect("the paper run completes");
    let (differ, gap) = outcome.divergence();
    if !(differ.is_empty() && gap.is_zero()) {
        assert!(
            outcome.late_orders > 0,
            "a divergence without a late order:\n{}",
            outcome.render()
        );
    }
    assert!(!outcome.backtest_fills.is_empty(), "{}", outcome.render());
}
