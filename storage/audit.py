"""The append-only, hash-chained audit log.

Each entry's hash is sha256(previous hash + canonical JSON of the entry), so changing,
removing or inserting a row breaks the chain from that row on. The table also refuses
UPDATE and DELETE by trigger (migration 0003); `verify_chain` still recomputes every hash,
so tampering by someone who disabled the trigger is found all the same.

A chain kept in one database cannot show that its own tail was cut off (or that the
whole chain was recomputed after a change): whoever can delete rows can rewrite the last
hash too. So the chain head is anchored outside the database: after each commit that
appended entries, `anchor_pending` appends the head (seq, hash) to an append-only file
under the data directory, written with O_APPEND and fsynced before it returns
(`Database.connection` calls it). `verify_anchor` checks that every anchored head is
still in the chain with the same hash. An officer can also keep a head as a checkpoint
(`citywatch cases checkpoint`) and check it later, which covers someone who can also
change the data directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from storage.errors import StorageError

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
    _unanchored.add(conn)
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


# -- the anchor: the chain head kept outside the database ------------------------------------

ANCHOR_FILE = Path("audit") / "chain-head.jsonl"
_unanchored: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()  # appended, not anchored
_anchor_lock = threading.Lock()
_last_anchored: dict[Path, tuple[int, str]] = {}


@dataclass(frozen=True, slots=True)
class AnchorPoint:
    """A chain head as recorded outside the database: entry `seq` had hash `hash`."""

    seq: int
    hash: str
    at: str = ""

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


def anchor_path(data_dir: Path) -> Path:
    """Where the anchor file of a data directory lives."""
    return data_dir / ANCHOR_FILE


def head(conn: psycopg.Connection) -> AnchorPoint | None:
    """The last entry of the chain (committed data only when called outside a transaction)."""
    row = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return AnchorPoint(row[0], row[1], datetime.now(UTC).isoformat()) if row else None


def anchor_pending(conn: psycopg.Connection, path: Path) -> AnchorPoint | None:
    """If this connection appended entries and has committed since, append the chain head
    to the anchor file at `path` (fsynced). Returns the point written, else None.

    Entries still in an open transaction are not anchored (they may yet be rolled back);
    the connection stays marked and is anchored after a later commit.
    """
    if conn not in _unanchored or conn.closed \
            or conn.info.transaction_status != TransactionStatus.IDLE:
        return None
    point = head(conn)
    conn.rollback()
    if point is None:
        _unanchored.discard(conn)
        return None
    with _anchor_lock:
        if _last_anchored.get(path) != (point.seq, point.hash):
            try:
                write_anchor(path, point)
            except OSError as exc:  # committed but not anchored: say so, retry next commit
                raise StorageError(f"audit entries committed but their head could not be "
                                   f"anchored in {path}: {exc}") from exc
            _last_anchored[path] = (point.seq, point.hash)
    _unanchored.discard(conn)
    return point


def write_anchor(path: Path, point: AnchorPoint) -> None:
    """Append one head to the anchor file and fsync it (and its folder when it is new)."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = canonical_json({"seq": point.seq, "hash": point.hash, "at": point.at}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def read_anchor(path: Path) -> tuple[list[AnchorPoint], list[str]]:
    """The heads recorded in an anchor file, and a line per unreadable line."""
    points: list[AnchorPoint] = []
    problems: list[str] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            d = json.loads(line)
            points.append(AnchorPoint(int(d["seq"]), str(d["hash"]), str(d.get("at", ""))))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"anchor {path.name} line {n} is unreadable ({exc}): the file was "
                            "damaged or edited")
    return points, problems


def parse_checkpoint(text: str) -> AnchorPoint:
    """A checkpoint as `citywatch cases checkpoint` prints it: SEQ:HASH."""
    seq, sep, digest = text.strip().partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise ValueError(f"checkpoint {text!r} is not SEQ:SHA256 (64 hex digits)")
    return AnchorPoint(int(seq), digest.lower())


def verify_anchor(chain: list[AuditEntry], points: list[AnchorPoint], source: str) -> list[str]:
    """One line per anchored head that the chain no longer holds as it was."""
    by_seq = {e.seq: e.hash for e in chain}
    last = chain[-1].seq if chain else 0
    problems = []
    for p in points:
        now = by_seq.get(p.seq)
        if now is None:
            problems.append(
                f"audit #{p.seq} (anchored in {source}{' at ' + p.at if p.at else ''}) is "
                f"missing: the chain now ends at #{last}, so entries were removed from its end"
                if p.seq > last else
                f"audit #{p.seq} (anchored in {source}) is missing from the chain")
        elif now != p.hash:
            problems.append(f"audit #{p.seq} hashes to {now[:12]}… but {source} recorded "
                            f"{p.hash[:12]}…: the chain was rewritten")
    return problems
