//! A portfolio through the service: the strategy service runs the members
//! of examples/portfolio.toml (`[strategy.portfolio]`: a long SPY trend, a
//! short SPY trend and an AAPL/SPY pair, each an instance with the capital
//! the desk opens its sub-ledger with), the execution side is played by the
//! portfolio broker (the desk: allocation, monthly rebalancing, whole-book
//! limits, netting), reports and intents cross the bus, and the result
//! equals `run_portfolio` over the same bars: every member's fills, orders,
//! curves and positions, the account, rebalances and netting. Over Redis and
//! Postgres, and embedded; the service restarts halfway (the members rebuilt
//! from its journal, the file's deployment found made).

use std::path::PathBuf;

use grodt_backtest::portfolio::load_portfolio_series;
use grodt_core::{Bar, Decimal, Instrument};
use grodt_paper::desk::{PortfolioBroker, Seating};
use grodt_portfolio::file::PortfolioFile;
use grodt_portfolio::{Member, PortfolioResult, run_portfolio};
use grodt_proto::v1;
use grodt_sim::config::BacktestConfig;
use grodt_strategy::{PortfolioConfig, StrategySettings};

use super::helpers::{Env, Exec, dec, instruments_of};

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/portfolio.toml")
}

/// The example's engine config (its cash and `[costs]`), as `grodt backtest
/// --portfolio` builds it.
fn config(file: &PortfolioFile) -> BacktestConfig {
    file.engine_config().expect("the example's costs read")
}

/// The example's first timestamps: its file, instruments, bars cut there,
/// and each strategy's instrument indices.
pub struct Example {
    pub path: PathBuf,
    pub file: PortfolioFile,
    pub insts: Vec<Instrument>,
    pub bars: Vec<Vec<Bar>>,
    pub index: Vec<Vec<usize>>,
}

impl Example {
    /// The first `timestamps` timestamps of examples/portfolio.toml.
    pub fn first(timestamps: usize) -> Self {
        let path = example_path();
        let file = PortfolioFile::parse(&std::fs::read_to_string(&path).expect("example"))
            .expect("parses");
        let series = load_portfolio_series(&file, path.parent().expect("dir")).expect("samples");
        let ts = grodt_backtest::portfolio::timestamps(&series);
        let cutoff = ts[timestamps - 1];
        let insts: Vec<Instrument> = series.iter().map(|s| s.instrument.clone()).collect();
        let bars: Vec<Vec<Bar>> = series
            .iter()
            .map(|s| s.bars.iter().copied().filter(|b| b.ts <= cutoff).collect())
            .collect();
        let symbols = file.symbols();
        let index = file
            .strategies
            .iter()
            .map(|e| {
                e.symbols
                    .iter()
                    .map(|s| symbols.iter().position(|x| x == s).expect("in [data]"))
                    .collect()
            })
            .collect();
        Self {
            path,
            file,
            insts,
            bars,
            index,
        }
    }

    /// The example's costs.
    pub fn config(&self) -> BacktestConfig {
        config(&self.file)
    }

    /// The `[strategy.portfolio]` section on the example's file.
    pub fn portfolio_config(&self) -> PortfolioConfig {
        PortfolioConfig {
            file: self.path.clone(),
            timeframe: "1d".into(),
            start: true,
            cost_dp: self.config().cost_dp,
        }
    }

    /// The execution side's desk, as the execution service seats it.
    pub fn desk(&self) -> PortfolioBroker {
        let seatings = self
            .file
            .strategies
            .iter()
            .zip(&self.index)
            .map(|(e, idx)| Seating {
                id: e.id.clone(),
                instruments: idx.clone(),
                max_leverage: e.max_leverage.unwrap_or(Decimal::ONE),
            })
            .collect();
        PortfolioBroker::new(
            &self.config(),
            self.insts.clone(),
            seatings,
            self.file.plan().expect("plan"),
        )
        .expect("the desk")
    }

    /// Every bar in feed order: by timestamp, then in instrument order.
    pub fn feed(&self) -> Vec<(usize, Bar)> {
        let mut feed: Vec<(usize, Bar)> = self
            .bars
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.iter().map(move |b| (i, *b)))
            .collect();
        feed.sort_by_key(|&(i, b)| (b.ts, i));
        feed
    }

    /// The backtest of the same bars.
    pub fn backtest(&self) -> PortfolioResult {
        let members = self
            .file
            .strategies
            .iter()
            .zip(&self.index)
            .map(|(e, idx)| {
                let on: Vec<Instrument> = idx.iter().map(|&i| self.insts[i].clone()).collect();
                Member {
                    id: e.id.clone(),
                    strategy: grodt_strategies::registry::parse(&e.name, &e.param_text())
                        .expect("registered")
                        .build_on(&on)
                        .expect("builds"),
                    instruments: idx.clone(),
                    max_leverage: e.max_leverage.unwrap_or(Decimal::ONE),
                }
            })
            .collect();
        run_portfolio(
            &self.config(),
            &self.insts,
            &self.bars,
            members,
            self.file.plan().expect("plan"),
        )
        .expect("backtest")
    }
}

/// Drives the first `timestamps` timestamps of the example through the
/// service and the desk, and compares with the backtest.
async fn portfolio_parity(env: &Env, timestamps: usize) {
    let ex = Example::first(timestamps);
    let (file, insts) = (&ex.file, &ex.insts);
    let settings = StrategySettings {
        instruments: instruments_of(insts),
        portfolio: Some(ex.portfolio_config()),
        ..StrategySettings::default()
    };
    let mut s = env.spawn(settings.clone()).await;
    let broker = ex.desk();
    // The service opened each member with the desk's sub-ledger capital.
    let opening = broker.desk().member_equity().expect("equity");
    for (e, capital) in file.strategies.iter().zip(&opening) {
        let st = s.state(&e.id).await;
        assert_eq!(st.state, v1::InstanceState::Running as i32, "{}", e.id);
        assert_eq!(dec(st.capital.as_ref()), *capital, "{}: capital", e.id);
    }
    let mut exec = Exec::over(env, broker, insts.clone()).await;
    let feed = ex.feed();
    let mut fed = 0;
    for (k, &(i, b)) in feed.iter().enumerate() {
        exec.bar_of(&insts[i].id, &b).await;
        if feed.get(k + 1).is_some_and(|&(_, next)| next.ts != b.ts) {
            fed += 1;
            if fed == timestamps / 2 {
                // A restart halfway: the members are rebuilt from the journal
                // and the file's deployment is found already made (same specs).
                s.stop().await;
                s = env.spawn(settings.clone()).await;
            }
        }
    }
    let submitted = exec.submitted.len();
    let got = exec.broker.finish().expect("finish");
    let want = ex.backtest();
    for (g, w) in got.members.iter().zip(&want.members) {
        assert_eq!(g.fills.len(), w.fills.len(), "{}: fill count", w.id);
        for (k, (gf, wf)) in g.fills.iter().zip(&w.fills).enumerate() {
            assert_eq!(gf, wf, "{}: fill {k}", w.id);
        }
        assert_eq!(g, w, "{}", w.id);
        assert!(!w.fills.is_empty(), "{} trades in the window", w.id);
        // The service's own view of the member: its positions are the
        // sub-ledger's.
        let st = s.state(&w.id).await;
        assert_eq!(st.state, v1::InstanceState::Running as i32, "{}", st.error);
        for (k, &i) in w.instruments.iter().enumerate() {
            let inst = &insts[i];
            let held = st
                .positions
                .iter()
                .find(|p| p.symbol == inst.id)
                .map_or(Decimal::ZERO, |p| dec(p.quantity.as_ref()));
            let want_qty = grodt_core::Quantity::from_raw(w.positions[k], inst.size_precision)
                .expect("qty")
                .to_decimal();
            assert_eq!(held, want_qty, "{}: position in {}", w.id, inst.id);
        }
    }
    assert_eq!(got, want);
    assert!(want.netting.groups_shared > 0, "{:?}", want.netting);
    assert!(!want.rebalances.is_empty());
    println!(
        "portfolio on paper = backtest over {timestamps} days: {} tickets, fills {:?}, \
         commission saved {}, {} reports",
        submitted,
        want.members
            .iter()
            .map(|m| m.fills.len())
            .collect::<Vec<_>>(),
        want.netting.commission_saved,
        exec.reports,
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portfolio_from_its_file_on_paper_equals_its_backtest_over_redis_and_postgres() {
    portfolio_parity(&Env::redis().await, 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portfolio_from_its_file_on_paper_equals_its_backtest_embedded() {
    portfolio_parity(&Env::embedded().await, 1000).await;
}
