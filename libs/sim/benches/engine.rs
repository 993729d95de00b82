//! Engine throughput: the SMA(10/30) crossover over 1M synthetic one-minute bars,
//! orders and ledger included, with the exact ledger and with the f64 baseline.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use grodt_core::{Bar, Instrument};
use grodt_sim::{BacktestConfig, ExactLedger, F64Ledger, Ledger, run_backtest_with};
use grodt_strategies::{SmaCross, SmaCrossParams};

const N: usize = 1_000_000;

/// A deterministic random walk (xorshift), prices in cents around 100.00.
fn synthetic_bars(n: usize) -> Vec<Bar> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut price: i64 = 10_000;
    (0..n)
        .map(|i| {
            let r = next();
            let open = price;
            let close = (open + (r % 41) as i64 - 20).max(100);
            let high = open.max(close) + ((r >> 8) % 10) as i64;
            let low = (open.min(close) - ((r >> 16) % 10) as i64).max(50);
            price = close;
            Bar {
                ts: i as i64 * 60_000_000_000,
                open,
                high,
                low,
                close,
                volume: 1_000 + ((r >> 24) % 5_000) as i64,
            }
        })
        .collect()
}

fn run<L: Ledger>(config: &BacktestConfig, inst: &[Instrument], bars: &[Vec<Bar>]) -> usize {
    let params = SmaCrossParams {
        long_short: true,
        ..SmaCrossParams::default()
    };
    run_params::<L>(config, inst, bars, params)
}

fn run_params<L: Ledger>(
    config: &BacktestConfig,
    inst: &[Instrument],
    bars: &[Vec<Bar>],
    params: SmaCrossParams,
) -> usize {
    let mut s = SmaCross::new(params).expect("params");
    let r = run_backtest_with::<L>(config, config.models(), inst, bars, &mut s).expect("run");
    r.fills.len()
}

/// CPU time of this thread in clock ticks (utime + stime from /proc), so the
/// figure is not inflated by other processes sharing the machine.
fn thread_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Bars per second of CPU time over `runs` runs (clock ticks are 10 ms).
fn cpu_throughput<L: Ledger>(
    config: &BacktestConfig,
    inst: &[Instrument],
    bars: &[Vec<Bar>],
    runs: u32,
) -> Option<f64> {
    let t0 = thread_cpu_ticks()?;
    for _ in 0..runs {
        black_box(run::<L>(config, inst, bars));
    }
    let ticks = thread_cpu_ticks()? - t0;
    #[allow(clippy::cast_precision_loss, reason = "a throughput figure")]
    Some((N as f64 * f64::from(runs)) / (ticks as f64 / 100.0))
}

fn bench(c: &mut Criterion) {
    let inst = [Instrument::equity("SYN", 2, 0)];
    let bars = vec![synthetic_bars(N)];
    let config = BacktestConfig::default();
    let fills = run::<ExactLedger>(&config, &inst, &bars);
    assert!(fills > 1_000, "the benchmark must trade: {fills} fills");
    eprintln!("sma_cross_1m_bars: {fills} fills over {N} bars");
    for (name, t) in [
        (
            "exact_ledger",
            cpu_throughput::<ExactLedger>(&config, &inst, &bars, 20),
        ),
        (
            "f64_ledger",
            cpu_throughput::<F64Ledger>(&config, &inst, &bars, 20),
        ),
    ] {
        if let Some(t) = t {
            eprintln!(
                "sma_cross_1m_bars/{name}: {:.2} M bars per CPU-second (20 runs)",
                t / 1e6
            );
        }
    }
    let mut g = c.benchmark_group("sma_cross_1m_bars");
    g.sample_size(20);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("exact_ledger", |b| {
        b.iter(|| black_box(run::<ExactLedger>(&config, &inst, black_box(&bars))))
    });
    g.bench_function("f64_ledger", |b| {
        b.iter(|| black_box(run::<F64Ledger>(&config, &inst, black_box(&bars))))
    });
    // The same engine with slow averages that trade ~50x less: separates the
    // per-bar cost from the per-fill cost.
    let slow = SmaCrossParams {
        fast: 500,
        slow: 2_000,
        long_short: true,
        ..SmaCrossParams::default()
    };
    let sparse = run_params::<ExactLedger>(&config, &inst, &bars, slow);
    eprintln!("sma_cross_1m_bars/sparse_*: SMA(500/2000), {sparse} fills over {N} bars");
    g.bench_function("sparse_exact_ledger", |b| {
        b.iter(|| {
            black_box(run_params::<ExactLedger>(
                &config,
                &inst,
                black_box(&bars),
                slow,
            ))
        })
    });
    g.bench_function("sparse_f64_ledger", |b| {
        b.iter(|| {
            black_box(run_params::<F64Ledger>(
                &config,
                &inst,
                black_box(&bars),
                slow,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
