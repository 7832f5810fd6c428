"""Recorded footage rendered once per test session (simulators/footage.py), and a
configuration with the trained default model."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.paths import PROJECT_ROOT
from domain.registry import load as load_registry
from simulators import footage

DEFAULT_ONNX = PROJECT_ROOT / "detectors" / "models" / "citywatch-default.onnx"
STREET, STALLS = "ST-004", ["M-00212", "M-00214", "M-00227", "M-00237"]


@pytest.fixture(scope="session")
def registry():
    return load_registry(PROJECT_ROOT / "configs" / "registry")


@pytest.fixture(scope="session")
def short_clip(tmp_path_factory, registry) -> footage.Footage:
    """Four seconds of a drone pass, 640x360 at 30 fps, a keyframe every 15 frames."""
    return footage.drone_video(registry, STREET, tmp_path_factory.mktemp("clip") / "UAV-01",
                               stalls=STALLS, width=640, height=360, keyint=15, seconds=4.0,
                               seed=4)


@pytest.fixture(scope="session")
def street_video(tmp_path_factory, registry) -> footage.Footage:
    """The whole street (534 m at 12 m/s), 640x360 at 30 fps, with its SRT."""
    return footage.drone_video(registry, STREET, tmp_path_factory.mktemp("video") / "UAV-01",
                               stalls=STALLS, width=640, height=360, speed_ms=12.0, seed=4)


@pytest.fixture
def trained(config):
    config.detectors.backend.weights = str(DEFAULT_ONNX)
    return config


def copy_to(src: Path, dst_dir: Path) -> Path:
    """A copy of a file (and its SRT sidecar) in another folder."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for f in [src, src.with_suffix(".SRT")]:
        if f.exists():
            (dst_dir / f.name).write_bytes(f.read_bytes())
    return dst_dir / src.name
