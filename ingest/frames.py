"""Frame envelopes from cone cameras and drones -> evidence file + frames queue row.

`decode_frame` is pure (no broker, no database, no disk): it checks the envelope, the
header (event time; for drones the full pose), that the image is a JPEG within the byte,
pixel and shape limits (read from its header, before any pixel is allocated) that decodes
strictly, and measures its evidence quality. Anything wrong raises `Rejected` with a
reason code, so the collector dead-letters the raw message. `write_frames` then queues each
row and stores its image in the content-addressed evidence store before the collector
commits, so a committed row always has its file and a refused row leaves none.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import simplejpeg

from detectors.config import DetectorConfig
from detectors.quality import measure
from ingest import envelope
from ingest.batch_types import Accepted, WriteOutcome
from ingest.config import IngestConfig
from ingest.decode import Message, number, text, timestamp
from ingest.errors import Rejected
from storage import frames as frames_repo
from storage.evidence import EvidenceStore, sha256_of
from storage.frames import Frame, Pose

if TYPE_CHECKING:
    from ingest.config import IngestSetup

POSE_FIELDS = ("lat", "lon", "alt_m", "heading_deg", "gimbal_pitch_deg", "hfov_deg")
log = logging.getLogger(__name__)

SOURCE_OF_KIND = {"drone_frame": "drone", "cone_frame": "cone"}


@dataclass(frozen=True, slots=True)
class FrameIn:
    """A validated frame, its JPEG bytes and the evidence store they go to."""

    frame: Frame
    image: bytes
    evidence_dir: Path


def pose_from(header: dict, cfg: DetectorConfig) -> Pose:
    """The drone pose of a frame header, within the intake limits; Rejected if not."""
    missing = [f for f in POSE_FIELDS if header.get(f) is None]
    if missing:
        raise Rejected("missing_pose", f"drone frame header lacks {', '.join(missing)}")
    limits = cfg.intake
    return Pose(
        lat=number(header, "lat", low=-90, high=90),
        lon=number(header, "lon", low=-180, high=180),
        alt_m=number(header, "alt_m", low=0, high=limits.max_alt_m),
        heading_deg=number(header, "heading_deg", low=0, high=360),
        gimbal_pitch_deg=number(header, "gimbal_pitch_deg", low=-90, high=90),
        hfov_deg=number(header, "hfov_deg", low=1, high=limits.max_hfov_deg),
    )


def _image(data: bytes, ingest_cfg: IngestConfig, cfg: DetectorConfig) -> np.ndarray:
    if len(data) > ingest_cfg.max_frame_bytes:
        raise Rejected("image_too_large",
                       f"image of {len(data)} bytes, the limit is {ingest_cfg.max_frame_bytes}")
    if not data.startswith(b"\xff\xd8\xff"):
        raise Rejected("not_jpeg", f"image starts with {data[:4].hex() or 'nothing'}, "
                                   "not the JPEG marker ffd8ff")
    try:
        # The header only: no pixel is allocated before the size checks below.
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise Rejected("not_jpeg", f"JPEG header unreadable: {exc}") from None
    if width * height > cfg.intake.max_pixels:
        raise Rejected("too_many_pixels", f"{width}x{height} = {width * height} pixels, the "
                                          f"limit is {cfg.intake.max_pixels}")
    short, long = sorted((width, height))
    if short < ingest_cfg.min_frame_side_px or long > short * ingest_cfg.max_frame_aspect:
        raise Rejected("bad_dimensions",
                       f"{width}x{height}: sides of at least {ingest_cfg.min_frame_side_px} px "
                       f"and an aspect of at most {ingest_cfg.max_frame_aspect:g}:1 are accepted")
    # Grey is all the quality measures need; the decode still reads every block of the file,
    # strictly: libjpeg's "corrupt data" warnings (a damaged or truncated entropy stream,
    # which other decoders paper over with grey blocks) refuse the frame. Memory is bounded
    # by the pixel limit checked above.
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True)
    except ValueError as exc:
        raise Rejected("not_jpeg", f"JPEG data does not decode cleanly: {exc}") from None
    if pixels.shape[:2] != (height, width):
        raise Rejected("not_jpeg", f"JPEG decodes to {pixels.shape[1]}x{pixels.shape[0]}, its "
                                   f"header says {width}x{height}")
    return pixels[:, :, 0] if pixels.ndim == 3 else pixels


def decode_frame(msg: Message, config: IngestSetup) -> FrameIn:
    """Validate a frame envelope from a cone camera or drone; raise Rejected if unusable."""
    ingest_cfg, cfg = config.ingest, config.detectors
    source_kind = SOURCE_OF_KIND.get(msg.address.kind)
    if source_kind is None:
        raise Rejected("unsupported", f"{msg.address.kind!r} is not a frame topic")
    env = envelope.decode(msg.payload)
    header = env.header
    ts = timestamp(header, msg.received_at, ingest_cfg)
    pose = pose_from(header, cfg) if source_kind == "drone" else None
    mission_id = text(header, "mission_id", required=False)
    pixels = _image(env.image, ingest_cfg, cfg)
    frame = frame_record(env.image, pixels, ts=ts, received_at=msg.received_at,
                         source_kind=source_kind, device_id=msg.address.device_id, pose=pose,
                         mission_id=mission_id, header=header, cfg=cfg)
    return FrameIn(frame, env.image, config.evidence_dir)


def frame_record(image: bytes, pixels: np.ndarray, *, ts: datetime, received_at: datetime,
                 source_kind: str, device_id: str, pose: Pose | None, mission_id: str | None,
                 header: dict, cfg: DetectorConfig) -> Frame:
    """The frames-queue row of a JPEG whose pixels are at hand, with its evidence quality
    measured: one way to make a frame, for live envelopes and recorded footage alike."""
    quality = measure(pixels, cfg.quality)
    return Frame(
        sha256=sha256_of(image), ts=ts, received_at=received_at, source_kind=source_kind,
        source_id=device_id, width=quality.width, height=quality.height, bytes=len(image),
        pose=pose, mission_id=mission_id, header=header, sharpness=quality.sharpness,
        brightness=quality.brightness, clipped=quality.clipped, fit_as_evidence=quality.fit,
        unfit_reason=quality.reason)


def write_frames(conn, items: Sequence[Accepted]) -> WriteOutcome:
    """The frame route's writer: per frame, its queue row (uncommitted), then its evidence
    file, so a row the database refuses leaves no file behind.

    Each frame has a savepoint: an evidence store that cannot write (disk full, directory
    gone or not a directory) takes back that frame's row and refuses the frame as
    `evidence_unwritable`, so the collector dead-letters the whole message, image included.
    The caller commits after this returns, so a committed row always has its file; a crash
    between file and commit leaves a file without a row, which the redelivered message
    completes. A frame already queued (same image, same event time) counts as a duplicate
    (its file is still written, which repairs a damaged or missing copy).
    """
    stored = duplicates = 0
    refused = []
    for i, accepted in enumerate(items):
        f: FrameIn = accepted.record
        try:
            with conn.transaction():
                (new,) = frames_repo.insert_frames(conn, [f.frame])
                try:
                    EvidenceStore(f.evidence_dir).put(f.image)
                except OSError as exc:
                    raise _Unwritable(exc) from exc
        except _Unwritable as exc:
            log.error("evidence store %s cannot take frame %s: %s", f.evidence_dir,
                      f.frame.sha256, exc.__cause__)
            refused.append((i, Rejected("evidence_unwritable",
                                        f"{type(exc.__cause__).__name__}: {exc.__cause__}")))
            continue
        stored += new
        duplicates += not new
    return WriteOutcome(stored, duplicates, tuple(refused))


class _Unwritable(Exception):
    """An evidence file could not be written (rolls back its frame's savepoint)."""
