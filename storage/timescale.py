"""TimescaleDB: hypertables, compression, retention and continuous aggregates.

Applied after the plain migrations when the `timescaledb` extension is available and
enabled in configuration. Every step is idempotent and runs under one advisory lock, so
every process can apply it at start-up, any number at once; policy intervals come from
configuration and a policy is replaced only when its intervals changed.
Written against TimescaleDB 2.x's documented API (create_hypertable with by_range,
add_compression_policy, add_retention_policy, continuous aggregates with
timescaledb.materialized_only = false for real-time results).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
# Each aggregate is refreshed every bucket width over the last REFRESH_WINDOW, so readings
# arriving that late are still folded in; older buckets keep what they were refreshed with.
AGGREGATES = WINDOW_VIEWS
REFRESH_WINDOW = "3 days"


def available(conn: psycopg.Connection) -> bool:
    """TimescaleDB can be used here: installed on the server and preloaded (a server that
    has its files but does not preload it refuses CREATE EXTENSION; it stays plain)."""
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') "
        "AND current_setting('shared_preload_libraries') LIKE '%timescaledb%'"
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


# Session-level advisory lock held while policies are checked and changed, so processes
# starting at once on one database (N collectors) never race on the same policy.
POLICY_LOCK = 0x63697470  # "citp"


def _jobs(conn: psycopg.Connection) -> dict[tuple[str, str], tuple[dict, object]]:
    """(hypertable or aggregate name, policy proc) -> (job config, schedule interval)."""
    return {(name, proc): (cfg, every) for name, proc, cfg, every in conn.execute(
        "SELECT hypertable_name, proc_name, config, schedule_interval "
        "FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL")}


def _same_interval(conn: psycopg.Connection, have: object, want: str) -> bool:
    return have is not None and conn.execute(
        "SELECT %s::interval = %s::interval", (have, want)).fetchone()[0]


def _set_policy(conn: psycopg.Connection, jobs: dict, relation: str, proc: str,
                wanted: dict[str, str], remove: str, add: sql.Composable) -> bool:
    """Replace a policy only when it is missing or its intervals differ from `wanted`
    (job-config key -> interval; "schedule_interval" for the job's own); True if changed."""
    have = jobs.get((relation, proc))
    if have is not None:
        cfg, every = have
        if all(_same_interval(conn, every if k == "schedule_interval" else cfg.get(k), v)
               for k, v in wanted.items()):
            return False
        conn.execute(sql.SQL("SELECT {}(%s, if_exists => true)").format(sql.Identifier(remove)),
                     (relation,))
    conn.execute(add)
    return True


def apply(conn: psycopg.Connection, config: TimescaleConfig) -> list[str]:
    """Turn the time-series tables into hypertables with policies; return what was done.

    Idempotent and safe when several processes run it at once: everything happens under
    one advisory lock, and a policy is replaced only when its configured intervals changed,
    so a process starting next to running ones changes (and locks) nothing."""
    conn.commit()
    conn.execute("SELECT pg_advisory_lock(%s)", (POLICY_LOCK,))
    conn.commit()
    try:
        done = _apply(conn, config)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (POLICY_LOCK,))
        conn.commit()
    return done


def _apply(conn: psycopg.Connection, config: TimescaleConfig) -> list[str]:
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
    jobs = _jobs(conn)
    for h in HYPERTABLES:
        retain = getattr(config, h.retention)
        if _set_policy(conn, jobs, h.table, "policy_compression",
                       {"compress_after": config.compress_after}, "remove_compression_policy",
                       sql.SQL("SELECT add_compression_policy({}, {}::interval)").format(
                           sql.Literal(h.table), sql.Literal(config.compress_after))):
            done.append(f"compression policy {h.table}: after {config.compress_after}")
        if _set_policy(conn, jobs, h.table, "policy_retention", {"drop_after": retain},
                       "remove_retention_policy",
                       sql.SQL("SELECT add_retention_policy({}, {}::interval)").format(
                           sql.Literal(h.table), sql.Literal(retain))):
            done.append(f"retention policy {h.table}: drop after {retain}")
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
        if _set_policy(conn, jobs, name, "policy_refresh_continuous_aggregate",
                       {"start_offset": REFRESH_WINDOW, "end_offset": width,
                        "schedule_interval": width},
                       "remove_continuous_aggregate_policy",
                       sql.SQL("SELECT add_continuous_aggregate_policy({n}, "
                               "start_offset => {s}::interval, end_offset => {w}::interval, "
                               "schedule_interval => {w}::interval)").format(
                           n=sql.Literal(name), s=sql.Literal(REFRESH_WINDOW),
                           w=sql.Literal(width))):
            done.append(f"refresh policy {name}: every {width}, the last {REFRESH_WINDOW}")
    return done


def refresh_aggregates(conn: psycopg.Connection, start: datetime, end: datetime) -> None:
    """Bring the continuous aggregates up to date over [start, end) of event time.

    A real-time aggregate answers from raw rows only above its materialization watermark;
    below it, it answers from what was materialized, and readings that arrived since (late,
    or loaded in bulk older than the refresh policy's window) are missing until a refresh
    covers them. Whoever judges windows by event time refreshes the range first, so the
    aggregates answer exactly as the plain views would. Only completed buckets are
    materialized; the bucket still filling stays real-time. Cheap when nothing changed."""
    if not installed(conn):
        return
    now = conn.execute("SELECT now()").fetchone()[0]
    conn.commit()
    was = conn.autocommit
    conn.autocommit = True
    try:
        for name, width in AGGREGATES.items():
            lo, hi = conn.execute(
                "SELECT date_bin(%(w)s::interval, %(s)s, %(o)s) - %(w)s::interval, "
                "least(date_bin(%(w)s::interval, %(e)s, %(o)s) + %(w)s::interval, "
                "date_bin(%(w)s::interval, %(n)s, %(o)s))",
                {"w": width, "s": start, "e": end, "n": now, "o": windows.BUCKET_ORIGIN}).fetchone()
            if lo < hi:
                conn.execute(sql.SQL("CALL refresh_continuous_aggregate({}, {}, {})").format(
                    sql.Literal(name), sql.Literal(lo), sql.Literal(hi)))
    finally:
        conn.autocommit = was


def pause_jobs(conn: psycopg.Connection) -> None:
    """Stop the scheduler running this database's policy jobs (benchmarks and tests
    measure and check queries alone); `db migrate` does not resume them:
    alter_job(id, scheduled => true) does."""
    conn.execute("SELECT alter_job(job_id, scheduled => false) "
                 "FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL")
    conn.commit()


def compress_all(conn: psycopg.Connection, table: str) -> int:
    """Compress every chunk of a hypertable now; the number of chunks."""
    n = conn.execute("SELECT count(compress_chunk(c, if_not_compressed => true)) "
                     "FROM show_chunks(%s) c", (table,)).fetchone()[0]
    conn.commit()
    return n


def storage_bytes(conn: psycopg.Connection, table: str) -> int:
    """Bytes a table takes with its indexes and TOAST: every chunk's (compressed or not)
    for a hypertable, the table's own otherwise."""
    if installed(conn) and _is_hypertable(conn, table):
        return conn.execute("SELECT hypertable_size(%s)", (table,)).fetchone()[0]
    return conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]
