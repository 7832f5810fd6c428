"""Ingest benchmark: readings/s from MQTT to committed rows, and publish-to-commit latency,
beside two baselines measured in the same run on the same machine:

- bare subscriber: a paho client that only counts messages (the most MQTT alone can do);
- bare COPY: psycopg COPY of the same rows straight into `readings` (the most the
  database alone can do).

    python -m bench.ingest [--readings 30000] [--paced-rate 2000] [--json]

A private Mosquitto (deep queues) and a fresh database `citywatch_bench_ingest` on the
configured PostgreSQL (CITYWATCH_DATABASE_URL or postgresql://postgres@127.0.0.1:5432) are
used; the database is dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from citywatch import app
from citywatch import config as config_mod
from domain.paths import PROJECT_ROOT
from domain.records import Reading
from ingest.broker import start_mosquitto
from ingest.collector import Collector, Committed
from ingest.mqtturl import parse
from simulators.scenario import SimMessage
from simulators.sensors import Publisher
from storage import readings as store
from storage.db import Database

DB_NAME = "citywatch_bench_ingest"


def _admin_url() -> str:
    return os.environ.get("CITYWATCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _db_url(name: str) -> str:
    return _admin_url().rsplit("/", 1)[0] + "/" + name


def _fresh_database() -> str:
    with psycopg.connect(_admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return _db_url(DB_NAME)


def _drop_database() -> None:
    with psycopg.connect(_admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def live_messages(devices: list[str], n: int, offset_s: int = 0) -> Iterator[SimMessage]:
    """n fume readings of a past day, keys (device, ts) unique per run (offset_s)."""
    base = (datetime.now(UTC) - timedelta(days=1) - timedelta(seconds=offset_s)).replace(microsecond=0)
    for i in range(n):
        device = devices[i % len(devices)]
        slot = base + timedelta(seconds=i // len(devices))
        payload = json.dumps({"ts": int(slot.timestamp() * 1000), "fume_mg_m3": (i % 97) / 50,
                              "fan_on": True, "purifier_on": True}).encode()
        yield SimMessage(f"fume/{device}", payload, slot, "valid", device)


def bare_subscriber(url: str, prefix: str, devices: list[str], n: int) -> dict:
    """Drain rate of a subscriber that only counts (QoS 1, automatic acks, MQTT 5): its
    persistent session is filled with n messages while it is away, then it reconnects."""
    address = parse(url)
    got = 0
    last = [0.0]
    done = threading.Event()
    ready = threading.Event()

    def on_message(client, userdata, msg):
        nonlocal got
        got += 1
        last[0] = time.monotonic()
        if got >= n:
            done.set()

    def client() -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
        c.on_message = on_message
        c.on_subscribe = lambda *a: ready.set()
        c.on_connect = lambda *a: ready.set()
        return c

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    props.ReceiveMaximum = 1000
    first = client()
    first.connect(address.host, address.port, clean_start=True, properties=props)
    first.loop_start()
    first.subscribe(f"{prefix}/#", qos=1)
    ready.wait(5)
    first.disconnect()
    first.loop_stop()
    with Publisher(url, prefix) as pub:
        pub.publish(live_messages(devices, n, offset_s=10_000))
    ready.clear()
    sub = client()
    t0 = time.monotonic()
    sub.connect(address.host, address.port, clean_start=False, properties=props)
    sub.loop_start()
    done.wait(120)
    sub.disconnect()
    sub.loop_stop()
    return {"messages": got, "rate_per_s": got / (last[0] - t0)}


def publisher_rate(url: str, prefix: str, devices: list[str], n: int) -> dict:
    """How fast one simulator process publishes (QoS 1, acknowledged by the broker)."""
    t0 = time.monotonic()
    with Publisher(url, prefix) as pub:
        pub.publish(live_messages(devices, n, offset_s=20_000))
    return {"messages": n, "rate_per_s": n / (time.monotonic() - t0)}


def bare_copy(db: Database, devices: list[str], n: int) -> dict:
    """Rate of a plain COPY of the same number of rows into readings (then rolled back)."""
    base = datetime.now(UTC) - timedelta(days=2)
    rows = [Reading.of(devices[i % len(devices)], base + timedelta(seconds=i // len(devices)), base,
                    fume_mg_m3=(i % 97) / 50, fan_on=True, purifier_on=True) for i in range(n)]
    with db.connection() as conn:
        t0 = time.monotonic()
        store.copy_readings(conn, rows)
        conn.commit()
        dt = time.monotonic() - t0
        conn.execute("DELETE FROM readings WHERE received_at = %s", (base,))
        conn.commit()
    return {"rows": n, "rate_per_s": n / dt}


class _Latency:
    def __init__(self) -> None:
        self.samples: list[float] = []
        self.count = 0
        self.last_mono = 0.0
        self.lock = threading.Lock()
        self.sent_ms: dict[tuple[str, datetime], int] = {}

    def on_commit(self, c: Committed) -> None:
        now_ms = c.committed_at.timestamp() * 1000
        with self.lock:
            self.count += len(c.records)
            self.last_mono = c.committed_mono
            for r in c.records:
                sent = self.sent_ms.pop((r.device_id, r.ts), None)
                if sent is not None:
                    self.samples.append((now_ms - sent) / 1000)


def collector_drain(cfg, db: Database, devices: list[str], n: int, offset_s: int) -> dict:
    """Drain rate of the collector: n readings wait in its persistent session, then it
    starts; from start to the last commit."""
    lat = _Latency()
    Collector(cfg, db).start().stop()  # creates the session and its subscription
    with Publisher(cfg.mqtt.url, cfg.mqtt.topic_prefix) as pub:
        pub.publish(live_messages(devices, n, offset_s))
    t0 = time.monotonic()
    collector = Collector(cfg, db, on_commit=lat.on_commit).start()
    try:
        deadline = time.monotonic() + 180
        while lat.count < n and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = collector.stats()
    finally:
        collector.stop()
    return {"stored": lat.count, "rate_per_s": lat.count / (lat.last_mono - t0),
            "batches": stats.batches, "dead_letters": stats.dead_lettered,
            "receive_to_commit_p50_s": stats.commit_latency_p50_s,
            "receive_to_commit_p99_s": stats.commit_latency_p99_s}


def _spawn(config_path: Path, client_id: str, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    return subprocess.Popen([sys.executable, "-m", "citywatch.cli", "-c", str(config_path),
                             "collect", "--client-id", client_id], env=env,
                            cwd=PROJECT_ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _wait_logs(logs: list[Path], text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(text in p.read_text(errors="replace") for p in logs if p.exists()) and \
                all(p.exists() for p in logs):
            return
        time.sleep(0.05)
    raise RuntimeError(f"collectors did not log {text!r}: see {logs}")


def collector_processes(cfg, db: Database, devices: list[str], n: int, k: int, offset_s: int,
                        workdir: Path, tag: str = "") -> dict:
    """Drain rate of k collector processes on one shared subscription (k GILs): n readings
    wait in their sessions; rate from the first committed row to the last."""
    cfg = cfg.model_copy(deep=True)
    cfg.mqtt.shared_group = "bench"
    cfg.mqtt.topic_prefix = f"bench{k}{tag}/v1"
    path = workdir / f"collect-{k}{tag}.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    ids = [f"bench-p{k}{tag}-{i}" for i in range(k)]
    logs = [workdir / f"{c}.log" for c in ids]
    procs = [_spawn(path, c, lg) for c, lg in zip(ids, logs, strict=True)]
    _wait_logs(logs, "connected to")
    for p in procs:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    with db.connection() as conn:
        before = store.count_rows(conn, "readings")
    with Publisher(cfg.mqtt.url, cfg.mqtt.topic_prefix) as pub:
        pub.publish(live_messages(devices, n, offset_s))
    procs = [_spawn(path, c, lg) for c, lg in zip(ids, logs, strict=True)]
    try:
        t_first = first = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with db.connection() as conn:
                got = store.count_rows(conn, "readings") - before
            now = time.monotonic()
            if got and t_first is None:
                t_first, first = now, got
            if got >= n:
                break
            time.sleep(0.02)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
    return {"processes": k, "stored": got, "rate_per_s": (got - first) / (now - t_first)}


def collector_run(cfg, db: Database, devices: list[str], n: int, rate: float | None,
                  offset_s: int) -> dict:
    """The collector fed live by the simulator at `rate` (None: as fast as it publishes);
    publish-to-commit latency per reading."""
    lat = _Latency()
    msgs = list(live_messages(devices, n, offset_s))

    def stamped() -> Iterator[SimMessage]:
        # stamp at the moment of publishing, remembered by key for the commit hook
        for m in msgs:
            now_ms = int(time.time() * 1000)
            doc = json.loads(m.payload)
            doc["sent_ms"] = now_ms
            with lat.lock:
                lat.sent_ms[(m.device_id, m.at)] = now_ms
            yield SimMessage(m.topic_suffix, json.dumps(doc).encode(), m.at, m.expected,
                             m.device_id)

    collector = Collector(cfg, db, on_commit=lat.on_commit).start()
    try:
        t0 = time.monotonic()
        with Publisher(cfg.mqtt.url, cfg.mqtt.topic_prefix) as pub:
            pub.publish(stamped(), rate=rate)
        deadline = time.monotonic() + 180
        while lat.count < n and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = collector.stats()
    finally:
        collector.stop()
    s = sorted(lat.samples)
    pick = (lambda q: s[min(len(s) - 1, int(q * len(s)))]) if s else (lambda q: None)
    return {"stored": lat.count, "rate_per_s": lat.count / (lat.last_mono - t0),
            "offered_rate": rate, "latency_p50_s": pick(0.5), "latency_p99_s": pick(0.99),
            "batches": stats.batches, "dead_letters": stats.dead_lettered}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readings", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3, help="alternating rounds (medians kept)")
    ap.add_argument("--paced-rate", type=float, default=2000.0,
                    help="offered rate (msg/s) of the latency run")
    ap.add_argument("--batch-size", type=int, help="override ingest.batch_size")
    ap.add_argument("--keep", action="store_true", help="keep the bench database")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    cfg = config_mod.load(env={})
    cfg.database.url = _fresh_database()
    if args.batch_size:
        cfg.ingest.batch_size = args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_mosquitto(Path(tmp))
        try:
            cfg = broker.apply(cfg)
            cfg.mqtt.topic_prefix = "bench/v1"
            cfg.mqtt.client_id = "bench-collector"
            cfg.mqtt.shared_group = None
            db = app.open_database(cfg)
            try:
                with db.connection() as conn:
                    devices = sorted(d for d, k in store.device_kinds(conn).items() if k == "fume")
                n = args.readings
                # The machine is shared: alternate the runs and keep medians, so that a
                # burst of outside load does not fall on one side of a ratio only.
                rounds = []
                for i in range(args.repeat):
                    rounds.append({
                        "bare_subscriber": bare_subscriber(cfg.mqtt.url, f"bare{i}/v1", devices, n),
                        "collector_drain": collector_drain(cfg, db, devices, n, 1000 * (3 * i + 1)),
                        "collector_2_processes": collector_processes(
                            cfg, db, devices, n, 2, 1000 * (3 * i + 2), Path(tmp), tag=str(i)),
                    })
                result = {
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                               f"Python {platform.python_version()}",
                    "load_average": os.getloadavg(),
                    "readings": n,
                    "batch_size": cfg.ingest.batch_size,
                    "repeats": args.repeat,
                    "publisher": publisher_rate(cfg.mqtt.url, "pub/v1", devices, n),
                    "bare_copy": bare_copy(db, devices, n),
                    "rounds": rounds,
                    "median_rate_per_s": {
                        k: statistics.median(r[k]["rate_per_s"] for r in rounds)
                        for k in rounds[0]},
                    "collector_paced": collector_run(cfg, db, devices, n, args.paced_rate,
                                                     1000 * (3 * args.repeat + 1)),
                }
                with db.connection() as conn:
                    result["rows_in_readings"] = store.count_rows(conn, "readings")
            finally:
                db.close()
        finally:
            broker.close()
    if not args.keep:
        _drop_database()
    med = result["median_rate_per_s"]
    result["ratio_to_bare_subscriber"] = med["collector_drain"] / med["bare_subscriber"]
    result["ratio_2_processes_to_bare_subscriber"] = \
        med["collector_2_processes"] / med["bare_subscriber"]
    result["ratio_to_bare_copy"] = med["collector_drain"] / result["bare_copy"]["rate_per_s"]
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        c, p = result["bare_copy"], result["collector_paced"]
        print(f"{result['machine']}, load average {result['load_average'][0]:.1f}; "
              f"{n:,} readings per run, batch {result['batch_size']}, "
              f"median of {result['repeats']} alternating runs")
        print(f"simulator publish           {result['publisher']['rate_per_s']:>9,.0f} msg/s")
        print(f"bare subscriber (drain)     {med['bare_subscriber']:>9,.0f} msg/s")
        print(f"bare COPY                   {c['rate_per_s']:>9,.0f} rows/s")
        print(f"collector (drain)           {med['collector_drain']:>9,.0f} rows/s  "
              f"{result['ratio_to_bare_subscriber']:.0%} of bare subscriber, "
              f"{result['ratio_to_bare_copy']:.0%} of bare COPY")
        print(f"2 collector processes       {med['collector_2_processes']:>9,.0f} rows/s  "
              f"{result['ratio_2_processes_to_bare_subscriber']:.0%} of bare subscriber")
        print(f"collector fed at {p['offered_rate']:,.0f}/s     {p['rate_per_s']:>9,.0f} rows/s  "
              f"publish-to-commit p50 {p['latency_p50_s']:.3f} s, p99 {p['latency_p99_s']:.3f} s")
        print(f"rows in readings            {result['rows_in_readings']:>9,} "
              f"(expected {(2 * result['repeats'] + 1) * n:,})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
