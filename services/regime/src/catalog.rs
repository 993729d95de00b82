//! Classify by dataset id: market-data's Parquet catalog, read through the
//! store's dataset metadata (grodt-dataset-meta, as the backtest worker
//! reads it), opened on first use so a regime service that is never asked
//! for a dataset never touches the directory.

use std::path::PathBuf;
use std::sync::Arc;

use grodt_core::Bar;
use grodt_data::{Catalog, DataError, DatasetId, MetadataStore, TimeRange};
use grodt_dataset_meta::StoreMetadata;
use grodt_store::{Store, StoreError};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::error::RegimeSvcError;

/// Most bars one Classify takes (as over request bars).
pub const MAX_BARS: usize = crate::convert::MAX_CLASSIFY_BARS;

/// The catalog directory and, once opened, the catalog.
pub struct CatalogSlot {
    dir: PathBuf,
    store: Store,
    catalog: OnceCell<Arc<Catalog>>,
}

/// A dataset's bars, ready for the classifier.
pub struct DatasetBars {
    /// Instrument symbol.
    pub symbol: String,
    /// Timeframe label (`1d`, ...).
    pub timeframe: String,
    /// Decimal places of the prices.
    pub price_precision: u8,
    /// The bars, oldest first.
    pub bars: Vec<Bar>,
}

impl CatalogSlot {
    /// A slot for the catalog at `dir`, over `store`'s dataset metadata.
    pub fn new(dir: PathBuf, store: Store) -> Self {
        Self {
            dir,
            store,
            catalog: OnceCell::new(),
        }
    }

    async fn catalog(&self) -> Result<Arc<Catalog>, RegimeSvcError> {
        self.catalog
            .get_or_try_init(|| async {
                let meta: Arc<dyn MetadataStore> = Arc::new(StoreMetadata::new(
                    self.store.clone(),
                    tokio::runtime::Handle::current(),
                ));
                let dir = self.dir.clone();
                // Opening reads the directory and the (blocking) metadata store.
                tokio::task::spawn_blocking(move || Catalog::open(&dir, meta))
                    .await
                    .map_err(|e| RegimeSvcError::Corrupt(format!("opening the catalog: {e}")))?
                    .map(Arc::new)
                    .map_err(|e| {
                        RegimeSvcError::Precondition(format!(
                            "the data catalog at {} cannot be opened: {e}",
                            self.dir.display()
                        ))
                    })
            })
            .await
            .cloned()
    }

    /// market-data's UUID or the catalog's `source/SYMBOL/timeframe` ->
    /// the catalog id.
    async fn resolve(&self, text: &str) -> Result<DatasetId, RegimeSvcError> {
        let not_found =
            || RegimeSvcError::NotFound(format!("dataset_id {text:?} is not in the catalog"));
        if let Ok(uuid) = Uuid::parse_str(text) {
            return match self.store.datasets().get(uuid).await {
                Ok(row) => DatasetId::new(&row.data.source, &row.data.symbol, &row.data.timeframe)
                    .map_err(|e| RegimeSvcError::Corrupt(format!("stored dataset {uuid}: {e}"))),
                Err(StoreError::NotFound { .. }) => Err(not_found()),
                Err(e) => Err(e.into()),
            };
        }
        let mut parts = text.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(source), Some(symbol), Some(tf)) => DatasetId::new(source, symbol, tf)
                .map_err(|e| RegimeSvcError::invalid("dataset_id", e)),
            _ => Err(RegimeSvcError::invalid(
                "dataset_id",
                format!("{text:?} is neither a dataset UUID nor source/SYMBOL/timeframe"),
            )),
        }
    }

    /// The bars of `dataset_id` in `range`.
    ///
    /// # Errors
    /// NOT_FOUND for an unknown dataset, INVALID_ARGUMENT for an id that is
    /// neither form or a range holding no bars or too many.
    pub async fn load(
        &self,
        dataset_id: &str,
        range: TimeRange,
    ) -> Result<DatasetBars, RegimeSvcError> {
        let id = self.resolve(dataset_id).await?;
        let catalog = self.catalog().await?;
        let (symbol, timeframe) = (id.symbol.clone(), id.timeframe.clone());
        let raw = tokio::task::spawn_blocking(move || catalog.load(&id, range))
            .await
            .map_err(|e| RegimeSvcError::Corrupt(format!("loading the dataset: {e}")))?
            .map_err(|e| match e {
                DataError::NotFound(_) => {
                    RegimeSvcError::NotFound(format!("dataset_id {dataset_id:?}: {e}"))
                }
                other => RegimeSvcError::Corrupt(format!("dataset_id {dataset_id:?}: {other}")),
            })?;
        if raw.is_empty() || raw.len() > MAX_BARS {
            return Err(RegimeSvcError::invalid(
                "range",
                format!(
                    "{} bars of {dataset_id} in range; 1..={MAX_BARS} are accepted",
                    raw.len()
                ),
            ));
        }
        let bars = (0..raw.len())
            .map(|i| Bar {
                ts: raw.ts[i],
                open: raw.open[i],
                high: raw.high[i],
                low: raw.low[i],
                close: raw.close[i],
                volume: raw.volume[i],
            })
            .collect();
        Ok(DatasetBars {
            symbol,
            timeframe,
            price_precision: raw.price_scale,
            bars,
        })
    }
}
