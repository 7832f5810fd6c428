-- Frames (the detection queue) and detections.

-- One row per (image hash, event time). The JPEG itself lives in the evidence store under
-- its sha256; the row is the queue entry that detector workers claim.
CREATE TABLE frames (
    sha256          text NOT NULL,            -- of the JPEG bytes; names the evidence file
    ts              timestamptz NOT NULL,     -- event time from the frame header
    received_at     timestamptz NOT NULL,
    source_kind     text NOT NULL CHECK (source_kind IN ('cone', 'drone', 'batch')),
    source_id       text NOT NULL,            -- camera or drone id
    mission_id      text,
    lat             double precision,         -- drone pose (null for cone cameras)
    lon             double precision,
    alt_m           double precision,
    heading_deg     double precision,
    gimbal_pitch_deg double precision,
    hfov_deg        double precision,
    width           integer NOT NULL,
    height          integer NOT NULL,
    bytes           integer NOT NULL,
    header          jsonb NOT NULL DEFAULT '{}',
    sharpness       double precision,         -- variance of the Laplacian
    brightness      double precision,         -- mean grey level
    clipped         double precision,         -- share of pixels at black or white
    fit_as_evidence boolean,
    unfit_reason    text,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    claimed_by      text,
    claimed_at      timestamptz,
    processed_at    timestamptz,
    PRIMARY KEY (sha256, ts)
);
CREATE INDEX frames_pending ON frames (received_at) WHERE status = 'pending';
CREATE INDEX frames_processing ON frames (claimed_at) WHERE status = 'processing';
CREATE INDEX frames_source ON frames (source_id, ts);

-- Detections of one frame are written together with the frame's `done` mark, numbered
-- 0..n-1 within the frame; the unique index makes a second write of a frame impossible.
CREATE TABLE detections (
    id              bigserial,
    frame_sha256    text NOT NULL,
    frame_ts        timestamptz NOT NULL,     -- event time of the frame
    det_index       integer NOT NULL,         -- position within the frame's detections
    source_kind     text NOT NULL,
    source_id       text NOT NULL,
    class_id        integer NOT NULL,
    class_name      text NOT NULL,
    confidence      double precision NOT NULL,
    x1 double precision NOT NULL, y1 double precision NOT NULL,
    x2 double precision NOT NULL, y2 double precision NOT NULL,
    lat             double precision,         -- ground position (drones; cones: camera site)
    lon             double precision,
    subject_id      text,                     -- matched registry subject, if any
    zone_kind       text NOT NULL DEFAULT 'none'
                    CHECK (zone_kind IN ('frontage', 'site', 'permit', 'none')),
    fit_as_evidence boolean,                  -- copied from the frame, for rules
    model_name      text NOT NULL,
    model_version   text NOT NULL,
    weights_sha256  text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, frame_ts)
);
CREATE UNIQUE INDEX detections_frame ON detections (frame_sha256, frame_ts, det_index);
CREATE INDEX detections_subject ON detections (subject_id, frame_ts);
CREATE INDEX detections_ts_brin ON detections USING brin (frame_ts);
