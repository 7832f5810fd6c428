"""`citywatch simulate SCENARIO` and `citywatch collect`: the ingest part's sub-commands."""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict

from citywatch import app
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

    p = sub.add_parser("collect", help="run one MQTT collector until SIGTERM / Ctrl-C")
    p.add_argument("--client-id", help="MQTT client id (default mqtt.client_id of the config)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="machine-readable final counters")
    p.set_defaults(func=collect)


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
    broker = ensure_broker(cfg)
    cfg = broker.apply(cfg)
    db = app.open_database(cfg)
    monitor = Monitor()
    try:
        collector = Collector(cfg, db, client_id=args.client_id,
                              metrics=monitor.collector).start()
        log.info("collecting %s from %s", collector.subscription, mqtturl.redact(cfg.mqtt.url))
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
        db.close()
        broker.close()
    emit(asdict(stats), args.json,
         f"received {stats.received:,}, stored {stats.stored:,}, duplicates "
         f"{stats.duplicates:,}, dead letters {stats.dead_lettered:,}")
    if stats.failure is not None:
        log.critical("collector stopped by itself: %s", stats.failure)
        return EXIT_FAILED
    return 0
