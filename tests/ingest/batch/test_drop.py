"""The drop folder: a file is taken once complete (size stable), processed, marked done and
never taken again; a file still being written waits; a refused file is marked with why."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from citywatch import batch
from ingest.batch import drop
from storage import batch as batch_repo

from .conftest import copy_to

CST = timezone(timedelta(hours=8))


def test_a_growing_file_waits_and_a_complete_one_is_taken(tmp_path):
    done = copy_to_bytes(tmp_path / "UAV-01" / "a.MP4", b"x" * 100)
    growing = copy_to_bytes(tmp_path / "UAV-01" / "b.MP4", b"x" * 10)
    empty = copy_to_bytes(tmp_path / "UAV-01" / "c.MP4", b"")

    def meanwhile(_seconds: float) -> None:
        with growing.open("ab") as fh:  # a copy still in progress
            fh.write(b"more")

    assert drop.stable([done, growing, empty], 0.0, sleep=meanwhile) == [done]
    drop.mark(done, "done", {"run_id": 1})
    assert drop.candidates(tmp_path) == [growing, empty]


def copy_to_bytes(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_cron_schedule_next_sweep():
    after = datetime(2026, 11, 26, 23, 30, tzinfo=CST)
    assert drop.next_sweep("0 1 * * *", after) == datetime(2026, 11, 27, 1, 0, tzinfo=CST)


def test_the_sweep_picks_up_a_dropped_file_once(trained, db, short_clip, tmp_path):
    trained.batch.drop_dir = str(tmp_path / "drop")
    trained.batch.stable_s = 0.2
    clip = copy_to(short_clip.path, tmp_path / "drop" / "UAV-01")
    stray = copy_to_bytes(tmp_path / "drop" / "NOBODY" / "x.mp4", b"not video")

    first = batch.sweep(trained, db)
    assert first.status == "done" and first.new_sources == 1
    marker = json.loads(clip.with_name(clip.name + ".done").read_text())
    assert marker["run_id"] == first.run_id and marker["new"] is True
    assert "not in the registry" in json.loads(
        stray.with_name(stray.name + ".refused").read_text())["reason"]
    with db.connection() as conn:
        assert len(batch_repo.sampled_frames(conn, marker["sha256"])) == 4
        (run,) = batch_repo.recent_runs(conn)  # what `citywatch batch status` shows
    assert run["status"] == "done" and run["progress"] == {
        "samples": 4, "sampled": 4, "detected": 4, "chunks_open": 0, "sources": 1,
        "footage_frames": 120}

    assert batch.sweep(trained, db) is None  # nothing new: the file is not taken again
    with db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM batch_runs").fetchone()[0] == 1
