-- The audit log (0300) as time series with a retention of at least 5 years (CARE-RULES.md), in both
-- modes; docs/storage.md "Audit log and alert history".
--
-- * Keys include the partition column (TimescaleDB needs it): PRIMARY KEY (id, at), UNIQUE (hash, at).
--   Ids still come from the sequence under the chain lock (unique, increasing along the chain).
-- * Still append-only: UPDATE and TRUNCATE are always refused. DELETE is refused too, except for a row
--   older than the retention floor (the longer of 5 years and the configured keep) in a transaction
--   that set `carechain.audit_prune = on` (SET LOCAL / set_config(..., true)): only `carechain db prune`
--   does, removing a prefix of the chain and recording where it cut in audit_log_pruned, so that
--   `carechain audit verify` starts from the first remaining row and can tell a retention cut from a
--   deletion.

ALTER TABLE audit_log DROP CONSTRAINT audit_log_pkey;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_pkey PRIMARY KEY (id, at);
ALTER TABLE audit_log DROP CONSTRAINT audit_log_hash_key;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_hash_key UNIQUE (hash, at);

-- Configuring less than 5 years is refused wherever it is tried: cc_retention() (0005) refuses
-- `< interval '5 years'`, and this check refuses any row that does not cover 5 calendar years from
-- every start date (so '1826 days' is refused too; '5 years' and '1827 days' are accepted).
ALTER TABLE retention_settings ADD CONSTRAINT retention_settings_audit_floor
    CHECK (table_name NOT IN ('audit_log', 'public.audit_log') OR timestamp '2000-01-01' + keep >= timestamp '2005-01-01');

-- Rows older than this instant may be removed by retention: now() minus the longer of 5 years and the keep.
CREATE FUNCTION cc_audit_horizon() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT least(now() - interval '5 years',
                 now() - coalesce((SELECT keep FROM retention_settings
                                    WHERE table_name IN ('audit_log', 'public.audit_log') LIMIT 1),
                                  interval '5 years'))
$$;

CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('carechain.audit_prune', true) = 'on' AND OLD.at < cc_audit_horizon() THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
-- Same trigger name as before (0300); the TRUNCATE trigger keeps refusing everything.
DROP TRIGGER audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard();

-- Where retention cut the chain: the last row removed (its hash is the prev_hash of the first row kept).
-- Written by `carechain db prune` in the transaction that removes the rows; append-only itself.
CREATE TABLE audit_log_pruned (
    id           bigserial PRIMARY KEY,
    pruned_at    timestamptz NOT NULL DEFAULT now(),
    horizon      timestamptz NOT NULL,   -- rows before this instant were eligible
    through_id   bigint NOT NULL,        -- the highest id removed
    through_hash text NOT NULL,          -- its hash
    rows         bigint NOT NULL
);
CREATE INDEX audit_log_pruned_hash ON audit_log_pruned (through_hash);
CREATE TRIGGER audit_log_pruned_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log_pruned
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- On TimescaleDB, create_hypertable(migrate_data => true) moves existing rows into chunks and then
-- truncates the parent: the TRUNCATE trigger is off for that, inside this migration's transaction only.
ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_truncate;
-- Large chunks, no compression: every append reads the chain's head (ORDER BY id DESC LIMIT 1, no time
-- column), which visits every chunk; compressed chunks made it ~10x slower (docs/storage.md).
SELECT cc_make_hypertable('audit_log', 'at', cc_setting('chunk_audit_log', interval '180 days'));
ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_truncate;
-- The keep is registered by 0351, after cc_retention() learnt not to add a policy job for the audit log.
