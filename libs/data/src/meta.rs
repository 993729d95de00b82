//! Catalog metadata behind a synchronous trait, so that the catalog does not care
//! whether it lives in memory, SQLite or Postgres (grodt-store implements it there).

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::time::TimestampNs;
use crate::validate::QualityReport;

/// Version of the on-disk layout and column schema written by this crate.
pub const SCHEMA_VERSION: u32 = 1;

/// A dataset: one symbol of one source at one timeframe. Each part is a path
/// component: ASCII letters, digits, `.`, `_`, `-`, not starting with `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DatasetId {
    pub source: String,
    pub symbol: String,
    pub timeframe: String,
}

impl DatasetId {
    pub fn new(source: &str, symbol: &str, timeframe: &str) -> Result<Self> {
        for (field, v) in [
            ("source", source),
            ("symbol", symbol),
            ("timeframe", timeframe),
        ] {
            let ok = !v.is_empty()
                && !v.starts_with('.')
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return Err(DataError::InvalidOption {
                    field,
                    reason: format!(
                        "{v:?} must be ASCII letters, digits, '.', '_' or '-', not starting with '.'"
                    ),
                });
            }
        }
        Ok(Self {
            source: source.to_owned(),
            symbol: symbol.to_owned(),
            timeframe: timeframe.to_owned(),
        })
    }
}

impl std::fmt::Display for DatasetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.source, self.symbol, self.timeframe)
    }
}

/// One Parquet file of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// e.g. `2024` or `2024-01`.
    pub period: String,
    /// Path relative to the catalog root.
    pub file: String,
    pub rows: u64,
    pub first_ts: TimestampNs,
    pub last_ts: TimestampNs,
    /// sha256 of the file's bytes.
    pub file_sha256: String,
}

/// Where a dataset came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Free text: vendor, exchange or URL.
    pub source: String,
    /// The original file (or request) imported.
    pub original: String,
    /// sha256 of the original file's bytes (empty for fetched data).
    pub original_sha256: String,
    /// Import time, injected by the caller.
    pub imported_at: TimestampNs,
}

/// Everything the catalog knows about a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub id: DatasetId,
    pub schema_version: u32,
    pub price_scale: u8,
    pub volume_scale: u8,
    pub rows: u64,
    pub first_ts: TimestampNs,
    pub last_ts: TimestampNs,
    /// `Bars::checksum` of the whole content.
    pub checksum: String,
    pub partitions: Vec<PartitionRecord>,
    pub provenance: Provenance,
    pub quality: QualityReport,
}

/// Failure of a metadata store; the store did not change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MetadataError(pub String);

impl From<MetadataError> for DataError {
    fn from(e: MetadataError) -> Self {
        DataError::Metadata(e.0)
    }
}

/// Storage of catalog metadata. Implementations must make `commit_import` all or nothing
/// (one database transaction: dataset row, partitions, provenance and quality together).
pub trait MetadataStore: Send + Sync {
    /// Stores `record`, replacing any earlier version of the same dataset.
    fn commit_import(&self, record: &DatasetRecord) -> Result<(), MetadataError>;
    /// Removes a dataset; false if it was not there.
    fn remove(&self, id: &DatasetId) -> Result<bool, MetadataError>;
    fn get(&self, id: &DatasetId) -> Result<Option<DatasetRecord>, MetadataError>;
    /// Every dataset, ordered by id.
    fn list(&self) -> Result<Vec<DatasetRecord>, MetadataError>;
    /// Distinct symbols across datasets, sorted.
    fn symbols(&self) -> Result<Vec<String>, MetadataError> {
        let mut s: Vec<String> = self.list()?.into_iter().map(|r| r.id.symbol).collect();
        s.sort();
        s.dedup();
        Ok(s)
    }
}

/// In-process store for tests, the CLI and embedded use without a database.
#[derive(Debug, Default)]
pub struct InMemoryMetadata {
    inner: RwLock<BTreeMap<DatasetId, DatasetRecord>>,
}

impl InMemoryMetadata {
    pub fn new() -> Self {
        Self::default()
    }
}

fn poisoned<T>(_: T) -> MetadataError {
    MetadataError("in-memory metadata lock poisoned".into())
}

impl MetadataStore for InMemoryMetadata {
    fn commit_import(&self, record: &DatasetRecord) -> Result<(), MetadataError> {
        self.inner
            .write()
            .map_err(poisoned)?
            .insert(record.id.clone(), record.clone());
        Ok(())
    }

    fn remove(&self, id: &DatasetId) -> Result<bool, MetadataError> {
        Ok(self.inner.write().map_err(poisoned)?.remove(id).is_some())
    }

    fn get(&self, id: &DatasetId) -> Result<Option<DatasetRecord>, MetadataError> {
        Ok(self.inner.read().map_err(poisoned)?.get(id).cloned())
    }

    fn list(&self) -> Result<Vec<DatasetRecord>, MetadataError> {
        Ok(self
            .inner
            .read()
            .map_err(poisoned)?
            .values()
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_safe_path_components() {
        assert!(DatasetId::new("binance", "BTCUSDT", "1m").is_ok());
        assert!(DatasetId::new("..", "x", "1m").is_err());
        assert!(DatasetId::new("a/b", "x", "1m").is_err());
        assert!(DatasetId::new("a", "", "1m").is_err());
        assert_eq!(
            DatasetId::new("cme", "6EH4", "1m").unwrap().to_string(),
            "cme/6EH4/1m"
        );
    }
}
