"""Threshold rules over event-time windows: boundaries, gaps, hours, per-day counts, profiles."""

from __future__ import annotations

import pytest

from rules.engine import evaluate
from storage import cases as case_store
from tests.rules.helpers import dust_series, fume_series, local, store_readings

DAY = "2026-11-20"
# M-00001 opens 11:00-14:00 and 17:00-21:00; its monitor is FM-00001.


def _keys(db, rule_id):
    with db.connection() as conn:
        return [(s, st.astimezone(local(DAY, "00:00").tzinfo).strftime("%H:%M"),
                 en.astimezone(local(DAY, "00:00").tzinfo).strftime("%H:%M"))
                for r, s, st, en in case_store.case_keys(conn) if r == rule_id]


@pytest.mark.parametrize("start, minutes, value, expected", [
    # three consecutive 10-minute means above 2.0 inside business hours
    ("11:00", 30, 2.01, [("M-00001", "11:00", "11:30")]),
    # exactly at the limit is not above it
    ("11:00", 30, 2.0, []),
    # just under
    ("11:00", 30, 1.99, []),
    # two windows are not three
    ("11:00", 20, 2.5, []),
    # the run goes on: one case, extended to the last window
    ("11:00", 60, 3.0, [("M-00001", "11:00", "12:00")]),
    # crossing closing time at 14:00: only windows wholly inside business hours count
    ("13:40", 40, 3.0, []),
    ("13:30", 60, 3.0, [("M-00001", "13:30", "14:00")]),
    # outside business hours
    ("15:00", 60, 5.0, []),
])
def test_fume_exceedance_windows(config, db, start, minutes, value, expected):
    store_readings(db, fume_series("FM-00001", local(DAY, start), minutes, value))
    evaluate(config.rules, db)
    assert _keys(db, "fume.exceedance") == expected


def test_gap_breaks_consecutive_windows(config, db):
    # 11:00-11:20 above, nothing 11:20-11:30, 11:30-11:40 above: no three in a row
    store_readings(db, fume_series("FM-00001", local(DAY, "11:00"), 20, 3.0)
                   + fume_series("FM-00001", local(DAY, "11:30"), 10, 3.0))
    evaluate(config.rules, db)
    assert _keys(db, "fume.exceedance") == []


def test_thin_window_is_not_judged(config, db):
    # four readings in a window are fewer than min_samples (5)
    readings = fume_series("FM-00001", local(DAY, "11:00"), 30, 3.0)
    thin = [r for r in readings if not (local(DAY, "11:10") <= r.ts < local(DAY, "11:20"))
            or r.ts.minute % 10 < 4]
    store_readings(db, thin)
    evaluate(config.rules, db)
    assert _keys(db, "fume.exceedance") == []


def test_strict_profile_uses_one_mg(config, db):
    store_readings(db, fume_series("FM-00001", local(DAY, "11:00"), 30, 1.5))
    evaluate(config.rules, db)
    assert _keys(db, "fume.exceedance") == []
    config.rules.profile = "strict"
    evaluate(config.rules, db)
    assert _keys(db, "fume.exceedance") == [("M-00001", "11:00", "11:30")]


def test_late_data_extends_the_same_case(config, db):
    store_readings(db, fume_series("FM-00001", local(DAY, "11:00"), 30, 3.0))
    evaluate(config.rules, db)
    # readings for 11:30-11:50 arrive late; the episode is the same one, now longer
    store_readings(db, fume_series("FM-00001", local(DAY, "11:30"), 20, 3.0))
    result = evaluate(config.rules, db, since=local(DAY, "11:30"))
    assert result.created == 0 and result.extended == 1
    assert _keys(db, "fume.exceedance") == [("M-00001", "11:00", "11:50")]


def test_late_data_earlier_than_the_case_revises_its_start(config, db):
    store_readings(db, fume_series("FM-00001", local(DAY, "11:10"), 30, 3.0))
    evaluate(config.rules, db)
    store_readings(db, fume_series("FM-00001", local(DAY, "11:00"), 10, 3.0))
    result = evaluate(config.rules, db)
    assert result.revised == 1 and result.created == 0
    assert _keys(db, "fume.exceedance") == [("M-00001", "11:00", "11:40")]


@pytest.mark.parametrize("hourly, expected_rules", [
    (149.0, set()),
    (151.0, {"dust.pm10_hourly_warning"}),
    (200.0, {"dust.pm10_hourly_warning"}),
    (201.0, {"dust.pm10_hourly_warning", "dust.pm10_hourly_case"}),
])
def test_dust_hourly_thresholds(config, db, hourly, expected_rules):
    store_readings(db, dust_series("DM-001", local(DAY, "09:00"), 60, hourly))
    evaluate(config.rules, db)
    with db.connection() as conn:
        got = {r for r, *_ in case_store.case_keys(conn) if r.startswith("dust.pm10_hourly")}
    assert got == expected_rules


@pytest.mark.parametrize("bursts, expected", [
    # S-001 background 60: the 15-minute limit is 140; more than twice a day is a case
    (["08:00", "10:00"], []),
    (["08:00", "10:00", "23:45"], [("S-001", "08:00", "00:00")]),
])
def test_dust_exceedances_per_day(config, db, bursts, expected):
    readings = dust_series("DM-001", local(DAY, "00:00"), 24 * 60, 100.0)
    high = {local(DAY, b) for b in bursts}
    readings = [r if not any(h <= r.ts < h + (r.ts - r.ts).__class__(minutes=15) for h in high)
                else dust_series("DM-001", r.ts, 1, 145.0)[0] for r in readings]
    store_readings(db, readings)
    evaluate(config.rules, db)
    assert _keys(db, "dust.exceedances_15min") == expected
