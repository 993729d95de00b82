//! Market data library: CSV import with layered validation, the Parquet catalog with
//! its metadata trait, aggregation to coarser timeframes, the two-tier cache of loaded
//! frames, and the exchange adapters (`binance`, `venues`: HTTPS, backfill).
//!
//! Prices and volumes are fixed-point `i64` with a per-dataset scale; floats appear only
//! in statistics (outlier z-scores). This crate does file and network I/O by design but
//! never reads the wall clock or an unseeded RNG: `now`, import times and seeds come in.
//! It must never depend on services, the bus or the database crates; of grodt-core it
//! uses only the error classification.

pub mod aggregate;
pub mod bars;
pub mod binance;
pub mod cache;
pub mod calendar;
pub mod catalog;
pub mod error;
pub mod fixed;
pub mod import;
pub mod meta;
pub mod time;
pub mod validate;
pub mod venues;

pub use bars::Bars;
pub use catalog::{Catalog, ImportRequest, Partitioning, TimeRange};
pub use error::{DataError, Result};
pub use meta::{DatasetId, DatasetRecord, InMemoryMetadata, MetadataStore};
