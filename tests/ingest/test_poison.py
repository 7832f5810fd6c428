"""Poison messages: whatever a message holds, it ends stored or dead-lettered with a reason,
no thread dies of it, and the messages beside it are stored.

Each poison found by attacking a collector has a name here; the table is checked once
against the pure decoders and once through a real collector over real Mosquitto and
PostgreSQL, between good readings.
"""

from __future__ import annotations

import json
import random
import struct
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from citywatch.config import AppConfig
from domain.sensors import FUME
from ingest import envelope, frames
from ingest.collector import Collector
from ingest.decode import Address, Message, decode_reading, decode_telemetry
from ingest.errors import REASONS, Rejected
from ingest.routes import ROUTES, Route, write_readings
from simulators.sensors import Publisher
from storage import readings as store
from tests.ingest.conftest import wait_until

NOW = datetime.now(UTC).replace(microsecond=0)
TS = int((NOW - timedelta(minutes=5)).timestamp() * 1000)
POSE = {"lat": 30.3, "lon": 120.1, "alt_m": 40.0, "heading_deg": 90.0,
        "gimbal_pitch_deg": -90.0, "hfov_deg": 84.0}
TELE = b'{"ts": %d, "lat": 30.32, "lon": 120.15, "alt_m": 100, "mode": "%s"}'


def jpeg(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), (7, 7), 0)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


GOOD_JPEG = jpeg(640, 480)


def mutated_jpeg() -> bytes:
    """Byte flips in the entropy-coded data that OpenCV still decodes (into grey blocks)
    and a strict decoder refuses: the first such mutation of a fixed seed."""
    rng = random.Random(7)
    while True:
        b = bytearray(GOOD_JPEG)
        for _ in range(4):
            b[rng.randrange(1000, len(b) - 2)] = rng.randrange(256)
        if cv2.imdecode(np.frombuffer(bytes(b), np.uint8), cv2.IMREAD_GRAYSCALE) is not None:
            try:
                frames.simplejpeg.decode_jpeg(bytes(b), colorspace="GRAY", strict=True)
            except ValueError:
                return bytes(b)


def thin_jpeg(height: int) -> bytes:
    """A 1-pixel-wide grey JPEG: a few hundred bytes, tiny in pixels, huge once scaled.
    Encoders stop at 65,500 rows; taller ones are made by rewriting the frame header
    (SOF0), as an attacker would."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((min(height, 65500), 1), np.uint8))[1])
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">H", data, sof + 5, height)
    return bytes(data)


def frame(header: dict | bytes, image: bytes = GOOD_JPEG) -> bytes:
    if isinstance(header, bytes):
        return struct.pack(">I", len(header)) + header + image
    return envelope.encode({"ts": NOW.isoformat()} | POSE | header, image)


def header(extra: bytes) -> bytes:
    """A frame header with the pose and one crafted field spliced in as raw JSON text."""
    base = json.dumps({"ts": NOW.isoformat()} | POSE).encode()
    return base[:-1] + b', ' + extra + b'}'


# (name, topic kind, payload, reason): the poisons of the hardening report, by name.
POISONS = [
    ("frame_header_30000_nested_brackets", "drone_frame",
     frame(header(b'"x": ' + b"[" * 30000 + b"]" * 30000)), "bad_envelope"),
    ("frame_header_5000_digit_integer", "drone_frame",
     frame(header(b'"n": 1' + b"0" * 5000)), "bad_envelope"),
    ("frame_header_nan", "drone_frame", frame(header(b'"gain": NaN')), "not_finite"),
    ("frame_header_nul_character", "drone_frame", frame({"note": "a\x00b"}), "bad_envelope"),
    ("frame_mission_id_lone_surrogate_escaped", "drone_frame",
     frame(header(b'"mission_id": "M-\\ud800"')), "bad_envelope"),
    ("frame_mission_id_lone_surrogate_raw", "drone_frame",
     frame(header(b'"mission_id": "M-\xed\xa0\x80"')), "bad_envelope"),
    ("telemetry_mode_lone_surrogate_escaped", "telemetry", TELE % (TS, b"\\udc00"), "not_json"),
    ("telemetry_mode_lone_surrogate_raw", "telemetry", TELE % (TS, b"\xed\xb0\x80"), "not_json"),
    ("telemetry_5000_digit_integer", "telemetry",
     b'{"ts": %d, "lat": 1%s, "lon": 1, "alt_m": 1}' % (TS, b"0" * 5000), "not_json"),
    ("fume_nested_40_deep", "fume",
     b'{"ts": %d, "x": %s1%s}' % (TS, b"[" * 40, b"]" * 40), "not_json"),
    ("jpeg_1x1000", "cone_frame", frame({}, thin_jpeg(1000)), "bad_dimensions"),
    ("jpeg_1x4000", "cone_frame", frame({}, thin_jpeg(4000)), "bad_dimensions"),
    ("jpeg_1x65500", "cone_frame", frame({}, thin_jpeg(65500)), "bad_dimensions"),
    # libjpeg's own limit is 65,500 rows: the header reader refuses it outright
    ("jpeg_1x65535", "cone_frame", frame({}, thin_jpeg(65535)), "not_jpeg"),
    ("jpeg_byte_mutated", "cone_frame", frame({}, mutated_jpeg()), "not_jpeg"),
    ("ts_iso_week_date", "fume",
     b'{"ts": "2026-W48-5T03:59:00Z", "fume_mg_m3": 1, "fan_on": true, "purifier_on": true}',
     "bad_timestamp"),
    ("ts_iso_basic_format", "fume",
     b'{"ts": "20261126T035900Z", "fume_mg_m3": 1, "fan_on": true, "purifier_on": true}',
     "bad_timestamp"),
    ("ts_ordinal_date", "fume",
     b'{"ts": "2026-330T03:59:00+08:00", "fume_mg_m3": 1, "fan_on": true, "purifier_on": true}',
     "bad_timestamp"),
    ("ts_without_seconds", "fume",
     b'{"ts": "2026-11-26T03:59+08:00", "fume_mg_m3": 1, "fan_on": true, "purifier_on": true}',
     "bad_timestamp"),
]
DEVICE = {"drone_frame": "UAV-01", "cone_frame": "CC-001-1", "telemetry": "UAV-02",
          "fume": "FM-00007"}
TOPIC = {"drone_frame": "drone/{}/frame", "cone_frame": "cone/{}/frame",
         "telemetry": "drone/{}/telemetry", "fume": "fume/{}"}


def decode(kind: str, payload: bytes, config: AppConfig):
    msg = Message(f"x/{kind}", payload, NOW, Address(kind, DEVICE[kind]))
    if kind.endswith("frame"):
        return frames.decode_frame(msg, config.for_ingest())
    if kind == "fume":
        return decode_reading(FUME, msg, config.ingest)
    return decode_telemetry(msg, config.ingest)


@pytest.mark.parametrize("name, kind, payload, reason", POISONS, ids=[p[0] for p in POISONS])
def test_each_poison_is_refused_with_its_reason(name, kind, payload, reason):
    from citywatch import config as config_mod

    assert reason in REASONS
    started = time.process_time()
    with pytest.raises(Rejected) as e:
        decode(kind, payload, config_mod.load(env={}))
    assert e.value.reason == reason, e.value.detail
    # Refused from the header, not after a decode of billions of pixels (generous bound).
    assert time.process_time() - started < 2.0


def test_rfc3339_forms_still_accepted():
    from citywatch import config as config_mod

    cfg = config_mod.load(env={})
    for ts in ("2026-11-26T03:59:00Z", "2026-11-26t03:59:00z", "2026-11-26 11:59:00+08:00",
               "2026-11-26T03:29:00.123456789-00:30"):
        payload = b'{"ts": "%s", "fume_mg_m3": 1, "fan_on": true, "purifier_on": true}' % \
            ts.encode()
        msg = Message("x", payload, datetime(2026, 11, 26, 4, 0, tzinfo=UTC),
                      Address("fume", "FM-1"))
        assert decode_reading(FUME, msg, cfg.ingest).ts.tzinfo is not None


def good_reading(i: int) -> tuple[str, bytes]:
    return (f"fume/FM-{1 + i % 50:05d}", json.dumps({
        "ts": TS - i * 1000, "fume_mg_m3": round(0.5 + i % 7 / 10, 2), "fan_on": True,
        "purifier_on": True}).encode())


def publish_all(cfg: AppConfig, messages: list[tuple[str, bytes]]) -> None:
    with Publisher(cfg.mqtt.url, cfg.mqtt.topic_prefix) as pub:
        for suffix, payload in messages:
            pub.send(suffix, payload)
        assert pub.wait_acked(len(messages), 60)


def test_poisons_between_good_readings_stall_nothing(ingest_config, db, collectors):
    """Every poison, each between good readings, through a real collector: each poison is
    kept byte for byte with its reason, every good reading is stored, every message is
    acknowledged, and the collector keeps taking messages afterwards."""
    ingest_config.ingest.batch_interval_s = 0.5  # poisons share batches with good readings
    collector = collectors(ingest_config, db)
    sent, good = [], []
    for i, (_, kind, payload, _) in enumerate(POISONS):
        for j in range(3):
            good.append(good_reading(10 * i + j))
            sent.append(good[-1])
        sent.append((TOPIC[kind].format(DEVICE[kind]), payload))
    publish_all(ingest_config, sent)
    assert wait_until(lambda: collector.stats().acked == len(sent), 60), collector.stats()
    with db.connection() as conn:
        letters = store.dead_letters(conn)
        assert store.count_rows(conn, "readings") == len(good)
    kept = sorted((d.reason, d.payload) for d in letters)
    assert kept == sorted((reason, payload) for _, _, payload, reason in POISONS)
    stats = collector.stats()
    assert stats.failure is None and not collector.failed.is_set()
    later = [good_reading(1000 + i) for i in range(50)]
    publish_all(ingest_config, later)
    assert wait_until(lambda: collector.stats().stored == len(good) + 50, 30)


def test_unwritable_evidence_directory_dead_letters_frames_not_readings(ingest_config, db,
                                                                         collectors):
    """The evidence directory is a file (as a failed mount or a mistake leaves it): frames
    cannot be stored, so each is kept whole (image included) as `evidence_unwritable`; the
    readings around them are stored, and nothing is left unacknowledged."""
    ingest_config.data_path.mkdir(parents=True, exist_ok=True)
    ingest_config.evidence_dir.write_text("not a directory")
    collector = collectors(ingest_config, db)
    sent = [good_reading(0), ("cone/CC-001-1/frame", frame({})), good_reading(1),
            ("drone/UAV-01/frame", frame({}, jpeg(640, 480, seed=1))), good_reading(2)]
    publish_all(ingest_config, sent)
    assert wait_until(lambda: collector.stats().acked == len(sent), 30), collector.stats()
    with db.connection() as conn:
        letters = store.dead_letters(conn)
        assert store.count_rows(conn, "readings") == 3
        assert conn.execute("SELECT count(*) FROM frames").fetchone()[0] == 0
    assert [(d.reason, d.payload) for d in letters] == \
        [("evidence_unwritable", sent[1][1]), ("evidence_unwritable", sent[3][1])]
    assert "NotADirectoryError" in letters[0].detail


def test_a_frame_the_database_refuses_leaves_no_evidence_file(ingest_config, db, collectors):
    """A frame row the database refuses (here a source kind its CHECK constraint forbids)
    is dead-lettered as storage_rejected and leaves no orphan file; its neighbour is stored
    with its file."""
    def bogus(msg, cfg):
        got = frames.decode_frame(msg, cfg)
        if msg.address.device_id == "CC-001-2":
            return replace(got, frame=replace(got.frame, source_kind="bogus"))
        return got

    routes = dict(ROUTES, cone_frame=Route("cone_frame", "cone_camera", bogus,
                                           frames.write_frames))
    ingest_config.ingest.batch_interval_s = 0.5
    collector = collectors(ingest_config, db, routes=routes)
    refused, kept = jpeg(640, 480, seed=5), jpeg(640, 480, seed=6)
    publish_all(ingest_config, [("cone/CC-001-2/frame", frame({}, refused)),
                                ("cone/CC-001-1/frame", frame({}, kept))])
    assert wait_until(lambda: collector.stats().acked == 2, 30)
    with db.connection() as conn:
        assert [d.reason for d in store.dead_letters(conn)] == ["storage_rejected"]
    files = {p.name.split(".")[0] for p in ingest_config.evidence_dir.rglob("*.jpg")}
    from storage.evidence import sha256_of

    assert files == {sha256_of(kept)}


def test_one_refused_row_is_found_by_halving_not_one_by_one(ingest_config, db, collectors):
    """One row the database refuses in a batch of 256 readings costs the batch once more
    under savepoints plus 2·log2(256) halves (it cost 256 commits), and only that row is
    dead-lettered."""
    calls = []

    def picky_write(conn, items):
        calls.append(len(items))
        if any(a.record.fume_mg_m3 == 13.13 for a in items):
            conn.execute("SELECT 1 / 0")
        return write_readings(conn, items)

    routes = dict(ROUTES, fume=Route("fume", "fume", ROUTES["fume"].decode, picky_write))
    ingest_config.ingest.batch_interval_s = 2.0
    ingest_config.ingest.batch_size = 256
    ingest_config.ingest.writers = 1
    collector = collectors(ingest_config, db, routes=routes)
    sent = [good_reading(i) for i in range(256)]
    doc = json.loads(sent[100][1])
    sent[100] = (sent[100][0], json.dumps(doc | {"fume_mg_m3": 13.13}).encode())
    publish_all(ingest_config, sent)
    assert wait_until(lambda: collector.stats().acked == 256, 30)
    with db.connection() as conn:
        assert [(d.reason, d.payload) for d in store.dead_letters(conn)] == \
            [("storage_rejected", sent[100][1])]
        assert store.count_rows(conn, "readings") == 255
    assert calls[:2] == [256, 256] and len(calls) <= 2 + 2 * 8, calls


def test_a_writer_that_dies_stops_the_collector_loudly(ingest_config, db, private_broker):
    """A writer thread that fails outside any one message's handling (here an observer that
    raises) marks the collector failed with the reason, acknowledges nothing more, and
    stop() returns promptly instead of waiting on the dead thread's turn. What it had not
    acknowledged stays with the broker: a new collector stores all of it."""
    cfg = private_broker.apply(ingest_config)
    boom = threading.Event()

    def observer(committed):
        if boom.is_set():
            raise RuntimeError("observer failed")

    first = Collector(cfg.for_ingest(), db, on_commit=observer).start()
    try:
        publish_all(cfg, [good_reading(i) for i in range(100)])
        assert wait_until(lambda: first.stats().acked == 100, 30)
        boom.set()
        publish_all(cfg, [good_reading(100 + i) for i in range(400)])
        assert first.failed.wait(30)
        assert "observer failed" in first.stats().failure
    finally:
        started = time.monotonic()
        first.stop(5)
        assert time.monotonic() - started < 15
    second = Collector(cfg.for_ingest(), db).start()
    try:
        with db.connection() as conn:
            assert wait_until(lambda: store.count_rows(conn, "readings") == 500, 30)
            conn.commit()
    finally:
        second.stop(5)
