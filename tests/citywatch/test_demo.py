"""`citywatch demo` on nothing but the project: embedded PostgreSQL, private broker, the
trained default model; it must end with the cases the simulated devices were built to
produce, say what it missed and why, leave its results to every read command through the
setting it prints, and leave no server running."""

import json
import os
import shlex
import subprocess
import sys

import pytest

from simulators import scenario as scenarios
from storage.db import embedded_running
from tests.citywatch.test_embedded_server import _servers
from tests.citywatch.test_json_time import RFC3339_LOCAL, _times


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_and_reports_the_known_violations(embedded_data_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    env["CITYWATCH_DATA_DIR"] = str(embedded_data_dir)
    out = subprocess.run([sys.executable, "-m", "citywatch.cli", "demo", "--seconds", "240",
                          "--json"], capture_output=True, text=True, env=env, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["finished"] and not summary["errors"] and summary["cut"] is None

    # every bad message of the scenario is kept with its reason, nothing else is refused
    sc = scenarios.load("demo-day")
    reasons = {m.expected for m in sc.messages()} - {"valid", "duplicate"}
    assert set(summary["dead_letters_by_reason"]) == reasons
    assert all(n == 1 for n in summary["dead_letters_by_reason"].values())

    found = {(c["rule_id"], c["subject_id"]) for c in summary["cases"]}
    expected = {(c.rule_id, c.subject_id) for c in sc.expected_cases}
    assert expected <= found
    # one sortie flew the street over MAVLink and landed; its frames are the drone frames
    assert summary["published"]["sortie"]["status"] == "landed", summary["published"]["sortie"]
    assert summary["published"]["drone_frames"] > 0
    # the drone saw street stalls in front of most of the merchants it flew past
    stalls = {s for r, s in found if r == "drone.street_vending"}
    assert stalls <= set(summary["published"]["stalls_at"])
    assert len(stalls) >= 2
    assert ("cone.fallen_not_restored", "P-001") in found
    assert ("cone.fence_missing", "P-003") in found
    assert summary["frames"]["done"] == summary["published"]["drone_frames"] + \
        summary["published"]["cone_frames"]
    # the demo leads to the review app: one user per role, each with its own password
    users = summary["web"]["users"]
    assert set(users) == {"demo-officer", "demo-supervisor", "demo-operator", "demo-admin"}
    assert len(set(users.values())) == 4 and all(len(p) >= 12 for p in users.values())

    # what it expected, found and missed, each miss with its reason
    ex = summary["expectations"]
    assert ex["expected"] == len(sc.expected_cases) + len(summary["published"]["stalls_at"]) + 3
    assert len(ex["found"]) + len(ex["missed"]) == ex["expected"]
    assert all(m["why"] for m in ex["missed"])
    # officers decided two cases: their subjects' codes and history show it
    decided = {d["subject_id"] for d in summary["officer_decisions"]}
    assert len(decided) == 2
    assert decided <= set(summary["credit"]) and set(summary["credit_history"]) == decided
    assert all(summary["credit_history"][s] for s in decided)
    # one time convention in the JSON
    assert [t for t in _times(summary) if not RFC3339_LOCAL.match(t)] == []

    # the demo's results, with the one setting it prints, and no server left running
    demo_dir = embedded_data_dir / "demo"
    assert (embedded_running(demo_dir), _servers(demo_dir)) == (None, [])
    setting, _, command = summary["look_again"].partition(" ")
    assert command == "citywatch cases list" and setting.startswith("CITYWATCH_DATA_DIR=")
    env["CITYWATCH_DATA_DIR"] = shlex.split(setting.partition("=")[2])[0]
    listed = subprocess.run([sys.executable, "-m", "citywatch.cli", "cases", "list", "--json"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    unfused = [c for c in summary["cases"] if not c["fused_into"]]
    assert {c["case_id"] for c in json.loads(listed.stdout)} == {c["case_id"] for c in unfused}
    assert (embedded_running(demo_dir), _servers(demo_dir)) == (None, [])
