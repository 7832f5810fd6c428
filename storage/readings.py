"""Readings, drone telemetry, device status and dead letters: the collector's tables.

Writes are idempotent by identity: a reading is unique per (device_id, ts), telemetry per
(drone_id, ts). A batch is COPYed into a session-local staging table, then moved with
INSERT ... SELECT ... ON CONFLICT DO NOTHING, and rows whose key is already stored with
*other* values are reported back as conflicts so the caller can dead-letter them: a stored
reading is never overwritten, and a changed one is never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from operator import attrgetter

import psycopg
from psycopg import sql

from domain.records import (
    TELEMETRY_COLUMNS,
    DeadLetter,
    DeviceStatus,
    Reading,
    Telemetry,
)
from domain.sensors import READING_COLUMNS, READING_FIELDS


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What became of a batch: rows new to the table, exact repeats, and the indexes (into
    the input) of rows whose key is stored with different values."""

    inserted: int
    duplicates: int
    conflicts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    ignore: tuple[str, ...] = ("received_at",)  # differences that do not make a conflict

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in self.key and c not in self.ignore)


READINGS = _Table("readings", READING_COLUMNS, ("device_id", "ts"))
TELEMETRY = _Table("telemetry", TELEMETRY_COLUMNS, ("drone_id", "ts"))
# dataclasses.astuple deep-copies every field: far slower than the COPY it feeds.
_telemetry_row = attrgetter(*TELEMETRY_COLUMNS)


def _idents(names: Iterable[str], qualifier: str | None = None) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.Identifier(qualifier, n) if qualifier else sql.Identifier(n) for n in names)


@cache
def _statements(table: _Table) -> dict[str, sql.Composed]:
    """The staged insert's statements for one table, composed once."""
    stage = sql.Identifier(f"{table.name}_stage")
    target = sql.Identifier(table.name)
    cols = _idents(table.columns)
    f = {"stage": stage, "target": target, "cols": cols, "key": _idents(table.key)}
    return {
        # one round trip: the stage exists, and is empty (a batch halved under savepoints
        # stages again in the same transaction; ON COMMIT empties it for the next one)
        "prepare": sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {stage} (seq integer NOT NULL, LIKE {target}) "
            "ON COMMIT DELETE ROWS; DELETE FROM {stage}").format(**f),
        "copy": sql.SQL("COPY {stage} (seq, {cols}) FROM STDIN").format(**f),
        "insert": sql.SQL(
            "WITH ins AS (INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} ORDER BY seq "
            "ON CONFLICT ({key}) DO NOTHING RETURNING 1) SELECT count(*) FROM ins").format(**f),
        "conflicts": sql.SQL(
            "SELECT s.seq FROM {stage} s JOIN {target} t USING ({key}) "
            "WHERE ({sv}) IS DISTINCT FROM ({tv}) ORDER BY s.seq").format(
                sv=_idents(table.values, "s"), tv=_idents(table.values, "t"), **f),
    }


def _staged_insert(conn: psycopg.Connection, table: _Table, rows: Sequence[tuple]) -> WriteResult:
    if not rows:
        return WriteResult(0, 0, ())
    q = _statements(table)
    with conn.cursor() as cur:
        cur.execute(q["prepare"])
        with cur.copy(q["copy"]) as copy:
            for i, row in enumerate(rows):
                copy.write_row((i, *row))
        inserted = cur.execute(q["insert"]).fetchone()[0]
        # Every row new: nothing can conflict, skip the comparison join.
        conflicts = () if inserted == len(rows) else tuple(
            seq for (seq,) in cur.execute(q["conflicts"]))
    return WriteResult(inserted, len(rows) - inserted - len(conflicts), conflicts)


def insert_readings(conn: psycopg.Connection, readings: Sequence[Reading]) -> WriteResult:
    """Store readings idempotently inside the caller's transaction (the caller commits)."""
    return _staged_insert(conn, READINGS, [r.row() for r in readings])


def insert_telemetry(conn: psycopg.Connection, points: Sequence[Telemetry]) -> WriteResult:
    """Store drone telemetry idempotently inside the caller's transaction."""
    return _staged_insert(conn, TELEMETRY, [_telemetry_row(t) for t in points])


def copy_readings(conn: psycopg.Connection, readings: Iterable[Reading]) -> int:
    """Bulk-load readings that are known to be new (bench and test fixtures): a plain COPY,
    no duplicate handling; a repeated key fails the whole COPY. Returns rows written."""
    n = 0
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY readings ({}) FROM STDIN").format(
            _idents(READING_COLUMNS))) as copy:
        for r in readings:
            copy.write_row(r.row())
            n += 1
    return n


DEAD_LETTER_COLUMNS = ("received_at", "topic", "payload", "reason", "detail", "collector_id")


def insert_dead_letters(conn: psycopg.Connection, letters: Sequence[DeadLetter]) -> int:
    """Keep refused messages byte for byte with their reason, in the caller's transaction."""
    if not letters:
        return 0
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY dead_letters ({}) FROM STDIN").format(
            _idents(DEAD_LETTER_COLUMNS))) as copy:
        for d in letters:
            copy.write_row((d.received_at, d.topic, d.payload, d.reason,
                            d.detail.replace("\x00", "\\0"), d.collector_id))
    return len(letters)


def upsert_device_status(conn: psycopg.Connection, statuses: Sequence[DeviceStatus]) -> int:
    """Record online / offline changes; an older message never overrides a newer one."""
    if not statuses:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO device_status (device_id, status, changed_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (device_id) DO UPDATE SET status = EXCLUDED.status, "
            "changed_at = EXCLUDED.changed_at "
            "WHERE device_status.status IS DISTINCT FROM EXCLUDED.status "
            "AND device_status.changed_at <= EXCLUDED.changed_at",
            [(s.device_id, s.status, s.changed_at) for s in statuses])
    return len(statuses)


def device_kinds(conn: psycopg.Connection) -> dict[str, str]:
    """device_id -> kind for every registered device (what collectors validate against)."""
    return dict(conn.execute("SELECT device_id, kind FROM devices").fetchall())


def device_status(conn: psycopg.Connection) -> dict[str, DeviceStatus]:
    return {r[0]: DeviceStatus(*r) for r in conn.execute(
        "SELECT device_id, status, changed_at FROM device_status")}


@dataclass(frozen=True, slots=True)
class ReadingSummary:
    """Row count and order-independent sums of values: two stores hold the same readings
    exactly when these agree (used by tests and the benchmark to prove exactly-once)."""

    count: int
    devices: int
    fume_sum: float
    pm10_sum: float
    key_checksum: int


def reading_summary(conn: psycopg.Connection, device_prefix: str = "") -> ReadingSummary:
    row = conn.execute(
        "SELECT count(*), count(DISTINCT device_id), coalesce(sum(fume_mg_m3), 0), "
        "coalesce(sum(pm10_ug_m3), 0), "
        "coalesce(sum(('x' || left(md5(device_id || extract(epoch FROM ts)::text), 15))"
        "::bit(60)::bigint), 0) "
        "FROM readings WHERE device_id LIKE %s", (device_prefix + "%",)).fetchone()
    return ReadingSummary(int(row[0]), int(row[1]), float(row[2]), float(row[3]), int(row[4]))


def readings_for(conn: psycopg.Connection, device_id: str) -> list[Reading]:
    """Every stored reading of one device in event-time order."""
    cols = _idents(READING_COLUMNS)
    return [Reading(r[0], r[1], r[2],
                    {k: v for k, v in zip(READING_FIELDS, r[3:], strict=True) if v is not None})
            for r in conn.execute(sql.SQL(
                "SELECT {} FROM readings WHERE device_id = %s ORDER BY ts").format(cols),
                (device_id,))]


def count_rows(conn: psycopg.Connection, table: str) -> int:
    """Rows in one of this module's tables (readings, telemetry, dead_letters, device_status)."""
    if table not in ("readings", "telemetry", "dead_letters", "device_status"):
        raise ValueError(f"not a collector table: {table!r}")
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]


def dead_letters(conn: psycopg.Connection, reason: str | None = None) -> list[DeadLetter]:
    """Stored dead letters, oldest first, optionally of one reason."""
    q = ("SELECT received_at, topic, payload, reason, detail, collector_id FROM dead_letters "
         "WHERE %s::text IS NULL OR reason = %s ORDER BY id")
    return [DeadLetter(r[0], r[1], bytes(r[2]), r[3], r[4], r[5])
            for r in conn.execute(q, (reason, reason))]


def dead_letter_counts(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason"))
