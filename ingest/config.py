"""Broker and collector settings (the `mqtt:` and `ingest:` sections)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
        "collectors",
        title="Shared subscription group",
        description="Collectors subscribe to $share/<group>/<topic> so several processes split one "
        "stream. Empty: a plain subscription.",
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
    keepalive_s: int = Field(30, ge=5, title="Keepalive (s)")
    reconnect_min_s: float = Field(0.5, gt=0, title="First reconnect delay (s)")
    reconnect_max_s: float = Field(30.0, gt=0, title="Longest reconnect delay (s)")
    ca_file: str | None = Field(None, title="CA bundle for mqtts:// (system store if empty)")


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(500, ge=1, title="Rows per batch commit")
    batch_interval_s: float = Field(
        0.2, gt=0, title="Longest wait before a partial batch is committed (s)"
    )
    max_payload_bytes: int = Field(
        65536, ge=256, title="Largest sensor payload accepted (bytes)"
    )
    max_frame_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, title="Largest frame envelope accepted (bytes)"
    )
    max_future_s: float = Field(
        300.0, ge=0, title="How far in the future a device timestamp may lie (s)"
    )
    retention_days: int = Field(
        400, ge=1, title="Oldest device timestamp accepted (days before now)"
    )
    max_fume_mg_m3: float = Field(200.0, gt=0, title="Largest plausible fume concentration")
    max_dust_ug_m3: float = Field(20000.0, gt=0, title="Largest plausible PM / TSP value")
