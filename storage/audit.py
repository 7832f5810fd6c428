"""The append-only, hash-chained audit log.

Each entry's hash is sha256(previous hash + canonical JSON of the entry), so changing,
removing or inserting a row breaks the chain from that row on. The table also refuses
UPDATE and DELETE by trigger (migration 0003); `verify_chain` still recomputes every hash,
so tampering by someone who disabled the trigger is found all the same.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

GENESIS = "0" * 64
AUDIT_LOCK = 0x61756474  # "audt": one appender at a time keeps seq order = chain order


def canonical_json(value: Any) -> str:
    """The one JSON text of a value that hashes use: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"cannot put {type(value).__name__} into canonical JSON")


def sha256_json(value: Any) -> str:
    """sha256 of the canonical JSON of a value."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at.astimezone(UTC).isoformat(), "actor": self.actor,
                "action": self.action, "entity": self.entity, "entity_id": self.entity_id,
                "data": self.data}


def entry_hash(prev_hash: str, body: dict[str, Any]) -> str:
    """Hash of an entry: covers the previous hash and the entry's canonical JSON."""
    return hashlib.sha256((prev_hash + canonical_json(body)).encode()).hexdigest()


def append(conn: psycopg.Connection, actor: str, action: str, entity: str, entity_id: str,
           data: dict[str, Any]) -> AuditEntry:
    """Append one entry in the caller's transaction (committed with what it records)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))
    last = conn.execute("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    prev = last[0] if last else GENESIS
    seq = conn.execute("SELECT nextval(pg_get_serial_sequence('audit_log', 'seq'))").fetchone()[0]
    # microsecond precision is what timestamptz keeps, so the hash survives the round trip
    at = datetime.now(UTC)
    data = json.loads(canonical_json(data))
    entry = AuditEntry(seq, at, actor, action, entity, str(entity_id), data, prev, "")
    digest = entry_hash(prev, entry.body())
    conn.execute(
        "INSERT INTO audit_log (seq, at, actor, action, entity, entity_id, data, prev_hash, hash)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (seq, at, actor, action, entity, str(entity_id), Jsonb(data), prev, digest))
    return AuditEntry(seq, at, actor, action, entity, str(entity_id), data, prev, digest)


def entries(conn: psycopg.Connection, entity: str | None = None,
            entity_id: str | None = None) -> list[AuditEntry]:
    """Audit entries in chain order, optionally of one entity."""
    where, params = [], []
    if entity:
        where.append("entity = %s")
        params.append(entity)
    if entity_id is not None:
        where.append("entity_id = %s")
        params.append(str(entity_id))
    rows = conn.execute(
        "SELECT seq, at, actor, action, entity, entity_id, data, prev_hash, hash FROM audit_log"
        + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq", params).fetchall()
    return [AuditEntry(*r) for r in rows]


def verify_chain(conn: psycopg.Connection) -> list[str]:
    """Recompute the whole chain; one line per entry that does not match (empty: intact)."""
    problems = []
    prev = GENESIS
    for e in entries(conn):
        if e.prev_hash != prev:
            problems.append(f"audit #{e.seq}: prev_hash {e.prev_hash[:12]}… does not follow "
                            f"the entry before it ({prev[:12]}…): an entry was removed or inserted")
        expected = entry_hash(e.prev_hash, e.body())
        if expected != e.hash:
            problems.append(f"audit #{e.seq} ({e.action} {e.entity} {e.entity_id}): content "
                            f"does not match its hash (altered after it was written)")
        prev = e.hash
    return problems


def json_roundtrip(value: Any) -> Any:
    """A value as it reads back from a jsonb column (for comparisons with stored JSON)."""
    return json.loads(canonical_json(value))
