"""Threshold rules: an aggregate of a reading over event-time windows breaks a limit.

Either in N consecutive windows (fume over 2.0 mg/m³ in 3 consecutive 10-minute means
inside business hours), or more than a number of times in one local day (15-minute PM10
means above the site limit more than twice a day). A window counts only when it lies
wholly inside the rule's hours and holds enough readings; a window missing from the data
breaks a run of consecutive windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.sensors import SENSOR_KINDS
from rules.model import (
    Duration,
    Episode,
    EvalContext,
    Judges,
    Limit,
    RuleBase,
    RuleCheck,
    SensorKindName,
    resolve_limit,
)
from rules.timeutil import local_day
from storage import rule_queries


class PerDay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    more_than: int = Field(ge=0, title="Breaking windows in one local day above which it is a case")


class ThresholdRule(RuleBase):
    judges: ClassVar[Judges] = "measurements"
    kind: Literal["threshold"] = Field("threshold", title="Rule kind")
    device_kind: SensorKindName = Field(title="Kind of device whose readings are judged")
    metric: str = Field(title="Reading field", description="e.g. fume_mg_m3, pm10_ug_m3")
    aggregate: Literal["mean", "max", "min", "count", "leq"] = Field(
        "mean", title="Window aggregate",
        description="leq: equivalent continuous sound level, the energy mean of dB values.")
    window: Duration = Field(title="Window width (event time)")
    op: Literal[">", ">=", "<", "<="] = Field(">", title="Comparison with the limit")
    value: Limit = Field(title="Limit", description="A number, or one per profile "
                         "(e.g. {standard: 2.0, strict: 1.0}).")
    offset_prop: str | None = Field(
        None, title="Subject property added to the limit",
        description="e.g. background_pm10_ug_m3: the limit is that much above background.")
    min_samples: int = Field(1, ge=1, title="Readings a window needs to be judged")
    consecutive: int = Field(1, ge=1, title="Consecutive breaking windows for an episode")
    per_day: PerDay | None = Field(None, title="Count breaking windows per local day instead")
    hours: Literal["always", "business", "permit"] | list[str] = Field(
        "always", title="When windows count",
        description="always, the subject's business_hours, the permit's hours, or a list "
        "of 'HH:MM-HH:MM'.")

    def limits(self) -> dict[str, Limit]:
        return {"value": self.value}

    def problems(self, check: RuleCheck) -> list[tuple[str, str]]:
        out = super().problems(check)
        fields = [f.name for f in SENSOR_KINDS[self.device_kind].fields]
        if self.metric not in fields:
            out.append(("metric", f"{self.device_kind} readings have no field "
                                  f"{self.metric!r}; they have {fields}"))
        return out


@dataclass(frozen=True, slots=True)
class ThresholdEvaluator:
    rule: ThresholdRule

    def evaluate(self, ctx: EvalContext) -> list[Episode]:
        r = self.rule
        rows = rule_queries.exceeding_windows(
            ctx.conn, device_kind=r.device_kind, metric=r.metric, aggregate=r.aggregate,
            width=r.window, op=r.op, value=resolve_limit(r.value, ctx.profile),
            offset_prop=r.offset_prop, min_samples=r.min_samples, start=ctx.start, end=ctx.end,
            closed_by=ctx.end if ctx.live else None)
        by_device: dict[tuple[str, str], list[rule_queries.WindowRow]] = {}
        for row in rows:
            subject = ctx.subjects.get(row.subject_id)
            if subject is None or subject.kind != r.subject_type:
                continue
            hours = ctx.hours(r.hours, subject)
            if hours is not None and not hours.covers(row.bucket, row.bucket + r.window):
                continue
            by_device.setdefault((row.device_id, row.subject_id), []).append(row)
        episodes: list[Episode] = []
        for (device_id, subject_id), windows in sorted(by_device.items()):
            groups = self._per_day(windows, ctx) if r.per_day else self._consecutive(windows)
            for group in groups:
                episodes.append(Episode(
                    r.id, subject_id, group[0].bucket, group[-1].bucket + r.window, (device_id,),
                    summary={"windows": len(group), "window": str(r.window),
                             "aggregate": r.aggregate, "metric": r.metric, "op": r.op,
                             "limit": round(group[0].limit, 4),
                             "peak": round(max(w.value for w in group), 4)}))
        return episodes

    def _consecutive(self, windows: list[rule_queries.WindowRow]) -> list[list[rule_queries.WindowRow]]:
        runs: list[list[rule_queries.WindowRow]] = []
        for w in windows:
            if runs and w.bucket - runs[-1][-1].bucket == self.rule.window:
                runs[-1].append(w)
            else:
                runs.append([w])
        return [run for run in runs if len(run) >= self.rule.consecutive]

    def _per_day(self, windows: list[rule_queries.WindowRow], ctx: EvalContext) -> list[list[rule_queries.WindowRow]]:
        days: dict[object, list[rule_queries.WindowRow]] = {}
        for w in windows:
            days.setdefault(local_day(w.bucket, ctx.tz), []).append(w)
        return [ws for _, ws in sorted(days.items()) if len(ws) > self.rule.per_day.more_than]


def compile_rule(rule: ThresholdRule) -> ThresholdEvaluator:
    """Compile a threshold rule (its SQL is fixed by its fields)."""
    return ThresholdEvaluator(rule)

