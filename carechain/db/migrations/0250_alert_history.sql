-- Alert history (alert_events, 0200) as time series: a hypertable on TimescaleDB, a plain table
-- otherwise, same schema in both modes (docs/storage.md "Audit log and alert history").
--
-- TimescaleDB needs the partition column in every unique index, so the key becomes (id, at) in both
-- modes. Ids still come from the bigserial sequence and stay unique; nothing references alert_events
-- by a foreign key, and every reader selects by alert_id, by id (SSE replay) or by id range.
ALTER TABLE alert_events DROP CONSTRAINT alert_events_pkey;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_pkey PRIMARY KEY (id, at);

-- Large chunks: readers select by id or alert_id without the time column, so each query visits every
-- chunk (measured, docs/storage.md: ~4 ms a look-up by id with 62 monthly chunks, ~0.2-2 ms with 11).
SELECT cc_make_hypertable('alert_events', 'at', cc_setting('chunk_alert_events', interval '180 days'));

-- Kept 5 years by default (`carechain.retention_alert_events`); TimescaleDB drops whole chunks,
-- `carechain db prune` deletes rows on plain PostgreSQL. The alerts themselves are not pruned.
SELECT cc_retention('alert_events', 'at', cc_setting('retention_alert_events', interval '5 years'));

-- No compression: the live stream reads events by id (SSE replay, each NOTIFY) and the newest id; on
-- compressed chunks those took 90-240 ms instead of ~5 ms (measured, docs/storage.md), and the table is
-- small. An operator can still add it: SELECT cc_compression('alert_events', 'alert_id', 'id', '90 days').
