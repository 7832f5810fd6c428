"""The collector against real Mosquitto and real PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from ingest.probe import unacked_window
from simulators.scenario import load
from simulators.sensors import Publisher, publish
from storage import readings as store
from tests.ingest.conftest import DAY, wait_until


def stored_rows(db) -> set[tuple]:
    with db.connection() as conn:
        return {(r.device_id, r.ts, r.fume_mg_m3, r.fan_on, r.purifier_on, r.pm10_ug_m3,
                 r.pm25_ug_m3, r.noise_dba, r.wind_ms)
                for d in {d for (d,) in conn.execute("SELECT DISTINCT device_id FROM readings")}
                for r in store.readings_for(conn, d)}


def expected_rows(messages) -> set[tuple]:
    return {(r.device_id, r.ts, r.fume_mg_m3, r.fan_on, r.purifier_on, r.pm10_ug_m3,
             r.pm25_ug_m3, r.noise_dba, r.wind_ms) for r in (m.record for m in messages)}


def count(db, table="readings") -> int:
    with db.connection() as conn:
        return store.count_rows(conn, table)


@pytest.mark.parametrize("writers", [1, 2])
def test_every_valid_reading_arrives_exactly_once(ingest_config, db, private_broker, collectors,
                                                  violations_messages, writers):
    """5,000 readings published twice (a device re-sending, a broker redelivering) are stored
    once each, with exactly the values sent; the repeats are counted, not dead-lettered."""
    ingest_config.ingest.writers = writers
    cfg = private_broker.apply(ingest_config)
    valid = [m for m in violations_messages if m.expected == "valid"][:5000]
    collector = collectors(cfg, db)
    publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, valid)
    publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, valid)
    assert wait_until(lambda: collector.stats().received == 10000 and collector.wait_idle(1))
    assert stored_rows(db) == expected_rows(valid)
    stats = collector.stats()
    assert (stats.stored, stats.duplicates, stats.dead_lettered) == (5000, 5000, 0)
    assert stats.acked == 10000
    with db.connection() as conn:
        summary = store.reading_summary(conn)
    assert summary.count == 5000
    assert summary.fume_sum == pytest.approx(sum(m.record.fume_mg_m3 or 0 for m in valid))
    assert summary.pm10_sum == pytest.approx(sum(m.record.pm10_ug_m3 or 0 for m in valid))


def test_two_collectors_on_a_shared_subscription_split_the_load(
        ingest_config, db, private_broker, collectors, violations_messages):
    cfg = private_broker.apply(ingest_config)
    valid = [m for m in violations_messages if m.expected == "valid"][:4000]
    a = collectors(cfg, db, client_id=cfg.mqtt.client_id + "-a")
    b = collectors(cfg, db, client_id=cfg.mqtt.client_id + "-b")
    publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, valid)
    assert wait_until(lambda: count(db) == 4000 and a.wait_idle(1) and b.wait_idle(1))
    sa, sb = a.stats(), b.stats()
    assert sa.received + sb.received == 4000  # each message went to one collector only
    assert sa.received > 400 and sb.received > 400
    assert sa.stored + sb.stored == 4000 and sa.duplicates + sb.duplicates == 0
    assert stored_rows(db) == expected_rows(valid)


def test_unsupported_kind_is_dead_lettered_not_dropped(ingest_config, db, collectors,
                                                       violations_messages):
    from ingest.routes import ROUTES

    routes = {k: r for k, r in ROUTES.items() if k != "dust"}
    collector = collectors(ingest_config, db, routes=routes)
    some = [m for m in violations_messages if m.expected == "valid"][:200]
    publish(ingest_config.mqtt.url, ingest_config.mqtt.topic_prefix, some)
    dust = sum(1 for m in some if m.topic_suffix.startswith("dust/"))
    assert dust > 0
    assert wait_until(lambda: collector.stats().received == 200 and collector.wait_idle(1))
    with db.connection() as conn:
        assert store.dead_letter_counts(conn) == {"unsupported": dust}
    assert count(db) == 200 - dust


@pytest.mark.parametrize("protocol, window", [("3.1.1", 20), ("5", 500)])
def test_broker_in_flight_window_3_1_1_vs_5(ingest_config, protocol, window):
    """Why the collector speaks MQTT 5: Mosquitto hands a 3.1.1 subscriber only 20
    unacknowledged QoS 1 messages; an MQTT 5 Receive Maximum of 1000 gets all 500."""
    topic = f"{ingest_config.mqtt.topic_prefix}/probe/{protocol}"
    got = unacked_window(ingest_config.mqtt.url, topic, protocol=protocol, receive_maximum=1000,
                         count=500, settle_s=0.5)
    assert got == window


def test_device_status_and_telemetry_are_stored(ingest_config, db, collectors):
    sc = load("demo-day", day=DAY)
    flight = [m for m in sc.messages() if "telemetry" in m.topic_suffix][:50]
    collector = collectors(ingest_config, db)
    with Publisher(ingest_config.mqtt.url, ingest_config.mqtt.topic_prefix) as pub:
        pub.send("status/FM-00001", b"online")
        pub.send("status/FM-00002", b"offline")
        pub.send("status/FM-99999", b"online")
        pub.publish(flight)
    assert wait_until(lambda: collector.stats().received == 53 and collector.wait_idle(1))
    with db.connection() as conn:
        status = {k: v.status for k, v in store.device_status(conn).items()}
        assert status == {"FM-00001": "online", "FM-00002": "offline"}
        assert store.dead_letter_counts(conn) == {"unknown_device": 1}
        assert store.count_rows(conn, "telemetry") == 50


def test_a_message_is_acknowledged_only_after_commit(ingest_config, db, private_broker,
                                                     violations_messages):
    """A collector whose database refuses every commit acknowledges nothing: once stopped,
    its session still holds every message, and a healthy collector with the same client
    id then stores them all."""
    from ingest.collector import Collector
    from storage.db import Database

    cfg = private_broker.apply(ingest_config)
    some = [m for m in violations_messages if m.expected == "valid"][:300]
    broken = Database("postgresql://postgres@127.0.0.1:1/nowhere", min_size=1, max_size=1)
    stuck = Collector(cfg.for_ingest(), broken).start()
    publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, some)
    assert wait_until(lambda: stuck.stats().received == 300)
    stats = stuck.stop(1)
    assert stats.acked == 0 and stats.stored == 0
    healthy = Collector(cfg.for_ingest(), db).start()
    try:
        assert wait_until(lambda: count(db) == 300)
    finally:
        healthy.stop()
    assert stored_rows(db) == expected_rows(some)


def test_bad_messages_land_in_dead_letters_beside_good_ones(ingest_config, db, collectors):
    """Every kind of bad message of the demo day, each between good readings: the bad ones
    are kept byte for byte with their reason, the good ones are stored, nothing crashes."""
    msgs = list(load("demo-day", day=DAY).messages())
    bad_at = [i for i, m in enumerate(msgs) if m.expected != "valid"]
    picked = sorted({j for i in bad_at for j in range(i - 3, i + 4) if 0 <= j < len(msgs)})
    sent = [msgs[j] for j in picked]
    # a repeat needs its original: keep the originals of the demo's repeats
    for m in [m for m in sent if m.expected in ("duplicate", "conflicting_duplicate")]:
        original = next(o for o in msgs if o.expected == "valid" and o.topic_suffix ==
                        m.topic_suffix and o.record.ts == m.at)
        assert original in sent
    collector = collectors(ingest_config, db)
    publish(ingest_config.mqtt.url, ingest_config.mqtt.topic_prefix, sent)
    assert wait_until(lambda: collector.stats().received == len(sent) and collector.wait_idle(1))

    expected = Counter(m.expected for m in sent)
    with db.connection() as conn:
        letters = store.dead_letters(conn)
    by_reason = {}
    for d in letters:
        by_reason.setdefault(d.reason, []).append(d)
    for m in sent:
        if m.expected in ("valid", "duplicate"):
            continue
        kept = by_reason.get(m.expected, [])
        assert any(d.payload == m.payload and d.topic.endswith("/" + m.topic_suffix)
                   for d in kept), f"{m.expected} not dead-lettered byte for byte"
    assert {r: len(v) for r, v in by_reason.items()} == \
        {k: n for k, n in expected.items() if k not in ("valid", "duplicate")}
    good = [m for m in sent if m.expected == "valid"]
    assert stored_rows(db) == expected_rows(good)
    stats = collector.stats()
    assert stats.duplicates == expected["duplicate"] == 1
    assert stats.acked == len(sent)


def test_publish_stops_when_asked(ingest_config, violations_messages):
    stop = threading.Event()
    stop.set()
    stats = publish(ingest_config.mqtt.url, ingest_config.mqtt.topic_prefix,
                    violations_messages[:10], stop=stop)
    assert stats.published == 0


def test_queue_bounded_by_bytes_still_passes_everything(ingest_config, db, collectors,
                                                        violations_messages):
    """With room for only a dozen readings between the MQTT thread and the writers (and a
    message larger than the bound still admitted alone), every reading is stored."""
    ingest_config.ingest.queue_max_bytes = 1024
    ingest_config.ingest.batch_interval_s = 0.02
    collector = collectors(ingest_config, db)
    some = [m for m in violations_messages if m.expected == "valid"][:300]
    big = next(m for m in load("demo-day", day=DAY).messages()
               if m.expected == "payload_too_large")
    assert len(big.payload) > 1024
    publish(ingest_config.mqtt.url, ingest_config.mqtt.topic_prefix, some + [big])
    assert wait_until(lambda: collector.stats().received == 301 and collector.wait_idle(1))
    assert stored_rows(db) == expected_rows(some)
    with db.connection() as conn:
        assert store.dead_letter_counts(conn) == {"payload_too_large": 1}


def test_a_row_the_database_refuses_is_dead_lettered_alone(ingest_config, db, collectors,
                                                            violations_messages):
    """A writer whose database statement fails for one record (here a route that divides by
    zero on a poison value) costs that one message a `storage_rejected` dead letter; the
    batch is committed again one by one and its other messages are stored."""
    from dataclasses import replace as dc_replace

    from ingest.routes import ROUTES, Route, write_readings

    def picky_write(conn, items):
        if any(a.record.fume_mg_m3 == 13.13 for a in items):
            conn.execute("SELECT 1 / 0")
        return write_readings(conn, items)

    routes = dict(ROUTES, fume=Route("fume", "fume", ROUTES["fume"].decode, picky_write))
    ingest_config.ingest.batch_interval_s = 1.0  # the poison shares a batch with the others
    collector = collectors(ingest_config, db, routes=routes)
    some = [m for m in violations_messages if m.expected == "valid"
            and m.topic_suffix.startswith("fume/")][:100]
    poison = some[50]
    doc = json.loads(poison.payload)
    doc["fume_mg_m3"] = 13.13
    some[50] = dc_replace(poison, payload=json.dumps(doc).encode())
    publish(ingest_config.mqtt.url, ingest_config.mqtt.topic_prefix, some)
    assert wait_until(lambda: collector.stats().received == 100 and collector.wait_idle(1))
    with db.connection() as conn:
        letters = store.dead_letters(conn)
    assert [(d.reason, d.payload) for d in letters] == [("storage_rejected", some[50].payload)]
    assert "division by zero" in letters[0].detail
    assert stored_rows(db) == expected_rows(some[:50] + some[51:])
    assert collector.stats().acked == 100
