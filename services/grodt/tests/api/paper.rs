//! `grodt paper` end to end in the embedded mode: the last bars of the SPY
//! sample through execution, strategy and risk, fed in lockstep (exact
//! whatever the machine's load) and by market-data's timed replay; the paper
//! fills and final equity equal a backtest of the same bars.

use std::path::PathBuf;

use grodt::paper::{PaperOptions, run};

fn options(strategy: &str, params: &[&str], bars: usize) -> PaperOptions {
    PaperOptions {
        data: Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../data/samples/spy_1d_1998-2021.csv"),
        ),
        portfolio: None,
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

/// The SPY sample cut short (its last `m` rows dropped, `m` the smallest
/// that works) so that sma_cross 5/20 over its final 400 bars leaves an order
/// working: one decided on the last bar. The run's closing Stop then has an
/// order to cancel through risk and execution.
fn sample_ending_with_a_working_order() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/samples/spy_1d_1998-2021.csv");
    let raw = grodt_backtest::load_csv(&path).expect("sample");
    let series = grodt_backtest::series_from_bars("SPY", &raw, false).expect("series");
    let text = std::fs::read_to_string(&path).expect("sample");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() - 1, series.bars.len(), "one row per bar");
    let params: std::collections::BTreeMap<String, String> = [("fast", "5"), ("slow", "20")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
    let config = grodt_sim::config::BacktestConfig {
        starting_cash: grodt_core::Decimal::from(100_000),
        ..Default::default()
    };
    let m = (0..300)
        .find(|&m| {
            let end = series.bars.len() - m;
            let bars = &series.bars[end - 400..end];
            let mut s = grodt_strategies::registry::build("sma_cross", &params, &series.instrument)
                .unwrap();
            let r = grodt_sim::run_backtest(
                &config,
                std::slice::from_ref(&series.instrument),
                &[bars.to_vec()],
                &mut *s,
            )
            .unwrap();
            r.orders.iter().any(|o| !o.status().is_terminal())
        })
        .expect("a cut of the sample ends with an order decided on its last bar");
    let dir = tempfile::tempdir().unwrap().keep();
    let cut = dir.join("spy_1d_1998-2021.csv");
    std::fs::write(&cut, lines[..lines.len() - m].join("\n") + "\n").unwrap();
    cut
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_paper_run_equals_the_backtest_fill_for_fill() {
    let mut o = options("sma_cross", &["fast=5", "slow=20"], 400);
    o.data = Some(sample_ending_with_a_working_order());
    let outcome = run(&o).await.expect("the paper run completes");
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
    // The order decided on the last bar, cancelled by the closing Stop: the
    // cancellation went strategy -> risk -> execution (the run waits until
    // execution holds no working order).
    assert!(outcome.backtest_open_orders >= 1, "{}", outcome.render());
    assert_eq!(
        outcome.cancelled_at_end,
        outcome.backtest_open_orders,
        "{}",
        outcome.render()
    );
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

/// The example portfolio (three strategies, inverse-volatility allocation,
/// monthly rebalancing, netting, whole-book limits) over its first 1,100
/// days, through the seven embedded services: execution runs the desk, the
/// strategy service the three strategies, risk between them. Every
/// strategy's fills at execution and the account's equity equal `grodt
/// backtest --portfolio` of the same bars; the window holds bars on which
/// the strategies' orders were netted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_portfolio_on_paper_equals_its_backtest_through_the_services() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let text = std::fs::read_to_string(examples.join("portfolio.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap().keep();
    let mut file = text.clone();
    // Each CSV cut to its header and first 1,100 rows, next to a copy of the file.
    for rel in [
        "../data/samples/spy_1d_1998-2021.csv",
        "../data/samples/aapl_1d_1998-2021_split_adjusted.csv",
    ] {
        let csv = std::fs::read_to_string(examples.join(rel)).unwrap();
        let name = rel.rsplit('/').next().unwrap();
        let cut: Vec<&str> = csv.lines().take(1_101).collect();
        std::fs::write(dir.join(name), cut.join("\n") + "\n").unwrap();
        file = file.replace(rel, name);
    }
    assert_ne!(file, text, "the file names its CSVs");
    let path = dir.join("portfolio.toml");
    std::fs::write(&path, file).unwrap();
    let mut o = options("sma_cross", &[], 0);
    o.data = None;
    o.portfolio = Some(path.clone());
    let outcome = grodt::paper_portfolio::run(&o, &path)
        .await
        .expect("the portfolio paper run completes");
    assert!(
        outcome.divergence().is_empty(),
        "paper differs from backtest:\n{}",
        outcome.render()
    );
    assert_eq!(outcome.timestamps, 1_100);
    assert_eq!(outcome.late_orders, 0, "lockstep: no order misses its bar");
    for m in &outcome.members {
        assert!(!m.paper.is_empty(), "{} trades: {}", m.id, outcome.render());
    }
    assert!(
        outcome.commission_saved > grodt_core::Decimal::ZERO,
        "orders were netted in the window: {}",
        outcome.render()
    );
}
