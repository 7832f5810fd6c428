"""Scenario files with known violations: exactly the expected cases, and none on re-runs."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from rules.engine import evaluate
from rules.verify import verify
from simulators import scenario as scenarios
from storage import cases as case_store
from tests.rules.helpers import store_readings

DAY = date(2026, 11, 20)
# Devices report at a fixed phase within their minute, so an episode that starts with the
# first reading in a state, or the last one before a silence, is that much off the minute.
SLACK = timedelta(seconds=60)


def _matches(expected, got) -> bool:
    return (expected.rule_id, expected.subject_id) == got[:2] and \
        abs(got[2] - expected.episode_start) <= SLACK


@pytest.mark.slow
@pytest.mark.parametrize("name", ["violations", "demo-day"])
def test_scenario_yields_exactly_the_expected_cases(config, db, name):
    sc = scenarios.load(name, day=DAY)
    store_readings(db, list(sc.readings()))
    first = evaluate(config.rules, db)
    with db.connection() as conn:
        got = [tuple(k[:3]) for k in case_store.case_keys(conn)]
    expected = list(sc.expected_cases)
    unmatched = [e for e in expected if not any(_matches(e, g) for g in got)]
    extra = [g for g in got if not any(_matches(e, g) for e in expected)]
    assert (unmatched, extra) == ([], [])
    assert first.created == len(got)
    # the same data again, and again as a live engine would see it: nothing new
    again = evaluate(config.rules, db)
    live = evaluate(config.rules, db, since=sc.local("12:00"))
    assert (again.created, again.revised, live.created, live.revised) == (0, 0, 0, 0)
    with db.connection() as conn:
        assert [tuple(k[:3]) for k in case_store.case_keys(conn)] == got
    assert verify(config.data_path, db).problems == []
