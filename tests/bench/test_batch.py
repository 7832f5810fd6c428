"""bench/batch.py runs end to end on a tiny clip and reports both sides (a smoke test: the
numbers themselves belong in BENCHMARKS.md, never in a test)."""

from __future__ import annotations

import json

import pytest

from bench import batch as bench_batch
from tests.conftest import ADMIN_URL

pytestmark = pytest.mark.slow


def test_bench_batch_smoke(tmp_path):
    out = tmp_path / "result.json"
    assert bench_batch.main(["--seconds", "2", "--width", "640", "--height", "360",
                             "--rounds", "1", "--database-url", ADMIN_URL,
                             "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    (r,) = result["rounds"]
    assert r["ultralytics"]["results"] == 2 and r["citywatch"]["frames"] == 2
    assert result["best"]["ratio"] > 0 and result["vid_stride"] == 30
