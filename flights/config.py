"""Flight planning and dispatch settings (the `flights:` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LEGAL_CEILING_M = 120.0  # 《无人驾驶航空器飞行管理暂行条例》: above 120 m true height is controlled airspace


class FlightsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ceiling_m: float = Field(
        LEGAL_CEILING_M, gt=0, le=LEGAL_CEILING_M, title="Highest planned altitude above ground (m)",
        description="At most 120 m (China's limit for light drones); a lower city ceiling wins.")
    altitude_m: float = Field(60.0, gt=0, title="Default survey and inspection altitude above ground (m)")
    speed_ms: float = Field(10.0, gt=0, le=25, title="Default ground speed on the route (m/s)")
    climb_ms: float = Field(3.0, gt=0, title="Climb rate used for flight-time estimates (m/s)")
    descent_ms: float = Field(1.5, gt=0, title="Descent rate used for flight-time estimates (m/s)")
    front_overlap: float = Field(0.7, ge=0, lt=1, title="Front overlap of survey photos (0..1)")
    side_overlap: float = Field(0.6, ge=0, lt=1, title="Side overlap of survey lines (0..1)")
    image_aspect: float = Field(4 / 3, gt=0, title="Image width / height of the drone cameras")
    hfov_deg: float = Field(84.0, gt=1, lt=170, title="Horizontal field of view when the registry gives none")
    reserve_pct: float = Field(
        25.0, ge=0, lt=100, title="Battery reserve (%)",
        description="A plan must fit in the drone's endurance less this share.")
    endurance_min: float = Field(30.0, gt=0, title="Endurance when the registry gives none (min)")
    flight_hours: str = Field("06:00-22:00", pattern=r"^\d\d:\d\d-\d\d:\d\d$",
                              title="Local hours when flights are allowed (night is 22:00-06:00)")
    allow_night: bool = Field(False, title="Allow flights outside flight_hours (lights on, approved)")
    timezone: str = Field("Asia/Shanghai", title="Time zone of flight hours")
    inspection_pattern: Literal["orbit", "hover"] = Field(
        "orbit", title="Point inspection pattern",
        description="`orbit`: photos from points on a circle around the subject; `hover`: "
        "photos from above its centre.")
    orbit_radius_m: float = Field(25.0, gt=0, title="Orbit radius of a point inspection (m)")
    orbit_points: int = Field(8, ge=3, le=36, title="Photo points on an inspection orbit")
    hover_s: float = Field(5.0, ge=0, title="Hold over each inspection photo point (s)")
    nofly_file: str = Field("nofly.geojson", title="No-fly zones (GeoJSON) in the registry folder")
    telemetry_hz: int = Field(10, ge=1, le=50, title="Position and status messages asked of the vehicle per second")
    connect_timeout_s: float = Field(30.0, gt=0, title="Seconds to wait for a vehicle's heartbeat and parameters")
    link_timeout_s: float = Field(
        5.0, gt=0, title="Link lost after this many seconds without a heartbeat",
        description="The sortie is marked returning (the vehicle's own failsafe brings it home).")
    low_battery_pct: float = Field(30.0, ge=0, le=100,
                                   title="Battery level at which dispatch commands RTL (%)")
    sortie_timeout_s: float = Field(3600.0, gt=0, title="Give up monitoring a sortie after this long (s)")
    dispatcher: bool = Field(
        True, title="Run the dispatcher in `citywatch run`",
        description="It plans and flies the sorties that rules' dispatch actions request.")
