-- The review app: users, sessions, API tokens, login failures, the party's one-time
-- links and what the party submitted, and indexes for the officers' queue.

CREATE TABLE web_users (
    user_id          bigserial PRIMARY KEY,
    username         text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,62}$'),
    role             text NOT NULL CHECK (role IN ('officer', 'supervisor', 'operator', 'admin')),
    password_hash    text NOT NULL,             -- argon2id
    display_name     text NOT NULL DEFAULT '',
    disabled         boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

-- Server-side sessions: the cookie carries a random token, the table only its sha256.
CREATE TABLE web_sessions (
    token_sha256     text PRIMARY KEY,
    user_id          bigint NOT NULL REFERENCES web_users (user_id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

CREATE TABLE api_tokens (
    token_sha256     text PRIMARY KEY,
    user_id          bigint NOT NULL REFERENCES web_users (user_id),
    label            text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz
);

CREATE TABLE login_failures (
    id               bigserial PRIMARY KEY,
    username         text NOT NULL,
    client           text NOT NULL,
    at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_user ON login_failures (username, at);
CREATE INDEX login_failures_client ON login_failures (client, at);

-- 陈述申辩: one unguessable link per notified case, for the party, no account.
CREATE TABLE party_links (
    token_sha256     text PRIMARY KEY,
    case_id          bigint NOT NULL REFERENCES cases (case_id),
    issued_by        text NOT NULL,
    issued_at        timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    respond_by       timestamptz NOT NULL,     -- end of the party's window to respond
    used_at          timestamptz               -- the party answered (one answer per link)
);
CREATE INDEX party_links_case ON party_links (case_id);

-- What the party said and sent: photos are files in the evidence store, by sha256.
CREATE TABLE party_submissions (
    id               bigserial PRIMARY KEY,
    case_id          bigint NOT NULL REFERENCES cases (case_id),
    token_sha256     text NOT NULL REFERENCES party_links (token_sha256),
    statement        text NOT NULL,
    photos           jsonb NOT NULL DEFAULT '[]',   -- [{sha256, content_type, bytes}]
    submitted_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX party_submissions_case ON party_submissions (case_id);

-- Photos an officer takes on the spot (by sha256 in the evidence store), with a note.
CREATE TABLE field_photos (
    id               bigserial PRIMARY KEY,
    case_id          bigint NOT NULL REFERENCES cases (case_id),
    sha256           text NOT NULL,
    content_type     text NOT NULL,
    bytes            integer NOT NULL,
    note             text NOT NULL,
    actor            text NOT NULL,
    added_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (case_id, sha256)
);

-- Keyset pagination of the queue: newest / oldest first, and by severity.
CREATE INDEX cases_queue_age ON cases (episode_start, case_id) WHERE fused_into IS NULL;
CREATE INDEX cases_queue_severity ON cases (
    (CASE severity WHEN 'serious' THEN 3 WHEN 'general' THEN 2 ELSE 1 END),
    episode_start, case_id) WHERE fused_into IS NULL;
CREATE INDEX cases_status_age ON cases (status, episode_start, case_id) WHERE fused_into IS NULL;
-- an evidence file is served only when some case holds it
CREATE INDEX case_evidence_ref ON case_evidence (ref) WHERE kind = 'frame';
-- a case page lists the cases fused into it
CREATE INDEX cases_fused_into ON cases (fused_into) WHERE fused_into IS NOT NULL;
