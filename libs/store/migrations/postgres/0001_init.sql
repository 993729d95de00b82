-- One logical schema, written twice: migrations/sqlite holds the SQLite twin.

-- Idempotent consumers: a row per (consumer, event) already applied.
CREATE TABLE processed_events (
    consumer     TEXT        NOT NULL,
    event_id     TEXT        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- Backtest and optimization runs. `seq` orders by creation and is the
-- pagination key, so pages stay stable while runs are added.
CREATE TABLE runs (
    seq        BIGINT      GENERATED ALWAYS AS IDENTITY UNIQUE,
    id         UUID        PRIMARY KEY,
    kind       TEXT        NOT NULL CHECK (kind IN ('backtest', 'optimization')),
    status     TEXT        NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    request    JSONB       NOT NULL,
    result     JSONB,
    -- Money: exact NUMERIC, never float.
    net_pnl    NUMERIC,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX runs_kind_seq ON runs (kind, seq);

-- Namespaced key-value settings (risk limits and the like).
CREATE TABLE settings (
    namespace  TEXT        NOT NULL,
    key        TEXT        NOT NULL,
    value      JSONB       NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (namespace, key)
);
