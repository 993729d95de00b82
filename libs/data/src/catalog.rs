//! The on-disk catalog: Parquet (zstd) files under `source/symbol/timeframe/period=P/`,
//! prices and volumes as Int64 fixed-point with their scales in the file metadata,
//! imports written to a temporary directory, synced and renamed into place, then
//! recorded in the metadata store; any failure leaves neither files nor metadata.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Datelike;
use polars::prelude::*;
use sha2::{Digest, Sha256};

use crate::bars::Bars;
use crate::error::{DataError, Result};
use crate::fixed::format_fixed;
use crate::import::{CsvOptions, read_csv};
use crate::meta::{
    DatasetId, DatasetRecord, MetadataStore, PartitionRecord, Provenance, SCHEMA_VERSION,
};
use crate::time::{TimestampNs, format_ns, from_ns};
use crate::validate::{
    Finding, FindingCode, Layer, QualityReport, Severity, ValidationOptions, finding,
    power_of_ten_apart, validate,
};

const KEY_PRICE_SCALE: &str = "grodt.price_scale";
const KEY_VOLUME_SCALE: &str = "grodt.volume_scale";
const KEY_SCHEMA: &str = "grodt.schema_version";
const KEY_DATASET: &str = "grodt.dataset";

/// How a dataset is split into files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Partitioning {
    #[default]
    Year,
    Month,
}

impl Partitioning {
    fn period(self, ts: TimestampNs) -> String {
        let d = from_ns(ts);
        match self {
            Partitioning::Year => format!("{:04}", d.year()),
            Partitioning::Month => format!("{:04}-{:02}", d.year(), d.month()),
        }
    }
}

/// A CSV import.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub path: PathBuf,
    pub id: DatasetId,
    /// Free-text provenance source (vendor, URL).
    pub source_description: String,
    pub csv: CsvOptions,
    pub validation: ValidationOptions,
    pub partitioning: Partitioning,
    /// Replace an existing dataset of the same id (atomically).
    pub replace: bool,
    /// Injected import time.
    pub imported_at: TimestampNs,
}

/// Time range, nanoseconds, start inclusive, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeRange {
    pub start: TimestampNs,
    pub end: TimestampNs,
}

impl TimeRange {
    pub const ALL: TimeRange = TimeRange {
        start: i64::MIN,
        end: i64::MAX,
    };
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How far back the history check looks for the other dataset's bar.
const WEEK_NS: i64 = 7 * 86_400 * 1_000_000_000;

/// The catalog: a root directory and a metadata store.
pub struct Catalog {
    root: PathBuf,
    meta: Arc<dyn MetadataStore>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| DataError::io(path, e))
}

impl Catalog {
    /// Opens (creating) a catalog at `root` and recovers from a crash mid-import:
    /// half-written `.tmp-*` directories are removed; a dataset moved aside to `.old-*`
    /// whose replacement never arrived is moved back (its id is in the Parquet metadata).
    pub fn open(root: impl Into<PathBuf>, meta: Arc<dyn MetadataStore>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| DataError::io(&root, e))?;
        for entry in fs::read_dir(&root).map_err(|e| DataError::io(&root, e))? {
            let entry = entry.map_err(|e| DataError::io(&root, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            if name.starts_with(".old-")
                && let Some(target) = dataset_dir_of(&root, &path)
                && !target.exists()
            {
                fs::rename(&path, &target).map_err(|e| DataError::io(&target, e))?;
                continue;
            }
            if name.starts_with(".tmp-") || name.starts_with(".old-") {
                fs::remove_dir_all(&path).map_err(|e| DataError::io(&path, e))?;
            }
        }
        Ok(Self { root, meta })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    fn dataset_dir(&self, id: &DatasetId) -> PathBuf {
        self.root
            .join(&id.source)
            .join(&id.symbol)
            .join(&id.timeframe)
    }

    fn scratch(&self, kind: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root
            .join(format!(".{kind}-{}-{n}", std::process::id()))
    }

    /// Reads, validates and stores a CSV file. Errors in the report reject the import
    /// (`DataError::Rejected` carries the report) and nothing is written.
    pub fn import_csv(&self, req: &ImportRequest) -> Result<DatasetRecord> {
        if !req.replace && self.meta.get(&req.id)?.is_some() {
            return Err(DataError::AlreadyExists(req.id.to_string()));
        }
        let raw = read_csv(&req.path, &req.csv)?;
        let sha = raw.file_sha256.clone();
        let mut v = validate(raw, req.csv.missing, &req.validation);
        if !v.report.has_errors()
            && let Some(f) = self.history_jump(&req.id, &v.bars, v.lines.first().copied())?
        {
            v.report.findings.push(f);
        }
        if v.report.has_errors() {
            let errors = v.report.errors().count();
            let first = v
                .report
                .errors()
                .next()
                .map(|f| f.message.clone())
                .unwrap_or_default();
            return Err(DataError::Rejected {
                errors,
                first,
                report: Box::new(v.report),
            });
        }
        let provenance = Provenance {
            source: req.source_description.clone(),
            original: req.path.display().to_string(),
            original_sha256: sha,
            imported_at: req.imported_at,
        };
        self.write_dataset(
            &req.id,
            &v.bars,
            provenance,
            v.report,
            req.partitioning,
            req.replace,
        )
    }

    /// The new bars of `id` against the instrument's history in the catalog:
    /// for every other dataset of the same symbol (another source or
    /// timeframe; not the dataset being replaced, whose fix would read as a
    /// slip), its close nearest the new
    /// first bar against the new first close. A power of ten between them is
    /// a `PriceScaleJump` warning naming that dataset: a file whose prices
    /// lack a divisor (Lean's x10,000) or are in cents, even when it is
    /// consistent in itself.
    fn history_jump(
        &self,
        id: &DatasetId,
        bars: &Bars,
        first_line: Option<u64>,
    ) -> Result<Option<Finding>> {
        let (Some(&t), Some(&close)) = (bars.ts.first(), bars.close.first()) else {
            return Ok(None);
        };
        let price = |raw: i64, scale: u8| {
            #[allow(clippy::cast_precision_loss, reason = "a ratio test")]
            let x = raw as f64;
            x / 10f64.powi(i32::from(scale))
        };
        let new = price(close, bars.price_scale);
        let mut slips = Vec::new();
        for other in self.meta.list()? {
            if other.id.symbol != id.symbol || other.id == *id || other.rows == 0 {
                continue;
            }
            // The other's bar nearest `t`: its last at or before, else its first.
            let at = if t < other.first_ts {
                other.first_ts
            } else {
                t.min(other.last_ts)
            };
            let near = self.load(
                &other.id,
                TimeRange {
                    start: at.saturating_sub(WEEK_NS),
                    end: at.saturating_add(1),
                },
            )?;
            let Some(&old_close) = near.close.last() else {
                continue;
            };
            let old = price(old_close, near.price_scale);
            if old <= 0.0 || new <= 0.0 {
                continue;
            }
            if let Some(k) = power_of_ten_apart((new / old).ln()) {
                slips.push(format!(
                    "{} closes at {old} near {}, this file at {new} (x10^{k})",
                    other.id,
                    format_ns(at)
                ));
            }
        }
        if slips.is_empty() {
            return Ok(None);
        }
        Ok(Some(finding(
            Layer::Outliers,
            Severity::Warning,
            FindingCode::PriceScaleJump,
            format!(
                "prices a power of ten away from the instrument's history in the catalog (a price divisor or unit slip?): {}",
                slips.join("; ")
            ),
            first_line.into_iter().collect(),
        )))
    }

    /// Stores validated bars as a dataset, atomically. `bars` must be sorted by time.
    pub fn write_dataset(
        &self,
        id: &DatasetId,
        bars: &Bars,
        provenance: Provenance,
        quality: QualityReport,
        partitioning: Partitioning,
        replace: bool,
    ) -> Result<DatasetRecord> {
        if bars.is_empty() {
            return Err(DataError::InvalidOption {
                field: "bars",
                reason: format!("dataset {id} would be empty"),
            });
        }
        if bars.ts.windows(2).any(|w| w[1] <= w[0]) {
            return Err(DataError::InvalidOption {
                field: "bars",
                reason: format!("dataset {id}: timestamps must be strictly increasing"),
            });
        }
        if !replace && self.meta.get(id)?.is_some() {
            return Err(DataError::AlreadyExists(id.to_string()));
        }
        let tmp = self.scratch("tmp");
        let result = self.write_partitions(&tmp, id, bars, partitioning);
        let partitions = match result {
            Ok(p) => p,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let record = DatasetRecord {
            id: id.clone(),
            schema_version: SCHEMA_VERSION,
            price_scale: bars.price_scale,
            volume_scale: bars.volume_scale,
            rows: bars.len() as u64,
            first_ts: bars.ts[0],
            last_ts: bars.ts[bars.len() - 1],
            checksum: bars.checksum(),
            partitions,
            provenance,
            quality,
        };
        self.publish(&tmp, id, &record)?;
        Ok(record)
    }

    fn write_partitions(
        &self,
        tmp: &Path,
        id: &DatasetId,
        bars: &Bars,
        partitioning: Partitioning,
    ) -> Result<Vec<PartitionRecord>> {
        fs::create_dir_all(tmp).map_err(|e| DataError::io(tmp, e))?;
        let mut out = Vec::new();
        let mut start = 0;
        while start < bars.len() {
            let period = partitioning.period(bars.ts[start]);
            let mut end = start + 1;
            while end < bars.len() && partitioning.period(bars.ts[end]) == period {
                end += 1;
            }
            let part = Bars {
                price_scale: bars.price_scale,
                volume_scale: bars.volume_scale,
                ts: bars.ts[start..end].to_vec(),
                open: bars.open[start..end].to_vec(),
                high: bars.high[start..end].to_vec(),
                low: bars.low[start..end].to_vec(),
                close: bars.close[start..end].to_vec(),
                volume: bars.volume[start..end].to_vec(),
            };
            let rel_dir = format!("period={period}");
            let dir = tmp.join(&rel_dir);
            fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
            let path = dir.join("part-0.parquet");
            let sha = write_parquet(&path, id, &part)?;
            sync_dir(&dir)?;
            out.push(PartitionRecord {
                period,
                file: format!(
                    "{}/{}/{}/{rel_dir}/part-0.parquet",
                    id.source, id.symbol, id.timeframe
                ),
                rows: part.len() as u64,
                first_ts: part.ts[0],
                last_ts: part.ts[part.len() - 1],
                file_sha256: sha,
            });
            start = end;
        }
        sync_dir(tmp)?;
        Ok(out)
    }

    /// Renames the written directory into place and commits the metadata; undoes the
    /// rename if the metadata store fails.
    fn publish(&self, tmp: &Path, id: &DatasetId, record: &DatasetRecord) -> Result<()> {
        let dir = self.dataset_dir(id);
        let parent = dir.parent().unwrap_or(&self.root).to_path_buf();
        let undo_tmp = |e: DataError| {
            let _ = fs::remove_dir_all(tmp);
            e
        };
        fs::create_dir_all(&parent).map_err(|e| undo_tmp(DataError::io(&parent, e)))?;
        let old = if dir.exists() {
            let old = self.scratch("old");
            fs::rename(&dir, &old).map_err(|e| undo_tmp(DataError::io(&dir, e)))?;
            Some(old)
        } else {
            None
        };
        let restore = |e: DataError| {
            let _ = fs::remove_dir_all(&dir);
            if let Some(old) = &old {
                let _ = fs::rename(old, &dir);
            }
            let _ = fs::remove_dir_all(tmp);
            e
        };
        fs::rename(tmp, &dir).map_err(|e| restore(DataError::io(&dir, e)))?;
        sync_dir(&parent).map_err(restore)?;
        if let Err(e) = self.meta.commit_import(record) {
            return Err(restore(e.into()));
        }
        if let Some(old) = old {
            fs::remove_dir_all(&old).map_err(|e| DataError::io(&old, e))?;
        }
        Ok(())
    }

    /// The dataset's metadata.
    pub fn describe(&self, id: &DatasetId) -> Result<DatasetRecord> {
        self.meta
            .get(id)?
            .ok_or_else(|| DataError::NotFound(id.to_string()))
    }

    pub fn list(&self) -> Result<Vec<DatasetRecord>> {
        Ok(self.meta.list()?)
    }

    /// Removes a dataset's files and metadata.
    pub fn remove(&self, id: &DatasetId) -> Result<()> {
        if !self.meta.remove(id)? {
            return Err(DataError::NotFound(id.to_string()));
        }
        let dir = self.dataset_dir(id);
        fs::remove_dir_all(&dir).map_err(|e| DataError::io(&dir, e))
    }

    /// Reads the bars of `range` from Parquet as a frame (`ts` Datetime UTC, Int64 columns).
    pub fn load_frame(
        &self,
        id: &DatasetId,
        range: TimeRange,
    ) -> Result<(DatasetRecord, DataFrame)> {
        let rec = self.describe(id)?;
        let mut frames = Vec::new();
        for p in rec
            .partitions
            .iter()
            .filter(|p| p.last_ts >= range.start && p.first_ts < range.end)
        {
            let path = self.root.join(&p.file);
            let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
            let mut reader = ParquetReader::new(file);
            check_file_metadata(&path, &mut reader, &rec)?;
            let mut df = reader.finish()?;
            if p.first_ts < range.start || p.last_ts >= range.end {
                let ts = df.column("ts")?.cast(&DataType::Int64)?;
                let ts = ts.i64()?;
                let mask: BooleanChunked = ts
                    .iter()
                    .map(|t| t.map(|t| t >= range.start && t < range.end))
                    .collect();
                df = df.filter(&mask)?;
            }
            frames.push(df);
        }
        let df = match frames.len() {
            0 => Bars::with_scales(rec.price_scale, rec.volume_scale).to_frame()?,
            _ => {
                let mut it = frames.into_iter();
                let mut acc = it.next().unwrap_or_default();
                for f in it {
                    acc.vstack_mut_owned(f)?;
                }
                acc
            }
        };
        Ok((rec, df))
    }

    /// Reads the bars of `range` as fixed-point columns.
    pub fn load(&self, id: &DatasetId, range: TimeRange) -> Result<Bars> {
        let (rec, df) = self.load_frame(id, range)?;
        Bars::from_frame(&df, rec.price_scale, rec.volume_scale)
    }

    /// Re-reads every file and compares file hashes and the content checksum with the metadata.
    pub fn verify(&self, id: &DatasetId) -> Result<DatasetRecord> {
        let rec = self.describe(id)?;
        for p in &rec.partitions {
            let path = self.root.join(&p.file);
            let bytes = fs::read(&path).map_err(|e| DataError::io(&path, e))?;
            let sha = hex::encode(Sha256::digest(&bytes));
            if sha != p.file_sha256 {
                return Err(DataError::Corrupt {
                    path: path.display().to_string(),
                    reason: format!(
                        "file sha256 {sha} differs from the recorded {}",
                        p.file_sha256
                    ),
                });
            }
        }
        let bars = self.load(id, TimeRange::ALL)?;
        if bars.checksum() != rec.checksum {
            return Err(DataError::Corrupt {
                path: self.dataset_dir(id).display().to_string(),
                reason: "content checksum differs from the metadata".into(),
            });
        }
        Ok(rec)
    }

    /// Writes the dataset as `timestamp,open,high,low,close,volume` with RFC 3339 UTC
    /// timestamps and every value in its shortest exact decimal form.
    pub fn export_csv(&self, id: &DatasetId, range: TimeRange, out: &Path) -> Result<u64> {
        let bars = self.load(id, range)?;
        let file = File::create(out).map_err(|e| DataError::io(out, e))?;
        let mut w = BufWriter::new(file);
        let io = |e| DataError::io(out, e);
        writeln!(w, "timestamp,open,high,low,close,volume").map_err(io)?;
        let (ps, vs) = (bars.price_scale, bars.volume_scale);
        for i in 0..bars.len() {
            writeln!(
                w,
                "{},{},{},{},{},{}",
                format_ns(bars.ts[i]),
                format_fixed(bars.open[i], ps),
                format_fixed(bars.high[i], ps),
                format_fixed(bars.low[i], ps),
                format_fixed(bars.close[i], ps),
                format_fixed(bars.volume[i], vs)
            )
            .map_err(io)?;
        }
        w.flush().map_err(io)?;
        w.get_ref().sync_all().map_err(io)?;
        Ok(bars.len() as u64)
    }
}

/// Writes one Parquet file (zstd, scales in the key-value metadata), fsyncs it and returns its sha256.
fn write_parquet(path: &Path, id: &DatasetId, bars: &Bars) -> Result<String> {
    let mut df = bars.to_frame()?;
    let kv = KeyValueMetadata::from_static(vec![
        (KEY_PRICE_SCALE.to_owned(), bars.price_scale.to_string()),
        (KEY_VOLUME_SCALE.to_owned(), bars.volume_scale.to_string()),
        (KEY_SCHEMA.to_owned(), SCHEMA_VERSION.to_string()),
        (KEY_DATASET.to_owned(), id.to_string()),
    ]);
    let mut file = File::create(path).map_err(|e| DataError::io(path, e))?;
    ParquetWriter::new(&mut file)
        .with_compression(ParquetCompression::Zstd(None))
        .with_key_value_metadata(Some(kv))
        .finish(&mut df)?;
    file.flush().map_err(|e| DataError::io(path, e))?;
    file.sync_all().map_err(|e| DataError::io(path, e))?;
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// The dataset directory a moved-aside dataset belongs to, from the `grodt.dataset`
/// key of its first Parquet file.
fn dataset_dir_of(root: &Path, dir: &Path) -> Option<PathBuf> {
    let period = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("period="))?;
    let file = File::open(period.path().join("part-0.parquet")).ok()?;
    let mut reader = ParquetReader::new(file);
    let kv = reader.get_metadata().ok()?.key_value_metadata().clone()?;
    let id = kv.into_iter().find(|e| e.key == KEY_DATASET)?.value?;
    let parts: Vec<&str> = id.split('/').collect();
    let [source, symbol, timeframe] = parts.as_slice() else {
        return None;
    };
    let id = DatasetId::new(source, symbol, timeframe).ok()?;
    Some(root.join(id.source).join(id.symbol).join(id.timeframe))
}

fn check_file_metadata(
    path: &Path,
    reader: &mut ParquetReader<File>,
    rec: &DatasetRecord,
) -> Result<()> {
    let md = reader.get_metadata()?;
    let kv = md.key_value_metadata().clone().unwrap_or_default();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    let expect = [
        (KEY_PRICE_SCALE, rec.price_scale.to_string()),
        (KEY_VOLUME_SCALE, rec.volume_scale.to_string()),
        (KEY_SCHEMA, rec.schema_version.to_string()),
    ];
    for (k, want) in expect {
        let got = get(k);
        if got.as_deref() != Some(want.as_str()) {
            return Err(DataError::Corrupt {
                path: path.display().to_string(),
                reason: format!("{k} is {got:?}, metadata says {want}"),
            });
        }
    }
    Ok(())
}
