"""QGroundControl `.plan` files: export a plan so operators can open it in QGC, import
one QGC (or another ground station) wrote.

The format is QGC's JSON plan file (fileType "Plan", mission.items of SimpleItem with
MAV_CMD numbers and seven params, mission.plannedHomePosition [lat, lon, alt]); the
citywatch plan (kind, subjects, drone) travels in a top-level `citywatch` object that QGC
leaves alone. A bad file is refused with the field named: `mission.items[3].params[4]:
latitude 95.0 is outside [-90, 90]`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymavlink.dialects.v20 import common as mavlink

from flights.planner import REL, Plan, PlanError, Waypoint

NAV_WAYPOINT = mavlink.MAV_CMD_NAV_WAYPOINT
TAKEOFF = mavlink.MAV_CMD_NAV_TAKEOFF
RTL = mavlink.MAV_CMD_NAV_RETURN_TO_LAUNCH
CHANGE_SPEED = mavlink.MAV_CMD_DO_CHANGE_SPEED
TRIGG_DIST = mavlink.MAV_CMD_DO_SET_CAM_TRIGG_DIST
DIGICAM = mavlink.MAV_CMD_DO_DIGICAM_CONTROL
LOITER_TIME = mavlink.MAV_CMD_NAV_LOITER_TIME
KNOWN = {NAV_WAYPOINT, TAKEOFF, RTL, CHANGE_SPEED, TRIGG_DIST, DIGICAM, LOITER_TIME,
         mavlink.MAV_CMD_NAV_LAND}
RELATIVE_FRAMES = {mavlink.MAV_FRAME_GLOBAL_RELATIVE_ALT, mavlink.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
                   mavlink.MAV_FRAME_MISSION}


class _Simple(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["SimpleItem"]
    command: int
    frame: int = REL
    params: list[float | None] = Field(min_length=7, max_length=7)
    autoContinue: bool = True


class _Complex(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["ComplexItem"]
    complexItemType: str = ""
    TransectStyleComplexItem: dict[str, Any] | None = None


class _Mission(BaseModel):
    model_config = ConfigDict(extra="allow")
    items: list[Annotated[_Simple | _Complex, Field(discriminator="type")]] = Field(min_length=1)
    plannedHomePosition: list[float] = Field(min_length=2, max_length=3)
    cruiseSpeed: float | None = None
    hoverSpeed: float | None = None


class _PlanFile(BaseModel):
    model_config = ConfigDict(extra="allow")
    fileType: Literal["Plan"]
    version: int
    mission: _Mission
    citywatch: dict[str, Any] | None = None


def export(plan: Plan) -> dict:
    """The plan as a QGC `.plan` document."""
    items = []
    for k, (cmd, frame, p1, p2, p3, p4, lat, lon, alt) in enumerate(plan.mission_items(), start=1):
        item = {"type": "SimpleItem", "autoContinue": True, "command": cmd, "doJumpId": k,
                "frame": frame, "params": [p1, p2, p3, p4, lat, lon, alt]}
        if cmd in (NAV_WAYPOINT, TAKEOFF):
            item |= {"AMSLAltAboveTerrain": None, "Altitude": alt, "AltitudeMode": 1}
        items.append(item)
    meta = plan.to_json()
    meta.pop("waypoints")
    return {
        "fileType": "Plan", "version": 1, "groundStation": "citywatch",
        "mission": {"version": 2, "firmwareType": mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA,
                    "vehicleType": mavlink.MAV_TYPE_QUADROTOR, "globalPlanAltitudeMode": 1,
                    "cruiseSpeed": plan.speed_ms, "hoverSpeed": plan.speed_ms,
                    "plannedHomePosition": [plan.home[0], plan.home[1], 0], "items": items},
        "geoFence": {"circles": [], "polygons": [], "version": 2},
        "rallyPoints": {"points": [], "version": 2},
        "citywatch": meta,
    }


def save(plan: Plan, path: Path) -> None:
    path.write_text(json.dumps(export(plan), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("SimpleItem", "ComplexItem"):
            continue  # pydantic's union branch, not a field
        else:
            out += f".{part}" if out else str(part)
    return out


def parse(doc: Any) -> Plan:
    """A Plan from a QGC `.plan` document; PlanError names the first bad fields."""
    try:
        pf = _PlanFile.model_validate(doc)
    except ValidationError as exc:
        seen, problems = set(), []
        for e in exc.errors():
            where = _where(e["loc"])
            if where not in seen:
                seen.add(where)
                problems.append(f"{where}: {e['msg']}")
        raise PlanError("; ".join(problems[:5])) from None
    home = pf.mission.plannedHomePosition
    _check_position(home[0], home[1], "mission.plannedHomePosition")
    flat: list[tuple[str, _Simple]] = []
    for i, item in enumerate(pf.mission.items):
        where = f"mission.items[{i}]"
        if isinstance(item, _Complex):
            inner = (item.TransectStyleComplexItem or {}).get("Items")
            if not inner:
                raise PlanError(f"{where}: complex item {item.complexItemType!r} has no "
                                "TransectStyleComplexItem.Items to fly")
            for j, sub in enumerate(inner):
                try:
                    flat.append((f"{where}.TransectStyleComplexItem.Items[{j}]", _Simple.model_validate(sub)))
                except ValidationError as exc:
                    e = exc.errors()[0]
                    raise PlanError(f"{where}.TransectStyleComplexItem.Items[{j}]"
                                    f"{'.' + _where(e['loc']) if e['loc'] else ''}: {e['msg']}") from None
        else:
            flat.append((where, item))
    alt = speed = None
    trigger = 0.0
    waypoints: list[Waypoint] = []
    for where, it in flat:
        p = [0.0 if v is None else float(v) for v in it.params]
        if it.command not in KNOWN:
            raise PlanError(f"{where}.command: MAV_CMD {it.command} is not supported by citywatch plans")
        if it.command in (NAV_WAYPOINT, TAKEOFF, LOITER_TIME):
            if it.frame not in RELATIVE_FRAMES:
                raise PlanError(f"{where}.frame: {it.frame} is not a relative-altitude frame "
                                "(3 GLOBAL_RELATIVE_ALT expected)")
            if not math.isfinite(p[6]) or p[6] <= 0:
                raise PlanError(f"{where}.params[6]: altitude {p[6]} must be above ground")
        if it.command == TAKEOFF:
            alt = p[6]
        elif it.command in (NAV_WAYPOINT, LOITER_TIME):
            _check_position(p[4], p[5], f"{where}.params[4]")
            waypoints.append(Waypoint(p[4], p[5], p[6], hold_s=p[0]))
        elif it.command == CHANGE_SPEED and p[1] > 0:
            speed = p[1]
        elif it.command == TRIGG_DIST and p[0] > 0:
            trigger = p[0]
        elif it.command == DIGICAM:
            if not waypoints:
                raise PlanError(f"{where}: a photo before the first waypoint")
            last = waypoints[-1]
            waypoints[-1] = Waypoint(last.lat, last.lon, last.alt_m, last.hold_s, True)
    if not waypoints:
        raise PlanError("mission.items: no waypoint to fly")
    meta = pf.citywatch or {}
    speed = speed or pf.mission.cruiseSpeed or pf.mission.hoverSpeed
    if not speed or speed <= 0:
        raise PlanError("mission.cruiseSpeed: missing (no DO_CHANGE_SPEED item either)")
    return Plan(kind=meta.get("kind", "imported") if meta.get("kind") in
                ("survey", "corridor", "inspection") else "imported",
                home=(home[0], home[1]), alt_m=alt or max(w.alt_m for w in waypoints),
                speed_ms=float(speed), trigger_m=trigger, waypoints=tuple(waypoints),
                device_id=meta.get("device_id"), subject_ids=tuple(meta.get("subject_ids", ())),
                target=meta.get("target"), notes=tuple(meta.get("notes", ())))


def _check_position(lat: float, lon: float, where: str) -> None:
    if not (math.isfinite(lat) and -90 <= lat <= 90):
        raise PlanError(f"{where}: latitude {lat} is outside [-90, 90]")
    if not (math.isfinite(lon) and -180 <= lon <= 180):
        field = where.replace("params[4]", "params[5]")
        raise PlanError(f"{field}: longitude {lon} is outside [-180, 180]")
    if lat == 0 and lon == 0:
        raise PlanError(f"{where}: position 0, 0 (unset)")


def load(path: Path) -> Plan:
    """Read a `.plan` file; PlanError names the file and the bad field."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PlanError(f"{Path(path).name}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise PlanError(f"{path}: {exc.strerror}") from None
    try:
        return parse(doc)
    except PlanError as exc:
        raise PlanError(f"{Path(path).name}: {exc}") from None
