"""Raster helpers: sub-pixel polygon drawing, a north-up ground raster, colour jitter,
grain, and shading."""

from __future__ import annotations

import cv2
import numpy as np

_SHIFT = 4  # sub-pixel bits for cv2 polygon drawing
_SCALE = 1 << _SHIFT


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
