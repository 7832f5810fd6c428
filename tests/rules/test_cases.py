"""Case workflow, audit chain and tampering, verify, credit codes, rule-file errors, the lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from citywatch.cli import main as cli
from rules.config import CreditPolicy
from rules.credit import code_at
from rules.engine import ENGINE_LOCK, EngineBusy, evaluate
from rules.ruleset import RuleSetError, parse
from rules.verify import verify
from simulators.scenes import CLASSES
from storage import cases as case_store
from storage.credit import Violation
from storage.evidence import EvidenceStore
from tests.rules.helpers import fume_series, local, store_frame, store_readings

DAY = "2026-11-20"


def _one_case(config, db) -> int:
    store_readings(db, fume_series("FM-00001", local(DAY, "11:00"), 30, 3.0))
    evaluate(config.rules, db)
    with db.connection() as conn:
        (case,) = case_store.list_cases(conn)
    return case.case_id


@pytest.mark.parametrize("path, ok", [
    (["under_review", "confirmed", "notified", "rectified", "closed"], True),
    (["under_review", "dismissed"], True),
    (["confirmed"], False),                       # review comes first
    (["under_review", "dismissed", "confirmed"], False),  # dismissed is final
    (["under_review", "confirmed", "rectified"], False),  # must be notified first
])
def test_transitions(config, db, path, ok):
    case_id = _one_case(config, db)
    with db.connection() as conn:
        try:
            for status in path:
                case_store.transition(conn, case_id, status, "officer-7", f"to {status}")
            done = True
        except case_store.InvalidTransition as exc:
            done = False
            assert "cannot become" in str(exc)
        detail = case_store.get_case(conn, case_id)
    assert done == ok
    assert [t.to_status for t in detail.transitions] == (path if ok else path[:-1])
    assert all(t.actor == "officer-7" and t.reason for t in detail.transitions)


def test_transition_needs_a_reason(config, db):
    case_id = _one_case(config, db)
    with db.connection() as conn, pytest.raises(case_store.InvalidTransition, match="why"):
        case_store.transition(conn, case_id, "under_review", "officer-7", " ")


def test_verify_reports_altered_and_missing_evidence_files(config, db):
    store = EvidenceStore(config.evidence_dir)
    shas = [store_frame(db, "drone", "UAV-01", local(DAY, hhmm),
                        [("street_stall", 0.9, "M-00001", "frontage")], store=store)
            for hhmm in ("11:10", "11:14")]
    evaluate(config.rules, db)
    assert verify(config.data_path, db).ok
    altered = store.path(shas[0])
    altered.chmod(0o644)
    altered.write_bytes(b"a different picture")
    store.path(shas[1]).unlink()
    problems = verify(config.data_path, db).problems
    assert len(problems) == 2
    assert "evidence file altered" in problems[0] and shas[0][:40] in problems[0]
    assert "evidence file missing" in problems[1] and shas[1][:40] in problems[1]


def test_verify_detects_audit_and_series_tampering(config, db):
    _one_case(config, db)
    assert verify(config.data_path, db).ok
    with db.connection() as conn:
        # the trigger refuses changes to the audit log
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
        conn.rollback()
        # someone who disables it can change a row, but not its hash
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute("UPDATE audit_log SET data = jsonb_set(data, '{rule_version}', '9') "
                     "WHERE seq = 1")
        # and a reading under a snapshot changes (evidence rows refuse changes too: a
        # superuser's session can bypass every trigger)
        conn.execute("UPDATE readings SET fume_mg_m3 = 1.0 WHERE device_id = 'FM-00001' "
                     "AND ts = %s", (local(DAY, "11:05"),))
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE case_evidence SET content = jsonb_set(content, '{rows,0,1}', '0.1') "
                     "WHERE kind = 'series'")
        conn.commit()
    problems = verify(config.data_path, db).problems
    assert any(p.startswith("audit #1 ") and "altered" in p for p in problems)
    assert any("snapshot does not match its hash" in p for p in problems)
    assert any("readings table no longer matches" in p for p in problems)


def test_deleted_audit_row_breaks_the_chain(config, db):
    _one_case(config, db)
    with db.connection() as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute("DELETE FROM audit_log WHERE seq = 2")
        conn.commit()
    assert any("removed or inserted" in p for p in verify(config.data_path, db).problems)


def test_cli_verify_exit_codes(config, db, monkeypatch, tmp_path):
    _one_case(config, db)
    monkeypatch.setenv("CITYWATCH_DATABASE_URL", config.database.url)
    monkeypatch.setenv("CITYWATCH_DATA_DIR", config.data_dir)
    assert cli(["cases", "verify", "--json"]) == 0
    with db.connection() as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
        conn.commit()
    assert cli(["cases", "verify"]) == 1


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _v(case_id, day, severity="general", notified=None, rectified=None):
    at = T0 + timedelta(days=day)
    return Violation(case_id, "M-00001", severity, at,
                     at + timedelta(days=notified) if notified is not None else None,
                     at + timedelta(days=rectified) if rectified is not None else None)


@pytest.mark.parametrize("violations, as_of_day, code", [
    ([], 10, "green"),
    # one general violation: yellow while unrectified, and for 90 clean days after
    ([_v(1, 0, notified=1, rectified=3)], 10, "yellow"),
    ([_v(1, 0, notified=1, rectified=3)], 92, "yellow"),
    ([_v(1, 0, notified=1, rectified=3)], 94, "green"),
    # one not yet rectified: yellow
    ([_v(1, 0, notified=1)], 5, "yellow"),
    # notified and still not rectified after 15 days: refusal, red
    ([_v(1, 0, notified=1)], 20, "red"),
    # two in 90 days: yellow
    ([_v(1, 0, notified=1, rectified=2), _v(2, 30, notified=1, rectified=2)], 40, "yellow"),
    # three in 90 days: red
    ([_v(i, i * 10, notified=1, rectified=2) for i in range(3)], 25, "red"),
    # one serious: red
    ([_v(1, 0, "serious", notified=1, rectified=2)], 10, "red"),
    # yellow repaired after 90 clean days with everything rectified
    ([_v(1, 0, notified=1, rectified=2), _v(2, 30, notified=1, rectified=2)], 121, "yellow"),
    ([_v(1, 0, notified=1, rectified=2), _v(2, 30, notified=1, rectified=2)], 123, "green"),
    ([_v(1, 0, notified=1, rectified=2), _v(2, 30, notified=1, rectified=2)], 200, "green"),
    # red goes back one step after 365 clean days, not straight to green
    ([_v(1, 0, "serious", notified=1, rectified=2)], 366, "red"),
    ([_v(1, 0, "serious", notified=1, rectified=2)], 368, "yellow"),
    ([_v(1, 0, "serious", notified=1, rectified=2)], 456, "yellow"),
    ([_v(1, 0, "serious", notified=1, rectified=2)], 458, "green"),
    # a refusal: red until rectified, then the clean period runs from the rectification
    ([_v(1, 0, notified=1, rectified=30)], 380, "red"),
    ([_v(1, 0, notified=1, rectified=30)], 396, "yellow"),
])
def test_credit_codes(violations, as_of_day, code):
    assert code_at(violations, T0 + timedelta(days=as_of_day), CreditPolicy()).code == code


def test_credit_from_confirmed_cases(config, db, monkeypatch):
    case_id = _one_case(config, db)
    monkeypatch.setenv("CITYWATCH_DATABASE_URL", config.database.url)
    monkeypatch.setenv("CITYWATCH_DATA_DIR", config.data_dir)
    with db.connection() as conn:
        for s in ("under_review", "confirmed"):
            case_store.transition(conn, case_id, s, "officer-7", "reviewed the series")
    assert cli(["credit", "list", "--code", "yellow", "--json"]) == 0
    from storage import credit as credit_store
    with db.connection() as conn:
        assert [(r.subject_id, r.code) for r in credit_store.current(conn)] == [("M-00001", "yellow")]


@pytest.mark.parametrize("doc, problem", [
    ({"rules": [{"id": "fume.x", "title": "t", "kind": "threshold", "subject_type": "merchant",
                 "device_kind": "fume", "metric": "fume_mg_m3", "window": "ten minutes",
                 "value": 2.0}]},
     "f.yaml: rules[0].window: Value error, expected a duration"),
    ({"rules": [{"id": "fume.x", "title": "t", "kind": "thresold"}]},
     "f.yaml: rules[0]: Input tag 'thresold' found using 'kind' does not match"),
    ({"rules": [{"id": "fume.x", "title": "t", "kind": "state", "subject_type": "merchant",
                 "device_kind": "fume", "when": {"fan_on": True}, "for_at_least": 60,
                 "colour": "red"}]},
     "f.yaml: rules[0].colour: unknown key"),
    ({"rules": [{"id": "fume.x", "title": "t", "kind": "threshold", "subject_type": "merchant",
                 "device_kind": "fume", "metric": "fume_mg_m3", "window": "10 minutes",
                 "value": {"strict": 1.0}}]},
     "f.yaml: rules[0].value: no value for profile 'standard'"),
    ({"rules": [{"id": "fume.c", "title": "t", "kind": "composite", "subject_type": "merchant",
                 "condition": {"all": ["fume.exceedance", "fume.nothing"]}}]},
     "f.yaml: rules[0].condition.all[1]: unknown rule id 'fume.nothing'"),
    ({"rules": [{"id": "drone.x", "title": "t", "kind": "detection", "subject_type": "merchant",
                 "source_kinds": ["drone"], "classes": ["street_stall", "stall"]}]},
     "f.yaml: rules[0].classes[1]: unknown detection class 'stall'"),
])
def test_rule_file_errors_name_file_and_path(doc, problem):
    with pytest.raises(RuleSetError) as err:
        parse([("f.yaml", doc)], "standard", list(CLASSES))
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_one_engine_at_a_time(config, db):
    store_readings(db, fume_series("FM-00001", local(DAY, "11:00"), 30, 3.0))
    with psycopg.connect(config.database.url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (ENGINE_LOCK,))
        with pytest.raises(EngineBusy):
            evaluate(config.rules, db)
    assert evaluate(config.rules, db).created == 1


def test_rules_check_cli(capsys):
    assert cli(["rules", "check"]) == 0
    assert "18 rules OK" in capsys.readouterr().out


def test_inspection_groups_open_cases_of_a_subject(config, db):
    store_readings(db, fume_series("FM-00001", local(DAY, "11:00"), 30, 3.0, purifier=False))
    evaluate(config.rules, db)
    with db.connection() as conn:
        (task,) = case_store.inspection_tasks(conn)
        trends = case_store.trends(conn, "Asia/Shanghai")
    assert (task.subject_id, task.rule_ids) == ("M-00001", ("fume.exceedance", "fume.purifier_off"))
    assert sorted((r, a, n) for _, r, a, n in trends) == [
        ("fume.exceedance", "AR-01", 1), ("fume.purifier_off", "AR-01", 1)]




@pytest.mark.parametrize("column, value", [
    ("status", "'closed'"),
    ("episode_end", "episode_end + interval '1 hour'"),
    ("evidence_state", "'incomplete'"),
])
def test_case_changed_behind_the_audit_log(config, db, column, value):
    case_id = _one_case(config, db)
    with db.connection() as conn:
        conn.execute(f"UPDATE cases SET {column} = {value} WHERE case_id = %s", (case_id,))
        conn.commit()
    problems = verify(config.data_path, db).problems
    assert len(problems) == 1 and f"case {case_id}: {column} is" in problems[0]


def test_cli_run_list_show_transition(config, db, monkeypatch, capsys):
    import json

    store_readings(db, fume_series("FM-00001", local(DAY, "11:00"), 30, 3.0))
    monkeypatch.setenv("CITYWATCH_DATABASE_URL", config.database.url)
    monkeypatch.setenv("CITYWATCH_DATA_DIR", config.data_dir)
    assert cli(["rules", "run", "--since", f"{DAY}T00:00", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["created"] == 1
    assert cli(["cases", "list", "--json"]) == 0
    (case,) = json.loads(capsys.readouterr().out)
    assert (case["rule_id"], case["evidence_state"]) == ("fume.exceedance", "ready")
    assert cli(["cases", "transition", str(case["case_id"]), "confirmed", "--actor", "o-1",
                "--reason", "skip review"]) == 1
    assert "cannot become confirmed" in capsys.readouterr().err
    assert cli(["cases", "transition", str(case["case_id"]), "under_review", "--actor", "o-1",
                "--reason", "opened"]) == 0
    assert "flagged -> under_review" in capsys.readouterr().out
    assert cli(["cases", "show", str(case["case_id"]), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [t["to"] for t in shown["transitions"]] == ["under_review"]
    assert [e["kind"] for e in shown["evidence"]] == ["series"]
