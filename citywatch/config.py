"""The one configuration model of citywatch.

configs/citywatch.yaml is parsed into `AppConfig` (pydantic, `extra="forbid"`), each part
owning its own section model. Three environment variables override the file:
CITYWATCH_DATABASE_URL, CITYWATCH_MQTT_URL and CITYWATCH_DATA_DIR.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from detectors.config import DetectorConfig, WorkerSetup
from domain.paths import PROJECT_ROOT
from flights.config import FlightsConfig
from ingest.batch.config import BatchConfig
from ingest.config import IngestConfig, IngestSetup, MqttConfig
from review.config import WebConfig
from rules.config import RulesConfig
from storage.config import DatabaseConfig
from storage.evidence import evidence_folder

DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "citywatch.yaml"


class RegistryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    directory: str = Field(
        "configs/registry",
        title="Registry folder",
        description="GeoJSON files of areas, merchants, construction sites and road-works "
        "permits, each subject listing its devices with certification and calibration dates.",
    )


class MonitorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    port: int | None = Field(
        None, ge=0, le=65535,
        title="Port of /metrics and /healthz",
        description="HTTP port of the Prometheus metrics and the health check of `citywatch "
        "run` and `citywatch collect`. Empty: not served. 0: any free port.",
    )
    host: str = Field("127.0.0.1", title="Address the metrics endpoint listens on")
    ack_stall_s: float = Field(
        60.0, gt=0, title="Acknowledgement stall that makes a collector unhealthy (s)",
        description="/healthz answers 503 when messages wait unacknowledged and no "
        "acknowledgement went out for this long.",
    )


class AppConfig(BaseModel):
    """Everything citywatch reads from configs/citywatch.yaml."""

    model_config = ConfigDict(extra="forbid")

    data_dir: str = Field(
        "var",
        title="Data directory",
        description="Evidence store, embedded database and broker state. Overridden by "
        "CITYWATCH_DATA_DIR.",
    )
    database: DatabaseConfig = Field(default_factory=DatabaseConfig, title="Database")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, title="MQTT broker")
    ingest: IngestConfig = Field(default_factory=IngestConfig, title="Collectors")
    registry: RegistryConfig = Field(default_factory=RegistryConfig, title="Registry")
    detectors: DetectorConfig = Field(default_factory=DetectorConfig, title="Detectors")
    rules: RulesConfig = Field(default_factory=RulesConfig, title="Rule engine")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, title="Metrics and health")
    web: WebConfig = Field(default_factory=WebConfig, title="Review app and cockpit")
    batch: BatchConfig = Field(default_factory=BatchConfig, title="Batch runs over recorded footage")
    flights: FlightsConfig = Field(default_factory=FlightsConfig, title="Flight planning and dispatch")

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """A configured path, absolute as given or relative to the project root."""
        p = Path(path)
        return p if p.is_absolute() else PROJECT_ROOT / p

    @property
    def data_path(self) -> Path:
        return self.resolve(self.data_dir)

    @property
    def evidence_dir(self) -> Path:
        return evidence_folder(self.data_path)

    def for_ingest(self) -> IngestSetup:
        """The collectors' sections and paths (the part gets these, not this whole model)."""
        return IngestSetup(self.mqtt, self.ingest, self.detectors, self.evidence_dir,
                           self.data_path, self.resolve(self.registry.directory))

    def for_detectors(self) -> WorkerSetup:
        """The detector workers' section and evidence folder."""
        return WorkerSetup(self.detectors, self.evidence_dir)


class ConfigError(Exception):
    """The configuration cannot be used; `problems` holds one line per error with its YAML path."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _yaml_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validate(raw: Any, source: str = "<config>") -> AppConfig:
    """Validate a parsed YAML document; raise ConfigError listing every problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, [f"(top level): expected a mapping, got {type(raw).__name__}"])
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{_yaml_path(err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            if err["type"] != "extra_forbidden"
            else f"{_yaml_path(err['loc'])}: unknown key"
            for err in exc.errors()
        ]
        raise ConfigError(source, problems) from None


def load(path: str | os.PathLike[str] | None = None, *, env: dict[str, str] | None = None) -> AppConfig:
    """Read the YAML file (default configs/citywatch.yaml), apply environment overrides."""
    env = os.environ if env is None else env
    file = Path(path) if path else Path(env.get("CITYWATCH_CONFIG", DEFAULT_CONFIG))
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if path:
            raise ConfigError(str(file), ["file not found"]) from None
        text = ""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(file), [f"not valid YAML: {exc}"]) from None
    config = validate(raw, str(file))
    if env.get("CITYWATCH_DATABASE_URL"):
        config.database.url = env["CITYWATCH_DATABASE_URL"]
    if env.get("CITYWATCH_MQTT_URL"):
        config.mqtt.url = env["CITYWATCH_MQTT_URL"]
    if env.get("CITYWATCH_DATA_DIR"):
        config.data_dir = env["CITYWATCH_DATA_DIR"]
    # Parts get their own section with paths they can use as they are.
    config.rules.directory = str(config.resolve(config.rules.directory))
    config.registry.directory = str(config.resolve(config.registry.directory))
    config.batch.drop_dir = str(config.resolve(config.batch.drop_dir))
    config.batch.report_dir = str(config.resolve(config.batch.report_dir))
    return config
