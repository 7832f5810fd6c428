"""Local east/north metres around a reference point, and back to WGS84.

A tangent-plane approximation using the WGS84 radii of curvature at the reference
latitude: within 20 km of the reference its error is below 0.1 m, far under what a drone
frame or a GPS fix resolves. Every part that needs metres uses this one projection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_A = 6378137.0
_E2 = 6.69437999014e-3

# Gongshu district, Hangzhou: the default reference of the demo registry.
GONGSHU = (30.32, 120.15)


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """East/north metres around (lat0, lon0)."""

    lat0: float
    lon0: float

    @property
    def _radii(self) -> tuple[float, float]:
        phi = math.radians(self.lat0)
        s = 1 - _E2 * math.sin(phi) ** 2
        meridian = _A * (1 - _E2) / s**1.5  # north-south radius of curvature
        normal = _A / math.sqrt(s)  # east-west
        return meridian, normal * math.cos(phi)

    def to_local(self, lat: float, lon: float) -> tuple[float, float]:
        rn, re = self._radii
        return math.radians(lon - self.lon0) * re, math.radians(lat - self.lat0) * rn

    def to_wgs84(self, east: float, north: float) -> tuple[float, float]:
        """(lat, lon) of a point `east`, `north` metres from the reference."""
        rn, re = self._radii
        return self.lat0 + math.degrees(north / rn), self.lon0 + math.degrees(east / re)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Ground distance between two nearby points (metres)."""
    e, n = LocalFrame(lat1, lon1).to_local(lat2, lon2)
    return math.hypot(e, n)
