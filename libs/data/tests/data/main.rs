//! Integration tests of grodt-data on the real sample files (data/samples).

mod cache;
mod catalog;
mod samples;

use std::path::PathBuf;
use std::sync::Arc;

use grodt_data::Catalog;
use grodt_data::calendar::Calendar;
use grodt_data::catalog::{ImportRequest, Partitioning};
use grodt_data::import::CsvOptions;
use grodt_data::meta::{DatasetId, InMemoryMetadata};
use grodt_data::time::{TimeFormat, Zone, parse_timestamp};
use grodt_data::validate::ValidationOptions;

pub fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples")
        .join(name)
}

pub fn ts(s: &str) -> i64 {
    parse_timestamp(s, &TimeFormat::Iso8601, Zone::UTC).unwrap()
}

/// The injected "now" of every test: the day these tests were written.
pub fn now() -> i64 {
    ts("2026-11-22T00:00:00Z")
}

pub fn catalog() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::open(
        dir.path().join("catalog"),
        Arc::new(InMemoryMetadata::new()),
    )
    .unwrap();
    (dir, cat)
}

pub fn request(file: &str, id: (&str, &str, &str), calendar: Calendar) -> ImportRequest {
    ImportRequest {
        path: sample(file),
        id: DatasetId::new(id.0, id.1, id.2).unwrap(),
        source_description: "data/samples".into(),
        csv: CsvOptions::default(),
        validation: ValidationOptions {
            calendar,
            ..ValidationOptions::new(now())
        },
        partitioning: Partitioning::Year,
        replace: false,
        imported_at: now(),
    }
}
