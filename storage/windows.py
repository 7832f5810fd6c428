"""The event-time window views rules read, built from the sensor-kind declarations.

`readings_10min`, `readings_15min` and `readings_hourly` hold, per device and bucket, every
aggregate the sensor kinds declare (`fume_mg_m3_mean`, `noise_dba_leq`, ...) and the
number of readings `n`. On plain PostgreSQL they are views over `date_bin`; under
TimescaleDB they are real-time continuous aggregates of the same name and columns
(storage/timescale.py). Each view carries the signature of the declarations it was built
from in its comment, so a changed declaration rebuilds it at the next migrate and an
unchanged one is left alone.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import psycopg
from psycopg import sql

from domain.sensors import WINDOW_VIEWS, Aggregate, window_columns

BUCKET_ORIGIN = "2000-01-01T00:00:00+00:00"

# How each declared aggregate is computed from the readings of a bucket.
AGGREGATE_SQL: dict[str, str] = {
    "mean": "avg({c})",
    "max": "max({c})",
    "min": "min({c})",
    "count": "count({c})",
    # energy mean of sound levels: 10·log10(mean(10^(L/10)))
    "leq": "10 * log10(avg(power(10::double precision, {c} / 10)))",
}


def aggregate(name: str, column: str) -> sql.Composable:
    """The SQL of one aggregate over one reading column."""
    return sql.SQL(AGGREGATE_SQL[name]).format(c=sql.Identifier(column))


def signature() -> str:
    """What the views are built from: the declared (field, aggregate) columns."""
    text = ";".join(f"{f}:{a}:{c}" for (f, a), c in sorted(window_columns().items()))
    return "citywatch windows " + hashlib.sha256(text.encode()).hexdigest()[:16]


def select(width: timedelta, *, timescale: bool) -> sql.Composed:
    """The SELECT behind one window view."""
    bucket = (sql.SQL("time_bucket({w}::interval, ts)") if timescale else
              sql.SQL("date_bin({w}::interval, ts, {o}::timestamptz)")).format(
        w=sql.Literal(width), o=sql.Literal(BUCKET_ORIGIN))
    columns = [sql.SQL("{agg} AS {col}").format(agg=aggregate(agg, field), col=sql.Identifier(col))
               for (field, agg), col in sorted(window_columns().items())]
    return sql.SQL("SELECT device_id, {bucket} AS bucket, {columns}, count(*) AS n "
                   "FROM readings GROUP BY device_id, bucket").format(
        bucket=bucket, columns=sql.SQL(", ").join(columns))


def view_column(width: timedelta, field: str, agg: Aggregate | str) -> tuple[str, str] | None:
    """(view, column) holding `agg` of `field` over windows of `width`, if one is kept."""
    column = window_columns().get((field, agg))  # type: ignore[arg-type]
    if column is None:
        return None
    for view, w in WINDOW_VIEWS.items():
        if w == width:
            return view, column
    return None


def current(conn: psycopg.Connection, name: str) -> str | None:
    """The signature comment of an existing view (None: absent; '' : no comment)."""
    row = conn.execute("SELECT coalesce(obj_description(to_regclass(%s), 'pg_class'), '') "
                       "WHERE to_regclass(%s) IS NOT NULL", (name, name)).fetchone()
    return None if row is None else row[0]


def is_continuous_aggregate(conn: psycopg.Connection, name: str) -> bool:
    if not conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension "
                        "WHERE extname = 'timescaledb')").fetchone()[0]:
        return False
    return conn.execute("SELECT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates "
                        "WHERE view_name = %s)", (name,)).fetchone()[0]


def drop(conn: psycopg.Connection, name: str) -> None:
    """Drop a window view, plain or continuous aggregate."""
    kind = "MATERIALIZED VIEW" if is_continuous_aggregate(conn, name) else "VIEW"
    conn.execute(sql.SQL("DROP {} IF EXISTS {}").format(sql.SQL(kind), sql.Identifier(name)))


def comment(conn: psycopg.Connection, name: str) -> None:
    """Record the signature on a view (a continuous aggregate is a view to COMMENT too)."""
    conn.execute(sql.SQL("COMMENT ON VIEW {} IS {}").format(
        sql.Identifier(name), sql.Literal(signature())))


def apply_plain(conn: psycopg.Connection) -> list[str]:
    """Create or rebuild the plain window views whose declarations changed."""
    done = []
    for name, width in WINDOW_VIEWS.items():
        if current(conn, name) == signature() and not is_continuous_aggregate(conn, name):
            continue
        drop(conn, name)
        conn.execute(sql.SQL("CREATE VIEW {} AS {}").format(
            sql.Identifier(name), select(width, timescale=False)))
        comment(conn, name)
        done.append(f"window view {name}")
    conn.commit()
    return done
