"""The reads the rule engine makes: windowed aggregates, state runs, silences, detections.

Each query returns only what can matter to a rule (exceeding windows, the readings of a
state run, gaps longer than asked, frames of the asked sources), so the engine moves
little data even over millions of readings. Windows are `date_bin` buckets with the
same origin as the readings_* views; when those views are TimescaleDB continuous
aggregates they are read directly, otherwise the same buckets are computed from
`readings` with the time range applied first (a plain view cannot use it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from domain.records import Detection
from domain.sensors import READING_FIELDS as SENSOR_READING_FIELDS
from storage import timescale, windows

# Reading columns rules may read, with their SQL types (identifiers are checked against it).
READING_FIELDS = {name: "double precision" if f.type == "number" else "boolean"
                  for name, f in SENSOR_READING_FIELDS.items()}
AGGREGATES = tuple(windows.AGGREGATE_SQL)
OPERATORS = {">": ">", ">=": ">=", "<": "<", "<=": "<="}
BUCKET_ORIGIN = windows.BUCKET_ORIGIN


def _field(name: str) -> sql.Identifier:
    if name not in READING_FIELDS:
        raise ValueError(f"unknown reading field {name!r}; expected one of {sorted(READING_FIELDS)}")
    return sql.Identifier(name)


@dataclass(frozen=True, slots=True)
class WindowRow:
    """One window whose aggregate broke the limit."""

    device_id: str
    subject_id: str
    bucket: datetime
    value: float
    samples: int
    limit: float


def exceeding_windows(conn: psycopg.Connection, *, device_kind: str, metric: str,
                      aggregate: str, width: timedelta, op: str, value: float,
                      offset_prop: str | None, min_samples: int, start: datetime,
                      end: datetime, closed_by: datetime | None = None) -> list[WindowRow]:
    """Windows of `width` starting in [start, end) whose aggregate of `metric` is `op` the
    limit (`value`, plus the subject's `offset_prop` when given), with at least
    `min_samples` readings, ordered by device and time. With `closed_by`, only windows that
    end by then (a window still filling is not judged yet)."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}; expected one of {AGGREGATES}")
    limit = sql.SQL("{v}::double precision + coalesce((s.props ->> {p})::double precision, 0)").format(
        v=sql.Literal(value), p=sql.Literal(offset_prop)) if offset_prop else \
        sql.SQL("{v}::double precision").format(v=sql.Literal(value))
    view = windows.view_column(width, metric, aggregate)
    if view and timescale.installed(conn):
        source = sql.SQL(
            "SELECT device_id, bucket, {col} AS value, n FROM {view} "
            "WHERE bucket >= %(start)s AND bucket < %(end)s").format(
                col=sql.Identifier(view[1]), view=sql.Identifier(view[0]))
    else:
        source = sql.SQL(
            "SELECT device_id, date_bin(%(width)s, ts, %(origin)s::timestamptz) AS bucket, "
            "({agg})::double precision AS value, count({metric}) AS n FROM readings "
            "WHERE ts >= %(start)s AND ts < %(end)s AND {metric} IS NOT NULL "
            "AND device_id IN (SELECT device_id FROM devices WHERE kind = %(kind)s) "
            "GROUP BY 1, 2").format(
                agg=windows.aggregate(aggregate, metric), metric=_field(metric))
    query = sql.SQL(
        "SELECT w.device_id, d.subject_id, w.bucket, w.value, w.n, {limit} AS lim "
        "FROM ({source}) w JOIN devices d ON d.device_id = w.device_id AND d.kind = %(kind)s "
        "JOIN subjects s ON s.subject_id = d.subject_id "
        "WHERE w.n >= %(min_n)s AND w.value {op} {limit} "
        "AND (%(closed)s::timestamptz IS NULL OR w.bucket + %(width)s <= %(closed)s) "
        "ORDER BY 1, 3").format(
            limit=limit, source=source, op=sql.SQL(OPERATORS[op]))
    rows = conn.execute(query, {"width": width, "origin": BUCKET_ORIGIN, "start": start,
                                "end": end, "kind": device_kind, "min_n": min_samples,
                                "closed": closed_by}).fetchall()
    return [WindowRow(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class StateRun:
    """Consecutive readings of one device all in the asked state."""

    device_id: str
    subject_id: str
    start: datetime  # first reading in the state
    end: datetime  # last reading in the state
    readings: int


def state_runs(conn: psycopg.Connection, *, device_kind: str, state: dict[str, bool],
               max_gap: timedelta, start: datetime, end: datetime) -> list[StateRun]:
    """Runs of readings in [start, end) whose boolean fields all equal `state`; a reading
    not in the state, or a gap longer than `max_gap`, ends a run."""
    hit = sql.SQL(" AND ").join(
        sql.SQL("{f} IS NOT DISTINCT FROM {v}").format(f=_field(f), v=sql.Literal(v))
        for f, v in sorted(state.items()))
    query = sql.SQL("""
        WITH candidates AS (
            -- only devices ever in the state: one cheap scan saves ordering the rest
            SELECT DISTINCT x.device_id FROM readings x
             WHERE x.ts >= %(start)s AND x.ts < %(end)s AND ({xhit})
               AND x.device_id IN (SELECT device_id FROM devices WHERE kind = %(kind)s)
        ), r AS (
            SELECT c.device_id, y.ts, y.hit, y.prev_hit, y.since_prev FROM candidates c, LATERAL (
                SELECT r.ts, ({hit}) AS hit, lag(({hit})) OVER w AS prev_hit,
                       r.ts - lag(r.ts) OVER w AS since_prev
                  FROM readings r
                 WHERE r.device_id = c.device_id AND r.ts >= %(start)s AND r.ts < %(end)s
                WINDOW w AS (ORDER BY r.ts)) y
        ), h AS (
            SELECT device_id, ts,
                   CASE WHEN prev_hit AND since_prev <= %(gap)s THEN 0 ELSE 1 END AS brk
              FROM r WHERE hit
        ), g AS (
            SELECT device_id, ts, sum(brk) OVER (PARTITION BY device_id ORDER BY ts) AS grp FROM h
        )
        SELECT g.device_id, d.subject_id, min(ts), max(ts), count(*)
          FROM g JOIN devices d USING (device_id)
         GROUP BY g.device_id, d.subject_id, grp ORDER BY 1, 3""").format(
        hit=hit, xhit=sql.SQL(" AND ").join(
            sql.SQL("x.{f} IS NOT DISTINCT FROM {v}").format(f=_field(f), v=sql.Literal(v))
            for f, v in sorted(state.items())))
    rows = conn.execute(query, {"start": start, "end": end, "kind": device_kind,
                                "gap": max_gap}).fetchall()
    return [StateRun(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class Gap:
    """A time with no reading from a device: from its last reading to its next (or `end`)."""

    device_id: str
    subject_id: str
    last_seen: datetime
    next_seen: datetime | None  # None: nothing since, up to the end of the range


def reading_gaps(conn: psycopg.Connection, *, device_kind: str, longer_than: timedelta,
                 start: datetime, end: datetime) -> list[Gap]:
    """Gaps longer than `longer_than` between readings of each device of a kind in
    [start, end), and each device's trailing gap from its last reading to `end`. Devices
    with no reading at all in the range have no gap here (they never reported)."""
    # A gap longer than L holds a whole bucket of width L/2 with no reading: devices with no
    # such empty bucket (nearly all) are ruled out by one aggregate before any ordering.
    rows = conn.execute("""
        WITH b AS (
            SELECT device_id, date_bin(%(half)s, ts, %(origin)s::timestamptz) AS bucket
              FROM readings
             WHERE ts >= %(start)s AND ts < %(end)s
               AND device_id IN (SELECT device_id FROM devices WHERE kind = %(kind)s)
             GROUP BY 1, 2
        ), candidates AS (
            SELECT device_id FROM b GROUP BY device_id
            HAVING count(*) < floor(extract(epoch FROM max(bucket) - min(bucket))
                                    / extract(epoch FROM %(half)s)) + 1
                OR max(bucket) < %(end)s - %(gap)s
        ), r AS (
            -- per candidate through the (device_id, ts) key: ordered, and no second full scan
            SELECT c.device_id, x.ts, x.nxt FROM candidates c, LATERAL (
                SELECT ts, lead(ts) OVER (ORDER BY ts) AS nxt FROM readings
                 WHERE device_id = c.device_id AND ts >= %(start)s AND ts < %(end)s) x
        )
        SELECT r.device_id, d.subject_id, r.ts, r.nxt FROM r JOIN devices d USING (device_id)
         WHERE (r.nxt IS NULL AND %(end)s - r.ts > %(gap)s) OR r.nxt - r.ts > %(gap)s
         ORDER BY 1, 3""",
        {"start": start, "end": end, "kind": device_kind, "gap": longer_than,
         "half": longer_than / 2, "origin": BUCKET_ORIGIN}).fetchall()
    return [Gap(*r) for r in rows]


_DETECTION_COLUMNS = tuple(f.name for f in fields(Detection))


@dataclass(frozen=True, slots=True)
class FrameDetections:
    """A processed frame with its stored detections."""

    sha256: str
    ts: datetime
    source_kind: str
    source_id: str
    fit_as_evidence: bool | None
    detections: tuple[Detection, ...]


def frames_with_detections(conn: psycopg.Connection, *, source_kinds: Sequence[str],
                           classes: Sequence[str] | None, start: datetime,
                           end: datetime) -> list[FrameDetections]:
    """Processed frames of the given source kinds taken in [start, end), ordered by source
    and time, with their detections. `classes` None: every processed frame with all its
    detections (rules that need to see a class disappear); otherwise only frames with a
    detection of those classes, and only those detections."""
    params = {"kinds": list(source_kinds), "start": start, "end": end,
              "classes": list(classes or [])}
    if classes is None:
        query = """
            SELECT f.sha256, f.ts, f.source_kind, f.source_id, f.fit_as_evidence, {det}
              FROM frames f LEFT JOIN detections d
                ON d.frame_sha256 = f.sha256 AND d.frame_ts = f.ts
             WHERE f.ts >= %(start)s AND f.ts < %(end)s AND f.source_kind = ANY(%(kinds)s)
               AND f.status = 'done'
             ORDER BY f.source_id, f.ts, f.sha256, d.det_index"""
    else:
        query = """
            SELECT d.frame_sha256, d.frame_ts, d.source_kind, d.source_id, f.fit_as_evidence,
                   {det}
              FROM detections d JOIN frames f ON f.sha256 = d.frame_sha256 AND f.ts = d.frame_ts
             WHERE d.frame_ts >= %(start)s AND d.frame_ts < %(end)s
               AND d.source_kind = ANY(%(kinds)s) AND d.class_name = ANY(%(classes)s)
             ORDER BY d.source_id, d.frame_ts, d.frame_sha256, d.det_index"""
    query = query.format(det=", ".join(f"d.{c}" for c in _DETECTION_COLUMNS))
    frames: list[tuple] = []
    detections: list[list[Detection]] = []
    for sha, ts, kind, source, fit, *det in conn.execute(query, params):
        if not frames or frames[-1][:2] != (sha, ts):
            frames.append((sha, ts, kind, source, fit))
            detections.append([])
        if det[0] is not None:
            detections[-1].append(Detection(*det))
    return [FrameDetections(*f, tuple(d)) for f, d in zip(frames, detections, strict=True)]


def subject_frames(conn: psycopg.Connection, subject_id: str, start: datetime,
                   end: datetime, limit: int) -> list[tuple[str, datetime, str, bool | None, str, float]]:
    """Frames with a detection at `subject_id` in [start, end]: (sha256, ts, source_id,
    fit, class, best confidence), fit ones and the most confident first."""
    return conn.execute("""
        SELECT d.frame_sha256, d.frame_ts, d.source_id, bool_or(f.fit_as_evidence),
               (array_agg(d.class_name ORDER BY d.confidence DESC))[1], max(d.confidence)
          FROM detections d JOIN frames f ON f.sha256 = d.frame_sha256 AND f.ts = d.frame_ts
         WHERE d.subject_id = %s AND d.frame_ts >= %s AND d.frame_ts <= %s
         GROUP BY 1, 2, 3
         ORDER BY bool_or(f.fit_as_evidence) DESC NULLS LAST, max(d.confidence) DESC, 2, 1
         LIMIT %s""", (subject_id, start, end, limit)).fetchall()


def series(conn: psycopg.Connection, device_id: str, fields: Sequence[str], start: datetime,
           end: datetime) -> list[tuple]:
    """Readings of one device in [start, end]: (ts, *fields), in time order."""
    query = sql.SQL("SELECT ts, {cols} FROM readings WHERE device_id = %s AND ts >= %s "
                    "AND ts <= %s ORDER BY ts").format(
        cols=sql.SQL(", ").join(_field(f) for f in fields))
    return conn.execute(query, (device_id, start, end)).fetchall()


def try_advisory_lock(conn: psycopg.Connection, key: int) -> bool:
    """Take a session-level advisory lock if free (True) without waiting."""
    return conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]


def advisory_unlock(conn: psycopg.Connection, key: int) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def plain_window_scan(conn: psycopg.Connection, width: timedelta = timedelta(minutes=10)) -> int:
    """The benchmark baseline: one plain scan computing every device's windowed fume means
    (as a hand-written query would); returns the number of windows."""
    return conn.execute(
        "SELECT count(*) FROM (SELECT device_id, date_bin(%s, ts, %s::timestamptz), "
        "avg(fume_mg_m3) FROM readings GROUP BY 1, 2) w", (width, BUCKET_ORIGIN)).fetchone()[0]


def set_work_mem(conn: psycopg.Connection, value: str | None) -> None:
    """Memory for the engine's sorts and hash aggregates on this session (None: the
    server's default); a day of windows spills to disk under the 4 MB default."""
    conn.execute("SELECT set_config('work_mem', %s, false)", (value or "",)) if value else \
        conn.execute("RESET work_mem")


def data_span(conn: psycopg.Connection) -> tuple[datetime | None, datetime | None]:
    """Earliest and latest event time of readings and frames (None when there are none)."""
    return conn.execute("""
        SELECT least((SELECT min(ts) FROM readings), (SELECT min(ts) FROM frames)),
               greatest((SELECT max(ts) FROM readings), (SELECT max(ts) FROM frames))""").fetchone()
