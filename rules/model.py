"""What every rule has, what evaluation yields, and the context an evaluator runs in.

A rule file is YAML parsed into pydantic models (one per kind, told apart by `kind`);
each kind module also compiles its model once into an `Evaluator`, which turns the data
of an evaluation range into `Episode`s: a subject breaking the rule from `start` to `end`.
Episodes are what cases are made of; they are pure results of the data, so the same
data always yields the same episodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, Protocol
from zoneinfo import ZoneInfo

import psycopg
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from domain.records import Device, Subject
from domain.sensors import READING_FIELDS, SENSOR_KINDS
from rules.timeutil import DailyHours, parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Limit = float | dict[str, float]
SubjectType = Literal["merchant", "site", "permit", "area"]
Judges = Literal["measurements", "availability", "frames", "rules"]
# The device kinds that publish readings, as declared in domain/sensors.py.
SensorKindName = Literal[tuple(SENSOR_KINDS)]  # type: ignore[valid-type]


class EvidenceRecipe(BaseModel):
    """What a case of this rule carries as evidence."""

    model_config = ConfigDict(extra="forbid")

    series: list[str] = Field(
        default_factory=list, title="Reading fields to snapshot",
        description="Columns of `readings` (e.g. fume_mg_m3, fan_on) snapshotted for the "
        "episode of each device involved, hashed, and attached to the case.")
    pad: Duration = Field(timedelta(minutes=10), title="Series padding",
                          description="Context before and after the episode in the snapshot.")
    frames: bool = Field(
        False, title="Attach camera / drone frames",
        description="Attach frames whose detections are at the subject during the episode "
        "(fused evidence), besides the frames the rule itself matched.")
    visual: bool = Field(
        False, title="Visual rule",
        description="A visual rule needs at least one frame fit as evidence before its case "
        "is ready for review.")


class DispatchAction(BaseModel):
    """Send a drone when a case of this rule opens: a point inspection of the subject."""

    model_config = ConfigDict(extra="forbid")

    approval: Literal["auto", "operator"] = Field(
        "operator", title="Who lets the drone fly",
        description="`auto`: the dispatcher flies the sortie as soon as it is planned and "
        "checked; `operator`: it waits for `citywatch flights approve SORTIE`.")
    pattern: Literal["orbit", "hover"] | None = Field(
        None, title="Inspection pattern (default flights.inspection_pattern)")
    alt_m: float | None = Field(None, gt=0, le=120, title="Altitude above ground (m)")


class RuleBase(BaseModel):
    """Fields every rule kind has."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", title="Rule id",
                    description="From the shared vocabulary, e.g. fume.exceedance.")
    version: int = Field(1, ge=1, title="Rule version (cited by every case)")
    title: str = Field(title="What the rule finds, for officers")
    subject_type: SubjectType = Field(title="Kind of subject a case is opened against")
    case_kind: Literal["violation", "warning", "fault", "safety"] = Field(
        "violation", title="Case kind", description="Only violations count for credit codes.")
    severity: Literal["info", "general", "serious"] = Field("general", title="Severity")
    legal_basis: str = Field("", title="Legal basis cited by the case (docs/domain.md)")
    enabled: bool = Field(True, title="Evaluate this rule")
    emit: bool = Field(True, title="Open cases",
                       description="False: only feeds composite rules.")
    evidence: EvidenceRecipe = Field(default_factory=EvidenceRecipe, title="Evidence recipe")
    dispatch: DispatchAction | None = Field(
        None, title="Send a drone when a case opens",
        description="A sortie is requested for each new case; its frames join the case.")

    # What a kind of rule judges, which the engine asks instead of listing kinds:
    # "measurements": values a device measured (its certification at the time matters, and
    #   its violations host fused cases); "availability": whether data came at all;
    # "frames": detections in camera / drone frames (fused into a sensor case at the same
    #   subject and time); "rules": other rules' episodes.
    judges: ClassVar[Judges]

    def limits(self) -> dict[str, Limit]:
        """Profile-dependent numbers of this rule, by field name (checked at load)."""
        return {}

    def problems(self, check: RuleCheck) -> list[tuple[str, str]]:
        """What is wrong with this rule beyond its schema, as (YAML path, problem) pairs;
        a kind adds its own checks by extending this."""
        out = []
        for name, value in self.limits().items():
            try:
                resolve_limit(value, check.profile)
            except KeyError as exc:
                out.append((name, exc.args[0]))
        for j, name in enumerate(self.evidence.series):
            if name not in READING_FIELDS:
                out.append((f"evidence.series[{j}]", f"unknown reading field {name!r}"))
        return out

    def references(self) -> list[tuple[str, str]]:
        """Other rules this one is made of, as (rule id, YAML path); evaluated first."""
        return []


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """What a rule is checked against when a rule set loads."""

    profile: str
    classes: list[str] | None  # detection classes that exist (None: not known here)


@dataclass(frozen=True, slots=True)
class FrameRef:
    """A frame that shows the violation, by the hash that names its evidence file."""

    sha256: str
    ts: datetime
    source_id: str
    fit_as_evidence: bool | None
    class_name: str = ""
    confidence: float = 0.0


@dataclass(frozen=True, slots=True)
class Episode:
    """One subject breaking one rule from `start` to `end` (event time)."""

    rule_id: str
    subject_id: str
    start: datetime
    end: datetime
    devices: tuple[str, ...] = ()
    frames: tuple[FrameRef, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, datetime]:
        return self.rule_id, self.subject_id, self.start


@dataclass(slots=True)
class EvalContext:
    """The data an evaluator may use: one connection, one range, the registry."""

    conn: psycopg.Connection
    start: datetime  # inclusive, event time
    end: datetime  # exclusive
    tz: ZoneInfo
    profile: str
    subjects: dict[str, Subject]
    devices: dict[str, Device]
    episodes: dict[str, list[Episode]] = field(default_factory=dict)  # by rule id, so far
    live: bool = False  # more data may come: judge only windows that have closed

    def hours(self, spec: str | list[str], subject: Subject) -> DailyHours | None:
        """The rule's time windows for this subject; None means at any time."""
        if isinstance(spec, list):
            return DailyHours.parse(spec, self.tz)
        if spec == "always":
            return None
        texts = subject.props.get("business_hours" if spec == "business" else "hours")
        return DailyHours.parse(texts, self.tz) if texts else None

    def subject_of_device(self, device_id: str) -> Subject | None:
        d = self.devices.get(device_id)
        return self.subjects.get(d.subject_id) if d and d.subject_id else None


class Evaluator(Protocol):
    """A compiled rule."""

    rule: RuleBase

    def evaluate(self, ctx: EvalContext) -> list[Episode]:
        """Every episode of this rule whose data lies in the context's range."""
        ...


def resolve_limit(value: Limit, profile: str) -> float:
    """The number of a limit for the active profile (a plain number serves every profile)."""
    if isinstance(value, dict):
        if profile not in value:
            raise KeyError(f"no value for profile {profile!r} (has {sorted(value)})")
        return float(value[profile])
    return float(value)
