"""The vehicle simulator as a plain MAVLink ground station sees it (pymavlink over UDP).

dronekit against it (upload, arm, fly, failsafes) is tested in tests/flights/."""

from __future__ import annotations

import time

import pytest
from pymavlink import mavutil

from domain.missions import mission_id
from domain.paths import PROJECT_ROOT
from domain.registry import load as load_registry
from simulators.vehicle import SimVehicle, VehicleConfig, config_for, free_udp_port, gcs_address

mav = mavutil.mavlink


@pytest.fixture
def link():
    """A simulated vehicle and a pymavlink ground station listening for it."""
    port = free_udp_port()
    gcs = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}", source_system=255)
    sim = SimVehicle(VehicleConfig("UAV-T", "127.0.0.1", port, 30.32, 120.15, speedup=20)).start()
    assert gcs.wait_heartbeat(timeout=5) is not None
    yield sim, gcs
    sim.stop()
    gcs.close()


def expect(gcs, kind: str, timeout: float = 5.0, **where):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = gcs.recv_match(type=kind, blocking=True, timeout=0.2)
        if m is not None and all(getattr(m, k) == v for k, v in where.items()):
            return m
    raise AssertionError(f"no {kind} {where or ''} within {timeout} s")


def command(gcs, cmd: int, *params: float) -> int:
    p = list(params) + [0.0] * (7 - len(params))
    gcs.mav.command_long_send(1, 1, cmd, 0, *p)
    return expect(gcs, "COMMAND_ACK", command=cmd).result


def test_heartbeat_says_ardupilot_quadrotor_in_arducopter_modes(link):
    sim, gcs = link
    hb = expect(gcs, "HEARTBEAT")
    assert (hb.type, hb.autopilot) == (mav.MAV_TYPE_QUADROTOR, mav.MAV_AUTOPILOT_ARDUPILOTMEGA)
    assert mavutil.mode_mapping_acm[hb.custom_mode] == "STABILIZE"
    assert command(gcs, mav.MAV_CMD_DO_SET_MODE, mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, 4) == 0
    expect(gcs, "HEARTBEAT", custom_mode=4)  # GUIDED is 4 in ArduCopter
    gcs.mav.set_mode_send(1, mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, 5)
    expect(gcs, "HEARTBEAT", custom_mode=5)  # LOITER
    for kind in ("SYS_STATUS", "GPS_RAW_INT", "GLOBAL_POSITION_INT", "ATTITUDE", "VFR_HUD",
                 "HOME_POSITION", "SYSTEM_TIME"):
        expect(gcs, kind)


def test_parameters_list_and_set(link):
    sim, gcs = link
    gcs.mav.param_request_list_send(1, 1)
    seen = {}
    while True:
        m = expect(gcs, "PARAM_VALUE")
        seen[m.param_id] = m.param_value
        if len(seen) == m.param_count:
            break
    assert seen["WPNAV_SPEED"] == 1000.0 and seen["FS_GCS_ENABLE"] == 1
    gcs.mav.param_set_send(1, 1, b"WPNAV_SPEED", 500.0, mav.MAV_PARAM_TYPE_REAL32)
    assert expect(gcs, "PARAM_VALUE", param_id="WPNAV_SPEED").param_value == 500.0
    assert sim.params["WPNAV_SPEED"] == 500.0


def _upload_int(gcs, items) -> int:
    """Upload with MISSION_ITEM_INT (what QGroundControl uses); return the MISSION_ACK type."""
    gcs.mav.mission_count_send(1, 1, len(items) + 1)
    for _ in range(len(items) + 1):
        req = expect(gcs, "MISSION_REQUEST_INT", timeout=3) if _ else gcs.recv_match(
            type=["MISSION_REQUEST", "MISSION_REQUEST_INT"], blocking=True, timeout=3)
        seq = req.seq
        cmd, frame, p, lat, lon, alt = (mav.MAV_CMD_NAV_WAYPOINT, 0, (0, 0, 0, 0), 30.32, 120.15,
                                        8.0) if seq == 0 else items[seq - 1]
        gcs.mav.mission_item_int_send(1, 1, seq, frame, cmd, 0, 1, *p, round(lat * 1e7),
                                      round(lon * 1e7), alt)
    return expect(gcs, "MISSION_ACK").type


def test_int_mission_upload_flies_and_reports_progress(link):
    sim, gcs = link
    rel = mav.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT
    items = [(mav.MAV_CMD_NAV_TAKEOFF, rel, (0, 0, 0, 0), 0, 0, 20.0),
             (mav.MAV_CMD_NAV_WAYPOINT, rel, (0, 0, 0, 0), 30.3205, 120.15, 20.0),
             (mav.MAV_CMD_NAV_RETURN_TO_LAUNCH, rel, (0, 0, 0, 0), 0, 0, 0)]
    gcs.mav.heartbeat_send(mav.MAV_TYPE_GCS, mav.MAV_AUTOPILOT_INVALID, 0, 0, 0)
    assert _upload_int(gcs, items) == mav.MAV_MISSION_ACCEPTED
    assert sim.mission_id == mission_id((c, f, *p, round(lat * 1e7) * 1e-7, round(lon * 1e7) * 1e-7,
                                         alt) for c, f, p, lat, lon, alt in items)
    # read back in the INT form
    gcs.mav.mission_request_list_send(1, 1)
    assert expect(gcs, "MISSION_COUNT").count == 4
    gcs.mav.mission_request_int_send(1, 1, 2)
    back = expect(gcs, "MISSION_ITEM_INT", seq=2)
    assert (back.x, back.y) == (303205000, 1201500000)
    # AUTO is not armable; arm in LOITER, then AUTO takes off with the mission's takeoff item
    gcs.mav.set_mode_send(1, mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, 3)
    assert command(gcs, mav.MAV_CMD_COMPONENT_ARM_DISARM, 1) == mav.MAV_RESULT_FAILED
    assert any("Mode not armable" in text for _, text in sim.events)
    gcs.mav.set_mode_send(1, mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, 5)
    expect(gcs, "HEARTBEAT", custom_mode=5)
    assert command(gcs, mav.MAV_CMD_COMPONENT_ARM_DISARM, 1) == mav.MAV_RESULT_ACCEPTED
    gcs.mav.set_mode_send(1, mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, 3)
    reached = {expect(gcs, "MISSION_ITEM_REACHED", timeout=10).seq for _ in range(2)}
    assert reached == {1, 2}
    deadline = time.monotonic() + 20
    while sim.armed and time.monotonic() < deadline:
        gcs.mav.heartbeat_send(mav.MAV_TYPE_GCS, mav.MAV_AUTOPILOT_INVALID, 0, 0, 0)
        time.sleep(0.3)
    lat, lon, alt = sim.position
    assert not sim.armed and alt == 0.0 and abs(lat - 30.32) < 2e-5 and abs(lon - 120.15) < 2e-5
    assert sim.battery_pct < 100.0


def test_takeoff_refused_outside_guided_and_unknown_commands_unsupported(link):
    sim, gcs = link
    assert command(gcs, mav.MAV_CMD_NAV_TAKEOFF, 0, 0, 0, 0, 0, 0, 10) == mav.MAV_RESULT_FAILED
    assert command(gcs, mav.MAV_CMD_DO_FENCE_ENABLE, 1) == mav.MAV_RESULT_UNSUPPORTED


def test_registry_drones_have_a_connection_and_a_dock():
    registry = load_registry(PROJECT_ROOT / "configs" / "registry")
    cfg = config_for(registry, "UAV-03")
    assert (cfg.gcs_host, cfg.gcs_port) == ("127.0.0.1", 14553)
    assert 30.25 < cfg.home_lat < 30.39
    with pytest.raises(ValueError, match="UDP only"):
        gcs_address("tcp:127.0.0.1:5760")
    with pytest.raises(KeyError, match="UAV-99"):
        config_for(registry, "UAV-99")
