"""Permit rules: road-works activity outside the permitted hours or the permitted area.

Activity (excavator, workers) seen by a permit's cone cameras counts against the permit
when it is outside the permit's daily hours or validity dates (`check: hours`), or when
its ground position lies outside the permitted polygon by more than `tolerance_m`
(`check: area`). A detection whose position is only the camera's own registered position
(what cone-camera detections carry until they are georeferenced) or none cannot be judged
for area and is skipped, so the area check never fires on where a cone stands. Hits group into episodes as
in detection rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import shapely
from pydantic import Field
from shapely.geometry import Point, shape

from domain.geo import LocalFrame, distance_m
from rules.kinds.detection import DetectionRule, Hit, episodes_from_frames, hit_of
from rules.model import Episode, EvalContext
from rules.timeutil import DailyHours, local_day
from storage.rule_queries import FrameDetections


class PermitRule(DetectionRule):
    kind: Literal["permit"] = Field("permit", title="Rule kind")  # type: ignore[assignment]
    check: Literal["hours", "area"] = Field(title="What the activity is checked against")
    tolerance_m: float = Field(2.0, ge=0, title="Metres outside the polygon still counted inside")
    subject_type: Literal["permit"] = Field("permit", title="Subject kind (always a permit)")
    subject_from: Literal["detection", "source", "detection_or_source"] = Field(
        "source", title="Whose case it is (the camera's permit by default)")


@dataclass(slots=True)
class PermitEvaluator:
    rule: PermitRule

    def evaluate(self, ctx: EvalContext) -> list[Episode]:
        areas: dict[str, tuple[LocalFrame, object]] = {}

        def outside_area(permit_id: str, lat: float, lon: float) -> bool:
            if permit_id not in areas:
                geom = shape(ctx.subjects[permit_id].geometry)
                frame = LocalFrame(geom.centroid.y, geom.centroid.x)
                local = shapely.transform(geom, lambda xy: np.array(
                    [frame.to_local(lat, lon) for lon, lat in xy]).reshape(-1, 2))
                areas[permit_id] = (frame, local)
            frame, local = areas[permit_id]
            return local.distance(Point(*frame.to_local(lat, lon))) > self.rule.tolerance_m

        def outside_hours(permit_id: str, frame: FrameDetections) -> bool:
            props = ctx.subjects[permit_id].props
            day = local_day(frame.ts, ctx.tz)
            valid_from, valid_until = props.get("valid_from"), props.get("valid_until")
            if (valid_from and day < date.fromisoformat(valid_from)) or (
                    valid_until and day > date.fromisoformat(valid_until)):
                return True
            texts = props.get("hours")
            return bool(texts) and not DailyHours.parse(texts, ctx.tz).contains(frame.ts)

        def at_camera(camera_id: str, lat: float, lon: float) -> bool:
            device = ctx.devices.get(camera_id)
            pos = device.props.get("position") if device else None
            return bool(pos) and distance_m(pos[1], pos[0], lat, lon) < 0.5

        def frame_hit(frame: FrameDetections) -> Hit | None:
            best: Hit | None = None
            for det in frame.detections:
                if (det.class_name not in self.rule.classes
                        or det.confidence < self.rule.min_confidence):
                    continue
                hit = hit_of(self.rule, ctx, frame, det)
                if hit is None:
                    continue
                permit_id = hit[0]
                if self.rule.check == "hours":
                    bad = outside_hours(permit_id, frame)
                else:
                    if det.lat is None or det.lon is None or \
                            at_camera(frame.source_id, det.lat, det.lon):
                        continue
                    bad = outside_area(permit_id, det.lat, det.lon)
                if bad and (best is None or hit[1].confidence > best[1].confidence):
                    best = hit
            return best

        return episodes_from_frames(self.rule, ctx, frame_hit)


def compile_rule(rule: PermitRule) -> PermitEvaluator:
    return PermitEvaluator(rule)
