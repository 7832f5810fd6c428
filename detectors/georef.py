"""Pixel <-> ground for drone frames: a pinhole camera over flat ground.

The camera is at (east, north, alt_m) in local metres above ground at height 0. Its
optical axis points along heading_deg (compass, clockwise from north) tilted down by
-gimbal_pitch_deg (-90 looks straight down, and then the image top points along the
heading). hfov_deg spans the image width; pixels are square and the principal point is
the image centre. Pixel coordinates are continuous: (0, 0) is the top-left corner of the
top-left pixel, (width, height) the bottom-right corner of the last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from domain.geo import LocalFrame
from storage.frames import Pose


class GeorefError(ValueError):
    """A pose or pixel that cannot be georeferenced (bad pose, ray above the horizon)."""


@dataclass(frozen=True, slots=True)
class Camera:
    """A posed pinhole camera in local metres around its own ground point."""

    alt_m: float
    heading_deg: float
    gimbal_pitch_deg: float
    hfov_deg: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if not self.alt_m > 0:
            raise GeorefError(f"alt_m must be above ground (> 0), but got {self.alt_m}")
        if not 0 < self.hfov_deg < 180:
            raise GeorefError(f"hfov_deg must lie in (0, 180), but got {self.hfov_deg}")
        if not -90 <= self.gimbal_pitch_deg < 0:
            raise GeorefError(
                f"gimbal_pitch_deg must look down, in [-90, 0), but got {self.gimbal_pitch_deg}")
        if self.width <= 0 or self.height <= 0:
            raise GeorefError(f"image size must be positive, but got {self.width}x{self.height}")

    @property
    def focal_px(self) -> float:
        return (self.width / 2) / math.tan(math.radians(self.hfov_deg) / 2)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(forward, right, up) unit vectors of the camera in east/north/up coordinates."""
        h, p = math.radians(self.heading_deg), math.radians(self.gimbal_pitch_deg)
        forward = np.array([math.sin(h) * math.cos(p), math.cos(h) * math.cos(p), math.sin(p)])
        right = np.array([math.cos(h), -math.sin(h), 0.0])
        up = np.cross(right, forward)
        return forward, right, up

    def pixel_to_ground(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        """Ground (east, north) offsets in metres from the camera's ground point; shape (n, 2).

        Rows whose ray does not meet the ground (at or above the horizon) are NaN.
        """
        x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
        forward, right, up = self.axes()
        rays = (forward[None, :] * self.focal_px
                + right[None, :] * (x - self.width / 2)[:, None]
                + up[None, :] * (self.height / 2 - y)[:, None])
        down = rays[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(down < -1e-9, -self.alt_m / down, np.nan)
        return rays[:, :2] * t[:, None]

    def ground_to_pixel(self, east: np.ndarray | float, north: np.ndarray | float) -> np.ndarray:
        """Pixel (x, y) of ground offsets from the camera's ground point; shape (n, 2).

        Points behind the camera are NaN; points outside the image are returned as they fall.
        """
        east, north = np.atleast_1d(np.asarray(east, float)), np.atleast_1d(np.asarray(north, float))
        forward, right, up = self.axes()
        v = np.stack([east, north, np.full_like(east, -self.alt_m)], axis=1)
        depth = v @ forward
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(depth > 1e-9, self.focal_px / depth, np.nan)
        return np.stack([self.width / 2 + (v @ right) * scale,
                         self.height / 2 - (v @ up) * scale], axis=1)


def camera_for(pose: Pose, width: int, height: int) -> Camera:
    """The camera of a frame's pose and image size."""
    return Camera(pose.alt_m, pose.heading_deg, pose.gimbal_pitch_deg, pose.hfov_deg,
                  width, height)


def pixels_to_wgs84(pose: Pose, width: int, height: int,
                    points: np.ndarray) -> list[tuple[float, float] | None]:
    """(lat, lon) on the ground of each pixel (x, y) in `points` (n, 2); None above the horizon."""
    points = np.asarray(points, float).reshape(-1, 2)
    ground = camera_for(pose, width, height).pixel_to_ground(points[:, 0], points[:, 1])
    here = LocalFrame(pose.lat, pose.lon)
    return [None if np.isnan(e) else here.to_wgs84(float(e), float(n)) for e, n in ground]
