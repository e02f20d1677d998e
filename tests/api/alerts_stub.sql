-- ONLY for the API tests and bench while the alert service's migrations (0200-0299) have not landed: the two
-- tables the API reads, shaped as docs/contracts.md describes them. Applied only when `alerts` does not exist.
CREATE TABLE alerts (id bigserial PRIMARY KEY, resident_id text NOT NULL, home_id text, kind text NOT NULL,
    family text NOT NULL, severity text NOT NULL, status text NOT NULL DEFAULT 'proposed', detector text,
    detector_version text, reason text, reason_sv text, evidence jsonb, responsible_org_id text,
    created_at timestamptz NOT NULL DEFAULT now(), acknowledged_at timestamptz, resolved_at timestamptz);
CREATE INDEX ON alerts (resident_id, created_at DESC, id DESC);
CREATE TABLE alert_events (id bigserial PRIMARY KEY, alert_id bigint NOT NULL REFERENCES alerts(id),
    at timestamptz DEFAULT now(), type text NOT NULL, actor text, detail jsonb);
