"""The registry of rule kinds: `kind` name -> (pydantic model, compile function).

Adding a kind is one module with a model (a `kind: Literal[...]` field, the `judges`
class attribute, any checks of its own in `problems()`) and a
`compile_rule(model) -> Evaluator`, plus one line here; the engine and the rule set ask
the kind, they keep no lists of kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rules.kinds import composite, detection, permit, silence, state, threshold
from rules.model import Evaluator, RuleBase


@dataclass(frozen=True, slots=True)
class Kind:
    model: type[RuleBase]
    compile: Callable[[RuleBase], Evaluator]


KINDS: dict[str, Kind] = {
    "threshold": Kind(threshold.ThresholdRule, threshold.compile_rule),
    "state": Kind(state.StateRule, state.compile_rule),
    "silence": Kind(silence.SilenceRule, silence.compile_rule),
    "detection": Kind(detection.DetectionRule, detection.compile_rule),
    "permit": Kind(permit.PermitRule, permit.compile_rule),
    "composite": Kind(composite.CompositeRule, composite.compile_rule),
}
