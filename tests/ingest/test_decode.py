"""Decoders are pure: every reason code from a payload, no broker, no database."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from domain.sensors import SENSOR_KINDS
from ingest import envelope
from ingest.config import IngestConfig
from ingest.decode import (
    Address,
    Message,
    decode_reading,
    decode_status,
    decode_telemetry,
    parse_topic,
    topic_for,
)
from ingest.errors import REASONS, Rejected

NOW = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
CFG = IngestConfig()
TS = int(NOW.timestamp() * 1000) - 60_000
FUME = {"ts": TS, "fume_mg_m3": 0.8, "fan_on": True, "purifier_on": True}
DUST = {"ts": TS, "pm10_ug_m3": 80.5, "pm25_ug_m3": 41.0}
TELE = {"ts": TS, "lat": 30.32, "lon": 120.15, "alt_m": 100, "heading_deg": 90,
        "battery_pct": 80, "mode": "AUTO", "armed": True}
def decode_fume(m, cfg):
    return decode_reading(SENSOR_KINDS["fume"], m, cfg)


def decode_dust(m, cfg):
    return decode_reading(SENSOR_KINDS["dust"], m, cfg)


DECODERS = {"fume": decode_fume, "dust": decode_dust, "telemetry": decode_telemetry}


def msg(kind: str, payload, device: str = "D-1") -> Message:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Message(f"p/{kind}/{device}", raw, NOW, Address(kind, device))


def raw(doc) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize("prefix, topic, kind, device", [
    ("citywatch/v1", "citywatch/v1/fume/FM-00001", "fume", "FM-00001"),
    ("citywatch/v1", "citywatch/v1/dust/DM-001", "dust", "DM-001"),
    ("citywatch/v1", "citywatch/v1/drone/UAV-01/telemetry", "telemetry", "UAV-01"),
    ("citywatch/v1", "citywatch/v1/drone/UAV-01/frame", "drone_frame", "UAV-01"),
    ("citywatch/v1", "citywatch/v1/cone/CC-001-1/frame", "cone_frame", "CC-001-1"),
    ("citywatch/v1", "citywatch/v1/status/FM-00001", "status", "FM-00001"),
    ("a/b/c/", "a/b/c/fume/X", "fume", "X"),
])
def test_topics_route_to_kinds(prefix, topic, kind, device):
    assert parse_topic(prefix, topic) == Address(kind, device)
    assert topic_for(prefix.rstrip("/"), kind, device) == topic


@pytest.mark.parametrize("topic", [
    "other/v1/fume/FM-1", "citywatch/v1/fume", "citywatch/v1/fume/", "citywatch/v1/fume/FM-1/x",
    "citywatch/v1/drone/UAV-01", "citywatch/v1/drone/UAV-01/video", "citywatch/v1/smoke/X",
    "citywatch/v1", "citywatch/v1x/fume/FM-1",
])
def test_other_topics_are_unknown(topic):
    with pytest.raises(Rejected) as e:
        parse_topic("citywatch/v1", topic)
    assert e.value.reason == "unknown_topic"


@pytest.mark.parametrize("ts, expected", [
    (TS, datetime.fromtimestamp(TS / 1000, UTC)),
    ("2026-11-26T11:59:00+08:00", datetime(2026, 11, 26, 3, 59, tzinfo=UTC)),
    ("2026-11-26T03:59:00Z", datetime(2026, 11, 26, 3, 59, tzinfo=UTC)),
    ("2026-11-26T03:59:00.250+00:00", datetime(2026, 11, 26, 3, 59, 0, 250000, tzinfo=UTC)),
    (int((NOW + timedelta(seconds=299)).timestamp() * 1000), NOW + timedelta(seconds=299)),
])
def test_timestamps_in_both_forms(ts, expected):
    r = decode_fume(msg("fume", FUME | {"ts": ts}), CFG)
    assert r.ts == expected and r.received_at == NOW


def test_valid_messages_become_records():
    f = decode_fume(msg("fume", FUME), CFG)
    assert (f.device_id, f.fume_mg_m3, f.fan_on, f.purifier_on, f.pm10_ug_m3) == \
        ("D-1", 0.8, True, True, None)
    d = decode_dust(msg("dust", DUST | {"wind_ms": 2, "noise_dba": 61.5}), CFG)
    assert (d.pm10_ug_m3, d.pm25_ug_m3, d.wind_ms, d.noise_dba, d.tsp_ug_m3) == \
        (80.5, 41.0, 2.0, 61.5, None)
    t = decode_telemetry(msg("telemetry", TELE), CFG)
    assert (t.drone_id, t.lat, t.lon, t.alt_m, t.mode, t.armed) == \
        ("D-1", 30.32, 120.15, 100.0, "AUTO", True)
    s = decode_status(msg("status", b"offline"), CFG)
    assert (s.device_id, s.status, s.changed_at) == ("D-1", "offline", NOW)


CASES = [
    # kind, payload, reason
    ("fume", b"{not json", "not_json"),
    ("fume", b"\xff\xfe", "not_json"),
    ("fume", b"", "not_json"),
    ("fume", b'{"ts": 1' + b"0" * 5000 + b"}", "not_json"),
    ("dust", b"[1, 2]", "not_object"),
    ("dust", b'"text"', "not_object"),
    ("fume", raw({k: v for k, v in FUME.items() if k != "fan_on"}), "missing_field"),
    ("fume", raw(FUME | {"fume_mg_m3": None}), "missing_field"),
    ("dust", raw({"pm10_ug_m3": 3, "pm25_ug_m3": 1}), "missing_field"),
    ("telemetry", raw({k: v for k, v in TELE.items() if k != "lat"}), "missing_field"),
    ("fume", raw(FUME | {"fume_mg_m3": "0.8"}), "bad_type"),
    ("fume", raw(FUME | {"fume_mg_m3": True}), "bad_type"),
    ("fume", raw(FUME | {"fan_on": 1}), "bad_type"),
    ("dust", raw(DUST | {"pm10_ug_m3": [1]}), "bad_type"),
    ("telemetry", raw(TELE | {"mode": 3}), "bad_type"),
    ("fume", b'{"ts": %d, "fume_mg_m3": NaN, "fan_on": true, "purifier_on": true}' % TS,
     "not_finite"),
    ("dust", b'{"ts": %d, "pm10_ug_m3": Infinity, "pm25_ug_m3": 1}' % TS, "not_finite"),
    ("dust", b'{"ts": %d, "pm10_ug_m3": 1e400, "pm25_ug_m3": 1}' % TS, "not_finite"),
    ("fume", raw(FUME | {"fume_mg_m3": -0.1}), "negative"),
    ("dust", raw(DUST | {"pm25_ug_m3": -1}), "negative"),
    ("dust", raw(DUST | {"wind_ms": -2}), "negative"),
    ("fume", raw(FUME | {"fume_mg_m3": 200.5}), "out_of_range"),
    ("dust", raw(DUST | {"pm10_ug_m3": 20001}), "out_of_range"),
    ("dust", b'{"ts": %d, "pm10_ug_m3": 1%s, "pm25_ug_m3": 1}' % (TS, b"0" * 400), "out_of_range"),
    ("telemetry", raw(TELE | {"lat": 91}), "out_of_range"),
    ("telemetry", raw(TELE | {"alt_m": 5000}), "out_of_range"),
    ("telemetry", raw(TELE | {"mode": "A" * 65}), "out_of_range"),
    ("status", b"maybe", "out_of_range"),
    ("fume", raw(FUME | {"ts": "yesterday"}), "bad_timestamp"),
    ("fume", raw(FUME | {"ts": "2026-11-26T03:59:00"}), "bad_timestamp"),
    ("fume", raw(FUME | {"ts": 1.7e12}), "bad_timestamp"),
    ("fume", raw(FUME | {"ts": True}), "bad_timestamp"),
    ("fume", raw(FUME | {"ts": 10**20}), "bad_timestamp"),
    ("fume", raw(FUME | {"ts": int((NOW + timedelta(seconds=301)).timestamp() * 1000)}),
     "future_timestamp"),
    ("fume", raw(FUME | {"ts": "2100-01-01T00:00:00+08:00"}), "future_timestamp"),
    ("fume", raw(FUME | {"ts": int((NOW - timedelta(days=401)).timestamp() * 1000)}), "too_old"),
    ("fume", raw(FUME | {"pad": "x" * 70000}), "payload_too_large"),
    ("status", b"online" * 20, "payload_too_large"),
]


@pytest.mark.parametrize("kind, payload, reason", CASES)
def test_bad_payloads_are_rejected_with_their_reason(kind, payload, reason):
    decoder = decode_status if kind == "status" else DECODERS[kind]
    with pytest.raises(Rejected) as e:
        decoder(msg(kind, payload), CFG)
    assert e.value.reason == reason
    assert e.value.reason in REASONS


def test_limits_come_from_configuration():
    strict = IngestConfig(plausible_max={"fume_mg_m3": 1.0}, max_future_s=0, retention_days=1)
    with pytest.raises(Rejected, match="out_of_range"):
        decode_fume(msg("fume", FUME | {"fume_mg_m3": 1.5}), strict)
    with pytest.raises(Rejected, match="too_old"):
        decode_fume(msg("fume", FUME | {"ts": TS - 2 * 86_400_000}), strict)


def test_an_unknown_reason_code_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown reason"):
        Rejected("it_broke")


@pytest.mark.parametrize("header, image", [
    ({"ts": TS}, b"\xff\xd8\xff\xe0jpeg"),
    ({"ts": "2026-11-26T03:59:00Z", "lat": 30.3, "lon": 120.1, "note": "拱墅"}, b""),
])
def test_envelope_round_trip(header, image):
    e = envelope.decode(envelope.encode(header, image))
    assert e.header == header and e.image == image


@pytest.mark.parametrize("payload, says", [
    (b"", "no header length"),
    (b"\x00\x00", "no header length"),
    (b"\x00\x00\x00\x00{}", "outside"),
    (b"\x00\x01\x00\x01{}", "outside"),
    (b"\x00\x00\x00\x10{}", "runs past"),
    (b"\x00\x00\x00\x02{x", "not UTF-8 JSON"),
    (b"\x00\x00\x00\x02[]", "JSON object"),
])
def test_bad_envelopes_are_rejected(payload, says):
    with pytest.raises(Rejected) as e:
        envelope.decode(payload)
    assert e.value.reason == "bad_envelope" and says in e.value.detail
