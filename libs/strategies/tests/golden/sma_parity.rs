//! Fill-by-fill parity with backtrader in the whole-share, fractional and
//! same-bar-close variants.

use std::path::PathBuf;

use grodt_core::bar::parse_csv;
use grodt_core::rounding::{RoundingMode, round_money};
use grodt_core::time::format_date;
use grodt_core::{Bar, Decimal, Instrument, Side};
use grodt_sim::{BacktestConfig, BacktestResult, FillTiming, run_backtest};
use grodt_strategies::{SmaCross, SmaCrossParams};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn spy(size_precision: u8) -> (Instrument, Vec<Bar>) {
    let inst = Instrument::equity("SPY", 4, size_precision);
    let text = std::fs::read_to_string(root().join("data/samples/spy_1d_1998-2021.csv"))
        .expect("sample data present");
    let bars = parse_csv(&text, &inst).expect("sample parses");
    (inst, bars)
}

pub fn run(size_precision: u8, timing: FillTiming) -> BacktestResult {
    let (inst, bars) = spy(size_precision);
    let config = BacktestConfig {
        fill_timing: timing,
        ..BacktestConfig::default()
    };
    let mut s = SmaCross::new(SmaCrossParams::default()).unwrap();
    run_backtest(&config, &[inst], &[bars], &mut s).unwrap()
}

struct RefFill {
    date: String,
    side: Side,
    qty: f64,
    price: Decimal,
}

fn reference(name: &str) -> Vec<RefFill> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/golden/sma_10_30_{name}_fills.csv"));
    let text = std::fs::read_to_string(path).expect("reference fills present");
    text.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            RefFill {
                date: c[0].to_string(),
                side: if c[1] == "buy" { Side::Buy } else { Side::Sell },
                qty: c[2].parse().unwrap(),
                price: c[3].parse().unwrap(),
            }
        })
        .collect()
}

fn compare(result: &BacktestResult, name: &str, qty_tol: f64) {
    let refs = reference(name);
    assert_eq!(result.fills.len(), refs.len(), "{name}: fill count");
    for (n, (f, r)) in result.fills.iter().zip(&refs).enumerate() {
        let ours = (format_date(f.ts), f.side, f.price.to_decimal());
        assert_eq!(ours, (r.date.clone(), r.side, r.price), "{name}: fill {n}");
        let q = f.qty.as_f64();
        assert!(
            (q - r.qty).abs() <= qty_tol,
            "{name}: fill {n} qty {q} vs {}",
            r.qty
        );
    }
}

fn cents(d: Decimal) -> Decimal {
    round_money(d, 2, RoundingMode::HalfEven)
}

#[test]
fn whole_shares_match_backtrader_fill_by_fill() {
    let r = run(0, FillTiming::NextOpen);
    compare(&r, "whole", 0.0);
    assert_eq!(r.last.equity, Decimal::new(18_209_118, 2), "final value");
    assert_eq!(r.fills.len(), 203);
    assert_eq!(r.trades.len(), 102);
    assert_eq!(r.trades.iter().filter(|t| t.exit_ts.is_some()).count(), 101);
    let first: Vec<String> = r.fills[..4]
        .iter()
        .map(|f| {
            format!(
                "{} {:?} {} @ {}",
                format_date(f.ts),
                f.side,
                f.qty,
                f.price.to_decimal().normalize()
            )
        })
        .collect();
    assert_eq!(
        first,
        [
            "1998-05-14 Buy 896 @ 111.53",
            "1998-05-18 Sell 896 @ 110.72",
            "1998-05-22 Buy 888 @ 111.75",
            "1998-05-28 Sell 888 @ 109.88"
        ]
    );
    // Trade PnL adds up to the equity change (no fees here).
    let pnl: Decimal = r.trades.iter().map(|t| t.net_pnl).sum();
    assert_eq!(Decimal::from(100_000) + pnl, r.last.equity);
    assert_eq!(r.equity.len(), 5849);
}

#[test]
fn fractional_shares_match_backtrader() {
    let r = run(8, FillTiming::NextOpen);
    compare(&r, "fractional", 1e-6);
    assert_eq!(cents(r.last.equity), Decimal::new(18_213_183, 2));
    assert_eq!(r.trades.len(), 102);
}

#[test]
fn same_bar_close_variant_matches_backtrader() {
    let r = run(8, FillTiming::SameBarClose);
    compare(&r, "close", 1e-6);
    assert_eq!(cents(r.last.equity), Decimal::new(15_947_702, 2));
    assert_eq!(r.fills.len(), 203);
}

#[test]
fn runs_are_deterministic() {
    let a = run(0, FillTiming::NextOpen);
    let b = run(0, FillTiming::NextOpen);
    assert_eq!(a, b);
}
