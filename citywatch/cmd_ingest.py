"""`citywatch simulate SCENARIO` and `citywatch collect`: the ingest part's sub-commands."""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict

from citywatch import app, supervisor
from citywatch.console import emit, load_config
from citywatch.monitor import Monitor
from citywatch.service import stop_on_signals
from ingest import mqtturl
from ingest.broker import ensure_broker
from ingest.collector import Collector
from ingest.errors import IngestError
from simulators import scenario as scenarios
from simulators.sensors import publish

log = logging.getLogger(__name__)

EXIT_FAILED = 70  # EX_SOFTWARE: a collector thread could not go on; a supervisor restarts it


def register(sub) -> None:
    """Add this part's sub-commands to the `citywatch` parser."""
    p = sub.add_parser("simulate", help="publish a scenario's fume / dust / telemetry messages")
    p.add_argument("scenario", help="a file, or a name under configs/scenarios/ (demo-day)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1440.0,
                      help="event time runs this many times faster than wall time "
                           "(default 1440: a day in a minute)")
    pace.add_argument("--rate", type=float, help="messages per second instead of --speed")
    pace.add_argument("--fast", action="store_true", help="as fast as the broker takes them")
    p.add_argument("--day", help="simulated local day (ISO date or 'yesterday'; default: the file's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=simulate)

    p = sub.add_parser("collect", help="run MQTT collectors (one per core, supervised) until "
                                       "SIGTERM / Ctrl-C")
    p.add_argument("--client-id", help="MQTT client id (default mqtt.client_id of the config)")
    p.add_argument("--processes", type=int,
                   help="collector processes, each taking one partition of the devices "
                        "(default ingest.processes, else one per CPU core; 1 with "
                        "mqtt.shared_group)")
    p.add_argument("--partition", type=_partition, metavar="I/N",
                   help="run only partition I of N, in this process (what the supervisor "
                        "starts; also how to spread partitions over machines)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="machine-readable final counters")
    p.set_defaults(func=collect)


def _partition(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, e.g. 0/4, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"partition {i} is not in 0..{n - 1}")
    return i, n


def simulate(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    if not cfg.mqtt.url:
        raise SystemExit("simulate needs a broker: set mqtt.url or CITYWATCH_MQTT_URL")
    try:
        sc = scenarios.load(args.scenario, day=args.day)
    except scenarios.ScenarioError as exc:
        raise SystemExit(str(exc)) from None
    stop = stop_on_signals()
    speed = None if (args.fast or args.rate) else args.speed
    log.info("scenario %s, day %s: publishing to %s", sc.spec.name, sc.day, cfg.mqtt.topic_prefix)
    stats = publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, sc.messages(), speed=speed,
                    rate=args.rate, stop=stop, ca_file=cfg.mqtt.ca_file)
    data = {"scenario": sc.spec.name, "day": sc.day.isoformat(), "published": stats.published,
            "by_expected": stats.by_expected, "wall_s": round(stats.wall_s, 2),
            "rate_per_s": round(stats.rate, 1),
            "expected_cases": [{"rule_id": c.rule_id, "subject_id": c.subject_id,
                                "episode_start": c.episode_start}
                               for c in sc.expected_cases]}
    emit(data, args.json, f"published {stats.published:,} messages of {sc.spec.name} "
                          f"({sc.day}) in {stats.wall_s:.1f} s, {stats.rate:,.0f}/s")
    return 0


def collect(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    stop = stop_on_signals()
    if args.partition is not None:
        processes = 1
    elif args.processes is not None:
        processes = args.processes
    else:
        processes = supervisor.collector_processes(cfg)
    if processes < 1:
        raise SystemExit("--processes must be at least 1")
    if processes > 1 and cfg.mqtt.shared_group:
        raise SystemExit("mqtt.shared_group and several processes exclude each other here: "
                         "start one collector per --client-id, or set mqtt.shared_group empty")
    broker = ensure_broker(cfg.for_ingest())
    cfg = broker.apply(cfg)
    # migrated once, by the supervisor: a partition's process takes the database as it is
    db = app.open_database(cfg, migrate=args.partition is None)
    try:
        if processes == 1:
            return _collect_here(args, cfg, db, stop, args.partition or (0, 1))
        db.close()
        return _supervise(args, cfg, db.url, processes, stop)
    finally:
        db.close()
        broker.close()


def _collect_here(args, cfg, db, stop, partition: tuple[int, int]) -> int:
    monitor = Monitor()
    try:
        collector = Collector(cfg.for_ingest(), db, client_id=args.client_id, partition=partition,
                              metrics=monitor.collector).start()
        log.info("collector %s: %s from %s", collector.client_id, collector.subscription,
                 mqtturl.redact(cfg.mqtt.url))
        if cfg.monitor.port is not None:
            monitor.add_check("collector", lambda: monitor.collector.health(
                cfg.monitor.ack_stall_s))
            monitor.serve(cfg.monitor.host, cfg.monitor.port)
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        while not stop.wait(0.5) and not collector.failed.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
        stats = collector.stop()
    except IngestError as exc:
        raise SystemExit(str(exc)) from None
    finally:
        monitor.close()
    emit(asdict(stats), args.json,
         f"received {stats.received:,}, stored {stats.stored:,}, duplicates "
         f"{stats.duplicates:,}, dead letters {stats.dead_lettered:,}")
    if stats.failure is not None:
        log.critical("collector stopped by itself: %s", stats.failure)
        return EXIT_FAILED
    return 0


def _supervise(args, cfg, db_url: str, n: int, stop) -> int:
    """Run partitions 0..n-1 as child processes; restart one that dies (saying why, with
    backoff), stop them all with SIGTERM (SIGKILL after the grace period) when asked."""
    children = supervisor.collector_children(cfg, db_url, n, verbose=args.verbose,
                                             client_id=args.client_id)
    log.info("supervising %d collector processes (one partition of the devices each)", n)
    report = supervisor.run(children, stop, seconds=args.seconds)
    totals = {k: sum(s.get(k, 0) for s in report.final) for k in
              ("received", "stored", "duplicates", "acked")}
    data = {"processes": n, "restarts": report.restarts, "exits": report.exits, **totals,
            "collectors": report.final}
    emit(data, args.json, f"{n} collectors: received {totals['received']:,}, stored "
                          f"{totals['stored']:,}, duplicates {totals['duplicates']:,}; "
                          f"{report.restarts} restarts")
    return 0 if report.clean else EXIT_FAILED
