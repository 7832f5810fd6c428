"""`citywatch cases verify`: recompute every evidence hash and the audit chain.

Frames are re-read from the evidence store (which re-hashes the bytes), series snapshots
are re-hashed and rebuilt from the readings table, evidence rows are compared with the
hashes the audit log recorded when they were attached, and the chain is recomputed
entry by entry. Anything that does not match is reported, nothing is repaired.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rules.evidence import series_snapshot
from storage import audit
from storage import cases as case_store
from storage.db import Database
from storage.evidence import EvidenceCorrupted, EvidenceMissing, EvidenceStore


@dataclass(frozen=True, slots=True)
class VerifyReport:
    cases: int
    evidence: int
    audit_entries: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(evidence_dir: Path, db: Database) -> VerifyReport:
    """Check every case's evidence and the audit chain; list what does not match."""
    store = EvidenceStore(evidence_dir)
    problems: list[str] = []
    with db.connection() as conn:
        entries = audit.entries(conn)
        problems += audit.verify_chain(conn)
        recorded = {(e.entity_id, e.data.get("kind"), e.data.get("ref")): e.data.get("sha256")
                    for e in entries if e.action == "evidence_added"}
        created = {e.entity_id for e in entries if e.action == "case_created"}
        cases = case_store.list_cases(conn, include_fused=True)
        replayed = _replay(entries)
        for c in cases:
            if str(c.case_id) not in created:
                problems.append(f"case {c.case_id}: no case_created entry in the audit log")
                continue
            audited = replayed[str(c.case_id)]
            actual = {"rule_id": c.rule_id, "subject_id": c.subject_id,
                      "episode_start": audit.json_roundtrip(c.episode_start),
                      "episode_end": audit.json_roundtrip(c.episode_end), "status": c.status,
                      "evidence_state": c.evidence_state, "fused_into": c.fused_into}
            for key, value in actual.items():
                if audited.get(key) != value:
                    problems.append(f"case {c.case_id}: {key} is {value!r} but the audit log "
                                    f"says {audited.get(key)!r} (changed behind its back)")
        items = case_store.evidence(conn)
        for ev in items:
            where = f"case {ev.case_id} {ev.kind} {ev.ref[:40]}"
            logged = recorded.get((str(ev.case_id), ev.kind, ev.ref))
            if logged is None:
                problems.append(f"{where}: not in the audit log (added behind its back)")
            elif logged != ev.sha256:
                problems.append(f"{where}: hash {ev.sha256[:12]}… differs from the audited "
                                f"{logged[:12]}…")
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
                continue
            content = ev.content or {}
            if audit.sha256_json(content) != ev.sha256:
                problems.append(f"{where}: snapshot does not match its hash (altered)")
            try:
                fresh = series_snapshot(conn, content["device_id"], content["fields"][1:],
                                        datetime.fromisoformat(content["from"]),
                                        datetime.fromisoformat(content["until"]))
            except (KeyError, TypeError, ValueError) as exc:
                problems.append(f"{where}: snapshot unreadable ({exc})")
                continue
            if audit.sha256_json(fresh) != ev.sha256:
                problems.append(f"{where}: readings table no longer matches the snapshot "
                                f"({len(fresh['rows'])} rows now, {len(content.get('rows', []))} "
                                "in the snapshot)")
        conn.rollback()
    return VerifyReport(len(cases), len(items), len(entries), problems)


def _replay(entries: list[audit.AuditEntry]) -> dict[str, dict]:
    """Each case's fields as its audit entries leave them."""
    state: dict[str, dict] = {}
    for e in entries:
        if e.entity != "case":
            continue
        d, c = e.data, state.setdefault(e.entity_id, {})
        if e.action == "case_created":
            c.update(rule_id=d["rule_id"], subject_id=d["subject_id"],
                     episode_start=d["episode_start"], episode_end=d["episode_end"],
                     status="flagged", evidence_state="incomplete", fused_into=None)
        elif e.action in ("case_extended", "case_revised"):
            c.update(episode_start=d["episode_start"], episode_end=d["episode_end"])
        elif e.action == "case_transition":
            c["status"] = d["to"]
        elif e.action == "evidence_state":
            c["evidence_state"] = d["state"]
        elif e.action == "case_fused":
            c["fused_into"] = d["into"]
    return state
