"""A simulated ArduCopter per test on a free UDP port, and a registry whose drone points at it."""

from __future__ import annotations

import pytest

from domain.paths import PROJECT_ROOT
from domain.registry import Registry
from domain.registry import load as load_registry
from flights.config import FlightsConfig
from flights.operations import Context
from simulators.vehicle import SimVehicle, config_for, local_fleet

REGISTRY_DIR = PROJECT_ROOT / "configs" / "registry"
DRONE = "UAV-03"
SPEEDUP = 40.0


def registry_with(device_id: str = DRONE) -> Registry:
    """The demo registry with one drone's connection string moved to a free port."""
    return local_fleet(load_registry(REGISTRY_DIR), [device_id])


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
        """Stop every vehicle, then raise the first one's failure (one failing must not leave
        the others flying on their ports)."""
        failures = []
        for sim in self.started:
            try:
                sim.stop()
            except RuntimeError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]


@pytest.fixture
def vehicles():
    v = Vehicles()
    yield v
    v.stop()


@pytest.fixture
def flight_cfg() -> FlightsConfig:
    return FlightsConfig(connect_timeout_s=10, link_timeout_s=2.5, sortie_timeout_s=60,
                         allow_night=True)


def context(cfg: FlightsConfig, registry: Registry) -> Context:
    return Context.load(cfg, REGISTRY_DIR, registry)
