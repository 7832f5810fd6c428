"""Drone stills: where each photo was taken and where the camera looked.

Position and time come from EXIF (GPSLatitude / GPSLongitude, DateTimeOriginal); height
above the take-off point, gimbal pitch and heading from DJI's XMP block
(`drone-dji:RelativeAltitude`, `GimbalPitchDegree`, `GimbalYawDegree`, else
`FlightYawDegree`); the horizontal field of view from EXIF FocalLengthIn35mmFilm. A field
that is missing is None, and the run's settings fill it in or the photo is refused.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime

from defusedxml import ElementTree
from PIL import ExifTags
from PIL.JpegImagePlugin import JpegImageFile

DJI_NS = "http://www.dji.com/drone-dji/1.0/"


class PhotoError(ValueError):
    """A photo whose metadata cannot be read."""


@dataclass(frozen=True, slots=True)
class PhotoMeta:
    ts: datetime | None  # DateTimeOriginal, local time as written
    lat: float | None
    lon: float | None
    rel_alt_m: float | None
    gimbal_pitch_deg: float | None
    heading_deg: float | None  # gimbal yaw, else flight yaw, compass 0..360
    hfov_deg: float | None
    width: int
    height: int


def _degrees(dms, ref) -> float | None:
    if not dms:
        return None
    try:
        d, m, s = (float(v) for v in dms)
    except (TypeError, ValueError):
        raise PhotoError(f"GPS position {dms!r} is not degrees, minutes, seconds") from None
    value = d + m / 60 + s / 3600
    if not math.isfinite(value):
        raise PhotoError(f"GPS position {dms!r} is not a number")
    return -value if ref in ("S", "W", b"S", b"W") else value


def _xmp(data: bytes) -> dict[str, str]:
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        return {}
    end = data.find(b"</x:xmpmeta>", start)
    if end < 0:
        raise PhotoError("XMP block is cut off")
    try:
        root = ElementTree.fromstring(data[start:end + len(b"</x:xmpmeta>")])
    except ElementTree.ParseError as exc:
        raise PhotoError(f"XMP block is not valid XML: {exc}") from None
    out: dict[str, str] = {}
    for element in root.iter():
        for key, value in element.attrib.items():
            if key.startswith("{" + DJI_NS + "}"):
                out[key[len(DJI_NS) + 2:]] = value
        if element.tag.startswith("{" + DJI_NS + "}") and element.text:
            out[element.tag[len(DJI_NS) + 2:]] = element.text.strip()
    return out


def read_meta(data: bytes) -> PhotoMeta:
    """Read position, time and attitude from a drone JPEG's EXIF and XMP."""
    try:
        with JpegImageFile(io.BytesIO(data)) as img:
            width, height = img.size
            exif = img.getexif()
            gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
            sub = exif.get_ifd(ExifTags.IFD.Exif)
    except (OSError, SyntaxError, ValueError) as exc:
        raise PhotoError(f"not a readable JPEG: {exc}") from None
    lat = _degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef))
    lon = _degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef))
    stamp = sub.get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime)
    ts = None
    if stamp:
        try:
            ts = datetime.strptime(str(stamp).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
        except ValueError:
            raise PhotoError(f"DateTimeOriginal {stamp!r} is not 'YYYY:MM:DD HH:MM:SS'") from None
    f35 = sub.get(ExifTags.Base.FocalLengthIn35mmFilm)
    try:
        hfov = math.degrees(2 * math.atan(18.0 / float(f35))) if f35 else None
    except (TypeError, ValueError):
        raise PhotoError(f"FocalLengthIn35mmFilm {f35!r} is not a focal length") from None
    xmp = _xmp(data)

    def num(*keys: str) -> float | None:
        for key in keys:
            if key in xmp:
                try:
                    return float(xmp[key])
                except ValueError:
                    raise PhotoError(f"drone-dji:{key} {xmp[key]!r} is not a number") from None
        return None

    yaw = num("GimbalYawDegree", "FlightYawDegree")
    return PhotoMeta(ts, lat, lon, num("RelativeAltitude"), num("GimbalPitchDegree"),
                     None if yaw is None else yaw % 360, hfov, width, height)
