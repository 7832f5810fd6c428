-- Registry, sensor readings, drone telemetry, device status and dead letters.

CREATE TABLE subjects (
    subject_id   text PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('merchant', 'site', 'permit', 'area')),
    name         text NOT NULL,
    area_id      text,
    geometry     jsonb NOT NULL,            -- GeoJSON geometry (WGS84)
    props        jsonb NOT NULL DEFAULT '{}',
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subjects_kind ON subjects (kind);

CREATE TABLE devices (
    device_id        text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('fume', 'dust', 'cone_camera', 'drone')),
    subject_id       text REFERENCES subjects (subject_id),
    model            text,
    certificate_no   text,
    certified_from   date,
    certified_until  date,
    calibrated_on    date,
    calibration_due  date,
    props            jsonb NOT NULL DEFAULT '{}',
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_subject ON devices (subject_id);

-- One row per (device, event time); fume and dust fields are nullable columns of one table
-- so that a reading keeps its identity whatever the device kind.
CREATE TABLE readings (
    device_id     text NOT NULL,
    ts            timestamptz NOT NULL,      -- device (event) time
    received_at   timestamptz NOT NULL,      -- collector receive time
    fume_mg_m3    double precision,
    fan_on        boolean,
    purifier_on   boolean,
    pm10_ug_m3    double precision,
    pm25_ug_m3    double precision,
    tsp_ug_m3     double precision,
    noise_dba     double precision,
    wind_ms       double precision,
    PRIMARY KEY (device_id, ts)
);
CREATE INDEX readings_ts_brin ON readings USING brin (ts);

CREATE TABLE telemetry (
    drone_id      text NOT NULL,
    ts            timestamptz NOT NULL,
    received_at   timestamptz NOT NULL,
    lat           double precision NOT NULL,
    lon           double precision NOT NULL,
    alt_m         double precision NOT NULL,
    heading_deg   double precision,
    battery_pct   double precision,
    mode          text,
    armed         boolean,
    PRIMARY KEY (drone_id, ts)
);
CREATE INDEX telemetry_ts_brin ON telemetry USING brin (ts);

CREATE TABLE device_status (
    device_id     text PRIMARY KEY,
    status        text NOT NULL,
    changed_at    timestamptz NOT NULL
);

-- Every message that could not be stored, with its raw bytes and why.
CREATE TABLE dead_letters (
    id            bigserial PRIMARY KEY,
    received_at   timestamptz NOT NULL,
    topic         text NOT NULL,
    payload       bytea NOT NULL,
    reason        text NOT NULL,
    detail        text NOT NULL DEFAULT '',
    collector_id  text
);
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at);
