//! `grodt-backtest`: the backtest runner, dataset -> bars -> engine -> result,
//! as a library shared by the backtest worker (RPCs and jobs) and `grodt
//! backtest`, so no service crate holds it.
//!
//! Code map: [`run`] turns catalog bars into engine series, builds the
//! strategy through the registry (`grodt_strategies::registry`), runs
//! `grodt_sim::run_backtest` and computes the metrics; [`cache`] is the
//! bounded per-process cache of loaded series; [`load_series`] reads a job's
//! datasets from the Parquet catalog through that cache; [`noise`] makes a
//! seeded noisy copy of a series for price-noise Monte Carlo.
//!
//! Architecture invariant: no protobuf, no store, no async code here (tokio
//! is in the dependency tree only through grodt-data's exchange adapter); the
//! only I/O is reading the catalog (Parquet, and its metadata store) in
//! [`load_series`] / [`cache::SeriesCache::load`] and a CSV in
//! [`run::load_csv`], all blocking: callers run them off the executor. This
//! crate pulls polars through grodt-data's catalog.

pub mod cache;
pub mod noise;
pub mod portfolio;
pub mod run;

pub use cache::{CacheLimits, CacheStats, Lookup, SeriesCache};
pub use run::{
    Outcome, RegimeBreakdown, RegimeLabel, RunError, RunSpec, Series, load_csv, load_csv_series,
    regime_labels, run, series_from_bars,
};

use std::collections::BTreeMap;

use grodt_core::Decimal;
use grodt_data::{Catalog, DataError, DatasetId, TimeRange};

/// What to load for a run: one dataset per instrument, the first traded.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    /// The datasets, one per instrument; the first is traded.
    pub datasets: Vec<DatasetId>,
    /// The time range to load.
    pub range: TimeRange,
    /// Fractional quantities (size precision [`run::FRACTIONAL_SIZE_PRECISION`]).
    pub fractional: bool,
    /// Per-symbol annual borrow rates, overriding the engine's default.
    pub symbol_borrow_rates: BTreeMap<String, Decimal>,
    /// Bars before `range.start` to load as well, per dataset (the last ones
    /// there are, up to this many): the warm-up a run with
    /// `BacktestConfig::trade_from = range.start` feeds its strategy.
    pub warmup_bars: u32,
}

/// Why a run's data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The catalog could not read dataset `index` of the [`DataSpec`].
    #[error("dataset {index}: {source}")]
    Dataset {
        /// Position in [`DataSpec::datasets`].
        index: usize,
        /// Why.
        source: DataError,
    },
    /// The bars cannot become engine bars.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// What [`load_series`] loaded and how.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// One series per dataset, in order.
    pub series: Vec<Series>,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that read Parquet.
    pub misses: u64,
}

/// Loads every dataset of `data` from `catalog` through `cache` and turns it
/// into engine series. Blocks: call it from a blocking thread.
///
/// # Errors
/// [`LoadError::Dataset`] with the dataset's position, or a conversion error.
pub fn load_series(
    catalog: &Catalog,
    cache: &SeriesCache,
    data: &DataSpec,
) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded {
        series: Vec::with_capacity(data.datasets.len()),
        hits: 0,
        misses: 0,
    };
    for (index, id) in data.datasets.iter().enumerate() {
        let mut count = |lookup| match lookup {
            Lookup::Hit => loaded.hits += 1,
            Lookup::Miss => loaded.misses += 1,
        };
        let (bars, lookup) = cache
            .load(catalog, id, data.range)
            .map_err(|source| LoadError::Dataset { index, source })?;
        count(lookup);
        let mut s = series_from_bars(&id.symbol, &bars, data.fractional)?;
        if data.warmup_bars > 0 && data.range.start > i64::MIN {
            let (warm, lookups) =
                warmup(catalog, cache, id, data.range.start, data.warmup_bars, &s)
                    .map_err(|source| LoadError::Dataset { index, source })?;
            lookups.into_iter().for_each(&mut count);
            if !warm.is_empty() {
                let mut w = series_from_bars(&id.symbol, &warm, data.fractional)?;
                w.bars.append(&mut s.bars);
                s.bars = w.bars;
            }
        }
        if let Some(rate) = data.symbol_borrow_rates.get(&id.symbol) {
            s.instrument.borrow.annual_rate = Some(*rate);
        }
        loaded.series.push(s);
    }
    Ok(loaded)
}

/// The last `n` bars of `id` before `start`: read over a lookback that starts
/// at `n` times the loaded series' median bar spacing (times two, plus a
/// week, for weekends and holidays) and doubles until it holds `n` bars or
/// reaches the dataset's beginning.
fn warmup(
    catalog: &Catalog,
    cache: &SeriesCache,
    id: &DatasetId,
    start: i64,
    n: u32,
    loaded: &Series,
) -> Result<(grodt_data::Bars, Vec<Lookup>), DataError> {
    const WEEK: i64 = 7 * 86_400 * 1_000_000_000;
    let mut gaps: Vec<i64> = loaded.bars.windows(2).map(|w| w[1].ts - w[0].ts).collect();
    gaps.sort_unstable();
    let spacing = gaps
        .get(gaps.len() / 2)
        .copied()
        .unwrap_or(86_400_000_000_000);
    let mut lookback = i64::from(n)
        .saturating_mul(spacing)
        .saturating_mul(2)
        .saturating_add(WEEK);
    let mut lookups = Vec::new();
    loop {
        let from = start.saturating_sub(lookback);
        let range = TimeRange {
            start: if from <= i64::MIN / 2 { i64::MIN } else { from },
            end: start,
        };
        let (bars, lookup) = cache.load(catalog, id, range)?;
        lookups.push(lookup);
        if bars.len() >= n as usize || range.start == i64::MIN {
            let skip = bars.len().saturating_sub(n as usize);
            return Ok((tail(&bars, skip), lookups));
        }
        lookback = lookback.saturating_mul(4);
    }
}

/// `bars` without its first `skip` rows.
fn tail(bars: &grodt_data::Bars, skip: usize) -> grodt_data::Bars {
    grodt_data::Bars {
        price_scale: bars.price_scale,
        volume_scale: bars.volume_scale,
        ts: bars.ts[skip..].to_vec(),
        open: bars.open[skip..].to_vec(),
        high: bars.high[skip..].to_vec(),
        low: bars.low[skip..].to_vec(),
        close: bars.close[skip..].to_vec(),
        volume: bars.volume[skip..].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use grodt_data::InMemoryMetadata;
    use grodt_data::catalog::{ImportRequest, Partitioning};
    use grodt_data::import::CsvOptions;
    use grodt_data::validate::ValidationOptions;

    use super::*;

    fn catalog(dir: &std::path::Path) -> (Catalog, DatasetId) {
        let csv = dir.join("bars.csv");
        let mut text = String::from("timestamp,open,high,low,close,volume\n");
        for i in 0..50 {
            text.push_str(&format!(
                "2024-01-01T00:{i:02}:00Z,{o}.5,{h},{l},{c},10\n",
                o = 100 + i,
                h = 102 + i,
                l = 99 + i,
                c = 101 + i
            ));
        }
        std::fs::write(&csv, text).unwrap();
        let catalog =
            Catalog::open(dir.join("catalog"), Arc::new(InMemoryMetadata::default())).unwrap();
        let id = DatasetId::new("test", "ABC", "1m").unwrap();
        catalog
            .import_csv(&ImportRequest {
                path: csv,
                id: id.clone(),
                source_description: "test".into(),
                csv: CsvOptions::default(),
                validation: ValidationOptions::new(i64::MAX),
                partitioning: Partitioning::Year,
                replace: false,
                imported_at: 1,
            })
            .unwrap();
        (catalog, id)
    }

    /// A second load of the same dataset and range does not read Parquet:
    /// the catalog's files are deleted after the first load and the second
    /// still succeeds, from memory.
    #[test]
    fn a_second_job_on_the_same_dataset_reads_no_parquet() {
        let tmp = tempfile::tempdir().unwrap();
        let (catalog, id) = catalog(tmp.path());
        let cache = SeriesCache::new(CacheLimits::default());
        let data = DataSpec {
            datasets: vec![id],
            range: TimeRange::ALL,
            fractional: false,
            symbol_borrow_rates: BTreeMap::from([("ABC".to_owned(), Decimal::new(3, 2))]),
            warmup_bars: 0,
        };
        let first = load_series(&catalog, &cache, &data).unwrap();
        assert_eq!((first.hits, first.misses), (0, 1));
        assert_eq!(first.series[0].bars.len(), 50);
        assert_eq!(
            first.series[0].instrument.borrow.annual_rate,
            Some(Decimal::new(3, 2))
        );
        for f in walk(&tmp.path().join("catalog")) {
            if f.extension().is_some_and(|e| e == "parquet") {
                std::fs::remove_file(f).unwrap();
            }
        }
        let second = load_series(&catalog, &cache, &data).unwrap();
        assert_eq!((second.hits, second.misses), (1, 0));
        assert_eq!(second.series, first.series);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.bars), (1, 1, 50));
        // A range never loaded goes to Parquet, which is gone now.
        let start = first.series[0].bars[10].ts;
        let other = DataSpec {
            range: TimeRange {
                start,
                end: i64::MAX,
            },
            ..data
        };
        let e = load_series(&catalog, &cache, &other).unwrap_err();
        assert!(matches!(e, LoadError::Dataset { index: 0, .. }), "{e}");
    }

    /// Warm-up bars are the last ones before the range, as many as asked
    /// for or as there are, in front of the range's own.
    #[test]
    fn warm_up_bars_are_the_last_ones_before_the_range() {
        let tmp = tempfile::tempdir().unwrap();
        let (catalog, id) = catalog(tmp.path());
        let cache = SeriesCache::new(CacheLimits::default());
        let all = load_series(
            &catalog,
            &cache,
            &DataSpec {
                datasets: vec![id.clone()],
                range: TimeRange::ALL,
                fractional: false,
                symbol_borrow_rates: BTreeMap::new(),
                warmup_bars: 0,
            },
        )
        .unwrap()
        .series
        .remove(0)
        .bars;
        let range = TimeRange {
            start: all[30].ts,
            end: all[40].ts,
        };
        for (warmup_bars, first) in [(0, 30), (10, 20), (30, 0), (100, 0)] {
            let s = load_series(
                &catalog,
                &cache,
                &DataSpec {
                    datasets: vec![id.clone()],
                    range,
                    fractional: false,
                    symbol_borrow_rates: BTreeMap::new(),
                    warmup_bars,
                },
            )
            .unwrap()
            .series
            .remove(0)
            .bars;
            assert_eq!(s, all[first..40].to_vec(), "warmup {warmup_bars}");
        }
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out
    }
}
