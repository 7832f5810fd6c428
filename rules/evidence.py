"""Evidence of a case and the gate that says whether it is ready for review.

Evidence is attached by reference: a frame by the sha256 naming its evidence file, a
reading series as a snapshot (the rule's fields over the episode plus padding) stored
with the hash of its canonical JSON. A case is "ready" only when every device involved
is registered and certified and calibrated on the event days, its readings or frames
carry timestamps, and a visual rule has at least one frame fit as evidence; otherwise
the case lists exactly what is missing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from rules.config import RulesConfig
from rules.model import Episode, EvalContext, FrameRef, RuleBase
from rules.timeutil import local_day
from storage import audit, rule_queries
from storage import cases as case_store


def series_snapshot(conn: psycopg.Connection, device_id: str, fields: list[str],
                    start: datetime, end: datetime) -> dict[str, Any]:
    """The readings of one device over [start, end] as a JSON-able snapshot."""
    rows = rule_queries.series(conn, device_id, fields, start, end)
    return {"device_id": device_id, "fields": ["ts", *fields],
            "from": start.astimezone(UTC).isoformat(), "until": end.astimezone(UTC).isoformat(),
            "rows": [[r[0].astimezone(UTC).isoformat(), *r[1:]] for r in rows]}


def series_ref(device_id: str, start: datetime, end: datetime) -> str:
    return f"{device_id}@{start.astimezone(UTC).isoformat()}/{end.astimezone(UTC).isoformat()}"


def attach_evidence(conn: psycopg.Connection, config: RulesConfig, ctx: EvalContext,
                    case_id: int, rule: RuleBase, ep: Episode,
                    guests: list[tuple[RuleBase, Episode]], margin: timedelta,
                    actor: str) -> None:
    """Attach the rule's evidence (and that of fused-in episodes) and run the gate."""
    recipe = rule.evidence
    missing: list[str] = []
    devices = set(ep.devices)
    series_count = 0
    if recipe.series:
        for device_id in ep.devices:
            # never past the data seen so far: a snapshot must stay true of its window
            lo, hi = ep.start - recipe.pad, min(ep.end + recipe.pad, ctx.end)
            snap = series_snapshot(conn, device_id, list(recipe.series), lo, hi)
            if not snap["rows"]:
                missing.append(f"no readings of {device_id} between {snap['from']} and {snap['until']}")
                continue
            if any(r[0] is None for r in snap["rows"]):
                missing.append(f"readings of {device_id} without a timestamp")
            case_store.add_evidence(conn, case_id, "series", series_ref(device_id, lo, hi),
                                    audit.sha256_json(snap), snap,
                                    {"device_id": device_id, "rows": len(snap["rows"])}, actor)
            series_count += 1
    frames: dict[str, FrameRef] = {}
    for f in sorted(list(ep.frames) + [f for _, g in guests for f in g.frames],
                    key=lambda f: (f.fit_as_evidence is not True, -f.confidence, f.ts, f.sha256)):
        frames.setdefault(f.sha256, f)
    if recipe.frames:
        for sha, ts, source, fit, cls, conf in rule_queries.subject_frames(
                conn, ep.subject_id, ep.start - margin, ep.end + margin,
                config.max_frames_per_case):
            frames.setdefault(sha, FrameRef(sha, ts, source, fit, cls, round(conf, 4)))
    chosen = sorted(frames.values(), key=lambda f: (f.fit_as_evidence is not True,
                                                     -f.confidence, f.ts, f.sha256))
    chosen = chosen[:config.max_frames_per_case]
    for f in chosen:
        if f.ts is None:
            missing.append(f"frame {f.sha256[:12]}… has no timestamp")
        devices.add(f.source_id)
        case_store.add_evidence(conn, case_id, "frame", f.sha256, f.sha256, None, {
            "ts": f.ts.astimezone(UTC).isoformat(), "source_id": f.source_id, "fit_as_evidence": f.fit_as_evidence,
            "class": f.class_name, "confidence": f.confidence}, actor)
    for _, guest in guests:
        devices.update(guest.devices)
    days = sorted({local_day(ep.start, ctx.tz), local_day(ep.end, ctx.tz)})
    for device_id in sorted(devices):
        device = ctx.devices.get(device_id)
        if device is None:
            missing.append(f"device {device_id} is not registered")
            continue
        for day in days:
            missing += [f"device {device_id}: {p}" for p in device.valid_at(day)]
    if recipe.series and not series_count and not any("no readings" in m for m in missing):
        missing.append("no reading series attached")
    visual = recipe.visual or any(g.evidence.visual for g, _ in guests)
    if visual and not any(f.fit_as_evidence for f in chosen):
        missing.append(f"no frame fit as evidence ({len(chosen)} frames, none fit)"
                       if chosen else "no frame of the violation")
    missing = list(dict.fromkeys(missing))
    case_store.set_evidence_state(conn, case_id, "incomplete" if missing else "ready",
                                  missing, actor)
