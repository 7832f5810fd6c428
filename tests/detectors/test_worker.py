"""Detector workers on real PostgreSQL with a real model on each detector backend:
detections located against the renderer's truth, every frame detected exactly once,
corrupted evidence caught, and a worker killed with SIGKILL mid-batch losing nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest
import yaml

from citywatch import config as config_mod
from detectors.base import Detections, create_detector
from detectors.config import ZoneConfig
from detectors.worker import Worker, locate, make_worker
from detectors.zones import ZoneIndex
from domain.geo import distance_m
from ingest import envelope
from ingest.decode import Address, Message
from ingest.frames import decode_frame
from simulators.cone import cone_frames
from simulators.drone import street_pass
from simulators.scenes import CLASS_ID, CLASSES
from storage import frames as frames_repo
from storage.evidence import EvidenceStore

from .conftest import PROJECT_ROOT, wait_until


def truth_detections(boxes) -> Detections:
    return Detections(np.array([[b.x1, b.y1, b.x2, b.y2] for b in boxes]).reshape(-1, 4),
                      np.ones(len(boxes)), np.array([b.class_id for b in boxes], dtype=int),
                      CLASSES)


def enqueue(config, db, kind: str, device: str, header: dict, jpeg: bytes):
    """Put a frame through the intake decoder into the evidence store and the queue."""
    msg = Message(f"x/{kind}", envelope.encode(header, jpeg), datetime.now(UTC),
                  Address(kind, device))
    item = decode_frame(msg, config.for_ingest())
    EvidenceStore(config.evidence_dir).put(item.image)
    with db.connection() as conn:
        frames_repo.insert_frames(conn, [item.frame])
        conn.commit()
    return item.frame


def decoded(msg: Message):
    """The frame row the intake would queue for this message (default configuration)."""
    return decode_frame(msg, config_mod.load(env={}).for_ingest()).frame


def test_truth_boxes_locate_at_their_merchants(registry):
    """Renderer truth in, georeferenced positions out: within 1.5 m, right merchant."""
    flight = street_pass(registry, "ST-004", stalls=4, seed=3, max_frames=14)
    zones = ZoneIndex(registry.subjects, registry.devices, ZoneConfig())
    checked = set()
    for f in flight.frames:
        msg = Message("x", envelope.encode(f.header, f.jpeg), f.ts, Address("drone_frame", "UAV-01"))
        frame = decoded(msg)
        located = locate(frame, truth_detections(f.rendered.boxes), zones, "center")
        for box, det in zip(f.rendered.boxes, located, strict=True):
            placed = next(o for o in flight.objects if o.cls == box.cls and
                          (o.scene.east_m, o.scene.north_m) == (box.east_m, box.north_m))
            assert distance_m(det.lat, det.lon, placed.lat, placed.lon) < 1.5
            if placed.cls == "street_stall":
                assert (det.subject_id, det.zone_kind) == (placed.subject_id, "frontage")
                checked.add(placed.subject_id)
            else:
                assert det.zone_kind == "none"
    assert checked == {s.subject_id for s in flight.stalls()}


def test_cone_detections_belong_to_the_cameras_permit(registry):
    (f,) = cone_frames(registry, "P-007", scenario="no_helmet")
    zones = ZoneIndex(registry.subjects, registry.devices, ZoneConfig())
    msg = Message("x", envelope.encode(f.header, f.jpeg), f.ts, Address("cone_frame", f.camera_id))
    located = locate(decoded(msg), truth_detections(f.rendered.boxes), zones,
                     "bottom")
    camera = next(d for d in registry.devices if d.device_id == f.camera_id)
    lon, lat = camera.props["position"]
    assert {(d.subject_id, d.zone_kind, d.lat, d.lon) for d in located} == {("P-007", "permit", lat, lon)}
    assert CLASS_ID["worker_no_helmet"] in {d.class_id for d in located}


@pytest.fixture
def plumbing(config, backend):
    config.detectors.backend = backend
    config.detectors.batch_size = 4
    return config


def test_worker_detects_each_frame_once_and_fails_corrupted_evidence(plumbing, db, registry):
    config = plumbing
    flight = street_pass(registry, "ST-004", stalls=2, seed=5, max_frames=6)
    queued = [enqueue(config, db, "drone_frame", "UAV-01", f.header, f.jpeg) for f in flight.frames]
    cone = cone_frames(registry, "P-002", scenario="cone_fallen")[0]
    queued.append(enqueue(config, db, "cone_frame", cone.camera_id, cone.header, cone.jpeg))
    # damage one evidence file after it was queued
    store = EvidenceStore(config.evidence_dir)
    victim = queued[2].sha256
    os.chmod(store.path(victim), 0o644)
    store.path(victim).write_bytes(flight.frames[3].jpeg)

    worker = make_worker(config.for_detectors(), db)
    worker.run(threading.Event(), until_empty=True)

    reference = create_detector(config.detectors.backend)
    with db.connection() as conn:
        states = {s: (status, attempts, err) for s, status, attempts, err in frames_repo.frame_states(conn)}
        stored = frames_repo.detections(conn)
    assert states[victim][0] == "failed" and "EvidenceCorrupted" in states[victim][2]
    assert all(st == ("done", 1, None) for sha, st in states.items() if sha != victim)
    for f in queued:
        if f.sha256 == victim:
            continue
        image = cv2.imdecode(np.frombuffer(store.get(f.sha256), np.uint8), cv2.IMREAD_COLOR)
        (expected,) = reference.detect([image])
        mine = [d for d in stored if d.frame_sha256 == f.sha256]
        assert len(mine) == len(expected) > 0
        assert [d.det_index for d in mine] == list(range(len(expected)))
        assert np.allclose([[d.detection.x1, d.detection.y1, d.detection.x2, d.detection.y2]
                            for d in mine], expected.xyxy, atol=0.5)
        assert all(d.model == reference.model for d in mine)
        if f.source_kind == "cone":
            assert {d.detection.subject_id for d in mine} == {"P-002"}
        else:
            assert all(d.detection.lat is not None for d in mine)
    assert not [d for d in stored if d.frame_sha256 == victim]


@pytest.mark.slow
def test_worker_killed_mid_batch_loses_nothing_and_detects_nothing_twice(plumbing, db, registry,
                                                                         tmp_path):
    config = plumbing
    config.detectors.stale_after_s = 600.0  # the subprocess never judges its own claims stale
    flight = street_pass(registry, "ST-010", stalls=3, seed=8, max_frames=24, spacing_m=20)
    queued = [enqueue(config, db, "drone_frame", "UAV-03", f.header, f.jpeg) for f in flight.frames]
    cfg_file = tmp_path / "citywatch.yaml"
    cfg_file.write_text(yaml.safe_dump(config.model_dump(mode="json")), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "citywatch.cli", "-c", str(cfg_file),
                             "detect", "--until-empty"], cwd=PROJECT_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def mid_batch():
            with db.connection() as conn:
                c = frames_repo.status_counts(conn)
            return c["done"] >= 4 and c["processing"] > 0 and c
        counts = wait_until(mid_batch, timeout=120, every=0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with db.connection() as conn:
        held = conn.execute("SELECT sha256 FROM frames WHERE status = 'processing'").fetchall()
    assert held and counts["done"] < len(queued)

    # A second worker hands the dead worker's claims back once they are stale, then finishes.
    config.detectors.stale_after_s = 0.5
    survivor = make_worker(config.for_detectors(), db)
    wait_until(lambda: survivor.recover() or None, timeout=30)
    survivor.run(threading.Event(), until_empty=True)

    reference = create_detector(config.detectors.backend)
    store = EvidenceStore(config.evidence_dir)
    with db.connection() as conn:
        states = {s: (status, attempts) for s, status, attempts, _ in frames_repo.frame_states(conn)}
        stored = frames_repo.detections(conn)
        assert frames_repo.status_counts(conn) == {"pending": 0, "processing": 0,
                                                   "done": len(queued), "failed": 0}
    assert {sha for (sha,) in held} == {s for s, (_, attempts) in states.items() if attempts == 2}
    per_frame = {}
    for d in stored:
        per_frame.setdefault(d.frame_sha256, []).append(d.det_index)
    for f in queued:
        image = cv2.imdecode(np.frombuffer(store.get(f.sha256), np.uint8), cv2.IMREAD_COLOR)
        (expected,) = reference.detect([image])
        assert sorted(per_frame.get(f.sha256, [])) == list(range(len(expected)))


def test_worker_claim_lost_to_recovery_is_not_written(plumbing, db, registry):
    """A live but slow worker whose claim was handed on writes nothing when it finishes."""
    config = plumbing
    # a frame that shows something: a trained model finds no box in an empty street
    f = next(f for f in street_pass(registry, "ST-004", stalls=1, seed=2, max_frames=6).frames
             if f.rendered.boxes)
    enqueue(config, db, "drone_frame", "UAV-01", f.header, f.jpeg)
    slow = make_worker(config.for_detectors(), db, name="slow")
    with db.connection() as conn:
        (claimed,) = frames_repo.claim(conn, "slow", 1)
        conn.execute("UPDATE frames SET claimed_at = now() - interval '1 hour'")
        conn.commit()
    fast: Worker = make_worker(config.for_detectors(), db, name="fast")
    fast.run(threading.Event(), until_empty=True)
    with db.connection() as conn:
        n = len(frames_repo.detections(conn))
        assert not frames_repo.complete(conn, claimed, [], slow.detector.model)
        assert len(frames_repo.detections(conn)) == n > 0
        assert frames_repo.frame_states(conn)[0][1:3] == ("done", 2)


def test_start_workers_share_the_queue(plumbing, db, registry):
    """The service's entry point: n worker threads, each frame detected by exactly one."""
    from detectors.worker import start_workers

    config = plumbing
    config.detectors.batch_size = 2
    flight = street_pass(registry, "ST-004", stalls=2, seed=9, max_frames=8)
    # frames that show something, so each one gets detections to count
    frames = [f for f in flight.frames if f.rendered.boxes]
    for f in frames:
        enqueue(config, db, "drone_frame", "UAV-01", f.header, f.jpeg)
    stop = threading.Event()
    threads = start_workers(config.for_detectors(), db, stop, n=2)
    try:
        def finished():
            with db.connection() as conn:
                return frames_repo.status_counts(conn)["done"] == len(frames)
        wait_until(finished, timeout=120)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not any(t.is_alive() for t in threads)
    with db.connection() as conn:
        owners = dict(conn.execute("SELECT sha256, attempts FROM frames").fetchall())
        per_frame = conn.execute("SELECT frame_sha256, count(*), max(det_index) FROM detections "
                                 "GROUP BY 1").fetchall()
    assert set(owners.values()) == {1}
    assert all(n == top + 1 for _, n, top in per_frame) and len(per_frame) == len(frames)
