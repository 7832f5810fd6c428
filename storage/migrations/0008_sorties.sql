-- Drone sorties: what was planned, what was flown, what it photographed, how it ended.
--
-- Status: requested (a rule asked for a drone; not planned yet) -> planned -> uploaded
-- -> airborne -> returning -> landed; or refused (the plan broke a constraint, nothing
-- uploaded), aborted (an operator brought it home), failed (with the reason: the vehicle
-- did not answer, refused to arm, the link never came back...). A planned sortie whose
-- approval is 'operator' waits for approved_by before it flies.

CREATE TABLE sorties (
    sortie_id        bigserial PRIMARY KEY,
    device_id        text REFERENCES devices (device_id),
    kind             text NOT NULL CHECK (kind IN ('survey', 'corridor', 'inspection', 'imported')),
    status           text NOT NULL DEFAULT 'planned' CHECK (status IN (
                         'requested', 'planned', 'uploaded', 'airborne', 'returning', 'landed',
                         'refused', 'aborted', 'failed')),
    reason           text NOT NULL DEFAULT '',
    plan             jsonb,                     -- flights.planner.Plan as JSON
    mission_id       text,                      -- domain/missions.py: what the drone's frames carry
    subject_ids      text[] NOT NULL DEFAULT '{}',
    case_id          bigint REFERENCES cases (case_id),
    rule_id          text,
    approval         text NOT NULL DEFAULT 'auto' CHECK (approval IN ('auto', 'operator')),
    approved_by      text,
    requested_by     text NOT NULL,
    abort_requested  text,                      -- who asked, and why; the monitor brings it home
    takeoff_at       timestamptz,               -- vehicle time (its GPS clock)
    landed_at        timestamptz,
    track            jsonb NOT NULL DEFAULT '[]',  -- [[ts, lat, lon, alt_m, battery_pct, mode], ...]
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sorties_status ON sorties (status);
CREATE INDEX sorties_case ON sorties (case_id);
-- a drone flies one sortie at a time
CREATE UNIQUE INDEX sorties_one_active_per_drone ON sorties (device_id)
    WHERE status IN ('uploaded', 'airborne', 'returning');
-- one dispatch per case and rule, however often the engine re-judges the case
CREATE UNIQUE INDEX sorties_one_per_case ON sorties (case_id, rule_id) WHERE case_id IS NOT NULL;

CREATE TABLE sortie_events (
    id               bigserial PRIMARY KEY,
    sortie_id        bigint NOT NULL REFERENCES sorties (sortie_id),
    at               timestamptz NOT NULL DEFAULT now(),
    status           text NOT NULL,
    reason           text NOT NULL DEFAULT ''
);
CREATE INDEX sortie_events_sortie ON sortie_events (sortie_id, at);

CREATE INDEX frames_mission ON frames (mission_id, source_id) WHERE mission_id IS NOT NULL;
