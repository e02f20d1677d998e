-- TimescaleDB policies for the summaries and the raw readings (defaults overridable, see 0005_policies.sql).
-- On PostgreSQL 15.20 the background scheduler marks policy jobs failed ("cannot drop portal") although
-- the work is done; `carechain db prune` runs them explicitly (CALL run_job) as well.

-- Refresh: the last hour (day) stays real-time (materialized_only = false), the window before is kept
-- materialised, late readings within the window are picked up by the next refresh.
SELECT add_continuous_aggregate_policy('activity_hourly',
       start_offset => cc_setting('refresh_window_hourly', interval '3 days'), end_offset => interval '1 hour',
       schedule_interval => interval '15 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('vitals_hourly',
       start_offset => cc_setting('refresh_window_hourly', interval '3 days'), end_offset => interval '1 hour',
       schedule_interval => interval '15 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('daily_summary',
       start_offset => cc_setting('refresh_window_daily', interval '7 days'), end_offset => interval '1 day',
       schedule_interval => interval '1 hour', if_not_exists => true);

-- Summaries are kept longer than raw readings (CARE-RULES.md).
SELECT cc_retention('activity_hourly', 'bucket', cc_setting('retention_summaries', interval '730 days'));
SELECT cc_retention('vitals_hourly', 'bucket', cc_setting('retention_summaries', interval '730 days'));
SELECT cc_retention('daily_summary', 'day', cc_setting('retention_summaries', interval '730 days'));

-- Compressed per resident, newest first: a resident's history is one segment, read in order.
SELECT cc_compression('observations', 'resident_id', 'ts DESC', cc_setting('compress_observations_after', interval '3 days'));
SELECT cc_compression('scores', 'resident_id, detector', 'ts DESC', cc_setting('compress_scores_after', interval '7 days'));
