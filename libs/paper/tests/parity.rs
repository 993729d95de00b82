//! Paper equals backtest: a broker and a runner exchanging tickets and
//! reports, fed the bars one at a time, make exactly the fills of
//! `run_backtest` over the same bars (every fill: time, side, quantity,
//! price, commission, slippage) and end at the same equity, on the real
//! samples and over random series; and a broker rebuilt from its inputs is
//! the same broker.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use grodt_backtest::{load_csv, series_from_bars};
use grodt_core::{Bar, Decimal, Instrument};
use grodt_paper::broker::Broker;
use grodt_paper::runner::{Out, Runner};
use grodt_paper::{Input, PaperFill};
use grodt_sim::config::{BacktestConfig, CommissionSpec, SlippageSpec};
use grodt_sim::run_backtest;
use proptest::prelude::*;

fn sample(file: &str, symbol: &str, fractional: bool) -> (Instrument, Vec<Bar>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples")
        .join(file);
    let raw = load_csv(&path).expect("sample loads");
    let s = series_from_bars(symbol, &raw, fractional).expect("series");
    (s.instrument, s.bars)
}

fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The paper session, in process: every input goes to the broker, every
/// report to the runner, every request of the runner back to the broker,
/// until both are quiet; then the next bar. Returns the broker (its fills
/// and account) and every input in the order applied.
fn paper(
    config: &BacktestConfig,
    inst: &Instrument,
    bars: &[Bar],
    strategy: &str,
    kv: &BTreeMap<String, String>,
) -> (Broker, Vec<Input>) {
    let mut broker = Broker::new(config.clone(), vec![inst.clone()]).expect("broker");
    let built = grodt_strategies::registry::build(strategy, kv, inst).expect("strategy");
    let mut runner = Runner::new("inst-1", built, inst.clone(), config.starting_cash);
    let mut inputs = Vec::new();
    for b in bars {
        let mut queue: VecDeque<Input> = VecDeque::from([Input::Bar {
            symbol: inst.id.clone(),
            bar: *b,
        }]);
        while let Some(input) = queue.pop_front() {
            let report = broker.apply(&input).expect("broker applies");
            inputs.push(input);
            for out in runner.on_report(&report).expect("runner applies") {
                queue.push_back(match out {
                    Out::Submit(t) => Input::Submit(t),
                    Out::Cancel(c) => Input::Cancel { client_order_id: c },
                });
            }
        }
    }
    (broker, inputs)
}

fn assert_same(
    config: &BacktestConfig,
    inst: &Instrument,
    bars: &[Bar],
    strategy: &str,
    kv: &BTreeMap<String, String>,
) -> usize {
    let mut s = grodt_strategies::registry::build(strategy, kv, inst).expect("strategy");
    let want = run_backtest(
        config,
        std::slice::from_ref(inst),
        &[bars.to_vec()],
        &mut *s,
    )
    .expect("backtest runs");
    let (broker, _) = paper(config, inst, bars, strategy, kv);
    let got: &[PaperFill] = broker.fills();
    assert_eq!(got.len(), want.fills.len(), "{strategy}: fill count");
    for (k, (g, w)) in got.iter().zip(&want.fills).enumerate() {
        let same = g.ts == w.ts
            && g.side == w.side
            && g.qty == w.qty
            && g.price == w.price
            && g.commission == w.commission
            && g.rebate == w.rebate
            && g.slippage == w.slippage
            && g.liquidity == w.liquidity;
        assert!(
            same,
            "{strategy}: fill {k} differs\npaper    {g:?}\nbacktest {w:?}"
        );
    }
    let equity = broker.snapshot().expect("snapshot").equity;
    assert_eq!(equity, want.last.equity, "{strategy}: final equity");
    got.len()
}

fn costly() -> BacktestConfig {
    BacktestConfig {
        starting_cash: Decimal::from(100_000),
        commission: CommissionSpec::PerShare {
            rate: Decimal::new(5, 3),
            minimum: Decimal::ONE,
        },
        slippage: SlippageSpec::FixedBps {
            bps: Decimal::from(2),
        },
        ..BacktestConfig::default()
    }
}

#[test]
fn sma_cross_on_spy_matches_the_backtest_fill_for_fill() {
    let (inst, bars) = sample("spy_1d_1998-2021.csv", "SPY", false);
    let n = assert_same(
        &costly(),
        &inst,
        &bars,
        "sma_cross",
        &params(&[("fast", "10"), ("slow", "30")]),
    );
    assert!(n > 100, "a real number of fills: {n}");
}

#[test]
fn bracket_strategy_s1_on_spy_matches_the_backtest() {
    let (inst, bars) = sample("spy_1d_1998-2021.csv", "SPY", false);
    let n = assert_same(&costly(), &inst, &bars, "s1", &BTreeMap::new());
    assert!(n > 10, "{n}");
}

#[test]
fn s2_and_s3_on_spy_match_the_backtest() {
    let (inst, bars) = sample("spy_1d_1998-2021.csv", "SPY", false);
    for name in ["s2", "s3"] {
        let n = assert_same(&costly(), &inst, &bars, name, &BTreeMap::new());
        assert!(n > 0, "{name}: {n}");
    }
}

#[test]
fn fractional_bitcoin_minutes_match_the_backtest() {
    let (inst, bars) = sample("btcusdt_1m_2025-05-20_2025-08-18.csv", "BTCUSDT", true);
    let bars = &bars[..20_000];
    let config = BacktestConfig {
        commission: CommissionSpec::Percentage {
            rate: Decimal::new(1, 3),
        },
        ..BacktestConfig::default()
    };
    let n = assert_same(
        &config,
        &inst,
        bars,
        "sma_cross",
        &params(&[("fast", "20"), ("slow", "60"), ("fraction", "0.5")]),
    );
    assert!(n > 50, "{n}");
}

#[test]
fn a_broker_rebuilt_from_its_inputs_is_the_same_broker() {
    let (inst, bars) = sample("spy_1d_1998-2021.csv", "SPY", false);
    let config = costly();
    let (broker, inputs) = paper(&config, &inst, &bars[..1500], "s1", &BTreeMap::new());
    let mut again = Broker::new(config, vec![inst]).expect("broker");
    for i in &inputs {
        again.apply(i).expect("replays");
    }
    assert_eq!(again.fills(), broker.fills());
    assert_eq!(again.orders(), broker.orders());
    assert_eq!(again.snapshot().unwrap(), broker.snapshot().unwrap());
}

#[test]
fn a_stale_or_repeated_bar_changes_nothing() {
    let (inst, bars) = sample("spy_1d_1998-2021.csv", "SPY", false);
    let mut broker = Broker::new(costly(), vec![inst.clone()]).expect("broker");
    let input = |b: &Bar| Input::Bar {
        symbol: "SPY".into(),
        bar: *b,
    };
    broker.apply(&input(&bars[1])).unwrap();
    let before = broker.snapshot().unwrap();
    for b in [&bars[1], &bars[0]] {
        let e = broker.apply(&input(b)).unwrap_err();
        assert!(matches!(e, grodt_paper::PaperError::StaleBar { .. }), "{e}");
    }
    assert_eq!(broker.snapshot().unwrap(), before);
    let e = broker
        .apply(&Input::Bar {
            symbol: "QQQ".into(),
            bar: bars[2],
        })
        .unwrap_err();
    assert!(
        matches!(e, grodt_paper::PaperError::UnknownSymbol { .. }),
        "{e}"
    );
}

/// Random walks on a 2-decimal grid.
fn series() -> impl Strategy<Value = Vec<Bar>> {
    prop::collection::vec(
        (-150i64..150, 0i64..80, 0i64..80, -100i64..100, 1i64..5_000),
        60..400,
    )
    .prop_map(|steps| {
        let mut close = 10_000i64;
        let mut out = Vec::with_capacity(steps.len());
        for (k, (d, up, down, o, v)) in steps.into_iter().enumerate() {
            let open = (close + o).max(100);
            close = (close + d).max(100);
            out.push(Bar {
                ts: 1_600_000_000_000_000_000 + k as i64 * 86_400_000_000_000,
                open,
                high: open.max(close) + up,
                low: (open.min(close) - down).max(1),
                close,
                volume: v,
            });
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_series_and_parameters_match_the_backtest(
        bars in series(),
        fast in 2usize..12,
        extra in 1usize..20,
        long_short in any::<bool>(),
        strategy in 0usize..3,
    ) {
        let inst = Instrument::equity("XYZ", 2, 0);
        let slow = (fast + extra).to_string();
        let fast = fast.to_string();
        let ls = long_short.to_string();
        let (name, kv) = match strategy {
            0 => ("sma_cross", params(&[("fast", &fast), ("slow", &slow), ("long_short", &ls)])),
            1 => ("s2", BTreeMap::new()),
            _ => ("s1", BTreeMap::new()),
        };
        let config = BacktestConfig { borrow_rate: Decimal::ZERO, ..costly() };
        assert_same(&config, &inst, &bars, name, &kv);
    }
}

#[test]
fn a_broker_without_instruments_refuses_every_symbol_and_keeps_its_cash() {
    let mut broker = Broker::new(costly(), Vec::new()).expect("a broker with no instruments");
    let (_, bars) = sample("spy_1d_1998-2021.csv", "SPY", false);
    let e = broker
        .apply(&Input::Bar {
            symbol: "SPY".into(),
            bar: bars[0],
        })
        .unwrap_err();
    assert!(
        matches!(e, grodt_paper::PaperError::UnknownSymbol { .. }),
        "{e}"
    );
    let snap = broker.snapshot().unwrap();
    assert_eq!(
        (snap.cash, snap.equity),
        (costly().starting_cash, costly().starting_cash)
    );
    assert!(broker.instruments().is_empty());
}
