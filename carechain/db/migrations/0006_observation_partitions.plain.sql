-- Plain PostgreSQL: observations partitioned by UTC day (declarative range partitioning, the
-- plain equivalent of TimescaleDB's 1-day chunks). The day being written has small indexes that
-- stay in memory, so ingest does not slow down as history grows (docs/storage.md "Writer").
--
-- Indexes (per partition, declared on the parent):
--   UNIQUE (resident_id, ts, event_id)  idempotency + every per-resident read (keyset on ts, event_id)
--   hash (event_id)                     look-ups by event id alone (FHIR Observation/ev-<id>, doses)
--   (kind, ts) WHERE medication kinds   dose counts per organisation (api/web_store.robot_doses)
-- The old (kind, ts DESC) index over every reading is gone: no query reads all residents' readings
-- of a non-medication kind, and it was the costliest index to maintain (measured: ingest 1.5-2x
-- faster without it). Time-range scans over all residents (cc_roll_up, retention) prune partitions.
--
-- Partitions are created on demand: cc_observation_partitions(days) (the writer calls it for the
-- UTC days of a batch it has not seen yet; idempotent, serialised by an advisory lock) creates the
-- missing ones with CREATE TABLE + ATTACH PARTITION, which locks the parent only in SHARE UPDATE
-- EXCLUSIVE mode (readers and concurrent COPYs go on). No DEFAULT partition: a row for a day without
-- a partition fails loudly (23514) instead of landing where a later partition could not be attached.
--
-- On an existing populated database the table is rebuilt once here: views that read observations
-- are pointed at the new table (their definitions are kept), the rows copied, the old table dropped.

CREATE OR REPLACE FUNCTION cc_observation_partitions(days date[]) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    d       date;
    part    text;
    created int := 0;
BEGIN
    IF days IS NULL THEN
        RETURN 0;
    END IF;
    FOREACH d IN ARRAY days LOOP
        CONTINUE WHEN d IS NULL;
        part := format('observations_p%s', to_char(d, 'YYYYMMDD'));
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        PERFORM pg_advisory_xact_lock(7244120006);
        CONTINUE WHEN to_regclass(part) IS NOT NULL;  -- another session made it while we waited
        EXECUTE format('CREATE TABLE %I (LIKE observations INCLUDING DEFAULTS)', part);
        EXECUTE format('ALTER TABLE observations ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part,
                       d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
        created := created + 1;
    END LOOP;
    RETURN created;
END $$;

DO $$
DECLARE
    v       record;
    n_extra int;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'observations'::regclass) = 'p' THEN
        RETURN;  -- already partitioned
    END IF;
    SELECT count(*) INTO n_extra FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name = 'observations'
       AND column_name NOT IN ('event_id', 'resident_id', 'home_id', 'device_id', 'room', 'kind', 'value_num',
                               'value_text', 'ts', 'received_at', 'seq', 'late');
    IF n_extra > 0 THEN
        RAISE EXCEPTION 'observations has % column(s) this migration does not know; not partitioning it', n_extra;
    END IF;

    -- Views reading observations, with their definitions as they read now (by the name "observations").
    CREATE TEMP TABLE cc_observation_views ON COMMIT DROP AS
    SELECT DISTINCT c.oid::regclass::text AS name, pg_get_viewdef(c.oid) AS def
      FROM pg_depend dep
      JOIN pg_rewrite rw ON rw.oid = dep.objid
      JOIN pg_class c ON c.oid = rw.ev_class
     WHERE dep.classid = 'pg_rewrite'::regclass AND dep.refobjid = 'observations'::regclass
       AND c.oid <> 'observations'::regclass AND c.relkind = 'v';

    ALTER TABLE observations RENAME TO observations_unpartitioned;
    ALTER TABLE observations_unpartitioned DROP CONSTRAINT IF EXISTS observations_resident_ts_event_key;
    ALTER TABLE observations_unpartitioned DROP CONSTRAINT IF EXISTS observations_event_id_ts_key;
    DROP INDEX IF EXISTS observations_event_id;
    DROP INDEX IF EXISTS observations_kind_ts;
    DROP INDEX IF EXISTS observations_resident_ts;

    CREATE TABLE observations (
        event_id    text NOT NULL,
        resident_id text NOT NULL,
        home_id     text NOT NULL,
        device_id   text NOT NULL,
        room        text,
        kind        text NOT NULL,
        value_num   double precision,
        value_text  text,
        ts          timestamptz NOT NULL,
        received_at timestamptz NOT NULL,
        seq         bigint NOT NULL,
        late        boolean NOT NULL DEFAULT false
    ) PARTITION BY RANGE (ts);

    -- One partition per UTC day that has readings, then the rows, then the indexes (faster than
    -- maintaining them row by row).
    PERFORM cc_observation_partitions(array_agg(DISTINCT (ts AT TIME ZONE 'UTC')::date))
       FROM observations_unpartitioned;
    INSERT INTO observations (event_id, resident_id, home_id, device_id, room, kind, value_num, value_text, ts,
                              received_at, seq, late)
    SELECT event_id, resident_id, home_id, device_id, room, kind, value_num, value_text, ts, received_at, seq, late
      FROM observations_unpartitioned;

    ALTER TABLE observations ADD CONSTRAINT observations_resident_ts_event_key UNIQUE (resident_id, ts, event_id);
    CREATE INDEX observations_event_id ON observations USING hash (event_id);
    CREATE INDEX observations_medication_ts ON observations (kind, ts)
     WHERE kind IN ('medication.dose_due', 'medication.dose_dispensed', 'medication.dose_taken',
                    'medication.dose_missed', 'medication.fault', 'medication.refill_needed');

    FOR v IN SELECT name, def FROM cc_observation_views LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', v.name, v.def);
    END LOOP;
    DROP TABLE observations_unpartitioned;
END $$;

-- Today and the next two UTC days exist before the first write (the writer makes any other day).
SELECT cc_observation_partitions(ARRAY(
    SELECT ((now() AT TIME ZONE 'UTC')::date + i) FROM generate_series(0, 2) i));
ANALYZE observations;
