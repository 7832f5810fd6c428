"""Benchmark: the whole default rule set over a simulated day of every fume monitor.

1,589 fume monitors at one reading a minute (≈ 2.29 M rows) plus the 60 dust sites
(≈ 86 k rows), with a few injected violations, are generated once with COPY into a named
database (kept, so re-runs skip the generation). Each run clones it (CREATE DATABASE ...
TEMPLATE) so the engine meets no cases, then times, in the same run:

* baseline: one plain SQL scan computing the 10-minute fume means of the day, and
* the engine: `rules.engine.evaluate` with the default rules (first run: cases created),
  then again (idempotent re-run: nothing new).

    python -m bench.rules [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--regenerate]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from citywatch import app
from citywatch import config as config_mod
from domain.records import Reading
from domain.registry import load as load_registry
from rules.engine import evaluate
from storage import readings as reading_store
from storage import rule_queries
from storage.db import Database

DATA_DB = "citywatch_bench_rules"
DAY = datetime(2026, 11, 20, tzinfo=ZoneInfo("Asia/Shanghai"))


def _url(admin: str, name: str) -> str:
    return admin.rpartition("/")[0] + "/" + name


def _readings(fume_ids: list[str], dust_ids: list[str]):
    """A day of readings; every 50th merchant is above 2.0 mg/m³ from 18:00 to 18:40 and
    every 70th runs its fan with the purifier off 12:00-12:30, every 100th is silent
    17:30-20:30; every 10th site has 2 h of PM10 at 240 µg/m³ from 10:00."""
    rng = random.Random(7)
    for i, device in enumerate(fume_ids):
        phase = i % 60
        for m in range(24 * 60):
            ts = DAY + timedelta(minutes=m, seconds=phase)
            hh = m // 60
            if i % 100 == 0 and 17 * 60 + 30 <= m < 20 * 60 + 30:
                continue
            fume = 2.8 if i % 50 == 0 and 18 * 60 <= m < 18 * 60 + 40 else rng.uniform(0.2, 1.2)
            purifier = not (i % 70 == 0 and 12 * 60 <= m < 12 * 60 + 30)
            yield Reading.of(device, ts, ts, fume_mg_m3=round(fume, 3), fan_on=10 <= hh < 22,
                          purifier_on=purifier)
    for i, device in enumerate(dust_ids):
        for m in range(24 * 60):
            ts = DAY + timedelta(minutes=m, seconds=i % 60)
            pm10 = 240.0 if i % 10 == 0 and 600 <= m < 720 else rng.uniform(50, 110)
            yield Reading.of(device, ts, ts, pm10_ug_m3=round(pm10, 1), pm25_ug_m3=round(pm10 / 2, 1))


def prepare(admin: str, cfg: config_mod.AppConfig, regenerate: bool) -> int:
    """Make sure the named data database holds the day; return its reading count."""
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATA_DB,)).fetchone()
        if exists and regenerate:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(DATA_DB)))
            exists = None
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATA_DB)))
    cfg.database.url = _url(admin, DATA_DB)
    with Database(cfg.database.url) as db:
        app.prepare(db, cfg)
        with db.connection() as conn:
            n = reading_store.count_rows(conn, "readings")
            if not n:
                reg = load_registry(cfg.resolve(cfg.registry.directory))
                fume = sorted(d.device_id for d in reg.devices if d.kind == "fume")
                dust = sorted(d.device_id for d in reg.devices if d.kind == "dust")
                t0 = time.monotonic()
                n = reading_store.copy_readings(conn, _readings(fume, dust))
                conn.commit()
                print(f"generated {n:,} readings in {time.monotonic() - t0:.1f}s")
    # as autovacuum leaves a day-old table: statistics and the visibility map set
    with psycopg.connect(cfg.database.url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return n


def run(admin: str, regenerate: bool = False) -> dict:
    cfg = config_mod.load(env={})
    rows = prepare(admin, cfg, regenerate)
    scratch = f"{DATA_DB}_run"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(scratch)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(scratch), sql.Identifier(DATA_DB)))
    cfg.database.url = _url(admin, scratch)
    try:
        with Database(cfg.database.url) as db:
            with db.connection() as conn:
                t0 = time.monotonic()
                windows = rule_queries.plain_window_scan(conn)
                baseline = time.monotonic() - t0
            t0 = time.monotonic()
            first = evaluate(cfg.rules, db)
            first_s = time.monotonic() - t0
            t0 = time.monotonic()
            again = evaluate(cfg.rules, db)
            again_s = time.monotonic() - t0
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(scratch)))
    return {
        "readings": rows, "baseline_windows": windows, "baseline_scan_s": round(baseline, 2),
        "engine_first_run_s": round(first_s, 2), "engine_rerun_s": round(again_s, 2),
        "evaluate_s": round(first.evaluate_s, 2), "record_s": round(first.record_s, 2),
        "cases_created": first.created, "rerun_created": again.created,
        "episodes_by_rule": {k: v for k, v in first.by_rule.items() if v},
        "seconds_by_rule": first.rule_s,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="administrative URL of the PostgreSQL server")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the data database")
    args = parser.parse_args()
    print(json.dumps(run(args.pg, args.regenerate), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
