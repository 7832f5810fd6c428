"""A simulated multicopter that speaks MAVLink the way ArduPilot Copter does.

A ground station (dronekit, MAVProxy, QGroundControl) connected to it sees an ArduPilot
quadrotor: HEARTBEAT with the ArduCopter custom modes, SYS_STATUS with a battery that
drains with flight time and load, GPS_RAW_INT, GLOBAL_POSITION_INT, ATTITUDE, VFR_HUD,
HOME_POSITION, EKF_STATUS_REPORT, SYSTEM_TIME, the parameter protocol, the mission
protocol in both the MISSION_ITEM and the MISSION_ITEM_INT form, MISSION_CURRENT and
MISSION_ITEM_REACHED, COMMAND_LONG with COMMAND_ACK, SET_MODE and
SET_POSITION_TARGET_GLOBAL_INT. It flies: the position is integrated at the commanded
speed, climb and descent rates, a waypoint counts as reached inside WPNAV_RADIUS, RTL
climbs to RTL_ALT, flies home and lands, and the failsafes of ArduCopter switch it to
RTL (battery low, ground-station heartbeat lost, circular geofence left).

Its camera, triggered every DO_SET_CAM_TRIGG_DIST metres or by DO_DIGICAM_CONTROL,
renders the ground below its pose with simulators/scenes and publishes drone frame
envelopes (pose and `mission_id`, see domain/missions.py) and telemetry over MQTT, the
way simulators/drone.py publishes a scripted pass.

Like ArduPilot SITL it sends to the ground station's UDP port: a ground station listens
on `udp:127.0.0.1:14551` and this vehicle sends to that address from its own port.
`speedup` (SIM_SPEEDUP in ArduPilot SITL) makes vehicle time run K times faster than
wall time; the vehicle's clock (SYSTEM_TIME, frame and telemetry timestamps) follows
vehicle time. The ground-station heartbeat timeout (FS_GCS_TIMEOUT) counts wall seconds,
since a ground station sends its heartbeats in wall time.

    citywatch simulate-vehicle --drone UAV-03 [--speedup K]
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import queue
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pymavlink import mavutil

from domain.geo import LocalFrame
from domain.missions import mission_id as compute_mission_id
from domain.registry import Registry
from ingest import envelope
from simulators.drone import FRAME, FramePublisher, encode_jpeg, frame_topic
from simulators.scenes import CameraPose, Look, SceneObject, Street, render_aerial

log = logging.getLogger(__name__)
mav = mavutil.mavlink

MODE_NUMBER = {name: number for number, name in mavutil.mode_mapping_acm.items()}
ARMABLE_MODES = {"STABILIZE", "ALT_HOLD", "LOITER", "GUIDED", "POSHOLD", "ACRO", "SPORT"}
FORCE_MAGIC = 21196  # param2 of ARM_DISARM that skips the checks, as in ArduPilot

# ArduCopter parameter names, units as ArduPilot documents them.
DEFAULT_PARAMS: dict[str, float] = {
    "SYSID_THISMAV": 1,
    "WPNAV_SPEED": 1000.0,       # cm/s horizontal in AUTO
    "WPNAV_SPEED_UP": 300.0,     # cm/s
    "WPNAV_SPEED_DN": 200.0,     # cm/s
    "WPNAV_RADIUS": 200.0,       # cm, waypoint acceptance radius
    "RTL_ALT": 3000.0,           # cm
    "RTL_SPEED": 0.0,            # cm/s, 0: WPNAV_SPEED
    "LAND_SPEED": 50.0,          # cm/s in the last 10 m
    "LAND_SPEED_HIGH": 0.0,      # cm/s above 10 m, 0: WPNAV_SPEED_DN
    "BATT_CAPACITY": 5880.0,     # mAh
    "BATT_LOW_MAH": 1470.0,      # remaining mAh that triggers the low failsafe
    "BATT_CRT_MAH": 588.0,       # remaining mAh that triggers the critical failsafe
    "BATT_FS_LOW_ACT": 2,        # 2: RTL
    "BATT_FS_CRT_ACT": 1,        # 1: LAND
    "BATT_ARM_MAH": 0.0,         # remaining mAh needed to arm, 0: above the low level
    "FS_GCS_ENABLE": 1,          # 1: RTL when the ground station is lost
    "FS_GCS_TIMEOUT": 5.0,       # s
    "FENCE_ENABLE": 1,
    "FENCE_TYPE": 3,             # 1 max altitude, 2 circle around home
    "FENCE_ACTION": 1,           # 1: RTL
    "FENCE_RADIUS": 3000.0,      # m
    "FENCE_ALT_MAX": 120.0,      # m
    "ARMING_CHECK": 1,
    "CAM_TRIGG_DIST": 0.0,       # m
    "SIM_SPEEDUP": 1.0,
}


@dataclass
class VehicleConfig:
    """One simulated drone: who it is, where it stands, where it sends, what it sees."""

    device_id: str
    gcs_host: str
    gcs_port: int
    home_lat: float
    home_lon: float
    home_amsl_m: float = 8.0
    sysid: int = 1
    speedup: float = 1.0
    battery_pct: float = 100.0
    gps_fix: int = 3
    params: dict[str, float] = field(default_factory=dict)
    mqtt_url: str | None = None
    topic_prefix: str = "citywatch/v1"
    telemetry_every_s: float = 1.0   # vehicle seconds between telemetry messages
    objects: Sequence[SceneObject] = ()
    streets: Sequence[Street] = ()
    hfov_deg: float = 84.0
    width: int = 640
    height: int = 480
    jpeg_quality: int = 90
    seed: int = 0
    clock_start: datetime | None = None


@dataclass
class Item:
    """A mission item as the vehicle holds it (positions in degrees and metres)."""

    command: int
    frame: int
    params: tuple[float, float, float, float]
    lat: float
    lon: float
    alt: float
    autocontinue: int = 1

    @classmethod
    def from_msg(cls, m) -> Item:
        scale = 1e-7 if m.get_type() == "MISSION_ITEM_INT" else 1.0
        return cls(m.command, m.frame, (m.param1, m.param2, m.param3, m.param4),
                   m.x * scale, m.y * scale, float(m.z), m.autocontinue)


@dataclass
class _Upload:
    count: int
    items: list
    use_int: bool
    last_request: float = 0.0
    retries: int = 0


class SimVehicle:
    """A MAVLink peer flying in vehicle time; `start()` runs it on its own threads."""

    def __init__(self, cfg: VehicleConfig):
        self.cfg = cfg
        self.params = dict(DEFAULT_PARAMS) | {"SYSID_THISMAV": cfg.sysid,
                                              "SIM_SPEEDUP": cfg.speedup} | dict(cfg.params)
        self.local = LocalFrame(cfg.home_lat, cfg.home_lon)
        self.clock_start = cfg.clock_start or datetime.now(UTC)
        self.sim_t = 0.0
        # state, in metres east / north of home and above home
        self.e = self.n = self.alt = 0.0
        self.ve = self.vn = self.vz = 0.0
        self.heading = 0.0
        self.armed = False
        self.mode = "STABILIZE"
        self.landed = True
        self.consumed_mah = self.params["BATT_CAPACITY"] * (1 - cfg.battery_pct / 100.0)
        self.speed_override: float | None = None
        self.guided_target: tuple[float, float, float] | None = None
        self.hold: tuple[float, float, float] | None = None
        self.mission: list[Item] = [self._home_item()]
        self.current = 0
        self.item_started = False
        self.item_reached_at: float | None = None
        self.rtl_phase = ""
        self.trigg_dist = 0.0
        self.dist_since_shot = 0.0
        self.mission_id: str | None = None
        self.upload: _Upload | None = None
        self._gcs_int = False  # the ground station has used the INT mission messages
        self.fence_breached = False
        self.batt_fs = ""  # "", "low", "critical"
        self.gcs_seen: float | None = None
        self.gcs_lost = False
        self.link_down_until = 0.0
        self.stream_hz = 4.0
        self.events: list[tuple[float, str]] = []   # (vehicle time, what happened), for operators and tests
        self.frames_taken = 0
        self.frames_published = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._out: queue.Queue = queue.Queue(maxsize=10000)
        self._threads: list[threading.Thread] = []
        self._last_sent: dict[str, float] = {}
        self._last_telemetry = -1e9
        self._reached_sent = -1
        self.conn = mavutil.mavlink_connection(f"udpout:{cfg.gcs_host}:{cfg.gcs_port}",
                                               source_system=cfg.sysid, source_component=1)
        self.conn.mav.srcSystem = cfg.sysid

    # ----- public -------------------------------------------------------------------
    def start(self) -> SimVehicle:
        self._threads = [threading.Thread(target=self._run, name=f"{self.cfg.device_id}-fly",
                                          daemon=True)]
        if self.cfg.mqtt_url:
            self._threads.append(threading.Thread(target=self._publish_loop, daemon=True,
                                                  name=f"{self.cfg.device_id}-camera"))
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop flying, publish what the camera still holds, close the link; re-raise a failure."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self.conn.close()
        if self.error is not None:
            raise RuntimeError(f"{self.cfg.device_id} simulator failed") from self.error

    def drop_link(self, wall_s: float) -> None:
        """A radio dropout: nothing is sent or received for `wall_s` wall seconds."""
        self.link_down_until = time.monotonic() + wall_s

    @property
    def battery_pct(self) -> float:
        return max(0.0, 100.0 * (1 - self.consumed_mah / self.params["BATT_CAPACITY"]))

    @property
    def position(self) -> tuple[float, float, float]:
        """(lat, lon, alt above home)."""
        lat, lon = self.local.to_wgs84(self.e, self.n)
        return lat, lon, self.alt

    def now(self) -> datetime:
        return self.clock_start + timedelta(seconds=self.sim_t)

    # ----- main loop ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            last = time.monotonic()
            while not self._stop.is_set():
                time.sleep(0.02)
                wall = time.monotonic()
                dt_wall = min(wall - last, 0.25)
                last = wall
                self._receive(wall)
                dt = dt_wall * self.cfg.speedup
                while dt > 1e-9:  # sub-steps keep acceptance and failsafes exact at high speed-up
                    step = min(dt, 0.5)
                    self._step(step)
                    self.sim_t += step
                    dt -= step
                self._failsafes(wall)
                self._upload_retry(wall)
                self._stream(wall)
        except BaseException as exc:  # noqa: BLE001 - recorded and re-raised by stop()
            log.exception("%s: simulator stopped", self.cfg.device_id)
            self.error = exc
            self._stop.set()

    def _link_up(self) -> bool:
        return time.monotonic() >= self.link_down_until

    def _send(self, msg) -> None:
        if self._link_up():
            self.conn.mav.send(msg)

    def _statustext(self, text: str, severity: int = mav.MAV_SEVERITY_INFO) -> None:
        self.events.append((self.sim_t, text))
        log.info("%s: %s", self.cfg.device_id, text)
        self._send(self.conn.mav.statustext_encode(severity, text.encode()[:50]))

    def _ack(self, command: int, result: int) -> None:
        self._send(self.conn.mav.command_ack_encode(command, result))

    # ----- inbound ------------------------------------------------------------------
    def _receive(self, wall: float) -> None:
        while True:
            m = self.conn.recv_match(blocking=False)
            if m is None:
                return
            if not self._link_up() or m.get_type() == "BAD_DATA":
                continue
            handler = getattr(self, f"_on_{m.get_type().lower()}", None)
            if handler is not None:
                handler(m, wall)

    def _on_heartbeat(self, m, wall: float) -> None:
        if m.type == mav.MAV_TYPE_GCS:
            if self.gcs_lost:
                self._statustext("GCS link regained")
            self.gcs_seen, self.gcs_lost = wall, False

    def _on_request_data_stream(self, m, wall: float) -> None:
        if m.start_stop and m.req_message_rate > 0:
            self.stream_hz = float(min(50, m.req_message_rate))

    def _on_param_request_list(self, m, wall: float) -> None:
        for i, name in enumerate(self.params):
            self._send_param(name, i)

    def _on_param_request_read(self, m, wall: float) -> None:
        names = list(self.params)
        if m.param_index >= 0 and m.param_index < len(names):
            self._send_param(names[m.param_index], m.param_index)
        elif m.param_id in self.params:
            self._send_param(m.param_id, names.index(m.param_id))

    def _on_param_set(self, m, wall: float) -> None:
        name = m.param_id
        if name not in self.params:
            self._statustext(f"Param {name} not found", mav.MAV_SEVERITY_WARNING)
            return
        self.params[name] = float(m.param_value)
        if name == "SIM_SPEEDUP" and m.param_value > 0:
            self.cfg.speedup = float(m.param_value)
        self._send_param(name, list(self.params).index(name))

    def _send_param(self, name: str, index: int) -> None:
        self._send(self.conn.mav.param_value_encode(name.encode(), float(self.params[name]),
                                                    mav.MAV_PARAM_TYPE_REAL32, len(self.params),
                                                    index))

    def _on_set_mode(self, m, wall: float) -> None:
        number = m.custom_mode
        self._set_mode(mavutil.mode_mapping_acm.get(number, f"#{number}"))

    def _on_command_long(self, m, wall: float) -> None:
        c = m.command
        p = (m.param1, m.param2, m.param3, m.param4, m.param5, m.param6, m.param7)
        result = mav.MAV_RESULT_ACCEPTED
        if c == mav.MAV_CMD_COMPONENT_ARM_DISARM:
            result = self._arm(p[0] > 0.5, force=int(p[1]) == FORCE_MAGIC)
        elif c == mav.MAV_CMD_NAV_TAKEOFF:
            result = self._takeoff(p[6])
        elif c == mav.MAV_CMD_NAV_RETURN_TO_LAUNCH:
            result = self._set_mode("RTL")
        elif c == mav.MAV_CMD_NAV_LAND:
            result = self._set_mode("LAND")
        elif c == mav.MAV_CMD_DO_SET_MODE:
            result = self._set_mode(mavutil.mode_mapping_acm.get(int(p[1]), f"#{int(p[1])}"))
        elif c == mav.MAV_CMD_MISSION_START:
            result = self._set_mode("AUTO")
        elif c == mav.MAV_CMD_DO_SET_CAM_TRIGG_DIST:
            self._set_trigger(p[0], p[2])
        elif c == mav.MAV_CMD_DO_DIGICAM_CONTROL:
            self._capture()
        elif c == mav.MAV_CMD_DO_CHANGE_SPEED:
            if p[1] > 0:
                self.speed_override = float(p[1])
        elif c == mav.MAV_CMD_REQUEST_AUTOPILOT_CAPABILITIES:
            self._send_autopilot_version()
        elif c == mav.MAV_CMD_GET_HOME_POSITION:
            self._send_home()
        elif c == mav.MAV_CMD_REQUEST_MESSAGE:
            if int(p[0]) == mav.MAVLINK_MSG_ID_HOME_POSITION:
                self._send_home()
            elif int(p[0]) == mav.MAVLINK_MSG_ID_AUTOPILOT_VERSION:
                self._send_autopilot_version()
            else:
                result = mav.MAV_RESULT_UNSUPPORTED
        elif c == mav.MAV_CMD_SET_MESSAGE_INTERVAL:
            pass
        else:
            result = mav.MAV_RESULT_UNSUPPORTED
        self._ack(c, result)

    def _on_set_position_target_global_int(self, m, wall: float) -> None:
        if self.mode != "GUIDED" or not self.armed or self.landed:
            return
        if m.type_mask & 0b111:  # position ignored: a velocity-only target is not flown here
            return
        e, n = self.local.to_local(m.lat_int / 1e7, m.lon_int / 1e7)
        alt = m.alt if m.coordinate_frame != mav.MAV_FRAME_GLOBAL_INT else m.alt - self.cfg.home_amsl_m
        self.guided_target = (e, n, float(alt))

    # mission protocol ----------------------------------------------------------------
    def _on_mission_count(self, m, wall: float) -> None:
        if getattr(m, "mission_type", 0) != mav.MAV_MISSION_TYPE_MISSION:
            self._send(self.conn.mav.mission_ack_encode(m.get_srcSystem(), m.get_srcComponent(),
                                                        mav.MAV_MISSION_UNSUPPORTED))
            return
        if m.count == 0:
            self._replace_mission([])
            self._mission_ack(m, mav.MAV_MISSION_ACCEPTED)
            return
        self.upload = _Upload(m.count, [None] * m.count, use_int=self._gcs_int)
        self._request_item(0, wall)

    def _request_item(self, seq: int, wall: float) -> None:
        up = self.upload
        up.last_request = wall
        encode = (self.conn.mav.mission_request_int_encode if up.use_int or self._gcs_int
                  else self.conn.mav.mission_request_encode)
        self._send(encode(255, 0, seq))

    def _on_mission_item(self, m, wall: float) -> None:
        if m.current == 2:  # guided "go to" (dronekit simple_goto)
            if self.mode == "GUIDED" and self.armed and not self.landed:
                e, n = self.local.to_local(m.x, m.y)
                self.guided_target = (e, n, float(m.z))
            self._mission_ack(m, mav.MAV_MISSION_ACCEPTED)
            return
        self._store_item(m, wall)

    def _on_mission_item_int(self, m, wall: float) -> None:
        self._gcs_int = True
        self._store_item(m, wall)

    def _store_item(self, m, wall: float) -> None:
        up = self.upload
        if up is None:
            return
        expected = up.items.index(None)
        if m.seq != expected:
            self._request_item(expected, wall)
            return
        up.items[m.seq] = Item.from_msg(m)
        up.retries = 0
        if None in up.items:
            self._request_item(m.seq + 1, wall)
            return
        self.upload = None
        self._replace_mission(up.items[1:])
        self._mission_ack(m, mav.MAV_MISSION_ACCEPTED)

    def _upload_retry(self, wall: float) -> None:
        up = self.upload
        if up is None or wall - up.last_request < 1.0:
            return
        if up.retries >= 5:
            self.upload = None
            self._statustext("Mission upload timed out", mav.MAV_SEVERITY_WARNING)
            self._send(self.conn.mav.mission_ack_encode(255, 0, mav.MAV_MISSION_ERROR))
            return
        up.retries += 1
        self._request_item(up.items.index(None), wall)

    def _mission_ack(self, m, result: int) -> None:
        self._send(self.conn.mav.mission_ack_encode(m.get_srcSystem(), m.get_srcComponent(), result))

    def _replace_mission(self, items: list[Item]) -> None:
        self.mission = [self._home_item(), *items]
        self.current = 1 if items else 0
        self.item_started = False
        self.mission_id = compute_mission_id(
            (i.command, i.frame, *i.params, i.lat, i.lon, i.alt) for i in items) if items else None
        self._statustext(f"Mission: {len(items)} items, {self.mission_id}")

    def _on_mission_request_list(self, m, wall: float) -> None:
        if getattr(m, "mission_type", 0) != mav.MAV_MISSION_TYPE_MISSION:
            self._send(self.conn.mav.mission_count_encode(m.get_srcSystem(), m.get_srcComponent(), 0))
            return
        self._send(self.conn.mav.mission_count_encode(m.get_srcSystem(), m.get_srcComponent(),
                                                      len(self.mission)))

    def _on_mission_request(self, m, wall: float) -> None:
        self._send_item(m, as_int=False)

    def _on_mission_request_int(self, m, wall: float) -> None:
        self._gcs_int = True
        self._send_item(m, as_int=True)

    def _send_item(self, m, as_int: bool) -> None:
        if not 0 <= m.seq < len(self.mission):
            self._mission_ack(m, mav.MAV_MISSION_INVALID_SEQUENCE)
            return
        it = self.mission[m.seq]
        args = (m.get_srcSystem(), m.get_srcComponent(), m.seq, it.frame, it.command,
                int(m.seq == self.current), it.autocontinue, *it.params)
        if as_int:
            msg = self.conn.mav.mission_item_int_encode(*args, round(it.lat * 1e7),
                                                        round(it.lon * 1e7), it.alt)
        else:
            msg = self.conn.mav.mission_item_encode(*args, it.lat, it.lon, it.alt)
        self._send(msg)

    def _on_mission_clear_all(self, m, wall: float) -> None:
        if getattr(m, "mission_type", 0) == mav.MAV_MISSION_TYPE_MISSION:
            self.mission = [self._home_item()]
            self.current = 0
            self.mission_id = None
        self._mission_ack(m, mav.MAV_MISSION_ACCEPTED)

    def _on_mission_set_current(self, m, wall: float) -> None:
        if 0 < m.seq < len(self.mission):
            self.current, self.item_started = m.seq, False
            self._send(self.conn.mav.mission_current_encode(self.current))

    def _home_item(self) -> Item:
        return Item(mav.MAV_CMD_NAV_WAYPOINT, mav.MAV_FRAME_GLOBAL, (0.0, 0.0, 0.0, 0.0),
                    self.cfg.home_lat, self.cfg.home_lon, self.cfg.home_amsl_m)

    # ----- commands -----------------------------------------------------------------
    def _prearm_problems(self) -> list[str]:
        problems = []
        if self.cfg.gps_fix < 3:
            problems.append("GPS: no 3D fix")
        low = self.params["BATT_ARM_MAH"] or self.params["BATT_LOW_MAH"]
        if self.params["BATT_CAPACITY"] - self.consumed_mah <= low:
            problems.append("Battery below minimum arming capacity")
        if self.mode not in ARMABLE_MODES:
            problems.append(f"Mode not armable: {self.mode}")
        if self.params["FENCE_ENABLE"] and self.params["FENCE_RADIUS"] <= 0:
            problems.append("Fence: radius must be positive")
        return problems

    def _arm(self, arm: bool, force: bool) -> int:
        if arm:
            if self.armed:
                return mav.MAV_RESULT_ACCEPTED
            problems = [] if force or not self.params["ARMING_CHECK"] else self._prearm_problems()
            if problems:
                for p in problems:
                    self._statustext(f"PreArm: {p}", mav.MAV_SEVERITY_CRITICAL)
                return mav.MAV_RESULT_FAILED
            self.armed, self.fence_breached, self.gcs_lost = True, False, False
            self.hold = (self.e, self.n, 0.0)
            self._statustext("Arming motors")
            self._heartbeat_soon()
            return mav.MAV_RESULT_ACCEPTED
        if not self.landed and not force:
            self._statustext("Disarm refused: flying", mav.MAV_SEVERITY_WARNING)
            return mav.MAV_RESULT_FAILED
        self._disarm("Disarming motors")
        return mav.MAV_RESULT_ACCEPTED

    def _disarm(self, why: str) -> None:
        if self.armed:
            self.armed = False
            self._statustext(why)
            self._heartbeat_soon()
            self._queue_telemetry()

    def _takeoff(self, alt: float) -> int:
        if self.mode != "GUIDED" or not self.armed or not self.landed or not alt > 0:
            return mav.MAV_RESULT_FAILED
        self.landed = False
        self.guided_target = (self.e, self.n, float(alt))
        self._statustext(f"Takeoff to {alt:.0f} m")
        return mav.MAV_RESULT_ACCEPTED

    def _set_mode(self, name: str, why: str = "") -> int:
        if name not in MODE_NUMBER:
            return mav.MAV_RESULT_FAILED
        if name == "AUTO" and len(self.mission) <= 1:
            self._statustext("Mode change to AUTO failed: no mission", mav.MAV_SEVERITY_WARNING)
            return mav.MAV_RESULT_FAILED
        if name != self.mode:
            self.mode = name
            self.rtl_phase = ""
            self.guided_target = None
            self.hold = (self.e, self.n, self.alt)
            if name == "AUTO":
                if self.current < 1:
                    self.current = 1
                self.item_started = False
            self._statustext(f"Mode {name}" + (f": {why}" if why else ""))
            self._heartbeat_soon()
        return mav.MAV_RESULT_ACCEPTED

    def _set_trigger(self, distance: float, now: float = 0.0) -> None:
        self.trigg_dist = max(0.0, float(distance))
        self.params["CAM_TRIGG_DIST"] = self.trigg_dist
        self.dist_since_shot = 0.0
        if now >= 1.0:
            self._capture()

    # ----- flight -------------------------------------------------------------------
    def _speed(self) -> float:
        return self.speed_override or self.params["WPNAV_SPEED"] / 100.0

    def _move_to(self, e: float, n: float, alt: float, dt: float, speed: float | None = None,
                 descent: float | None = None) -> bool:
        """Fly towards a point for `dt`; True once inside the acceptance radius at altitude."""
        de, dn = e - self.e, n - self.n
        dist = math.hypot(de, dn)
        step = min(dist, (speed or self._speed()) * dt)
        if dist > 1e-6:
            self.ve, self.vn = de / dist * step / dt, dn / dist * step / dt
            self.e += de / dist * step
            self.n += dn / dist * step
            if step > 0.05:
                self.heading = math.degrees(math.atan2(de, dn)) % 360
        else:
            self.ve = self.vn = 0.0
        dz = alt - self.alt
        rate = (self.params["WPNAV_SPEED_UP"] / 100.0 if dz > 0
                else descent or self.params["WPNAV_SPEED_DN"] / 100.0)
        stepz = max(-rate * dt, min(rate * dt, dz))
        self.alt += stepz
        self.vz = stepz / dt
        self.dist_since_shot += step
        radius = self.params["WPNAV_RADIUS"] / 100.0
        return math.hypot(e - self.e, n - self.n) <= radius and abs(alt - self.alt) < 0.5

    def _step(self, dt: float) -> None:
        self.ve = self.vn = self.vz = 0.0
        if self.armed:
            self._drain(dt)
            if (self.landed and self.mode == "AUTO" and self.current < len(self.mission)
                    and self.mission[self.current].command == mav.MAV_CMD_NAV_TAKEOFF):
                self.landed = False  # AUTO from the ground starts with its takeoff item
            if not self.landed:
                self._fly(dt)
                if self.alt <= 0.0 and not self.landed and self.vz < 0:
                    self.alt, self.landed = 0.0, True
                    self._disarm("Landed: disarming motors")
        if self.trigg_dist > 0 and self.dist_since_shot >= self.trigg_dist and not self.landed:
            self.dist_since_shot -= self.trigg_dist
            self._capture()
        if self.armed and self.cfg.mqtt_url and \
                self.sim_t - self._last_telemetry >= self.cfg.telemetry_every_s:
            self._queue_telemetry()

    def _fly(self, dt: float) -> None:
        if self.mode in ("RTL",):
            self._fly_rtl(dt)
        elif self.mode == "LAND":
            self._fly_land(dt)
        elif self.mode == "GUIDED" and self.guided_target:
            if self._move_to(*self.guided_target, dt):
                self.hold = self.guided_target
        elif self.mode == "AUTO":
            self._fly_auto(dt)
        elif self.hold:
            self._move_to(*self.hold, dt)

    def _land_rate(self) -> float:
        if self.alt > 10.0:
            return (self.params["LAND_SPEED_HIGH"] or self.params["WPNAV_SPEED_DN"]) / 100.0
        return self.params["LAND_SPEED"] / 100.0

    def _fly_land(self, dt: float, e: float | None = None, n: float | None = None) -> None:
        target = (self.e if e is None else e, self.n if n is None else n)
        self._move_to(*target, -1.0, dt, descent=self._land_rate())

    def _fly_rtl(self, dt: float) -> None:
        rtl_alt = max(self.alt, self.params["RTL_ALT"] / 100.0)
        speed = (self.params["RTL_SPEED"] or self.params["WPNAV_SPEED"]) / 100.0
        if self.rtl_phase == "":
            self.rtl_phase = "climb"
            self._rtl_alt = rtl_alt
        if self.rtl_phase == "climb":
            if self._move_to(self.e, self.n, self._rtl_alt, dt):
                self.rtl_phase = "return"
        elif self.rtl_phase == "return":
            if self._move_to(0.0, 0.0, self._rtl_alt, dt, speed=speed):
                self.rtl_phase = "land"
        else:
            self._fly_land(dt, 0.0, 0.0)

    def _fly_auto(self, dt: float) -> None:
        if self.current >= len(self.mission):
            if self.hold:
                self._move_to(*self.hold, dt)
            return
        it = self.mission[self.current]
        c = it.command
        if not self.item_started:
            self.item_started = True
            self.item_reached_at = None
            self._rtl_alt = max(self.alt, self.params["RTL_ALT"] / 100.0)
            self.rtl_phase = "climb"
            if c == mav.MAV_CMD_DO_CHANGE_SPEED:
                if it.params[1] > 0:
                    self.speed_override = float(it.params[1])
                return self._next_item()
            if c == mav.MAV_CMD_DO_SET_CAM_TRIGG_DIST:
                self._set_trigger(it.params[0], it.params[2])
                return self._next_item()
            if c == mav.MAV_CMD_DO_DIGICAM_CONTROL:
                self._capture()
                return self._next_item()
            if c not in (mav.MAV_CMD_NAV_WAYPOINT, mav.MAV_CMD_NAV_TAKEOFF, mav.MAV_CMD_NAV_LAND,
                         mav.MAV_CMD_NAV_LOITER_TIME, mav.MAV_CMD_NAV_RETURN_TO_LAUNCH):
                self._statustext(f"Mission: command {c} skipped (not supported)",
                                 mav.MAV_SEVERITY_WARNING)
                return self._next_item()
        if c == mav.MAV_CMD_NAV_TAKEOFF:
            if self._move_to(self.e, self.n, it.alt, dt):
                self._reached()
                self._next_item()
            return
        if c == mav.MAV_CMD_NAV_RETURN_TO_LAUNCH:
            self._fly_rtl(dt)
            return
        e, n = (self.local.to_local(it.lat, it.lon) if (it.lat or it.lon) else (self.e, self.n))
        if c == mav.MAV_CMD_NAV_LAND:
            self._fly_land(dt, e, n)
            return
        if self.item_reached_at is None:
            if self._move_to(e, n, it.alt, dt):
                self.item_reached_at = self.sim_t
                self._reached()
        else:
            self._move_to(e, n, it.alt, dt)
            if self.sim_t - self.item_reached_at >= it.params[0]:  # hold / loiter time
                self._next_item()

    def _reached(self) -> None:
        if self._reached_sent != self.current:
            self._reached_sent = self.current
            self._send(self.conn.mav.mission_item_reached_encode(self.current))

    def _next_item(self) -> None:
        self.current += 1
        self.item_started = False
        if self.current >= len(self.mission):
            self.hold = (self.e, self.n, self.alt)
            self._statustext("Mission complete")
        self._send(self.conn.mav.mission_current_encode(min(self.current, len(self.mission) - 1)))

    def _drain(self, dt: float) -> None:
        if self.landed:
            amps = 1.5
        else:
            horizontal = math.hypot(self.ve, self.vn)
            amps = 8.5 + 0.15 * horizontal + (3.0 if self.vz > 0.1 else 0.0)
        self.consumed_mah += amps * dt / 3.6

    def _failsafes(self, wall: float) -> None:
        if not self.armed or self.landed:
            return
        remaining = self.params["BATT_CAPACITY"] - self.consumed_mah
        if self.batt_fs != "critical" and remaining <= self.params["BATT_CRT_MAH"]:
            self.batt_fs = "critical"
            if self.params["BATT_FS_CRT_ACT"] == 1:
                self._set_mode("LAND", "Battery failsafe (critical)")
        elif not self.batt_fs and remaining <= self.params["BATT_LOW_MAH"]:
            self.batt_fs = "low"
            if self.params["BATT_FS_LOW_ACT"] == 2 and self.mode not in ("RTL", "LAND"):
                self._set_mode("RTL", "Battery failsafe")
        if (self.params["FS_GCS_ENABLE"] and self.gcs_seen is not None and not self.gcs_lost
                and wall - self.gcs_seen > self.params["FS_GCS_TIMEOUT"]):
            self.gcs_lost = True
            if self.mode not in ("RTL", "LAND"):
                self._set_mode("RTL", "GCS failsafe")
        fence = int(self.params["FENCE_TYPE"])
        if self.params["FENCE_ENABLE"] and not self.fence_breached:
            outside = ((fence & 2 and math.hypot(self.e, self.n) > self.params["FENCE_RADIUS"])
                       or (fence & 1 and self.alt > self.params["FENCE_ALT_MAX"]))
            if outside:
                self.fence_breached = True
                if self.params["FENCE_ACTION"] == 1 and self.mode not in ("RTL", "LAND"):
                    self._set_mode("RTL", "Fence breach")

    # ----- outbound streams ---------------------------------------------------------
    def _heartbeat_soon(self) -> None:
        """Announce a mode or arming change with the next loop's heartbeat, not a second later."""
        self._last_sent.pop("heartbeat", None)

    def _due(self, name: str, period: float, wall: float) -> bool:
        if wall - self._last_sent.get(name, -1e9) >= period:
            self._last_sent[name] = wall
            return True
        return False

    def _stream(self, wall: float) -> None:
        m = self.conn.mav
        if self._due("heartbeat", 1.0, wall):
            base = mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | mav.MAV_MODE_FLAG_STABILIZE_ENABLED
            if self.mode in ("GUIDED", "AUTO", "RTL", "LAND"):
                base |= mav.MAV_MODE_FLAG_GUIDED_ENABLED
            if self.armed:
                base |= mav.MAV_MODE_FLAG_SAFETY_ARMED
            status = mav.MAV_STATE_ACTIVE if self.armed else mav.MAV_STATE_STANDBY
            self._send(m.heartbeat_encode(mav.MAV_TYPE_QUADROTOR, mav.MAV_AUTOPILOT_ARDUPILOTMEGA,
                                          base, MODE_NUMBER[self.mode], status))
            self._send(m.system_time_encode(int(self.now().timestamp() * 1e6),
                                            int(self.sim_t * 1000) & 0xFFFFFFFF))
            self._send(m.mission_current_encode(self.current))
            self._send_home()
        if not self._due("stream", 1.0 / self.stream_hz, wall):
            return
        lat, lon = self.local.to_wgs84(self.e, self.n)
        amsl = self.cfg.home_amsl_m + self.alt
        boot_ms = int(self.sim_t * 1000) & 0xFFFFFFFF
        sensors = (mav.MAV_SYS_STATUS_SENSOR_3D_GYRO | mav.MAV_SYS_STATUS_SENSOR_3D_ACCEL
                   | mav.MAV_SYS_STATUS_SENSOR_GPS | mav.MAV_SYS_STATUS_SENSOR_BATTERY)
        frac = self.battery_pct / 100.0
        amps = 0.0 if not self.armed else (1.5 if self.landed else 8.5)
        self._send(m.sys_status_encode(sensors, sensors, sensors, 250,
                                       int(6 * (3.5 + 0.7 * frac) * 1000), int(amps * 100),
                                       int(round(self.battery_pct)), 0, 0, 0, 0, 0, 0))
        fix = self.cfg.gps_fix
        self._send(m.gps_raw_int_encode(int(self.sim_t * 1e6), fix, int(lat * 1e7), int(lon * 1e7),
                                        int(amsl * 1000), 80, 120,
                                        int(math.hypot(self.ve, self.vn) * 100),
                                        int(self.heading * 100), 14 if fix >= 3 else 4))
        self._send(m.global_position_int_encode(boot_ms, int(lat * 1e7), int(lon * 1e7),
                                                int(amsl * 1000), int(self.alt * 1000),
                                                int(self.vn * 100), int(self.ve * 100),
                                                int(-self.vz * 100), int(self.heading * 100)))
        yaw = math.radians(self.heading if self.heading <= 180 else self.heading - 360)
        self._send(m.attitude_encode(boot_ms, 0.0, -0.02 * math.hypot(self.ve, self.vn), yaw,
                                     0.0, 0.0, 0.0))
        throttle = 0 if not self.armed else (10 if self.landed else 45)
        self._send(m.vfr_hud_encode(math.hypot(self.ve, self.vn), math.hypot(self.ve, self.vn),
                                    int(self.heading), throttle, amsl, self.vz))
        flags = (mav.EKF_ATTITUDE | mav.EKF_VELOCITY_HORIZ | mav.EKF_VELOCITY_VERT
                 | mav.EKF_POS_HORIZ_REL | mav.EKF_POS_VERT_ABS | mav.EKF_PRED_POS_HORIZ_REL)
        if fix >= 3:
            flags |= mav.EKF_POS_HORIZ_ABS | mav.EKF_PRED_POS_HORIZ_ABS
        self._send(m.ekf_status_report_encode(flags, 0.1, 0.1, 0.1, 0.1, 0.0))

    def _send_home(self) -> None:
        self._send(self.conn.mav.home_position_encode(
            int(self.cfg.home_lat * 1e7), int(self.cfg.home_lon * 1e7),
            int(self.cfg.home_amsl_m * 1000), 0.0, 0.0, 0.0, [1.0, 0.0, 0.0, 0.0], 0.0, 0.0, 0.0))

    def _send_autopilot_version(self) -> None:
        caps = (mav.MAV_PROTOCOL_CAPABILITY_MISSION_FLOAT | mav.MAV_PROTOCOL_CAPABILITY_PARAM_FLOAT
                | mav.MAV_PROTOCOL_CAPABILITY_MISSION_INT | mav.MAV_PROTOCOL_CAPABILITY_COMMAND_INT
                | mav.MAV_PROTOCOL_CAPABILITY_SET_POSITION_TARGET_GLOBAL_INT
                | mav.MAV_PROTOCOL_CAPABILITY_MAVLINK2)
        version = (4 << 24) | (5 << 16) | (0 << 8) | mav.FIRMWARE_VERSION_TYPE_OFFICIAL
        self._send(self.conn.mav.autopilot_version_encode(caps, version, 0, 0, 0, [0] * 8, [0] * 8,
                                                          [0] * 8, 0, 0, self.cfg.sysid))

    # ----- camera and MQTT ----------------------------------------------------------
    def _capture(self) -> None:
        if self.alt <= 1.0:
            return
        self.frames_taken += 1
        if self.cfg.mqtt_url:
            lat, lon = self.local.to_wgs84(self.e, self.n)
            self._out.put(("frame", self.now(), lat, lon, self.alt, self.heading,
                           self.mission_id, self.frames_taken))

    def _queue_telemetry(self) -> None:
        if not self.cfg.mqtt_url:
            return
        self._last_telemetry = self.sim_t
        lat, lon = self.local.to_wgs84(self.e, self.n)
        doc = {"ts": self.now().isoformat(), "lat": round(lat, 7), "lon": round(lon, 7),
               "alt_m": round(self.alt, 2), "heading_deg": round(self.heading, 1),
               "battery_pct": round(self.battery_pct, 1), "mode": self.mode, "armed": self.armed}
        self._out.put(("telemetry", doc))

    def _publish_loop(self) -> None:
        cfg = self.cfg
        pub = None
        try:
            pub = FramePublisher(cfg.mqtt_url, f"{cfg.device_id}-{uuid.uuid4().hex[:6]}")
            frames = frame_topic(cfg.topic_prefix, "drone", cfg.device_id)
            telemetry = f"{cfg.topic_prefix.rstrip('/')}/drone/{cfg.device_id}/telemetry"
            while not (self._stop.is_set() and self._out.empty()):
                try:
                    job = self._out.get(timeout=0.1)
                except queue.Empty:
                    continue
                if job[0] == "telemetry":
                    pub.publish(telemetry, json.dumps(job[1]).encode())
                    continue
                _, ts, lat, lon, alt, heading, mission, k = job
                pub.publish(frames, envelope.encode(*self._render(ts, lat, lon, alt, heading,
                                                                  mission, k)))
                self.frames_published += 1
        except BaseException as exc:  # noqa: BLE001 - recorded and re-raised by stop()
            log.exception("%s: camera stopped", cfg.device_id)
            self.error = exc
            self._stop.set()
        finally:
            if pub is not None:
                pub.close()

    def _render(self, ts: datetime, lat: float, lon: float, alt: float, heading: float,
                mission: str | None, k: int) -> tuple[dict, bytes]:
        cfg = self.cfg
        e, n = FRAME.to_local(lat, lon)
        pose = CameraPose(e, n, alt, heading, -90.0, cfg.hfov_deg, cfg.width, cfg.height)
        near = [o for o in cfg.objects if math.hypot(o.east_m - e, o.north_m - n) < alt * 3]
        rendered = render_aerial(near, pose, streets=list(cfg.streets), seed=cfg.seed * 100000 + k,
                                 world_seed=cfg.seed, look=Look(jpeg_quality=cfg.jpeg_quality))
        header = {"ts": ts.isoformat(), "lat": lat, "lon": lon, "alt_m": round(alt, 3),
                  "heading_deg": round(heading, 6), "gimbal_pitch_deg": -90.0,
                  "hfov_deg": cfg.hfov_deg}
        if mission:
            header["mission_id"] = mission
        return header, encode_jpeg(rendered.image, cfg.jpeg_quality)


def gcs_address(connection: str) -> tuple[str, int]:
    """Where a vehicle sends for a ground station that connects with `connection`.

    A ground station listening with `udp:HOST:PORT` (dronekit's and MAVProxy's form,
    also `udpin:`) is reached by sending to HOST:PORT; only UDP links are simulated."""
    scheme, _, rest = connection.partition(":")
    if scheme not in ("udp", "udpin") or ":" not in rest:
        raise ValueError(f"connection {connection!r}: the simulator speaks UDP only "
                         "(expected udp:HOST:PORT)")
    host, _, port = rest.rpartition(":")
    return ("127.0.0.1" if host in ("", "0.0.0.0") else host), int(port)


def free_udp_port() -> int:
    """A UDP port on the loopback that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_fleet(registry: Registry, device_ids: Sequence[str]) -> Registry:
    """The registry with these drones' connection strings moved to free loopback UDP ports,
    so that simulators (tests, benchmarks, the demo) never meet a fixed port in use."""
    moved = {d: f"udp:127.0.0.1:{free_udp_port()}" for d in device_ids}
    devices = tuple(dataclasses.replace(d, props=d.props | {"connection": moved[d.device_id]})
                    if d.device_id in moved else d for d in registry.devices)
    return dataclasses.replace(registry, devices=devices)


def config_for(registry: Registry, device_id: str, **overrides) -> VehicleConfig:
    """A VehicleConfig for a registry drone: its connection string and dock as home."""
    drone = next((d for d in registry.devices if d.device_id == device_id and d.kind == "drone"),
                 None)
    if drone is None:
        raise KeyError(f"no drone {device_id!r} in the registry")
    for key in ("connection", "dock"):
        if key not in drone.props:
            raise KeyError(f"drone {device_id}: registry entry has no {key!r}")
    host, port = gcs_address(drone.props["connection"])
    lon, lat = drone.props["dock"]
    values = {"device_id": device_id, "gcs_host": host, "gcs_port": port, "home_lat": lat,
              "home_lon": lon, "hfov_deg": float(drone.props.get("hfov_deg", 84.0))}
    return VehicleConfig(**(values | overrides))


def run(cfg: VehicleConfig, stop: threading.Event) -> int:
    """Fly one simulated vehicle until `stop` is set; non-zero when it failed."""
    sim = SimVehicle(cfg).start()
    try:
        while not stop.wait(0.5):
            if sim.error is not None:
                break
    finally:
        # no return in here: an exception from the loop (Ctrl-C) must go on after the stop
        failed = False
        try:
            sim.stop()
        except RuntimeError:
            log.exception("%s: simulator failed", cfg.device_id)
            failed = True
    return 1 if failed else 0
