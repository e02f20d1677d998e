-- Time series: observations (raw readings), detector scores, model checkpoints.
-- Unique keys include ts because TimescaleDB needs the partition column in unique indexes;
-- event ids are deterministic (device, seq, ts), so a replayed batch adds nothing.

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
    late        boolean NOT NULL DEFAULT false,
    UNIQUE (event_id, ts)
);
CREATE INDEX observations_resident_ts ON observations (resident_id, ts DESC);
CREATE INDEX observations_kind_ts ON observations (kind, ts DESC);
SELECT cc_make_hypertable('observations', 'ts', interval '1 day');

CREATE TABLE scores (
    resident_id      text NOT NULL,
    detector         text NOT NULL,
    detector_version text NOT NULL,
    ts               timestamptz NOT NULL,
    score            double precision NOT NULL,
    threshold        double precision,
    features         jsonb,
    UNIQUE (resident_id, detector, ts)
);
CREATE INDEX scores_resident_ts ON scores (resident_id, ts DESC);
SELECT cc_make_hypertable('scores', 'ts', interval '7 days');

CREATE TABLE model_checkpoints (
    resident_id text NOT NULL,
    detector    text NOT NULL,
    version     text NOT NULL,
    state       bytea NOT NULL,          -- explicit versioned codec, never pickle
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resident_id, detector)
);

-- Raw events short, summaries longer (CARE-RULES.md): defaults, changeable with cc_retention().
SELECT cc_retention('observations', 'ts', interval '30 days');
SELECT cc_retention('scores', 'ts', interval '365 days');
