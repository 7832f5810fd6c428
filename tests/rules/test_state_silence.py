"""State (purifier off while the fan runs) and silence (no data in business hours) rules."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rules.engine import evaluate
from storage import cases as case_store
from tests.rules.helpers import TZ, fume_series, local, store_readings

DAY = "2026-11-20"
NEXT = "2026-11-21"


def _keys(db, rule_id):
    with db.connection() as conn:
        return [(s, st.astimezone(TZ).strftime("%d %H:%M"), en.astimezone(TZ).strftime("%d %H:%M"))
                for r, s, st, en in case_store.case_keys(conn) if r == rule_id]


@pytest.mark.parametrize("start, off_minutes, expected", [
    # 11 readings a minute apart span 10 minutes: just enough
    ("12:00", 11, [("M-00001", "20 12:00", "20 12:10")]),
    # 10 readings span 9 minutes: just under
    ("12:00", 10, []),
    # the run crosses closing time (14:00): only its part inside business hours counts
    ("13:55", 30, []),
    ("13:45", 30, [("M-00001", "20 13:45", "20 14:00")]),
    # outside business hours
    ("15:00", 60, []),
])
def test_purifier_off_while_fan_runs(config, db, start, off_minutes, expected):
    t0 = local(DAY, start)
    store_readings(db, fume_series("FM-00001", t0, off_minutes, 0.5, purifier=False)
                   + fume_series("FM-00001", t0 + timedelta(minutes=off_minutes), 5, 0.5))
    evaluate(config.rules, db)
    assert _keys(db, "fume.purifier_off") == expected


def test_one_good_reading_breaks_the_run(config, db):
    # purifier back on for one reading at minute 6: two runs of 6 and 8 minutes, both short
    store_readings(db, fume_series("FM-00001", local(DAY, "12:00"), 15, 0.5,
                                   purifier=lambda i: i == 6))
    evaluate(config.rules, db)
    assert _keys(db, "fume.purifier_off") == []


def test_fan_off_is_not_a_violation(config, db):
    store_readings(db, fume_series("FM-00001", local(DAY, "12:00"), 30, 0.5, fan=False,
                                   purifier=False))
    evaluate(config.rules, db)
    assert _keys(db, "fume.purifier_off") == []


@pytest.mark.parametrize("gap_from, gap_to, expected", [
    # M-00001 opens 11:00-14:00 and 17:00-21:00
    # 2 h 10 min of silence inside business hours (counted from opening time)
    ("11:00", "13:10", [("M-00001", "20 11:00", "20 13:10")]),
    # exactly two hours (plus the minute of the last reading) is not more than two hours
    ("11:01", "13:00", []),
    # silent 13:00-18:30: one hour before closing, 1.5 h after opening: 2.5 h in hours
    ("13:00", "18:30", [("M-00001", "20 12:59", "20 18:30")]),
    # silent across midnight, outside business hours
    ("21:30", "10:00+1", []),
])
def test_device_silent_in_business_hours(config, db, gap_from, gap_to, expected):
    t0 = local(DAY, "10:00")
    end = local(NEXT, "12:00")
    lo = local(DAY, gap_from)
    hi = local(NEXT, gap_to[:-2]) if gap_to.endswith("+1") else local(DAY, gap_to)
    readings = [r for r in fume_series("FM-00001", t0, int((end - t0).total_seconds() // 60), 0.3)
                if not lo <= r.ts < hi]
    store_readings(db, readings)
    evaluate(config.rules, db)
    assert _keys(db, "fume.device_silent") == expected


def test_silence_still_going_extends_its_case(config, db):
    store_readings(db, fume_series("FM-00001", local(DAY, "10:00"), 60, 0.3)
                   + fume_series("FM-00002", local(DAY, "10:00"), 6 * 60, 0.3))
    evaluate(config.rules, db, until=local(DAY, "13:30"))
    assert _keys(db, "fume.device_silent") == [("M-00001", "20 11:00", "20 13:30")]
    result = evaluate(config.rules, db, since=local(DAY, "13:00"), until=local(DAY, "16:00"))
    assert result.created == 0
    assert _keys(db, "fume.device_silent") == [("M-00001", "20 11:00", "20 14:00")]
