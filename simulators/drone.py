"""Drone camera simulator: a drone flies along a registry street with known stalls.

`street_pass` plans the flight: it places street stalls on the pavement in front of
chosen merchants (the frontage zones of the registry), adds traffic and pedestrians,
and renders each frame with simulators/scenes.py from the drone's pose, keeping the
ground truth (which class, which merchant, where on the map, where in each image).
`publish_pass` sends the frames as frame envelopes over MQTT, as a real drone would:

    python -m simulators.drone --street ST-004 --stalls 4 [--mqtt mqtt://127.0.0.1:1883]
"""

from __future__ import annotations

import argparse
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from shapely.geometry import shape

from domain.geo import GONGSHU, LocalFrame
from domain.registry import Registry
from domain.registry import load as load_registry
from ingest import envelope, mqtturl
from simulators.scenes import (
    CameraPose,
    Look,
    Rendered,
    SceneObject,
    render_aerial,
    streets_from_registry,
)

FRAME = LocalFrame(*GONGSHU)  # the registry's own local frame


@dataclass(frozen=True, slots=True)
class PlacedObject:
    """An object put on the ground for a pass, with the subject it was placed at."""

    cls: str
    lat: float
    lon: float
    subject_id: str | None
    scene: SceneObject


@dataclass(frozen=True, slots=True)
class DroneFrame:
    """One rendered frame of a pass: its header (the pose a drone reports) and JPEG."""

    ts: datetime
    header: dict
    jpeg: bytes
    rendered: Rendered


@dataclass(frozen=True, slots=True)
class StreetPass:
    drone_id: str
    street_id: str
    mission_id: str
    objects: list[PlacedObject]
    frames: list[DroneFrame]

    def stalls(self) -> list[PlacedObject]:
        return [o for o in self.objects if o.cls == "street_stall"]


def _street_axis(registry: Registry, street_id: str) -> tuple[np.ndarray, np.ndarray]:
    for feat in registry.streets:
        if feat["properties"]["street_id"] == street_id:
            (lon_a, lat_a), (lon_b, lat_b) = feat["geometry"]["coordinates"][:2]
            return np.array(FRAME.to_local(lat_a, lon_a)), np.array(FRAME.to_local(lat_b, lon_b))
    raise KeyError(f"no street {street_id!r} in the registry")


def place_street_objects(registry: Registry, street_id: str, *, stalls: int | Sequence[str] = 4,
                         seed: int = 0) -> list[PlacedObject]:
    """What stands on `street_id` for a pass: stalls in front of merchants, traffic (seeded).

    `stalls` is a number of merchants of this street picked at random, or the merchant ids
    themselves; each gets a street stall in the middle of its frontage. Cars on the
    carriageway are distractors (no subject).
    """
    rng = np.random.default_rng(seed)
    a, b = _street_axis(registry, street_id)
    along = (b - a) / np.linalg.norm(b - a)
    heading = math.degrees(math.atan2(along[0], along[1])) % 360
    merchants = [s for s in registry.subjects
                 if s.kind == "merchant" and s.props.get("street_id") == street_id]
    if isinstance(stalls, int):
        picks = [merchants[i] for i in sorted(rng.choice(len(merchants), size=min(stalls, len(merchants)),
                                                         replace=False))]
    else:
        wanted = set(stalls)
        picks = [m for m in merchants if m.subject_id in wanted]
        if len(picks) != len(wanted):
            raise KeyError(f"not merchants of {street_id}: {sorted(wanted - {m.subject_id for m in picks})}")
    placed: list[PlacedObject] = []
    for m in picks:
        c = shape(m.geometry).centroid
        e, n = FRAME.to_local(c.y, c.x)
        obj = SceneObject("street_stall", e, n, heading, float(rng.uniform(2.2, 3.0)),
                          float(rng.uniform(1.6, 2.2)))
        placed.append(PlacedObject("street_stall", c.y, c.x, m.subject_id, obj))
    length = float(np.linalg.norm(b - a))
    normal = np.array([along[1], -along[0]])
    for _ in range(int(length / 40)):  # traffic on the carriageway
        s, lane = rng.uniform(0, length), rng.choice([-3.0, 3.0])
        e, n = a + along * s + normal * lane
        obj = SceneObject("vehicle", float(e), float(n), heading + (0 if lane > 0 else 180),
                          float(rng.uniform(4.0, 5.0)), float(rng.uniform(1.7, 1.9)))
        placed.append(PlacedObject("vehicle", *FRAME.to_wgs84(e, n), None, obj))
    return placed


def street_pass(registry: Registry, street_id: str, *, stalls: int | Sequence[str] = 4,
                drone_id: str = "UAV-01", alt_m: float = 40.0, hfov_deg: float = 84.0,
                spacing_m: float = 30.0, width: int = 640, height: int = 480,
                start: datetime | None = None, interval_s: float = 2.0, seed: int = 0,
                max_frames: int | None = None, look: Look | None = None,
                jpeg_quality: int = 90) -> StreetPass:
    """Plan and render a nadir pass along `street_id` at `alt_m` over the objects that
    `place_street_objects` puts on the street (same `stalls` and `seed`)."""
    a, b = _street_axis(registry, street_id)
    along = (b - a) / np.linalg.norm(b - a)
    heading = math.degrees(math.atan2(along[0], along[1])) % 360
    placed = place_street_objects(registry, street_id, stalls=stalls, seed=seed)
    length = float(np.linalg.norm(b - a))
    streets = streets_from_registry(registry.streets, FRAME)
    start = start or datetime.now(UTC).replace(microsecond=0)
    mission_id = f"M-{street_id}-{uuid.uuid4().hex[:6]}"
    frames = []
    positions = np.arange(0.0, length + 1e-6, spacing_m)
    for k, s in enumerate(positions[:max_frames]):
        e, n = a + along * s
        pose = CameraPose(float(e), float(n), alt_m, heading, -90.0, hfov_deg, width, height)
        near = [o.scene for o in placed
                if math.hypot(o.scene.east_m - e, o.scene.north_m - n) < alt_m * 3]
        rendered = render_aerial(near, pose, streets=streets, seed=seed * 1000 + k,
                                 world_seed=seed, look=look or Look(jpeg_quality=jpeg_quality))
        lat, lon = FRAME.to_wgs84(e, n)
        ts = start + timedelta(seconds=k * interval_s)
        header = {"ts": ts.isoformat(), "lat": lat, "lon": lon, "alt_m": alt_m,
                  "heading_deg": round(heading, 6), "gimbal_pitch_deg": -90.0,
                  "hfov_deg": hfov_deg, "mission_id": mission_id}
        frames.append(DroneFrame(ts, header, encode_jpeg(rendered.image, jpeg_quality), rendered))
    return StreetPass(drone_id, street_id, mission_id, placed, frames)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a rendered frame, as a drone camera sends them."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def frame_topic(prefix: str, kind: str, device_id: str) -> str:
    """`<prefix>/drone/<id>/frame` or `<prefix>/cone/<id>/frame` (docs/architecture.md)."""
    return f"{prefix.rstrip('/')}/{kind}/{device_id}/frame"


class FramePublisher:
    """A device-side MQTT client that publishes frame envelopes with QoS 1."""

    def __init__(self, url: str, client_id: str, *, ca_file: str | None = None):
        address = mqtturl.parse(url)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(100)
        mqtturl.configure(self.client, address, ca_file)
        self.client.connect(address.host, address.port, keepalive=30)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, timeout: float = 30.0) -> None:
        """Publish and wait until the broker has it (PUBACK)."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"broker did not acknowledge {topic} within {timeout} s")

    def publish_many(self, messages: Sequence[tuple[str, bytes]], timeout: float = 60.0) -> None:
        """Publish a burst, then wait for every acknowledgement."""
        infos = [self.client.publish(t, p, qos=1) for t, p in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError(f"broker did not acknowledge a frame within {timeout} s")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def __enter__(self) -> FramePublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def publish_pass(flight: StreetPass, mqtt_url: str, topic_prefix: str, *,
                 realtime: bool = False) -> int:
    """Publish a pass's frames as envelopes on `<prefix>/drone/<id>/frame`; return the count.

    With `realtime` the frames go out at their own interval, as a flying drone sends them.
    """
    topic = frame_topic(topic_prefix, "drone", flight.drone_id)
    with FramePublisher(mqtt_url, f"{flight.drone_id}-{uuid.uuid4().hex[:6]}") as pub:
        if not realtime:
            pub.publish_many([(topic, envelope.encode(f.header, f.jpeg)) for f in flight.frames])
        else:
            t0 = time.monotonic()
            for f in flight.frames:
                due = t0 + (f.ts - flight.frames[0].ts).total_seconds()
                time.sleep(max(0.0, due - time.monotonic()))
                pub.publish(topic, envelope.encode(f.header, f.jpeg))
    return len(flight.frames)


def simulate_drone(mqtt_url: str, topic_prefix: str, registry_dir: Path, *, street_id: str,
                   stalls: int | Sequence[str] = 4, drone_id: str = "UAV-01", seed: int = 0,
                   realtime: bool = False, **pass_options) -> StreetPass:
    """Render a pass over a street and publish it (the demo's entry point)."""
    flight = street_pass(load_registry(registry_dir), street_id, stalls=stalls,
                         drone_id=drone_id, seed=seed, **pass_options)
    publish_pass(flight, mqtt_url, topic_prefix, realtime=realtime)
    return flight


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", help="broker URL")
    parser.add_argument("--prefix", default="citywatch/v1", help="topic prefix")
    parser.add_argument("--registry", default="configs/registry")
    parser.add_argument("--street", default="ST-004")
    parser.add_argument("--stalls", type=int, default=4)
    parser.add_argument("--drone", default="UAV-01")
    parser.add_argument("--alt", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--realtime", action="store_true")
    args = parser.parse_args(argv)
    flight = simulate_drone(args.mqtt, args.prefix, Path(args.registry), street_id=args.street,
                            stalls=args.stalls, drone_id=args.drone, seed=args.seed,
                            realtime=args.realtime, alt_m=args.alt)
    print(f"{flight.drone_id} mission {flight.mission_id}: {len(flight.frames)} frames over "
          f"{flight.street_id}; stalls at " + ", ".join(s.subject_id for s in flight.stalls()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
