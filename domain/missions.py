"""The identity of a MAVLink mission, computed the same way on both ends of the link.

A drone's camera tags each frame with the `mission_id` of the mission it is flying; the
ground station computes the same id from the mission it reads back after uploading it,
so a sortie finds its frames without either side inventing a shared secret. The id is a
CRC-32 over each item's command, frame, parameters and position as the MISSION_ITEM
message carries them (float32), so it does not depend on which form (MISSION_ITEM or
MISSION_ITEM_INT) carried the upload. Item 0 (home, rewritten by the vehicle) is left out.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

_ITEM = struct.Struct("<HB7f")


def mission_id(items: Iterable[tuple[int, int, float, float, float, float, float, float, float]]) -> str:
    """`MSN-xxxxxxxx` for mission items (command, frame, p1, p2, p3, p4, lat, lon, alt), home excluded."""
    crc = 0
    for command, frame, *values in items:
        crc = zlib.crc32(_ITEM.pack(int(command), int(frame), *(float(v) for v in values)), crc)
    return f"MSN-{crc:08x}"
