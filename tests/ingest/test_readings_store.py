"""storage/readings.py: identity (device, ts) makes writes idempotent; a changed repeat is
reported as a conflict, never written over the stored row."""

from datetime import UTC, datetime, timedelta

import pytest

from domain.records import Reading, Telemetry
from storage import readings as store

T0 = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
RX = T0 + timedelta(seconds=2)


def fume(device="FM-00001", minute=0, value=0.5, rx=RX):
    return Reading.of(device, T0 + timedelta(minutes=minute), rx, fume_mg_m3=value, fan_on=True,
                   purifier_on=True)


@pytest.mark.parametrize("first, second, result2", [
    # (batch 1, batch 2, (inserted, duplicates, conflicts) of batch 2)
    ([fume()], [fume()], (0, 1, ())),
    ([fume()], [fume(rx=RX + timedelta(minutes=5))], (0, 1, ())),  # redelivered later
    ([fume()], [fume(value=0.6)], (0, 0, (0,))),
    ([fume()], [fume(minute=1), fume(value=0.6), fume(minute=2)], (2, 0, (1,))),
    ([], [fume(), fume(value=0.7)], (1, 0, (1,))),  # conflict inside one batch
    ([], [fume(), fume()], (1, 1, ())),
    ([fume()], [fume(device="FM-00002")], (1, 0, ())),
])
def test_identity_and_conflicts(db, first, second, result2):
    with db.connection() as conn:
        store.insert_readings(conn, first)
        conn.commit()
        r = store.insert_readings(conn, second)
        conn.commit()
        assert (r.inserted, r.duplicates, r.conflicts) == result2
        # whatever came second, the first value of each key is what is stored
        kept = {(x.device_id, x.ts): x.fume_mg_m3 for x in store.readings_for(conn, "FM-00001")}
    firsts = {}
    for x in first + second:
        firsts.setdefault((x.device_id, x.ts), x.fume_mg_m3)
    assert kept == {k: v for k, v in firsts.items() if k[0] == "FM-00001"}


def test_telemetry_identity(db):
    p = Telemetry("UAV-01", T0, RX, 30.3, 120.1, 100.0, 90.0, 80.0, "AUTO", True)
    moved = Telemetry("UAV-01", T0, RX, 30.4, 120.1, 100.0, 90.0, 80.0, "AUTO", True)
    with db.connection() as conn:
        assert store.insert_telemetry(conn, [p]).inserted == 1
        r = store.insert_telemetry(conn, [p, moved])
        conn.commit()
        assert (r.inserted, r.duplicates, r.conflicts) == (0, 1, (1,))
        assert store.count_rows(conn, "telemetry") == 1


def test_bulk_copy_and_summary(db):
    rows = [fume(device=f"FM-{i % 7:05d}", minute=i, value=i / 10) for i in range(1000)]
    with db.connection() as conn:
        assert store.copy_readings(conn, rows) == 1000
        conn.commit()
        s = store.reading_summary(conn)
    assert (s.count, s.devices) == (1000, 7)
    assert s.fume_sum == pytest.approx(sum(r.fume_mg_m3 for r in rows))
