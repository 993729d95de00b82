-- Market-data catalog metadata: one row per dataset (source, symbol, timeframe).
-- `seq` orders by creation and is the pagination key; time bounds are
-- nanoseconds since the Unix epoch (TIMESTAMPTZ keeps only microseconds).
CREATE TABLE datasets (
    seq            BIGINT      GENERATED ALWAYS AS IDENTITY UNIQUE,
    id             UUID        PRIMARY KEY,
    source         TEXT        NOT NULL,
    symbol         TEXT        NOT NULL,
    timeframe      TEXT        NOT NULL,
    row_count      BIGINT      NOT NULL CHECK (row_count >= 0),
    first_ts_ns    BIGINT      NOT NULL,
    last_ts_ns     BIGINT      NOT NULL,
    checksum       TEXT        NOT NULL,
    schema_version INTEGER     NOT NULL,
    provenance     JSONB       NOT NULL,
    quality        JSONB       NOT NULL,
    details        JSONB       NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (source, symbol, timeframe)
);
CREATE INDEX datasets_symbol ON datasets (symbol);
