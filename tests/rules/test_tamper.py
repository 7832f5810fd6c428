"""`cases verify` against each way of altering a case behind the audit log's back.

Every tampering is done as a database superuser would: `session_replication_role =
replica` switches off the append-only triggers, so only the audit chain and its anchor
outside the database stand between the change and an officer's review.
"""

from __future__ import annotations

import pytest

from rules.engine import evaluate
from rules.verify import verify
from storage import audit
from storage import cases as case_store
from tests.rules.helpers import fume_series, local, store_readings

DAY = "2026-11-20"


@pytest.fixture
def confirmed(config, db) -> int:
    """One fume case with a series snapshot, reviewed and confirmed by an officer."""
    store_readings(db, fume_series("FM-00001", local(DAY, "11:00"), 30, 3.0))
    evaluate(config.rules, db)
    with db.connection() as conn:
        (case,) = case_store.list_cases(conn)
        case_store.transition(conn, case.case_id, "under_review", "officer-7", "looks real")
        case_store.transition(conn, case.case_id, "confirmed", "officer-7", "readings clear")
    report = verify(config.data_path, db)
    assert report.ok, report.problems
    assert report.anchored >= 1 and not report.warnings
    return case.case_id


def _tamper(db, *statements: str, case_id: int) -> None:
    with db.connection() as conn:
        conn.execute("SET session_replication_role = replica")
        for sql in statements:
            conn.execute(sql.replace(":id", str(case_id)))
        conn.commit()


@pytest.mark.parametrize("field, sql", [
    ("severity", "UPDATE cases SET severity = 'info' WHERE case_id = :id"),
    ("title", "UPDATE cases SET title = title || ' (minor)' WHERE case_id = :id"),
    ("legal_basis", "UPDATE cases SET legal_basis = '' WHERE case_id = :id"),
    ("summary", "UPDATE cases SET summary = summary || '{\"peak\": 0.1}' WHERE case_id = :id"),
    ("rule_version", "UPDATE cases SET rule_version = rule_version + 1 WHERE case_id = :id"),
    ("evidence_missing", "UPDATE cases SET evidence_missing = '[\"device not certified\"]' "
                         "WHERE case_id = :id"),
])
def test_changed_case_field(config, db, confirmed, field, sql):
    _tamper(db, sql, case_id=confirmed)
    problems = verify(config.data_path, db).problems
    assert [p for p in problems if p.startswith(f"case {confirmed}: {field} is ")], problems
    assert len(problems) == 1, problems


@pytest.mark.parametrize("column, value", [("actor", "officer-9"), ("reason", "no violation")])
def test_forged_transition(config, db, confirmed, column, value):
    _tamper(db, f"UPDATE case_transitions SET {column} = '{value}' "
                "WHERE case_id = :id AND to_status = 'confirmed'", case_id=confirmed)
    (problem,) = verify(config.data_path, db).problems
    assert f"case {confirmed}: transition 2 (under_review -> confirmed) has {column} " \
           f"'{value}'" in problem and "forged" in problem


def test_deleted_case_with_its_evidence(config, db, confirmed):
    _tamper(db, "DELETE FROM case_evidence WHERE case_id = :id",
            "DELETE FROM case_transitions WHERE case_id = :id",
            "DELETE FROM cases WHERE case_id = :id", case_id=confirmed)
    problems = verify(config.data_path, db).problems
    assert f"case {confirmed}: in the audit log but no longer in the cases table (deleted)" \
        in problems
    assert any(p.startswith(f"case {confirmed} series ") and "evidence deleted" in p
               for p in problems), problems


def test_cut_chain_tail_and_case_set_back(config, db, confirmed):
    """The last two audit rows (the review and the confirmation) removed, their transition
    rows too, and the case flagged again: the database is consistent with itself, and
    only the head anchored outside it shows what happened."""
    with db.connection() as conn:
        last = audit.head(conn)
    _tamper(db, f"DELETE FROM audit_log WHERE seq > {last.seq - 2}",
            "DELETE FROM case_transitions WHERE case_id = :id",
            "UPDATE cases SET status = 'flagged' WHERE case_id = :id", case_id=confirmed)
    problems = verify(config.data_path, db).problems
    assert problems == [p for p in problems if "anchored in anchor file" in p], problems
    assert any(f"audit #{last.seq} " in p and f"chain now ends at #{last.seq - 2}" in p
               and "removed from its end" in p for p in problems), problems


def test_checkpoint_outlives_a_deleted_anchor_file(config, db, confirmed):
    """Someone who can also delete the anchor file is still caught by a kept checkpoint."""
    with db.connection() as conn:
        kept = audit.head(conn)
    _tamper(db, f"DELETE FROM audit_log WHERE seq > {kept.seq - 2}",
            "DELETE FROM case_transitions WHERE case_id = :id",
            "UPDATE cases SET status = 'flagged' WHERE case_id = :id", case_id=confirmed)
    audit.anchor_path(config.data_path).unlink()
    report = verify(config.data_path, db)
    assert report.ok and report.warnings  # nothing left to compare with: said, not hidden
    checked = verify(config.data_path, db, [audit.parse_checkpoint(str(kept))])
    assert any("checkpoint" in p and "removed from its end" in p for p in checked.problems)


def test_anchor_follows_every_committed_head(config, db, confirmed):
    points, unreadable = audit.read_anchor(audit.anchor_path(config.data_path))
    with db.connection() as conn:
        head = audit.head(conn)
    assert not unreadable and (points[-1].seq, points[-1].hash) == (head.seq, head.hash)
    assert [p.seq for p in points] == sorted(p.seq for p in points)


def test_triggers_refuse_changes_to_case_records(db, confirmed):
    import psycopg

    for sql in ("UPDATE case_transitions SET actor = 'x'", "DELETE FROM case_evidence",
                f"DELETE FROM cases WHERE case_id = {confirmed}"):
        with db.connection() as conn, pytest.raises(psycopg.errors.RaiseException,
                                                    match="append-only"):
            conn.execute(sql)
