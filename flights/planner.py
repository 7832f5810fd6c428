"""Sortie plans: area surveys, street corridors and point inspections, checked against
the rules of the air before anything is uploaded.

- **survey**: a boustrophedon (lawnmower) over a polygon, lines along its long axis; the
  line spacing and the camera trigger distance follow from the altitude, the camera's
  horizontal field of view, its image aspect and the side / front overlaps;
- **corridor**: passes along a registry street's centre line (parallel passes when the
  street with its frontages is wider than one photo);
- **inspection**: an orbit of photo points around a subject, or a hover over it.

`check` names every broken constraint in words: altitude above the ceiling (120 m, the
limit for light drones in China, or a lower configured one), a route through a no-fly
zone (GeoJSON in the registry folder), flight time over the drone's endurance less the
reserve, a flight outside the allowed hours, a drone that is not certified on the day.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from pymavlink.dialects.v20 import common as mavlink
from shapely import affinity
from shapely.geometry import LineString, MultiLineString, Point, Polygon, shape

from domain.geo import LocalFrame
from domain.missions import mission_id
from domain.records import Device, Subject
from domain.registry import Registry
from flights.config import LEGAL_CEILING_M, FlightsConfig

KINDS = ("survey", "corridor", "inspection", "imported")
REL = mavlink.MAV_FRAME_GLOBAL_RELATIVE_ALT


class PlanError(ValueError):
    """A plan that cannot be made (unknown subject, polygon too small, bad plan file)."""


@dataclass(frozen=True, slots=True)
class Waypoint:
    lat: float
    lon: float
    alt_m: float           # above home (the dock), metres
    hold_s: float = 0.0
    photo: bool = False    # take one photo here (DO_DIGICAM_CONTROL)


@dataclass(frozen=True, slots=True)
class Plan:
    """A route for one drone: take off at home, fly the waypoints, come home."""

    kind: str
    home: tuple[float, float]
    alt_m: float
    speed_ms: float
    trigger_m: float                 # camera trigger distance on the route, 0: photos at waypoints only
    waypoints: tuple[Waypoint, ...]
    device_id: str | None = None
    subject_ids: tuple[str, ...] = ()
    target: dict | None = None       # GeoJSON geometry of what the plan covers
    notes: tuple[str, ...] = ()

    def route(self) -> LineString:
        """The flown path in (lon, lat), home to home."""
        pts = [self.home[::-1], *((w.lon, w.lat) for w in self.waypoints), self.home[::-1]]
        return LineString(pts)

    def length_m(self) -> float:
        frame = LocalFrame(*self.home)
        pts = [(0.0, 0.0), *(frame.to_local(w.lat, w.lon) for w in self.waypoints), (0.0, 0.0)]
        return sum(math.dist(a, b) for a, b in zip(pts, pts[1:], strict=False))

    def duration_s(self, cfg: FlightsConfig) -> float:
        """Estimated flight time: climb, route at speed, holds, descent."""
        top = max((w.alt_m for w in self.waypoints), default=self.alt_m)
        return (top / cfg.climb_ms + self.length_m() / self.speed_ms
                + sum(w.hold_s for w in self.waypoints) + top / cfg.descent_ms)

    def mission_items(self) -> list[tuple]:
        """MAVLink mission items (command, frame, p1..p4, lat, lon, alt), home excluded."""
        items: list[tuple] = [(mavlink.MAV_CMD_NAV_TAKEOFF, REL, 0, 0, 0, 0, 0.0, 0.0, self.alt_m),
                              (mavlink.MAV_CMD_DO_CHANGE_SPEED, REL, 1, self.speed_ms, -1, 0, 0.0, 0.0, 0.0)]
        for i, w in enumerate(self.waypoints):
            items.append((mavlink.MAV_CMD_NAV_WAYPOINT, REL, w.hold_s, 0, 0, 0, w.lat, w.lon, w.alt_m))
            if i == 0 and self.trigger_m > 0:  # photos start at the first waypoint
                items.append((mavlink.MAV_CMD_DO_SET_CAM_TRIGG_DIST, REL, self.trigger_m, 0, 1, 0,
                              0.0, 0.0, 0.0))
            if w.photo:
                items.append((mavlink.MAV_CMD_DO_DIGICAM_CONTROL, REL, 0, 0, 0, 0, 1.0, 0.0, 0.0))
        if self.trigger_m > 0:
            items.append((mavlink.MAV_CMD_DO_SET_CAM_TRIGG_DIST, REL, 0, 0, 0, 0, 0.0, 0.0, 0.0))
        items.append((mavlink.MAV_CMD_NAV_RETURN_TO_LAUNCH, REL, 0, 0, 0, 0, 0.0, 0.0, 0.0))
        return items

    def mission_id(self) -> str:
        return mission_id(self.mission_items())

    def to_json(self) -> dict:
        d = asdict(self)
        d["waypoints"] = [asdict(w) for w in self.waypoints]
        return d

    @classmethod
    def from_json(cls, d: dict) -> Plan:
        return cls(**(d | {"home": tuple(d["home"]), "subject_ids": tuple(d["subject_ids"]),
                           "notes": tuple(d.get("notes", ())),
                           "waypoints": tuple(Waypoint(**w) for w in d["waypoints"])}))


@dataclass(frozen=True, slots=True)
class Problem:
    """A broken constraint: a stable code and a sentence for the operator."""

    code: str        # altitude | no_fly | battery | hours | drone | route
    message: str


@dataclass
class Check:
    problems: list[Problem] = field(default_factory=list)
    duration_s: float = 0.0
    length_m: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


class PlanRefused(Exception):
    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(p.message for p in self.problems))


# ----- footprint -----------------------------------------------------------------------
def footprint_m(alt_m: float, hfov_deg: float, aspect: float) -> tuple[float, float]:
    """(across, along) ground size of a nadir photo at `alt_m`: the image's long side across."""
    across = 2 * alt_m * math.tan(math.radians(hfov_deg) / 2)
    return across, across / aspect


def spacing_m(alt_m: float, cfg: FlightsConfig, hfov_deg: float | None = None) -> tuple[float, float]:
    """(line spacing, trigger distance) for the configured side and front overlaps."""
    across, along = footprint_m(alt_m, hfov_deg or cfg.hfov_deg, cfg.image_aspect)
    return across * (1 - cfg.side_overlap), along * (1 - cfg.front_overlap)


# ----- registry helpers ----------------------------------------------------------------
def drone(registry: Registry, device_id: str) -> Device:
    d = next((d for d in registry.devices if d.device_id == device_id), None)
    if d is None or d.kind != "drone":
        raise PlanError(f"no drone {device_id!r} in the registry")
    if "dock" not in d.props:
        raise PlanError(f"drone {device_id}: the registry gives no dock (home) position")
    return d


def registry_subject(registry: Registry, subject_id: str) -> Subject:
    try:
        return registry.subject(subject_id)
    except StopIteration:
        raise PlanError(f"no subject {subject_id!r} in the registry") from None


def dock(d: Device) -> tuple[float, float]:
    lon, lat = d.props["dock"]
    return float(lat), float(lon)


def drones_of_area(registry: Registry, area_id: str | None) -> list[Device]:
    return [d for d in registry.devices if d.kind == "drone"
            and (area_id is None or d.subject_id == area_id)]


def nearest_drone(registry: Registry, lat: float, lon: float, *, area_id: str | None = None,
                  exclude: Sequence[str] = ()) -> Device | None:
    """The drone of `area_id` (any area if it has none free) whose dock is nearest."""
    for pool in (drones_of_area(registry, area_id), drones_of_area(registry, None)):
        free = [d for d in pool if d.device_id not in exclude and "dock" in d.props]
        if free:
            frame = LocalFrame(lat, lon)
            return min(free, key=lambda d: math.hypot(*frame.to_local(*dock(d))))
    return None


def load_no_fly(path: Path) -> list[dict]:
    """No-fly zones: GeoJSON features with `zone_id`, `name`, `kind` (empty if no file)."""
    if not path.exists():
        return []
    doc = json.loads(path.read_text(encoding="utf-8"))
    zones = []
    for i, f in enumerate(doc.get("features", [])):
        props = f.get("properties") or {}
        if "zone_id" not in props:
            raise PlanError(f"{path.name}: features[{i}].properties.zone_id: missing")
        zones.append(f)
    return zones


def street_line(registry: Registry, street_id: str) -> LineString:
    for feat in registry.streets:
        if feat["properties"]["street_id"] == street_id:
            return shape(feat["geometry"])
    raise PlanError(f"no street {street_id!r} in the registry")


# ----- plans ---------------------------------------------------------------------------
def _map(geom, fn):
    """`geom` with every point (x, y) replaced by fn(x, y)."""
    return shapely.transform(geom, lambda xy: np.array([fn(x, y) for x, y in xy]).reshape(-1, 2))


def _waypoints(frame: LocalFrame, pts, alt: float, **kw) -> list[Waypoint]:
    out = []
    for e, n in pts:
        lat, lon = frame.to_wgs84(e, n)
        out.append(Waypoint(round(lat, 7), round(lon, 7), alt, **kw))
    return out


def survey(polygon: Polygon, home: tuple[float, float], cfg: FlightsConfig, *,
           alt_m: float | None = None, hfov_deg: float | None = None, device_id: str | None = None,
           subject_ids: Sequence[str] = ()) -> Plan:
    """Lawnmower coverage of `polygon` (lon/lat): lines along its long axis, spaced for the
    side overlap, photos every trigger distance for the front overlap."""
    alt = alt_m or cfg.altitude_m
    if not polygon.is_valid or polygon.area == 0:
        raise PlanError("survey polygon is empty or invalid")
    c = polygon.centroid
    frame = LocalFrame(c.y, c.x)
    local = _map(polygon, lambda x, y: frame.to_local(y, x))
    line_gap, trigger = spacing_m(alt, cfg, hfov_deg)
    # sweep along the long side of the minimum rotated rectangle: fewest turns
    rect = list(local.minimum_rotated_rectangle.exterior.coords)
    edges = [(rect[i], rect[i + 1]) for i in range(4)]
    (x0, y0), (x1, y1) = max(edges, key=lambda ab: math.dist(*ab))
    angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
    flat = affinity.rotate(local, -angle, origin=(0, 0))
    minx, miny, maxx, maxy = flat.bounds
    across, along = footprint_m(alt, hfov_deg or cfg.hfov_deg, cfg.image_aspect)
    n_lines = max(1, math.ceil((maxy - miny - across) / line_gap) + 1) if maxy - miny > across else 1
    start = miny + min(across, maxy - miny) / 2
    pts: list[tuple[float, float]] = []
    for k in range(n_lines):
        y = min(start + k * line_gap, maxy - min(across, maxy - miny) / 2) if n_lines > 1 else (miny + maxy) / 2
        cut = flat.intersection(LineString([(minx - 1, y), (maxx + 1, y)]))
        if cut.is_empty:
            continue
        xs = [p[0] for g in (cut.geoms if isinstance(cut, MultiLineString) else [cut]) for p in g.coords]
        a, b = min(xs) - along / 2, max(xs) + along / 2   # cover the polygon's ends
        pts += [(a, y), (b, y)] if k % 2 == 0 else [(b, y), (a, y)]
    back = [affinity.rotate(LineString([p, p]), angle, origin=(0, 0)).coords[0] for p in pts]
    return Plan("survey", home, alt, cfg.speed_ms, round(trigger, 2),
                tuple(_waypoints(frame, back, alt)), device_id, tuple(subject_ids),
                polygon.__geo_interface__,
                (f"{len(pts) // 2} lines {line_gap:.0f} m apart, photos every {trigger:.0f} m",))


def corridor(line: LineString, home: tuple[float, float], cfg: FlightsConfig, *,
             width_m: float = 32.0, alt_m: float | None = None, hfov_deg: float | None = None,
             device_id: str | None = None, subject_ids: Sequence[str] = ()) -> Plan:
    """Passes along a centre line (lon/lat) covering `width_m` (carriageway, pavements, frontages)."""
    alt = alt_m or cfg.altitude_m
    c = line.centroid
    frame = LocalFrame(c.y, c.x)
    local = _map(line, lambda x, y: frame.to_local(y, x))
    line_gap, trigger = spacing_m(alt, cfg, hfov_deg)
    across, _ = footprint_m(alt, hfov_deg or cfg.hfov_deg, cfg.image_aspect)
    passes = 1 if width_m <= across else math.ceil((width_m - across) / line_gap) + 1
    offsets = [0.0] if passes == 1 else [-(width_m - across) / 2 + k * (width_m - across) / (passes - 1)
                                          for k in range(passes)]
    pts: list[tuple[float, float]] = []
    for k, off in enumerate(offsets):
        lane = local.parallel_offset(off, "left") if off else local
        coords = list(lane.coords)
        if (k % 2 == 1) != (off < 0 and off != 0):  # parallel_offset reverses right-hand lines
            coords.reverse()
        pts += coords
    area = local.buffer(width_m / 2, cap_style="flat")
    target = _map(area, lambda e, n: frame.to_wgs84(e, n)[::-1])
    return Plan("corridor", home, alt, cfg.speed_ms, round(trigger, 2),
                tuple(_waypoints(frame, pts, alt)), device_id, tuple(subject_ids),
                target.__geo_interface__,
                (f"{passes} pass(es) along {local.length:.0f} m, photos every {trigger:.0f} m",))


def inspection(geometry: dict, home: tuple[float, float], cfg: FlightsConfig, *,
               alt_m: float | None = None, pattern: str | None = None, device_id: str | None = None,
               subject_ids: Sequence[str] = ()) -> Plan:
    """Photos of one place: from points on an orbit around it, or hovering over its centre."""
    alt = alt_m or cfg.altitude_m
    geom = shape(geometry)
    c = geom.centroid
    frame = LocalFrame(c.y, c.x)
    pattern = pattern or cfg.inspection_pattern
    if pattern == "hover":
        pts = [(0.0, 0.0)]
    else:
        r = cfg.orbit_radius_m
        pts = [(r * math.sin(2 * math.pi * k / cfg.orbit_points),
                r * math.cos(2 * math.pi * k / cfg.orbit_points)) for k in range(cfg.orbit_points)]
    wps = _waypoints(frame, pts, alt, hold_s=cfg.hover_s, photo=True)
    return Plan("inspection", home, alt, cfg.speed_ms, 0.0, tuple(wps), device_id,
                tuple(subject_ids), geometry, (f"{pattern} with {len(wps)} photo point(s)",))


def plan_for_subject(registry: Registry, subject_id: str, cfg: FlightsConfig, *,
                     device_id: str | None = None, alt_m: float | None = None,
                     pattern: str | None = None) -> Plan:
    """A point inspection of a registry subject by `device_id` or the nearest drone of its area."""
    subject = registry_subject(registry, subject_id)
    c = shape(subject.geometry).centroid
    d = drone(registry, device_id) if device_id else nearest_drone(registry, c.y, c.x,
                                                                     area_id=subject.area_id)
    if d is None:
        raise PlanError(f"no drone with a dock for {subject_id}")
    return inspection(subject.geometry, dock(d), cfg, alt_m=alt_m, pattern=pattern,
                      device_id=d.device_id, subject_ids=(subject_id,))


def plan_for_street(registry: Registry, street_id: str, cfg: FlightsConfig, *,
                    device_id: str | None = None, alt_m: float | None = None) -> Plan:
    """A corridor along a registry street, covering the merchants and road works on it."""
    line = street_line(registry, street_id)
    c = line.centroid
    d = drone(registry, device_id) if device_id else nearest_drone(registry, c.y, c.x)
    if d is None:
        raise PlanError(f"no drone with a dock for {street_id}")
    on_street = tuple(s.subject_id for s in registry.subjects if s.props.get("street_id") == street_id)
    return corridor(line, dock(d), cfg, alt_m=alt_m, hfov_deg=d.props.get("hfov_deg"),
                    device_id=d.device_id, subject_ids=on_street)


def plan_for_polygon(registry: Registry, polygon: Polygon, cfg: FlightsConfig, *,
                     device_id: str | None = None, alt_m: float | None = None) -> Plan:
    """A survey of a polygon; the subjects it covers are the registry subjects inside it."""
    c = polygon.centroid
    d = drone(registry, device_id) if device_id else nearest_drone(registry, c.y, c.x)
    if d is None:
        raise PlanError("no drone with a dock")
    inside = tuple(s.subject_id for s in registry.subjects
                   if s.kind != "area" and polygon.contains(shape(s.geometry).centroid))
    return survey(polygon, dock(d), cfg, alt_m=alt_m, hfov_deg=d.props.get("hfov_deg"),
                  device_id=d.device_id, subject_ids=inside)


def plan_for(registry: Registry, cfg: FlightsConfig, *, subject: str | None = None,
                 street: str | None = None, polygon: dict | None = None,
                 device_id: str | None = None, alt_m: float | None = None,
                 pattern: str | None = None) -> Plan:
    """The plan an operator asks for by exactly one of a subject id, a street id or a GeoJSON
    polygon (a geometry, a Feature, or a FeatureCollection whose first feature is used)."""
    if sum(x is not None for x in (subject, street, polygon)) != 1:
        raise PlanError("give exactly one of subject, street, polygon")
    if subject is not None:
        return plan_for_subject(registry, subject, cfg, device_id=device_id, alt_m=alt_m,
                                pattern=pattern)
    if street is not None:
        return plan_for_street(registry, street, cfg, device_id=device_id, alt_m=alt_m)
    geom = polygon
    if polygon.get("type") == "Feature":
        geom = polygon["geometry"]
    elif polygon.get("type") == "FeatureCollection":
        geom = polygon["features"][0]["geometry"]
    return plan_for_polygon(registry, shape(geom), cfg, device_id=device_id, alt_m=alt_m)


# ----- constraints ---------------------------------------------------------------------
def _hours(spec: str) -> tuple[time, time]:
    a, b = spec.split("-")
    return time.fromisoformat(a), time.fromisoformat(b)


def check(plan: Plan, cfg: FlightsConfig, *, zones: Sequence[dict] = (),
          device: Device | None = None, when: datetime | None = None) -> Check:
    """Every constraint the plan breaks, in words; an empty list means it may fly."""
    result = Check(duration_s=plan.duration_s(cfg), length_m=plan.length_m())
    ceiling = min(cfg.ceiling_m, LEGAL_CEILING_M)
    top = max([plan.alt_m, *(w.alt_m for w in plan.waypoints)])
    if top > ceiling:
        result.problems.append(Problem(
            "altitude", f"planned altitude {top:g} m above ground exceeds the ceiling of {ceiling:g} m"
            + (" (China's limit for light drones)" if ceiling == LEGAL_CEILING_M else " (configured)")))
    if not plan.waypoints:
        result.problems.append(Problem("route", "the plan has no waypoints"))
    route = plan.route()
    for z in zones:
        if route.intersects(shape(z["geometry"])):
            p = z["properties"]
            result.problems.append(Problem(
                "no_fly", f"route crosses no-fly zone {p['zone_id']} ({p.get('name', '')}, "
                f"{p.get('kind', 'zone')})"))
    if device is not None:
        endurance = float(device.props.get("endurance_min", cfg.endurance_min))
        usable = endurance * (1 - cfg.reserve_pct / 100)
        if result.duration_s / 60 > usable:
            result.problems.append(Problem(
                "battery", f"needs {result.duration_s / 60:.1f} min of flight ({result.length_m / 1000:.2f} km); "
                f"{device.device_id} has {usable:.1f} min after a {cfg.reserve_pct:g} % reserve"))
    if when is not None:
        local = when.astimezone(ZoneInfo(cfg.timezone))
        if device is not None:
            for why in device.valid_at(local.date()):
                result.problems.append(Problem("drone", f"{device.device_id}: {why}"))
        if not cfg.allow_night:
            start, end = _hours(cfg.flight_hours)
            landing = local + timedelta(seconds=result.duration_s)
            if not (start <= local.time() <= end and landing.date() == local.date()
                    and landing.time() <= end):
                result.problems.append(Problem(
                    "hours", f"{local:%Y-%m-%d %H:%M} to {landing:%H:%M} is outside the flight hours "
                    f"{cfg.flight_hours} (night flights are not allowed)"))
    return result


def require(plan: Plan, cfg: FlightsConfig, **kw) -> Check:
    """`check`, raising PlanRefused with every problem named when the plan may not fly."""
    result = check(plan, cfg, **kw)
    if not result.ok:
        raise PlanRefused(result.problems)
    return result


def deviation_m(plan: Plan, track: Sequence[Sequence]) -> list[float]:
    """For each flown point [ts, lat, lon, ...], its distance (m) to the planned route."""
    frame = LocalFrame(*plan.home)
    route = LineString([(0.0, 0.0), *(frame.to_local(w.lat, w.lon) for w in plan.waypoints),
                        (0.0, 0.0)])
    return [route.distance(Point(frame.to_local(p[1], p[2]))) for p in track]


def with_device(plan: Plan, registry: Registry, device_id: str) -> Plan:
    """The same route flown by another drone, from its own dock."""
    return replace(plan, device_id=device_id, home=dock(drone(registry, device_id)))
