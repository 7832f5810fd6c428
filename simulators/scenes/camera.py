"""The pinhole camera model shared by the renderer and the georeferencing code.

Flat ground at height 0; a pinhole camera at (east, north, alt); the optical axis points
along `heading_deg` (compass, clockwise from north) tilted down by `-gimbal_pitch_deg`
(-90 looks straight down, and then the top of the image points along the heading); no
roll; the horizontal field of view `hfov_deg` spans `width` pixels; square pixels; the
principal point is the image centre. Pixel coordinates are continuous with (0, 0) at the
top-left corner of the image, so the centre of pixel (i, j) is (i + 0.5, j + 0.5).
The georeferencing code (detectors/georef.py) inverts it independently; keep the two in step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulators.scenes.catalogue import SceneError


@dataclass(frozen=True, slots=True)
class CameraPose:
    """Where a camera is and where it looks (see the module docstring for the model)."""

    east_m: float
    north_m: float
    alt_m: float
    heading_deg: float = 0.0
    gimbal_pitch_deg: float = -90.0
    hfov_deg: float = 84.0
    width: int = 1280
    height: int = 720

    def __post_init__(self) -> None:
        if not self.alt_m > 0:
            raise SceneError(f"alt_m must be above ground (> 0), got {self.alt_m!r}")
        if not -90.0 <= self.gimbal_pitch_deg < 0.0:
            raise SceneError(
                f"gimbal_pitch_deg must be in [-90, 0) (looking down), got {self.gimbal_pitch_deg!r}")
        if not 1.0 <= self.hfov_deg <= 170.0:
            raise SceneError(f"hfov_deg must be in [1, 170], got {self.hfov_deg!r}")
        if self.width < 16 or self.height < 16:
            raise SceneError(f"image must be at least 16x16 px, got {self.width}x{self.height}")

    @property
    def focal_px(self) -> float:
        """Focal length in pixels."""
        return (self.width / 2) / math.tan(math.radians(self.hfov_deg) / 2)

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, down, forward): the camera's image-x, image-y and optical axes in (E, N, Up)."""
        h = math.radians(self.heading_deg)
        t = math.radians(-self.gimbal_pitch_deg)
        ahead = np.array([math.sin(h), math.cos(h), 0.0])
        right = np.array([math.cos(h), -math.sin(h), 0.0])
        up = np.array([0.0, 0.0, 1.0])
        forward = math.cos(t) * ahead - math.sin(t) * up
        down = -(math.sin(t) * ahead + math.cos(t) * up)
        return right, down, forward

    def camera_matrix(self) -> np.ndarray:
        """Intrinsics K (3x3) in continuous pixel coordinates."""
        f = self.focal_px
        return np.array([[f, 0, self.width / 2], [0, f, self.height / 2], [0, 0, 1.0]])

    def ground_to_image(self) -> np.ndarray:
        """Homography (3x3) taking ground (east, north, 1) to image (x, y, 1) up to scale."""
        right, down, forward = self.basis()
        rot = np.stack([right, down, forward])  # world -> camera
        centre = np.array([self.east_m, self.north_m, self.alt_m])
        m = np.column_stack([rot[:, 0], rot[:, 1], -rot @ centre])
        return self.camera_matrix() @ m

    def project(self, points_enu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (N, 2) of 3-D points (N, 3) and their depth along the axis (N,)."""
        pts = np.asarray(points_enu, dtype=float).reshape(-1, 3)
        right, down, forward = self.basis()
        rel = pts - np.array([self.east_m, self.north_m, self.alt_m])
        z = rel @ forward
        with np.errstate(divide="ignore", invalid="ignore"):
            x = self.width / 2 + self.focal_px * (rel @ right) / z
            y = self.height / 2 + self.focal_px * (rel @ down) / z
        return np.column_stack([x, y]), z

    def project_ground(self, east_m: float, north_m: float) -> tuple[float, float] | None:
        """Pixel (x, y) of a ground point, or None when it lies behind the camera."""
        xy, z = self.project(np.array([[east_m, north_m, 0.0]]))
        return (float(xy[0, 0]), float(xy[0, 1])) if z[0] > 1e-6 else None

    def pixel_to_ground(self, x: float, y: float) -> tuple[float, float] | None:
        """Ground (east, north) seen at pixel (x, y), or None when the ray misses the ground."""
        right, down, forward = self.basis()
        f = self.focal_px
        ray = forward + right * (x - self.width / 2) / f + down * (y - self.height / 2) / f
        if ray[2] >= -1e-9:
            return None
        s = self.alt_m / -ray[2]
        return self.east_m + s * ray[0], self.north_m + s * ray[1]
