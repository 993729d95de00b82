//! Two-tier cache: loaded frames in an LRU bounded by bytes, over the Parquet files.
//! An entry remembers the dataset checksum it was loaded under; a re-import changes the
//! checksum and the stale entry is dropped on the next lookup.

use std::collections::HashMap;
use std::sync::Mutex;

use polars::prelude::*;

use crate::aggregate::{Alignment, Timeframe, aggregate_lazy};
use crate::catalog::{Catalog, TimeRange};
use crate::error::{DataError, Result};
use crate::meta::DatasetId;

/// What a frame was loaded for. `timeframe: None` = the dataset's own bars.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub dataset: DatasetId,
    pub range: TimeRange,
    pub timeframe: Option<Timeframe>,
    pub alignment: Alignment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    /// Entries dropped because their dataset's checksum changed.
    pub invalidations: u64,
    pub entries: u64,
    pub bytes: u64,
    pub budget_bytes: u64,
}

impl CacheStats {
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

struct Entry {
    frame: DataFrame,
    checksum: String,
    bytes: u64,
    last_used: u64,
}

struct Inner {
    entries: HashMap<CacheKey, Entry>,
    tick: u64,
    stats: CacheStats,
}

/// In-memory LRU of frames with a byte budget.
pub struct FrameCache {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for FrameCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameCache")
            .field("stats", &self.stats())
            .finish()
    }
}

fn poisoned<T>(_: T) -> DataError {
    DataError::Metadata("frame cache lock poisoned".into())
}

impl FrameCache {
    pub fn new(budget_bytes: u64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                tick: 0,
                stats: CacheStats {
                    budget_bytes,
                    ..CacheStats::default()
                },
            }),
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.inner.lock().map(|i| i.stats).unwrap_or_default()
    }

    /// The frame for `key`: from memory if loaded under the dataset's current checksum,
    /// otherwise from the catalog's Parquet files (aggregated if a timeframe is asked for).
    /// Frames larger than the whole budget are returned but not kept.
    pub fn get(&self, catalog: &Catalog, key: &CacheKey) -> Result<DataFrame> {
        let checksum = catalog
            .metadata()
            .get(&key.dataset)?
            .ok_or_else(|| DataError::NotFound(key.dataset.to_string()))?
            .checksum;
        {
            let mut inner = self.inner.lock().map_err(poisoned)?;
            inner.tick += 1;
            let tick = inner.tick;
            let mut stale = false;
            if let Some(e) = inner.entries.get_mut(key) {
                if e.checksum == checksum {
                    e.last_used = tick;
                    let frame = e.frame.clone();
                    inner.stats.hits += 1;
                    return Ok(frame);
                }
                stale = true;
            }
            if stale {
                Self::remove_entry(&mut inner, key);
                inner.stats.invalidations += 1;
            }
            inner.stats.misses += 1;
        }
        let (rec, frame) = catalog.load_frame(&key.dataset, key.range)?;
        let frame = match key.timeframe {
            Some(tf) if tf.label() != rec.id.timeframe => {
                aggregate_lazy(frame.lazy(), tf, key.alignment).collect()?
            }
            _ => frame,
        };
        let bytes = frame.estimated_size() as u64;
        let mut inner = self.inner.lock().map_err(poisoned)?;
        if bytes <= inner.stats.budget_bytes && rec.checksum == checksum {
            Self::remove_entry(&mut inner, key);
            while inner.stats.bytes + bytes > inner.stats.budget_bytes {
                let Some(victim) = inner
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                Self::remove_entry(&mut inner, &victim);
                inner.stats.evictions += 1;
            }
            let tick = inner.tick;
            inner.entries.insert(
                key.clone(),
                Entry {
                    frame: frame.clone(),
                    checksum,
                    bytes,
                    last_used: tick,
                },
            );
            inner.stats.bytes += bytes;
            inner.stats.entries += 1;
        }
        Ok(frame)
    }

    /// Drops every entry of a dataset (e.g. after it was removed).
    pub fn invalidate(&self, dataset: &DatasetId) {
        if let Ok(mut inner) = self.inner.lock() {
            let keys: Vec<CacheKey> = inner
                .entries
                .keys()
                .filter(|k| &k.dataset == dataset)
                .cloned()
                .collect();
            for k in keys {
                Self::remove_entry(&mut inner, &k);
                inner.stats.invalidations += 1;
            }
        }
    }

    fn remove_entry(inner: &mut Inner, key: &CacheKey) {
        if let Some(e) = inner.entries.remove(key) {
            inner.stats.bytes -= e.bytes;
            inner.stats.entries -= 1;
        }
    }
}
