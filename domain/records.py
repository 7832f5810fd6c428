"""The typed records that cross part boundaries (a dataclass in, a dataclass out).

Device (event) time and receive time are always kept apart: `ts` is what the device
said, `received_at` is when a collector got it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from domain.sensors import READING_FIELDS


@dataclass(frozen=True, slots=True)
class Subject:
    """A registered party or place: merchant, construction site, road-works permit or area."""

    subject_id: str
    kind: str  # merchant | site | permit | area
    name: str
    area_id: str | None
    geometry: dict[str, Any]  # GeoJSON geometry, WGS84
    props: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Device:
    """A registered device with its certification and calibration validity."""

    device_id: str
    kind: str  # a DeviceKind value (domain/vocabulary.py)
    subject_id: str | None
    model: str | None = None
    certificate_no: str | None = None
    certified_from: date | None = None
    certified_until: date | None = None
    calibrated_on: date | None = None
    calibration_due: date | None = None
    props: dict[str, Any] = field(default_factory=dict)

    def valid_at(self, when: date) -> list[str]:
        """What makes this device's data unusable as evidence on `when` (empty: nothing)."""
        problems = []
        if self.certified_from is None or self.certified_until is None:
            problems.append("no certification on record")
        elif not (self.certified_from <= when <= self.certified_until):
            problems.append(
                f"certification valid {self.certified_from}..{self.certified_until}, not on {when}")
        if self.calibration_due is None:
            problems.append("no calibration on record")
        elif when > self.calibration_due or (self.calibrated_on and when < self.calibrated_on):
            problems.append(f"calibration due {self.calibration_due}, lapsed on {when}")
        return problems


@dataclass(frozen=True, slots=True)
class Reading:
    """One sensor reading: its values keyed by the field names of its sensor kind
    (domain/sensors.py); a field the kind lacks or the message left out is absent."""

    device_id: str
    ts: datetime
    received_at: datetime
    values: Mapping[str, float | bool | None]

    @classmethod
    def of(cls, device_id: str, ts: datetime, received_at: datetime,
           **values: float | bool | None) -> Reading:
        """A reading from field keywords (`Reading.of(d, ts, rx, fume_mg_m3=1.2, ...)`);
        None values are left out, unknown fields refused."""
        unknown = set(values) - set(READING_FIELDS)
        if unknown:
            raise TypeError(f"unknown reading fields {sorted(unknown)}")
        return cls(device_id, ts, received_at, {k: v for k, v in values.items() if v is not None})

    def __getattr__(self, name: str) -> float | bool | None:
        # reading.fume_mg_m3: a declared field the reading lacks is None
        if name in READING_FIELDS:
            return self.values.get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def row(self) -> tuple:
        """The reading as a row of domain.sensors.READING_COLUMNS."""
        get = self.values.get
        return (self.device_id, self.ts, self.received_at, *[get(f) for f in READING_FIELDS])


@dataclass(frozen=True, slots=True)
class Telemetry:
    drone_id: str
    ts: datetime
    received_at: datetime
    lat: float
    lon: float
    alt_m: float
    heading_deg: float | None = None
    battery_pct: float | None = None
    mode: str | None = None
    armed: bool | None = None


TELEMETRY_COLUMNS = (
    "drone_id", "ts", "received_at", "lat", "lon", "alt_m", "heading_deg", "battery_pct",
    "mode", "armed",
)


@dataclass(frozen=True, slots=True)
class Detection:
    """One object a detector found in a frame, as stored and as rules read it: class,
    confidence, box in pixels, where it is on the ground and whose zone it is in. (The
    run-time detector's column-oriented result, detectors.base.Detections, becomes these
    when stored.)"""

    class_id: int
    class_name: str
    confidence: float
    x1: float
    y1: float
    x2: float
    y2: float
    lat: float | None = None
    lon: float | None = None
    subject_id: str | None = None
    zone_kind: str = "none"  # frontage | site | permit | none


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be stored, kept byte for byte with the reason."""

    received_at: datetime
    topic: str
    payload: bytes
    reason: str  # a reason code, e.g. not_json, bad_type, unknown_device
    detail: str = ""
    collector_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device's last will / birth message: `online` or `offline`, as the collector saw it."""

    device_id: str
    status: str  # online | offline
    changed_at: datetime
