"""`citywatch demo` on nothing but the project: embedded PostgreSQL, private broker, the
trained default model; it must end with the cases the simulated devices were built to
produce."""

import json
import os
import subprocess
import sys

import pytest

from simulators import scenario as scenarios


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_and_reports_the_known_violations(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    env["CITYWATCH_DATA_DIR"] = str(tmp_path / "data")
    out = subprocess.run([sys.executable, "-m", "citywatch.cli", "demo", "--seconds", "240",
                          "--json"], capture_output=True, text=True, env=env, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["finished"] and not summary["errors"]

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
