"""Evidence quality: sharp, well-exposed frames are fit; blurred / dark / bright / small ones
are unfit with their reason."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detectors.config import QualityConfig
from detectors.quality import measure


def street_scene(width: int = 1280, height: int = 720) -> np.ndarray:
    """A textured daylight scene: asphalt noise, kerbs, stalls as coloured boxes."""
    rng = np.random.default_rng(7)
    img = np.full((height, width, 3), 110, np.uint8)
    img = cv2.add(img, rng.integers(0, 40, img.shape, dtype=np.uint8))
    for _ in range(12):
        x, y = int(rng.integers(0, width - 80)), int(rng.integers(0, height - 60))
        cv2.rectangle(img, (x, y), (x + 70, y + 50), tuple(int(c) for c in rng.integers(40, 220, 3)), -1)
    cv2.line(img, (0, height // 3), (width, height // 3), (200, 200, 200), 4)
    cv2.line(img, (0, 2 * height // 3), (width, 2 * height // 3), (200, 200, 200), 4)
    return img


SCENE = street_scene()


@pytest.mark.parametrize(
    ("name", "image", "fit", "reason"),
    [
        ("daylight", SCENE, True, None),
        ("blurred", cv2.GaussianBlur(SCENE, (0, 0), 6), False, "blurred"),
        ("dark", (SCENE * 0.12).astype(np.uint8), False, "too_dark"),
        ("overexposed", cv2.add(SCENE, np.full_like(SCENE, 170)), False, "too_bright"),
        ("small", cv2.resize(SCENE, (240, 160)), False, "too_small"),
        ("black", np.zeros((480, 640, 3), np.uint8), False, "clipped"),
    ],
)
def test_quality_verdicts(name, image, fit, reason):
    q = measure(image, QualityConfig())
    assert q.fit is fit, q
    if reason is None:
        assert q.reason is None
    else:
        assert reason in q.reason


def test_sharpness_does_not_depend_on_resolution():
    cfg = QualityConfig()
    big = measure(SCENE, cfg)
    bigger = measure(cv2.resize(SCENE, (2560, 1440), interpolation=cv2.INTER_NEAREST), cfg)
    assert bigger.sharpness == pytest.approx(big.sharpness, rel=0.35)
    assert (bigger.width, bigger.height) == (2560, 1440)


def test_thresholds_are_configuration():
    dim = (SCENE * 0.3).astype(np.uint8)
    assert measure(dim, QualityConfig()).fit is False
    assert measure(dim, QualityConfig(min_brightness=20, min_sharpness=5)).fit is True
