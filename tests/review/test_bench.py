"""bench/review.py on a small database: the generator fills every table the pages read and
every page it times answers."""

import pytest

from bench import review as bench


@pytest.mark.slow
def test_review_bench_smoke(config, db):
    data = bench.generate(config, db, cases=300, detections=2_000)
    assert data["cases"] == 300 and data["detections"] == 2_000 + 20 * 4
    results = bench.run(config, db, cases=300, requests=3)
    assert [r["page"] for r in results][:2] == ["sign-in page (floor)", "queue, first page"]
    assert all(r["n"] >= 3 and r["p50_ms"] > 0 for r in results)
