"""A sensor alarm sends a drone. End to end: a dust exceedance at a site opens a case, the rule's dispatch action asks
for a drone, an operator approves, the dispatcher flies the nearest drone (a simulated
ArduCopter over UDP) around the site, its camera frames go over MQTT through the
collector and the detector, and the case carries them beside the dust series."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import shape

from detectors.worker import make_worker
from flights import coverage, operations, planner
from ingest.collector import Collector
from rules.engine import evaluate
from simulators.drone import FRAME, FramePublisher
from simulators.scenes import SceneObject, streets_from_registry
from storage import cases as case_store
from storage import frames as frames_repo
from storage import sorties as store
from tests.detectors.conftest import DEFAULT_ONNX, wait_until
from tests.flights.conftest import context, registry_with

SITE, MONITOR = "S-001", "DM-001"


def publish_dust(config, hours: float, pm10: float) -> datetime:
    """One reading a minute for `hours` up to now, as the site's monitor sends them."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    topic = f"{config.mqtt.topic_prefix}/dust/{MONITOR}"
    msgs = [(topic, json.dumps({"ts": (now - timedelta(minutes=k)).isoformat(),
                                "pm10_ug_m3": pm10, "pm25_ug_m3": pm10 / 2}).encode())
            for k in range(int(hours * 60), 0, -1)]
    with FramePublisher(config.mqtt.url, f"{MONITOR}-test") as pub:
        pub.publish_many(msgs)
    return now


@pytest.mark.slow
def test_dust_exceedance_sends_a_drone_and_its_frames_join_the_case(config, db, vehicles, flight_cfg):
    config.detectors.backend.weights = str(DEFAULT_ONNX)
    collector = Collector(config.for_ingest(), db).start()
    try:
        publish_dust(config, 2.5, 260.0)
        wait_until(lambda: _count(db, "readings") >= 150)
        evaluate(config.rules, db)
        with db.connection() as conn:
            case = next(c for c in case_store.list_cases(conn)
                        if c.subject_id == SITE and c.rule_id == "dust.pm10_hourly_case")
            [requested] = store.list_sorties(conn)
        assert (requested.status, requested.case_id, requested.approval) == ("requested", case.case_id, "operator")
        evaluate(config.rules, db)  # judging the case again asks for no second drone
        with db.connection() as conn:
            assert len(store.list_sorties(conn)) == 1

        # the nearest drone of the site's sub-district, simulated, with bare soil on the site
        registry = registry_with()
        site = registry.subject(SITE)
        c = shape(site.geometry).centroid
        drone = planner.nearest_drone(registry, c.y, c.x, area_id=site.area_id)
        ctx = context(flight_cfg, registry_with(drone.device_id))
        e, n = FRAME.to_local(c.y, c.x)
        sim = vehicles.start(ctx.registry, drone.device_id, mqtt_url=config.mqtt.url,
                             topic_prefix=config.mqtt.topic_prefix,
                             objects=[SceneObject("bare_soil", e, n, 0.0, 18.0, 12.0)],
                             streets=streets_from_registry(ctx.registry.streets, FRAME),
                             clock_start=datetime.now(UTC) - timedelta(minutes=3))
        dispatcher = operations.Dispatcher(db, ctx)
        dispatcher.step()
        with db.connection() as conn:
            planned = store.get(conn, requested.sortie_id)
            assert (planned.status, planned.device_id) == ("planned", drone.device_id)
            assert planned.reason == "waiting for an operator's approval"
            dispatcher.step()  # nothing flies without the approval
            assert store.get(conn, requested.sortie_id).status == "planned"
            store.approve(conn, requested.sortie_id, "operator:wang")
        dispatcher.step()
        sortie = operations.wait_final(db, requested.sortie_id, 60)
        assert sortie.status == "landed", sortie.reason
        assert sim.frames_taken == ctx.cfg.orbit_points
        wait_until(lambda: _count(db, "frames") >= sim.frames_taken, timeout=60)
        make_worker(config.for_detectors(), db).run(threading.Event(), until_empty=True)
        dispatcher.step()  # attaches the sortie's frames to the case
    finally:
        collector.stop(5)
    with db.connection() as conn:
        evidence = case_store.evidence(conn, case.case_id)
        assert frames_repo.status_counts(conn)["done"] == sim.frames_taken
    aerial = [e for e in evidence if e.kind == "frame" and e.meta.get("sortie_id") == sortie.sortie_id]
    series = [e for e in evidence if e.kind == "series"]
    assert len(aerial) == sim.frames_taken and series
    assert {e.meta["mission_id"] for e in aerial} == {sortie.mission_id}
    assert all(e.meta["source_id"] == drone.device_id for e in aerial)
    assert any(e.meta["fit_as_evidence"] for e in aerial)
    # the detector saw the uncovered soil on the site in the drone's photos
    seen = [f for f in frames_of_sortie(db, sortie) if "bare_soil" in f.classes]
    assert seen
    # proof of coverage: the site was photographed in a fit frame
    with db.connection() as conn:
        proof = coverage.of_sortie(conn, ctx.registry, sortie)
        period = coverage.of_period(conn, ctx.registry, sortie.takeoff_at, sortie.landed_at)
    assert (proof.planned, proof.covered, proof.missed) == ([SITE], [SITE], [])
    assert proof.fit_frames >= 1 and period["period"]["covered"] == [SITE]
    assert [s["sortie_id"] for s in period["sorties"]] == [sortie.sortie_id]


def frames_of_sortie(db, sortie):
    with db.connection() as conn:
        return store.frames_of(conn, sortie.device_id, sortie.mission_id, sortie.takeoff_at,
                               sortie.landed_at)


def _count(db, table: str) -> int:
    with db.connection() as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _case(db, subject_id: str) -> int:
    now = datetime.now(UTC)
    draft = case_store.CaseDraft("dust.pm10_hourly_case", 1, subject_id, now - timedelta(hours=1), now,
                                 "violation", "serious", "dust", "", {})
    with db.connection() as conn:
        case_id, _ = case_store.upsert_case(conn, draft, "test")
        conn.commit()
        store.request_for_case(conn, case_id, "dust.pm10_hourly_case", subject_id,
                               {"approval": "auto"}, "test")
    return case_id


@pytest.mark.parametrize("subject, status, words", [
    ("S-003", "refused", "route crosses no-fly zone NFZ-03"),
])
def test_dispatcher_refuses_what_may_not_fly(db, flight_cfg, subject, status, words):
    """No vehicle is started: a refused plan never reaches one."""
    _case(db, subject)
    ctx = context(flight_cfg, registry_with())
    operations.Dispatcher(db, ctx).step()
    with db.connection() as conn:
        [s] = store.list_sorties(conn)
    assert s.status == status and words in s.reason
    assert s.device_id and s.plan["kind"] == "inspection"  # the refused plan is kept


def test_dispatcher_finds_no_free_drone_when_all_are_flying(db, flight_cfg):
    ctx = context(flight_cfg, registry_with())
    busy = {d.device_id for d in ctx.registry.devices if d.kind == "drone"}
    with pytest.raises(planner.PlanError, match="no drone available for S-001"):
        operations.plan_request(ctx, "S-001", {}, busy)
    site = ctx.registry.subject("S-001")
    own = {d.device_id for d in planner.drones_of_area(ctx.registry, site.area_id)}
    plan = operations.plan_request(ctx, "S-001", {"pattern": "hover"}, own)
    assert plan.device_id not in own and len(plan.waypoints) == 1  # a neighbour's drone


def test_a_request_for_a_subject_not_in_the_registry_is_refused_not_raised(flight_cfg):
    """The dispatcher refuses it (PlanError) rather than stopping on it."""
    ctx = context(flight_cfg, registry_with())
    with pytest.raises(planner.PlanError, match="no subject 'S-999' in the registry"):
        operations.plan_request(ctx, "S-999", {}, set())
