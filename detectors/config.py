"""Detector worker settings (the `detectors:` section).

The backend's own settings come from the backend module (detectors/backends/): this
module asks the registry which backends exist instead of listing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails

from detectors import backends
from detectors.base import BACKENDS


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    working_width: int = Field(
        640, ge=64, title="Width (px) frames are scaled to before measuring",
        description="Sharpness depends on resolution; measuring every frame at one width makes "
        "one threshold mean the same for every camera.",
    )
    min_sharpness: float = Field(
        40.0, ge=0, title="Least variance of the Laplacian for a frame fit as evidence"
    )
    min_brightness: float = Field(35.0, ge=0, le=255, title="Darkest mean grey level accepted")
    max_brightness: float = Field(225.0, ge=0, le=255, title="Brightest mean grey level accepted")
    max_clipped: float = Field(
        0.25, ge=0, le=1, title="Largest share of pixels at pure black or white",
        description="Over- or under-exposed frames lose the detail an officer must see.",
    )
    min_width: int = Field(320, ge=1, title="Narrowest frame accepted (px)")
    min_height: int = Field(240, ge=1, title="Lowest frame accepted (px)")


class IntakeConfig(BaseModel):
    """What a frame must be to enter the queue at all (bytes are limited by ingest)."""

    model_config = ConfigDict(extra="forbid")

    max_pixels: int = Field(
        40_000_000, ge=1, title="Largest image accepted (width x height)",
        description="Checked from the JPEG header before decoding, so a decompression bomb is "
        "rejected without allocating its pixels.",
    )
    max_hfov_deg: float = Field(170.0, gt=0, lt=180, title="Widest plausible horizontal FOV")
    max_alt_m: float = Field(
        500.0, gt=0, title="Highest plausible drone height above ground (m)"
    )


class ZoneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tolerance_m: float = Field(
        1.5, ge=0, title="Largest distance (m) to a zone still counted as inside it",
        description="Georeferencing error near zone edges; 0 means strictly inside.",
    )
    priority: list[Literal["frontage", "permit", "site"]] = Field(
        ["frontage", "permit", "site"], title="Order in which overlapping zones win"
    )


def _backend_settings() -> Any:
    """The `backend` field's type: a union of every registered backend's settings model,
    told apart by `type`, so a wrong backend or option is refused at load with its path."""
    models = tuple(b.config for b in backends.load_all().values())
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 (built at run time)


BackendSettings = _backend_settings()
DEFAULT_BACKEND = "onnxruntime"  # torch-free; .onnx ran 2x faster than .pt on an idle CPU


class DetectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, title="Run detector workers in `citywatch run`")
    backend: BackendSettings = Field(
        default_factory=lambda: BACKENDS[DEFAULT_BACKEND].config(),
        title="Detector backend and its model",
        description="`type` picks the backend (onnxruntime: .onnx, no torch; ultralytics: "
        ".pt or .onnx, needs the `yolo` extra); the other keys are that backend's options.")
    batch_size: int = Field(8, ge=1, title="Frames per inference batch")
    workers: int = Field(1, ge=0, title="Worker threads in `citywatch run`")
    max_attempts: int = Field(3, ge=1, title="Tries before a frame is marked failed")
    poll_interval_s: float = Field(
        0.05, gt=0, title="Wait between polls when the queue is empty (s)"
    )
    stale_after_s: float = Field(
        120.0, gt=0, title="A claim older than this (s) is taken to belong to a dead worker",
        description="Must exceed the longest batch; a live worker that overruns it loses its "
        "claim and its late result is discarded, never written twice.",
    )
    anchor: Literal["center", "bottom"] = Field(
        "center", title="Box point that is georeferenced",
        description="center for objects flat on the ground seen from above; bottom for "
        "upright objects seen obliquely.",
    )
    intake: IntakeConfig = Field(default_factory=IntakeConfig, title="Frame intake limits")
    quality: QualityConfig = Field(default_factory=QualityConfig, title="Evidence quality")
    zones: ZoneConfig = Field(default_factory=ZoneConfig, title="Zone matching")

    @field_validator("backend", mode="wrap")
    @classmethod
    def _errors_at_yaml_paths(cls, value: Any, handler) -> Any:
        # pydantic puts the union's tag into an error's location
        # (backend.onnxruntime.threads); the YAML path has no such level.
        try:
            return handler(value)
        except ValidationError as exc:
            details: list[InitErrorDetails] = []
            for err in exc.errors():
                loc, given = err["loc"], err["input"]
                if loc and loc[0] in BACKENDS:
                    loc = loc[1:]
                elif err["type"] == "union_tag_invalid":
                    loc, given = ("type",), given.get("type")
                details.append(InitErrorDetails(type=err["type"], loc=loc, input=given,
                                                **({"ctx": err["ctx"]} if "ctx" in err else {})))
            raise ValidationError.from_exception_data(exc.title, details) from None


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What detector workers are given: their section and the evidence store's folder,
    built by the face from the configuration file."""

    detectors: DetectorConfig
    evidence_dir: Path
