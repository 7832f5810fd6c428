"""Detector workers: claim pending frames, detect in batches, store detections.

Any number of workers, in one process or on many machines, pull from the one frames
queue (storage/frames.py). A worker claims a batch, reads each image from the evidence
store (verified against its hash), runs the detector on the batch, georeferences drone
detections, matches them to registry zones, and writes each frame's detections together
with its `done` mark. Failures are recorded per frame with the error; a worker that dies
leaves claims that any other worker hands back once they are stale.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import psycopg

from detectors.base import Detections, Detector, create_detector
from detectors.config import DetectorConfig, WorkerSetup
from detectors.georef import GeorefError, pixels_to_wgs84
from detectors.metrics import WorkerMetrics
from detectors.zones import NO_ZONE, ZoneIndex
from domain.paths import PROJECT_ROOT
from domain.records import Detection
from storage import frames as frames_repo
from storage import registry as registry_repo
from storage.db import Database
from storage.errors import StorageError
from storage.evidence import EvidenceStore
from storage.frames import ClaimedFrame, Frame

log = logging.getLogger(__name__)


def worker_id() -> str:
    """A claim owner name unique to this worker: host, process and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def load_zones(db: Database, config: WorkerSetup) -> ZoneIndex:
    """Registry zones and cone cameras as the database holds them now."""
    with db.connection() as conn:
        subjects = registry_repo.subjects(conn)
        devices = registry_repo.devices(conn)
    return ZoneIndex(subjects, devices, config.detectors.zones)


def locate(frame: Frame, found: Detections, zones: ZoneIndex, anchor: str) -> list[Detection]:
    """Ground position and zone of each detection of one frame.

    Drone detections are georeferenced from the frame's pose and matched to zones; cone
    camera detections take the camera's registered position and belong to its permit.
    """
    n = len(found)
    names = found.class_names()
    positions: list[tuple[float, float] | None] = [None] * n
    matches = [NO_ZONE] * n
    if frame.source_kind == "drone" and frame.pose is not None and n:
        x = (found.xyxy[:, 0] + found.xyxy[:, 2]) / 2
        y = found.xyxy[:, 3] if anchor == "bottom" else (found.xyxy[:, 1] + found.xyxy[:, 3]) / 2
        try:
            positions = pixels_to_wgs84(frame.pose, frame.width, frame.height,
                                        np.stack([x, y], axis=1))
        except GeorefError as exc:
            log.warning("frame %s: cannot georeference: %s", frame.sha256[:12], exc)
        matches = [zones.match(*p) if p else NO_ZONE for p in positions]
    elif frame.source_kind == "cone":
        positions = [zones.camera_position(frame.source_id)] * n
        matches = [zones.camera_permit(frame.source_id)] * n
    return [
        Detection(int(found.class_id[i]), names[i], float(found.confidence[i]),
                  *(float(v) for v in found.xyxy[i]),
                  lat=positions[i][0] if positions[i] else None,
                  lon=positions[i][1] if positions[i] else None,
                  subject_id=matches[i].subject_id, zone_kind=matches[i].zone_kind)
        for i in range(n)
    ]


@dataclass(frozen=True, slots=True)
class BatchResult:
    claimed: int
    done: int
    failed: int
    lost: int  # claims taken away as stale before this worker finished


class Worker:
    """One detector worker (one thread); call `run(stop)` or `process_batch()`."""

    def __init__(self, db: Database, store: EvidenceStore, detector: Detector, zones: ZoneIndex,
                 config: DetectorConfig, *, name: str | None = None,
                 metrics: WorkerMetrics | None = None):
        self.db, self.store, self.detector, self.zones = db, store, detector, zones
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self.config = config
        self.name = name or worker_id()
        self._next_recovery = 0.0

    def recover(self) -> int:
        """Hand back stale claims of dead workers (any worker may do this)."""
        with self.db.connection() as conn:
            n = frames_repo.recover_stale(conn, self.config.stale_after_s, self.config.max_attempts)
        if n:
            log.warning("%s: handed back %d stale frame claims", self.name, n)
        return n

    def _load(self, claimed: list[ClaimedFrame], conn) -> tuple[list[ClaimedFrame], list[np.ndarray], int]:
        ok, images, failed = [], [], 0
        for c in claimed:
            try:
                pixels = cv2.imdecode(np.frombuffer(self.store.get(c.frame.sha256), np.uint8),
                                      cv2.IMREAD_COLOR)
                if pixels is None:
                    raise ValueError("stored image does not decode")
            except (StorageError, ValueError) as exc:
                # Evidence that is missing or altered cannot heal by retrying: fail it now.
                log.error("%s: frame %s: %s", self.name, c.frame.sha256[:12], exc)
                frames_repo.fail(conn, c, f"{type(exc).__name__}: {exc}", max_attempts=1)
                failed += 1
                continue
            ok.append(c)
            images.append(pixels)
        return ok, images, failed

    def process_batch(self) -> BatchResult:
        """Claim one batch, detect, store; returns what happened (claimed 0: queue empty)."""
        if time.monotonic() >= self._next_recovery:
            self._next_recovery = time.monotonic() + self.config.stale_after_s / 4
            self.recover()
        with self.db.connection() as conn:
            claimed = frames_repo.claim(conn, self.name, self.config.batch_size)
            if not claimed:
                return BatchResult(0, 0, 0, 0)
            ok, images, failed = self._load(claimed, conn)
        done = lost = 0
        try:
            results = self.detector.detect(images) if images else []
        except Exception as exc:  # any backend failure: record it on each frame, keep going
            log.exception("%s: detector failed on a batch of %d", self.name, len(images))
            with self.db.connection() as conn:
                for c in ok:
                    frames_repo.fail(conn, c, f"detector: {type(exc).__name__}: {exc}",
                                     self.config.max_attempts)
            return BatchResult(len(claimed), 0, failed + len(ok), 0)
        located = []
        with self.db.connection() as conn:
            for c, found in zip(ok, results, strict=True):
                try:
                    located.append((c, locate(c.frame, found, self.zones, self.config.anchor)))
                except Exception as exc:  # a bad pose or zone must not take the batch down
                    log.exception("%s: cannot locate detections of %s", self.name,
                                  c.frame.sha256[:12])
                    frames_repo.fail(conn, c, f"locate: {type(exc).__name__}: {exc}",
                                     self.config.max_attempts)
                    failed += 1
        with self.db.connection() as conn:
            written = frames_repo.complete_batch(conn, located, self.detector.model)
        for (c, _), ok_ in zip(located, written, strict=True):
            if ok_:
                done += 1
            else:
                lost += 1
                log.warning("%s: claim on %s was handed on; result discarded", self.name,
                            c.frame.sha256[:12])
        return BatchResult(len(claimed), done, failed, lost)

    def run(self, stop: threading.Event, *, until_empty: bool = False,
            on_batch: Callable[[BatchResult], None] | None = None) -> None:
        """Process batches until `stop` is set (or the queue is empty, with until_empty)."""
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                result = self.process_batch()
            except (StorageError, psycopg.OperationalError) as exc:
                self.metrics.batch_error()
                log.error("%s: database error, retrying: %s", self.name, exc)
                stop.wait(self.config.poll_interval_s * 10)
                continue
            except Exception:
                # Anything else is a bug; the worker logs it and lives on, and the frames it
                # held come back to the queue when their claims go stale.
                self.metrics.batch_error()
                log.exception("%s: batch failed unexpectedly", self.name)
                stop.wait(self.config.poll_interval_s * 10)
                continue
            if result.claimed:
                self.metrics.batch_done(result.done, result.failed, result.lost,
                                        time.monotonic() - t0)
            if on_batch is not None and result.claimed:
                on_batch(result)
            if result.claimed == 0:
                if until_empty:
                    return
                stop.wait(self.config.poll_interval_s)


def make_worker(config: WorkerSetup, db: Database, *, detector: Detector | None = None,
                zones: ZoneIndex | None = None, name: str | None = None,
                metrics: WorkerMetrics | None = None) -> Worker:
    """A worker wired from configuration: evidence store, detector, registry zones."""
    return Worker(db, EvidenceStore(config.evidence_dir),
                  detector or create_detector(config.detectors.backend,
                                              project_root=PROJECT_ROOT),
                  zones or load_zones(db, config), config.detectors, name=name, metrics=metrics)


def start_workers(config: WorkerSetup, db: Database, stop: threading.Event, *,
                  n: int | None = None,
                  metrics: WorkerMetrics | None = None) -> list[threading.Thread]:
    """Start `n` worker threads (default detectors.workers), each with its own detector
    (a model is not shared across threads); return them, already running."""
    count = config.detectors.workers if n is None else n
    zones = load_zones(db, config)
    threads = []
    for i in range(count):
        worker = make_worker(config, db, zones=zones, metrics=metrics)
        t = threading.Thread(target=worker.run, args=(stop,), name=f"detector-{i + 1}",
                             daemon=True)
        t.start()
        threads.append(t)
    return threads


def run_workers(config: WorkerSetup, db: Database, stop: threading.Event, *,
                n: int | None = None, until_empty: bool = False) -> None:
    """Run detector workers until `stop` is set (or, with until_empty, the queue is empty)."""
    if until_empty:
        count = config.detectors.workers if n is None else n
        zones = load_zones(db, config)
        threads = [threading.Thread(target=make_worker(config, db, zones=zones).run,
                                    args=(stop,), kwargs={"until_empty": True}, daemon=True)
                   for _ in range(max(1, count))]
        for t in threads:
            t.start()
    else:
        threads = start_workers(config, db, stop, n=n)
    for t in threads:
        t.join()
