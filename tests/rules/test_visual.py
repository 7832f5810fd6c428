"""Detection, permit and composite rules; fused cases; the evidence gate."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest

from rules.engine import evaluate
from storage import cases as case_store
from tests.rules.helpers import TZ, fume_series, local, store_frame, store_readings

DAY = "2026-11-20"


def _keys(db, rule_id=None):
    with db.connection() as conn:
        return [(r, s, st.astimezone(TZ).strftime("%H:%M"), en.astimezone(TZ).strftime("%H:%M"))
                for r, s, st, en in case_store.case_keys(conn) if rule_id in (None, r)]


def _frames(db, kind, source, start, minutes_list, dets, **kw):
    for m in minutes_list:
        store_frame(db, kind, source, local(DAY, start) + timedelta(minutes=m), dets, **kw)


@pytest.mark.parametrize("minutes, conf, zone, expected", [
    ([0, 5], 0.8, "frontage", [("drone.street_vending", "M-00001", "10:00", "10:05")]),
    ([0], 0.8, "frontage", []),                    # one frame: fewer than min_frames (2)
    ([0, 5], 0.49, "frontage", []),                # just under the confidence
    ([0, 5], 0.5, "frontage", [("drone.street_vending", "M-00001", "10:00", "10:05")]),
    ([0, 5], 0.8, "none", []),                     # not on the merchant's frontage
    ([0, 45], 0.8, "frontage", []),                # 45 min apart: gap 30 min, two lone frames
])
def test_street_vending(config, db, minutes, conf, zone, expected):
    _frames(db, "drone", "UAV-01", "10:00", minutes, [("street_stall", conf, "M-00001", zone)])
    evaluate(config.rules, db)
    assert _keys(db, "drone.street_vending") == expected


@pytest.mark.parametrize("fallen_minutes, upright_minutes, expected", [
    # seen fallen for 6 minutes: not restored within 5
    ([0, 2, 4, 6], [], [("cone.fallen_not_restored", "P-001", "10:00", "10:06")]),
    # put back up at minute 3 and fallen again at 5: two short episodes
    ([0, 2, 5, 7], [3], []),
    # fallen for 4 minutes, then restored
    ([0, 2, 4], [6, 8], []),
])
def test_fallen_cone_not_restored(config, db, fallen_minutes, upright_minutes, expected):
    _frames(db, "cone", "CC-001-1", "10:00", fallen_minutes, [("cone_fallen", 0.9, "P-001", "permit")])
    _frames(db, "cone", "CC-001-1", "10:00", upright_minutes, [("cone_upright", 0.9, "P-001", "permit")])
    evaluate(config.rules, db)
    assert _keys(db, "cone.fallen_not_restored") == expected


@pytest.mark.parametrize("start, expected", [
    # P-001 may work 09:00-17:00
    ("16:50", [("cone.outside_hours", "P-001", "17:00", "17:10")]),
    ("08:40", [("cone.outside_hours", "P-001", "08:40", "08:55")]),
    ("12:00", []),
])
def test_work_outside_permitted_hours(config, db, start, expected):
    _frames(db, "cone", "CC-001-1", start, [0, 5, 10, 15, 20],
            [("excavator", 0.9, "P-001", "permit"), ("fence", 0.9, "P-001", "permit")])
    evaluate(config.rules, db)
    assert _keys(db, "cone.outside_hours") == expected
    assert _keys(db, "cone.fence_missing") == []


def test_work_outside_permitted_area_and_without_fence(config, db):
    # P-001's polygon spans about 120.121344..120.1214064 E, 30.331326..30.3316689 N
    inside = ("worker_helmet", 0.9, "P-001", "permit", 30.3315, 120.12137)
    outside = ("excavator", 0.9, "P-001", "permit", 30.3315, 120.12160)  # ~19 m east
    at_camera = ("excavator", 0.9, "P-001", "permit", 30.331299, 120.1213388)
    _frames(db, "cone", "CC-001-1", "10:00", [0, 3, 6], [inside])
    _frames(db, "cone", "CC-001-1", "11:00", [0, 3, 6], [at_camera])
    _frames(db, "cone", "CC-001-2", "12:00", [0, 3, 6], [outside])
    evaluate(config.rules, db)
    assert _keys(db, "cone.outside_area") == [("cone.outside_area", "P-001", "12:00", "12:06")]
    # no fence seen in any of these frames: work without an enclosure, all three times
    assert [k[2] for k in _keys(db, "cone.fence_missing")] == ["10:00", "11:00", "12:00"]


def test_fused_case_and_evidence_gate(config, db):
    # fume exceedance at M-00001 11:00-11:30 and a drone sees a stall in its frontage
    store_readings(db, fume_series("FM-00001", local(DAY, "11:00"), 30, 3.0))
    _frames(db, "drone", "UAV-01", "11:10", [0, 4], [("street_stall", 0.9, "M-00001", "frontage")])
    result = evaluate(config.rules, db)
    assert result.fused == 1
    with db.connection() as conn:
        shown = case_store.list_cases(conn)
        assert [(c.rule_id, c.evidence_state) for c in shown] == [("fume.exceedance", "ready")]
        detail = case_store.get_case(conn, shown[0].case_id)
    assert sorted(e.kind for e in detail.evidence) == ["frame", "frame", "series"]
    assert len(detail.fused) == 1
    # the frames are stand-ins without files; everything else checks out
    from rules.verify import verify
    assert all("evidence file missing" in p for p in verify(config.data_path, db).problems)


@pytest.mark.parametrize("fit, drone, expected_missing", [
    (True, "UAV-01", []),
    (False, "UAV-01", ["no frame fit as evidence (2 frames, none fit)"]),
    (True, "UAV-99", ["device UAV-99 is not registered"]),
])
def test_visual_case_gate(config, db, fit, drone, expected_missing):
    _frames(db, "drone", drone, "10:00", [0, 5], [("street_stall", 0.9, "M-00001", "frontage")],
            fit=fit)
    evaluate(config.rules, db)
    with db.connection() as conn:
        (case,) = case_store.list_cases(conn)
    assert (case.evidence_state, case.evidence_missing) == (
        "incomplete" if expected_missing else "ready", expected_missing)


def test_uncertified_monitor_case_lists_the_lapse_when_not_suppressed(config, db):
    # FM-00013's calibration lapsed in March 2026
    config.rules.suppress_uncertified = False
    store_readings(db, fume_series("FM-00013", local(DAY, "12:00"), 30, 3.0))
    evaluate(config.rules, db)
    with db.connection() as conn:
        (case,) = case_store.list_cases(conn)
    assert case.evidence_state == "incomplete"
    assert case.evidence_missing == ["device FM-00013: calibration due 2026-03-08, lapsed on 2026-11-20"]


def test_uncertified_monitor_opens_no_case_by_default(config, db):
    store_readings(db, fume_series("FM-00013", local(DAY, "12:00"), 30, 3.0))
    result = evaluate(config.rules, db)
    assert (result.created, result.suppressed) == (0, 1)


COMPOSITE = """
rules:
  - id: fume.exceedance_purifier_off
    title: fume above the limit while the purifier is off
    kind: composite
    subject_type: merchant
    condition: {all: [fume.exceedance, fume.purifier_off]}
  - id: fume.exceedance_purifier_on
    title: fume above the limit with the purifier on
    kind: composite
    subject_type: merchant
    condition: {not: [fume.exceedance, fume.purifier_off]}
"""


def test_composite_rules(config, db, tmp_path):
    rules_dir = tmp_path / "rules"
    shutil.copytree(config.resolve(config.rules.directory), rules_dir)
    (rules_dir / "zz_composite.yaml").write_text(COMPOSITE, encoding="utf-8")
    config.rules.directory = str(rules_dir)
    # above the limit 11:00-12:00; purifier off 11:30-12:00 only
    store_readings(db, fume_series("FM-00001", local(DAY, "11:00"), 60, 3.0,
                                   purifier=lambda i: i < 30))
    evaluate(config.rules, db)
    assert _keys(db, "fume.exceedance_purifier_off") == [
        ("fume.exceedance_purifier_off", "M-00001", "11:30", "11:59")]
    assert _keys(db, "fume.exceedance_purifier_on") == [
        ("fume.exceedance_purifier_on", "M-00001", "11:00", "11:30"),
        ("fume.exceedance_purifier_on", "M-00001", "11:59", "12:00")]


def test_demo_summary_lists_fused_cases_and_credit(config, db):
    from rules.summary import demo_summary, format_summary

    store_readings(db, fume_series("FM-00001", local(DAY, "11:00"), 30, 3.0))
    _frames(db, "drone", "UAV-01", "11:10", [0, 4], [("street_stall", 0.9, "M-00001", "frontage")])
    evaluate(config.rules, db)
    with db.connection() as conn:
        host = case_store.list_cases(conn)[0].case_id
        for status in ("under_review", "confirmed"):
            case_store.transition(conn, host, status, "officer-7", "series and frames agree")
    summary = demo_summary(config.rules, db)
    assert sorted((c["rule_id"], c["fused_into"]) for c in summary["cases"]) == [
        ("drone.street_vending", host), ("fume.exceedance", None)]
    assert summary["credit"] == {"M-00001": "yellow"}
    assert "fused into" in format_summary(summary)


def test_dust_warning_and_drone_case_fuse_into_the_dust_case(config, db):
    from tests.rules.helpers import dust_series

    store_readings(db, dust_series("DM-001", local(DAY, "09:00"), 120, 240.0))
    _frames(db, "drone", "UAV-18", "09:30", [0, 3], [("bare_soil", 0.9, "S-001", "site")])
    result = evaluate(config.rules, db)
    with db.connection() as conn:
        shown = [c.rule_id for c in case_store.list_cases(conn)]
        every = case_store.list_cases(conn, include_fused=True)
    host = next(c.case_id for c in every if c.rule_id == "dust.exceedances_15min")
    assert shown == ["dust.exceedances_15min", "dust.pm10_hourly_case"]
    assert sorted((c.rule_id, c.fused_into) for c in every if c.fused_into) == [
        ("drone.bare_soil_uncovered", host), ("dust.pm10_hourly_warning", host)]
    assert result.fused == 2
