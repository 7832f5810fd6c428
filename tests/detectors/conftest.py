"""Fixtures of the detection pipeline tests: registry, simulated frames, a running
collector on the test's own topics, and a real (untrained) YOLO model for plumbing tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from detectors.yolo import build_untrained
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


@pytest.fixture(scope="session")
def untrained_pt(tmp_path_factory) -> Path:
    """A randomly initialised YOLOv8n with the default classes: real inference, no meaning."""
    return build_untrained(tmp_path_factory.mktemp("model") / "untrained.pt", CLASSES)


@pytest.fixture
def collector(config, db):
    c = Collector(config, db).start()
    yield c
    c.stop(5)
