//! S2 and S3 on SPY daily, held fill by fill to backtrader 1.9.78 (reference fills
//! from `make_reference_s2s3.py` in this folder), whole shares, long and
//! long-short, plus an independent recomputation of the signals in plain
//! f64/integers from the CSV.

use std::path::PathBuf;

use grodt_core::rounding::{RoundingMode, round_money};
use grodt_core::time::format_date;
use grodt_core::{Bar, Decimal, Side};
use grodt_sim::{BacktestConfig, BacktestResult, run_backtest};
use grodt_strategies::{S2, S2Params, S3, S3Params};
use grodt_strategy_api::Strategy;

use crate::sma_parity::spy;

fn run(strategy: &mut dyn Strategy) -> BacktestResult {
    let (inst, bars) = spy(0);
    run_backtest(&BacktestConfig::default(), &[inst], &[bars], strategy).unwrap()
}

pub fn run_s2(allow_short: bool) -> BacktestResult {
    let mut s = S2::new(S2Params {
        allow_short,
        ..S2Params::default()
    })
    .unwrap();
    run(&mut s)
}

pub fn run_s3(allow_short: bool) -> BacktestResult {
    let mut s = S3::new(S3Params {
        allow_short,
        ..S3Params::default()
    })
    .unwrap();
    run(&mut s)
}

/// (date, side, qty, price) of a reference CSV.
fn reference(name: &str) -> Vec<(String, Side, i64, Decimal)> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}_fills.csv"));
    let text = std::fs::read_to_string(path).expect("reference fills present");
    text.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let side = if c[1] == "buy" { Side::Buy } else { Side::Sell };
            (
                c[0].to_owned(),
                side,
                c[2].parse().unwrap(),
                c[3].parse().unwrap(),
            )
        })
        .collect()
}

fn compare(r: &BacktestResult, name: &str) {
    let refs = reference(name);
    let ours: Vec<(String, Side, i64, Decimal)> = r
        .fills
        .iter()
        .map(|f| (format_date(f.ts), f.side, f.qty.raw(), f.price.to_decimal()))
        .collect();
    for (n, (o, want)) in ours.iter().zip(&refs).enumerate() {
        assert_eq!(o, want, "{name}: fill {n}");
    }
    assert_eq!(ours.len(), refs.len(), "{name}: fill count");
}

fn cents(d: Decimal) -> Decimal {
    round_money(d, 2, RoundingMode::HalfEven)
}

fn summary(r: &BacktestResult) -> (Decimal, usize, usize, usize) {
    let closed = r.trades.iter().filter(|t| t.exit_ts.is_some()).count();
    (cents(r.last.equity), r.fills.len(), r.trades.len(), closed)
}

#[test]
fn s2_long_matches_backtrader_fill_by_fill() {
    let r = run_s2(false);
    compare(&r, "s2_long");
    assert_eq!(summary(&r), (Decimal::new(11_750_075, 2), 58, 29, 29));
}

#[test]
fn s2_long_short_matches_backtrader_fill_by_fill() {
    let r = run_s2(true);
    compare(&r, "s2_long_short");
    assert_eq!(summary(&r), (Decimal::new(13_261_373, 2), 124, 62, 62));
}

#[test]
fn s3_long_matches_backtrader_fill_by_fill() {
    let r = run_s3(false);
    compare(&r, "s3_long");
    assert_eq!(summary(&r), (Decimal::new(9_148_940, 2), 84, 42, 42));
}

#[test]
fn s3_long_short_matches_backtrader_fill_by_fill() {
    let r = run_s3(true);
    compare(&r, "s3_long_short");
    assert_eq!(summary(&r), (Decimal::new(5_640_084, 2), 212, 106, 106));
}

/// The S2 long signals recomputed from scratch over the bars with a naive
/// O(period) window per bar (plain f64 mean and population deviation, Wilder's
/// RSI written out), independent of `grodt-indicators`. Returns the dates of the
/// bars on which an entry (+1) or exit (-1) is decided, given the position
/// implied by the earlier decisions.
#[allow(clippy::cast_precision_loss, reason = "test arithmetic")]
fn naive_s2_long(bars: &[Bar]) -> Vec<(i64, i8)> {
    let p = S2Params::default();
    let closes: Vec<f64> = bars.iter().map(|b| b.close as f64 / 1e4).collect();
    let (mut up, mut down) = (0.0, 0.0);
    let mut out = Vec::new();
    let mut long = false;
    for t in 1..closes.len() {
        let d = closes[t] - closes[t - 1];
        let (u, v) = (d.max(0.0), (-d).max(0.0));
        let n = p.rsi_period as f64;
        if t <= p.rsi_period {
            up += u / n;
            down += v / n;
        } else {
            up += (u - up) / n;
            down += (v - down) / n;
        }
        if t < p.rsi_period || t + 1 < p.period {
            continue;
        }
        let rsi = 100.0 - 100.0 / (1.0 + up / down);
        let w = &closes[t + 1 - p.period..=t];
        let mean = w.iter().sum::<f64>() / p.period as f64;
        let sd = (w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / p.period as f64).sqrt();
        let c = closes[t];
        if !long && c < mean - p.k * sd && rsi < p.oversold {
            out.push((bars[t].ts, 1));
            long = true;
        } else if long && (c >= mean || rsi > p.overbought) {
            out.push((bars[t].ts, -1));
            long = false;
        }
    }
    out
}

/// The S3 long signals recomputed with plain scans over the raw integers.
#[allow(clippy::cast_precision_loss, reason = "test arithmetic")]
fn naive_s3_long(bars: &[Bar]) -> Vec<(i64, i8)> {
    let p = S3Params::default();
    let start = p.entry_window.max(p.exit_window).max(p.volume_window);
    let mut out = Vec::new();
    let mut long = false;
    for t in start..bars.len() {
        let b = &bars[t];
        let prior = |n: usize| &bars[t - n..t];
        let high = prior(p.entry_window).iter().map(|b| b.high).max().unwrap();
        let exit_low = prior(p.exit_window).iter().map(|b| b.low).min().unwrap();
        let avg = prior(p.volume_window)
            .iter()
            .map(|b| b.volume as f64)
            .sum::<f64>()
            / p.volume_window as f64;
        if !long && b.close > high && b.volume as f64 > p.volume_mult * avg {
            out.push((b.ts, 1));
            long = true;
        } else if long && b.close < exit_low {
            out.push((b.ts, -1));
            long = false;
        }
    }
    out
}

/// Every fill is on the bar after an independently recomputed signal, on the
/// signal's side, at that bar's open.
fn fills_follow(r: &BacktestResult, bars: &[Bar], signals: &[(i64, i8)]) {
    assert_eq!(r.fills.len(), signals.len());
    for (f, (ts, s)) in r.fills.iter().zip(signals) {
        let t = bars.iter().position(|b| b.ts == *ts).unwrap();
        let next = &bars[t + 1];
        assert_eq!(
            f.ts,
            next.ts,
            "fill on the bar after the signal of {}",
            format_date(*ts)
        );
        assert_eq!(f.side, if *s > 0 { Side::Buy } else { Side::Sell });
        assert_eq!(f.price.raw(), next.open);
    }
}

#[test]
fn s2_and_s3_fills_follow_independently_recomputed_signals() {
    let (_, bars) = spy(0);
    let s2 = naive_s2_long(&bars);
    fills_follow(&run_s2(false), &bars, &s2);
    let s3 = naive_s3_long(&bars);
    fills_follow(&run_s3(false), &bars, &s3);
    assert_eq!((s2.len(), s3.len()), (58, 84));
}
