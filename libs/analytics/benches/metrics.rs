//! Cost of the full metric set on one million returns (minute bars: a
//! million days would not fit Unix nanoseconds in an i64).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use grodt_analytics::{
    EquityPoint, MetricsConfig, PerformanceInput, breakdown, compute, tail_risk,
};

const N: usize = 1_000_000;

/// SplitMix64, seeded: reproducible noise without a randomness dependency.
fn noise(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // uniform in [-1, 1)
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let returns: Vec<f64> = noise(42, N)
        .into_iter()
        .map(|u| 0.000_002 + 0.001 * u)
        .collect();
    let mut equity = Vec::with_capacity(N + 1);
    let mut value = 100_000.0;
    equity.push(EquityPoint {
        ts: 0,
        equity: value,
    });
    for (i, r) in returns.iter().enumerate() {
        value *= 1.0 + r;
        equity.push(EquityPoint {
            ts: (i as i64 + 1) * 60_000_000_000,
            equity: value,
        });
    }
    let positions: Vec<f64> = (0..=N)
        .map(|i| if i % 3 == 0 { 0.0 } else { 1.0 })
        .collect();
    let input = PerformanceInput {
        equity: &equity,
        positions: Some(&positions),
        trades: &[],
    };
    let config = MetricsConfig {
        periods_per_year: 365.0 * 24.0 * 60.0,
        ..MetricsConfig::crypto_daily()
    };
    let mut group = c.benchmark_group("metrics_1m_returns");
    group.sample_size(20);
    group.bench_function("compute", |b| {
        b.iter(|| compute(black_box(&input), &config).expect("valid input"))
    });
    // Five regimes in runs of 500 periods, as a regime classifier would label them.
    let labels: Vec<u8> = (0..N).map(|i| ((i / 500) % 5) as u8).collect();
    group.bench_function("breakdown_5_labels", |b| {
        b.iter(|| breakdown(black_box(&input), &labels, &config).expect("valid input"))
    });
    group.bench_function("tail_risk", |b| {
        b.iter(|| tail_risk(black_box(&returns)).expect("valid input"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
