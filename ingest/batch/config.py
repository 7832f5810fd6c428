"""Batch-run settings (the `batch:` section): sampling, camera defaults, the drop folder."""

from __future__ import annotations

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator


class BatchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample_fps: float = Field(
        1.0, gt=0, le=60, title="Frames sampled per second of footage",
        description="One a second judges a street at drone speed with overlap to spare; "
        "decoding costs little for the frames in between (see docs/batch.md).")
    chunk_s: float = Field(
        60.0, gt=0, title="Footage per chunk (s)",
        description="Workers claim a source's samples in chunks of this much footage; a "
        "chunk is the unit that is resumed after a crash and that workers share.")
    jpeg_quality: int = Field(92, ge=50, le=100, title="JPEG quality of sampled frames")
    timezone: str = Field(
        "Asia/Shanghai", title="Time zone of device clocks",
        description="DJI SRT files and EXIF write local wall-clock time without a zone.")
    hfov_deg: float = Field(
        84.0, gt=1, lt=170, title="Drone camera horizontal field of view (deg)",
        description="For video, whose SRT does not carry it; photos take it from EXIF "
        "FocalLengthIn35mmFilm when present.")
    gimbal_pitch_deg: float = Field(
        -90.0, ge=-90, lt=0, title="Gimbal pitch when the telemetry has none (deg)")
    heading_deg: float | None = Field(
        None, ge=0, lt=360, title="Heading when the telemetry has none (deg)",
        description="Empty: the direction of travel from the track (a drone flying forward).")
    decode_threads: int = Field(0, ge=0, title="Decoder threads (0: FFmpeg chooses)")
    stale_after_s: float = Field(
        300.0, gt=0, title="A chunk claim older than this (s) belongs to a dead worker",
        description="A claimer beats its chunk's clock with every frame it queues; claims of "
        "processes found dead on the same host are handed back at once.")
    max_attempts: int = Field(3, ge=1, title="Tries before a chunk is marked failed")
    drop_dir: str = Field(
        "var/batch/drop", title="Drop folder",
        description="Footage copied here is picked up by the schedule: one sub-folder per "
        "device (`<drop>/<device_id>/DJI_0001.MP4` + `.SRT`, photos, camera recordings).")
    schedule: str = Field(
        "0 1 * * *", title="When the drop folder is swept (cron expression, local time)")
    in_service: bool = Field(
        False, title="Sweep the drop folder inside `citywatch run`",
        description="Otherwise run `citywatch batch schedule` (or a systemd timer calling "
        "`citywatch batch schedule --once`).")
    stable_s: float = Field(
        30.0, ge=0, title="A file is complete once its size has not changed for this long (s)")
    report_dir: str = Field(
        "var/batch/reports", title="Where morning reports are written (HTML and PDF)")
    report_font: str | None = Field(
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", title="CJK font of the PDF report",
        description="A TrueType font with Chinese glyphs (Debian: fonts-wqy-microhei). Without "
        "one the PDF leaves Chinese text out; the HTML report is complete either way.")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"not a cron expression: {value!r}")
        return value
