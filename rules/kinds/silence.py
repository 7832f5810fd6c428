"""Silence rules: a device that sends nothing for too long inside the hours that matter
(no fume data for > 2 h in business hours is a device fault, not a violation).

Only a device that has reported in the range can fall silent in it: one that never
reported is not yet in service. A silence still going on at the end of the range is an
episode up to that end; later evaluations extend it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field

from rules.model import Duration, Episode, EvalContext, Judges, RuleBase, SensorKindName
from storage import rule_queries


class SilenceRule(RuleBase):
    judges: ClassVar[Judges] = "availability"
    kind: Literal["silence"] = Field("silence", title="Rule kind")
    device_kind: SensorKindName = Field(title="Kind of device watched")
    longer_than: Duration = Field(title="Silence (inside the hours) longer than this is an episode")
    hours: Literal["always", "business", "permit"] | list[str] = Field(
        "always", title="Hours in which silence counts")


@dataclass(frozen=True, slots=True)
class SilenceEvaluator:
    rule: SilenceRule

    def evaluate(self, ctx: EvalContext) -> list[Episode]:
        r = self.rule
        gaps = rule_queries.reading_gaps(ctx.conn, device_kind=r.device_kind,
                                         longer_than=r.longer_than, start=ctx.start, end=ctx.end)
        episodes = []
        for gap in gaps:
            subject = ctx.subjects.get(gap.subject_id)
            if subject is None or subject.kind != r.subject_type:
                continue
            until = gap.next_seen or ctx.end
            hours = ctx.hours(r.hours, subject)
            spans = [(gap.last_seen, until)] if hours is None else hours.spans(gap.last_seen, until)
            silent = sum(((e - s) for s, e in spans), start=until - until)
            if spans and silent > r.longer_than:
                episodes.append(Episode(r.id, gap.subject_id, spans[0][0], spans[-1][1],
                                        (gap.device_id,), summary={
                    "last_seen": gap.last_seen.isoformat(),
                    "next_seen": gap.next_seen.isoformat() if gap.next_seen else None,
                    "silent_minutes_in_hours": round(silent.total_seconds() / 60, 1)}))
        return sorted(episodes, key=lambda e: e.key)


def compile_rule(rule: SilenceRule) -> SilenceEvaluator:
    return SilenceEvaluator(rule)
