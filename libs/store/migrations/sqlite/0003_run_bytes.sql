-- SQLite twin of migrations/postgres/0003_run_bytes.sql: BLOB for BYTEA.
ALTER TABLE runs ADD COLUMN request_pb BLOB;
ALTER TABLE runs ADD COLUMN result_pb BLOB;
