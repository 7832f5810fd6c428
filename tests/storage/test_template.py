"""Test databases are copies of one sealed template: a session attached to the template
(TimescaleDB's scheduler attaches to every database with the extension) must not stop
CREATE DATABASE ... TEMPLATE."""

import time
import uuid

import psycopg
import pytest

from storage import timescale
from storage.db import seal_template, unseal_template
from tests.conftest import ADMIN_URL, db_url, drop_database

SCHEDULER = "TimescaleDB Background Worker Scheduler"


def _sessions(admin, name: str) -> list[str]:
    return [r[0] for r in admin.execute(
        "SELECT backend_type FROM pg_stat_activity WHERE datname = %s", (name,))]


def test_template_with_sessions_attached_is_sealed_and_copied():
    name = f"cwtest_sealed_{uuid.uuid4().hex[:8]}"
    copies: list[str] = []
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            attached = psycopg.connect(db_url(name), autocommit=True)
            with_scheduler = timescale.available(attached)
            if with_scheduler:
                attached.execute("CREATE EXTENSION timescaledb")
                deadline = time.monotonic() + 10
                while SCHEDULER not in _sessions(admin, name):
                    assert time.monotonic() < deadline, "TimescaleDB's scheduler never attached"
                    time.sleep(0.1)
            assert len(_sessions(admin, name)) == (2 if with_scheduler else 1)

            seal_template(ADMIN_URL, name)

            assert _is_dead(attached)  # the attached session was ended
            with pytest.raises(psycopg.OperationalError, match="not currently accepting"):
                psycopg.connect(db_url(name)).close()
            for _ in range(3):
                copy = f"cwtest_{uuid.uuid4().hex[:12]}"
                admin.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
                copies.append(copy)
                time.sleep(0.3)  # time for a scheduler to come back, if it would
            assert _sessions(admin, name) == []
            for copy in copies:  # copies take connections (and their own scheduler)
                with psycopg.connect(db_url(copy)) as conn:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            for copy in copies:
                drop_database(copy)
            unseal_template(ADMIN_URL, name)
            drop_database(name)


def _is_dead(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False
