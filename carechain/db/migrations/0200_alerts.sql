-- Alert service (alerts/): alerts and their lifecycle history, silences, routing, escalation,
-- rosters, the notification outbox and its delivery attempts, webhook endpoints, canary heartbeats.
-- Plain SQL that runs the same on PostgreSQL and TimescaleDB (no hypertables: these tables are small
-- and updated in place). Column names follow what the API reads (docs/contracts.md, docs/alerts.md):
-- `id` is the alert's number in URLs, `status` is its lifecycle state, `alert_events.type` the step.

CREATE TABLE alerts (
    id                bigserial PRIMARY KEY,
    alert_uuid        uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),  -- for receivers outside (webhooks)
    incident_key      text NOT NULL DEFAULT ('manual:' || gen_random_uuid()::text),
    incident_seq      int NOT NULL DEFAULT 1,   -- a new alert for the same key after the reopen window
    group_id          uuid NOT NULL DEFAULT gen_random_uuid(),  -- related alerts of one incident in a home
    resident_id       text NOT NULL,
    home_id           text,
    kind              text NOT NULL,
    family            text NOT NULL,
    severity          text NOT NULL,
    detector          text,
    detector_version  text,
    status            text NOT NULL DEFAULT 'proposed'
                      CHECK (status IN ('proposed', 'acknowledged', 'accepted', 'dismissed', 'resolved')),
    responsible_org_id text,
    responsible_role  text,
    tier              int NOT NULL DEFAULT 1,
    event_time        timestamptz,             -- when the condition began (event time)
    created_at        timestamptz NOT NULL DEFAULT now(),
    opened_at         timestamptz NOT NULL DEFAULT now(),  -- moves on a reopen
    last_candidate_at timestamptz,             -- detected_at of the newest candidate applied (replays are older)
    acknowledged_at   timestamptz,
    acknowledged_by   text,
    accepted_at       timestamptz,
    accepted_by       text,
    dismissed_at      timestamptz,
    dismissed_by      text,
    dismiss_reason    text,
    resolved_at       timestamptz,
    resolved_by       text,                    -- a user id, or 'system:cleared'
    outcome           text CHECK (outcome IN ('true_incident', 'false_alarm', 'no_action_needed')),
    condition_active  boolean NOT NULL DEFAULT true,
    cleared_at        timestamptz,
    reason            text,
    reason_sv         text,
    evidence          jsonb NOT NULL DEFAULT '{}'::jsonb,
    suppressed        boolean NOT NULL DEFAULT false,
    suppressed_by     text,                    -- 'silence:<id>', 'inhibited:<alert id>', 'flapping', 'canary'
    notify_after      timestamptz,             -- minimum duration (hysteresis) before the first notification
    flap_count        int NOT NULL DEFAULT 0,
    reopen_count      int NOT NULL DEFAULT 0,
    canary            boolean NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alerts_dismiss_has_reason CHECK (status <> 'dismissed' OR dismiss_reason IS NOT NULL),
    UNIQUE (incident_key, incident_seq)
);
CREATE INDEX alerts_resident ON alerts (resident_id, created_at DESC, id DESC);
CREATE INDEX alerts_home_recent ON alerts (home_id, opened_at DESC);
CREATE INDEX alerts_group ON alerts (group_id);
-- One organisation's open alerts (the coordinator's list and the nurse's page): a small partial index.
CREATE INDEX alerts_open_org ON alerts (responsible_org_id, created_at DESC, id DESC)
    WHERE status IN ('proposed', 'acknowledged', 'accepted');
CREATE INDEX alerts_org_created ON alerts (responsible_org_id, created_at);

-- The lifecycle history. Every insert goes with pg_notify('carechain_alert_events', id) in the same
-- transaction: the API's live stream (SSE) LISTENs on it and replays from here on reconnect.
CREATE TABLE alert_events (
    id         bigserial PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES alerts (id),
    at         timestamptz NOT NULL DEFAULT now(),
    type       text NOT NULL,      -- proposed, acknowledged, accepted, dismissed, resolved, reopened, cleared,
                                   -- commented, escalated, retriggered, suppressed, flapping, related
    actor      text,               -- user id, or 'system'
    actor_org  text,
    actor_role text,
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);

-- Silences: resident in hospital, gateway maintenance. A reason and an expiry are required.
CREATE TABLE silences (
    id         bigserial PRIMARY KEY,
    scope      text NOT NULL CHECK (scope IN ('resident', 'home', 'gateway', 'detector')),
    target     text NOT NULL,
    reason     text NOT NULL CHECK (length(btrim(reason)) > 0),
    starts_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (expires_at > starts_at)
);
CREATE INDEX silences_active ON silences (scope, target, expires_at);

-- Routing: kind (or '*') and tier -> organisation kind and role. org_id NULL is the default for everyone;
-- a row with an org_id overrides the default for alerts that organisation is responsible for.
CREATE TABLE routing_rules (
    id           bigserial PRIMARY KEY,
    org_id       text,
    kind         text NOT NULL,
    min_severity text NOT NULL DEFAULT 'low' CHECK (min_severity IN ('low', 'medium', 'high', 'critical')),
    tier         int NOT NULL CHECK (tier >= 1),
    org_kind     text NOT NULL CHECK (org_kind IN ('kommun', 'region')),
    role         text NOT NULL,
    UNIQUE NULLS NOT DISTINCT (org_id, kind, min_severity, tier)
);

-- Escalation per severity: step n fires `after_minutes` after the alert opened when it is still
-- unacknowledged, notifying `tier`. After the last step: repeat every `repeat_minutes` (0: never).
-- Acknowledged but not resolved within `retrigger_minutes` (0: never): notify again.
CREATE TABLE escalation_policies (
    id                bigserial PRIMARY KEY,
    org_id            text,
    severity          text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    repeat_minutes    int NOT NULL DEFAULT 0,
    retrigger_minutes int NOT NULL DEFAULT 0,
    UNIQUE NULLS NOT DISTINCT (org_id, severity)
);
CREATE TABLE escalation_steps (
    policy_id     bigint NOT NULL REFERENCES escalation_policies (id) ON DELETE CASCADE,
    step          int NOT NULL CHECK (step >= 1),
    after_minutes int NOT NULL CHECK (after_minutes >= 0),
    tier          int NOT NULL CHECK (tier >= 1),
    PRIMARY KEY (policy_id, step)
);

-- Deadlines live here, so they survive restarts; the scan takes them FOR UPDATE SKIP LOCKED.
-- step 0: first notification after a minimum duration; 1..n: escalation and repeats; >= 1000: re-trigger.
CREATE TABLE escalation_deadlines (
    alert_id bigint NOT NULL REFERENCES alerts (id),
    step     int NOT NULL,
    due_at   timestamptz NOT NULL,
    done_at  timestamptz,
    outcome  text,                 -- notified, skipped:<why>
    PRIMARY KEY (alert_id, step)
);
CREATE INDEX escalation_deadlines_due ON escalation_deadlines (due_at) WHERE done_at IS NULL;

-- Teams and on-call rosters (local time Europe/Stockholm; day types weekday / weekend / holiday).
CREATE TABLE teams (
    team_id     text PRIMARY KEY,
    org_id      text NOT NULL,
    role        text NOT NULL,
    name        text NOT NULL,
    email       text,             -- fallback when nobody is rostered
    timezone    text NOT NULL DEFAULT 'Europe/Stockholm'
);
CREATE INDEX teams_org_role ON teams (org_id, role);
CREATE TABLE roster_shifts (
    id         bigserial PRIMARY KEY,
    team_id    text NOT NULL REFERENCES teams (team_id) ON DELETE CASCADE,
    user_id    text NOT NULL,
    email      text,
    day_type   text NOT NULL CHECK (day_type IN ('weekday', 'weekend', 'holiday', 'any')),
    starts     time NOT NULL,     -- local time; a shift whose end <= start runs past midnight
    ends       time NOT NULL,
    priority   int NOT NULL DEFAULT 0
);

-- Webhook endpoints per organisation (SMS gateways, chat tools).
CREATE TABLE webhook_endpoints (
    id         bigserial PRIMARY KEY,
    org_id     text NOT NULL,
    url        text NOT NULL,
    secret     text NOT NULL,
    active     boolean NOT NULL DEFAULT true,
    failures   int NOT NULL DEFAULT 0,   -- consecutive, for the per-endpoint backoff
    next_try_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org_id) WHERE active;

-- The outbox: written in the same transaction as the alert change; the dispatcher sends and marks.
CREATE TABLE notification_outbox (
    id           bigserial PRIMARY KEY,
    alert_id     bigint REFERENCES alerts (id),
    channel      text NOT NULL CHECK (channel IN ('webhook', 'email', 'feedback', 'operator')),
    target       text NOT NULL,
    payload      jsonb NOT NULL,
    dedup_key    text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    due_at       timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    attempts     int NOT NULL DEFAULT 0,
    last_error   text,
    locked_until timestamptz,
    dead_at      timestamptz            -- gave up after too many attempts (kept, visible, never silent)
);
CREATE INDEX notification_outbox_pending ON notification_outbox (due_at) WHERE sent_at IS NULL AND dead_at IS NULL;
CREATE INDEX notification_outbox_alert ON notification_outbox (alert_id);

CREATE TABLE notification_attempts (
    id        bigserial PRIMARY KEY,
    outbox_id bigint NOT NULL REFERENCES notification_outbox (id),
    at        timestamptz NOT NULL DEFAULT now(),
    ok        boolean NOT NULL,
    status    int,
    detail    text
);
CREATE INDEX notification_attempts_outbox ON notification_attempts (outbox_id);

-- Flap detection per resident and kind (incident keys change per episode, the flapping does not).
CREATE TABLE alert_flaps (
    resident_id text NOT NULL,
    kind        text NOT NULL,
    changes     timestamptz[] NOT NULL DEFAULT '{}',
    flapping    boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resident_id, kind)
);

-- The pipeline heartbeat: each canary alert that made it through the chain, with its round trip.
CREATE TABLE canary_heartbeats (
    id          bigserial PRIMARY KEY,
    resident_id text NOT NULL,
    event_time  timestamptz NOT NULL,
    arrived_at  timestamptz NOT NULL,
    rtt_ms      double precision NOT NULL
);
CREATE INDEX canary_heartbeats_arrived ON canary_heartbeats (arrived_at DESC);

-- Defaults (CARE-RULES.md, issue 5): medication and daily care to the municipality's home-care nurse;
-- vitals and infection signs to the region's primary care; a fall to the municipality first, the region
-- when unacknowledged (tier 2) or injured (the service adds the region at once then).
INSERT INTO routing_rules (org_id, kind, tier, org_kind, role) VALUES
    (NULL, '*', 1, 'kommun', 'nurse'),
    (NULL, '*', 2, 'kommun', 'coordinator'),
    (NULL, 'fall', 1, 'kommun', 'nurse'),
    (NULL, 'fall', 2, 'region', 'clinician'),
    (NULL, 'vitals_bounds', 1, 'region', 'clinician'),
    (NULL, 'vitals_anomaly', 1, 'region', 'clinician'),
    (NULL, 'infection_signs', 1, 'region', 'clinician'),
    (NULL, 'decline', 1, 'region', 'clinician'),
    (NULL, 'vitals_bounds', 2, 'kommun', 'nurse'),
    (NULL, 'vitals_anomaly', 2, 'kommun', 'nurse'),
    (NULL, 'infection_signs', 2, 'kommun', 'nurse'),
    (NULL, 'decline', 2, 'kommun', 'nurse'),
    (NULL, 'gateway_silent', 1, 'kommun', 'technician'),
    (NULL, 'device_silent', 1, 'kommun', 'technician'),
    (NULL, 'battery_low', 1, 'kommun', 'technician');

INSERT INTO escalation_policies (org_id, severity, repeat_minutes, retrigger_minutes) VALUES
    (NULL, 'critical', 5, 60), (NULL, 'high', 15, 120), (NULL, 'medium', 60, 480), (NULL, 'low', 0, 0);
INSERT INTO escalation_steps (policy_id, step, after_minutes, tier)
SELECT p.id, s.step, s.after_minutes, s.tier
  FROM escalation_policies p
  JOIN (VALUES ('critical', 1, 5, 2), ('critical', 2, 10, 3),
               ('high', 1, 15, 2), ('high', 2, 30, 3),
               ('medium', 1, 60, 2)) AS s (severity, step, after_minutes, tier) ON s.severity = p.severity
 WHERE p.org_id IS NULL;
