//! `grodt paper` end to end in the embedded mode: market-data replays the
//! last bars of the SPY sample through execution, strategy and risk, and the
//! paper fills and final equity equal a backtest of the same bars.

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
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_paper_run_equals_the_backtest_fill_for_fill() {
    let outcome = run(&options("sma_cross", &["fast=5", "slow=20"], 250))
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
    assert_eq!(outcome.bars, 250);
}
