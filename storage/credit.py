"""Credit-code inputs (confirmed violations with their notify / rectify times) and history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from storage import audit
from storage.cases import CONFIRMED_STATUSES


@dataclass(frozen=True, slots=True)
class Violation:
    """A confirmed violation case as credit codes see it."""

    case_id: int
    subject_id: str
    severity: str
    at: datetime  # episode start
    notified_at: datetime | None
    rectified_at: datetime | None


@dataclass(frozen=True, slots=True)
class CreditRecord:
    subject_id: str
    code: str
    since: datetime
    reason: str
    computed_at: datetime


def violations(conn: psycopg.Connection, subject_id: str | None = None) -> list[Violation]:
    """Confirmed violation cases (merchants and sites), with when they were notified and rectified."""
    rows = conn.execute(
        "SELECT c.case_id, c.subject_id, c.severity, c.episode_start,"
        " (SELECT min(at) FROM case_transitions t WHERE t.case_id = c.case_id AND t.to_status = 'notified'),"
        " (SELECT min(at) FROM case_transitions t WHERE t.case_id = c.case_id AND t.to_status = 'rectified')"
        " FROM cases c JOIN subjects s ON s.subject_id = c.subject_id"
        " WHERE c.kind = 'violation' AND c.status = ANY(%s) AND s.kind IN ('merchant', 'site')"
        " AND c.fused_into IS NULL" + (" AND c.subject_id = %s" if subject_id else "")
        + " ORDER BY c.subject_id, c.episode_start, c.case_id",
        (list(CONFIRMED_STATUSES), subject_id) if subject_id else (list(CONFIRMED_STATUSES),)
    ).fetchall()
    return [Violation(*r) for r in rows]


def current(conn: psycopg.Connection, subject_id: str | None = None,
            code: str | None = None) -> list[CreditRecord]:
    """Each subject's latest recorded code (subjects never recorded are green)."""
    rows = conn.execute(
        "SELECT DISTINCT ON (subject_id) subject_id, code, since, reason, computed_at"
        " FROM credit_history" + (" WHERE subject_id = %s" if subject_id else "")
        + " ORDER BY subject_id, id DESC", (subject_id,) if subject_id else ()).fetchall()
    records = [CreditRecord(*r) for r in rows]
    return [r for r in records if code is None or r.code == code]


def history(conn: psycopg.Connection, subject_id: str) -> list[CreditRecord]:
    return [CreditRecord(*r) for r in conn.execute(
        "SELECT subject_id, code, since, reason, computed_at FROM credit_history"
        " WHERE subject_id = %s ORDER BY id", (subject_id,))]


def record(conn: psycopg.Connection, subject_id: str, code: str, since: datetime, reason: str,
           actor: str) -> None:
    """Append a code change to the history (and the audit log); does not commit."""
    conn.execute("INSERT INTO credit_history (subject_id, code, since, reason) VALUES (%s, %s, %s, %s)",
                 (subject_id, code, since, reason))
    audit.append(conn, actor, "credit_code", "subject", subject_id,
                 {"code": code, "since": since, "reason": reason})
