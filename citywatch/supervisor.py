"""Run a set of long-lived child processes: restart one that dies, saying why, and stop
them all cleanly (SIGTERM, then SIGKILL after a grace period).

A child reports by printing one JSON object on stdout as it exits (`--json`); its log
goes to the supervisor's stderr unchanged. A child that exits with status 2 (a
configuration error) is not restarted: the supervisor stops the others and fails.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from citywatch.config import AppConfig

log = logging.getLogger(__name__)

EXIT_CONFIG = 2


def describe(returncode: int) -> str:
    """An exit status in words: 'exit status 70' or 'killed by SIGKILL'."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the supervisor dies, even by SIGKILL, so
    no collector outlives its supervisor (Linux prctl PR_SET_PDEATHSIG; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Child:
    """One supervised command line."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    started: float = 0.0
    backoff_s: float = 1.0
    next_start: float = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        self.started = time.monotonic()
        log.info("%s started (pid %d)", self.name, self.proc.pid)

    def report(self) -> dict | None:
        """The JSON object the exited child printed, if any."""
        out = self.proc.stdout.read() if self.proc and self.proc.stdout else b""
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        try:
            data = json.loads(out)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None


@dataclass
class Report:
    final: list[dict]  # each child's last report (children that printed one)
    restarts: int
    exits: list[str]  # every exit nobody asked for, with its reason
    clean: bool  # stopped because asked, no child left failing for good


def run(children: list[Child], stop: threading.Event, *, seconds: float | None = None,
        grace_s: float = 30.0, poll_s: float = 0.5, stable_s: float = 60.0,
        max_backoff_s: float = 30.0) -> Report:
    """Start every child and keep them running until `stop` is set or `seconds` pass."""
    restarts, exits, clean = 0, [], True
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        for c in children:
            c.start()
        while not stop.wait(poll_s):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            for c in children:
                if c.proc is None:
                    if now >= c.next_start:
                        c.start()
                        restarts += 1
                    continue
                rc = c.proc.poll()
                if rc is None:
                    continue
                c.report()  # drain its pipe; a dying child's counters are not the totals
                why = f"{c.name} (pid {c.proc.pid}) stopped unasked: {describe(rc)}"
                exits.append(why)
                if rc == EXIT_CONFIG:
                    log.critical("%s; a configuration error: not restarting", why)
                    clean = False
                    stop.set()
                    break
                if now - c.started >= stable_s:
                    c.backoff_s = 1.0  # it had been running fine: restart at once
                log.error("%s; restarting in %.0f s", why, c.backoff_s)
                c.proc, c.next_start = None, now + c.backoff_s
                c.backoff_s = min(c.backoff_s * 2, max_backoff_s)
    finally:
        final = _stop_all(children, grace_s)
    return Report(final, restarts, exits, clean)


def _stop_all(children: list[Child], grace_s: float) -> list[dict]:
    running = [c for c in children if c.proc is not None and c.proc.poll() is None]
    for c in running:
        c.proc.send_signal(signal.SIGTERM)
    end = time.monotonic() + grace_s
    for c in running:
        try:
            c.proc.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("%s did not stop within %.0f s; killing it", c.name, grace_s)
            c.proc.kill()
            c.proc.wait()
    return [r for c in children if c.proc is not None and (r := c.report()) is not None]


def collector_children(config: AppConfig, db_url: str, n: int, *, verbose: bool = False,
                       client_id: str | None = None) -> list[Child]:
    """`citywatch collect --partition i/n` for i in 0..n-1, over the effective configuration
    of this process (its broker and database URLs; collector i's metrics on
    monitor.port + 1 + i), written for each under the data directory, readable by its owner
    only (the URLs may carry credentials)."""
    # the file says everything; an override in the environment would say it twice
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    children = []
    for i in range(n):
        effective = config.model_copy(deep=True)
        effective.database.url = db_url
        effective.data_dir = str(config.data_path)
        port = config.monitor.port
        # metrics: collector i on monitor.port + 1 + i (the port itself is the parent's)
        effective.monitor.port = None if port is None else (0 if port == 0 else port + 1 + i)
        path = config.data_path / f"collector-{i}of{n}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(effective.model_dump(mode="json"), fh)
        children.append(Child(f"collector {i}/{n}", [
            sys.executable, "-m", "citywatch.cli", "-c", str(path), *(["-v"] if verbose else []),
            "collect", "--partition", f"{i}/{n}", "--json",
            *(["--client-id", client_id] if client_id else [])], env=env))
    return children


def collector_processes(config: AppConfig) -> int:
    """How many collector processes to run: ingest.processes, else one per core; one on a
    shared subscription group (which scales by starting collectors by hand)."""
    if config.mqtt.shared_group:
        return 1
    return config.ingest.processes or os.cpu_count() or 1
