"""The route table: which decoder and which writer serve each message kind.

A message kind comes from the topic (ingest/decode.py TOPIC_KINDS). A route names the
registry kind its device must have, a pure `decode(message, config) -> record` that raises
`Rejected`, and a `write(conn, accepted) -> WriteOutcome` that stores a batch of decoded
records inside the collector's transaction (the collector commits, then acknowledges).
A kind without a route is dead-lettered as `unsupported`. Another part adds its kinds by
adding entries to ROUTES (the frame kinds `cone_frame` and `drone_frame` belong to the
frame pipeline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from domain.sensors import SENSOR_KINDS, SensorKind
from ingest import decode, frames
from ingest.batch_types import Accepted, WriteOutcome
from ingest.errors import Rejected
from storage import readings

if TYPE_CHECKING:
    from ingest.config import IngestSetup


Decoder = Callable[[decode.Message, "IngestSetup"], Any]
Writer = Callable[[psycopg.Connection, Sequence[Accepted]], WriteOutcome]


@dataclass(frozen=True, slots=True)
class Route:
    kind: str
    device_kind: str | None  # registry kind the sender must have; None: any registered device
    decode: Decoder
    write: Writer


def _conflicts(result: readings.WriteResult) -> tuple[tuple[int, Rejected], ...]:
    return tuple((i, Rejected("conflicting_duplicate",
                              "same device and ts already stored with other values"))
                 for i in result.conflicts)


def write_readings(conn: psycopg.Connection, items: Sequence[Accepted]) -> WriteOutcome:
    """Readings go in idempotently; a changed repeat of a stored reading is refused."""
    result = readings.insert_readings(conn, [a.record for a in items])
    return WriteOutcome(result.inserted, result.duplicates, _conflicts(result))


def write_telemetry(conn: psycopg.Connection, items: Sequence[Accepted]) -> WriteOutcome:
    result = readings.insert_telemetry(conn, [a.record for a in items])
    return WriteOutcome(result.inserted, result.duplicates, _conflicts(result))


def write_status(conn: psycopg.Connection, items: Sequence[Accepted]) -> WriteOutcome:
    readings.upsert_device_status(conn, [a.record for a in items])
    return WriteOutcome(len(items))


def _reading_route(kind: SensorKind) -> Route:
    return Route(kind.kind.value, kind.kind.value,
                 lambda m, c: decode.decode_reading(kind, m, c.ingest), write_readings)


ROUTES: dict[str, Route] = {
    **{name: _reading_route(kind) for name, kind in SENSOR_KINDS.items()},
    "telemetry": Route("telemetry", "drone",
                       lambda m, c: decode.decode_telemetry(m, c.ingest), write_telemetry),
    "status": Route("status", None, lambda m, c: decode.decode_status(m, c.ingest), write_status),
    "cone_frame": Route("cone_frame", "cone_camera", frames.decode_frame, frames.write_frames),
    "drone_frame": Route("drone_frame", "drone", frames.decode_frame, frames.write_frames),
}
