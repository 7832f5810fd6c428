"""Proof of coverage: which subjects a sortie (or a period of flying) photographed in a
frame fit as evidence, and which it did not.

A nadir frame sees a rectangle of ground: `footprint_m` of its altitude and field of
view, the image's long side across the heading. A subject counts as photographed when a
fit frame's rectangle holds its representative point (the centre of a frontage or a
site); frames unfit as evidence (blurred, dark) prove nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from shapely import affinity
from shapely.geometry import Polygon, box, shape
from shapely.strtree import STRtree

from domain.geo import LocalFrame
from domain.registry import Registry
from flights.planner import footprint_m
from storage import sorties as store


def footprint(lat: float, lon: float, alt_m: float, heading_deg: float, hfov_deg: float,
              width: int, height: int) -> Polygon:
    """The ground a nadir frame shows, as a (lon, lat) polygon."""
    across, along = footprint_m(alt_m, hfov_deg, width / height)
    frame = LocalFrame(lat, lon)
    rect = affinity.rotate(box(-across / 2, -along / 2, across / 2, along / 2), -heading_deg,
                           origin=(0, 0))
    return Polygon([frame.to_wgs84(e, n)[::-1] for e, n in rect.exterior.coords])


@dataclass(frozen=True, slots=True)
class Coverage:
    sortie_id: int | None
    frames: int
    fit_frames: int
    planned: list[str]
    covered: list[str]
    missed: list[str]
    extra: list[str]          # photographed though not planned

    def as_dict(self) -> dict:
        return asdict(self)


class _Subjects:
    def __init__(self, registry: Registry):
        self.ids = [s.subject_id for s in registry.subjects if s.kind != "area"]
        self.points = [shape(s.geometry).representative_point()
                       for s in registry.subjects if s.kind != "area"]
        self.tree = STRtree(self.points)

    def inside(self, polygons: Iterable[Polygon]) -> set[str]:
        found: set[str] = set()
        for poly in polygons:
            for i in self.tree.query(poly, predicate="contains"):
                found.add(self.ids[int(i)])
        return found


def _footprints(rows: Sequence) -> list[Polygon]:
    return [footprint(r.lat, r.lon, r.alt_m, r.heading_deg or 0.0, r.hfov_deg, r.width, r.height)
            for r in rows if r.fit_as_evidence and r.lat is not None and r.alt_m and r.hfov_deg]


def _coverage(sortie_id, frames, planned: Sequence[str], subjects: _Subjects) -> Coverage:
    seen = subjects.inside(_footprints(frames))
    planned_set = set(planned)
    return Coverage(sortie_id, len(frames), sum(1 for f in frames if f.fit_as_evidence),
                    sorted(planned_set), sorted(planned_set & seen), sorted(planned_set - seen),
                    sorted(seen - planned_set))


def of_sortie(conn, registry: Registry, sortie: store.Sortie) -> Coverage:
    """What one sortie photographed of what it was planned to photograph."""
    frames = (store.frames_of(conn, sortie.device_id, sortie.mission_id, sortie.takeoff_at,
                              sortie.landed_at or datetime.max.replace(tzinfo=sortie.takeoff_at.tzinfo))
              if sortie.mission_id and sortie.takeoff_at and sortie.device_id else [])
    return _coverage(sortie.sortie_id, frames, sortie.subject_ids, _Subjects(registry))


def of_period(conn, registry: Registry, since: datetime, until: datetime) -> dict:
    """Per sortie that took off in [since, until], and for the whole period: every drone
    frame of the period counts, with or without a sortie (a patrol flown by hand too)."""
    subjects = _Subjects(registry)
    sorties = [s for s in store.list_sorties(conn, limit=10000)
               if s.takeoff_at is not None and since <= s.takeoff_at <= until]
    per_sortie = []
    for s in sorted(sorties, key=lambda s: s.sortie_id):
        frames = store.frames_of(conn, s.device_id, s.mission_id, s.takeoff_at,
                                 s.landed_at or until) if s.mission_id else []
        per_sortie.append(_coverage(s.sortie_id, frames, s.subject_ids, subjects).as_dict())
    frames = [store.SortieFrame(*r[2:12], []) for r in store.drone_frames(conn, since, until)]
    planned = sorted({sid for s in sorties for sid in s.subject_ids})
    total = _coverage(None, frames, planned, subjects).as_dict()
    return {"since": since, "until": until, "sorties": per_sortie, "period": total}

