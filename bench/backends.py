"""Detector backends side by side: ONNX Runtime against ultralytics on the same weights.

    python -m bench.backends [--frames 24] [--rounds 3] [--json out.json]

On the same decoded frames of a simulated drone pass (640x480), warm, in interleaved
rounds (so load from other processes weighs on every side alike), per backend:
one frame at a time (batch 1, ms per frame) and batches of 8 (frames/s, and CPU time
per frame of all the process's threads, which other processes on the machine disturb
less than wall time), at imgsz 640.
Sides: the ONNX Runtime backend on the default .onnx, the ultralytics backend on the same
.onnx, and the ultralytics backend on the .pt (torch). The best round of each side is
reported with every round and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import cv2
import numpy as np

from bench import publish
from detectors.backends.onnxrt import OnnxRuntimeConfig
from detectors.backends.yolo import UltralyticsConfig
from detectors.base import BackendConfig, create_detector
from domain.paths import PROJECT_ROOT
from domain.registry import load as load_registry
from simulators.drone import street_pass

ONNX = PROJECT_ROOT / "detectors" / "models" / "citywatch-default.onnx"
SIDES: dict[str, BackendConfig] = {
    "onnxruntime .onnx": OnnxRuntimeConfig(weights=str(ONNX)),
    "ultralytics .onnx": UltralyticsConfig(weights=str(ONNX)),
    "ultralytics .pt": UltralyticsConfig(weights=str(ONNX.with_suffix(".pt"))),
}


def one_round(detector, images: list[np.ndarray], batch: int) -> tuple[float, float, float]:
    """(median ms per frame at batch 1, frames/s in batches of `batch`, CPU ms per frame
    in those batches, all threads of this process)."""
    times = []
    for img in images:
        t0 = time.perf_counter()
        detector.detect([img])
        times.append((time.perf_counter() - t0) * 1000)
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(0, len(images), batch):
        detector.detect(images[i:i + batch])
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return statistics.median(times), len(images) / wall, cpu * 1000 / len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)

    registry = load_registry(PROJECT_ROOT / "configs" / "registry")
    flight = street_pass(registry, "ST-010", stalls=6, seed=8, max_frames=args.frames,
                         spacing_m=10)
    images = [cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
              for f in flight.frames]
    detectors = {name: create_detector(cfg) for name, cfg in SIDES.items()}
    for d in detectors.values():  # warm: first-call allocation and graph set-up
        d.detect(images[:args.batch])
    load_before = os.getloadavg()[0]
    rounds: dict[str, list[tuple[float, float, float]]] = {name: [] for name in detectors}
    for r in range(args.rounds):
        for name, d in detectors.items():
            rounds[name].append(one_round(d, images, args.batch))
            ms, fps, cpu = rounds[name][-1]
            print(f"round {r + 1} {name}: {ms:.1f} ms, {fps:.1f} frames/s, {cpu:.1f} CPU ms "
                  f"per frame", file=sys.stderr)
    base = "ultralytics .onnx"
    best = {name: (min(r[0] for r in rs), max(r[1] for r in rs), min(r[2] for r in rs))
            for name, rs in rounds.items()}
    result = {
        "frames": len(images), "rounds": args.rounds, "batch": args.batch, "imgsz": 640,
        "image": "640x480", "weights": ONNX.stem, "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "best": {name: {"ms_per_frame_batch1": round(ms, 1), "fps_batch": round(fps, 2),
                        "cpu_ms_per_frame_batch": round(cpu, 1),
                        "latency_vs_ultralytics_onnx": round(ms / best[base][0], 3),
                        "throughput_vs_ultralytics_onnx": round(fps / best[base][1], 3),
                        "cpu_vs_ultralytics_onnx": round(cpu / best[base][2], 3)}
                 for name, (ms, fps, cpu) in best.items()},
        "per_round": {name: [[round(v, 2) for v in r] for r in rs]
                      for name, rs in rounds.items()},
    }
    return publish(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
