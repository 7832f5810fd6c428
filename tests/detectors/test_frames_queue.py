"""The frames queue on real PostgreSQL: idempotent inserts, SKIP LOCKED claims by many
workers, fenced completion, retries, failure and stale-claim recovery."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta

import pytest

from domain.records import Detection
from storage import frames as repo
from storage.frames import Frame, ModelInfo, Pose

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
MODEL = ModelInfo("test-model", "v1", "ab" * 32)


def make_frame(i: int, *, kind: str = "drone") -> Frame:
    return Frame(
        sha256=hashlib.sha256(f"frame-{i}".encode()).hexdigest(), ts=T0 + timedelta(seconds=i),
        received_at=T0 + timedelta(seconds=i, milliseconds=200), source_kind=kind,
        source_id="UAV-01" if kind == "drone" else "CC-001-1", width=1280, height=720,
        bytes=1000 + i, pose=Pose(30.3, 120.1, 80, 90, -90, 84) if kind == "drone" else None,
        header={"ts": i}, sharpness=100.0, brightness=120.0, clipped=0.0, fit_as_evidence=True)


def queue(db, n: int) -> list[Frame]:
    frames = [make_frame(i) for i in range(n)]
    with db.connection() as conn:
        assert repo.insert_frames(conn, frames) == [True] * n
        conn.commit()
    return frames


def dets(k: int) -> list[Detection]:
    return [Detection(0, "street_stall", 0.9, 10 * i, 10, 10 * i + 5, 20, 30.3, 120.1,
                      "M-00001", "frontage") for i in range(k)]


def test_insert_is_idempotent_and_round_trips(db):
    frames = queue(db, 3)
    with db.connection() as conn:
        assert repo.insert_frames(conn, frames[:2] + [make_frame(9)]) == [False, False, True]
        conn.commit()
        assert repo.status_counts(conn)["pending"] == 4
        assert repo.get_frame(conn, frames[1].sha256) == frames[1]


def test_claims_by_concurrent_workers_never_overlap(db):
    queue(db, 40)
    got: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        mine = got.setdefault(name, [])
        while True:
            with db.connection() as conn:
                batch = repo.claim(conn, name, 3)
                if not batch:
                    return
                mine += [c.frame.sha256 for c in batch]
                for c in batch:
                    assert repo.complete(conn, c, dets(1), MODEL)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [s for names in got.values() for s in names]
    assert len(claimed) == len(set(claimed)) == 40
    with db.connection() as conn:
        assert repo.status_counts(conn) == {"pending": 0, "processing": 0, "done": 40, "failed": 0}
        assert len(repo.detections(conn)) == 40


def test_complete_writes_detections_and_done_together(db):
    (frame,) = queue(db, 1)
    with db.connection() as conn:
        (c,) = repo.claim(conn, "w1", 5)
        assert c.attempts == 1 and c.frame == frame
        assert repo.complete(conn, c, dets(3), MODEL)
        stored = repo.detections(conn, frame_sha256=frame.sha256)
        assert [d.det_index for d in stored] == [0, 1, 2]
        assert stored[0].detection == dets(3)[0] and stored[0].model == MODEL
        assert stored[0].fit_as_evidence is True
        assert repo.frame_states(conn) == [(frame.sha256, "done", 1, None)]
        # a second completion of the same claim writes nothing
        assert not repo.complete(conn, c, dets(3), MODEL)
        assert len(repo.detections(conn)) == 3


def test_stale_claim_is_recovered_and_the_late_result_discarded(db):
    (frame,) = queue(db, 1)
    with db.connection() as conn:
        (slow,) = repo.claim(conn, "slow-worker", 1)
        assert repo.recover_stale(conn, stale_after_s=3600, max_attempts=3) == 0
        conn.execute("UPDATE frames SET claimed_at = now() - interval '1 hour'")
        conn.commit()
        assert repo.recover_stale(conn, stale_after_s=60, max_attempts=3) == 1
        (fresh,) = repo.claim(conn, "fresh-worker", 1)
        assert fresh.attempts == 2
        assert repo.complete(conn, fresh, dets(2), MODEL)
        # the slow worker wakes up: its result must not be written twice
        assert not repo.complete(conn, slow, dets(2), MODEL)
        assert repo.fail(conn, slow, "late", 3) is None
        assert len(repo.detections(conn)) == 2
        assert repo.frame_states(conn)[0][1:3] == ("done", 2)


@pytest.mark.parametrize(("max_attempts", "statuses"),
                         [(1, ["failed"]), (2, ["pending", "failed"]),
                          (3, ["pending", "pending", "failed"])])
def test_failures_retry_then_fail_with_the_error(db, max_attempts, statuses):
    queue(db, 1)
    seen = []
    with db.connection() as conn:
        for attempt in range(1, max_attempts + 1):
            (c,) = repo.claim(conn, "w", 1)
            assert c.attempts == attempt
            seen.append(repo.fail(conn, c, f"boom {attempt}", max_attempts))
        assert repo.claim(conn, "w", 1) == []
        (_, status, attempts, error), = repo.frame_states(conn)
    assert seen == statuses
    assert (status, attempts, error) == ("failed", max_attempts, f"boom {max_attempts}")


def test_a_frame_that_kills_every_worker_ends_failed(db):
    queue(db, 1)
    with db.connection() as conn:
        for _ in range(2):
            repo.claim(conn, "doomed", 1)
            conn.execute("UPDATE frames SET claimed_at = now() - interval '1 hour'")
            conn.commit()
            repo.recover_stale(conn, stale_after_s=60, max_attempts=2)
        (_, status, attempts, error), = repo.frame_states(conn)
    assert (status, attempts) == ("failed", 2) and "went stale" in error


def test_batch_completion_skips_only_the_frames_whose_claim_was_lost(db):
    queue(db, 3)
    with db.connection() as conn:
        a, b, c = repo.claim(conn, "w1", 3)
        # b's claim goes stale and another worker finishes it first
        conn.execute("UPDATE frames SET claimed_at = now() - interval '1 hour' WHERE sha256 = %s",
                     (b.frame.sha256,))
        conn.commit()
        assert repo.recover_stale(conn, 60, 3) == 1
        (b2,) = repo.claim(conn, "w2", 3)
        assert repo.complete(conn, b2, dets(1), MODEL)
        assert repo.complete_batch(conn, [(a, dets(2)), (b, dets(5)), (c, [])], MODEL) == \
            [True, False, True]
        per_frame = {s: 0 for s in (a.frame.sha256, b.frame.sha256, c.frame.sha256)}
        for d in repo.detections(conn):
            per_frame[d.frame_sha256] += 1
        assert per_frame == {a.frame.sha256: 2, b.frame.sha256: 1, c.frame.sha256: 0}
        assert repo.status_counts(conn)["done"] == 3
