"""Detection rules: a class seen at a subject by cameras or drones.

A frame is a hit when it has a detection of one of `classes` with confidence ≥
`min_confidence` (in the asked zone kind), and none of the `absent` classes (work seen
without a fence = fence missing). Hits of one subject form an episode while each follows
the last within `gap`; with `continuous`, any processed frame of the same source without
a hit ends it (a fallen cone put back up). An episode needs `min_frames` hit frames and
must last `min_dwell`. The matched frames are the case's visual evidence.

The permit kind (rules/kinds/permit.py) reuses this machinery with its own frame test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field

from domain.records import Detection
from rules.model import Duration, Episode, EvalContext, FrameRef, Judges, RuleBase, RuleCheck
from storage import rule_queries
from storage.rule_queries import FrameDetections

Hit = tuple[str, FrameRef]  # (subject id, the frame with its best matching detection)


class DetectionRule(RuleBase):
    judges: ClassVar[Judges] = "frames"
    kind: Literal["detection"] = Field("detection", title="Rule kind")
    source_kinds: list[Literal["cone", "drone", "batch"]] = Field(
        title="Frame sources", min_length=1)
    classes: list[str] = Field(min_length=1, title="Classes that make a frame a hit")
    absent: list[str] = Field(default_factory=list,
                              title="Classes whose presence in the frame cancels the hit")
    min_confidence: float = Field(0.5, ge=0, le=1, title="Lowest confidence that counts")
    zone_kinds: list[Literal["frontage", "site", "permit", "none"]] | None = Field(
        None, title="Zone kinds a detection must be matched to (none: any)")
    subject_from: Literal["detection", "source", "detection_or_source"] = Field(
        "detection", title="Whose case it is",
        description="The subject the detection was matched to, the subject the camera or "
        "drone is registered to (a permit, an area), or the first, else the second.")
    min_frames: int = Field(1, ge=1, title="Hit frames an episode needs")
    gap: Duration = Field(timedelta(minutes=10), title="Longest time between hits of an episode")
    min_dwell: Duration = Field(timedelta(0), title="Shortest duration (first to last hit)")
    continuous: bool = Field(False, title="A frame of the same source without a hit ends the episode")
    hours: Literal["always", "business", "permit"] | list[str] = Field(
        "always", title="When hits count")

    def problems(self, check: RuleCheck) -> list[tuple[str, str]]:
        out = super().problems(check)
        if check.classes is not None:
            out += [(f"{name}[{j}]", f"unknown detection class {cls!r}")
                    for name in ("classes", "absent")
                    for j, cls in enumerate(getattr(self, name)) if cls not in check.classes]
        return out


def subject_for(rule: DetectionRule, ctx: EvalContext, frame: FrameDetections,
                det_subject: str | None) -> str | None:
    """The subject a hit belongs to under the rule's `subject_from`, if of the rule's type."""
    candidates = []
    if rule.subject_from in ("detection", "detection_or_source"):
        candidates.append(det_subject)
    if rule.subject_from in ("source", "detection_or_source"):
        src = ctx.subject_of_device(frame.source_id)
        candidates.append(src.subject_id if src else None)
    for sid in candidates:
        s = ctx.subjects.get(sid) if sid else None
        if s is not None and s.kind == rule.subject_type:
            return sid
    return None


def class_hit(rule: DetectionRule, frame: FrameDetections) -> Detection | None:
    """The best detection of the rule's classes in the frame (None: not a hit)."""
    if any(d.class_name in rule.absent and d.confidence >= rule.min_confidence
           for d in frame.detections):
        return None
    best = None
    for d in frame.detections:
        if d.class_name in rule.classes and d.confidence >= rule.min_confidence and (
                rule.zone_kinds is None or d.zone_kind in rule.zone_kinds):
            if best is None or d.confidence > best.confidence:
                best = d
    return best


def episodes_from_frames(rule: DetectionRule, ctx: EvalContext,
                         frame_hit: Callable[[FrameDetections], Hit | None],
                         summary: Callable[[list[FrameRef]], dict] | None = None) -> list[Episode]:
    """Group hit frames into episodes per subject (and per source when `continuous`)."""
    needs_all = rule.continuous or bool(rule.absent)
    frames = rule_queries.frames_with_detections(
        ctx.conn, source_kinds=rule.source_kinds,
        classes=None if needs_all else rule.classes, start=ctx.start, end=ctx.end)
    # key -> list of runs; a run is the list of its hit frames
    runs: dict[tuple[str, str], list[list[FrameRef]]] = {}
    open_run: dict[tuple[str, str], bool] = {}
    for frame in frames:
        hit = frame_hit(frame)
        if hit is None:
            if rule.continuous:
                for key in open_run:
                    if key[1] == frame.source_id:
                        open_run[key] = False
            continue
        subject_id, ref = hit
        subject = ctx.subjects[subject_id]
        hours = ctx.hours(rule.hours, subject)
        if hours is not None and not hours.contains(ref.ts):
            continue
        key = (subject_id, frame.source_id if rule.continuous else "")
        lst = runs.setdefault(key, [])
        if lst and open_run.get(key, False) and ref.ts - lst[-1][-1].ts <= rule.gap:
            lst[-1].append(ref)
        else:
            lst.append([ref])
        open_run[key] = True
    episodes = []
    for (subject_id, _source), subject_runs in sorted(runs.items()):
        for run in subject_runs:
            run.sort(key=lambda f: (f.ts, f.sha256))
            if len(run) < rule.min_frames or run[-1].ts - run[0].ts < rule.min_dwell:
                continue
            info = {"frames": len(run), "classes": sorted({f.class_name for f in run}),
                    "peak_confidence": round(max(f.confidence for f in run), 3),
                    "sources": sorted({f.source_id for f in run})}
            if summary:
                info.update(summary(run))
            episodes.append(Episode(rule.id, subject_id, run[0].ts, run[-1].ts,
                                    tuple(sorted({f.source_id for f in run})), tuple(run), info))
    return sorted(episodes, key=lambda e: e.key)


def hit_of(rule: DetectionRule, ctx: EvalContext, frame: FrameDetections,
           det: Detection) -> Hit | None:
    """The (subject, frame reference) of a matching detection, if it belongs to a subject."""
    subject_id = subject_for(rule, ctx, frame, det.subject_id)
    if subject_id is None:
        return None
    return subject_id, FrameRef(frame.sha256, frame.ts, frame.source_id, frame.fit_as_evidence,
                                det.class_name, round(det.confidence, 4))


@dataclass(frozen=True, slots=True)
class DetectionEvaluator:
    rule: DetectionRule

    def evaluate(self, ctx: EvalContext) -> list[Episode]:
        def frame_hit(frame: FrameDetections) -> Hit | None:
            det = class_hit(self.rule, frame)
            return None if det is None else hit_of(self.rule, ctx, frame, det)

        return episodes_from_frames(self.rule, ctx, frame_hit)


def compile_rule(rule: DetectionRule) -> DetectionEvaluator:
    return DetectionEvaluator(rule)
