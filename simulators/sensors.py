"""Fume and dust device fleets (and drone telemetry) over MQTT, driven by a scenario.

One paho client plays the whole fleet: it publishes each scenario message at QoS 1 on
`<prefix>/<topic suffix>`, paced so that event time runs `speed` times faster than wall
time (`speed=None`: as fast as the broker takes them), or at a fixed `rate` of messages
per second. `publish` returns when the broker has acknowledged every message.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest import mqtturl
from ingest.errors import IngestError
from simulators.scenario import SimMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PublishStats:
    published: int
    by_expected: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.published / self.wall_s if self.wall_s > 0 else 0.0


class Publisher:
    """A connected QoS 1 publisher on one broker (a fleet of simulated devices)."""

    def __init__(self, url: str, prefix: str, *, client_id: str | None = None,
                 ca_file: str | None = None, max_inflight: int = 1000, protocol: str = "auto"):
        self.prefix = prefix.rstrip("/")
        self.address = mqtturl.parse(url)
        self.client_id = client_id or f"citywatch-sim-{uuid.uuid4().hex[:8]}"
        self.ca_file = ca_file
        self.max_inflight = max_inflight
        # "auto": MQTT 5, or 3.1.1 where the broker refuses 5 (the embedded amqtt broker).
        self.protocol = protocol
        self._acked = 0
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._refused: str | None = None
        self.client = self._make_client("3.1.1" if protocol == "3.1.1" else "5")

    def _make_client(self, protocol: str) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311)
        mqtturl.configure(client, self.address, self.ca_file)
        client.max_inflight_messages_set(self.max_inflight)
        client.on_publish = self._on_publish
        client.on_connect = self._on_connect
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
        self._connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cond:
            self._acked += 1
            self._cond.notify_all()

    def _connect(self) -> None:
        self._connected.clear()
        self._refused = None
        try:
            self.client.connect(self.address.host, self.address.port, keepalive=30)
        except OSError as exc:
            raise IngestError(f"simulator cannot reach the broker at {self.address}: {exc}") from exc
        self.client.loop_start()
        if not self._connected.wait(10) or self._refused:
            self.client.loop_stop()
            raise IngestError(f"simulator not connected to {self.address}: "
                              f"{self._refused or 'no answer within 10 s'}")

    def __enter__(self) -> Publisher:
        try:
            self._connect()
        except IngestError:
            if self.protocol != "auto" or self._refused is None:
                raise
            log.info("broker %s refused MQTT 5 (%s); publishing with 3.1.1", self.address,
                     self._refused)
            self.client = self._make_client("3.1.1")
            self._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def send(self, topic_suffix: str, payload: bytes, *, qos: int = 1) -> None:
        self.client.publish(f"{self.prefix}/{topic_suffix}", payload, qos=qos)

    def wait_acked(self, count: int, timeout: float = 120.0) -> bool:
        """Block until the broker acknowledged `count` messages in all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._acked < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def publish(self, messages: Iterable[SimMessage], *, speed: float | None = None,
                rate: float | None = None, stop: threading.Event | None = None,
                progress: Callable[[int], None] | None = None,
                window: int = 5000) -> PublishStats:
        """Publish messages in order, paced by event time (`speed`) or by `rate` per second.

        At most `window` messages wait for the broker's acknowledgement at any time, so a
        fast generator cannot pile up unbounded in memory."""
        start_wall = time.monotonic()
        first_event = None
        counts: Counter[str] = Counter()
        n = 0
        base = self._acked
        for m in messages:
            if stop is not None and stop.is_set():
                break
            if speed:
                first_event = first_event or m.at
                due = start_wall + (m.at - first_event).total_seconds() / speed
            elif rate:
                due = start_wall + n / rate
            else:
                due = 0.0
            delay = due - time.monotonic()
            if delay > 0:
                if stop is not None:
                    if stop.wait(delay):
                        break
                else:
                    time.sleep(delay)
            if n - (self._acked - base) >= window:
                self.wait_acked(base + n - window // 2)
            self.send(m.topic_suffix, m.payload)
            counts[m.expected] += 1
            n += 1
            if progress is not None and n % 10000 == 0:
                progress(n)
        if not self.wait_acked(base + n):
            raise IngestError(f"broker acknowledged {self._acked - base} of {n} messages")
        return PublishStats(n, dict(counts), time.monotonic() - start_wall)


def publish(url: str, prefix: str, messages: Iterable[SimMessage], *, speed: float | None = None,
            rate: float | None = None, stop: threading.Event | None = None,
            ca_file: str | None = None, client_id: str | None = None,
            protocol: str = "auto") -> PublishStats:
    """Connect, publish every message (QoS 1), wait for the broker's acks, disconnect."""
    with Publisher(url, prefix, client_id=client_id, ca_file=ca_file, protocol=protocol) as pub:
        return pub.publish(messages, speed=speed, rate=rate, stop=stop)
