"""`citywatch run --with-web`: the review app beside the pipeline, stopping with it, and
stopping it when the app cannot run."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

from citywatch import service


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_web_beside_the_pipeline(config):
    # storage.timescale.apply re-adds its policies on every open and can deadlock with
    # the scheduler's first job in a freshly copied database; not what is tested here
    config.database.timescale.enabled = False
    config.web.port = _free_port()
    stop = threading.Event()
    pipeline = service.start(config, stop, stages=(), with_web=True)
    try:
        assert _wait(lambda: _answers(config.web.port))
    finally:
        pipeline.close()
    assert not pipeline.failures and not _answers(config.web.port)


def test_web_that_cannot_bind_stops_the_pipeline(config):
    config.database.timescale.enabled = False
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config.web.port = taken.getsockname()[1]
        stop = threading.Event()
        pipeline = service.start(config, stop, stages=(), with_web=True)
        try:
            assert stop.wait(20), "a review app that cannot bind must stop the process"
            assert pipeline.failures and "stopped" in pipeline.failures[0]
        finally:
            pipeline.close()
