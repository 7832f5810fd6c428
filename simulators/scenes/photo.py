"""Photographic conditions applied after drawing: light, colour cast, haze, blur, motion
blur, sensor noise and JPEG compression."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


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
