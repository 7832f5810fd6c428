"""The drop folder: footage copied in by people or scripts, picked up once it is complete.

Layout: one sub-folder per device, named by its id (`<drop>/UAV-01/DJI_0001.MP4` with
`DJI_0001.SRT`, photos, `<drop>/CC-003-1/rec.mp4`). A file counts as complete once its
size and modification time have not changed for `stable_s` (a copy in progress keeps
growing). A processed file gets a `<name>.done` marker beside it (the run and its sha256);
one that was refused gets `<name>.refused` with the reason; marked files are not taken
again. Nothing is moved or deleted: the originals stay where the city put them, and their
bytes are in the evidence store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from croniter import croniter

from ingest.batch.run import PHOTO_SUFFIXES, VIDEO_SUFFIXES, sidecar

MARKERS = (".done", ".refused")


def candidates(root: Path) -> list[Path]:
    """Footage files under `root` without a marker."""
    if not root.is_dir():
        return []
    out = []
    for f in sorted(root.rglob("*")):
        if (f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES + PHOTO_SUFFIXES
                and not any(f.with_name(f.name + m).exists() for m in MARKERS)):
            out.append(f)
    return out


def _state(f: Path) -> tuple[int, int] | None:
    try:
        st = f.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def stable(files: list[Path], stable_s: float,
           sleep: Callable[[float], None] = time.sleep) -> list[Path]:
    """The files (and their SRT sidecars) whose size and time did not change over
    `stable_s`; an empty file is not complete."""
    def watched(f: Path) -> list[Path]:
        side = sidecar(f) if f.suffix.lower() in VIDEO_SUFFIXES else None
        return [f] + ([side] if side else [])

    before = {p: _state(p) for f in files for p in watched(f)}
    sleep(stable_s)
    return [f for f in files
            if all(before[p] is not None and before[p] == _state(p) and before[p][0] > 0
                   for p in watched(f))]


def mark(f: Path, kind: str, info: dict) -> None:
    """Write `<name>.done` or `<name>.refused` beside a file."""
    if kind not in ("done", "refused"):
        raise ValueError(f"marker must be done or refused, got {kind!r}")
    f.with_name(f"{f.name}.{kind}").write_text(
        json.dumps(info, ensure_ascii=False, default=str, indent=1), encoding="utf-8")


def next_sweep(schedule: str, after: datetime) -> datetime:
    """When the cron `schedule` next fires after `after` (an aware local time)."""
    return croniter(schedule, after).get_next(datetime)
