//! A portfolio on paper equals its backtest: the portfolio broker (the desk
//! fed live inputs) and one runner per member exchanging tickets and reports,
//! fed the bars one at a time, end with exactly the results of
//! `grodt_portfolio::run_portfolio` over the same bars: every member's fills
//! (crosses included), orders, trades, equity and growth curves, costs and
//! positions, the account's fills and equity, every rebalance, the netting
//! statistics (commission saved) and every refusal. The portfolio is the
//! example the product ships (examples/portfolio.toml: a long SPY trend, a
//! short SPY trend and an AAPL/SPY pair with inverse-volatility allocation,
//! monthly rebalancing, netting and whole-book limits) on the real daily
//! samples, and variants of it.

use std::collections::VecDeque;
use std::path::PathBuf;

use grodt_backtest::portfolio::load_portfolio_series;
use grodt_core::{Bar, Decimal, Instrument};
use grodt_paper::desk::{PortfolioBroker, Seating};
use grodt_paper::runner::{Out, Runner};
use grodt_paper::{Input, PaperError, Report};
use grodt_portfolio::file::PortfolioFile;
use grodt_portfolio::{Member, PortfolioResult, run_portfolio};
use grodt_sim::config::BacktestConfig;
use grodt_strategies::registry;

/// A runner's signed position per symbol, and its equity.
type Positions = (Vec<(String, Decimal)>, Decimal);

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The example file, with `edit` applied to its text.
fn example(edit: impl Fn(String) -> String) -> (PortfolioFile, Vec<Instrument>, Vec<Vec<Bar>>) {
    let text = std::fs::read_to_string(examples().join("portfolio.toml")).expect("example");
    let file = PortfolioFile::parse(&edit(text)).expect("parses");
    let series = load_portfolio_series(&file, &examples()).expect("samples load");
    let instruments = series.iter().map(|s| s.instrument.clone()).collect();
    let bars = series.into_iter().map(|s| s.bars).collect();
    (file, instruments, bars)
}

/// The example's engine config: its cash and `[costs]` (5 bps with a 1.00
/// minimum, 1 bp of slippage, 1% borrow), as `grodt backtest --portfolio`
/// builds it.
fn config(file: &PortfolioFile) -> BacktestConfig {
    file.engine_config().expect("the example's costs read")
}

/// Each member's portfolio instrument indices, in its strategy's order.
fn indices(file: &PortfolioFile) -> Vec<Vec<usize>> {
    let symbols = file.symbols();
    file.strategies
        .iter()
        .map(|e| {
            e.symbols
                .iter()
                .map(|s| {
                    symbols
                        .iter()
                        .position(|x| x == s)
                        .expect("symbol in [data]")
                })
                .collect()
        })
        .collect()
}

fn strategies(
    file: &PortfolioFile,
    instruments: &[Instrument],
) -> Vec<Box<dyn grodt_strategy_api::Strategy + Send>> {
    file.strategies
        .iter()
        .zip(indices(file))
        .map(|(e, idx)| {
            let insts: Vec<Instrument> = idx.iter().map(|&i| instruments[i].clone()).collect();
            registry::parse(&e.name, &e.param_text())
                .expect("registered")
                .build_on(&insts)
                .expect("builds")
        })
        .collect()
}

fn backtest(
    file: &PortfolioFile,
    instruments: &[Instrument],
    bars: &[Vec<Bar>],
) -> PortfolioResult {
    let members = strategies(file, instruments)
        .into_iter()
        .zip(indices(file))
        .zip(&file.strategies)
        .map(|((strategy, instruments), e)| Member {
            id: e.id.clone(),
            strategy,
            instruments,
            max_leverage: e.max_leverage.unwrap_or(Decimal::ONE),
        })
        .collect();
    run_portfolio(
        &config(file),
        instruments,
        bars,
        members,
        file.plan().expect("plan"),
    )
    .expect("backtest runs")
}

/// The file's portfolio broker over `instruments`.
fn broker(file: &PortfolioFile, instruments: &[Instrument]) -> PortfolioBroker {
    let seatings = file
        .strategies
        .iter()
        .zip(indices(file))
        .map(|(e, instruments)| Seating {
            id: e.id.clone(),
            instruments,
            max_leverage: e.max_leverage.unwrap_or(Decimal::ONE),
        })
        .collect();
    PortfolioBroker::new(
        &config(file),
        instruments.to_vec(),
        seatings,
        file.plan().expect("plan"),
    )
    .expect("broker")
}

/// The paper session, in process: every bar (merged by time, as the
/// backtest merges them) goes to the broker, every report to every runner
/// in member order, every request back to the broker, until all are quiet;
/// then the next bar. Returns the broker's results, how many tickets it
/// took and how many it refused because the portfolio had halted.
fn paper(
    file: &PortfolioFile,
    instruments: &[Instrument],
    bars: &[Vec<Bar>],
) -> (PortfolioResult, usize, usize, Vec<Positions>) {
    let mut broker = broker(file, instruments);
    // Each runner starts with the capital the desk allocated to its member.
    let capital = broker.desk().member_equity().expect("equity");
    let mut runners: Vec<Runner> = strategies(file, instruments)
        .into_iter()
        .zip(indices(file))
        .zip(&file.strategies)
        .zip(capital)
        .map(|(((s, idx), e), cash)| {
            let insts = idx.iter().map(|&i| instruments[i].clone()).collect();
            Runner::on_instruments(&e.id, s, insts, cash)
        })
        .collect();
    let mut tickets = 0;
    let mut halted = 0;
    let mut cursor = vec![0usize; bars.len()];
    loop {
        let next = bars
            .iter()
            .zip(&cursor)
            .filter_map(|(s, &k)| s.get(k).map(|b| b.ts))
            .min();
        let Some(ts) = next else { break };
        for (i, series) in bars.iter().enumerate() {
            let Some(bar) = series.get(cursor[i]).filter(|b| b.ts == ts) else {
                continue;
            };
            cursor[i] += 1;
            let mut queue = VecDeque::from([Input::Bar {
                symbol: instruments[i].id.clone(),
                bar: *bar,
            }]);
            while let Some(input) = queue.pop_front() {
                if matches!(input, Input::Submit(_)) {
                    tickets += 1;
                }
                let outs: Vec<Out> = match broker.apply(&input) {
                    Ok(report) => {
                        let report: Report = report;
                        let mut outs = Vec::new();
                        for r in &mut runners {
                            outs.extend(r.on_report(&report).expect("runner applies"));
                        }
                        outs
                    }
                    // After a halt: refused, as risk refuses an intent.
                    Err(PaperError::Halted { reason }) => {
                        let Input::Submit(t) = &input else {
                            panic!("only tickets are refused for a halt")
                        };
                        halted += 1;
                        let b = file
                            .strategies
                            .iter()
                            .position(|e| e.id == t.strategy_id)
                            .expect("the ticket's member");
                        runners[b]
                            .on_refused(&t.client_order_id, &reason)
                            .expect("refused")
                    }
                    Err(e) => panic!("broker refused {input:?}: {e}"),
                };
                {
                    for out in outs {
                        queue.push_back(match out {
                            Out::Submit(t) => Input::Submit(t),
                            Out::Cancel(c) => Input::Cancel { client_order_id: c },
                        });
                    }
                }
            }
        }
    }
    let positions = runners
        .iter()
        .map(|r| (r.positions(), r.equity()))
        .collect();
    (broker.finish().expect("finish"), tickets, halted, positions)
}

/// Everything the two runs report, field by field, so a difference names
/// what differs.
fn assert_same(got: &PortfolioResult, want: &PortfolioResult) {
    assert_eq!(got.members.len(), want.members.len());
    for (g, w) in got.members.iter().zip(&want.members) {
        let id = &w.id;
        assert_eq!(g.fills.len(), w.fills.len(), "{id}: fill count");
        for (k, (gf, wf)) in g.fills.iter().zip(&w.fills).enumerate() {
            assert_eq!(gf, wf, "{id}: fill {k}");
        }
        assert_eq!(g.orders, w.orders, "{id}: orders");
        assert_eq!(g.trades, w.trades, "{id}: trades");
        assert_eq!(g.positions, w.positions, "{id}: positions");
        assert_eq!(g.costs, w.costs, "{id}: costs");
        assert_eq!(g.equity, w.equity, "{id}: equity curve");
        assert_eq!(g.growth, w.growth, "{id}: growth curve");
        assert_eq!(g.transferred, w.transferred, "{id}: capital moved");
        assert_eq!(g, w, "{id}");
    }
    assert_eq!(got.account.fills, want.account.fills, "account fills");
    assert_eq!(got.account.equity, want.account.equity, "account equity");
    assert_eq!(got.rebalances, want.rebalances, "rebalances");
    assert_eq!(got.netting, want.netting, "netting");
    assert_eq!(got.refusals, want.refusals, "refusals");
    assert_eq!(got.halted_at, want.halted_at, "halt");
    assert_eq!(got, want);
}

/// Each runner's positions and equity are its member's sub-ledger's (the
/// desk's capital moves included).
fn assert_mirrored(got: &PortfolioResult, instruments: &[Instrument], positions: &[Positions]) {
    for (m, (held, equity)) in got.members.iter().zip(positions) {
        let last = m.equity.last().expect("an equity curve").equity;
        assert_eq!(*equity, last, "{}: runner's equity", m.id);
        for (k, &i) in m.instruments.iter().enumerate() {
            let inst = &instruments[i];
            let want = grodt_core::Quantity::from_raw(m.positions[k], inst.size_precision)
                .expect("qty")
                .to_decimal();
            assert_eq!(
                held[k],
                (inst.id.clone(), want),
                "{}: runner's position",
                m.id
            );
        }
    }
}

#[test]
fn the_example_portfolio_on_paper_matches_its_backtest() {
    let (file, instruments, bars) = example(|t| t);
    let want = backtest(&file, &instruments, &bars);
    let (got, tickets, halted, positions) = paper(&file, &instruments, &bars);
    assert_mirrored(&got, &instruments, &positions);
    assert_same(&got, &want);
    assert_eq!(halted, 0);
    assert_eq!(want.halted_at, None);
    // A run that exercises what it claims: every member trades, strategies'
    // orders meet and are netted, capital moves.
    for m in &want.members {
        assert!(m.fills.len() > 10, "{}: {} fills", m.id, m.fills.len());
    }
    assert!(tickets > 100, "{tickets} tickets");
    assert!(want.netting.groups_shared > 0, "{:?}", want.netting);
    assert!(want.netting.commission_saved > Decimal::ZERO);
    assert!(want.rebalances.len() > 50, "{}", want.rebalances.len());
}

#[test]
fn without_netting_with_fixed_weights_and_through_a_drawdown_halt_paper_still_matches() {
    let (file, instruments, bars) = example(|t| {
        t.replace("netting = true", "netting = false")
            .replace("method = \"inverse_volatility\"", "method = \"fixed\"")
            .replace("schedule = \"monthly\"", "schedule = \"weekly\"")
    });
    let want = backtest(&file, &instruments, &bars);
    let (got, _, refused, positions) = paper(&file, &instruments, &bars);
    // The desk's closes reached the runners: they hold what the sub-ledgers hold.
    assert_mirrored(&got, &instruments, &positions);
    assert_same(&got, &want);
    assert_eq!(
        want.netting.venue_orders, want.netting.orders,
        "without netting every order goes to the venue alone: {:?}",
        want.netting
    );
    // Equal weights rebalanced weekly hit the 35% drawdown limit in 2020:
    // the desk closes every position, and what the runners still ask for
    // after that is refused, never booked.
    assert!(want.halted_at.is_some(), "the variant halts");
    assert!(refused > 0, "tickets after the halt were refused");
}

#[test]
fn a_ticket_of_a_stranger_or_for_a_symbol_the_member_does_not_trade_is_refused_by_name() {
    let (file, instruments, bars) = example(|t| t);
    let mut broker = broker(&file, &instruments);
    let spy = &instruments[1];
    broker
        .apply(&Input::Bar {
            symbol: spy.id.clone(),
            bar: bars[1][0],
        })
        .expect("bar");
    let ticket = |strategy: &str, symbol: &str| grodt_paper::Ticket {
        client_order_id: format!("{strategy}-0"),
        strategy_id: strategy.into(),
        symbol: symbol.into(),
        side: grodt_core::Side::Buy,
        size: grodt_core::Size::Fixed(grodt_core::Quantity::from_raw(1, 0).expect("qty")),
        kind: grodt_core::OrderKind::Market,
        tif: grodt_core::TimeInForce::Gtc,
        bracket: None,
        decision_ts: bars[1][0].ts,
    };
    let e = broker
        .apply(&Input::Submit(ticket("nobody", "SPY")))
        .unwrap_err();
    assert!(
        matches!(&e, PaperError::Invalid { field: "strategy_id", reason } if reason.contains("nobody")),
        "{e}"
    );
    let e = broker
        .apply(&Input::Submit(ticket("trend", "AAPL")))
        .unwrap_err();
    assert!(
        matches!(&e, PaperError::Invalid { field: "symbol", reason } if reason.contains("AAPL")),
        "{e}"
    );
    // Accepted, then a second ticket under the same id is a duplicate.
    let r = broker
        .apply(&Input::Submit(ticket("trend", "SPY")))
        .expect("accepted");
    assert_eq!(r.updates.len(), 1, "{r:?}");
    let e = broker
        .apply(&Input::Submit(ticket("trend", "SPY")))
        .unwrap_err();
    assert!(matches!(e, PaperError::Duplicate { .. }), "{e}");
    // A bar before the one fed is late, for any symbol.
    let e = broker
        .apply(&Input::Bar {
            symbol: instruments[0].id.clone(),
            bar: Bar {
                ts: bars[1][0].ts - 1,
                ..bars[0][0]
            },
        })
        .unwrap_err();
    assert!(matches!(e, PaperError::StaleBar { .. }), "{e}");
}

#[test]
fn an_order_taken_before_the_first_bar_is_dated_by_its_ticket() {
    let (file, instruments, _) = example(|t| t);
    let mut broker = broker(&file, &instruments);
    let r = broker
        .apply(&Input::Submit(grodt_paper::Ticket {
            client_order_id: "trend-0".into(),
            strategy_id: "trend".into(),
            symbol: "SPY".into(),
            side: grodt_core::Side::Buy,
            size: grodt_core::Size::Fixed(grodt_core::Quantity::from_raw(1, 0).expect("qty")),
            kind: grodt_core::OrderKind::Market,
            tif: grodt_core::TimeInForce::Gtc,
            bracket: None,
            decision_ts: 42,
        }))
        .expect("accepted");
    let Some(grodt_paper::Update::Order(st)) = r.updates.first() else {
        panic!("{r:?}")
    };
    assert_eq!((st.created_ts, st.ts), (42, 42), "{st:?}");
    assert_eq!(broker.order("trend-0").map(|o| o.created_ts), Some(42));
}

/// Brackets through the desk on paper: the example with its pair replaced by
/// `s1` (bracket entries: the desk sends each as one to the venue, which
/// activates the exits on the fill and cancels one when the other fills),
/// equal to its backtest, the runners holding their sub-ledgers.
#[test]
fn a_bracket_strategy_in_the_portfolio_on_paper_matches_its_backtest() {
    let (file, instruments, bars) = example(|t| {
        t.replace(
            "id = \"pair\"\nname = \"pair\"\nsymbols = [\"AAPL\", \"SPY\"]\n\
             params = { lookback = 60, entry_z = 2.0, exit_z = 0.5, stop_z = 4.0, fraction = \"0.9\" }",
            "id = \"brackets\"\nname = \"s1\"\nsymbols = [\"SPY\"]",
        )
    });
    assert_eq!(file.strategies[2].name, "s1", "the pair was replaced");
    let want = backtest(&file, &instruments, &bars);
    let (got, _, _, positions) = paper(&file, &instruments, &bars);
    assert_same(&got, &want);
    assert_mirrored(&got, &instruments, &positions);
    let s1 = &want.members[2];
    let exits = s1.orders.iter().filter(|o| o.parent.is_some()).count();
    assert!(exits > 10, "brackets with exits: {exits}");
    assert!(
        s1.orders
            .iter()
            .any(|o| o.parent.is_some() && o.status() == grodt_core::OrderStatus::Filled),
        "an exit filled"
    );
}
