"""Process wiring shared by the CLI commands: database, registry, broker."""

from __future__ import annotations

import logging

from citywatch.config import AppConfig
from domain import registry as registry_files
from domain.paths import PROJECT_ROOT
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


def detection_classes(config: AppConfig) -> tuple[str, ...] | None:
    """Class names of the configured detection model, from its own metadata (None when
    detectors are disabled): what rules may name. Raises DetectorError when the model
    cannot be loaded."""
    if not config.detectors.enabled:
        return None
    from detectors.base import create_detector

    return create_detector(config.detectors.backend, project_root=PROJECT_ROOT).names


def review_context(cfg: AppConfig, db: Database):
    """What the review app needs, from the configuration (rules loaded and checked)."""
    from review.app import ReviewContext
    from rules.engine import load_rules

    return ReviewContext(db=db, web=cfg.web, rules=cfg.rules, rule_set=load_rules(cfg.rules),
                         evidence_dir=cfg.evidence_dir,
                         registry_dir=cfg.resolve(cfg.registry.directory))
