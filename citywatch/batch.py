"""Wiring of a batch run: register the files, sample them while detector workers detect,
then judge the run's event time with the rules. Used by `citywatch batch run` and by the
drop-folder schedule."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tqdm import tqdm

from citywatch.config import AppConfig
from detectors.worker import load_zones, make_worker
from ingest.batch import drop
from ingest.batch import run as batch_run
from storage import batch as batch_repo
from storage.db import Database
from storage.evidence import EvidenceStore

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    run_id: int
    sources: int = 0
    new_sources: int = 0
    refused: list[str] = field(default_factory=list)
    refused_paths: list[tuple[Path, str]] = field(default_factory=list)
    registered: list[batch_run.Registered] = field(default_factory=list)
    progress: dict = field(default_factory=dict)
    cases: dict = field(default_factory=dict)
    wall_s: float = 0.0
    status: str = "running"

    @property
    def failed(self) -> list[str]:
        """The files taken in but not readable at all (recorded as failed sources)."""
        return [f"{r.spec.path}: {r.error}" for r in self.registered if r.error]

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "status": self.status, "sources": self.sources,
                "new_sources": self.new_sources, "refused": self.refused,
                "failed": self.failed,
                "progress": self.progress, "cases": self.cases, "wall_s": round(self.wall_s, 2)}


class Progress:
    """A bar on a terminal (files, frames, frames/s, time left); a line every few seconds
    otherwise. Both on stderr."""

    def __init__(self, total: int, sources: int, *, every_s: float = 10.0):
        self.tty = sys.stderr.isatty()
        self.every_s, self._last = every_s, 0.0
        self.bar = tqdm(total=total, unit="frame", desc=f"{sources} files", file=sys.stderr,
                        disable=not self.tty, dynamic_ncols=True)

    def update(self, p: dict) -> None:
        if self.tty:
            self.bar.total = p["samples"]
            self.bar.n = p["detected"]
            self.bar.set_postfix_str(f"sampled {p['sampled']}", refresh=False)
            self.bar.refresh()
        elif time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            print(f"batch: {p['detected']}/{p['samples']} frames detected, {p['sampled']} "
                  f"sampled, {p['chunks_open']} chunks open", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


def run(config: AppConfig, db: Database, paths: Sequence[str | Path], *,
        drone: str | None = None, camera: str | None = None, start: datetime | None = None,
        sample_fps: float | None = None, samplers: int = 1, workers: int | None = None,
        stop: threading.Event | None = None, evaluate_rules: bool = True,
        progress: bool = True) -> RunSummary:
    """Process recorded files end to end; returns what happened. With no paths, helps
    finish the chunks other runs left pending (another machine's night, a crashed run)."""
    stop = stop or threading.Event()
    t0 = time.monotonic()
    bcfg = config.batch
    library = batch_run.Library(config.evidence_dir)
    kinds = batch_run.device_kinds(db)
    specs, refused = batch_run.discover(paths, drone=drone, camera=camera, start=start,
                                        device_kinds=kinds)
    with db.connection() as conn:
        run_id = batch_repo.create_run(conn, batch_run.claimer_id(), {
            "paths": [str(p) for p in paths], "drone": drone, "camera": camera,
            "sample_fps": sample_fps or bcfg.sample_fps})
    summary = RunSummary(run_id, refused=[f"{p}: {why}" for p, why in refused],
                         refused_paths=refused)
    for line in summary.refused:
        log.warning("refused: %s", line)
    registered = batch_run.register(db, library, run_id, specs, bcfg, sample_fps=sample_fps)
    summary.registered = registered
    summary.sources = len(registered)
    summary.new_sources = sum(r.new for r in registered)
    for r in registered:
        if r.error:
            log.warning("%s: %s", r.spec.path, r.error)
        elif not r.new:
            log.info("%s: seen before (sha256 %s), adds nothing", r.spec.path,
                     r.source.sha256[:12])
    scope = run_id if paths else None
    evidence = EvidenceStore(config.evidence_dir)
    errors: list[BaseException] = []

    def sample() -> None:
        try:
            batch_run.Sampler(db, evidence, library, bcfg, config.detectors,
                              run_id=scope).run(stop)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    sampler_threads = [threading.Thread(target=sample, name=f"sampler-{i + 1}", daemon=True)
                       for i in range(max(1, samplers))]
    for t in sampler_threads:
        t.start()
    zones = load_zones(db, config.for_detectors())
    detect_stop = threading.Event()
    n_workers = max(1, config.detectors.workers if workers is None else workers)
    worker_threads = [threading.Thread(target=make_worker(config.for_detectors(), db, zones=zones).run,
                                       args=(detect_stop,), name=f"detector-{i + 1}",
                                       daemon=True) for i in range(n_workers)]
    for t in worker_threads:
        t.start()
    with db.connection() as conn:
        p = batch_repo.progress(conn, run_id)
    bar = Progress(p["samples"], summary.sources) if progress else None
    try:
        while True:
            with db.connection() as conn:
                p = batch_repo.progress(conn, run_id)
                batch_repo.beat(conn, run_id)
            if bar:
                bar.update(p)
            sampling = any(t.is_alive() for t in sampler_threads)
            if stop.is_set() or (not sampling and p["chunks_open"] == 0
                                 and p["detected"] >= p["sampled"]):
                break
            if not sampling and p["chunks_open"]:
                # chunks held by other processes: take them over once their claims go stale
                batch_run.Sampler(db, evidence, library, bcfg, config.detectors,
                                  run_id=scope).run(stop)
            stop.wait(0.2)
    except Exception:
        # the run does not stay "running" behind a process that is going away
        with db.connection() as conn:
            batch_repo.finish_run(conn, run_id, "failed")
        raise
    finally:
        detect_stop.set()
        for t in worker_threads:
            t.join(30)
        for t in sampler_threads:
            t.join(30)
        if bar:
            bar.close()
    if errors:
        with db.connection() as conn:
            batch_repo.finish_run(conn, run_id, "failed")
        raise errors[0]
    summary.progress = p
    if stop.is_set():
        summary.status = "interrupted"
    else:
        summary.status = "done"
        if evaluate_rules:
            summary.cases = _judge(config, db, run_id)
    with db.connection() as conn:
        batch_repo.finish_run(conn, run_id, summary.status)
    summary.wall_s = time.monotonic() - t0
    return summary


def _judge(config: AppConfig, db: Database, run_id: int) -> dict:
    """Evaluate the rules over the run's event time (with a margin for rule windows)."""
    from rules.engine import EngineBusy, evaluate

    with db.connection() as conn:
        span = batch_repo.run_event_range(conn, run_id)
    if span is None:
        return {}
    margin = timedelta(hours=1)
    for attempt in range(60):  # the live engine may hold the lock for a moment
        try:
            result = evaluate(config.rules, db, since=span[0] - margin, until=span[1] + margin,
                              actor="batch-run")
            break
        except EngineBusy:
            if attempt == 59:
                raise
            time.sleep(1.0)
    return {"created": result.created, "extended": result.extended, "by_rule": result.by_rule,
            "case_ids": list(result.case_ids)}


def sweep(config: AppConfig, db: Database, *, stop: threading.Event | None = None,
          sleep=time.sleep) -> RunSummary | None:
    """Process the complete, unmarked files of the drop folder once and mark each (done or
    refused, with the reason). None when there was nothing to take."""
    root = config.resolve(config.batch.drop_dir)
    files = drop.stable(drop.candidates(root), config.batch.stable_s, sleep)
    if not files:
        return None
    log.info("drop folder %s: %d complete files", root, len(files))
    summary = run(config, db, files, stop=stop, progress=False)
    if summary.status != "done":
        return summary  # interrupted: the files stay unmarked and are taken next time
    for path, why in summary.refused_paths:
        drop.mark(path, "refused", {"run_id": summary.run_id, "reason": why})
    for r in summary.registered:
        drop.mark(r.spec.path, "done", {
            "run_id": summary.run_id, "sha256": r.source.sha256 if r.source else None,
            "device_id": r.spec.device_id, "new": r.new, "error": r.error})
    return summary


def schedule(config: AppConfig, db: Database, stop: threading.Event, *,
             once: bool = False) -> None:
    """Sweep the drop folder whenever `batch.schedule` (cron, local time) fires, until
    `stop`; with `once`, sweep now and return."""
    tz = ZoneInfo(config.batch.timezone)
    while not stop.is_set():
        if not once:
            due = drop.next_sweep(config.batch.schedule, datetime.now(tz))
            log.info("next sweep of the drop folder at %s", due.isoformat())
            if stop.wait(max(0.0, (due - datetime.now(tz)).total_seconds())):
                return
        summary = sweep(config, db, stop=stop)
        if summary is not None:
            log.info("sweep: run %s %s, %d files (%d new), %d refused", summary.run_id,
                     summary.status, summary.sources, summary.new_sources, len(summary.refused))
        if once:
            return
