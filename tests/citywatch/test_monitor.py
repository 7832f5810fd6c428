"""/metrics and /healthz of a running collector, over HTTP, against real Mosquitto and
PostgreSQL: the counters say what happened to each message, and health turns 503 when
acknowledgements stop (the database unreachable) and 200 again once they flow."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from citywatch.monitor import Monitor
from ingest.collector import Collector
from simulators.sensors import Publisher
from storage.db import Database
from tests.ingest.conftest import wait_until
from tests.ingest.tcpproxy import TcpProxy, server_of, via


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _samples(port: int) -> dict[tuple[str, tuple], float]:
    status, body = _get(port, "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def _fume(ts: datetime, value: float = 1.0) -> bytes:
    return json.dumps({"ts": ts.isoformat(), "fume_mg_m3": value, "fan_on": True,
                       "purifier_on": True}).encode()


@pytest.fixture
def monitor():
    m = Monitor()
    yield m
    m.close()


def test_metrics_count_what_happened_to_each_message(config, db, monitor):
    port = monitor.serve("127.0.0.1", 0)
    collector = Collector(config.for_ingest(), db, metrics=monitor.collector).start()
    monitor.add_check("collector", lambda: monitor.collector.health(30))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    try:
        with Publisher(config.mqtt.url, config.mqtt.topic_prefix) as pub:
            for i in range(40):
                pub.send("fume/FM-00001", _fume(start + timedelta(seconds=i)))
            pub.send("fume/FM-00001", _fume(start))  # an exact repeat
            pub.send("fume/FM-00001", b"{not json")
            pub.send("fume/NOBODY-1", _fume(start))
            pub.send("fume/FM-00002", b'{"ts": "yesterday", "fume_mg_m3": 1}')
            assert pub.wait_acked(44, 10)
        assert wait_until(lambda: collector.stats().acked == 44 and collector.wait_idle(1), 20)
    finally:
        collector.stop(5)
    m = _samples(port)
    assert m[("citywatch_ingest_messages_received_total", ())] == 44
    assert m[("citywatch_ingest_rows_stored_total", ())] == 40
    assert m[("citywatch_ingest_duplicates_total", ())] == 1
    assert m[("citywatch_ingest_acks_total", ())] == 44
    for reason in ("not_json", "unknown_device", "bad_timestamp"):
        assert m[("citywatch_ingest_dead_letters_total", (("reason", reason),))] == 1
    # publish -> commit is measured from the device's ts (minutes ago), receive -> commit
    # from the collector's receipt (well under a second here): kept apart
    assert m[("citywatch_ingest_publish_to_commit_seconds_count", ())] == 41
    assert m[("citywatch_ingest_publish_to_commit_seconds_bucket", (("le", "60.0"),))] == 0
    assert m[("citywatch_ingest_receive_to_commit_seconds_count", ())] == 44
    assert m[("citywatch_ingest_receive_to_commit_seconds_bucket", (("le", "5.0"),))] == 44
    assert m[("citywatch_ingest_unacknowledged_messages", ())] == 0
    status, body = _get(port, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


@pytest.mark.slow
def test_health_turns_unhealthy_when_acknowledgements_stop(config, db, monitor):
    """The collector's database link is cut: messages wait, nothing is acknowledged, and
    /healthz answers 503 after the stall limit; restored, everything is stored and
    acknowledged and /healthz answers 200."""
    config.ingest.db_retry_max_s = 0.5
    proxy = TcpProxy(server_of(db.url)).start()
    proxied = Database(via(db.url, proxy), min_size=1, max_size=2)
    proxied.pool.timeout = 1.0
    proxied.open()
    http = monitor.serve("127.0.0.1", 0)
    monitor.add_check("collector", lambda: monitor.collector.health(1.5))
    collector = Collector(config.for_ingest(), proxied, metrics=monitor.collector).start()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    try:
        proxy.cut()
        with Publisher(config.mqtt.url, config.mqtt.topic_prefix) as pub:
            for i in range(20):
                pub.send("fume/FM-00003", _fume(start + timedelta(seconds=i)))
            assert pub.wait_acked(20, 10)
        assert wait_until(lambda: _get(http, "/healthz")[0] == 503, 15)
        status, body = _get(http, "/healthz")
        detail = json.loads(body)["checks"]["collector"]
        assert not detail["ok"] and "20 messages unacknowledged" in detail["detail"]
        assert _samples(http)[("citywatch_ingest_last_ack_age_seconds", ())] > 1.5
        proxy.restore()
        assert wait_until(lambda: collector.stats().acked == 20, 30)
        assert _get(http, "/healthz")[0] == 200
    finally:
        collector.stop(5)
        proxied.close()
        proxy.close()
    assert _samples(http)[("citywatch_ingest_rows_stored_total", ())] == 20


def test_frames_queue_and_engine_metrics_are_served(config, db, monitor):
    """The frames queue gauges come from the database at each scrape; the engine's pass
    counters from run_engine."""
    import threading

    from rules.engine import run_engine
    from tests.rules.helpers import fume_series, local, store_frame, store_readings

    store_frame(db, "drone", "UAV-01", local("2026-11-20", "11:10"),
                [("street_stall", 0.9, "M-00001", "frontage")])
    store_readings(db, fume_series("FM-00001", local("2026-11-20", "11:00"), 40, 3.0))
    monitor.watch_frames_queue(db)
    http = monitor.serve("127.0.0.1", 0)
    config.rules.interval_s = 0.2
    stop = threading.Event()
    t = threading.Thread(target=run_engine, args=(config.rules, db, stop, monitor.engine))
    t.start()
    try:
        assert wait_until(lambda: _samples(http).get(
            ("citywatch_rules_cases_total", (("outcome", "created"),)), 0) >= 1, 30)
    finally:
        stop.set()
        t.join(30)
    m = _samples(http)
    assert m[("citywatch_frames_queue", (("status", "done"),))] == 1
    assert m[("citywatch_frames_queue", (("status", "pending"),))] == 0
    assert m[("citywatch_frames_oldest_claim_age_seconds", ())] == 0
    assert m[("citywatch_rules_passes_total", (("outcome", "ok"),))] >= 1
    assert m[("citywatch_rules_last_success_timestamp_seconds", ())] > time.time() - 60
