"""Ingest benchmark: MQTT to committed rows, beside the baselines that bound it, measured
the same way in the same run:

- bare subscriber: a paho client in its own process that only counts (QoS 1, automatic
  acks, MQTT 5): the most one Python MQTT process can take;
- one collector: `citywatch collect --processes 1`;
- default collect: `citywatch collect` as shipped (one process per core, each on one
  partition of the devices, supervised);
- bare COPY: psycopg COPY of the same rows straight into `readings`;
- knee: the default collect fed live by publisher processes at stepped offered rates;
  the knee is the first rate whose publish-to-commit p99 passes 1 s.

    python -m bench.ingest [--readings 20000] [--repeat 3] [--knee-rates 2000,4000,...]

Drain rates: the messages wait in the consumer's persistent session, then the consumer
starts; the clock runs from the first message counted (bare) or row committed
(collectors) to the last, so process start-up is not measured. The three drains run
interleaved, round after round, and medians are kept. The load average is recorded before
and after every measurement; above 1.5 a warning says the ratios are not trustworthy.

Every process this bench starts (publishers, subscribers, collectors) is stopped when it
ends, fails or is interrupted, and is told by the kernel to stop should the bench itself be
killed. A private Mosquitto (deep queues) and a fresh
database `citywatch_bench_ingest` on the configured PostgreSQL (CITYWATCH_DATABASE_URL or
postgresql://postgres@127.0.0.1:5432) are used; the database is dropped at the end unless
--keep.
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

import psycopg
import yaml

from citywatch.supervisor import die_with_parent
from domain.paths import PROJECT_ROOT
from domain.records import Reading
from storage import readings as store
from storage.db import Database

DB_NAME = "citywatch_bench_ingest"
LOAD_WARN = 1.5
_CHILDREN: list[subprocess.Popen] = []


# -- processes ---------------------------------------------------------------------------

def _spawn(argv: list[str], *, log: Path | None = None, env: dict | None = None,
           stdout=subprocess.PIPE) -> subprocess.Popen:
    """Start a child this bench will stop whatever happens."""
    err = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=stdout, stderr=err,
                            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    _CHILDREN.append(proc)
    return proc


def _stop_children() -> None:
    for p in _CHILDREN:
        if p.poll() is None:
            p.terminate()
    for p in _CHILDREN:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    _CHILDREN.clear()


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def _json_of(proc: subprocess.Popen, timeout: float) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
    return json.loads(out)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _measured(name: str, fn, *args, **kw) -> dict:
    """Run one measurement with the load average before and after it."""
    before = _load()
    result = fn(*args, **kw)
    after = _load()
    result["load_before"], result["load_after"] = before, after
    if max(before, after) > LOAD_WARN:
        result["warning"] = f"load average {max(before, after):.1f} > {LOAD_WARN}"
        print(f"warning: {name}: load average {before:.1f} -> {after:.1f} (> {LOAD_WARN}): "
              "this number, and any ratio with it, is not trustworthy", file=sys.stderr)
    return result


# -- database ----------------------------------------------------------------------------

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


def _rows(db: Database) -> int:
    with db.connection() as conn:
        return store.count_rows(conn, "readings")


# -- roles run in child processes ----------------------------------------------------------

def readings(devices: list[str], n: int, *, start_ms: int, part: int = 0, parts: int = 1,
             live_rate: float | None = None) -> Iterator[tuple[str, bytes]]:
    """n fume readings for the devices d with index % parts == part; keys unique. Live
    (live_rate set): ts is the wall clock at publish (what publish -> commit latency is
    measured from), strictly increasing per device."""
    mine = devices[part::parts]
    last: dict[str, int] = {}
    for i in range(n):
        device = mine[i % len(mine)]
        if live_rate:
            ts = max(int(time.time() * 1000), last.get(device, 0) + 1)
            last[device] = ts
        else:
            ts = start_ms + (i // len(mine)) * 1000
        yield f"fume/{device}", json.dumps({
            "ts": ts, "fume_mg_m3": (i % 97) / 50, "fan_on": True,
            "purifier_on": True}, separators=(",", ":")).encode()


# One poison of each kind the hardening report found, sent in turn (--poison-every).
POISONS = [
    b'{"ts": 1' + b"0" * 5000 + b', "fume_mg_m3": 1, "fan_on": true, "purifier_on": true}',
    b'{"ts": 0, "x": ' + b"[" * 30000 + b"]" * 30000 + b"}",
    b'{"ts": 0, "fume_mg_m3": "\\ud800", "fan_on": true, "purifier_on": true}',
    b'{"ts": NaN, "fume_mg_m3": 1, "fan_on": true, "purifier_on": true}',
]


def role_publish(args) -> int:
    """Publish n readings (at --rate per second, or as fast as the broker takes them), and
    with --poison-every S one poison message every S seconds besides."""
    from simulators.sensors import Publisher

    devices = args.devices.split(",")
    t0 = time.monotonic()
    poisons = 0
    with Publisher(args.url, args.prefix, client_id=f"bench-pub-{os.getpid()}") as pub:
        for i, (topic, payload) in enumerate(readings(
                devices, args.n, start_ms=args.start_ms, part=args.part, parts=args.parts,
                live_rate=args.rate)):
            if args.rate:
                delay = t0 + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if i + poisons - pub._acked > 5000:  # bounded in flight, as Publisher.publish
                pub.wait_acked(i + poisons - 2500)
            pub.send(topic, payload)
            if args.poison_every and time.monotonic() - t0 >= (poisons + 1) * args.poison_every:
                pub.send(topic, POISONS[poisons % len(POISONS)])
                poisons += 1
        ok = pub.wait_acked(args.n + poisons, 120)
    wall = time.monotonic() - t0
    print(json.dumps({"published": args.n if ok else -1, "poisons": poisons, "wall_s": wall,
                      "rate_per_s": args.n / wall}))
    return 0


def role_bare(args) -> int:
    """The bare subscriber: create the session (--create), or drain n messages from it."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from ingest.mqtturl import parse

    address = parse(args.url)
    got, first, last = 0, [0.0], [0.0]
    done, ready = threading.Event(), threading.Event()

    def on_message(client, userdata, msg):
        nonlocal got
        got += 1
        last[0] = time.monotonic()
        if got == 1:
            first[0] = last[0]
        if got >= args.n:
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.on_subscribe = lambda *a: ready.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    props.ReceiveMaximum = 1000
    c.connect(address.host, address.port, clean_start=args.create, properties=props)
    c.loop_start()
    if args.create:
        c.subscribe(f"{args.prefix}/#", qos=1)
        ready.wait(10)
    else:
        done.wait(300)
    c.disconnect()
    c.loop_stop()
    rate = (got - 1) / (last[0] - first[0]) if got > 1 and last[0] > first[0] else 0.0
    print(json.dumps({"messages": got, "rate_per_s": rate}))
    return 0


# -- measurements ------------------------------------------------------------------------

class Bench:
    def __init__(self, cfg, db: Database, devices: list[str], workdir: Path):
        self.cfg, self.db, self.devices, self.workdir = cfg, db, devices, workdir
        self.runs = 0

    def _config_file(self, prefix: str, client_id: str) -> Path:
        cfg = self.cfg.model_copy(deep=True)
        cfg.mqtt.topic_prefix, cfg.mqtt.client_id = prefix, client_id
        path = self.workdir / f"{client_id}.yaml"
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
        return path

    def _env(self) -> dict:
        return {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}

    def fill(self, prefix: str, n: int, publishers: int = 2) -> dict:
        """Publish n readings with `publishers` processes, as fast as the broker takes them."""
        start_ms = int((datetime.now(UTC) - timedelta(days=1, hours=self.runs)).timestamp()
                       * 1000)
        self.runs += 1
        procs = [_spawn(_python("bench.ingest", "--role", "publish", "--url", self.cfg.mqtt.url,
                                "--prefix", prefix, "--n", str(n // publishers), "--part",
                                str(p), "--parts", str(publishers), "--start-ms",
                                str(start_ms), "--devices", ",".join(self.devices)),
                        env=self._env()) for p in range(publishers)]
        results = [_json_of(p, 300) for p in procs]
        return {"published": sum(r["published"] for r in results)}

    def bare_drain(self, n: int) -> dict:
        prefix, cid = f"bare{self.runs}/v1", f"bench-bare-{self.runs}"
        role = _python("bench.ingest", "--role", "bare", "--url", self.cfg.mqtt.url,
                       "--prefix", prefix, "--client-id", cid, "--n", str(n))
        _json_of(_spawn(role + ["--create"], env=self._env()), 60)
        self.fill(prefix, n)
        out = _json_of(_spawn(role, env=self._env()), 330)
        return {"messages": out["messages"], "rate_per_s": out["rate_per_s"]}

    def collector_drain(self, n: int, processes: int | None) -> dict:
        """Drain by `citywatch collect` (processes None: its default)."""
        tag = f"c{processes or 'd'}-{self.runs}"
        path = self._config_file(f"bench-{tag}/v1", f"bench-{tag}")
        argv = _python("citywatch.cli", "-c", str(path), "collect", "--json")
        if processes is not None:
            argv += ["--processes", str(processes)]
        log = self.workdir / f"{tag}.log"
        expected = processes or (os.cpu_count() or 1)
        # first start: sessions and subscriptions exist, then the messages wait in them
        first = self._run_until_connected(argv, log, expected)
        first.send_signal(signal.SIGTERM)
        _json_of(first, 60)
        before = _rows(self.db)
        self.fill(f"bench-{tag}/v1", n)
        proc = self._run_until_connected(argv, log, expected)
        t_first = first = got = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            got = _rows(self.db) - before
            now = time.monotonic()
            if got and t_first is None:
                t_first, first = now, got
            if got >= n:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        report = _json_of(proc, 60)
        rate = (got - first) / (now - t_first) if t_first and now > t_first else 0.0
        return {"processes": report.get("processes", 1), "stored": got, "rate_per_s": rate}

    def _run_until_connected(self, argv, log: Path, expected: int) -> subprocess.Popen:
        mark = log.stat().st_size if log.exists() else 0
        proc = _spawn(argv, log=log, env=self._env())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = log.read_bytes()[mark:].decode(errors="replace") if log.exists() else ""
            if text.count("connected to") >= expected:
                return proc
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited early; see {log}")
            time.sleep(0.05)
        raise RuntimeError(f"{argv} did not connect; see {log}")

    def bare_copy(self, n: int) -> dict:
        base = datetime.now(UTC) - timedelta(days=3)
        rows = [Reading.of(self.devices[i % len(self.devices)],
                        base + timedelta(seconds=i // len(self.devices)), base,
                        fume_mg_m3=(i % 97) / 50, fan_on=True, purifier_on=True)
                for i in range(n)]
        with self.db.connection() as conn:
            t0 = time.monotonic()
            store.copy_readings(conn, rows)
            conn.commit()
            dt = time.monotonic() - t0
            conn.execute("DELETE FROM readings WHERE received_at = %s", (base,))
            conn.commit()
        return {"rows": n, "rate_per_s": n / dt}

    def live_step(self, rate: float, seconds: float, publishers: int,
                  poison: bool = False) -> dict:
        """The default collect fed at `rate` readings/s by `publishers` processes for
        `seconds` (poison: plus one poison message a second); publish -> commit latency from
        the device ts (= publish time) to commit, as each collector reports it (the worst
        collector's p99 is kept)."""
        tag = f"live{int(rate)}-{self.runs}"
        self.runs += 1
        prefix = f"bench-{tag}/v1"
        path = self._config_file(prefix, f"bench-{tag}")
        log = self.workdir / f"{tag}.log"
        argv = _python("citywatch.cli", "-c", str(path), "collect", "--json")
        proc = self._run_until_connected(argv, log, os.cpu_count() or 1)
        before = _rows(self.db)
        n = int(rate * seconds) // publishers * publishers
        pubs = [_spawn(_python("bench.ingest", "--role", "publish", "--url", self.cfg.mqtt.url,
                               "--prefix", prefix, "--n", str(n // publishers), "--rate",
                               str(rate / publishers), "--part", str(p), "--parts",
                               str(publishers), "--devices", ",".join(self.devices),
                               *(["--poison-every", "1"] if poison and p == 0 else [])),
                       env=self._env()) for p in range(publishers)]
        sent = [_json_of(p, seconds * 4 + 120) for p in pubs]
        deadline = time.monotonic() + 120
        while _rows(self.db) - before < n and time.monotonic() < deadline:
            time.sleep(0.05)
        stored = _rows(self.db) - before
        proc.send_signal(signal.SIGTERM)
        report = _json_of(proc, 60)
        p99s = [c["event_to_commit_p99_s"] for c in report["collectors"]
                if c.get("event_to_commit_p99_s") is not None]
        p50s = [c["event_to_commit_p50_s"] for c in report["collectors"]
                if c.get("event_to_commit_p50_s") is not None]
        return {"offered_per_s": rate, "published": sum(s["published"] for s in sent),
                "poisons": sum(s["poisons"] for s in sent),
                "dead_letters": sum(sum(c["dead_letters"].values()) for c in report["collectors"]),
                "achieved_publish_per_s": sum(s["rate_per_s"] for s in sent),
                "stored": stored, "p50_s": max(p50s) if p50s else None,
                "p99_s": max(p99s) if p99s else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readings", type=int, default=20000, help="readings per drain run")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (medians kept)")
    ap.add_argument("--knee-rates", default="2000,4000,6000,8000,10000,12000",
                    help="offered rates (readings/s) stepped for the knee; empty: skip")
    ap.add_argument("--step-seconds", type=float, default=10.0)
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--poison-rate", type=float, default=2000.0,
                    help="offered rate of the poison comparison: the same live load without, "
                         "then with, one poison message a second (0: skip)")
    ap.add_argument("--keep", action="store_true", help="keep the bench database")
    ap.add_argument("--json", action="store_true", help="every number as JSON on stdout")
    # roles of the child processes
    ap.add_argument("--role", choices=("publish", "bare"), help=argparse.SUPPRESS)
    for flag in ("--url", "--prefix", "--client-id", "--devices"):
        ap.add_argument(flag, help=argparse.SUPPRESS)
    for flag in ("--n", "--part", "--parts", "--start-ms"):
        ap.add_argument(flag, type=int, default=0 if flag != "--parts" else 1,
                        help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--poison-every", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--create", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.role == "publish":
        return role_publish(args)
    if args.role == "bare":
        return role_bare(args)

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted: every process this bench started is stopped", file=sys.stderr)
        return 130
    finally:
        _stop_children()


def _run(args) -> int:
    from citywatch import app
    from citywatch import config as config_mod
    from ingest.broker import start_mosquitto

    cfg = config_mod.load(env={})
    cfg.database.url = _fresh_database()
    cfg.mqtt.shared_group = None
    result: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "load_start": _load(),
        "readings": args.readings, "repeats": args.repeat}
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_mosquitto(Path(tmp) / "broker")
        _CHILDREN.append(broker.process)
        try:
            cfg = broker.apply(cfg)
            db = app.open_database(cfg)
            try:
                with db.connection() as conn:
                    devices = sorted(d for d, k in store.device_kinds(conn).items()
                                     if k == "fume")
                bench = Bench(cfg, db, devices, Path(tmp))
                n = args.readings
                rounds = []
                for i in range(args.repeat):
                    print(f"round {i + 1} of {args.repeat}", file=sys.stderr)
                    rounds.append({
                        "bare_subscriber": _measured("bare subscriber", bench.bare_drain, n),
                        "one_collector": _measured("one collector", bench.collector_drain, n, 1),
                        "default_collect": _measured("default collect", bench.collector_drain,
                                                     n, None)})
                result["rounds"] = rounds
                result["median_rate_per_s"] = {
                    k: statistics.median(r[k]["rate_per_s"] for r in rounds) for k in rounds[0]}
                result["bare_copy"] = _measured("bare COPY", bench.bare_copy, n)
                steps = []
                for rate in [float(r) for r in args.knee_rates.split(",") if r.strip()]:
                    print(f"knee: offered {rate:,.0f}/s", file=sys.stderr)
                    step = _measured(f"live at {rate:,.0f}/s", bench.live_step, rate,
                                     args.step_seconds, args.publishers)
                    steps.append(step)
                    if step["p99_s"] is not None and step["p99_s"] > 1.0:
                        break
                result["knee_steps"] = steps
                if args.poison_rate:
                    result["poison"] = {
                        label: _measured(f"live at {args.poison_rate:,.0f}/s {label}",
                                         bench.live_step, args.poison_rate, args.step_seconds,
                                         args.publishers, poison=label == "with_poison")
                        for label in ("without_poison", "with_poison")}
                below = [s["offered_per_s"] for s in steps
                         if s["p99_s"] is not None and s["p99_s"] <= 1.0]
                passed = [s["offered_per_s"] for s in steps
                          if s["p99_s"] is not None and s["p99_s"] > 1.0]
                result["knee_per_s"] = passed[0] if passed else None
                result["highest_rate_p99_within_1s"] = max(below) if below else None
            finally:
                db.close()
        finally:
            broker.close()
    if not args.keep:
        _drop_database()
    result["load_end"] = _load()
    med = result["median_rate_per_s"]
    result["one_collector_vs_bare"] = med["one_collector"] / med["bare_subscriber"]
    result["default_collect_vs_bare"] = med["default_collect"] / med["bare_subscriber"]
    loads = [v for r in result["rounds"] for m in r.values()
             for v in (m["load_before"], m["load_after"])]
    result["max_load"] = max(loads)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print(result)
    return 0


def _print(r: dict) -> None:
    med = r["median_rate_per_s"]
    print(f"{r['machine']}; {r['readings']:,} readings per drain, median of {r['repeats']} "
          f"interleaved rounds; load average {r['load_start']:.2f} at start, "
          f"{r['max_load']:.2f} at worst, {r['load_end']:.2f} at end")
    if r["max_load"] > LOAD_WARN:
        print(f"WARNING: load average above {LOAD_WARN}: the ratios below are not trustworthy")
    if r["readings"] < 10000:
        print("WARNING: under 10,000 readings a drain is a few batches of 500: its rate says "
              "more about batch boundaries than about throughput (smoke test only)")
    print(f"bare subscriber (drain)   {med['bare_subscriber']:>9,.0f} msg/s")
    print(f"one collector (drain)     {med['one_collector']:>9,.0f} rows/s  "
          f"{r['one_collector_vs_bare']:.0%} of bare subscriber")
    print(f"default collect (drain)   {med['default_collect']:>9,.0f} rows/s  "
          f"{r['default_collect_vs_bare']:.0%} of bare subscriber")
    print(f"bare COPY                 {r['bare_copy']['rate_per_s']:>9,.0f} rows/s")
    for s in r.get("knee_steps", []):
        p50 = "-" if s["p50_s"] is None else f"{s['p50_s']:.3f}"
        p99 = "-" if s["p99_s"] is None else f"{s['p99_s']:.3f}"
        print(f"live {s['offered_per_s']:>7,.0f}/s offered, {s['achieved_publish_per_s']:>7,.0f}/s "
              f"published, {s['stored']:,} of {s['published']:,} stored: publish->commit "
              f"p50 {p50} s, p99 {p99} s (load {s['load_before']:.1f}->{s['load_after']:.1f})")
    for label, s in r.get("poison", {}).items():
        print(f"{label.replace('_', ' '):15s} at {s['offered_per_s']:,.0f}/s: {s['poisons']} "
              f"poisons, {s['dead_letters']} dead letters, p50 {s['p50_s']:.3f} s, "
              f"p99 {s['p99_s']:.3f} s (load {s['load_before']:.1f}->{s['load_after']:.1f})")
    if r.get("knee_steps"):
        print(f"knee (p99 > 1 s): {r['knee_per_s'] or 'not reached'}; highest rate with "
              f"p99 <= 1 s: {r['highest_rate_p99_within_1s']}")


if __name__ == "__main__":
    raise SystemExit(main())
