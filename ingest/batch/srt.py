"""DJI SRT telemetry sidecars: one cue per video frame, the drone's position in each.

Known forms (the fields differ by model and firmware):

- newer models (Mavic 3, Air 2S, Mini): `FrameCnt: 1, DiffTime: 33ms`, a time
  `2024-08-07 12:34:24.380`, then `[latitude: 30.319116] [longitude: 120.159334]
  [rel_alt: 98.100 abs_alt: 104.927]`, some with `[gb_yaw: -92.3 gb_pitch: -90.0 ...]`;
  Mavic Pro / Air firmware writes `[latitude : ..]` with spaces and `[altitude: ..]`;
- older models (Phantom 4, Inspire): `HOME(lon,lat) 2018.05.06 11:16:58` and
  `GPS(lon,lat,alt) BAROMETER:..`, the barometer giving height above the take-off point.

A cue that cannot be read is refused with its line number and the reason, and parsing
goes on (a damaged cue must not cost the cues around it); `SrtTrack.problems` lists
them. `pose_at` interpolates the position for any media time between cues.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field
from datetime import datetime

_TIMING = re.compile(r"^(\d+):(\d\d):(\d\d)[,.](\d{1,3})\s*-->\s*(\d+):(\d\d):(\d\d)[,.](\d{1,3})\s*$")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_PAIR = re.compile(r"([A-Za-z_]+)\s*:\s*(-?[0-9.]+(?:/[0-9.]+)?|[A-Za-z_]+)")
_GPS = re.compile(r"GPS\s*\(\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*(?:,\s*(-?[\d.]+)\s*)?\)")
_HOME = re.compile(r"HOME\s*\(\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*(?:,\s*(-?[\d.]+)\s*)?\)")
_BARO = re.compile(r"BAROMETER\s*:\s*(-?[\d.]+)")
_TIMES = (
    (re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:[.,](\d{1,6}))?"), True),
    (re.compile(r"(\d{4})\.(\d\d)\.(\d\d) (\d\d):(\d\d):(\d\d)"), False),
)


class SrtError(ValueError):
    """An SRT file with no usable cue at all; `problems` has one line per refused cue."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)"
                                                    if len(problems) > 5 else ""))


@dataclass(frozen=True, slots=True)
class Cue:
    """One frame's telemetry."""

    index: int  # cue number as written (FrameCnt / SrtCnt / the SRT counter)
    line: int  # line of the cue's counter in the file, from 1
    start_s: float  # media time the cue starts
    end_s: float
    ts: datetime | None  # wall-clock time as written (DJI writes local time, no zone)
    lat: float
    lon: float
    rel_alt_m: float | None  # above the take-off point
    abs_alt_m: float | None
    gimbal_yaw_deg: float | None = None
    gimbal_pitch_deg: float | None = None


@dataclass(frozen=True, slots=True)
class TrackPose:
    """Interpolated position and attitude at one media time (None: not in the SRT)."""

    lat: float
    lon: float
    rel_alt_m: float | None
    ts: datetime | None
    gimbal_yaw_deg: float | None
    gimbal_pitch_deg: float | None
    track_deg: float | None  # direction of travel, when the drone moved


@dataclass(slots=True)
class SrtTrack:
    cues: list[Cue]
    problems: list[str] = field(default_factory=list)
    _starts: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.cues.sort(key=lambda c: c.start_s)
        self._starts = [c.start_s for c in self.cues]

    def pose_at(self, media_s: float) -> TrackPose:
        """Position at `media_s`, linearly interpolated between the cues around it (held at
        the ends); heading of travel from the cues a second around it."""
        if not self.cues:
            raise SrtError(["no cues"])
        a, b, w = self._around(media_s)
        lat = a.lat + (b.lat - a.lat) * w
        lon = a.lon + (b.lon - a.lon) * w
        alt = _lerp(a.rel_alt_m, b.rel_alt_m, w)
        ts = a.ts + (b.ts - a.ts) * w if a.ts and b.ts else a.ts
        yaw = _lerp_angle(a.gimbal_yaw_deg, b.gimbal_yaw_deg, w)
        pitch = _lerp(a.gimbal_pitch_deg, b.gimbal_pitch_deg, w)
        p, _, _ = self._around(media_s - 0.5)
        q, _, _ = self._around(media_s + 0.5)
        track = _bearing(p.lat, p.lon, q.lat, q.lon)
        return TrackPose(lat, lon, alt, ts, yaw, pitch, track)

    def _around(self, t: float) -> tuple[Cue, Cue, float]:
        i = bisect.bisect_right(self._starts, t)
        if i == 0:
            return self.cues[0], self.cues[0], 0.0
        if i >= len(self.cues):
            return self.cues[-1], self.cues[-1], 0.0
        a, b = self.cues[i - 1], self.cues[i]
        span = b.start_s - a.start_s
        return a, b, (t - a.start_s) / span if span > 0 else 0.0


def _lerp(a: float | None, b: float | None, w: float) -> float | None:
    if a is None or b is None:
        return a if b is None else b if a is None else None
    return a + (b - a) * w


def _lerp_angle(a: float | None, b: float | None, w: float) -> float | None:
    if a is None or b is None:
        return a if b is None else b
    d = ((b - a + 180) % 360) - 180
    return (a + d * w) % 360


def _bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> float | None:
    north = (lat2 - lat1) * 111_320.0
    east = (lon2 - lon1) * 111_320.0 * math.cos(math.radians((lat1 + lat2) / 2))
    if math.hypot(north, east) < 0.5:
        return None  # hovering: no direction of travel
    return math.degrees(math.atan2(east, north)) % 360


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def _time(text: str) -> datetime | None:
    for pattern, has_fraction in _TIMES:
        m = pattern.search(text)
        if m:
            parts = [int(g) for g in m.groups()[:6]]
            micro = 0
            if has_fraction and m.group(7):
                micro = int(m.group(7).ljust(6, "0")[:6])
            return datetime(*parts, micro)
    return None


def _cue(block: list[tuple[int, str]]) -> Cue:
    """Parse one cue (its lines with their numbers); raise ValueError saying what is wrong."""
    (line_no, counter), *rest = block
    if not counter.strip().isdigit():
        raise ValueError(f"cue counter {counter.strip()[:30]!r} is not a number")
    if not rest:
        raise ValueError("cue has no timing line")
    timing = _TIMING.match(rest[0][1].strip())
    if not timing:
        raise ValueError(f"timing {rest[0][1].strip()[:40]!r} is not 'HH:MM:SS,mmm --> HH:MM:SS,mmm'")
    g = timing.groups()
    start, end = _seconds(*g[:4]), _seconds(*g[4:])
    body = " ".join(text for _, text in rest[1:])
    body = re.sub(r"<[^>]*>", " ", body)
    fields: dict[str, str] = {}
    for bracket in _BRACKET.findall(body):
        for key, value in _PAIR.findall(bracket):
            fields[key.lower()] = value
    for key, value in re.findall(r"(FrameCnt|SrtCnt)\s*:\s*(\d+)", body):
        fields[key.lower()] = value

    def num(key: str) -> float | None:
        if key not in fields:
            return None
        try:
            return float(fields[key])
        except ValueError:
            raise ValueError(f"{key} {fields[key]!r} is not a number") from None

    lat, lon = num("latitude"), num("longitude")
    rel_alt, abs_alt = num("rel_alt"), num("abs_alt")
    if rel_alt is None:
        rel_alt = num("altitude")
    gps = _GPS.search(body)
    if lat is None and gps:
        lon, lat = float(gps.group(1)), float(gps.group(2))
        baro = _BARO.search(body)
        home = _HOME.search(body)
        if baro:
            rel_alt = float(baro.group(1))
        elif gps.group(3) is not None and home and home.group(3) is not None:
            rel_alt = float(gps.group(3)) - float(home.group(3))
        if gps.group(3) is not None:
            abs_alt = float(gps.group(3))
    if lat is None or lon is None:
        raise ValueError("no position (neither [latitude: ..] [longitude: ..] nor GPS(lon,lat,alt))")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"position ({lat}, {lon}) is off the globe")
    if lat == 0 and lon == 0:
        raise ValueError("position (0, 0): the drone had no GPS fix")
    index = int(fields.get("framecnt") or fields.get("srtcnt") or counter.strip())
    return Cue(index, line_no, start, end, _time(body), lat, lon, rel_alt, abs_alt,
               num("gb_yaw"), num("gb_pitch"))


def parse(text: str) -> SrtTrack:
    """Every readable cue of an SRT file; unreadable ones are listed in `problems` as
    `line N: reason`. Raises SrtError when no cue at all can be read."""
    lines = text.replace("\ufeff", "").splitlines()
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            current.append((number, line))
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    cues, problems = [], []
    for block in blocks:
        try:
            cues.append(_cue(block))
        except ValueError as exc:
            problems.append(f"line {block[0][0]}: {exc}")
    if not cues:
        raise SrtError(problems or ["no cues in the file"])
    return SrtTrack(cues, problems)


def read(path) -> SrtTrack:
    """Parse an SRT file (UTF-8; DJI writes nothing else)."""
    from pathlib import Path

    return parse(Path(path).read_text(encoding="utf-8", errors="replace"))
