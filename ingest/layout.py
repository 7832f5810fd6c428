"""Which topics a collector subscribes to: the subscription layout.

Mosquitto 2.0 keeps a client's plain subscriptions in its persistence file but not its
shared (`$share/...`) ones: after a broker restart a collector's session comes back
without its shared subscription, and every message published between the restart and the
collector's re-subscription matches no subscriber and is dropped (measured in
tests/ingest/test_broker_restart.py: 0 of 100 arrive through a shared subscription, 100 of
100 through a plain one). So collectors use plain, persistent subscriptions:

- one collector (`mqtt.partitions` = 1): `<prefix>/#`;
- N collectors: the registered devices are split by a stable hash of the device id
  (`partition_of`), and collector i subscribes to `<prefix>/+/<device>/#` for each device
  of partition i. Every message of a registered device has exactly one subscriber, whose
  session keeps it across broker restarts. Messages of unregistered devices match no
  filter; the broker's ACL (generated from the same registry) refuses them at publish.

`mqtt.shared_group` still selects `$share/<group>/<prefix>/#` for brokers that persist
shared subscriptions (see docs/ingest.md on clustered brokers).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

WILDCARDS = frozenset("+#/")


def partition_of(device_id: str, partitions: int) -> int:
    """The partition (0..partitions-1) a device's messages go to: stable across processes,
    machines and Python versions (CRC-32 of the UTF-8 id, not Python's salted hash)."""
    return zlib.crc32(device_id.encode("utf-8")) % partitions


def device_filter(prefix: str, device_id: str) -> str:
    """The one topic filter that matches every topic of a device under the prefix."""
    return f"{prefix.rstrip('/')}/+/{device_id}/#"


def subscribable(device_id: str) -> bool:
    """A device id can appear in a topic filter (no wildcard or level separator, not empty)."""
    return bool(device_id) and not (WILDCARDS & set(device_id)) and "\x00" not in device_id


def topic_filters(prefix: str, *, shared_group: str | None, partitions: int, partition: int,
                  devices: Iterable[str] = ()) -> list[str]:
    """The filters of collector `partition` of `partitions` (devices: the registered ids)."""
    everything = f"{prefix.rstrip('/')}/#"
    if shared_group:
        return [f"$share/{shared_group}/{everything}"]
    if partitions <= 1:
        return [everything]
    if not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} is not in 0..{partitions - 1}")
    return sorted(device_filter(prefix, d) for d in devices
                  if subscribable(d) and partition_of(d, partitions) == partition)
