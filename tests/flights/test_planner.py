"""Plans: coverage geometry, constraints named in words, QGC `.plan` round trip and errors."""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.geometry import LineString, Polygon, shape

from domain.geo import LocalFrame
from domain.paths import PROJECT_ROOT
from domain.registry import load as load_registry
from flights import planner, qgc
from flights.config import FlightsConfig

REGISTRY = load_registry(PROJECT_ROOT / "configs" / "registry")
ZONES = planner.load_no_fly(PROJECT_ROOT / "configs" / "registry" / "nofly.geojson")
CFG = FlightsConfig()
HOME = (30.32, 120.15)
FRAME = LocalFrame(*HOME)
NOON = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)  # 12:00 in Hangzhou


def square(e0: float, n0: float, size: float) -> Polygon:
    pts = [(e0, n0), (e0 + size, n0), (e0 + size, n0 + size), (e0, n0 + size)]
    return Polygon([FRAME.to_wgs84(e, n)[::-1] for e, n in pts])


def local_route(plan):
    return [FRAME.to_local(w.lat, w.lon) for w in plan.waypoints]


@pytest.mark.parametrize("alt, hfov, aspect, across, along", [
    (60, 84, 4 / 3, 108.05, 81.04),
    (40, 84, 4 / 3, 72.03, 54.02),
    (100, 60, 16 / 9, 115.47, 64.95),
])
def test_footprint_from_altitude_fov_and_aspect(alt, hfov, aspect, across, along):
    a, b = planner.footprint_m(alt, hfov, aspect)
    assert (round(a, 2), round(b, 2)) == (across, along)


def test_survey_lines_cover_the_polygon_with_the_side_overlap():
    poly = square(100, 100, 400)
    plan = planner.survey(poly, HOME, CFG, alt_m=60)
    gap, trigger = planner.spacing_m(60, CFG)
    assert plan.trigger_m == pytest.approx(trigger, abs=0.01)
    pts = local_route(plan)
    lines = [LineString(pts[k:k + 2]) for k in range(0, len(pts), 2)]
    steps = [a.distance(b) for a, b in zip(lines, lines[1:], strict=False)]
    assert steps and all(s <= gap + 0.01 for s in steps)
    # every point of the polygon lies in some photo: the route swept by half a footprint
    across, _ = planner.footprint_m(60, CFG.hfov_deg, CFG.image_aspect)
    swept = LineString(pts).buffer(across / 2)
    local_poly = Polygon([FRAME.to_local(lat, lon) for lon, lat in poly.exterior.coords])
    assert swept.intersection(local_poly).area / local_poly.area > 0.999
    # a lawnmower: consecutive lines run in opposite directions
    assert math.dist(pts[1], pts[2]) < math.dist(pts[0], pts[1])


def test_corridor_follows_the_street_and_covers_what_is_on_it():
    plan = planner.plan_for_street(REGISTRY, "ST-004", CFG, alt_m=40)
    line = planner.street_line(REGISTRY, "ST-004")
    assert plan.kind == "corridor" and plan.device_id
    for w in plan.waypoints:
        assert shape(line.__geo_interface__).distance(
            shape({"type": "Point", "coordinates": [w.lon, w.lat]})) < 1e-4
    on_street = {s.subject_id for s in REGISTRY.subjects if s.props.get("street_id") == "ST-004"}
    assert set(plan.subject_ids) == on_street and any(s.startswith("M-") for s in on_street)


@pytest.mark.parametrize("pattern, points", [("orbit", CFG.orbit_points), ("hover", 1)])
def test_point_inspection_photographs_the_subject(pattern, points):
    plan = planner.plan_for_subject(REGISTRY, "S-001", CFG, pattern=pattern)
    assert len(plan.waypoints) == points and all(w.photo and w.hold_s > 0 for w in plan.waypoints)
    c = shape(REGISTRY.subject("S-001").geometry).centroid
    frame = LocalFrame(c.y, c.x)
    radii = [math.hypot(*frame.to_local(w.lat, w.lon)) for w in plan.waypoints]
    assert all(abs(r - (CFG.orbit_radius_m if pattern == "orbit" else 0)) < 0.5 for r in radii)
    drone = planner.drone(REGISTRY, plan.device_id)
    assert drone.subject_id == REGISTRY.subject("S-001").area_id  # a drone of the site's own area


def _zone_subject() -> str:
    """A site whose inspection route crosses a no-fly zone."""
    for s in REGISTRY.subjects:
        if s.kind == "site":
            plan = planner.plan_for_subject(REGISTRY, s.subject_id, CFG)
            if any(shape(z["geometry"]).intersects(plan.route()) for z in ZONES):
                return s.subject_id
    raise AssertionError("no site route crosses a no-fly zone in the demo registry")


def _case(name):
    inspection = planner.plan_for_subject(REGISTRY, "S-001", CFG)
    drone = planner.drone(REGISTRY, inspection.device_id)
    night = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)  # 23:30 local
    return {
        "fine": (inspection, CFG, dict(device=drone, when=NOON), [], ""),
        "too high": (planner.plan_for_subject(REGISTRY, "S-001", CFG, alt_m=130), CFG,
                     {}, ["altitude"], "exceeds the ceiling of 120 m (China's limit"),
        "city ceiling": (planner.plan_for_subject(REGISTRY, "S-001", CFG, alt_m=90),
                         FlightsConfig(ceiling_m=80), {}, ["altitude"], "80 m (configured)"),
        "no-fly": (planner.plan_for_subject(REGISTRY, _zone_subject(), CFG), CFG,
                   dict(zones=ZONES), ["no_fly"], "route crosses no-fly zone NFZ-"),
        "battery": (planner.survey(square(0, 0, 1000), HOME, CFG), CFG,
                    dict(device=drone), ["battery"], "after a 25 % reserve"),
        "night": (inspection, CFG, dict(when=night), ["hours"], "night flights are not allowed"),
        "night allowed": (inspection, FlightsConfig(allow_night=True), dict(when=night), [], ""),
        "lapsed drone": (inspection, CFG, dict(device=drone, when=datetime(2030, 1, 1, 4, tzinfo=UTC)),
                         ["drone", "drone"], "certification valid"),
    }[name]


@pytest.mark.parametrize("name", ["fine", "too high", "city ceiling", "no-fly", "battery", "night",
                                  "night allowed", "lapsed drone"])
def test_constraints_are_named_in_words(name):
    plan, cfg, kw, codes, words = _case(name)
    result = planner.check(plan, cfg, **kw)
    assert [p.code for p in result.problems] == codes
    assert words in " ".join(p.message for p in result.problems)
    if codes:
        with pytest.raises(planner.PlanRefused, match=words.split(" (")[0][:20]):
            planner.require(plan, cfg, **kw)


def test_qgc_plan_round_trip_keeps_the_mission(tmp_path: Path):
    for plan in (planner.plan_for_subject(REGISTRY, "S-001", CFG),
                 planner.plan_for_street(REGISTRY, "ST-004", CFG),
                 planner.survey(square(0, 0, 300), HOME, CFG)):
        path = tmp_path / "p.plan"
        qgc.save(plan, path)
        back = qgc.load(path)
        assert back.mission_items() == plan.mission_items()
        assert back.mission_id() == plan.mission_id()
        assert (back.kind, back.device_id, back.subject_ids) == (plan.kind, plan.device_id,
                                                                 plan.subject_ids)


def test_qgc_plan_from_another_ground_station_is_imported():
    doc = qgc.export(planner.plan_for_subject(REGISTRY, "S-001", CFG))
    del doc["citywatch"]
    plan = qgc.parse(doc)
    assert plan.kind == "imported" and plan.device_id is None and len(plan.waypoints) == 8


def _bad(mutate):
    doc = qgc.export(planner.plan_for_subject(REGISTRY, "S-001", CFG))
    doc = copy.deepcopy(doc)
    mutate(doc)
    return doc


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["mission"].pop("plannedHomePosition"), "mission.plannedHomePosition: Field required"),
    (lambda d: d.update(fileType="Mission"), "fileType: Input should be 'Plan'"),
    (lambda d: d["mission"]["items"][2]["params"].__setitem__(4, 95.0),
     "mission.items[2].params[4]: latitude 95.0 is outside [-90, 90]"),
    (lambda d: d["mission"]["items"][2]["params"].__setitem__(5, 200.0),
     "mission.items[2].params[5]: longitude 200.0 is outside [-180, 180]"),
    (lambda d: d["mission"]["items"][0]["params"].pop(), "mission.items[0].params: List should have at least 7"),
    (lambda d: d["mission"]["items"][2].pop("command"), "mission.items[2].command: Field required"),
    (lambda d: d["mission"]["items"][2].update(command=31000), "mission.items[2].command: MAV_CMD 31000"),
    (lambda d: d["mission"]["items"][2].update(frame=0), "mission.items[2].frame: 0 is not a relative"),
    (lambda d: d["mission"]["items"][2]["params"].__setitem__(6, -5), "mission.items[2].params[6]: altitude"),
    (lambda d: d["mission"].update(items=[]), "mission.items: List should have at least 1"),
])
def test_bad_plan_files_name_the_field(mutate, message):
    with pytest.raises(planner.PlanError) as err:
        qgc.parse(_bad(mutate))
    assert message in str(err.value)


def test_bad_json_names_the_file(tmp_path: Path):
    path = tmp_path / "broken.plan"
    path.write_text("{not json")
    with pytest.raises(planner.PlanError, match="broken.plan: not valid JSON"):
        qgc.load(path)
    assert json.loads(json.dumps(qgc.export(planner.plan_for_subject(REGISTRY, "S-001", CFG))))


@pytest.mark.parametrize("heading, inside, outside", [
    (0.0, [(50.0, 0.0), (0.0, 38.0)], [(0.0, 45.0), (60.0, 0.0)]),      # long side east-west
    (90.0, [(0.0, 50.0), (38.0, 0.0)], [(45.0, 0.0), (0.0, 60.0)]),     # turned: long side north-south
])
def test_frame_footprint_follows_altitude_fov_and_heading(heading, inside, outside):
    from flights.coverage import footprint

    fp = footprint(HOME[0], HOME[1], 60.0, heading, 84.0, 640, 480)  # 108 x 81 m
    for pts, expected in ((inside, True), (outside, False)):
        for e, n in pts:
            lat, lon = FRAME.to_wgs84(e, n)
            assert fp.contains(shape({"type": "Point", "coordinates": [lon, lat]})) is expected, (e, n)


def test_plan_for_reads_a_polygon_as_geometry_feature_or_collection():
    geom = shape(REGISTRY.subject("AR-01").geometry).buffer(0).__geo_interface__
    want = planner.plan_for_polygon(REGISTRY, shape(geom), CFG)
    for doc in (geom, {"type": "Feature", "properties": {}, "geometry": geom},
                {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": geom}]}):
        got = planner.plan_for(REGISTRY, CFG, polygon=doc)
        assert got.waypoints == want.waypoints and got.subject_ids == want.subject_ids


@pytest.mark.parametrize("given", [{}, {"subject": "AR-01", "street": "ST-004"}])
def test_plan_for_wants_exactly_one_target(given):
    with pytest.raises(planner.PlanError, match="exactly one"):
        planner.plan_for(REGISTRY, CFG, **given)
