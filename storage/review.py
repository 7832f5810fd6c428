"""What the review app stores: users, sessions, API tokens, login failures, the party's
one-time links and submissions, the officers' queue and the cockpit's counters.

Secrets (session cookies, API tokens, party links) are never stored: only their sha256,
so a copy of the database opens no session and no party page.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from storage import audit
from storage.cases import _CASE_COLS, _CASE_FROM, OPEN_STATUSES, Case
from storage.errors import StorageError

ROLES = ("officer", "supervisor", "operator", "admin")


class UserError(StorageError):
    """A user that cannot be added or changed (duplicate name, unknown role or user)."""


@dataclass(frozen=True, slots=True)
class User:
    user_id: int
    username: str
    role: str
    display_name: str
    disabled: bool
    created_at: datetime


_USER_COLS = "u.user_id, u.username, u.role, u.display_name, u.disabled, u.created_at"


def add_user(conn: psycopg.Connection, username: str, role: str, password_hash: str,
             display_name: str = "", actor: str = "cli") -> User:
    """Create a user (audited); UserError for a taken name or unknown role. Commits."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    try:
        row = conn.execute(
            "INSERT INTO web_users AS u (username, role, password_hash, display_name) "
            f"VALUES (%s, %s, %s, %s) RETURNING {_USER_COLS}",
            (username, role, password_hash, display_name)).fetchone()
    except psycopg.errors.UniqueViolation:
        conn.rollback()
        raise UserError(f"user {username!r} already exists") from None
    except psycopg.errors.CheckViolation:
        conn.rollback()
        raise UserError(f"user name {username!r} must be 2-63 characters of a-z, 0-9, . _ - "
                        "starting with a letter or digit") from None
    audit.append(conn, actor, "user_added", "user", username, {"role": role})
    conn.commit()
    return User(*row)


def users(conn: psycopg.Connection) -> list[User]:
    return [User(*r) for r in conn.execute(
        f"SELECT {_USER_COLS} FROM web_users u ORDER BY u.username")]


def user_with_hash(conn: psycopg.Connection, username: str) -> tuple[User, str] | None:
    """The user and their password hash, for signing in."""
    row = conn.execute(f"SELECT {_USER_COLS}, u.password_hash FROM web_users u "
                       "WHERE u.username = %s", (username,)).fetchone()
    return (User(*row[:6]), row[6]) if row else None


def set_password(conn: psycopg.Connection, username: str, password_hash: str,
                 actor: str = "cli") -> None:
    """Replace a password (ending the user's sessions); commits."""
    row = conn.execute("UPDATE web_users SET password_hash = %s, password_changed_at = now() "
                       "WHERE username = %s RETURNING user_id",
                       (password_hash, username)).fetchone()
    if row is None:
        conn.rollback()
        raise UserError(f"no user {username!r}")
    conn.execute("DELETE FROM web_sessions WHERE user_id = %s", (row[0],))
    audit.append(conn, actor, "user_password", "user", username, {})
    conn.commit()


def set_disabled(conn: psycopg.Connection, username: str, disabled: bool,
                 actor: str = "cli") -> None:
    """Disable (or enable) a user; disabling ends their sessions. Commits."""
    row = conn.execute("UPDATE web_users SET disabled = %s WHERE username = %s "
                       "RETURNING user_id", (disabled, username)).fetchone()
    if row is None:
        conn.rollback()
        raise UserError(f"no user {username!r}")
    if disabled:
        conn.execute("DELETE FROM web_sessions WHERE user_id = %s", (row[0],))
    audit.append(conn, actor, "user_disabled" if disabled else "user_enabled", "user",
                 username, {})
    conn.commit()


# -- sessions and API tokens -------------------------------------------------------------

def create_session(conn: psycopg.Connection, token_sha256: str, user_id: int,
                   expires_at: datetime) -> None:
    conn.execute("DELETE FROM web_sessions WHERE expires_at < now()")
    conn.execute("INSERT INTO web_sessions (token_sha256, user_id, expires_at) "
                 "VALUES (%s, %s, %s)", (token_sha256, user_id, expires_at))
    conn.commit()


def session_user(conn: psycopg.Connection, token_sha256: str) -> User | None:
    """The enabled user of an unexpired session, or None."""
    row = conn.execute(
        f"SELECT {_USER_COLS} FROM web_sessions s JOIN web_users u USING (user_id) "
        "WHERE s.token_sha256 = %s AND s.expires_at > now() AND NOT u.disabled",
        (token_sha256,)).fetchone()
    return User(*row) if row else None


def end_session(conn: psycopg.Connection, token_sha256: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE token_sha256 = %s", (token_sha256,))
    conn.commit()


def add_api_token(conn: psycopg.Connection, token_sha256: str, user_id: int, label: str) -> None:
    conn.execute("INSERT INTO api_tokens (token_sha256, user_id, label) VALUES (%s, %s, %s)",
                 (token_sha256, user_id, label))
    conn.commit()


def api_token_user(conn: psycopg.Connection, token_sha256: str) -> User | None:
    row = conn.execute(
        f"SELECT {_USER_COLS} FROM api_tokens t JOIN web_users u USING (user_id) "
        "WHERE t.token_sha256 = %s AND t.revoked_at IS NULL AND NOT u.disabled",
        (token_sha256,)).fetchone()
    return User(*row) if row else None


def api_tokens(conn: psycopg.Connection, user_id: int) -> list[tuple[str, datetime, bool]]:
    """(label, created, revoked) of a user's tokens."""
    return conn.execute("SELECT label, created_at, revoked_at IS NOT NULL FROM api_tokens "
                        "WHERE user_id = %s ORDER BY created_at", (user_id,)).fetchall()


def record_login_failure(conn: psycopg.Connection, username: str, client: str) -> None:
    conn.execute("INSERT INTO login_failures (username, client) VALUES (%s, %s)",
                 (username, client))
    conn.commit()


def login_failures(conn: psycopg.Connection, username: str, client: str,
                   since: datetime) -> int:
    """Failed sign-ins since `since` for this user name or from this client, the larger."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM login_failures WHERE username = %s AND at >= %s),"
        " (SELECT count(*) FROM login_failures WHERE client = %s AND at >= %s)",
        (username, since, client, since)).fetchone()
    return max(row)


def clear_login_failures(conn: psycopg.Connection, username: str) -> None:
    conn.execute("DELETE FROM login_failures WHERE username = %s", (username,))
    conn.commit()


# -- the party's right to be heard -------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PartyLink:
    token_sha256: str
    case_id: int
    issued_by: str
    issued_at: datetime
    expires_at: datetime
    respond_by: datetime
    used_at: datetime | None


@dataclass(frozen=True, slots=True)
class Submission:
    id: int
    case_id: int
    statement: str
    photos: list[dict[str, Any]]
    submitted_at: datetime


_LINK_COLS = "token_sha256, case_id, issued_by, issued_at, expires_at, respond_by, used_at"


def issue_party_link(conn: psycopg.Connection, token_sha256: str, case_id: int, actor: str,
                     expires_at: datetime, respond_by: datetime) -> None:
    """Record a party link (audited, without the secret); does not commit."""
    conn.execute("INSERT INTO party_links (token_sha256, case_id, issued_by, expires_at, "
                 "respond_by) VALUES (%s, %s, %s, %s, %s)",
                 (token_sha256, case_id, actor, expires_at, respond_by))
    audit.append(conn, actor, "party_link_issued", "case", str(case_id),
                 {"expires_at": expires_at, "respond_by": respond_by})


def party_link(conn: psycopg.Connection, token_sha256: str) -> PartyLink | None:
    row = conn.execute(f"SELECT {_LINK_COLS} FROM party_links WHERE token_sha256 = %s",
                       (token_sha256,)).fetchone()
    return PartyLink(*row) if row else None


def party_links(conn: psycopg.Connection, case_id: int) -> list[PartyLink]:
    return [PartyLink(*r) for r in conn.execute(
        f"SELECT {_LINK_COLS} FROM party_links WHERE case_id = %s ORDER BY issued_at",
        (case_id,))]


def add_submission(conn: psycopg.Connection, link: PartyLink, statement: str,
                   photos: list[dict[str, Any]]) -> int:
    """Record the party's answer and use up its link (audited); commits.

    Raises StorageError when the link was used meanwhile (one answer per link)."""
    row = conn.execute("UPDATE party_links SET used_at = now() WHERE token_sha256 = %s "
                       "AND used_at IS NULL RETURNING case_id", (link.token_sha256,)).fetchone()
    if row is None:
        conn.rollback()
        raise StorageError("this link has already been used to answer")
    sid = conn.execute(
        "INSERT INTO party_submissions (case_id, token_sha256, statement, photos) "
        "VALUES (%s, %s, %s, %s) RETURNING id",
        (link.case_id, link.token_sha256, statement, Jsonb(photos))).fetchone()[0]
    audit.append(conn, "party", "party_submission", "case", str(link.case_id), {
        "submission": sid, "statement_sha256": audit.sha256_json(statement),
        "photos": [p["sha256"] for p in photos]})
    conn.commit()
    return sid


def submissions(conn: psycopg.Connection, case_id: int) -> list[Submission]:
    return [Submission(*r) for r in conn.execute(
        "SELECT id, case_id, statement, photos, submitted_at FROM party_submissions "
        "WHERE case_id = %s ORDER BY id", (case_id,))]


def photo_of_case(conn: psycopg.Connection, case_id: int, sha256: str) -> dict | None:
    """The stored description of a party's or an officer's photo of this case, or None."""
    for s in submissions(conn, case_id):
        for p in s.photos:
            if p["sha256"] == sha256:
                return p
    for f in field_photos(conn, case_id):
        if f.sha256 == sha256:
            return {"sha256": f.sha256, "content_type": f.content_type, "bytes": f.bytes}
    return None


@dataclass(frozen=True, slots=True)
class FieldPhoto:
    case_id: int
    sha256: str
    content_type: str
    bytes: int
    note: str
    actor: str
    added_at: datetime


def add_field_photo(conn: psycopg.Connection, case_id: int, sha256: str, content_type: str,
                    size: int, note: str, actor: str) -> bool:
    """Attach an officer's photo to a case once (audited); True when new. Commits."""
    row = conn.execute(
        "INSERT INTO field_photos (case_id, sha256, content_type, bytes, note, actor) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (case_id, sha256) DO NOTHING RETURNING id",
        (case_id, sha256, content_type, size, note, actor)).fetchone()
    if row:
        audit.append(conn, actor, "field_photo_added", "case", str(case_id),
                     {"sha256": sha256, "content_type": content_type, "note": note})
    conn.commit()
    return row is not None


def field_photos(conn: psycopg.Connection, case_id: int) -> list[FieldPhoto]:
    return [FieldPhoto(*r) for r in conn.execute(
        "SELECT case_id, sha256, content_type, bytes, note, actor, added_at FROM field_photos "
        "WHERE case_id = %s ORDER BY id", (case_id,))]


def record_decision_note(conn: psycopg.Connection, case_id: int, actor: str, action: str,
                         data: dict[str, Any]) -> None:
    """A decision that is not a status change (needs more evidence, penalty); commits."""
    audit.append(conn, actor, action, "case", str(case_id), data)
    conn.commit()


# -- the queue ---------------------------------------------------------------------------

SEVERITY_RANK = "(CASE c.severity WHEN 'serious' THEN 3 WHEN 'general' THEN 2 ELSE 1 END)"
# sort name -> (key expressions, descending?)
SORTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "oldest": (("c.episode_start", "c.case_id"), False),
    "newest": (("c.episode_start", "c.case_id"), True),
    "severity": ((SEVERITY_RANK, "c.episode_start", "c.case_id"), True),
}


@dataclass(frozen=True, slots=True)
class QueueFilter:
    status: str | None = None
    rule_id: str | None = None
    area_id: str | None = None
    evidence_state: str | None = None
    subject_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(
        [v.isoformat() if isinstance(v, datetime) else v for v in values]).encode()).decode()


def _decode_cursor(cursor: str, sort: str) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        keys = SORTS[sort][0]
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError("wrong length")
        return [datetime.fromisoformat(v) if k == "c.episode_start" else int(v)
                for k, v in zip(keys, values, strict=True)]
    except (ValueError, TypeError, KeyError) as exc:
        raise StorageError(f"bad page cursor ({exc})") from None


def queue_page(conn: psycopg.Connection, f: QueueFilter, sort: str = "oldest",
               after: str | None = None, limit: int = 50) -> tuple[list[Case], str | None]:
    """One page of the queue and the cursor of the next page (None on the last page).

    Keyset pagination: a page starts after the sort key of the previous page's last row,
    so page 2,000 costs what page 1 costs (no OFFSET)."""
    if sort not in SORTS:
        raise StorageError(f"unknown sort {sort!r}; expected one of {', '.join(SORTS)}")
    keys, desc = SORTS[sort]
    where = [sql.SQL("c.fused_into IS NULL")]
    params: list[Any] = []
    for column, value in (("c.status", f.status), ("c.rule_id", f.rule_id),
                          ("s.area_id", f.area_id), ("c.evidence_state", f.evidence_state),
                          ("c.subject_id", f.subject_id)):
        if value:
            where.append(sql.SQL(column + " = %s"))
            params.append(value)
    if f.since:
        where.append(sql.SQL("c.episode_start >= %s"))
        params.append(f.since)
    if f.until:
        where.append(sql.SQL("c.episode_start < %s"))
        params.append(f.until)
    key_list = sql.SQL(", ").join(sql.SQL(k) for k in keys)
    if after:
        values = _decode_cursor(after, sort)
        where.append(sql.SQL("({}) {} ({})").format(
            key_list, sql.SQL("<" if desc else ">"),
            sql.SQL(", ").join(sql.Placeholder() * len(values))))
        params += values
    order = sql.SQL(", ").join(sql.SQL(k + (" DESC" if desc else "")) for k in keys)
    query = sql.SQL("SELECT {cols}, {keys} FROM {src} WHERE {where} ORDER BY {order} "
                    "LIMIT %s").format(cols=sql.SQL(_CASE_COLS), keys=key_list,
                                       src=sql.SQL(_CASE_FROM),
                                       where=sql.SQL(" AND ").join(where), order=order)
    rows = conn.execute(query, [*params, limit + 1]).fetchall()
    ncols = len(rows[0]) - len(keys) if rows else 0
    page = [Case(*r[:ncols]) for r in rows[:limit]]
    nxt = encode_cursor(rows[limit - 1][ncols:]) if len(rows) > limit else None
    return page, nxt


def queue_choices(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Values the queue's filters offer: rules and areas that have cases."""
    return {"rule_id": [r[0] for r in conn.execute(
                "SELECT DISTINCT rule_id FROM cases ORDER BY 1")],
            "area_id": [r[0] for r in conn.execute(
                "SELECT subject_id FROM subjects WHERE kind = 'area' ORDER BY 1")]}


# -- cockpit -----------------------------------------------------------------------------

def cockpit_counters(conn: psycopg.Connection, silent_after_s: int) -> dict[str, Any]:
    """Open cases by status and rule, device health, readings per minute, dead letters
    today, frames queued."""
    open_by_status = dict(conn.execute(
        "SELECT status, count(*) FROM cases WHERE fused_into IS NULL "
        "AND status = ANY(%s) GROUP BY 1", (list(OPEN_STATUSES),)))
    open_by_rule = dict(conn.execute(
        "SELECT rule_id, count(*) FROM cases WHERE fused_into IS NULL "
        "AND status = ANY(%s) GROUP BY 1 ORDER BY 2 DESC", (list(OPEN_STATUSES),)))
    devices = conn.execute(
        "SELECT count(*) FILTER (WHERE ds.status = 'online'),"
        " count(*) FILTER (WHERE ds.status = 'offline'),"
        " count(*) FILTER (WHERE ds.status IS NULL), count(*)"
        " FROM devices d LEFT JOIN device_status ds USING (device_id)").fetchone()
    silent = conn.execute(
        "SELECT count(*) FROM devices d WHERE d.kind IN ('fume', 'dust') AND NOT EXISTS ("
        " SELECT 1 FROM readings r WHERE r.device_id = d.device_id"
        " AND r.ts > now() - make_interval(secs => %s))", (silent_after_s,)).fetchone()[0]
    per_minute = conn.execute("SELECT count(*) FROM readings WHERE ts > now() - "
                              "interval '1 minute'").fetchone()[0]
    dead_today = conn.execute("SELECT count(*) FROM dead_letters WHERE received_at >= "
                              "date_trunc('day', now())").fetchone()[0]
    # two counts, so that each is answered from its partial index (migration 0002)
    queued = conn.execute("SELECT (SELECT count(*) FROM frames WHERE status = 'pending')"
                          " + (SELECT count(*) FROM frames WHERE status = 'processing')"
                          ).fetchone()[0]
    return {"open_by_status": open_by_status, "open_by_rule": open_by_rule,
            "devices": {"online": devices[0], "offline": devices[1], "unknown": devices[2],
                        "total": devices[3], "silent_sensors": silent},
            "readings_last_minute": per_minute, "dead_letters_today": dead_today,
            "frames_queued": queued}


def open_case_points(conn: psycopg.Connection, limit: int = 2000) -> list[tuple]:
    """(case_id, rule_id, status, subject_id, geometry) of open cases, newest first."""
    return conn.execute(
        "SELECT c.case_id, c.rule_id, c.status, c.subject_id, s.geometry FROM cases c "
        "JOIN subjects s USING (subject_id) WHERE c.fused_into IS NULL AND c.status = ANY(%s) "
        "ORDER BY c.episode_start DESC LIMIT %s", (list(OPEN_STATUSES), limit)).fetchall()


def subject_row(conn: psycopg.Connection, subject_id: str) -> tuple | None:
    return conn.execute("SELECT subject_id, kind, name, area_id, geometry, props FROM subjects "
                        "WHERE subject_id = %s", (subject_id,)).fetchone()


def subject_devices(conn: psycopg.Connection, subject_id: str) -> list[tuple]:
    """(device_id, kind, model, certificate_no, certified_from, certified_until,
    calibrated_on, calibration_due, status) of one subject's devices."""
    return conn.execute(
        "SELECT d.device_id, d.kind, d.model, d.certificate_no, d.certified_from,"
        " d.certified_until, d.calibrated_on, d.calibration_due, ds.status FROM devices d"
        " LEFT JOIN device_status ds USING (device_id) WHERE d.subject_id = %s"
        " ORDER BY d.device_id", (subject_id,)).fetchall()


def evidence_frame_time(conn: psycopg.Connection, sha256: str) -> datetime | None:
    """The event time recorded when a frame was attached to a case (None: no case holds it)."""
    row = conn.execute("SELECT meta->>'ts' FROM case_evidence WHERE kind = 'frame' AND ref = %s"
                       " ORDER BY id LIMIT 1", (sha256,)).fetchone()
    return datetime.fromisoformat(row[0]) if row and row[0] else None


def case_belongs(conn: psycopg.Connection, sha256: str) -> bool:
    """Whether a file is evidence of some case (frames) or a party's photo."""
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM case_evidence WHERE kind = 'frame' AND ref = %s)"
        " OR EXISTS (SELECT 1 FROM party_submissions WHERE photos @> %s)",
        (sha256, Jsonb([{"sha256": sha256}]))).fetchone()[0]
