//! A bounded per-process cache of loaded series, so a second backtest of the
//! same dataset and range (an optimization's trials) does not read Parquet
//! again.
//!
//! Entries are the catalog's fixed-point [`Bars`], keyed by dataset id and
//! time range, least recently used first out, bounded by a number of entries
//! and a total number of bars (a series larger than the whole bar budget is
//! returned but not kept). Each entry remembers the dataset checksum it was
//! loaded under: a re-import changes the checksum and the stale entry is
//! reloaded. Eviction scans the entries (O(entries)), which is negligible
//! next to a Parquet read for the few tens of entries this is sized for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use grodt_data::{Bars, Catalog, DataError, DatasetId, TimeRange};

/// How much the cache may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most series kept (0 disables the cache).
    pub max_entries: usize,
    /// Most bars kept over all series.
    pub max_bars: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        // 4M bars of 48 bytes: about 200 MB of series per worker process.
        Self {
            max_entries: 16,
            max_bars: 4_000_000,
        }
    }
}

/// Counters and sizes of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that read the catalog (Parquet).
    pub misses: u64,
    /// Entries dropped to make room.
    pub evictions: u64,
    /// Entries dropped because their dataset changed (checksum).
    pub invalidations: u64,
    /// Series held now.
    pub entries: u64,
    /// Bars held now.
    pub bars: u64,
}

/// Whether a lookup was answered from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// From memory.
    Hit,
    /// Loaded from the catalog.
    Miss,
}

struct Entry {
    bars: Arc<Bars>,
    checksum: String,
    last_used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(DatasetId, TimeRange), Entry>,
    tick: u64,
    stats: CacheStats,
}

impl Inner {
    fn remove(&mut self, key: &(DatasetId, TimeRange)) {
        if let Some(e) = self.entries.remove(key) {
            self.stats.entries -= 1;
            self.stats.bars -= e.bars.len() as u64;
        }
    }
}

/// The cache; share it behind an `Arc` between the jobs of a process.
pub struct SeriesCache {
    limits: CacheLimits,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SeriesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesCache")
            .field("limits", &self.limits)
            .field("stats", &self.stats())
            .finish()
    }
}

impl SeriesCache {
    /// An empty cache bounded by `limits`.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Its bounds.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// Counters and sizes now.
    pub fn stats(&self) -> CacheStats {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stats
    }

    /// The bars of `id` over `range` as loaded under dataset checksum
    /// `checksum`: from memory if held, otherwise from `load` (then kept if
    /// they fit). The lock is not held while `load` runs, so two jobs missing
    /// the same key at once may both load it; the second insert replaces the
    /// first.
    ///
    /// # Errors
    /// Whatever `load` returns.
    pub fn get_or_load<E>(
        &self,
        id: &DatasetId,
        range: TimeRange,
        checksum: &str,
        load: impl FnOnce() -> Result<Bars, E>,
    ) -> Result<(Arc<Bars>, Lookup), E> {
        let key = (id.clone(), range);
        {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.tick += 1;
            let tick = inner.tick;
            let mut stale = false;
            if let Some(e) = inner.entries.get_mut(&key) {
                if e.checksum == checksum {
                    e.last_used = tick;
                    let bars = e.bars.clone();
                    inner.stats.hits += 1;
                    return Ok((bars, Lookup::Hit));
                }
                stale = true;
            }
            if stale {
                inner.remove(&key);
                inner.stats.invalidations += 1;
            }
            inner.stats.misses += 1;
        }
        let bars = Arc::new(load()?);
        let size = bars.len() as u64;
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if self.limits.max_entries > 0 && size <= self.limits.max_bars {
            inner.remove(&key);
            while inner.stats.entries as usize >= self.limits.max_entries
                || inner.stats.bars + size > self.limits.max_bars
            {
                let Some(victim) = inner
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                inner.remove(&victim);
                inner.stats.evictions += 1;
            }
            let last_used = inner.tick;
            inner.entries.insert(
                key,
                Entry {
                    bars: bars.clone(),
                    checksum: checksum.to_owned(),
                    last_used,
                },
            );
            inner.stats.entries += 1;
            inner.stats.bars += size;
        }
        Ok((bars, Lookup::Miss))
    }

    /// The bars of `id` over `range` from `catalog`, through the cache: the
    /// dataset's current checksum comes from the catalog's metadata (a store
    /// read, no Parquet), the bars from memory or, on a miss, from Parquet.
    /// Blocks (metadata store and file I/O): call it from a blocking thread.
    ///
    /// # Errors
    /// The catalog's, naming the dataset.
    pub fn load(
        &self,
        catalog: &Catalog,
        id: &DatasetId,
        range: TimeRange,
    ) -> Result<(Arc<Bars>, Lookup), DataError> {
        let checksum = catalog.describe(id)?.checksum;
        self.get_or_load(id, range, &checksum, || catalog.load(id, range))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn bars(n: usize) -> Bars {
        let mut b = Bars::with_scales(2, 0);
        for i in 0..n {
            let t = i64::try_from(i).unwrap_or(i64::MAX);
            b.push(t, [100, 101, 99, 100, 10]);
        }
        b
    }

    fn id(symbol: &str) -> DatasetId {
        DatasetId::new("test", symbol, "1m").unwrap()
    }

    fn get(
        cache: &SeriesCache,
        reads: &Cell<u32>,
        symbol: &str,
        n: usize,
        checksum: &str,
    ) -> Lookup {
        cache
            .get_or_load(&id(symbol), TimeRange::ALL, checksum, || {
                reads.set(reads.get() + 1);
                Ok::<_, ()>(bars(n))
            })
            .unwrap()
            .1
    }

    #[test]
    fn a_second_lookup_reads_nothing() {
        let cache = SeriesCache::new(CacheLimits::default());
        let reads = Cell::new(0);
        assert_eq!(get(&cache, &reads, "A", 10, "x"), Lookup::Miss);
        assert_eq!(get(&cache, &reads, "A", 10, "x"), Lookup::Hit);
        assert_eq!(reads.get(), 1);
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries, s.bars), (1, 1, 1, 10));
        // Another range is another entry.
        let other = TimeRange { start: 0, end: 5 };
        cache
            .get_or_load(&id("A"), other, "x", || Ok::<_, ()>(bars(5)))
            .unwrap();
        assert_eq!(cache.stats().entries, 2);
    }

    #[test]
    fn least_recently_used_goes_first_within_both_bounds() {
        let cache = SeriesCache::new(CacheLimits {
            max_entries: 2,
            max_bars: 100,
        });
        let reads = Cell::new(0);
        get(&cache, &reads, "A", 10, "x");
        get(&cache, &reads, "B", 10, "x");
        get(&cache, &reads, "A", 10, "x"); // A is now the most recent
        get(&cache, &reads, "C", 10, "x"); // evicts B
        assert_eq!(reads.get(), 3);
        assert_eq!(get(&cache, &reads, "A", 10, "x"), Lookup::Hit);
        assert_eq!(get(&cache, &reads, "B", 10, "x"), Lookup::Miss);
        // The bar bound: 95 bars evict both others.
        get(&cache, &reads, "D", 95, "x");
        let s = cache.stats();
        assert_eq!((s.entries, s.bars), (1, 95));
        // Larger than the whole budget: returned, not kept.
        assert_eq!(get(&cache, &reads, "E", 101, "x"), Lookup::Miss);
        assert_eq!(get(&cache, &reads, "E", 101, "x"), Lookup::Miss);
        assert_eq!(cache.stats().entries, 1);
        assert!(cache.stats().evictions >= 3);
    }

    #[test]
    fn a_changed_checksum_reloads() {
        let cache = SeriesCache::new(CacheLimits::default());
        let reads = Cell::new(0);
        get(&cache, &reads, "A", 10, "x");
        assert_eq!(get(&cache, &reads, "A", 12, "y"), Lookup::Miss);
        let s = cache.stats();
        assert_eq!((s.invalidations, s.entries, s.bars), (1, 1, 12));
    }

    #[test]
    fn zero_entries_disables_it_and_errors_are_not_kept() {
        let cache = SeriesCache::new(CacheLimits {
            max_entries: 0,
            max_bars: 100,
        });
        let reads = Cell::new(0);
        get(&cache, &reads, "A", 10, "x");
        assert_eq!(get(&cache, &reads, "A", 10, "x"), Lookup::Miss);
        let cache = SeriesCache::new(CacheLimits::default());
        let e = cache.get_or_load(&id("A"), TimeRange::ALL, "x", || Err::<Bars, _>("boom"));
        assert_eq!(e.unwrap_err(), "boom");
        assert_eq!(cache.stats().entries, 0);
    }
}
