//! Atomic imports, partitions, metadata and corruption detection.

use std::sync::Arc;

use grodt_data::Catalog;
use grodt_data::calendar::Calendar;
use grodt_data::catalog::TimeRange;
use grodt_data::error::DataError;
use grodt_data::meta::{DatasetId, DatasetRecord, InMemoryMetadata, MetadataError, MetadataStore};
use grodt_data::validate::FindingCode;
use polars::prelude::*;

use crate::{catalog, request, ts};

/// Every file and directory under `root`, relative, sorted.
fn tree(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

struct FailingStore;

impl MetadataStore for FailingStore {
    fn commit_import(&self, _: &DatasetRecord) -> Result<(), MetadataError> {
        Err(MetadataError("database went away".into()))
    }
    fn remove(&self, _: &DatasetId) -> Result<bool, MetadataError> {
        Ok(false)
    }
    fn get(&self, _: &DatasetId) -> Result<Option<DatasetRecord>, MetadataError> {
        Ok(None)
    }
    fn list(&self) -> Result<Vec<DatasetRecord>, MetadataError> {
        Ok(Vec::new())
    }
}

#[test]
fn a_failed_metadata_commit_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("catalog");
    let cat = Catalog::open(&root, Arc::new(FailingStore)).unwrap();
    let e = cat
        .import_csv(&request(
            "spy_1d_1998-2021.csv",
            ("s", "SPY", "1d"),
            Calendar::UsEquityDaily,
        ))
        .unwrap_err();
    assert!(matches!(e, DataError::Metadata(_)), "{e}");
    // The parent directories may exist; no file and no dataset directory does.
    let left = tree(&root);
    assert!(
        left.iter()
            .all(|p| !p.contains("1d") && !p.contains(".tmp") && !p.ends_with(".parquet")),
        "{left:?}"
    );
}

#[test]
fn validation_errors_reject_the_import_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,10,11,9,10,1\n2024-01-01T00:01:00Z,10,9,10.5,10,1\n2030-01-01T00:00:00Z,10,11,9,10,1\n",
    )
    .unwrap();
    let root = dir.path().join("catalog");
    let cat = Catalog::open(&root, Arc::new(InMemoryMetadata::new())).unwrap();
    let mut req = request("x", ("s", "BAD", "1m"), Calendar::AlwaysOpen);
    req.path = csv;
    match cat.import_csv(&req).unwrap_err() {
        DataError::Rejected { errors, report, .. } => {
            assert_eq!(errors, 3);
            assert_eq!(
                report.finding(FindingCode::HighBelow).unwrap().rows,
                vec![3]
            );
            assert_eq!(report.finding(FindingCode::LowAbove).unwrap().rows, vec![3]);
            assert_eq!(
                report.finding(FindingCode::FutureTimestamp).unwrap().rows,
                vec![4]
            );
        }
        e => panic!("unexpected {e}"),
    }
    assert!(tree(&root).is_empty());
    assert!(cat.list().unwrap().is_empty());
}

#[test]
fn stale_temporary_directories_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("catalog");
    std::fs::create_dir_all(root.join(".tmp-1-0/period=2020")).unwrap();
    std::fs::write(root.join(".tmp-1-0/period=2020/part-0.parquet"), b"half").unwrap();
    Catalog::open(&root, Arc::new(InMemoryMetadata::new())).unwrap();
    assert!(tree(&root).is_empty());
}

#[test]
fn partitions_metadata_ranges_replace_and_corruption() {
    let (_d, cat) = catalog();
    let req = request(
        "spy_1d_1998-2021.csv",
        ("quantconnect", "SPY", "1d"),
        Calendar::UsEquityDaily,
    );
    let rec = cat.import_csv(&req).unwrap();
    assert_eq!(rec.schema_version, 1);
    assert_eq!(rec.provenance.original_sha256.len(), 64);
    assert_eq!(rec.provenance.imported_at, crate::now());
    assert_eq!(rec.partitions[0].period, "1998");
    assert_eq!(
        rec.partitions[0].file,
        "quantconnect/SPY/1d/period=1998/part-0.parquet"
    );
    assert_eq!(rec.partitions.iter().map(|p| p.rows).sum::<u64>(), 5849);
    assert_eq!(cat.metadata().symbols().unwrap(), vec!["SPY".to_owned()]);

    // The file is plain Parquet: polars reads it, prices are Int64 and the scale is in the metadata.
    let path = cat.root().join(&rec.partitions[0].file);
    let mut reader = ParquetReader::new(std::fs::File::open(&path).unwrap());
    let kv = reader
        .get_metadata()
        .unwrap()
        .key_value_metadata()
        .clone()
        .unwrap();
    assert!(
        kv.iter()
            .any(|e| e.key == "grodt.price_scale" && e.value.as_deref() == Some("4"))
    );
    let df = reader.finish().unwrap();
    assert_eq!(df.column("close").unwrap().dtype(), &DataType::Int64);
    assert_eq!(
        df.column("close").unwrap().i64().unwrap().get(0),
        Some(973_600)
    );

    // A range crossing partitions: [1999-12-30, 2000-01-05).
    let b = cat
        .load(
            &rec.id,
            TimeRange {
                start: ts("1999-12-30T00:00:00Z"),
                end: ts("2000-01-05T00:00:00Z"),
            },
        )
        .unwrap();
    assert_eq!(
        b.ts,
        vec![
            ts("1999-12-30T00:00:00Z"),
            ts("1999-12-31T00:00:00Z"),
            ts("2000-01-03T00:00:00Z"),
            ts("2000-01-04T00:00:00Z")
        ]
    );
    assert_eq!(cat.verify(&rec.id).unwrap().checksum, rec.checksum);

    // Same id again: refused unless replacing; replacing with other content changes the checksum.
    assert!(matches!(
        cat.import_csv(&req),
        Err(DataError::AlreadyExists(_))
    ));
    let mut other = request(
        "aapl_1d_1998-2021_unadjusted.csv",
        ("quantconnect", "SPY", "1d"),
        Calendar::UsEquityDaily,
    );
    other.replace = true;
    let rec2 = cat.import_csv(&other).unwrap();
    assert_ne!(rec2.checksum, rec.checksum);
    assert_eq!(cat.list().unwrap().len(), 1);
    assert!(
        !cat.root().read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.'))
    );

    // Flip one byte of a Parquet file: verify names it.
    let path = cat.root().join(&rec2.partitions[3].file);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    match cat.verify(&rec2.id).unwrap_err() {
        DataError::Corrupt { path: p, .. } => {
            assert!(p.ends_with("period=2001/part-0.parquet"), "{p}")
        }
        e => panic!("unexpected {e}"),
    }
    cat.remove(&rec2.id).unwrap();
    assert!(matches!(
        cat.describe(&rec2.id),
        Err(DataError::NotFound(_))
    ));
}
