"""The shared words: one enum of device kinds, one name for a device id.

A device is always `device_id` (the registry's id: FM-00001, DM-001, NM-001, CC-001,
UAV-01), whatever kind it is. Kinds are stored and published as the enum's values.
"""

from __future__ import annotations

from enum import StrEnum

DeviceId = str


class DeviceKind(StrEnum):
    """What a registered device is. Sensor kinds (domain/sensors.py) publish readings;
    cameras and drones publish frames (drones also telemetry)."""

    FUME = "fume"  # kitchen oil-fume monitor
    DUST = "dust"  # construction-site dust monitor
    NOISE = "noise"  # site-boundary noise monitor
    CONE_CAMERA = "cone_camera"  # camera on a traffic cone at road works
    DRONE = "drone"
