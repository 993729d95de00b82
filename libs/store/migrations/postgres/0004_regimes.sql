-- Regime service: the classifier state of each (symbol, timeframe) and the
-- history of regime changes. Both are written in the transaction that marks
-- the bar event processed, so a redelivered bar neither repeats nor skips a
-- decision. Times are nanoseconds since the Unix epoch (bar open times).
CREATE TABLE regime_states (
    symbol     TEXT        NOT NULL,
    timeframe  TEXT        NOT NULL,
    -- the regime in force; NULL while the classifier warms up.
    regime     TEXT,
    -- the serialized classifier and the service's bookkeeping (opaque here).
    state      JSONB       NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (symbol, timeframe)
);

CREATE TABLE regime_changes (
    seq             BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    symbol          TEXT        NOT NULL,
    timeframe       TEXT        NOT NULL,
    ts_ns           BIGINT      NOT NULL,
    regime          TEXT        NOT NULL,
    -- empty for a symbol's first regime.
    previous        TEXT        NOT NULL,
    -- the event id of the published RegimeEvent (republished with it).
    event_id        UUID        NOT NULL UNIQUE,
    -- the event id of the bar that caused the change.
    source_event_id TEXT        NOT NULL,
    -- the decision with its inputs, thresholds and rule.
    decision        JSONB       NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (symbol, timeframe, ts_ns)
);
CREATE INDEX regime_changes_source ON regime_changes (source_event_id);
