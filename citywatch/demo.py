"""`citywatch demo`: the whole pipeline on simulated devices, with nothing to set up.

An embedded PostgreSQL and a private broker start under <data_dir>/demo; the demo
publishes a simulated day of fume and dust readings (known violations, one bad message of
every kind), flies one drone sortie along a street with street stalls (planned, checked and
dispatched over MAVLink to a simulated ArduCopter), publishes cone-camera frames from road
works, runs collectors, detector workers and the rule engine over them, takes a few cases
through an officer's decisions, and ends with what was stored, what was refused and why,
what it expected to find, found and missed (and why), the cases with their evidence state,
and the credit codes with their history.

The demo writes the embedded server's default database, so afterwards every read command
sees its results with one setting, which the demo prints:
`CITYWATCH_DATA_DIR=<data_dir>/demo citywatch cases list`.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from citywatch import service
from citywatch.config import AppConfig
from domain.registry import load as load_registry
from storage import cases as case_store
from storage import credit as credit_store
from storage import frames as frame_store
from storage import rule_queries
from storage import stats as db_stats
from storage.db import Database, embedded_url, stop_embedded

log = logging.getLogger(__name__)

DEMO_STREET = "ST-001"
DRONE_AT, CONES_AT = "10:20", "10:00"  # local times on the simulated day
# (permit, cone-camera scenario, frames, the rule that scenario should open a case of)
DEMO_CONES = (("P-001", "cone_fallen", 7, "cone.fallen_not_restored"),
              ("P-002", "no_helmet", 3, "cone.no_helmet"),
              ("P-003", "fence_missing", 4, "cone.fence_missing"))
STALL_RULE = "drone.street_vending"
OFFICER = "demo-officer"
PROGRESS_EVERY_S = 5.0
DRONE_SPEEDUP = 20.0  # the sortie's vehicle time runs this much faster than the demo's wall time


def _fresh_default_database(data_dir: Path) -> str:
    """Empty the embedded server's default database (the one every command uses when no
    URL is configured); its URL."""
    url = embedded_url(data_dir)
    name = conninfo_to_dict(url).get("dbname") or "postgres"
    with psycopg.connect(make_conninfo(url, dbname="template1"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url


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

    out: dict = {"expected": []}
    try:
        registry = load_registry(config.resolve(config.registry.directory))
        sc = scenarios.load("demo-day", registry=registry)
        out["scenario_day"] = sc.day.isoformat()
        out["expected"] += [{"rule_id": c.rule_id, "subject_id": c.subject_id,
                             "source": "demo-day scenario"} for c in sc.expected_cases]
        # Frames are taken on the simulated day too, so one evaluation judges everything.
        out.update(_fly_street(config, url, db, registry, sc.local(DRONE_AT)))
        out["expected"] += [{"rule_id": STALL_RULE, "subject_id": s,
                             "source": f"street stall on the sortie's route along {DEMO_STREET}"}
                            for s in out["stalls_at"]]
        cones = 0
        for i, (permit, scenario_name, n, rule_id) in enumerate(DEMO_CONES):
            frames = cone_frames(registry, permit, scenario=scenario_name, frames=n,
                                 start=sc.local(CONES_AT), interval_s=60, seed=i + 1)
            cones += publish_cone_frames(frames, url, config.mqtt.topic_prefix)
            out["expected"].append({"rule_id": rule_id, "subject_id": permit,
                                    "source": f"cone camera: {scenario_name}, {n} frames"})
        out["cone_frames"] = cones
        stats = publish(url, config.mqtt.topic_prefix, sc.messages(),
                        client_id="citywatch-demo-fleet")
        out["sensor_messages"] = stats.published
        out["publish_s"] = round(stats.wall_s, 1)
        out["until"] = sc.end
    except Exception as exc:  # reported in the summary; the pipeline keeps what arrived
        log.exception("demo publisher failed")
        errors.append(f"publisher: {exc}")
    return out


def _progress(phase: str, pipeline: service.Pipeline) -> tuple[bool, dict]:
    """Whether the pipeline has drained (collector idle, no frame waiting), and counts."""
    with pipeline.db.connection() as conn:
        frames = frame_store.status_counts(conn)
    c = pipeline.collector.stats()
    idle = pipeline.collector.wait_idle(0.5)
    waiting = frames["pending"] + frames["processing"]
    print(f"demo: {phase}: received {c.received:,} messages, stored {c.stored:,}, "
          f"dead letters {sum(c.dead_letters.values()):,}; frames detected "
          f"{frames['done']:,}, waiting {waiting:,}", file=sys.stderr, flush=True)
    return idle and waiting == 0, {"collector_queue": c.queued, "frames_waiting": waiting}


def _officer_decisions(db: Database) -> list[dict]:
    """Take the first two sensor violations with complete evidence (different subjects)
    through review as an officer would: one confirmed and notified, one confirmed,
    notified and rectified; so credit codes and their history have something to show."""
    plans = (("under_review", "confirmed", "notified"),
             ("under_review", "confirmed", "notified", "rectified"))
    out: list[dict] = []
    with db.connection() as conn:
        chosen: list[case_store.Case] = []
        for c in case_store.list_cases(conn, status="flagged"):
            if (c.kind == "violation" and c.evidence_state == "ready"
                    and c.rule_id.startswith(("fume.", "dust."))
                    and c.subject_id not in {x.subject_id for x in chosen}):
                chosen.append(c)
        for case, steps in zip(chosen, plans, strict=False):
            for status in steps:
                case_store.transition(conn, case.case_id, status, OFFICER,
                                      f"demo: {status.replace('_', ' ')} after reviewing "
                                      "the reading series")
            out.append({"case_id": case.case_id, "rule_id": case.rule_id,
                        "subject_id": case.subject_id, "steps": list(steps)})
    return out


def _why_missed(conn: psycopg.Connection, rule, subject_id: str, devices: list[str],
                start: datetime, end: datetime) -> str:
    """What the stored data shows about an expected case the rules did not open."""
    classes = getattr(rule, "classes", None)
    if classes:
        min_conf = getattr(rule, "min_confidence", 0.0)
        frames = rule_queries.frames_with_detections(
            conn, source_kinds=rule.source_kinds, classes=classes, start=start, end=end)
        at = [f for f in frames if any(d.subject_id == subject_id for d in f.detections)]
        sure = [f for f in at if any(d.subject_id == subject_id and d.confidence >= min_conf
                                     for d in f.detections)]
        elsewhere = sum(1 for f in frames for d in f.detections if d.subject_id != subject_id)
        return (f"{len(sure)} frame(s) with {'/'.join(classes)} at {subject_id} at confidence "
                f">= {min_conf} (the rule needs {getattr(rule, 'min_frames', 1)}), "
                f"{len(at) - len(sure)} more below it; {elsewhere} such detection(s) in these "
                "frames were matched to another subject or to none")
    n = sum(len(rule_queries.series(conn, d, ["fume_mg_m3"], start, end)) for d in devices)
    return (f"the rule found no episode in the {n:,} stored readings of "
            f"{', '.join(devices) or 'its devices'}")


def _expectations(config: AppConfig, db: Database, expected: list[dict],
                  day: datetime | None) -> dict:
    """Each expected case found or missed (with why), and the cases nobody listed."""
    from rules.engine import load_rules

    rules = {r.id: r for r in load_rules(config.rules).rules}
    registry = load_registry(config.resolve(config.registry.directory))
    with db.connection() as conn:
        cases = case_store.list_cases(conn, include_fused=True)
        have = {(c.rule_id, c.subject_id) for c in cases}
        found, missed = [], []
        for e in expected:
            if (e["rule_id"], e["subject_id"]) in have:
                found.append(e)
                continue
            why = "the rule is not in the rule set"
            if e["rule_id"] in rules and day is not None:
                devices = sorted(d.device_id for d in registry.devices
                                 if d.subject_id == e["subject_id"])
                why = _why_missed(conn, rules[e["rule_id"]], e["subject_id"], devices,
                                  day, day + timedelta(days=1))
            missed.append(e | {"why": why})
    listed = {(e["rule_id"], e["subject_id"]) for e in expected}
    return {"expected": len(expected), "found": found, "missed": missed,
            "also_found": sorted({f"{c.rule_id} {c.subject_id}" for c in cases
                                  if (c.rule_id, c.subject_id) not in listed})}


def run_demo(config: AppConfig, seconds: float = 300.0) -> dict:
    """Run the demo: publish everything, wait for the pipeline to drain (at most `seconds`
    once publishing is done, showing progress), evaluate, decide some cases; the summary."""
    from rules.engine import evaluate
    from rules.summary import demo_summary

    t0 = time.monotonic()
    data_dir = config.data_path / "demo"
    shutil.rmtree(data_dir / "mosquitto", ignore_errors=True)  # no queued leftovers
    config = config.model_copy(deep=True)
    config.data_dir = str(data_dir)
    config.mqtt.url = None
    config.mqtt.client_id = "citywatch-demo-collector"
    config.database.url = _fresh_default_database(data_dir)
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
    try:
        while publisher.is_alive():
            publisher.join(PROGRESS_EVERY_S)
            _progress("publishing", pipeline)
        deadline = time.monotonic() + seconds
        while True:
            drained, left = _progress(f"draining (at most {seconds:.0f} s)", pipeline)
            if drained or time.monotonic() >= deadline or pipeline.collector.failed.is_set():
                break
            time.sleep(min(PROGRESS_EVERY_S, max(0.0, deadline - time.monotonic())))
        if pipeline.collector.failed.is_set():  # what it held is not stored: say so, exit 1
            errors.append(f"collector: {pipeline.collector.failure}")
        collector = pipeline.collector.stop()
        pipeline.collector = None
        stop.set()
        for t in pipeline.threads:
            t.join(30)
        day = None
        if "until" in published:
            day = published["until"] - timedelta(days=1)
        result = evaluate(config.rules, pipeline.db, until=published.get("until"))
        decisions = _officer_decisions(pipeline.db)
        summary = demo_summary(config.rules, pipeline.db)
        web = _demo_users(pipeline.db)
        expectations = _expectations(config, pipeline.db, published.pop("expected", []), day)
        with pipeline.db.connection() as conn:
            stats = db_stats.collect(conn)
            frames = frame_store.status_counts(conn)
            history = {d["subject_id"]: [
                {"code": h.code, "since": h.since, "reason": h.reason}
                for h in credit_store.history(conn, d["subject_id"])] for d in decisions}
    finally:
        pipeline.db.close()
        pipeline.broker.close()
        stop_embedded(data_dir)  # the demo leaves nothing running behind it
    cut = None if drained else (
        f"stopped waiting after {seconds:.0f} s (--seconds): {left['collector_queue']:,} "
        f"messages still queued in the collector and {left['frames_waiting']:,} frames not "
        "yet detected were left out of the evaluation; their cases may be missing")
    return {
        "finished": drained,
        "cut": cut,
        "seconds": round(time.monotonic() - t0, 1),
        "published": published,
        "collector": asdict(collector),
        "tables": stats["tables"],
        "dead_letters_by_reason": stats["dead_letters_by_reason"],
        "frames": frames,
        "evaluation": result.as_dict(),
        **summary,
        "web": web,
        "expectations": expectations,
        "officer_decisions": decisions,
        "credit_history": history,
        "timezone": config.rules.timezone,
        "look_again": f"CITYWATCH_DATA_DIR={shlex.quote(str(data_dir.resolve()))} "
                      "citywatch cases list",
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


def format_demo(s: dict, format_cases) -> str:
    """The demo summary as lines for people."""
    pub, col = s["published"], s["collector"]
    tz = ZoneInfo(s["timezone"])
    lines = [f"citywatch demo — {s['seconds']} s", "",
             f"published: {pub.get('sensor_messages', 0):,} sensor messages of the simulated "
             f"day {pub.get('scenario_day', '?')}, {pub.get('drone_frames', 0)} drone frames, "
             f"{pub.get('cone_frames', 0)} cone-camera frames",
             f"collector: received {col['received']:,}, stored {col['stored']:,}, "
             f"exact repeats {col['duplicates']:,}, dead letters "
             f"{sum(col['dead_letters'].values()):,}",
             "rows: " + ", ".join(f"{t} {n:,}" for t, n in s["tables"].items()
                                  if t not in ("subjects", "devices"))]
    if s["cut"]:
        lines.append(f"CUT: {s['cut']}")
    if s["dead_letters_by_reason"]:
        lines.append("dead letters by reason: " + ", ".join(
            f"{r} {n}" for r, n in s["dead_letters_by_reason"].items()))
    lines.append("frames: " + ", ".join(f"{k} {v}" for k, v in s["frames"].items()))
    if pub.get("sortie"):
        so = pub["sortie"]
        lines.append(f"drone sortie #{so['sortie_id']} by {so['drone']}: {so['status']}"
                     + (f" ({so['reason']})" if so["reason"] else "")
                     + f", mission {so['mission_id']}")
    if pub.get("stalls_at"):
        lines.append("street stalls placed in front of: " + ", ".join(pub["stalls_at"]))
    ex = s["expectations"]
    lines += ["", f"expected {ex['expected']} cases, found {len(ex['found'])}, "
                  f"missed {len(ex['missed'])}"]
    lines += [f"  missed {m['rule_id']} {m['subject_id']} ({m['source']}): {m['why']}"
              for m in ex["missed"]]
    if ex["also_found"]:
        lines.append("  also found (not in the list): " + ", ".join(ex["also_found"]))
    lines += ["", format_cases(s)]
    if s["officer_decisions"]:
        lines.append(f"officer decisions ({OFFICER}):")
        for d in s["officer_decisions"]:
            lines.append(f"  #{d['case_id']} {d['rule_id']} {d['subject_id']}: "
                         + " -> ".join(d["steps"]))
        for subject, hist in s["credit_history"].items():
            lines.append(f"  credit history of {subject}: " + "; ".join(
                f"{h['code']} since {_local(h['since'], tz)} ({h['reason']})" for h in hist))
    lines += ["", "to look at the results again (cases, credit codes, evidence):",
              f"  {s['look_again']}"]
    if s.get("web"):
        w = s["web"]
        lines += ["", f"review the cases in a browser: {w['command']}, then open {w['url']}",
                  "  users (passwords made for this demo): " + ", ".join(
                      f"{u} / {p}" for u, p in w["users"].items())]
    for e in s["errors"]:
        lines.append(f"ERROR {e}")
    return "\n".join(lines)


def _local(value, tz) -> str:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) \
        else str(value)
