"""kill -9 in the middle of `citywatch batch run`, then the same command again: every
sampled frame queued and detected exactly once, none lost."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
import yaml

from domain.paths import PROJECT_ROOT
from ingest.batch import video

from .conftest import DEFAULT_ONNX

pytestmark = pytest.mark.slow


def _cli(cfg_file, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "citywatch.cli", "-c", str(cfg_file), *args],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


def test_kill_9_mid_run_then_resume_loses_nothing_and_detects_nothing_twice(
        config, db, street_video, tmp_path):
    cfg_file = tmp_path / "citywatch.yaml"
    cfg_file.write_text(yaml.safe_dump({
        "data_dir": config.data_dir,
        "database": {"url": config.database.url},
        "detectors": {"backend": {"type": "onnxruntime", "weights": str(DEFAULT_ONNX)},
                      "stale_after_s": 4.0},
        "batch": {"chunk_s": 8.0},
    }))
    url = config.database.url
    samples = video.probe(street_video.path).sample(1)
    args = ("batch", "run", str(street_video.path.parent), "--no-rules", "--json")

    first = _cli(cfg_file, *args)
    deadline = time.monotonic() + 120
    while _count(url, "SELECT count(*) FROM batch_frames") < 6:
        assert first.poll() is None, first.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the first run queued nothing in 120 s"
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    at_kill = (_count(url, "SELECT count(*) FROM batch_frames"),
               _count(url, "SELECT count(*) FROM frames WHERE status = 'done'"))
    assert at_kill[0] < len(samples) or at_kill[1] < len(samples), "killed too late to matter"

    second = _cli(cfg_file, *args)
    out, err = second.communicate(timeout=240)
    assert second.returncode == 0, err.decode()[-3000:]
    summary = json.loads(out)  # --json: JSON on stdout and nothing else
    assert (summary["status"], summary["new_sources"]) == ("done", 0)

    sha = hashlib.sha256(street_video.path.read_bytes()).hexdigest()
    with psycopg.connect(url) as conn:
        indices = [r[0] for r in conn.execute(
            "SELECT frame_index FROM batch_frames WHERE source_sha256 = %s ORDER BY 1", (sha,))]
        states = dict(conn.execute("SELECT status, count(*) FROM frames GROUP BY 1").fetchall())
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT frame_sha256, frame_ts, det_index FROM detections"
            " GROUP BY 1, 2, 3 HAVING count(*) > 1) AS d").fetchone()[0]
        frames_with_detections = conn.execute(
            "SELECT count(DISTINCT (frame_sha256, frame_ts)) FROM detections").fetchone()[0]
        chunks = dict(conn.execute(
            "SELECT status, count(*) FROM batch_chunks GROUP BY 1").fetchall())
        source_status = conn.execute("SELECT status FROM batch_sources").fetchone()[0]
    assert indices == samples, f"killed at {at_kill}"
    assert states == {"done": len(samples)}
    assert twice == 0 and frames_with_detections > 0
    assert set(chunks) == {"done"} and source_status == "done"
