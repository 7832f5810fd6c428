"""Broker restarts against Mosquitto as Debian ships it (2.0), with persistence: why
collectors use plain persistent subscriptions split by device, and that a restart in the
middle of a stream then loses nothing and stores nothing twice."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.broker import start_mosquitto
from ingest.collector import Collector
from ingest.layout import partition_of
from simulators.sensors import Publisher
from storage import readings as store
from tests.ingest.conftest import wait_until

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def readings(start: int, n: int) -> list[tuple[str, bytes]]:
    """n fume readings spread over 400 registered monitors, keys unique per index."""
    return [(f"fume/FM-{1 + i % 400:05d}", json.dumps({
        "ts": int((BASE + timedelta(seconds=i // 400)).timestamp() * 1000),
        "fume_mg_m3": round((i % 97) / 50, 2), "fan_on": True, "purifier_on": i % 3 > 0,
    }).encode()) for i in range(start, start + n)]


def publish(url: str, prefix: str, messages: list[tuple[str, bytes]]) -> None:
    with Publisher(url, prefix) as pub:
        for suffix, payload in messages:
            pub.send(suffix, payload)
        assert pub.wait_acked(len(messages), 60)


def _session(port: int, client_id: str, topic_filter: str | None, got: list[bytes]):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: got.append(m.payload)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    if topic_filter:
        client.subscribe(topic_filter, qos=1)[1]
    time.sleep(0.5)
    return client


def test_mosquitto_restores_plain_subscriptions_but_not_shared_ones(tmp_path):
    """The measurement behind ingest/layout.py: two persistent sessions, one subscribed
    through $share, one plainly; the broker restarts; 100 messages are published before
    either reconnects. The plain session gets all 100, the shared one none."""
    broker = start_mosquitto(tmp_path / "broker")
    port = int(broker.url.rsplit(":", 1)[1])
    got = {"shared": [], "plain": []}
    try:
        for name, filt in (("shared", "$share/g/m/#"), ("plain", "m/#")):
            c = _session(port, f"measure-{name}", filt, got[name])
            c.disconnect()
            c.loop_stop()
        broker.close()
        broker = start_mosquitto(tmp_path / "broker", port=port)
        publish(broker.url, "m", [(f"x/{i}", b"%d" % i) for i in range(100)])
        clients = [_session(port, f"measure-{name}", None, got[name]) for name in got]
        time.sleep(1.5)
        for c in clients:
            c.disconnect()
            c.loop_stop()
    finally:
        broker.close()
    assert (len(got["shared"]), len(got["plain"])) == (0, 100)


@pytest.mark.slow
def test_broker_restart_mid_stream_loses_nothing_and_duplicates_nothing(
        ingest_config, db, tmp_path):
    """Two collectors on device partitions (plain persistent subscriptions) over a
    Mosquitto with persistence. 6,000 readings wait in their sessions; the broker is
    restarted while they drain; 3,000 more are published right after it comes back,
    before the collectors reconnect. All 9,000 are stored, each once."""
    broker = start_mosquitto(tmp_path / "broker")
    port = int(broker.url.rsplit(":", 1)[1])
    cfg = broker.apply(ingest_config)
    cfg.mqtt.shared_group = None
    cfg.mqtt.reconnect_min_s = 3.0  # the collectors come back after the second burst
    cfg.mqtt.reconnect_max_s = 3.0
    cfg.ingest.writers = 1
    cfg.ingest.batch_size = 100
    first, second = readings(0, 6000), readings(6000, 3000)
    assert {partition_of(s.split("/")[1], 2) for s, _ in first} == {0, 1}
    collectors = [Collector(cfg.for_ingest(), db, partition=(i, 2)).start() for i in range(2)]
    try:
        for c in collectors:  # sessions and subscriptions exist; the messages wait in them
            c.stop(5)
        publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, first)
        collectors = [Collector(cfg.for_ingest(), db, partition=(i, 2)).start() for i in range(2)]

        def stored() -> int:
            with db.connection() as conn:
                return store.count_rows(conn, "readings")

        assert wait_until(lambda: stored() >= 300, 30)
        broker.close()
        at_restart = stored()
        broker = start_mosquitto(tmp_path / "broker", port=port)
        publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, second)
        assert not any(c.stats().connected for c in collectors)  # published before reconnect
        assert wait_until(lambda: stored() == 9000, 120), stored()
        time.sleep(1.0)
        stats = [c.stats() for c in collectors]
    finally:
        for c in collectors:
            c.stop(5)
        broker.close()
    assert at_restart < 6000  # the restart came mid-stream
    assert all(s.connects >= 2 for s in stats)
    with db.connection() as conn:
        assert store.count_rows(conn, "readings") == 9000
        assert store.count_rows(conn, "dead_letters") == 0
        keys = conn.execute("SELECT count(DISTINCT (device_id, ts)) FROM readings").fetchone()[0]
        summary = store.reading_summary(conn)
    assert keys == 9000
    assert summary.fume_sum == pytest.approx(
        sum(json.loads(p)["fume_mg_m3"] for _, p in first + second))
    assert sum(s.stored for s in stats) == 9000


def test_partitions_split_devices_stably_and_completely():
    from ingest.layout import topic_filters

    devices = [f"FM-{i:05d}" for i in range(1, 1590)] + ["DM-001", "UAV-01", "CC-001-1"]
    parts = [topic_filters("cw/v1", shared_group=None, partitions=3, partition=i,
                           devices=devices) for i in range(3)]
    flat = [f for p in parts for f in p]
    assert sorted(flat) == sorted(f"cw/v1/+/{d}/#" for d in devices)  # each device once
    assert min(map(len, parts)) > 400  # and evenly enough
    # fixed values (CRC-32, not Python's salted hash()): every process and machine agrees
    assert [partition_of(d, 4) for d in ("FM-00001", "DM-001", "UAV-01", "CC-001-1")] == \
        [0, 3, 2, 2]
    assert topic_filters("cw/v1", shared_group=None, partitions=1, partition=0) == ["cw/v1/#"]
    assert topic_filters("cw/v1", shared_group="g", partitions=1, partition=0) == \
        ["$share/g/cw/v1/#"]
    assert topic_filters("cw/v1", shared_group=None, partitions=2, partition=0,
                         devices=["a/b", "c+", "#", ""]) == []


def test_partitioned_collectors_take_up_a_newly_registered_device(ingest_config, db,
                                                                  collectors):
    """A device registered while partitioned collectors run is subscribed by the one
    partition it falls in within ingest.device_refresh_s, and its readings are stored."""
    from domain.records import Device
    from storage import registry

    ingest_config.mqtt.shared_group = None
    ingest_config.ingest.device_refresh_s = 0.5
    running = [collectors(ingest_config, db, partition=(i, 2)) for i in range(2)]
    new = "FM-90001"
    with db.connection() as conn:
        registry.sync(conn, [], [Device(new, "fume", "M-00001")])
    owner = running[partition_of(new, 2)]
    assert wait_until(lambda: any(new in f for f in owner.topic_filters), 10)
    time.sleep(0.5)  # the SUBACK
    publish(ingest_config.mqtt.url, ingest_config.mqtt.topic_prefix, [(f"fume/{new}", json.dumps(
        {"ts": int(BASE.timestamp() * 1000), "fume_mg_m3": 1.5, "fan_on": True,
         "purifier_on": True}).encode())])
    assert wait_until(lambda: owner.stats().stored == 1, 10)
    assert sum(c.stats().received for c in running) == 1
