-- Summaries on TimescaleDB: continuous aggregates with real-time aggregation (materialized_only =
-- false: the newest, not yet refreshed buckets are computed from raw rows on read, so readers see
-- the same numbers as on plain PostgreSQL). Same relation names and columns as the plain views.

CREATE MATERIALIZED VIEW activity_hourly WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT resident_id, room, time_bucket('1 hour', ts) AS bucket, count(*) AS motion_events
  FROM observations
 WHERE kind = 'motion' AND value_num = 1
 GROUP BY resident_id, room, time_bucket('1 hour', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW vitals_hourly WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT resident_id, kind, time_bucket('1 hour', ts) AS bucket,
       min(value_num) AS min_value, avg(value_num) AS avg_value, max(value_num) AS max_value, count(*) AS n
  FROM observations
 WHERE kind IN ('heart_rate', 'spo2', 'temperature')
 GROUP BY resident_id, kind, time_bucket('1 hour', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW daily_summary WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
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

-- Refresh, retention and compression policies: 0005_policies.timescale.sql (configurable).
