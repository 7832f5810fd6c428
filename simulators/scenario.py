"""Scenario files: a simulated day of fume and dust monitors (and drone telemetry) with
known violations and known bad messages, generated deterministically.

    scenario = load("configs/scenarios/demo-day.yaml")
    for m in scenario.messages():      # pure: no broker, no database
        m.topic_suffix, m.payload, m.at, m.expected

`messages()` yields every message in event-time order: the regular readings of the fleet,
shaped by the injected violations, the bad messages (each with the reason code the
collector must give it) and exact repeats. The same file, day and seed always give the
same bytes. `expected_cases` lists what the rule engine must open (rule id, subject,
episode start = the moment the injected condition begins); `readings()` gives the valid
readings as storage records for tests that skip MQTT.

Event time is local time on `day` in the scenario's timezone; choose a past day (the
default is yesterday), since collectors refuse timestamps from the future.
"""

from __future__ import annotations

import json
import math
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from domain.geo import LocalFrame
from domain.paths import PROJECT_ROOT
from domain.records import Reading, Telemetry
from domain.registry import Registry
from domain.registry import load as load_registry

RULE_IDS = (
    "fume.exceedance", "fume.purifier_off", "fume.device_silent", "dust.pm10_hourly_warning",
    "dust.pm10_hourly_case", "dust.exceedances_15min", "drone.street_vending",
    "drone.bare_soil_uncovered", "drone.muck_truck_uncovered", "drone.garbage_pile",
    "cone.outside_hours", "cone.outside_area", "cone.fallen_not_restored", "cone.fence_missing",
    "cone.no_helmet", "noise.night_limit", "noise.night_peak", "noise.day_limit",
)

# Outcomes a bad message can be built for (reason codes of ingest/errors.py, plus
# "duplicate": an exact repeat, stored once and counted, not dead-lettered).
BAD_KINDS = (
    "not_json", "not_object", "missing_field", "bad_type", "not_finite", "negative",
    "out_of_range", "bad_timestamp", "future_timestamp", "too_old", "unknown_topic",
    "unknown_device", "wrong_device_kind", "payload_too_large", "conflicting_duplicate",
    "duplicate",
)

HHMM = Annotated[str, Field(pattern=r"^\d{2}:\d{2}(:\d{2})?$")]


class ScenarioError(Exception):
    """A scenario file cannot be used; the message names the file and the YAML path."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FleetSpec(_Model):
    merchants: int = Field(50, ge=0, title="Merchants (M-00001 upwards) whose fume monitors report")
    sites: int = Field(10, ge=0, title="Construction sites (S-001 upwards) whose dust monitors report")
    noise_sites: int = Field(0, ge=0, title="Construction sites (S-001 upwards) whose noise "
                             "monitors report")
    interval_s: int = Field(60, ge=1, le=3600, title="Seconds between two readings of one device")


class FlightSpec(_Model):
    drone: str = Field(title="Drone device id (UAV-xx)")
    start: HHMM = Field(title="Take-off, local time")
    minutes: int = Field(30, ge=1, title="Flight duration")
    every_s: int = Field(5, ge=1, title="Seconds between telemetry messages")
    radius_m: float = Field(300.0, gt=0, title="Radius of the circle flown around the area centre")
    alt_m: float = Field(100.0, title="Altitude above ground")


# The monitor kind each injected condition is reported by.
VIOLATION_DEVICE = {"fume_level": "fume", "purifier_off": "fume", "pm10_level": "dust",
                    "noise_level": "noise"}


class ViolationSpec(_Model):
    subject: str = Field(title="Registry subject (merchant or site) whose device misbehaves")
    kind: Literal["fume_level", "purifier_off", "silent", "pm10_level", "noise_level"] = Field(
        title="What the device reports",
        description="fume_level / pm10_level / noise_level: `value` for `minutes`; "
        "purifier_off: fan on, purifier off; silent: no readings at all.")
    start: HHMM = Field(title="Local time the condition begins")
    minutes: int = Field(ge=1, title="How long it lasts")
    value: float | None = Field(None, title="Reported level for *_level kinds")
    expect: list[str] = Field(
        default_factory=list, title="Rule ids this must open (episode start = start)",
        description="Empty when the injection must open no case (e.g. a device whose "
        "calibration has lapsed).")

    @field_validator("expect")
    @classmethod
    def _known_rules(cls, v: list[str]) -> list[str]:
        unknown = [r for r in v if r not in RULE_IDS]
        if unknown:
            raise ValueError(f"unknown rule ids {unknown}; known: {list(RULE_IDS)}")
        return v


class BadSpec(_Model):
    reason: Literal[BAD_KINDS] = Field(title="The outcome the collector must give this message")  # type: ignore[valid-type]
    at: HHMM = Field(title="Local time it is sent (for repeats: the slot repeated)")
    device: str | None = Field(None, title="Device that sends it (default: the fleet's first)")


class ScenarioSpec(_Model):
    name: str = Field(title="Scenario name")
    description: str = Field("", title="What the scenario shows")
    seed: int = Field(1, title="Random seed: the same seed gives the same messages")
    day: date | Literal["yesterday"] = Field(
        "yesterday", title="Simulated local day: an ISO date or 'yesterday'")
    utc_offset_h: float = Field(8.0, title="Local time zone offset (Hangzhou: +8)")
    fume_limit_mg_m3: float = Field(
        2.0, gt=0, title="Limit the normal baseline stays well under (GB 18483-2001)")
    fleet: FleetSpec = Field(default_factory=FleetSpec, title="Reporting devices")
    flights: list[FlightSpec] = Field(default_factory=list, title="Drone flights (telemetry)")
    violations: list[ViolationSpec] = Field(default_factory=list, title="Injected violations")
    bad_messages: list[BadSpec] = Field(default_factory=list, title="Injected bad messages")


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One message a simulated device sends. `expected` is 'valid', 'duplicate' or the
    reason code the collector must dead-letter it with."""

    topic_suffix: str  # after the topic prefix, e.g. "fume/FM-00001"
    payload: bytes
    at: datetime  # event time at which it is sent (pacing), UTC
    expected: str
    device_id: str
    record: Reading | Telemetry | None = None  # the record a valid message stores


@dataclass(frozen=True, slots=True)
class ExpectedCase:
    rule_id: str
    subject_id: str
    episode_start: datetime  # UTC


def _hhmm(value: str) -> time:
    return time.fromisoformat(value)


def _windows(hours: list[str]) -> list[tuple[time, time]]:
    return [(_hhmm(a), _hhmm(b)) for a, b in (h.split("-") for h in hours)]


def in_hours(local: time, hours: list[str]) -> bool:
    """Whether a local time of day falls inside business hours (spans may cross midnight)."""
    for a, b in _windows(hours):
        if (a <= local < b) if a <= b else (local >= a or local < b):
            return True
    return False


def _stable(text: str) -> int:
    return zlib.crc32(text.encode())


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class _Device:
    device_id: str
    kind: str  # a sensor DeviceKind value: fume | dust | noise
    subject_id: str
    hours: list[str]
    background: float


class Scenario:
    """A loaded scenario: the spec, the resolved day and the registry it refers to."""

    def __init__(self, spec: ScenarioSpec, registry: Registry, day: date, source: str):
        self.spec = spec
        self.registry = registry
        self.day = day
        self.source = source
        self.tz = timezone(timedelta(hours=spec.utc_offset_h))
        self.devices = self._fleet()
        kinds_at: dict[str, set[str]] = {}
        for d in self.devices:
            kinds_at.setdefault(d.subject_id, set()).add(d.kind)
        problems = []
        for i, v in enumerate(spec.violations):
            if v.subject not in kinds_at:
                problems.append(f"violations[{i}].subject: {v.subject!r} is not in the fleet")
            elif v.kind != "silent" and VIOLATION_DEVICE[v.kind] not in kinds_at[v.subject]:
                problems.append(f"violations[{i}].kind: {v.kind} needs a "
                                f"{VIOLATION_DEVICE[v.kind]} monitor at {v.subject}, which has "
                                f"{sorted(kinds_at[v.subject])}")
            elif v.kind.endswith("_level") and v.value is None:
                problems.append(f"violations[{i}].value: required for {v.kind}")
        device_ids = {d.device_id for d in self.devices}
        for i, b in enumerate(spec.bad_messages):
            if b.device and b.device not in device_ids:
                problems.append(f"bad_messages[{i}].device: {b.device!r} is not in the fleet")
        known = {d.device_id for d in registry.devices if d.kind == "drone"}
        for i, f in enumerate(spec.flights):
            if f.drone not in known:
                problems.append(f"flights[{i}].drone: {f.drone!r} is not a registered drone")
        if problems:
            raise ScenarioError(f"{source}: " + "; ".join(problems))

    # -- time ------------------------------------------------------------------------------

    def local(self, hhmm: str) -> datetime:
        """A local time of the simulated day as an aware UTC datetime."""
        return datetime.combine(self.day, _hhmm(hhmm), self.tz).astimezone(UTC)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.day, time(0), self.tz).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)

    # -- fleet -----------------------------------------------------------------------------

    def _fleet(self) -> list[_Device]:
        subjects = {s.subject_id: s for s in self.registry.subjects}
        out = []
        for d in sorted(self.registry.devices, key=lambda d: d.device_id):
            s = subjects.get(d.subject_id)
            if s is None:
                continue
            if d.kind == "fume" and s.kind == "merchant" and \
                    int(s.subject_id[2:]) <= self.spec.fleet.merchants:
                out.append(_Device(d.device_id, "fume", s.subject_id,
                                   list(s.props.get("business_hours", [])), 0.0))
            elif d.kind == "dust" and s.kind == "site" and \
                    int(s.subject_id[2:]) <= self.spec.fleet.sites:
                out.append(_Device(d.device_id, "dust", s.subject_id, [],
                                   float(s.props.get("background_pm10_ug_m3", 60))))
            elif d.kind == "noise" and s.kind == "site" and \
                    int(s.subject_id[2:]) <= self.spec.fleet.noise_sites:
                out.append(_Device(d.device_id, "noise", s.subject_id, [], 0.0))
        return out

    @property
    def expected_cases(self) -> list[ExpectedCase]:
        return sorted((ExpectedCase(rule, v.subject, self.local(v.start))
                       for v in self.spec.violations for rule in v.expect),
                      key=lambda c: (c.episode_start, c.rule_id, c.subject_id))

    # -- generation ------------------------------------------------------------------------

    def _violation_at(self, device: _Device, slot: datetime) -> ViolationSpec | None:
        for v in self.spec.violations:
            if v.subject == device.subject_id:
                begin = self.local(v.start)
                if begin <= slot < begin + timedelta(minutes=v.minutes):
                    return v
        return None

    def _reading(self, device: _Device, slot: datetime, rng: random.Random) -> dict[str, Any] | None:
        v = self._violation_at(device, slot)
        if v is not None and v.kind == "silent":
            return None
        if v is not None and VIOLATION_DEVICE[v.kind] != device.kind:
            v = None  # another monitor of the same subject misbehaves
        local = slot.astimezone(self.tz).time()
        if device.kind == "noise":
            # site boundary: works by day, quiet at night (22:00-06:00)
            night = local.hour >= 22 or local.hour < 6
            level = rng.uniform(40, 48) if night else rng.uniform(55, 66)
            if v is not None:
                level = v.value + rng.uniform(-1.0, 1.0)
            return {"noise_dba": round(level, 1)}
        if device.kind == "fume":
            busy = in_hours(local, device.hours)
            limit = self.spec.fume_limit_mg_m3
            level = rng.uniform(0.1, 0.4) * limit if busy else rng.uniform(0.01, 0.05) * limit
            doc = {"fume_mg_m3": round(level, 3), "fan_on": busy, "purifier_on": busy}
            if v is not None and v.kind == "fume_level":
                doc["fume_mg_m3"] = round(v.value * rng.uniform(0.97, 1.03), 3)
                doc["fan_on"] = doc["purifier_on"] = True
            elif v is not None and v.kind == "purifier_off":
                doc["fan_on"], doc["purifier_on"] = True, False
            return doc
        pm10 = device.background + rng.uniform(-10, 10)
        if v is not None and v.kind == "pm10_level":
            pm10 = v.value * rng.uniform(0.98, 1.02)
        return {"pm10_ug_m3": round(pm10, 1), "pm25_ug_m3": round(pm10 * rng.uniform(0.4, 0.6), 1),
                "noise_dba": round(rng.uniform(55, 75), 1), "wind_ms": round(rng.uniform(0, 4), 1)}

    def _offset_s(self, device: _Device) -> int:
        # Devices do not all report on the minute: a fixed per-device phase.
        return _stable(device.device_id) % self.spec.fleet.interval_s

    def _regular(self, rng: random.Random) -> Iterator[SimMessage]:
        step = timedelta(seconds=self.spec.fleet.interval_s)
        slot = self.start
        while slot < self.end:
            for d in self.devices:
                ts = slot + timedelta(seconds=self._offset_s(d))
                doc = self._reading(d, slot, rng)
                if doc is None:
                    continue
                payload = _dumps({"ts": _ms(ts), **doc})
                rec = Reading.of(d.device_id, ts, ts, **doc)
                yield SimMessage(f"{d.kind}/{d.device_id}", payload, ts, "valid", d.device_id, rec)
            slot += step

    def _flights(self) -> Iterator[SimMessage]:
        areas = {s.subject_id: s for s in self.registry.subjects if s.kind == "area"}
        drone_area = {d.device_id: d.subject_id for d in self.registry.devices if d.kind == "drone"}
        for f in self.spec.flights:
            ring = areas[drone_area[f.drone]].geometry["coordinates"][0]
            lon0 = sum(p[0] for p in ring[:-1]) / (len(ring) - 1)
            lat0 = sum(p[1] for p in ring[:-1]) / (len(ring) - 1)
            frame = LocalFrame(lat0, lon0)
            t0 = self.local(f.start)
            n = f.minutes * 60 // f.every_s
            for i in range(n):
                ts = t0 + timedelta(seconds=i * f.every_s)
                angle = 2 * math.pi * i / n
                lat, lon = frame.to_wgs84(f.radius_m * math.cos(angle), f.radius_m * math.sin(angle))
                heading = (math.degrees(-angle) % 360.0)
                doc = {"ts": ts.isoformat().replace("+00:00", "Z"), "lat": round(lat, 7),
                       "lon": round(lon, 7), "alt_m": f.alt_m, "heading_deg": round(heading, 1),
                       "battery_pct": round(100 - 60 * i / n, 1), "mode": "AUTO", "armed": True}
                rec = Telemetry(f.drone, ts, ts, doc["lat"], doc["lon"], f.alt_m,
                                doc["heading_deg"], doc["battery_pct"], "AUTO", True)
                yield SimMessage(f"drone/{f.drone}/telemetry", _dumps(doc), ts, "valid", f.drone,
                                 rec)

    def _bad(self, spec: BadSpec, regular: dict[tuple[str, datetime], SimMessage]) -> SimMessage:
        device = next((d for d in self.devices if d.device_id == spec.device), None) \
            if spec.device else self.devices[0]
        at = self.local(spec.at)
        ts = _ms(at)
        kind, did = device.kind, device.device_id
        good = ({"ts": ts, "fume_mg_m3": 0.5, "fan_on": True, "purifier_on": True} if kind == "fume"
                else {"ts": ts, "pm10_ug_m3": 80.0, "pm25_ug_m3": 40.0})
        value_field = "fume_mg_m3" if kind == "fume" else "pm10_ug_m3"
        topic = f"{kind}/{did}"
        r = spec.reason
        if r in ("conflicting_duplicate", "duplicate"):
            step = self.spec.fleet.interval_s
            slot = self.start + timedelta(seconds=(at - self.start).total_seconds() // step * step)
            slot_ts = slot + timedelta(seconds=self._offset_s(device))
            original = regular.get((did, slot_ts))
            if original is None:
                raise ScenarioError(f"{self.source}: bad_messages {r} at {spec.at}: {did} sends "
                                    f"nothing at that slot to repeat")
            if r == "duplicate":
                return replace(original, expected="duplicate", record=None)
            doc = json.loads(original.payload)
            doc[value_field] = round(doc[value_field] + 1.0, 3)
            return SimMessage(original.topic_suffix, _dumps(doc), slot_ts, r, did)
        payload: bytes
        if r == "not_json":
            payload = b'{"ts": ' + str(ts).encode() + b', "' + value_field.encode() + b'": 0.'
        elif r == "not_object":
            payload = b"[1, 2, 3]"
        elif r == "missing_field":
            payload = _dumps({k: v for k, v in good.items() if k != value_field})
        elif r == "bad_type":
            payload = _dumps(good | {value_field: "high"})
        elif r == "not_finite":
            payload = json.dumps(good | {value_field: float("nan")}).encode()
        elif r == "negative":
            payload = _dumps(good | {value_field: -5.0})
        elif r == "out_of_range":
            payload = _dumps(good | {value_field: 1e6})
        elif r == "bad_timestamp":
            payload = _dumps(good | {"ts": "yesterday at noon"})
        elif r == "future_timestamp":
            payload = _dumps(good | {"ts": "2100-01-01T00:00:00+08:00"})
        elif r == "too_old":
            payload = _dumps(good | {"ts": "2001-01-01T00:00:00+08:00"})
        elif r == "unknown_topic":
            payload, topic = _dumps(good), f"{kind}/{did}/extra"
        elif r == "unknown_device":
            payload, topic = _dumps(good), f"{kind}/{kind[0].upper()}M-99999"
        elif r == "wrong_device_kind":
            other = "dust" if kind == "fume" else "fume"
            payload, topic = _dumps(good), f"{other}/{did}"
        elif r == "payload_too_large":
            payload = _dumps(good | {"padding": "x" * 70_000})
        else:  # pragma: no cover - BAD_KINDS and this chain are kept in step
            raise ScenarioError(f"no generator for {r}")
        return SimMessage(topic, payload, at, r, did)

    def messages(self) -> Iterator[SimMessage]:
        """Every message of the scenario in event-time order (stable for equal times)."""
        rng = random.Random(self.spec.seed)
        regular = list(self._regular(rng))
        by_key = {(m.device_id, m.at): m for m in regular}
        extra = [self._bad(b, by_key) for b in self.spec.bad_messages]
        # Repeats come right after their original: sort keys put them later at equal time.
        merged = [(m.at, 0, i, m) for i, m in enumerate(regular)]
        merged += [(m.at, 1, i, m) for i, m in enumerate(self._flights())]
        merged += [(m.at, 2, i, m) for i, m in enumerate(extra)]
        merged.sort(key=lambda t: t[:3])
        for *_, m in merged:
            yield m

    def readings(self) -> Iterator[Reading]:
        """The valid readings of the scenario as records (received_at = ts)."""
        for m in self.messages():
            if m.expected == "valid" and isinstance(m.record, Reading):
                yield m.record


def resolve_day(value: str | date, today: date | None = None) -> date:
    if isinstance(value, date):
        return value
    today = today or datetime.now(UTC).date()
    if value == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ScenarioError(f"day must be an ISO date or 'yesterday', got {value!r}") from None


def find(name_or_path: str | Path) -> Path:
    """A scenario path as given, or a name under configs/scenarios/."""
    p = Path(name_or_path)
    if p.exists():
        return p
    named = PROJECT_ROOT / "configs" / "scenarios" / f"{p.stem}.yaml"
    if named.exists():
        return named
    raise ScenarioError(f"no scenario file {name_or_path!r} (nor {named})")


def load(path: str | Path, *, day: date | str | None = None, registry: Registry | None = None,
         registry_dir: Path | None = None) -> Scenario:
    """Read and check a scenario file; `day` overrides the file's day."""
    path = find(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = ScenarioSpec.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = ["/".join(str(p) for p in e["loc"]) + f": {e['msg']}" for e in exc.errors()]
        raise ScenarioError(f"{path}: " + "; ".join(problems)) from None
    if registry is None:
        registry = load_registry(registry_dir or PROJECT_ROOT / "configs" / "registry")
    resolved = day if isinstance(day, date) else resolve_day(day or spec.day)
    return Scenario(spec, registry, resolved, str(path))
