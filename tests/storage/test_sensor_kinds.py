"""One declaration per sensor kind: decoder, stored columns, window views and rule schema
all follow domain/sensors.py. Noise monitors are the kind added through it."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from domain.records import Reading
from domain.sensors import READING_FIELDS, SENSOR_KINDS, WINDOW_VIEWS, window_columns
from domain.vocabulary import DeviceKind
from ingest.config import IngestConfig
from ingest.decode import Address, Message, decode_reading, parse_topic
from ingest.errors import Rejected
from rules.ruleset import RuleSetError, parse
from storage import readings as reading_store
from storage import rule_queries, windows

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def _msg(kind: str, doc: dict) -> Message:
    return Message(f"p/{kind}/X", json.dumps(doc).encode(), NOW, Address(kind, "X"))


@pytest.mark.parametrize("doc, reason", [
    ({"noise_dba": 61.5}, None),
    ({}, "missing_field"),
    ({"noise_dba": "loud"}, "bad_type"),
    ({"noise_dba": -3}, "negative"),
    ({"noise_dba": 250}, "out_of_range"),
])
def test_noise_readings_decode_as_declared(doc, reason):
    message = _msg("noise", {"ts": NOW.isoformat(), **doc})
    if reason is None:
        r = decode_reading(SENSOR_KINDS["noise"], message, IngestConfig())
        assert (r.device_id, r.ts, r.values) == ("X", NOW, {"noise_dba": 61.5})
        assert r.noise_dba == 61.5 and r.fume_mg_m3 is None
    else:
        with pytest.raises(Rejected) as e:
            decode_reading(SENSOR_KINDS["noise"], message, IngestConfig())
        assert e.value.reason == reason


def test_every_sensor_kind_has_its_topic_and_a_configured_ceiling_overrides_the_declared():
    for kind in SENSOR_KINDS:
        assert parse_topic("p", f"p/{kind}/D-1") == Address(kind, "D-1")
    message = _msg("noise", {"ts": NOW.isoformat(), "noise_dba": 130})
    with pytest.raises(Rejected):
        decode_reading(SENSOR_KINDS["noise"], message, IngestConfig(plausible_max={"noise_dba": 120}))
    with pytest.raises(ValueError, match="not a numeric reading field"):
        IngestConfig(plausible_max={"fan_on": 1})


def test_stored_device_kinds_and_columns_follow_the_declarations(db):
    with db.connection() as conn:
        check = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'devices_kind_check'").fetchone()[0]
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'readings'")}
        for view in WINDOW_VIEWS:
            view_columns = {r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                (view,))}
            assert view_columns == {"device_id", "bucket", "n", *window_columns().values()}
            assert windows.current(conn, view) == windows.signature()
    assert sorted(check.split("'")[1::2]) == sorted(k.value for k in DeviceKind)
    assert set(READING_FIELDS) <= columns


def test_leq_is_the_energy_mean_in_views_and_rule_queries(db):
    """Two readings of 60 and 70 dB(A) in one window: Leq 67.4, not the 65 a mean gives."""
    t0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
    rows = [Reading.of("NM-001", t0 + timedelta(minutes=1), t0, noise_dba=60.0),
            Reading.of("NM-001", t0 + timedelta(minutes=2), t0, noise_dba=70.0)]
    expected = 10 * math.log10((10 ** 6 + 10 ** 7) / 2)
    with db.connection() as conn:
        reading_store.copy_readings(conn, rows)
        conn.commit()
        leq = conn.execute("SELECT noise_dba_leq FROM readings_10min WHERE device_id = 'NM-001'"
                           ).fetchone()[0]
        assert leq == pytest.approx(expected, abs=1e-6)
        for width in (timedelta(minutes=10), timedelta(minutes=20)):  # view, and computed
            found = rule_queries.exceeding_windows(
                conn, device_kind="noise", metric="noise_dba", aggregate="leq", width=width,
                op=">", value=67.0, offset_prop=None, min_samples=2, start=t0,
                end=t0 + timedelta(hours=1))
            assert [round(w.value, 6) for w in found] == [round(expected, 6)]


RULE = {"id": "noise.test", "kind": "threshold", "title": "t", "subject_type": "site",
        "device_kind": "noise", "metric": "noise_dba", "aggregate": "leq",
        "window": "20 minutes", "value": 55}


@pytest.mark.parametrize("change, says", [
    ({}, None),
    ({"device_kind": "sound"}, "rules[0].device_kind: Input should be 'fume', 'dust' or 'noise'"),
    ({"metric": "pm10_ug_m3"}, "rules[0].metric: noise readings have no field 'pm10_ug_m3'"),
    ({"evidence": {"series": ["decibels"]}}, "rules[0].evidence.series[0]: unknown reading field"),
])
def test_rule_schema_knows_the_declared_kinds_and_fields(change, says):
    doc = {"rules": [RULE | change]}
    if says is None:
        assert parse([("noise.yaml", doc)], "standard").rules[0].device_kind == "noise"
    else:
        with pytest.raises(RuleSetError) as e:
            parse([("noise.yaml", doc)], "standard")
        assert any(says in p for p in e.value.problems), e.value.problems
