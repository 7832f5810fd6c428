"""The long-running service (`citywatch run`); the demo (citywatch/demo.py) runs on it.

Each stage is a thread over the same database: collectors (MQTT -> rows), detector
workers (frames queue -> detections) and the rule engine (rows -> cases). Stages share
nothing but PostgreSQL, so any of them can also run as its own process, on another
machine, or several times (`citywatch collect`, `citywatch detect`, `citywatch rules run`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field

from citywatch import app, supervisor
from citywatch.config import AppConfig
from citywatch.monitor import Monitor
from ingest import mqtturl
from ingest.broker import BrokerHandle, ensure_broker
from ingest.collector import Collector
from storage.db import Database

log = logging.getLogger(__name__)

STAGES = ("collect", "detect", "rules", "flights")


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the clean-shutdown path of every long loop."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@dataclass
class Pipeline:
    """The running stages of one process."""

    config: AppConfig
    db: Database
    broker: BrokerHandle
    stop: threading.Event
    monitor: Monitor = field(default_factory=Monitor)
    collector: Collector | None = None
    threads: list[threading.Thread] = field(default_factory=list)
    monitor_port: int | None = None
    failures: list[str] = field(default_factory=list)  # stages that stopped on their own

    def close(self, timeout: float = 30.0) -> None:
        """Stop every stage: the collector commits and acknowledges what it holds first."""
        self.stop.set()
        if self.collector is not None:
            self.collector.stop(timeout)
        for t in self.threads:
            t.join(timeout)
        self.monitor.close()
        self.db.close()
        self.broker.close()


def start(config: AppConfig, stop: threading.Event, stages: tuple[str, ...] = STAGES,
          with_web: bool = False) -> Pipeline:
    """Start the broker (a private one when none is configured), the database and the
    requested stages (and the review app, `with_web`); return the running pipeline."""
    broker = ensure_broker(config.for_ingest())
    config = broker.apply(config)
    db = app.open_database(config)
    pipeline = Pipeline(config, db, broker, stop)
    monitor = pipeline.monitor
    try:
        classes = None
        if "rules" in stages and config.rules.enabled:
            from rules.engine import load_rules

            # Rules may name only classes of the model this process's workers run; a rule
            # set that names others is refused here, before any stage starts.
            classes = app.detection_classes(config) if "detect" in stages else None
            load_rules(config.rules, classes)
        if "collect" in stages:
            pipeline.collector = Collector(config.for_ingest(), db, metrics=monitor.collector).start()
            monitor.add_check("collector", lambda: monitor.collector.health(
                config.monitor.ack_stall_s))
        if "detect" in stages and config.detectors.enabled and config.detectors.workers > 0:
            from detectors.worker import start_workers

            pipeline.threads += start_workers(config.for_detectors(), db, stop, metrics=monitor.workers)
            monitor.watch_frames_queue(db)
        if "rules" in stages and config.rules.enabled:
            from rules.engine import run_engine

            t = threading.Thread(target=run_engine, args=(config.rules, db, stop, monitor.engine),
                                 kwargs={"classes": classes}, name="rules", daemon=True)
            t.start()
            pipeline.threads.append(t)
        if config.batch.in_service:
            t = threading.Thread(target=_sweeps, args=(pipeline,), name="batch-schedule",
                                 daemon=True)
            t.start()
            pipeline.threads.append(t)
        if "flights" in stages and config.flights.dispatcher:
            from flights.operations import Context, run_dispatcher

            ctx = Context.load(config.flights, config.resolve(config.registry.directory))
            t = threading.Thread(target=run_dispatcher, args=(db, ctx, stop), name="flights",
                                 daemon=True)
            t.start()
            pipeline.threads.append(t)
        if config.monitor.port is not None:
            pipeline.monitor_port = monitor.serve(config.monitor.host, config.monitor.port)
        if with_web:
            pipeline.threads.append(start_web(pipeline))
    except BaseException:
        pipeline.close()
        raise
    return pipeline


def _sweeps(pipeline: Pipeline) -> None:
    """The drop-folder schedule as a stage of the service; if it fails, the service stops,
    non-zero (it must not go on without the overnight runs it was asked to do)."""
    from citywatch import batch

    try:
        batch.schedule(pipeline.config, pipeline.db, pipeline.stop)
    except Exception:
        log.exception("batch schedule failed; stopping the service")
        pipeline.failures.append("batch schedule failed")
        pipeline.stop.set()


def start_web(pipeline: Pipeline) -> threading.Thread:
    """The review app (uvicorn) in a thread beside the pipeline; it stops with the pipeline,
    and if it stops on its own (port taken, crash) the whole process stops, non-zero."""
    import uvicorn

    from review.app import create_app

    web = pipeline.config.web
    server = uvicorn.Server(uvicorn.Config(
        create_app(app.review_context(pipeline.config, pipeline.db)), host=web.host,
        port=web.port, log_level="warning"))

    def serve() -> None:
        try:
            server.run()
        except BaseException as exc:  # uvicorn exits with SystemExit when it cannot bind
            log.error("web: %r", exc)
        if not pipeline.stop.is_set():
            pipeline.failures.append(f"review app on {web.host}:{web.port} stopped")
            log.error("web: the review app stopped; stopping citywatch")
            pipeline.stop.set()

    def watch() -> None:
        pipeline.stop.wait()
        server.should_exit = True

    threading.Thread(target=watch, name="web-stop", daemon=True).start()
    t = threading.Thread(target=serve, name="web", daemon=True)
    t.start()
    log.info("review app on http://%s:%d/", web.host, web.port)
    return t


def run(config: AppConfig, stages: tuple[str, ...] = STAGES, with_web: bool = False) -> int:
    """Run until SIGTERM / Ctrl-C, then shut down cleanly (non-zero if a stage failed).
    Collectors run as supervised processes, one per core on a partition of the devices
    (citywatch/supervisor.py), unless one process is configured; detectors, the rule engine
    and the review app run here."""
    stop = stop_on_signals()
    processes = supervisor.collector_processes(config) if "collect" in stages else 0
    here = tuple(s for s in stages if s != "collect" or processes <= 1)
    pipeline = start(config, stop, here, with_web)
    log.info("citywatch running (%s); broker %s", ", ".join(stages),
             mqtturl.redact(pipeline.config.mqtt.url))
    failure = None
    supervised: dict[str, supervisor.Report] = {}
    watcher = None
    if processes > 1:
        children = supervisor.collector_children(pipeline.config, pipeline.db.url, processes)
        watcher = threading.Thread(
            target=lambda: supervised.setdefault("report", supervisor.run(children, stop)),
            name="collectors", daemon=True)
        watcher.start()
    try:
        last = time.monotonic()
        while not stop.wait(0.5):
            c = pipeline.collector
            if c is not None and c.failed.is_set():
                failure = c.failure
                break
            if watcher is not None and not watcher.is_alive():
                failure = "the collector processes stopped: " + "; ".join(
                    supervised["report"].exits if "report" in supervised else ["supervisor"])
                break
            if c is not None and time.monotonic() - last >= 60:
                last = time.monotonic()
                s = c.stats()
                log.info("collector: received %d, stored %d, dead letters %d",
                         s.received, s.stored, s.dead_lettered)
    finally:
        stop.set()
        if watcher is not None:
            watcher.join(60)
        pipeline.close()
    for failed in pipeline.failures:
        log.error("%s", failed)
    report = supervised.get("report")
    if failure is None and report is not None and not report.clean:
        failure = "the collector processes stopped: " + "; ".join(report.exits)
    if failure is not None:
        log.critical("citywatch stopped: %s", failure)
        return 70
    log.info("citywatch stopped")
    return 1 if pipeline.failures else 0

