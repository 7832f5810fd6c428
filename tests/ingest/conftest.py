"""Fixtures of the ingest tests: private brokers, collectors that are always stopped, polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

import pytest

from citywatch.config import AppConfig
from ingest.broker import start_mosquitto
from ingest.collector import Collector
from simulators.scenario import load

DAY = date.today().fromordinal(date.today().toordinal() - 1)


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


@pytest.fixture
def ingest_config(config: AppConfig) -> AppConfig:
    """The test configuration (short-lived broker sessions: see tests/conftest.py)."""
    return config


@pytest.fixture
def private_broker(tmp_path):
    """A Mosquitto of this test's own (persistent, deep queues), for volume and restarts:
    the shared broker runs Mosquitto's defaults, which drop QoS 1 messages beyond 1,000
    queued for a subscriber that falls behind."""
    handle = start_mosquitto(tmp_path / "broker")
    yield handle
    handle.close()


@pytest.fixture
def collectors():
    """Start collectors through this list; every one is stopped after the test."""
    started: list[Collector] = []

    def start(config: AppConfig, db, **kw) -> Collector:
        c = Collector(config.for_ingest(), db, **kw).start()
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop(2)


@pytest.fixture(scope="session")
def violations_messages():
    """A day of 13 fume and 7 dust monitors (yesterday, so no timestamp is in the future)."""
    return list(load("violations", day=DAY).messages())
