"""Review app fixtures: real cases made by the rule engine from simulated readings and
drone frames (real JPEG bytes in the evidence store), and one user of every role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import cv2
import numpy as np
import pytest

from citywatch.app import review_context
from domain.records import Detection
from review.security import hash_password
from rules.engine import evaluate
from storage import cases as case_store
from storage import frames as frame_store
from storage import review as review_store
from storage.evidence import EvidenceStore
from storage.frames import Frame
from tests.rules.helpers import MODEL, fume_series, local, store_readings

DAY = "2026-11-20"
PASSWORD = "correct horse battery"
ROLES = ("officer", "supervisor", "operator", "admin")
_HASHED: list[str] = []  # argon2 is slow on purpose: hash the test password once


def password_hash() -> str:
    if not _HASHED:
        _HASHED.append(hash_password(PASSWORD))
    return _HASHED[0]


def scene_jpeg(seed: int, boxes: list[tuple[int, int, int, int]]) -> bytes:
    """A 640x480 street scene stand-in: pavement, a shop front and stalls where `boxes` are."""
    rng = np.random.default_rng(seed)
    img = np.full((480, 640, 3), (150, 150, 145), np.uint8)
    img += rng.integers(0, 25, img.shape, dtype=np.uint8)
    cv2.rectangle(img, (0, 0), (640, 150), (90, 110, 160), -1)
    for x1, y1, x2, y2 in boxes:
        cv2.rectangle(img, (x1, y1), (x2, y2), (40, 140, 220), -1)
        cv2.line(img, (x1, y1), (x2, y2), (20, 60, 120), 3)
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 88])
    assert ok
    return data.tobytes()


def store_drone_frame(db, store: EvidenceStore, ts, subject_id: str, seed: int) -> str:
    """A processed drone frame with two street-stall detections, written through the frames
    queue as a detector worker writes it."""
    boxes = [(120, 220, 260, 330), (380, 240, 520, 360)]
    sha = store.put(scene_jpeg(seed, boxes))
    frame = Frame(sha, ts, ts, "drone", "UAV-01", 640, 480, 1000, sharpness=180.0,
                  brightness=120.0, clipped=0.0, fit_as_evidence=True)
    with db.connection() as conn:
        frame_store.insert_frames(conn, [frame])
        conn.commit()
        claimed = [c for c in frame_store.claim(conn, "test-worker", 1000) if c.frame.sha256 == sha]
        dets = [Detection(0, "street_stall", conf, *b, None, None, subject_id, "frontage")
                for conf, b in zip((0.91, 0.77), boxes, strict=True)]
        frame_store.complete(conn, claimed[0], dets, MODEL)
    return sha


@dataclass
class Env:
    config: object
    db: object
    fume_case: int
    drone_case: int
    frames: list[str]


@pytest.fixture
def env(config, db) -> Env:
    """A fume exceedance at M-00001 (11:00-11:30) and a drone-seen street stall at M-00002
    (10:00-10:05), both judged by the rule engine; users officer / supervisor / operator /
    admin (password PASSWORD)."""
    config.web.secure_cookies = False
    store = EvidenceStore(config.evidence_dir)
    # under the limit before and after: context in the chart, not part of the episode
    store_readings(db, fume_series("FM-00001", local(DAY, "10:50"), 10, lambda i: 1.2 + i / 20)
                   + fume_series("FM-00001", local(DAY, "11:00"), 30, lambda i: 2.6 + (i % 7) / 10)
                   + fume_series("FM-00001", local(DAY, "11:30"), 10, 1.1))
    frames = [store_drone_frame(db, store, local(DAY, "10:00") + timedelta(minutes=m),
                                "M-00002", m) for m in (0, 5)]
    evaluate(config.rules, db)
    with db.connection() as conn:
        cases = {c.rule_id: c.case_id for c in case_store.list_cases(conn)}
        hashed = password_hash()
        for role in ROLES:
            review_store.add_user(conn, role, role, hashed)
    return Env(config, db, cases["fume.exceedance"], cases["drone.street_vending"], frames)


@pytest.fixture
def app(env):
    from review.app import create_app

    return create_app(review_context(env.config, env.db))


def login(client, username: str, password: str = PASSWORD):
    """Sign in through the form (fetching the CSRF cookie first); returns the response."""
    client.get("/login")
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": client.cookies.get("cw_csrf"), "next": "/"},
                       follow_redirects=False)
