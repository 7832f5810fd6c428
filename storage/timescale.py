"""TimescaleDB: hypertables, compression, retention and continuous aggregates.

Applied after the plain migrations when the `timescaledb` extension is available and
enabled in configuration. Every step is idempotent, so `citywatch db migrate` can run at
every start; policy intervals come from configuration and are re-applied when they change.
Written against TimescaleDB 2.x's documented API (create_hypertable with by_range,
add_compression_policy, add_retention_policy, continuous aggregates with
timescaledb.materialized_only = false for real-time results).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from domain.sensors import WINDOW_VIEWS
from storage import windows
from storage.config import TimescaleConfig


@dataclass(frozen=True, slots=True)
class Hypertable:
    table: str
    time_column: str
    segment_by: str
    retention: str  # attribute name of TimescaleConfig holding the retention interval


HYPERTABLES = (
    Hypertable("readings", "ts", "device_id", "retain_readings"),
    Hypertable("telemetry", "ts", "drone_id", "retain_readings"),
    Hypertable("frames", "ts", "source_id", "retain_frames"),
    Hypertable("detections", "frame_ts", "source_id", "retain_frames"),
)

# name -> bucket width: the window views of storage/windows.py, as continuous aggregates.
AGGREGATES = WINDOW_VIEWS


def available(conn: psycopg.Connection) -> bool:
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
    ).fetchone()[0]


def installed(conn: psycopg.Connection) -> bool:
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()[0]


def _is_hypertable(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables "
        "WHERE hypertable_name = %s)", (table,)
    ).fetchone()[0]


def _is_continuous_aggregate(conn: psycopg.Connection, view: str) -> bool:
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates "
        "WHERE view_name = %s)", (view,)
    ).fetchone()[0]


def apply(conn: psycopg.Connection, config: TimescaleConfig) -> list[str]:
    """Turn the time-series tables into hypertables with policies; return what was done."""
    done: list[str] = []
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    # Plain window views stand where the continuous aggregates will be; an aggregate built
    # from other sensor declarations is rebuilt.
    for name in AGGREGATES:
        if (not _is_continuous_aggregate(conn, name)
                or windows.current(conn, name) != windows.signature()):
            windows.drop(conn, name)
    for h in HYPERTABLES:
        table = sql.Identifier(h.table)
        if not _is_hypertable(conn, h.table):
            conn.execute(
                sql.SQL("SELECT create_hypertable({t}, by_range({c}, {i}::interval), "
                        "migrate_data => true, if_not_exists => true)").format(
                    t=sql.Literal(h.table), c=sql.Literal(h.time_column),
                    i=sql.Literal(config.chunk_interval)))
            conn.execute(
                sql.SQL("ALTER TABLE {t} SET (timescaledb.compress, "
                        "timescaledb.compress_segmentby = {s}, "
                        "timescaledb.compress_orderby = {o})").format(
                    t=table, s=sql.Literal(h.segment_by),
                    o=sql.Literal(f"{h.time_column} DESC")))
            done.append(f"hypertable {h.table}")
        # Policies: drop and re-add so a changed interval in configuration takes effect.
        conn.execute("SELECT remove_compression_policy(%s, if_exists => true)", (h.table,))
        conn.execute("SELECT add_compression_policy(%s, %s::interval)",
                     (h.table, config.compress_after))
        conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (h.table,))
        conn.execute("SELECT add_retention_policy(%s, %s::interval)",
                     (h.table, getattr(config, h.retention)))
        done.append(f"policies {h.table}: compress after {config.compress_after}, "
                    f"retain {getattr(config, h.retention)}")
    for name, width in AGGREGATES.items():
        if not _is_continuous_aggregate(conn, name):
            # CREATE MATERIALIZED VIEW ... WITH (timescaledb.continuous) cannot run inside a
            # transaction block: commit what came before and run it in autocommit.
            conn.commit()
            conn.autocommit = True
            try:
                conn.execute(sql.SQL(
                    "CREATE MATERIALIZED VIEW {name} WITH (timescaledb.continuous, "
                    "timescaledb.materialized_only = false) AS {select} WITH NO DATA").format(
                        name=sql.Identifier(name), select=windows.select(width, timescale=True)))
                windows.comment(conn, name)
            finally:
                conn.autocommit = False
            done.append(f"continuous aggregate {name}")
        conn.execute("SELECT remove_continuous_aggregate_policy(%s, if_exists => true)",
                     (name,))
        conn.execute(
            "SELECT add_continuous_aggregate_policy(%s, start_offset => %s::interval, "
            "end_offset => %s::interval, schedule_interval => %s::interval)",
            (name, "3 days", width, width),
        )
    conn.commit()
    return done
