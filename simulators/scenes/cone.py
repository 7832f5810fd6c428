"""Cone-camera views of road works: the road via the same ground warp as the aerial view,
standing objects (cones, workers, excavators, fences) as upright shapes projected with the
same camera, drawn far to near so nearer ones hide what is behind them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from simulators.scenes.aerial import Street, _draw_streets
from simulators.scenes.camera import CameraPose
from simulators.scenes.catalogue import (
    CLASS_ID,
    CONE_CLASSES,
    HEIGHT_M,
    Rendered,
    SceneError,
    SceneObject,
    TruthBox,
    _local_to_ground,
    _place,
)
from simulators.scenes.photo import Look, _finish
from simulators.scenes.randomise import Clutter, _draw_distractor, blend_backdrop, random_clutter
from simulators.scenes.raster import _SCALE, _SHIFT, _blob, _c, _jitter, _Raster, _texture


@dataclass(frozen=True, slots=True)
class ConeScene:
    """A random road-works view from a pole-mounted cone camera (camera at east=north=0)."""

    objects: tuple[SceneObject, ...]
    pose: CameraPose
    road_half_width_m: float = 5.0
    world_seed: int = 0
    look: Look = field(default_factory=Look)
    clutter: Clutter | None = None  # backdrop and unlabelled distractors (training sets)


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


_CONE_COLOURS = ((0, 80, 240), (0, 60, 225), (10, 40, 200), (0, 110, 250), (40, 220, 190))
_CONE_COLOUR_P = (0.45, 0.2, 0.15, 0.12, 0.08)  # orange, deep orange, red, amber, lime


def _cone_upright(img, pose, obj, rng):
    """A traffic cone: tapered body in one of the usual colours, 0-3 reflective bands,
    shaded like a lit cylinder, on a square base plate; sizes from 45 to 90 cm."""
    scale = float(rng.uniform(0.65, 1.3))
    h = HEIGHT_M["cone_upright"] * scale
    fr = _upright_frame(pose, obj, h)
    if fr is None:
        return None
    (bx, by), (tx, ty), s = fr
    base_w = float(rng.uniform(0.30, 0.42)) * s * math.sqrt(scale)
    top_w = float(rng.uniform(0.04, 0.09)) * s
    plate_h = float(rng.uniform(0.03, 0.07)) * s
    plate_w = base_w * float(rng.uniform(1.2, 1.6)) / 2
    body_col = np.asarray(_jitter(rng, _CONE_COLOURS[int(rng.choice(5, p=_CONE_COLOUR_P))], 14), float)
    plate_col = rng.choice([(30, 30, 30), (55, 55, 60), tuple(body_col * 0.8)])
    _fill(img, np.array([[bx - plate_w, by], [bx + plate_w, by],
                         [bx + plate_w, by - plate_h], [bx - plate_w, by - plate_h]]), plate_col)
    body = np.array([[bx - base_w / 2, by - plate_h], [bx + base_w / 2, by - plate_h],
                     [tx + top_w / 2, ty], [tx - top_w / 2, ty]])
    _fill(img, body, body_col)
    n_bands = int(rng.choice(4, p=(0.1, 0.35, 0.4, 0.15)))
    band_col = _jitter(rng, (235, 235, 235) if rng.random() < 0.8 else (190, 195, 200), 12)
    starts = np.sort(rng.uniform(0.2, 0.8, n_bands))
    for f0 in starts:
        f1 = min(0.95, f0 + float(rng.uniform(0.07, 0.15)))
        y0, y1 = by - plate_h + (ty - by + plate_h) * f0, by - plate_h + (ty - by + plate_h) * f1
        w0 = base_w / 2 + (top_w / 2 - base_w / 2) * f0
        w1 = base_w / 2 + (top_w / 2 - base_w / 2) * f1
        _fill(img, np.array([[bx - w0, y0], [bx + w0, y0], [bx + w1, y1], [bx - w1, y1]]), band_col)
    # shading: the side away from the light darker, a soft highlight on the lit side
    side = 1 if rng.random() < 0.5 else -1
    dark = float(rng.uniform(0.55, 0.9))
    shade = np.array([[bx, by - plate_h], [bx + side * base_w / 2, by - plate_h],
                      [tx + side * top_w / 2, ty], [tx, ty]])
    x0, y0 = np.floor(shade.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(shade.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, img.shape[1]), min(y1, img.shape[0])
    if x1 > x0 and y1 > y0:
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        _fill(mask, shade - [x0, y0], 255)
        sub = img[y0:y1, x0:x1].astype(np.float32)
        m = mask[..., None].astype(np.float32) / 255.0
        img[y0:y1, x0:x1] = (sub * (1 - m * (1 - dark))).astype(np.uint8)
    if rng.random() < 0.6:
        hx = bx - side * base_w * 0.2
        _fill(img, np.array([[hx - base_w * 0.05, by - plate_h], [hx + base_w * 0.05, by - plate_h],
                             [tx - side * top_w * 0.15, ty], [tx - side * top_w * 0.3, ty]]),
              _c(np.minimum(body_col * 1.25 + 25, 255)))
    return bx - plate_w, ty, bx + plate_w, by


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
                distractors: bool = True, clutter: Clutter | None = None,
                min_visible: float = 0.5, min_box_px: float = 3.0,
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
    if clutter is not None:
        img = blend_backdrop(img, pose, clutter)

    items: list = [(i, o) for i, o in enumerate(objects)]
    if clutter is not None:
        items += [(-2, d) for d in clutter.distractors]
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
        if idx == -2:
            _draw_distractor(img, pose, obj, np.random.default_rng([seed & 0xFFFFFFFF, len(drawn), 98]))
            box = (0, 0, width, height)  # so what it hides of farther objects is counted
        elif idx < 0:
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


CONE_STYLES = ("pole", "handheld")


def random_cone_scene(rng: np.random.Generator, *, width: int = 640, height: int = 480,
                      style: str = "pole", clutter: bool = False,
                      empty: bool = False) -> ConeScene:
    """A random road-works scene: a work area on the road fenced and coned off, with
    cones (some fallen), workers with and without helmets, maybe an excavator.

    `style` "pole" is the cone camera (2.5-6 m pole, pitch -8 to -30 deg); "handheld" is
    a photograph taken on foot (0.4-2 m, looking nearly level) or from a low drone
    (3-15 m, pitch -25 to -70 deg), with the work area close. `clutter` adds a random
    backdrop and unlabelled look-alike distractors; `empty` leaves the labelled objects
    out (a hard negative: road, signs, foliage, barrels, nothing to find).
    """
    if style not in CONE_STYLES:
        raise SceneError(f"style must be one of {CONE_STYLES}, got {style!r}")
    if style == "pole":
        cam_h = float(rng.uniform(2.5, 6.0))
        pitch = float(rng.uniform(-30.0, -8.0))
        hfov = float(rng.uniform(55.0, 90.0))
        heading = float(rng.normal(0, 6))
    elif rng.random() < 0.7:  # on foot
        cam_h = float(rng.uniform(0.4, 2.0))
        pitch = float(rng.uniform(-28.0, -1.0))
        hfov = float(rng.uniform(40.0, 80.0))
        heading = float(rng.normal(0, 12))
    else:  # a low drone
        cam_h = float(rng.uniform(3.0, 15.0))
        pitch = float(rng.uniform(-70.0, -25.0))
        hfov = float(rng.uniform(55.0, 85.0))
        heading = float(rng.normal(0, 10))
    pose = CameraPose(0.0, 0.0, cam_h, heading, pitch, hfov, width, height)
    road_half = float(rng.uniform(3.5, 8.0))
    if style == "pole":
        near = float(rng.uniform(4.0, 14.0))
        depth = float(rng.uniform(8.0, 30.0))
    else:
        # what the camera sees first: close to its feet when it looks down
        ground_near = cam_h / math.tan(math.radians(min(80.0, -pitch + hfov * height / width / 2)))
        near = float(ground_near + rng.uniform(0.5, 4.0))
        depth = float(rng.uniform(3.0, 15.0))
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
        flen = float(rng.uniform(min(4.0, depth * 0.8), min(12.0, depth)))
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
    world_seed = int(rng.integers(0, 2**31))
    look = Look.random(rng)
    extra = None
    if clutter:
        extra = random_clutter(rng, road_half, near=max(1.0, near - 2.0), far=near + depth + 25.0)
    if empty:
        objects = []
    return ConeScene(tuple(objects), pose, road_half, world_seed, look, extra)
