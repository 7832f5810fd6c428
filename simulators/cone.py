"""Cone-camera simulator: a pole camera at a road-works permit watching the work area.

Each frame is rendered with simulators/scenes.py from the camera's own view (it stands at
the end of the permitted stretch and looks along the road), with a known scenario:
compliant works, a fallen cone, a worker without a helmet, or the fence missing. Frames
are published as frame envelopes on `<prefix>/cone/<camera_id>/frame`:

    python -m simulators.cone --permit P-001 --scenario no_helmet [--frames 3]
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from domain.registry import Registry
from domain.registry import load as load_registry
from ingest import envelope
from simulators.drone import FramePublisher, frame_topic
from simulators.scenes import Rendered, SceneObject, render_cone

SCENARIOS = ("compliant", "cone_fallen", "no_helmet", "fence_missing")


@dataclass(frozen=True, slots=True)
class ConeFrame:
    camera_id: str
    permit_id: str
    scenario: str
    ts: datetime
    header: dict
    jpeg: bytes
    rendered: Rendered


def works_objects(scenario: str, rng: np.random.Generator) -> list[SceneObject]:
    """The work area in the camera's frame (camera at 0, 0 looking north along the road)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}, but got {scenario!r}")
    near, depth, left, right = 6.0, 14.0, -3.5, 0.5
    objects = [SceneObject("cone_upright", right, float(n), 0.0)
               for n in np.arange(near, near + depth, 2.5)]
    if scenario == "cone_fallen":
        objects[1] = SceneObject("cone_fallen", right + 0.4, objects[1].north_m, 70.0)
    if scenario != "fence_missing":
        objects.append(SceneObject("fence", left + 0.3, near + 6.0, 0.0, 8.0))
    objects.append(SceneObject("worker_helmet", -1.5, near + float(rng.uniform(2, 5)),
                               float(rng.uniform(0, 360))))
    if scenario == "no_helmet":
        objects.append(SceneObject("worker_no_helmet", -0.8, near + float(rng.uniform(6, 9)),
                                   float(rng.uniform(0, 360))))
    return objects


def cone_frames(registry: Registry, permit_id: str, *, scenario: str = "compliant",
                camera_id: str | None = None, frames: int = 1, start: datetime | None = None,
                interval_s: float = 60.0, seed: int = 0, width: int = 640,
                height: int = 480) -> list[ConeFrame]:
    """Render `frames` frames of one permit's cone camera showing `scenario`."""
    permit = registry.subject(permit_id)
    cameras = [d.device_id for d in registry.devices
               if d.subject_id == permit.subject_id and d.kind == "cone_camera"]
    camera_id = camera_id or cameras[0]
    if camera_id not in cameras:
        raise KeyError(f"{camera_id!r} is not a cone camera of {permit_id}")
    rng = np.random.default_rng(seed)
    objects = works_objects(scenario, rng)
    start = start or datetime.now(UTC).replace(microsecond=0)
    out = []
    for k in range(frames):
        rendered = render_cone(objects, width=width, height=height, seed=seed * 1000 + k,
                               world_seed=seed)
        ok, buf = cv2.imencode(".jpg", rendered.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        ts = start + timedelta(seconds=k * interval_s)
        out.append(ConeFrame(camera_id, permit_id, scenario, ts, {"ts": ts.isoformat()},
                             buf.tobytes(), rendered))
    return out


def publish_cone_frames(frames: Sequence[ConeFrame], mqtt_url: str, topic_prefix: str) -> int:
    """Publish frames on their camera's topic; return the count."""
    with FramePublisher(mqtt_url, f"cone-sim-{uuid.uuid4().hex[:6]}") as pub:
        pub.publish_many([(frame_topic(topic_prefix, "cone", f.camera_id),
                           envelope.encode(f.header, f.jpeg)) for f in frames])
    return len(frames)


def simulate_cone(mqtt_url: str, topic_prefix: str, registry_dir: Path, *, permit_id: str,
                  scenario: str = "compliant", frames: int = 1, seed: int = 0) -> list[ConeFrame]:
    """Render a permit's cone-camera frames of `scenario` and publish them (for the demo)."""
    out = cone_frames(load_registry(registry_dir), permit_id, scenario=scenario, frames=frames,
                      seed=seed)
    publish_cone_frames(out, mqtt_url, topic_prefix)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", help="broker URL")
    parser.add_argument("--prefix", default="citywatch/v1", help="topic prefix")
    parser.add_argument("--registry", default="configs/registry")
    parser.add_argument("--permit", default="P-001")
    parser.add_argument("--scenario", choices=SCENARIOS, default="compliant")
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    frames = simulate_cone(args.mqtt, args.prefix, Path(args.registry), permit_id=args.permit,
                           scenario=args.scenario, frames=args.frames, seed=args.seed)
    print(f"{len(frames)} {args.scenario} frames from {frames[0].camera_id} at {args.permit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
