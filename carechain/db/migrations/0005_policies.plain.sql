-- Plain PostgreSQL: summaries must outlive the raw readings they are computed from. Before
-- `carechain db prune` deletes raw readings it rolls whole UTC days up into *_rollup tables
-- (cc_roll_up); the summary views read the rollups below the horizon and compute the rest
-- from raw readings with date_bin. Same relation names and columns as before (and as the
-- TimescaleDB continuous aggregates).

CREATE TABLE summary_horizon (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    horizon   timestamptz NOT NULL DEFAULT '-infinity'  -- rollups hold everything before this instant
);
INSERT INTO summary_horizon DEFAULT VALUES;

CREATE TABLE activity_hourly_rollup (
    resident_id   text NOT NULL,
    room          text,
    bucket        timestamptz NOT NULL,
    motion_events bigint NOT NULL
);
CREATE INDEX activity_hourly_rollup_resident ON activity_hourly_rollup (resident_id, bucket);

CREATE TABLE vitals_hourly_rollup (
    resident_id text NOT NULL,
    kind        text NOT NULL,
    bucket      timestamptz NOT NULL,
    min_value   double precision,
    avg_value   double precision,
    max_value   double precision,
    n           bigint NOT NULL
);
CREATE INDEX vitals_hourly_rollup_resident ON vitals_hourly_rollup (resident_id, bucket);

CREATE TABLE daily_summary_rollup (
    resident_id     text NOT NULL,
    day             timestamptz NOT NULL,
    motion_events   bigint NOT NULL,
    bathroom_events bigint NOT NULL,
    door_openings   bigint NOT NULL,
    doses_taken     bigint NOT NULL,
    doses_missed    bigint NOT NULL,
    heart_rate_avg  double precision
);
CREATE INDEX daily_summary_rollup_resident ON daily_summary_rollup (resident_id, day);

CREATE OR REPLACE VIEW activity_hourly AS
SELECT resident_id, room, bucket, motion_events FROM activity_hourly_rollup
UNION ALL
SELECT resident_id, room, date_bin('1 hour', ts, timestamptz '2000-01-01') AS bucket, count(*) AS motion_events
  FROM observations
 WHERE kind = 'motion' AND value_num = 1 AND ts >= (SELECT horizon FROM summary_horizon)
 GROUP BY resident_id, room, 3;

CREATE OR REPLACE VIEW vitals_hourly AS
SELECT resident_id, kind, bucket, min_value, avg_value, max_value, n FROM vitals_hourly_rollup
UNION ALL
SELECT resident_id, kind, date_bin('1 hour', ts, timestamptz '2000-01-01') AS bucket,
       min(value_num), avg(value_num), max(value_num), count(*)
  FROM observations
 WHERE kind IN ('heart_rate', 'spo2', 'temperature') AND ts >= (SELECT horizon FROM summary_horizon)
 GROUP BY resident_id, kind, 3;

CREATE OR REPLACE VIEW daily_summary AS
SELECT resident_id, day, motion_events, bathroom_events, door_openings, doses_taken, doses_missed, heart_rate_avg
  FROM daily_summary_rollup
UNION ALL
SELECT resident_id, date_bin('1 day', ts, timestamptz '2000-01-01') AS day,
       count(*) FILTER (WHERE kind = 'motion' AND value_num = 1),
       count(*) FILTER (WHERE kind = 'motion' AND value_num = 1 AND room = 'bathroom'),
       count(*) FILTER (WHERE kind = 'door' AND value_text = 'open'),
       count(*) FILTER (WHERE kind = 'medication.dose_taken'),
       count(*) FILTER (WHERE kind = 'medication.dose_missed'),
       avg(value_num) FILTER (WHERE kind = 'heart_rate')
  FROM observations
 WHERE ts >= (SELECT horizon FROM summary_horizon)
 GROUP BY resident_id, 2;

-- Move the horizon forward to the UTC midnight at or before `until`: roll the raw readings of
-- the days in between up into the rollup tables. Returns the new horizon. Serialised by the
-- row lock on summary_horizon; rolling up twice is impossible (the horizon only moves forward).
CREATE OR REPLACE FUNCTION cc_roll_up(until timestamptz) RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
    old timestamptz;
    h   timestamptz := date_bin('1 day', until, timestamptz '2000-01-01');
BEGIN
    SELECT horizon INTO old FROM summary_horizon FOR UPDATE;
    IF h <= old THEN
        RETURN old;
    END IF;
    INSERT INTO activity_hourly_rollup (resident_id, room, bucket, motion_events)
    SELECT resident_id, room, date_bin('1 hour', ts, timestamptz '2000-01-01'), count(*)
      FROM observations WHERE kind = 'motion' AND value_num = 1 AND ts >= old AND ts < h
     GROUP BY 1, 2, 3;
    INSERT INTO vitals_hourly_rollup (resident_id, kind, bucket, min_value, avg_value, max_value, n)
    SELECT resident_id, kind, date_bin('1 hour', ts, timestamptz '2000-01-01'),
           min(value_num), avg(value_num), max(value_num), count(*)
      FROM observations WHERE kind IN ('heart_rate', 'spo2', 'temperature') AND ts >= old AND ts < h
     GROUP BY 1, 2, 3;
    INSERT INTO daily_summary_rollup (resident_id, day, motion_events, bathroom_events, door_openings,
                                      doses_taken, doses_missed, heart_rate_avg)
    SELECT resident_id, date_bin('1 day', ts, timestamptz '2000-01-01'),
           count(*) FILTER (WHERE kind = 'motion' AND value_num = 1),
           count(*) FILTER (WHERE kind = 'motion' AND value_num = 1 AND room = 'bathroom'),
           count(*) FILTER (WHERE kind = 'door' AND value_text = 'open'),
           count(*) FILTER (WHERE kind = 'medication.dose_taken'),
           count(*) FILTER (WHERE kind = 'medication.dose_missed'),
           avg(value_num) FILTER (WHERE kind = 'heart_rate')
      FROM observations WHERE ts >= old AND ts < h
     GROUP BY 1, 2;
    UPDATE summary_horizon SET horizon = h;
    RETURN h;
END $$;

SELECT cc_retention('activity_hourly_rollup', 'bucket', cc_setting('retention_summaries', interval '730 days'));
SELECT cc_retention('vitals_hourly_rollup', 'bucket', cc_setting('retention_summaries', interval '730 days'));
SELECT cc_retention('daily_summary_rollup', 'day', cc_setting('retention_summaries', interval '730 days'));
