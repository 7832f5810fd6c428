"""State rules: device flags held in a state for at least a time (fan on while the
purifier is off for ≥ 10 minutes = purifier not used normally).

A run is a sequence of readings all in the state with no gap longer than `max_gap`; its
part inside the rule's hours must last at least `for_at_least` (first to last reading).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field

from domain.sensors import SENSOR_KINDS
from rules.model import (
    Duration,
    Episode,
    EvalContext,
    Judges,
    RuleBase,
    RuleCheck,
    SensorKindName,
)
from storage import rule_queries


class StateRule(RuleBase):
    judges: ClassVar[Judges] = "measurements"
    kind: Literal["state"] = Field("state", title="Rule kind")
    device_kind: SensorKindName = Field(title="Kind of device whose readings are judged")
    when: dict[str, bool] = Field(title="Flag values that make up the state",
                                  description="e.g. {fan_on: true, purifier_on: false}")
    for_at_least: Duration = Field(title="Shortest run that is an episode")
    max_gap: Duration = Field(timedelta(minutes=3), title="Longest gap between readings of a run")
    hours: Literal["always", "business", "permit"] | list[str] = Field(
        "always", title="When the state counts")

    def problems(self, check: RuleCheck) -> list[tuple[str, str]]:
        out = super().problems(check)
        flags = [f.name for f in SENSOR_KINDS[self.device_kind].fields if f.type == "boolean"]
        out += [(f"when.{name}", f"{self.device_kind} readings have no flag {name!r}; "
                                 f"they have {flags}") for name in self.when if name not in flags]
        return out


@dataclass(frozen=True, slots=True)
class StateEvaluator:
    rule: StateRule

    def evaluate(self, ctx: EvalContext) -> list[Episode]:
        r = self.rule
        runs = rule_queries.state_runs(ctx.conn, device_kind=r.device_kind, state=r.when,
                                       max_gap=r.max_gap, start=ctx.start, end=ctx.end)
        episodes = []
        for run in runs:
            subject = ctx.subjects.get(run.subject_id)
            if subject is None or subject.kind != r.subject_type:
                continue
            hours = ctx.hours(r.hours, subject)
            spans = [(run.start, run.end)] if hours is None else hours.spans(run.start, run.end)
            for s, e in spans:
                if e - s >= r.for_at_least:
                    episodes.append(Episode(r.id, run.subject_id, s, e, (run.device_id,), summary={
                        "state": r.when, "minutes": round((e - s).total_seconds() / 60, 1),
                        "readings_in_run": run.readings}))
        return sorted(episodes, key=lambda e: e.key)


def compile_rule(rule: StateRule) -> StateEvaluator:
    return StateEvaluator(rule)
