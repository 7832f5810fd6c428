"""A collector's operational signals, for Prometheus and for the health check.

One `CollectorMetrics` object is handed to a collector, which calls it at four points:
a message received, a batch committed, a batch acknowledged, and (once) to watch its
queue. Two latencies are kept apart: publish -> commit is measured from the device's own
timestamp (`ts` of the record: what a reader of the database waits for, including any
time the message spent buffered on the device or queued at the broker, and any device
clock error), receive -> commit from the moment the collector took the message.

`health(stall_s)` turns unhealthy when messages wait unacknowledged and no
acknowledgement has gone out for `stall_s` seconds: the state in which a stuck writer or
a database that hangs holds the whole stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# publish -> commit spans device buffering and broker queues: up to minutes
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                   3600.0)


class CollectorMetrics:
    """Counters, histograms and gauges of the collectors of one process."""

    def __init__(self, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.received = Counter("citywatch_ingest_messages_received", "MQTT messages taken "
                                "from the broker", registry=r)
        self.stored = Counter("citywatch_ingest_rows_stored", "Rows written (new)", registry=r)
        self.duplicates = Counter("citywatch_ingest_duplicates", "Exact repeats of stored rows",
                                  registry=r)
        self.dead_letters = Counter("citywatch_ingest_dead_letters", "Messages kept as dead "
                                    "letters, by reason", ["reason"], registry=r)
        self.acks = Counter("citywatch_ingest_acks", "PUBACKs sent after commit", registry=r)
        self.batches = Counter("citywatch_ingest_batches", "Committed batches", registry=r)
        self.publish_to_commit = Histogram(
            "citywatch_ingest_publish_to_commit_seconds", "Device timestamp to commit",
            buckets=LATENCY_BUCKETS, registry=r)
        self.receive_to_commit = Histogram(
            "citywatch_ingest_receive_to_commit_seconds", "Collector receipt to commit",
            buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("citywatch_ingest_queue_messages", "Messages between the MQTT "
                                 "thread and the writers", registry=r)
        self.unacked = Gauge("citywatch_ingest_unacknowledged_messages", "Messages received "
                             "and not yet acknowledged (or finished)", registry=r)
        self.last_ack_age = Gauge("citywatch_ingest_last_ack_age_seconds", "Seconds since the "
                                  "last acknowledgement (0 while nothing waits)", registry=r)
        self.last_ack_age.set_function(self.ack_stall_s)
        self.unacked.set_function(lambda: self._outstanding)
        self._clock = clock
        self._lock = threading.Lock()
        self._outstanding = 0
        self._waiting_since: float | None = None  # first unacknowledged message, or last ack

    # -- hooks called by the collector -----------------------------------------------------

    def message_received(self) -> None:
        self.received.inc()
        with self._lock:
            if self._outstanding == 0:
                self._waiting_since = self._clock()
            self._outstanding += 1

    def batch_committed(self, stored: int, duplicates: int, reasons: Iterable[str],
                        device_ts: Iterable[datetime | None], received_mono: Iterable[float],
                        committed_mono: float) -> None:
        self.batches.inc()
        self.stored.inc(stored)
        self.duplicates.inc(duplicates)
        for reason in reasons:
            self.dead_letters.labels(reason).inc()
        now = datetime.now(UTC)
        for ts in device_ts:
            if ts is not None:
                self.publish_to_commit.observe(max(0.0, (now - ts).total_seconds()))
        for t in received_mono:
            self.receive_to_commit.observe(max(0.0, committed_mono - t))

    def batch_finished(self, messages: int, acked: int) -> None:
        """`messages` of a batch are done with (`acked` of them acknowledged; the rest were
        QoS 0 or belong to a connection that is gone, and come again)."""
        self.acks.inc(acked)
        with self._lock:
            self._outstanding = max(0, self._outstanding - messages)
            self._waiting_since = self._clock() if self._outstanding else None

    def watch_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(depth)

    # -- health ----------------------------------------------------------------------------

    def ack_stall_s(self) -> float:
        """How long messages have waited with no acknowledgement going out (0: none wait)."""
        with self._lock:
            since = self._waiting_since
        return 0.0 if since is None else max(0.0, self._clock() - since)

    def health(self, stall_s: float) -> tuple[bool, str]:
        stalled = self.ack_stall_s()
        with self._lock:
            waiting = self._outstanding
        if waiting and stalled > stall_s:
            return False, (f"{waiting} messages unacknowledged, no acknowledgement for "
                           f"{stalled:.0f} s (limit {stall_s:.0f} s)")
        return True, f"{waiting} messages in flight, acknowledgements flowing"
