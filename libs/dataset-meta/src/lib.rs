//! `grodt-dataset-meta`: dataset metadata of the Parquet catalog, kept in the
//! store's `datasets` table. [`StoreMetadata`] is grodt-data's synchronous
//! [`MetadataStore`] over grodt-store's `datasets` repository, plus what a
//! service keeps beside a catalog record (the dataset's UUID, display name,
//! instrument and derivation).
//!
//! Who uses it: market-data writes datasets through it (imports, aggregates);
//! the backtest runner opens the same catalog through it, so every imported
//! dataset can be backtested. It is a library so that no service crate
//! depends on another. It knows no protobuf: the instrument is kept as the
//! opaque bytes the caller encoded ([`Extra::instrument_pb`]).
//!
//! Why `block_on`: the catalog calls its metadata store synchronously from
//! the middle of an import (after the files are renamed into place, before
//! the import returns), and the import runs on a `spawn_blocking` thread
//! because polars and file I/O block. From such a thread,
//! `Handle::block_on` drives the async store call to completion without
//! occupying an executor worker. It must never be called from an async
//! task: `block_on` inside the runtime panics, and would stall a worker.

use std::collections::HashMap;
use std::sync::Mutex;

use grodt_data::meta::{MetadataError, PartitionRecord, Provenance};
use grodt_data::validate::QualityReport;
use grodt_data::{DatasetId, DatasetRecord, MetadataStore};
use grodt_store::{Dataset, DatasetFilter, NewDataset, PageRequest, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use uuid::Uuid;

/// Where `grodt up` and the services keep the catalog by default, relative to
/// the working directory (market-data writes it, the backtest runner reads it).
pub const DEFAULT_CATALOG_DIR: &str = "data/catalog";

/// What the service stores with a dataset beyond the catalog record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra {
    /// Display name.
    pub name: String,
    /// The instrument as the caller encoded it (market-data: a protobuf
    /// `grodt.v1.Instrument`); empty when none. Opaque to this crate.
    pub instrument_pb: Vec<u8>,
    /// UUID of the dataset an aggregate derives from.
    pub derived_from: Option<String>,
    /// Replaces the provenance's original file (an upload's client-side
    /// name instead of the server's temporary path).
    pub original: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Details {
    price_scale: u8,
    volume_scale: u8,
    partitions: Vec<PartitionRecord>,
    name: String,
    /// The instrument as protobuf bytes (hex): exact, and new fields survive.
    instrument_pb: String,
    derived_from: Option<String>,
}

/// A dataset as the service sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The store's id of the dataset (market-data's dataset id).
    pub uuid: Uuid,
    /// The catalog record.
    pub record: DatasetRecord,
    /// What is kept beside it.
    pub extra: Extra,
    /// Last change, nanoseconds since the epoch.
    pub updated_at_ns: i64,
}

/// The metadata store of the catalog, on Postgres or SQLite.
pub struct StoreMetadata {
    store: Store,
    handle: Handle,
    /// Extras of imports in progress, consumed by `commit_import`. The
    /// catalog's trait passes only the record; the caller registers the rest
    /// here first (imports of one dataset id are serialized by the service).
    pending: Mutex<HashMap<DatasetId, Extra>>,
}

impl std::fmt::Debug for StoreMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMetadata").finish_non_exhaustive()
    }
}

fn meta_err(e: impl std::fmt::Display) -> MetadataError {
    MetadataError(e.to_string())
}

impl StoreMetadata {
    /// Over `store`; `handle` drives the async store from blocking threads.
    pub fn new(store: Store, handle: Handle) -> Self {
        Self {
            store,
            handle,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Registers what the next `commit_import` of `id` stores beside the record.
    pub fn stage(&self, id: &DatasetId, extra: Extra) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id.clone(), extra);
        }
    }

    /// Forgets a staged extra (after a failed import).
    pub fn unstage(&self, id: &DatasetId) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(id);
        }
    }

    fn to_row(record: &DatasetRecord, extra: &Extra) -> Result<NewDataset, MetadataError> {
        let DatasetRecord {
            id,
            schema_version,
            price_scale,
            volume_scale,
            rows,
            first_ts,
            last_ts,
            checksum,
            partitions,
            provenance,
            quality,
        } = record;
        let details = Details {
            price_scale: *price_scale,
            volume_scale: *volume_scale,
            partitions: partitions.clone(),
            name: extra.name.clone(),
            instrument_pb: hex::encode(&extra.instrument_pb),
            derived_from: extra.derived_from.clone(),
        };
        Ok(NewDataset {
            source: id.source.clone(),
            symbol: id.symbol.clone(),
            timeframe: id.timeframe.clone(),
            row_count: *rows,
            first_ts_ns: *first_ts,
            last_ts_ns: *last_ts,
            checksum: checksum.clone(),
            schema_version: *schema_version,
            provenance: serde_json::to_value(provenance).map_err(meta_err)?,
            quality: serde_json::to_value(quality).map_err(meta_err)?,
            details: serde_json::to_value(details).map_err(meta_err)?,
        })
    }

    /// Decodes a stored row.
    pub fn entry(row: Dataset) -> Result<Entry, StoreError> {
        let Dataset {
            id: uuid,
            data,
            created_at: _,
            updated_at,
        } = row;
        let corrupt = |col: &str, e: String| StoreError::Corrupt {
            row: format!("datasets[id={uuid}].{col}"),
            reason: e,
        };
        let details: Details =
            serde_json::from_value(data.details).map_err(|e| corrupt("details", e.to_string()))?;
        let provenance: Provenance = serde_json::from_value(data.provenance)
            .map_err(|e| corrupt("provenance", e.to_string()))?;
        let quality: QualityReport =
            serde_json::from_value(data.quality).map_err(|e| corrupt("quality", e.to_string()))?;
        let instrument_pb = hex::decode(&details.instrument_pb)
            .map_err(|e| corrupt("details.instrument_pb", e.to_string()))?;
        let record = DatasetRecord {
            id: DatasetId {
                source: data.source,
                symbol: data.symbol,
                timeframe: data.timeframe,
            },
            schema_version: data.schema_version,
            price_scale: details.price_scale,
            volume_scale: details.volume_scale,
            rows: data.row_count,
            first_ts: data.first_ts_ns,
            last_ts: data.last_ts_ns,
            checksum: data.checksum,
            partitions: details.partitions,
            provenance,
            quality,
        };
        Ok(Entry {
            uuid,
            record,
            extra: Extra {
                name: details.name,
                instrument_pb,
                derived_from: details.derived_from,
                original: None,
            },
            updated_at_ns: updated_at.timestamp_nanos_opt().unwrap_or(0),
        })
    }
}

impl MetadataStore for StoreMetadata {
    fn commit_import(&self, record: &DatasetRecord) -> Result<(), MetadataError> {
        let extra = self
            .pending
            .lock()
            .map_err(meta_err)?
            .remove(&record.id)
            .unwrap_or_default();
        let mut record = record.clone();
        if let Some(original) = &extra.original {
            record.provenance.original = original.clone();
        }
        let row = Self::to_row(&record, &extra)?;
        self.handle
            .block_on(self.store.transaction(move |tx| {
                Box::pin(async move { tx.put_dataset(Uuid::now_v7(), &row).await })
            }))
            .map(drop)
            .map_err(|e: StoreError| meta_err(e))
    }

    fn remove(&self, id: &DatasetId) -> Result<bool, MetadataError> {
        let repo = self.store.datasets();
        self.handle.block_on(async {
            match repo.find(&id.source, &id.symbol, &id.timeframe).await {
                Ok(Some(d)) => repo.delete(d.id).await.map_err(meta_err),
                Ok(None) => Ok(false),
                Err(e) => Err(meta_err(e)),
            }
        })
    }

    fn get(&self, id: &DatasetId) -> Result<Option<DatasetRecord>, MetadataError> {
        let repo = self.store.datasets();
        let row = self
            .handle
            .block_on(repo.find(&id.source, &id.symbol, &id.timeframe))
            .map_err(meta_err)?;
        row.map(|r| Self::entry(r).map(|e| e.record).map_err(meta_err))
            .transpose()
    }

    fn list(&self) -> Result<Vec<DatasetRecord>, MetadataError> {
        let repo = self.store.datasets();
        let mut out = Vec::new();
        let mut page = PageRequest::first(PageRequest::MAX_SIZE);
        loop {
            let p = self
                .handle
                .block_on(repo.list(&DatasetFilter::default(), &page))
                .map_err(meta_err)?;
            for row in p.items {
                out.push(Self::entry(row).map_err(meta_err)?.record);
            }
            if p.next_page_token.is_empty() {
                break;
            }
            page.page_token = p.next_page_token;
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use grodt_data::catalog::{ImportRequest, Partitioning};
    use grodt_data::import::CsvOptions;
    use grodt_data::validate::ValidationOptions;
    use grodt_data::{Catalog, DataError};
    use grodt_store::testing::TestDb;

    use super::*;

    const CSV: &str = "timestamp,open,high,low,close,volume\n\
        2024-01-01T00:00:00Z,1.5,2.25,1.25,2,10\n\
        2024-01-01T00:01:00Z,2,2.5,1.75,2.5,12\n\
        2024-01-01T00:02:00Z,2.5,3,2.25,2.75,7\n";

    fn request(dir: &std::path::Path) -> ImportRequest {
        let path = dir.join("bars.csv");
        std::fs::write(&path, CSV).expect("write csv");
        ImportRequest {
            path,
            id: DatasetId::new("test", "ABC", "1m").expect("id"),
            source_description: "test".into(),
            csv: CsvOptions::default(),
            validation: ValidationOptions::new(i64::MAX),
            partitioning: Partitioning::Year,
            replace: false,
            imported_at: 42,
        }
    }

    fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn import_commits_record_and_reads_back_equal_on_sqlite() {
        import_commits_record_and_reads_back_equal(TestDb::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn import_commits_record_and_reads_back_equal_on_postgres() {
        import_commits_record_and_reads_back_equal(TestDb::postgres().await).await;
    }

    async fn import_commits_record_and_reads_back_equal(db: TestDb) {
        let tmp = tempfile::tempdir().expect("tmp");
        let meta = Arc::new(StoreMetadata::new(db.store().clone(), Handle::current()));
        let root = tmp.path().join("catalog");
        let req = request(tmp.path());
        let m = meta.clone();
        let (record, back) = tokio::task::spawn_blocking(move || {
            let catalog = Catalog::open(root, m.clone()).expect("open");
            m.stage(
                &req.id,
                Extra {
                    name: "abc".into(),
                    ..Extra::default()
                },
            );
            let record = catalog.import_csv(&req).expect("import");
            let back = m.get(&req.id).expect("get").expect("stored");
            (record, back)
        })
        .await
        .expect("join");
        assert_eq!(record, back);
        assert_eq!(back.rows, 3);
        let row = db
            .store()
            .datasets()
            .find("test", "ABC", "1m")
            .await
            .expect("find")
            .expect("row");
        assert_eq!(StoreMetadata::entry(row).expect("decode").extra.name, "abc");
    }

    /// A metadata failure after the files were renamed into place leaves
    /// neither files nor metadata behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_metadata_commit_leaves_nothing_behind() {
        let db = TestDb::sqlite().await;
        // Force the commit to fail: the table the transaction writes is gone.
        sqlx_drop(db.store()).await;
        let tmp = tempfile::tempdir().expect("tmp");
        let meta = Arc::new(StoreMetadata::new(db.store().clone(), Handle::current()));
        let root = tmp.path().join("catalog");
        let mut req = request(tmp.path());
        // Straight to writing: the failure must come from the commit itself.
        req.replace = true;
        let r = root.clone();
        let err = tokio::task::spawn_blocking(move || {
            let catalog = Catalog::open(r, meta).expect("open");
            catalog.import_csv(&req).expect_err("commit fails")
        })
        .await
        .expect("join");
        assert!(matches!(err, DataError::Metadata(_)), "{err}");
        assert_eq!(files_under(&root), Vec::<std::path::PathBuf>::new());
    }

    async fn sqlx_drop(store: &Store) {
        store
            .transaction(|tx| {
                Box::pin(async move {
                    let conn = tx.sqlite().expect("sqlite");
                    sqlx_exec(conn).await
                })
            })
            .await
            .expect("drop datasets");
    }

    async fn sqlx_exec(conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
        sqlx::query("DROP TABLE datasets")
            .execute(conn)
            .await
            .map(drop)
            .map_err(|e| StoreError::InvalidArgument {
                field: "sql",
                reason: e.to_string(),
            })
    }
}
