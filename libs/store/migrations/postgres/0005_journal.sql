-- The event-sourced consumers' journal (execution, strategy, risk): every
-- input a consumer applied to its state, in the order applied, with the
-- events that input produced. A consumer's state is the fold of its inputs,
-- so a restart rebuilds it exactly by replaying them; a redelivered input
-- finds its row (unique source) and republishes the stored outputs under
-- their original event ids instead of applying it twice.
CREATE TABLE journal (
    seq        BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer   TEXT        NOT NULL,
    -- the input's idempotency key: the event id it came in as, or a
    -- command's own key (a gRPC call's client order id, ...).
    source     TEXT        NOT NULL,
    -- the input, in the consumer's own encoding (opaque here).
    input      BYTEA       NOT NULL,
    -- the events the input produced, in the consumer's own encoding.
    outputs    BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (consumer, source)
);
CREATE INDEX journal_consumer_seq ON journal (consumer, seq);
