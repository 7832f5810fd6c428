"""`citywatch detect` (detector workers), `citywatch frames` (queue state) and the frame
simulators `citywatch simulate-drone` / `citywatch simulate-cone`."""

from __future__ import annotations

import argparse
import logging

from citywatch import app
from citywatch.console import emit, load_config
from citywatch.service import stop_on_signals
from detectors import backends
from detectors.base import BackendConfig

log = logging.getLogger(__name__)


def register(sub) -> None:
    """Add this part's sub-commands to the `citywatch` parser."""
    p = sub.add_parser("detect", help="run detector workers on the frames queue")
    p.add_argument("-n", "--workers", type=int, help="worker threads (default detectors.workers)")
    p.add_argument("--batch-size", type=int, help="frames per inference batch")
    p.add_argument("--weights", help="model weights (.onnx; .pt with --backend ultralytics)")
    p.add_argument("--backend", choices=sorted(backends.load_all()),
                   help="detector backend (default detectors.backend.type)")
    p.add_argument("--until-empty", action="store_true", help="stop when the queue is empty")
    p.set_defaults(func=detect)

    p = sub.add_parser("frames", help="frames queue: counts per status")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=frames_status)

    p = sub.add_parser("simulate-drone", help="fly a simulated drone over a street, publish frames")
    p.add_argument("--street", default="ST-004", help="registry street id")
    p.add_argument("--stalls", type=int, default=4, help="merchants with a stall outside")
    p.add_argument("--drone", default="UAV-01", help="drone id (registry)")
    p.add_argument("--alt", type=float, default=40.0, help="height above ground (m)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--realtime", action="store_true", help="publish at the frame interval")
    p.set_defaults(func=simulate_drone)

    p = sub.add_parser("simulate-cone", help="publish simulated cone-camera frames of a permit")
    p.add_argument("--permit", default="P-001", help="registry permit id")
    p.add_argument("--scenario", default="compliant",
                   choices=("compliant", "cone_fallen", "no_helmet", "fence_missing"))
    p.add_argument("--frames", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=simulate_cone)


def detect(args: argparse.Namespace) -> int:
    from detectors.worker import run_workers

    cfg = load_config(args)
    if args.batch_size is not None:
        cfg.detectors.batch_size = args.batch_size
    backend = cfg.detectors.backend
    if args.backend is not None and args.backend != backend.type:
        # the options both backends share carry over; the new one's own take defaults
        shared = backend.model_dump(include=set(BackendConfig.model_fields) - {"type"})
        backend = backends.load_all()[args.backend].config.model_validate(shared)
    if args.weights is not None:
        backend = backend.model_copy(update={"weights": args.weights})
    cfg.detectors.backend = backend
    db = app.open_database(cfg, name="citywatch-detect")
    try:
        run_workers(cfg.for_detectors(), db, stop_on_signals(), n=args.workers, until_empty=args.until_empty)
    finally:
        db.close()
    return 0


def frames_status(args: argparse.Namespace) -> int:
    from storage import frames as frames_repo

    cfg = load_config(args)
    with app.open_database(cfg) as db, db.connection() as conn:
        counts = frames_repo.status_counts(conn)
    emit(counts, args.json, "\n".join(f"{k:<12} {v:>10,}" for k, v in counts.items()))
    return 0


def _broker_url(cfg) -> str:
    if not cfg.mqtt.url:
        raise SystemExit("simulators need mqtt.url (or CITYWATCH_MQTT_URL) to reach the broker")
    return cfg.mqtt.url


def simulate_drone(args: argparse.Namespace) -> int:
    from simulators.drone import simulate_drone as fly

    cfg = load_config(args)
    flight = fly(_broker_url(cfg), cfg.mqtt.topic_prefix, cfg.resolve(cfg.registry.directory),
                 street_id=args.street, stalls=args.stalls, drone_id=args.drone, seed=args.seed,
                 realtime=args.realtime, alt_m=args.alt)
    print(f"{flight.drone_id} mission {flight.mission_id}: {len(flight.frames)} frames over "
          f"{flight.street_id}; stalls outside " + ", ".join(s.subject_id for s in flight.stalls()))
    return 0


def simulate_cone(args: argparse.Namespace) -> int:
    from simulators.cone import simulate_cone as publish

    cfg = load_config(args)
    frames = publish(_broker_url(cfg), cfg.mqtt.topic_prefix, cfg.resolve(cfg.registry.directory),
                     permit_id=args.permit, scenario=args.scenario, frames=args.frames,
                     seed=args.seed)
    print(f"{len(frames)} {args.scenario} frames from {frames[0].camera_id} at {args.permit}")
    return 0
