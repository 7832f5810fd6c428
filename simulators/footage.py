"""Recorded footage with known ground truth, as a city's devices leave it on a card.

- `drone_video`: a drone pass over a registry street (the geometry of simulators/drone.py)
  as a real H.264 MP4 (PyAV / libx264; default 1920x1080 at 30 fps, keyframe interval
  configurable) with DJI's SRT telemetry sidecar, one cue per video frame.
- `drone_photos`: the same kind of pass as a folder of JPEG stills with EXIF GPS and DJI's
  XMP block (`drone-dji:RelativeAltitude`, `GimbalPitchDegree`, `GimbalYawDegree`,
  `FlightYawDegree`).
- `camera_video`: a fixed cone camera's recording of its permit as an MP4.

Each video frame is not rendered from scratch: one frame a second is rendered with
simulators/scenes.py on an image taller than the video (the same focal length, so more
ground ahead and behind), and the frames between are that render warped to their own pose
by the flat-ground homography, which is exact for a camera over flat ground. Frames at
whole seconds are therefore renders, and their truth boxes hold.
"""

from __future__ import annotations

import argparse
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import piexif

from domain.registry import Registry
from domain.registry import load as load_registry
from simulators.cone import works_objects
from simulators.drone import FRAME, PlacedObject, street_pass
from simulators.scenes import CameraPose, Look, render_aerial, render_cone, streets_from_registry

CHINA = timezone(timedelta(hours=8))  # DJI writes local time without a zone


@dataclass(frozen=True, slots=True)
class Footage:
    """What was written and the truth behind it."""

    path: Path  # the MP4, or the photo folder
    srt: Path | None
    device_id: str
    start: datetime  # local wall-clock time of the first frame (aware)
    fps: float
    frames: int
    objects: list[PlacedObject]
    poses: list[CameraPose]  # per video frame (or per photo), in local metres

    def stalls(self) -> list[PlacedObject]:
        return [o for o in self.objects if o.cls == "street_stall"]

    def seen_stalls(self, indices: Sequence[int]) -> set[str]:
        """Merchants whose stall centre lies inside the image at the given frames."""
        seen = set()
        for k in indices:
            pose = self.poses[k]
            for o in self.stalls():
                xy = pose.project_ground(o.scene.east_m, o.scene.north_m)
                if xy and 0 <= xy[0] < pose.width and 0 <= xy[1] < pose.height:
                    seen.add(o.subject_id)
        return seen


def _encoder(path: Path, width: int, height: int, fps: int, keyint: int,
             start: datetime) -> tuple[av.container.OutputContainer, av.video.stream.VideoStream]:
    # faststart puts the index first, as cameras that survive a power cut do: a truncated
    # file still says where every frame was.
    out = av.open(str(path), "w", options={"movflags": "+faststart"})
    out.metadata["creation_time"] = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.gop_size = keyint
    stream.options = {"preset": "veryfast", "crf": "20",
                      "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"}
    return out, stream


def _write(out, stream, image: np.ndarray) -> None:
    for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
        out.mux(packet)


def _close(out, stream) -> None:
    for packet in stream.encode():
        out.mux(packet)
    out.close()


def _srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def srt_cue(index: int, fps: float, ts: datetime, lat: float, lon: float, rel_alt: float,
            *, abs_alt: float | None = None, yaw: float | None = None,
            pitch: float | None = None, form: str = "new") -> str:
    """One SRT cue (frame `index`, counted from 1) in one of DJI's forms.

    `new`: Mavic 3 / Air 2S / Mini (`[latitude: ..] [longitude: ..] [rel_alt: .. abs_alt: ..]`,
    with `[gb_yaw: .. gb_pitch: .. gb_roll: ..]` when yaw is given); `old`: Phantom 4 /
    Mavic Pro (`HOME(lon,lat) date` / `GPS(lon,lat,alt) BAROMETER:..`).
    """
    start, end = (index - 1) / fps, index / fps
    head = f"{index}\n{_srt_time(start)} --> {_srt_time(end)}\n"
    if form == "old":
        return (head + f"HOME({lon + 0.0003:.6f},{lat - 0.0002:.6f}) {ts:%Y.%m.%d %H:%M:%S}\n"
                f"GPS({lon:.7f},{lat:.7f},{rel_alt + 7:.1f}) BAROMETER:{rel_alt:.1f}\n"
                "ISO:100 Shutter:500 EV:0 Fnum:F2.8\n\n")
    abs_alt = rel_alt + 7.0 if abs_alt is None else abs_alt
    gimbal = (f" [gb_yaw: {yaw:.1f} gb_pitch: {pitch:.1f} gb_roll: 0.0]"
              if yaw is not None else "")
    return (head + f'<font size="28">FrameCnt: {index}, DiffTime: {round(1000 / fps)}ms\n'
            f"{ts:%Y-%m-%d %H:%M:%S}.{ts.microsecond // 1000:03d}\n"
            "[iso: 100] [shutter: 1/3200.0] [fnum: 1.7] [ev: 0] [color_md: default] "
            f"[focal_len: 24.00] [latitude: {lat:.6f}] [longitude: {lon:.6f}] "
            f"[rel_alt: {rel_alt:.3f} abs_alt: {abs_alt:.3f}]{gimbal} [ct: 5310] </font>\n\n")


def drone_video(registry: Registry, street_id: str, out_dir: Path, *,
                stalls: int | Sequence[str] = 4, drone_id: str = "UAV-01",
                name: str = "DJI_0001", width: int = 1920, height: int = 1080, fps: int = 30,
                keyint: int = 30, speed_ms: float = 12.0, alt_m: float = 40.0,
                hfov_deg: float = 84.0, seconds: float | None = None,
                start: datetime | None = None, seed: int = 0, srt_form: str = "new",
                srt_gimbal: bool = True) -> Footage:
    """Fly `street_id` at `speed_ms` and write `<name>.MP4` + `<name>.SRT` into `out_dir`."""
    plan = street_pass(registry, street_id, stalls=stalls, drone_id=drone_id, alt_m=alt_m,
                       hfov_deg=hfov_deg, seed=seed, max_frames=2, width=64, height=48)
    first, second = plan.frames[0].header, plan.frames[1].header
    a = np.array(FRAME.to_local(first["lat"], first["lon"]))
    b = np.array(FRAME.to_local(second["lat"], second["lon"]))
    along = (b - a) / np.linalg.norm(b - a)
    heading = first["heading_deg"]
    length = _street_length(registry, street_id)
    duration = seconds if seconds is not None else length / speed_ms
    n = int(duration * fps)
    start = start or datetime(2026, 11, 26, 23, 30, tzinfo=CHINA)
    out_dir.mkdir(parents=True, exist_ok=True)
    video, srt = out_dir / f"{name}.MP4", out_dir / f"{name}.SRT"
    streets = streets_from_registry(registry.streets, FRAME)
    margin = int(math.ceil(speed_ms / 2 / (alt_m / (width / 2 / math.tan(math.radians(hfov_deg) / 2))))) + 8
    poses = [CameraPose(*(a + along * speed_ms * k / fps), alt_m, heading, -90.0, hfov_deg,
                        width, height) for k in range(n)]
    out, stream = _encoder(video, width, height, fps, keyint, start)
    key: tuple[np.ndarray, np.ndarray] | None = None
    with srt.open("w", encoding="utf-8") as cues:
        for k, pose in enumerate(poses):
            if k % fps == 0:
                tall = CameraPose(pose.east_m, pose.north_m, alt_m, heading, -90.0, hfov_deg,
                                  width, height + 2 * margin)
                near = [o.scene for o in plan.objects
                        if math.hypot(o.scene.east_m - pose.east_m,
                                      o.scene.north_m - pose.north_m) < alt_m * 3]
                rendered = render_aerial(near, tall, streets=streets, seed=seed * 1000 + k // fps,
                                         world_seed=seed, look=Look(jpeg_quality=95))
                key = (rendered.image, tall.ground_to_image())
            image, g_key = key
            warp = pose.ground_to_image() @ np.linalg.inv(g_key)
            frame = cv2.warpPerspective(image, warp, (width, height), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REPLICATE)
            _write(out, stream, frame)
            lat, lon = FRAME.to_wgs84(pose.east_m, pose.north_m)
            ts = start + timedelta(seconds=k / fps)
            yaw = ((heading + 180) % 360) - 180 if srt_gimbal else None
            cues.write(srt_cue(k + 1, fps, ts.replace(tzinfo=None), lat, lon, alt_m, yaw=yaw,
                               pitch=-90.0, form=srt_form))
    _close(out, stream)
    return Footage(video, srt, drone_id, start, fps, n, plan.objects, poses)


def _street_length(registry: Registry, street_id: str) -> float:
    for feat in registry.streets:
        if feat["properties"]["street_id"] == street_id:
            (lon_a, lat_a), (lon_b, lat_b) = feat["geometry"]["coordinates"][:2]
            return float(np.linalg.norm(np.subtract(FRAME.to_local(lat_b, lon_b),
                                                    FRAME.to_local(lat_a, lon_a))))
    raise KeyError(f"no street {street_id!r} in the registry")


def _rational(value: float, denominator: int = 1_000_000) -> tuple[int, int]:
    f = Fraction(value).limit_denominator(denominator)
    return f.numerator, f.denominator


def _dms(degrees: float) -> tuple[tuple[int, int], ...]:
    d = abs(degrees)
    whole = int(d)
    minutes = int((d - whole) * 60)
    seconds = (d - whole - minutes / 60) * 3600
    return (whole, 1), (minutes, 1), _rational(seconds, 10_000)


def xmp_packet(rel_alt: float, abs_alt: float, pitch: float, gimbal_yaw: float,
               flight_yaw: float) -> bytes:
    """DJI's XMP block as its cameras write it (attributes of one rdf:Description)."""
    xml = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="DJI Meta Data" '
        'xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/" '
        f'drone-dji:AbsoluteAltitude="{abs_alt:+.2f}" drone-dji:RelativeAltitude="{rel_alt:+.2f}" '
        f'drone-dji:GimbalRollDegree="+0.00" drone-dji:GimbalYawDegree="{gimbal_yaw:+.2f}" '
        f'drone-dji:GimbalPitchDegree="{pitch:+.2f}" drone-dji:FlightRollDegree="+0.00" '
        f'drone-dji:FlightYawDegree="{flight_yaw:+.2f}" drone-dji:FlightPitchDegree="+0.00"/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>')
    return b"http://ns.adobe.com/xap/1.0/\x00" + xml.encode("utf-8")


def photo_jpeg(image: np.ndarray, ts: datetime, lat: float, lon: float, rel_alt: float,
               heading: float, pitch: float, hfov_deg: float, *, quality: int = 92) -> bytes:
    """A JPEG with EXIF (time, GPS, 35 mm focal length) and DJI's XMP block."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    f35 = round(18.0 / math.tan(math.radians(hfov_deg) / 2))
    stamp = ts.strftime("%Y:%m:%d %H:%M:%S").encode()
    exif = {
        "0th": {piexif.ImageIFD.Make: b"DJI", piexif.ImageIFD.Model: b"FC3411",
                piexif.ImageIFD.DateTime: stamp},
        "Exif": {piexif.ExifIFD.DateTimeOriginal: stamp,
                 piexif.ExifIFD.FocalLengthIn35mmFilm: f35},
        "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
                piexif.GPSIFD.GPSLatitude: _dms(lat),
                piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
                piexif.GPSIFD.GPSLongitude: _dms(lon),
                piexif.GPSIFD.GPSAltitudeRef: 0,
                piexif.GPSIFD.GPSAltitude: _rational(rel_alt + 7.0, 1000)},
    }
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), buf.tobytes(), out)
    data = out.getvalue()
    xmp = xmp_packet(rel_alt, rel_alt + 7.0, pitch, ((heading + 180) % 360) - 180,
                     ((heading + 180) % 360) - 180)
    segment = b"\xff\xe1" + (len(xmp) + 2).to_bytes(2, "big") + xmp
    return data[:2] + segment + data[2:]  # right after SOI, as DJI writes it


def drone_photos(registry: Registry, street_id: str, out_dir: Path, *,
                 stalls: int | Sequence[str] = 4, drone_id: str = "UAV-01",
                 width: int = 1280, height: int = 960, spacing_m: float = 20.0,
                 alt_m: float = 40.0, hfov_deg: float = 84.0, start: datetime | None = None,
                 seed: int = 0) -> Footage:
    """A pass as a folder of stills, DJI_0001.JPG ... every `spacing_m` along the street."""
    start = start or datetime(2026, 11, 26, 23, 0, tzinfo=CHINA)
    flight = street_pass(registry, street_id, stalls=stalls, drone_id=drone_id, alt_m=alt_m,
                         hfov_deg=hfov_deg, spacing_m=spacing_m, width=width, height=height,
                         start=start, interval_s=2.0, seed=seed, look=Look(jpeg_quality=95))
    out_dir.mkdir(parents=True, exist_ok=True)
    poses = []
    for k, f in enumerate(flight.frames):
        h = f.header
        image = cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
        (out_dir / f"DJI_{k + 1:04d}.JPG").write_bytes(photo_jpeg(
            image, f.ts.astimezone(CHINA), h["lat"], h["lon"], alt_m, h["heading_deg"], -90.0,
            hfov_deg))
        e, n = FRAME.to_local(h["lat"], h["lon"])
        poses.append(CameraPose(e, n, alt_m, h["heading_deg"], -90.0, hfov_deg, width, height))
    return Footage(out_dir, None, drone_id, start, 0.0, len(flight.frames), flight.objects, poses)


def camera_video(registry: Registry, permit_id: str, out_dir: Path, *,
                 scenario: str = "no_helmet", camera_id: str | None = None,
                 seconds: float = 10.0, width: int = 1280, height: int = 720, fps: int = 25,
                 keyint: int = 50, start: datetime | None = None, seed: int = 0) -> Footage:
    """A cone camera's recording of its permit (`<camera_id>.mp4`): a fixed view, re-rendered
    once a second (light and noise change), each render held until the next."""
    permit = registry.subject(permit_id)
    cameras = [d.device_id for d in registry.devices
               if d.subject_id == permit.subject_id and d.kind == "cone_camera"]
    camera_id = camera_id or cameras[0]
    start = start or datetime(2026, 11, 26, 22, 0, tzinfo=CHINA)
    objects = works_objects(scenario, np.random.default_rng(seed))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{camera_id}.mp4"
    out, stream = _encoder(path, width, height, fps, keyint, start)
    n = int(seconds * fps)
    image = None
    for k in range(n):
        if k % fps == 0:
            image = render_cone(objects, width=width, height=height, seed=seed * 1000 + k // fps,
                                world_seed=seed).image
        _write(out, stream, image)
    _close(out, stream)
    return Footage(path, None, camera_id, start, float(fps), n, [], [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write recorded test footage with ground truth.")
    parser.add_argument("kind", choices=("video", "photos", "camera"))
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--registry", default="configs/registry")
    parser.add_argument("--street", default="ST-004")
    parser.add_argument("--permit", default="P-003")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--keyint", type=int, default=30, help="keyframe interval (frames)")
    parser.add_argument("--seconds", type=float, help="footage length (default: the whole street)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    reg = load_registry(Path(args.registry))
    if args.kind == "video":
        f = drone_video(reg, args.street, args.out, width=args.width, height=args.height,
                        keyint=args.keyint, seconds=args.seconds, seed=args.seed)
    elif args.kind == "photos":
        f = drone_photos(reg, args.street, args.out, seed=args.seed)
    else:
        f = camera_video(reg, args.permit, args.out, seconds=args.seconds or 10.0, seed=args.seed)
    print(f"{f.path}: {f.frames} frames from {f.device_id}"
          + (f"; stalls at {', '.join(s.subject_id for s in f.stalls())}" if f.stalls() else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
