"""Batch benchmark: `citywatch batch run` against ultralytics predict(vid_stride) on one clip.

    python -m bench.batch [--seconds 30] [--width 1920 --height 1080] [--keyint 30]
                          [--rounds 2] [--database-url postgresql://...] [--json out.json]

1. Renders a drone pass into an H.264 MP4 (1080p30 by default, a keyframe every --keyint
   frames) with its DJI SRT (simulators/footage.py).
2. Baseline: ultralytics `YOLO(weights).predict(source=clip, vid_stride=30, imgsz, stream=True)`,
   the same model and imgsz, every result consumed; clock from loading the model to the
   last result (the library imported before). ultralytics decodes every frame of the video (OpenCV) and keeps one in 30.
3. citywatch: `citywatch.batch.run` on the same file and model: the whole evidence path
   (original stored by sha256, SRT parsed, PyAV sampled decoding, JPEG, quality, evidence
   store, frames rows, detector worker with georeferencing and zones, detections rows) in a
   fresh database each round; clock around the call (model load included, rules not run).
   The two alternate for --rounds rounds; the fastest round of each side is reported with
   every round, and the load average with each.

Reported: frames of footage per second of wall time, sampled frames per second, the
ratio of the two sides, and what one hour of this footage costs at that rate.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from bench import publish
from citywatch import app
from citywatch import batch as batch_run
from citywatch import config as config_mod
from detectors.offline import import_ultralytics
from domain.paths import PROJECT_ROOT
from domain.registry import load as load_registry
from ingest.batch import video
from simulators.footage import drone_video

DEFAULT_WEIGHTS = PROJECT_ROOT / "detectors" / "models" / "citywatch-default.onnx"


def ultralytics_rate(clip: Path, weights: Path, imgsz: int, stride: int, device: str
                     ) -> tuple[float, int]:
    """(wall seconds, results) of predict(source=clip, vid_stride=stride); the clock
    includes loading the model, as citywatch's does (the library is imported before)."""
    yolo = import_ultralytics().YOLO
    t0 = time.monotonic()
    model = yolo(str(weights), task="detect")
    n = sum(1 for _ in model.predict(source=str(clip), vid_stride=stride, imgsz=imgsz,
                                     stream=True, verbose=False, device=device))
    return time.monotonic() - t0, n


def citywatch_rate(config, clip_dir: Path, admin_url: str) -> tuple[float, int]:
    """(wall seconds, frames detected) of a batch run in a fresh database."""
    name = f"cwbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    data = Path(tempfile.mkdtemp(prefix="cw-bench-batch-"))
    try:
        config.database.url = f"{admin_url.rpartition('/')[0]}/{name}"
        config.data_dir = str(data)
        db = app.open_database(config, name="bench-batch")
        try:
            t0 = time.monotonic()
            summary = batch_run.run(config, db, [clip_dir], evaluate_rules=False,
                                    progress=False)
            wall = time.monotonic() - t0
        finally:
            db.close()
        if summary.status != "done":
            raise SystemExit(f"batch run ended {summary.status}")
        return wall, summary.progress["detected"]
    finally:
        shutil.rmtree(data, ignore_errors=True)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="footage length")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--keyint", type=int, default=30, help="keyframe interval (frames)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="citywatch detector threads")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--database-url",
                        default=os.environ.get("CITYWATCH_TEST_PG",
                                               "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="cw-bench-clip-"))
    try:
        t0 = time.monotonic()
        clip = drone_video(load_registry(PROJECT_ROOT / "configs" / "registry"), "ST-004",
                           work / "UAV-01", width=args.width, height=args.height,
                           keyint=args.keyint, seconds=args.seconds, seed=4)
        render_s = time.monotonic() - t0
        index = video.probe(clip.path)
        stride = round(index.fps)  # one frame a second, as citywatch samples by default
        config = config_mod.load(env={})
        config.detectors.backend.weights = str(args.weights)
        if hasattr(config.detectors.backend, "device"):  # the ultralytics backend
            config.detectors.backend.device = args.device
        config.detectors.workers = args.workers
        imgsz = config.detectors.backend.imgsz
        rounds = []
        for _ in range(args.rounds):
            u_wall, u_n = ultralytics_rate(clip.path, args.weights, imgsz, stride, args.device)
            u_load = os.getloadavg()[0]
            c_wall, c_n = citywatch_rate(config, clip.path.parent, args.database_url)
            c_load = os.getloadavg()[0]
            rounds.append({
                "ultralytics": {"wall_s": round(u_wall, 2), "results": u_n,
                                "footage_fps": round(index.frames / u_wall, 1),
                                "sampled_fps": round(u_n / u_wall, 2), "load_1m": u_load},
                "citywatch": {"wall_s": round(c_wall, 2), "frames": c_n,
                              "footage_fps": round(index.frames / c_wall, 1),
                              "sampled_fps": round(c_n / c_wall, 2), "load_1m": c_load},
                "ratio": round(u_wall / c_wall, 3)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best_u = min(r["ultralytics"]["wall_s"] for r in rounds)
    best_c = min(r["citywatch"]["wall_s"] for r in rounds)
    result = {
        "clip": f"{index.width}x{index.height} {index.codec} {index.fps:g} fps, "
                f"{index.frames} frames ({index.duration_s:.1f} s), keyframe every "
                f"{args.keyint}", "render_s": round(render_s, 1),
        "vid_stride": stride, "imgsz": imgsz, "weights": args.weights.name,
        "device": args.device, "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "rounds": rounds,
        "best": {"ultralytics_wall_s": best_u, "citywatch_wall_s": best_c,
                 "ratio": round(best_u / best_c, 3),
                 "citywatch_footage_fps": round(index.frames / best_c, 1),
                 "citywatch_sampled_fps": round(rounds[0]["citywatch"]["frames"] / best_c, 2),
                 "citywatch_s_per_footage_hour": round(best_c / index.duration_s * 3600),
                 "ultralytics_s_per_footage_hour": round(best_u / index.duration_s * 3600)},
    }
    return publish(result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
