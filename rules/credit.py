"""Red / yellow / green credit codes of merchants and sites (红黄绿码).

`code_at` is a pure function of a subject's confirmed violations: walking through time,
the code rises as soon as the rolling window holds enough violations (or a serious one,
or a refusal to rectify), and goes back one step only after a clean period with every
case rectified (yellow -> green after `repair_yellow_days`, red -> yellow after
`repair_red_days`). `refresh` records each change in the subject's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from rules.config import CreditPolicy
from storage import credit as credit_store

RANK = {"green": 0, "yellow": 1, "red": 2}


@dataclass(frozen=True, slots=True)
class CreditCode:
    code: str
    since: datetime | None
    reason: str


def _raw(vs: list[credit_store.Violation], t: datetime, p: CreditPolicy) -> tuple[str, str]:
    window = [v for v in vs if t - timedelta(days=p.window_days) < v.at <= t]
    refused = [v for v in vs if v.notified_at and v.notified_at <= t
               and (v.rectified_at is None or v.rectified_at > t)
               and t - v.notified_at > timedelta(days=p.rectify_deadline_days)]
    if p.red_on_serious and any(v.severity == "serious" for v in window):
        return "red", "serious violation in the window"
    if len(window) >= p.red_at:
        return "red", f"{len(window)} confirmed violations in {p.window_days} days"
    if refused:
        return "red", f"case {refused[0].case_id} not rectified {p.rectify_deadline_days} days after notice"
    if len(window) >= p.yellow_at:
        return "yellow", f"{len(window)} confirmed violations in {p.window_days} days"
    unrectified = [v for v in vs if v.at <= t and (v.rectified_at is None or v.rectified_at > t)]
    if p.yellow_on_unrectified and unrectified:
        return "yellow", f"case {unrectified[0].case_id} not rectified"
    return "green", "no qualifying violations"


def code_at(vs: list[credit_store.Violation], as_of: datetime, p: CreditPolicy) -> CreditCode:
    """The code of one subject at `as_of`, from its confirmed violations."""
    events = sorted({v.at for v in vs} | {v.rectified_at for v in vs if v.rectified_at}
                    | {v.notified_at + timedelta(days=p.rectify_deadline_days, seconds=1)
                       for v in vs if v.notified_at})
    code, since, reason = "green", None, "no confirmed violations"
    for t in [e for e in events if e <= as_of] + [as_of]:
        code, since, reason = _repair(vs, code, since, reason, t, p)
        raw, why = _raw(vs, t, p)
        if RANK[raw] > RANK[code]:
            code, since, reason = raw, t, why
    return CreditCode(code, since, reason)


def _repair(vs, code, since, reason, t, p):
    """Step the code down for each clean period (no violation, no rectification, every case
    rectified) that has run out by `t`, as long as the window no longer holds the code."""
    while code != "green":
        days = p.repair_red_days if code == "red" else p.repair_yellow_days
        anchor = max([since] + [v.at for v in vs if v.at <= t]
                     + [v.rectified_at for v in vs if v.rectified_at and v.rectified_at <= t])
        at = anchor + timedelta(days=days)
        all_rectified = all(v.rectified_at and v.rectified_at <= at for v in vs if v.at <= at)
        if at > t or not all_rectified or RANK[_raw(vs, at, p)[0]] >= RANK[code]:
            break
        code = "yellow" if code == "red" else "green"
        since, reason = at, f"repaired after {days} clean days, all rectified"
    return code, since, reason


def refresh(conn: psycopg.Connection, policy: CreditPolicy, *, as_of: datetime | None = None,
            actor: str = "rule-engine") -> dict[str, CreditCode]:
    """Recompute the code of every subject with violations or history; record changes.

    Returns the codes that changed. Does not commit.
    """
    as_of = as_of or datetime.now(UTC)
    by_subject: dict[str, list[credit_store.Violation]] = {}
    for v in credit_store.violations(conn):
        by_subject.setdefault(v.subject_id, []).append(v)
    latest = {r.subject_id: r for r in credit_store.current(conn)}
    changed = {}
    for subject_id in sorted(set(by_subject) | set(latest)):
        code = code_at(by_subject.get(subject_id, []), as_of, policy)
        prev = latest.get(subject_id)
        if (prev.code if prev else "green") != code.code:
            credit_store.record(conn, subject_id, code.code, code.since or as_of, code.reason, actor)
            changed[subject_id] = code
    return changed
