"""Fly a plan on a MAVLink vehicle with dronekit: the only module that imports dronekit.

`Flight.run` connects by the drone's connection string (`udp:127.0.0.1:14553` for the
simulator or a real vehicle behind a telemetry radio or MAVProxy, `tcp:127.0.0.1:5760`
for ArduPilot SITL), runs the pre-flight checks (heartbeat, 3D GPS fix, battery for the
plan, armable, home set), uploads the mission and reads it back (the read-back mission's
id must be the plan's), arms in GUIDED, takes off, switches to AUTO and watches the
flight until the vehicle has landed and disarmed. It brings the drone home (RTL) on an
operator's abort or a battery at the configured low level; a lost link, a geofence
breach or the vehicle's own battery failsafe are the vehicle's to handle (ArduPilot's
failsafes switch it to RTL) and are recorded as the reason it is returning.

Every status change goes to the `on_status` callback (the sortie record); every vehicle
position, with the vehicle's own clock (SYSTEM_TIME), to `on_track`. Errors of dronekit
and of the link become `DispatchError`, here and nowhere else.
"""

from __future__ import annotations

import collections
import collections.abc
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

# dronekit 2.9.2 still names collections.MutableMapping, which Python 3.10 removed.
if not hasattr(collections, "MutableMapping"):
    collections.MutableMapping = collections.abc.MutableMapping  # type: ignore[attr-defined]

import dronekit  # noqa: E402
from pymavlink import mavutil  # noqa: E402

from domain.missions import mission_id as compute_mission_id  # noqa: E402
from flights.config import FlightsConfig  # noqa: E402
from flights.planner import Plan  # noqa: E402

log = logging.getLogger(__name__)

RETURNING_MODES = ("RTL", "LAND", "SMART_RTL")
FAILSAFE_WORDS = ("failsafe", "Fence", "fence", "Battery", "GCS")


class DispatchError(Exception):
    """The vehicle could not be reached, refused something, or the link failed."""


@dataclass
class Outcome:
    status: str                    # landed | aborted | failed
    reason: str
    mission_id: str | None = None
    takeoff_at: datetime | None = None
    landed_at: datetime | None = None
    track: list[list] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


class Flight:
    """One sortie on one vehicle, from connection to landing."""

    def __init__(self, plan: Plan, connection: str, cfg: FlightsConfig, *,
                 on_status: Callable[[str, str, dict], None] = lambda s, r, f: None,
                 poll: Callable[[Flight], str | None] = lambda f: None,
                 endurance_min: float | None = None):
        self.plan = plan
        self.connection = connection
        self.cfg = cfg
        self.on_status = on_status
        self.poll = poll
        self.endurance_min = endurance_min or cfg.endurance_min
        self.vehicle = None
        self.status = "planned"
        self.reason = ""
        self.messages: list[str] = []
        self.track: list[list] = []
        self._clock_offset_s: float | None = None   # vehicle unix time - boot time
        self._last_unix_us = 0
        self.acks: dict[int, int] = {}   # command -> last MAV_RESULT
        self._lock = threading.Lock()

    # ----- helpers ------------------------------------------------------------------
    def _set(self, status: str, reason: str = "", **fields) -> None:
        if status == self.status and reason == self.reason and not fields:
            return
        self.status, self.reason = status, reason
        log.info("%s: %s %s", self.plan.device_id, status, reason)
        self.on_status(status, reason, fields)

    def vehicle_now(self) -> datetime:
        """The vehicle's clock (SYSTEM_TIME), or the ground station's when it sends none."""
        v = self.vehicle
        if v is not None and self._last_unix_us:
            return datetime.fromtimestamp(self._last_unix_us / 1e6, UTC)
        return datetime.now(UTC)

    def _wait(self, what: str, cond: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise DispatchError(f"{what}: not within {timeout:g} s"
                                    + (f" (vehicle: {self.messages[-1]})" if self.messages else ""))
            time.sleep(0.05)

    # ----- the flight ---------------------------------------------------------------
    def run(self) -> Outcome:
        """Fly the plan; never raises for vehicle trouble: the outcome says what happened."""
        try:
            self._connect()
            self._preflight()
            mission = self._upload()
            self._set("uploaded", "", mission_id=mission)
            self._arm_and_take_off()
            return self._monitor(mission)
        except DispatchError as exc:
            return self._failed(str(exc))
        except (dronekit.APIException, OSError, TimeoutError) as exc:
            return self._failed(f"vehicle link: {exc}")
        finally:
            if self.vehicle is not None:
                try:
                    self.vehicle.close()
                except Exception:  # noqa: BLE001 - closing a dead link must not hide the outcome
                    log.debug("closing %s", self.connection, exc_info=True)

    def _failed(self, reason: str) -> Outcome:
        v = self.vehicle
        airborne = v is not None and v.armed and (v.location.global_relative_frame.alt or 0) > 1
        if airborne:  # never leave a drone in the air without a way home
            reason += ("; RTL sent over a lost link (the vehicle's own failsafe should bring it home)"
                       if self._link_lost() else "; RTL commanded")
            try:
                v.mode = dronekit.VehicleMode("RTL")
            except Exception:  # noqa: BLE001 - the link is what failed
                reason += " (not sent)"
        self._set("failed", reason)
        return Outcome("failed", reason, None, None, None, self.track, self.messages)

    def _connect(self) -> None:
        timeout = self.cfg.connect_timeout_s
        try:
            v = dronekit.connect(self.connection, wait_ready=True, timeout=timeout,
                                 heartbeat_timeout=timeout, source_system=255,
                                 rate=self.cfg.telemetry_hz)
        except (dronekit.APIException, TimeoutError, OSError) as exc:
            raise DispatchError(f"vehicle at {self.connection} did not answer: {exc}") from None
        self.vehicle = v
        # after the first heartbeat, a lost link is the monitor's to judge, not dronekit's
        v._heartbeat_error = 0  # noqa: SLF001 - dronekit 2.9 has no public setter
        v.add_message_listener("STATUSTEXT", self._on_statustext)
        v.add_message_listener("SYSTEM_TIME", self._on_system_time)
        v.add_message_listener("GLOBAL_POSITION_INT", self._on_position)
        v.add_message_listener("COMMAND_ACK", self._on_command_ack)

    def _on_command_ack(self, _v, _name, msg) -> None:
        self.acks[msg.command] = msg.result

    def _on_statustext(self, _v, _name, msg) -> None:
        text = msg.text if isinstance(msg.text, str) else msg.text.decode(errors="replace")
        self.messages.append(text.rstrip("\x00"))

    def _on_system_time(self, _v, _name, msg) -> None:
        if msg.time_unix_usec:
            self._last_unix_us = msg.time_unix_usec
            self._clock_offset_s = msg.time_unix_usec / 1e6 - msg.time_boot_ms / 1e3

    def _on_position(self, _v, _name, msg) -> None:
        if self._clock_offset_s is None or self.status not in ("airborne", "returning"):
            return
        ts = datetime.fromtimestamp(self._clock_offset_s + msg.time_boot_ms / 1e3, UTC)
        v = self.vehicle
        point = [ts.isoformat(), msg.lat / 1e7, msg.lon / 1e7, round(msg.relative_alt / 1000, 2),
                 v.battery.level if v.battery else None, v.mode.name]
        with self._lock:
            self.track.append(point)

    def track_since(self, n: int) -> list[list]:
        """Flown points from the n-th on (the caller keeps its own count)."""
        with self._lock:
            return self.track[n:]

    def _preflight(self) -> None:
        v = self.vehicle
        problems = []
        if v.last_heartbeat is None or v.last_heartbeat > self.cfg.link_timeout_s:
            problems.append("no recent heartbeat")
        if (v.gps_0.fix_type or 0) < 3:
            problems.append(f"GPS has no 3D fix (fix type {v.gps_0.fix_type})")
        level = v.battery.level if v.battery else None
        need = self.plan.duration_s(self.cfg) / 60 / self.endurance_min * 100 + self.cfg.reserve_pct
        if level is None:
            problems.append("battery level unknown")
        elif level < need:
            problems.append(f"battery {level} % is below the {need:.0f} % this plan needs "
                            f"with a {self.cfg.reserve_pct:g} % reserve")
        if not v.is_armable:
            problems.append("vehicle is not armable (EKF / GPS not ready)")
        cmds = v.commands
        cmds.download()
        cmds.wait_ready(timeout=self.cfg.connect_timeout_s)
        if v.home_location is None:
            problems.append("home position is not set")
        if problems:
            raise DispatchError("pre-flight: " + "; ".join(problems))

    def _upload(self) -> str:
        v = self.vehicle
        cmds = v.commands
        cmds.clear()
        for cmd, frame, p1, p2, p3, p4, lat, lon, alt in self.plan.mission_items():
            cmds.add(dronekit.Command(0, 0, 0, frame, cmd, 0, 1, p1, p2, p3, p4, lat, lon, alt))
        try:
            cmds.upload(timeout=self.cfg.connect_timeout_s)
        except TimeoutError:
            raise DispatchError("mission upload: the vehicle stopped asking for items") from None
        # read back what the vehicle holds: its id must be the plan's
        cmds.download()
        cmds.wait_ready(timeout=self.cfg.connect_timeout_s)
        held = compute_mission_id((c.command, c.frame, c.param1, c.param2, c.param3, c.param4,
                                   c.x, c.y, c.z) for c in cmds)
        expected = compute_mission_id(_as_float32(self.plan.mission_items()))
        if held != expected or cmds.count != len(self.plan.mission_items()):
            raise DispatchError(f"mission upload: the vehicle holds {cmds.count} items ({held}), "
                                f"the plan has {len(self.plan.mission_items())} ({expected})")
        return held

    def _arm_and_take_off(self) -> None:
        v = self.vehicle
        v.mode = dronekit.VehicleMode("GUIDED")
        self._wait("mode GUIDED", lambda: v.mode.name == "GUIDED", 10)
        seen = len(self.messages)
        arm = mavutil.mavlink.MAV_CMD_COMPONENT_ARM_DISARM
        self.acks.pop(arm, None)
        v.armed = True
        fine = (None, mavutil.mavlink.MAV_RESULT_ACCEPTED, mavutil.mavlink.MAV_RESULT_IN_PROGRESS)
        try:
            self._wait("arming", lambda: v.armed or self.acks.get(arm) not in fine, 10)
        except DispatchError:
            pass
        if not v.armed:
            time.sleep(0.2)  # the STATUSTEXT with the reason follows the ACK
            refusals = [m for m in self.messages[seen:] if "PreArm" in m or "Arm" in m]
            raise DispatchError("vehicle refused to arm: " + ("; ".join(refusals) or "no reason given"))
        v.simple_takeoff(self.plan.alt_m)
        self._wait("leaving the ground", lambda: (v.location.global_relative_frame.alt or 0) > 1.0,
                   30)
        self._set("airborne", "", takeoff_at=self.vehicle_now())
        # from here on a lost link is the monitor's to record, not a reason to give up
        self._wait(f"climb to {self.plan.alt_m:g} m",
                   lambda: self._link_lost()
                   or (v.location.global_relative_frame.alt or 0) >= self.plan.alt_m * 0.95,
                   self.cfg.sortie_timeout_s)
        v.mode = dronekit.VehicleMode("AUTO")
        self._wait("mode AUTO", lambda: self._link_lost() or v.mode.name == "AUTO", 10)

    def _link_lost(self) -> bool:
        beat = self.vehicle.last_heartbeat
        return beat is not None and beat > self.cfg.link_timeout_s

    def _monitor(self, mission: str) -> Outcome:
        v = self.vehicle
        cfg = self.cfg
        last_item = len(self.plan.mission_items())  # the RTL item (home is 0)
        deadline = time.monotonic() + cfg.sortie_timeout_s
        returning_why = ""
        aborted: str | None = None
        link_lost_since: float | None = None
        commanded_rtl = False
        takeoff_at = self.vehicle_now()
        next_poll = 0.0
        request: str | None = None
        while True:
            time.sleep(0.1)
            if time.monotonic() >= next_poll:  # the caller's bookkeeping: track, abort requests
                next_poll = time.monotonic() + 1.0
                request = self.poll(self)
            if time.monotonic() > deadline:
                loc = v.location.global_relative_frame  # the last position the link brought
                where = (f"; last seen at {loc.lat:.6f},{loc.lon:.6f} {loc.alt or 0:.0f} m"
                         if loc.lat is not None else "")
                if link_lost_since is not None:
                    raise DispatchError(f"link lost {time.monotonic() - link_lost_since:.0f} s ago "
                                        f"and not regained{where}")
                raise DispatchError(f"sortie still flying after {cfg.sortie_timeout_s:g} s{where}")
            if self._link_lost():
                if link_lost_since is None:
                    link_lost_since = time.monotonic()
                    returning_why = returning_why or (
                        f"link lost ({v.last_heartbeat:.0f} s without a heartbeat); the vehicle's "
                        "failsafe returns it")
                    self._set("returning", returning_why)
                continue
            if link_lost_since is not None:
                link_lost_since = None
                log.info("%s: link regained", self.plan.device_id)
            if not v.armed and (v.location.global_relative_frame.alt or 0) < 1.0:
                break
            if request and aborted is None:
                aborted = request
                returning_why = request
                commanded_rtl = self._rtl()
                self._set("returning", request)
                continue
            level = v.battery.level if v.battery else None
            if level is not None and level <= cfg.low_battery_pct and not commanded_rtl \
                    and v.mode.name not in RETURNING_MODES:
                commanded_rtl = self._rtl()
                returning_why = f"battery {level} % at or below {cfg.low_battery_pct:g} %: RTL"
                self._set("returning", returning_why)
                continue
            if self.status != "returning":
                if v.mode.name in RETURNING_MODES:
                    cause = next((m for m in reversed(self.messages)
                                  if any(w in m for w in FAILSAFE_WORDS)), "")
                    returning_why = f"vehicle switched to {v.mode.name}" + (f": {cause}" if cause else "")
                    self._set("returning", returning_why)
                elif v.commands.next >= last_item:
                    returning_why = "mission complete"
                    self._set("returning", returning_why)
        landed_at = self.vehicle_now()
        self.poll(self)
        status = "aborted" if aborted else "landed"
        reason = returning_why if returning_why != "mission complete" else ""
        self._set(status, reason, landed_at=landed_at)
        with self._lock:
            track = list(self.track)
        return Outcome(status, reason, mission, takeoff_at, landed_at, track, self.messages)

    def _rtl(self) -> bool:
        self.vehicle.mode = dronekit.VehicleMode("RTL")
        return True


_F32 = struct.Struct("<f")


def _as_float32(items):
    """Mission items as a MISSION_ITEM carries them (float32), as the vehicle will hold them."""
    f32 = _F32
    for cmd, frame, *values in items:
        yield (cmd, frame, *(f32.unpack(f32.pack(float(x)))[0] for x in values))


def probe(connection: str, timeout: float = 10.0) -> dict:
    """Connect, read the vehicle's state and disconnect (`citywatch flights status --probe`)."""
    try:
        v = dronekit.connect(connection, wait_ready=True, timeout=timeout, heartbeat_timeout=timeout)
    except (dronekit.APIException, TimeoutError, OSError) as exc:
        raise DispatchError(f"vehicle at {connection} did not answer: {exc}") from None
    try:
        loc = v.location.global_relative_frame
        return {"mode": v.mode.name, "armed": v.armed, "lat": loc.lat, "lon": loc.lon,
                "alt_m": loc.alt, "battery_pct": v.battery.level if v.battery else None,
                "gps_fix": v.gps_0.fix_type, "armable": v.is_armable,
                "autopilot": mavutil.mavlink.enums["MAV_AUTOPILOT"][v._autopilot_type].name  # noqa: SLF001
                if v._autopilot_type is not None else None}  # noqa: SLF001
    finally:
        v.close()
