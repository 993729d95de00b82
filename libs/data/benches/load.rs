//! Loading a 1M-bar dataset: from the warm frame cache, from the catalog's Parquet
//! files, and with polars reading the same files directly.
//! Run: `cargo bench -p grodt-data --bench load`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use grodt_data::aggregate::Alignment;
use grodt_data::cache::{CacheKey, FrameCache};
use grodt_data::catalog::{Partitioning, TimeRange};
use grodt_data::meta::{DatasetId, InMemoryMetadata, Provenance};
use grodt_data::validate::{ValidationOptions, validate};
use grodt_data::{Bars, Catalog};
use polars::prelude::*;

const N: usize = 1_000_000;
const MINUTE: i64 = 60_000_000_000;

/// One million minutes: the real BTC/USDT sample repeated back to back.
fn million_bars() -> Bars {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples/btcusdt_1m_2025-05-20_2025-08-18.csv");
    let raw = grodt_data::import::read_csv(&path, &grodt_data::import::CsvOptions::default())
        .expect("sample");
    let src = validate(
        raw,
        grodt_data::import::MissingPolicy::Fail,
        &ValidationOptions::new(i64::MAX),
    )
    .bars;
    let mut b = Bars::with_scales(src.price_scale, src.volume_scale);
    let t0 = 1_577_836_800_000_000_000i64; // 2020-01-01T00:00:00Z
    for i in 0..N {
        let j = i % src.len();
        b.push(
            t0 + i as i64 * MINUTE,
            [
                src.open[j],
                src.high[j],
                src.low[j],
                src.close[j],
                src.volume[j],
            ],
        );
    }
    b
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cat = Catalog::open(
        dir.path().join("catalog"),
        Arc::new(InMemoryMetadata::new()),
    )
    .expect("catalog");
    let id = DatasetId::new("bench", "BTCUSDT", "1m").expect("id");
    let bars = million_bars();
    let report = validate(
        grodt_data::import::parse_csv(
            b"timestamp,open,high,low,close,volume\n",
            "empty",
            &Default::default(),
        )
        .expect("csv"),
        grodt_data::import::MissingPolicy::Fail,
        &ValidationOptions::new(0),
    )
    .report;
    let provenance = Provenance {
        source: "bench".into(),
        original: "synthetic repeat of btcusdt_1m".into(),
        original_sha256: String::new(),
        imported_at: 0,
    };
    let rec = cat
        .write_dataset(&id, &bars, provenance, report, Partitioning::Year, false)
        .expect("write");
    let files: Vec<std::path::PathBuf> = rec
        .partitions
        .iter()
        .map(|p| cat.root().join(&p.file))
        .collect();

    let cache = FrameCache::new(1 << 30);
    let key = CacheKey {
        dataset: id.clone(),
        range: TimeRange::ALL,
        timeframe: None,
        alignment: Alignment::Utc,
    };
    assert_eq!(cache.get(&cat, &key).expect("load").height(), N);

    let mut g = c.benchmark_group("load_1m_bars");
    g.sample_size(20);
    g.bench_function("warm_cache", |b| {
        b.iter(|| black_box(cache.get(&cat, &key).expect("hit")))
    });
    g.bench_function("catalog_parquet_cold", |b| {
        b.iter(|| black_box(cat.load_frame(&id, TimeRange::ALL).expect("load")))
    });
    g.bench_function("polars_read_parquet_direct", |b| {
        b.iter(|| {
            let mut acc: Option<DataFrame> = None;
            for f in &files {
                let df = ParquetReader::new(std::fs::File::open(f).expect("open"))
                    .finish()
                    .expect("read");
                match acc.as_mut() {
                    Some(a) => {
                        a.vstack_mut_owned(df).expect("vstack");
                    }
                    None => acc = Some(df),
                }
            }
            black_box(acc)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
