-- The audit log as several hash chains, so that concurrent appenders no longer take turns on one lock
-- (docs/api.md "Benchmark", docs/access.md "Audit log"). Additive: 0300/0350 stay as applied.
--
-- * audit_log.chain: the chain a row belongs to. Each row's prev_hash is the hash of the previous row *of its
--   chain*; the hash itself is computed exactly as before (the chain number is not part of the canonical JSON:
--   moving a row to another chain breaks both chains' links anyway). Every row written before this migration is
--   in chain 0 (the former single chain).
-- * audit_chains: every chain, with its head (the last row appended through audit_append). An appender takes
--   the first chain nobody else is appending to (FOR UPDATE SKIP LOCKED) and opens a new one when all are busy,
--   so there are about as many chains as concurrent appenders, and no appender waits for another's commit.
--   The row lock on the chain's row is what keeps each chain linear (ids are taken under it, so they increase
--   along a chain). Chain 0 is registered with the head it has now and is not handed out again (code that still
--   appends to it directly, with the 0300 advisory lock, keeps working).
-- * `carechain audit verify` walks every chain: each first row starts at the genesis hash or at a recorded
--   retention cut, each link holds, each recorded head is still there (so removing a chain's newest rows, or a
--   whole chain, is detected too), and no row belongs to an unregistered chain.
-- * audit_log_pruned.chain: retention (`carechain db prune`) records its cut per chain.

CREATE TABLE audit_chains (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    pooled      boolean NOT NULL DEFAULT true,   -- handed out by audit_append (false: chain 0 only)
    head_id     bigint,                          -- the newest row appended through audit_append (NULL: none yet)
    head_hash   text NOT NULL,                   -- its hash (the genesis hash while empty)
    appended_at timestamptz
) WITH (fillfactor = 50);  -- updated on every append: room for HOT updates

INSERT INTO audit_chains (id, pooled, head_id, head_hash, appended_at)
SELECT 0, false, h.id, coalesce(h.hash, repeat('0', 64)), h.at
FROM (SELECT NULL::int AS dummy) d
LEFT JOIN LATERAL (SELECT a.id, a.hash, a.at FROM audit_log a ORDER BY a.id DESC LIMIT 1) h ON true;

-- A chain is never removed (its rows may be cut by retention; the head then names a recorded cut).
CREATE TRIGGER audit_chains_no_delete BEFORE DELETE OR TRUNCATE ON audit_chains
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

ALTER TABLE audit_log ADD COLUMN chain bigint NOT NULL DEFAULT 0;
ALTER TABLE audit_log_pruned ADD COLUMN chain bigint NOT NULL DEFAULT 0;

-- Same signature and result as 0300's (callers unchanged); the rows go to a free chain.
CREATE OR REPLACE FUNCTION audit_append(bodies text[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $$
DECLARE
    body   text;
    doc    jsonb;
    c      bigint;
    prev   text;
    new_id bigint;
    h      text;
BEGIN
    IF coalesce(array_length(bodies, 1), 0) = 0 THEN
        RETURN;
    END IF;
    SELECT ch.id, ch.head_hash INTO c, prev FROM audit_chains ch WHERE ch.pooled
        ORDER BY ch.id LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF c IS NULL THEN  -- every chain is being appended to: open one (locked by this transaction until it ends)
        INSERT INTO audit_chains (head_hash) VALUES (repeat('0', 64)) RETURNING id, head_hash INTO c, prev;
    END IF;
    FOREACH body IN ARRAY bodies LOOP
        doc := body::jsonb;
        new_id := nextval(pg_get_serial_sequence('audit_log', 'id'));
        h := encode(sha256(convert_to(
            prev || '{"id":' || new_id || ',"prev_hash":"' || prev || '",' || substr(body, 2), 'UTF8')), 'hex');
        INSERT INTO audit_log (id, at, at_local, user_id, org_id, unit, role, client, on_behalf_of, action, resource,
                               resident_id, purpose, outcome, basis, emergency, request_id, prev_hash, hash, chain)
        VALUES (new_id, (doc->>'at')::timestamptz, doc->>'at_local', doc->>'user_id', doc->>'org_id', doc->>'unit',
                doc->>'role', doc->>'client', doc->>'on_behalf_of', doc->>'action', doc->>'resource',
                doc->>'resident_id', doc->>'purpose', doc->>'outcome', doc->>'basis', (doc->>'emergency')::boolean,
                doc->>'request_id', prev, h, c);
        prev := h;
        RETURN NEXT new_id;
    END LOOP;
    UPDATE audit_chains SET head_id = new_id, head_hash = prev, appended_at = now() WHERE id = c;
END $$;
