"""The TimescaleDB path runs where the extension is installed; the plain path everywhere.

Both must give the same windowed means for the same readings, since rules read
readings_10min / readings_15min / readings_hourly whichever is underneath. Where the
server has TimescaleDB, the policies run as the scheduler's background jobs, the
continuous aggregates give the rules the same cases as plain views, and a day of readings
compresses tenfold; without it those tests are skipped (the first one runs on both).
"""

import threading
import time
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from citywatch import app
from domain.sensors import window_columns
from rules.engine import evaluate
from simulators import scenario as scenarios
from storage import cases as case_store
from storage import timescale
from storage.db import Database
from tests.conftest import copy_database, db_url, drop_database, drop_template, make_template
from tests.rules.helpers import store_readings

T0 = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)


def _insert_minutes(conn, device_id: str, values: list[float]) -> None:
    with conn.cursor().copy(
        "COPY readings (device_id, ts, received_at, fume_mg_m3, fan_on, purifier_on) FROM STDIN"
    ) as copy:
        for i, v in enumerate(values):
            ts = T0 + timedelta(minutes=i)
            copy.write_row((device_id, ts, ts, v, True, True))
    conn.commit()


def _windows(conn, view: str) -> list[tuple]:
    return conn.execute(
        f"SELECT bucket, round(fume_mg_m3_mean::numeric, 6), n FROM {view} "
        "WHERE device_id = 'FM-00001' ORDER BY bucket").fetchall()


@pytest.mark.parametrize("view, width_min", [
    ("readings_10min", 10), ("readings_15min", 15), ("readings_hourly", 60)])
def test_window_views_average_each_bucket(db, view, width_min):
    values = [float(i % 7) for i in range(120)]  # two hours of minute readings
    with db.connection() as conn:
        _insert_minutes(conn, "FM-00001", values)
        rows = _windows(conn, view)
    expected = [
        (T0 + timedelta(minutes=s),
         round(sum(values[s:s + width_min]) / width_min, 6), width_min)
        for s in range(0, 120, width_min)
    ]
    assert [(b, float(m), n) for b, m, n in rows] == [(b, m, n) for b, m, n in expected]


def _timescale_available(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return timescale.available(conn)


@pytest.fixture
def tsdb(config, database_url):
    """The test database with TimescaleDB applied (skips where the server lacks it)."""
    if not _timescale_available(database_url):
        pytest.skip("the timescaledb extension is not installed on this PostgreSQL server")
    database = app.open_database(config)
    yield database
    database.close()


def test_timescale_path_creates_hypertables_policies_and_aggregates(config, tsdb):
    with tsdb.connection() as conn:
        hypertables = {r[0] for r in conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables")}
        assert {h.table for h in timescale.HYPERTABLES} <= hypertables
        compressed = {r[0] for r in conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables "
            "WHERE compression_enabled")}
        assert {h.table for h in timescale.HYPERTABLES} <= compressed
        jobs = conn.execute(
            "SELECT hypertable_name, proc_name FROM timescaledb_information.jobs").fetchall()
        for h in timescale.HYPERTABLES:
            assert jobs.count((h.table, "policy_compression")) == 1
            assert jobs.count((h.table, "policy_retention")) == 1
        for name in timescale.AGGREGATES:
            assert jobs.count((name, "policy_refresh_continuous_aggregate")) == 1
        caggs = {r[0] for r in conn.execute(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates")}
        assert set(timescale.AGGREGATES) <= caggs
        values = [float(i % 5) for i in range(60)]
        _insert_minutes(conn, "FM-00001", values)
        rows = _windows(conn, "readings_10min")  # real-time aggregate sees fresh rows
        assert [float(m) for _, m, _ in rows] == [
            round(sum(values[s:s + 10]) / 10, 6) for s in range(0, 60, 10)]
    # Applying again (every process start does) changes nothing and fails nothing.
    with tsdb.connection() as conn:
        assert timescale.apply(conn, config.database.timescale) == []


def _policies(conn) -> list[tuple[str, str, str]]:
    return conn.execute(
        "SELECT hypertable_name, proc_name, coalesce(config ->> 'compress_after', "
        "config ->> 'drop_after', config ->> 'start_offset') FROM timescaledb_information.jobs "
        "WHERE hypertable_name IS NOT NULL ORDER BY 1, 2").fetchall()


def test_processes_starting_at_once_all_start_and_change_each_policy_once(config, tsdb):
    """Six sessions (as six collector processes would open) run the whole start-up
    (migrations, TimescaleDB policies, registry sync) at the same instant, with policy
    intervals changed in configuration: all start, and each policy is replaced once."""
    config.database.timescale.compress_after = "3 days"
    config.database.timescale.retain_readings = "300 days"
    n = 6
    barrier = threading.Barrier(n)
    done: list[list[str]] = []
    errors: list[BaseException] = []

    def start() -> None:
        db = Database(config.database.url, name="cwtest-start").open()
        try:
            barrier.wait(30)
            done.append(app.prepare(db, config))
        except BaseException as exc:  # reported below, with every other thread's
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=start) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(done) == n
    changes = sorted(d for ds in done for d in ds)
    assert changes == sorted(
        [f"compression policy {h.table}: after 3 days" for h in timescale.HYPERTABLES]
        + ["retention policy readings: drop after 300 days",
           "retention policy telemetry: drop after 300 days"])
    with tsdb.connection() as conn:
        policies = _policies(conn)
    assert len(policies) == len(set((t, p) for t, p, _ in policies))  # one of each
    assert ("readings", "policy_compression", "3 days") in policies
    assert ("readings", "policy_retention", "300 days") in policies
    assert ("frames", "policy_retention", "400 days") in policies


def _run_jobs_in_background(conn, relations: list[str], procs: list[str],
                            timeout_s: float = 240.0) -> dict:
    """Ask the scheduler to run the `procs` policy jobs of `relations` now (test databases
    come with them paused); wait until each has finished a run started after the request;
    {(relation, proc): last run status}."""
    jobs = conn.execute(
        "SELECT job_id, hypertable_name, proc_name FROM timescaledb_information.jobs "
        "WHERE hypertable_name = ANY(%s) AND proc_name = ANY(%s)", (relations, procs)).fetchall()
    asked = conn.execute("SELECT now()").fetchone()[0]
    for job_id, _, _ in jobs:
        conn.execute("SELECT alter_job(%s, scheduled => true, next_start => now())", (job_id,))
    conn.commit()
    ids = [j for j, _, _ in jobs]
    deadline = time.monotonic() + timeout_s
    while True:
        # a run finished since the request: a success, or an error recorded for it
        rows = conn.execute(
            "SELECT s.job_id, CASE WHEN s.last_successful_finish >= %(asked)s THEN 'Success' "
            "ELSE (SELECT 'Failed: ' || min(e.err_message) FROM timescaledb_information.job_errors e "
            "      WHERE e.job_id = s.job_id AND e.start_time >= %(asked)s) END "
            "FROM timescaledb_information.job_stats s WHERE s.job_id = ANY(%(ids)s)",
            {"asked": asked, "ids": ids}).fetchall()
        conn.commit()
        ran = {j: status for j, status in rows if status is not None}
        if len(ran) == len(jobs):
            return {(rel, proc): ran[j] for j, rel, proc in jobs}
        assert time.monotonic() < deadline, f"jobs not run by the scheduler: {rows}"
        time.sleep(0.2)


def _copy_minutes(conn, device_id: str, start: datetime, minutes: int) -> None:
    with conn.cursor().copy(
        "COPY readings (device_id, ts, received_at, fume_mg_m3, fan_on, purifier_on) FROM STDIN"
    ) as copy:
        for i in range(minutes):
            ts = start + timedelta(minutes=i)
            copy.write_row((device_id, ts, ts, 0.5 + (i % 13) / 10, True, True))


def test_policies_run_as_background_jobs_and_succeed(tsdb):
    with tsdb.connection() as conn:
        now = conn.execute("SELECT date_trunc('hour', now())").fetchone()[0]
        _copy_minutes(conn, "FM-00001", now - timedelta(days=500), 60)  # past retention
        _copy_minutes(conn, "FM-00002", now - timedelta(days=10), 24 * 60)  # to compress
        _copy_minutes(conn, "FM-00003", now - timedelta(hours=2), 120)  # to materialize
        conn.commit()
        raw = conn.execute(
            "SELECT device_id, date_bin('10 minutes', ts, TIMESTAMPTZ '2000-01-01'), "
            "round(avg(fume_mg_m3)::numeric, 9), count(*) FROM readings "
            "WHERE device_id IN ('FM-00002', 'FM-00003') GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
        tables = [h.table for h in timescale.HYPERTABLES]
        # retention first: a chunk being dropped cannot be compressed at the same time
        # (in service the two never meet: chunks are compressed a year before retention)
        statuses = _run_jobs_in_background(conn, tables, procs=["policy_retention"])
        statuses |= _run_jobs_in_background(conn, tables + list(timescale.AGGREGATES),
                                            procs=["policy_compression",
                                                   "policy_refresh_continuous_aggregate"])
        assert [s for s in statuses.values() if s != "Success"] == [], statuses
        assert len(statuses) == 2 * len(timescale.HYPERTABLES) + len(timescale.AGGREGATES)
        assert {r[0] for r in conn.execute(
            "SELECT s.last_run_status FROM timescaledb_information.job_stats s "
            "JOIN timescaledb_information.jobs j USING (job_id) "
            "WHERE j.hypertable_name = ANY(%s)", (tables + list(timescale.AGGREGATES),))} == \
            {"Success"}
        # retention dropped the old chunk; compression compressed every chunk past 7 days
        assert conn.execute("SELECT count(*) FROM readings WHERE device_id = 'FM-00001'"
                            ).fetchone()[0] == 0
        old_chunks = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE is_compressed) "
            "FROM timescaledb_information.chunks WHERE hypertable_name = 'readings' "
            "AND range_end < now() - interval '7 days'").fetchone()
        assert old_chunks[0] > 0 and old_chunks[0] == old_chunks[1]
        # the refresh materialized the recent buckets, and the real-time aggregate reads
        # them together with the bucket still filling: the same as the raw rows
        mat = conn.execute(
            "SELECT format('%I.%I', materialization_hypertable_schema, "
            "materialization_hypertable_name) FROM timescaledb_information.continuous_aggregates "
            "WHERE view_name = 'readings_10min'").fetchone()[0]
        assert conn.execute(f"SELECT count(*) FROM {mat}").fetchone()[0] > 0
        recent = [r for r in raw if r[0] == "FM-00003"]
        assert _fm_windows(conn, "FM-00003") == recent
        # Readings older than the policy's window, below the watermark, are not in the
        # aggregate until a refresh covers them: what the rule engine does before judging.
        assert _fm_windows(conn, "FM-00002") == []
        timescale.refresh_aggregates(conn, now - timedelta(days=11), now)
        assert _fm_windows(conn, "FM-00002") + _fm_windows(conn, "FM-00003") == raw


def _fm_windows(conn, device_id: str) -> list[tuple]:
    rows = conn.execute(
        "SELECT device_id, bucket, round(fume_mg_m3_mean::numeric, 9), n FROM readings_10min "
        "WHERE device_id = %s ORDER BY 2", (device_id,)).fetchall()
    conn.commit()
    return rows


@pytest.fixture(scope="module")
def plain_template():
    """A template migrated without TimescaleDB (plain views) on the same server."""
    name = make_template(with_timescale=False)
    yield name
    drop_template(name)


@pytest.mark.slow
def test_continuous_aggregates_give_the_same_cases_as_plain_views(config, tsdb, plain_template):
    """The same day of the `violations` scenario on TimescaleDB and on plain PostgreSQL:
    the same cases, the same windows. On TimescaleDB the aggregates were materialized up to
    an hour ago before the day (a week old) is loaded, as in service: the day lies below
    their watermark, where a real-time aggregate shows only what was materialized."""
    sc = scenarios.load("violations", day=date(2026, 11, 20))
    readings = list(sc.readings())
    fleet = {r.device_id for r in readings}
    with tsdb.connection() as conn:
        other = conn.execute("SELECT min(device_id) FROM devices WHERE kind = 'fume' "
                             "AND NOT device_id = ANY(%s)", (list(fleet),)).fetchone()[0]
        hour_ago = conn.execute("SELECT date_trunc('hour', now()) - interval '1 hour'"
                                ).fetchone()[0]
        _copy_minutes(conn, other, hour_ago, 60)
        conn.commit()
        _refresh_as_the_policy_does(conn)
    store_readings(tsdb, readings)
    with tsdb.connection() as conn:
        assert conn.execute("SELECT count(*) FROM readings_10min WHERE bucket < %s",
                            (sc.end,)).fetchone()[0] == 0  # not seen until refreshed
    plain_name = copy_database(plain_template)
    try:
        plain_cfg = config.model_copy(deep=True)
        plain_cfg.database.url = db_url(plain_name)
        plain_cfg.database.timescale.enabled = False
        plain = app.open_database(plain_cfg)
        try:
            with plain.connection() as conn:
                assert not timescale.installed(conn)
            store_readings(plain, readings)
            plain_result = evaluate(plain_cfg.rules, plain, until=sc.end)
            ts_result = evaluate(config.rules, tsdb, until=sc.end)
            with plain.connection() as conn:
                plain_cases = case_store.case_keys(conn)
                plain_windows = {v: _all_windows(conn, v, sc.end) for v in timescale.AGGREGATES}
        finally:
            plain.close()
        with tsdb.connection() as conn:
            assert timescale.installed(conn)
            ts_cases = case_store.case_keys(conn)
            ts_windows = {v: _all_windows(conn, v, sc.end) for v in timescale.AGGREGATES}
        assert plain_result.created == len(sc.expected_cases) == len(plain_cases)
        assert ts_cases == plain_cases
        assert ts_result.created == plain_result.created
        assert ts_windows == plain_windows
        again = evaluate(config.rules, tsdb, until=sc.end)
        assert (again.created, again.revised) == (0, 0)
    finally:
        drop_database(plain_name)


def _refresh_as_the_policy_does(conn) -> None:
    conn.commit()
    conn.autocommit = True
    try:
        for view, width in timescale.AGGREGATES.items():
            conn.execute(f"CALL refresh_continuous_aggregate('{view}', now() - interval "
                         f"'{timescale.REFRESH_WINDOW}', now() - interval '{width}')")
    finally:
        conn.autocommit = False


def _all_windows(conn, view: str, before: datetime) -> list[tuple]:
    columns = ", ".join(f"round({c}::numeric, 9)" for c in sorted(window_columns().values()))
    return conn.execute(f"SELECT device_id, bucket, {columns}, n FROM {view} "
                        "WHERE bucket < %s ORDER BY 1, 2", (before,)).fetchall()


def test_a_day_of_readings_compresses_at_least_eightfold(tsdb):
    """The `demo-day` scenario (60 fume and dust monitors, a reading a minute): bytes per
    reading before and after compressing its chunks."""
    sc = scenarios.load("demo-day", day=date(2026, 11, 20))
    store_readings(tsdb, list(sc.readings()))
    with tsdb.connection() as conn:
        conn.execute("ANALYZE readings")
        n = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        before = conn.execute("SELECT hypertable_size('readings')").fetchone()[0]
        conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('readings') c")
        conn.commit()
        stats = conn.execute(
            "SELECT before_compression_total_bytes, after_compression_total_bytes "
            "FROM hypertable_compression_stats('readings')").fetchone()
        after = conn.execute("SELECT hypertable_size('readings')").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == n
    ratio = stats[0] / stats[1]
    print(f"{n} readings: {before / n:.1f} B/reading before, {after / n:.1f} after, "
          f"{ratio:.1f}x")
    assert ratio >= 8  # 9.7x measured; the bench's full day of 1,649 monitors: BENCHMARKS.md
