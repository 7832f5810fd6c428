"""`citywatch cases verify`: recompute every evidence hash and the audit chain.

Frames are re-read from the evidence store (which re-hashes the bytes), series snapshots
are re-hashed and rebuilt from the readings table, and the chain is recomputed entry by
entry. Then each case is rebuilt from its audit entries alone and compared with the
database, field by field: every column of the case (but its bookkeeping timestamps),
each status change with its actor, reason and time, and each evidence link with its hash
and metadata; a case or link the log knows of and the database no longer holds is a
deletion. Last, the chain heads anchored outside the database (the anchor file under
the data directory, and any checkpoint an officer kept) must still be in the chain with
the same hash, so cutting entries off the chain's end, or recomputing the chain after a
change, shows. Anything that does not match is reported, nothing is repaired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rules.evidence import series_snapshot
from storage import audit
from storage import cases as case_store
from storage.db import Database
from storage.evidence import EvidenceCorrupted, EvidenceMissing, EvidenceStore, evidence_folder

# Columns of a case the audit log fixes (created_at / updated_at are bookkeeping: the
# audit entries' own times are the record of when things happened).
CASE_FIELDS = ("rule_id", "rule_version", "subject_id", "episode_start", "episode_end", "kind",
               "severity", "title", "legal_basis", "status", "evidence_state",
               "evidence_missing", "summary", "fused_into")
_UNRECORDED = object()


@dataclass(frozen=True, slots=True)
class VerifyReport:
    cases: int
    evidence: int
    audit_entries: int
    problems: list[str] = field(default_factory=list)
    anchored: int = 0  # chain heads checked against the anchor file and checkpoints
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(data_dir: Path, db: Database,
           checkpoints: Sequence[audit.AnchorPoint] = ()) -> VerifyReport:
    """Check every case's evidence, fields and transitions, the audit chain and its
    anchors (under the data directory); list what does not match."""
    store = EvidenceStore(evidence_folder(data_dir))
    problems: list[str] = []
    warnings: list[str] = []
    with db.connection() as conn:
        entries = audit.entries(conn)
        problems += audit.verify_chain(conn)
        replayed, links, moves = _replay(entries)
        cases = case_store.list_cases(conn, include_fused=True)
        present = {str(c.case_id) for c in cases}
        for case_id in sorted(set(replayed) - present, key=int):
            problems.append(f"case {case_id}: in the audit log but no longer in the cases "
                            "table (deleted)")
        for c in cases:
            problems += _check_case(c, replayed.get(str(c.case_id)))
        problems += _check_transitions(case_store.transitions(conn), moves, present)
        items = case_store.evidence(conn)
        problems += _check_links(items, links)
        for ev in items:
            problems += _check_content(conn, store, ev)
        conn.rollback()
    anchor = audit.anchor_path(data_dir)
    points = list(checkpoints)
    if anchor.exists():
        anchored, unreadable = audit.read_anchor(anchor)
        problems += unreadable
        problems += audit.verify_anchor(entries, anchored, f"anchor file {anchor.name}")
        points_count = len(anchored)
    else:
        points_count = 0
        if entries:
            warnings.append(f"no anchor file at {anchor}: entries removed from the end of the "
                            "chain cannot be detected without one (or a checkpoint)")
    problems += audit.verify_anchor(entries, points, "the checkpoint")
    return VerifyReport(len(cases), len(items), len(entries), problems,
                        points_count + len(points), warnings)


def _check_case(c: case_store.Case, audited: dict[str, Any] | None) -> list[str]:
    if audited is None:
        return [f"case {c.case_id}: no case_created entry in the audit log"]
    problems = []
    for key in CASE_FIELDS:
        value = audit.json_roundtrip(getattr(c, key))
        logged = audited.get(key, _UNRECORDED)
        if logged is _UNRECORDED:
            problems.append(f"case {c.case_id}: {key} is not recorded in the audit log "
                            "(written before it recorded every field)")
        elif logged != value:
            problems.append(f"case {c.case_id}: {key} is {value!r} but the audit log says "
                            f"{logged!r} (changed behind its back)")
    return problems


def _check_transitions(rows: list[case_store.Transition],
                       moves: dict[str, list[dict[str, Any]]], present: set[str]) -> list[str]:
    """Each case's status changes against the audited ones, in order."""
    problems = []
    table: dict[str, list[dict[str, Any]]] = {}
    for t in rows:
        table.setdefault(str(t.case_id), []).append(
            {"from": t.from_status, "to": t.to_status, "actor": t.actor, "reason": t.reason,
             "at": audit.json_roundtrip(t.at)})
    for case_id in sorted((set(table) | set(moves)) & present, key=int):
        have, logged = table.get(case_id, []), moves.get(case_id, [])
        for n, (row, entry) in enumerate(zip(have, logged, strict=False), 1):
            for key in ("from", "to", "actor", "reason", "at"):
                if key in entry and row[key] != entry[key]:
                    problems.append(f"case {case_id}: transition {n} ({row['from']} -> "
                                    f"{row['to']}) has {key} {row[key]!r} but the audit log "
                                    f"says {entry[key]!r} (forged)")
        if len(have) != len(logged):
            problems.append(f"case {case_id}: {len(have)} transitions in the table, "
                            f"{len(logged)} in the audit log (added or removed behind its back)")
    return problems


def _check_links(items: list[case_store.EvidenceItem],
                 links: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    """Evidence rows against the links the audit log recorded, both ways."""
    problems = []
    seen = set()
    for ev in items:
        key = (str(ev.case_id), ev.kind, ev.ref)
        seen.add(key)
        where = f"case {ev.case_id} {ev.kind} {ev.ref[:40]}"
        logged = links.get(key)
        if logged is None:
            problems.append(f"{where}: not in the audit log (added behind its back)")
            continue
        if logged.get("sha256") != ev.sha256:
            problems.append(f"{where}: hash {ev.sha256[:12]}… differs from the audited "
                            f"{str(logged.get('sha256'))[:12]}…")
        if "meta" in logged and logged["meta"] != audit.json_roundtrip(ev.meta):
            problems.append(f"{where}: metadata {ev.meta!r} differs from the audited "
                            f"{logged['meta']!r}")
    for case_id, kind, ref in sorted(set(links) - seen):
        problems.append(f"case {case_id} {kind} {ref[:40]}: in the audit log but no longer "
                        "attached (evidence deleted)")
    return problems


def _check_content(conn, store: EvidenceStore, ev: case_store.EvidenceItem) -> list[str]:
    """The evidence itself: the frame file's bytes, or the snapshot and its readings."""
    where = f"case {ev.case_id} {ev.kind} {ev.ref[:40]}"
    problems = []
    if ev.kind == "frame":
        try:
            store.get(ev.ref)
        except EvidenceCorrupted as exc:
            problems.append(f"{where}: evidence file altered (now hashes to "
                            f"{exc.actual[:12]}…)")
        except EvidenceMissing:
            problems.append(f"{where}: evidence file missing")
        if ev.sha256 != ev.ref:
            problems.append(f"{where}: recorded hash is not the frame's")
        return problems
    content = ev.content or {}
    if audit.sha256_json(content) != ev.sha256:
        problems.append(f"{where}: snapshot does not match its hash (altered)")
    try:
        fresh = series_snapshot(conn, content["device_id"], content["fields"][1:],
                                datetime.fromisoformat(content["from"]),
                                datetime.fromisoformat(content["until"]))
    except (KeyError, TypeError, ValueError) as exc:
        return [*problems, f"{where}: snapshot unreadable ({exc})"]
    if audit.sha256_json(fresh) != ev.sha256:
        problems.append(f"{where}: readings table no longer matches the snapshot "
                        f"({len(fresh['rows'])} rows now, {len(content.get('rows', []))} "
                        "in the snapshot)")
    return problems


def _replay(entries: list[audit.AuditEntry]):
    """What the audit log alone says: each case's fields, its evidence links by
    (case, kind, ref), and its status changes in order."""
    state: dict[str, dict[str, Any]] = {}
    links: dict[tuple[str, str, str], dict[str, Any]] = {}
    moves: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        if e.entity != "case":
            continue
        d = e.data
        if e.action == "case_created":
            c = state[e.entity_id] = {
                k: d[k] for k in ("rule_id", "rule_version", "subject_id", "episode_start",
                                  "episode_end", "kind", "severity", "title", "legal_basis",
                                  "summary") if k in d}
            c.update(status="flagged", evidence_state="incomplete", evidence_missing=[],
                     fused_into=None)
            continue
        c = state.setdefault(e.entity_id, {})
        if e.action in ("case_extended", "case_revised"):
            c.update(episode_start=d["episode_start"], episode_end=d["episode_end"])
            if "summary" in d:
                c["summary"] = d["summary"]
        elif e.action == "case_transition":
            c["status"] = d["to"]
            moves.setdefault(e.entity_id, []).append(
                {"from": d.get("from"), "to": d["to"], "actor": e.actor,
                 "reason": d.get("reason")} | ({"at": d["at"]} if "at" in d else {}))
        elif e.action == "evidence_state":
            c["evidence_state"] = d["state"]
            c["evidence_missing"] = d.get("missing", [])
        elif e.action == "case_fused":
            c["fused_into"] = d["into"]
        elif e.action == "evidence_added":
            links[(e.entity_id, d.get("kind"), d.get("ref"))] = d
    return state, links, moves
