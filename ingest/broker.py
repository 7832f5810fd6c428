"""The broker a citywatch process talks to: the configured one, or a private one.

With no URL configured, `ensure_broker` starts a private Mosquitto on a free loopback port
(configuration and persistence under the data directory) when the `mosquitto` binary is
installed, and otherwise an embedded amqtt broker in a thread. The private Mosquitto
admits no anonymous client: every registered device, the collector and one simulator
publisher get accounts (ingest/brokerauth.py), generated once under the data directory
(`mosquitto/accounts.json`, mode 0600), and each device may publish on its own topics
only. The embedded amqtt fallback has no ACLs: it is for machines without Mosquitto. amqtt speaks MQTT 3.1.1
only and has no shared subscriptions, so `BrokerHandle.apply` adapts the configuration to
what the broker can do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from ingest import brokerauth, mqtturl
from ingest.brokerauth import PrivateAccounts
from ingest.errors import IngestError

if TYPE_CHECKING:
    from ingest.config import IngestSetup

log = logging.getLogger(__name__)

C = TypeVar("C", bound=BaseModel)  # a configuration with an `mqtt` section

PUBLISHER = "citywatch-simulator"  # the private broker's account for simulated devices


@dataclass
class BrokerHandle:
    """A broker URL and how to release what was started for it.

    `url` is the collector's (with its credentials on a private broker), `publisher_url`
    the simulators'. Neither may be logged as is: use `mqtturl.redact`.
    """

    url: str = field(repr=False)
    kind: str  # external | mosquitto | amqtt
    _close: object = field(default=None, repr=False)
    publisher_url: str = field(default="", repr=False)
    accounts: PrivateAccounts | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.publisher_url = self.publisher_url or self.url

    def account_url(self, username: str) -> str:
        """The URL a device (or any account) of the private broker logs in with."""
        if self.accounts is None:
            return self.url
        return mqtturl.with_credentials(self.url, username,
                                        self.accounts.accounts[username].password)

    @property
    def mqtt5(self) -> bool:
        return self.kind != "amqtt"

    def apply(self, config: C) -> C:
        """A copy of a configuration with an `mqtt` section (the application's) pointing at
        this broker, limited to what it supports."""
        mqtt = config.mqtt.model_copy(update={"url": self.url})
        if not self.mqtt5:
            mqtt = mqtt.model_copy(update={"protocol": "3.1.1", "shared_group": None})
        return config.model_copy(update={"mqtt": mqtt})

    def close(self) -> None:
        if callable(self._close):
            self._close()
            self._close = None

    def __enter__(self) -> BrokerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def mosquitto_conf(port: int, state_dir: Path, max_queued: int, max_inflight: int,
                   auth: list[str] | None = None) -> str:
    """The private broker's configuration: loopback only, persistent, deep queues, and the
    accounts' password and ACL files (`auth`: ingest/brokerauth.py mosquitto_auth_conf).
    Without `auth` anyone on loopback may connect (tests of other matters only)."""
    return "\n".join([
        f"listener {port} 127.0.0.1",
        *(auth or ["allow_anonymous true"]),
        # Started by root, mosquitto would switch to user "mosquitto", who cannot write here.
        *(["user root"] if os.geteuid() == 0 else []),
        "persistence true",
        f"persistence_location {state_dir}/",
        "autosave_interval 30",
        f"max_queued_messages {max_queued}",
        f"max_inflight_messages {max_inflight}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "",
    ])


def start_mosquitto(data_dir: Path, *, port: int | None = None, max_queued: int = 1_000_000,
                    max_inflight: int = 1000, binary: str = "mosquitto",
                    accounts: PrivateAccounts | None = None, topic_prefix: str = "",
                    collector: str | None = None) -> BrokerHandle:
    """Start a private Mosquitto; its state (sessions, queued messages) survives restarts.

    With `accounts`, only they may connect (the handle's URL logs in as `collector`, its
    publisher URL as the publisher account); without, anyone on loopback may."""
    state = (data_dir / "mosquitto").resolve()
    state.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = state / "mosquitto.conf"
    auth = None
    if accounts is not None:
        auth = brokerauth.mosquitto_auth_conf(*accounts.write_broker_files(state, topic_prefix))
    conf.write_text(mosquitto_conf(port, state, max_queued, max_inflight, auth), encoding="utf-8")
    log_file = open(state / "mosquitto.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log_file, stderr=log_file)
    if not wait_listening(port, 10):
        proc.kill()
        log_file.close()
        raise IngestError(f"private mosquitto did not listen on port {port}; see {log_file.name}")

    def close() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()

    url = f"mqtt://127.0.0.1:{port}"
    handle = BrokerHandle(url, "mosquitto", close)
    if accounts is not None:
        (publisher,) = accounts.of_role("publisher")
        collector = collector or accounts.of_role("collector")[0].username
        handle = BrokerHandle(
            mqtturl.with_credentials(url, collector, accounts.accounts[collector].password),
            "mosquitto", close,
            mqtturl.with_credentials(url, publisher.username, publisher.password), accounts)
    handle.process = proc  # type: ignore[attr-defined]  # tests kill it to simulate loss
    log.info("private mosquitto on port %d (state in %s)", port, state)
    return handle


def start_amqtt(*, port: int | None = None) -> BrokerHandle:
    """Start an embedded amqtt broker (MQTT 3.1.1) on its own event loop thread."""
    from amqtt.broker import Broker

    # amqtt and its state machine log every packet and transition at INFO.
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    port = port or free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, object] = {}

    async def main() -> None:
        broker = Broker({
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": True}},
        })
        try:
            await broker.start()
        except Exception as exc:  # reported to the caller thread below
            holder["error"] = exc
            started.set()
            return
        holder["broker"] = broker
        started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main())
        if "broker" in holder:
            loop.run_forever()

    thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
    thread.start()
    started.wait(15)
    if "broker" not in holder:
        raise IngestError(f"embedded broker did not start: {holder.get('error', 'timeout')}")

    def close() -> None:
        fut = asyncio.run_coroutine_threadsafe(holder["broker"].shutdown(), loop)
        try:
            fut.result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    log.info("embedded amqtt broker on port %d", port)
    return BrokerHandle(f"mqtt://127.0.0.1:{port}", "amqtt", close)


def ensure_broker(config: IngestSetup, data_dir: Path | None = None) -> BrokerHandle:
    """The configured broker, else a private Mosquitto, else an embedded amqtt broker."""
    if config.mqtt.url:
        return BrokerHandle(config.mqtt.url, "external")
    data_dir = data_dir or config.data_path
    # Debian installs mosquitto in sbin, which is not on every user's PATH.
    binary = shutil.which("mosquitto", path=os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"]))
    if binary:
        from domain.registry import load as load_registry

        devices = load_registry(config.registry_dir).devices
        state = (data_dir / "mosquitto").resolve()
        accounts = PrivateAccounts.ensure(state / "accounts.json",
                                          [d.device_id for d in devices],
                                          [config.mqtt.client_id], PUBLISHER)
        if accounts.created:
            # the one time they are mentioned: where they are, never what they are
            log.warning("private broker accounts generated in %s (mode 0600): one per "
                        "registered device, collector %s, publisher %s", accounts.path,
                        config.mqtt.client_id, PUBLISHER)
        return start_mosquitto(data_dir, max_queued=config.mqtt.broker_max_queued,
                               max_inflight=config.mqtt.receive_maximum, binary=binary,
                               accounts=accounts, topic_prefix=config.mqtt.topic_prefix,
                               collector=config.mqtt.client_id)
    return start_amqtt()
