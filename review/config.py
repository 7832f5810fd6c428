"""Review app settings (the `web:` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class WebConfig(BaseModel):
    """The officers' review app and the district cockpit."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", title="Address `citywatch serve` listens on")
    port: int = Field(8080, ge=1, le=65535, title="Port `citywatch serve` listens on")
    session_hours: float = Field(
        10.0, gt=0, title="Session lifetime (hours)",
        description="A signed-in session ends this long after sign-in (one shift).")
    secure_cookies: bool = Field(
        True, title="Cookies only over HTTPS",
        description="Set the Secure flag on the session cookie. Turn off only for a plain-"
        "HTTP test on the local machine.")
    login_max_failures: int = Field(
        5, ge=1, title="Failed sign-ins before a pause",
        description="Failed sign-ins for one user name, or from one address, within "
        "`login_window_s` after which sign-in is refused until the window has passed.")
    login_window_s: int = Field(900, ge=1, title="Window of counted failed sign-ins (seconds)")
    upload_max_bytes: int = Field(
        8_000_000, ge=1000, title="Largest upload (bytes)",
        description="A party's rectification photo or an officer's field photo; larger "
        "files are refused with a message.")
    party_link_days: int = Field(
        30, ge=1, title="Days a party's link stays valid",
        description="After this the link opens nothing; the officer can issue a new one.")
    respond_days: int = Field(
        5, ge=0, title="Days the party has to answer (陈述申辩)",
        description="A penalty cannot be decided before this many days after notification "
        "unless the party has answered.")
    respond_days_by_rule: dict[str, int] = Field(
        default_factory=dict, title="Days to answer, per rule id",
        description="Overrides `respond_days` for the rules named, e.g. "
        "{fume.exceedance: 3}.")
    silent_after_s: int = Field(
        3600, ge=60, title="A sensor with no reading for this long counts as silent")
    page_size: int = Field(50, ge=5, le=500, title="Cases per queue page")

    def respond_days_for(self, rule_id: str) -> int:
        return self.respond_days_by_rule.get(rule_id, self.respond_days)
