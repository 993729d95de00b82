//! Market data library: Parquet catalog, CSV import with validation, aggregation and the two-tier cache.
