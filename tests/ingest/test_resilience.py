"""Crashes and outages: a collector killed with SIGKILL, the database gone for a while,
the broker restarted. Nothing published is lost, nothing is stored twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from domain.paths import PROJECT_ROOT
from ingest.broker import start_amqtt, start_mosquitto
from ingest.collector import Collector
from simulators.sensors import publish
from storage.db import Database
from tests.ingest.conftest import wait_until
from tests.ingest.tcpproxy import TcpProxy, server_of, via
from tests.ingest.test_collector import count, expected_rows, stored_rows


def _publisher(cfg, messages, rate):
    done = {}

    def run():
        done["stats"] = publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, messages, rate=rate)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, done


def _collector_process(cfg, tmp_path, log_name: str) -> subprocess.Popen:
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    log = open(tmp_path / log_name, "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen([sys.executable, "-m", "citywatch.cli", "-c", str(path), "collect"],
                            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_kill_9_of_a_collector_loses_nothing_and_duplicates_nothing(
        ingest_config, db, private_broker, violations_messages, tmp_path):
    """SIGKILL of a collector process in the middle of 20,000 readings, then a restart with
    the same client id: the broker's persistent session redelivers what was not
    acknowledged (committed or not), and identity (device, ts) stores each reading once."""
    cfg = private_broker.apply(ingest_config)
    valid = [m for m in violations_messages if m.expected == "valid"][:20000]
    assert len(valid) == 20000
    first = _collector_process(cfg, tmp_path, "first.log")
    try:
        assert wait_until(lambda: "connected to" in (tmp_path / "first.log").read_text(), 30)
        thread, done = _publisher(cfg, valid, rate=4000)
        assert wait_until(lambda: count(db) >= 4000, 60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = count(db)
        assert killed_at < 20000  # it died mid-stream
        second = _collector_process(cfg, tmp_path, "second.log")
        try:
            thread.join(60)
            assert done["stats"].published == 20000
            assert wait_until(lambda: count(db) == 20000, 120), (tmp_path / "second.log").read_text()
            time.sleep(0.5)
            assert count(db) == 20000
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
    assert "session present: True" in (tmp_path / "second.log").read_text()
    assert stored_rows(db) == expected_rows(valid)
    with db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0


@pytest.mark.slow
def test_database_outage_loses_nothing(ingest_config, db, private_broker, violations_messages):
    """The collector reaches PostgreSQL through a TCP proxy of this test; cutting the proxy
    breaks its connections and refuses new ones, as a database crash or restart would
    (the shared server itself stays up for other tests). The batch in hand is kept and
    retried, nothing is acknowledged meanwhile, and after the outage everything is stored."""
    cfg = private_broker.apply(ingest_config)
    cfg.ingest.db_retry_max_s = 1.0
    proxy = TcpProxy(server_of(db.url)).start()
    proxied = Database(via(db.url, proxy), min_size=1, max_size=2)
    proxied.pool.timeout = 1.0  # shorter than the outage: the collector must see errors
    proxied.open()
    valid = [m for m in violations_messages if m.expected == "valid"][:3000]
    collector = Collector(cfg.for_ingest(), proxied).start()
    try:
        thread, done = _publisher(cfg, valid, rate=1000)
        assert wait_until(lambda: count(db) >= 600, 30)
        proxy.cut()
        time.sleep(0.5)  # a COMMIT already on the wire when the cut came still completes
        during = count(db)
        time.sleep(3)
        assert count(db) == during  # nothing got through while the database was away
        proxy.restore()
        thread.join(30)
        assert wait_until(lambda: count(db) == 3000, 90)
        stats = collector.stats()
    finally:
        collector.stop(5)
        proxied.close()
        proxy.close()
    assert stats.db_errors >= 1
    assert stored_rows(db) == expected_rows(valid)


@pytest.mark.slow
def test_broker_restart_resumes_the_session(ingest_config, db, tmp_path, violations_messages):
    """Mosquitto stops and starts again on the same port with its persisted state: the
    collector reconnects by itself and keeps its session; nothing is lost."""
    broker = start_mosquitto(tmp_path / "broker")
    port = int(broker.url.rsplit(":", 1)[1])
    cfg = broker.apply(ingest_config)
    cfg.mqtt.reconnect_max_s = 1.0
    valid = [m for m in violations_messages if m.expected == "valid"][:2000]
    collector = Collector(cfg.for_ingest(), db).start()
    try:
        publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, valid[:1000])
        assert wait_until(lambda: count(db) == 1000, 30)
        broker.close()
        broker = start_mosquitto(tmp_path / "broker", port=port)
        assert wait_until(lambda: collector.stats().connects >= 2 and collector.stats().connected,
                          30)
        publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, valid[1000:])
        assert wait_until(lambda: count(db) == 2000, 30)
    finally:
        collector.stop(5)
        broker.close()
    assert stored_rows(db) == expected_rows(valid)


def test_embedded_broker_fallback_carries_readings(ingest_config, db, violations_messages):
    """Without Mosquitto, the embedded amqtt broker (MQTT 3.1.1, no shared subscriptions)
    still carries readings into the database, acknowledged after commit."""
    broker = start_amqtt()
    try:
        cfg = broker.apply(ingest_config.model_copy(update={
            "mqtt": ingest_config.mqtt.model_copy(update={"url": None})}))
        assert (cfg.mqtt.protocol, cfg.mqtt.shared_group) == ("3.1.1", None)
        valid = [m for m in violations_messages if m.expected == "valid"][:300]
        collector = Collector(cfg.for_ingest(), db).start()
        try:
            publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, valid)  # falls back to 3.1.1
            assert wait_until(lambda: count(db) == 300, 30)
        finally:
            collector.stop(5)
    finally:
        broker.close()
    assert stored_rows(db) == expected_rows(valid)
