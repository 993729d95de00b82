-- SQLite twin of migrations/postgres: same tables, columns and constraints.
-- UUIDs are hyphenated TEXT, JSON is TEXT, timestamps are RFC 3339 TEXT and
-- money is the exact rust_decimal text (never REAL).

CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE runs (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL CHECK (kind IN ('backtest', 'optimization')),
    status     TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    request    TEXT NOT NULL,
    result     TEXT,
    net_pnl    TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX runs_kind_seq ON runs (kind, seq);

CREATE TABLE settings (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
);
