"""The frames queue and the detections repository.

A frame row is inserted once per (image sha256, event time) and waits as `pending`.
Detector workers claim frames with `SELECT ... FOR UPDATE SKIP LOCKED` (any number of
workers, on any machine, never the same frame twice at once), then write the frame's
detections and mark it `done` in one transaction. The `done` update is fenced on the
claim (`claimed_by` and `attempts`), so a worker whose claim was taken away after it
looked dead cannot write a second set of detections. A frame that fails goes back to
`pending` until it has used its attempts, then `failed` with its error. Claims held longer
than the stale limit (the worker died) are handed back by `recover_stale`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from domain.records import Detection
from storage.errors import StorageError


@dataclass(frozen=True, slots=True)
class Pose:
    """Where a drone camera was and where it looked (see detectors/georef.py)."""

    lat: float
    lon: float
    alt_m: float  # above ground
    heading_deg: float  # compass, clockwise from north
    gimbal_pitch_deg: float  # -90 looks straight down
    hfov_deg: float


@dataclass(frozen=True, slots=True)
class Frame:
    """One image from a cone camera or a drone, with its quality measures."""

    sha256: str
    ts: datetime  # device (event) time
    received_at: datetime
    source_kind: str  # cone | drone | batch
    source_id: str
    width: int
    height: int
    bytes: int
    pose: Pose | None = None
    mission_id: str | None = None
    header: dict[str, Any] = field(default_factory=dict)
    sharpness: float | None = None
    brightness: float | None = None
    clipped: float | None = None
    fit_as_evidence: bool | None = None
    unfit_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimedFrame:
    """A frame a worker holds: the row plus the claim that fences its completion."""

    frame: Frame
    claimed_by: str
    attempts: int


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Which model produced a detection, down to the hash of its weights file."""

    name: str
    version: str
    weights_sha256: str


@dataclass(frozen=True, slots=True)
class StoredDetection:
    """A detections row as read back."""

    frame_sha256: str
    frame_ts: datetime
    det_index: int
    source_kind: str
    source_id: str
    detection: Detection
    fit_as_evidence: bool | None
    model: ModelInfo


_FRAME_COLS = (
    "sha256", "ts", "received_at", "source_kind", "source_id", "mission_id", "lat", "lon",
    "alt_m", "heading_deg", "gimbal_pitch_deg", "hfov_deg", "width", "height", "bytes",
    "header", "sharpness", "brightness", "clipped", "fit_as_evidence", "unfit_reason",
)
FRAME_SELECT = ", ".join(f"f.{c}" for c in _FRAME_COLS)  # the columns frame_from_row reads

DETECTION_COLUMNS = (
    "frame_sha256", "frame_ts", "det_index", "source_kind", "source_id", "class_id",
    "class_name", "confidence", "x1", "y1", "x2", "y2", "lat", "lon", "subject_id",
    "zone_kind", "fit_as_evidence", "model_name", "model_version", "weights_sha256",
)


def _frame_params(f: Frame) -> tuple:
    p = f.pose
    return (f.sha256, f.ts, f.received_at, f.source_kind, f.source_id, f.mission_id,
            p and p.lat, p and p.lon, p and p.alt_m, p and p.heading_deg,
            p and p.gimbal_pitch_deg, p and p.hfov_deg, f.width, f.height, f.bytes,
            Jsonb(f.header), f.sharpness, f.brightness, f.clipped, f.fit_as_evidence,
            f.unfit_reason)


def frame_from_row(row: Sequence) -> Frame:
    """A Frame from a row selected with FRAME_SELECT."""
    (sha, ts, received_at, kind, source, mission, lat, lon, alt, heading, pitch, hfov, w, h,
     size, header, sharpness, brightness, clipped, fit, unfit) = row
    pose = Pose(lat, lon, alt, heading, pitch, hfov) if lat is not None else None
    return Frame(sha, ts, received_at, kind, source, w, h, size, pose, mission, header or {},
                 sharpness, brightness, clipped, fit, unfit)


def insert_frames(conn: psycopg.Connection, frames: Iterable[Frame]) -> list[bool]:
    """Queue frames (pending); a frame already queued is left as it is.

    Returns, per frame, whether it was new. Does not commit: the caller commits together
    with the rest of its batch, then acknowledges the messages.
    """
    frames = list(frames)
    if not frames:
        return []
    placeholders = ", ".join(["%s"] * len(_FRAME_COLS))
    query = (f"INSERT INTO frames ({', '.join(_FRAME_COLS)}) VALUES ({placeholders}) "
             "ON CONFLICT (sha256, ts) DO NOTHING RETURNING sha256")
    new = []
    with conn.cursor() as cur:
        # psycopg errors pass through: the collector tells a refused row from a lost server.
        cur.executemany(query, [_frame_params(f) for f in frames], returning=True)
        while True:
            new.append(cur.fetchone() is not None)
            if not cur.nextset():
                break
    return new


def claim(conn: psycopg.Connection, worker_id: str, limit: int) -> list[ClaimedFrame]:
    """Claim up to `limit` pending frames, oldest received first, and commit the claim."""
    rows = conn.execute(
        f"""
        UPDATE frames AS f
           SET status = 'processing', attempts = f.attempts + 1,
               claimed_by = %(worker)s, claimed_at = now()
          FROM (SELECT sha256, ts FROM frames WHERE status = 'pending'
                 ORDER BY received_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) AS todo
         WHERE f.sha256 = todo.sha256 AND f.ts = todo.ts
        RETURNING {FRAME_SELECT}, f.attempts
        """,
        {"worker": worker_id, "limit": limit},
    ).fetchall()
    conn.commit()
    claimed = [ClaimedFrame(frame_from_row(r[:-1]), worker_id, r[-1]) for r in rows]
    claimed.sort(key=lambda c: c.frame.received_at)
    return claimed


def complete(conn: psycopg.Connection, claimed: ClaimedFrame, detections: Sequence[Detection],
             model: ModelInfo) -> bool:
    """Write one frame's detections and mark it done, in one transaction (see complete_batch)."""
    return complete_batch(conn, [(claimed, detections)], model)[0]


def complete_batch(conn: psycopg.Connection,
                   results: Sequence[tuple[ClaimedFrame, Sequence[Detection]]],
                   model: ModelInfo) -> list[bool]:
    """Write the detections of a batch of frames and mark them done, in one transaction.

    Returns per frame whether it was written. A frame whose claim is no longer this
    worker's (judged stale and handed to another worker, whose result counts instead) gets
    False and nothing is written for it.
    """
    if not results:
        return []
    keys = [(c.frame.sha256, c.frame.ts, c.claimed_by, c.attempts) for c, _ in results]
    try:
        with conn.cursor() as cur:
            rows = cur.execute(
                "UPDATE frames AS f SET status = 'done', processed_at = now(), last_error = NULL "
                "FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::int[]) "
                "  AS c(sha256, ts, claimed_by, attempts) "
                "WHERE f.sha256 = c.sha256 AND f.ts = c.ts AND f.status = 'processing' "
                "AND f.claimed_by = c.claimed_by AND f.attempts = c.attempts "
                "RETURNING f.sha256, f.ts",
                [list(col) for col in zip(*keys, strict=True)]).fetchall()
            won = set(rows)
            with cur.copy(f"COPY detections ({', '.join(DETECTION_COLUMNS)}) FROM STDIN") as copy:
                for c, detections in results:
                    f = c.frame
                    if (f.sha256, f.ts) not in won:
                        continue
                    for i, d in enumerate(detections):
                        copy.write_row((
                            f.sha256, f.ts, i, f.source_kind, f.source_id, d.class_id,
                            d.class_name, d.confidence, d.x1, d.y1, d.x2, d.y2, d.lat, d.lon,
                            d.subject_id, d.zone_kind, f.fit_as_evidence, model.name,
                            model.version, model.weights_sha256))
        conn.commit()
    except psycopg.Error as exc:
        conn.rollback()
        raise StorageError(f"cannot store detections of {len(results)} frames: {exc}") from exc
    return [(c.frame.sha256, c.frame.ts) in won for c, _ in results]


def fail(conn: psycopg.Connection, claimed: ClaimedFrame, error: str, max_attempts: int) -> str | None:
    """Record a failed try: back to pending while attempts remain, else `failed`.

    Returns the new status, or None when the claim was no longer this worker's.
    """
    f = claimed.frame
    row = conn.execute(
        "UPDATE frames SET status = CASE WHEN attempts >= %s THEN 'failed' ELSE 'pending' END, "
        "last_error = %s, claimed_by = NULL, claimed_at = NULL, "
        "processed_at = CASE WHEN attempts >= %s THEN now() END "
        "WHERE sha256 = %s AND ts = %s AND status = 'processing' AND claimed_by = %s "
        "AND attempts = %s RETURNING status",
        (max_attempts, error[:2000], max_attempts, f.sha256, f.ts, claimed.claimed_by,
         claimed.attempts)).fetchone()
    conn.commit()
    return row[0] if row else None


def recover_stale(conn: psycopg.Connection, stale_after_s: float, max_attempts: int) -> int:
    """Hand back frames whose claim is older than `stale_after_s` (their worker died).

    A frame that has used all its attempts this way is marked failed, so a frame that
    kills every worker that touches it cannot stall the queue forever.
    """
    n = conn.execute(
        "UPDATE frames SET "
        " status = CASE WHEN attempts >= %(max)s THEN 'failed' ELSE 'pending' END,"
        " last_error = 'claim by ' || coalesce(claimed_by, '?') || ' went stale',"
        " claimed_by = NULL, claimed_at = NULL "
        "WHERE status = 'processing' AND claimed_at < now() - make_interval(secs => %(s)s)",
        {"max": max_attempts, "s": stale_after_s}).rowcount
    conn.commit()
    return n


def status_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Frames per status (pending, processing, done, failed)."""
    counts = dict.fromkeys(("pending", "processing", "done", "failed"), 0)
    counts.update(dict(conn.execute("SELECT status, count(*) FROM frames GROUP BY status")))
    return counts


@dataclass(frozen=True, slots=True)
class QueueState:
    """The frames queue at one moment: counts by status, the oldest claim still processing
    and the oldest frame still pending (seconds; 0 when there is none)."""

    counts: dict[str, int]
    oldest_claim_s: float
    oldest_pending_s: float


def queue_state(conn: psycopg.Connection) -> QueueState:
    """Depth and ages of the frames queue (for monitoring)."""
    # each minimum from its partial index (frames_processing, frames_pending)
    claim, pending = conn.execute(
        "SELECT coalesce(extract(epoch FROM now() - (SELECT min(claimed_at) FROM frames"
        " WHERE status = 'processing')), 0),"
        " coalesce(extract(epoch FROM now() - (SELECT min(received_at) FROM frames"
        " WHERE status = 'pending')), 0)").fetchone()
    return QueueState(status_counts(conn), float(claim), float(pending))


def get_frame(conn: psycopg.Connection, sha256: str) -> Frame | None:
    """The first frame row with this image hash."""
    row = conn.execute(f"SELECT {FRAME_SELECT} FROM frames AS f WHERE sha256 = %s "
                       "ORDER BY ts LIMIT 1", (sha256,)).fetchone()
    return frame_from_row(row) if row else None


def frame_states(conn: psycopg.Connection) -> list[tuple[str, str, int, str | None]]:
    """(sha256, status, attempts, last_error) of every frame, for operators and tests."""
    return conn.execute(
        "SELECT sha256, status, attempts, last_error FROM frames ORDER BY received_at").fetchall()


def detections(conn: psycopg.Connection, *, frame_sha256: str | None = None,
               source_id: str | None = None) -> list[StoredDetection]:
    """Detections, optionally of one frame or one source, in frame then index order."""
    where, params = [], []
    if frame_sha256:
        where.append("frame_sha256 = %s")
        params.append(frame_sha256)
    if source_id:
        where.append("source_id = %s")
        params.append(source_id)
    rows = conn.execute(
        "SELECT frame_sha256, frame_ts, det_index, source_kind, source_id, class_id, class_name,"
        " confidence, x1, y1, x2, y2, lat, lon, subject_id, zone_kind, fit_as_evidence,"
        " model_name, model_version, weights_sha256 FROM detections"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY frame_ts, frame_sha256, det_index", params).fetchall()
    return [_detection_from_row(r) for r in rows]


def _detection_from_row(r: Sequence) -> StoredDetection:
    """A StoredDetection from a row of DETECTION_COLUMNS."""
    return StoredDetection(r[0], r[1], r[2], r[3], r[4], Detection(*r[5:16]), r[16],
                           ModelInfo(*r[17:20]))


def _time_bound(frames: dict[str, datetime | None], column: str) -> tuple[str, list]:
    """A condition bounding event time around the given frames' times. Frames and
    detections are partitioned (and, after a week, compressed) by time, so a lookup by hash
    alone opens every chunk; bounded, it opens the one or two that hold the frames. No
    time known: no bound."""
    times = [t for t in frames.values() if t is not None]
    if not times:
        return "", []
    return (f" AND {column} BETWEEN %s AND %s",
            [min(times) - timedelta(seconds=1), max(times) + timedelta(seconds=1)])


def frames_by_hash(conn: psycopg.Connection, frames: dict[str, datetime | None]) -> dict[str, Frame]:
    """The frame rows of the given hashes (sha -> event time, when known; the first row
    of a hash seen at several times)."""
    if not frames:
        return {}
    bound, params = _time_bound(frames, "f.ts")
    rows = conn.execute(f"SELECT DISTINCT ON (f.sha256) {FRAME_SELECT} FROM frames AS f "
                        "WHERE f.sha256 = ANY(%s)" + bound + " ORDER BY f.sha256, f.ts",
                        [list(frames), *params]).fetchall()
    return {r[0]: frame_from_row(r) for r in rows}


def detections_of_frames(conn: psycopg.Connection, frames: dict[str, datetime | None]
                         ) -> dict[str, list[StoredDetection]]:
    """Detections of the given frames (sha -> event time, when known), per frame in index
    order."""
    out: dict[str, list[StoredDetection]] = {sha: [] for sha in frames}
    if not frames:
        return out
    bound, params = _time_bound(frames, "frame_ts")
    for r in conn.execute(
            f"SELECT {', '.join(DETECTION_COLUMNS)} FROM detections WHERE frame_sha256 = ANY(%s)"
            + bound + " ORDER BY frame_sha256, frame_ts, det_index", [list(frames), *params]):
        out[r[0]].append(_detection_from_row(r))
    return out
