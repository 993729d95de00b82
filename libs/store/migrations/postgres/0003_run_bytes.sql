-- Requests and results of runs as protobuf bytes, opaque to the store, beside
-- the small readable JSON summary (not hex text inside JSON). NULL for runs
-- written before this migration: readers fall back to the JSON.
ALTER TABLE runs ADD COLUMN request_pb BYTEA;
ALTER TABLE runs ADD COLUMN result_pb BYTEA;
