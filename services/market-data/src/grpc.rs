//! gRPC handlers of `grodt.v1.MarketDataService`. Catalog work (polars,
//! Parquet, CSV parsing, and the metadata store it calls synchronously)
//! runs on `spawn_blocking` threads, never on the executor.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use grodt_bus::EventBus;
use grodt_data::aggregate::{Alignment, Timeframe, aggregate};
use grodt_data::cache::{CacheKey, FrameCache};
use grodt_data::catalog::{ImportRequest, Partitioning, TimeRange};
use grodt_data::meta::Provenance;
use grodt_data::time::from_ns;
use grodt_data::validate::{
    FindingCode, QualityReport, QualityStats, Severity, SourceOrder, ValidationOptions,
};
use grodt_data::{Bars, Catalog, DataError, DatasetId};
use grodt_proto::v1;
use grodt_proto::v1::market_data_service_server::MarketDataService;
use grodt_store::{DatasetFilter, PageRequest, Store};
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::config::MarketDataConfig;
use crate::convert::{self, ImportSpec};
use crate::error::{MdError, status};
use crate::metrics::MdMetrics;
use crate::replay::{Job, Replays};
use grodt_dataset_meta::{Entry, Extra, StoreMetadata};

/// Server-streaming responses are boxed so handlers can return any stream.
type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Default and largest GetBars batch.
const DEFAULT_BATCH: u32 = 1000;
const MAX_BATCH: u32 = 10_000;
/// Default ListDatasets page (the contract's).
const DEFAULT_PAGE: u32 = 100;
/// Largest UploadCsv chunk.
const MAX_CHUNK: usize = 4 * 1024 * 1024;
/// Gaps listed by Aggregate.
const MAX_GAPS: usize = 1000;

/// What the handlers share.
pub(crate) struct Shared {
    pub catalog: Arc<Catalog>,
    pub meta: Arc<StoreMetadata>,
    pub store: Store,
    pub bus: Arc<dyn EventBus>,
    pub cache: Arc<FrameCache>,
    pub metrics: Arc<MdMetrics>,
    pub config: MarketDataConfig,
    pub replays: Replays,
    /// Imports run one at a time: the staged extras of `StoreMetadata` are
    /// keyed by dataset, and two imports of one dataset must not interleave.
    pub import_lock: Arc<Mutex<()>>,
    /// Live feeds stop when this is dropped with the service (they hold only a `Weak`).
    pub feeds_stop: tokio::sync::watch::Sender<bool>,
    /// FetchBars runs one at a time (its staged extras are keyed by dataset, like imports').
    pub fetch_lock: Arc<tokio::sync::Mutex<()>>,
}

/// The handler behind `grodt.v1.MarketDataService`.
#[derive(Clone)]
pub struct MarketDataApi {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for MarketDataApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketDataApi")
            .field("catalog", &self.shared.catalog.root())
            .finish_non_exhaustive()
    }
}

async fn blocking<T, F>(f: F) -> Result<T, MdError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, MdError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MdError::Internal(format!("blocking task: {e}")))?
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn sha256_file(path: &Path) -> Result<String, MdError> {
    let mut file = std::fs::File::open(path).map_err(|e| MdError::Data(io(path, e)))?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).map_err(|e| MdError::Data(io(path, e)))?;
    Ok(hex::encode(h.finalize()))
}

fn io(path: &Path, source: std::io::Error) -> DataError {
    DataError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// End of a dataset's range: one timeframe after its last bar.
fn range_end(last_ns: i64, tf: Option<Timeframe>) -> i64 {
    match tf.and_then(Timeframe::nanos) {
        Some(n) => last_ns.saturating_add(n),
        None => {
            let next = from_ns(last_ns)
                .checked_add_months(chrono::Months::new(1))
                .and_then(|d| d.and_utc().timestamp_nanos_opt());
            next.unwrap_or(last_ns)
        }
    }
}

/// The wire form of a stored dataset.
/// The dataset's instrument: the protobuf bytes market-data stored beside the
/// record (grodt-dataset-meta keeps them opaque). Bytes that do not decode
/// are reported and shown as no instrument.
fn instrument_of(e: &Entry) -> Option<v1::Instrument> {
    if e.extra.instrument_pb.is_empty() {
        return None;
    }
    match v1::Instrument::decode(e.extra.instrument_pb.as_slice()) {
        Ok(i) => Some(i),
        Err(err) => {
            tracing::warn!(dataset = %e.uuid, error = %err, "stored instrument does not decode");
            None
        }
    }
}

pub(crate) fn dataset_proto(e: &Entry) -> v1::Dataset {
    let r = &e.record;
    let tf = Timeframe::parse(&r.id.timeframe).ok();
    let warnings = r
        .quality
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    v1::Dataset {
        dataset_id: e.uuid.to_string(),
        name: e.extra.name.clone(),
        instrument: instrument_of(e),
        timeframe: tf.map_or(v1::Timeframe::Unspecified, convert::timeframe_to_proto) as i32,
        range: Some(v1::TimeRange {
            start: Some(convert::ts_to_proto(r.first_ts)),
            end: Some(convert::ts_to_proto(range_end(r.last_ts, tf))),
        }),
        row_count: r.rows,
        content_sha256: r.checksum.clone(),
        schema_version: r.schema_version,
        provenance: Some(v1::Provenance {
            source: r.provenance.source.clone(),
            original_file: r.provenance.original.clone(),
            original_sha256: r.provenance.original_sha256.clone(),
            imported_at: Some(convert::ts_to_proto(r.provenance.imported_at)),
            derived_from_dataset_id: e.extra.derived_from.clone().unwrap_or_default(),
        }),
        warning_count: warnings as u32,
        gap_count: r.quality.stats.gaps_reported,
    }
}

/// How an import ended.
enum Imported {
    Stored(Box<Entry>),
    Rejected(Box<QualityReport>),
}

impl Shared {
    async fn entry(&self, field: &str, dataset_id: &str) -> Result<Entry, MdError> {
        if dataset_id.is_empty() {
            return Err(MdError::invalid(field, "required"));
        }
        let uuid = Uuid::parse_str(dataset_id)
            .map_err(|e| MdError::invalid(field, format!("{dataset_id:?} is not a UUID: {e}")))?;
        match self.store.datasets().get(uuid).await {
            Ok(row) => Ok(StoreMetadata::entry(row)?),
            Err(grodt_store::StoreError::NotFound { .. }) => Err(MdError::NotFound {
                what: "dataset",
                id: dataset_id.to_owned(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn entry_by_key(&self, id: &DatasetId) -> Result<Option<Entry>, MdError> {
        let row = self
            .store
            .datasets()
            .find(&id.source, &id.symbol, &id.timeframe)
            .await?;
        Ok(row.map(StoreMetadata::entry).transpose()?)
    }

    /// Imports `path` (readable here) under `spec`; `original` names the
    /// file in the provenance.
    async fn import(
        self: &Arc<Self>,
        path: PathBuf,
        spec: ImportSpec,
        original: String,
    ) -> Result<Imported, MdError> {
        let me = self.clone();
        let id = spec.id.clone();
        let outcome = blocking(move || me.import_blocking(&path, spec, original)).await?;
        match outcome {
            Some(report) => {
                self.count_rejected(&report, true);
                Ok(Imported::Rejected(report))
            }
            None => {
                let entry = self.entry_by_key(&id).await?.ok_or_else(|| {
                    MdError::Internal(format!("dataset {id} vanished after its import"))
                })?;
                self.count_rejected(&entry.record.quality, false);
                self.metrics.rows_imported.inc_by(entry.record.rows);
                Ok(Imported::Stored(Box::new(entry)))
            }
        }
    }

    fn count_rejected(&self, report: &QualityReport, rejected: bool) {
        for f in &report.findings {
            let dropped = f.code == FindingCode::MissingSkipped;
            if (rejected && f.severity == Severity::Error) || dropped {
                self.metrics
                    .rows_rejected
                    .with_label_values(&[convert::check_id(f.code)])
                    .inc_by(f.rows.len() as u64);
            }
        }
    }

    /// `Some(report)` when validation rejected the file.
    fn import_blocking(
        &self,
        path: &Path,
        spec: ImportSpec,
        original: String,
    ) -> Result<Option<Box<QualityReport>>, MdError> {
        let _one_at_a_time = self
            .import_lock
            .lock()
            .map_err(|_| MdError::Internal("import lock poisoned".into()))?;
        let sha = sha256_file(path)?;
        if let Some(existing) = self
            .catalog
            .metadata()
            .get(&spec.id)
            .map_err(DataError::from)?
        {
            if spec.idempotent && existing.provenance.original_sha256 == sha {
                return Ok(None);
            }
            return Err(DataError::AlreadyExists(format!(
                "{} (set spec.idempotent to get it back for the same file)",
                spec.id
            ))
            .into());
        }
        let now = now_ns();
        let request = ImportRequest {
            path: path.to_path_buf(),
            id: spec.id.clone(),
            source_description: spec.id.source.clone(),
            csv: spec.csv,
            validation: ValidationOptions {
                outlier_z: spec.outlier_z,
                calendar: spec.calendar,
                label: spec.label,
                gap_tolerance_bars: spec.gap_tolerance_bars,
                duplicate_run_min: 3,
                now,
                timeframe_ns: spec.timeframe.nanos(),
            },
            partitioning: if spec
                .timeframe
                .nanos()
                .is_some_and(|n| n < 86_400_000_000_000)
            {
                Partitioning::Month
            } else {
                Partitioning::Year
            },
            replace: false,
            imported_at: now,
        };
        self.meta.stage(
            &spec.id,
            Extra {
                name: spec.name,
                instrument_pb: spec.instrument.encode_to_vec(),
                derived_from: None,
                original: Some(original),
            },
        );
        let outcome = self.catalog.import_csv(&request);
        self.meta.unstage(&spec.id);
        match outcome {
            Ok(_) => {
                self.cache.invalidate(&spec.id);
                Ok(None)
            }
            Err(DataError::Rejected { report, .. }) => Ok(Some(report)),
            Err(e) => Err(e.into()),
        }
    }

    /// The bars of `entry` in `range`, at `tf` (None = its own), through the cache.
    async fn bars(
        self: &Arc<Self>,
        entry: &Entry,
        range: TimeRange,
        tf: Option<Timeframe>,
    ) -> Result<Bars, MdError> {
        let me = self.clone();
        let rec = entry.record.clone();
        let bars = blocking(move || {
            let key = CacheKey {
                dataset: rec.id.clone(),
                range,
                timeframe: tf.filter(|t| t.label() != rec.id.timeframe),
                alignment: Alignment::Utc,
            };
            let frame = me.cache.get(&me.catalog, &key);
            me.metrics.observe_cache(&me.cache.stats());
            Ok(Bars::from_frame(
                &frame?,
                rec.price_scale,
                rec.volume_scale,
            )?)
        })
        .await?;
        Ok(bars)
    }
}

#[tonic::async_trait]
impl MarketDataService for MarketDataApi {
    type GetBarsStream = ResponseStream<v1::GetBarsResponse>;
    type FetchBarsStream = ResponseStream<v1::FetchBarsResponse>;

    async fn fetch_bars(
        &self,
        request: Request<v1::FetchBarsRequest>,
    ) -> Result<Response<Self::FetchBarsStream>, Status> {
        let rx = crate::fetch::spawn(self.shared.clone(), request.into_inner(), now_ns())
            .map_err(|e| status(&e))?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn import_csv(
        &self,
        request: Request<v1::ImportCsvRequest>,
    ) -> Result<Response<v1::ImportCsvResponse>, Status> {
        let v1::ImportCsvRequest { path, spec } = request.into_inner();
        let run = async {
            let spec = convert::import_spec("spec", spec)?;
            if path.is_empty() {
                return Err(MdError::invalid("path", "required"));
            }
            let p = PathBuf::from(&path);
            if !p.is_absolute() {
                return Err(MdError::invalid(
                    "path",
                    format!("{path:?} is not absolute"),
                ));
            }
            if path.ends_with(".csv.gz") {
                return Err(MdError::invalid(
                    "path",
                    "gzip-compressed files are not read by this build; decompress first",
                ));
            }
            if !path.ends_with(".csv") {
                return Err(MdError::invalid(
                    "path",
                    format!("{path:?} must end in .csv"),
                ));
            }
            match tokio::fs::metadata(&p).await {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(MdError::NotFound {
                        what: "file",
                        id: path.clone(),
                    });
                }
                Err(e) => {
                    return Err(MdError::Precondition(format!(
                        "path: {path:?} is not readable by the server: {e}"
                    )));
                }
                Ok(m) if !m.is_file() => {
                    return Err(MdError::Precondition(format!(
                        "path: {path:?} is not a regular file"
                    )));
                }
                Ok(_) => {}
            }
            self.shared.import(p, spec, path.clone()).await
        };
        match run.await.map_err(|e| status(&e))? {
            Imported::Stored(e) => Ok(Response::new(v1::ImportCsvResponse {
                dataset: Some(dataset_proto(&e)),
                report: Some(convert::report(&e.record.quality)),
            })),
            Imported::Rejected(r) => Ok(Response::new(v1::ImportCsvResponse {
                dataset: None,
                report: Some(convert::report(&r)),
            })),
        }
    }

    async fn upload_csv(
        &self,
        request: Request<Streaming<v1::UploadCsvRequest>>,
    ) -> Result<Response<v1::UploadCsvResponse>, Status> {
        let mut stream = request.into_inner();
        let limit = self.shared.config.upload_max_bytes;
        let run = async {
            let first = stream
                .message()
                .await?
                .ok_or_else(|| MdError::invalid("part.header", "the stream is empty"))?;
            let v1::UploadCsvRequest { part } = first;
            let Some(v1::upload_csv_request::Part::Header(header)) = part else {
                return Err(MdError::invalid(
                    "part.header",
                    "required in the first message",
                ));
            };
            let v1::UploadCsvHeader {
                file_name,
                spec,
                sha256,
            } = header;
            if file_name.is_empty() || file_name.len() > 255 {
                return Err(MdError::invalid(
                    "header.file_name",
                    "1..255 chars required",
                ));
            }
            if !sha256.is_empty()
                && (sha256.len() != 64
                    || !sha256
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            {
                return Err(MdError::invalid(
                    "header.sha256",
                    "must be 64 lowercase hex chars",
                ));
            }
            let spec = convert::import_spec("header.spec", spec)?;
            let dir = tempfile::tempdir()
                .map_err(|e| MdError::Internal(format!("upload temp dir: {e}")))?;
            let path = dir.path().join("upload.csv");
            let mut file = tokio::fs::File::create(&path)
                .await
                .map_err(|e| MdError::Data(io(&path, e)))?;
            let mut hasher = Sha256::new();
            let mut received: u64 = 0;
            while let Some(msg) = stream.message().await? {
                let v1::UploadCsvRequest { part } = msg;
                let chunk = match part {
                    Some(v1::upload_csv_request::Part::Chunk(c)) => c,
                    Some(v1::upload_csv_request::Part::Header(_)) => {
                        return Err(MdError::invalid(
                            "part.header",
                            "forbidden after the first message",
                        ));
                    }
                    None => return Err(MdError::invalid("part.chunk", "required")),
                };
                if chunk.is_empty() || chunk.len() > MAX_CHUNK {
                    return Err(MdError::invalid("part.chunk", "1 byte..4 MiB per chunk"));
                }
                received += chunk.len() as u64;
                if received > limit {
                    return Err(MdError::TooLarge { limit });
                }
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|e| MdError::Data(io(&path, e)))?;
            }
            file.flush()
                .await
                .map_err(|e| MdError::Data(io(&path, e)))?;
            drop(file);
            let digest = hex::encode(hasher.finalize());
            if !sha256.is_empty() && sha256 != digest {
                return Err(MdError::DataLoss {
                    expected: sha256,
                    actual: digest,
                });
            }
            let imported = self.shared.import(path, spec, file_name).await?;
            drop(dir);
            Ok((imported, received, digest))
        };
        let (imported, bytes_received, sha256) = run.await.map_err(|e| status(&e))?;
        let (dataset, report) = match imported {
            Imported::Stored(e) => (
                Some(dataset_proto(&e)),
                Some(convert::report(&e.record.quality)),
            ),
            Imported::Rejected(r) => (None, Some(convert::report(&r))),
        };
        Ok(Response::new(v1::UploadCsvResponse {
            dataset,
            report,
            bytes_received,
            sha256,
        }))
    }

    async fn list_datasets(
        &self,
        request: Request<v1::ListDatasetsRequest>,
    ) -> Result<Response<v1::ListDatasetsResponse>, Status> {
        let v1::ListDatasetsRequest {
            page,
            symbol,
            source,
            timeframe,
        } = request.into_inner();
        let run = async {
            let page = match page {
                None => PageRequest::first(DEFAULT_PAGE),
                Some(v1::PageRequest {
                    page_size,
                    page_token,
                }) => PageRequest {
                    page_size: if page_size == 0 {
                        DEFAULT_PAGE
                    } else {
                        page_size
                    },
                    page_token,
                },
            };
            let timeframe = match timeframe {
                0 => None,
                tf => Some(convert::timeframe("timeframe", tf)?.label().to_owned()),
            };
            let filter = DatasetFilter {
                source: (!source.is_empty()).then_some(source),
                symbol: (!symbol.is_empty()).then_some(symbol),
                timeframe,
            };
            let p = self.shared.store.datasets().list(&filter, &page).await?;
            let datasets = p
                .items
                .into_iter()
                .map(|row| StoreMetadata::entry(row).map(|e| dataset_proto(&e)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, MdError>(v1::ListDatasetsResponse {
                datasets,
                page: Some(v1::PageResponse {
                    next_page_token: p.next_page_token,
                }),
            })
        };
        run.await.map(Response::new).map_err(|e| status(&e))
    }

    async fn describe_dataset(
        &self,
        request: Request<v1::DescribeDatasetRequest>,
    ) -> Result<Response<v1::DescribeDatasetResponse>, Status> {
        let v1::DescribeDatasetRequest { dataset_id } = request.into_inner();
        let e = self
            .shared
            .entry("dataset_id", &dataset_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(v1::DescribeDatasetResponse {
            dataset: Some(dataset_proto(&e)),
            report: Some(convert::report(&e.record.quality)),
        }))
    }

    async fn get_bars(
        &self,
        request: Request<v1::GetBarsRequest>,
    ) -> Result<Response<Self::GetBarsStream>, Status> {
        let v1::GetBarsRequest {
            dataset_id,
            range,
            timeframe,
            batch_size,
        } = request.into_inner();
        let run = async {
            let e = self.shared.entry("dataset_id", &dataset_id).await?;
            let range = convert::range("range", range)?;
            let own = Timeframe::parse(&e.record.id.timeframe)?;
            let tf = match timeframe {
                0 => own,
                t => convert::timeframe("timeframe", t)?,
            };
            if convert::rank(tf) < convert::rank(own) {
                return Err(MdError::invalid(
                    "timeframe",
                    format!(
                        "{} is finer than the dataset's {}; bars aggregate only to coarser ones",
                        tf.label(),
                        own.label()
                    ),
                ));
            }
            let batch = match batch_size {
                0 => DEFAULT_BATCH,
                b if b > MAX_BATCH => {
                    return Err(MdError::invalid("batch_size", "at most 10000"));
                }
                b => b,
            } as usize;
            let bars = self.shared.bars(&e, range, Some(tf)).await?;
            Ok((bars, batch, e.record.id.symbol.clone(), tf))
        };
        let (bars, batch, symbol, tf) = run.await.map_err(|e| status(&e))?;
        let bars = Arc::new(bars);
        let ptf = convert::timeframe_to_proto(tf);
        let n = bars.len();
        let stream = futures::stream::iter((0..n).step_by(batch)).map(move |start| {
            let end = (start + batch).min(n);
            Ok::<_, Status>(v1::GetBarsResponse {
                bars: (start..end)
                    .map(|i| convert::bar(&bars, i, &symbol, ptf))
                    .collect(),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn aggregate(
        &self,
        request: Request<v1::AggregateRequest>,
    ) -> Result<Response<v1::AggregateResponse>, Status> {
        let v1::AggregateRequest {
            dataset_id,
            target_timeframe,
            alignment,
            dataset_name,
        } = request.into_inner();
        let shared = self.shared.clone();
        let run = async {
            let src = shared.entry("dataset_id", &dataset_id).await?;
            let target = convert::timeframe("target_timeframe", target_timeframe)?;
            let own = Timeframe::parse(&src.record.id.timeframe)?;
            if convert::rank(target) <= convert::rank(own) {
                return Err(MdError::invalid(
                    "target_timeframe",
                    format!(
                        "{} is not coarser than the dataset's {}",
                        target.label(),
                        own.label()
                    ),
                ));
            }
            let align = convert::alignment("alignment", alignment, &src.record.id)?;
            if dataset_name.len() > 128 {
                return Err(MdError::invalid("dataset_name", "at most 128 chars"));
            }
            let new_id =
                DatasetId::new(&src.record.id.source, &src.record.id.symbol, target.label())?;
            let replace = match shared.entry_by_key(&new_id).await? {
                Some(existing)
                    if existing.extra.derived_from.as_deref() == Some(dataset_id.as_str()) =>
                {
                    true
                }
                Some(_) => {
                    return Err(MdError::Data(DataError::AlreadyExists(format!(
                        "{new_id} (imported, not derived from {dataset_id})"
                    ))));
                }
                None => false,
            };
            let bars = shared.bars(&src, TimeRange::ALL, None).await?;
            let name = if dataset_name.is_empty() {
                format!("{} {}", src.extra.name, target.label())
            } else {
                dataset_name
            };
            let me = shared.clone();
            let src_rec = src.record.clone();
            let extra = Extra {
                name,
                instrument_pb: src.extra.instrument_pb.clone(),
                derived_from: Some(dataset_id.clone()),
                original: None,
            };
            let id = new_id.clone();
            let agg = blocking(move || {
                let agg = aggregate(&bars, target, align)?;
                let now = now_ns();
                let quality = QualityReport {
                    findings: Vec::new(),
                    gaps: Vec::new(),
                    stats: QualityStats {
                        lines_read: bars.len() as u64,
                        rows_imported: agg.bars.len() as u64,
                        rows_skipped: 0,
                        rows_filled: 0,
                        errors: 0,
                        warnings: 0,
                        source_order: SourceOrder::Ascending,
                        sorted_on_import: false,
                        timeframe_ns: target.nanos().unwrap_or(0),
                        outliers: 0,
                        duplicate_bar_rows: 0,
                        zero_volume_bars: 0,
                        gaps_reported: 0,
                        gaps_closed: 0,
                        gaps_tolerated: 0,
                        return_median: 0.0,
                        return_mad: 0.0,
                    },
                };
                let provenance = Provenance {
                    source: src_rec.provenance.source.clone(),
                    original: format!("aggregate of {} to {}", src_rec.id, target.label()),
                    original_sha256: src_rec.checksum.clone(),
                    imported_at: now,
                };
                let _one_at_a_time = me
                    .import_lock
                    .lock()
                    .map_err(|_| MdError::Internal("import lock poisoned".into()))?;
                me.meta.stage(&id, extra);
                let written = me.catalog.write_dataset(
                    &id,
                    &agg.bars,
                    provenance,
                    quality,
                    Partitioning::Year,
                    replace,
                );
                me.meta.unstage(&id);
                written?;
                me.cache.invalidate(&id);
                Ok((bars.len() as u64, agg))
            })
            .await?;
            let entry = shared.entry_by_key(&new_id).await?.ok_or_else(|| {
                MdError::Internal(format!("dataset {new_id} vanished after aggregation"))
            })?;
            Ok::<_, MdError>((entry, agg))
        };
        let (entry, (source_bars, agg)) = run.await.map_err(|e| status(&e))?;
        let gaps = agg
            .gaps
            .iter()
            .take(MAX_GAPS)
            .map(|&(before, after, missing)| v1::Gap {
                range: Some(v1::TimeRange {
                    start: Some(convert::ts_to_proto(range_end(
                        before,
                        Timeframe::parse(&entry.record.id.timeframe).ok(),
                    ))),
                    end: Some(convert::ts_to_proto(after)),
                }),
                missing_bars: missing,
            })
            .collect();
        Ok(Response::new(v1::AggregateResponse {
            dataset: Some(dataset_proto(&entry)),
            source_bars,
            aggregated_bars: agg.bars.len() as u64,
            gaps,
            gap_count: agg.gaps.len() as u64,
        }))
    }

    async fn start_replay(
        &self,
        request: Request<v1::StartReplayRequest>,
    ) -> Result<Response<v1::StartReplayResponse>, Status> {
        let v1::StartReplayRequest {
            dataset_id,
            range,
            speed,
            replay_id,
        } = request.into_inner();
        let shared = self.shared.clone();
        let run = async {
            if !(speed.is_finite() && speed >= 0.0) {
                return Err(MdError::invalid("speed", "must be a finite number >= 0"));
            }
            let replay_id = if replay_id.is_empty() {
                Uuid::now_v7().to_string()
            } else if replay_id.len() > 64
                || !replay_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(MdError::invalid(
                    "replay_id",
                    "1..64 chars of [A-Za-z0-9_-]",
                ));
            } else {
                replay_id
            };
            let e = shared.entry("dataset_id", &dataset_id).await?;
            let range = convert::range("range", range)?;
            if let Some(s) = shared.replays.status(&replay_id)? {
                if s.dataset_id == dataset_id {
                    return Ok(s);
                }
                return Err(MdError::Data(DataError::AlreadyExists(format!(
                    "replay {replay_id} (of dataset {})",
                    s.dataset_id
                ))));
            }
            shared.replays.check_free(&dataset_id)?;
            let tf = Timeframe::parse(&e.record.id.timeframe)?;
            let bars = shared.bars(&e, range, None).await?;
            let job = Job {
                replay_id,
                dataset_id: dataset_id.clone(),
                symbol: e.record.id.symbol.clone(),
                timeframe: convert::timeframe_to_proto(tf),
                bars,
                speed,
                started_at_ns: now_ns(),
                yield_every: shared.config.replay_yield_every,
            };
            shared
                .replays
                .start(job, shared.bus.clone(), shared.metrics.clone())
        };
        let s = run.await.map_err(|e| status(&e))?;
        Ok(Response::new(v1::StartReplayResponse {
            status: Some(s.to_proto()),
        }))
    }

    async fn stop_replay(
        &self,
        request: Request<v1::StopReplayRequest>,
    ) -> Result<Response<v1::StopReplayResponse>, Status> {
        let v1::StopReplayRequest { replay_id } = request.into_inner();
        if replay_id.is_empty() {
            return Err(status(&MdError::invalid("replay_id", "required")));
        }
        let s = self
            .shared
            .replays
            .stop(&replay_id)
            .map_err(|e| status(&e))?;
        Ok(Response::new(v1::StopReplayResponse {
            status: Some(s.to_proto()),
        }))
    }

    async fn get_cache_stats(
        &self,
        request: Request<v1::GetCacheStatsRequest>,
    ) -> Result<Response<v1::GetCacheStatsResponse>, Status> {
        let v1::GetCacheStatsRequest {} = request.into_inner();
        let s = self.shared.cache.stats();
        self.shared.metrics.observe_cache(&s);
        Ok(Response::new(v1::GetCacheStatsResponse {
            hits: s.hits,
            misses: s.misses,
            evictions: s.evictions,
            invalidations: s.invalidations,
            entries: s.entries,
            bytes_used: s.bytes,
            bytes_budget: s.budget_bytes,
            hit_ratio: s.hit_ratio(),
        }))
    }
}

impl From<Status> for MdError {
    fn from(s: Status) -> Self {
        MdError::invalid("stream", format!("upload stream failed: {}", s.message()))
    }
}
