"""A simulated ArduCopter per test on a free UDP port, and a registry whose drone points at it."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from domain.paths import PROJECT_ROOT
from domain.registry import Registry
from domain.registry import load as load_registry
from flights.config import FlightsConfig
from flights.operations import Context
from simulators.vehicle import SimVehicle, config_for

REGISTRY_DIR = PROJECT_ROOT / "configs" / "registry"
DRONE = "UAV-03"
SPEEDUP = 40.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def registry_with(port: int, device_id: str = DRONE) -> Registry:
    """The demo registry with one drone's connection string moved to `port`."""
    reg = load_registry(REGISTRY_DIR)
    devices = tuple(dataclasses.replace(d, props=d.props | {"connection": f"udp:127.0.0.1:{port}"})
                    if d.device_id == device_id else d for d in reg.devices)
    return dataclasses.replace(reg, devices=devices)


class Vehicles:
    """Start simulated vehicles for registry drones; stop them all after the test."""

    def __init__(self):
        self.started: list[SimVehicle] = []

    def start(self, registry: Registry, device_id: str = DRONE, **overrides) -> SimVehicle:
        params = {"LAND_SPEED": 150.0} | overrides.pop("params", {})  # quicker last 10 m
        cfg = config_for(registry, device_id, **({"speedup": SPEEDUP, "params": params} | overrides))
        sim = SimVehicle(cfg).start()
        self.started.append(sim)
        return sim

    def stop(self) -> None:
        for sim in self.started:
            sim.stop()


@pytest.fixture
def vehicles():
    v = Vehicles()
    yield v
    v.stop()


@pytest.fixture
def flight_cfg() -> FlightsConfig:
    return FlightsConfig(connect_timeout_s=10, link_timeout_s=1.0, sortie_timeout_s=60,
                         allow_night=True)


def context(cfg: FlightsConfig, registry: Registry) -> Context:
    return Context.load(cfg, REGISTRY_DIR, registry)
