"""Numbered SQL migrations, applied in order and recorded in schema_migrations.

Files are storage/migrations/NNNN_name.sql. Each runs in its own transaction under an
advisory lock, so two processes migrating at once apply each file exactly once. A file
whose text changed after it was applied is reported, never silently re-run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from storage.errors import StorageError

MIGRATION_LOCK = 0x63697479  # "city"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationState:
    version: int
    name: str
    applied_at: str | None  # None: pending
    checksum_ok: bool


def available() -> list[Migration]:
    """The migrations shipped with this version of citywatch, in order."""
    out = []
    for entry in resources.files("storage.migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(versions) != len(set(versions)):
        raise StorageError(f"two migration files share a number: {versions}")
    return out


def _ensure_table(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )


def status(conn: psycopg.Connection) -> list[MigrationState]:
    """Every shipped migration with when it was applied (None if pending)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
    applied = {}
    if exists:
        applied = {
            v: (str(at), cs)
            for v, at, cs in conn.execute("SELECT version, applied_at, checksum FROM schema_migrations")
        }
    return [
        MigrationState(m.version, m.name, applied[m.version][0] if m.version in applied else None,
                       m.version not in applied or applied[m.version][1] == m.checksum)
        for m in available()
    ]


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply every pending migration; return those applied now."""
    done: list[Migration] = []
    conn.commit()
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        _ensure_table(conn)
        conn.commit()
        applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        for m in available():
            if m.version in applied:
                continue
            try:
                with conn.transaction():
                    conn.execute(m.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (m.version, m.name, m.checksum),
                    )
            except psycopg.Error as exc:
                raise StorageError(f"migration {m.version:04d}_{m.name} failed: {exc}") from exc
            done.append(m)
        conn.commit()
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        conn.commit()
    return done
