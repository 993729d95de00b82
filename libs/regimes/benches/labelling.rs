//! The cost of labelling a backtest's bars with regimes: `regime_per_bar`
//! over the SPY daily and BTC one-minute samples (`scripts/bench regimes`).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use grodt_core::bar::parse_csv;
use grodt_core::{Bar, Instrument};
use grodt_regimes::RegimeConfig;

fn load(file: &str, inst: &Instrument) -> Vec<Bar> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("sample file");
    parse_csv(&text, inst).expect("sample parses")
}

fn labelling(c: &mut Criterion) {
    let mut group = c.benchmark_group("regime_per_bar");
    group.sample_size(10);
    for (name, file, inst) in [
        (
            "spy_1d",
            "spy_1d_1998-2021.csv",
            Instrument::equity("SPY", 4, 0),
        ),
        (
            "btcusdt_1m",
            "btcusdt_1m_2025-05-20_2025-08-18.csv",
            Instrument::equity("BTCUSDT", 2, 8),
        ),
    ] {
        let bars = load(file, &inst);
        group.throughput(Throughput::Elements(bars.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                grodt_regimes::regime_per_bar(
                    RegimeConfig::default(),
                    inst.price_precision,
                    black_box(&bars),
                )
                .expect("labels")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, labelling);
criterion_main!(benches);
