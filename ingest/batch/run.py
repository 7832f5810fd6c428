"""Batch runs: recorded files in, sampled frames into the one frames queue.

`register` takes a night's files: each is stored in the evidence store under the sha256 of
its bytes (its telemetry sidecar too), indexed (video: every frame's time and the
keyframes; photos: EXIF and XMP), and its sampled frame indices are split into chunks. A
file seen before adds nothing. `Sampler` then claims chunks (any number of samplers, in
any number of processes or machines sharing the database and evidence store) and, for
each sampled frame, decodes it from the stored original, encodes a JPEG, measures its
quality, gives it the pose interpolated from the telemetry and queues it exactly as a live
frame is queued, with its source sha256, frame index and media time beside it. The
detector workers, georeferencing, zones and rules take it from there.

A sampler killed mid-chunk leaves committed frames and a claim; the next one hands the
claim back (at once when the claimer's process is known dead on this host, else once it
is stale) and samples only the indices not recorded yet.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np

from detectors.config import DetectorConfig
from domain.vocabulary import DeviceKind
from ingest.batch import photos as photo_meta
from ingest.batch import srt as srt_mod
from ingest.batch import video as video_mod
from ingest.batch.config import BatchConfig
from ingest.errors import Rejected
from ingest.frames import frame_record, pose_from
from storage import batch as batch_repo
from storage import registry as registry_repo
from storage.batch import Chunk, SampledFrame, Source
from storage.db import Database
from storage.evidence import EvidenceStore

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".ts")
PHOTO_SUFFIXES = (".jpg", ".jpeg")
KIND_OF_DEVICE = {DeviceKind.DRONE: ("drone_video", "photo"),
                  DeviceKind.CONE_CAMERA: ("camera_video",)}
WRITE_GROUP = 4  # frames per queue transaction


class BatchError(ValueError):
    """A source that cannot be taken (unknown device, unreadable file, no telemetry)."""


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A file to process and what it is."""

    path: Path
    kind: str  # drone_video | camera_video | photo
    device_id: str
    start: datetime | None = None  # camera recordings: wall-clock time of the first frame


@dataclass(frozen=True, slots=True)
class Registered:
    spec: SourceSpec
    source: Source | None
    new: bool
    error: str | None = None


def claimer_id() -> str:
    """host:pid:tag, so a dead claimer on this host can be recognised."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _dead_on_this_host(owners: Iterable[str]) -> list[str]:
    host = socket.gethostname()
    dead = []
    for owner in owners:
        parts = owner.split(":")
        if len(parts) < 3 or parts[0] != host or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            dead.append(owner)
        except PermissionError:
            pass  # alive, someone else's
    return dead


def discover(paths: Sequence[str | Path], *, drone: str | None = None,
             camera: str | None = None, start: datetime | None = None,
             device_kinds: dict[str, str]) -> tuple[list[SourceSpec], list[tuple[Path, str]]]:
    """What each path holds: videos (with an SRT sidecar: drone video), photo folders.

    The device is `drone` / `camera` when given, else the name of the folder the file lies
    in (`<drop>/<device_id>/...`); it must be a registered device of the right kind.
    Returns the specs and, per path that cannot be taken, the path and why.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file()
                            and f.suffix.lower() in VIDEO_SUFFIXES + PHOTO_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            problems.append((p, "no such file or folder"))
    specs = []
    for f in files:
        device = drone or camera or f.parent.name
        kind_of_device = device_kinds.get(device)
        if kind_of_device is None:
            problems.append((f, f"device {device!r} is not in the registry (name it with "
                                "--drone / --camera, or drop the file in a folder named "
                                "after the device)"))
            continue
        suffix = f.suffix.lower()
        if suffix in PHOTO_SUFFIXES:
            kind = "photo"
        elif suffix in VIDEO_SUFFIXES:
            kind = "drone_video" if kind_of_device == DeviceKind.DRONE else "camera_video"
        else:
            problems.append((f, "not a video or JPEG photo"))
            continue
        if kind not in KIND_OF_DEVICE.get(kind_of_device, ()):
            problems.append((f, f"device {device} is a {kind_of_device}, which does not "
                                f"record {kind.replace('_', ' ')}s"))
            continue
        if kind == "drone_video" and sidecar(f) is None:
            problems.append((f, f"drone video without its SRT telemetry file "
                                f"({f.with_suffix('.SRT').name}); frames cannot be placed"))
            continue
        specs.append(SourceSpec(f, kind, device, start))
    return specs, problems


def sidecar(video: Path) -> Path | None:
    for suffix in (".SRT", ".srt"):
        candidate = video.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


class Library:
    """The stored originals: recorded files and sidecars in the evidence store, by hash."""

    def __init__(self, evidence_dir: Path):
        self.root = Path(evidence_dir) / "originals"

    def store(self, suffix: str) -> EvidenceStore:
        return EvidenceStore(self.root, suffix=suffix.lower())

    def put(self, path: Path) -> str:
        return self.store(path.suffix).put_file(path)

    def path(self, sha256: str, suffix: str) -> Path:
        return self.store(suffix).path(sha256)


def plan_chunks(indices: Sequence[int], per_chunk: int) -> list[list[int]]:
    per_chunk = max(1, per_chunk)
    return [list(indices[i:i + per_chunk]) for i in range(0, len(indices), per_chunk)]


def _local(ts: datetime, tz: ZoneInfo) -> datetime:
    return ts.replace(tzinfo=tz) if ts.tzinfo is None else ts


def register(db: Database, library: Library, run_id: int, specs: Sequence[SourceSpec],
             config: BatchConfig, *, sample_fps: float | None = None) -> list[Registered]:
    """Store, index and register each file (once); a file that cannot be read is recorded
    as a failed source with the reason, never dropped unseen."""
    fps = sample_fps or config.sample_fps
    tz = ZoneInfo(config.timezone)
    out = []
    for spec in specs:
        try:
            sha = library.put(spec.path)
        except OSError as exc:
            out.append(Registered(spec, None, False, f"cannot read {spec.path}: {exc}"))
            continue
        with db.connection() as conn:
            known = batch_repo.get_source(conn, sha)
            if known is not None:
                batch_repo.register_source(conn, run_id, known, [])
                out.append(Registered(spec, known, False))
                continue
        source, chunks, error = _index(spec, sha, library, config, fps, tz)
        with db.connection() as conn:
            new = batch_repo.register_source(conn, run_id, source, chunks)
        out.append(Registered(spec, source, new, error))
    return out


def _index(spec: SourceSpec, sha: str, library: Library, config: BatchConfig, fps: float,
           tz: ZoneInfo) -> tuple[Source, list[list[int]], str | None]:
    size = spec.path.stat().st_size
    problems: list[tuple[Path, str]] = []
    side_sha = None
    try:
        if spec.kind == "photo":
            meta = photo_meta.read_meta(spec.path.read_bytes())
            start = _local(meta.ts, tz) if meta.ts else None
            return (Source(sha, str(spec.path), "photo", spec.device_id, size, None, start, 0.0,
                           1, None, None, 1, []), [[0]], None)
        index = video_mod.probe(library.path(sha, spec.path.suffix))
        if index.damage:
            problems.append(f"damaged: {index.damage}; processed up to media time "
                            f"{index.duration_s:.1f} s")
        if spec.kind == "drone_video":
            side = sidecar(spec.path)
            side_sha = library.put(side)
            track = srt_mod.read(side)
            problems += [f"{side.name} {p}" for p in track.problems]
            first = track.cues[0]
            start = _local(first.ts, tz) - timedelta(seconds=first.start_s) if first.ts else (
                index.creation_time)
        else:
            start = spec.start or index.creation_time
            if start is None:
                raise BatchError("camera recording without a start time (give --start, or a "
                                 "file whose creation_time is set)")
        samples = index.sample(fps)
        per_chunk = max(1, round(config.chunk_s * fps))
        return (Source(sha, str(spec.path), spec.kind, spec.device_id, size, side_sha,
                       start, index.duration_s, index.frames, index.fps, fps, len(samples),
                       problems), plan_chunks(samples, per_chunk), None)
    except (video_mod.VideoError, srt_mod.SrtError, photo_meta.PhotoError, BatchError,
            OSError) as exc:
        problems.append(str(exc))
        return (Source(sha, str(spec.path), spec.kind, spec.device_id, size, side_sha, None,
                       0.0, 0, None, fps, 0, problems), [], str(exc))


@dataclass(frozen=True, slots=True)
class ChunkResult:
    chunk: Chunk
    sampled: int
    new: int
    undecodable: int
    decode_s: float
    error: str | None


class Sampler:
    """Claims chunks and queues their sampled frames; run several for parallel decoding."""

    def __init__(self, db: Database, evidence: EvidenceStore, library: Library,
                 config: BatchConfig, detectors: DetectorConfig, *, run_id: int | None = None,
                 name: str | None = None):
        self.db, self.evidence, self.library = db, evidence, library
        self.config, self.detectors, self.run_id = config, detectors, run_id
        self.name = name or claimer_id()
        self.tz = ZoneInfo(config.timezone)
        self._tracks: dict[str, srt_mod.SrtTrack] = {}
        self._indexes: dict[str, video_mod.VideoIndex] = {}

    def hand_back_dead(self) -> int:
        """Hand back chunk claims of dead claimers (same host: at once; else once stale)."""
        with self.db.connection() as conn:
            dead = _dead_on_this_host(batch_repo.claims(conn))
            n = batch_repo.hand_back(conn, owners=dead, stale_after_s=self.config.stale_after_s,
                                     max_attempts=self.config.max_attempts)
        if n:
            log.warning("%s: handed back %d chunk claims of dead samplers", self.name, n)
        return n

    def run(self, stop: threading.Event, on_chunk: Callable[[ChunkResult], None] | None = None,
            ) -> int:
        """Process chunks until none is left to claim (or `stop`); return chunks done."""
        done = 0
        self.hand_back_dead()
        while not stop.is_set():
            with self.db.connection() as conn:
                chunk = batch_repo.claim_chunk(conn, self.name, self.run_id)
            if chunk is None:
                return done
            result = self.process(chunk, stop)
            done += 1
            if on_chunk:
                on_chunk(result)
        return done

    def process(self, chunk: Chunk, stop: threading.Event | None = None) -> ChunkResult:
        """Sample one claimed chunk into the frames queue; the chunk ends done (or failed
        when the file cannot be read at all)."""
        with self.db.connection() as conn:
            recorded = batch_repo.recorded_indices(conn, chunk.source.sha256)
        todo = [i for i in chunk.sample_indices if i not in recorded]
        sampled = new = undecodable = 0
        errors: list[str] = []
        t0 = time.monotonic()
        try:
            group: list[SampledFrame] = []
            for item in self._frames(chunk, todo):
                if stop is not None and stop.is_set():
                    break
                if isinstance(item, str):
                    undecodable += 1
                    errors.append(item)
                    continue
                group.append(item)
                if len(group) >= WRITE_GROUP:
                    new += self._write(chunk, group)
                    sampled += len(group)
                    group = []
            if group:
                new += self._write(chunk, group)
                sampled += len(group)
        except (OSError, video_mod.VideoError, srt_mod.SrtError, photo_meta.PhotoError) as exc:
            with self.db.connection() as conn:
                batch_repo.fail_chunk(conn, chunk, f"{type(exc).__name__}: {exc}")
            return ChunkResult(chunk, sampled, new, undecodable, time.monotonic() - t0, str(exc))
        decode_s = time.monotonic() - t0
        error = None
        if errors:
            error = f"{len(errors)} frames not decodable: " + "; ".join(sorted(set(errors))[:3])
        if stop is None or not stop.is_set():
            with self.db.connection() as conn:
                batch_repo.finish_chunk(conn, chunk, sampled=len(recorded & set(chunk.sample_indices)) + sampled,
                                        undecodable=undecodable, decode_s=decode_s, error=error)
        return ChunkResult(chunk, sampled, new, undecodable, decode_s, error)

    def _write(self, chunk: Chunk, group: list[SampledFrame]) -> int:
        with self.db.connection() as conn:
            return batch_repo.record_frames(conn, chunk, group)

    # -- turning decoded pixels into queued frames -------------------------------------

    def _frames(self, chunk: Chunk, todo: list[int]) -> Iterator[SampledFrame | str]:
        source = chunk.source
        if not todo:
            return
        if source.kind == "photo":
            yield self._photo(source)
            return
        suffix = Path(source.path).suffix
        path = self.library.path(source.sha256, suffix)
        index = self._indexes.get(source.sha256)
        if index is None:
            index = self._indexes[source.sha256] = video_mod.probe(path)
        track = self._track(source) if source.kind == "drone_video" else None
        # Decoding runs in its own thread, one frame ahead of encoding and queueing.
        decoded: queue.Queue = queue.Queue(maxsize=4)
        done = object()

        def produce() -> None:
            try:
                for d in video_mod.decode(path, index, todo, threads=self.config.decode_threads):
                    decoded.put(d)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                decoded.put(exc)
            finally:
                decoded.put(done)

        thread = threading.Thread(target=produce, name=f"decode-{source.sha256[:8]}", daemon=True)
        thread.start()
        while (d := decoded.get()) is not done:
            if isinstance(d, BaseException):
                raise d
            if d.image is None:
                yield f"frame {d.index} ({d.media_s:.1f} s): {d.error}"
                continue
            try:
                yield self._video_frame(source, track, d)
            except Rejected as exc:
                yield f"frame {d.index} ({d.media_s:.1f} s): {exc.reason}: {exc.detail}"
        thread.join()

    def _track(self, source: Source) -> srt_mod.SrtTrack:
        track = self._tracks.get(source.sha256)
        if track is None:
            side = self.library.path(source.sidecar_sha256, ".srt")
            track = self._tracks[source.sha256] = srt_mod.read(side)
        return track

    def _header(self, source: Source, frame_index: int, media_s: float) -> dict:
        return {"batch": {"source_sha256": source.sha256, "frame_index": frame_index,
                          "media_time_s": round(media_s, 6), "file": Path(source.path).name}}

    def _video_frame(self, source: Source, track: srt_mod.SrtTrack | None,
                     d: video_mod.Decoded) -> SampledFrame:
        ok, buf = cv2.imencode(".jpg", d.image, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        if not ok:
            raise OSError("JPEG encoding failed")
        jpeg = buf.tobytes()
        header = self._header(source, d.index, d.media_s)
        pose = None
        if track is not None:
            at = track.pose_at(d.media_s)
            ts = _local(at.ts, self.tz) if at.ts else source.media_start + timedelta(seconds=d.media_s)
            heading = at.gimbal_yaw_deg
            if heading is None:
                heading = self.config.heading_deg if self.config.heading_deg is not None else at.track_deg
            if heading is None:
                raise Rejected("missing_pose", "no heading: the SRT has no gimbal yaw, none is "
                                               "configured and the drone did not move")
            header.update(lat=at.lat, lon=at.lon, alt_m=at.rel_alt_m, heading_deg=heading % 360,
                          gimbal_pitch_deg=(at.gimbal_pitch_deg if at.gimbal_pitch_deg is not None
                                            else self.config.gimbal_pitch_deg),
                          hfov_deg=self.config.hfov_deg)
            pose = pose_from(header, self.detectors)
        else:
            ts = source.media_start + timedelta(seconds=d.media_s)
        header["ts"] = ts.isoformat()
        frame = frame_record(jpeg, d.image, ts=ts, received_at=datetime.now(UTC),
                             source_kind="drone" if track is not None else "cone",
                             device_id=source.device_id, pose=pose, mission_id=None,
                             header=header, cfg=self.detectors)
        self.evidence.put(jpeg)
        return SampledFrame(frame, d.index, d.media_s)

    def _photo(self, source: Source) -> SampledFrame | str:
        # The photo is its own frame: the evidence is the original file, byte for byte.
        data = self.library.store(Path(source.path).suffix).get(source.sha256)
        meta = photo_meta.read_meta(data)
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if pixels is None:
            return f"{Path(source.path).name}: JPEG does not decode"
        if meta.ts is None:
            return f"{Path(source.path).name}: no DateTimeOriginal in EXIF"
        header = self._header(source, 0, 0.0)
        header.update(lat=meta.lat, lon=meta.lon, alt_m=meta.rel_alt_m,
                      heading_deg=meta.heading_deg if meta.heading_deg is not None
                      else self.config.heading_deg,
                      gimbal_pitch_deg=meta.gimbal_pitch_deg if meta.gimbal_pitch_deg is not None
                      else self.config.gimbal_pitch_deg,
                      hfov_deg=meta.hfov_deg or self.config.hfov_deg)
        try:
            pose = pose_from(header, self.detectors)
        except Rejected as exc:
            return f"{Path(source.path).name}: {exc.reason}: {exc.detail}"
        ts = _local(meta.ts, self.tz)
        header["ts"] = ts.isoformat()
        frame = frame_record(data, pixels, ts=ts, received_at=datetime.now(UTC),
                             source_kind="drone", device_id=source.device_id, pose=pose,
                             mission_id=None, header=header, cfg=self.detectors)
        self.evidence.put(data)
        return SampledFrame(frame, 0, 0.0)


def device_kinds(db: Database) -> dict[str, str]:
    """device id -> kind of every registered device."""
    with db.connection() as conn:
        return {d.device_id: d.kind for d in registry_repo.devices(conn)}
