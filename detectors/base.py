"""The Detector interface and the registry of backends.

A detector has one method, `detect(images) -> list[Detections]`: one column-oriented
`Detections` per input image, boxes in that image's pixel coordinates. Backends are
found through the plain dict `BACKENDS` (key -> factory taking DetectorConfig), which
tests may patch; `create_detector(config)` is the one way the rest of citywatch gets one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from detectors.config import DetectorConfig
from storage.frames import ModelInfo


class DetectorError(Exception):
    """A detector cannot be built or cannot run (missing weights, bad model file)."""


@dataclass(frozen=True, slots=True)
class Detections:
    """Objects found in one image: xyxy (n, 4) pixels, confidence (n,), class_id (n,)."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    names: tuple[str, ...]  # class id -> name, of the model that produced these

    def __post_init__(self) -> None:
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must be a 2D np.ndarray with shape (_, 4), but got shape "
                             f"{self.xyxy.shape}")
        n = len(self.xyxy)
        for name in ("confidence", "class_id"):
            shape = getattr(self, name).shape
            if shape != (n,):
                raise ValueError(f"{name} must be a 1D np.ndarray with shape ({n},), but got "
                                 f"shape {shape}")

    @classmethod
    def empty(cls, names: tuple[str, ...]) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int), names)

    def __len__(self) -> int:
        return len(self.xyxy)

    def class_names(self) -> list[str]:
        return [self.names[int(c)] for c in self.class_id]


class Detector(Protocol):
    """What every backend provides."""

    @property
    def model(self) -> ModelInfo: ...

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect objects in BGR images; one Detections per image, in order."""
        ...


def _yolo(config: DetectorConfig) -> Detector:
    from detectors.yolo import YoloDetector

    return YoloDetector.from_config(config)


BACKENDS: dict[str, Callable[[DetectorConfig], Detector]] = {"yolo": _yolo}


def create_detector(config: DetectorConfig, *, project_root: Path | None = None) -> Detector:
    """Build the configured backend; relative weights paths resolve against the project root."""
    factory = BACKENDS.get(config.backend)
    if factory is None:
        raise DetectorError(f"unknown detector backend {config.backend!r}; known: "
                            f"{', '.join(sorted(BACKENDS))}")
    if project_root is not None and not Path(config.weights).is_absolute():
        config = config.model_copy(update={"weights": str(project_root / config.weights)})
    return factory(config)
