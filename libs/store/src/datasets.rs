//! Market-data catalog metadata: the `datasets` table on both backends.
//!
//! A row is one dataset (source, symbol, timeframe) with its size, time
//! range, content checksum, schema version, and three opaque JSON documents
//! owned by the market-data service: provenance, quality report and details
//! (scales, partitions, instrument). The SQL is written once in a macro and
//! instantiated per backend; only the id and row types differ.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::{Page, PageRequest};

/// A dataset's metadata as written by an import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDataset {
    /// Where the data came from, e.g. `quantconnect`.
    pub source: String,
    /// Instrument symbol, e.g. `SPY`.
    pub symbol: String,
    /// Bar length label, e.g. `1d`.
    pub timeframe: String,
    /// Bars stored.
    pub row_count: u64,
    /// First bar's timestamp, nanoseconds since the epoch (UTC).
    pub first_ts_ns: i64,
    /// Last bar's timestamp, nanoseconds since the epoch (UTC).
    pub last_ts_ns: i64,
    /// Content checksum of the stored bars.
    pub checksum: String,
    /// Version of the on-disk layout.
    pub schema_version: u32,
    /// Origin: source, original file and its hash, import time.
    pub provenance: serde_json::Value,
    /// The validation report.
    pub quality: serde_json::Value,
    /// Anything else the owner needs back (scales, partitions, ...).
    pub details: serde_json::Value,
}

/// A stored dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Assigned at the first import of (source, symbol, timeframe) and kept
    /// when the dataset is replaced.
    pub id: Uuid,
    /// Everything written by the last import.
    pub data: NewDataset,
    /// First import (microsecond precision).
    pub created_at: DateTime<Utc>,
    /// Last replacement (microsecond precision).
    pub updated_at: DateTime<Utc>,
}

/// Which datasets a listing returns; `None` matches any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetFilter {
    /// Exact source.
    pub source: Option<String>,
    /// Exact symbol.
    pub symbol: Option<String>,
    /// Exact timeframe label.
    pub timeframe: Option<String>,
}

/// Catalog metadata of the market-data service.
#[async_trait]
pub trait Datasets: Send + Sync {
    /// Inserts the dataset under `id`, or replaces the one with the same
    /// (source, symbol, timeframe), which keeps its own id and creation
    /// time. Returns the stored row. For an import that must commit with
    /// other writes, use [`crate::Tx::put_dataset`].
    async fn put(&self, id: Uuid, dataset: &NewDataset) -> Result<Dataset, StoreError>;

    /// The dataset, or `NotFound`.
    async fn get(&self, id: Uuid) -> Result<Dataset, StoreError>;

    /// The dataset with this key, if any.
    async fn find(
        &self,
        source: &str,
        symbol: &str,
        timeframe: &str,
    ) -> Result<Option<Dataset>, StoreError>;

    /// Datasets matching `filter`, newest first. Pages are stable while
    /// datasets are added: a walk yields each dataset that existed at its
    /// start exactly once.
    async fn list(
        &self,
        filter: &DatasetFilter,
        page: &PageRequest,
    ) -> Result<Page<Dataset>, StoreError>;

    /// Removes the dataset; false if there was none.
    async fn delete(&self, id: Uuid) -> Result<bool, StoreError>;
}

pub(crate) fn not_found(id: Uuid) -> StoreError {
    StoreError::NotFound {
        entity: "dataset",
        key: id.to_string(),
    }
}

pub(crate) fn to_i64(field: &'static str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::InvalidArgument {
        field,
        reason: format!("{v} exceeds the stored range"),
    })
}

/// Page tokens of this listing carry the last row's `seq`; the listing runs
/// newest first, so the first page starts below every sequence number.
pub(crate) fn before_seq(page: &PageRequest) -> Result<i64, StoreError> {
    Ok(match page.after_seq()? {
        0 => i64::MAX,
        seq => seq,
    })
}

pub(crate) const COLUMNS: &str = "seq, id, source, symbol, timeframe, row_count, first_ts_ns, \
     last_ts_ns, checksum, schema_version, provenance, quality, details, created_at, updated_at";

/// The SQL of both backends. The invoking module supplies `Conn`, `DbRow`,
/// `bind_id(Uuid)` and `read_id(&DbRow)`.
macro_rules! dataset_sql {
    () => {
        use sqlx::Row;
        use sqlx::types::Json;

        use crate::datasets::{COLUMNS, Dataset, DatasetFilter, NewDataset, before_seq, not_found, to_i64};
        use crate::error::{StoreError, db};
        use crate::model::{Page, PageRequest, now, paginate};

        fn decode(row: &DbRow) -> Result<(i64, Dataset), StoreError> {
            let op = "datasets.decode";
            let id = read_id(row)?;
            let rows: i64 = row.try_get("row_count").map_err(db(op))?;
            let version: i32 = row.try_get("schema_version").map_err(db(op))?;
            let corrupt = |col: &str, reason: String| StoreError::Corrupt {
                row: format!("datasets[id={id}].{col}"),
                reason,
            };
            let provenance: Json<serde_json::Value> = row.try_get("provenance").map_err(db(op))?;
            let quality: Json<serde_json::Value> = row.try_get("quality").map_err(db(op))?;
            let details: Json<serde_json::Value> = row.try_get("details").map_err(db(op))?;
            let data = NewDataset {
                source: row.try_get("source").map_err(db(op))?,
                symbol: row.try_get("symbol").map_err(db(op))?,
                timeframe: row.try_get("timeframe").map_err(db(op))?,
                row_count: u64::try_from(rows).map_err(|e| corrupt("row_count", e.to_string()))?,
                first_ts_ns: row.try_get("first_ts_ns").map_err(db(op))?,
                last_ts_ns: row.try_get("last_ts_ns").map_err(db(op))?,
                checksum: row.try_get("checksum").map_err(db(op))?,
                schema_version: u32::try_from(version)
                    .map_err(|e| corrupt("schema_version", e.to_string()))?,
                provenance: provenance.0,
                quality: quality.0,
                details: details.0,
            };
            let dataset = Dataset {
                id,
                data,
                created_at: row.try_get("created_at").map_err(db(op))?,
                updated_at: row.try_get("updated_at").map_err(db(op))?,
            };
            Ok((row.try_get("seq").map_err(db(op))?, dataset))
        }

        pub(crate) async fn put_dataset(
            conn: &mut Conn,
            id: uuid::Uuid,
            d: &NewDataset,
        ) -> Result<Dataset, StoreError> {
            let sql = format!(
                "INSERT INTO datasets (id, source, symbol, timeframe, row_count, first_ts_ns, \
                 last_ts_ns, checksum, schema_version, provenance, quality, details, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) \
                 ON CONFLICT (source, symbol, timeframe) DO UPDATE SET \
                 row_count = EXCLUDED.row_count, first_ts_ns = EXCLUDED.first_ts_ns, \
                 last_ts_ns = EXCLUDED.last_ts_ns, checksum = EXCLUDED.checksum, \
                 schema_version = EXCLUDED.schema_version, provenance = EXCLUDED.provenance, \
                 quality = EXCLUDED.quality, details = EXCLUDED.details, \
                 updated_at = EXCLUDED.updated_at \
                 RETURNING {COLUMNS}"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(bind_id(id))
                .bind(&d.source)
                .bind(&d.symbol)
                .bind(&d.timeframe)
                .bind(to_i64("row_count", d.row_count)?)
                .bind(d.first_ts_ns)
                .bind(d.last_ts_ns)
                .bind(&d.checksum)
                .bind(i32::try_from(d.schema_version).map_err(|_| StoreError::InvalidArgument {
                    field: "schema_version",
                    reason: format!("{} exceeds the stored range", d.schema_version),
                })?)
                .bind(Json(&d.provenance))
                .bind(Json(&d.quality))
                .bind(Json(&d.details))
                .bind(now())
                .fetch_one(conn)
                .await
                .map_err(db("datasets.put"))?;
            Ok(decode(&row)?.1)
        }

        pub(crate) async fn get_dataset(
            conn: &mut Conn,
            id: uuid::Uuid,
        ) -> Result<Dataset, StoreError> {
            let sql = format!("SELECT {COLUMNS} FROM datasets WHERE id = $1");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(bind_id(id))
                .fetch_optional(conn)
                .await
                .map_err(db("datasets.get"))?;
            match row {
                Some(row) => Ok(decode(&row)?.1),
                None => Err(not_found(id)),
            }
        }

        pub(crate) async fn find_dataset(
            conn: &mut Conn,
            source: &str,
            symbol: &str,
            timeframe: &str,
        ) -> Result<Option<Dataset>, StoreError> {
            let sql = format!(
                "SELECT {COLUMNS} FROM datasets WHERE source = $1 AND symbol = $2 AND timeframe = $3"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(source)
                .bind(symbol)
                .bind(timeframe)
                .fetch_optional(conn)
                .await
                .map_err(db("datasets.find"))?;
            row.map(|r| decode(&r).map(|(_, d)| d)).transpose()
        }

        pub(crate) async fn list_datasets(
            conn: &mut Conn,
            filter: &DatasetFilter,
            page: &PageRequest,
        ) -> Result<Page<Dataset>, StoreError> {
            let before = before_seq(page)?;
            let size = page.effective_size();
            // An empty bind means "any": the filter stays one static statement.
            let sql = format!(
                "SELECT {COLUMNS} FROM datasets WHERE seq < $1 \
                 AND ($2 = '' OR source = $2) AND ($3 = '' OR symbol = $3) \
                 AND ($4 = '' OR timeframe = $4) ORDER BY seq DESC LIMIT $5"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(before)
                .bind(filter.source.as_deref().unwrap_or(""))
                .bind(filter.symbol.as_deref().unwrap_or(""))
                .bind(filter.timeframe.as_deref().unwrap_or(""))
                .bind(i64::from(size) + 1)
                .fetch_all(conn)
                .await
                .map_err(db("datasets.list"))?;
            let rows = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
            Ok(paginate(rows, size))
        }

        pub(crate) async fn delete_dataset(
            conn: &mut Conn,
            id: uuid::Uuid,
        ) -> Result<bool, StoreError> {
            let done = sqlx::query("DELETE FROM datasets WHERE id = $1")
                .bind(bind_id(id))
                .execute(conn)
                .await
                .map_err(db("datasets.delete"))?;
            Ok(done.rows_affected() == 1)
        }
    };
}

pub(crate) mod pg {
    use sqlx::postgres::{PgConnection as Conn, PgRow as DbRow};

    fn bind_id(id: uuid::Uuid) -> uuid::Uuid {
        id
    }

    fn read_id(row: &DbRow) -> Result<uuid::Uuid, StoreError> {
        row.try_get("id").map_err(db("datasets.decode"))
    }

    dataset_sql!();
}

pub(crate) mod sqlite {
    use sqlx::sqlite::{SqliteConnection as Conn, SqliteRow as DbRow};

    fn bind_id(id: uuid::Uuid) -> String {
        id.to_string()
    }

    fn read_id(row: &DbRow) -> Result<uuid::Uuid, StoreError> {
        let text: String = row.try_get("id").map_err(db("datasets.decode"))?;
        uuid::Uuid::parse_str(&text).map_err(|e| StoreError::Corrupt {
            row: format!("datasets[id={text}].id"),
            reason: e.to_string(),
        })
    }

    dataset_sql!();
}

macro_rules! impl_datasets {
    ($repos:ty, $backend:ident) => {
        #[async_trait]
        impl Datasets for $repos {
            async fn put(&self, id: Uuid, dataset: &NewDataset) -> Result<Dataset, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::db("datasets.put"))?;
                $backend::put_dataset(&mut conn, id, dataset).await
            }

            async fn get(&self, id: Uuid) -> Result<Dataset, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::db("datasets.get"))?;
                $backend::get_dataset(&mut conn, id).await
            }

            async fn find(
                &self,
                source: &str,
                symbol: &str,
                timeframe: &str,
            ) -> Result<Option<Dataset>, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::db("datasets.find"))?;
                $backend::find_dataset(&mut conn, source, symbol, timeframe).await
            }

            async fn list(
                &self,
                filter: &DatasetFilter,
                page: &PageRequest,
            ) -> Result<Page<Dataset>, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::db("datasets.list"))?;
                $backend::list_datasets(&mut conn, filter, page).await
            }

            async fn delete(&self, id: Uuid) -> Result<bool, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::db("datasets.delete"))?;
                $backend::delete_dataset(&mut conn, id).await
            }
        }
    };
}

impl_datasets!(crate::pg::PgRepos, pg);
impl_datasets!(crate::sqlite::SqliteRepos, sqlite);
