-- Core registry: organisations, homes, residents (pseudonymous), identities kept apart,
-- gateways, devices, care plans and monitoring consents (CARE-RULES.md "Sensors in the home").

-- Hypertable helper: a no-op on plain PostgreSQL, so every stage's single .sql works in both modes.
CREATE OR REPLACE FUNCTION cc_timescale() RETURNS boolean LANGUAGE sql STABLE AS
$$ SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') $$;

CREATE OR REPLACE FUNCTION cc_make_hypertable(tbl regclass, time_col text, chunk interval DEFAULT interval '7 days')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cc_timescale() THEN
        EXECUTE format('SELECT create_hypertable(%L::regclass, %L, chunk_time_interval => %L::interval, '
                       'if_not_exists => true, migrate_data => true)', tbl, time_col, chunk);
    END IF;
END $$;

-- Retention helper: TimescaleDB policy when present; on plain PostgreSQL recorded for `carechain db prune`.
CREATE TABLE IF NOT EXISTS retention_settings (
    table_name  text PRIMARY KEY,
    time_column text NOT NULL,
    keep        interval NOT NULL
);

CREATE OR REPLACE FUNCTION cc_retention(tbl regclass, time_col text, keep interval)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO retention_settings (table_name, time_column, keep) VALUES (tbl::text, time_col, keep)
    ON CONFLICT (table_name) DO UPDATE SET keep = EXCLUDED.keep, time_column = EXCLUDED.time_column;
    IF cc_timescale() THEN
        EXECUTE format('SELECT add_retention_policy(%L::regclass, %L::interval, if_not_exists => true)', tbl, keep);
    END IF;
END $$;

CREATE TABLE organisations (
    org_id     text PRIMARY KEY,
    name       text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('kommun', 'region')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE homes (
    home_id        text PRIMARY KEY,
    kommun_org_id  text NOT NULL REFERENCES organisations (org_id),
    region_org_id  text NOT NULL REFERENCES organisations (org_id),
    area           text,                 -- home-care district, for on-call relations
    cohabitants    int NOT NULL DEFAULT 0 CHECK (cohabitants >= 0),
    timezone       text NOT NULL DEFAULT 'Europe/Stockholm',
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- One monitored resident per home (couples: one resident row each, devices carry resident_id).
CREATE TABLE residents (
    resident_id   text PRIMARY KEY,      -- pseudonymous: the only id in streams and logs
    home_id       text NOT NULL REFERENCES homes (home_id),
    kommun_org_id text NOT NULL REFERENCES organisations (org_id),
    region_org_id text NOT NULL REFERENCES organisations (org_id),
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX residents_home ON residents (home_id);
CREATE INDEX residents_kommun ON residents (kommun_org_id);
CREATE INDEX residents_region ON residents (region_org_id);

-- Personal identity kept apart: read only through the API's access rules, never logged.
CREATE TABLE resident_identities (
    resident_id  text PRIMARY KEY REFERENCES residents (resident_id),
    name         text NOT NULL,
    personnummer text NOT NULL UNIQUE,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gateways (
    gateway_id   text PRIMARY KEY,
    home_id      text NOT NULL REFERENCES homes (home_id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_seen_at timestamptz
);
CREATE INDEX gateways_home ON gateways (home_id);

CREATE TABLE devices (
    device_id   text PRIMARY KEY,
    gateway_id  text NOT NULL REFERENCES gateways (gateway_id),
    home_id     text NOT NULL REFERENCES homes (home_id),
    device_kind text NOT NULL,
    room        text,
    resident_id text REFERENCES residents (resident_id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    removed_at  timestamptz
);
CREATE INDEX devices_gateway ON devices (gateway_id);

CREATE TABLE care_plans (
    resident_id text PRIMARY KEY REFERENCES residents (resident_id),
    plan        jsonb NOT NULL,          -- carechain.care_plan.CarePlan.to_dict()
    version     int NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT 'system'
);

-- Monitoring is activated only after consent (or a documented basis for a resident who
-- cannot decide) of the resident and of every person living with them.
CREATE TABLE monitoring_consents (
    id           bigserial PRIMARY KEY,
    home_id      text NOT NULL REFERENCES homes (home_id),
    subject      text NOT NULL CHECK (subject IN ('resident', 'cohabitant')),
    subject_ref  text NOT NULL,          -- resident id, or a pseudonymous ref of the cohabitant
    basis        text NOT NULL CHECK (basis IN ('consent', 'documented_basis')),
    basis_note   text,
    method       text NOT NULL,          -- e.g. written, verbal_witnessed, representative
    given_at     timestamptz NOT NULL DEFAULT now(),
    valid_from   timestamptz NOT NULL DEFAULT now(),
    valid_to     timestamptz,
    withdrawn_at timestamptz,
    withdrawn_by text,
    recorded_by  text NOT NULL
);
CREATE INDEX monitoring_consents_home ON monitoring_consents (home_id);
