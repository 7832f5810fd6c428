"""Drone sorties (migration 0008): the record of a planned, flown and ended flight.

Every status change is a row in `sortie_events` and an audit-log entry in the same
transaction, so a sortie never claims to have flown without the history that says how.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from storage import audit
from storage.errors import StorageError

ACTIVE = ("uploaded", "airborne", "returning")
FINAL = ("landed", "refused", "aborted", "failed")
STATUSES = ("requested", "planned", *ACTIVE, *FINAL)
# where each status may go next
NEXT = {
    "requested": ("planned", "refused", "failed"),
    "planned": ("uploaded", "refused", "failed", "aborted"),
    "uploaded": ("airborne", "failed", "aborted"),
    "airborne": ("returning", "landed", "failed", "aborted"),
    "returning": ("landed", "failed", "aborted"),
}


class SortieNotFound(StorageError):
    """No sortie with this id."""


class SortieStateError(StorageError):
    """A status change the sortie life cycle does not allow (or the drone is busy)."""


@dataclass(frozen=True, slots=True)
class Sortie:
    sortie_id: int
    device_id: str | None
    kind: str
    status: str
    reason: str
    plan: dict | None
    mission_id: str | None
    subject_ids: list[str]
    case_id: int | None
    rule_id: str | None
    approval: str
    approved_by: str | None
    requested_by: str
    abort_requested: str | None
    takeoff_at: datetime | None
    landed_at: datetime | None
    track_points: int
    last_point: list | None
    created_at: datetime
    updated_at: datetime
    events: list[tuple[datetime, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["events"] = [{"at": at, "status": s, "reason": r} for at, s, r in self.events]
        return d


_COLUMNS = ("sortie_id, device_id, kind, status, reason, plan, mission_id, subject_ids, case_id,"
            " rule_id, approval, approved_by, requested_by, abort_requested, takeoff_at, landed_at,"
            " jsonb_array_length(track), track -> -1, created_at, updated_at")


def _row(r: Sequence) -> Sortie:
    return Sortie(*r[:7], list(r[7]), *r[8:])


def create(conn: psycopg.Connection, *, kind: str, plan: dict | None, device_id: str | None,
           subject_ids: Sequence[str], requested_by: str, status: str = "planned",
           reason: str = "", mission_id: str | None = None, case_id: int | None = None,
           rule_id: str | None = None, approval: str = "auto") -> int | None:
    """Record a new sortie (commits); None when the case already has its sortie from this rule."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO sorties (device_id, kind, status, reason, plan, mission_id, subject_ids,"
            " case_id, rule_id, approval, requested_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s) ON CONFLICT (case_id, rule_id) WHERE case_id IS NOT NULL DO NOTHING"
            " RETURNING sortie_id",
            (device_id, kind, status, reason, None if plan is None else Jsonb(plan), mission_id,
             list(subject_ids), case_id, rule_id, approval, requested_by)).fetchone()
        if row is None:
            return None
        sortie_id = row[0]
        _event(conn, sortie_id, status, reason, requested_by, {
            "device_id": device_id, "kind": kind, "mission_id": mission_id, "case_id": case_id,
            "rule_id": rule_id, "approval": approval, "subject_ids": list(subject_ids)})
    return sortie_id


def request_for_case(conn: psycopg.Connection, case_id: int, rule_id: str, subject_id: str,
                     request: dict[str, Any], actor: str) -> int | None:
    """A rule's dispatch action: ask for a drone to inspect the case's subject (commits).

    Once per case and rule; the dispatcher (flights/operations.py) plans and flies it."""
    return create(conn, kind="inspection", plan=request, device_id=None, subject_ids=[subject_id],
                  requested_by=f"rule:{rule_id}", status="requested", case_id=case_id,
                  rule_id=rule_id, approval=request.get("approval", "operator"))


def _event(conn: psycopg.Connection, sortie_id: int, status: str, reason: str, actor: str,
           data: dict[str, Any]) -> None:
    conn.execute("INSERT INTO sortie_events (sortie_id, status, reason) VALUES (%s, %s, %s)",
                 (sortie_id, status, reason))
    audit.append(conn, actor, "sortie_status", "sortie", str(sortie_id),
                 {"status": status, "reason": reason, **data})


def set_status(conn: psycopg.Connection, sortie_id: int, status: str, reason: str, actor: str,
               **fields: Any) -> None:
    """Move a sortie on (commits). `fields`: plan, device_id, mission_id, takeoff_at, landed_at."""
    allowed = {"plan", "device_id", "mission_id", "takeoff_at", "landed_at", "kind", "subject_ids"}
    if set(fields) - allowed:
        raise ValueError(f"cannot set {sorted(set(fields) - allowed)} on a sortie")
    with conn.transaction():
        row = conn.execute("SELECT status FROM sorties WHERE sortie_id = %s FOR UPDATE",
                           (sortie_id,)).fetchone()
        if row is None:
            raise SortieNotFound(f"no sortie {sortie_id}")
        if status != row[0] and status not in NEXT.get(row[0], ()):
            raise SortieStateError(f"sortie {sortie_id} is {row[0]}; it cannot become {status}")
        sets = ["status = %s", "reason = %s", "updated_at = now()"]
        values: list[Any] = [status, reason]
        for k, v in fields.items():
            sets.append(f"{k} = %s")
            values.append(Jsonb(v) if k == "plan" else v)
        try:
            conn.execute(f"UPDATE sorties SET {', '.join(sets)} WHERE sortie_id = %s",
                         (*values, sortie_id))
        except psycopg.errors.UniqueViolation:
            raise SortieStateError(f"drone {fields.get('device_id') or ''} is already flying "
                                   "another sortie".replace("  ", " ")) from None
        _event(conn, sortie_id, status, reason, actor,
               {k: v for k, v in fields.items() if k != "plan"})


def append_track(conn: psycopg.Connection, sortie_id: int, points: Sequence[list]) -> None:
    """Add telemetry points [ts, lat, lon, alt_m, battery_pct, mode] to the flown track (commits)."""
    if points:
        with conn.transaction():
            conn.execute("UPDATE sorties SET track = track || %s, updated_at = now() "
                         "WHERE sortie_id = %s", (Jsonb(list(points)), sortie_id))


def request_abort(conn: psycopg.Connection, sortie_id: int, actor: str, reason: str) -> Sortie:
    """Ask the monitor of an active sortie to bring the drone home; a planned one ends here."""
    s = get(conn, sortie_id)
    if s.status in FINAL:
        raise SortieStateError(f"sortie {sortie_id} is already {s.status}")
    why = f"aborted by {actor}: {reason}"
    if s.status in ("requested", "planned"):
        set_status(conn, sortie_id, "aborted", why, actor)
    else:
        with conn.transaction():
            conn.execute("UPDATE sorties SET abort_requested = %s, updated_at = now() "
                         "WHERE sortie_id = %s", (why, sortie_id))
            audit.append(conn, actor, "sortie_abort_requested", "sortie", str(sortie_id),
                         {"reason": reason})
    return get(conn, sortie_id)


def abort_requested(conn: psycopg.Connection, sortie_id: int) -> str | None:
    row = conn.execute("SELECT abort_requested FROM sorties WHERE sortie_id = %s",
                       (sortie_id,)).fetchone()
    return row[0] if row else None


def approve(conn: psycopg.Connection, sortie_id: int, actor: str) -> Sortie:
    """An operator lets a planned sortie that waits for approval fly."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE sorties SET approved_by = %s, updated_at = now() WHERE sortie_id = %s"
            " AND status = 'planned' AND approval = 'operator' AND approved_by IS NULL"
            " RETURNING sortie_id", (actor, sortie_id)).fetchone()
        if row is None:
            s = get(conn, sortie_id)
            raise SortieStateError(f"sortie {sortie_id} does not wait for approval "
                                   f"(status {s.status}, approval {s.approval}, "
                                   f"approved by {s.approved_by or 'nobody'})")
        audit.append(conn, actor, "sortie_approved", "sortie", str(sortie_id), {})
    return get(conn, sortie_id)


def claim_ready(conn: psycopg.Connection, *, statuses: Sequence[str] = ("requested", "planned"),
                limit: int = 10) -> list[Sortie]:
    """Rule-requested sorties the dispatcher may act on: to plan, or planned and allowed to fly.

    The rows are locked (SKIP LOCKED) only for the caller's transaction; that one
    dispatcher acts at a time is the advisory lock held by flights.operations.Dispatcher."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM sorties WHERE status = ANY(%s) AND case_id IS NOT NULL"
        " AND (status = 'requested' OR approval = 'auto' OR approved_by IS NOT NULL)"
        " ORDER BY sortie_id LIMIT %s FOR UPDATE SKIP LOCKED", (list(statuses), limit)).fetchall()
    return [_row(r) for r in rows]


def get(conn: psycopg.Connection, sortie_id: int, *, events: bool = False) -> Sortie:
    row = conn.execute(f"SELECT {_COLUMNS} FROM sorties WHERE sortie_id = %s",
                       (sortie_id,)).fetchone()
    if row is None:
        raise SortieNotFound(f"no sortie {sortie_id}")
    s = _row(row)
    if events:
        ev = conn.execute("SELECT at, status, reason FROM sortie_events WHERE sortie_id = %s"
                          " ORDER BY id", (sortie_id,)).fetchall()
        s = replace(s, events=[tuple(e) for e in ev])
    return s


def track(conn: psycopg.Connection, sortie_id: int) -> list[list]:
    row = conn.execute("SELECT track FROM sorties WHERE sortie_id = %s", (sortie_id,)).fetchone()
    if row is None:
        raise SortieNotFound(f"no sortie {sortie_id}")
    return row[0]


def list_sorties(conn: psycopg.Connection, *, status: Sequence[str] | None = None,
                 since: datetime | None = None, device_id: str | None = None,
                 limit: int = 100) -> list[Sortie]:
    where, args = ["TRUE"], []
    if status:
        where.append("status = ANY(%s)")
        args.append(list(status))
    if since is not None:
        where.append("created_at >= %s")
        args.append(since)
    if device_id:
        where.append("device_id = %s")
        args.append(device_id)
    rows = conn.execute(f"SELECT {_COLUMNS} FROM sorties WHERE {' AND '.join(where)}"
                        " ORDER BY sortie_id DESC LIMIT %s", (*args, limit)).fetchall()
    return [_row(r) for r in rows]


def busy_drones(conn: psycopg.Connection) -> set[str]:
    """Drones with a sortie planned or in the air (not available for another)."""
    rows = conn.execute("SELECT DISTINCT device_id FROM sorties WHERE device_id IS NOT NULL"
                        " AND status IN ('planned', 'uploaded', 'airborne', 'returning')").fetchall()
    return {r[0] for r in rows}


@dataclass(frozen=True, slots=True)
class SortieFrame:
    sha256: str
    ts: datetime
    fit_as_evidence: bool | None
    lat: float | None
    lon: float | None
    alt_m: float | None
    heading_deg: float | None
    hfov_deg: float | None
    width: int
    height: int
    classes: list[str]


def frames_of(conn: psycopg.Connection, device_id: str, mission_id: str, since: datetime,
              until: datetime) -> list[SortieFrame]:
    """The frames a drone took on one mission between takeoff and landing, with what was seen."""
    rows = conn.execute(
        "SELECT f.sha256, f.ts, f.fit_as_evidence, f.lat, f.lon, f.alt_m, f.heading_deg,"
        " f.hfov_deg, f.width, f.height,"
        " coalesce(array_agg(DISTINCT d.class_name) FILTER (WHERE d.class_name IS NOT NULL), '{}')"
        " FROM frames f LEFT JOIN detections d ON d.frame_sha256 = f.sha256 AND d.frame_ts = f.ts"
        " WHERE f.source_id = %s AND f.mission_id = %s AND f.ts BETWEEN %s AND %s"
        " GROUP BY f.sha256, f.ts ORDER BY f.ts",
        (device_id, mission_id, since, until)).fetchall()
    return [SortieFrame(*r[:10], list(r[10])) for r in rows]


def drone_frames(conn: psycopg.Connection, since: datetime, until: datetime) -> list[tuple]:
    """(device, mission, sha256, ts, fit, lat, lon, alt, heading, hfov, width, height) of drone frames."""
    return conn.execute(
        "SELECT source_id, mission_id, sha256, ts, fit_as_evidence, lat, lon, alt_m, heading_deg,"
        " hfov_deg, width, height FROM frames WHERE source_kind = 'drone' AND ts BETWEEN %s AND %s"
        " ORDER BY ts", (since, until)).fetchall()
