-- Summaries on TimescaleDB: continuous aggregates with refresh, retention and compression
-- policies. Same relation names and columns as the plain-PostgreSQL views.

CREATE MATERIALIZED VIEW activity_hourly WITH (timescaledb.continuous) AS
SELECT resident_id, room, time_bucket('1 hour', ts) AS bucket, count(*) AS motion_events
  FROM observations
 WHERE kind = 'motion' AND value_num = 1
 GROUP BY resident_id, room, time_bucket('1 hour', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW vitals_hourly WITH (timescaledb.continuous) AS
SELECT resident_id, kind, time_bucket('1 hour', ts) AS bucket,
       min(value_num) AS min_value, avg(value_num) AS avg_value, max(value_num) AS max_value, count(*) AS n
  FROM observations
 WHERE kind IN ('heart_rate', 'spo2', 'temperature')
 GROUP BY resident_id, kind, time_bucket('1 hour', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW daily_summary WITH (timescaledb.continuous) AS
SELECT resident_id, time_bucket('1 day', ts) AS day,
       count(*) FILTER (WHERE kind = 'motion' AND value_num = 1) AS motion_events,
       count(*) FILTER (WHERE kind = 'motion' AND value_num = 1 AND room = 'bathroom') AS bathroom_events,
       count(*) FILTER (WHERE kind = 'door' AND value_text = 'open') AS door_openings,
       count(*) FILTER (WHERE kind = 'medication.dose_taken') AS doses_taken,
       count(*) FILTER (WHERE kind = 'medication.dose_missed') AS doses_missed,
       avg(value_num) FILTER (WHERE kind = 'heart_rate') AS heart_rate_avg
  FROM observations
 GROUP BY resident_id, time_bucket('1 day', ts)
WITH NO DATA;

-- Real-time aggregation keeps the last hour exact; the policies refresh the rest.
SELECT add_continuous_aggregate_policy('activity_hourly', start_offset => interval '3 days',
       end_offset => interval '1 hour', schedule_interval => interval '15 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('vitals_hourly', start_offset => interval '3 days',
       end_offset => interval '1 hour', schedule_interval => interval '15 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('daily_summary', start_offset => interval '7 days',
       end_offset => interval '1 day', schedule_interval => interval '1 hour', if_not_exists => true);

-- Summaries are kept longer than raw events (CARE-RULES.md).
SELECT add_retention_policy('activity_hourly', interval '730 days', if_not_exists => true);
SELECT add_retention_policy('vitals_hourly', interval '730 days', if_not_exists => true);
SELECT add_retention_policy('daily_summary', interval '1825 days', if_not_exists => true);

ALTER TABLE observations SET (timescaledb.compress, timescaledb.compress_segmentby = 'resident_id',
                              timescaledb.compress_orderby = 'ts DESC');
SELECT add_compression_policy('observations', interval '3 days', if_not_exists => true);
