-- SQLite twin of migrations/postgres/0004_regimes.sql.
CREATE TABLE regime_states (
    symbol     TEXT NOT NULL,
    timeframe  TEXT NOT NULL,
    regime     TEXT,
    state      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (symbol, timeframe)
);

CREATE TABLE regime_changes (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol          TEXT    NOT NULL,
    timeframe       TEXT    NOT NULL,
    ts_ns           INTEGER NOT NULL,
    regime          TEXT    NOT NULL,
    previous        TEXT    NOT NULL,
    event_id        TEXT    NOT NULL UNIQUE,
    source_event_id TEXT    NOT NULL,
    decision        TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    UNIQUE (symbol, timeframe, ts_ns)
);
CREATE INDEX regime_changes_source ON regime_changes (source_event_id);
