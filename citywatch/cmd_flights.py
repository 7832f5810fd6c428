"""Drone operators' commands: `citywatch flights ...` and the MAVLink vehicle simulator.

    citywatch flights plan (--subject ID | --street ID | --polygon FILE) [--drone UAV-03] [--alt 60] [-o P.plan]
    citywatch flights check P.plan [--at TIME]
    citywatch flights fly P.plan [--drone UAV-03]
    citywatch flights status | list | abort SORTIE | approve SORTIE | coverage --since T
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from citywatch import app
from citywatch.console import emit, load_config, parse_time, time_arg
from citywatch.service import stop_on_signals

log = logging.getLogger(__name__)


def register(sub) -> None:
    """Add this part's sub-commands to the `citywatch` parser."""
    p = sub.add_parser("flights", help="drone sorties: plan, check, fly, watch, abort, coverage")
    fsub = p.add_subparsers(dest="action", required=True)
    a = fsub.add_parser("plan", help="plan a sortie and write it as a QGroundControl .plan file")
    what = a.add_mutually_exclusive_group(required=True)
    what.add_argument("--subject", help="point inspection of a registry subject (site, merchant...)")
    what.add_argument("--street", help="corridor along a registry street")
    what.add_argument("--polygon", help="area survey of a GeoJSON polygon (file)")
    a.add_argument("--drone", help="drone id (default: the nearest drone)")
    a.add_argument("--alt", type=float, help="altitude above ground (m)")
    a.add_argument("--pattern", choices=("orbit", "hover"), help="point inspection pattern")
    a.add_argument("-o", "--out", help="write the .plan file here")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=flights_plan)
    a = fsub.add_parser("check", help="check a .plan file against every constraint")
    a.add_argument("plan")
    a.add_argument("--drone", help="fly it with this drone instead of the planned one")
    a.add_argument("--at", type=time_arg, help="planned takeoff time (ISO 8601; local if no offset; default now)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=flights_check)
    a = fsub.add_parser("fly", help="check, upload and fly a .plan file; returns when it has landed")
    a.add_argument("plan")
    a.add_argument("--drone", help="fly it with this drone instead of the planned one")
    a.add_argument("--actor", default=f"operator:{getpass.getuser()}")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=flights_fly)
    a = fsub.add_parser("status", help="sorties in the air: position, battery, mode")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=flights_status)
    a = fsub.add_parser("list", help="sorties, newest first")
    a.add_argument("--status", action="append", help="only these statuses (repeatable)")
    a.add_argument("--since", type=time_arg, help="created since (ISO 8601)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=flights_list)
    a = fsub.add_parser("show", help="one sortie with its history")
    a.add_argument("sortie", type=int)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=flights_show)
    a = fsub.add_parser("abort", help="bring a sortie's drone home (RTL)")
    a.add_argument("sortie", type=int)
    a.add_argument("--reason", default="operator abort")
    a.add_argument("--actor", default=f"operator:{getpass.getuser()}")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=flights_abort)
    a = fsub.add_parser("approve", help="let a sortie a rule requested fly")
    a.add_argument("sortie", type=int)
    a.add_argument("--actor", default=f"operator:{getpass.getuser()}")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=flights_approve)
    a = fsub.add_parser("coverage", help="subjects photographed (fit frames) and missed")
    a.add_argument("--since", type=time_arg, help="from (ISO 8601; default 24 hours ago)")
    a.add_argument("--until", type=time_arg, help="until (default now)")
    a.add_argument("--sortie", type=int, help="one sortie only")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=flights_coverage)

    p = sub.add_parser("simulate-vehicle",
                       help="a simulated ArduPilot Copter on MAVLink/UDP for a registry drone")
    p.add_argument("--drone", default="UAV-03", help="drone id (registry)")
    p.add_argument("--speedup", type=float, default=1.0, help="vehicle time runs K times wall time")
    p.add_argument("--battery", type=float, default=100.0, help="battery at start (%%)")
    p.add_argument("--street", help="put stalls and traffic on this registry street")
    p.add_argument("--stalls", type=int, default=4, help="stalls on --street")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=simulate_vehicle)


def simulate_vehicle(args: argparse.Namespace) -> int:
    from domain.registry import load as load_registry
    from simulators import vehicle
    from simulators.drone import FRAME, place_street_objects
    from simulators.scenes import streets_from_registry

    cfg = load_config(args)
    registry = load_registry(cfg.resolve(cfg.registry.directory))
    objects = ([o.scene for o in place_street_objects(registry, args.street, stalls=args.stalls,
                                                      seed=args.seed)] if args.street else [])
    vcfg = vehicle.config_for(registry, args.drone, speedup=args.speedup,
                              battery_pct=args.battery, mqtt_url=cfg.mqtt.url or None,
                              topic_prefix=cfg.mqtt.topic_prefix, objects=objects,
                              streets=streets_from_registry(registry.streets, FRAME),
                              seed=args.seed)
    if not vcfg.mqtt_url:
        log.warning("no mqtt.url configured: the camera takes no frames to the pipeline")
    log.info("%s: ArduCopter simulator sending to %s:%d (ground station: %s), speed-up %g",
             args.drone, vcfg.gcs_host, vcfg.gcs_port,
             next(d for d in registry.devices if d.device_id == args.drone).props["connection"],
             args.speedup)
    return vehicle.run(vcfg, stop_on_signals())


def _context(cfg):
    from flights.operations import Context

    return Context.load(cfg.flights, cfg.resolve(cfg.registry.directory))


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _load_plan(ctx, path: str, drone: str | None):
    from flights import planner, qgc

    plan = qgc.load(Path(path))
    return planner.with_device(plan, ctx.registry, drone) if drone else plan


def _check_text(plan, result) -> str:
    head = (f"{plan.kind} by {plan.device_id or '(no drone)'}: {len(plan.waypoints)} waypoints, "
            f"{result.length_m / 1000:.2f} km, about {result.duration_s / 60:.1f} min at "
            f"{plan.alt_m:g} m; mission {plan.mission_id()}")
    if result.ok:
        return head + "\nOK: every constraint met"
    return head + "\nREFUSED:\n" + "\n".join(f"  {p.code}: {p.message}" for p in result.problems)


def _check_json(plan, result) -> dict:
    return {"plan": plan.to_json(), "mission_id": plan.mission_id(), "ok": result.ok,
            "length_m": round(result.length_m, 1), "duration_s": round(result.duration_s, 1),
            "problems": [{"code": p.code, "message": p.message} for p in result.problems]}


def flights_plan(args: argparse.Namespace) -> int:
    from flights import operations, planner, qgc

    cfg = load_config(args)
    ctx = _context(cfg)
    try:
        polygon = json.loads(Path(args.polygon).read_text(encoding="utf-8")) if args.polygon else None
        plan = planner.plan_for(ctx.registry, ctx.cfg, subject=args.subject, street=args.street,
                                    polygon=polygon, device_id=args.drone, alt_m=args.alt,
                                    pattern=args.pattern)
    except (planner.PlanError, OSError, ValueError, KeyError) as exc:
        return _fail(str(exc))
    result = operations.check(ctx, plan)
    if args.out:
        qgc.save(plan, Path(args.out))
        log.info("wrote %s", args.out)
    emit(_check_json(plan, result) | {"file": args.out}, args.json, _check_text(plan, result))
    return 0 if result.ok else 1


def flights_check(args: argparse.Namespace) -> int:
    from flights import operations, planner

    cfg = load_config(args)
    ctx = _context(cfg)
    try:
        plan = _load_plan(ctx, args.plan, args.drone)
        result = operations.check(ctx, plan, parse_time(args.at, cfg.flights.timezone))
    except planner.PlanError as exc:
        return _fail(str(exc))
    emit(_check_json(plan, result), args.json, _check_text(plan, result))
    return 0 if result.ok else 1


def _sortie_text(s) -> str:
    last = s.last_point
    where = (f" at {last[1]:.6f},{last[2]:.6f} {last[3]:.0f} m, battery {last[4]} %, {last[5]}"
             if last else "")
    subjects = ",".join(s.subject_ids[:3]) + ("…" if len(s.subject_ids) > 3 else "")
    return (f"#{s.sortie_id:<5} {s.status:<10} {s.device_id or '-':<7} {s.kind:<10} "
            f"{subjects:<24} {s.reason}{where}")


def flights_fly(args: argparse.Namespace) -> int:
    from flights import operations, planner

    cfg = load_config(args)
    ctx = _context(cfg)
    try:
        plan = _load_plan(ctx, args.plan, args.drone)
    except planner.PlanError as exc:
        return _fail(str(exc))
    db = app.open_database(cfg, name="citywatch-flights")
    try:
        sortie = operations.fly(db, ctx, plan, args.actor)
    except planner.PlanError as exc:
        return _fail(str(exc))
    finally:
        db.close()
    emit(sortie.as_dict(), args.json, _sortie_text(sortie))
    return 0 if sortie.status == "landed" else 1


def _with_db(args, fn):
    cfg = load_config(args)
    db = app.open_database(cfg, name="citywatch-flights")
    try:
        with db.connection() as conn:
            return fn(cfg, conn)
    finally:
        db.close()


def flights_status(args: argparse.Namespace) -> int:
    from storage import sorties as store

    rows = _with_db(args, lambda cfg, conn: store.list_sorties(
        conn, status=[*store.ACTIVE, "planned", "requested"]))
    emit([s.as_dict() for s in rows], args.json,
         "\n".join(_sortie_text(s) for s in rows) or "no sortie planned or in the air")
    return 0


def flights_list(args: argparse.Namespace) -> int:
    from storage import sorties as store

    def run(cfg, conn):
        return store.list_sorties(conn, status=args.status,
                                  since=parse_time(args.since, cfg.flights.timezone))

    rows = _with_db(args, run)
    emit([s.as_dict() for s in rows], args.json, "\n".join(_sortie_text(s) for s in rows) or "no sorties")
    return 0


def flights_show(args: argparse.Namespace) -> int:
    from storage import sorties as store

    try:
        s = _with_db(args, lambda cfg, conn: store.get(conn, args.sortie, events=True))
    except store.SortieNotFound as exc:
        return _fail(str(exc))
    emit(s.as_dict(), args.json, _sortie_text(s) + "\n" + "\n".join(
        f"  {at:%Y-%m-%d %H:%M:%S} {st:<10} {r}" for at, st, r in s.events))
    return 0


def _change(args, action) -> int:
    from storage import sorties as store

    try:
        s = _with_db(args, action)
    except (store.SortieNotFound, store.SortieStateError) as exc:
        return _fail(str(exc), 1)
    emit(s.as_dict(), args.json, _sortie_text(s))
    return 0


def flights_abort(args: argparse.Namespace) -> int:
    from storage import sorties as store

    return _change(args, lambda cfg, conn: store.request_abort(conn, args.sortie, args.actor,
                                                               args.reason))


def flights_approve(args: argparse.Namespace) -> int:
    from storage import sorties as store

    return _change(args, lambda cfg, conn: store.approve(conn, args.sortie, args.actor))


def flights_coverage(args: argparse.Namespace) -> int:
    from domain.registry import load as load_registry
    from flights import coverage
    from storage import sorties as store

    def run(cfg, conn):
        registry = load_registry(cfg.resolve(cfg.registry.directory))
        if args.sortie:
            return {"sorties": [coverage.of_sortie(conn, registry, store.get(conn, args.sortie)).as_dict()]}
        until = parse_time(args.until, cfg.flights.timezone) or datetime.now(UTC)
        since = parse_time(args.since, cfg.flights.timezone) or until - timedelta(days=1)
        return coverage.of_period(conn, registry, since, until)

    try:
        report = _with_db(args, run)
    except store.SortieNotFound as exc:
        return _fail(str(exc))
    lines = [f"#{c['sortie_id']}: {len(c['covered'])}/{len(c['planned'])} planned subjects "
             f"photographed ({c['fit_frames']} fit of {c['frames']} frames); missed: "
             f"{', '.join(c['missed']) or 'none'}" for c in report["sorties"]]
    if "period" in report:
        p = report["period"]
        lines.append(f"period: {len(p['covered'])}/{len(p['planned'])} planned subjects photographed, "
                     f"{len(p['extra'])} more seen; missed: {', '.join(p['missed']) or 'none'}")
    emit(report, args.json, "\n".join(lines))
    return 0
