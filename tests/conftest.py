"""Shared fixtures: a fresh PostgreSQL database and an isolated MQTT topic space per test.

Tests talk to a real PostgreSQL (CITYWATCH_TEST_PG, default the local server) and a real
Mosquitto (CITYWATCH_TEST_MQTT, default 127.0.0.1:1883). Each test gets its own database
and its own topic prefix and client ids, so tests never see each other's data.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from citywatch import app
from citywatch import config as config_mod
from citywatch.config import AppConfig

ADMIN_URL = os.environ.get("CITYWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MQTT_URL = os.environ.get("CITYWATCH_TEST_MQTT", "mqtt://127.0.0.1:1883")


def _db_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def seal_template(name: str) -> None:
    """Make a migrated database a template nothing stays attached to.

    TimescaleDB's background-worker scheduler attaches to every database that has the
    extension, and CREATE DATABASE ... TEMPLATE refuses a source with other sessions. A
    database that refuses connections gets no scheduler (the launcher skips it), so: refuse
    connections first, then end the sessions already there (the scheduler among them)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false IS_TEMPLATE true')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        for _ in range(100):
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchone()
            if row[0] == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"sessions still attached to template database {name}")


@pytest.fixture(scope="session")
def template_database() -> str:
    """A database migrated once per test session, with the demo registry loaded: each test
    database is a copy of it (CREATE DATABASE ... TEMPLATE), which is far quicker than
    migrating and loading 1,707 subjects for every test."""
    name = f"cwtest_template_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    cfg = config_mod.load(env={})
    cfg.database.url = _db_url(name)
    database = app.open_database(cfg)
    database.close()
    seal_template(name)
    yield name
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE false')
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(template_database: str) -> str:
    """A database of its own for one test (migrated, registry loaded), dropped after it."""
    name = f"cwtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield _db_url(name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> AppConfig:
    """Configuration for one test: its own database, data directory, topics and client ids."""
    tag = uuid.uuid4().hex[:8]
    cfg = config_mod.load(env={})
    cfg.database.url = database_url
    cfg.mqtt.url = MQTT_URL
    cfg.mqtt.topic_prefix = f"cwtest-{tag}/v1"
    cfg.mqtt.client_id = f"cwtest-{tag}-collector"
    cfg.mqtt.shared_group = f"cwtest-{tag}"
    # The shared broker keeps persistent sessions: a test's must not outlive it by long.
    cfg.mqtt.session_expiry_s = 120
    cfg.data_dir = str(tmp_path / "data")
    return cfg


@pytest.fixture
def db(config: AppConfig):
    """The test database, migrated, with the demo registry loaded (a no-op check here)."""
    database = app.open_database(config)
    yield database
    database.close()
