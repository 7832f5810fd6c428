"""Rule engine settings (the `rules:` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
