"""Read the registry (GeoJSON files of subjects, each listing its devices) into records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

from shapely.geometry import shape

from domain.records import Device, Subject

SUBJECT_FILES = ("areas", "merchants", "sites", "permits")
DEVICE_DATES = ("certified_from", "certified_until", "calibrated_on", "calibration_due")


class RegistryError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems[:10]) + (f" (+{len(problems) - 10} more)"
                                                     if len(problems) > 10 else ""))


@dataclass(frozen=True, slots=True)
class Registry:
    subjects: tuple[Subject, ...]
    devices: tuple[Device, ...]
    streets: tuple[dict, ...]  # GeoJSON features (simulators draw them; not subjects)

    def subject(self, subject_id: str) -> Subject:
        return next(s for s in self.subjects if s.subject_id == subject_id)


def load(directory: Path) -> Registry:
    """Load and check every registry file; raise RegistryError naming file and feature.

    Parsed once per set of file versions (path, size, mtime): processes that open the
    database many times do not re-read unchanged files."""
    directory = Path(directory).resolve()
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                  for p in sorted(directory.glob("*.geojson")))
    return _load(directory, stamp)


@lru_cache(maxsize=8)
def _load(directory: Path, stamp: tuple) -> Registry:
    subjects: list[Subject] = []
    devices: list[Device] = []
    problems: list[str] = []
    seen_subjects: set[str] = set()
    seen_devices: set[str] = set()
    for stem in SUBJECT_FILES:
        path = directory / f"{stem}.geojson"
        if not path.exists():
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            problems.append(f"{path.name}: not valid JSON: {exc}")
            continue
        for i, feature in enumerate(doc.get("features", [])):
            where = f"{path.name}: features[{i}]"
            props = dict(feature.get("properties") or {})
            sid = props.pop("subject_id", None)
            if not sid:
                problems.append(f"{where}.properties.subject_id: missing")
                continue
            if sid in seen_subjects:
                problems.append(f"{where}.properties.subject_id: duplicate {sid!r}")
                continue
            try:
                geom = shape(feature["geometry"])
                if not geom.is_valid:
                    raise ValueError("invalid geometry")
            except Exception as exc:  # shapely raises several types for bad GeoJSON
                problems.append(f"{where}.geometry: {exc}")
                continue
            seen_subjects.add(sid)
            device_list = props.pop("devices", []) or []
            subjects.append(Subject(sid, props.pop("kind", stem.rstrip("s")), props.pop("name", sid),
                                    props.pop("area_id", None), feature["geometry"], props))
            for j, d in enumerate(device_list):
                dwhere = f"{where}.properties.devices[{j}]"
                d = dict(d)
                did = d.pop("device_id", None)
                if not did or did in seen_devices:
                    problems.append(f"{dwhere}.device_id: {'duplicate' if did else 'missing'} {did!r}")
                    continue
                try:
                    dates = {k: date.fromisoformat(d.pop(k)) if d.get(k) else d.pop(k, None)
                             for k in DEVICE_DATES}
                except ValueError as exc:
                    problems.append(f"{dwhere}: {exc}")
                    continue
                seen_devices.add(did)
                devices.append(Device(did, d.pop("kind"), sid, d.pop("model", None),
                                      d.pop("certificate_no", None), props=d, **dates))
    streets_path = directory / "streets.geojson"
    streets = (json.loads(streets_path.read_text(encoding="utf-8"))["features"]
               if streets_path.exists() else [])
    if problems:
        raise RegistryError(problems)
    return Registry(tuple(subjects), tuple(devices), tuple(streets))
