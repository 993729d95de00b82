//! Reading the 130,708-row BTC/USDT 1-minute sample, as `grodt backtest` does
//! (`import::read_csv` with the detected options), and the core's normalised
//! reader (`grodt_core::bar::parse_csv`) over the same bytes.
//! Run: `cargo bench -p grodt-data --bench csv` (figures: docs/performance.md).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use grodt_data::import::{CsvOptions, parse_csv};

fn bench(c: &mut Criterion) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples/btcusdt_1m_2025-05-20_2025-08-18.csv");
    let bytes = std::fs::read(&path).expect("sample");
    let text = std::str::from_utf8(&bytes).expect("utf-8");
    let options = CsvOptions::detect_file(&path).expect("detect");
    let inst = grodt_core::Instrument::equity("BTCUSDT", 2, 8);
    let mut g = c.benchmark_group("csv_btcusdt_1m_130708_rows");
    g.sample_size(10);
    g.bench_function("data_import_parse_csv", |b| {
        b.iter(|| black_box(parse_csv(&bytes, "btcusdt", &options).expect("parse")))
    });
    g.bench_function("core_bar_parse_csv", |b| {
        b.iter(|| black_box(grodt_core::bar::parse_csv(text, &inst).expect("parse")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
