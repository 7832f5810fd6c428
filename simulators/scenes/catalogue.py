"""The class catalogue: citywatch's detection classes, their typical sizes and heights,
the object placed in a scene and the truth box it leaves in a rendered image."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CLASSES: tuple[str, ...] = (
    "street_stall",
    "garbage_pile",
    "bare_soil",
    "covered_soil",
    "muck_truck_open",
    "muck_truck_covered",
    "person",
    "vehicle",
    "cone_upright",
    "cone_fallen",
    "worker_helmet",
    "worker_no_helmet",
    "excavator",
    "fence",
)
AERIAL_CLASSES: tuple[str, ...] = CLASSES[:8]
CONE_CLASSES: tuple[str, ...] = CLASSES[8:]
CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

# Typical footprint (length along yaw, width across) in metres, used when a SceneObject
# leaves its size open.
DEFAULT_SIZE_M: dict[str, tuple[float, float]] = {
    "street_stall": (2.6, 2.0),
    "garbage_pile": (2.2, 1.8),
    "bare_soil": (18.0, 12.0),
    "covered_soil": (18.0, 12.0),
    "muck_truck_open": (8.8, 2.5),
    "muck_truck_covered": (8.8, 2.5),
    "person": (0.55, 0.45),
    "vehicle": (4.6, 1.85),
    "cone_upright": (0.4, 0.4),
    "cone_fallen": (0.7, 0.35),
    "worker_helmet": (0.5, 0.35),
    "worker_no_helmet": (0.5, 0.35),
    "excavator": (6.5, 2.8),
    "fence": (6.0, 0.1),
}
# Heights (m) of what stands up: shadows from above, upright shapes in the cone view.
HEIGHT_M: dict[str, float] = {
    "street_stall": 2.3,
    "garbage_pile": 0.8,
    "bare_soil": 0.0,
    "covered_soil": 0.0,
    "muck_truck_open": 3.2,
    "muck_truck_covered": 3.4,
    "person": 1.7,
    "vehicle": 1.5,
    "cone_upright": 0.7,
    "cone_fallen": 0.3,
    "worker_helmet": 1.75,
    "worker_no_helmet": 1.7,
    "excavator": 3.0,
    "fence": 1.8,
}


class SceneError(ValueError):
    """A scene or camera that cannot be rendered (unknown class, camera below ground...)."""


@dataclass(frozen=True, slots=True)
class SceneObject:
    """An object on the ground, in local metres (a `LocalFrame` around a reference).

    `yaw_deg` is the compass direction of the object's length axis (clockwise from north);
    `length_m` / `width_m` default to the class's typical size.
    """

    cls: str
    east_m: float
    north_m: float
    yaw_deg: float = 0.0
    length_m: float | None = None
    width_m: float | None = None

    def __post_init__(self) -> None:
        if self.cls not in CLASS_ID:
            raise SceneError(f"unknown class {self.cls!r}; expected one of {', '.join(CLASSES)}")
        for name in ("length_m", "width_m"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise SceneError(f"{name} must be > 0, got {v!r}")

    @property
    def size(self) -> tuple[float, float]:
        """(length, width) in metres."""
        dl, dw = DEFAULT_SIZE_M[self.cls]
        return (self.length_m or dl, self.width_m or dw)

    def footprint(self) -> np.ndarray:
        """The 4 ground corners (east, north) of the object's rectangle, shape (4, 2)."""
        length, width = self.size
        return _local_to_ground(self, np.array(
            [[length / 2, -width / 2], [length / 2, width / 2],
             [-length / 2, width / 2], [-length / 2, -width / 2]]))


@dataclass(frozen=True, slots=True)
class TruthBox:
    """Where a visible object is in the image (pixels) and on the ground (local metres)."""

    cls: str
    x1: float
    y1: float
    x2: float
    y2: float
    east_m: float
    north_m: float
    object_index: int

    @property
    def class_id(self) -> int:
        return CLASS_ID[self.cls]

    def yolo_line(self, width: int, height: int) -> str:
        """This box as a YOLO label line: class cx cy w h, normalised to the image size."""
        cx = (self.x1 + self.x2) / 2 / width
        cy = (self.y1 + self.y2) / 2 / height
        return (f"{self.class_id} {cx:.6f} {cy:.6f} "
                f"{(self.x2 - self.x1) / width:.6f} {(self.y2 - self.y1) / height:.6f}")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered BGR image and the truth box of each visible object."""

    image: np.ndarray
    boxes: list[TruthBox]


def _local_to_ground(obj: SceneObject, uv: np.ndarray) -> np.ndarray:
    """Object-local (along length, across to the right) metres -> ground (east, north)."""
    yaw = math.radians(obj.yaw_deg)
    along = np.array([math.sin(yaw), math.cos(yaw)])
    across = np.array([math.cos(yaw), -math.sin(yaw)])
    uv = np.asarray(uv, dtype=float).reshape(-1, 2)
    return np.array([obj.east_m, obj.north_m]) + uv[:, :1] * along + uv[:, 1:] * across


def _place(rng, placed: list, footprint: np.ndarray, margin: float = 0.3) -> bool:
    """Accept a footprint when it overlaps none already placed (axis-aligned test)."""
    lo, hi = footprint.min(axis=0) - margin, footprint.max(axis=0) + margin
    for plo, phi in placed:
        if (lo < phi).all() and (plo < hi).all():
            return False
    placed.append((lo, hi))
    return True

