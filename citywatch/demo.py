"""`citywatch demo`: the whole pipeline on simulated devices, with nothing to set up.

An embedded PostgreSQL and a private broker start under the data directory; the demo
publishes a simulated day of fume and dust readings (known violations, one bad message of
every kind), a drone pass over a street with street stalls and cone-camera frames from
road works, runs collectors, detector workers and the rule engine over them, and ends
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
DEMO_CONES = (("P-001", "cone_fallen", 7), ("P-002", "no_helmet", 3), ("P-003", "fence_missing", 4))


def _fresh_embedded_database(data_dir: Path) -> str:
    """A new, empty demo database on the embedded server; its URL."""
    admin = embedded_url(data_dir)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
    return make_conninfo(admin, dbname=DEMO_DATABASE)


def _publish_devices(config: AppConfig, url: str, errors: list[str]) -> dict:
    """Publish the scenario, the drone pass and the cone frames through the broker at `url`
    (the private broker's publisher account); return what went out."""
    from simulators import scenario as scenarios
    from simulators.cone import cone_frames, publish_cone_frames
    from simulators.drone import publish_pass, street_pass
    from simulators.sensors import publish

    out: dict = {}
    try:
        registry = load_registry(config.resolve(config.registry.directory))
        sc = scenarios.load("demo-day", registry=registry)
        out["scenario_day"] = sc.day.isoformat()
        out["expected_cases"] = len(sc.expected_cases)
        # Frames are taken on the simulated day too, so one evaluation judges everything.
        flight = street_pass(registry, DEMO_STREET, stalls=4, start=sc.local(DRONE_AT),
                             max_frames=14, seed=7)
        out["drone_frames"] = publish_pass(flight, url, config.mqtt.topic_prefix)
        out["stalls_at"] = sorted(o.subject_id for o in flight.objects if o.subject_id)
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
            _publish_devices(config, pipeline.broker.publisher_url, errors)),
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
        web = _demo_users(pipeline.db)
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
        "web": web,
        "errors": errors,
    }


DEMO_ROLES = ("officer", "supervisor", "operator", "admin")


def _demo_users(db) -> dict:
    """One review-app user per role, with a random password the demo prints (never a
    default password), and how to open the app on the demo's data."""
    import secrets

    from review.security import hash_password
    from storage import review as review_store

    users = {}
    with db.connection() as conn:
        for role in DEMO_ROLES:
            password = secrets.token_urlsafe(12)
            review_store.add_user(conn, f"demo-{role}", role, hash_password(password),
                                  actor="citywatch-demo")
            users[f"demo-{role}"] = password
    return {"command": "citywatch serve --demo --insecure-cookies",
            "url": "http://127.0.0.1:8080/", "users": users}
