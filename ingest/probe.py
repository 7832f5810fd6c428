"""Measure how many unacknowledged QoS 1 messages a broker hands one subscriber.

Acknowledge-after-commit batching can never hold more messages than the broker sends
before it waits for acknowledgements: Mosquitto's `max_inflight_messages` (default 20) for
an MQTT 3.1.1 client, the client's Receive Maximum for an MQTT 5 client. This probe
subscribes without acknowledging, publishes `count` messages and reports how many arrived.
"""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import mqtturl


def unacked_window(url: str, topic: str, *, protocol: str = "5", receive_maximum: int = 1000,
                   count: int = 500, settle_s: float = 1.0) -> int:
    """Messages delivered to a subscriber that acknowledges none of `count` published."""
    address = mqtturl.parse(url)
    v5 = protocol == "5"
    got = 0
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(client, userdata, msg):
        nonlocal got
        with lock:
            got += 1

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}",
                      protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, manual_ack=True)
    mqtturl.configure(sub, address)
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    props = None
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = receive_maximum
    sub.connect(address.host, address.port, properties=props)
    sub.loop_start()
    sub.subscribe(topic, qos=1)
    subscribed.wait(5)

    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    mqtturl.configure(pub, address)
    pub.connect(address.host, address.port)
    pub.loop_start()
    infos = [pub.publish(topic, b"x", qos=1) for _ in range(count)]
    for info in infos:
        info.wait_for_publish(10)
    time.sleep(settle_s)
    pub.disconnect()
    pub.loop_stop()
    sub.disconnect()
    sub.loop_stop()
    return got
