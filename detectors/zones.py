"""Which registry subject a detection belongs to: merchant frontage, site, permit or none.

Zones are held in local metres (domain.geo.LocalFrame) in a shapely STRtree, so
matching a point is a tree query plus a distance, and a tolerance in metres means metres.
Cone-camera detections need no geometry: they belong to the camera's permit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Point, shape

from detectors.config import ZoneConfig
from domain.geo import LocalFrame
from domain.records import Device, Subject

ZONE_OF_KIND = {"merchant": "frontage", "site": "site", "permit": "permit"}


@dataclass(frozen=True, slots=True)
class ZoneMatch:
    subject_id: str | None
    zone_kind: str  # frontage | site | permit | none
    distance_m: float  # 0 inside; up to the tolerance outside


NO_ZONE = ZoneMatch(None, "none", float("inf"))


def _centre(subjects: list[Subject]) -> tuple[float, float]:
    if not subjects:
        return (0.0, 0.0)
    west, south, east, north = shapely.total_bounds([shape(s.geometry) for s in subjects])
    return ((south + north) / 2, (west + east) / 2)


class ZoneIndex:
    """Registry zones for point matching, and cone cameras' permits."""

    def __init__(self, subjects: Iterable[Subject], devices: Iterable[Device],
                 config: ZoneConfig, origin: tuple[float, float] | None = None):
        """`origin` (lat, lon) of the local metres; default the centre of the subjects'
        extent, wherever the registry lies."""
        subjects = list(subjects)
        self.config = config
        self.frame = LocalFrame(*(origin or _centre(subjects)))
        self._rank = {k: i for i, k in enumerate(config.priority)}
        ids, kinds, geoms = [], [], []
        for s in subjects:
            zone = ZONE_OF_KIND.get(s.kind)
            if zone is None or zone not in self._rank:
                continue
            geom = shapely.transform(shape(s.geometry), self._to_local)
            ids.append(s.subject_id)
            kinds.append(zone)
            geoms.append(geom)
        self._ids, self._kinds = ids, kinds
        self._geoms = np.array(geoms, dtype=object)
        self._tree = shapely.STRtree(self._geoms)
        self._camera_permit = {d.device_id: d.subject_id for d in devices
                               if d.kind == "cone_camera" and d.subject_id}
        self._camera_position = {d.device_id: (d.props["position"][1], d.props["position"][0])
                                 for d in devices
                                 if d.kind == "cone_camera" and d.props.get("position")}

    def _to_local(self, lonlat: np.ndarray) -> np.ndarray:
        return np.array([self.frame.to_local(lat, lon) for lon, lat in lonlat]).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._ids)

    def match(self, lat: float, lon: float) -> ZoneMatch:
        """The zone containing (lat, lon), or the nearest within the tolerance; by priority."""
        e, n = self.frame.to_local(lat, lon)
        point = Point(e, n)
        tol = self.config.tolerance_m
        candidates = self._tree.query(point.buffer(tol) if tol > 0 else point,
                                      predicate="intersects")
        best = NO_ZONE
        best_key = (len(self._rank), float("inf"))
        for i in candidates:
            d = float(self._geoms[i].distance(point))
            if d > tol:
                continue
            key = (self._rank[self._kinds[i]], d)
            if key < best_key:
                best, best_key = ZoneMatch(self._ids[i], self._kinds[i], d), key
        return best

    def camera_permit(self, camera_id: str) -> ZoneMatch:
        """A cone camera's permit (the zone all its detections belong to)."""
        permit = self._camera_permit.get(camera_id)
        return ZoneMatch(permit, "permit", 0.0) if permit else NO_ZONE

    def camera_position(self, camera_id: str) -> tuple[float, float] | None:
        """(lat, lon) where a cone camera stands, from the registry."""
        return self._camera_position.get(camera_id)
