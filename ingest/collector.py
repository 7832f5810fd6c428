"""The MQTT collector: messages in, committed rows out, acknowledged only after commit.

One paho-mqtt client per collector (QoS 1, fixed client id, persistent session, manual
acknowledgement) hands each message to a bounded queue; one writer thread takes batches
(closed by count, payload bytes or time), decodes them through the route table, writes
rows and dead letters in one transaction, commits, and only then acknowledges the
messages. A crash before the commit therefore loses nothing: the broker still holds the
unacknowledged messages in the session and sends them again, and identity (device, ts)
makes the repeat harmless.

Database loss: the batch is kept and retried with backoff until it commits; nothing is
acknowledged meanwhile. Broker loss: paho reconnects with backoff and the persistent
session resumes; acknowledgements of messages from a previous connection are not sent
(packet ids are per connection), those messages come again and count as duplicates.
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg_pool import PoolTimeout

from domain.records import DeadLetter
from ingest import layout, mqtturl
from ingest.decode import Address, Message, parse_topic
from ingest.errors import IngestError, Rejected
from ingest.metrics import CollectorMetrics
from ingest.routes import ROUTES, Accepted, Route
from storage import readings as store
from storage.db import Database
from storage.errors import StorageError

if TYPE_CHECKING:  # the face's model; a part never imports citywatch at run time
    from ingest.config import IngestSetup

log = logging.getLogger(__name__)

# Errors after which the same batch may well succeed later: connection loss, server restart,
# pool exhaustion. Anything else psycopg raises means this data cannot be written.
_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, StorageError)


class _Inbound(NamedTuple):
    # A tuple: made once per message on the network thread, where every microsecond counts.
    topic: str
    payload: bytes
    received_at: datetime
    received_mono: float
    mid: int
    qos: int
    generation: int


_PUBACK = struct.Struct("!BBH")


class _Client(mqtt.Client):
    """paho's client, plus acknowledgements sent as one write per batch."""

    def ack_in_order(self, mids: Sequence[int]) -> None:
        """PUBACK the QoS 1 messages `mids`, in this order: the packets go out as one write,
        with one wake-up of the network thread (paho's ack() costs a write and a wake-up
        per message). MQTT 5 allows the short form without reason code for success."""
        if mids:
            packet = b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids])
            self._packet_queue(PUBACK, packet, 0, 1)


@dataclass(frozen=True, slots=True)
class Committed:
    """What one commit stored: handed to `on_commit` observers (benchmarks, the service)."""

    records: tuple[Any, ...]
    dead_letters: int
    committed_at: datetime
    committed_mono: float


@dataclass(frozen=True, slots=True)
class CollectorStats:
    """A snapshot of a collector's counters."""

    client_id: str
    connected: bool
    connects: int
    received: int
    stored: int
    duplicates: int
    dead_letters: dict[str, int]
    batches: int
    acked: int
    stale_acks_skipped: int
    db_errors: int
    queued: int
    commit_latency_p50_s: float | None  # receive -> commit (this collector's own delay)
    commit_latency_p99_s: float | None
    event_to_commit_p50_s: float | None  # device ts -> commit (what the device waited,
    event_to_commit_p99_s: float | None  # queueing at the broker included; device clocks)
    failure: str | None = None  # why the collector stopped by itself (None: it did not)

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead_letters.values())


def _percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


@dataclass
class _Counters:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    batches: int = 0
    acked: int = 0
    stale_acks_skipped: int = 0
    db_errors: int = 0
    connects: int = 0
    dead_letters: Counter = field(default_factory=Counter)
    latencies: deque = field(default_factory=lambda: deque(maxlen=100_000))
    event_latencies: deque = field(default_factory=lambda: deque(maxlen=100_000))


class Collector:
    """Subscribe to every contract topic under the prefix and store what arrives.

    `start()` connects and returns; `stop(timeout)` stops taking messages, commits and
    acknowledges what it holds, and disconnects (the session keeps anything not taken).
    """

    def __init__(self, config: IngestSetup, db: Database, *, client_id: str | None = None,
                 routes: dict[str, Route] | None = None,
                 on_commit: Callable[[Committed], None] | None = None,
                 metrics: CollectorMetrics | None = None,
                 partition: tuple[int, int] = (0, 1)):
        self.config = config
        self.metrics = metrics if metrics is not None else CollectorMetrics()
        self.db = db
        self.partition, self.partitions = partition
        if not 0 <= self.partition < self.partitions:
            raise IngestError(f"partition {self.partition} is not in 0..{self.partitions - 1}")
        if self.partitions > 1 and config.mqtt.shared_group:
            raise IngestError("a shared subscription group and device partitions exclude each "
                              "other: set mqtt.shared_group empty to run partitions")
        # One persistent session per partition: its subscriptions and queue are that
        # partition's, so the id says which.
        suffix = f"-p{self.partition}of{self.partitions}" if self.partitions > 1 else ""
        self.client_id = (client_id or config.mqtt.client_id) + suffix
        self.routes = ROUTES if routes is None else routes
        self.on_commit = on_commit
        if not config.mqtt.url:
            raise IngestError("no broker URL: configure mqtt.url or start one with "
                              "ingest.broker.ensure_broker")
        self.address = mqtturl.parse(config.mqtt.url)
        # One hop between the network thread and the writers, bounded by counters: the
        # network thread alone writes _in_*, writers (under _batch_lock) alone write _out_*.
        self._queue: queue.SimpleQueue[_Inbound] = queue.SimpleQueue()
        self._in_count = self._in_bytes = 0
        self._out_count = self._out_bytes = 0
        self._done_count = 0  # messages whose batch is finished (under _lock)
        self.metrics.watch_queue(lambda: self._in_count - self._out_count)
        self._lock = threading.Lock()
        self._counts = _Counters()
        self._generation = 0
        self._connected = threading.Event()
        self._closing = threading.Event()  # take no new messages
        self._abandon = threading.Event()  # stop retrying the database
        self._writers: list[threading.Thread] = []
        self._batch_lock = threading.Lock()  # batches are cut in receive order
        self._batch_seq = 0
        self._ack_turn = threading.Condition()  # and acknowledged in that order
        self._ack_next = 0
        self._devices: dict[str, str] = {}
        self._devices_loaded = float("-inf")
        self._filters: list[str] = []  # what this collector subscribes to (ingest/layout.py)
        self._refresh_lock = threading.Lock()
        self._addresses: dict[str, Address] = {}
        self.failed = threading.Event()  # a thread could not go on: the process must stop
        self.failure: str | None = None
        self._client = self._make_client()

    # -- MQTT ------------------------------------------------------------------------------

    @property
    def subscription(self) -> str:
        """What this collector subscribes to, in words (for logs)."""
        if self.partitions > 1:
            return (f"{len(self._filters)} device filters of partition {self.partition} of "
                    f"{self.partitions} under {self.config.mqtt.topic_prefix}/")
        return self._filters[0] if self._filters else self._layout_filters({})[0]

    @property
    def topic_filters(self) -> tuple[str, ...]:
        """The filters this collector subscribes to (ingest/layout.py)."""
        return tuple(self._filters)

    def _layout_filters(self, devices: dict[str, str]) -> list[str]:
        m = self.config.mqtt
        return layout.topic_filters(m.topic_prefix, shared_group=m.shared_group,
                                    partitions=self.partitions, partition=self.partition,
                                    devices=devices)

    def _subscribe(self, client: mqtt.Client, filters: list[str]) -> None:
        # One SUBSCRIBE per thousand filters keeps each packet small.
        for i in range(0, len(filters), 1000):
            client.subscribe([(f, 1) for f in filters[i:i + 1000]])

    def _refresh_devices(self, conn: psycopg.Connection) -> None:
        """Reload the registry; a partitioned collector subscribes to its new devices."""
        self._devices = store.device_kinds(conn)
        self._devices_loaded = time.monotonic()
        if self.partitions > 1:
            current = set(self._filters)
            new = [f for f in self._layout_filters(self._devices) if f not in current]
            if new:
                self._filters = sorted(current | set(new))
                if self._connected.is_set():
                    log.info("collector %s: subscribing to %d new devices", self.client_id,
                             len(new))
                    self._subscribe(self._client, new)

    def _make_client(self) -> mqtt.Client:
        m = self.config.mqtt
        v5 = m.protocol == "5"
        client = _Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        mqtturl.configure(client, self.address, m.ca_file)
        client.reconnect_delay_set(m.reconnect_min_s, m.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused collector %s: %s", self.address, self.client_id,
                      reason_code)
            return
        with self._lock:
            self._generation += 1
            self._counts.connects += 1
        log.info("collector %s connected to %s (session present: %s)", self.client_id,
                 self.address, flags.session_present)
        if self._counts.connects > 1 and not flags.session_present:
            log.warning("collector %s: the broker kept no session (expired or broker state "
                        "lost); messages sent while disconnected did not wait for it",
                        self.client_id)
        with self._lock:
            self._suback_pending = (len(self._filters) + 999) // 1000
        if not self._filters:
            self._connected.set()
        self._subscribe(client, self._filters)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [rc for rc in reason_codes if rc.is_failure]
        if refused:
            # without its subscription the collector would sit connected and receive nothing
            self._fail(f"subscription {self.subscription} refused by the broker: {refused}")
            return
        with self._lock:
            self._suback_pending -= 1
            done = self._suback_pending <= 0
        if done:
            self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if not self._closing.is_set():
            log.warning("collector %s lost the broker (%s); reconnecting", self.client_id,
                        reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            self._take(msg)
        except Exception as exc:  # paho would end its network loop: stop loudly instead
            self._fail(f"MQTT thread: {type(exc).__name__}: {exc}", exc)

    def _take(self, msg: mqtt.MQTTMessage) -> None:
        if self._closing.is_set():
            return  # not acknowledged: the broker keeps it for the next session
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers check topics are UTF-8; kept readable if not
            topic = msg._topic.decode("utf-8", "backslashreplace")
        payload = msg.payload
        size = len(payload)
        self._counts.received += 1  # written by this (the network) thread only
        self.metrics.message_received()
        ic = self.config.ingest
        # Bounded by count and by bytes (frames are large), always admitting one message.
        # When full, this thread waits, and the broker stops sending once Receive Maximum
        # messages are unacknowledged.
        while self._in_count > self._out_count and (
                self._in_count - self._out_count >= ic.queue_size
                or self._in_bytes - self._out_bytes + size > ic.queue_max_bytes):
            if self._abandon.wait(0.002):
                return
        self._in_bytes += size
        self._in_count += 1  # before the put: a writer never counts out what is not in
        self._queue.put(_Inbound(topic, payload, datetime.now(UTC), time.monotonic(), msg.mid,
                                 msg.qos, self._generation))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, wait_s: float = 10.0) -> Collector:
        """Connect, subscribe and start the writer; raise IngestError if the broker cannot be
        reached within wait_s."""
        m = self.config.mqtt
        props = None
        if m.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = m.session_expiry_s
            props.ReceiveMaximum = m.receive_maximum
        if self.partitions > 1:
            with self.db.connection() as conn:
                self._refresh_devices(conn)
        else:
            self._filters = self._layout_filters({})
        if not self._filters:
            log.warning("collector %s: partition %d of %d holds no registered device yet",
                        self.client_id, self.partition, self.partitions)
        self._suback_pending = 0
        self._writers = [threading.Thread(target=self._write_loop, daemon=True,
                                          name=f"writer-{self.client_id}-{i}")
                         for i in range(self.config.ingest.writers)]
        for w in self._writers:
            w.start()
        try:
            self._client.connect(self.address.host, self.address.port, keepalive=m.keepalive_s,
                                 clean_start=False if m.protocol == "5" else
                                 mqtt.MQTT_CLEAN_START_FIRST_ONLY, properties=props)
        except OSError as exc:
            self._abandon.set()
            self._closing.set()
            raise IngestError(f"cannot reach the broker at {self.address}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(wait_s):
            self.stop(0)
            raise IngestError(f"collector {self.client_id} not subscribed at {self.address} "
                              f"within {wait_s}s")
        return self

    def wait_idle(self, timeout: float) -> bool:
        """Block until the queue is empty and nothing awaits commit (tests, demo)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._done_count == self._in_count:
                return True
            time.sleep(0.02)
        return False

    def stop(self, timeout: float = 10.0) -> CollectorStats:
        """Stop taking messages, commit and acknowledge what is held (for up to `timeout`
        seconds), then disconnect. What is not committed by then stays with the broker."""
        self._closing.set()
        deadline = time.monotonic() + timeout
        for w in self._writers:
            w.join(max(0.0, deadline - time.monotonic()))
        if any(w.is_alive() for w in self._writers):
            log.warning("collector %s: batch not committed within %ss; leaving it to the "
                        "broker to redeliver", self.client_id, timeout)
            self._abandon.set()
            with self._ack_turn:
                self._ack_turn.notify_all()
            for w in self._writers:
                w.join(5)
        self._abandon.set()
        self._client.disconnect()
        self._client.loop_stop()
        return self.stats()

    def stats(self) -> CollectorStats:
        with self._lock:
            c = self._counts
            lat = sorted(c.latencies)
            event = sorted(c.event_latencies)
            return CollectorStats(
                self.client_id, self._connected.is_set(), c.connects, c.received, c.stored,
                c.duplicates, dict(c.dead_letters), c.batches, c.acked, c.stale_acks_skipped,
                c.db_errors, self._in_count - self._out_count, _percentile(lat, 0.5), _percentile(lat, 0.99),
                _percentile(event, 0.5), _percentile(event, 0.99), self.failure)

    def _fail(self, why: str, exc: BaseException | None = None) -> None:
        """A thread cannot go on: stop taking and acknowledging, and say so. What is not
        acknowledged stays with the broker; `failed` tells the process to exit non-zero
        (a supervisor restarts it) instead of hanging with a thread missing."""
        if self.failure is None:
            self.failure = why
        log.critical("collector %s cannot go on: %s", self.client_id, why, exc_info=exc)
        self._closing.set()
        self._abandon.set()
        self.failed.set()
        with self._ack_turn:
            self._ack_turn.notify_all()

    # -- writer ----------------------------------------------------------------------------

    def _next_batch(self) -> list[_Inbound]:
        ic = self.config.ingest
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch, size = [first], len(first.payload)
        deadline = time.monotonic() + ic.batch_interval_s
        while len(batch) < ic.batch_size and size < ic.batch_max_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            batch.append(item)
            size += len(item.payload)
        self._out_bytes += size
        self._out_count += len(batch)
        return batch

    def _write_loop(self) -> None:
        try:
            self._write_batches()
        except BaseException as exc:  # nothing per message gets here: see _commit
            self._fail(f"{threading.current_thread().name}: {type(exc).__name__}: {exc}", exc)

    def _write_batches(self) -> None:
        # Several writers: one decodes and COPYs while another waits on the database.
        while True:
            self._maybe_refresh()
            with self._batch_lock:
                batch = self._next_batch()
                seq = self._batch_seq
                if batch:
                    self._batch_seq += 1
            if not batch:
                if self._closing.is_set():
                    return
                continue
            try:
                self._commit_with_retry(batch, seq)
            finally:
                with self._lock:
                    self._done_count += len(batch)
            if self._abandon.is_set():
                return

    def _maybe_refresh(self) -> None:
        """A partitioned collector hears nothing from devices it does not subscribe to, so it
        looks for newly registered devices every ingest.device_refresh_s."""
        if self.partitions <= 1 or time.monotonic() - self._devices_loaded < \
                self.config.ingest.device_refresh_s:
            return
        if not self._refresh_lock.acquire(blocking=False):
            return
        try:
            with self.db.connection() as conn:
                self._refresh_devices(conn)
        except _TRANSIENT as exc:
            self._devices_loaded = time.monotonic()  # try again after the interval
            log.warning("collector %s: registry not reloaded (%s)", self.client_id, exc)
        finally:
            self._refresh_lock.release()

    def _commit_with_retry(self, batch: list[_Inbound], seq: int) -> None:
        ic = self.config.ingest
        delay = ic.db_retry_min_s
        committed = None
        while committed is None:
            try:
                committed = self._commit(batch)
            except _TRANSIENT as exc:
                with self._lock:
                    self._counts.db_errors += 1
                if self._abandon.is_set():
                    log.warning("collector %s: giving up on a batch of %d (%s); the broker "
                                "redelivers it", self.client_id, len(batch), exc)
                    break
                log.warning("collector %s: database unavailable (%s); retrying a batch of %d "
                            "in %.1fs", self.client_id, exc, len(batch), delay)
                self._abandon.wait(delay)
                delay = min(delay * 2, ic.db_retry_max_s)
        # MQTT wants PUBACKs in the order the PUBLISHes came: wait for the earlier batches.
        with self._ack_turn:
            while self._ack_next != seq and not self._abandon.is_set():
                self._ack_turn.wait(0.5)
            if committed is not None and self._ack_next == seq:
                self._ack(batch)
            self._ack_next = max(self._ack_next, seq + 1)
            self._ack_turn.notify_all()
        if committed is not None and self.on_commit is not None:
            self.on_commit(committed)

    def _ack(self, batch: list[_Inbound]) -> None:
        with self._lock:
            generation = self._generation
        mids = [item.mid for item in batch if item.qos == 1 and item.generation == generation]
        # a packet id of a dead connection means nothing on this one: the broker resends
        skipped = sum(1 for item in batch if item.qos and item.generation != generation)
        self._client.ack_in_order(mids)
        acked = len(mids)
        with self._lock:
            self._counts.acked += acked
            self._counts.stale_acks_skipped += skipped
        self.metrics.batch_finished(len(batch), acked)

    def _device_kind(self, conn: psycopg.Connection, device_id: str) -> str | None:
        kind = self._devices.get(device_id)
        if kind is None and time.monotonic() - self._devices_loaded > \
                self.config.ingest.device_refresh_s:
            self._refresh_devices(conn)
            kind = self._devices.get(device_id)
        return kind

    def _decode(self, conn: psycopg.Connection, item: _Inbound) -> tuple[Route, Accepted]:
        address = self._addresses.get(item.topic)
        if address is None:
            address = parse_topic(self.config.mqtt.topic_prefix, item.topic)
            if len(self._addresses) > 100_000:  # bounded: one entry per device and kind
                self._addresses.clear()
            self._addresses[item.topic] = address
        route = self.routes.get(address.kind)
        if route is None:
            raise Rejected("unsupported", f"no handler for {address.kind!r} messages yet")
        kind = self._device_kind(conn, address.device_id)
        if kind is None:
            raise Rejected("unknown_device", f"{address.device_id!r} is not in the registry")
        if route.device_kind is not None and kind != route.device_kind:
            raise Rejected("wrong_device_kind",
                           f"{address.device_id!r} is a {kind} device, the topic is for "
                           f"{route.device_kind}")
        message = Message(item.topic, item.payload, item.received_at, address)
        try:
            return route, Accepted(message, route.decode(message, self.config))
        except (Rejected, psycopg.Error):
            raise
        except Exception as exc:  # a defect met by this message: keep it, go on
            log.exception("collector %s: decoding a message on %s failed", self.client_id,
                          item.topic)
            raise Rejected("internal_error", f"{type(exc).__name__}: {exc}") from exc

    def _dead_letter(self, item: _Inbound, rejected: Rejected) -> DeadLetter:
        # The detail quotes the database or the payload: make it storable text.
        detail = rejected.detail[:2000].encode("utf-8", "backslashreplace").decode("utf-8")
        return DeadLetter(item.received_at, item.topic, item.payload, rejected.reason,
                          detail.replace("\x00", "\\0"), self.client_id)

    def _commit(self, batch: list[_Inbound]) -> Committed:
        try:
            return self._commit_once(batch)
        except _TRANSIENT:
            raise
        except Exception as exc:
            # Refused: do it again with a savepoint per write, halving what is refused.
            log.warning("collector %s: the database refused part of a batch of %d (%s); "
                        "isolating it", self.client_id, len(batch), exc)
        try:
            return self._commit_once(batch, careful=True)
        except _TRANSIENT:
            raise
        except Exception as exc:
            # Refused outside any one write (the commit itself): halve the batch.
            if len(batch) == 1:
                return self._commit_once(batch, refused_by_db=exc)
            log.warning("collector %s: a batch of %d was refused (%s); committing it in halves",
                        self.client_id, len(batch), exc)
            half = len(batch) // 2
            parts = [self._commit(batch[:half]), self._commit(batch[half:])]
            return Committed(tuple(r for p in parts for r in p.records),
                             sum(p.dead_letters for p in parts), parts[-1].committed_at,
                             parts[-1].committed_mono)

    def _write_group(self, conn: psycopg.Connection, route: Route, accepted: list[Accepted],
                     items: list[_Inbound], letters: list[DeadLetter], records: list[Any],
                     careful: bool) -> tuple[int, int]:
        """Write one route's records. Careful (the batch was refused once): under a
        savepoint, and when the database refuses the write, find the refused records by
        halving (log2(n) failed tries for one bad record, not n commits) and dead-letter them
        as storage_rejected. Returns (stored, duplicates)."""
        if not careful:
            outcome = route.write(conn, accepted)
            return self._outcome(outcome, accepted, items, letters, records)
        try:
            with conn.transaction():
                outcome = route.write(conn, accepted)
        except _TRANSIENT:
            raise
        except Exception as exc:
            if conn.broken or conn.closed:
                raise psycopg.OperationalError(f"connection lost while writing: {exc}") from exc
            if len(accepted) == 1:
                log.warning("collector %s: the database refused a %s record: %s",
                            self.client_id, route.kind, exc)
                letters.append(self._dead_letter(items[0], Rejected("storage_rejected",
                                                                    str(exc)[:500])))
                return 0, 0
            half = len(accepted) // 2
            a = self._write_group(conn, route, accepted[:half], items[:half], letters, records,
                                  True)
            b = self._write_group(conn, route, accepted[half:], items[half:], letters, records,
                                  True)
            return a[0] + b[0], a[1] + b[1]
        return self._outcome(outcome, accepted, items, letters, records)

    def _outcome(self, outcome, accepted: list[Accepted], items: list[_Inbound],
                 letters: list[DeadLetter], records: list[Any]) -> tuple[int, int]:
        refused = dict(outcome.refused)
        for i, a in enumerate(accepted):
            if i in refused:
                letters.append(self._dead_letter(items[i], refused[i]))
            else:
                records.append(a.record)
        return outcome.stored, outcome.duplicates

    def _commit_once(self, batch: list[_Inbound], refused_by_db: Exception | None = None,
                     careful: bool = False) -> Committed:
        letters: list[DeadLetter] = []
        stored = duplicates = 0
        records: list[Any] = []
        with self.db.connection() as conn, conn.transaction():
            if refused_by_db is not None:
                letters = [self._dead_letter(batch[0], Rejected("storage_rejected",
                                                                str(refused_by_db)[:500]))]
            else:
                groups: dict[str, tuple[Route, list[Accepted], list[_Inbound]]] = {}
                for item in batch:
                    try:
                        route, accepted = self._decode(conn, item)
                    except Rejected as rejected:
                        letters.append(self._dead_letter(item, rejected))
                        continue
                    group = groups.setdefault(route.kind, (route, [], []))
                    group[1].append(accepted)
                    group[2].append(item)
                for route, accepted, items in groups.values():
                    s, d = self._write_group(conn, route, accepted, items, letters, records,
                                             careful)
                    stored += s
                    duplicates += d
            store.insert_dead_letters(conn, letters)
        committed_at = datetime.now(UTC)
        now_mono = time.monotonic()
        event_ts = [ts for ts in map(_event_ts, records) if ts is not None]
        received_mono = [item.received_mono for item in batch]
        with self._lock:
            c = self._counts
            c.stored += stored
            c.duplicates += duplicates
            c.batches += 1
            c.dead_letters.update(d.reason for d in letters)
            c.latencies.extend(now_mono - t for t in received_mono)
            c.event_latencies.extend((committed_at - ts).total_seconds() for ts in event_ts)
        self.metrics.batch_committed(stored, duplicates, [d.reason for d in letters],
                                     event_ts, received_mono, now_mono)
        return Committed(tuple(records), len(letters), committed_at, now_mono)


def _event_ts(record: Any) -> datetime | None:
    """The device time of a stored record (readings, telemetry, frames); None for status."""
    ts = getattr(record, "ts", None)
    if ts is None and hasattr(record, "frame"):
        ts = record.frame.ts
    return ts
