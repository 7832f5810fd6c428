"""Every connection carries a statement timeout and TCP keepalives, so a statement that
hangs or a network path that drops silently ends in an error the caller retries."""

from __future__ import annotations

import psycopg
import pytest

from storage.db import Database


def test_connections_carry_timeouts_and_keepalives(config, tmp_path):
    config.database.statement_timeout_s = 0.5
    config.database.tcp_keepalive_s = 7
    db = Database.from_config(config.database, tmp_path).open()
    try:
        with db.connection() as conn:
            params = conn.info.get_parameters()
            assert (params["keepalives"], params["keepalives_idle"],
                    params["keepalives_interval"], params["keepalives_count"],
                    params["tcp_user_timeout"]) == ("1", "7", "3", "3", "21000")
            assert conn.execute("SHOW statement_timeout").fetchone()[0] == "500ms"
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(3)")
            conn.rollback()
            assert conn.execute("SELECT 1").fetchone()[0] == 1  # the connection lives on
    finally:
        db.close()


def test_statement_timeout_can_be_switched_off(config, tmp_path):
    config.database.statement_timeout_s = 0
    with Database.from_config(config.database, tmp_path) as db, db.connection() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "0"


def test_a_pool_without_settings_gets_the_defaults(database_url):
    with Database(database_url) as db, db.connection() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "5min"
        assert conn.info.get_parameters()["keepalives"] == "1"
