"""`citywatch flights ...` as an operator runs it: JSON on stdout and nothing else, errors
on stderr with the field or constraint named, exit codes that scripts can trust."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from domain.paths import PROJECT_ROOT
from flights import operations, planner
from storage import sorties as store


def citywatch(cfg, tmp_path, *args, timeout=60) -> subprocess.CompletedProcess:
    path = tmp_path / "citywatch.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    return subprocess.run([sys.executable, "-m", "citywatch.cli", "-c", str(path), "flights", *args],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_plan_then_check_at_a_time(config, tmp_path):
    out = tmp_path / "s1.plan"
    r = citywatch(config, tmp_path, "plan", "--subject", "S-001", "--json", "-o", str(out))
    doc = json.loads(r.stdout)  # nothing but JSON on stdout
    assert r.returncode == (0 if doc["ok"] else 1)
    assert doc["plan"]["kind"] == "inspection" and out.exists()
    noon = citywatch(config, tmp_path, "check", str(out), "--at", "2026-11-27T12:00", "--json")
    assert noon.returncode == 0 and json.loads(noon.stdout)["ok"]
    night = citywatch(config, tmp_path, "check", str(out), "--at", "2026-11-27T23:30")
    assert night.returncode == 1
    assert "hours: 2026-11-27 23:30" in night.stdout and "night flights are not allowed" in night.stdout


@pytest.mark.parametrize("args, code, words", [
    (("plan", "--street", "ST-004", "--alt", "150"), 1, "exceeds the ceiling of 120 m"),
    (("plan", "--subject", "S-999"), 2, "no subject 'S-999' in the registry"),
    (("check", "missing.plan"), 2, "missing.plan: No such file or directory"),
    (("check", "any.plan", "--at", "noon"), 2, "argument --at: 'noon' is not an ISO 8601 time"),
])
def test_refusals_name_the_reason(config, tmp_path, args, code, words):
    r = citywatch(config, tmp_path, *args)
    assert r.returncode == code
    assert words in r.stdout + r.stderr


@pytest.mark.slow
def test_bad_plan_file_names_the_field(config, tmp_path):
    plan = planner.plan_for_subject(planner_registry(), "S-001", config.flights)
    from flights import qgc

    doc = qgc.export(plan)
    del doc["mission"]["items"][3]["params"]
    path = tmp_path / "bad.plan"
    path.write_text(json.dumps(doc))
    r = citywatch(config, tmp_path, "check", str(path))
    assert r.returncode == 2 and "bad.plan: mission.items[3].params: Field required" in r.stderr


@pytest.mark.slow
def test_list_show_abort_and_approve(config, db, tmp_path):
    plan = planner.plan_for_subject(planner_registry(), "S-001", config.flights)
    sortie_id = operations.record(db, plan, "operator:test")
    listed = json.loads(citywatch(config, tmp_path, "list", "--json").stdout)
    assert [s["sortie_id"] for s in listed] == [sortie_id] and listed[0]["status"] == "planned"
    r = citywatch(config, tmp_path, "approve", str(sortie_id))
    assert r.returncode == 1 and "does not wait for approval" in r.stderr
    r = citywatch(config, tmp_path, "abort", str(sortie_id), "--reason", "wind", "--actor", "operator:li",
                  "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "aborted"
    with db.connection() as conn:
        assert store.get(conn, sortie_id).reason == "aborted by operator:li: wind"
    r = citywatch(config, tmp_path, "abort", str(sortie_id))
    assert r.returncode == 1 and "already aborted" in r.stderr
    shown = json.loads(citywatch(config, tmp_path, "show", str(sortie_id), "--json").stdout)
    assert [e["status"] for e in shown["events"]] == ["planned", "aborted"]
    cov = json.loads(citywatch(config, tmp_path, "coverage", "--json").stdout)
    assert cov["sorties"] == []  # it never took off


def planner_registry():
    from domain.registry import load

    return load(PROJECT_ROOT / "configs" / "registry")
