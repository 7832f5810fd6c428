"""The typed records that cross part boundaries (a dataclass in, a dataclass out).

Device (event) time and receive time are always kept apart: `ts` is what the device
said, `received_at` is when a collector got it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


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
    kind: str  # fume | dust | cone_camera | drone
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
    """One sensor reading (fume or dust fields set, the others None)."""

    device_id: str
    ts: datetime
    received_at: datetime
    fume_mg_m3: float | None = None
    fan_on: bool | None = None
    purifier_on: bool | None = None
    pm10_ug_m3: float | None = None
    pm25_ug_m3: float | None = None
    tsp_ug_m3: float | None = None
    noise_dba: float | None = None
    wind_ms: float | None = None


READING_COLUMNS = (
    "device_id", "ts", "received_at", "fume_mg_m3", "fan_on", "purifier_on",
    "pm10_ug_m3", "pm25_ug_m3", "tsp_ug_m3", "noise_dba", "wind_ms",
)


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
