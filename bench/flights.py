"""Flights benchmark: many simulated drones flying at once, each watched by dispatch.

    python -m bench.flights [--drones 20] [--speedup 10] [--json]

Measured in one run on one machine:

- plan time of a 1 km² area survey (median of 20);
- with N drones flying surveys at once (simulated ArduCopters over UDP, dronekit
  monitoring each, cameras publishing frames over MQTT to a collector): every sortie's
  outcome, the position messages dispatch received per airborne second against the rate
  it asked for (telemetry rate held), and frames committed per second during the flights;
- baseline beside it: the same number of drone frames, rendered beforehand and published
  in one burst, through the same collector (the pipeline's frame rate without flights).

A private Mosquitto and a fresh database `citywatch_bench_flights` on the configured
PostgreSQL (CITYWATCH_DATABASE_URL or postgresql://postgres@127.0.0.1:5432) are used and
dropped at the end. Record `uptime`'s load average beside the numbers (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from shapely.geometry import Polygon

from citywatch import app
from citywatch import config as config_mod
from domain.geo import LocalFrame
from domain.paths import PROJECT_ROOT
from domain.registry import load as load_registry
from flights import operations, planner
from ingest.broker import start_mosquitto
from ingest.collector import Collector
from simulators.drone import FRAME, publish_pass, street_pass
from simulators.scenes import streets_from_registry
from simulators.vehicle import SimVehicle, config_for, local_fleet
from storage import sorties as store

DB_NAME = "citywatch_bench_flights"
REGISTRY_DIR = PROJECT_ROOT / "configs" / "registry"


def _admin_url() -> str:
    return os.environ.get("CITYWATCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _db(action: str) -> str:
    with psycopg.connect(_admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        if action == "create":
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return _admin_url().rsplit("/", 1)[0] + "/" + DB_NAME


def plan_time_ms(cfg, repeat: int = 20) -> float:
    frame = LocalFrame(30.32, 120.15)
    corners = [frame.to_wgs84(e, n)[::-1] for e, n in ((0, 0), (1000, 0), (1000, 1000), (0, 1000))]
    poly = Polygon(corners)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        planner.survey(poly, (30.32, 120.15), cfg)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _frames(db) -> int:
    with db.connection() as conn:
        return conn.execute("SELECT count(*) FROM frames").fetchone()[0]


def _wait_frames(db, n: int, timeout: float) -> float:
    """Seconds until `n` frames are committed (or the timeout)."""
    t0 = time.monotonic()
    while _frames(db) < n and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
    return time.monotonic() - t0


def baseline(cfg, db, frames: int) -> dict:
    """A burst of pre-rendered drone frames through the collector: frames committed per second."""
    registry = load_registry(REGISTRY_DIR)
    flight = street_pass(registry, "ST-004", stalls=2, drone_id="UAV-01", seed=7,
                         spacing_m=5.0, max_frames=frames)
    before = _frames(db)
    t0 = time.monotonic()
    publish_pass(flight, cfg.mqtt.url, cfg.mqtt.topic_prefix)
    _wait_frames(db, before + len(flight.frames), 120)
    wall = time.monotonic() - t0
    return {"frames": len(flight.frames), "wall_s": round(wall, 2),
            "frames_per_s": round(len(flight.frames) / wall, 1)}


def flights(cfg, db, drones: int, speedup: float) -> dict:
    registry = load_registry(REGISTRY_DIR)
    ids = [d.device_id for d in registry.devices if d.kind == "drone"][:drones]
    registry = local_fleet(registry, ids)
    fcfg = cfg.flights.model_copy(update={"allow_night": True, "sortie_timeout_s": 600})
    ctx = operations.Context.load(fcfg, REGISTRY_DIR, registry)
    streets = streets_from_registry(registry.streets, FRAME)
    sims = [SimVehicle(config_for(registry, i, speedup=speedup, mqtt_url=cfg.mqtt.url,
                                  topic_prefix=cfg.mqtt.topic_prefix, streets=streets,
                                  params={"LAND_SPEED": 150.0},
                                  clock_start=datetime.now(UTC) - timedelta(minutes=4))).start()
            for i in ids]
    plans = []
    for i in ids:
        dock = planner.dock(planner.drone(registry, i))
        frame = LocalFrame(*dock)
        poly = Polygon([frame.to_wgs84(e, n)[::-1] for e, n in ((50, 50), (250, 50), (250, 200), (50, 200))])
        plans.append(planner.survey(poly, dock, fcfg, alt_m=40, device_id=i))
    before = _frames(db)
    results: dict[str, store.Sortie] = {}

    def fly(plan):
        results[plan.device_id] = operations.fly(db, ctx, plan, "bench")

    t0 = time.monotonic()
    threads = [threading.Thread(target=fly, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flown = time.monotonic() - t0
    taken = sum(s.frames_taken for s in sims)
    for s in sims:
        s.stop()
    settle = _wait_frames(db, before + taken, 120)
    committed = _frames(db) - before
    rates = []
    with db.connection() as conn:
        for s in results.values():
            events = {st: at for at, st, _ in store.get(conn, s.sortie_id, events=True).events}
            if "airborne" in events and "landed" in events:
                airborne_s = (events["landed"] - events["airborne"]).total_seconds()
                rates.append(len(store.track(conn, s.sortie_id)) / airborne_s)
    outcomes: dict[str, int] = {}
    for s in results.values():
        outcomes[s.status] = outcomes.get(s.status, 0) + 1
    return {"drones": drones, "speedup": speedup, "outcomes": outcomes, "wall_s": round(flown, 2),
            "telemetry_hz_asked": fcfg.telemetry_hz,
            "telemetry_hz_received_median": round(statistics.median(rates), 2) if rates else None,
            "telemetry_hz_received_min": round(min(rates), 2) if rates else None,
            "frames_taken": taken, "frames_committed": committed,
            "settle_s": round(settle, 2),  # after the last landing, until every frame was committed
            "frames_per_s": round(committed / (flown + settle), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drones", type=int, default=20)
    ap.add_argument("--speedup", type=float, default=10.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cfg = config_mod.load(env={})
    cfg.database.url = _db("create")
    report: dict = {"load_before": os.getloadavg()}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            broker = start_mosquitto(Path(tmp))
            try:
                cfg = broker.apply(cfg)
                cfg.mqtt.topic_prefix = "bench/v1"
                cfg.mqtt.client_id = "bench-collector"
                cfg.mqtt.shared_group = None
                db = app.open_database(cfg)
                collector = Collector(cfg.for_ingest(), db).start()
                try:
                    report["plan_1km2_survey_ms"] = round(plan_time_ms(cfg.flights), 2)
                    report["flights"] = flights(cfg, db, args.drones, args.speedup)
                    report["baseline"] = baseline(cfg, db, max(1, report["flights"]["frames_taken"]))
                    report["frames_ratio"] = round(report["flights"]["frames_per_s"]
                                                   / report["baseline"]["frames_per_s"], 3)
                finally:
                    collector.stop(10)
                    db.close()
            finally:
                broker.close()
    finally:
        _db("drop")
    report["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        f, b = report["flights"], report["baseline"]
        print(f"1 km² survey planned in {report['plan_1km2_survey_ms']} ms (median of 20)")
        print(f"{f['drones']} drones at {f['speedup']:g}x: {f['outcomes']} in {f['wall_s']} s; "
              f"telemetry {f['telemetry_hz_received_median']} Hz median (min "
              f"{f['telemetry_hz_received_min']}) of {f['telemetry_hz_asked']} Hz asked")
        print(f"frames: {f['frames_committed']}/{f['frames_taken']} committed ({f['settle_s']} s after "
              f"the last landing), {f['frames_per_s']}/s during flights; baseline burst "
              f"{b['frames_per_s']}/s; ratio {report['frames_ratio']}")
        print(f"load average before {report['load_before']}, after {report['load_after']}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
