"""Test data for rules: readings and detections written through the storage functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.records import Detection, Reading
from storage import frames as frame_store
from storage import readings as reading_store
from storage.frames import Frame, ModelInfo

TZ = ZoneInfo("Asia/Shanghai")
MODEL = ModelInfo("test", "1", "0" * 64)


def local(day: str, hhmm: str) -> datetime:
    """An aware datetime at local (Asia/Shanghai) time."""
    return datetime.fromisoformat(f"{day}T{hhmm}:00").replace(tzinfo=TZ)


def fume_series(device: str, start: datetime, minutes: int, value, *, fan=True, purifier=True,
                step_s: int = 60) -> list[Reading]:
    """One reading per `step_s` from `start`; `value(i)` or a constant mg/m³."""
    out = []
    for i in range(minutes * 60 // step_s):
        ts = start + timedelta(seconds=i * step_s)
        v = value(i) if callable(value) else value
        f = fan(i) if callable(fan) else fan
        p = purifier(i) if callable(purifier) else purifier
        out.append(Reading.of(device, ts, ts + timedelta(seconds=1), fume_mg_m3=v, fan_on=f,
                           purifier_on=p))
    return out


def dust_series(device: str, start: datetime, minutes: int, value) -> list[Reading]:
    out = []
    for i in range(minutes):
        ts = start + timedelta(minutes=i)
        v = value(i) if callable(value) else value
        out.append(Reading.of(device, ts, ts + timedelta(seconds=1), pm10_ug_m3=v,
                              pm25_ug_m3=v / 2))
    return out


def store_readings(db, readings: list[Reading]) -> None:
    with db.connection() as conn:
        reading_store.copy_readings(conn, readings)
        conn.commit()


def store_frame(db, source_kind: str, source_id: str, ts: datetime,
                detections: list[tuple], *, fit: bool = True, store=None) -> str:
    """A processed frame with detections [(class, confidence, subject_id, zone_kind[, lat, lon])];
    with an EvidenceStore its (stand-in) image bytes are stored under their hash."""
    image = f"image of {source_id} at {ts.astimezone(UTC).isoformat()}".encode()
    sha = store.put(image) if store else frame_sha(source_id, ts)
    frame = Frame(sha, ts, ts, source_kind, source_id, 640, 480, 1000,
                  fit_as_evidence=fit, unfit_reason=None if fit else "blurred")
    with db.connection() as conn:
        frame_store.insert_frames(conn, [frame])
        conn.commit()
        claimed = [c for c in frame_store.claim(conn, "test-worker", 1000) if c.frame.sha256 == sha]
        dets = [Detection(0, d[0], d[1], 0, 0, 10, 10, *(d[4:6] if len(d) > 4 else (None, None)),
                          d[2], d[3]) for d in detections]
        frame_store.complete(conn, claimed[0], dets, MODEL)
    return sha


def frame_sha(source_id: str, ts: datetime) -> str:
    import hashlib
    return hashlib.sha256(f"{source_id}@{ts.astimezone(UTC).isoformat()}".encode()).hexdigest()
