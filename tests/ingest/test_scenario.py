"""Scenario generation is pure and deterministic; every message carries its expected outcome."""

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from domain.sensors import SENSOR_KINDS
from ingest.config import IngestConfig
from ingest.decode import Address, Message, decode_reading, parse_topic
from ingest.errors import REASONS, Rejected
from simulators.scenario import BAD_KINDS, RULE_IDS, ScenarioError, in_hours, load

DAY = date(2026, 11, 26)


@pytest.fixture(scope="module")
def demo():
    return load("demo-day", day=DAY)


@pytest.fixture(scope="module")
def demo_messages(demo):
    return list(demo.messages())


@pytest.fixture(scope="module")
def demo_readings(demo_messages):
    return [m.record for m in demo_messages if m.expected == "valid" and m.record is not None
            and not hasattr(m.record, "drone_id")]


def test_same_seed_same_bytes_other_seed_other_bytes(demo, demo_messages):
    again = list(load("demo-day", day=DAY).messages())
    assert [(m.topic_suffix, m.payload) for m in again] == \
        [(m.topic_suffix, m.payload) for m in demo_messages]
    other = load("demo-day", day=DAY)
    other.spec = other.spec.model_copy(update={"seed": 7})
    first = [m.payload for _, m in zip(range(500), other.messages(), strict=False)]
    assert first != [m.payload for m in demo_messages][:500]


def test_demo_day_size_order_and_every_bad_kind(demo, demo_messages):
    counts = Counter(m.expected for m in demo_messages)
    assert set(BAD_KINDS) <= set(counts)
    assert all(k in REASONS for k in BAD_KINDS if k != "duplicate")
    # 50 fume + 10 dust monitors a minute for a day, less 180 silent minutes, plus a flight
    assert counts["valid"] == 60 * 1440 - 180 + 30 * 60 // 5
    ats = [m.at for m in demo_messages]
    assert ats == sorted(ats) and demo.start <= ats[0] and ats[-1] < demo.end


def test_expected_cases_name_known_rules_at_injection_start(demo):
    cases = demo.expected_cases
    assert {c.rule_id for c in cases} <= set(RULE_IDS)
    tz8 = datetime(2026, 11, 26, 18, 30, tzinfo=UTC) - timedelta(hours=8)
    assert ("fume.exceedance", "M-00012", tz8) in {(c.rule_id, c.subject_id, c.episode_start)
                                                   for c in cases}


def _decode(m):
    topic = "p/" + m.topic_suffix
    address = parse_topic("p", topic)
    received = m.at + timedelta(seconds=1)
    return decode_reading(SENSOR_KINDS[address.kind], Message(topic, m.payload, received, address),
                          IngestConfig())


def test_payload_rejections_match_expected_outcomes(demo_messages):
    """Bad messages that a decoder alone can judge get exactly their expected reason."""
    payload_kinds = {"not_json", "not_object", "missing_field", "bad_type", "not_finite",
                     "negative", "out_of_range", "bad_timestamp", "future_timestamp", "too_old",
                     "payload_too_large"}
    seen = set()
    for m in demo_messages:
        if m.expected in payload_kinds:
            with pytest.raises(Rejected) as e:
                _decode(m)
            assert e.value.reason == m.expected
            seen.add(m.expected)
    assert seen == payload_kinds


def test_valid_messages_decode_to_their_records(demo_messages):
    readings = [m for m in demo_messages if m.expected == "valid" and "telemetry" not in m.topic_suffix]
    for m in readings[:: len(readings) // 500]:
        r = _decode(m)
        assert (r.device_id, r.ts, r.fume_mg_m3, r.pm10_ug_m3, r.fan_on) == (
            m.record.device_id, m.record.ts, m.record.fume_mg_m3, m.record.pm10_ug_m3,
            m.record.fan_on)


@pytest.mark.parametrize("device, local_from, minutes, check", [
    # fume above 3.2 mg/m3 during the injected 50 minutes, normal before
    ("FM-00012", "18:30", 50, lambda r: r.fume_mg_m3 > 3.0 and r.fan_on),
    ("FM-00012", "18:00", 30, lambda r: r.fume_mg_m3 < 1.0),
    # purifier off while the fan runs
    ("FM-00021", "11:30", 30, lambda r: r.fan_on and not r.purifier_on),
    ("FM-00021", "12:00", 30, lambda r: r.fan_on and r.purifier_on),
    # PM10 above 200 for two hours
    ("DM-005", "09:00", 120, lambda r: r.pm10_ug_m3 > 200),
    ("DM-005", "11:00", 60, lambda r: r.pm10_ug_m3 < 100),
])
def test_violations_shape_the_readings(demo, demo_readings, device, local_from, minutes, check):
    begin = demo.local(local_from)
    window = [r for r in demo_readings if r.device_id == device
              and begin <= r.ts < begin + timedelta(minutes=minutes)]
    assert len(window) == minutes
    assert all(check(r) for r in window)


def test_a_silent_monitor_sends_nothing(demo, demo_readings):
    begin = demo.local("17:30")
    ts = [r.ts for r in demo_readings if r.device_id == "FM-00034"]
    assert not [t for t in ts if begin <= t < begin + timedelta(hours=3)]
    assert len(ts) == 1440 - 180


@pytest.mark.parametrize("hours, hhmm, inside", [
    (["10:30-14:00", "16:30-21:00"], "10:30", True),
    (["10:30-14:00", "16:30-21:00"], "14:00", False),
    (["10:30-14:00", "16:30-21:00"], "15:00", False),
    (["22:30-02:00"], "23:59", True),
    (["22:30-02:00"], "01:00", True),
    (["22:30-02:00"], "02:00", False),
])
def test_business_hours(hours, hhmm, inside):
    from datetime import time
    assert in_hours(time.fromisoformat(hhmm), hours) is inside


def test_violations_file_has_one_of_each_sensor_rule():
    sc = load("violations", day=DAY)
    sensor_rules = {r for r in RULE_IDS if r.startswith(("fume.", "dust.", "noise."))}
    assert {c.rule_id for c in sc.expected_cases} == sensor_rules


@pytest.mark.parametrize("text, says", [
    ("name: x\nfleet: {merchants: 2}\nviolations: [{subject: M-00009, kind: silent, "
     "start: '10:00', minutes: 5}]\n", "not in the fleet"),
    ("name: x\nviolations: [{subject: M-00001, kind: pm10_level, value: 1, start: '10:00', "
     "minutes: 5}]\n", "needs a dust monitor at M-00001"),
    ("name: x\nviolations: [{subject: M-00001, kind: fume_level, start: '10:00', "
     "minutes: 5}]\n", "value: required"),
    ("name: x\nviolations: [{subject: M-00001, kind: silent, start: '10:00', minutes: 5, "
     "expect: [fume.too_loud]}]\n", "unknown rule ids"),
    ("name: x\nbad_messages: [{reason: it_broke, at: '10:00'}]\n", "bad_messages/0/reason"),
    ("name: x\nflights: [{drone: UAV-99, start: '10:00'}]\n", "not a registered drone"),
    ("name: x\nday: someday\n", "valid date"),
    ("name: x\ncolour: red\n", "colour"),
])
def test_bad_scenario_files_name_the_problem(tmp_path, text, says):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=says):
        load(path)


def test_address_of_every_message_is_a_contract_topic(demo_messages):
    kinds = Counter()
    for m in demo_messages:
        if m.expected == "unknown_topic":
            continue
        kinds[parse_topic("p", "p/" + m.topic_suffix).kind] += 1
    assert set(kinds) == {"fume", "dust", "telemetry"}
    assert Address  # the collector routes on these kinds
