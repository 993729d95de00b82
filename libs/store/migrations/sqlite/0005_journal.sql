-- SQLite twin of migrations/postgres/0005_journal.sql.
CREATE TABLE journal (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer   TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    input      BLOB    NOT NULL,
    outputs    BLOB    NOT NULL,
    created_at TEXT    NOT NULL,
    UNIQUE (consumer, source)
);
CREATE INDEX journal_consumer_seq ON journal (consumer, seq);
