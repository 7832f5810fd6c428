"""Registry tables: subjects and devices, synchronised from the registry files."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg.types.json import Jsonb

from domain.records import Device, Subject


def sync(conn: psycopg.Connection, subjects: Iterable[Subject], devices: Iterable[Device]) -> tuple[int, int]:
    """Upsert every subject and device (the files are the source of truth); return counts."""
    subjects, devices = list(subjects), list(devices)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO subjects (subject_id, kind, name, area_id, geometry, props) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (subject_id) DO UPDATE SET "
            "kind = EXCLUDED.kind, name = EXCLUDED.name, area_id = EXCLUDED.area_id, "
            "geometry = EXCLUDED.geometry, props = EXCLUDED.props, updated_at = now() "
            "WHERE (subjects.kind, subjects.name, subjects.area_id, subjects.geometry, subjects.props) "
            "IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.name, EXCLUDED.area_id, EXCLUDED.geometry, EXCLUDED.props)",
            [(s.subject_id, s.kind, s.name, s.area_id, Jsonb(s.geometry), Jsonb(s.props))
             for s in subjects])
        cur.executemany(
            "INSERT INTO devices (device_id, kind, subject_id, model, certificate_no, certified_from,"
            " certified_until, calibrated_on, calibration_due, props)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (device_id) DO UPDATE SET"
            " kind = EXCLUDED.kind, subject_id = EXCLUDED.subject_id, model = EXCLUDED.model,"
            " certificate_no = EXCLUDED.certificate_no, certified_from = EXCLUDED.certified_from,"
            " certified_until = EXCLUDED.certified_until, calibrated_on = EXCLUDED.calibrated_on,"
            " calibration_due = EXCLUDED.calibration_due, props = EXCLUDED.props, updated_at = now()"
            " WHERE (devices.kind, devices.subject_id, devices.model, devices.certificate_no,"
            " devices.certified_from, devices.certified_until, devices.calibrated_on,"
            " devices.calibration_due, devices.props) IS DISTINCT FROM (EXCLUDED.kind,"
            " EXCLUDED.subject_id, EXCLUDED.model, EXCLUDED.certificate_no, EXCLUDED.certified_from,"
            " EXCLUDED.certified_until, EXCLUDED.calibrated_on, EXCLUDED.calibration_due,"
            " EXCLUDED.props)",
            [(d.device_id, d.kind, d.subject_id, d.model, d.certificate_no, d.certified_from,
              d.certified_until, d.calibrated_on, d.calibration_due, Jsonb(d.props))
             for d in devices])
    conn.commit()
    return len(subjects), len(devices)


def _device(row: tuple) -> Device:
    return Device(*row)


_DEVICE_COLS = ("device_id, kind, subject_id, model, certificate_no, certified_from, "
                "certified_until, calibrated_on, calibration_due, props")


def devices(conn: psycopg.Connection, kind: str | None = None) -> list[Device]:
    q = f"SELECT {_DEVICE_COLS} FROM devices"
    rows = conn.execute(q + " WHERE kind = %s ORDER BY device_id", (kind,)) if kind else \
        conn.execute(q + " ORDER BY device_id")
    return [_device(r) for r in rows]


def device(conn: psycopg.Connection, device_id: str) -> Device | None:
    row = conn.execute(f"SELECT {_DEVICE_COLS} FROM devices WHERE device_id = %s",
                       (device_id,)).fetchone()
    return _device(row) if row else None


def subjects(conn: psycopg.Connection, kind: str | None = None) -> list[Subject]:
    q = "SELECT subject_id, kind, name, area_id, geometry, props FROM subjects"
    rows = conn.execute(q + " WHERE kind = %s ORDER BY subject_id", (kind,)) if kind else \
        conn.execute(q + " ORDER BY subject_id")
    return [Subject(*r) for r in rows]
