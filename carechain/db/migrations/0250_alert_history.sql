-- Alert history (alert_events, 0200) as time series: a hypertable on TimescaleDB, a plain table
-- otherwise, same schema in both modes (docs/storage.md "Audit log and alert history").
--
-- TimescaleDB needs the partition column in every unique index, so the key becomes (id, at) in both
-- modes. Ids still come from the bigserial sequence and stay unique; nothing references alert_events
-- by a foreign key, and every reader selects by alert_id, by id (SSE replay) or by id range.
ALTER TABLE alert_events DROP CONSTRAINT alert_events_pkey;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_pkey PRIMARY KEY (id, at);

SELECT cc_make_hypertable('alert_events', 'at', cc_setting('chunk_alert_events', interval '30 days'));

-- Kept 5 years by default (`carechain.retention_alert_events`); TimescaleDB drops whole chunks,
-- `carechain db prune` deletes rows on plain PostgreSQL. The alerts themselves are not pruned.
SELECT cc_retention('alert_events', 'at', cc_setting('retention_alert_events', interval '5 years'));

-- Old chunks compressed per alert (a history is read per alert, in id order); a no-op on plain PostgreSQL.
SELECT cc_compression('alert_events', 'alert_id', 'id', cc_setting('compress_alert_events_after', interval '90 days'));
