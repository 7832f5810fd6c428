"""Detector worker settings (the `detectors:` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_sharpness: float = Field(
        40.0, ge=0, title="Least variance of the Laplacian for a frame fit as evidence"
    )
    min_brightness: float = Field(35.0, ge=0, le=255, title="Darkest mean grey level accepted")
    max_brightness: float = Field(225.0, ge=0, le=255, title="Brightest mean grey level accepted")
    min_width: int = Field(320, ge=1, title="Narrowest frame accepted (px)")
    min_height: int = Field(240, ge=1, title="Lowest frame accepted (px)")


class DetectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, title="Run detector workers in `citywatch run`")
    weights: str = Field(
        "detectors/models/citywatch-default.onnx",
        title="Model weights",
        description=".pt (torch) or .onnx (ONNX Runtime, the CPU default). Relative paths are "
        "resolved against the project root.",
    )
    imgsz: int = Field(640, ge=32, title="Inference image size (px)")
    confidence: float = Field(0.25, gt=0, lt=1, title="Lowest confidence kept")
    batch_size: int = Field(8, ge=1, title="Frames per inference batch")
    workers: int = Field(1, ge=0, title="Worker threads in `citywatch run`")
    max_attempts: int = Field(3, ge=1, title="Tries before a frame is marked failed")
    quality: QualityConfig = Field(default_factory=QualityConfig, title="Evidence quality")
