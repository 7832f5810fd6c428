"""Cases, their evidence and status changes, inspections and trends.

A case is unique per (rule, subject, episode start). The engine upserts what it finds:
a new episode opens a case, a longer one extends it, and an episode whose start moved
(late data showed it began earlier) revises the case it overlaps rather than opening a
second one. Every change is written to the audit log in the same transaction, with every
field it sets (a case's creation records all of its fields, a status change its actor,
reason and time, an evidence link its hash and metadata), so `rules/verify.py` can
rebuild each case, its transitions and its evidence links from the log alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from storage import audit
from storage.errors import StorageError

STATUSES = ("flagged", "under_review", "confirmed", "dismissed", "notified", "rectified",
            "closed")
TRANSITIONS = {
    "flagged": ("under_review",),
    "under_review": ("confirmed", "dismissed"),
    "confirmed": ("notified",),
    "notified": ("rectified",),
    "rectified": ("closed",),
    "dismissed": (),
    "closed": (),
}
OPEN_STATUSES = ("flagged", "under_review", "confirmed", "notified")
CONFIRMED_STATUSES = ("confirmed", "notified", "rectified", "closed")


class InvalidTransition(StorageError):
    """A status change the case workflow does not allow."""


class CaseNotFound(StorageError):
    """No case with this id."""


@dataclass(frozen=True, slots=True)
class CaseDraft:
    """What the engine found and wants recorded as a case."""

    rule_id: str
    rule_version: int
    subject_id: str
    episode_start: datetime
    episode_end: datetime
    kind: str
    severity: str
    title: str
    legal_basis: str
    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Case:
    case_id: int
    rule_id: str
    rule_version: int
    subject_id: str
    episode_start: datetime
    episode_end: datetime
    kind: str
    severity: str
    title: str
    legal_basis: str
    status: str
    evidence_state: str
    evidence_missing: list[str]
    summary: dict[str, Any]
    fused_into: int | None
    created_at: datetime
    updated_at: datetime
    area_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The case as shown to users and written to evidence packages (no bookkeeping times)."""
        return {"case_id": self.case_id, "rule_id": self.rule_id,
                "rule_version": self.rule_version, "subject_id": self.subject_id,
                "area_id": self.area_id, "episode_start": self.episode_start,
                "episode_end": self.episode_end, "kind": self.kind, "severity": self.severity,
                "title": self.title, "legal_basis": self.legal_basis, "status": self.status,
                "evidence_state": self.evidence_state,
                "evidence_missing": self.evidence_missing, "summary": self.summary,
                "fused_into": self.fused_into}


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    id: int
    case_id: int
    kind: str  # frame | series
    ref: str
    sha256: str
    content: Any
    meta: dict[str, Any]
    added_at: datetime


@dataclass(frozen=True, slots=True)
class Transition:
    case_id: int
    from_status: str
    to_status: str
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CaseDetail:
    case: Case
    evidence: list[EvidenceItem]
    transitions: list[Transition]
    fused: list[int] = field(default_factory=list)


_CASE_COLS = ("c.case_id, c.rule_id, c.rule_version, c.subject_id, c.episode_start, "
              "c.episode_end, c.kind, c.severity, c.title, c.legal_basis, c.status, "
              "c.evidence_state, c.evidence_missing, c.summary, c.fused_into, c.created_at, "
              "c.updated_at, s.area_id")
_CASE_FROM = "cases c JOIN subjects s ON s.subject_id = c.subject_id"


def upsert_case(conn: psycopg.Connection, draft: CaseDraft, actor: str) -> tuple[int, str]:
    """Record an episode as a case; returns (case id, created | extended | revised | unchanged).

    Does not commit: the caller commits the case with its evidence.
    """
    row = conn.execute(
        "SELECT case_id, episode_start, episode_end, summary FROM cases "
        "WHERE rule_id = %s AND subject_id = %s AND episode_start <= %s AND episode_end >= %s "
        "ORDER BY episode_start LIMIT 1 FOR UPDATE",
        (draft.rule_id, draft.subject_id, draft.episode_end, draft.episode_start)).fetchone()
    if row is None:
        case_id = conn.execute(
            "INSERT INTO cases (rule_id, rule_version, subject_id, episode_start, episode_end,"
            " kind, severity, title, legal_basis, summary) VALUES (%s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s) RETURNING case_id",
            (draft.rule_id, draft.rule_version, draft.subject_id, draft.episode_start,
             draft.episode_end, draft.kind, draft.severity, draft.title, draft.legal_basis,
             Jsonb(draft.summary))).fetchone()[0]
        audit.append(conn, actor, "case_created", "case", str(case_id), {
            "rule_id": draft.rule_id, "rule_version": draft.rule_version,
            "subject_id": draft.subject_id, "episode_start": draft.episode_start,
            "episode_end": draft.episode_end, "kind": draft.kind, "severity": draft.severity,
            "title": draft.title, "legal_basis": draft.legal_basis, "summary": draft.summary})
        return case_id, "created"
    case_id, start, end, summary = row
    new_end = max(end, draft.episode_end)
    if start == draft.episode_start and new_end == end and summary == audit.json_roundtrip(draft.summary):
        return case_id, "unchanged"
    outcome = "extended" if start == draft.episode_start else "revised"
    conn.execute(
        "UPDATE cases SET episode_start = %s, episode_end = %s, summary = %s, updated_at = now() "
        "WHERE case_id = %s", (draft.episode_start, new_end, Jsonb(draft.summary), case_id))
    audit.append(conn, actor, f"case_{outcome}", "case", str(case_id), {
        "episode_start": draft.episode_start, "episode_end": new_end,
        "previous": {"episode_start": start, "episode_end": end}, "summary": draft.summary})
    return case_id, outcome


def set_evidence_state(conn: psycopg.Connection, case_id: int, state: str,
                       missing: Sequence[str], actor: str) -> bool:
    """Record whether the case's evidence is complete and what is missing; True if changed."""
    row = conn.execute(
        "UPDATE cases SET evidence_state = %s, evidence_missing = %s, updated_at = now() "
        "WHERE case_id = %s AND (evidence_state, evidence_missing) IS DISTINCT FROM (%s, %s) "
        "RETURNING case_id", (state, Jsonb(list(missing)), case_id, state,
                              Jsonb(list(missing)))).fetchone()
    if row:
        audit.append(conn, actor, "evidence_state", "case", str(case_id),
                     {"state": state, "missing": list(missing)})
    return row is not None


def set_fused_into(conn: psycopg.Connection, case_id: int, into: int | None, actor: str) -> bool:
    """Mark a case as part of another (fused) case, or not; True if changed."""
    row = conn.execute(
        "UPDATE cases SET fused_into = %s, updated_at = now() "
        "WHERE case_id = %s AND fused_into IS DISTINCT FROM %s RETURNING case_id",
        (into, case_id, into)).fetchone()
    if row:
        audit.append(conn, actor, "case_fused", "case", str(case_id), {"into": into})
    return row is not None


def add_evidence(conn: psycopg.Connection, case_id: int, kind: str, ref: str, sha256: str,
                 content: Any, meta: dict[str, Any], actor: str) -> bool:
    """Attach evidence once (per case, kind, ref); True when it is new."""
    row = conn.execute(
        "INSERT INTO case_evidence (case_id, kind, ref, sha256, content, meta) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (case_id, kind, ref) DO NOTHING "
        "RETURNING id", (case_id, kind, ref, sha256,
                         None if content is None else Jsonb(content), Jsonb(meta))).fetchone()
    if row:
        audit.append(conn, actor, "evidence_added", "case", str(case_id),
                     {"kind": kind, "ref": ref, "sha256": sha256, "meta": meta})
    return row is not None


def transition(conn: psycopg.Connection, case_id: int, to_status: str, actor: str,
               reason: str) -> Transition:
    """Move a case along its workflow, recording who, when and why; commits.

    Raises InvalidTransition for a change the workflow does not allow, or without a
    reason or actor, and CaseNotFound for an unknown case.
    """
    if to_status not in STATUSES:
        raise InvalidTransition(f"unknown status {to_status!r}; expected one of {STATUSES}")
    if not actor.strip() or not reason.strip():
        raise InvalidTransition("a status change needs who made it and why")
    row = conn.execute("SELECT status FROM cases WHERE case_id = %s FOR UPDATE",
                       (case_id,)).fetchone()
    if row is None:
        conn.rollback()
        raise CaseNotFound(f"no case {case_id}")
    current = row[0]
    if to_status not in TRANSITIONS[current]:
        conn.rollback()
        allowed = ", ".join(TRANSITIONS[current]) or "none (final)"
        raise InvalidTransition(f"case {case_id} is {current}: cannot become {to_status} "
                                f"(allowed: {allowed})")
    at = conn.execute(
        "INSERT INTO case_transitions (case_id, from_status, to_status, actor, reason) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING at",
        (case_id, current, to_status, actor, reason)).fetchone()[0]
    conn.execute("UPDATE cases SET status = %s, updated_at = now() WHERE case_id = %s",
                 (to_status, case_id))
    audit.append(conn, actor, "case_transition", "case", str(case_id),
                 {"from": current, "to": to_status, "reason": reason, "at": at})
    conn.commit()
    return Transition(case_id, current, to_status, actor, reason, at)


def _case(row: Sequence) -> Case:
    return Case(*row)


def list_cases(conn: psycopg.Connection, *, status: str | None = None,
               rule_id: str | None = None, subject_id: str | None = None,
               include_fused: bool = False) -> list[Case]:
    """Cases in episode order; fused-in parts are left out unless asked for."""
    where, params = [], []
    for col, value in (("c.status", status), ("c.rule_id", rule_id), ("c.subject_id", subject_id)):
        if value:
            where.append(f"{col} = %s")
            params.append(value)
    if not include_fused:
        where.append("c.fused_into IS NULL")
    rows = conn.execute(
        f"SELECT {_CASE_COLS} FROM {_CASE_FROM}" + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY c.episode_start, c.rule_id, c.subject_id", params).fetchall()
    return [_case(r) for r in rows]


def case_keys(conn: psycopg.Connection) -> list[tuple[str, str, datetime, datetime]]:
    """(rule, subject, episode start, episode end) of every case, sorted."""
    return conn.execute("SELECT rule_id, subject_id, episode_start, episode_end FROM cases "
                        "ORDER BY 1, 2, 3").fetchall()


def open_episode_starts(conn: psycopg.Connection, since: datetime) -> list[datetime]:
    """Episode starts of cases still running at or after `since` (the engine re-reads them whole)."""
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT episode_start FROM cases WHERE episode_end >= %s AND episode_start < %s",
        (since, since))]


def get_case(conn: psycopg.Connection, case_id: int) -> CaseDetail:
    """One case with its evidence, its status changes and the cases fused into it."""
    row = conn.execute(f"SELECT {_CASE_COLS} FROM {_CASE_FROM} WHERE c.case_id = %s",
                       (case_id,)).fetchone()
    if row is None:
        raise CaseNotFound(f"no case {case_id}")
    return CaseDetail(_case(row), evidence(conn, case_id), transitions(conn, case_id),
                      [r[0] for r in conn.execute("SELECT case_id FROM cases WHERE fused_into = %s "
                                                  "ORDER BY case_id", (case_id,))])


def transitions(conn: psycopg.Connection, case_id: int | None = None) -> list[Transition]:
    """Status changes of one case, or of every case, in the order they were made."""
    q = ("SELECT case_id, from_status, to_status, actor, reason, at FROM case_transitions"
         + (" WHERE case_id = %s" if case_id is not None else "") + " ORDER BY case_id, id")
    return [Transition(*r) for r in conn.execute(q, (case_id,) if case_id is not None else ())]


def evidence(conn: psycopg.Connection, case_id: int | None = None) -> list[EvidenceItem]:
    """Evidence of one case, or of every case."""
    q = ("SELECT id, case_id, kind, ref, sha256, content, meta, added_at FROM case_evidence"
         + (" WHERE case_id = %s" if case_id is not None else "") + " ORDER BY case_id, id")
    return [EvidenceItem(*r) for r in conn.execute(q, (case_id,) if case_id is not None else ())]


def engine_watermark(conn: psycopg.Connection, name: str) -> datetime | None:
    row = conn.execute("SELECT evaluated_until FROM rule_engine_state WHERE name = %s",
                       (name,)).fetchone()
    return row[0] if row else None


def set_engine_watermark(conn: psycopg.Connection, name: str, until: datetime) -> None:
    conn.execute(
        "INSERT INTO rule_engine_state (name, evaluated_until) VALUES (%s, %s) "
        "ON CONFLICT (name) DO UPDATE SET evaluated_until = greatest("
        "rule_engine_state.evaluated_until, EXCLUDED.evaluated_until), updated_at = now()",
        (name, until))


@dataclass(frozen=True, slots=True)
class InspectionTask:
    """综合查一次: every open case of one subject, for one visit."""

    subject_id: str
    subject_name: str
    subject_kind: str
    area_id: str | None
    case_ids: tuple[int, ...]
    rule_ids: tuple[str, ...]
    departments: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime


def inspection_tasks(conn: psycopg.Connection, subject_id: str | None = None) -> list[InspectionTask]:
    """Open cases grouped by subject (departments = the rule families involved)."""
    rows = conn.execute(
        "SELECT s.subject_id, s.name, s.kind, s.area_id, array_agg(c.case_id ORDER BY c.case_id),"
        " array_agg(DISTINCT c.rule_id), array_agg(DISTINCT split_part(c.rule_id, '.', 1)),"
        " min(c.episode_start), max(c.episode_end)"
        " FROM cases c JOIN subjects s ON s.subject_id = c.subject_id"
        " WHERE c.status = ANY(%s) AND c.fused_into IS NULL"
        + (" AND c.subject_id = %s" if subject_id else "")
        + " GROUP BY 1, 2, 3, 4 ORDER BY count(*) DESC, 1",
        (list(OPEN_STATUSES), subject_id) if subject_id else (list(OPEN_STATUSES),)).fetchall()
    return [InspectionTask(r[0], r[1], r[2], r[3], tuple(r[4]), tuple(sorted(r[5])),
                           tuple(sorted(r[6])), r[7], r[8]) for r in rows]


def trends(conn: psycopg.Connection, tz: str, since: datetime | None = None) -> list[tuple]:
    """Case counts by (local ISO week start, rule, area): rows (week, rule_id, area_id, count)."""
    return conn.execute(
        "SELECT (date_trunc('week', c.episode_start AT TIME ZONE %s))::date AS week,"
        " c.rule_id, s.area_id, count(*) FROM cases c JOIN subjects s USING (subject_id)"
        " WHERE c.fused_into IS NULL AND (%s::timestamptz IS NULL OR c.episode_start >= %s)"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", (tz, since, since)).fetchall()
