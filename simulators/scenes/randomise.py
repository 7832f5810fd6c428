"""Domain randomisation for training sets: what makes a detector trained on rendered scenes
hold on photographs.

The renderer's own scenes are clean and regular; photographs are not. Following the
synthetic-to-real detection literature (randomise everything the detector should ignore,
so that the only constant left is the object), a training image drawn here may get:

- a photographic-looking backdrop instead of the plain sky and facades: multi-octave
  colour noise, foliage, buildings with windows, poles and wires, blended over the scene;
- unlabelled distractors of similar colours and shapes: orange barrels and bollards with
  reflective bands, red-and-white barrier boards, warning and road signs, bins, trees,
  lamp posts;
- lens and sensor effects: barrel / pincushion distortion (boxes follow), vignetting,
  chromatic shift, sensor noise, JPEG recompression;
- lighting from dawn to night under street lamps.

Nothing here is used by the live simulators; only the dataset renderer of
`detectors.training` calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from simulators.scenes.camera import CameraPose
from simulators.scenes.catalogue import TruthBox
from simulators.scenes.raster import _c, _jitter

ORANGE_LIKE = ((0, 90, 250), (0, 60, 230), (20, 120, 255), (30, 40, 200), (0, 140, 255))
"""BGR colours close to a cone's, for the distractors that should not be taken for one."""


@dataclass(frozen=True, slots=True)
class Distractor:
    """An unlabelled object standing on the ground in a cone-camera view."""

    kind: str
    east_m: float
    north_m: float
    size: float = 1.0  # scale factor on the kind's usual size


@dataclass(frozen=True, slots=True)
class Clutter:
    """What a cone-camera view gets beyond its labelled objects."""

    distractors: tuple[Distractor, ...] = ()
    backdrop_seed: int | None = None  # None: the plain renderer background
    backdrop_sky: float = 0.0  # 0..1 how much of the sky / facades the backdrop replaces
    backdrop_ground: float = 0.0  # 0..1 how strongly it shows through the road


# ---------------------------------------------------------------------------------------
# backdrops


def noise_field(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    """Smooth multi-octave noise in [0, 1], shape (h, w), float32."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = 2 ** (o + 1)
        small = rng.random((cells + 1, cells + 1)).astype(np.float32)
        out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.55
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _palette(rng: np.random.Generator) -> np.ndarray:
    """Two to four colours of a random natural or urban palette (BGR, float)."""
    palettes = [
        [(60, 110, 60), (40, 80, 40), (90, 140, 110), (30, 60, 50)],  # foliage
        [(120, 120, 118), (90, 92, 95), (150, 150, 145), (70, 70, 75)],  # concrete, asphalt
        [(70, 110, 150), (60, 90, 120), (110, 150, 180)],  # brick, dirt
        [(200, 170, 140), (230, 210, 190), (180, 150, 120)],  # sky, haze
        [(40, 40, 45), (80, 80, 85), (25, 25, 30)],  # night, shade
        [(140, 170, 190), (110, 140, 160), (170, 190, 200)],  # sand, gravel
    ]
    base = np.array(palettes[int(rng.integers(len(palettes)))], np.float32)
    return base + rng.normal(0, 15, base.shape).astype(np.float32)


def backdrop(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A photographic-looking clutter image: noise-coloured regions, buildings, foliage,
    poles and wires. Not a photograph, but as busy as one."""
    pal = _palette(rng)
    t = noise_field(rng, h, w)
    idx = np.clip(t * (len(pal) - 1), 0, len(pal) - 1.001)
    lo = np.floor(idx).astype(int)
    frac = (idx - lo)[..., None]
    img = pal[lo] * (1 - frac) + pal[lo + 1] * frac
    img += (noise_field(rng, h, w, 3)[..., None] - 0.5) * rng.uniform(10, 60)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 6))):  # buildings with windows
        x0 = int(rng.uniform(-0.2, 1.0) * w)
        bw = int(rng.uniform(0.1, 0.5) * w)
        y0 = int(rng.uniform(0.0, 0.6) * h)
        col = _jitter(rng, (150, 150, 150), 45)
        cv2.rectangle(img, (x0, y0), (x0 + bw, h), col, -1)
        win = _c(np.asarray(col) * rng.uniform(0.3, 0.7))
        step_x, step_y = max(4, int(rng.uniform(0.02, 0.06) * w)), max(4, int(rng.uniform(0.03, 0.08) * h))
        for yy in range(y0 + step_y // 2, h, step_y):
            for xx in range(x0 + step_x // 3, x0 + bw - step_x // 2, step_x):
                cv2.rectangle(img, (xx, yy), (xx + step_x // 2, yy + step_y // 2), win, -1)
    for _ in range(int(rng.integers(0, 8))):  # foliage blobs
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        ax = (int(rng.uniform(0.03, 0.2) * w), int(rng.uniform(0.03, 0.2) * h))
        cv2.ellipse(img, c, ax, float(rng.uniform(0, 180)), 0, 360,
                    _jitter(rng, (50, 100, 55), 25), -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 4))):  # poles and wires
        x = int(rng.uniform(0, w))
        cv2.line(img, (x, int(rng.uniform(0, h * 0.5))), (x + int(rng.normal(0, 5)), h),
                 _jitter(rng, (70, 70, 70), 20), max(1, int(rng.uniform(0.004, 0.02) * w)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):
        y = int(rng.uniform(0, h * 0.4))
        cv2.line(img, (0, y), (w, y + int(rng.normal(0, h * 0.05))), (40, 40, 40), 1, cv2.LINE_AA)
    return img


def blend_backdrop(img: np.ndarray, pose: CameraPose, clutter: Clutter) -> np.ndarray:
    """Blend a backdrop over the sky and facades (rows above the horizon and the upper
    part of the view) and, more faintly, over the road."""
    if clutter.backdrop_seed is None:
        return img
    rng = np.random.default_rng(clutter.backdrop_seed)
    h, w = img.shape[:2]
    bd = backdrop(rng, h, w).astype(np.float32)
    _, down, forward = pose.basis()
    rows = (np.arange(h) + 0.5 - h / 2) / pose.focal_px
    ray_z = forward[2] + down[2] * rows
    # weight: full above the horizon, fading to the ground weight some rows below it
    horizon = int(np.argmax(ray_z < -2e-3)) if (ray_z < -2e-3).any() else h
    fade = max(4, int(0.12 * h))
    yy = np.arange(h, dtype=np.float32)
    wsky = np.clip((horizon + fade - yy) / fade, 0, 1)
    weight = clutter.backdrop_ground + (clutter.backdrop_sky - clutter.backdrop_ground) * wsky
    weight = weight[:, None, None] * np.clip(noise_field(rng, h, w, 3) * 1.6, 0.3, 1)[..., None]
    out = img.astype(np.float32) * (1 - weight) + bd * weight
    return np.clip(out, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# distractors (unlabelled), drawn like the cone-camera's standing objects


def _stand(pose: CameraPose, east: float, north: float, height_m: float):
    base, z = pose.project(np.array([[east, north, 0.0]]))
    top, _ = pose.project(np.array([[east, north, height_m]]))
    if z[0] <= 0.3:
        return None
    return base[0], top[0], pose.focal_px / z[0]


def _poly(img: np.ndarray, pts, color) -> None:
    cv2.fillPoly(img, [np.round(np.asarray(pts, float) * 16).astype(np.int32)], _c(color),
                 cv2.LINE_AA, 4)


def _banded_cylinder(img, bx, by, ty, half_w, color, bands, rng):
    _poly(img, [[bx - half_w, by], [bx + half_w, by], [bx + half_w, ty], [bx - half_w, ty]], color)
    for f0 in bands:
        y0, y1 = by + (ty - by) * f0, by + (ty - by) * (f0 + rng.uniform(0.06, 0.12))
        _poly(img, [[bx - half_w, y0], [bx + half_w, y0], [bx + half_w, y1], [bx - half_w, y1]],
              _jitter(rng, (225, 225, 225), 15))
    shade = _c(np.asarray(color, float) * 0.7)
    _poly(img, [[bx + half_w * 0.4, by], [bx + half_w, by], [bx + half_w, ty], [bx + half_w * 0.4, ty]],
          shade)


def _draw_distractor(img: np.ndarray, pose: CameraPose, d: Distractor, rng: np.random.Generator) -> None:
    if d.kind == "barrel":  # orange drum with white bands: not a cone
        fr = _stand(pose, d.east_m, d.north_m, 1.0 * d.size)
        if fr:
            (bx, by), (_, ty), s = fr
            _banded_cylinder(img, bx, by, ty, 0.3 * s * d.size,
                             _jitter(rng, ORANGE_LIKE[int(rng.integers(len(ORANGE_LIKE)))], 12),
                             (0.25, 0.6), rng)
    elif d.kind == "bollard":  # short post, orange or yellow, reflective band near the top
        fr = _stand(pose, d.east_m, d.north_m, 0.9 * d.size)
        if fr:
            (bx, by), (_, ty), s = fr
            col = rng.choice([(0, 200, 255), (0, 110, 250), (40, 40, 40), (220, 220, 220)])
            _banded_cylinder(img, bx, by, ty, 0.07 * s * d.size, _jitter(rng, col, 10), (0.8,), rng)
    elif d.kind == "board":  # red-and-white striped barrier board on legs
        fr = _stand(pose, d.east_m, d.north_m, 1.1 * d.size)
        if fr:
            (bx, by), (_, ty), s = fr
            half = rng.uniform(0.6, 1.2) * s * d.size
            y0, y1 = ty, ty + 0.25 * s
            cv2.line(img, (int(bx - half * 0.8), int(by)), (int(bx - half * 0.8), int(y1)), (60, 60, 60),
                     max(1, int(0.04 * s)))
            cv2.line(img, (int(bx + half * 0.8), int(by)), (int(bx + half * 0.8), int(y1)), (60, 60, 60),
                     max(1, int(0.04 * s)))
            n = int(rng.integers(4, 9))
            red = _jitter(rng, (30, 30, 220), 15)
            for i in range(n):
                xa, xb = bx - half + 2 * half * i / n, bx - half + 2 * half * (i + 1) / n
                _poly(img, [[xa, y0], [xb, y0], [xb, y1], [xa, y1]], red if i % 2 else (235, 235, 235))
    elif d.kind == "sign":  # warning triangle, round road sign or rectangle on a post
        h_m = rng.uniform(1.8, 2.8)
        fr = _stand(pose, d.east_m, d.north_m, h_m)
        if fr:
            (bx, by), (tx, ty), s = fr
            cv2.line(img, (int(bx), int(by)), (int(tx), int(ty)), (110, 110, 110), max(1, int(0.05 * s)),
                     cv2.LINE_AA)
            r = 0.35 * s * d.size
            shape = int(rng.integers(3))
            if shape == 0:
                tri = [[tx, ty - r], [tx + r, ty + r * 0.7], [tx - r, ty + r * 0.7]]
                _poly(img, tri, _jitter(rng, (30, 30, 210), 15))
                inner = [[tx, ty - r * 0.55], [tx + r * 0.6, ty + r * 0.45], [tx - r * 0.6, ty + r * 0.45]]
                _poly(img, inner, (230, 230, 230) if rng.random() < 0.5 else (0, 200, 255))
            elif shape == 1:
                col = rng.choice([(170, 80, 20), (30, 30, 210), (0, 140, 255)])
                cv2.circle(img, (int(tx), int(ty)), max(1, int(r)), _jitter(rng, col, 10), -1, cv2.LINE_AA)
                cv2.circle(img, (int(tx), int(ty)), max(1, int(r * 0.7)), (235, 235, 235), -1, cv2.LINE_AA)
            else:
                col = rng.choice([(20, 120, 30), (170, 80, 20), (0, 160, 255)])
                cv2.rectangle(img, (int(tx - r * 1.4), int(ty - r)), (int(tx + r * 1.4), int(ty + r)),
                              _jitter(rng, col, 10), -1)
                cv2.rectangle(img, (int(tx - r * 1.1), int(ty - r * 0.3)), (int(tx + r * 1.1), int(ty)),
                              (235, 235, 235), -1)
    elif d.kind == "bin":
        fr = _stand(pose, d.east_m, d.north_m, 1.0 * d.size)
        if fr:
            (bx, by), (_, ty), s = fr
            col = rng.choice([(40, 120, 30), (160, 90, 20), (40, 40, 40), (0, 120, 230), (90, 90, 90)])
            half = 0.3 * s * d.size
            _poly(img, [[bx - half, by], [bx + half, by], [bx + half * 1.1, ty], [bx - half * 1.1, ty]],
                  _jitter(rng, col, 10))
            _poly(img, [[bx - half * 1.2, ty], [bx + half * 1.2, ty], [bx + half * 1.2, ty + 0.08 * s],
                        [bx - half * 1.2, ty + 0.08 * s]], _jitter(rng, col, 10))
    elif d.kind == "tree":
        h_m = rng.uniform(3, 8) * d.size
        fr = _stand(pose, d.east_m, d.north_m, h_m)
        if fr:
            (bx, by), (tx, ty), s = fr
            cv2.line(img, (int(bx), int(by)), (int(tx), int(ty + 0.3 * (by - ty))), (40, 60, 80),
                     max(1, int(0.25 * s)))
            for _ in range(8):
                c = (int(tx + rng.normal(0, 0.9 * s)), int(ty + 0.2 * (by - ty) + rng.normal(0, 0.7 * s)))
                rad = max(1, int(rng.uniform(0.6, 1.5) * s))
                cv2.circle(img, c, rad, _jitter(rng, (50, 105, 60), 25), -1, cv2.LINE_AA)
    elif d.kind == "lamp":
        fr = _stand(pose, d.east_m, d.north_m, 8.0)
        if fr:
            (bx, by), (tx, ty), s = fr
            cv2.line(img, (int(bx), int(by)), (int(tx), int(ty)), (90, 90, 95), max(1, int(0.12 * s)),
                     cv2.LINE_AA)
            cv2.line(img, (int(tx), int(ty)), (int(tx + 1.2 * s), int(ty)), (90, 90, 95),
                     max(1, int(0.08 * s)), cv2.LINE_AA)
    elif d.kind == "cloth":  # a person-sized orange / red shape: coats, bags, jerseys
        fr = _stand(pose, d.east_m, d.north_m, 1.2 * d.size)
        if fr:
            (bx, by), (_, ty), s = fr
            half = 0.25 * s * d.size
            _poly(img, [[bx - half, by - 0.5 * (by - ty)], [bx + half, by - 0.5 * (by - ty)],
                        [bx + half * 0.8, ty], [bx - half * 0.8, ty]],
                  _jitter(rng, ORANGE_LIKE[int(rng.integers(len(ORANGE_LIKE)))], 20))


DISTRACTOR_KINDS = ("barrel", "bollard", "board", "sign", "bin", "tree", "lamp", "cloth")


def random_clutter(rng: np.random.Generator, road_half: float, *, near: float = 2.0,
                   far: float = 40.0, n: int | None = None, backdrop_p: float = 0.7) -> Clutter:
    """Random distractors along and on the road, and maybe a backdrop."""
    n = int(rng.integers(1, 9)) if n is None else n
    items = []
    for _ in range(n):
        kind = str(rng.choice(DISTRACTOR_KINDS, p=[0.16, 0.14, 0.14, 0.16, 0.1, 0.12, 0.08, 0.1]))
        side = rng.uniform(-road_half - 4, road_half + 4)
        if kind in ("tree", "lamp", "sign", "bin"):
            side = float(np.sign(side or 1) * rng.uniform(road_half + 0.5, road_half + 5))
        items.append(Distractor(kind, float(side), float(rng.uniform(near, far)),
                                float(rng.uniform(0.7, 1.3))))
    if rng.random() < backdrop_p:
        return Clutter(tuple(items), int(rng.integers(0, 2**31)), float(rng.uniform(0.5, 1.0)),
                       float(rng.uniform(0.0, 0.45)))
    return Clutter(tuple(items))


# ---------------------------------------------------------------------------------------
# after rendering: lens, light and sensor (boxes follow the geometry)


def _zoom(w: int, h: int, k1: float) -> float:
    """Scale that keeps barrel distortion from sampling outside the image (corners stay
    corners), so nothing is mirrored in at the edges; 1 for pincushion."""
    if k1 <= 0:
        return 1.0
    norm = max(w, h) / 2
    return 1 + k1 * ((w / 2 / norm) ** 2 + (h / 2 / norm) ** 2)


def _distort_points(xy: np.ndarray, w: int, h: int, k1: float) -> np.ndarray:
    """Where undistorted pixels land: the inverse of the sampling map of `lens_distort`
    (a source point u comes from the output point d with u = d (1 + k1 |d|^2) / zoom)."""
    c = np.array([w / 2, h / 2])
    norm = max(w, h) / 2
    u = (xy - c) / norm * _zoom(w, h, k1)
    d = u.copy()
    for _ in range(20):  # fixed point: d = u / (1 + k1 |d|^2)
        d = u / (1 + k1 * (d ** 2).sum(axis=1, keepdims=True))
    return d * norm + c


def lens_distort(img: np.ndarray, boxes: list[TruthBox], k1: float) -> tuple[np.ndarray, list[TruthBox]]:
    """Radial distortion (k1 > 0 barrel, < 0 pincushion); boxes are re-fitted to their
    distorted outlines."""
    h, w = img.shape[:2]
    norm = max(w, h) / 2
    zoom = _zoom(w, h, k1)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32) + 0.5, np.arange(h, dtype=np.float32) + 0.5)
    dx, dy = (xs - w / 2) / norm, (ys - h / 2) / norm
    f = (1 + k1 * (dx * dx + dy * dy)) / zoom
    map_x = (dx * f * norm + w / 2 - 0.5).astype(np.float32)
    map_y = (dy * f * norm + h / 2 - 0.5).astype(np.float32)
    out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    new = []
    t = np.linspace(0, 1, 9)
    for b in boxes:
        edge = np.concatenate([
            np.column_stack([b.x1 + (b.x2 - b.x1) * t, np.full(9, b.y1)]),
            np.column_stack([b.x1 + (b.x2 - b.x1) * t, np.full(9, b.y2)]),
            np.column_stack([np.full(9, b.x1), b.y1 + (b.y2 - b.y1) * t]),
            np.column_stack([np.full(9, b.x2), b.y1 + (b.y2 - b.y1) * t]),
        ])
        p = _distort_points(edge, w, h, k1)
        x1, y1 = np.clip(p.min(axis=0), 0, [w, h])
        x2, y2 = np.clip(p.max(axis=0), 0, [w, h])
        if x2 - x1 >= 1 and y2 - y1 >= 1:
            new.append(TruthBox(b.cls, float(x1), float(y1), float(x2), float(y2), b.east_m, b.north_m,
                                b.object_index))
    return out, new


def night(img: np.ndarray, rng: np.random.Generator, level: float) -> np.ndarray:
    """Dusk (level ~0.3) to night (1.0): darker, bluer, noisier, with street-lamp glows."""
    h, w = img.shape[:2]
    out = img.astype(np.float32) / 255.0
    out = out ** (1 + 1.2 * level) * (1 - 0.75 * level)
    out *= np.array([1.0 + 0.25 * level, 1.0, 1.0 - 0.15 * level], np.float32)
    glow = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(0, 4)) if level > 0.5 else 0):
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h * 0.6)))
        cv2.circle(glow, c, max(2, int(rng.uniform(0.01, 0.03) * w)), 1.0, -1)
    if glow.any():
        glow = cv2.GaussianBlur(glow, (0, 0), 0.05 * w) * 3.0 + cv2.GaussianBlur(glow, (0, 0), 2)
        out += glow[..., None] * np.array([0.35, 0.6, 0.85], np.float32) * level
    # a pool of light on the ground from the nearest lamp
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.6, 1.0) * h
    pool = np.exp(-(((xx - cx) / (0.5 * w)) ** 2 + ((yy - cy) / (0.4 * h)) ** 2))
    out *= (1 + level * 1.5 * pool)[..., None]
    out += rng.normal(0, 0.02 + 0.03 * level, out.shape).astype(np.float32)
    return np.clip(out * 255, 0, 255).astype(np.uint8)


def sensor(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vignetting, chromatic shift, noise and a second JPEG pass."""
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    if rng.random() < 0.5:  # surface grain: photographs are nowhere flat
        grain = np.empty((h, w), np.float32)
        cv2.setRNGSeed(int(rng.integers(0, 2**31)))
        cv2.randn(grain, 0.0, 1.0)
        grain = cv2.GaussianBlur(grain, (0, 0), float(rng.uniform(0.6, 1.8)))
        out *= (1 + grain * float(rng.uniform(0.04, 0.15)))[..., None]
    if rng.random() < 0.5:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        out *= (1 - rng.uniform(0.1, 0.45) * np.clip(r2 / 2, 0, 1))[..., None]
    if rng.random() < 0.3:
        s = int(rng.integers(1, 3))
        out[..., 0] = np.roll(out[..., 0], s, axis=1)
        out[..., 2] = np.roll(out[..., 2], -s, axis=1)
    if rng.random() < 0.5:
        out += rng.normal(0, rng.uniform(1, 8), out.shape).astype(np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def photographic(img: np.ndarray, boxes: list[TruthBox], rng: np.random.Generator,
                 *, night_p: float = 0.15, distort_p: float = 0.4) -> tuple[np.ndarray, list[TruthBox]]:
    """Apply lens distortion, dusk / night light and sensor effects at random."""
    if rng.random() < distort_p:
        k1 = float(rng.uniform(-0.12, 0.25))
        if abs(k1) > 0.02:
            img, boxes = lens_distort(img, boxes, k1)
    if rng.random() < night_p:
        img = night(img, rng, float(rng.uniform(0.3, 1.0)))
    img = sensor(img, rng)
    return img, boxes

