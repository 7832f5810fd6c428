"""The private broker as citywatch starts it: no anonymous client, each device on its own
topics only, a collector's session out of reach of other accounts, and no credential in
any log line. Real Mosquitto on a free port, real PostgreSQL."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import brokerauth, mqtturl
from ingest.broker import PUBLISHER, ensure_broker
from ingest.collector import Collector
from tests.ingest.conftest import wait_until

pytestmark = pytest.mark.skipif(
    not __import__("shutil").which("mosquitto", path="/usr/sbin:/usr/local/sbin:/usr/bin"),
    reason="Mosquitto is not installed")


@pytest.fixture
def secured(config):
    """The private broker (accounts from the registry), and the config pointing at it."""
    config.mqtt.url = None
    handle = ensure_broker(config.for_ingest())
    yield handle, handle.apply(config)
    handle.close()


def _client(url: str, client_id: str):
    """A connected MQTT 5 client and what happened to it (connect result, publish acks)."""
    a = mqtturl.parse(url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    mqtturl.configure(c, a)
    seen: dict = {"pubacks": {}, "connects": 0, "disconnects": 0}
    c.on_connect = lambda cl, u, f, rc, p: seen.update(
        connect=str(rc), connects=seen["connects"] + 1)
    c.on_disconnect = lambda cl, u, f, rc, p: seen.update(disconnects=seen["disconnects"] + 1)
    c.on_publish = lambda cl, u, mid, rc, p: seen["pubacks"].__setitem__(mid, str(rc))
    c.connect(a.host, a.port)
    c.loop_start()
    assert wait_until(lambda: "connect" in seen, 5)
    return c, seen


def _fume(ts: datetime, value: float) -> bytes:
    return json.dumps({"ts": ts.isoformat(), "fume_mg_m3": value, "fan_on": True,
                       "purifier_on": True}).encode()


def _stored(db, device_id: str) -> list[float]:
    with db.connection() as conn:
        return [r[0] for r in conn.execute(
            "SELECT fume_mg_m3 FROM readings WHERE device_id = %s ORDER BY ts", (device_id,))]


def test_anonymous_and_wrong_password_are_refused(secured):
    handle, cfg = secured
    port = mqtturl.parse(cfg.mqtt.url).port
    for url in (f"mqtt://127.0.0.1:{port}", f"mqtt://FM-00001:guess@127.0.0.1:{port}",
                f"mqtt://nobody:x@127.0.0.1:{port}"):
        c, seen = _client(url, "intruder")
        c.loop_stop()
        assert seen["connect"] == "Not authorized", url


def test_device_cannot_publish_for_another_device(secured, db, caplog, capsys):
    """FM-00002, logged in as itself, sends a reading on FM-00001's topic: the broker
    refuses it (PUBACK 'Not authorized') and it is never stored or dead-lettered; its own
    reading right after goes through. Nothing logged anywhere shows a password."""
    caplog.set_level(logging.DEBUG)
    handle, cfg = secured
    collector = Collector(cfg.for_ingest(), db).start()
    prefix = cfg.mqtt.topic_prefix
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        device, seen = _client(handle.account_url("FM-00002"), "FM-00002")
        forged = device.publish(f"{prefix}/fume/FM-00001", _fume(now, 0.1), qos=1)
        own = device.publish(f"{prefix}/fume/FM-00002", _fume(now, 9.9), qos=1)
        assert wait_until(lambda: _stored(db, "FM-00002") == [9.9], 20)
        assert seen["pubacks"][forged.mid] == "Not authorized"
        assert seen["pubacks"][own.mid] == "Success"
        # the device may not read either: a subscription of its own gets nothing
        spy_got = []
        device.on_message = lambda cl, u, m: spy_got.append(m.topic)
        device.subscribe(f"{prefix}/#", qos=1)
        genuine, _ = _client(handle.account_url("FM-00001"), "FM-00001")
        genuine.publish(f"{prefix}/fume/FM-00001", _fume(now, 3.3), qos=1)
        assert wait_until(lambda: _stored(db, "FM-00001") == [3.3], 20)
        time.sleep(0.3)
        assert spy_got == []
        for c in (device, genuine):
            c.disconnect()
            c.loop_stop()
    finally:
        stats = collector.stop(5)
    with db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
    assert stats.stored == 2
    passwords = [a.password for a in handle.accounts.accounts.values()]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    out = capsys.readouterr()
    broker_log = (cfg.data_path / "mosquitto" / "mosquitto.log").read_text()
    for text in (logged, out.out, out.err, broker_log, repr(handle), str(collector.address)):
        assert not any(p in text for p in passwords)
    assert "collector" in logged  # the collector did log its connection (redacted)


def test_stolen_collector_client_id_cannot_take_the_session(secured, db):
    """A device account connects again and again with the collector's client id and a
    clean start, while 300 readings flow: the broker names every client by its username,
    so the collector is never thrown off and every reading is stored."""
    handle, cfg = secured
    collector = Collector(cfg.for_ingest(), db).start()
    prefix = cfg.mqtt.topic_prefix
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    try:
        pub, _ = _client(handle.publisher_url, "fleet")
        for i in range(300):
            pub.publish(f"{prefix}/fume/FM-00003", _fume(start + timedelta(seconds=i), 1.0), qos=1)
            if i % 60 == 0:
                thief, seen = _client(handle.account_url("FM-00004"), cfg.mqtt.client_id)
                assert seen["connect"] == "Success"
                thief.disconnect()
                thief.loop_stop()
        assert wait_until(lambda: len(_stored(db, "FM-00003")) == 300, 30)
        pub.disconnect()
        pub.loop_stop()
        stats = collector.stats()
    finally:
        collector.stop(5)
    assert stats.connects == 1 and stats.connected


def test_private_accounts_follow_the_registry(tmp_path):
    path = tmp_path / "accounts.json"
    first = brokerauth.PrivateAccounts.ensure(path, ["FM-1", "FM-2"], ["coll"], "pub")
    again = brokerauth.PrivateAccounts.ensure(path, ["FM-2", "FM-3"], ["coll"], "pub")
    assert set(again.accounts) == {"FM-2", "FM-3", "coll", "pub"}  # FM-1 decommissioned
    assert again.accounts["FM-2"].password == first.accounts["FM-2"].password
    with pytest.raises(Exception, match="cannot be a broker username"):
        brokerauth.PrivateAccounts.ensure(path, ["FM/#"], ["coll"], "pub")


def test_accounts_are_generated_once_and_kept_private(config, tmp_path):
    config.mqtt.url = None
    with ensure_broker(config.for_ingest()) as first:
        pass
    path = config.data_path / "mosquitto" / "accounts.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with ensure_broker(config.for_ingest()) as second:  # the same accounts, not new ones
        assert mqtturl.parse(second.url).password == mqtturl.parse(first.url).password
    accounts = json.loads(path.read_text())
    assert accounts[PUBLISHER]["role"] == "publisher"
    assert accounts[config.mqtt.client_id]["role"] == "collector"
    hashes = brokerauth.read_password_file(config.data_path / "mosquitto" / "passwd")
    assert brokerauth.check_password(accounts["FM-00001"]["password"], hashes["FM-00001"])
    assert not brokerauth.check_password("FM-00001", hashes["FM-00001"])


@pytest.mark.parametrize("url, shown", [
    ("mqtt://alice:S3cretPW@broker:1883", "mqtt://alice:***@broker:1883"),
    ("mqtts://alice:S3cret%40PW@broker", "mqtts://alice:***@broker"),
    ("mqtt://alice@broker", "mqtt://alice@broker"),
    ("mqtt://broker:1883", "mqtt://broker:1883"),
    ("alice:S3cretPW@broker", "alice:***@broker"),
])
def test_urls_are_redacted(url, shown):
    assert mqtturl.redact(url) == shown


@pytest.mark.parametrize("url", ["mqtt://alice:S3cretPW@broker:99999",
                                 "mqtt://alice:S3cretPW@broker/path", "mqtt://alice:S3cretPW@"])
def test_url_errors_do_not_show_the_password(url):
    with pytest.raises(Exception) as info:
        mqtturl.parse(url)
    assert "S3cretPW" not in str(info.value) and "***" in str(info.value)


def test_cli_generates_password_file_and_acl(tmp_path, capsys):
    from citywatch.cli import main as cli

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"data_dir: {tmp_path / 'data'}\n")
    assert cli(["-c", str(cfg_file), "broker", "credentials", "--json",
                "--collector", "collector-a", "--collector", "collector-b"]) == 0
    new = json.loads(capsys.readouterr().out)
    assert {n["role"] for n in new} == {"device", "collector"} and len(new) > 1000
    passwd = tmp_path / "data" / "broker" / "passwd"
    hashes = brokerauth.read_password_file(passwd)
    assert all(brokerauth.check_password(n["password"], hashes[n["username"]]) for n in new)
    # a second run adds nothing and shows no password again
    assert cli(["-c", str(cfg_file), "broker", "credentials", "--json",
                "--collector", "collector-a"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert brokerauth.read_password_file(passwd) == hashes
    # a collector left out is kept unless pruned
    assert cli(["-c", str(cfg_file), "broker", "credentials", "--collector", "collector-a",
                "--prune"]) == 0
    assert set(brokerauth.read_password_file(passwd)) == set(hashes) - {"collector-b"}
    assert cli(["-c", str(cfg_file), "broker", "acl", "--collector", "collector-a"]) == 0
    acl = (tmp_path / "data" / "broker" / "acl").read_text()
    assert "pattern write citywatch/v1/fume/%u" in acl
    assert "user collector-a\ntopic read citywatch/v1/#" in acl
