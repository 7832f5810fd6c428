"""Detector workers' operational signals: frames done / failed / lost, batch time, and the
frames queue itself (depth by status, age of the oldest claim and of the oldest pending
frame), read from the database when Prometheus scrapes."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from storage import frames as frames_repo
from storage.db import Database

log = logging.getLogger(__name__)


class WorkerMetrics:
    """Counters of the detector workers of one process (one object shared by all)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.frames = Counter("citywatch_detector_frames", "Claimed frames by outcome "
                              "(done, failed, lost: claim handed on before the result)",
                              ["outcome"], registry=r)
        self.errors = Counter("citywatch_detector_batch_errors", "Batches that raised (retried)",
                              registry=r)
        self.batch_seconds = Histogram("citywatch_detector_batch_seconds", "Claim to stored "
                                       "detections, per batch", registry=r,
                                       buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))

    def batch_done(self, done: int, failed: int, lost: int, seconds: float) -> None:
        for outcome, n in (("done", done), ("failed", failed), ("lost", lost)):
            if n:
                self.frames.labels(outcome).inc(n)
        self.batch_seconds.observe(seconds)

    def batch_error(self) -> None:
        self.errors.inc()


class FrameQueueMetrics(Collector):
    """The frames queue as the database holds it, read at each scrape."""

    def __init__(self, db: Database):
        self.db = db

    def collect(self):
        depth = GaugeMetricFamily("citywatch_frames_queue", "Frames by status", labels=["status"])
        claim = GaugeMetricFamily("citywatch_frames_oldest_claim_age_seconds",
                                  "Age of the oldest claim still processing (0: none)")
        pending = GaugeMetricFamily("citywatch_frames_oldest_pending_age_seconds",
                                    "Age of the oldest frame waiting for a worker (0: none)")
        try:
            with self.db.connection() as conn:
                state = frames_repo.queue_state(conn)
                conn.rollback()
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("frames queue metrics unavailable: %s", exc)
            return
        for status, n in state.counts.items():
            depth.add_metric([status], n)
        claim.add_metric([], state.oldest_claim_s)
        pending.add_metric([], state.oldest_pending_s)
        yield from (depth, claim, pending)
