"""Live evaluation: data arriving hour by hour gives the same cases as one batch, and the
engine loop of `citywatch run` finds cases and stops when asked."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest

from rules.engine import evaluate, run_engine
from rules.timeutil import parse_duration
from rules.verify import verify
from simulators import scenario as scenarios
from storage import cases as case_store
from tests.rules.helpers import fume_series, local, store_readings
from tests.rules.test_scenarios import _matches

DAY = date(2026, 11, 20)


@pytest.mark.slow
def test_hour_by_hour_equals_the_batch(config, db):
    sc = scenarios.load("violations", day=DAY)
    readings = sorted(sc.readings(), key=lambda r: r.ts)
    lateness = parse_duration(config.rules.allowed_lateness)
    hour = sc.start
    while hour < sc.end:
        nxt = hour + timedelta(hours=1)
        store_readings(db, [r for r in readings if hour <= r.ts < nxt])
        evaluate(config.rules, db, since=hour - lateness, until=nxt, live=True)
        hour = nxt
    with db.connection() as conn:
        live = [tuple(k[:3]) for k in case_store.case_keys(conn)]
    expected = list(sc.expected_cases)
    assert [e for e in expected if not any(_matches(e, g) for g in live)] == []
    assert [g for g in live if not any(_matches(e, g) for e in expected)] == []
    # the batch over the whole day afterwards opens nothing and moves nothing
    batch = evaluate(config.rules, db)
    assert (batch.created, batch.revised) == (0, 0)
    assert verify(config.data_path, db).problems == []


def test_run_engine_finds_cases_and_stops(config, db):
    config.rules.interval_s = 0.2
    store_readings(db, fume_series("FM-00001", local(str(DAY), "11:00"), 40, 3.0))
    stop = threading.Event()
    engine = threading.Thread(target=run_engine, args=(config.rules, db, stop), daemon=True)
    engine.start()
    found = []
    for _ in range(300):
        with db.connection() as conn:
            found = case_store.list_cases(conn)
            watermark = case_store.engine_watermark(conn, "rules")
        if found and watermark:
            break
        stop.wait(0.1)
    stop.set()
    engine.join(timeout=30)
    assert not engine.is_alive()
    assert [(c.rule_id, c.subject_id) for c in found] == [("fume.exceedance", "M-00001")]
