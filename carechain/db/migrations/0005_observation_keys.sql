-- Cheaper idempotent ingest (measured by `carechain bench storage`): the random-uuid B-tree
-- UNIQUE (event_id, ts) was the costliest index to maintain. One unique index on
-- (resident_id, ts, event_id) now serves both idempotency and every per-resident read
-- (newest first, keyset on (ts, event_id)); a small hash index keeps lookups by event id alone
-- (FHIR Observation/ev-<id>) fast. A replay carries the same resident id (it is part of the
-- event on Kafka), so the same event still maps to the same key.

ALTER TABLE observations DROP CONSTRAINT IF EXISTS observations_event_id_ts_key;
DROP INDEX IF EXISTS observations_resident_ts;
ALTER TABLE observations ADD CONSTRAINT observations_resident_ts_event_key UNIQUE (resident_id, ts, event_id);
CREATE INDEX IF NOT EXISTS observations_event_id ON observations USING hash (event_id);
