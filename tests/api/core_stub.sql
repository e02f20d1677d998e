-- ONLY for the API tests while the storage migrations (0001-0199) have not landed: the core tables as the
-- API's store expects them. Used by tests/api/conftest.py when carechain.db has no migration runner.
CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text, applied_at timestamptz DEFAULT now());
CREATE TABLE organisations (id text PRIMARY KEY, name text NOT NULL, kind text NOT NULL);
CREATE TABLE homes (id text PRIMARY KEY, org_id text NOT NULL REFERENCES organisations(id), cohabitants int NOT NULL DEFAULT 0,
                    area text, monitoring_active boolean NOT NULL DEFAULT false, created_at timestamptz DEFAULT now());
CREATE TABLE residents (id text PRIMARY KEY, home_id text REFERENCES homes(id), org_id text NOT NULL REFERENCES organisations(id),
                        created_at timestamptz DEFAULT now());
CREATE TABLE resident_identities (resident_id text PRIMARY KEY REFERENCES residents(id), name text, personnummer text);
CREATE TABLE gateways (id text PRIMARY KEY, home_id text NOT NULL REFERENCES homes(id), revoked_at timestamptz,
                       created_at timestamptz DEFAULT now());
CREATE TABLE devices (id text PRIMARY KEY, gateway_id text NOT NULL REFERENCES gateways(id), kind text NOT NULL, room text,
                      resident_id text);
CREATE TABLE monitoring_consents (id bigserial PRIMARY KEY, home_id text NOT NULL, resident_id text, person text NOT NULL,
    basis text NOT NULL, basis_note text, method text NOT NULL, valid_to timestamptz, recorded_by text NOT NULL,
    recorded_at timestamptz DEFAULT now(), withdrawn_at timestamptz, withdrawn_by text);
CREATE TABLE care_plans (resident_id text PRIMARY KEY, plan jsonb NOT NULL, updated_at timestamptz DEFAULT now());
CREATE TABLE observations (event_id text PRIMARY KEY, resident_id text NOT NULL, ts timestamptz NOT NULL, kind text NOT NULL,
                           value double precision, device_id text, room text);
CREATE INDEX ON observations (resident_id, ts);
CREATE TABLE detector_scores (resident_id text, ts timestamptz, detector text, score double precision);
CREATE TABLE alerts (id bigserial PRIMARY KEY, resident_id text NOT NULL, home_id text, kind text NOT NULL, family text NOT NULL,
    severity text NOT NULL, status text NOT NULL DEFAULT 'proposed', detector text, detector_version text, reason text,
    reason_sv text, evidence jsonb, responsible_org_id text, created_at timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz, resolved_at timestamptz);
CREATE INDEX ON alerts (resident_id, created_at DESC, id DESC);
CREATE TABLE alert_events (id bigserial PRIMARY KEY, alert_id bigint NOT NULL REFERENCES alerts(id), at timestamptz DEFAULT now(),
    type text NOT NULL, actor text, detail jsonb);
