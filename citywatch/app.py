"""Process wiring shared by the CLI commands: database, registry, broker."""

from __future__ import annotations

import logging

from citywatch.config import AppConfig
from domain import registry as registry_files
from storage import migrate as migrations
from storage import registry as registry_table
from storage import timescale, windows
from storage.db import Database

log = logging.getLogger(__name__)


def open_database(config: AppConfig, *, name: str = "citywatch", migrate: bool = True) -> Database:
    """Open the configured database (embedded when none is configured), migrated and with
    the registry synchronised from its files."""
    db = Database.from_config(config.database, config.data_path, name=name).open()
    if migrate:
        prepare(db, config)
    return db


def prepare(db: Database, config: AppConfig) -> list[str]:
    """Apply migrations, TimescaleDB policies when present, and sync the registry."""
    done = []
    with db.connection() as conn:
        done += [f"migration {m.version:04d}_{m.name}" for m in migrations.migrate(conn)]
        if config.database.timescale.enabled and timescale.available(conn):
            done += timescale.apply(conn, config.database.timescale)
        else:
            done += windows.apply_plain(conn)
        reg = registry_files.load(config.resolve(config.registry.directory))
        registry_table.sync(conn, reg.subjects, reg.devices)
    return done
