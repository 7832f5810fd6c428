"""The Detector interface, the settings every backend shares, and the registry of backends.

A detector has one method, `detect(images) -> list[Detections]`: one column-oriented
`Detections` per input image, boxes in that image's pixel coordinates, class names from
the model's own metadata. A backend is one module in `detectors/backends/` holding its
settings model (a `BackendConfig` subclass whose `type` is a `Literal` key) and its
detector; it calls `register` when imported. This module imports no backend: the plain
dict `BACKENDS` is filled by them, and tests may patch it. `create_detector` is the one
way the rest of citywatch gets a detector.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

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
    def model(self) -> ModelInfo:
        """Name, version and weights sha256 of the model, recorded with every detection."""
        ...

    @property
    def names(self) -> tuple[str, ...]:
        """Class id -> name, as the model's own metadata says."""
        ...

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect objects in BGR images; one Detections per image, in order."""
        ...


class BackendConfig(BaseModel):
    """Settings every backend has; a backend subclasses this with `type: Literal[key]`."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(title="Backend", description="Which detector backend runs the model.")
    weights: str = Field(
        "detectors/models/citywatch-default.onnx", title="Model weights",
        description="Path of the weights file; relative paths are resolved against the "
        "project root. The class list comes from the file's own metadata.")
    imgsz: int = Field(640, ge=32, title="Inference image size (px)",
                       description="Longest side an image is letterboxed to.")
    confidence: float = Field(0.25, gt=0, lt=1, title="Lowest confidence kept")
    iou: float = Field(0.5, gt=0, lt=1, title="Non-maximum suppression IoU",
                       description="A box overlapping a better one of its class by more is "
                       "dropped.")


@dataclass(frozen=True, slots=True)
class Backend:
    """One registered backend: its settings model and how to build its detector."""

    key: str
    config: type[BackendConfig]
    create: Callable[[BackendConfig], Detector]


BACKENDS: dict[str, Backend] = {}


def register(config: type[BackendConfig], create: Callable[[BackendConfig], Detector]) -> None:
    """Register a backend under the `type` literal of its settings model."""
    key = config.model_fields["type"].default
    if not isinstance(key, str):
        raise TypeError(f"{config.__name__}.type must default to its Literal key, but got {key!r}")
    BACKENDS[key] = Backend(key, config, create)


def create_detector(config: BackendConfig, *, project_root: Path | None = None) -> Detector:
    """Build the configured backend; relative weights paths resolve against the project root."""
    backend = BACKENDS.get(config.type)
    if backend is None:
        raise DetectorError(f"unknown detector backend {config.type!r}; known: "
                            f"{', '.join(sorted(BACKENDS))}")
    if project_root is not None and not Path(config.weights).is_absolute():
        config = config.model_copy(update={"weights": str(project_root / config.weights)})
    return backend.create(config)


def weights_file(config: BackendConfig, suffixes: Sequence[str]) -> Path:
    """The weights path of `config`, checked to exist and to have one of `suffixes`."""
    path = Path(config.weights)
    if path.suffix not in suffixes:
        raise DetectorError(f"the {config.type} backend reads {' or '.join(suffixes)} weights, "
                            f"but got {path.name}")
    if not path.is_file():
        raise DetectorError(f"model weights not found: {path}")
    return path


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_info(path: Path, sha256: str, stamp: str | None) -> ModelInfo:
    """Name and version of a weights file: format, hash prefix and, when the file carries
    one, its training / export date (so the version is unique even without a date)."""
    return ModelInfo(path.stem, "-".join(
        [path.suffix.lstrip("."), sha256[:12]] + ([str(stamp)[:10]] if stamp else [])), sha256)


def parse_names(text: str | dict) -> tuple[str, ...]:
    """Class names from a model's `names` metadata: a dict {id: name} or its Python repr
    (what ultralytics writes into ONNX metadata), ids 0..n-1."""
    try:
        names = ast.literal_eval(text) if isinstance(text, str) else text
    except (ValueError, SyntaxError) as exc:
        raise DetectorError(f"model metadata 'names' is not a mapping of ids to names: "
                            f"{text!r:.80}") from exc
    if isinstance(names, list | tuple):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or sorted(names) != list(range(len(names))) or not all(
            isinstance(v, str) for v in names.values()):
        raise DetectorError(f"model metadata 'names' must map ids 0..n-1 to names, but got "
                            f"{text!r:.80}")
    return tuple(names[i] for i in range(len(names)))
