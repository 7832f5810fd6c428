"""`citywatch simulate` and `citywatch collect` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

import yaml

from domain.paths import PROJECT_ROOT
from simulators.scenario import load
from storage import readings as store
from tests.ingest.conftest import DAY, wait_until

TINY = """
name: tiny
seed: 3
day: {day}
fleet: {{merchants: 2, sites: 1, interval_s: 600}}
violations:
  - {{subject: M-00001, kind: purifier_off, start: "12:00", minutes: 30,
     expect: [fume.purifier_off]}}
bad_messages:
  - {{reason: not_json, at: "08:00:10"}}
  - {{reason: unknown_device, at: "08:00:20"}}
"""


def _citywatch(cfg, tmp_path, *args, timeout=60) -> subprocess.CompletedProcess:
    path = tmp_path / "citywatch.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    return subprocess.run([sys.executable, "-m", "citywatch.cli", "-c", str(path), *args],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_simulate_publishes_a_scenario_file_the_collector_stores(ingest_config, db, collectors,
                                                                 tmp_path):
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(TINY.format(day=DAY.isoformat()), encoding="utf-8")
    expected = list(load(scenario).messages())
    valid = sum(1 for m in expected if m.expected == "valid")
    assert valid == 3 * 144
    collector = collectors(ingest_config, db)
    run = _citywatch(ingest_config, tmp_path, "simulate", str(scenario), "--fast", "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["published"] == len(expected) == valid + 2
    (case,) = out["expected_cases"]
    assert (case["rule_id"], case["subject_id"]) == ("fume.purifier_off", "M-00001")
    # the same instant, in whichever offset the JSON speaks
    assert datetime.fromisoformat(case["episode_start"]) == load(scenario).local("12:00")
    assert wait_until(lambda: collector.stats().received == len(expected) and
                      collector.wait_idle(1))
    with db.connection() as conn:
        assert store.count_rows(conn, "readings") == valid
        assert store.dead_letter_counts(conn) == {"not_json": 1, "unknown_device": 1}


def test_simulate_names_a_missing_scenario(ingest_config, tmp_path):
    run = _citywatch(ingest_config, tmp_path, "simulate", "no-such-scenario")
    assert run.returncode != 0 and "no-such-scenario" in run.stderr


def test_collect_runs_for_a_while_and_reports(ingest_config, db, tmp_path):
    run = _citywatch(ingest_config, tmp_path, "collect", "--seconds", "1", "--json")
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout)
    assert stats["client_id"] == ingest_config.mqtt.client_id and stats["connects"] == 1
