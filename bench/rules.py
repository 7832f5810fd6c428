"""Benchmark: the whole default rule set over a simulated day of every fume monitor, on
plain PostgreSQL and on TimescaleDB side by side.

1,589 fume monitors at one reading a minute (≈ 2.29 M rows) plus the 60 dust monitors
(≈ 86 k rows), with a few injected violations, are generated once with COPY into a named
database per store (kept, so re-runs skip the generation): `plain` (migrations only,
`date_bin` views) and, where the server has the extension, `timescale` (hypertables and
real-time continuous aggregates, policies paused so no background job runs during the
measurements). Each run clones each store (CREATE DATABASE ... TEMPLATE) so the engine
meets no cases, then times, in the same run and on the same server:

* baseline: one plain SQL scan computing the 10-minute fume means of the day;
* TimescaleDB only: materializing the day's continuous aggregates (what the refresh
  policy does in service, spread over the day);
* the engine: `rules.engine.evaluate` with the default rules (first run: cases created),
  then again (idempotent re-run: nothing new);
* TimescaleDB only: bytes per reading before and after compressing every chunk, and the
  engine once more over the compressed day.

    python -m bench.rules [--store plain|timescale|both] [--devices N] [--regenerate]
                          [--pg postgresql://postgres@127.0.0.1:5432/postgres]

`--devices N` takes the first N fume monitors only (a quick smoke run). The load average
is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
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
from storage import rule_queries, timescale
from storage.db import Database, seal_template, unseal_template

DATA_DB = "citywatch_bench_rules"
DAY = datetime(2026, 11, 20, tzinfo=ZoneInfo("Asia/Shanghai"))
STORES = ("plain", "timescale")


def _url(admin: str, name: str) -> str:
    return admin.rpartition("/")[0] + "/" + name


def data_db(store: str, devices: int | None) -> str:
    return f"{DATA_DB}_{store}" + (f"_{devices}" if devices else "")


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


def _store_config(store: str) -> config_mod.AppConfig:
    cfg = config_mod.load(env={})
    cfg.database.timescale.enabled = store == "timescale"
    return cfg


def prepare(admin: str, store: str, devices: int | None, regenerate: bool) -> int:
    """Make sure the store's data database holds the day, sealed as a template; return
    its reading count."""
    name = data_db(store, devices)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if exists:
        unseal_template(admin, name)
        if regenerate:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            exists = None
    if not exists:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    cfg = _store_config(store)
    cfg.database.url = _url(admin, name)
    with Database(cfg.database.url) as db:
        app.prepare(db, cfg)
        with db.connection() as conn:
            n = reading_store.count_rows(conn, "readings")
            if not n:
                reg = load_registry(cfg.resolve(cfg.registry.directory))
                fume = sorted(d.device_id for d in reg.devices if d.kind == "fume")[:devices]
                dust = sorted(d.device_id for d in reg.devices if d.kind == "dust")
                t0 = time.monotonic()
                n = reading_store.copy_readings(conn, _readings(fume, dust))
                conn.commit()
                print(f"{store}: generated {n:,} readings in {time.monotonic() - t0:.1f}s",
                      file=sys.stderr)
            if store == "timescale":
                timescale.pause_jobs(conn)  # no compression or refresh during the runs
                conn.commit()
    # as autovacuum leaves a day-old table: statistics and the visibility map set
    with psycopg.connect(cfg.database.url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    seal_template(admin, name)
    return n


def _timed(fn):
    t0 = time.monotonic()
    out = fn()
    return out, round(time.monotonic() - t0, 2)


def run_store(admin: str, store: str, devices: int | None, regenerate: bool) -> dict:
    rows = prepare(admin, store, devices, regenerate)
    scratch = f"{DATA_DB}_run"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(scratch)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(scratch), sql.Identifier(data_db(store, devices))))
    cfg = _store_config(store)
    cfg.database.url = _url(admin, scratch)
    out: dict = {"store": store, "readings": rows}
    try:
        with Database(cfg.database.url) as db:
            with db.connection() as conn:
                out["baseline_windows"], out["baseline_scan_s"] = _timed(
                    lambda: rule_queries.plain_window_scan(conn))
                if store == "timescale":
                    _, out["materialize_day_s"] = _timed(lambda: timescale.refresh_aggregates(
                        conn, DAY - timedelta(hours=1), DAY + timedelta(days=1, hours=1)))
            first, out["engine_first_run_s"] = _timed(lambda: evaluate(cfg.rules, db))
            again, out["engine_rerun_s"] = _timed(lambda: evaluate(cfg.rules, db))
            out |= {"evaluate_s": round(first.evaluate_s, 2), "record_s": round(first.record_s, 2),
                    "cases_created": first.created, "rerun_created": again.created,
                    "episodes_by_rule": {k: v for k, v in first.by_rule.items() if v},
                    "seconds_by_rule": first.rule_s}
            with db.connection() as conn:
                before = timescale.storage_bytes(conn, "readings")
                out["bytes_per_reading"] = round(before / rows, 1)
                if store == "timescale":
                    _, out["compress_s"] = _timed(lambda: timescale.compress_all(conn, "readings"))
                    after = timescale.storage_bytes(conn, "readings")
                    out["bytes_per_reading_compressed"] = round(after / rows, 1)
                    out["compression_ratio"] = round(before / after, 1)
            if store == "timescale":
                compressed, out["engine_compressed_rerun_s"] = _timed(lambda: evaluate(cfg.rules, db))
                out["compressed_rerun_created"] = compressed.created
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(scratch)))
    return out


def run(admin: str, stores: tuple[str, ...], devices: int | None = None,
        regenerate: bool = False) -> dict:
    load_before = os.getloadavg()
    results = [run_store(admin, store, devices, regenerate) for store in stores]
    return {"cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "at": datetime.now(UTC).isoformat(timespec="seconds"), "stores": results}


def _server_has_timescale(admin: str) -> bool:
    with psycopg.connect(admin) as conn:
        return timescale.available(conn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="administrative URL of the PostgreSQL server")
    parser.add_argument("--store", choices=(*STORES, "both"), default="both",
                        help="which store to measure (default both; plain only where the "
                        "server lacks TimescaleDB)")
    parser.add_argument("--devices", type=int, help="first N fume monitors only (smoke run)")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the data databases")
    args = parser.parse_args()
    stores = STORES if args.store == "both" else (args.store,)
    if "timescale" in stores and not _server_has_timescale(args.pg):
        if args.store == "timescale":
            parser.error("the server has no timescaledb extension")
        print("no timescaledb extension on this server: plain PostgreSQL only", file=sys.stderr)
        stores = ("plain",)
    print(json.dumps(run(args.pg, stores, args.devices, args.regenerate), indent=2,
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
