//! The grid on the BTC/USDT 1-minute sample: SMA fast 5..50, slow
//! 10..200, fast < slow (7,925 sets), long-only, no fees, next-open fills,
//! end to end (series preparation, indicators, simulation, metrics), on one
//! core and on all cores. Prints parameter-set-bars per second of single timed
//! runs and the process's peak resident memory (VmHWM) besides criterion's figures.

use std::path::PathBuf;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use grodt_analytics::MetricsConfig;
use grodt_core::Instrument;
use grodt_core::bar::parse_csv;
use grodt_sweep::{Series, SmaParams, SweepConfig, Threads, sweep_sma};

fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds (user + system) of the whole process, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn bench(c: &mut Criterion) {
    let inst = Instrument::equity("BTCUSDT", 2, 8);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples/btcusdt_1m_2025-05-20_2025-08-18.csv");
    let text = std::fs::read_to_string(path).expect("sample data present");
    let bars = parse_csv(&text, &inst).expect("sample parses");
    let sets = SmaParams::grid(5..=50, 10..=200, false);
    assert_eq!((bars.len(), sets.len()), (130_708, 7_925));
    let config = SweepConfig {
        metrics: MetricsConfig {
            periods_per_year: 525_600.0,
            risk_free: 0.0,
            required_return: 0.0,
        },
        ..SweepConfig::default()
    };
    #[allow(clippy::cast_precision_loss, reason = "a throughput figure")]
    let set_bars = (bars.len() * sets.len()) as f64;
    let run = |threads| {
        let series = Series::new(&inst, &bars).expect("series");
        sweep_sma(&series, &sets, &config, threads).expect("sweep runs")
    };
    for (name, threads) in [("one core", Threads::One), ("all cores", Threads::All)] {
        let mut best = f64::INFINITY;
        let mut best_cpu = f64::INFINITY;
        let mut fills = 0u64;
        for _ in 0..3 {
            let (t, cpu) = (Instant::now(), cpu_seconds());
            let out = run(threads);
            best = best.min(t.elapsed().as_secs_f64());
            best_cpu = best_cpu.min(cpu_seconds() - cpu);
            fills = out.iter().map(|o| u64::from(o.fills)).sum();
        }
        println!(
            "sweep {name} ({} threads): best of 3 {best:.3} s wall, {:.3e} set-bars/s wall; \
             {best_cpu:.2} CPU-s, {:.3e} set-bars per CPU-second; {fills} fills",
            if threads == Threads::One {
                1
            } else {
                rayon::current_num_threads()
            },
            set_bars / best,
            set_bars / best_cpu
        );
    }
    println!("peak RSS {} KiB", peak_rss_kib().unwrap_or(0));
    let mut g = c.benchmark_group("sweep_sma_btc_1m_7925_sets");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(
        (bars.len() * sets.len()) as u64,
    ));
    g.bench_function("one_core", |b| b.iter(|| run(Threads::One)));
    g.bench_function("all_cores", |b| b.iter(|| run(Threads::All)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
