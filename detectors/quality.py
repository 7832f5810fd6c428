"""Evidence quality of a frame: sharpness, exposure and size.

A frame that is blurred, too dark, too bright or too small still gets detected, but is
marked unfit as evidence with the reason, so a case never rests on an image an officer
could not read. Thresholds live in detectors/config.py (QualityConfig).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detectors.config import QualityConfig


@dataclass(frozen=True, slots=True)
class Quality:
    """What was measured on one frame and the verdict."""

    width: int
    height: int
    sharpness: float  # variance of the Laplacian at the working width
    brightness: float  # mean grey level 0..255
    clipped: float  # share of pixels at 0 or 255
    fit: bool
    reason: str | None  # e.g. "blurred: sharpness 12.3 < 40.0"; None when fit


def measure(image: np.ndarray, config: QualityConfig) -> Quality:
    """Measure a BGR or grey image and judge it against the thresholds."""
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"image must be a non-empty 2D or 3D array, but got shape {image.shape}")
    height, width = image.shape[:2]
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if width != config.working_width:
        scale = config.working_width / width
        grey = cv2.resize(grey, (config.working_width, max(1, round(height * scale))),
                          interpolation=cv2.INTER_AREA)
    _, std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_32F))
    sharpness = float(std[0, 0]) ** 2
    brightness = float(cv2.mean(grey)[0])
    clipped = float(np.count_nonzero((grey == 0) | (grey == 255)) / grey.size)
    reasons = []
    if width < config.min_width or height < config.min_height:
        reasons.append(f"too_small: {width}x{height} < {config.min_width}x{config.min_height}")
    if sharpness < config.min_sharpness:
        reasons.append(f"blurred: sharpness {sharpness:.1f} < {config.min_sharpness}")
    if brightness < config.min_brightness:
        reasons.append(f"too_dark: brightness {brightness:.1f} < {config.min_brightness}")
    elif brightness > config.max_brightness:
        reasons.append(f"too_bright: brightness {brightness:.1f} > {config.max_brightness}")
    if clipped > config.max_clipped:
        reasons.append(f"clipped: {clipped:.0%} of pixels black or white > "
                       f"{config.max_clipped:.0%}")
    return Quality(width, height, sharpness, brightness, clipped, not reasons,
                   "; ".join(reasons) or None)
