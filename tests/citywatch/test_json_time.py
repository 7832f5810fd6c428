"""JSON output writes every time one way: RFC 3339 with the offset of the configured zone."""

import json
import re
from datetime import UTC, datetime, timedelta, timezone

from citywatch import cli, console
from rules.engine import evaluate
from tests.rules.helpers import fume_series, local, store_readings

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
RFC3339_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?\+08:00$")


def _times(value) -> list[str]:
    """Every string in a JSON document that looks like a time of day."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in _times(v)]
    if isinstance(value, list):
        return [t for v in value for t in _times(v)]
    return [value] if isinstance(value, str) and TIME.match(value) else []


def _run(capsys, *argv: str):
    assert cli.main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_time_in_json_output_is_rfc3339_in_the_configured_zone(config, db, capsys,
                                                                     monkeypatch):
    assert config.rules.timezone == "Asia/Shanghai"
    monkeypatch.setenv("CITYWATCH_DATABASE_URL", config.database.url)
    monkeypatch.setenv("CITYWATCH_DATA_DIR", config.data_dir)
    store_readings(db, fume_series("FM-00001", local("2026-11-20", "11:00"), 40, 3.0))
    evaluate(config.rules, db)
    docs = [_run(capsys, "rules", "run")]
    docs.append(_run(capsys, "cases", "list"))
    case_id = docs[-1][0]["case_id"]
    for status in ("under_review", "confirmed"):
        docs.append(_run(capsys, "cases", "transition", str(case_id), status,
                         "--actor", "officer-1", "--reason", "readings reviewed"))
    docs.append(_run(capsys, "cases", "show", str(case_id)))
    docs.append(_run(capsys, "credit", "show", "M-00001"))
    times = [t for d in docs for t in _times(d)]
    assert len(times) >= 8
    assert [t for t in times if not RFC3339_LOCAL.match(t)] == []


def test_json_value_writes_aware_times_in_the_output_zone(monkeypatch):
    monkeypatch.setattr(console, "_output_zone", timezone(timedelta(hours=8)))
    doc = json.loads(json.dumps({"a": datetime(2026, 11, 20, 2, 0, tzinfo=UTC)},
                                default=console.json_value))
    assert doc == {"a": "2026-11-20T10:00:00+08:00"}
