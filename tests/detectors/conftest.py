"""Fixtures of the detection pipeline tests: registry, simulated frames, a running
collector on the test's own topics, and the detector backends to run them on.

Detector tests run once per backend (`backend` fixture). The ONNX Runtime backend needs
only the base install; the ultralytics one needs the `yolo` extra and is skipped, saying
so, where ultralytics is not installed."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from detectors.backends.onnxrt import OnnxRuntimeConfig
from detectors.backends.yolo import UltralyticsConfig, build_untrained
from detectors.base import BackendConfig
from domain.registry import Registry
from domain.registry import load as load_registry
from ingest.collector import Collector
from simulators.scenes import CLASSES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ONNX = PROJECT_ROOT / "detectors" / "models" / "citywatch-default.onnx"


def wait_until(check: Callable[[], object], timeout: float = 60.0, every: float = 0.1):
    """Poll `check` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s (last: {result!r})")
        time.sleep(every)


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry(PROJECT_ROOT / "configs" / "registry")


NO_YOLO_EXTRA = "ultralytics is not installed (the `yolo` extra: pip install 'citywatch[yolo]')"


def needs_ultralytics() -> None:
    """Skip the calling test where the `yolo` extra is not installed."""
    pytest.importorskip("ultralytics", reason=NO_YOLO_EXTRA)


@pytest.fixture(scope="session")
def untrained_pt(tmp_path_factory) -> Path:
    """A randomly initialised YOLOv8n with the default classes: real inference, no meaning."""
    needs_ultralytics()
    return build_untrained(tmp_path_factory.mktemp("model") / "untrained.pt", CLASSES)


# An untrained model's scores sit near its prior; this threshold keeps a fixed, repeatable
# set of boxes per image, which is all the plumbing tests need.
UNTRAINED_CONFIDENCE = 0.0002


@pytest.fixture(params=["onnxruntime", "ultralytics"])
def backend(request) -> BackendConfig:
    """A model on each backend for plumbing tests: the ONNX Runtime backend runs the
    committed default .onnx (building an untrained one needs torch), the ultralytics
    backend an untrained YOLOv8n .pt; both at a confidence that finds boxes in every
    simulated frame."""
    if request.param == "onnxruntime":
        return OnnxRuntimeConfig(weights=str(DEFAULT_ONNX), confidence=0.01)
    return UltralyticsConfig(weights=str(request.getfixturevalue("untrained_pt")),
                             confidence=UNTRAINED_CONFIDENCE)


@pytest.fixture
def collector(config, db):
    c = Collector(config.for_ingest(), db).start()
    yield c
    c.stop(5)
