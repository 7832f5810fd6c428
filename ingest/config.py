"""Broker and collector settings (the `mqtt:` and `ingest:` sections)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from detectors.config import DetectorConfig
from domain.sensors import READING_FIELDS


class MqttConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None,
        title="Broker URL",
        description="mqtt://host:1883 or mqtts://user:password@host:8883 (TLS). Empty: a private "
        "Mosquitto (or an embedded broker) is started on a free port. Overridden by "
        "CITYWATCH_MQTT_URL. Credentials come from the URL only.",
    )
    topic_prefix: str = Field("citywatch/v1", title="Topic prefix")
    client_id: str = Field(
        "citywatch-collector-1",
        title="Collector client id",
        description="Fixed id so the broker keeps the persistent session (queued QoS 1 messages) "
        "across restarts. Each collector process needs its own.",
    )
    shared_group: str | None = Field(
        None,
        title="Shared subscription group",
        description="Collectors subscribe to $share/<group>/<prefix>/# and the broker splits "
        "the stream. Only for brokers that keep shared subscriptions across a restart: "
        "Mosquitto 2.0 does not, and drops what is published before collectors re-subscribe. "
        "Empty (default): plain persistent subscriptions, split over collector processes by "
        "device (ingest/layout.py).",
    )
    protocol: str = Field(
        "5",
        pattern="^(5|3.1.1)$",
        title="MQTT protocol version",
        description="MQTT 5 lets the collector announce a Receive Maximum above Mosquitto's "
        "20-message in-flight default, which batching needs.",
    )
    receive_maximum: int = Field(
        1000,
        ge=1,
        le=65535,
        title="Receive Maximum",
        description="Unacknowledged QoS 1 messages the broker may send before waiting for acks.",
    )
    session_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=0,
        title="Session expiry (s)",
        description="How long the broker keeps the collector's session (subscriptions and queued "
        "messages) while it is disconnected (MQTT 5 Session Expiry Interval).",
    )
    keepalive_s: int = Field(30, ge=5, title="Keepalive (s)")
    reconnect_min_s: float = Field(0.5, gt=0, title="First reconnect delay (s)")
    reconnect_max_s: float = Field(30.0, gt=0, title="Longest reconnect delay (s)")
    ca_file: str | None = Field(None, title="CA bundle for mqtts:// (system store if empty)")
    broker_max_queued: int = Field(
        1_000_000,
        ge=0,
        title="Private broker: queued messages per client",
        description="max_queued_messages of the private Mosquitto started when no URL is "
        "configured (Mosquitto's default of 1000 drops QoS 1 messages for a collector that is "
        "down or busy for longer than a second of traffic). 0: no limit.",
    )


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    processes: int | None = Field(
        None, ge=1, le=256, title="Collector processes of `citywatch collect`",
        description="Each takes the devices of one partition (a stable hash of the device id) "
        "on plain persistent subscriptions; a supervisor restarts one that dies. Empty: one "
        "per CPU core.",
    )
    batch_size: int = Field(500, ge=1, title="Rows per batch commit")
    batch_max_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, title="Payload bytes per batch commit",
        description="Frames are large: a batch is also closed when its payloads reach this size.",
    )
    batch_interval_s: float = Field(
        0.2, gt=0, title="Longest wait before a partial batch is committed (s)"
    )
    queue_size: int = Field(
        4000, ge=1, title="Messages held between the MQTT thread and the writer",
        description="Bounded: when full the MQTT thread waits, and the broker stops sending "
        "once Receive Maximum messages are unacknowledged.",
    )
    queue_max_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, title="Payload bytes held between the MQTT thread and the writers",
    )
    writers: int = Field(
        2, ge=1, le=16, title="Writer threads per collector",
        description="While one writer waits for the database, another decodes the next batch. "
        "Batches are still acknowledged in the order their messages arrived.",
    )
    db_retry_min_s: float = Field(0.2, gt=0, title="First retry delay after a database error (s)")
    db_retry_max_s: float = Field(10.0, gt=0, title="Longest retry delay after a database error (s)")
    device_refresh_s: float = Field(
        30.0, gt=0, title="Registry refresh interval (s)",
        description="A message from a device not in the cached registry reloads the devices "
        "table at most this often before it is dead-lettered as unknown_device.",
    )
    max_payload_bytes: int = Field(
        65536, ge=256, title="Largest sensor payload accepted (bytes)"
    )
    max_frame_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, title="Largest frame envelope accepted (bytes)"
    )
    min_frame_side_px: int = Field(
        8, ge=1, title="Shortest frame side accepted (px)",
        description="Checked from the JPEG header before any decode, like max_frame_aspect.",
    )
    max_frame_aspect: float = Field(
        8.0, ge=1, title="Most elongated frame accepted (long side / short side)",
        description="A 1x65535 JPEG is a few hundred bytes and within any pixel limit, but "
        "scaling it to the quality measure's working width would need tens of gigabytes.",
    )
    max_future_s: float = Field(
        300.0, ge=0, title="How far in the future a device timestamp may lie (s)"
    )
    retention_days: int = Field(
        400, ge=1, title="Oldest device timestamp accepted (days before now)"
    )
    plausible_max: dict[str, float] = Field(
        default_factory=dict, title="Largest plausible value per reading field",
        description="Overrides the ceiling a sensor kind declares for a field "
        "(domain/sensors.py), e.g. {fume_mg_m3: 50}; a larger value is out_of_range.",
    )
    drone_alt_range_m: tuple[float, float] = Field(
        (-100.0, 1000.0), title="Plausible drone altitude above ground (m)",
        description="Telemetry outside this range is out_of_range (the legal ceiling of 120 m "
        "is a rule matter, not a reason to refuse the record).",
    )

    @field_validator("plausible_max")
    @classmethod
    def _known_numeric_fields(cls, value: dict[str, float]) -> dict[str, float]:
        numeric = sorted(n for n, f in READING_FIELDS.items() if f.type == "number")
        for name, ceiling in value.items():
            if name not in numeric:
                raise ValueError(f"{name!r} is not a numeric reading field; expected one of {numeric}")
            if not ceiling > 0:
                raise ValueError(f"{name}: the ceiling must be above 0, got {ceiling}")
        return value


@dataclass(frozen=True, slots=True)
class IngestSetup:
    """What collectors, their decoders and the private broker are given: their own sections
    and the paths they need, built by the face from the configuration file."""

    mqtt: MqttConfig
    ingest: IngestConfig
    detectors: DetectorConfig  # frames are taken in through the detectors' quality gate
    evidence_dir: Path
    data_path: Path
    registry_dir: Path
