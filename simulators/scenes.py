"""Procedural scenes with known ground truth: aerial drone views and cone-camera views.

One renderer serves two consumers: the training set of the default detection model and
the live drone / cone-camera simulators. Every rendered image comes with a `TruthBox` per
visible object: its pixel box and its true ground position, so detections can be checked
both in pixels and on the map.

Camera model (the georeferencing code inverts it independently; keep the two in step):
flat ground at height 0; a pinhole camera at (east, north, alt); the optical axis points
along `heading_deg` (compass, clockwise from north) tilted down by `-gimbal_pitch_deg`
(-90 looks straight down, and then the top of the image points along the heading); no
roll; the horizontal field of view `hfov_deg` spans `width` pixels; square pixels; the
principal point is the image centre. Pixel coordinates are continuous with (0, 0) at the
top-left corner of the image, so the centre of pixel (i, j) is (i + 0.5, j + 0.5).

The aerial view is a top-down ground raster (blocks, streets, objects seen from above,
shadows, trees) warped into the camera with the ground-to-image homography; the
cone-camera view uses the same ground warp for the road and draws standing objects
(cones, workers, excavators, fences) as upright shapes projected with the same camera.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from domain.geo import LocalFrame

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

_SHIFT = 4  # sub-pixel bits for cv2 polygon drawing
_SCALE = 1 << _SHIFT


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


@dataclass(frozen=True, slots=True)
class Street:
    """A street centre line in local metres with its carriageway half-width and pavements."""

    points: tuple[tuple[float, float], ...]
    half_width_m: float = 6.0
    pavement_m: float = 4.0


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


@dataclass(frozen=True, slots=True)
class Look:
    """Photographic conditions applied after rendering: light, blur, noise, compression."""

    gain: float = 1.0  # overall brightness multiplier
    contrast: float = 1.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # B, G, R multipliers
    haze: float = 0.0  # 0..1 blend towards grey-blue with distance (oblique views)
    blur_sigma: float = 0.0
    motion_px: float = 0.0
    noise_sigma: float = 2.0
    jpeg_quality: int = 92

    @classmethod
    def random(cls, rng: np.random.Generator, *, harsh: float = 1.0) -> Look:
        """A plausible random look; `harsh` scales how far it strays from a clean frame."""
        return cls(
            gain=float(np.clip(rng.normal(1.0, 0.18 * harsh), 0.45, 1.5)),
            contrast=float(np.clip(rng.normal(1.0, 0.15 * harsh), 0.6, 1.4)),
            tint=tuple(float(v) for v in np.clip(rng.normal(1.0, 0.03 * harsh, 3), 0.92, 1.08)),
            haze=float(np.clip(rng.uniform(-0.1, 0.45) * harsh, 0.0, 0.6)),
            blur_sigma=float(max(0.0, rng.normal(0.3, 0.5 * harsh))),
            motion_px=float(rng.uniform(0, 5) * harsh if rng.random() < 0.2 else 0.0),
            noise_sigma=float(rng.uniform(0.5, 7.0) * harsh),
            jpeg_quality=int(np.clip(rng.uniform(100 - 65 * harsh, 96), 20, 98)),
        )


@dataclass(frozen=True, slots=True)
class AerialScene:
    """A random drone view: what is on the ground, the camera, the streets."""

    objects: tuple[SceneObject, ...]
    pose: CameraPose
    streets: tuple[Street, ...] = ()
    world_seed: int = 0
    look: Look = field(default_factory=Look)


@dataclass(frozen=True, slots=True)
class ConeScene:
    """A random road-works view from a pole-mounted cone camera (camera at east=north=0)."""

    objects: tuple[SceneObject, ...]
    pose: CameraPose
    road_half_width_m: float = 5.0
    world_seed: int = 0
    look: Look = field(default_factory=Look)


def streets_from_registry(features: Iterable[dict], frame: LocalFrame) -> list[Street]:
    """Registry street features (GeoJSON LineStrings, WGS84) as `Street`s in `frame`'s metres."""
    out = []
    for feat in features:
        geom = feat.get("geometry") or {}
        if geom.get("type") != "LineString":
            continue
        props = feat.get("properties") or {}
        pts = tuple(frame.to_local(lat, lon) for lon, lat in geom["coordinates"])
        out.append(Street(pts, float(props.get("half_width_m", 6.0)),
                          float(props.get("pavement_m", 4.0))))
    return out


# ---------------------------------------------------------------------------------------
# geometry helpers


def _local_to_ground(obj: SceneObject, uv: np.ndarray) -> np.ndarray:
    """Object-local (along length, across to the right) metres -> ground (east, north)."""
    yaw = math.radians(obj.yaw_deg)
    along = np.array([math.sin(yaw), math.cos(yaw)])
    across = np.array([math.cos(yaw), -math.sin(yaw)])
    uv = np.asarray(uv, dtype=float).reshape(-1, 2)
    return np.array([obj.east_m, obj.north_m]) + uv[:, :1] * along + uv[:, 1:] * across


def _blob(rng: np.random.Generator, length: float, width: float, n: int = 14,
          rough: float = 0.25) -> np.ndarray:
    """A random star-shaped outline inside a length x width ellipse (object-local metres)."""
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = np.clip(1 - rough * rng.random(n), 0.35, 1.0)
    return np.column_stack([np.cos(ang) * r * length / 2, np.sin(ang) * r * width / 2])


class _Raster:
    """A north-up ground raster: pixel (0, 0) corner at (east0, north1), `gsd` m per pixel."""

    def __init__(self, east0: float, north1: float, gsd: float, w: int, h: int):
        self.east0, self.north1, self.gsd, self.w, self.h = east0, north1, gsd, w, h
        self.img = np.zeros((h, w, 3), np.uint8)

    def px(self, en: np.ndarray) -> np.ndarray:
        """Ground (east, north) -> continuous raster pixel coordinates."""
        en = np.asarray(en, dtype=float).reshape(-1, 2)
        return np.column_stack([(en[:, 0] - self.east0) / self.gsd,
                                (self.north1 - en[:, 1]) / self.gsd])

    def cv(self, en: np.ndarray) -> np.ndarray:
        """Ground points as fixed-point int32 coordinates for cv2 drawing (pixel centres)."""
        return np.round((self.px(en) - 0.5) * _SCALE).astype(np.int32)

    def poly(self, en: np.ndarray, color, img: np.ndarray | None = None) -> None:
        cv2.fillPoly(self.img if img is None else img, [self.cv(en)], _c(color),
                     cv2.LINE_AA, _SHIFT)

    def line(self, a, b, color, width_m: float, img: np.ndarray | None = None) -> None:
        pts = self.cv(np.array([a, b]))
        t = max(1, int(round(width_m / self.gsd)))
        cv2.line(self.img if img is None else img, tuple(pts[0]), tuple(pts[1]), _c(color), t,
                 cv2.LINE_AA, _SHIFT)

    def lines(self, a: np.ndarray, b: np.ndarray, color, width_m: float) -> None:
        """Many ground segments a[i] -> b[i] in one call."""
        if len(a) == 0:
            return
        pa, pb = self.cv(a), self.cv(b)
        t = max(1, int(round(width_m / self.gsd)))
        cv2.polylines(self.img, list(np.stack([pa, pb], axis=1)), False, _c(color), t,
                      cv2.LINE_AA, _SHIFT)

    def circle(self, c, radius_m: float, color, img: np.ndarray | None = None) -> None:
        p = self.cv(np.array([c]))[0]
        cv2.circle(self.img if img is None else img, tuple(p), max(1, int(radius_m / self.gsd * _SCALE)),
                   _c(color), -1, cv2.LINE_AA, _SHIFT)

    def sub(self, win: tuple[int, int, int, int]) -> _Raster:
        """A view on a window of this raster (drawing into it draws into this one)."""
        x0, y0, x1, y1 = win
        view = _Raster.__new__(_Raster)
        view.east0, view.north1 = self.east0 + x0 * self.gsd, self.north1 - y0 * self.gsd
        view.gsd, view.w, view.h = self.gsd, x1 - x0, y1 - y0
        view.img = self.img[y0:y1, x0:x1]
        return view

    def window(self, en: np.ndarray) -> tuple[int, int, int, int] | None:
        """Raster pixel window (x0, y0, x1, y1) holding a ground polygon, or None if outside."""
        p = self.px(en)
        x0, y0 = np.floor(p.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(p.max(axis=0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)
        return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)

    def mask(self, en: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
        """A uint8 mask of a ground polygon over its own raster window."""
        win = self.window(en)
        if win is None:
            return None
        x0, y0, x1, y1 = win
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        pts = self.cv(en) - np.array([x0, y0], np.int32) * _SCALE
        cv2.fillPoly(m, [pts], 255, cv2.LINE_AA, _SHIFT)
        return m, win

    def shade(self, en: np.ndarray, factor: float) -> None:
        """Darken the area under a ground polygon (a shadow)."""
        got = self.mask(en)
        if got is not None:
            m, (x0, y0, x1, y1) = got
            _apply_shade(self.img[y0:y1, x0:x1], m, factor)


def _apply_shade(img: np.ndarray, mask: np.ndarray, factor: float) -> None:
    x0, y0, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    y1, x1 = y0 + h, x0 + w
    m = mask[y0:y1, x0:x1, None].astype(np.float32) / 255.0
    sub = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = (sub * (1 - m * (1 - factor))).astype(np.uint8)


def _c(color) -> tuple[int, int, int] | int:
    if np.isscalar(color):  # single-channel masks
        return min(255, max(0, int(color)))
    return tuple(min(255, max(0, int(v))) for v in color)


def _jitter(rng: np.random.Generator, color, amount: float = 18.0) -> tuple[int, int, int]:
    return _c(np.asarray(color, float) + rng.normal(0, amount, 3))


def _texture(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray | None,
             sigma: float, grain: int = 1) -> None:
    """Add grainy noise (optionally blurred to `grain` px blobs) where mask is set."""
    h, w = img.shape[:2]
    noise = np.empty((h, w), np.float32)
    cv2.setRNGSeed(int(rng.integers(0, 2**31)))
    cv2.randn(noise, 0.0, float(sigma))
    if grain > 1:
        noise = cv2.GaussianBlur(noise, (0, 0), grain) * grain
    out = np.clip(img.astype(np.float32) + noise[..., None], 0, 255).astype(np.uint8)
    if mask is None:
        img[:] = out
    else:
        np.copyto(img, out, where=(mask > 0)[..., None])


# ---------------------------------------------------------------------------------------
# aerial: ground background


_BLOCK_M = 28.0


def _block_kind(world_seed: int, ix: int, iy: int) -> tuple[str, np.random.Generator]:
    rng = np.random.default_rng([world_seed & 0xFFFFFFFF, ix & 0xFFFFFFFF, iy & 0xFFFFFFFF, 7])
    kind = rng.choice(["roof", "roof", "roof", "grass", "plaza", "parking", "courtyard"],
                      p=[0.2, 0.2, 0.15, 0.15, 0.12, 0.1, 0.08])
    return str(kind), rng


def _draw_background(r: _Raster, rng: np.random.Generator, world_seed: int,
                     sun: np.ndarray) -> list[np.ndarray]:
    """Fill the raster with city blocks; returns building footprints (for shadows)."""
    r.img[:] = (95, 100, 100)
    e0, e1 = r.east0, r.east0 + r.w * r.gsd
    n0, n1 = r.north1 - r.h * r.gsd, r.north1
    buildings = []
    for ix in range(math.floor(e0 / _BLOCK_M), math.floor(e1 / _BLOCK_M) + 1):
        for iy in range(math.floor(n0 / _BLOCK_M), math.floor(n1 / _BLOCK_M) + 1):
            kind, brng = _block_kind(world_seed, ix, iy)
            x0, y0 = ix * _BLOCK_M, iy * _BLOCK_M
            cell = np.array([[x0, y0], [x0 + _BLOCK_M, y0], [x0 + _BLOCK_M, y0 + _BLOCK_M],
                             [x0, y0 + _BLOCK_M]])
            if kind == "roof":
                r.poly(cell, (80, 85, 85))
                m = brng.uniform(1.0, 3.0)
                roof = cell + np.array([[m, m], [-m, m], [-m, -m], [m, -m]])
                base = brng.choice([(150, 150, 150), (120, 125, 130), (70, 80, 160), (160, 120, 90),
                                    (190, 190, 185), (95, 95, 100), (130, 150, 170)])
                col = _jitter(brng, base, 15)
                r.poly(roof, _c(np.asarray(col) * 0.75))
                inner = roof + np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
                r.poly(inner, col)
                buildings.append((roof, brng.uniform(6, 30)))
                for _ in range(brng.integers(0, 6)):  # rooftop units, water tanks
                    c = np.array([brng.uniform(x0 + 4, x0 + _BLOCK_M - 4),
                                  brng.uniform(y0 + 4, y0 + _BLOCK_M - 4)])
                    s = brng.uniform(0.8, 3.0, 2)
                    box = c + np.array([[-s[0], -s[1]], [s[0], -s[1]], [s[0], s[1]], [-s[0], s[1]]]) / 2
                    r.poly(box + sun[None] * 0.8, _c(np.asarray(col) * 0.55))
                    r.poly(box, _jitter(brng, (200, 200, 200), 30))
            elif kind == "grass":
                r.poly(cell, _jitter(brng, (60, 120, 80), 15))
            elif kind == "plaza":
                col = _jitter(brng, (170, 170, 165), 15)
                r.poly(cell, col)
                step = brng.uniform(0.6, 1.5)
                dark = _c(np.asarray(col) * 0.85)
                if step / r.gsd > 1.5:
                    k = np.arange(0, _BLOCK_M, step)
                    z = np.zeros_like(k)
                    r.lines(np.column_stack([x0 + k, y0 + z]),
                            np.column_stack([x0 + k, y0 + z + _BLOCK_M]), dark, 0.05)
                    r.lines(np.column_stack([x0 + z, y0 + k]),
                            np.column_stack([x0 + z + _BLOCK_M, y0 + k]), dark, 0.05)
            elif kind == "parking":
                r.poly(cell, _jitter(brng, (75, 78, 80), 8))
                for k in np.arange(1.0, _BLOCK_M - 1, 2.6):
                    r.line((x0 + k, y0 + 2), (x0 + k, y0 + 7), (220, 220, 220), 0.12)
                    r.line((x0 + k, y0 + _BLOCK_M - 7), (x0 + k, y0 + _BLOCK_M - 2),
                           (220, 220, 220), 0.12)
            else:  # courtyard: paving with a lawn patch
                r.poly(cell, _jitter(brng, (150, 155, 150), 15))
                c = np.array([x0, y0]) + _BLOCK_M / 2
                r.poly(c + _blob(brng, 16, 12, 10, 0.2), _jitter(brng, (65, 130, 90), 15))
    _texture(rng, r.img, None, 6.0)
    return buildings


def _draw_streets(r: _Raster, streets: Sequence[Street], rng: np.random.Generator) -> None:
    asphalt = _jitter(rng, (70, 72, 74), 10)
    tiles = _jitter(rng, (160, 165, 170), 20)
    for st in streets:
        pts = np.asarray(st.points, float)
        for a, b in zip(pts[:-1], pts[1:], strict=False):
            d = b - a
            n = np.linalg.norm(d)
            if n < 1e-6:
                continue
            u = d / n
            nrm = np.array([-u[1], u[0]])
            # only the part of the segment that can show in this raster
            corners = np.array([[r.east0, r.north1], [r.east0 + r.w * r.gsd, r.north1],
                                [r.east0, r.north1 - r.h * r.gsd],
                                [r.east0 + r.w * r.gsd, r.north1 - r.h * r.gsd]])
            along = (corners - a) @ u
            outer = st.half_width_m + st.pavement_m
            if np.all(np.abs((corners - a) @ nrm) > outer) and len(
                    {np.sign(v) for v in (corners - a) @ nrm}) == 1:
                continue
            k0, k1 = max(0.0, along.min() - outer), min(n, along.max() + outer)
            if k1 <= k0:
                continue
            a, b = a + u * k0, a + u * k1
            n = k1 - k0
            ext = u * (st.half_width_m + st.pavement_m)
            a2, b2 = a - ext, b + ext
            r.poly(np.array([a2 + nrm * outer, b2 + nrm * outer, b2 - nrm * outer, a2 - nrm * outer]),
                   tiles)
            # tile joints on the pavements
            step = 0.6
            if step / r.gsd > 1.5:
                p = a[None] + u[None] * np.arange(-outer, n + outer, step)[:, None]
                for side in (1, -1):
                    r.lines(p + nrm * side * st.half_width_m, p + nrm * side * outer,
                            _c(np.asarray(tiles) * 0.85), 0.04)
            hw = st.half_width_m
            r.poly(np.array([a2 + nrm * hw, b2 + nrm * hw, b2 - nrm * hw, a2 - nrm * hw]), asphalt)
            for side in (1, -1):  # kerbs
                r.line(a2 + nrm * side * hw, b2 + nrm * side * hw, (185, 185, 185), 0.2)
            # dashed centre line and lane lines
            for off, col in ((0.0, (60, 200, 230)), (hw / 2, (230, 230, 230)),
                             (-hw / 2, (230, 230, 230))):
                k = 0.0
                while k < n:
                    r.line(a + u * k + nrm * off, a + u * min(n, k + 3) + nrm * off, col, 0.15)
                    k += 9.0


# ---------------------------------------------------------------------------------------
# aerial: objects seen from above. Each drawer returns the ground outline (for the box).


def _top_stall(r, obj, rng):
    length, width = obj.size
    g = lambda uv: _local_to_ground(obj, uv)  # noqa: E731
    outline = np.array([[length / 2, -width / 2], [length / 2, width / 2],
                        [-length / 2, width / 2], [-length / 2, -width / 2]])
    if rng.random() < 0.6:  # the table in front, goods on it
        r.poly(g(np.array([[length / 2, -width / 2], [length / 2, width / 2],
                           [length / 2 - 0.8, width / 2], [length / 2 - 0.8, -width / 2]])),
               _jitter(rng, (60, 100, 140), 25))
        for _ in range(rng.integers(3, 9)):
            u = rng.uniform(length / 2 - 0.75, length / 2 - 0.15)
            v = rng.uniform(-width / 2 + 0.1, width / 2 - 0.3)
            s = rng.uniform(0.1, 0.3)
            r.poly(g(np.array([[u, v], [u + s, v], [u + s, v + s], [u, v + s]])),
                   _c(rng.integers(20, 255, 3)))
        canopy_front = length / 2 - 0.8
    else:
        canopy_front = length / 2
    palette = [((40, 40, 220), (240, 240, 240)), ((200, 90, 30), (240, 240, 240)),
               ((40, 150, 40), (235, 235, 235)), ((0, 140, 255), (0, 220, 255)),
               ((30, 30, 200), (0, 200, 255)), ((160, 60, 160), (240, 240, 240))]
    c1, c2 = palette[rng.integers(len(palette))]
    c1, c2 = _jitter(rng, c1, 12), _jitter(rng, c2, 12)
    n = int(rng.integers(4, 9))
    us = np.linspace(-length / 2, canopy_front, n + 1)
    across = rng.random() < 0.5
    vs = np.linspace(-width / 2, width / 2, n + 1)
    for i in range(n):
        col = c1 if i % 2 == 0 else c2
        if across:
            q = [[us[0], vs[i]], [canopy_front, vs[i]], [canopy_front, vs[i + 1]], [us[0], vs[i + 1]]]
        else:
            q = [[us[i], -width / 2], [us[i + 1], -width / 2], [us[i + 1], width / 2],
                 [us[i], width / 2]]
        r.poly(g(np.array(q)), col)
    # the canopy ridge catches light on one side
    ridge = np.array([[-length / 2, 0], [canopy_front, 0], [canopy_front, width / 2],
                      [-length / 2, width / 2]])
    r.shade(g(ridge), 0.82)
    return g(outline)


def _top_garbage(r, obj, rng):
    length, width = obj.size
    g = lambda uv: _local_to_ground(obj, uv)  # noqa: E731
    base = _blob(rng, length, width, 16, 0.3)
    r.poly(g(base), _jitter(rng, (70, 80, 90), 15))
    cols = [(25, 25, 25), (230, 230, 230), (180, 120, 40), (60, 110, 160), (40, 140, 60),
            (200, 200, 90), (90, 90, 200), (120, 160, 190)]
    for _ in range(int(rng.integers(8, 22))):
        c = np.array([rng.uniform(-0.4, 0.4) * length, rng.uniform(-0.4, 0.4) * width])
        s = rng.uniform(0.15, 0.45) * min(length, width)
        bag = c + _blob(rng, s, s * rng.uniform(0.6, 1.0), 8, 0.3)
        col = _jitter(rng, cols[rng.integers(len(cols))], 15)
        r.poly(g(bag), col)
        r.line(g(c)[0], g(c + [0.05, -0.05])[0], _c(np.asarray(col) * 1.3 + 30), s * 0.2)
    return g(base)


def _soil_outline(obj, rng):
    length, width = obj.size
    return _blob(rng, length * 1.05, width * 1.05, 18, 0.22)


def _top_bare_soil(r, obj, rng):
    g = lambda uv: _local_to_ground(obj, uv)  # noqa: E731
    shape = _soil_outline(obj, rng)
    col = _jitter(rng, rng.choice([(60, 100, 150), (50, 85, 125), (75, 115, 160), (45, 70, 110)]), 10)
    win = r.window(g(shape))
    if win is None:
        return g(shape)
    r = r.sub(win)
    mask = np.zeros((r.h, r.w), np.uint8)
    cv2.fillPoly(mask, [r.cv(g(shape))], 255, cv2.LINE_AA, _SHIFT)
    r.poly(g(shape), col)
    _texture(rng, r.img, mask, 14.0, grain=2)
    length, width = obj.size
    for _ in range(int(rng.integers(2, 6))):  # tyre tracks
        a = np.array([rng.uniform(-0.4, 0.4) * length, rng.uniform(-0.4, 0.4) * width])
        b = a + rng.normal(0, 0.3, 2) * np.array([length, width])
        track = np.zeros_like(mask)
        r.line(g(a)[0], g(b)[0], 255, 0.35, img=track)
        _apply_shade(r.img, track & mask, 0.8)
    for _ in range(int(rng.integers(10, 40))):  # clods and stones
        c = np.array([rng.uniform(-0.45, 0.45) * length, rng.uniform(-0.45, 0.45) * width])
        r.circle(g(c)[0], rng.uniform(0.1, 0.4), _c(np.asarray(col) * rng.uniform(0.7, 1.25)))
    return g(shape)


def _top_covered_soil(r, obj, rng):
    g = lambda uv: _local_to_ground(obj, uv)  # noqa: E731
    shape = _soil_outline(obj, rng)
    col = _jitter(rng, rng.choice([(50, 120, 40), (60, 140, 70), (40, 95, 35), (80, 150, 60)]), 12)
    win = r.window(g(shape))
    if win is None:
        return g(shape)
    r = r.sub(win)
    mask = np.zeros((r.h, r.w), np.uint8)
    cv2.fillPoly(mask, [r.cv(g(shape))], 255, cv2.LINE_AA, _SHIFT)
    r.poly(g(shape), col)
    length, width = obj.size
    step = rng.uniform(0.5, 1.2)  # mesh weave, visible when close
    grid = np.zeros_like(mask)
    for k in np.arange(-length, length, step):
        r.line(g([[k, -width]])[0], g([[k, width]])[0], 255, 0.06, img=grid)
    for k in np.arange(-width, width, step):
        r.line(g([[-length, k]])[0], g([[length, k]])[0], 255, 0.06, img=grid)
    _apply_shade(r.img, grid & mask, 0.7)
    for _ in range(int(rng.integers(2, 7))):  # folds and seams
        a = np.array([rng.uniform(-0.45, 0.45) * length, rng.uniform(-0.45, 0.45) * width])
        b = a + rng.normal(0, 0.25, 2) * np.array([length, width])
        fold = np.zeros_like(mask)
        r.line(g(a)[0], g(b)[0], 255, 0.25, img=fold)
        _apply_shade(r.img, fold & mask, 0.65)
    _texture(rng, r.img, mask, 8.0)
    for _ in range(int(rng.integers(0, 4))):  # a few stones weigh the mesh down
        c = np.array([rng.uniform(-0.4, 0.4) * length, rng.uniform(-0.4, 0.4) * width])
        r.circle(g(c)[0], rng.uniform(0.15, 0.35), (140, 140, 140))
    return g(shape)


def _top_truck(r, obj, rng, covered: bool):
    length, width = obj.size
    g = lambda uv: _local_to_ground(obj, uv)  # noqa: E731
    cab_len = min(2.3, length * 0.3)
    body = _jitter(rng, rng.choice([(240, 240, 240), (30, 200, 240), (40, 40, 200), (160, 90, 30),
                                    (60, 140, 60), (30, 110, 230)]), 15)
    front = length / 2
    hw = width / 2
    r.poly(g(np.array([[front, -hw * 0.95], [front, hw * 0.95], [front - cab_len, hw],
                       [front - cab_len, -hw]])), body)
    r.poly(g(np.array([[front - 0.2, -hw * 0.8], [front - 0.2, hw * 0.8], [front - 0.7, hw * 0.8],
                       [front - 0.7, -hw * 0.8]])), (60, 50, 40))  # windscreen seen from above
    box_front = front - cab_len - 0.2
    box = np.array([[box_front, -hw], [box_front, hw], [-length / 2, hw], [-length / 2, -hw]])
    r.poly(g(box), _c(np.asarray(body) * 0.6))
    inner = np.array([[box_front - 0.15, -hw + 0.15], [box_front - 0.15, hw - 0.15],
                      [-length / 2 + 0.15, hw - 0.15], [-length / 2 + 0.15, -hw + 0.15]])
    if covered:
        tarp = _jitter(rng, rng.choice([(40, 110, 40), (140, 80, 30), (50, 50, 50), (150, 150, 150),
                                        (30, 90, 160)]), 10)
        r.poly(g(inner), tarp)
        for k in np.arange(-length / 2 + 0.5, box_front - 0.2, rng.uniform(0.5, 1.0)):
            r.line(g([[k, -hw + 0.15]])[0], g([[k, hw - 0.15]])[0], _c(np.asarray(tarp) * 0.7), 0.08)
    else:
        soil = _jitter(rng, rng.choice([(60, 100, 150), (50, 85, 125), (75, 115, 160)]), 10)
        r.poly(g(inner), soil)
        got = r.mask(g(inner))
        if got is not None:
            m, (x0, y0, x1, y1) = got
            _texture(rng, r.img[y0:y1, x0:x1], m, 16.0, grain=2)
        for _ in range(int(rng.integers(4, 12))):
            c = np.array([rng.uniform(-length / 2 + 0.4, box_front - 0.4), rng.uniform(-hw + 0.4, hw - 0.4)])
            r.circle(g(c)[0], rng.uniform(0.15, 0.4), _c(np.asarray(soil) * rng.uniform(0.7, 1.3)))
    return g(np.array([[front, -hw], [front, hw], [-length / 2, hw], [-length / 2, -hw]]))


def _top_person(r, obj, rng):
    length, width = obj.size
    g = lambda uv: _local_to_ground(obj, uv)  # noqa: E731
    shirt = _c(rng.integers(20, 240, 3))
    r.poly(g(_blob(rng, length * 0.55, width, 10, 0.08)), shirt)
    hair = _jitter(rng, (25, 25, 30), 10) if rng.random() < 0.8 else _c(rng.integers(40, 240, 3))
    r.circle(g([[0.02, 0.0]])[0], 0.11, hair)
    return g(np.array([[length / 2, -width / 2], [length / 2, width / 2],
                       [-length / 2, width / 2], [-length / 2, -width / 2]]))


def _top_vehicle(r, obj, rng):
    length, width = obj.size
    g = lambda uv: _local_to_ground(obj, uv)  # noqa: E731
    body = _c(rng.choice([(240, 240, 240), (20, 20, 20), (160, 160, 165), (40, 40, 180),
                          (150, 80, 20), (200, 200, 200), (30, 120, 200), (90, 90, 95)]))
    body = _jitter(rng, body, 10)
    hl, hw = length / 2, width / 2
    outline = np.array([[hl, -hw + 0.3], [hl - 0.2, -hw], [-hl + 0.2, -hw], [-hl, -hw + 0.3],
                        [-hl, hw - 0.3], [-hl + 0.2, hw], [hl - 0.2, hw], [hl, hw - 0.3]])
    r.poly(g(outline), body)
    glass = (55, 45, 40)
    ws = length * rng.uniform(0.18, 0.26)
    r.poly(g(np.array([[hl * 0.45, -hw * 0.8], [hl * 0.45, hw * 0.8], [hl * 0.45 - ws, hw * 0.85],
                       [hl * 0.45 - ws, -hw * 0.85]])), glass)
    r.poly(g(np.array([[-hl * 0.55, -hw * 0.8], [-hl * 0.55, hw * 0.8], [-hl * 0.8, hw * 0.75],
                       [-hl * 0.8, -hw * 0.75]])), glass)
    if rng.random() < 0.3:  # roof highlight / sunroof
        r.poly(g(np.array([[0.2, -0.3], [0.2, 0.3], [-0.5, 0.3], [-0.5, -0.3]])),
               _c(np.asarray(body) * 0.8))
    return g(np.array([[hl, -hw], [hl, hw], [-hl, hw], [-hl, -hw]]))


_TOP_DRAWERS = {
    "street_stall": _top_stall,
    "garbage_pile": _top_garbage,
    "bare_soil": _top_bare_soil,
    "covered_soil": _top_covered_soil,
    "muck_truck_open": lambda r, o, rng: _top_truck(r, o, rng, covered=False),
    "muck_truck_covered": lambda r, o, rng: _top_truck(r, o, rng, covered=True),
    "person": _top_person,
    "vehicle": _top_vehicle,
}


def _top_generic(r, obj, rng):
    """Cone-camera classes seen from above (a drone over road works): coloured footprints."""
    colors = {"cone_upright": (0, 90, 255), "cone_fallen": (0, 90, 255),
              "worker_helmet": (0, 220, 255), "worker_no_helmet": (30, 30, 30),
              "excavator": (0, 180, 240), "fence": (220, 120, 40)}
    fp = obj.footprint()
    r.poly(fp, colors[obj.cls])
    return fp


# ---------------------------------------------------------------------------------------
# aerial: the renderer


def _ground_extent(pose: CameraPose, max_range: float) -> np.ndarray:
    """Ground points bounding what the camera sees (rays clipped at max_range)."""
    right, down, forward = pose.basis()
    f = pose.focal_px
    w, h = pose.width, pose.height
    border = np.concatenate([
        np.column_stack([np.linspace(0, w, 17), np.zeros(17)]),
        np.column_stack([np.linspace(0, w, 17), np.full(17, h)]),
        np.column_stack([np.zeros(17), np.linspace(0, h, 17)]),
        np.column_stack([np.full(17, w), np.linspace(0, h, 17)]),
    ])
    pts = [np.array([pose.east_m, pose.north_m])]
    for x, y in border:
        ray = forward + right * (x - w / 2) / f + down * (y - h / 2) / f
        horiz = np.array(ray[:2])
        hn = np.linalg.norm(horiz)
        if ray[2] < -1e-9:
            s = pose.alt_m / -ray[2]
            p = horiz * s
            if np.linalg.norm(p) > max_range:
                p = p / np.linalg.norm(p) * max_range
        elif hn > 1e-9:
            p = horiz / hn * max_range
        else:
            continue
        pts.append(np.array([pose.east_m, pose.north_m]) + p)
    return np.array(pts)


def _finish(img: np.ndarray, look: Look, rng: np.random.Generator,
            haze_weight: np.ndarray | None = None) -> np.ndarray:
    """Apply light, haze, blur, noise and JPEG compression."""
    out = img.astype(np.float32)
    if haze_weight is not None and look.haze > 0:
        hz = np.array([200, 195, 185], np.float32)
        a = np.clip(haze_weight * look.haze, 0, 1)[..., None]
        out = out * (1 - a) + hz * a
    mean = out.mean()
    out = (out - mean) * look.contrast + mean
    out = out * look.gain * np.asarray(look.tint, np.float32)
    if look.blur_sigma > 0.15:
        out = cv2.GaussianBlur(out, (0, 0), look.blur_sigma)
    if look.motion_px >= 1.5:
        k = int(round(look.motion_px)) | 1
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        kernel /= max(kernel.sum(), 1e-6)
        out = cv2.filter2D(out, -1, kernel)
    if look.noise_sigma > 0:
        out += rng.normal(0, look.noise_sigma, out.shape[:2]).astype(np.float32)[..., None]
        out += rng.normal(0, look.noise_sigma * 0.4, out.shape).astype(np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if look.jpeg_quality < 100:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(look.jpeg_quality)])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def _box_from_outline(pose: CameraPose, outline_en: np.ndarray, *,
                      min_visible: float, min_box_px: float):
    """Clipped pixel box of a ground outline, or None when mostly outside or behind."""
    pts = np.column_stack([outline_en, np.zeros(len(outline_en))])
    xy, z = pose.project(pts)
    if (z <= 1e-3).any():
        return None
    x1, y1 = xy.min(axis=0)
    x2, y2 = xy.max(axis=0)
    full = (x2 - x1) * (y2 - y1)
    cx1, cy1 = max(x1, 0.0), max(y1, 0.0)
    cx2, cy2 = min(x2, float(pose.width)), min(y2, float(pose.height))
    if cx2 <= cx1 or cy2 <= cy1 or full <= 0:
        return None
    if (cx2 - cx1) * (cy2 - cy1) / full < min_visible:
        return None
    if min(cx2 - cx1, cy2 - cy1) < min_box_px:
        return None
    return float(cx1), float(cy1), float(cx2), float(cy2)


def render_aerial(objects: Sequence[SceneObject], pose: CameraPose, *,
                  streets: Sequence[Street] = (), seed: int, world_seed: int | None = None,
                  look: Look | None = None, trees: int | None = None,
                  min_visible: float = 0.5, min_box_px: float = 2.0,
                  max_occluded: float = 0.5) -> Rendered:
    """Render what a drone camera at `pose` sees of `objects` on the ground.

    `world_seed` fixes the city blocks around the objects, so consecutive frames of one
    flight show the same ground (defaults to `seed`); `seed` drives everything else
    (object details, shadows, trees, photographic look unless `look` is given). Objects
    whose box is mostly outside the image (< `min_visible`), smaller than `min_box_px`, or
    more than `max_occluded` hidden under trees get no TruthBox.
    """
    rng = np.random.default_rng(seed)
    world_seed = seed if world_seed is None else world_seed
    look = look if look is not None else Look.random(rng, harsh=0.5)
    max_range = min(600.0, 8.0 * pose.alt_m + 50.0)
    ext = _ground_extent(pose, max_range)
    emin, nmin = ext.min(axis=0) - 2.0
    emax, nmax = ext.max(axis=0) + 2.0
    gsd = max(0.02, pose.alt_m / pose.focal_px)
    limit = 2600
    gsd = max(gsd, (emax - emin) / limit, (nmax - nmin) / limit)
    rw = int(math.ceil((emax - emin) / gsd))
    rh = int(math.ceil((nmax - nmin) / gsd))
    r = _Raster(emin, nmax, gsd, rw, rh)

    sun_az = rng.uniform(0, 2 * np.pi)
    sun = np.array([math.sin(sun_az), math.cos(sun_az)]) * rng.uniform(0.3, 1.2)
    _draw_background(r, rng, world_seed, sun)
    _draw_streets(r, streets, rng)

    # shadows first, then objects
    for obj in objects:
        h = HEIGHT_M[obj.cls]
        if h > 0.2 and obj.cls in _TOP_DRAWERS:
            fp = obj.footprint()
            r.shade(np.concatenate([fp, fp + sun * h])[[0, 1, 5, 6, 2, 3, 7, 4]], 0.6)
    outlines = []
    for obj in objects:
        drawer = _TOP_DRAWERS.get(obj.cls, _top_generic)
        orng = np.random.default_rng([seed & 0xFFFFFFFF, CLASS_ID[obj.cls],
                                      int(obj.east_m * 100) & 0xFFFFFFF,
                                      int(obj.north_m * 100) & 0xFFFFFFF])
        outlines.append(drawer(r, obj, orng))

    # trees: occluders with their own shadows
    tree_mask = np.zeros((r.h, r.w), np.uint8)
    n_trees = int(rng.integers(0, 9)) if trees is None else trees
    candidates = []
    for st in streets:
        pts = np.asarray(st.points, float)
        for a, b in zip(pts[:-1], pts[1:], strict=False):
            d = b - a
            n = np.linalg.norm(d)
            if n < 1e-6:
                continue
            u, nrm = d / n, np.array([-d[1], d[0]]) / n
            for _ in range(n_trees):
                k = rng.uniform(0, n)
                side = rng.choice([-1, 1])
                candidates.append(a + u * k + nrm * side * (st.half_width_m + st.pavement_m * 0.6))
    while len(candidates) < n_trees:
        candidates.append(np.array([rng.uniform(emin, emax), rng.uniform(nmin, nmax)]))
    if candidates:
        idx = rng.choice(len(candidates), size=min(n_trees, len(candidates)), replace=False)
        for i in idx:
            c = candidates[i]
            radius = rng.uniform(1.5, 3.5)
            crown = c + _blob(rng, 2 * radius, 2 * radius, 14, 0.2)
            r.shade(crown + sun * 4.0, 0.55)
            col = _jitter(rng, (40, 100, 50), 15)
            r.poly(crown, col)
            cv2.fillPoly(tree_mask, [r.cv(crown)], 255, cv2.LINE_AA, _SHIFT)
            for _ in range(6):
                r.circle(c + rng.normal(0, radius * 0.35, 2), radius * 0.35,
                         _c(np.asarray(col) * rng.uniform(0.8, 1.25)))

    # warp the ground raster into the camera
    hmat = pose.ground_to_image()
    to_raster = np.array([[1 / gsd, 0, -emin / gsd], [0, -1 / gsd, nmax / gsd], [0, 0, 1]])
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    unhalf = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    inv = unhalf @ to_raster @ np.linalg.inv(hmat) @ half
    haze_col = (185, 190, 195)
    img = cv2.warpPerspective(r.img, inv, (pose.width, pose.height),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=haze_col)
    right, down, forward = pose.basis()
    rows = (np.arange(pose.height) + 0.5 - pose.height / 2) / pose.focal_px
    ray_z = forward[2] + down[2] * rows  # no roll: the ray's vertical part depends on the row
    sky_rows = ray_z >= -1e-3
    if sky_rows.any():
        sky = np.linspace(1.0, 0.85, int(sky_rows.sum()))[:, None, None] * np.array([235, 205, 170])
        img[sky_rows] = sky.astype(np.uint8)
    with np.errstate(divide="ignore"):
        dist = np.where(ray_z < -1e-3, pose.alt_m / np.maximum(-ray_z, 1e-6), 1e9)
    haze_weight = np.broadcast_to(np.clip((dist - 3 * pose.alt_m) / (10 * pose.alt_m), 0, 1)[:, None],
                                  (pose.height, pose.width))
    img = _finish(img, look, rng, haze_weight)

    boxes = []
    for i, (obj, outline) in enumerate(zip(objects, outlines, strict=True)):
        box = _box_from_outline(pose, outline, min_visible=min_visible, min_box_px=min_box_px)
        if box is None:
            continue
        if max_occluded < 1.0 and n_trees:
            got = r.mask(outline)
            if got is not None:
                m, (x0, y0, x1, y1) = got
                area = np.count_nonzero(m)
                covered = np.count_nonzero(m & tree_mask[y0:y1, x0:x1])
                if area and covered / area > max_occluded:
                    continue
        boxes.append(TruthBox(obj.cls, *box, obj.east_m, obj.north_m, i))
    return Rendered(img, boxes)


# ---------------------------------------------------------------------------------------
# aerial: random scenes for training


def _place(rng, placed: list, footprint: np.ndarray, margin: float = 0.3) -> bool:
    """Accept a footprint when it overlaps none already placed (axis-aligned test)."""
    lo, hi = footprint.min(axis=0) - margin, footprint.max(axis=0) + margin
    for plo, phi in placed:
        if (lo < phi).all() and (plo < hi).all():
            return False
    placed.append((lo, hi))
    return True


def random_aerial_scene(rng: np.random.Generator, *, width: int = 640, height: int = 480,
                        alt_range: tuple[float, float] = (30.0, 120.0)) -> AerialScene:
    """A random street scene seen by a drone: stalls and people on pavements, traffic,
    muck trucks, garbage, bare and covered soil on a site beside the street, distractors.
    Positions are around the local origin; the camera looks at a random point near it."""
    alt = float(rng.uniform(*alt_range))
    pitch = float(-90.0 if rng.random() < 0.5 else rng.uniform(-90.0, -50.0))
    hfov = float(rng.uniform(60.0, 90.0))
    heading = float(rng.uniform(0, 360))
    street_dir = float(rng.uniform(0, 180))
    u = np.array([math.sin(math.radians(street_dir)), math.cos(math.radians(street_dir))])
    nrm = np.array([-u[1], u[0]])
    half, pave = float(rng.uniform(4.0, 9.0)), float(rng.uniform(3.0, 6.0))
    streets = [Street((tuple(-u * 400), tuple(u * 400)), half, pave)]
    if rng.random() < 0.35:  # a cross street
        streets.append(Street((tuple(-nrm * 400), tuple(nrm * 400)), float(rng.uniform(4.0, 7.0)),
                              float(rng.uniform(3.0, 5.0))))
    # the camera looks at the street, a bit off its axis
    look_at = u * rng.uniform(-20, 20) + nrm * rng.uniform(-15, 15)
    tilt = math.radians(-pitch)
    back = alt / math.tan(tilt) if tilt < math.radians(89.9) else 0.0
    hd = math.radians(heading)
    cam = look_at - np.array([math.sin(hd), math.cos(hd)]) * back
    pose = CameraPose(float(cam[0]), float(cam[1]), alt, heading, pitch, hfov, width, height)
    view = alt * math.tan(math.radians(hfov) / 2) * 1.3
    objects: list[SceneObject] = []
    placed: list = []

    def put(cls, pos, yaw, length=None, width_=None, margin=0.3):
        obj = SceneObject(cls, float(pos[0]), float(pos[1]), float(yaw % 360), length, width_)
        if _place(rng, placed, obj.footprint(), margin):
            objects.append(obj)

    span = view + 20
    # pavement: stalls, garbage, people
    for _ in range(int(rng.poisson(3.0))):
        side = rng.choice([-1, 1])
        pos = look_at + u * rng.uniform(-span, span) + nrm * side * (half + rng.uniform(1.0, pave - 1.0))
        put("street_stall", pos, street_dir + rng.normal(0, 8) + rng.choice([0, 90]),
            rng.uniform(1.8, 3.5), rng.uniform(1.4, 2.6))
    for _ in range(int(rng.poisson(1.5))):
        side = rng.choice([-1, 1])
        pos = look_at + u * rng.uniform(-span, span) + nrm * side * (half + rng.uniform(0.5, pave + 2))
        put("garbage_pile", pos, rng.uniform(0, 360), rng.uniform(1.0, 4.0), rng.uniform(0.8, 3.0))
    for _ in range(int(rng.poisson(6.0))):
        side = rng.choice([-1, 1])
        pos = look_at + u * rng.uniform(-span, span) + nrm * side * (half + rng.uniform(0.3, pave))
        if rng.random() < 0.2:
            pos = look_at + u * rng.uniform(-span, span) + nrm * rng.uniform(-half, half)
        put("person", pos, rng.uniform(0, 360), rng.uniform(0.45, 0.6), rng.uniform(0.35, 0.5),
            margin=0.05)
    # carriageway: cars and muck trucks along the lanes
    for _ in range(int(rng.poisson(6.0))):
        lane = rng.choice([-1, 1]) * rng.uniform(0.25, 0.8) * half
        pos = look_at + u * rng.uniform(-span, span) + nrm * lane
        yaw = street_dir + (0 if lane > 0 else 180) + rng.normal(0, 3)
        if rng.random() < 0.3:
            cls = "muck_truck_open" if rng.random() < 0.5 else "muck_truck_covered"
            put(cls, pos, yaw, rng.uniform(7.5, 10.0), rng.uniform(2.3, 2.6), margin=1.0)
        else:
            put("vehicle", pos, yaw, rng.uniform(3.9, 5.2), rng.uniform(1.7, 2.0), margin=0.6)
    # a construction site beside the street: soil, bare or covered
    if rng.random() < 0.7:
        side = rng.choice([-1, 1])
        for _ in range(int(rng.integers(1, 4))):
            length, width_ = rng.uniform(6, 28), rng.uniform(5, 20)
            pos = (look_at + u * rng.uniform(-span, span)
                   + nrm * side * (half + pave + width_ / 2 + rng.uniform(1, 20)))
            cls = "bare_soil" if rng.random() < 0.5 else "covered_soil"
            put(cls, pos, street_dir + rng.normal(0, 20), length, width_, margin=1.5)
    # parked cars in parking blocks and trucks on site roads
    for _ in range(int(rng.poisson(2.0))):
        pos = look_at + rng.uniform(-span, span, 2)
        if abs(float(np.dot(pos, nrm))) > half + pave + 3:
            put("vehicle", pos, rng.uniform(0, 360), rng.uniform(3.9, 5.2), rng.uniform(1.7, 2.0))
    world_seed = int(rng.integers(0, 2**31))
    return AerialScene(tuple(objects), pose, tuple(streets), world_seed,
                       Look.random(rng))


# ---------------------------------------------------------------------------------------
# cone camera: road works seen from a pole


def _quad(pose: CameraPose, pts3: np.ndarray):
    xy, z = pose.project(pts3)
    return (None if (z <= 0.05).any() else xy), z


def _fill(img: np.ndarray, xy: np.ndarray, color) -> None:
    cv2.fillPoly(img, [np.round((xy - 0.5) * _SCALE).astype(np.int32)], _c(color), cv2.LINE_AA,
                 _SHIFT)


def _upright_frame(pose: CameraPose, obj: SceneObject, height_m: float):
    """Pixel position of an upright object's base centre and its metres-to-pixels scale."""
    base, z = pose.project(np.array([[obj.east_m, obj.north_m, 0.0]]))
    top, _ = pose.project(np.array([[obj.east_m, obj.north_m, height_m]]))
    if z[0] <= 0.3:
        return None
    return base[0], top[0], pose.focal_px / z[0]


def _cone_upright(img, pose, obj, rng):
    h = HEIGHT_M["cone_upright"] * rng.uniform(0.9, 1.1)
    fr = _upright_frame(pose, obj, h)
    if fr is None:
        return None
    (bx, by), (tx, ty), s = fr
    base_w, top_w = 0.38 * s, 0.06 * s
    orange = _jitter(rng, (0, 80, 240), 15)
    _fill(img, np.array([[bx - base_w * 0.75, by], [bx + base_w * 0.75, by],
                         [bx + base_w * 0.75, by - 0.05 * s], [bx - base_w * 0.75, by - 0.05 * s]]),
          (30, 30, 30) if rng.random() < 0.5 else orange)
    body = np.array([[bx - base_w / 2, by - 0.05 * s], [bx + base_w / 2, by - 0.05 * s],
                     [tx + top_w / 2, ty], [tx - top_w / 2, ty]])
    _fill(img, body, orange)
    for f0, f1 in ((0.35, 0.48), (0.6, 0.7)):
        y0, y1 = by + (ty - by) * f0, by + (ty - by) * f1
        w0 = base_w / 2 + (top_w / 2 - base_w / 2) * f0
        w1 = base_w / 2 + (top_w / 2 - base_w / 2) * f1
        _fill(img, np.array([[bx - w0, y0], [bx + w0, y0], [bx + w1, y1], [bx - w1, y1]]),
              (235, 235, 235))
    _fill(img, np.array([[bx, by - 0.05 * s], [bx + base_w / 2, by - 0.05 * s], [tx + top_w / 2, ty],
                         [tx, ty]]), _c(np.asarray(orange) * 0.8))
    xs = [bx - base_w * 0.75, bx + base_w * 0.75]
    return min(xs), ty, max(xs), by


def _cone_fallen(img, pose, obj, rng):
    fr = _upright_frame(pose, obj, 0.35)
    if fr is None:
        return None
    (bx, by), (tx, ty), s = fr
    direction = 1 if math.sin(math.radians(obj.yaw_deg)) >= 0 else -1
    along = 0.7 * s * max(0.35, abs(math.sin(math.radians(obj.yaw_deg))))
    hgt = 0.36 * s
    orange = _jitter(rng, (0, 80, 240), 15)
    x0 = bx - direction * along / 2
    x1 = bx + direction * along / 2
    body = np.array([[x0, by], [x0, by - hgt], [x1, by - hgt * 0.55], [x1, by - hgt * 0.4]])
    _fill(img, body, orange)
    for f0, f1 in ((0.35, 0.48), (0.6, 0.7)):
        xa, xb = x0 + (x1 - x0) * f0, x0 + (x1 - x0) * f1
        ha, hb = hgt * (1 - 0.5 * f0), hgt * (1 - 0.5 * f1)
        _fill(img, np.array([[xa, by - 0.05 * s], [xa, by - ha], [xb, by - hb], [xb, by - 0.05 * s]]),
              (235, 235, 235))
    base = np.array([[x0 - direction * 0.05 * s, by + 0.02 * s], [x0 - direction * 0.05 * s, by - hgt * 1.15],
                     [x0 + direction * 0.03 * s, by - hgt * 1.1], [x0 + direction * 0.03 * s, by]])
    _fill(img, base, (35, 35, 35) if rng.random() < 0.5 else _c(np.asarray(orange) * 0.7))
    xs = np.concatenate([body[:, 0], base[:, 0]])
    ys = np.concatenate([body[:, 1], base[:, 1]])
    return xs.min(), ys.min(), xs.max(), ys.max()


def _worker(img, pose, obj, rng, helmet: bool):
    h = rng.uniform(1.6, 1.85)
    fr = _upright_frame(pose, obj, h)
    if fr is None:
        return None
    (bx, by), (tx, ty), s = fr
    ph = by - ty  # pixel height
    w = 0.45 * s
    trousers = _jitter(rng, rng.choice([(40, 40, 40), (90, 60, 30), (60, 60, 70), (120, 90, 60)]), 12)
    stance = rng.uniform(0.05, 0.2) * s
    _fill(img, np.array([[bx - w * 0.35 - stance, by], [bx - w * 0.05, by], [bx, by - ph * 0.47],
                         [bx - w * 0.4, by - ph * 0.47]]), trousers)
    _fill(img, np.array([[bx + w * 0.05, by], [bx + w * 0.35 + stance, by], [bx + w * 0.4, by - ph * 0.47],
                         [bx, by - ph * 0.47]]), trousers)
    shirt = _jitter(rng, rng.choice([(200, 200, 200), (150, 80, 30), (60, 60, 60), (40, 40, 160)]), 20)
    torso = np.array([[bx - w / 2, by - ph * 0.45], [bx + w / 2, by - ph * 0.45],
                      [bx + w / 2, by - ph * 0.8], [bx - w / 2, by - ph * 0.8]])
    _fill(img, torso, shirt)
    if rng.random() < 0.85:  # hi-vis vest with reflective stripes
        vest = _jitter(rng, rng.choice([(0, 140, 255), (40, 230, 200), (0, 100, 255)]), 12)
        _fill(img, torso * [1, 1] + [[w * 0.05, 0], [-w * 0.05, 0], [-w * 0.05, 0], [w * 0.05, 0]], vest)
        for f in (0.55, 0.68):
            _fill(img, np.array([[bx - w * 0.45, by - ph * f], [bx + w * 0.45, by - ph * f],
                                 [bx + w * 0.45, by - ph * (f + 0.025)], [bx - w * 0.45, by - ph * (f + 0.025)]]),
                  (220, 220, 220))
    # arms: one hanging, one raised or holding a tool
    arm_w = max(1, int(0.09 * s))
    sh_l = (int(bx - w / 2), int(by - ph * 0.78))
    sh_r = (int(bx + w / 2), int(by - ph * 0.78))
    hand_l = (int(bx - w * 0.7), int(by - ph * rng.uniform(0.45, 0.9)))
    hand_r = (int(bx + w * 0.7), int(by - ph * rng.uniform(0.45, 0.9)))
    cv2.line(img, sh_l, hand_l, shirt, arm_w, cv2.LINE_AA)
    cv2.line(img, sh_r, hand_r, shirt, arm_w, cv2.LINE_AA)
    if rng.random() < 0.35:  # a shovel
        cv2.line(img, hand_r, (int(hand_r[0] + 0.3 * s), int(by)), (40, 60, 90), max(1, int(0.04 * s)),
                 cv2.LINE_AA)
    skin = _jitter(rng, (120, 160, 200), 20)
    head_r = 0.11 * s
    hc = (bx, by - ph * 0.88)
    cv2.circle(img, (int(round(hc[0] * _SCALE)), int(round(hc[1] * _SCALE))),
               max(1, int(head_r * _SCALE)), skin, -1, cv2.LINE_AA, _SHIFT)
    top = hc[1] - head_r
    if helmet:
        col = _jitter(rng, rng.choice([(0, 215, 255), (240, 240, 240), (30, 30, 220), (200, 120, 20),
                                       (0, 140, 255)]), 10)
        cx, cy = int(round(hc[0] * _SCALE)), int(round((hc[1] - head_r * 0.2) * _SCALE))
        ax = (max(1, int(head_r * 1.25 * _SCALE)), max(1, int(head_r * 1.1 * _SCALE)))
        cv2.ellipse(img, (cx, cy), ax, 0, 180, 360, col, -1, cv2.LINE_AA, _SHIFT)
        _fill(img, np.array([[hc[0] - head_r * 1.45, hc[1] - head_r * 0.25],
                             [hc[0] + head_r * 1.45, hc[1] - head_r * 0.25],
                             [hc[0] + head_r * 1.45, hc[1] - head_r * 0.1],
                             [hc[0] - head_r * 1.45, hc[1] - head_r * 0.1]]), col)
        top = hc[1] - head_r * 1.3
    else:
        hair = _jitter(rng, rng.choice([(20, 20, 25), (30, 40, 60), (120, 120, 120)]), 8)
        cx, cy = int(round(hc[0] * _SCALE)), int(round((hc[1] - head_r * 0.15) * _SCALE))
        ax = (max(1, int(head_r * 1.02 * _SCALE)), max(1, int(head_r * 0.9 * _SCALE)))
        cv2.ellipse(img, (cx, cy), ax, 0, 180, 360, hair, -1, cv2.LINE_AA, _SHIFT)
        top = hc[1] - head_r * 1.05
    xs = [bx - w * 0.75 - stance, bx + w * 0.75 + stance, hand_l[0], hand_r[0]]
    return min(xs), top, max(xs), by


def _excavator(img, pose, obj, rng):
    length = obj.size[0]
    fr = _upright_frame(pose, obj, 3.0)
    if fr is None:
        return None
    (bx, by), _, s = fr
    facing = 1 if math.sin(math.radians(obj.yaw_deg)) >= 0 else -1
    # side view foreshortened by how much the machine turns towards the camera
    span = length * s * max(0.45, abs(math.sin(math.radians(obj.yaw_deg))))
    k = span / length  # pixels per metre along the machine
    yellow = _jitter(rng, rng.choice([(0, 190, 250), (0, 160, 240), (20, 120, 230)]), 10)
    dark = (40, 40, 45)
    x0 = bx - span / 2
    # tracks
    cv2.rectangle(img, (int(x0), int(by - 0.9 * s)), (int(x0 + span * 0.62), int(by)), dark, -1)
    for i in range(8):
        xx = int(x0 + span * 0.62 * i / 8)
        cv2.line(img, (xx, int(by - 0.9 * s)), (xx, int(by)), (70, 70, 70), max(1, int(0.05 * s)))
    # house and cab
    hx0 = x0 + span * 0.05
    cv2.rectangle(img, (int(hx0), int(by - 2.0 * s)), (int(hx0 + span * 0.55), int(by - 0.9 * s)), yellow, -1)
    cab_x = hx0 + (span * 0.3 if facing > 0 else 0)
    cv2.rectangle(img, (int(cab_x), int(by - 3.0 * s)), (int(cab_x + span * 0.22), int(by - 2.0 * s)), yellow, -1)
    cv2.rectangle(img, (int(cab_x + span * 0.03), int(by - 2.85 * s)),
                  (int(cab_x + span * 0.19), int(by - 2.1 * s)), (90, 70, 50), -1)
    # boom, stick and bucket reaching forward
    root = np.array([cab_x + (span * 0.22 if facing > 0 else 0), by - 1.9 * s])
    elbow = np.array([bx + facing * span * 0.35, by - rng.uniform(3.0, 4.2) * s])
    tip = np.array([bx + facing * span * rng.uniform(0.45, 0.55), by - rng.uniform(0.3, 1.5) * s])
    t = max(2, int(0.35 * k))
    cv2.line(img, tuple(root.astype(int)), tuple(elbow.astype(int)), yellow, t, cv2.LINE_AA)
    cv2.line(img, tuple(elbow.astype(int)), tuple(tip.astype(int)), yellow, max(2, int(t * 0.8)), cv2.LINE_AA)
    bucket = np.array([tip + [-0.4 * k * facing, 0], tip + [0.5 * k * facing, 0.2 * s],
                       tip + [0.3 * k * facing, 0.8 * s], tip + [-0.3 * k * facing, 0.6 * s]])
    _fill(img, bucket, dark)
    xs = np.concatenate([[x0, x0 + span * 0.62, root[0], elbow[0], tip[0]], bucket[:, 0]])
    ys = np.concatenate([[by, by - 3.0 * s, elbow[1] - t / 2], bucket[:, 1]])
    return xs.min(), ys.min(), xs.max(), ys.max()


def _fence(img, pose, obj, rng):
    length = obj.size[0]
    height = rng.choice([1.0, 1.8, 2.0]) if obj.width_m is None else HEIGHT_M["fence"]
    ends = _local_to_ground(obj, np.array([[-length / 2, 0.0], [length / 2, 0.0]]))
    n_panels = max(1, int(round(length / rng.uniform(1.5, 2.5))))
    style = int(rng.integers(3))
    colors = [((230, 230, 230), (40, 40, 220)), ((200, 120, 30), (235, 235, 235)),
              ((60, 150, 60), (200, 200, 200))][style]
    all_xy = []
    for i in range(n_panels):
        a = ends[0] + (ends[1] - ends[0]) * i / n_panels
        b = ends[0] + (ends[1] - ends[0]) * (i + 1) / n_panels
        pts = np.array([[a[0], a[1], 0], [b[0], b[1], 0], [b[0], b[1], height], [a[0], a[1], height]])
        xy, _ = _quad(pose, pts)
        if xy is None:
            continue
        all_xy.append(xy)
        if style == 0:  # red and white water-filled barrier blocks
            _fill(img, xy, colors[i % 2])
        elif style == 1:  # site hoarding panels
            _fill(img, xy, colors[0])
            mid = np.array([[a[0], a[1], height * 0.15], [b[0], b[1], height * 0.15],
                            [b[0], b[1], height * 0.85], [a[0], a[1], height * 0.85]])
            mxy, _ = _quad(pose, mid)
            if mxy is not None:
                _fill(img, mxy, colors[1])
        else:  # mesh panels in a frame
            frame_col = colors[0]
            cv2.polylines(img, [np.round((xy - 0.5) * _SCALE).astype(np.int32)], True, frame_col,
                          2, cv2.LINE_AA, _SHIFT)
            for f in np.linspace(0.1, 0.9, 7):
                p = np.array([[a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, 0],
                              [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, height]])
                pxy, _ = _quad(pose, p)
                if pxy is not None:
                    cv2.line(img, tuple(pxy[0].astype(int)), tuple(pxy[1].astype(int)), colors[1], 1,
                             cv2.LINE_AA)
            for f in np.linspace(0.15, 0.85, 5):
                p = np.array([[a[0], a[1], height * f], [b[0], b[1], height * f]])
                pxy, _ = _quad(pose, p)
                if pxy is not None:
                    cv2.line(img, tuple(pxy[0].astype(int)), tuple(pxy[1].astype(int)), colors[1], 1,
                             cv2.LINE_AA)
        post = np.array([[a[0], a[1], 0], [a[0], a[1], height * 1.05]])
        pxy, _ = _quad(pose, post)
        if pxy is not None:
            cv2.line(img, tuple(pxy[0].astype(int)), tuple(pxy[1].astype(int)), (70, 70, 70), 2, cv2.LINE_AA)
    if not all_xy:
        return None
    allp = np.concatenate(all_xy)
    return allp[:, 0].min(), allp[:, 1].min(), allp[:, 0].max(), allp[:, 1].max()


def _car_side(img, pose, obj, rng):
    fr = _upright_frame(pose, obj, 1.5)
    if fr is None:
        return None
    (bx, by), _, s = fr
    length = obj.size[0] * max(0.45, abs(math.sin(math.radians(obj.yaw_deg)))) * s
    body = _c(rng.integers(20, 240, 3))
    cv2.rectangle(img, (int(bx - length / 2), int(by - 1.0 * s)), (int(bx + length / 2), int(by - 0.3 * s)),
                  body, -1)
    cv2.rectangle(img, (int(bx - length * 0.3), int(by - 1.5 * s)), (int(bx + length * 0.25), int(by - 1.0 * s)),
                  _c(np.asarray(body) * 0.8), -1)
    cv2.rectangle(img, (int(bx - length * 0.27), int(by - 1.45 * s)), (int(bx + length * 0.22), int(by - 1.05 * s)),
                  (80, 60, 50), -1)
    for fx in (-0.32, 0.32):
        cv2.circle(img, (int(bx + fx * length), int(by - 0.3 * s)), max(1, int(0.32 * s)), (25, 25, 25), -1)
    return bx - length / 2 - 1, by - 1.5 * s - 1, bx + length / 2 + 1, by + 0.05 * s + 1


_CONE_DRAWERS = {
    "cone_upright": _cone_upright,
    "cone_fallen": _cone_fallen,
    "worker_helmet": lambda img, p, o, rng: _worker(img, p, o, rng, helmet=True),
    "worker_no_helmet": lambda img, p, o, rng: _worker(img, p, o, rng, helmet=False),
    "excavator": _excavator,
    "fence": _fence,
}


def _draw_road_ground(pose: CameraPose, road_half: float, rng: np.random.Generator,
                      world_seed: int) -> np.ndarray:
    """The road and pavements seen by the cone camera, via the ground homography."""
    far = 120.0
    east0, north1 = -40.0, far
    gsd = (far + 5) / 2000  # 6 cm: fine near the pole, and the raster stays 1280 x 2000
    w, h = int(80 / gsd), int((far + 5) / gsd)
    r = _Raster(east0, north1, gsd, w, h)
    wrng = np.random.default_rng(world_seed)
    r.img[:] = _jitter(wrng, (150, 155, 155), 12)
    _texture(rng, r.img, None, 6.0)
    street = Street(((0.0, -10.0), (0.0, far + 10)), road_half, float(wrng.uniform(3, 5)))
    _draw_streets(r, [street], rng)
    for _ in range(int(rng.integers(0, 4))):  # manholes and patches
        c = np.array([rng.uniform(-road_half, road_half), rng.uniform(3, 40)])
        if rng.random() < 0.5:
            r.circle(c, 0.35, (60, 60, 60))
        else:
            r.poly(c + _blob(rng, rng.uniform(1, 4), rng.uniform(1, 3), 8, 0.2),
                   _jitter(rng, (55, 58, 60), 6))
    hmat = pose.ground_to_image()
    to_raster = np.array([[1 / gsd, 0, -east0 / gsd], [0, -1 / gsd, north1 / gsd], [0, 0, 1]])
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    unhalf = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    inv = unhalf @ to_raster @ np.linalg.inv(hmat) @ half
    img = cv2.warpPerspective(r.img, inv, (pose.width, pose.height),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(170, 175, 180))
    _, down, forward = pose.basis()
    rows = (np.arange(pose.height) + 0.5 - pose.height / 2) / pose.focal_px
    ray_z = forward[2] + down[2] * rows
    sky_rows = ray_z >= -2e-3
    if sky_rows.any():
        sky = np.linspace(1.0, 0.85, int(sky_rows.sum()))[:, None, None] * np.array([235, 205, 170])
        img[sky_rows] = sky.astype(np.uint8)
    # building facades along both sides, beyond the pavements
    side_off = road_half + street.pavement_m
    for side in (-1, 1):
        n0 = -5.0
        while n0 < far:
            length = wrng.uniform(8, 25)
            height = wrng.uniform(6, 30)
            col = _jitter(wrng, wrng.choice([(170, 170, 165), (120, 130, 150), (90, 110, 160), (200, 200, 195)]), 15)
            pts = np.array([[side * side_off, n0, 0], [side * side_off, n0 + length, 0],
                            [side * side_off, n0 + length, height], [side * side_off, n0, height]])
            xy, _ = _quad(pose, pts)
            if xy is not None:
                _fill(img, xy, col)
                for fl in np.arange(3.0, height - 1, 3.0):  # window rows
                    wpts = np.array([[side * side_off, n0 + 0.5, fl], [side * side_off, n0 + length - 0.5, fl],
                                     [side * side_off, n0 + length - 0.5, fl + 1.3],
                                     [side * side_off, n0 + 0.5, fl + 1.3]])
                    wxy, _ = _quad(pose, wpts)
                    if wxy is not None:
                        _fill(img, wxy, _c(np.asarray(col) * 0.55))
            n0 += length
    return img


def render_cone(objects: Sequence[SceneObject], *, width: int = 1280, height: int = 720, seed: int,
                pose: CameraPose | None = None, road_half_width_m: float = 5.0,
                world_seed: int | None = None, look: Look | None = None,
                distractors: bool = True, min_visible: float = 0.5, min_box_px: float = 3.0,
                max_occluded: float = 0.6) -> Rendered:
    """Render a cone camera's view of road works.

    Positions are metres in the camera's own frame: the camera stands at east = north = 0
    and looks north along the road (`pose` defaults to a 4 m pole, pitch -18 deg, 70 deg
    HFOV). Objects are drawn far to near, so nearer ones hide what is behind them; a box
    hidden more than `max_occluded` by nearer objects, mostly outside the image, or smaller
    than `min_box_px` is left out of the truth.
    """
    rng = np.random.default_rng(seed)
    world_seed = seed if world_seed is None else world_seed
    pose = pose or CameraPose(0.0, 0.0, 4.0, 0.0, -18.0, 70.0, width, height)
    if (pose.width, pose.height) != (width, height):
        pose = CameraPose(pose.east_m, pose.north_m, pose.alt_m, pose.heading_deg,
                          pose.gimbal_pitch_deg, pose.hfov_deg, width, height)
    look = look if look is not None else Look.random(rng, harsh=0.5)
    img = _draw_road_ground(pose, road_half_width_m, rng, world_seed)

    items = [(i, o) for i, o in enumerate(objects)]
    if distractors:
        for _ in range(int(rng.integers(0, 3))):
            lane = rng.uniform(-road_half_width_m * 0.8, road_half_width_m * 0.8)
            items.append((-1, SceneObject("vehicle", lane, float(rng.uniform(12, 60)),
                                          float(rng.choice([90.0, 270.0, 10.0])))))
    cam = np.array([pose.east_m, pose.north_m])
    items.sort(key=lambda it: -float(np.linalg.norm(np.array([it[1].east_m, it[1].north_m]) - cam)))

    # painter's order; `owner` keeps which object each pixel shows last, so what a
    # nearer object hides of a farther one is known exactly
    owner = np.full((height, width), -1, np.int32)
    drawn: list[tuple[int, SceneObject, tuple | None, int]] = []
    for idx, obj in items:
        before = img.copy()
        if idx < 0:
            box = _car_side(img, pose, obj, np.random.default_rng([seed & 0xFFFFFFFF, len(drawn), 99]))
        else:
            drawer = _CONE_DRAWERS.get(obj.cls)
            if drawer is None:
                raise SceneError(f"{obj.cls!r} is not drawn in cone-camera views; use "
                                 f"one of {', '.join(CONE_CLASSES)} (or render_aerial)")
            orng = np.random.default_rng([seed & 0xFFFFFFFF, idx, CLASS_ID[obj.cls]])
            box = drawer(img, pose, obj, orng)
        area = 0
        if box is not None:
            x0 = max(0, int(math.floor(box[0])) - 2)
            y0 = max(0, int(math.floor(box[1])) - 2)
            x1 = min(width, int(math.ceil(box[2])) + 2)
            y1 = min(height, int(math.ceil(box[3])) + 2)
            if x1 > x0 and y1 > y0:
                changed = np.any(before[y0:y1, x0:x1] != img[y0:y1, x0:x1], axis=2)
                owner[y0:y1, x0:x1][changed] = len(drawn)
                area = int(np.count_nonzero(changed))
        drawn.append((idx, obj, box, area))
    visible = np.bincount(owner[owner >= 0].ravel(), minlength=len(drawn))

    img = _finish(img, look, rng)
    boxes = []
    for k, (idx, obj, box, area) in enumerate(drawn):
        if idx < 0 or box is None or area == 0:
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        full = (x2 - x1) * (y2 - y1)
        cx1, cy1 = max(x1, 0.0), max(y1, 0.0)
        cx2, cy2 = min(x2, float(width)), min(y2, float(height))
        if full <= 0 or cx2 <= cx1 or cy2 <= cy1:
            continue
        if (cx2 - cx1) * (cy2 - cy1) / full < min_visible or min(cx2 - cx1, cy2 - cy1) < min_box_px:
            continue
        if 1.0 - visible[k] / area > max_occluded:
            continue
        boxes.append(TruthBox(obj.cls, cx1, cy1, cx2, cy2, obj.east_m, obj.north_m, idx))
    boxes.sort(key=lambda b: b.object_index)
    return Rendered(img, boxes)


def random_cone_scene(rng: np.random.Generator, *, width: int = 640,
                      height: int = 480) -> ConeScene:
    """A random road-works scene: a work area on the road fenced and coned off, with
    cones (some fallen), workers with and without helmets, maybe an excavator."""
    cam_h = float(rng.uniform(2.5, 6.0))
    pitch = float(rng.uniform(-30.0, -8.0))
    hfov = float(rng.uniform(55.0, 90.0))
    heading = float(rng.normal(0, 6))
    pose = CameraPose(0.0, 0.0, cam_h, heading, pitch, hfov, width, height)
    road_half = float(rng.uniform(3.5, 8.0))
    near = float(rng.uniform(4.0, 14.0))
    depth = float(rng.uniform(8.0, 30.0))
    left = float(rng.uniform(-road_half, 0.0))
    right = float(min(road_half, left + rng.uniform(2.5, 8.0)))
    objects: list[SceneObject] = []
    placed: list = []

    def put(obj, margin=0.1):
        if _place(rng, placed, obj.footprint(), margin):
            objects.append(obj)

    # an excavator inside the work area, placed first so cones and fences go around it;
    # across a wide area it shows its side, in a narrow one it works along the road
    if rng.random() < 0.55:
        yaw = float(rng.choice([90.0, 270.0, 60.0, 300.0]) if right - left > 6.5
                    else rng.choice([20.0, 160.0, 200.0, 340.0]))
        put(SceneObject("excavator", float((left + right) / 2 + rng.normal(0, 0.5)),
                        float(near + rng.uniform(0.3, 0.8) * depth), yaw,
                        float(rng.uniform(5.5, 7.5))), margin=0.2)
    # cones along the open side(s) of the work area, every 1.5-3 m
    step = float(rng.uniform(1.5, 3.0))
    for n in np.arange(near, near + depth, step):
        if rng.random() < 0.85:
            x = right + rng.normal(0, 0.1)
            cls = "cone_fallen" if rng.random() < 0.15 else "cone_upright"
            put(SceneObject(cls, float(x), float(n), float(rng.uniform(0, 360))))
    for x in np.arange(left, right, step):
        if rng.random() < 0.8:
            cls = "cone_fallen" if rng.random() < 0.15 else "cone_upright"
            put(SceneObject(cls, float(x), float(near - 0.5 + rng.normal(0, 0.1)), float(rng.uniform(0, 360))))
    # fencing: along the left side and/or across the far end
    if rng.random() < 0.75:
        n0 = near + rng.uniform(0, 3)
        flen = float(rng.uniform(4, min(12, depth)))
        put(SceneObject("fence", float(left + 0.3), float(n0 + flen / 2), 0.0, flen), margin=0.0)
    if rng.random() < 0.5:
        flen = float(max(2.0, right - left - 0.5))
        put(SceneObject("fence", float((left + right) / 2), float(near + depth * 0.8), 90.0, flen),
            margin=0.0)
    if rng.random() < 0.3:  # a stray fence panel near the camera
        flen = float(rng.uniform(2, 4))
        put(SceneObject("fence", float(rng.uniform(-road_half, road_half)), float(rng.uniform(6, 15)),
                        float(rng.choice([0.0, 90.0, 60.0])), flen), margin=0.0)
    # workers, inside and around the area
    for _ in range(int(rng.integers(1, 6))):
        cls = "worker_helmet" if rng.random() < 0.55 else "worker_no_helmet"
        put(SceneObject(cls, float(rng.uniform(left - 1, right + 1)),
                        float(near + rng.uniform(-2, depth)), float(rng.uniform(0, 360))), margin=0.05)
    # extra cones scattered on the road
    for _ in range(int(rng.poisson(1.5))):
        cls = "cone_fallen" if rng.random() < 0.4 else "cone_upright"
        put(SceneObject(cls, float(rng.uniform(-road_half, road_half)), float(rng.uniform(4, 30)),
                        float(rng.uniform(0, 360))))
    return ConeScene(tuple(objects), pose, road_half, int(rng.integers(0, 2**31)), Look.random(rng))


def render_scene(scene: AerialScene | ConeScene, seed: int) -> Rendered:
    """Render a scene from `random_aerial_scene` or `random_cone_scene`."""
    if isinstance(scene, AerialScene):
        return render_aerial(scene.objects, scene.pose, streets=scene.streets, seed=seed,
                             world_seed=scene.world_seed, look=scene.look)
    return render_cone(scene.objects, width=scene.pose.width, height=scene.pose.height, seed=seed,
                       pose=scene.pose, road_half_width_m=scene.road_half_width_m,
                       world_seed=scene.world_seed, look=scene.look)
