"""Rule engine settings (the `rules:` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CreditPolicy(BaseModel):
    """Red / yellow / green codes from confirmed violations (docs/domain.md defaults)."""

    model_config = ConfigDict(extra="forbid")

    window_days: int = Field(90, ge=1, title="Rolling window of confirmed violations (days)")
    yellow_at: int = Field(2, ge=1, title="Confirmed general violations in the window for yellow")
    red_at: int = Field(3, ge=1, title="Confirmed violations in the window for red")
    red_on_serious: bool = Field(True, title="One confirmed serious violation makes the code red")
    yellow_on_unrectified: bool = Field(
        True, title="One confirmed violation not yet rectified makes the code yellow")
    rectify_deadline_days: int = Field(
        15, ge=1, title="Days after notification before an unrectified case counts as refusal "
        "(refusal makes the code red)")
    repair_yellow_days: int = Field(
        90, ge=1, title="Clean days (all cases rectified) before yellow goes back to green")
    repair_red_days: int = Field(
        365, ge=1, title="Clean days (all cases rectified) before red goes back to yellow")


class RulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, title="Run the rule engine in `citywatch run`")
    directory: str = Field("configs/rules", title="Folder of rule YAML files")
    profile: str = Field(
        "standard",
        title="Limit profile",
        description="`standard` (GB 18483-2001, 2.0 mg/m³) or `strict` (DB11/1488-2018, 1.0 mg/m³).",
    )
    interval_s: float = Field(30.0, gt=0, title="Seconds between evaluations in `citywatch run`")
    allowed_lateness: str = Field(
        "2 hours", title="How late data may arrive and still reopen a window"
    )
    timezone: str = Field("Asia/Shanghai", title="Time zone of business hours and days")
    fusion_margin: str = Field(
        "30 minutes", title="Fusion margin",
        description="Camera or drone evidence of a subject this close to a sensor case's "
        "episode is fused into that case.")
    max_frames_per_case: int = Field(
        8, ge=1, title="Frames attached to one case at most (the best fit ones first)")
    suppress_uncertified: bool = Field(
        True, title="Open no case on readings of an uncertified device",
        description="Readings from a monitor whose certification or calibration had lapsed "
        "at the event time cannot be evidence (docs/domain.md: suppress), so a sensor episode of "
        "such a device opens no case. False: the case opens and its evidence gate lists the "
        "lapse.")
    work_mem: str | None = Field(
        "64MB", title="PostgreSQL work_mem of the engine's session",
        description="Memory for the window aggregates and orderings of one evaluation; a "
        "day of 1,589 monitors spills to disk under PostgreSQL's 4 MB default. Empty: the "
        "server's setting.")
    credit: CreditPolicy = Field(default_factory=CreditPolicy, title="Credit codes")
