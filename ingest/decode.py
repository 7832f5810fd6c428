"""Topic routing and validation of sensor, telemetry and status messages.

Each decoder takes the raw payload and returns a storage record, or raises `Rejected`
with a reason code of ingest/errors.py. Decoders are pure: no broker, no database, so
tests and simulators use them directly. Which decoder serves which topic is the route
table of ingest/routes.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from domain.records import DeviceStatus, Reading, Telemetry
from domain.sensors import SENSOR_KINDS, SensorKind
from ingest import fastpath, jsontext
from ingest.config import IngestConfig
from ingest.errors import Rejected

# (topic segments after the device id) -> message kind, keyed by the first segment. Each
# sensor kind publishes on its own segment (domain/sensors.py).
TOPIC_KINDS: dict[tuple[str, str | None], str] = {
    **{(kind, None): kind for kind in SENSOR_KINDS},
    ("status", None): "status",
    ("drone", "telemetry"): "telemetry",
    ("drone", "frame"): "drone_frame",
    ("cone", "frame"): "cone_frame",
}


@dataclass(frozen=True, slots=True)
class Address:
    """What a topic says: the message kind and the device that sent it."""

    kind: str
    device_id: str


@dataclass(frozen=True, slots=True)
class Message:
    """A message as the collector received it; decoders turn it into a record."""

    topic: str
    payload: bytes
    received_at: datetime
    address: Address


def topic_for(prefix: str, kind: str, device_id: str) -> str:
    """The topic a device of `kind` publishes on (the inverse of parse_topic)."""
    for (first, sub), k in TOPIC_KINDS.items():
        if k == kind:
            return "/".join(p for p in (prefix, first, device_id, sub) if p)
    raise ValueError(f"unknown message kind {kind!r}")


def parse_topic(prefix: str, topic: str) -> Address:
    """Split `<prefix>/<kind>/<device>[/<sub>]`; raise Rejected('unknown_topic') otherwise."""
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        raise Rejected("unknown_topic", f"{topic!r} is not under {prefix!r}")
    parts = topic[len(head):].split("/")
    if len(parts) in (2, 3) and parts[1]:
        kind = TOPIC_KINDS.get((parts[0], parts[2] if len(parts) == 3 else None))
        if kind:
            return Address(kind, parts[1])
    raise Rejected("unknown_topic", f"{topic!r} matches none of the contract's topics")


# -- field helpers ------------------------------------------------------------------------

def parse_json_object(payload: bytes, limit: int) -> dict[str, Any]:
    """The payload as a JSON object (strict, bounded: ingest/jsontext.py), checked against
    the size limit."""
    if len(payload) > limit:
        raise Rejected("payload_too_large", f"{len(payload)} bytes, the limit is {limit}")
    doc = jsontext.loads(payload)
    if not isinstance(doc, dict):
        raise Rejected("not_object", f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _present(doc: dict[str, Any], name: str, required: bool) -> Any:
    value = doc.get(name)
    if value is None and required:
        raise Rejected("missing_field", f"{name!r} is required")
    return value


def number(doc: dict[str, Any], name: str, *, low: float | None = None, high: float | None = None,
           required: bool = True, non_negative: bool = False) -> float | None:
    """A finite JSON number within [low, high]; booleans are not numbers."""
    value = _present(doc, name, required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected("bad_type", f"{name!r} must be a number, got {type(value).__name__} {value!r}")
    try:
        value = float(value)
    except OverflowError:
        raise Rejected("out_of_range", f"{name!r} is too large for a number") from None
    if not math.isfinite(value):
        raise Rejected("not_finite", f"{name!r} is {value}")
    if non_negative and value < 0:
        raise Rejected("negative", f"{name!r} is {value}, it cannot be negative")
    if (low is not None and value < low) or (high is not None and value > high):
        raise Rejected("out_of_range", f"{name!r} is {value}, expected {low}..{high}")
    return value


def boolean(doc: dict[str, Any], name: str, *, required: bool = True) -> bool | None:
    value = _present(doc, name, required)
    if value is not None and not isinstance(value, bool):
        raise Rejected("bad_type", f"{name!r} must be true or false, got {value!r}")
    return value


def text(doc: dict[str, Any], name: str, *, required: bool = True, max_len: int = 64) -> str | None:
    value = _present(doc, name, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Rejected("bad_type", f"{name!r} must be a string, got {type(value).__name__}")
    if len(value) > max_len or "\x00" in value:
        raise Rejected("out_of_range", f"{name!r} must be at most {max_len} characters, no NUL")
    return value


# RFC 3339 section 5.6 date-time: extended format, seconds required, an offset required.
# datetime.fromisoformat alone also takes ISO 8601's week dates, ordinal dates and basic
# format (20261126T035900Z), which the contract does not allow.
_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: str, name: str) -> datetime:
    m = _RFC3339.fullmatch(value)
    if m is None:
        if len(value) > 40:
            value = value[:40] + "..."
        if re.fullmatch(r"[\d:.T -]+", value):
            raise Rejected("bad_timestamp", f"{name!r} {value!r} has no UTC offset")
        raise Rejected("bad_timestamp", f"{name!r} {value!r} is not RFC 3339")
    date, time_, frac, offset = m.groups()
    frac = (frac or "")[:7]  # microseconds: Python keeps six digits
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{date}T{time_}{frac}{offset}")
    except ValueError:
        raise Rejected("bad_timestamp", f"{name!r} {value!r} is not a valid date and time") \
            from None


@lru_cache(maxsize=16)
def _window(max_future_s: float, retention_days: int) -> tuple[timedelta, timedelta]:
    return timedelta(seconds=max_future_s), timedelta(days=retention_days)


def timestamp(doc: dict[str, Any], received_at: datetime, cfg: IngestConfig,
              name: str = "ts") -> datetime:
    """Device time: RFC 3339 with an offset or integer epoch ms, inside the accepted window."""
    value = _present(doc, name, True)
    if isinstance(value, bool):
        raise Rejected("bad_timestamp", f"{name!r} is a boolean")
    if isinstance(value, int):
        try:
            ts = datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise Rejected("bad_timestamp", f"{name!r} epoch ms {value} is not a date") from None
    elif isinstance(value, str):
        ts = _rfc3339(value, name)
    else:
        raise Rejected("bad_timestamp",
                       f"{name!r} must be RFC 3339 text or epoch ms, got {type(value).__name__}")
    future, old = _window(cfg.max_future_s, cfg.retention_days)
    if ts - received_at > future:
        raise Rejected("future_timestamp",
                       f"{name!r} {ts.isoformat()} is after receive time {received_at.isoformat()}")
    if received_at - ts > old:
        raise Rejected("too_old", f"{name!r} {ts.isoformat()} is older than "
                                  f"{cfg.retention_days} days")
    return ts


# -- decoders -----------------------------------------------------------------------------

def decode_reading(kind: SensorKind, msg: Message, cfg: IngestConfig, *,
                   fast: bool = True) -> Reading:
    """A reading of a sensor kind, every field checked as its declaration says: numbers
    finite, not negative and plausible (the declared ceiling, or the configured one),
    booleans true or false, required fields present.

    A payload that is exactly the declared reading takes the fast path (ingest/fastpath.py:
    one typed parse); any other goes through the checks below, which name the reason
    (`fast=False`: always, as the tests that hold both paths to one verdict do)."""
    if fast and len(msg.payload) <= cfg.max_payload_bytes:
        fast = fastpath.decode(kind, msg.payload, cfg.plausible_max)
        if fast is not None:
            ts = timestamp({"ts": fast[0]}, msg.received_at, cfg)
            return Reading(msg.address.device_id, ts, msg.received_at, fast[1])
    doc = parse_json_object(msg.payload, cfg.max_payload_bytes)
    ts = timestamp(doc, msg.received_at, cfg)
    values: dict[str, float | bool] = {}
    for f in kind.fields:
        if f.type == "number":
            value = number(doc, f.name, high=cfg.plausible_max.get(f.name, f.max),
                           required=f.required, non_negative=True)
        else:
            value = boolean(doc, f.name, required=f.required)
        if value is not None:
            values[f.name] = value
    return Reading(msg.address.device_id, ts, msg.received_at, values)


def decode_telemetry(msg: Message, cfg: IngestConfig) -> Telemetry:
    """A drone position report."""
    doc = parse_json_object(msg.payload, cfg.max_payload_bytes)
    ts = timestamp(doc, msg.received_at, cfg)
    low, high = cfg.drone_alt_range_m
    return Telemetry(
        drone_id=msg.address.device_id, ts=ts, received_at=msg.received_at,
        lat=number(doc, "lat", low=-90, high=90),
        lon=number(doc, "lon", low=-180, high=180),
        alt_m=number(doc, "alt_m", low=low, high=high),
        heading_deg=number(doc, "heading_deg", low=0, high=360, required=False),
        battery_pct=number(doc, "battery_pct", low=0, high=100, required=False),
        mode=text(doc, "mode", required=False),
        armed=boolean(doc, "armed", required=False),
    )


STATUS_VALUES = ("online", "offline")


def decode_status(msg: Message, cfg: IngestConfig) -> DeviceStatus:
    """A device's retained birth / last-will message: the bare text online or offline."""
    if len(msg.payload) > 64:
        raise Rejected("payload_too_large", f"{len(msg.payload)} bytes for a status message")
    value = msg.payload.decode("utf-8", errors="replace").strip()
    if value not in STATUS_VALUES:
        raise Rejected("out_of_range", f"status must be one of {STATUS_VALUES}, got {value[:20]!r}")
    return DeviceStatus(msg.address.device_id, value, msg.received_at)
