-- Storage policies, configurable (docs/storage.md "Policies").
--
-- Defaults live here; a custom setting `carechain.<name>` overrides one at migrate time, e.g.
--   ALTER DATABASE carechain SET carechain.retention_observations = '14 days';
-- and cc_retention() / cc_compression() change a policy later (both modes). Every retention
-- is recorded in retention_settings: TimescaleDB runs it as a policy (drop_chunks) on
-- hypertables and continuous aggregates; `carechain db prune` applies the rest by DELETE.

CREATE OR REPLACE FUNCTION cc_setting(name text, fallback interval) RETURNS interval LANGUAGE sql STABLE AS
$$ SELECT coalesce(nullif(current_setting('carechain.' || name, true), '')::interval, fallback) $$;

-- Whether TimescaleDB manages this relation (a hypertable or a continuous aggregate).
CREATE OR REPLACE FUNCTION cc_is_timescale_relation(tbl regclass) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT cc_timescale() THEN
        RETURN false;
    END IF;
    RETURN EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
                    WHERE format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass = tbl)
        OR EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates c
                    WHERE format('%I.%I', c.view_schema, c.view_name)::regclass = tbl);
END $$;

-- Set (or change) how long rows of a relation are kept. The audit log is kept at least
-- five years (CARE-RULES.md): a shorter keep for it is refused.
CREATE OR REPLACE FUNCTION cc_retention(tbl regclass, time_col text, keep interval)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF tbl::text IN ('audit_log', 'public.audit_log') AND keep < interval '5 years' THEN
        RAISE EXCEPTION 'the audit log is kept at least 5 years (asked: %)', keep;
    END IF;
    INSERT INTO retention_settings (table_name, time_column, keep) VALUES (tbl::text, time_col, keep)
    ON CONFLICT (table_name) DO UPDATE SET keep = EXCLUDED.keep, time_column = EXCLUDED.time_column;
    IF cc_is_timescale_relation(tbl) THEN
        PERFORM remove_retention_policy(tbl, if_exists => true);
        PERFORM add_retention_policy(tbl, keep);
    END IF;
END $$;

-- Compress chunks older than `after` (TimescaleDB); a no-op on plain PostgreSQL.
CREATE OR REPLACE FUNCTION cc_compression(tbl regclass, segment_by text, order_by text, after interval)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cc_is_timescale_relation(tbl) THEN
        EXECUTE format('ALTER TABLE %s SET (timescaledb.compress, timescaledb.compress_segmentby = %L, '
                       'timescaledb.compress_orderby = %L)', tbl, segment_by, order_by);
        PERFORM remove_compression_policy(tbl, if_exists => true);
        PERFORM add_compression_policy(tbl, after);
    END IF;
END $$;

-- Raw readings short, detector scores a year (CARE-RULES.md: raw events short, summaries longer).
SELECT cc_retention('observations', 'ts', cc_setting('retention_observations', interval '30 days'));
SELECT cc_retention('scores', 'ts', cc_setting('retention_scores', interval '365 days'));
