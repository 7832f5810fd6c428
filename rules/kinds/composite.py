"""Composite rules: episodes of other rules combined per subject with all / any / not.

`all` keeps the times when every part has an episode at the subject, `any` the times
when at least one has, and `not` removes from its first part the times of its second.
Parts are rule ids (evaluated before the composite, whether or not they open cases
themselves) or nested conditions. A time span shorter than `min_overlap` is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from rules.model import Duration, Episode, EvalContext, Judges, RuleBase

Spans = list[tuple[datetime, datetime]]


class AllOf(BaseModel):
    model_config = ConfigDict(extra="forbid")
    all: list[Condition] = Field(min_length=1, title="Every part holds")


class AnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid")
    any: list[Condition] = Field(min_length=1, title="At least one part holds")


class NotOf(BaseModel):
    model_config = ConfigDict(extra="forbid")
    not_: list[Condition] = Field(alias="not", min_length=2, max_length=2,
                                  title="The first part without the times of the second",
                                  description="[kept, removed]")


Condition = Union[str, AllOf, AnyOf, NotOf]  # noqa: UP007 (a forward-referenced union)
AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


class CompositeRule(RuleBase):
    judges: ClassVar[Judges] = "rules"
    kind: Literal["composite"] = Field("composite", title="Rule kind")
    condition: Condition = Field(title="all / any / not of rule ids")
    min_overlap: Duration = Field(timedelta(0), title="Shortest combined span that is an episode")

    def references(self) -> list[tuple[str, str]]:
        return referenced(self.condition)


def referenced(cond: Condition, path: str = "condition") -> list[tuple[str, str]]:
    """Every rule id a condition names, with its YAML path (for load-time checks)."""
    if isinstance(cond, str):
        return [(cond, path)]
    key, parts = (("all", cond.all) if isinstance(cond, AllOf) else
                  ("any", cond.any) if isinstance(cond, AnyOf) else ("not", cond.not_))
    return [ref for i, p in enumerate(parts) for ref in referenced(p, f"{path}.{key}[{i}]")]


def _union(spans: Spans) -> Spans:
    out: Spans = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _intersect(a: Spans, b: Spans) -> Spans:
    out = [(max(s1, s2), min(e1, e2)) for s1, e1 in a for s2, e2 in b]
    return _union([(s, e) for s, e in out if s <= e])


def _subtract(a: Spans, b: Spans) -> Spans:
    out: Spans = []
    for s, e in a:
        pieces = [(s, e)]
        for bs, be in b:
            nxt = []
            for ps, pe in pieces:
                if be <= ps or bs >= pe:
                    nxt.append((ps, pe))
                    continue
                if bs > ps:
                    nxt.append((ps, bs))
                if be < pe:
                    nxt.append((be, pe))
            pieces = nxt
        out += pieces
    return _union(out)


@dataclass(frozen=True, slots=True)
class CompositeEvaluator:
    rule: CompositeRule

    def _spans(self, cond: Condition, subject_id: str, ctx: EvalContext) -> Spans:
        if isinstance(cond, str):
            return _union([(e.start, e.end) for e in ctx.episodes.get(cond, [])
                           if e.subject_id == subject_id])
        if isinstance(cond, AllOf):
            spans = self._spans(cond.all[0], subject_id, ctx)
            for part in cond.all[1:]:
                spans = _intersect(spans, self._spans(part, subject_id, ctx))
            return spans
        if isinstance(cond, AnyOf):
            return _union([s for part in cond.any for s in self._spans(part, subject_id, ctx)])
        return _subtract(self._spans(cond.not_[0], subject_id, ctx),
                         self._spans(cond.not_[1], subject_id, ctx))

    def evaluate(self, ctx: EvalContext) -> list[Episode]:
        ids = {rid for rid, _ in referenced(self.rule.condition)}
        parts = [e for rid in sorted(ids) for e in ctx.episodes.get(rid, [])]
        subjects = sorted({e.subject_id for e in parts})
        episodes = []
        for subject_id in subjects:
            subject = ctx.subjects.get(subject_id)
            if subject is None or subject.kind != self.rule.subject_type:
                continue
            for s, e in self._spans(self.rule.condition, subject_id, ctx):
                if e - s < self.rule.min_overlap:
                    continue
                inside = [p for p in parts if p.subject_id == subject_id
                          and p.start <= e and p.end >= s]
                episodes.append(Episode(
                    self.rule.id, subject_id, s, e,
                    tuple(sorted({d for p in inside for d in p.devices})),
                    tuple(sorted({f for p in inside for f in p.frames},
                                 key=lambda f: (f.ts, f.sha256))),
                    {"parts": sorted({p.rule_id for p in inside})}))
        return episodes


def compile_rule(rule: CompositeRule) -> CompositeEvaluator:
    return CompositeEvaluator(rule)
