-- cc_retention() of 0005, except that on TimescaleDB it adds no policy job for the audit log: a policy
-- job would drop the log's chunks on its own schedule (the background scheduler runs a new job at once)
-- without recording where it cut the hash chain, and `carechain audit verify` could then no longer tell
-- that cut from a deletion. The audit log's keep is recorded as before; `carechain db prune` applies it
-- (0350, carechain/db/prune.py). Every other relation: unchanged.
CREATE OR REPLACE FUNCTION cc_retention(tbl regclass, time_col text, keep interval)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF tbl::text IN ('audit_log', 'public.audit_log') AND keep < interval '5 years' THEN
        RAISE EXCEPTION 'the audit log is kept at least 5 years (asked: %)', keep;
    END IF;
    INSERT INTO retention_settings (table_name, time_column, keep) VALUES (tbl::text, time_col, keep)
    ON CONFLICT (table_name) DO UPDATE SET keep = EXCLUDED.keep, time_column = EXCLUDED.time_column;
    IF cc_is_timescale_relation(tbl) AND tbl::text NOT IN ('audit_log', 'public.audit_log') THEN
        PERFORM remove_retention_policy(tbl, if_exists => true);
        PERFORM add_retention_policy(tbl, keep);
    END IF;
END $$;

-- At least 5 years (`carechain.retention_audit_log`, e.g. '10 years'; less is refused).
SELECT cc_retention('audit_log', 'at', cc_setting('retention_audit_log', interval '5 years'));
