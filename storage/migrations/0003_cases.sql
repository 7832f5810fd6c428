-- Enforcement cases, their evidence, the hash-chained audit log and credit codes.

CREATE TABLE cases (
    case_id         bigserial PRIMARY KEY,
    rule_id         text NOT NULL,
    rule_version    integer NOT NULL,
    subject_id      text NOT NULL,
    episode_start   timestamptz NOT NULL,
    episode_end     timestamptz NOT NULL,
    kind            text NOT NULL,            -- violation / warning / fault / safety
    severity        text NOT NULL,
    status          text NOT NULL DEFAULT 'flagged',
    evidence_state  text NOT NULL DEFAULT 'incomplete',
    evidence_missing jsonb NOT NULL DEFAULT '[]',
    legal_basis     text NOT NULL DEFAULT '',
    summary         jsonb NOT NULL DEFAULT '{}',
    fused_into      bigint REFERENCES cases (case_id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rule_id, subject_id, episode_start)
);
CREATE INDEX cases_subject ON cases (subject_id, episode_start);
CREATE INDEX cases_status ON cases (status);

CREATE TABLE case_evidence (
    id              bigserial PRIMARY KEY,
    case_id         bigint NOT NULL REFERENCES cases (case_id),
    kind            text NOT NULL,            -- frame / series
    ref             text NOT NULL,            -- frame sha256, or series key
    sha256          text NOT NULL,            -- hash of the referenced content
    content         jsonb,                    -- reading-series snapshot
    added_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (case_id, kind, ref)
);

CREATE TABLE case_transitions (
    id              bigserial PRIMARY KEY,
    case_id         bigint NOT NULL REFERENCES cases (case_id),
    from_status     text,
    to_status       text NOT NULL,
    actor           text NOT NULL,
    reason          text NOT NULL DEFAULT '',
    at              timestamptz NOT NULL DEFAULT now()
);

-- Append-only; each entry's hash covers the previous entry's hash.
CREATE TABLE audit_log (
    seq             bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor           text NOT NULL,
    action          text NOT NULL,
    entity          text NOT NULL,
    entity_id       text NOT NULL,
    data            jsonb NOT NULL DEFAULT '{}',
    prev_hash       text NOT NULL,
    hash            text NOT NULL
);

CREATE TABLE credit_history (
    id              bigserial PRIMARY KEY,
    subject_id      text NOT NULL,
    code            text NOT NULL CHECK (code IN ('green', 'yellow', 'red')),
    since           timestamptz NOT NULL,
    reason          text NOT NULL,
    computed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credit_history_subject ON credit_history (subject_id, since);
