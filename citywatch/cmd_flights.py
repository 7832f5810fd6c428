"""Drone operators' commands: `citywatch flights ...` and the MAVLink vehicle simulator."""

from __future__ import annotations

import argparse
import logging

from citywatch.cli import load_config
from citywatch.service import stop_on_signals

log = logging.getLogger(__name__)


def register(sub) -> None:
    """Add this part's sub-commands to the `citywatch` parser."""
    p = sub.add_parser("simulate-vehicle",
                       help="a simulated ArduPilot Copter on MAVLink/UDP for a registry drone")
    p.add_argument("--drone", default="UAV-03", help="drone id (registry)")
    p.add_argument("--speedup", type=float, default=1.0, help="vehicle time runs K times wall time")
    p.add_argument("--battery", type=float, default=100.0, help="battery at start (%%)")
    p.add_argument("--street", help="put stalls and traffic on this registry street")
    p.add_argument("--stalls", type=int, default=4, help="stalls on --street")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=simulate_vehicle)


def simulate_vehicle(args: argparse.Namespace) -> int:
    from domain.registry import load as load_registry
    from simulators import vehicle
    from simulators.drone import FRAME, place_street_objects
    from simulators.scenes import streets_from_registry

    cfg = load_config(args)
    registry = load_registry(cfg.resolve(cfg.registry.directory))
    objects = ([o.scene for o in place_street_objects(registry, args.street, stalls=args.stalls,
                                                      seed=args.seed)] if args.street else [])
    vcfg = vehicle.config_for(registry, args.drone, speedup=args.speedup,
                              battery_pct=args.battery, mqtt_url=cfg.mqtt.url or None,
                              topic_prefix=cfg.mqtt.topic_prefix, objects=objects,
                              streets=streets_from_registry(registry.streets, FRAME),
                              seed=args.seed)
    if not vcfg.mqtt_url:
        log.warning("no mqtt.url configured: the camera takes no frames to the pipeline")
    log.info("%s: ArduCopter simulator sending to %s:%d (ground station: %s), speed-up %g",
             args.drone, vcfg.gcs_host, vcfg.gcs_port,
             next(d for d in registry.devices if d.device_id == args.drone).props["connection"],
             args.speedup)
    return vehicle.run(vcfg, stop_on_signals())
