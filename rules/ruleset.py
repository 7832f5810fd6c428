"""Load the rule YAML files, check them, and compile them once into evaluators.

Every problem is reported with its file and YAML path, e.g.
`configs/rules/fume.yaml: rules[2].window: expected a duration ...`, all at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rules.kinds import KINDS
from rules.model import Evaluator, RuleBase, RuleCheck

AnyRule = Annotated[Union[tuple(k.model for k in KINDS.values())],  # noqa: UP007
                    Field(discriminator="kind")]


class RuleFile(BaseModel):
    """One YAML file of rules."""

    model_config = ConfigDict(extra="forbid")

    rules: list[AnyRule] = Field(default_factory=list, title="Rules")


class RuleSetError(Exception):
    """Rule files that cannot be used; `problems` has one line per error with file and path."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def _path(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    # a discriminated union puts the kind's tag after the list index; readers do not write it
    if len(parts) > 2 and parts[0] == "rules" and isinstance(parts[1], int) and parts[2] in KINDS:
        del parts[2]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The checked rules, in evaluation order (parts of composites first)."""

    rules: tuple[RuleBase, ...]
    evaluators: tuple[Evaluator, ...]
    sources: dict[str, str]  # rule id -> "file: rules[i]"
    profile: str

    def rule(self, rule_id: str) -> RuleBase:
        return next(r for r in self.rules if r.id == rule_id)


def parse(documents: list[tuple[str, Any]], profile: str,
          classes: list[str] | None = None) -> RuleSet:
    """Check parsed YAML documents [(source name, data)] and compile their enabled rules.

    `classes`: the detection classes that exist; a rule naming another is an error."""
    problems: list[str] = []
    rules: list[RuleBase] = []
    sources: dict[str, str] = {}
    check = RuleCheck(profile, classes)
    for source, raw in documents:
        if raw is None:
            continue
        if not isinstance(raw, dict):
            problems.append(f"{source}: (top level): expected a mapping with `rules:`, "
                            f"but got {type(raw).__name__}")
            continue
        try:
            doc = RuleFile.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                problems.append(f"{source}: {_path(err['loc'])}: {msg}")
            continue
        for i, rule in enumerate(doc.rules):
            where = f"{source}: rules[{i}]"
            if rule.id in sources:
                problems.append(f"{where}.id: duplicate rule id {rule.id!r} "
                                f"(first in {sources[rule.id]})")
                continue
            problems += [f"{where}.{path}: {problem}"
                         for path, problem in rule.problems(check)]
            sources[rule.id] = where
            rules.append(rule)
    by_id = {r.id: r for r in rules}
    for r in rules:
        for ref, path in r.references():
            if ref not in by_id:
                problems.append(f"{sources[r.id]}.{path}: unknown rule id {ref!r}")
            elif not by_id[ref].enabled and r.enabled:
                problems.append(f"{sources[r.id]}.{path}: rule {ref!r} is disabled")
    if problems:
        raise RuleSetError(problems)
    ordered = _evaluation_order([r for r in rules if r.enabled], sources, problems)
    if problems:
        raise RuleSetError(problems)
    return RuleSet(tuple(ordered), tuple(KINDS[r.kind].compile(r) for r in ordered),
                   sources, profile)


def _evaluation_order(rules: list[RuleBase], sources: dict[str, str],
                      problems: list[str]) -> list[RuleBase]:
    by_id = {r.id: r for r in rules}
    done: dict[str, bool] = {}
    out: list[RuleBase] = []

    def visit(rule: RuleBase, stack: tuple[str, ...]) -> None:
        if done.get(rule.id):
            return
        if rule.id in stack:
            problems.append(f"{sources[rule.id]}.condition: composite rules refer to each "
                            f"other in a cycle: {' -> '.join(stack + (rule.id,))}")
            return
        for ref, _ in rule.references():
            if ref in by_id:
                visit(by_id[ref], stack + (rule.id,))
        done[rule.id] = True
        out.append(rule)

    for r in sorted(rules, key=lambda r: r.id):
        visit(r, ())
    return out


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load(directory: Path, profile: str, classes: list[str] | None = None) -> RuleSet:
    """Read every *.yaml under `directory` (sorted by name) into a checked RuleSet."""
    if not directory.is_dir():
        raise RuleSetError([f"{directory}: rule folder not found"])
    documents, problems = [], []
    for path in sorted(directory.glob("*.yaml")):
        name = _display(path)
        try:
            documents.append((name, yaml.safe_load(path.read_text(encoding="utf-8"))))
        except yaml.YAMLError as exc:
            problems.append(f"{name}: not valid YAML: {exc}")
    if problems:
        raise RuleSetError(problems)
    return parse(documents, profile, classes)
