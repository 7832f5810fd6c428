"""A seeded fuzz round against a real collector, published as fast as the broker takes
them (faster than one collector stores them): 10,000+ generated messages (valid
readings, exact repeats, changed repeats, byte flips, truncations, poison values spliced
into fields, random bytes, wrong topics and devices, mutated frames). The accounting must
close: every message published is stored, dead-lettered or counted as an identical
repeat; every one is acknowledged; the collector is still alive and connected."""

from __future__ import annotations

import json
import random
import struct
import time
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np

from ingest import envelope
from simulators.sensors import Publisher
from storage import readings as store
from tests.ingest.conftest import wait_until

SEED = 20261127
COUNT = 10_400
NOW = datetime.now(UTC).replace(microsecond=0)
POISON_VALUES = [
    b"NaN", b"Infinity", b"1e400", b"-1e400", b"1" + b"0" * 5000, b"1" + b"0" * 400,
    b'"\\ud800"', b'"\\udfff x"', b'"\xed\xa0\x80"', b"[" * 60 + b"]" * 60,
    b"{" + b'"a":{' * 40 + b"}" * 41, b'"x"', b"true", b"null", b"{}", b"[]", b"-1", b"0",
    b'"2026-W48-5T03:59:00Z"', b'"20261126T035900Z"', b'"2026-11-26T03:59:00"',
    b"18446744073709551616", b"-9223372036854775809", b'"\\u0000"', b"1.7e12",
    b"99999999999999999999", b'"' + b"A" * 100 + b'"',
]
TOPICS_BAD = ["fume/FM-99999", "fume/DM-001", "dust/FM-00001", "smoke/FM-00001",
              "fume/FM-00001/extra", "drone/FM-00001/telemetry", "drone/UAV-01/video",
              "cone/UAV-01/frame", "drone/UAV-03"]


def _small_jpeg(rng: random.Random) -> bytes:
    img = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 255, (120, 160), np.uint8)
    return cv2.imencode(".jpg", cv2.GaussianBlur(img, (5, 5), 0))[1].tobytes()


class Generator:
    """Messages (topic suffix, payload) from one seed: the same seed, the same bytes."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.valid: list[tuple[str, bytes]] = []
        self.n = 0
        self.jpegs = [_small_jpeg(self.rng) for _ in range(8)]

    def _ts(self) -> int:
        self.n += 1
        return int((NOW - timedelta(hours=2)).timestamp() * 1000) + self.n * 10

    def _doc(self) -> tuple[str, dict]:
        r = self.rng
        kind = r.choice(("fume", "fume", "dust", "telemetry"))
        if kind == "fume":
            return f"fume/FM-{r.randint(1, 1589):05d}", {
                "ts": self._ts(), "fume_mg_m3": round(r.uniform(0, 5), 3),
                "fan_on": r.random() < 0.8, "purifier_on": r.random() < 0.7}
        if kind == "dust":
            return f"dust/DM-{r.randint(1, 60):03d}", {
                "ts": self._ts(), "pm10_ug_m3": round(r.uniform(0, 400), 1),
                "pm25_ug_m3": round(r.uniform(0, 200), 1), "wind_ms": round(r.uniform(0, 9), 1)}
        return f"drone/UAV-{r.randint(1, 20):02d}/telemetry", {
            "ts": self._ts(), "lat": 30.3 + r.random() / 10, "lon": 120.1 + r.random() / 10,
            "alt_m": round(r.uniform(20, 120), 1), "mode": r.choice(("AUTO", "GUIDED", "RTL")),
            "armed": True}

    def _frame(self) -> tuple[str, bytes]:
        r = self.rng
        header = {"ts": (NOW - timedelta(minutes=r.randint(1, 600))).isoformat()}
        if r.random() < 0.5:
            topic = f"cone/CC-{r.randint(1, 20):03d}-1/frame"
        else:
            topic = f"drone/UAV-{r.randint(1, 20):02d}/frame"
            header |= {"lat": 30.3, "lon": 120.1, "alt_m": 40.0, "heading_deg": 90.0,
                       "gimbal_pitch_deg": -90.0, "hfov_deg": 84.0}
        payload = bytearray(envelope.encode(header, r.choice(self.jpegs)))
        how = r.randrange(4)
        if how == 0:  # header length
            struct.pack_into(">I", payload, 0, r.choice((0, 1, 70000, len(payload), 0xFFFFFFFF)))
        elif how == 1:  # flips in the header or the image
            for _ in range(r.randint(1, 6)):
                payload[r.randrange(4, len(payload))] = r.randrange(256)
        elif how == 2:  # truncated
            del payload[r.randrange(4, len(payload)):]
        return topic, bytes(payload)

    def _splice(self, doc: dict) -> bytes:
        key = self.rng.choice(list(doc))
        marker = "\x01SPLICE\x01"
        text = json.dumps(doc | {key: marker}).encode()
        return text.replace(json.dumps(marker).encode(), self.rng.choice(POISON_VALUES))

    def message(self) -> tuple[str, bytes]:
        r = self.rng
        roll = r.random()
        if roll < 0.40 or not self.valid:
            topic, doc = self._doc()
            msg = (topic, json.dumps(doc).encode())
            self.valid.append(msg)
            return msg
        if roll < 0.50:  # an identical repeat
            return r.choice(self.valid)
        if roll < 0.54:  # a changed repeat of a stored key
            topic, payload = r.choice(self.valid)
            doc = json.loads(payload)
            field = next(k for k in doc if k not in ("ts", "mode", "armed", "fan_on",
                                                      "purifier_on"))
            return topic, json.dumps(doc | {field: doc[field] + 0.5}).encode()
        if roll < 0.56:
            return self._frame()
        topic, doc = self._doc()
        if roll < 0.62:
            return r.choice(TOPICS_BAD), json.dumps(doc).encode()
        if roll < 0.76:
            return topic, self._splice(doc)
        payload = bytearray(json.dumps(doc).encode())
        if roll < 0.86:
            for _ in range(r.randint(1, 4)):
                payload[r.randrange(len(payload))] = r.randrange(256)
        elif roll < 0.93:
            del payload[r.randrange(len(payload)):]
        elif roll < 0.99:
            payload = bytearray(r.randbytes(r.randint(0, 200)))
        else:
            payload = bytearray(b'{"pad": "' + b"x" * 70_000 + b'"}')
        return topic, bytes(payload)


def test_generator_is_seeded():
    a, b = Generator(1), Generator(1)
    assert [a.message() for _ in range(300)] == [b.message() for _ in range(300)]


def test_fuzzed_stream_is_fully_accounted_for(ingest_config, db, private_broker, collectors):
    cfg = private_broker.apply(ingest_config)
    gen = Generator(SEED)
    messages = [gen.message() for _ in range(COUNT)]
    collector = collectors(cfg, db)
    with Publisher(cfg.mqtt.url, cfg.mqtt.topic_prefix) as pub:
        for suffix, payload in messages:
            pub.send(suffix, payload)
        assert pub.wait_acked(COUNT, 120)
    assert wait_until(lambda: collector.stats().acked == COUNT and collector.wait_idle(1), 120), \
        collector.stats()
    s = collector.stats()
    assert s.failure is None and s.connected and not collector.failed.is_set()
    assert s.received == COUNT
    assert s.stored + s.dead_lettered + s.duplicates == COUNT
    with db.connection() as conn:
        rows = sum(store.count_rows(conn, t) for t in ("readings", "telemetry"))
        rows += conn.execute("SELECT count(*) FROM frames").fetchone()[0]
        letters = store.dead_letter_counts(conn)
    assert rows == s.stored
    assert letters == s.dead_letters
    # the stream really did hold every kind of trouble
    assert {"not_json", "bad_type", "unknown_topic", "unknown_device", "wrong_device_kind",
            "conflicting_duplicate", "bad_envelope", "payload_too_large",
            "bad_timestamp"} <= set(letters)
    assert s.duplicates >= 0.05 * COUNT
    # every acknowledgement reached the broker: the session holds nothing for a successor
    collector.stop(5)
    successor = collectors(cfg, db)
    time.sleep(2.0)
    assert successor.stats().received == 0
    # and nothing got past the decoders to fail later, or failed them unforeseen
    assert "internal_error" not in letters and "storage_rejected" not in letters, letters
