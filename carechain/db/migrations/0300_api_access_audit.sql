-- API: care relations, sharing consents, blocks, emergency access, the audit log and its reviews,
-- detector pause switches. Owned by the API (range 0300-0399). See docs/access.md.

CREATE TABLE care_relations (
    id          bigserial PRIMARY KEY,
    user_id     text NOT NULL,
    org_id      text NOT NULL,
    unit        text,                      -- NULL: any unit of the organisation
    resident_id text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('care_team', 'assigned_case', 'on_call')),
    valid_from  timestamptz NOT NULL DEFAULT now(),
    valid_to    timestamptz,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX care_relations_resident ON care_relations (resident_id);
CREATE INDEX care_relations_user ON care_relations (user_id, org_id);

-- Kommun <-> region: the owner makes data available (joint documentation) to a reading
-- organisation/unit with the resident's consent, or discloses (disclosure) on a legal basis.
CREATE TABLE sharing_consents (
    id            bigserial PRIMARY KEY,
    resident_id   text NOT NULL,
    owner_org_id  text NOT NULL,
    reader_org_id text NOT NULL,
    reader_unit   text,                    -- NULL: every unit of the reading organisation
    categories    text[] NOT NULL,
    mode          text NOT NULL CHECK (mode IN ('joint_documentation', 'disclosure')),
    legal_basis   text NOT NULL CHECK (legal_basis IN ('consent', 'documented_basis', 'law')),
    basis_note    text,                    -- the documented basis when the resident cannot decide
    valid_from    timestamptz NOT NULL DEFAULT now(),
    valid_to      timestamptz NOT NULL,    -- consent is always time-limited
    recorded_by   text NOT NULL,
    method        text NOT NULL CHECK (method IN ('verbal', 'written', 'digital', 'representative')),
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    withdrawn_at  timestamptz,
    withdrawn_by  text,
    CHECK (valid_to > valid_from)
);
CREATE INDEX sharing_consents_resident ON sharing_consents (resident_id);

-- A resident blocks a category (for readers outside the owner) or an organisation/unit.
CREATE TABLE blocks (
    id          bigserial PRIMARY KEY,
    resident_id text NOT NULL,
    category    text,
    org_id      text,
    unit        text,
    valid_from  timestamptz NOT NULL DEFAULT now(),
    valid_to    timestamptz,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    lifted_at   timestamptz,
    lifted_by   text,
    CHECK (category IS NOT NULL OR org_id IS NOT NULL OR unit IS NOT NULL)
);
CREATE INDEX blocks_resident ON blocks (resident_id);

CREATE TABLE emergency_access (
    id            bigserial PRIMARY KEY,
    user_id       text NOT NULL,
    org_id        text NOT NULL,
    unit          text,
    resident_id   text NOT NULL,
    reason        text NOT NULL CHECK (length(reason) >= 10),
    reason_code   text NOT NULL,
    opened_at     timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    review_status text NOT NULL DEFAULT 'pending' CHECK (review_status IN ('pending', 'approved', 'flagged')),
    CHECK (expires_at > opened_at)
);
CREATE INDEX emergency_access_resident ON emergency_access (resident_id, user_id);
CREATE INDEX emergency_access_review ON emergency_access (review_status) WHERE review_status = 'pending';

-- Append-only, hash-chained (hash = sha256(prev_hash || canonical JSON of the row), see api/audit.py).
CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL,
    at_local     text NOT NULL,
    user_id      text,
    org_id       text,
    unit         text,
    role         text,
    client       text,
    on_behalf_of text,
    action       text NOT NULL,
    resource     text NOT NULL,
    resident_id  text,
    purpose      text NOT NULL CHECK (purpose IN ('treatment', 'emergency', 'quality', 'administration')),
    outcome      text NOT NULL CHECK (outcome IN ('allowed', 'denied')),
    basis        text,
    emergency    boolean NOT NULL DEFAULT false,
    request_id   text,
    prev_hash    text NOT NULL,
    hash         text NOT NULL UNIQUE
);
CREATE INDEX audit_log_resident_at ON audit_log (resident_id, at) WHERE resident_id IS NOT NULL;
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_user_at ON audit_log (user_id, at);

-- Append entries to the chain in one statement. Each body is the canonical JSON (sorted keys, no spaces,
-- every column but id, prev_hash and hash) that api/audit.py builds. Under the chain lock each row gets the next
-- id, prev_hash = the previous row's hash and
--   hash = sha256(prev_hash || '{"id":<id>,"prev_hash":"<prev_hash>",' || body without its opening brace)
-- so `carechain audit verify` recomputes it from the stored columns alone.
CREATE FUNCTION audit_append(bodies text[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $$
DECLARE
    body   text;
    doc    jsonb;
    prev   text;
    new_id bigint;
    h      text;
BEGIN
    PERFORM pg_advisory_xact_lock(54273002010);  -- api.audit.CHAIN_LOCK
    SELECT a.hash INTO prev FROM audit_log a ORDER BY a.id DESC LIMIT 1;
    prev := coalesce(prev, repeat('0', 64));
    FOREACH body IN ARRAY bodies LOOP
        doc := body::jsonb;
        new_id := nextval(pg_get_serial_sequence('audit_log', 'id'));
        h := encode(sha256(convert_to(
            prev || '{"id":' || new_id || ',"prev_hash":"' || prev || '",' || substr(body, 2), 'UTF8')), 'hex');
        INSERT INTO audit_log (id, at, at_local, user_id, org_id, unit, role, client, on_behalf_of, action, resource,
                               resident_id, purpose, outcome, basis, emergency, request_id, prev_hash, hash)
        VALUES (new_id, (doc->>'at')::timestamptz, doc->>'at_local', doc->>'user_id', doc->>'org_id', doc->>'unit',
                doc->>'role', doc->>'client', doc->>'on_behalf_of', doc->>'action', doc->>'resource',
                doc->>'resident_id', doc->>'purpose', doc->>'outcome', doc->>'basis', (doc->>'emergency')::boolean,
                doc->>'request_id', prev, h);
        prev := h;
        RETURN NEXT new_id;
    END LOOP;
END $$;

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

CREATE TABLE audit_reviews (
    id        bigserial PRIMARY KEY,
    reviewer  text NOT NULL,
    picked_by text NOT NULL CHECK (picked_by = 'random' OR picked_by LIKE 'rule:%'),
    audit_ids bigint[] NOT NULL,
    verdict   text NOT NULL CHECK (verdict IN ('ok', 'unjustified', 'needs_follow_up')),
    note      text,
    at        timestamptz NOT NULL DEFAULT now()
);

-- Pause switches of the AI register: per detector globally (resident_id NULL) or per resident.
CREATE TABLE detector_pauses (
    id          bigserial PRIMARY KEY,
    detector    text NOT NULL,
    resident_id text,
    paused      boolean NOT NULL,
    reason      text NOT NULL,
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX detector_pauses_lookup ON detector_pauses (detector, resident_id, changed_at DESC);
