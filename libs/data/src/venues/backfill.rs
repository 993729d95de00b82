//! Backfill: a venue's candles into the catalog, incrementally. The range asked for
//! is cut to what the catalog lacks (before the dataset's first bar, after its last),
//! fetched in chunks of whole pages, and after each chunk the dataset (old bars and
//! new) is validated like an import and written atomically; a backfill that dies
//! resumes where the catalog ends. Only closed bars are fetched: the range ends at
//! the last interval that closed before the injected `now`.

use std::sync::Arc;

use crate::bars::Bars;
use crate::catalog::{Catalog, Partitioning, TimeRange};
use crate::error::{DataError, Result};
use crate::import::{MissingPolicy, RawRow, RawTable};
use crate::meta::{DatasetId, DatasetRecord, Provenance};
use crate::validate::{ValidationOptions, validate};
use crate::venues::{Candle, CandleSource, FetchStats, candles_to_bars, rescale, timeframe_ms};

/// What to fetch.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    /// `source` is the venue's name; `symbol` as the venue spells it.
    pub id: DatasetId,
    /// Open times, ms: `from_ms` inclusive, `to_ms` exclusive.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Pages per commit to the catalog.
    pub pages_per_commit: usize,
    /// `now`, `calendar` and the thresholds of the validation of every commit.
    pub validation: ValidationOptions,
    pub partitioning: Partitioning,
}

/// Where a backfill is; reported after each commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillProgress {
    /// Bars fetched by this run.
    pub fetched: u64,
    /// Rows of the dataset as last committed.
    pub rows: u64,
    /// Open time (ms) up to which the requested range is done.
    pub done_to_ms: i64,
    pub stats: FetchStats,
}

/// How a backfill ended.
#[derive(Debug, Clone)]
pub struct BackfillOutcome {
    /// The dataset as last committed (`None` when there was nothing to fetch and no dataset).
    pub record: Option<DatasetRecord>,
    pub progress: BackfillProgress,
    /// The ranges (open times, ms, end exclusive) this run had to fetch.
    pub fetched_ranges: Vec<(i64, i64)>,
}

/// The ranges to fetch of `[from, to)` given the dataset's first and last open times.
pub fn missing_ranges(
    existing: Option<(i64, i64)>,
    from: i64,
    to: i64,
    tf: i64,
) -> Vec<(i64, i64)> {
    match existing {
        None if from < to => vec![(from, to)],
        None => vec![],
        Some((first, last)) => {
            let mut out = Vec::new();
            if from < first.min(to) {
                out.push((from, first.min(to)));
            }
            let after = last + tf;
            if from.max(after) < to {
                out.push((from.max(after), to));
            }
            out
        }
    }
}

/// The validation table of `bars`: line numbers are bar positions (1-based).
fn raw_table(bars: &Bars) -> RawTable {
    RawTable {
        rows: (0..bars.len())
            .map(|i| RawRow {
                line: i as u64 + 1,
                ts: Some(bars.ts[i]),
                values: [
                    Some(bars.open[i]),
                    Some(bars.high[i]),
                    Some(bars.low[i]),
                    Some(bars.close[i]),
                    Some(bars.volume[i]),
                ],
            })
            .collect(),
        price_scale: bars.price_scale,
        volume_scale: bars.volume_scale,
        delimiter: b',',
        findings: Vec::new(),
        lines_read: bars.len() as u64,
        file_sha256: String::new(),
    }
}

/// `old` and `new` bars as one time-sorted series at the larger scales; a bar of
/// `new` at a time `old` has is dropped (stored bars are not rewritten).
pub fn merge(old: &Bars, new: &Bars) -> Result<Bars> {
    let ps = old.price_scale.max(new.price_scale);
    let vs = old.volume_scale.max(new.volume_scale);
    let (a, b) = (rescale(old, ps, vs)?, rescale(new, ps, vs)?);
    let mut out = Bars::with_scales(ps, vs);
    let (mut i, mut j) = (0, 0);
    let row = |x: &Bars, k: usize| [x.open[k], x.high[k], x.low[k], x.close[k], x.volume[k]];
    while i < a.len() || j < b.len() {
        if j >= b.len() || (i < a.len() && a.ts[i] <= b.ts[j]) {
            if j < b.len() && a.ts[i] == b.ts[j] {
                j += 1;
            }
            out.push(a.ts[i], row(&a, i));
            i += 1;
        } else {
            out.push(b.ts[j], row(&b, j));
            j += 1;
        }
    }
    Ok(out)
}

/// Called in the blocking commit right before the dataset is written (the service
/// registers what it keeps beside the record).
pub type BeforeCommit = Arc<dyn Fn(&DatasetId) + Send + Sync>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// Runs a backfill; `progress` is called after each commit.
pub async fn backfill(
    catalog: Arc<Catalog>,
    source: &dyn CandleSource,
    req: &BackfillRequest,
    before_commit: Option<BeforeCommit>,
    progress: &mut (dyn FnMut(&BackfillProgress) + Send),
) -> Result<BackfillOutcome> {
    if req.id.source != source.venue().name() {
        return Err(DataError::InvalidOption {
            field: "source",
            reason: format!(
                "dataset source {:?} is not the venue {:?}",
                req.id.source,
                source.venue().name()
            ),
        });
    }
    let tf = timeframe_ms(&req.id.timeframe)?;
    if req.from_ms >= req.to_ms {
        return Err(DataError::InvalidOption {
            field: "to",
            reason: format!("{} ms is not after from {} ms", req.to_ms, req.from_ms),
        });
    }
    // Only closed bars: the last one must have ended by `now`.
    let now_ms = req.validation.now / 1_000_000;
    let to_ms = req.to_ms.min((now_ms - tf).div_euclid(tf) * tf + tf);
    let (cat, id) = (catalog.clone(), req.id.clone());
    let existing: Option<(DatasetRecord, Bars)> =
        blocking(move || match cat.metadata().get(&id)? {
            Some(rec) => {
                let bars = cat.load(&id, TimeRange::ALL)?;
                Ok(Some((rec, bars)))
            }
            None => Ok(None),
        })
        .await?;
    let span = existing
        .as_ref()
        .map(|(r, _)| (r.first_ts / 1_000_000, r.last_ts / 1_000_000));
    let ranges = missing_ranges(span, req.from_ms, to_ms, tf);
    let mut record = existing.as_ref().map(|(r, _)| r.clone());
    let mut bars = existing.map(|(_, b)| b);
    let mut p = BackfillProgress {
        rows: record.as_ref().map_or(0, |r| r.rows),
        done_to_ms: req.from_ms,
        ..BackfillProgress::default()
    };
    let chunk_ms = tf
        .saturating_mul(source.page_len() as i64)
        .saturating_mul(req.pages_per_commit.max(1) as i64);
    for &(start, end) in &ranges {
        let mut at = start;
        while at < end {
            let stop = at.saturating_add(chunk_ms).min(end);
            let candles: Vec<Candle> = source
                .candles(
                    &req.id.symbol,
                    &req.id.timeframe,
                    at,
                    stop - 1,
                    &mut p.stats,
                )
                .await?;
            at = stop;
            p.done_to_ms = stop;
            if candles.is_empty() {
                continue;
            }
            p.fetched += candles.len() as u64;
            let new = candles_to_bars(&candles)?;
            let merged = match &bars {
                Some(old) => merge(old, &new)?,
                None => new,
            };
            let (cat, id, opts, part, hook) = (
                catalog.clone(),
                req.id.clone(),
                req.validation.clone(),
                req.partitioning,
                before_commit.clone(),
            );
            let url = source.base_url().to_owned();
            let venue = source.venue().name();
            let replace = record.is_some();
            let (rec, stored) = blocking(move || {
                let v = validate(raw_table(&merged), MissingPolicy::Fail, &opts);
                if v.report.has_errors() {
                    let first = v
                        .report
                        .errors()
                        .next()
                        .map(|f| f.message.clone())
                        .unwrap_or_default();
                    return Err(DataError::Rejected {
                        errors: v.report.errors().count(),
                        first,
                        report: Box::new(v.report),
                    });
                }
                if let Some(h) = &hook {
                    h(&id);
                }
                let provenance = Provenance {
                    source: format!("{venue} {url}"),
                    original: url,
                    original_sha256: String::new(),
                    imported_at: opts.now,
                };
                let rec = cat.write_dataset(&id, &v.bars, provenance, v.report, part, replace)?;
                Ok((rec, v.bars))
            })
            .await?;
            p.rows = rec.rows;
            record = Some(rec);
            bars = Some(stored);
            progress(&p);
        }
    }
    Ok(BackfillOutcome {
        record,
        progress: p,
        fetched_ranges: ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_what_the_catalog_lacks() {
        assert_eq!(missing_ranges(None, 0, 600, 60), vec![(0, 600)]);
        assert_eq!(missing_ranges(None, 600, 600, 60), vec![]);
        // Stored 120..=240: before and after it.
        assert_eq!(
            missing_ranges(Some((120, 240)), 0, 600, 60),
            vec![(0, 120), (300, 600)]
        );
        assert_eq!(missing_ranges(Some((0, 540)), 0, 600, 60), vec![]);
        assert_eq!(
            missing_ranges(Some((0, 240)), 120, 600, 60),
            vec![(300, 600)]
        );
    }

    #[test]
    fn merge_keeps_stored_bars_and_aligns_scales() {
        let mut old = Bars::with_scales(1, 0);
        old.push(60, [10, 20, 5, 15, 1]);
        old.push(180, [15, 16, 14, 15, 2]);
        let mut new = Bars::with_scales(2, 0);
        new.push(0, [100, 200, 50, 150, 3]);
        new.push(60, [999, 999, 999, 999, 9]);
        new.push(240, [150, 151, 149, 150, 4]);
        let m = merge(&old, &new).unwrap();
        assert_eq!(m.ts, vec![0, 60, 180, 240]);
        assert_eq!(m.price_scale, 2);
        assert_eq!(m.open, vec![100, 100, 150, 150]);
        assert_eq!(m.volume, vec![3, 1, 2, 4]);
    }
}
