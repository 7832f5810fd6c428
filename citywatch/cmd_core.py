"""`citywatch config check` and `citywatch db migrate|status|stats`."""

from __future__ import annotations

import argparse
import sys

from citywatch import app
from citywatch import config as config_mod
from citywatch.console import emit, load_config
from detectors.base import DetectorError
from domain.registry import RegistryError
from domain.registry import load as load_registry
from storage import migrate as migrations
from storage import stats as db_stats
from storage.db import stop_embedded_server


def register(sub) -> None:
    p = sub.add_parser("config", help="configuration")
    csub = p.add_subparsers(dest="action", required=True)
    check = csub.add_parser("check", help="validate a configuration file and the registry")
    check.add_argument("file", nargs="?", help="default configs/citywatch.yaml")
    check.set_defaults(func=config_check)

    p = sub.add_parser("db", help="database: migrations and statistics")
    dsub = p.add_subparsers(dest="action", required=True)
    for name, func, help_ in (("migrate", db_migrate, "apply pending migrations"),
                              ("status", db_status, "applied and pending migrations"),
                              ("stats", db_stats_cmd, "rows per table, dead letters by reason")):
        a = dsub.add_parser(name, help=help_)
        a.add_argument("--json", action="store_true", help="machine-readable output")
        a.set_defaults(func=func)
    a = dsub.add_parser("stop", help="stop the embedded PostgreSQL under the data directory "
                        "(each command stops the one it started; this one stops a server left "
                        "by a process that was killed)")
    a.set_defaults(func=db_stop)


def config_check(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.file or args.config)
    try:
        reg = load_registry(cfg.resolve(cfg.registry.directory))
    except RegistryError as exc:
        print("registry errors:")
        for p in exc.problems:
            print(f"  {p}")
        return 2
    try:
        classes = app.detection_classes(cfg)
    except DetectorError as exc:
        print(f"detectors.backend: {exc}", file=sys.stderr)
        return 2
    model = f", model of {len(classes)} classes" if classes is not None else ""
    print(f"configuration OK: {len(reg.subjects)} subjects, {len(reg.devices)} devices{model}")
    return 0


def db_migrate(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    db = app.open_database(cfg, migrate=False)
    try:
        done = app.prepare(db, cfg)
    finally:
        db.close()
    emit({"applied": done}, args.json, "\n".join(done) or "database is up to date")
    return 0


def db_status(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with app.open_database(cfg, migrate=False) as db, db.connection() as conn:
        states = migrations.status(conn)
    rows = [{"version": s.version, "name": s.name, "applied_at": s.applied_at,
             "checksum_ok": s.checksum_ok} for s in states]
    text = "\n".join(
        f"{s.version:04d} {s.name:<20} {s.applied_at or 'PENDING'}"
        + ("" if s.checksum_ok else "  (file changed since it was applied)") for s in states)
    emit(rows, args.json, text)
    return 0 if all(s.applied_at and s.checksum_ok for s in states) else 1


def db_stats_cmd(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with app.open_database(cfg) as db, db.connection() as conn:
        s = db_stats.collect(conn)
    lines = [f"{t:<20} {n:>12,}" for t, n in s["tables"].items()]
    if s["dead_letters_by_reason"]:
        lines.append("dead letters by reason:")
        lines += [f"  {r:<28} {n:>8,}" for r, n in s["dead_letters_by_reason"].items()]
    emit(s, args.json, "\n".join(lines))
    return 0


def db_stop(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    if cfg.database.url:
        print("a database URL is configured: there is no embedded server to stop",
              file=sys.stderr)
        return 1
    pid = stop_embedded_server(cfg.data_path)
    print(f"stopped the embedded PostgreSQL under {cfg.data_path / 'pg'} (pid {pid})" if pid
          else f"no embedded PostgreSQL running under {cfg.data_path / 'pg'}")
    return 0
