-- SQLite twin of migrations/postgres/0002_datasets.sql.
CREATE TABLE datasets (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    source         TEXT    NOT NULL,
    symbol         TEXT    NOT NULL,
    timeframe      TEXT    NOT NULL,
    row_count      INTEGER NOT NULL CHECK (row_count >= 0),
    first_ts_ns    INTEGER NOT NULL,
    last_ts_ns     INTEGER NOT NULL,
    checksum       TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    provenance     TEXT    NOT NULL,
    quality        TEXT    NOT NULL,
    details        TEXT    NOT NULL,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    UNIQUE (source, symbol, timeframe)
);
CREATE INDEX datasets_symbol ON datasets (symbol);
