"""Operational signals of one citywatch process over HTTP: `/metrics` (Prometheus text
format) and `/healthz` (200 when healthy, 503 otherwise, JSON saying why).

Each part owns its metrics (ingest/metrics.py, detectors/metrics.py, rules/metrics.py);
this module gives them one registry, adds the frames-queue gauges read from the database
at each scrape, and serves them. Health is the conjunction of the checks registered: the
collector's turns unhealthy when messages wait and no acknowledgement has gone out for
`monitor.ack_stall_s` seconds (a stuck writer or a hanging database holds every message
behind it; a supervisor or load balancer watching /healthz restarts or drains it).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from detectors.metrics import FrameQueueMetrics, WorkerMetrics
from ingest.metrics import CollectorMetrics
from rules.metrics import EngineMetrics
from storage.db import Database

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, str]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # scrapes are not news
        log.debug("monitor: " + format, *args)


class Monitor:
    """The metrics objects handed to the stages, the health checks, the HTTP endpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.collector = CollectorMetrics(self.registry)
        self.workers = WorkerMetrics(self.registry)
        self.engine = EngineMetrics(self.registry)
        self.checks: dict[str, Check] = {}
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._metrics_app = make_wsgi_app(self.registry)

    def watch_frames_queue(self, db: Database) -> None:
        self.registry.register(FrameQueueMetrics(db))

    def add_check(self, name: str, check: Check) -> None:
        self.checks[name] = check

    def health(self) -> tuple[bool, dict[str, dict]]:
        results = {}
        for name, check in self.checks.items():
            try:
                ok, detail = check()
            except Exception as exc:  # a check that fails is a failed check
                ok, detail = False, f"check failed: {exc}"
            results[name] = {"ok": ok, "detail": detail}
        return all(r["ok"] for r in results.values()), results

    def app(self, environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            ok, checks = self.health()
            body = json.dumps({"status": "ok" if ok else "unhealthy", "checks": checks}).encode()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
            return [body]
        if path == "/metrics":
            return self._metrics_app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"/metrics or /healthz\n"]

    def serve(self, host: str, port: int) -> int:
        """Serve in a thread; return the port (an ephemeral one when `port` is 0)."""
        self._server = make_server(host, port, self.app, server_class=_Server,
                                   handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="monitor",
                                        daemon=True)
        self._thread.start()
        bound = self._server.server_address[1]
        log.info("metrics on http://%s:%d/metrics, health on /healthz", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
