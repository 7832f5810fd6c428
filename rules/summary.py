"""What `citywatch demo` prints at the end: cases found, their evidence state, credit codes."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

from rules.config import RulesConfig
from rules.credit import refresh
from storage import cases as case_store
from storage import credit as credit_store
from storage.db import Database


def demo_summary(config: RulesConfig, db: Database, *, as_of: datetime | None = None) -> dict:
    """Cases by rule and evidence state, open inspection tasks, and non-green credit codes
    (recomputed first), as one JSON-able dict. Cases fused into another are listed too,
    with `fused_into` naming the case that carries their evidence."""
    tz = ZoneInfo(config.timezone)  # officers read local time
    with db.connection() as conn:
        refresh(conn, config.credit, as_of=as_of)
        conn.commit()
        cases = case_store.list_cases(conn, include_fused=True)
        codes = credit_store.current(conn)
        tasks = case_store.inspection_tasks(conn)
    return {
        "cases": [{"case_id": c.case_id, "rule_id": c.rule_id, "subject_id": c.subject_id,
                   "episode_start": c.episode_start.astimezone(tz).isoformat(),
                   "episode_end": c.episode_end.astimezone(tz).isoformat(), "status": c.status,
                   "evidence_state": c.evidence_state, "missing": c.evidence_missing,
                   "fused_into": c.fused_into}
                  for c in cases],
        "by_rule": dict(sorted(Counter(c.rule_id for c in cases).items())),
        "evidence": dict(sorted(Counter(c.evidence_state for c in cases).items())),
        "inspections": len(tasks),
        "credit": {r.subject_id: r.code for r in codes if r.code != "green"},
    }


def format_summary(summary: dict) -> str:
    """The demo summary as lines for people."""
    lines = [f"{len(summary['cases'])} cases (episode start in local time) "
             + ", ".join(f"{k}: {v}" for k, v in summary["evidence"].items())]
    for c in summary["cases"]:
        lines.append(f"  #{c['case_id']:<5} {c['rule_id']:<28} {c['subject_id']:<9} "
                     f"{c['episode_start'][:16]}  {c['status']:<12} {c['evidence_state']}"
                     + (f"  (fused into #{c['fused_into']})" if c["fused_into"] else "")
                     + (f"  missing: {'; '.join(c['missing'])}" if c["missing"] else ""))
    lines.append(f"{summary['inspections']} inspection tasks (综合查一次)")
    red = sorted(s for s, code in summary["credit"].items() if code == "red")
    yellow = sorted(s for s, code in summary["credit"].items() if code == "yellow")
    lines.append(f"credit codes: {len(red)} red, {len(yellow)} yellow, all others green "
                 "(codes count confirmed cases only)"
                 + "".join(f"\n  {code}: {', '.join(ids)}"
                           for code, ids in (("red", red), ("yellow", yellow)) if ids))
    return "\n".join(lines)
