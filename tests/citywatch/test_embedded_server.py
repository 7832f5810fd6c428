"""Commands without a database URL start an embedded PostgreSQL under the data directory
and leave nothing running when they end; `citywatch db stop` stops one left behind."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from storage.db import embedded_running


def _env(data_dir) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    env["CITYWATCH_DATA_DIR"] = str(data_dir)
    return env


def _servers(data_dir) -> list[int]:
    """Processes of a PostgreSQL whose data directory is under data_dir."""
    pgdata = str((data_dir / "pg").resolve())
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if pgdata in " ".join(p.info["cmdline"] or ()):
            out.append(p.info["pid"])
    return out


def _cli(data_dir, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "citywatch.cli", *argv], env=_env(data_dir),
                          capture_output=True, text=True, timeout=180)


def test_commands_leave_no_embedded_server_running(embedded_data_dir):
    data = embedded_data_dir
    migrate = _cli(data, "db", "migrate", "--json")
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    assert "migration 0001_core" in json.loads(migrate.stdout)["applied"]
    assert (embedded_running(data), _servers(data)) == (None, [])
    listed = _cli(data, "cases", "list", "--json")  # starts it again, on the same data
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert json.loads(listed.stdout) == []
    assert (embedded_running(data), _servers(data)) == (None, [])


def _killed_holder(data_dir) -> None:
    """A process that starts the embedded server and is killed with SIGKILL (no exit
    handler runs): the server stays up with a dead process registered as using it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from storage.db import embedded_url; embedded_url(Path(sys.argv[1])); "
         "print('up', flush=True); time.sleep(600)", str(data_dir)],
        env=_env(data_dir), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "up"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    time.sleep(0.5)
    assert embedded_running(data_dir) is not None


@pytest.mark.slow
def test_a_server_left_by_a_killed_process_is_stopped_by_the_next_command_or_db_stop(
        embedded_data_dir):
    data = embedded_data_dir
    _killed_holder(data)
    listed = _cli(data, "cases", "list", "--json")  # the dead registration is dropped
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert (embedded_running(data), _servers(data)) == (None, [])

    _killed_holder(data)
    stopped = _cli(data, "db", "stop")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert "stopped the embedded PostgreSQL" in stopped.stdout
    assert (embedded_running(data), _servers(data)) == (None, [])
    again = _cli(data, "db", "stop")
    assert "no embedded PostgreSQL running" in again.stdout
