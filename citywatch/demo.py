"""`citywatch demo`: the whole pipeline on simulated devices, with nothing to set up.

An embedded PostgreSQL and a private broker start under the data directory; the demo
publishes a simulated day of fume and dust readings (known violations, one bad message of
every kind), flies one drone sortie along a street with street stalls (planned, checked and
dispatched over MAVLink to a simulated ArduCopter), publishes cone-camera frames from road
works, runs collectors, detector workers and the rule engine over them, and ends
with what was stored, what was refused and why, the cases opened with their evidence
state, and the merchants' credit codes.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from citywatch import service
from citywatch.config import AppConfig
from domain.registry import load as load_registry
from storage import frames as frame_store
from storage import stats as db_stats
from storage.db import embedded_url, stop_embedded

log = logging.getLogger(__name__)

DEMO_DATABASE = "citywatch_demo"
DEMO_STREET = "ST-001"
DRONE_AT, CONES_AT = "10:20", "10:00"  # local times on the simulated day
DRONE_SPEEDUP = 20.0  # the sortie's vehicle time runs this much faster than the demo's wall time
DEMO_CONES = (("P-001", "cone_fallen", 7), ("P-002", "no_helmet", 3), ("P-003", "fence_missing", 4))


def _fresh_embedded_database(data_dir: Path) -> str:
    """A new, empty demo database on the embedded server; its URL."""
    admin = embedded_url(data_dir)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
    return make_conninfo(admin, dbname=DEMO_DATABASE)


def _fly_street(config: AppConfig, url: str, db, registry, start: datetime) -> dict:
    """One sortie along the demo street: planned, checked, uploaded and flown by dispatch
    on a simulated ArduCopter whose camera sees four street stalls and publishes through
    the broker at `url`; returns what it did."""
    from flights.operations import Context, fly
    from flights.planner import plan_for_street
    from simulators.drone import FRAME, place_street_objects
    from simulators.scenes import streets_from_registry
    from simulators.vehicle import SimVehicle, config_for, local_fleet

    plan = plan_for_street(registry, DEMO_STREET, config.flights, alt_m=40)
    fleet = local_fleet(registry, [plan.device_id])
    placed = place_street_objects(registry, DEMO_STREET, stalls=4, seed=7)
    sim = SimVehicle(config_for(
        fleet, plan.device_id, speedup=DRONE_SPEEDUP, mqtt_url=url,
        topic_prefix=config.mqtt.topic_prefix, objects=[o.scene for o in placed],
        streets=streets_from_registry(registry.streets, FRAME), clock_start=start, seed=7)).start()
    try:
        ctx = Context.load(config.flights, config.resolve(config.registry.directory), fleet)
        sortie = fly(db, ctx, plan, "demo", when=start)
    finally:
        sim.stop()  # after the camera has published every frame it took
    return {"sortie": {"sortie_id": sortie.sortie_id, "drone": plan.device_id,
                       "status": sortie.status, "reason": sortie.reason,
                       "mission_id": sortie.mission_id},
            "drone_frames": sim.frames_published,
            "stalls_at": sorted(o.subject_id for o in placed if o.subject_id)}


def _publish_devices(config: AppConfig, url: str, db, errors: list[str]) -> dict:
    """Publish the scenario, fly the drone sortie, publish the cone frames through the broker
    at `url` (the private broker's publisher account); return what went out."""
    from simulators import scenario as scenarios
    from simulators.cone import cone_frames, publish_cone_frames
    from simulators.sensors import publish

    out: dict = {}
    try:
        registry = load_registry(config.resolve(config.registry.directory))
        sc = scenarios.load("demo-day", registry=registry)
        out["scenario_day"] = sc.day.isoformat()
        out["expected_cases"] = len(sc.expected_cases)
        # Frames are taken on the simulated day too, so one evaluation judges everything.
        out.update(_fly_street(config, url, db, registry, sc.local(DRONE_AT)))
        cones = 0
        for i, (permit, scenario_name, n) in enumerate(DEMO_CONES):
            frames = cone_frames(registry, permit, scenario=scenario_name, frames=n,
                                 start=sc.local(CONES_AT), interval_s=60, seed=i + 1)
            cones += publish_cone_frames(frames, url, config.mqtt.topic_prefix)
        out["cone_frames"] = cones
        stats = publish(url, config.mqtt.topic_prefix, sc.messages(),
                        client_id="citywatch-demo-fleet")
        out["sensor_messages"] = stats.published
        out["publish_s"] = round(stats.wall_s, 1)
        out["until"] = sc.end.isoformat()
    except Exception as exc:  # reported in the summary; the pipeline keeps what arrived
        log.exception("demo publisher failed")
        errors.append(f"publisher: {exc}")
    return out


def run_demo(config: AppConfig, seconds: float = 60.0) -> dict:
    """Run the demo for at most `seconds` (plus the final evaluation); return the summary."""
    from rules.engine import evaluate
    from rules.summary import demo_summary

    t0 = time.monotonic()
    data_dir = config.data_path / "demo"
    shutil.rmtree(data_dir / "mosquitto", ignore_errors=True)  # no queued leftovers
    config = config.model_copy(deep=True)
    config.data_dir = str(data_dir)
    config.mqtt.url = None
    config.mqtt.client_id = "citywatch-demo-collector"
    config.database.url = _fresh_embedded_database(data_dir)
    config.rules.enabled = False  # evaluated once, below, over everything that arrived

    stop = threading.Event()
    pipeline = service.start(config, stop)
    config = pipeline.config
    errors: list[str] = []
    published: dict = {}
    publisher = threading.Thread(
        target=lambda: published.update(
            _publish_devices(config, pipeline.broker.publisher_url, pipeline.db, errors)),
        name="demo-publisher", daemon=True)
    publisher.start()

    def drained() -> bool:
        if publisher.is_alive():
            return False
        with pipeline.db.connection() as conn:
            counts = frame_store.status_counts(conn)
        return (pipeline.collector.wait_idle(0.5)
                and counts.get("pending", 0) + counts.get("processing", 0) == 0)

    finished = service.wait_for(drained, max(1.0, seconds - (time.monotonic() - t0)))
    collector = pipeline.collector.stop()
    pipeline.collector = None
    stop.set()
    for t in pipeline.threads:
        t.join(30)
    try:
        until = datetime.fromisoformat(published["until"]) if "until" in published else None
        result = evaluate(config.rules, pipeline.db, until=until)
        summary = demo_summary(config.rules, pipeline.db)
        with pipeline.db.connection() as conn:
            stats = db_stats.collect(conn)
            frames = frame_store.status_counts(conn)
    finally:
        pipeline.db.close()
        pipeline.broker.close()
        stop_embedded(data_dir)  # the demo leaves nothing running behind it
    return {
        "finished": finished,
        "seconds": round(time.monotonic() - t0, 1),
        "published": published,
        "collector": asdict(collector),
        "tables": stats["tables"],
        "dead_letters_by_reason": stats["dead_letters_by_reason"],
        "frames": frames,
        "evaluation": result.as_dict(),
        **summary,
        "errors": errors,
    }
