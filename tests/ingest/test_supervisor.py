"""`citywatch collect` as deployed: one collector process per partition of the devices,
supervised; a child killed with SIGKILL is restarted (the log says why) and loses nothing;
SIGTERM stops them all and leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import yaml

from domain.paths import PROJECT_ROOT
from storage import readings as store
from tests.ingest.conftest import wait_until
from tests.ingest.test_broker_restart import publish, readings


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive: reaped or not, it runs nothing
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.slow
def test_supervised_collectors_restart_a_killed_one_and_stop_cleanly(
        ingest_config, db, private_broker, tmp_path):
    cfg = private_broker.apply(ingest_config)
    cfg.mqtt.shared_group = None
    path = tmp_path / "citywatch.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    log_path = tmp_path / "collect.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "citywatch.cli", "-c", str(path), "collect", "--processes",
             "2", "--json"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=log)

    def log_text() -> str:
        return log_path.read_text(errors="replace")

    def stored() -> int:
        with db.connection() as conn:
            return store.count_rows(conn, "readings")

    try:
        assert wait_until(lambda: log_text().count("connected to") >= 2, 60), log_text()
        publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, readings(0, 2000))
        assert wait_until(lambda: stored() == 2000, 60)
        pids = [int(p) for p in re.findall(r"collector \d/2 started \(pid (\d+)\)", log_text())]
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, readings(2000, 2000))
        assert wait_until(lambda: "killed by SIGKILL; restarting" in log_text(), 30), log_text()
        assert wait_until(lambda: stored() == 4000, 90), (stored(), log_text())
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log_text()
    report = json.loads(out)
    assert (report["processes"], report["restarts"]) == (2, 1)
    assert len(report["collectors"]) == 2
    assert "killed by SIGKILL" in report["exits"][0]
    every = [int(p) for p in re.findall(r"started \(pid (\d+)\)", log_text())]
    assert len(every) == 3 and not any(_alive(p) for p in every)
    with db.connection() as conn:
        assert conn.execute("SELECT count(DISTINCT (device_id, ts)) FROM readings"
                            ).fetchone()[0] == 4000


@pytest.mark.slow
def test_run_supervises_collector_processes_and_stops_them(ingest_config, db, private_broker,
                                                           tmp_path):
    """`citywatch run --only collect` with two collector processes: readings stored, SIGTERM
    stops the service and both collectors (exit 0, no process left behind)."""
    cfg = private_broker.apply(ingest_config)
    cfg.mqtt.shared_group = None
    cfg.ingest.processes = 2
    path = tmp_path / "citywatch.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "citywatch.cli", "-c", str(path), "run",
                                 "--only", "collect"], cwd=PROJECT_ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)

    def log_text() -> str:
        return log_path.read_text(errors="replace")

    try:
        assert wait_until(lambda: log_text().count("connected to") >= 2, 60), log_text()
        publish(cfg.mqtt.url, cfg.mqtt.topic_prefix, readings(0, 1000))
        with db.connection() as conn:
            assert wait_until(lambda: store.count_rows(conn, "readings") == 1000, 60)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log_text()
    pids = [int(p) for p in re.findall(r"started \(pid (\d+)\)", log_text())]
    assert len(pids) == 2 and not any(_alive(p) for p in pids)
    assert "citywatch stopped" in log_text()


@pytest.mark.slow
def test_no_collector_outlives_a_killed_supervisor(ingest_config, db, private_broker, tmp_path):
    """SIGKILL of the supervisor (nothing of it runs to clean up): its collector processes
    are told by the kernel (parent-death signal) and stop by themselves."""
    cfg = private_broker.apply(ingest_config)
    cfg.mqtt.shared_group = None
    path = tmp_path / "citywatch.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    log_path = tmp_path / "collect.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "citywatch.cli", "-c", str(path),
                                 "collect", "--processes", "2"], cwd=PROJECT_ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: log_path.read_text(errors="replace").count("connected to")
                          >= 2, 60)
    finally:
        proc.kill()
        proc.wait()
    pids = [int(p) for p in re.findall(r"started \(pid (\d+)\)", log_path.read_text())]
    assert len(pids) == 2
    assert wait_until(lambda: not any(_alive(p) for p in pids), 30)
