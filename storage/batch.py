"""Batch runs over recorded footage: runs, sources, chunks and sampled frames.

A source (one recorded file, by the sha256 of its bytes) is registered once; its sampled
frame indices are split into chunks that workers claim with `FOR UPDATE SKIP LOCKED`, so
any number of processes on any number of machines split a night's files. A sampled frame
is written together with its frames-queue row in one transaction, and the chunk is marked
done (fenced on its claim) only after all its frames are in: a worker killed mid-chunk
leaves its frames and a claim that `hand_back` returns, and the next worker samples only
the indices not yet recorded. See storage/migrations/0007_batch.sql.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from storage import frames as frames_repo
from storage.frames import Frame


@dataclass(frozen=True, slots=True)
class Source:
    """A recorded file as registered."""

    sha256: str
    path: str
    kind: str  # drone_video | camera_video | photo
    device_id: str
    bytes: int
    sidecar_sha256: str | None
    media_start: datetime | None
    duration_s: float
    frames_total: int
    fps: float | None
    sample_fps: float | None
    samples: int
    problems: list[str]
    status: str = "pending"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A claimed share of one source's sampled frames."""

    source: Source
    chunk_no: int
    sample_indices: list[int]
    claimed_by: str
    attempts: int


@dataclass(frozen=True, slots=True)
class SampledFrame:
    """Where a queued frame came from in its source."""

    frame: Frame
    frame_index: int
    media_time_s: float


_SOURCE_COLS = ("sha256", "path", "kind", "device_id", "bytes", "sidecar_sha256", "media_start", "duration_s",
                "frames_total", "fps", "sample_fps", "samples", "problems", "status")


def _source(row: Sequence) -> Source:
    return Source(*row)


def create_run(conn: psycopg.Connection, started_by: str, options: dict[str, Any]) -> int:
    """A new run row (status running); committed."""
    run_id = conn.execute("INSERT INTO batch_runs (started_by, options) VALUES (%s, %s) "
                          "RETURNING run_id", (started_by, Jsonb(options))).fetchone()[0]
    conn.commit()
    return run_id


def register_source(conn: psycopg.Connection, run_id: int, source: Source,
                    chunks: Sequence[Sequence[int]]) -> bool:
    """Register a source with its chunks, once; link it to the run either way. Returns
    whether it was new (a file seen before adds nothing but the link). Committed."""
    cols = [c for c in _SOURCE_COLS if c != "status"]
    values = [getattr(source, c) for c in cols]
    values[cols.index("problems")] = Jsonb(list(source.problems))
    new = conn.execute(
        f"INSERT INTO batch_sources (first_run_id, {', '.join(cols)}, status) "
        f"VALUES (%s, {', '.join(['%s'] * len(cols))}, %s) "
        "ON CONFLICT (sha256) DO NOTHING RETURNING sha256",
        [run_id, *values, "pending" if chunks else ("failed" if source.problems else "done")],
    ).fetchone() is not None
    if new and chunks:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO batch_chunks (source_sha256, chunk_no, sample_indices) "
                            "VALUES (%s, %s, %s)",
                            [(source.sha256, i, list(c)) for i, c in enumerate(chunks)])
    conn.execute("INSERT INTO batch_run_sources (run_id, source_sha256) VALUES (%s, %s) "
                 "ON CONFLICT DO NOTHING", (run_id, source.sha256))
    conn.commit()
    return new


def get_source(conn: psycopg.Connection, sha256: str) -> Source | None:
    row = conn.execute(f"SELECT {', '.join(_SOURCE_COLS)} FROM batch_sources WHERE sha256 = %s",
                       (sha256,)).fetchone()
    return _source(row) if row else None


def claims(conn: psycopg.Connection) -> list[str]:
    """Owners of chunks being processed now (for liveness checks)."""
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT claimed_by FROM batch_chunks WHERE status = 'processing'")]


def hand_back(conn: psycopg.Connection, *, owners: Sequence[str] = (),
              stale_after_s: float | None = None, max_attempts: int = 3) -> int:
    """Return to pending the chunks of `owners` (known dead) and of claims older than
    `stale_after_s`; a chunk that has used its attempts is failed instead. Committed."""
    n = conn.execute(
        "UPDATE batch_chunks SET claimed_by = NULL, claimed_at = NULL,"
        " status = CASE WHEN attempts >= %(max)s THEN 'failed' ELSE 'pending' END,"
        " error = CASE WHEN attempts >= %(max)s THEN 'claim lost ' || attempts || ' times' END "
        "WHERE status = 'processing' AND (claimed_by = ANY(%(owners)s)"
        " OR (%(stale)s::float8 IS NOT NULL"
        "     AND claimed_at < now() - make_interval(secs => %(stale)s::float8)))",
        {"max": max_attempts, "owners": list(owners), "stale": stale_after_s}).rowcount
    conn.commit()
    return n


def claim_chunk(conn: psycopg.Connection, worker: str, run_id: int | None = None) -> Chunk | None:
    """Claim one pending chunk (of the run's sources, or of any source), oldest source
    first; committed. None when nothing is pending."""
    row = conn.execute(
        """
        UPDATE batch_chunks AS c SET status = 'processing', claimed_by = %(w)s,
               claimed_at = now(), attempts = c.attempts + 1
          FROM (SELECT k.source_sha256, k.chunk_no FROM batch_chunks k
                  JOIN batch_sources s ON s.sha256 = k.source_sha256
                 WHERE k.status = 'pending'
                   AND (%(run)s::bigint IS NULL OR EXISTS (
                        SELECT 1 FROM batch_run_sources r
                         WHERE r.run_id = %(run)s AND r.source_sha256 = k.source_sha256))
                 ORDER BY s.registered_at, k.source_sha256, k.chunk_no
                 LIMIT 1 FOR UPDATE OF k SKIP LOCKED) AS todo
         WHERE c.source_sha256 = todo.source_sha256 AND c.chunk_no = todo.chunk_no
        RETURNING c.source_sha256, c.chunk_no, c.sample_indices, c.attempts
        """, {"w": worker, "run": run_id}).fetchone()
    conn.commit()
    if row is None:
        return None
    return Chunk(get_source(conn, row[0]), row[1], list(row[2]), worker, row[3])


def recorded_indices(conn: psycopg.Connection, source_sha256: str) -> set[int]:
    """Frame indices of a source already sampled and queued."""
    return {r[0] for r in conn.execute(
        "SELECT frame_index FROM batch_frames WHERE source_sha256 = %s", (source_sha256,))}


def record_frames(conn: psycopg.Connection, chunk: Chunk, sampled: Sequence[SampledFrame]) -> int:
    """Queue sampled frames and record where each came from, in one transaction, and beat
    the chunk's heartbeat. Returns how many frames were new to the queue. Committed."""
    try:
        new = frames_repo.insert_frames(conn, [s.frame for s in sampled])
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO batch_frames (source_sha256, frame_index, media_time_s, frame_sha256,"
                " frame_ts, chunk_no) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(chunk.source.sha256, s.frame_index, s.media_time_s, s.frame.sha256, s.frame.ts,
                  chunk.chunk_no) for s in sampled])
        conn.execute("UPDATE batch_chunks SET claimed_at = now() WHERE source_sha256 = %s AND "
                     "chunk_no = %s AND claimed_by = %s",
                     (chunk.source.sha256, chunk.chunk_no, chunk.claimed_by))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return sum(new)


def finish_chunk(conn: psycopg.Connection, chunk: Chunk, *, sampled: int, undecodable: int,
                 decode_s: float, error: str | None) -> bool:
    """Mark a chunk done (fenced on the claim); False when the claim was handed on.
    The source is closed (done, or partial with its problems) when its last chunk ends."""
    ok = conn.execute(
        "UPDATE batch_chunks SET status = 'done', finished_at = now(), sampled = %s,"
        " undecodable = %s, decode_s = %s, error = %s, claimed_at = now() "
        "WHERE source_sha256 = %s AND chunk_no = %s AND claimed_by = %s AND attempts = %s"
        " AND status = 'processing' RETURNING 1",
        (sampled, undecodable, decode_s, error, chunk.source.sha256, chunk.chunk_no,
         chunk.claimed_by, chunk.attempts)).fetchone() is not None
    _close_source(conn, chunk.source.sha256)
    conn.commit()
    return ok


def fail_chunk(conn: psycopg.Connection, chunk: Chunk, error: str) -> None:
    """A chunk that cannot be processed at all (the file is gone or unreadable)."""
    conn.execute("UPDATE batch_chunks SET status = 'failed', error = %s, finished_at = now() "
                 "WHERE source_sha256 = %s AND chunk_no = %s AND claimed_by = %s",
                 (error[:2000], chunk.source.sha256, chunk.chunk_no, chunk.claimed_by))
    _close_source(conn, chunk.source.sha256)
    conn.commit()


def _close_source(conn: psycopg.Connection, sha256: str) -> None:
    conn.execute(
        """
        UPDATE batch_sources s SET finished_at = now(),
               status = CASE WHEN agg.failed = agg.n THEN 'failed'
                             WHEN agg.failed > 0 OR agg.undecodable > 0
                                  OR jsonb_array_length(s.problems) > 0 THEN 'partial'
                             ELSE 'done' END
          FROM (SELECT count(*) AS n, count(*) FILTER (WHERE status = 'failed') AS failed,
                       count(*) FILTER (WHERE status IN ('done', 'failed')) AS ended,
                       coalesce(sum(undecodable), 0) AS undecodable
                  FROM batch_chunks WHERE source_sha256 = %(s)s) AS agg
         WHERE s.sha256 = %(s)s AND agg.ended = agg.n AND s.status = 'pending'
        """, {"s": sha256})


def progress(conn: psycopg.Connection, run_id: int) -> dict[str, int]:
    """How far a run is: samples planned, sampled, and detected (done or failed) so far;
    chunks per status. What the progress bar and the review app show."""
    row = conn.execute(
        """
        SELECT coalesce(sum(s.samples), 0),
               (SELECT count(*) FROM batch_frames b JOIN batch_run_sources r
                   ON r.source_sha256 = b.source_sha256 WHERE r.run_id = %(r)s),
               (SELECT count(*) FROM batch_frames b JOIN batch_run_sources r
                   ON r.source_sha256 = b.source_sha256
                  JOIN frames f ON f.sha256 = b.frame_sha256 AND f.ts = b.frame_ts
                 WHERE r.run_id = %(r)s AND f.status IN ('done', 'failed')),
               (SELECT count(*) FROM batch_chunks c JOIN batch_run_sources r
                   ON r.source_sha256 = c.source_sha256
                 WHERE r.run_id = %(r)s AND c.status IN ('pending', 'processing')),
               count(*),
               coalesce(sum(s.frames_total), 0)
          FROM batch_sources s JOIN batch_run_sources r ON r.source_sha256 = s.sha256
         WHERE r.run_id = %(r)s
        """, {"r": run_id}).fetchone()
    return {"samples": int(row[0]), "sampled": row[1], "detected": row[2],
            "chunks_open": row[3], "sources": row[4], "footage_frames": int(row[5])}


def beat(conn: psycopg.Connection, run_id: int) -> None:
    conn.execute("UPDATE batch_runs SET updated_at = now() WHERE run_id = %s", (run_id,))
    conn.commit()


def finish_run(conn: psycopg.Connection, run_id: int, status: str) -> None:
    conn.execute("UPDATE batch_runs SET status = %s, finished_at = now(), updated_at = now() "
                 "WHERE run_id = %s", (status, run_id))
    conn.commit()


def run_event_range(conn: psycopg.Connection, run_id: int) -> tuple[datetime, datetime] | None:
    """Earliest and latest event time of the run's sampled frames."""
    row = conn.execute(
        "SELECT min(b.frame_ts), max(b.frame_ts) FROM batch_frames b JOIN batch_run_sources r"
        " ON r.source_sha256 = b.source_sha256 WHERE r.run_id = %s", (run_id,)).fetchone()
    return (row[0], row[1]) if row and row[0] else None


def sampled_frames(conn: psycopg.Connection, source_sha256: str) -> list[tuple[int, float, str, datetime]]:
    """(frame index, media time, frame sha256, event time) of a source's sampled frames."""
    return conn.execute(
        "SELECT frame_index, media_time_s, frame_sha256, frame_ts FROM batch_frames"
        " WHERE source_sha256 = %s ORDER BY frame_index", (source_sha256,)).fetchall()


def chunk_states(conn: psycopg.Connection, source_sha256: str) -> list[tuple[int, str, int, str | None]]:
    """(chunk no, status, attempts, error) of a source's chunks."""
    return conn.execute(
        "SELECT chunk_no, status, attempts, error FROM batch_chunks WHERE source_sha256 = %s"
        " ORDER BY chunk_no", (source_sha256,)).fetchall()


# -- the morning report ------------------------------------------------------------------


def runs_between(conn: psycopg.Connection, since: datetime, until: datetime) -> list[dict]:
    """Runs started in [since, until), oldest first."""
    cur = conn.execute(
        "SELECT run_id, started_at, finished_at, status, started_by, options FROM batch_runs"
        " WHERE started_at >= %s AND started_at < %s ORDER BY run_id", (since, until))
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def sources_of_runs(conn: psycopg.Connection, run_ids: Sequence[int]) -> list[tuple[Source, int]]:
    """The runs' sources (each once) and how many of its frames were sampled."""
    rows = conn.execute(
        f"SELECT {', '.join('s.' + c for c in _SOURCE_COLS)},"
        " (SELECT count(*) FROM batch_frames b WHERE b.source_sha256 = s.sha256)"
        " FROM batch_sources s WHERE s.sha256 IN"
        " (SELECT source_sha256 FROM batch_run_sources WHERE run_id = ANY(%s))"
        " ORDER BY s.registered_at, s.path", (list(run_ids),)).fetchall()
    return [(_source(r[:-1]), r[-1]) for r in rows]


def night_frames(conn: psycopg.Connection, run_ids: Sequence[int]
                 ) -> list[tuple[Frame, str, str | None]]:
    """Every sampled frame of the runs' sources: (frame, queue status, last error)."""
    rows = conn.execute(
        f"SELECT {frames_repo.FRAME_SELECT}, f.status, f.last_error FROM frames f"
        " JOIN batch_frames b ON b.frame_sha256 = f.sha256 AND b.frame_ts = f.ts"
        " WHERE b.source_sha256 IN"
        " (SELECT source_sha256 FROM batch_run_sources WHERE run_id = ANY(%s))"
        " ORDER BY f.ts", (list(run_ids),)).fetchall()
    return [(frames_repo.frame_from_row(r[:-2]), r[-2], r[-1]) for r in rows]


def failed_chunks(conn: psycopg.Connection, run_ids: Sequence[int]) -> list[tuple]:
    """(file, chunk no, status, error) of chunks that failed or met undecodable frames."""
    return conn.execute(
        "SELECT s.path, c.chunk_no, c.status, c.error FROM batch_chunks c"
        " JOIN batch_sources s ON s.sha256 = c.source_sha256"
        " WHERE c.source_sha256 IN"
        " (SELECT source_sha256 FROM batch_run_sources WHERE run_id = ANY(%s))"
        " AND (c.status = 'failed' OR c.error IS NOT NULL) ORDER BY s.path, c.chunk_no",
        (list(run_ids),)).fetchall()


@dataclass(frozen=True, slots=True)
class FoundCase:
    """A case that rests on frames of a night's footage, with its best frame."""

    case_id: int
    rule_id: str
    title: str
    subject_id: str
    subject_name: str
    area_id: str | None
    status: str
    evidence_state: str
    episode_start: datetime
    created_at: datetime
    best_sha256: str | None
    best_box: tuple[float, float, float, float] | None
    best_class: str | None
    best_confidence: float | None


def cases_from_runs(conn: psycopg.Connection, run_ids: Sequence[int]) -> list[FoundCase]:
    """Cases whose evidence includes a frame sampled by the runs, each with its best frame:
    the most confident detection at the case's subject (else any), fit frames first."""
    rows = conn.execute(
        """
        WITH night AS (
            SELECT DISTINCT e.case_id FROM case_evidence e
              JOIN batch_frames b ON e.kind = 'frame' AND e.sha256 = b.frame_sha256
             WHERE b.source_sha256 IN
                   (SELECT source_sha256 FROM batch_run_sources WHERE run_id = ANY(%s))),
        best AS (
            SELECT DISTINCT ON (e.case_id) e.case_id, d.frame_sha256, d.x1, d.y1, d.x2, d.y2,
                   d.class_name, d.confidence
              FROM case_evidence e JOIN cases c ON c.case_id = e.case_id
              JOIN detections d ON e.kind = 'frame' AND d.frame_sha256 = e.sha256
             WHERE e.case_id IN (SELECT case_id FROM night)
             ORDER BY e.case_id, (d.subject_id = c.subject_id) DESC NULLS LAST,
                      d.fit_as_evidence DESC NULLS LAST, d.confidence DESC)
        SELECT c.case_id, c.rule_id, c.title, c.subject_id, s.name, s.area_id, c.status,
               c.evidence_state, c.episode_start, c.created_at, b.frame_sha256,
               b.x1, b.y1, b.x2, b.y2, b.class_name, b.confidence
          FROM cases c JOIN subjects s ON s.subject_id = c.subject_id
          LEFT JOIN best b ON b.case_id = c.case_id
         WHERE c.case_id IN (SELECT case_id FROM night) AND c.fused_into IS NULL
         ORDER BY c.rule_id, s.area_id, c.subject_id, c.episode_start
        """, (list(run_ids),)).fetchall()
    return [FoundCase(*r[:11], tuple(r[11:15]) if r[10] else None, r[15], r[16]) for r in rows]


def recent_runs(conn: psycopg.Connection, limit: int = 20) -> list[dict]:
    """The latest runs, newest first, with their progress (what the review app shows)."""
    cur = conn.execute(
        "SELECT run_id, started_at, finished_at, updated_at, status, started_by FROM batch_runs"
        " ORDER BY run_id DESC LIMIT %s", (limit,))
    cols = [c.name for c in cur.description]
    runs = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    for r in runs:
        r["progress"] = progress(conn, r["run_id"])
    return runs
