"""dronekit against the simulated ArduCopter over real UDP: upload, arm, fly, land, and
every way a sortie comes home early or never leaves (vehicle time runs 40x)."""

from __future__ import annotations

import math
import threading
import time

import pytest
from shapely.geometry import Polygon

from domain.geo import LocalFrame
from flights import operations, planner
from storage import sorties as store
from tests.flights.conftest import DRONE, context, registry_with

ACTOR = "operator:test"


def survey_near_dock(ctx, east=60.0, north=60.0, size=(160.0, 120.0), alt=30.0):
    dock = planner.dock(planner.drone(ctx.registry, DRONE))
    frame = LocalFrame(*dock)
    w, h = size
    pts = [(east, north), (east + w, north), (east + w, north + h), (east, north + h)]
    poly = Polygon([frame.to_wgs84(e, n)[::-1] for e, n in pts])
    return planner.survey(poly, dock, ctx.cfg, alt_m=alt, device_id=DRONE)


def fly_in_thread(db, ctx, plan):
    sortie_id = operations.record(db, plan, ACTOR)
    t = threading.Thread(target=operations.fly, args=(db, ctx, plan, ACTOR),
                         kwargs={"sortie_id": sortie_id}, daemon=True)
    t.start()
    return sortie_id, t


def wait_status(db, sortie_id, status, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.connection() as conn:
            s = store.get(conn, sortie_id)
        if s.status == status:
            return s
        time.sleep(0.1)
    raise AssertionError(f"sortie {sortie_id} never became {status} (is {s.status}: {s.reason})")


def statuses(sortie):
    return [e[1] for e in sortie.events]


def test_survey_uploaded_flown_and_landed_along_the_plan(db, vehicles, flight_cfg):
    ctx = context(flight_cfg, registry_with())
    sim = vehicles.start(ctx.registry)
    plan = survey_near_dock(ctx)
    sortie = operations.fly(db, ctx, plan, ACTOR)
    assert (sortie.status, sortie.reason) == ("landed", "")  # home because the mission ended
    assert statuses(sortie) == ["planned", "uploaded", "airborne", "returning", "landed"]
    assert sortie.mission_id == plan.mission_id() == sim.mission_id
    assert sortie.takeoff_at < sortie.landed_at
    with db.connection() as conn:
        track = store.track(conn, sortie.sortie_id)
    # planned vs actual: every flown point near the route, every waypoint visited
    assert len(track) >= 10
    deviations = planner.deviation_m(plan, track)
    assert max(deviations) < 12.0, max(deviations)
    frame = LocalFrame(*plan.home)
    flown = [frame.to_local(p[1], p[2]) for p in track]
    for w in plan.waypoints:
        e, n = frame.to_local(w.lat, w.lon)
        assert min(abs(e - x) + abs(n - y) for x, y in flown) < 45.0  # a sample every 4 vehicle seconds (10 Hz at 40x)
    assert sim.frames_taken >= 5  # the camera fired every trigger distance along the lines
    lat, lon, alt = sim.position
    assert alt == 0.0 and not sim.armed
    assert planner.dock(planner.drone(ctx.registry, DRONE)) == pytest.approx((lat, lon), abs=2e-5)


@pytest.mark.slow
@pytest.mark.parametrize("dispatch_low, words", [
    (0.0, "vehicle switched to RTL: Mode RTL: Battery failsafe"),   # the vehicle's own failsafe
    (29.0, "battery 29 % at or below 29 %: RTL"),                   # the ground station's
])
def test_low_battery_brings_the_drone_home(db, vehicles, flight_cfg, dispatch_low, words):
    cfg = flight_cfg.model_copy(update={"low_battery_pct": dispatch_low, "reserve_pct": 0})
    ctx = context(cfg, registry_with())
    # 1470 mAh of 5880 is the low level (25 %); start at 30 % with a long survey ahead
    sim = vehicles.start(ctx.registry, battery_pct=30.0)
    plan = survey_near_dock(ctx, size=(400.0, 300.0))
    sortie = operations.fly(db, ctx, plan, ACTOR)
    assert sortie.status == "landed"
    assert words in sortie.reason
    assert "returning" in statuses(sortie)
    assert sim.current < len(sim.mission) - 1  # came home before the mission's end
    assert not sim.armed and sim.position[2] == 0.0


@pytest.mark.slow
def test_link_loss_makes_the_vehicle_return_and_the_sortie_says_so(db, vehicles, flight_cfg):
    ctx = context(flight_cfg, registry_with())
    sim = vehicles.start(ctx.registry, params={"FS_GCS_TIMEOUT": 1.5})
    sortie_id, t = fly_in_thread(db, ctx, survey_near_dock(ctx, size=(400.0, 300.0)))
    wait_status(db, sortie_id, "airborne")
    while sim.mode != "AUTO":
        time.sleep(0.05)
    sim.drop_link(5.0)
    t.join(60)
    with db.connection() as conn:
        sortie = store.get(conn, sortie_id, events=True)
    assert sortie.status == "landed", sortie.reason
    assert sortie.reason.startswith("link lost")
    assert any("GCS failsafe" in text for _, text in sim.events)
    assert not sim.armed


@pytest.mark.slow
def test_geofence_crossing_triggers_rtl(db, vehicles, flight_cfg):
    ctx = context(flight_cfg, registry_with())
    sim = vehicles.start(ctx.registry, params={"FENCE_RADIUS": 150.0})
    assert sim.params["FENCE_ENABLE"] == 1
    plan = survey_near_dock(ctx, east=100.0, north=100.0, size=(200.0, 150.0))
    sortie = operations.fly(db, ctx, plan, ACTOR)
    assert sortie.status == "landed"
    assert "Fence breach" in sortie.reason
    with db.connection() as conn:
        track = store.track(conn, sortie.sortie_id)
    frame = LocalFrame(*plan.home)
    farthest = max(math.hypot(*frame.to_local(p[1], p[2])) for p in track)
    assert farthest < 200.0  # turned back at the 150 m fence; the plan reaches 360 m


def test_operator_abort_mid_flight(db, vehicles, flight_cfg):
    ctx = context(flight_cfg, registry_with())
    sim = vehicles.start(ctx.registry)
    sortie_id, t = fly_in_thread(db, ctx, survey_near_dock(ctx, size=(400.0, 300.0)))
    wait_status(db, sortie_id, "airborne")
    with db.connection() as conn:
        store.request_abort(conn, sortie_id, "operator:li", "pedestrians below")
    t.join(60)
    with db.connection() as conn:
        sortie = store.get(conn, sortie_id, events=True)
    assert sortie.status == "aborted"
    assert sortie.reason == "aborted by operator:li: pedestrians below"
    assert not sim.armed and sim.position[2] == 0.0


def _zone_plan(ctx):
    for s in ctx.registry.subjects:
        if s.kind == "site":
            plan = planner.plan_for_subject(ctx.registry, s.subject_id, ctx.cfg)
            if not planner.check(plan, ctx.cfg, zones=ctx.zones).ok:
                return plan
    raise AssertionError("no site plan crosses a no-fly zone")


def test_no_fly_zone_refuses_the_plan_and_nothing_is_uploaded(db, vehicles, flight_cfg):
    ctx = context(flight_cfg, registry_with())
    plan = _zone_plan(ctx)
    ctx = context(flight_cfg, registry_with(plan.device_id))
    sim = vehicles.start(ctx.registry, plan.device_id)
    sortie = operations.fly(db, ctx, plan, ACTOR)
    assert sortie.status == "refused"
    assert "route crosses no-fly zone NFZ-" in sortie.reason
    assert len(sim.mission) == 1 and not sim.armed  # home only: nothing uploaded


def test_vehicle_that_does_not_answer_fails_the_sortie(db, flight_cfg):
    cfg = flight_cfg.model_copy(update={"connect_timeout_s": 2.0})
    ctx = context(cfg, registry_with())
    sortie = operations.fly(db, ctx, survey_near_dock(ctx), ACTOR)
    assert sortie.status == "failed"
    assert "did not answer" in sortie.reason
    assert statuses(sortie) == ["planned", "failed"]


@pytest.mark.parametrize("overrides, words", [
    ({"params": {"FENCE_RADIUS": 0.0}}, "vehicle refused to arm: PreArm: Fence: radius must be positive"),
    ({"gps_fix": 1}, "pre-flight: GPS has no 3D fix"),
    ({"battery_pct": 20.0}, "pre-flight: battery 20 % is below"),
])
def test_vehicle_not_ready_fails_the_sortie_on_the_ground(db, vehicles, flight_cfg, overrides, words):
    ctx = context(flight_cfg, registry_with())
    sim = vehicles.start(ctx.registry, **overrides)
    sortie = operations.fly(db, ctx, survey_near_dock(ctx), ACTOR)
    assert sortie.status == "failed"
    assert words in sortie.reason
    assert "airborne" not in statuses(sortie) and not sim.armed


@pytest.mark.slow
def test_link_that_never_comes_back_fails_the_sortie_with_the_last_position(db, vehicles, flight_cfg):
    cfg = flight_cfg.model_copy(update={"sortie_timeout_s": 8.0})
    ctx = context(cfg, registry_with())
    sim = vehicles.start(ctx.registry, params={"FS_GCS_TIMEOUT": 1.5})
    sortie_id, t = fly_in_thread(db, ctx, survey_near_dock(ctx, size=(400.0, 300.0)))
    wait_status(db, sortie_id, "airborne")
    sim.drop_link(60.0)
    t.join(30)
    with db.connection() as conn:
        sortie = store.get(conn, sortie_id, events=True)
    assert sortie.status == "failed"
    assert "and not regained; last seen at" in sortie.reason
    assert statuses(sortie)[-2:] == ["returning", "failed"]
    assert any("GCS failsafe" in text for _, text in sim.events)  # the vehicle went home alone
