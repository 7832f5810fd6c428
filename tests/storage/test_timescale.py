"""The TimescaleDB path runs where the extension is installed; the plain path everywhere.

Both must give the same windowed means for the same readings, since rules read
readings_10min / readings_15min / readings_hourly whichever is underneath.
"""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from citywatch import app
from storage import timescale

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


def test_timescale_path_creates_hypertables_policies_and_aggregates(config, database_url):
    if not _timescale_available(database_url):
        pytest.skip("the timescaledb extension is not installed on this PostgreSQL server")
    db = app.open_database(config)
    try:
        with db.connection() as conn:
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
                assert (h.table, "policy_compression") in jobs
                assert (h.table, "policy_retention") in jobs
            caggs = {r[0] for r in conn.execute(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates")}
            assert set(timescale.AGGREGATES) <= caggs
            values = [float(i % 5) for i in range(60)]
            _insert_minutes(conn, "FM-00001", values)
            rows = _windows(conn, "readings_10min")  # real-time aggregate sees fresh rows
            assert [float(m) for _, m, _ in rows] == [
                round(sum(values[s:s + 10]) / 10, 6) for s in range(0, 60, 10)]
        # Applying again (every `citywatch db migrate` does) changes nothing and fails nothing.
        with db.connection() as conn:
            again = timescale.apply(conn, config.database.timescale)
            assert not [d for d in again if d.startswith(("hypertable", "continuous"))]
    finally:
        db.close()
