"""Aerial drone views: a top-down ground raster (blocks, streets, objects seen from above,
shadows, trees) warped into the camera with the ground-to-image homography."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from domain.geo import LocalFrame
from simulators.scenes.camera import CameraPose
from simulators.scenes.catalogue import (
    CLASS_ID,
    HEIGHT_M,
    Rendered,
    SceneObject,
    TruthBox,
    _local_to_ground,
    _place,
)
from simulators.scenes.photo import Look, _finish
from simulators.scenes.raster import _SHIFT, _apply_shade, _blob, _c, _jitter, _Raster, _texture


@dataclass(frozen=True, slots=True)
class Street:
    """A street centre line in local metres with its carriageway half-width and pavements."""

    points: tuple[tuple[float, float], ...]
    half_width_m: float = 6.0
    pavement_m: float = 4.0


@dataclass(frozen=True, slots=True)
class AerialScene:
    """A random drone view: what is on the ground, the camera, the streets."""

    objects: tuple[SceneObject, ...]
    pose: CameraPose
    streets: tuple[Street, ...] = ()
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


def _soil_patch(r, obj, rng, colours, jitter):
    """The common start of a soil heap: its outline on the ground, filled in a jittered
    colour; (raster window, mask of the heap, ground outline, colour), or None with the
    outline when the heap lies outside the image."""
    g = lambda uv: _local_to_ground(obj, uv)  # noqa: E731
    shape = _soil_outline(obj, rng)
    col = _jitter(rng, rng.choice(colours), jitter)
    win = r.window(g(shape))
    if win is None:
        return None, g(shape)
    r = r.sub(win)
    mask = np.zeros((r.h, r.w), np.uint8)
    cv2.fillPoly(mask, [r.cv(g(shape))], 255, cv2.LINE_AA, _SHIFT)
    r.poly(g(shape), col)
    return (r, mask, col), g(shape)


def _top_bare_soil(r, obj, rng):
    g = lambda uv: _local_to_ground(obj, uv)  # noqa: E731
    patch, outline = _soil_patch(r, obj, rng, [(60, 100, 150), (50, 85, 125), (75, 115, 160),
                                               (45, 70, 110)], 10)
    if patch is None:
        return outline
    r, mask, col = patch
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
    return outline


def _top_covered_soil(r, obj, rng):
    g = lambda uv: _local_to_ground(obj, uv)  # noqa: E731
    patch, outline = _soil_patch(r, obj, rng, [(50, 120, 40), (60, 140, 70), (40, 95, 35),
                                               (80, 150, 60)], 12)
    if patch is None:
        return outline
    r, mask, col = patch
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
    return outline


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
