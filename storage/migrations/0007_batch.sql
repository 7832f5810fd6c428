-- Batch runs over recorded footage (video files with their telemetry, photo folders).
--
-- A source is one recorded file, named by the sha256 of its bytes (the original is kept in
-- the evidence store under that name), so the same file registered twice is one source.
-- Its sampled frames are split into chunks that workers claim with SKIP LOCKED: several
-- processes or machines split a night's files, and a worker killed mid-chunk leaves a claim
-- that is handed back. Each sampled frame is recorded beside its frames-queue row with its
-- position in the source, so evidence traces back to the exact frame of the original.

CREATE TABLE batch_runs (
    run_id          bigserial PRIMARY KEY,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    status          text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
    started_by      text NOT NULL,             -- host:pid of the command
    options         jsonb NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL DEFAULT now()   -- progress heartbeat
);

CREATE TABLE batch_sources (
    sha256          text PRIMARY KEY,          -- of the original file's bytes
    first_run_id    bigint NOT NULL REFERENCES batch_runs,
    path            text NOT NULL,             -- where the file was found
    kind            text NOT NULL CHECK (kind IN ('drone_video', 'camera_video', 'photo')),
    device_id       text NOT NULL,
    bytes           bigint NOT NULL,
    sidecar_sha256  text,                      -- the telemetry file (SRT) kept beside it
    media_start     timestamptz,               -- event time of the first frame
    duration_s      double precision NOT NULL DEFAULT 0,
    frames_total    integer NOT NULL DEFAULT 0,        -- readable frames in the file
    fps             double precision,
    sample_fps      double precision,
    samples         integer NOT NULL DEFAULT 0,        -- frames the run samples
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'partial', 'failed')),
    problems        jsonb NOT NULL DEFAULT '[]',       -- refused telemetry cues, damage
    registered_at   timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

CREATE TABLE batch_run_sources (
    run_id          bigint NOT NULL REFERENCES batch_runs,
    source_sha256   text NOT NULL REFERENCES batch_sources,
    PRIMARY KEY (run_id, source_sha256)
);

CREATE TABLE batch_chunks (
    source_sha256   text NOT NULL REFERENCES batch_sources,
    chunk_no        integer NOT NULL,
    sample_indices  integer[] NOT NULL,        -- frame indices of the source to sample
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    claimed_by      text,
    claimed_at      timestamptz,
    sampled         integer NOT NULL DEFAULT 0,
    undecodable     integer NOT NULL DEFAULT 0,
    decode_s        double precision NOT NULL DEFAULT 0,
    error           text,
    finished_at     timestamptz,
    PRIMARY KEY (source_sha256, chunk_no)
);
CREATE INDEX batch_chunks_pending ON batch_chunks (source_sha256) WHERE status = 'pending';

CREATE TABLE batch_frames (
    source_sha256   text NOT NULL REFERENCES batch_sources,
    frame_index     integer NOT NULL,          -- position in the source (video frame number)
    media_time_s    double precision NOT NULL, -- time into the recording
    frame_sha256    text NOT NULL,             -- the sampled frame's JPEG in the evidence store
    frame_ts        timestamptz NOT NULL,
    chunk_no        integer NOT NULL,
    PRIMARY KEY (source_sha256, frame_index)
);
CREATE INDEX batch_frames_frame ON batch_frames (frame_sha256, frame_ts);
