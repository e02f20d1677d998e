-- Summaries on plain PostgreSQL: the same relation names as the TimescaleDB continuous
-- aggregates, computed on read with date_bin over the (resident_id, ts) index.

CREATE VIEW activity_hourly AS
SELECT resident_id, room, date_bin('1 hour', ts, timestamptz '2000-01-01') AS bucket,
       count(*) AS motion_events
  FROM observations
 WHERE kind = 'motion' AND value_num = 1
 GROUP BY resident_id, room, bucket;

CREATE VIEW vitals_hourly AS
SELECT resident_id, kind, date_bin('1 hour', ts, timestamptz '2000-01-01') AS bucket,
       min(value_num) AS min_value, avg(value_num) AS avg_value, max(value_num) AS max_value, count(*) AS n
  FROM observations
 WHERE kind IN ('heart_rate', 'spo2', 'temperature')
 GROUP BY resident_id, kind, bucket;

CREATE VIEW daily_summary AS
SELECT resident_id, date_bin('1 day', ts, timestamptz '2000-01-01') AS day,
       count(*) FILTER (WHERE kind = 'motion' AND value_num = 1) AS motion_events,
       count(*) FILTER (WHERE kind = 'motion' AND value_num = 1 AND room = 'bathroom') AS bathroom_events,
       count(*) FILTER (WHERE kind = 'door' AND value_text = 'open') AS door_openings,
       count(*) FILTER (WHERE kind = 'medication.dose_taken') AS doses_taken,
       count(*) FILTER (WHERE kind = 'medication.dose_missed') AS doses_missed,
       avg(value_num) FILTER (WHERE kind = 'heart_rate') AS heart_rate_avg
  FROM observations
 GROUP BY resident_id, day;
