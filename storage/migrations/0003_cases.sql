-- Enforcement cases, their evidence, status changes, the hash-chained audit log,
-- credit-code history and the rule engine's watermark.

CREATE TABLE cases (
    case_id          bigserial PRIMARY KEY,
    rule_id          text NOT NULL,
    rule_version     integer NOT NULL,
    subject_id       text NOT NULL REFERENCES subjects (subject_id),
    episode_start    timestamptz NOT NULL,     -- event time the violation began
    episode_end      timestamptz NOT NULL,     -- last event time seen so far
    kind             text NOT NULL CHECK (kind IN ('violation', 'warning', 'fault', 'safety')),
    severity         text NOT NULL CHECK (severity IN ('info', 'general', 'serious')),
    title            text NOT NULL,
    legal_basis      text NOT NULL DEFAULT '',
    status           text NOT NULL DEFAULT 'flagged' CHECK (status IN (
                         'flagged', 'under_review', 'confirmed', 'dismissed', 'notified',
                         'rectified', 'closed')),
    evidence_state   text NOT NULL DEFAULT 'incomplete'
                     CHECK (evidence_state IN ('ready', 'incomplete')),
    evidence_missing jsonb NOT NULL DEFAULT '[]',
    summary          jsonb NOT NULL DEFAULT '{}',
    fused_into       bigint REFERENCES cases (case_id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rule_id, subject_id, episode_start),
    CHECK (episode_end >= episode_start)
);
CREATE INDEX cases_subject ON cases (subject_id, episode_start);
CREATE INDEX cases_rule_subject ON cases (rule_id, subject_id, episode_end);
CREATE INDEX cases_status ON cases (status);

-- Evidence by reference: a frame by the sha256 naming its evidence file, or a reading
-- series snapshot (content) with the hash of its canonical JSON.
CREATE TABLE case_evidence (
    id               bigserial PRIMARY KEY,
    case_id          bigint NOT NULL REFERENCES cases (case_id),
    kind             text NOT NULL CHECK (kind IN ('frame', 'series')),
    ref              text NOT NULL,
    sha256           text NOT NULL,
    content          jsonb,
    meta             jsonb NOT NULL DEFAULT '{}',
    added_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (case_id, kind, ref)
);

CREATE TABLE case_transitions (
    id               bigserial PRIMARY KEY,
    case_id          bigint NOT NULL REFERENCES cases (case_id),
    from_status      text NOT NULL,
    to_status        text NOT NULL,
    actor            text NOT NULL,
    reason           text NOT NULL,
    at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX case_transitions_case ON case_transitions (case_id, at);

-- Append-only: each entry's hash covers the previous entry's hash and the entry's
-- canonical JSON, so an altered, removed or inserted row breaks the chain.
CREATE TABLE audit_log (
    seq              bigserial PRIMARY KEY,
    at               timestamptz NOT NULL,
    actor            text NOT NULL,
    action           text NOT NULL,
    entity           text NOT NULL,
    entity_id        text NOT NULL,
    data             jsonb NOT NULL DEFAULT '{}',
    prev_hash        text NOT NULL,
    hash             text NOT NULL UNIQUE
);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

CREATE TABLE credit_history (
    id               bigserial PRIMARY KEY,
    subject_id       text NOT NULL REFERENCES subjects (subject_id),
    code             text NOT NULL CHECK (code IN ('green', 'yellow', 'red')),
    since            timestamptz NOT NULL,
    reason           text NOT NULL,
    computed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credit_history_subject ON credit_history (subject_id, id);

-- How far the live engine has evaluated (event time), per engine name.
CREATE TABLE rule_engine_state (
    name             text PRIMARY KEY,
    evaluated_until  timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
